"""Sound-source localisation of a binaural or ambisonic stream: :func:`localize`.

* binaural, ``method="templates"`` (the default unless weights are given): training-free
  matching of ILD/IPD/coherence/spectral-shape cues against the cue templates of HRTF sets
  (:mod:`spaq.localization.templates`);
* binaural, ``method="bast"``: the BAST localiser (:mod:`spaq.models.bast`, shipped weights
  ``resources/weights/bast_ku100.pt`` trained on the Neumann KU 100 HRTFs) on analysis
  windows of ``window_s`` (hop half a window); the overall direction is the energy-weighted
  mean of the windows' unit vectors, its confidence the length of that mean (1 = all
  windows agree). Several sources are separated by clustering the windows' directions, so
  they must be active at different times.
* ambisonics (ACN/SN3D, any order >= 1): the active intensity vector,
  :func:`spaq.auditory.doa.intensity_doa` (training free).

Angles in degrees, azimuth counter-clockwise from the front, elevation up.
"""
from __future__ import annotations

import numbers
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from ..errors import SpaqInputError
from ..spatial.angles import cart2sph, lateral_angle, sph2cart
from ..threads import intra_op_threads, numpy_blas_one_thread

__all__ = ["LocalizationResult", "LocalizationComparison", "localize", "compare_localization", "load_localizer",
           "default_weights_path", "binaural_window_directions", "WEIGHTS_NAME", "WEIGHTS_ENV"]

WEIGHTS_NAME = "bast_ku100"  # entry of spaq.weights.REGISTRY: the log-mel BAST (explicit weights, env var)
WEIGHTS_ENV = "SPAQ_LOCALIZER_WEIGHTS"  # that entry's env_var
DEFAULT_WEIGHTS = "bast_ku100.pt"
CUES_WEIGHTS_NAME = "bast_cues"  # the cue-feature BAST (issue 16): method="bast" without weights, "auto" in rooms
#: the warning of a binaural answer from input where the direct sound does not dominate (template method, the
#: templates' room gate, ``room_gate``: one source, the coherence of the bands up to 1.5 kHz below 0.95, where
#: the head shadows little, so that a far-lateral source stays coherent; several sources, all bands below
#: ``drr_coherence``; exact-head matches excepted): rooms and diffuse noise; the figures are the held-out KU100
#: rooms set of benchmarks/results/localizer_v2.md (shipped settings)
REVERBERANT_WARNING = ("low direct-sound coherence ({coherence:.3f} < {threshold:g}{bands}: a room, diffuse noise, or "
                       "several sounds at once -- simultaneous sources (--n-sources) or a phantom image between "
                       "loudspeakers, where no single direction fits): in a room the left-right (lateral) angle holds, "
                       "elevation and front/back less (held-out KU100 rooms, dereverberated: median lateral error 2.0 "
                       "deg, direction 7.8 deg, front-back confusions 16 %)")


def reverberant_warning(gate: dict) -> str:
    """:data:`REVERBERANT_WARNING` for a template result's ``room_gate``."""
    below = gate.get("below_hz")
    bands = "" if below is None or not np.isfinite(below) else f" below {below / 1000:g} kHz"
    return REVERBERANT_WARNING.format(coherence=gate["coherence"], threshold=gate["threshold"], bands=bands)


_MODELS: dict = {}


@dataclass
class LocalizationResult:
    """Directions found in one stream.

    ``azimuth_deg``, ``elevation_deg``, ``confidence``: ``(n_sources,)`` (strongest first;
    NaN where fewer sources were found). Trajectory: ``frame_times_s (n_frames,)``,
    ``frame_azimuth_deg``/``frame_elevation_deg``/``frame_confidence``
    ``(n_sources, n_frames)``, NaN where a frame has no estimate for a source.
    ``class_probabilities``: mean class posterior of the binaural model's class head (or None).
    ``warnings``: one line each on how far the answer can be trusted (e.g. reverberant binaural input:
    :data:`REVERBERANT_WARNING`). ``to_dict`` also gives each source's lateral angle (from the median
    plane, + left: :func:`spaq.spatial.angles.lateral_angle`), the part of a direction that interaural
    cues fix even in a room.
    """

    format: str
    method: str
    sample_rate: int
    azimuth_deg: np.ndarray
    elevation_deg: np.ndarray
    confidence: np.ndarray
    frame_times_s: np.ndarray
    frame_azimuth_deg: np.ndarray
    frame_elevation_deg: np.ndarray
    frame_confidence: np.ndarray
    class_probabilities: dict | None = None
    provenance: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    @property
    def n_sources(self) -> int:
        return int(self.azimuth_deg.shape[0])

    def to_dict(self, frames: bool = False) -> dict:
        def clean(a):
            a = np.asarray(a, dtype=np.float64)
            return np.where(np.isnan(a), None, np.round(a, 3)).tolist()

        lat = lateral_angle(sph2cart(np.nan_to_num(self.azimuth_deg), np.nan_to_num(self.elevation_deg)))
        lat = np.where(np.isnan(self.azimuth_deg), np.nan, lat)
        d = {
            "format": self.format,
            "method": self.method,
            "sample_rate": self.sample_rate,
            "sources": [
                {"azimuth_deg": clean(self.azimuth_deg[i]), "elevation_deg": clean(self.elevation_deg[i]),
                 "lateral_deg": clean(lat[i]), "confidence": clean(self.confidence[i])}
                for i in range(self.n_sources)
            ],
            "class_probabilities": self.class_probabilities,
            "warnings": list(self.warnings),
            "provenance": self.provenance,
        }
        if frames:
            d["frames"] = {
                "time_s": clean(self.frame_times_s),
                "azimuth_deg": clean(self.frame_azimuth_deg),
                "elevation_deg": clean(self.frame_elevation_deg),
                "confidence": clean(self.frame_confidence),
            }
        return d


