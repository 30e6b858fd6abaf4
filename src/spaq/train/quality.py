"""``spaq train quality CONFIG``: fit the parameters of spaq's global quality model.

Two data sources, each fitting only what it can justify (see ``configs/train/quality.yaml``):

1. **Real listeners** -- the shared speech-codec MUSHRA half (8 stimuli x 8 conditions,
   mean rating per stimulus and condition), delay-aligned before the features
   (``mushra.align``, as ``spaq.score`` scores; version 2). Fits the three timbral weights and
   the mapping exponent (4 parameters) by least squares on the 0..100 scale;
   leave-one-stimulus-out cross-validation is run with the same procedure and reported.
   With ``param_coding.use`` (the shipped recipe since version 3) the
   rebuilt binaural MUSHRA of parametric spatial-audio codings joins: :func:`fit_joint` sets the
   spatial parameters of ``fit.spatial`` and the exponent on both tests, :func:`joint_cv`
   reports leave-one-stimulus-out / leave-one-trial-out predictions.
2. **Synthetic sweeps** from the corpus engine (KU100 head, seeds and voices listed in the
   config, none of those used by the evaluation). No listening test covers spatial
   distortions, so the five spatial weights are fitted on the corpus engine's severity
   scale: at each severity, a spatial degradation should cost as much distortion as the
   timbral anchor families (noise, low-pass) at the same severity, whose distortion the
   MUSHRA-calibrated timbral term measures. (Assumption, stated in the README: equal
   corpus severity = equal impairment.) Monotonicity in severity and duration
   independence are properties of the model (non-negative weights of features that grow
   with each degradation; mean pooling), checked on the sweeps, not fitted.

Everything is deterministic from ``seed``; a full run takes about 3 min of CPU (13 min with the
spatial-codings rebuild and the joint fit), feature extraction dominating.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..cache import json_sha256
from ..config import RecipeConfig, Section
from ..errors import SpaqError
from ..files import atomic_write
from ..models.quality import LATERAL_FEATURES, SPATIAL_FEATURES, TIMBRAL_FEATURES, QualityMapping

__all__ = ["QualityTrainConfig", "mushra_table", "mushra_features", "sweep", "sweep_draws", "sweep_params", "sweep_features",
           "fit_timbral", "loso_predictions", "fit_spatial", "train_quality", "param_coding_table",
           "param_coding_features", "pair_features", "fit_joint", "joint_cv", "joint_pred", "SPATIAL_MODES",
           "FAMILIES", "RECIPE_OPTIONS", "combine", "feature_table_path", "spatial_distortion", "itd_weight",
           "with_itd_weight", "itd_calibration"]

# evaluation family name -> (corpus degradation, options, formats it applies to)
FAMILIES = {
    "noise": ("noise", {}, ("binaural", "ambisonics")),
    "lowpass": ("lowpass", {}, ("binaural", "ambisonics")),
    "clipping": ("clipping", {}, ("binaural", "ambisonics")),
    "opus": ("codec", {"codecs": ["opus"]}, ("binaural", "ambisonics")),
    "mp3": ("codec", {"codecs": ["mp3"]}, ("binaural", "ambisonics")),
    "aac": ("codec", {"codecs": ["aac"]}, ("binaural", "ambisonics")),
    "order_truncation": ("order_truncation", {}, ("ambisonics",)),
    "rotation": ("rotation", {}, ("binaural", "ambisonics")),
    "misplacement": ("misplacement", {}, ("binaural", "ambisonics")),
    "blur": ("blur", {}, ("binaural", "ambisonics")),
    "downmix": ("downmix", {}, ("binaural", "ambisonics")),
    "reverb": ("reverb", {}, ("binaural", "ambisonics")),
    # the reverb sweeps that lengthen the RT60 only (what a listener hears without a reference)
    "reverb_longer": ("reverb", {"direction": "longer"}, ("binaural", "ambisonics")),
    "hrtf_swap": ("hrtf_swap", {}, ("binaural",)),
    "gain_imbalance": ("channel_imbalance", {}, ("binaural", "ambisonics")),
    "ild": ("ild", {}, ("binaural",)),
    "itd": ("itd", {}, ("binaural",)),
}
#: degradation options the shipped recipes were built with where the corpus engine's default has
#: changed since (``sweep(..., options=RECIPE_OPTIONS)``): ``quality``'s synthetic sweeps and the
#: reference-free predictor's corpus keep the blur decorrelator they were fitted on (the engine's
#: default is ``orthogonal`` since the twenty-ninth session) and reverb's redrawn diffuse tail (the
#: default is ``shared`` since the thirtieth), so that both recipes still reproduce their shipped
#: files; the held-out evaluations (``benchmarks/eval_quality.py``, ``eval_predictor.py``) use the
#: engine's defaults
RECIPE_OPTIONS = {"blur": {"decorrelator": "filter"}, "reverb": {"tail": "redrawn"}}


@dataclass
class MushraData(Section):
    """Where the listening-test ratings are (``path`` relative to the repository root)."""

    path: str = "../shared/listening-tests/speech-codec-mushra"
    ratings: str = "ratings_filtered_stim01-08.csv"
    align: bool = True  # delay alignment (spaq.auditory.alignment) before the features, as spaq.score does


@dataclass
class ParamCodingData(Section):
    """The rebuilt binaural MUSHRA of parametric spatial-audio codings (``benchmarks/
    rebuild_param_coding.py`` writes the 42 items and ``ratings.csv``). ``path`` empty: the
    spaq cache (``$SPAQ_CACHE_DIR/param_coding``, default ``~/.cache/spaq/param_coding``);
    relative paths start at the repository root. ``use: false`` leaves it out (then the
    spatial weights come from the synthetic sweeps alone, as in version 1)."""

    use: bool = True
    path: str = ""
    ratings: str = "ratings.csv"
    # version 8: the FOA condition scored from its ambisonic form (the third-order reference and its
    # first four channels, which the rebuild keeps with --ambisonics) fits the d_order weight
    ambisonics: bool = False


@dataclass
class FitOptions(Section):
    starts: int = 8
    monotone_weight: float = 0.0
    monotone_margin: float = 0.05
    # joint fit on the listening tests (param_coding.use): how the spatial weights enter
    # (fixed: the synthetic ones; scale: one factor on them; binaural: the three binaural ones free)
    spatial: str = "scale"
    # who fits the timbral weights: "speech" (the speech-codec test alone, then fixed: the joint fit
    # sets only the spatial parameters and the exponent) or "joint" (both tests)
    timbral: str = "speech"
    # lower bound of the common factor on the synthetic frame-wise spatial weights (modes scale,
    # statistic): the listening tests hold no pure direction change to set it
    min_spatial_scale: float = 0.0
    # how each listening test's ratings are compared with the model's scores in the joint fit:
    # "none" (as they are), "offset" (less each test's mean error: a test's raters may sit higher
    # or lower on the scale in its context, which P.1401's per-test mapping compensates; the
    # offset is a nuisance of the fit, not part of the model) or "offset_normalised" (that, and
    # each test's squared error divided by its ratings' variance)
    per_test: str = "none"
    # how the timbral and spatial distortions add up: (D_t^p + D_s^p)^(1/p). 1: their sum (versions
    # 1-5); 2: the Euclidean distance over the two perceptual dimensions (version 6). Fixed, not fitted
    combination: float = 1.0
    # version 12: the synthetic family whose lowest-severity sweeps (a source moved by a small angle, where
    # ILD and ITD both read the displacement) set the d_itd weight from the lateral ones (itd_weight); the
    # ITD and the level/phase terms then count the lateral displacement once, as their maximum.
    # Empty: no ITD term (versions 1-11)
    itd_lateral: str = ""


@dataclass
class HeadTurn(Section):
    """How an ambisonic pair decoded at two different orders is heard (version 10): both signals
    turned by one back-and-forth head movement over ``+-range_deg`` of yaw, a sweep about every
    ``period_s`` (:func:`spaq.spatial.ambisonics.head_turn_yaw`), before they are decoded to the ears
    (:func:`spaq.metrics.functional.quality.quality_maps_streamed`). 0: a still head (versions 1-9).
    Written into the parameters, which the metric then follows."""

    range_deg: float = 0.0
    period_s: float = 4.0

    def as_params(self) -> dict | None:
        return {"range_deg": float(self.range_deg), "period_s": float(self.period_s)} if self.range_deg > 0 else None


@dataclass
class SyntheticSweeps(Section):
    seed: int = 5000
    duration_s: float = 1.5
    hrtf: str = "default"
    voices: list[str] = field(default_factory=lambda: ["en-us", "de"])
    sources: list[str] = field(default_factory=lambda: ["speech", "harmonic", "pink_noise"])
    formats: list[str] = field(default_factory=lambda: ["binaural", "hoa3"])
    scenes: int = 1
    severities: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0])
    anchors: list[str] = field(default_factory=lambda: ["noise", "lowpass"])
    spatial: list[str] = field(default_factory=lambda: [
        "rotation", "misplacement", "blur", "gain_imbalance", "hrtf_swap", "order_truncation", "reverb", "ild", "itd"])
    hrtf_swap_heads: list[str] = field(default_factory=lambda: ["sonicom-1"])


@dataclass
class QualityTrainConfig(RecipeConfig):
    """Validated training recipe (see ``configs/train/quality.yaml``), read by
    :mod:`spaq.config`. The sections also read like dicts (``tc.fit["starts"]``).
    ``base_dir`` (not a config key): the folder relative data paths start from."""

    seed: int = 7
    mushra: MushraData = field(default_factory=MushraData)
    param_coding: ParamCodingData = field(default_factory=ParamCodingData)
    fit: FitOptions = field(default_factory=FitOptions)
    synthetic: SyntheticSweeps = field(default_factory=SyntheticSweeps)
    head_turn: HeadTurn = field(default_factory=HeadTurn)
    # how d_ild_mean's bands count: "equal" (versions 3-10) or "level", by the reference's sensation level
    # (version 11); written into the parameters, which the metric then follows
    ild_mean_weights: str = "equal"
    # how d_ic_mean's bands count: "equal" (versions 3-10) or "time", by the share of the time they have
    # interaural coherences (version 11)
    ic_mean_weights: str = "equal"
    # what the overall gain match equalises: "broadband" (versions 1-14), or "heard", the energy the front-end's
    # bands hear (version 15: energy above the top band no longer turns the degraded signal up), or "audible", that
    # from 20 Hz up (version 16: a DC offset is no sound)
    gain_match: str = "broadband"
    base_dir: Path = field(default_factory=Path.cwd, metadata={"config": False})

    def __post_init__(self):
        for f in list(self.synthetic.anchors) + list(self.synthetic.spatial):
            if f not in FAMILIES:
                raise SpaqError(f"quality train config: unknown family {f!r}; known: {', '.join(FAMILIES)}")
        if not (0.0 <= float(self.head_turn.range_deg) <= 180.0 and float(self.head_turn.period_s) > 0):
            raise SpaqError(f"quality train config: head_turn needs 0 <= range_deg <= 180 and period_s > 0, got "
                            f"{self.head_turn.range_deg}, {self.head_turn.period_s}")
        if self.ild_mean_weights not in ("equal", "level"):
            raise SpaqError(f"quality train config: ild_mean_weights must be 'equal' or 'level', not "
                            f"{self.ild_mean_weights!r}")
        if self.ic_mean_weights not in ("equal", "time"):
            raise SpaqError(f"quality train config: ic_mean_weights must be 'equal' or 'time', not "
                            f"{self.ic_mean_weights!r}")
        from ..metrics.functional.quality import GAIN_MATCHES

        if self.gain_match not in GAIN_MATCHES:
            raise SpaqError(f"quality train config: gain_match must be one of {', '.join(map(repr, GAIN_MATCHES))}, "
                            f"not {self.gain_match!r}")
        self.base_dir = Path(self.base_dir)

    def feature_params(self) -> dict:
        """What of the recipe the features depend on, as parameter-file keys (``head_turn``,
        ``ild_mean_weights``, ``ic_mean_weights``, ``gain_match``; absent at their earlier defaults)."""
        out = {}
        if self.head_turn.as_params():
            out["head_turn"] = self.head_turn.as_params()
        if self.ild_mean_weights != "equal":
            out["ild_mean_weights"] = self.ild_mean_weights
        if self.ic_mean_weights != "equal":
            out["ic_mean_weights"] = self.ic_mean_weights
        if self.gain_match != "broadband":
            out["gain_match"] = self.gain_match
        return out

    def mushra_dir(self) -> Path:
        return self.resolve_path(self.mushra["path"])

    def param_coding_dir(self) -> Path:
        p = str(self.param_coding["path"])
        if not p:
            from ..cache import cache_dir

            return cache_dir() / "param_coding"
        return self.resolve_path(Path(p).expanduser())


# --------------------------------------------------------------------------- MUSHRA data
def mushra_table(root, ratings: str = "ratings_filtered_stim01-08.csv"):
    """Per stimulus and condition mean rating: DataFrame with ``stimulus, condition, file,
    mean, n``. ``file`` is relative to ``root/audio``; references are ``stim_XX/ref.wav``."""
    import pandas as pd

    root = Path(root)
    path = root / ratings
    if not path.is_file():
        raise SpaqError(f"MUSHRA ratings not found: {path}")
    d = pd.read_csv(path)
    d["ratings"] = d["ratings"].apply(json.loads)
    d["mean"] = d["ratings"].apply(lambda r: float(np.mean(r)))
    d["n"] = d["ratings"].apply(len)
    d["stimulus"] = d["file"].str.split("/").str[0]
    return d[["stimulus", "condition", "file", "mean", "n"]].reset_index(drop=True)


def _load_mono_pair(root: Path, stim: str, file: str, align: bool = True):
    a = root / "audio" / stim / "ref.wav"
    b = root / "audio" / file
    return _load_binaural_pair(a, b, align)


def _load_binaural_pair(ref: Path, deg: Path, align: bool = True):
    """A binaural pair at 48 kHz, delay-aligned as ``spaq.score`` does (``align``)."""
    from ..io import load_pair

    return load_pair(str(ref), str(deg), target_rate=48000, fmt="binaural", align=bool(align))


def pair_features(metric, pair) -> dict:
    """Pooled features of one loaded pair, plus the applied delay (``delay_ms``, 0 when none)."""
    with torch.no_grad():
        _, f = metric.features(torch.from_numpy(pair.ref), torch.from_numpy(pair.deg))
    out = {k: float(v[0]) for k, v in f.items()}
    al = pair.alignment or {}
    out["delay_ms"] = float(al.get("delay_ms", 0.0)) if al.get("applied") else 0.0
    return out


def mushra_features(root, table, metric, log=print, align: bool = True) -> "object":
    """Pooled features of every row of ``table`` (the stimuli are diotic speech, scored as
    binaural pairs with both ears equal; delay-aligned when ``align``). Returns the table with
    one column per feature and ``delay_ms``."""
    import pandas as pd

    rows = []
    t0 = time.time()
    for i, r in table.iterrows():
        rows.append(pair_features(metric, _load_mono_pair(Path(root), r["stimulus"], r["file"], align)))
        log(f"  mushra {i + 1}/{len(table)} {r['file']} ({time.time() - t0:.0f} s)")
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


# --------------------------------------------------------------------------- spatial codings MUSHRA
def param_coding_table(root, ratings: str = "ratings.csv"):
    """The 42 rebuilt items (7 trials x 6 codings) of the binaural spatial-codings MUSHRA:
    DataFrame with ``trial, condition, ref, deg, mean, std, n, bamq, pemoq`` (files relative to
    ``root``), as written by ``benchmarks/rebuild_param_coding.py``."""
    import pandas as pd

    root = Path(root)
    path = root / ratings
    if not path.is_file():
        raise SpaqError(f"spatial-codings items not found: {path} (build them once with "
                        f"`python benchmarks/rebuild_param_coding.py --cache {root}`)")
    t = pd.read_csv(path)
    missing = [f for f in list(t["ref"]) + list(t["deg"]) if not (root / f).is_file()]
    if missing:
        raise SpaqError(f"spatial-codings items incomplete in {root}: {missing[0]} missing "
                        f"(`python benchmarks/rebuild_param_coding.py --cache {root}`)")
    return t


def param_coding_features(root, table, metric, log=print, align: bool = True):
    """Pooled features of every rebuilt spatial-codings item (binaural, 44.1 kHz resampled to
    48 kHz, delay-aligned when ``align``). Returns the table with one column per feature."""
    import pandas as pd

    rows = []
    t0 = time.time()
    for i, r in table.iterrows():
        rows.append(pair_features(metric, _load_binaural_pair(Path(root) / r["ref"], Path(root) / r["deg"], align)))
        log(f"  spatial codings {i + 1}/{len(table)} {r['deg']} ({time.time() - t0:.0f} s)")
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def ambisonic_paths(root, trial_row) -> tuple[Path, Path]:
    """The third-order reference and the FOA condition of one spatial-codings trial as the
    rebuild keeps them with ``--ambisonics`` (``<scene>_<reverb>_ref_amb.wav``, ``_foa_amb.wav``;
    ACN/N3D, the authors' generator's convention)."""
    stem = str(trial_row["ref"]).rsplit("_ref_binau.wav", 1)[0]
    return Path(root) / f"{stem}_ref_amb.wav", Path(root) / f"{stem}_foa_amb.wav"


def _load_ambisonic_foa_pair(ref: Path, foa: Path) -> tuple[np.ndarray, np.ndarray]:
    """The third-order reference ``(16, T)`` and the FOA condition zero-padded to 16 channels, both
    ACN/SN3D at 48 kHz (the files are N3D at 44.1 kHz; the FOA is the reference's first four
    channels, so no delay to align)."""
    import soundfile as sf

    from ..io import resample
    from ..spatial.sh import convert_normalisation

    r, fs = sf.read(str(ref), dtype="float64", always_2d=True)
    d, fs_d = sf.read(str(foa), dtype="float64", always_2d=True)
    if r.shape[1] != 16 or d.shape[1] != 4 or fs != fs_d or len(r) != len(d):
        raise SpaqError(f"unexpected ambisonic spatial-codings files {ref.name} ({r.shape[1]} ch, {fs} Hz), "
                        f"{foa.name} ({d.shape[1]} ch, {fs_d} Hz)")
    r = convert_normalisation(r.T, "n3d", "sn3d")
    pad = np.zeros_like(r)
    pad[:4] = convert_normalisation(d.T, "n3d", "sn3d")
    return resample(r, fs, 48000), resample(pad, fs, 48000)


def check_ambisonic_items(root, table) -> None:
    """One-line error when an ambisonic :data:`ORDER_CONDITION` item of ``table`` is missing in ``root`` (what
    :func:`param_coding_ambisonic_features` needs), so that a run finds out before its feature runs."""
    for _, r in table[table["condition"] == ORDER_CONDITION].iterrows():
        a, b = ambisonic_paths(root, r)
        if not (a.is_file() and b.is_file()):
            raise SpaqError(f"ambisonic spatial-codings items missing: {(b if a.is_file() else a).name} (build them "
                            f"once with `python benchmarks/rebuild_param_coding.py --ambisonics --cache {root}`)")


def param_coding_ambisonic_features(root, table, metric, log=print):
    """Pooled features of the :data:`ORDER_CONDITION` items scored from their ambisonic form
    (third-order reference against its first-order truncation, :func:`_load_ambisonic_foa_pair`).
    Returns those rows of ``table`` with one column per feature."""
    import pandas as pd

    sub = table[table["condition"] == ORDER_CONDITION].reset_index(drop=True)
    rows = []
    t0 = time.time()
    for i, r in sub.iterrows():
        a, b = ambisonic_paths(root, r)
        if not (a.is_file() and b.is_file()):
            raise SpaqError(f"ambisonic spatial-codings items missing: {a.name} (build them once with "
                            f"`python benchmarks/rebuild_param_coding.py --ambisonics --cache {root}`)")
        ref, deg = _load_ambisonic_foa_pair(a, b)
        with torch.no_grad():
            _, f = metric.features(torch.from_numpy(ref)[None], torch.from_numpy(deg)[None])
        rows.append({k: float(v[0]) for k, v in f.items()})
        log(f"  spatial codings, ambisonic {ORDER_CONDITION} {i + 1}/{len(sub)} ({time.time() - t0:.0f} s)")
    return pd.concat([sub, pd.DataFrame(rows)], axis=1)


def fit_order_weight(Ft: np.ndarray, Fs: np.ndarray, y: np.ndarray, w: np.ndarray, v: np.ndarray, k: float,
                     offset: float, combination: float) -> float:
    """The ``d_order`` weight (>= 0): least squares of the scores of ambisonic items (timbral
    ``Ft (N, 3)``, spatial ``Fs (N, S)`` features) against their ratings ``y`` plus the test's
    ``offset`` (its mean error, score - rating, on the items the joint fit saw), every other
    parameter as given."""
    from scipy.optimize import minimize_scalar

    j = SPATIAL_FEATURES.index("d_order")

    def err(x):
        vv = v.copy()
        vv[j] = x
        return float(np.mean((to_score(combine(Ft @ w, spatial_distortion(Fs, vv), combination), k) - y - offset) ** 2))

    r = minimize_scalar(err, bounds=(0.0, 20.0), method="bounded", options={"xatol": 1e-6})
    return float(r.x) if err(float(r.x)) < err(0.0) else 0.0


def order_weight_cv(Ft: np.ndarray, Fs: np.ndarray, y: np.ndarray, w: np.ndarray, v: np.ndarray, k: float,
                    offset: float, combination: float) -> tuple[np.ndarray, dict]:
    """Leave one item out of :func:`fit_order_weight` (each item a trial): the weight fitted on the
    others, the held-out item scored. Returns the held-out scores and ``n``, ``rmse_offset``,
    ``mean_error_offset`` (against the ratings plus ``offset``) and ``rmse_offset_without_d_order``
    (every item scored with weight 0)."""
    j = SPATIAL_FEATURES.index("d_order")
    pred = np.zeros(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        vi = v.copy()
        vi[j] = fit_order_weight(Ft[keep], Fs[keep], y[keep], w, v, k, offset, combination)
        pred[i] = to_score(combine(Ft[i:i + 1] @ w, spatial_distortion(Fs[i:i + 1], vi), combination), k)[0]
    v0 = v.copy()
    v0[j] = 0.0
    p0 = to_score(combine(Ft @ w, spatial_distortion(Fs, v0), combination), k)
    e, e0 = pred - y - offset, p0 - y - offset
    return pred, {"n": int(len(y)), "rmse_offset": float(np.sqrt(np.mean(e ** 2))),
                  "mean_error_offset": float(np.mean(e)), "rmse_offset_without_d_order": float(np.sqrt(np.mean(e0 ** 2)))}


# --------------------------------------------------------------------------- synthetic sweeps
def _sweep_config(fmt: str, source: str, family: str, duration_s: float, hrtf: str, voices, heads=None,
                  room_probability: float = 0.0, n_sources: int = 1, upper_band_db=None, options=None) -> dict:
    from ..data.config import validate_config
    from ..data.degradations import DEGRADATIONS

    deg, opts, _ = FAMILIES[family]
    opts = {**opts, **(options or {}).get(deg, {})}
    options = {deg: dict(opts)} if opts else {}
    if family == "hrtf_swap" and heads:
        options["hrtf_swap"] = {"heads": list(heads)}
    return validate_config({
        "corpus": {"kind": "pairs", "n": 1, "seed": 0, "sample_rate": 48000, "duration_s": float(duration_s)},
        "scene": {"formats": {fmt: 1.0}, "hrtf": hrtf,
                  "sources": {"count": [1, int(n_sources)], "types": {source: 1.0}, "level_dbfs": [-30, -20]},
                  "speech": {"engines": {"espeak": 1.0}, "voices": list(voices), "upper_band_db": upper_band_db},
                  "room": {"probability": 1.0 if DEGRADATIONS[deg].needs_room else float(room_probability)}},
        "degradations": {"types": {deg: 1.0}, "options": options},
    })


def sweep_draws(family: str, fmt: str, source: str, seed: int, index: int, *, duration_s: float = 1.5,
                hrtf: str = "default", voices=("en-us",), heads=None, room_probability: float = 0.0,
                n_sources: int = 1, upper_band_db=None, options=None):
    """The random draws of :func:`sweep` for ``(seed, index)`` without rendering anything: ``(config,
    scene, choice)``, ``choice`` the seed of the degradation's own random choices (the same at every
    severity). What replays a sweep's room or degradation parameters after the fact. ``n_sources``:
    the scene has 1 to that many sources of ``source``'s type (1: one, as the quality sweeps).
    ``upper_band_db``: espeak speech with a synthetic upper band (:func:`spaq.data.sources.upper_band`).
    ``options``: ``{degradation: {option: value}}`` over the family's own (e.g. :data:`RECIPE_OPTIONS`);
    the draws do not depend on them."""
    from ..data.scenes import sample_scene

    cfg = _sweep_config(fmt, source, family, duration_s, hrtf, voices, heads, room_probability, n_sources,
                        upper_band_db, options)
    ss = np.random.SeedSequence([int(seed), int(index)])
    r_scene, r_chain = (np.random.default_rng(s) for s in ss.spawn(2))
    scene = sample_scene(cfg, r_scene)
    return cfg, scene, int(r_chain.integers(2**62))


def sweep_params(family: str, severity: float, cfg: dict, scene: dict, choice: int) -> dict:
    """The parameters of ``family``'s degradation that :func:`sweep` applies at ``severity``, from
    the draws of :func:`sweep_draws`."""
    from ..data.degradations import degradation_params
    from ..formats import parse_format

    name = FAMILIES[family][0]
    return degradation_params(name, float(severity), np.random.default_rng(choice), sample_rate=48000,
                              fmt=parse_format(scene["format"]), options=cfg["degradations"]["options"].get(name),
                              n_sources=len(scene["sources"]),
                              directions=[(x["azimuth_deg"], x["elevation_deg"]) for x in scene["sources"]])


def sweep(family: str, fmt: str, source: str, severities, seed: int, index: int, *, duration_s: float = 1.5,
          hrtf: str = "default", voices=("en-us",), heads=None, room_probability: float = 0.0, n_sources: int = 1,
          upper_band_db=None, options=None):
    """One scene of ``source`` in ``fmt`` degraded by ``family`` at each severity, all random
    choices (codec, sign, axis, noise) fixed across severities. Returns ``(ref (C, T),
    [deg (C, T) per severity])`` float64 at 48 kHz; deterministic in ``(seed, index)``.
    The scene is in a room for ``reverb`` (always) and with ``room_probability`` for the other
    families (0: anechoic, as the quality sweeps are). ``options``: as :func:`sweep_draws`."""
    ref, degs, _, _ = render_sweep(family, fmt, source, severities, seed, index, duration_s=duration_s, hrtf=hrtf,
                                   voices=voices, heads=heads, room_probability=room_probability,
                                   n_sources=n_sources, upper_band_db=upper_band_db, options=options)
    return ref, degs


def _scene_signals(cfg: dict, scene: dict) -> list:
    """The source signals of a drawn sweep scene (:func:`sweep_draws`)."""
    from ..data.scenes import _source_signals

    opts = dict(cfg["scene"]["speech"])
    opts["files_folder"] = None
    return _source_signals(scene, opts)


def render_sweep(family: str, fmt: str, source: str, severities, seed: int, index: int, **kw):
    """:func:`sweep` (same arguments), also returning what it rendered from: ``(ref, degs, scene,
    signals)``, so that the same scene can be rendered again (:func:`shorter_room`) without drawing
    or synthesising its sources twice."""
    from ..data.degradations import DEGRADATIONS, apply_signal_degradation
    from ..data.scenes import render_scene, scene_mods
    from ..formats import parse_format

    cfg, scene, choice = sweep_draws(family, fmt, source, seed, index, **kw)
    signals = _scene_signals(cfg, scene)
    ref = render_scene(scene, signals)
    f = parse_format(scene["format"])
    name = FAMILIES[family][0]
    degs = []
    for s in severities:
        p = sweep_params(family, s, cfg, scene, choice)
        chain = [{"type": name, "stage": DEGRADATIONS[name].stage, "severity": float(s), "params": p}]
        mods = scene_mods(chain)
        y = render_scene(scene, signals, mods) if mods else ref.copy()
        if DEGRADATIONS[name].stage == "signal":
            y, _ = apply_signal_degradation(y, p, name, 48000, f)
        degs.append(np.asarray(y, dtype=np.float64))
    return np.asarray(ref, dtype=np.float64), degs, scene, signals


#: the DRR change per halving of the RT60 (dB) of :func:`room_reference`: the corpus engine's ``reverb``
#: ladder's own relation (``rt60_factor`` 1 -> 2 with ``drr_change_db`` 0 -> -6)
ROOM_REFERENCE_DRR_DB = 6.0


def shorter_room(scene: dict, signals: list, rt60_s: float):
    """A drawn scene (:func:`render_sweep`'s ``scene`` and ``signals``) rendered in its room with the RT60
    set to ``rt60_s`` and the direct-to-reverberant ratio raised :data:`ROOM_REFERENCE_DRR_DB` per halving
    of the RT60, keeping the room's diffuse tail noise (the engine's ``shared`` reverb tail) -> ``(C, T)``
    float64; ``None`` where the scene is anechoic or its room is not longer than ``rt60_s``."""
    from ..data.scenes import render_scene, scene_mods

    if scene["room"] is None or not float(scene["room"]["rt60_s"]) > float(rt60_s):
        return None
    factor = float(rt60_s) / float(scene["room"]["rt60_s"])
    mods = scene_mods([{"type": "reverb", "stage": "scene", "severity": 1.0,
                        "params": {"rt60_factor": factor, "drr_change_db": ROOM_REFERENCE_DRR_DB * math.log2(1 / factor),
                                   "tail": "shared"}}])
    return np.asarray(render_scene(scene, signals, mods), dtype=np.float64)


def room_reference(family: str, fmt: str, source: str, seed: int, index: int, rt60_s: float, **kw):
    """The clean scene of :func:`sweep` ``(seed, index)`` (same keyword arguments) in a room no longer
    than ``rt60_s`` (:func:`shorter_room`; ``None`` where the scene is anechoic or its room is not longer:
    its own clean scene is then the reference). What the reference-free predictor's teacher compares a
    reverberant scene with (:class:`spaq.train.predictor.CorpusSplit` ``room_reference_rt60_s``)."""
    cfg, scene, _ = sweep_draws(family, fmt, source, seed, index, **kw)
    return shorter_room(scene, _scene_signals(cfg, scene), rt60_s)


def sweep_features(metric, ref: np.ndarray, degs: list) -> list[dict]:
    """Pooled features of ``ref`` against each of ``degs`` (one batch)."""
    r = torch.from_numpy(np.stack([ref] * len(degs)))
    d = torch.from_numpy(np.stack(degs))
    with torch.no_grad():
        _, f = metric.features(r, d)
    return [{k: float(v[i]) for k, v in f.items()} for i in range(len(degs))]


# --------------------------------------------------------------------------- fitting
def _timbral_pred(theta: np.ndarray, F: np.ndarray) -> np.ndarray:
    w = np.exp(theta[:-1])
    k = math.exp(theta[-1])
    d = np.maximum(F @ w, 0.0)
    return 100.0 / (1.0 + np.where(d > 0, d, 1.0) ** k * (d > 0))


def fit_timbral(F: np.ndarray, y: np.ndarray, seed: int, starts: int = 8) -> np.ndarray:
    """Least-squares fit of ``log w (3), log k`` to ratings ``y`` (0..100) from timbral
    features ``F (N, 3)``; multi-start L-BFGS from seeded initial points. Returns theta."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(seed)
    scale = 1.0 / np.maximum(F.mean(axis=0), 1e-6)

    def loss(th):
        return float(np.mean((_timbral_pred(th, F) - y) ** 2))

    best = None
    for i in range(starts):
        th0 = np.concatenate([np.log(scale / F.shape[1]) + rng.normal(0, 1.0, F.shape[1]), [rng.normal(0, 0.5)]])
        r = minimize(loss, th0, method="L-BFGS-B",
                     bounds=[(-20, 10)] * F.shape[1] + [(math.log(0.2), math.log(5.0))])
        if best is None or r.fun < best.fun - 1e-12:
            best = r
    return best.x


