"""The one config loader (spaq.config) and the configs built on it."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

from spaq.config import ConfigError, Section, from_dict, load_config
from spaq.errors import SpaqError

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Inner(Section):
    gain: float = 1.0
    names: list[str] = field(default_factory=lambda: ["a"])


@dataclass
class Outer:
    n: int = 3
    flag: bool = False
    label: Optional[str] = None
    span: tuple[float, float] = (0.0, 1.0)
    inner: Inner = field(default_factory=Inner)
    named: dict[str, Inner] = field(default_factory=dict)
    hidden: str = field(default="set by code", metadata={"config": False})


def _one_line_error(fn, *args, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg and isinstance(e.value, SpaqError)
    return msg


def test_defaults_nested_values_and_conversions():
    assert from_dict(Outer, {}) == Outer()
    assert from_dict(Outer, None) == Outer()
    o = from_dict(Outer, {"n": 5, "label": "x", "span": [2, 3.5], "inner": {"gain": 2},
                          "named": {"k": {"names": ["p", "q"]}}})
    assert o.n == 5 and o.label == "x" and o.flag is False
    assert o.span == (2, 3.5) and isinstance(o.span, tuple)  # a YAML list becomes the annotated tuple
    assert o.inner == Inner(gain=2, names=["a"]) and type(o.inner.gain) is int  # int kept as given
    assert o.named == {"k": Inner(gain=1.0, names=["p", "q"])}
    assert o.inner["gain"] == 2 and o.inner.get("nope", 7) == 7 and list(o.inner.keys()) == ["gain", "names"]
    with pytest.raises(KeyError):
        o.inner["hidden"]
    # instances are not shared between configs (mutable defaults)
    a, b = from_dict(Outer, {}), from_dict(Outer, {})
    a.inner.names.append("z")
    assert b.inner.names == ["a"]


@pytest.mark.parametrize("d,msg", [
    ({"m": 1}, "unknown config key 'm'; allowed here: n, flag, label, span, inner, named"),
    ({"hidden": "x"}, "unknown config key 'hidden'"),
    ({"inner": {"gian": 1}}, "unknown config key 'inner.gian'; allowed here: gain, names"),
    ({"named": {"k": {"x": 1}}}, "unknown config key 'named.k.x'; allowed here: gain, names"),
    ({"n": 1.5}, "n: expected an integer, got 1.5 (float)"),
    ({"n": True}, "n: expected an integer, got True (bool)"),
    ({"flag": 1}, "flag: expected true or false, got 1 (int)"),
    ({"label": 3}, "label: expected a string, got 3 (int)"),
    ({"span": [1]}, "span: expected a list of 2 values, got [1]"),
    ({"span": [1, "b"]}, "span[1]: expected a number, got 'b' (str)"),
    ({"inner": {"gain": "1e-3"}}, "inner.gain: expected a number, got '1e-3' (str) (YAML reads 1e-3 as text"),
    ({"inner": {"names": ["a", 2]}}, "inner.names[1]: expected a string, got 2 (int)"),
    ({"inner": None}, "inner: expected a mapping, got NoneType"),
    ({"named": {"k": 3}}, "named.k: expected a mapping, got int"),
])
def test_strict_one_line_errors_name_the_key(d, msg):
    assert msg in _one_line_error(from_dict, Outer, d)


def test_yaml_files(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("n: 4\ninner:\n  names: [x, y]\n")
    assert load_config(p, Outer) == Outer(n=4, inner=Inner(names=["x", "y"]))
    p.write_text("")
    assert load_config(str(p), Outer) == Outer()
    p.write_text("top:\n  n: 9\n")
    assert load_config(p, Outer, section="top").n == 9
    p.write_text("n: 4\nzz: 1\n")
    assert _one_line_error(load_config, p, Outer) == f"{p}: unknown config key 'zz'; allowed here: " \
                                                      "n, flag, label, span, inner, named"
    p.write_text("- 1\n")
    assert "a config must be a mapping, got list" in _one_line_error(load_config, p, Outer)
    p.write_text("n: [\n")
    assert f"{p} is not valid YAML" in _one_line_error(load_config, p, Outer)
    assert "config file not found" in _one_line_error(load_config, tmp_path / "nope.yaml", Outer)


def test_corpus_config_is_strict_and_keeps_the_dict_form():
    from spaq.data.config import DEFAULTS, validate_config

    cfg = validate_config({"scene": {"sources": {"count": [1, 2]}}})
    assert cfg["scene"]["sources"]["count"] == [1, 2]
    assert cfg["corpus"] == DEFAULTS["corpus"] and list(cfg) == ["corpus", "scene", "degradations"]
    assert validate_config({"corpus": {"duration_s": 2}})["corpus"]["duration_s"] == 2
    msg = _one_line_error(validate_config, {"scene": {"room": {"rt60": [0.2, 0.3]}}})
    assert msg == "unknown config key 'scene.room.rt60'; allowed here: probability, rt60_s, dims_m, margin_m, ism_order"
    assert "scene.speech.voices[0]: expected a string" in _one_line_error(
        validate_config, {"scene": {"speech": {"voices": [1]}}})


def test_quality_recipe_through_the_loader():
    from spaq.train.quality import QualityTrainConfig

    tc = QualityTrainConfig.from_dict({"fit": {"starts": 2}, "synthetic": {"voices": ["de"]}})
    assert tc.fit["starts"] == 2 and tc.fit.monotone_margin == 0.05 and tc.synthetic["voices"] == ["de"]
    assert tc.to_dict()["fit"] == {"starts": 2, "monotone_weight": 0.0, "monotone_margin": 0.05, "spatial": "scale",
                                    "timbral": "speech", "min_spatial_scale": 0.0, "per_test": "none",
                                    "combination": 1.0, "itd_lateral": ""}
    assert "unknown config key 'fit.start'" in _one_line_error(QualityTrainConfig.from_dict, {"fit": {"start": 2}})
    assert "unknown config key 'base_dir'" in _one_line_error(QualityTrainConfig.from_dict, {"base_dir": "/"})


def test_localizer_recipe_through_the_loader(tmp_path):
    from spaq.train.localizer import LocalizerTrainConfig, SyntheticSpec

    p = tmp_path / "l.yaml"
    p.write_text("localizer:\n  epochs: 3\n  data: {rt60_s: [0.3, 0.5], room_dims_m: [[4, 3, 2.5], [9, 8, 4]]}\n")
    tc = LocalizerTrainConfig.from_yaml(p)
    assert tc.epochs == 3 and tc.lr == 1e-3
    spec = SyntheticSpec.from_dict(tc.data)
    assert spec.rt60_s == (0.3, 0.5) and spec.room_dims_m == ((4, 3, 2.5), (9, 8, 4)) and spec.hrtf == "ku100"
    p.write_text("epochs: 3\ndata: {snr: [1, 2]}\n")
    assert "unknown config key 'data.snr'" in _one_line_error(LocalizerTrainConfig.from_yaml, p)
    p.write_text("epoch: 3\n")
    assert "unknown config key 'epoch'" in _one_line_error(LocalizerTrainConfig.from_yaml, p)


def test_every_shipped_yaml_loads_through_its_loader():
    from spaq.data.config import load_config as load_corpus_config
    from spaq.train.predictor import PredictorTrainConfig
    from spaq.train.quality import QualityTrainConfig
    from spaq.train.sqm import SQMTrainConfig

    loaders = {"train/quality.yaml": QualityTrainConfig.from_yaml,
               "train/predictor.yaml": PredictorTrainConfig.from_yaml,
               "train/sqm_dereverb.yaml": SQMTrainConfig.from_yaml,
               "train/sqm_timbre.yaml": SQMTrainConfig.from_yaml}
    found = sorted(str(p.relative_to(REPO / "configs")) for p in (REPO / "configs").rglob("*.yaml"))
    assert "tiny.yaml" in found and "train/quality.yaml" in found
    for rel in found:
        load = loaders.get(rel, load_corpus_config if os.sep not in rel else None)
        assert load is not None, f"no loader known for configs/{rel}"
        load(REPO / "configs" / rel)