# --------------------------------------------------------------------------- weights


def default_weights_path() -> Path:
    """The packaged checkpoint (``spaq/resources/weights/bast_ku100.pt``, registry entry
    :data:`WEIGHTS_NAME` of :mod:`spaq.weights`)."""
    return Path(str(resources.files("spaq") / "resources" / "weights" / DEFAULT_WEIGHTS))


def load_localizer(weights=None, name: str = WEIGHTS_NAME):
    """``(model, meta)`` for ``weights`` (a path, or a packaged localizer's name: ``bast_ku100``,
    ``bast_cues``, with or without ``.pt``), else the registry entry ``name``'s env var
    (``$SPAQ_LOCALIZER_WEIGHTS`` for :data:`WEIGHTS_NAME`), else its packaged checkpoint, whose
    sha256 must match the registry's (:func:`spaq.weights.resolve`); loaded by
    :func:`spaq.models.checkpoint.load` (architecture "bast"). Cached per path and modification time."""
    from .. import weights as registry
    from ..models import checkpoint

    if weights is not None and not Path(weights).expanduser().is_file():
        # a packaged localizer by name ("bast_ku100", or "bast_ku100.pt" as the README writes it)
        stem = str(weights)[:-3] if str(weights).endswith(".pt") else str(weights)
        if stem in (WEIGHTS_NAME, CUES_WEIGHTS_NAME):
            name, weights = stem, None
    w = registry.resolve(name, path=weights)
    p = w.path
    key = (str(p.resolve()), p.stat().st_mtime)
    if key not in _MODELS:
        model, meta = checkpoint.load(p, architecture="bast", sha256=w.sha256)
        meta["weights_source"] = w.source
        if len(_MODELS) > 4:
            _MODELS.clear()
        _MODELS[key] = (model, meta)
    return _MODELS[key]


# --------------------------------------------------------------------------- helpers


def _cluster(u: np.ndarray, w: np.ndarray, n: int, cap_deg: float = 20.0):
    """Greedy clustering of unit vectors ``(K, 3)`` with weights ``(K,)`` into ``n`` directions:
    the vector with the most weight within ``cap_deg`` seeds a cluster, a weighted mean shift
    refines it, its members are removed. Returns ``(dirs (m, 3), share (m,), labels (K,))``."""
    cos_cap = np.cos(np.radians(cap_deg))
    remaining = w.astype(np.float64).copy()
    total = float(w.sum())
    dirs, shares = [], []
    for _ in range(n):
        if remaining.sum() <= 1e-12 * max(total, 1e-300):
            break
        near = (u @ u.T) >= cos_cap
        seed = int(np.argmax(near @ remaining))
        d = u[seed]
        for _ in range(5):
            m = ((u @ d >= cos_cap) * remaining) @ u
            if np.linalg.norm(m) == 0:
                break
            d = m / np.linalg.norm(m)
        inside = (u @ d) >= cos_cap
        shares.append(float(w[inside].sum() / total))
        remaining[inside] = 0.0
        dirs.append(d)
    D = np.array(dirs).reshape(-1, 3)
    labels = np.argmax(u @ D.T, axis=1) if len(dirs) else np.zeros(len(u), dtype=int)
    return D, np.array(shares), labels


def check_source_count(n_sources) -> int:
    """``n_sources`` as an int, or a one-line :class:`SpaqInputError` where it is not a whole number >= 1
    (the one rule for every entry point that takes it: :func:`localize`, :func:`spaq.score`)."""
    if isinstance(n_sources, bool) or not isinstance(n_sources, numbers.Integral) or int(n_sources) < 1:
        raise SpaqInputError(f"n_sources must be a whole number >= 1, got {n_sources!r}")
    return int(n_sources)


def _load_input(x, sample_rate):
    if isinstance(x, (str, os.PathLike)):
        from ..io import check_file_rate, read_audio

        arr, sr = read_audio(x)
        name = str(x)
        check_file_rate(sr, sample_rate, name)  # a sample_rate that is not the file's: refused, as spaq.score does
    else:
        from ..io import as_audio_array, check_input_rate

        arr = as_audio_array(x, "the signal")  # the readers' one conversion: integer PCM scaled, complex refused
        if sample_rate is None:
            raise SpaqInputError("sample_rate is required when localising an array")
        sr, name = check_input_rate(sample_rate, "sample_rate"), "array"
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2:
            raise SpaqInputError(f"expected audio of shape (channels, time), got {tuple(arr.shape)}")
        if arr.shape[0] > arr.shape[1] > 0:
            raise SpaqInputError(f"the signal has shape {tuple(arr.shape)}: {arr.shape[0]} channels and {arr.shape[1]} "
                                 "samples; expected (channels, time) — is it transposed (time, channels)?")
        arr = arr.astype(np.float64)
    if arr.shape[-1] == 0:
        raise SpaqInputError(f"{name} has no samples")
    if not np.all(np.isfinite(arr)):
        raise SpaqInputError(f"{name} contains NaN or infinite samples")
    return arr, int(sr), name