def loso_predictions(table, seed: int, starts: int = 8) -> np.ndarray:
    """Leave-one-stimulus-out predictions (same fitting procedure, the held-out stimulus never
    seen): ``(N,)`` aligned with ``table``."""
    F = table[list(TIMBRAL_FEATURES)].to_numpy(dtype=np.float64)
    y = table["mean"].to_numpy(dtype=np.float64)
    pred = np.full(len(table), np.nan)
    for stim in sorted(table["stimulus"].unique()):
        test = (table["stimulus"] == stim).to_numpy()
        th = fit_timbral(F[~test], y[~test], seed, starts)
        pred[test] = _timbral_pred(th, F[test])
    return pred


#: how the spatial weights enter the joint fit on listening tests (``fit.spatial``)
SPATIAL_MODES = ("fixed", "scale", "coherence", "binaural", "statistic")
#: the spatial features the synthetic sweeps weigh (equal-severity matching); in mode
#: ``statistic`` ``d_ic_mean`` is fitted on the listening tests and ``d_ild_mean`` takes the
#: synthetic weight of ``d_ild_db`` (a dB of systematic shift costs what a dB of ILD change does)
SYNTHETIC_SPATIAL = tuple(n for n in SPATIAL_FEATURES if not n.endswith("_mean") and n not in ("d_order", "d_itd"))
#: the spatial-codings condition whose ambisonic form fits ``d_order`` (``param_coding.ambisonics``):
#: first-order content against the third-order reference it was truncated from
ORDER_CONDITION = "FOA"


