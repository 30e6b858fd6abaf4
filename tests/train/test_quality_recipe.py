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
        QualityTrainConfig.from_dict({"synthetic": {"nope": 1}})
    with pytest.raises(SpaqError, match="unknown family"):
        QualityTrainConfig.from_dict({"synthetic": {"spatial": ["wobble"]}})


def _records():
    """Anchor (noise: distortion = severity) and three rotation sweeps whose ILD feature
    matches the anchors in the median; the third sweep's ILD folds back at severity 1 while
    its direction feature keeps growing."""
    from spaq.models.quality import SPATIAL_FEATURES

    recs = []
    zero = {n: 0.0 for n in SPATIAL_FEATURES}
    for s in (0.25, 0.5, 1.0):
        recs.append({"family": "noise", "format": "binaural", "source": "x", "scene": 0, "severity": s,
                     "added_db": s, "missing_db": 0.0, "incoherence": 0.0, "noisiness": 0.0, **zero})
        for sc, ild in enumerate((s, s, {0.25: 0.25, 0.5: 0.5, 1.0: 0.3}[s])):
            recs.append({"family": "rotation", "format": "hoa3", "source": "x", "scene": sc, "severity": s,
                         "added_db": 0.0, "missing_db": 0.0, "incoherence": 0.0, "noisiness": 0.0,
                         **{**zero, "d_ild_db": ild, "d_direction": 0.4 * s * s}})
    return recs


def test_fit_spatial_anchor_match_and_optional_order_term():
    import numpy as np

    from spaq.models.quality import SPATIAL_FEATURES
    from spaq.train.quality import fit_spatial

    w = np.array([1.0, 1.0, 1.0, 1.0])
    recs = _records()
    i_ild, i_dir = SPATIAL_FEATURES.index("d_ild_db"), SPATIAL_FEATURES.index("d_direction")
    v = np.exp(fit_spatial(recs, w, ["noise"], ["rotation"]))
    assert abs(v[i_ild] - 1.0) < 0.02 and v[i_dir] < 1e-3  # the medians need the ILD only
    v2 = np.exp(fit_spatial(recs, w, ["noise"], ["rotation"], monotone_weight=10.0, monotone_margin=0.05))
    d = {s: (0.3 if s == 1.0 else s) * v2[i_ild] + 0.4 * s * s * v2[i_dir] for s in (0.5, 1.0)}
    assert v2[i_dir] > 0.1 and d[1.0] > d[0.5]  # the folded sweep now rises with severity


def test_workdir_tables_are_keyed_by_what_made_them(monkeypatch, tmp_path):
    """A workdir left by another version of the metric (its features or its ambisonics decoder) or by
    another recipe section is not read back as this recipe's tables."""
    from spaq.metrics.quality import Quality
    from spaq.train.quality import feature_table_path

    tc = QualityTrainConfig.from_yaml(REPO / "configs" / "train" / "quality.yaml")
    paths = {k: feature_table_path(tmp_path, "q", k, tc) for k in ("mushra", "param_coding", "synthetic")}
    assert len(set(paths.values())) == 3 and all(p.parent == tmp_path for p in paths.values())
    assert paths["mushra"].name.startswith("q_mushra_aligned_") and paths["synthetic"].name.startswith("q_synthetic_")
    assert feature_table_path(tmp_path, "q", "mushra", tc) == paths["mushra"]  # deterministic
    assert feature_table_path(tmp_path, "q", "mushra", tc, align=False) != paths["mushra"]
    other = QualityTrainConfig.from_dict({"synthetic": {"seed": tc.synthetic["seed"] + 1}})
    assert feature_table_path(tmp_path, "q", "synthetic", other) != paths["synthetic"]
    monkeypatch.setattr(Quality, "version", Quality.version + ".x")
    assert all(feature_table_path(tmp_path, "q", k, tc) != p for k, p in paths.items())
    monkeypatch.undo()
    import spaq.data

    monkeypatch.setattr(spaq.data, "ENGINE_VERSION", spaq.data.ENGINE_VERSION + 1)  # the engine renders other audio
    assert feature_table_path(tmp_path, "q", "synthetic", tc) != paths["synthetic"]
    assert feature_table_path(tmp_path, "q", "mushra", tc) == paths["mushra"]  # real recordings: not its output


def test_head_turn_section(tmp_path):
    """The recipe's head turn (version 10): the shipped one, its bounds, and the tables it changes (the
    ambisonic ones) keyed by it while the binaural listening tests' are not."""
    from spaq.train.quality import feature_table_path

    tc = QualityTrainConfig.from_yaml(REPO / "configs" / "train" / "quality.yaml")
    assert tc.head_turn.as_params() == {"range_deg": 45.0, "period_s": 4.0}
    assert QualityTrainConfig.from_dict({}).head_turn.as_params() is None  # default: a still head
    for bad in ({"range_deg": -5}, {"range_deg": 200}, {"period_s": 0}):
        with pytest.raises(SpaqError, match="head_turn"):
            QualityTrainConfig.from_dict({"head_turn": bad})
    still = QualityTrainConfig.from_dict({**tc.to_dict(), "head_turn": {"range_deg": 0}})
    for kind in ("synthetic", "param_coding_ambisonic"):
        assert feature_table_path(tmp_path, "q", kind, tc) != feature_table_path(tmp_path, "q", kind, still)
    for kind in ("mushra", "param_coding"):
        assert feature_table_path(tmp_path, "q", kind, tc) == feature_table_path(tmp_path, "q", kind, still)