def _resolve_format(fmt, n_ch: int, name: str):
    from ..formats import SpatialFormat, detect_format, parse_format

    if fmt is None:
        try:
            f = detect_format(n_ch)
        except ValueError as e:
            raise SpaqInputError(f"{name}: {e}") from None
    elif isinstance(fmt, SpatialFormat):
        f = fmt
    else:
        try:
            f = parse_format(str(fmt))
        except ValueError as e:
            raise SpaqInputError(str(e)) from None
    if f.kind == "mono":
        raise SpaqInputError(f"{name} is mono (1 channel): a direction needs binaural (2 channels) or ambisonics")
    if f.kind == "layout":  # loudspeaker feeds: rendered binaurally (virtual loudspeakers), then localised
        if n_ch != f.n_channels:
            raise SpaqInputError(f"{name}: {f.describe()} has {f.n_channels} channels, the signal {n_ch}")
        return f
    if f.is_binaural and n_ch != 2:
        raise SpaqInputError(f"{name}: the binaural localizer needs 2 channels (left, right), got {n_ch}")
    if f.is_ambisonics:
        from ..formats import SpatialFormat as SF
        from ..spatial.sh import order_from_channels

        if f.normalisation == "fuma" and (n_ch != 4 or f.order not in (0, 1)):
            from ..formats import fuma_order_message

            raise SpaqInputError(fuma_order_message(n_ch, name))
        order = order_from_channels(n_ch)
        if order is None:
            raise SpaqInputError(f"{name}: {n_ch} channels is not ambisonics ((N+1)^2 channels, ACN order)")
        if f.order and f.order != order:
            raise SpaqInputError(f"{name}: format says order {f.order} but it has {n_ch} channels (order {order})")
        f = SF("ambisonics", order, f.normalisation)
    return f


# --------------------------------------------------------------------------- localisation


BINAURAL_METHODS = ("auto", "templates", "bast")
#: what method="auto" uses for binaural input when no weights are given, by the signal's direct-sound
#: coherence (:func:`direct_coherence`): template matching when it is at least :data:`AUTO_COHERENCE`
#: (coherent, anechoic-like signals), the cue-feature BAST (``bast_cues``) below (reverberant: anechoic
#: templates fit no frame there). The threshold is chosen on development scenes
#: (benchmarks/eval_localizer_cues.py --seed 777, results/localizer_cues_dev.json): the shipped bast_cues
#: (250 training steps, all the CPU this machine could give it) lost to templates on every development set,
#: rooms included (median 70 vs 17 deg), so the threshold is 0 and "auto" means templates; a better-trained
#: cue checkpoint (the recipe with more steps) only needs a new threshold here.
AUTO_BINAURAL = "templates"
#: the shortest binaural signal any method localises: one 20 ms analysis frame of the cue front-end
BINAURAL_MIN_S = 0.02
AUTO_COHERENCE = 0.0


def _cue_input(arr: np.ndarray, sr: int, coarse: bool = False):
    """Binaural ``arr (2, T)`` at ``sr`` -> at 48 kHz and -30 dBFS RMS (cues do not depend on level;
    the front-end's hearing-threshold floor would swallow a quiet recording's cues), its cue features
    ``(6, F, nf)`` and band levels ``(2, F, nf)`` (:func:`spaq.auditory.binaural_features`, 20 ms frames):
    computed once, shared by the coherence test and the templates (``coarse``: their front-end,
    :data:`spaq.localization.templates.OBSERVATION_FRONTEND`, and a fourth element, the same cues at the
    room settings' frame length, :data:`spaq.localization.templates.REVERBERANT`) or the cue BAST (the
    front-end it was trained with, ``exact=False``)."""
    from ..auditory.binaural_features import binaural_features, feature_frontend
    from ..io import resample

    x = np.asarray(arr, dtype=np.float64)
    if int(sr) != 48000:
        x = resample(x, int(sr), 48000)
    rms = float(np.sqrt(np.mean(x ** 2)))
    if rms > 0:
        x = x * (10 ** (-30 / 20) / rms)
    if coarse:  # the templates' own observation, at 20 ms and at the room settings' frames in one pass
        from .templates import REVERBERANT, _observed_cues

        (f, lev), room = _observed_cues(x, 20.0, also_ms=REVERBERANT["frame_ms"])
        return x, f, lev, room
    with intra_op_threads(1):
        f, lev = binaural_features(torch.from_numpy(np.ascontiguousarray(x)),
                                   feature_frontend(48000, frame_ms=20.0, exact=False))
    return x, f, lev