def _unpack(theta: np.ndarray, v0: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray, float]:
    """``theta`` -> ``(w (3), v (S), k)``. ``mode``: ``fixed`` (v = v0), ``scale`` (v = a v0: one
    weight of the spatial terms against the timbral ones), ``binaural`` (the three binaural
    spatial weights free, the ambisonics-only ones kept from v0), ``statistic`` (v = a v0, a
    free weight of ``d_ic_mean``, and ``d_ild_mean`` at v0's ``d_ild_db`` weight, not scaled)."""
    nt = len(TIMBRAL_FEATURES)
    w = np.exp(theta[:nt])
    if mode == "fixed":
        v = np.asarray(v0, dtype=np.float64).copy()
    elif mode == "scale":
        v = math.exp(theta[nt]) * np.asarray(v0, dtype=np.float64)
    elif mode == "coherence":  # one factor on the coherence terms (d_ic, d_ipd); ILD and the rest as v0
        v = np.asarray(v0, dtype=np.float64).copy()
        v[1:3] *= math.exp(theta[nt])
    elif mode == "binaural":
        v = np.asarray(v0, dtype=np.float64).copy()
        v[:3] = np.exp(theta[nt:nt + 3])
    elif mode == "statistic":  # one factor on the synthetic (frame-wise) weights + the d_ic_mean weight
        v = math.exp(theta[nt]) * np.asarray(v0, dtype=np.float64)
        v[SPATIAL_FEATURES.index("d_ic_mean")] = math.exp(theta[nt + 1])
        v[SPATIAL_FEATURES.index("d_ild_mean")] = float(v0[SPATIAL_FEATURES.index("d_ild_db")])
    else:
        raise SpaqError(f"fit.spatial must be one of {', '.join(SPATIAL_MODES)}, got {mode!r}")
    return w, v, math.exp(theta[-1])


