"""The quality training recipe: config validation and data paths."""
from pathlib import Path

import pytest

from spaq.errors import SpaqError
from spaq.train.quality import FAMILIES, QualityTrainConfig

REPO = Path(__file__).resolve().parents[2]


def test_shipped_recipe_resolves_data_relative_to_the_repository_root():
    tc = QualityTrainConfig.from_yaml(REPO / "configs" / "train" / "quality.yaml")
    assert tc.base_dir == REPO
    assert tc.mushra_dir() == REPO / ".." / "shared" / "listening-tests" / "speech-codec-mushra"
    for f in list(tc.synthetic["anchors"]) + list(tc.synthetic["spatial"]):
        assert f in FAMILIES
    # fitting never sees the evaluation's seeds, voices or heads (benchmarks/eval_quality.py)
    assert tc.synthetic["seed"] < 90000
    assert not {"fr-fr", "es", "it"} & set(tc.synthetic["voices"])
    assert tc.synthetic["hrtf"] == "default" and "sonicom-2" not in tc.synthetic["hrtf_swap_heads"]


def test_unknown_keys_are_refused():
    with pytest.raises(SpaqError, match="unknown"):
        QualityTrainConfig({"synthetic": {"nope": 1}})
    with pytest.raises(SpaqError, match="unknown family"):
        QualityTrainConfig({"synthetic": {"spatial": ["wobble"]}})