def direct_coherence(feats: torch.Tensor, levels: torch.Tensor, range_db: float = 30.0) -> float:
    """Power-weighted mean interaural coherence of the active time-frequency units (within
    ``range_db`` of the loudest) of cue features ``(6, F, nf)`` / levels ``(2, F, nf)``: near 1 for
    one direct sound, lower with reverberation, diffuse noise or several sources."""
    lev = levels.to(torch.float64).max(dim=0).values
    p = 10 ** (lev / 10) * (lev >= lev.max() - range_db)
    return float((feats[3].to(torch.float64) * p).sum() / p.sum().clamp_min(1e-30))


@numpy_blas_one_thread()  # numpy's BLAS threads busy-wait and take the second stream's core (spaq.threads)
def localize(x, sample_rate: int | None = None, format=None, *, n_sources: int = 1, weights=None,
             frame_s: float | None = None, silence_db: float = -90.0, active_range_db: float = 30.0,
             overlap: float | None = None, method: str = "auto", hrtf=None, fmt=None) -> LocalizationResult:
    """Localise the source(s) in one stream ``x``: a file path or an array ``(channels, time)``
    (``sample_rate`` needed for arrays). ``format`` (or ``fmt``, as ``spaq.score`` names it): "binaural",
    "foa", "hoa3", ... or None
    (2 channels: binaural, (N+1)^2: ambisonics ACN/SN3D). Binaural input at another rate
    than the model's is resampled. ``frame_s``: trajectory frame (ambisonics; binaural
    frames are the model's analysis windows, about 0.47 s for the shipped models, overlapping by
    ``overlap``; None: 0.5 for the cue model, 0 for log-mel). Silence (RMS below ``silence_db``
    dBFS) raises :class:`SpaqInputError`: there is no direction to find.

    ``method`` (binaural): "bast" (a trained model: ``weights`` or ``$SPAQ_LOCALIZER_WEIGHTS``, else
    the packaged cue-feature model ``bast_cues``), "templates" (training-free template
    matching against the cues of HRTF set ``hrtf`` or the best-fitting of a list of them,
    default KU100 and SONICOM subject 1:
    :mod:`spaq.localization.templates`) or "auto" ("bast" when ``weights`` is given, "templates"
    when ``hrtf`` is or for several sources; else by the signal's direct-sound coherence
    (:func:`direct_coherence`): templates when it is at least :data:`AUTO_COHERENCE`, the cue BAST
    below, the method measured better on scenes of that kind). ``provenance["method_choice"]``
    says which and why."""
    if method not in BINAURAL_METHODS:
        raise SpaqInputError(f"unknown localisation method {method!r}; use one of {', '.join(BINAURAL_METHODS)}")
    choice = None
    if method == "auto":
        if hrtf is not None:
            method, choice = "templates", "templates: an HRTF set was given"
        elif weights is not None or os.environ.get(WEIGHTS_ENV):
            method, choice = "bast", "bast: weights given"
    elif method == "bast":
        choice = "bast: asked for"
    else:
        choice = "templates: asked for"
    n_sources = check_source_count(n_sources)
    if frame_s is not None and (isinstance(frame_s, bool) or not isinstance(frame_s, numbers.Real) or not frame_s > 0):
        raise SpaqInputError(f"frame_s must be a number of seconds > 0, got {frame_s!r}")
    from ..formats import format_argument

    format = format_argument(fmt, format)
    arr, sr, name = _load_input(x, sample_rate)
    fmt = _resolve_format(format, arr.shape[0], name)
    power = float(np.mean(np.square(arr, dtype=np.float64)))
    if power == 0.0:
        raise SpaqInputError(f"{name} is silent (all samples are zero): no direction can be estimated")
    rms_db = 10 * np.log10(power)
    if rms_db < silence_db:
        raise SpaqInputError(f"{name} is silent (RMS {rms_db:.0f} dBFS): no direction can be estimated")
    from ..spatial.checks import format_warnings

    notes = format_warnings(arr, fmt, sr, name)  # content that does not fit the format (the loaders' check)
    layout_intensity = fmt.kind == "layout" and method == "auto" and hrtf is None and weights is None
    if fmt.kind == "layout" and not layout_intensity:  # a binaural method asked for: the listener's view
        from ..spatial.layouts import render_layout_binaural

        y = render_layout_binaural(arr, fmt.layout_spec, sample_rate=sr)
        res = _localize_binaural_any(y, sr, name, n_sources, weights, active_range_db, overlap, method, choice,
                                     hrtf, frame_s)
        res.format = f"{fmt.describe()}, rendered binaurally (virtual loudspeakers, default HRTF)"
        res = _rate_note(res, sr)
    elif fmt.is_ambisonics or layout_intensity:
        from ..auditory.doa import intensity_doa

        if layout_intensity:  # the feeds as plane waves from their loudspeakers: exact for panned and separate sources
            from ..spatial.layouts import layout_to_ambisonics

            amb, norm = layout_to_ambisonics(arr, fmt.layout_spec, order=1), "sn3d"
            how = ("active intensity vector of the loudspeaker feeds encoded as plane waves from their nominal "
                   "directions (first-order ambisonics, LFE dropped)")
        else:
            amb, norm, how = arr, fmt.normalisation, "active intensity vector (first-order channels)"
        r = intensity_doa(amb, sr, n_sources=n_sources, frame_s=frame_s or 0.1, normalisation=norm)
        res = LocalizationResult(
            format=fmt.describe(), method="intensity", sample_rate=sr,
            azimuth_deg=r.azimuth_deg, elevation_deg=r.elevation_deg, confidence=r.confidence,
            frame_times_s=r.frame_times_s, frame_azimuth_deg=r.frame_azimuth_deg,
            frame_elevation_deg=r.frame_elevation_deg, frame_confidence=r.frame_confidence,
            provenance={"method": how, "diffuseness": float(r.diffuseness), **r.settings},
        )
    else:
        res = _rate_note(_localize_binaural_any(arr, sr, name, n_sources, weights, active_range_db, overlap, method,
                                                choice, hrtf, frame_s), sr)
    res.warnings[:0] = notes
    return res