def _n_spatial(mode: str) -> int:
    return {"fixed": 0, "scale": 1, "coherence": 1, "binaural": 3, "statistic": 2}[mode]


def combine(dt: np.ndarray, ds: np.ndarray, p: float = 1.0) -> np.ndarray:
    """Total distortion ``(D_t^p + D_s^p)^(1/p)`` of timbral and spatial distortions >= 0 (the
    rule of :class:`spaq.models.quality.QualityMapping`, in numpy)."""
    dt, ds = np.maximum(dt, 0.0), np.maximum(ds, 0.0)
    return dt + ds if p == 1.0 else (dt ** p + ds ** p) ** (1.0 / p)


_LATERAL = np.array([n in LATERAL_FEATURES for n in SPATIAL_FEATURES])
_ITD = SPATIAL_FEATURES.index("d_itd")
_REST = ~_LATERAL & (np.arange(len(SPATIAL_FEATURES)) != _ITD)


def spatial_distortion(Fs: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``D_s`` of spatial features ``Fs (N, len(SPATIAL_FEATURES))`` with weights ``v``: the rule of
    :meth:`spaq.models.quality.QualityMapping.distortions`, in numpy (the lateral terms and the ITD
    term enter as their maximum; ``v``'s ``d_itd`` weight 0 gives the plain sum) -> ``(N,)``."""
    Fs = np.asarray(Fs, dtype=np.float64)
    return Fs[..., _REST] @ v[_REST] + np.maximum(Fs[..., _LATERAL] @ v[_LATERAL], Fs[..., _ITD] * v[_ITD])


def itd_weight(v: np.ndarray, calibration: np.ndarray) -> float:
    """The ``d_itd`` weight (per ms) at which the ITD reads the lateral displacement the level and
    phase terms of ``v`` read (:data:`~spaq.models.quality.LATERAL_FEATURES`): the median over the
    calibration rows (spatial features ``(n, S)``, sweeps that move a source by a small angle, where
    both cues are reliable) of ``sum_lateral v_j s_j / d_itd``; rows without an ITD change do not
    count (0 when none has one)."""
    c = np.asarray(calibration, dtype=np.float64).reshape(-1, len(SPATIAL_FEATURES))
    ok = c[:, _ITD] > 0
    if not ok.any():
        return 0.0
    return float(np.median(c[ok][:, _LATERAL] @ v[_LATERAL] / c[ok, _ITD]))


def with_itd_weight(v: np.ndarray, calibration: np.ndarray | None) -> np.ndarray:
    """``v`` with its ``d_itd`` weight set by :func:`itd_weight` (``calibration`` None: unchanged)."""
    if calibration is None:
        return v
    v = np.asarray(v, dtype=np.float64).copy()
    v[_ITD] = itd_weight(v, calibration)
    return v


def itd_calibration(records: list[dict], tc: "QualityTrainConfig") -> np.ndarray | None:
    """The synthetic rows that set the ``d_itd`` weight (:func:`itd_weight`): the spatial features
    ``(n, S)`` of the sweeps of the recipe's ``fit.itd_lateral`` family at its lowest severity (None
    when the recipe has no ITD term; absent features count 0)."""
    family = str(tc.fit["itd_lateral"])
    if not family:
        return None
    if family not in tc.synthetic["spatial"]:
        raise SpaqError(f"fit.itd_lateral names {family!r}, which is not one of synthetic.spatial")
    lowest = min(float(x) for x in tc.synthetic["severities"])
    rows = [[float(np.nan_to_num(r.get(n, 0.0))) for n in SPATIAL_FEATURES] for r in records
            if r["family"] == family and float(r["severity"]) == lowest]
    if not rows:
        raise SpaqError(f"no synthetic {family} sweeps at severity {lowest:g} to set the d_itd weight")
    return np.array(rows, dtype=np.float64)


def check_itd_lateral(tc: "QualityTrainConfig") -> None:
    """One-line error, before any work, when the recipe's ``fit.itd_lateral`` family cannot set the d_itd weight
    (:func:`itd_calibration` would find out only after the feature runs): it is not one of ``synthetic.spatial``,
    or the recipe renders none of its sweeps (no format it applies to, no source, no scene, no severity)."""
    family = str(tc.fit["itd_lateral"])
    if not family:
        return
    sy = tc.synthetic
    if family not in sy["spatial"]:
        raise SpaqError(f"fit.itd_lateral names {family!r}, which is not one of synthetic.spatial "
                        f"({', '.join(map(str, sy['spatial'])) or 'empty'}): add it there or empty fit.itd_lateral")
    kinds = {"binaural" if f == "binaural" else "ambisonics" for f in sy["formats"]}
    if not kinds & set(FAMILIES[family][2]) or not sy["sources"] or int(sy["scenes"]) < 1 or not sy["severities"]:
        raise SpaqError(f"fit.itd_lateral names {family!r}, but the recipe renders no {family} sweeps to set the d_itd "
                        f"weight ({family} applies to {' and '.join(FAMILIES[family][2])} signals; synthetic.formats: "
                        f"{', '.join(map(str, sy['formats'])) or 'none'}, sources: {len(sy['sources'])}, scenes: "
                        f"{sy['scenes']}, severities: {len(sy['severities'])})")


def joint_pred(theta: np.ndarray, Ft: np.ndarray, Fs: np.ndarray, v0: np.ndarray, mode: str,
               combination: float = 1.0, itd_calibration: np.ndarray | None = None) -> np.ndarray:
    """Scores 0..100 of items with timbral features ``Ft (N, 3)`` and spatial ``Fs (N, len(SPATIAL_FEATURES))``
    (``itd_calibration``: the rows that set the ``d_itd`` weight from the others, :func:`with_itd_weight`)."""
    w, v, k = _unpack(theta, v0, mode)
    return to_score(combine(Ft @ w, spatial_distortion(Fs, with_itd_weight(v, itd_calibration)), combination), k)


def to_score(d: np.ndarray, k: float) -> np.ndarray:
    """Distortions ``d >= 0`` -> scores ``100 / (1 + d^k)`` (100 at 0): the mapping of
    :meth:`spaq.models.quality.QualityMapping.to_score`, in numpy."""
    return 100.0 / (1.0 + np.where(d > 0, d, 1.0) ** k * (d > 0))


#: how the joint fit compares each test's ratings with the scores (``fit.per_test``)
PER_TEST = ("none", "offset", "offset_normalised")


def _test_error(p: np.ndarray, y: np.ndarray, per_test: str) -> float:
    """Mean squared error of scores ``p`` against ratings ``y`` of one test; ``per_test="offset"``:
    after removing the mean error (the test's offset on the scale); ``"offset_normalised"``: that,
    divided by the variance of the test's ratings (each test then counts as the share of its rating
    variance left unexplained, whatever the spread of its ratings)."""
    e = p - y
    if per_test in ("offset", "offset_normalised"):
        e = e - e.mean()
    m = float(np.mean(e * e))
    return m / max(float(np.var(y)), 1e-12) if per_test == "offset_normalised" else m


def fit_joint(tests: list, v0: np.ndarray, mode: str, seed: int, starts: int = 8,
              timbral_test: int | None = None, min_scale: float = 0.0, per_test: str = "none",
              combination: float = 1.0, itd_calibration: np.ndarray | None = None) -> np.ndarray:
    """Least squares on the 0..100 scale over several listening tests at once, each test's mean
    squared error counting equally (``per_test``: after removing its mean error, and divided by
    its ratings' variance): ``tests`` is a list of ``(Ft (N, 3), Fs (N, S), y (N,))``.
    Free parameters: ``log w`` (3 timbral weights), the spatial ones of ``mode``
    (:func:`_unpack`) and ``log k``; multi-start L-BFGS from seeded initial points.
    ``timbral_test``: index of the test that alone fits the timbral weights (:func:`fit_timbral`
    on it, then fixed), so that the joint fit only sets the spatial parameters and the exponent.
    ``per_test``: :data:`PER_TEST` (:func:`_test_error`). ``combination``: the order of the sum of
    the two distortions (:func:`combine`). ``itd_calibration``: the rows that set the ``d_itd`` weight
    from the lateral ones at every step (:func:`with_itd_weight`; None: weight as in ``v0``).
    Returns the full theta (``log w``, spatial, ``log k``)."""
    from scipy.optimize import minimize

    rng = np.random.default_rng(seed)
    nt, ns = len(TIMBRAL_FEATURES), _n_spatial(mode)
    Ft_all = np.concatenate([t[0] for t in tests])
    scale = 1.0 / np.maximum(Ft_all.mean(axis=0), 1e-6)
    lw_fixed = None
    if timbral_test is not None:
        Ft0, _, y0 = tests[timbral_test]
        lw_fixed = fit_timbral(Ft0, y0, seed, starts)[:-1]

    def full(th):
        return th if lw_fixed is None else np.concatenate([lw_fixed, th])

    def loss(th):
        f = full(th)
        return sum(_test_error(joint_pred(f, Ft, Fs, v0, mode, combination, itd_calibration), y, per_test)
                   for Ft, Fs, y in tests)

    v_init = np.log(np.maximum(np.asarray(v0, dtype=np.float64)[:3], 1e-3)) if mode == "binaural" else np.zeros(ns)
    bounds = [(-12, 8)] * ns + [(math.log(0.2), math.log(5.0))]
    if min_scale > 0 and mode in ("scale", "statistic"):
        bounds[0] = (max(-12.0, math.log(min_scale)), 8)
    lo_s = np.array([b[0] for b in bounds[:ns]])
    if lw_fixed is None:
        bounds = [(-20, 10)] * nt + bounds
    best = None
    for _ in range(starts):
        th0 = np.concatenate([v_init[:ns] + rng.normal(0, 1.0, ns), [rng.normal(0, 0.5)]])
        th0[:ns] = np.maximum(th0[:ns], lo_s)
        if lw_fixed is None:
            th0 = np.concatenate([np.log(scale / nt) + rng.normal(0, 1.0, nt), th0])
        r = minimize(loss, th0, method="L-BFGS-B", bounds=bounds)
        if best is None or r.fun < best.fun - 1e-12:
            best = r
    return full(best.x)


def joint_cv(tests: list, groups: list, v0: np.ndarray, mode: str, seed: int, starts: int = 8,
             timbral_test: int | None = None, min_scale: float = 0.0, per_test: str = "none",
             combination: float = 1.0, itd_calibration: np.ndarray | None = None) -> list:
    """Held-out predictions per test: for each test and each of its groups (``groups[i] (N_i,)``
    labels: stimulus or trial), refit :func:`fit_joint` without that group (the other tests
    whole) and predict it. Returns a list of ``(N_i,)`` arrays."""
    out = []
    for i, (Ft, Fs, y) in enumerate(tests):
        g = np.asarray(groups[i])
        pred = np.full(len(y), np.nan)
        for lab in sorted(set(g.tolist())):
            test = g == lab
            train = [t if j != i else (Ft[~test], Fs[~test], y[~test]) for j, t in enumerate(tests)]
            th = fit_joint(train, v0, mode, seed, starts, timbral_test, min_scale, per_test, combination,
                           itd_calibration)
            pred[test] = joint_pred(th, Ft[test], Fs[test], v0, mode, combination, itd_calibration)
        out.append(pred)
    return out


def _monotone_pairs(records: list[dict], w: np.ndarray, families) -> list[tuple]:
    """Consecutive-severity pairs of every training sweep (family, format, source, scene):
    ``(T_lo, S_lo, T_hi, S_hi)`` -- timbral distortion and spatial features at the lower and
    the higher severity."""
    def dt(r):
        return float(sum(w[i] * r[n] for i, n in enumerate(TIMBRAL_FEATURES)))

    sweeps = {}
    for r in records:
        if r["family"] in families and r["severity"] > 0:
            sweeps.setdefault((r["family"], r["format"], r["source"], r.get("scene", 0)), []).append(r)
    pairs = []
    for rs in sweeps.values():
        rs = sorted(rs, key=lambda r: r["severity"])
        for a, b in zip(rs[:-1], rs[1:]):
            pairs.append((dt(a), np.array([a.get(n, 0.0) for n in SPATIAL_FEATURES]),
                          dt(b), np.array([b.get(n, 0.0) for n in SPATIAL_FEATURES])))
    return pairs


def fit_spatial(records: list[dict], w: np.ndarray, anchors, spatial, monotone_weight: float = 0.0,
                monotone_margin: float = 0.05, combination: float = 1.0) -> np.ndarray:
    """Spatial weights ``v (S,)``, S = len(SPATIAL_FEATURES) (the ``*_mean`` statistics and ``d_order`` at the lower bound: not fitted
    here): for each (spatial family, severity), the median total distortion
    ``combine(D_t, v . s, combination)`` (:func:`combine`; ``D_t + v . s`` at 1) over the sweeps
    should equal the median timbral distortion of the anchor families at that severity (log-domain least squares, v >= 0). Families that a
    format does not have simply contribute no rows.

    ``monotone_weight > 0`` adds the training sweeps' own order as data: for every pair of
    consecutive severities of one sweep (all families), a squared hinge on
    ``log D(lower) + log(1 + monotone_margin) - log D(higher)`` (mean over pairs, times
    ``monotone_weight``), i.e. the total distortion should grow by at least the margin from
    one severity to the next."""
    from scipy.optimize import minimize

    def dt(r):
        return float(sum(w[i] * r[n] for i, n in enumerate(TIMBRAL_FEATURES)))

    sevs = sorted({r["severity"] for r in records if r["severity"] > 0})
    target = {}
    for s in sevs:
        vals = [dt(r) for r in records if r["family"] in anchors and r["severity"] == s]
        if vals:
            target[s] = float(np.median(vals))
    groups = []
    for fam in spatial:
        for fmt in sorted({r["format"] for r in records if r["family"] == fam}):
            for s in sevs:
                rs = [r for r in records if r["family"] == fam and r["severity"] == s and r["format"] == fmt]
                if rs and s in target:
                    T = np.array([dt(r) for r in rs])
                    S = np.array([[r.get(n, 0.0) for n in SPATIAL_FEATURES] for r in rs])
                    groups.append((T, S, target[s]))
    if not groups:
        raise SpaqError("no synthetic spatial sweeps to fit the spatial weights")

    pairs = _monotone_pairs(records, w, list(anchors) + list(spatial)) if monotone_weight > 0 else []
    if pairs:
        t_lo = np.array([p[0] for p in pairs])
        s_lo = np.stack([p[1] for p in pairs])
        t_hi = np.array([p[2] for p in pairs])
        s_hi = np.stack([p[3] for p in pairs])
        margin = math.log1p(monotone_margin)

    def loss(lv):
        v = np.exp(lv)
        err = 0.0
        for T, S, tgt in groups:
            med = float(np.median(combine(T, spatial_distortion(S, v), combination)))
            err += (math.log(max(med, 1e-9)) - math.log(tgt)) ** 2
        err /= len(groups)
        if pairs:
            lo = np.log(np.maximum(combine(t_lo, spatial_distortion(s_lo, v), combination), 1e-9))
            hi = np.log(np.maximum(combine(t_hi, spatial_distortion(s_hi, v), combination), 1e-9))
            err += monotone_weight * float(np.mean(np.maximum(lo + margin - hi, 0.0) ** 2))
        return err

    free = np.array([n in SYNTHETIC_SPATIAL for n in SPATIAL_FEATURES])

    def full(lv):
        out = np.full(len(SPATIAL_FEATURES), -12.0)  # the *_mean statistics: lower bound (weight 0)
        out[free] = lv
        return out

    best = None
    for i in range(6):
        lv0 = np.full(int(free.sum()), -1.0 + i * 0.8)
        r = minimize(lambda lv: loss(full(lv)), lv0, method="Powell", bounds=[(-12, 8)] * int(free.sum()),
                     options={"xtol": 1e-4, "ftol": 1e-8, "maxiter": 20000})
        if best is None or r.fun < best.fun:
            best = r
    return full(best.x)


#: why the recipe sets each of its feature keys (:meth:`QualityTrainConfig.feature_params`), as the
#: parameters' provenance records it
FEATURE_CHOICES = {
    "head_turn": (
        "fixed by the recipe (head_turn; only pairs decoded at two different orders turn): between what the "
        "corpus ladders want (order truncation ordered on more sweeps the wider the range) and what the "
        "spatial-codings test's FOA items scored from their ambisonic form allow (their error grows beyond "
        "about 45 deg)"),
    "ild_mean_weights": (
        "fixed by the recipe (ild_mean_weights): d_ild_mean's bands weighted by the reference's sensation level "
        "(the lateral image follows the louder bands; a codec's ILD shift in a band that barely sounds moves it "
        "little); chosen on the corpus ladders' codec misses of version 10, with the two listening tests' "
        "cross-validation checked (benchmarks/results/quality_explorations.md)"),
    "ic_mean_weights": (
        "fixed by the recipe (ic_mean_weights): d_ic_mean's bands weighted by the share of the time they have "
        "interaural coherences (an image change in a band heard a third of the time lasts a third of the time); "
        "chosen on the corpus ladders' codec misses of version 10, the listening tests' cross-validation checked"),
    "gain_match": (
        "fixed by the recipe (gain_match): the overall gain match equalises the energy the front-end's bands hear "
        "(a volume setting follows what is heard; energy above the top band, 12.5 kHz, no longer turns the degraded "
        "signal up, which had made a 14 kHz low-pass of one scene read 100.0 binaurally and 72.9 in FOA); with "
        "'audible' (version 16) from 20 Hz up (a DC offset or infrasound is no sound: a 0.05 DC offset under noise at "
        "-26 dBFS read 15.8 with 'heard'); not fitted"),
}


# --------------------------------------------------------------------------- driver
def _metric(params=None, head_turn: dict | None = None, **feature_params):
    """The metric the recipe computes its features with: ``params``, or a neutral mapping with the
    recipe's feature keys (``head_turn``, ``ild_mean_weights``: :meth:`QualityTrainConfig.feature_params`)."""
    from ..metrics.quality import Quality

    # features in exact mode (full rate, float64): the definition the fast default approximates
    if params is None:
        params = {"mapping": QualityMapping().to_params(), "head_turn": head_turn, **feature_params}
    return Quality(params=params, fast=False)


def _synthetic_records(tc: QualityTrainConfig, metric, log=print) -> list[dict]:
    sy = tc.synthetic
    fams = list(sy["anchors"]) + list(sy["spatial"])
    sevs = [float(s) for s in sy["severities"]]
    recs = []
    idx = 0
    t0 = time.time()
    for fam in fams:
        for fmt in sy["formats"]:
            kind = "binaural" if fmt == "binaural" else "ambisonics"
            if kind not in FAMILIES[fam][2]:
                continue
            for src in sy["sources"]:
                for sc in range(int(sy["scenes"])):
                    idx += 1
                    ref, degs = sweep(fam, fmt, src, sevs, int(sy["seed"]), idx, duration_s=float(sy["duration_s"]),
                                      hrtf=sy["hrtf"], voices=sy["voices"], heads=sy["hrtf_swap_heads"],
                                      options=RECIPE_OPTIONS)
                    for s, f in zip(sevs, sweep_features(metric, ref, degs)):
                        recs.append({"family": fam, "format": fmt, "source": src, "scene": sc, "severity": s, **f})
                    log(f"  synthetic {fam}/{fmt}/{src}/{sc} ({time.time() - t0:.0f} s)")
    return recs


def feature_table_path(workdir, stem: str, kind: str, tc: QualityTrainConfig, align: bool = True) -> Path:
    """Where ``spaq train quality`` caches a feature table in ``workdir``: ``<stem>_<kind>[_aligned]_<key>.csv``.

    ``kind``: ``mushra``, ``param_coding``, ``param_coding_ambisonic`` or ``synthetic``. The key (16 hex digits) hashes what the
    table's values depend on: the metric's name and version (its features and the ambisonics decoder
    change with it), the feature names, the recipe's section of that data (and, for the synthetic
    sweeps, the corpus-engine options they are rendered with and :data:`spaq.data.ENGINE_VERSION`) and
    the delay alignment. A workdir left by another version of spaq, or by another recipe, then gets its
    tables made again instead of being read back as if they were this recipe's."""
    from dataclasses import asdict

    from ..data import ENGINE_VERSION
    from ..metrics.quality import Quality

    section = {"mushra": tc.mushra, "param_coding": tc.param_coding, "param_coding_ambisonic": tc.param_coding,
               "synthetic": tc.synthetic}[kind]
    ident = {"metric": [Quality.name, Quality.version], "features": [list(TIMBRAL_FEATURES), list(SPATIAL_FEATURES)],
             "kind": kind, "section": asdict(section)}
    if kind in ("synthetic", "param_coding_ambisonic") and tc.head_turn.as_params():  # decoded under it
        ident["head_turn"] = {**tc.head_turn.as_params(), "turns": "pairs decoded at different orders"}
    if tc.ild_mean_weights != "equal":  # d_ild_mean's values depend on it, in every table
        ident["ild_mean_weights"] = tc.ild_mean_weights
    if tc.ic_mean_weights != "equal":  # and d_ic_mean's on this
        ident["ic_mean_weights"] = tc.ic_mean_weights
    if tc.gain_match != "broadband":  # every level feature, in every table
        ident["gain_match"] = tc.gain_match
    if kind == "synthetic":  # rendered by the corpus engine; no delay alignment
        ident.update(options=RECIPE_OPTIONS, engine=ENGINE_VERSION)
        suffix = ""
    elif kind == "param_coding_ambisonic":  # one generator's signals, no delay between them
        suffix = ""
    else:  # real recordings
        ident["align"] = bool(align)
        suffix = "_aligned" if align else ""
    return Path(workdir) / f"{stem}_{kind}{suffix}_{json_sha256(ident)[:16]}.csv"


def _cached_table(path: Path, make, log=print):
    import pandas as pd

    if path.is_file():
        log(f"features from {path}")
        return pd.read_csv(path)
    t = make()
    atomic_write(path, lambda tmp: t.to_csv(tmp, index=False))  # a cut-off run leaves no partial table
    return pd.read_csv(path)  # the same values a later run reads back (fresh and cached runs agree)


def _matrices(df) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(Ft (N, 3), Fs (N, S), y (N,))`` of a feature table (absent spatial features: 0)."""
    Fs = np.stack([np.nan_to_num(df[n].to_numpy(dtype=np.float64)) if n in df else np.zeros(len(df))
                   for n in SPATIAL_FEATURES], axis=1)
    return df[list(TIMBRAL_FEATURES)].to_numpy(dtype=np.float64), Fs, df["mean"].to_numpy(dtype=np.float64)


def _cv_stats(pred: np.ndarray, y: np.ndarray) -> dict:
    from scipy.stats import pearsonr, spearmanr

    return {"pearson": float(pearsonr(pred, y)[0]), "spearman": float(spearmanr(pred, y)[0]),
            "rmse": float(np.sqrt(np.mean((pred - y) ** 2))), "n": int(len(y))}


def train_quality(tc: QualityTrainConfig, out, log=print, workdir=None) -> dict:
    """Run the recipe; write the parameters JSON to ``out`` and the fitting data in ``workdir``
    (default: next to it; :func:`feature_table_path`: ``<out stem>_mushra_aligned_<key>.csv``, ...,
    reused by a later run with the same key). Returns a summary.

    Steps: (1) features of the speech-codec MUSHRA half (delay-aligned) and timbral weights +
    exponent fitted on it alone; (2) synthetic sweeps: the spatial weights ``v0`` matched to the
    timbral anchors with those weights (version 1's recipe: their ratios); (3) with
    ``param_coding.use``: the joint fit on both listening tests (timbral weights, the spatial
    parameters of ``fit.spatial``, exponent), each test's mean squared error counting equally
    (as ``fit.per_test`` compares them),
    with leave-one-stimulus-out / leave-one-trial-out cross-validation of the same procedure."""
    check_itd_lateral(tc)  # a recipe cross-check that itd_calibration would otherwise meet after the feature runs
    torch.manual_seed(tc.seed)
    out = Path(out)
    workdir = Path(workdir) if workdir else out.parent
    workdir.mkdir(parents=True, exist_ok=True)
    metric = _metric(**tc.feature_params())
    t0 = time.time()
    starts = int(tc.fit["starts"])
    mode = str(tc.fit["spatial"])
    if mode not in SPATIAL_MODES:
        raise SpaqError(f"fit.spatial must be one of {', '.join(SPATIAL_MODES)}, got {mode!r}")
    if tc.fit["per_test"] not in PER_TEST:
        raise SpaqError(f"fit.per_test must be one of {', '.join(PER_TEST)}, got {tc.fit['per_test']!r}")
    if tc.fit["timbral"] not in ("speech", "joint"):
        raise SpaqError(f"fit.timbral must be 'speech' or 'joint', got {tc.fit['timbral']!r}")
    tt = 0 if tc.fit["timbral"] == "speech" else None
    pc_order = float(tc.fit["combination"])
    if not pc_order >= 1.0:
        raise SpaqError(f"fit.combination must be >= 1 (1: the distortions' sum), got {tc.fit['combination']!r}")
    align = bool(tc.mushra["align"])
    root = tc.mushra_dir()
    if not root.is_dir():
        raise SpaqError(f"MUSHRA data not found at {root} (mushra.path in the config)")
    table = mushra_table(root, tc.mushra["ratings"])
    use_pc = bool(tc.param_coding["use"])
    if use_pc:  # check the rebuilt items before the long feature runs
        pc_root = tc.param_coding_dir()
        pc_table = param_coding_table(pc_root, tc.param_coding["ratings"])
        if bool(tc.param_coding["ambisonics"]) and not feature_table_path(
                workdir, out.stem, "param_coding_ambisonic", tc).is_file():  # needed only where no table is kept
            check_ambisonic_items(pc_root, pc_table)
    mt = _cached_table(feature_table_path(workdir, out.stem, "mushra", tc, align),
                       lambda: mushra_features(root, table, metric, log, align=align), log)
    F, _, y = _matrices(mt)
    theta = fit_timbral(F, y, tc.seed, starts)
    w0 = np.exp(theta[:-1])
    cv = loso_predictions(mt, tc.seed, starts)
    coded = (mt["condition"] != "Reference").to_numpy()
    log(f"timbral fit (speech alone): w={w0.round(4).tolist()} k={math.exp(theta[-1]):.3f}; LOSO Pearson coded "
        f"{_cv_stats(cv[coded], y[coded])['pearson']:.3f} ({time.time() - t0:.0f} s)")

    recs = _cached_table(feature_table_path(workdir, out.stem, "synthetic", tc),
                         lambda: __import__("pandas").DataFrame(_synthetic_records(tc, metric, log)), log)
    recs = recs.to_dict("records")
    for r in recs:
        for n in SPATIAL_FEATURES:
            if n not in r or r[n] != r[n]:
                r[n] = 0.0
    lv = fit_spatial(recs, w0, tc.synthetic["anchors"], tc.synthetic["spatial"],
                     monotone_weight=float(tc.fit["monotone_weight"]), monotone_margin=float(tc.fit["monotone_margin"]),
                     combination=pc_order)
    v0 = np.where(lv <= -11.9, 0.0, np.exp(lv))  # at the lower bound: the data give this feature no weight
    log(f"synthetic spatial fit: v0={dict(zip(SPATIAL_FEATURES, v0.round(5).tolist()))} ({time.time() - t0:.0f} s)")
    itd_cal = itd_calibration(recs, tc)  # version 12: the rows that set the d_itd weight from the lateral ones
    itd_family = str(tc.fit["itd_lateral"])

    cvs = {"speech_codec_loso_timbral_only": _cv_stats(cv[coded], y[coded])}
    if use_pc:
        pt = _cached_table(feature_table_path(workdir, out.stem, "param_coding", tc, align),
                           lambda: param_coding_features(pc_root, pc_table, metric, log, align=align), log)
        tests = [_matrices(mt), _matrices(pt)]
        groups = [mt["stimulus"].to_numpy(), pt["trial"].to_numpy()]
        ms = float(tc.fit["min_spatial_scale"])
        pto = str(tc.fit["per_test"])
        th = fit_joint(tests, v0, mode, tc.seed, starts, tt, ms, pto, pc_order, itd_cal)
        w, v, k = _unpack(th, v0, mode)
        v = with_itd_weight(v, itd_cal)
        held = joint_cv(tests, groups, v0, mode, tc.seed, starts, tt, ms, pto, pc_order, itd_cal)
        cvs["speech_codec_loso_coded"] = _cv_stats(held[0][coded], y[coded])
        cvs["speech_codec_loso_all"] = _cv_stats(held[0], y)
        cvs["param_coding_loto"] = _cv_stats(held[1], tests[1][2])
        cvs["fit_param_coding"] = _cv_stats(joint_pred(th, *tests[1][:2], v0, mode, pc_order, itd_cal), tests[1][2])
        cvs["fit_speech_codec_coded"] = _cv_stats(joint_pred(th, *tests[0][:2], v0, mode, pc_order, itd_cal)[coded],
                                                  y[coded])
        heldout = {"speech_codec": [float(x) for x in held[0]], "param_coding": [float(x) for x in held[1]]}
        log(f"joint fit ({mode}): w={w.round(4).tolist()} v={v.round(4).tolist()} k={k:.3f}; LOSO coded "
            f"{cvs['speech_codec_loso_coded']['pearson']:.3f}, LOTO {cvs['param_coding_loto']['pearson']:.3f} "
            f"({time.time() - t0:.0f} s)")
        if bool(tc.param_coding["ambisonics"]):
            at = _cached_table(feature_table_path(workdir, out.stem, "param_coding_ambisonic", tc),
                               lambda: param_coding_ambisonic_features(pc_root, pc_table, metric, log), log)
            aFt, aFs, ay = _matrices(at)
            offset = float(np.mean(joint_pred(th, *tests[1][:2], v0, mode, pc_order, itd_cal) - tests[1][2]))
            pred, cvs["foa_ambisonic_loto"] = order_weight_cv(aFt, aFs, ay, w, v, k, offset, pc_order)
            v[SPATIAL_FEATURES.index("d_order")] = fit_order_weight(aFt, aFs, ay, w, v, k, offset, pc_order)
            heldout["foa_ambisonic"] = [float(x) for x in pred]
            log(f"d_order weight {v[SPATIAL_FEATURES.index('d_order')]:.4f} from the {len(ay)} ambisonic "
                f"{ORDER_CONDITION} items (test offset {offset:+.2f}); held out RMSE "
                f"{cvs['foa_ambisonic_loto']['rmse_offset']:.2f} ({time.time() - t0:.0f} s)")
    else:
        w, v, k = w0, with_itd_weight(v0, itd_cal), math.exp(theta[-1])
        heldout = {"speech_codec": [float(x) for x in cv]}
    mapping = {"timbral_weights": dict(zip(TIMBRAL_FEATURES, [float(x) for x in w])),
               "spatial_weights": dict(zip(SPATIAL_FEATURES, [float(x) for x in v])), "exponent": float(k),
               "combination": pc_order}
    speech = ("the shared speech-codec MUSHRA half (stim_01-08, mean rating per stimulus and condition, filtered "
              "raters, " + ("delay-aligned" if align else "not aligned") + ")")
    pc = ("the 42 rebuilt items of the shared binaural MUSHRA of parametric spatial-audio codings (7 trials x 6 "
          "codings, mean of 22 ratings)")
    syn = ("synthetic sweeps (corpus engine, KU100, seeds/voices of the config): median distortion of spatial "
           "families matched to timbral anchors at equal severity")
    if use_pc:
        joint = f"joint least squares on {speech} and {pc}" + (
            {"offset": " (each test's mean error removed: its raters' offset on the scale)",
             "offset_normalised": " (each test's mean error removed, its raters' offset on the scale, and its squared "
                                  "error divided by its ratings' variance)"}.get(str(tc.fit["per_test"]), ""))
        prov = {
            "timbral_weights": (f"least squares on {speech} alone (with its own exponent), then fixed" if tt == 0
                                else joint),
            "exponent": joint,
            "spatial_weights": {
                "fixed": f"{syn} (not refitted)",
                "scale": f"ratios from {syn}; one common factor (spatial against timbral) from the joint fit",
                "binaural": f"d_ild_db, d_ic, d_ipd from the joint fit; d_directiveness, d_direction from {syn}",
                "statistic": (f"d_ild_db, d_ic, d_ipd, d_directiveness, d_direction: ratios from {syn}, one common "
                              f"factor from the joint fit; d_ic_mean from the joint fit; d_ild_mean: the d_ild_db "
                              f"weight of {syn} (not scaled)"),
            }[mode],
        }
        if bool(tc.param_coding["ambisonics"]):
            prov["spatial_weights"] += (f"; d_order: least squares on the {ORDER_CONDITION} condition of the spatial-"
                                        f"codings test scored from its ambisonic form (third-order reference against "
                                        f"its first four channels, 7 items) against the ratings plus the test's mean "
                                        f"error, every other parameter fixed")
    else:
        prov = {"timbral_weights": f"least squares on {speech}, with the exponent",
                "exponent": "same fit as the timbral weights", "spatial_weights": syn}
    if itd_cal is not None:
        prov["spatial_weights"] += (f"; d_itd: not fitted, the median ratio of the lateral terms (d_ild_db, d_ipd, "
                                    f"d_ild_mean, with the weights above) to d_itd on the {len(itd_cal)} synthetic "
                                    f"{itd_family} sweeps at their lowest severity (a small displacement, which both cues "
                                    f"read), set again at every step of the fits; it enters as max(lateral, d_itd term)")
    prov["combination"] = (f"fixed by the recipe (fit.combination = {pc_order:g}): "
                           + ("the sum of the timbral and spatial distortions" if pc_order == 1.0 else
                              "their Euclidean distance over the two perceptual dimensions" if pc_order == 2.0 else
                              f"the order-{pc_order:g} Minkowski sum of the timbral and spatial distortions"))
    params = {
        "model": "spaq-quality",
        # 13: the recipe of version 12 under the pair rule of spaq.spatial.decoders.pair_orders (W alone at the
        # other signal's order), which changes the features of the recipe's W-alone pairs
        # 14: the timbral feature noisiness, fitted with the other timbral weights
        # 15: the gain match on the energy the front-end's bands hear (gain_match "heard"); 16: from 20 Hz up
        # ("audible")
        "version": (16 if tc.gain_match == "audible" else 15 if tc.gain_match == "heard" else 14 if itd_cal is not None else 11 if tc.ild_mean_weights != "equal" or tc.ic_mean_weights != "equal"
                    else 10 if tc.head_turn.as_params() else 9),
        "mapping": mapping,
        "provenance": {
            **prov,
            "synthetic_spatial_weights": dict(zip(SPATIAL_FEATURES, [float(x) for x in v0])),
            "recipe": tc.to_dict(),
            "features_sha256": hashlib.sha256(mt[list(TIMBRAL_FEATURES)].round(10).to_csv(index=False).encode()).hexdigest(),
        },
        "cross_validation": cvs,
    }
    for key, value in tc.feature_params().items():  # what the features depend on, and why the recipe chose it
        params[key] = value
        params["provenance"][key] = FEATURE_CHOICES[key]
    log(f"fitted in {time.time() - t0:.0f} s")
    text = json.dumps(params, indent=1, sort_keys=True) + "\n"
    atomic_write(out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
    sha = hashlib.sha256(text.encode()).hexdigest()
    log(f"wrote {out} (sha256 {sha})")
    hpath = workdir / f"{out.stem}_heldout.json"
    atomic_write(hpath, lambda tmp: Path(tmp).write_text(json.dumps(heldout) + "\n", encoding="utf-8"))
    return {"out": str(out), "sha256": sha, "mapping": mapping, "cross_validation": cvs}