def _rate_note(res: LocalizationResult, sr: int) -> LocalizationResult:
    """``res`` with a first warning when binaural input at ``sr`` was resampled to the method's
    analysis rate (``res.sample_rate``: 48 kHz for the templates); input below 32 kHz lacks the cues
    above ``sr / 2`` (the pinna's, for elevation and front/back)."""
    if int(sr) != int(res.sample_rate):
        msg = f"resampled from {int(sr)} Hz to {int(res.sample_rate)} Hz"
        if int(sr) < 32000:
            msg += (f": nothing above {int(sr) / 2000:.1f} kHz, where the pinna cues for elevation and front/back "
                    "lie (up to 16 kHz), so those are less reliable")
        res.warnings.insert(0, msg)
    return res


def _localize_binaural_any(arr, sr, name, n_sources, weights, active_range_db, overlap, method, choice, hrtf,
                           frame_s) -> LocalizationResult:
    """Binaural ``arr (2, T)``: the method asked for, or for "auto" the one chosen by the signal's
    direct-sound coherence (the cue front-end runs once and serves both)."""
    if arr.shape[-1] < BINAURAL_MIN_S * int(sr):  # every method needs one analysis frame
        raise SpaqInputError(f"{name} is too short for binaural localisation: {1000 * arr.shape[-1] / int(sr):.2f} ms "
                             f"({arr.shape[-1]} samples at {int(sr)} Hz); at least {1000 * BINAURAL_MIN_S:.0f} ms "
                             f"(one analysis frame) is needed")
    cues, coarse = None, False
    if method == "auto" and int(n_sources) > 1:
        method, choice = "templates", ("templates: several sources (the joint template fit separates simultaneous "
                                       "sources; BAST clusters whole windows: benchmarks/results/localizer_v2.md)")
    if method == "auto" and AUTO_COHERENCE <= 0.0:  # every coherence is at least 0: no cues needed to choose (the
        # templates compute theirs lazily: a room's signal is dereverberated before most of its bands are observed)
        method = "templates"
        choice = (f"templates: every direct-sound coherence is >= AUTO_COHERENCE {AUTO_COHERENCE} (templates had the "
                  f"lower held-out error than the cue BAST on every set, development and held-out, rooms included: "
                  f"benchmarks/results/localizer_v2.md)")
    elif method == "auto":
        cues, coarse = _cue_input(arr, sr, coarse=True), True
    elif method == "bast" and weights is None:
        cues = _cue_input(arr, sr)
    if method == "auto":
        coh = direct_coherence(cues[1], cues[2])
        if coh >= AUTO_COHERENCE:
            method = "templates"
            choice = (f"templates: direct-sound coherence {coh:.3f} >= {AUTO_COHERENCE} (templates had the lower held-out "
                      f"error than the cue BAST on every set, development and held-out, rooms included: "
                      f"benchmarks/results/localizer_v2.md)")
        else:
            method = "bast"
            choice = (f"bast (cue features): direct-sound coherence {coh:.3f} < {AUTO_COHERENCE} (reverberant or "
                      f"noisy: below the threshold set on development scenes the cue BAST was the better method)")
    if method == "templates":
        res = _localize_templates(arr, sr, n_sources, hrtf, frame_s, cues=cues)
    else:  # the cue BAST's own front-end (the coarse cues of the choice are not what it was trained on)
        res = _localize_binaural(arr, sr, name, n_sources, weights, active_range_db, overlap,
                                 cues=None if coarse else cues)
    res.provenance["method_choice"] = choice
    return _not_binaural_note(res, arr, sr)


def _not_binaural_note(res: LocalizationResult, arr, sr: int) -> LocalizationResult:
    """``res`` with a first warning when the two channels of ``arr`` do not look like two ears
    (:func:`spaq.spatial.checks.binaural_check`: nearly independent below 250 Hz, two unrelated signals or
    microphones far apart, whose 'directions' mean nothing); the coherence goes into the provenance (None:
    too short to read)."""
    from ..spatial.checks import binaural_check

    coh, note = binaural_check(arr, int(sr))
    res.provenance["low_band_coherence"] = None if coh is None else round(coh, 4)
    if note is not None:
        res.warnings.insert(0, note)
    return res


def _localize_templates(arr, sr, n_sources, hrtf, frame_s, cues=None) -> LocalizationResult:
    from .templates import TEMPLATE_VERSION, localize_templates

    r = localize_templates(arr, sr, hrtf=hrtf, n_sources=n_sources, frame_s=frame_s or 0.2,
                           cues=None if cues is None else cues[1:3],
                           room_cues=None if cues is None or len(cues) < 4 else cues[3])
    S, D = int(n_sources), r["directions"]
    A, E, C = np.full(S, np.nan), np.full(S, np.nan), np.full(S, np.nan)
    if len(D):
        az, el, _ = cart2sph(D)
        A[:len(D)], E[:len(D)], C[:len(D)] = az, el, r["confidence"]
    warnings = []
    moving = _moving_summary(r, S)
    if moving is not None:  # the blocks hold another direction than the whole signal's fit: the source moves
        d_long, share, note = moving
        D = np.asarray(d_long, dtype=np.float64)[None]
        az, el, _ = cart2sph(D)
        A[:1], E[:1], C[:1] = az, el, share
        warnings.append(note)
    fa, fe, _ = cart2sph(r["frame_dirs"])
    M = len(r["frame_times_s"])
    FA, FE, FC = (np.full((S, M), np.nan) for _ in range(3))
    for s in range(len(D)):
        sel = r["frame_source"] == s
        FA[s, sel], FE[s, sel] = fa[sel], fe[sel]
        FC[s, sel] = np.clip(r["frame_dirs"][sel] @ D[s], 0.0, 1.0)
    ts = r["template_set"]
    if not r["direct_sound"] and not (r["exact_head"] or {}).get("used", False):
        warnings.append(reverberant_warning(r["room_gate"]))
    return LocalizationResult(
        format="binaural", method="templates", sample_rate=48000, azimuth_deg=A, elevation_deg=E, confidence=C,
        frame_times_s=r["frame_times_s"], frame_azimuth_deg=FA, frame_elevation_deg=FE, frame_confidence=FC,
        provenance={"model": "templates", "hrtf": ts.name, "hrtf_sha256": ts.sha256,
                    "template_version": TEMPLATE_VERSION, "n_directions": int(len(ts.directions)),
                    "head_fit": r["head_fit"], "head_scale": r["head_scale"], "exact_head": r["exact_head"],
                    "direct_coherence": round(float(r["direct_coherence"]), 4),
                    "room_gate": {k: (round(v, 4) if isinstance(v, float) and np.isfinite(v) else v)
                                  for k, v in r["room_gate"].items()},
                    "dereverberated": bool(r["dereverberated"]),
                    "refined_between_directions": bool(r["refined"]),
                    "reverberant_templates_drr_db": None if not np.isfinite(r["drr_db"]) else float(r["drr_db"]),
                    "input_sample_rate": int(sr),
                    **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r["settings"].items()}},
        warnings=warnings,
    )


#: a one-source answer is replaced by the direction its blocks hold longest when the whole signal's fit is held
#: by fewer than MOVING_MAX_CONFIDENCE of the blocks, while at least MOVING_MIN_SHARE of them (and at least
#: MOVING_MIN_BLOCKS blocks in all) hold a direction more than MOVING_MIN_DEG away from it, the direct sound
#: dominating: a source that moves (e.g. +60 deg, then -60 deg) is otherwise summarised by a compromise that no
#: block supports (-90 deg, confidence 0). Rooms keep the whole-signal fit: there the blocks are less reliable
#: than the fit (on 60 development room items such a rule made 3 answers worse and 1 better)
MOVING_MAX_CONFIDENCE, MOVING_MIN_SHARE, MOVING_MIN_BLOCKS, MOVING_MIN_DEG = 0.25, 0.4, 8, 30.0


def _moving_summary(r: dict, n_sources: int):
    """For one source found by the templates (``r``: :func:`~spaq.localization.templates.localize_templates`'s
    result), ``(direction (3,), share, warning)`` where its blocks hold another direction than the whole
    signal's fit (the :data:`MOVING_MAX_CONFIDENCE` rule), else None."""
    D = np.asarray(r["directions"])
    if int(n_sources) != 1 or len(D) != 1 or not r["direct_sound"] or float(r["confidence"][0]) >= MOVING_MAX_CONFIDENCE:
        return None
    U = np.asarray(r["frame_dirs"])[np.asarray(r["frame_source"]) >= 0]
    if len(U) < MOVING_MIN_BLOCKS:
        return None
    C, share, _ = _cluster(U, np.ones(len(U)), 2)
    if not len(C) or share[0] < MOVING_MIN_SHARE:
        return None
    away = float(np.degrees(np.arccos(np.clip(C[0] @ D[0], -1.0, 1.0))))
    if away <= MOVING_MIN_DEG:
        return None
    a0, e0, _ = cart2sph(D[0][None])
    a1, e1, _ = cart2sph(C[0][None])
    note = (f"the direction moves: the whole signal's best fit ({float(a0[0]):.0f} deg azimuth, {float(e0[0]):.0f} "
            f"elevation) is held by {float(r['confidence'][0]):.0%} of its {len(U)} blocks, {float(share[0]):.0%} hold "
            f"{float(a1[0]):.0f} / {float(e1[0]):.0f} deg: the answer is that direction, the one held longest (see the "
            f"trajectory: --frames; or --sources 2 if two sources take turns)")
    return C[0], float(share[0]), note


@torch.no_grad()
def binaural_window_directions(model, x: np.ndarray, sample_rate: int, overlap: float = 0.0,
                               threads: int | None = 1, cues=None):
    """Per-window predictions of ``model`` for binaural ``x (2, T)`` at ``sample_rate``
    (windows of ``model.cfg.n_frames`` frames, overlapping by ``overlap`` (0 <= overlap < 1)):
    ``(unit directions (W, 3), window power (W,), window centre times (W,), class probs (W, K) | None)``.

    ``threads``: torch intra-op threads while it runs (default 1: one stream's windows are a
    small batch, and more threads only add synchronisation; on a loaded 2-core machine two
    threads were 13x slower than one). None keeps torch's setting.

    Cue-feature models (``features="cues"``): the window power is weighted by the window's
    direct-sound coherence to the power :data:`CUE_COHERENCE_POWER` (reverberant windows count less);
    ``cues``: the output of :func:`_cue_input` when already computed."""
    with intra_op_threads(threads):
        return _window_directions(model, x, sample_rate, overlap, cues)


#: whole-signal pooling of the cue BAST: window weight = sqrt(power * coherence ** (2 * this))
CUE_COHERENCE_POWER = 4.0


def _window_directions(model, x, sample_rate, overlap, cues=None):
    from ..io import resample
    from ..models.bast import BinauralCues, crop_frames, predict

    cfg = model.cfg
    lev = None
    if cfg.features == "cues":
        if cues is None or cfg.sample_rate != 48000 or cfg.hop != 960:
            if cfg.sample_rate == 48000 and cfg.hop == 960:
                cues = _cue_input(x, sample_rate)
            else:  # another analysis rate or frame: the model's own front-end, same level normalisation
                from ..auditory.binaural_features import binaural_features

                y = resample(x, sample_rate, cfg.sample_rate) if sample_rate != cfg.sample_rate else x
                y = y * (10 ** (-30 / 20) / max(float(np.sqrt(np.mean(y ** 2))), 1e-30))
                cues = (y, *binaural_features(torch.as_tensor(y), model.features().fe))
        feats = BinauralCues.arrange(cues[1][None])[0]  # (2, 5, F, N)
        lev = cues[2]
    else:
        if sample_rate != cfg.sample_rate:
            x = resample(x, sample_rate, cfg.sample_rate)
        feats = model.features()(torch.as_tensor(x, dtype=torch.float32)[None])[0]  # (2, [3,] F, N)
    N = feats.shape[-1]
    if not 0.0 <= float(overlap) < 1.0:
        raise SpaqInputError(f"overlap must be in [0, 1), got {overlap}")
    n = cfg.n_frames
    hop = max(1, int(round(n * (1.0 - float(overlap)))))
    if N < n:
        feats = crop_frames(feats, n, None)
        N = n
    starts = list(range(0, N - n + 1, hop))
    if starts[-1] != N - n:
        starts.append(N - n)
    wins = torch.stack([feats[..., a: a + n] for a in starts])  # (W, 2, [C,] F, n)
    if lev is not None:
        p = 10 ** (lev.to(torch.float64) / 10)  # (2, F, N)
        if p.shape[-1] < n:
            p = crop_frames(p, n, None)
        pw = torch.stack([p[..., a: a + n] for a in starts])  # (W, 2, F, n)
        ic = wins[:, 0, 4].to(torch.float64)  # (W, F, n)
        coh = (ic * pw.sum(1)).sum(dim=(1, 2)) / pw.sum(dim=(1, 2, 3)).clamp_min(1e-30)
        power = (pw.mean(dim=(1, 2, 3)) * coh.clamp(0, 1) ** (2 * CUE_COHERENCE_POWER)).numpy()
    else:
        logmel = wins if wins.ndim == 4 else wins[:, :, 0]
        power = torch.exp(logmel).mean(dim=(1, 2, 3)).numpy().astype(np.float64)
    dirs, probs = predict(model, wins)
    times = (np.asarray(starts) + (n - 1) / 2.0) * cfg.hop / cfg.sample_rate
    return dirs, power, times, probs


def _localize_binaural(arr, sr, name, n_sources, weights, active_range_db, overlap, cues=None) -> LocalizationResult:
    model, meta = load_localizer(weights, WEIGHTS_NAME if weights is not None or os.environ.get(WEIGHTS_ENV)
                                 else CUES_WEIGHTS_NAME)
    cfg = model.cfg
    if overlap is None:
        overlap = 0.5 if cfg.features == "cues" else 0.0
    dirs, power, times, probs = binaural_window_directions(model, arr, sr, overlap, cues=cues)
    active = power >= power.max() * 10 ** (-active_range_db / 10)
    w = np.sqrt(power) * active
    S = int(n_sources)
    if S == 1:
        m = (w[:, None] * dirs).sum(0) / w.sum()
        conf = float(np.linalg.norm(m))
        D, share, labels = m[None] / max(conf, 1e-12), np.array([conf]), np.zeros(len(dirs), dtype=int)
    else:
        D, share, labels = _cluster(dirs[active], w[active], S)
        lab = np.full(len(dirs), -1)
        lab[active] = labels
        labels = lab
    az, el, _ = cart2sph(D)
    found = len(D)
    A = np.full(S, np.nan)
    E = np.full(S, np.nan)
    C = np.full(S, np.nan)
    A[:found], E[:found], C[:found] = az, el, share
    fa, fe, _ = cart2sph(dirs)
    FA = np.full((S, len(dirs)), np.nan)
    FE = np.full((S, len(dirs)), np.nan)
    FC = np.full((S, len(dirs)), np.nan)
    for s in range(found):
        sel = active & (labels == s)
        FA[s, sel], FE[s, sel] = fa[sel], fe[sel]
        FC[s, sel] = np.clip(dirs[sel] @ D[s], 0.0, 1.0)
    cp = None
    if probs is not None and cfg.class_names:
        pm = (probs * w[:, None]).sum(0) / w.sum()
        cp = {c: round(float(p), 4) for c, p in zip(cfg.class_names, pm)}
    return LocalizationResult(
        format="binaural", method="bast", sample_rate=int(cfg.sample_rate),
        azimuth_deg=A, elevation_deg=E, confidence=C, frame_times_s=times,
        frame_azimuth_deg=FA, frame_elevation_deg=FE, frame_confidence=FC, class_probabilities=cp,
        provenance={"model": "bast", "weights": os.path.basename(meta["path"]), "sha256": meta["sha256"],
                    "input_sample_rate": int(sr), "window_s": round(cfg.window_samples / cfg.sample_rate, 4),
                    "overlap": float(overlap),
                    "integration": cfg.integration, "share_weights": cfg.share_weights, "features": cfg.features},
    )


# --------------------------------------------------------------------------- reference vs degraded


@dataclass
class LocalizationComparison:
    """Directions found in a reference and a degraded stream, matched per source.

    ``error_deg (n_sources,)``: great-circle angle between matched directions (NaN where a
    source was not found in one of them); ``mean_error_deg``: mean over matched sources
    (NaN if none). ``reference``/``degraded``: the two :class:`LocalizationResult`.
    ``pairs``: (reference index, degraded index) of each match."""

    error_deg: np.ndarray
    mean_error_deg: float
    pairs: list
    reference: LocalizationResult
    degraded: LocalizationResult | None
    note: str = ""

    def to_dict(self) -> dict:
        def f(v):
            return None if v is None or v != v else round(float(v), 3)

        return {
            "error_deg": [f(e) for e in self.error_deg],
            "mean_error_deg": f(self.mean_error_deg),
            "pairs": [list(map(int, p)) for p in self.pairs],
            "reference": self.reference.to_dict(),
            "degraded": self.degraded.to_dict() if self.degraded is not None else None,
            "note": self.note,
        }


def compare_localization(reference, degraded, sample_rate: int | None = None, format=None, *,
                         degraded_format=None, n_sources: int = 1, weights=None, method: str = "auto",
                         hrtf=None) -> LocalizationComparison:
    """Localise ``reference`` and ``degraded`` (paths or ``(channels, time)`` arrays at
    ``sample_rate``; binaural by ``method``/``hrtf`` as in :func:`localize`, ambisonics via the
    intensity vector;
    ``degraded_format`` defaults to ``format``) and return the angular error per source,
    sources matched by the assignment with the smallest total angle. A silent reference
    raises :class:`SpaqInputError`; a silent degraded signal gives NaN errors and a note. With
    ``method="auto"`` the method chosen for the reference is used for the degraded signal too
    (the same localiser on both sides)."""
    from ..spatial.angles import great_circle_deg

    ref = localize(reference, sample_rate, format, n_sources=n_sources, weights=weights, method=method, hrtf=hrtf)
    if method == "auto" and ref.method in ("templates", "bast"):  # the degraded signal: the reference's method
        method = ref.method
    try:
        deg = localize(degraded, sample_rate, degraded_format if degraded_format is not None else format,
                       n_sources=n_sources, weights=weights, method=method, hrtf=hrtf)
    except SpaqInputError as e:
        if "silent" not in str(e):
            raise
        why = " ".join(str(e).split())  # silent, or one ear silent, or no directional energy: as localize said
        return LocalizationComparison(np.full(n_sources, np.nan), float("nan"), [], ref, None,
                                      note=f"degraded signal: no direction ({why})")
    ok_r = np.flatnonzero(~np.isnan(ref.azimuth_deg))
    ok_d = np.flatnonzero(~np.isnan(deg.azimuth_deg))
    err = np.full(n_sources, np.nan)
    pairs = []
    if len(ok_r) and len(ok_d):
        cost = great_circle_deg(ref.azimuth_deg[ok_r][:, None], ref.elevation_deg[ok_r][:, None],
                                deg.azimuth_deg[ok_d][None, :], deg.elevation_deg[ok_d][None, :])
        if cost.size == 1:  # one source each (the default): no assignment problem to solve
            rows, cols = [0], [0]
        else:
            from scipy.optimize import linear_sum_assignment  # here: scipy.optimize takes ~0.4 s to import

            rows, cols = linear_sum_assignment(cost)
        for r, c in zip(rows, cols):
            err[ok_r[r]] = cost[r, c]
            pairs.append((int(ok_r[r]), int(ok_d[c])))
    mean = float(np.nanmean(err)) if np.any(~np.isnan(err)) else float("nan")
    return LocalizationComparison(err, mean, pairs, ref, deg)
