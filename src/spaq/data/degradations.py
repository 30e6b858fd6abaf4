"""Degradations for synthetic corpora: composable, each driven by a severity in [0, 1].

A degradation maps ``severity`` to documented physical parameters (``params``) and
applies them. Each is a small :class:`Degradation` subclass (its ranges, its severity ->
params mapping and its ``apply``/``scene_mod``) registered by name with
:func:`register_degradation`; :data:`DEGRADATIONS` (name -> instance) is the registry that
the corpus config, :func:`degradation_params` and :func:`apply_signal_degradation` look up.
Two stages:

* ``signal`` degradations act on the rendered signal ``x (C, T)`` (binaural
  ``C = 2``, ambisonics ACN/SN3D ``C = (N+1)^2``);
* ``scene`` degradations change how the scene is rendered (rotation, source
  misplacement, HRTF swap, reverberation change); :mod:`spaq.data.scenes` applies
  their params while rendering the degraded version.

Severity -> parameter maps (``lin``: linear between the two values, ``geo``:
geometric; the ranges can be changed per corpus in the config under the
degradation's name, e.g. ``noise: {snr_db: [30, -5]}``):

=================  ======  =====================================================
name               stage   parameters (severity 0 -> 1)
=================  ======  =====================================================
noise              signal  snr_db lin 40 -> 0 (white or pink; diffuse in ambisonics)
lowpass            signal  cutoff_hz geo 16000 -> 1000 (-6 dB, zero-phase Butterworth)
bandpass           signal  low_hz geo 50 -> 500, high_hz geo 16000 -> 3400
clipping           signal  clip_db lin 0.5 -> 20 (threshold below the signal peak)
quantisation       signal  bits lin 16 -> 3 (rounded; mid-tread, re full scale 1.0)
codec              signal  bitrate_kbps geo 128 -> 12 per channel; codec opus|mp3|aac (mp3 at >= 32 kHz:
                           128 -> 32, the lowest MPEG-1 layer III rate, snapped to the standard rates).
                           The rate asked is an upper bound: ffmpeg's native AAC encoder spends what the
                           content needs (a synthetic note of a few partials asked for 128 / 71 kbps got
                           61 / 58, the same signal within 0.1 dB SNR), so such steps can coincide; the
                           rate delivered is recorded in the chain step's ``measured``
order_truncation   signal  order: N -> 0 (ambisonics; higher channels zeroed)
rotation           scene   angle_deg lin 0 -> 90 about yaw (or a random axis); yaw sense: towards
                           the median plane (see below)
misplacement       scene   angle_deg lin 0 -> 90, one source moved on the sphere towards the
                           interaural pole of the other side (see below)
blur               signal  amount lin 0 -> 1 (share of power replaced by decorrelated copies);
                           option decorrelator: orthogonal (default: orthogonal to the input and of
                           its power in every STFT bin, so only the coherence falls with the
                           amount) | filter (20 ms decaying noise, the engine's decorrelator before
                           the twenty-ninth session: it colours and partly cancels each band, so one
                           realisation is monotone only in expectation; what the shipped recipes use)
ild                signal  ild_change_db lin 0 -> 12 (binaural, +: left louder)
itd                signal  itd_change_us lin 0 -> 600 (binaural, +: right ear later)
hrtf_swap          scene   weight lin 0 -> 1 of another head's HRTFs (binaural)
reverb             scene   rt60_factor geo 1 -> 2 (or 1 -> 0.5; the RT60 kept within 0.1-3 s and at
                           least the room's shortest, fully absorbing walls), drr_change_db lin 0 -> 6 (rooms);
                           longer RT60 with lower DRR (more reverb), shorter with higher DRR
                           (drawn; option direction: longer | shorter fixes it); option tail:
                           shared (default: the changed room's diffuse tail is the unchanged room's
                           noise under the new decay) | redrawn (a new draw per RT60, the engine
                           before the thirtieth session: per-band coherence then moves at random
                           from one severity to the next; what the shipped recipes use)
gain               signal  gain_db lin 0 -> 12, random sign
channel_imbalance  signal  imbalance_db lin 0 -> 6 (L/R difference, or per-channel spread)
misalignment       signal  delay_ms lin 0 -> 50 (degraded lags the reference)
packet_loss        signal  loss_rate lin 0 -> 0.3 of 20 ms packets, 2.5 ms fades
time_stretch       signal  stretch lin 1 -> 1.5 (phase vocoder there and back)
resample           signal  rate_hz geo fs -> 8000, snapped to a standard rate (polyphase down and up;
                           transition band about +-20 % around the new Nyquist)
=================  ======  =====================================================

Monotone direction changes: when the scene's source directions are known
(``directions`` of :func:`degradation_params`, as :mod:`spaq.data.scenes` passes them), a
yaw rotation turns the scene so that the first source moves towards and through the
median plane, and a misplaced source moves along the great circle through the interaural
axis towards the pole of the other side. Its lateral angle (and so ITD and broadband ILD)
then changes monotonically with the angle over the whole 0-90 degree range (it never folds
back past +-90 degrees lateral), and for misplacement the polar angle of the
interaural-polar system is kept (no cone-of-confusion moves). Without ``directions``
(or for a source exactly in the median plane) the sense is random.
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass

import numpy as np
import soundfile as sf
from scipy.signal import butter, correlate, resample_poly, sosfiltfilt, stft, istft

from ..errors import SpaqError
from ..spatial.angles import bearing_to_other_pole, bearing_to_pole, lateral_sense, tangent_frame  # noqa: F401 (re-exported)
from ..spatial.sh import n3d_to_sn3d_gains, order_from_channels
from .external import require_binary, run_tool

__all__ = [
    "DEGRADATIONS",
    "tangent_frame",
    "lateral_sense",
    "bearing_to_pole",
    "bearing_to_other_pole",
    "Degradation",
    "degradation_params",
    "apply_signal_degradation",
    "check_severity",
    "codec_roundtrip",
    "phase_vocoder",
    "fractional_delay",
    "decorrelate",
    "decorrelate_orthogonal",
    "CODECS",
    "register_degradation",
    "get_degradation",
    "DrawContext",
]

CODECS = {
    "opus": {"encoder": "libopus", "ext": "ogg", "extra": ["-vbr", "off", "-application", "audio"], "rate": 48000},
    "mp3": {"encoder": "libmp3lame", "ext": "mp3", "extra": [], "rate": None},
    "aac": {"encoder": "aac", "ext": "m4a", "extra": [], "rate": None},
}
STANDARD_RATES = (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)


BOTH = ("binaural", "ambisonics")


@dataclass(frozen=True)
class DrawContext:
    """What a degradation's parameters may depend on besides the severity: the signal's
    ``sample_rate`` and format ``fmt``, the config's ``options`` for it, the scene's number of
    sources and their directions ``[(azimuth_deg, elevation_deg), ...]`` (or None)."""

    sample_rate: int
    fmt: object
    options: dict
    n_sources: int = 1
    directions: list | None = None


class Degradation:
    """One degradation type. Class attributes: ``name`` (set by :func:`register_degradation`),
    ``stage`` ("signal"/"scene"), the format kinds it applies to (``formats``), whether it
    needs a room (``needs_room``), its default severity ranges ``ranges`` (``{param: (value
    at 0, value at 1, "lin"|"geo")}``, overridable per corpus) and its config ``options``
    (``choices``: the allowed values of those that take one of a few words; ``list_choices``:
    of those that take a list of names; ``numbers``: the bounds of those that take a number).
    A corpus config's overrides are checked when it is validated, before anything is rendered:
    ranges against ``limits`` (:meth:`check_range`), options with :meth:`check_option` and
    :meth:`check_options`.

    Severity mapping: :meth:`severity_values` interpolates the ranges, :meth:`params` turns
    them (with the random choices, drawn from ``rng`` in a fixed order) into the recorded
    parameters. Signal-stage degradations apply them with :meth:`apply`; scene-stage ones
    add them to the renderer's modifications with :meth:`scene_mod`."""

    name: str = ""
    stage: str = "signal"
    formats: tuple = BOTH
    ranges: dict = {}
    needs_room: bool = False
    options: tuple = ()
    choices: dict = {}
    #: physical bounds of the range parameters, ``{param: (min, max)}`` (None: open; every value must be
    #: a finite number, and the values of a ``geo`` range above zero), checked with the corpus config
    limits: dict = {}
    #: options that take a list of names: ``{option: allowed names}`` (checked with the corpus config)
    list_choices: dict = {}
    #: options that take one number: ``{option: (min, max)}`` (min excluded, max included; None: open)
    numbers: dict = {}

    def check_range(self, param: str, value, where: str) -> None:
        """A config's ``[value at severity 0, value at 1]`` for the range ``param``, refused in one line
        (naming ``where``) unless it is two finite numbers within :attr:`limits` (above zero for a
        ``geo`` range). The two values may fall or rise with the severity."""
        lo, hi = self.limits.get(param, (None, None))
        geo = self.ranges[param][2] == "geo"
        bounds = (f" within [{_g(lo)}, {_g(hi)}]" if lo is not None and hi is not None else
                  f" >= {_g(lo)}" if lo is not None else f" <= {_g(hi)}" if hi is not None else
                  " above 0" if geo else "")
        what = f"{where} must be [value at severity 0, at 1], two numbers{bounds}; got {value!r}"
        if not (isinstance(value, (list, tuple)) and len(value) == 2):
            raise SpaqError(what)
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SpaqError(what)
            if (lo is not None and v < lo) or (hi is not None and v > hi) or (geo and v <= 0):
                raise SpaqError(what)

    def check_option(self, option: str, value, where: str) -> None:
        """A config's value of the (non-range) ``option``, refused in one line (naming ``where``, the
        option's dotted place) unless it fits :attr:`choices`, :attr:`list_choices` or :attr:`numbers`."""
        if option in self.choices:
            self.check_choice(option, value, where=where[: -len(option)])
        elif option in self.list_choices:
            allowed = self.list_choices[option]
            if not (isinstance(value, list) and value and all(isinstance(v, str) and v in allowed for v in value)):
                raise SpaqError(f"{where} must be a list of one or more of {', '.join(allowed)}; got {value!r}")
        elif option in self.numbers:
            lo, hi = self.numbers[option]
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or (lo is not None and value <= lo) or (hi is not None and value > hi):
                bounds = " and ".join(b for b in (f"above {_g(lo)}" if lo is not None else "",
                                                   f"at most {_g(hi)}" if hi is not None else "") if b)
                raise SpaqError(f"{where} must be a number{' ' + bounds if bounds else ''}; got {value!r}")

    def check_options(self, options: dict, where: str, sample_rate: int) -> None:
        """Checks across this degradation's config ``options`` (after each key's own check); default none."""

    def check_choice(self, option: str, value, where: str | None = None) -> str:
        """``value`` of the enumerated ``option`` as a string, refused in one line unless it is one of
        :attr:`choices` (``where``: how the message names the option's place; default the
        degradation's name)."""
        allowed = self.choices[option]
        v = str(value)
        if v not in allowed:
            where = f"{self.name}: option " if where is None else where
            raise SpaqError(f"{where}{option} must be one of {', '.join(allowed)}, not {v!r}")
        return v

    def choice(self, ctx: "DrawContext", option: str) -> str:
        """The config's value of the enumerated ``option`` (the first of :attr:`choices` when unset),
        checked against the allowed values (:meth:`check_choice`)."""
        return self.check_choice(option, ctx.options.get(option, self.choices[option][0]))

    def severity_values(self, s: float, sample_rate: int, options: dict) -> dict:
        """``{param: value}`` of the ranges at severity ``s`` (``options`` may replace a
        range by ``[at 0, at 1]``; a None end is the sample rate)."""
        vals = {}
        for p, (lo, hi, how) in self.ranges.items():
            if p in options:
                lo, hi = (float(v) for v in options[p])
            if lo is None:
                lo = float(sample_rate)
            vals[p] = _interp(lo, hi, how, s)
        return vals

    def params(self, v: dict, s: float, rng: np.random.Generator, ctx: DrawContext) -> dict:
        """Parameters (without ``severity``) from the range values ``v`` at severity ``s``."""
        raise NotImplementedError

    def apply(self, x: np.ndarray, params: dict, sample_rate: int, fmt) -> tuple[np.ndarray, dict]:
        """``x (C, T)`` degraded with ``params``: ``(y (C, T), extra)``, ``extra`` holding
        measured facts to record (e.g. codec bitrate)."""
        raise SpaqError(f"{self.name!r} is not a signal-stage degradation")

    def scene_mod(self, mods: dict, params: dict) -> None:
        """Add this step's modification to the scene renderer's ``mods`` (scene stage)."""
        raise SpaqError(f"{self.name!r} is not a scene-stage degradation")


DEGRADATIONS: dict[str, Degradation] = {}


def register_degradation(name: str):
    """Class decorator: register an instance of a :class:`Degradation` subclass under
    ``name`` in :data:`DEGRADATIONS` (the names a corpus config accepts)."""

    def deco(cls):
        if name in DEGRADATIONS:
            raise ValueError(f"degradation {name!r} is registered twice")
        cls.name = name
        DEGRADATIONS[name] = cls()
        return cls

    return deco


def get_degradation(name: str) -> Degradation:
    """The registered degradation ``name``; one-line SpaqError listing the names if unknown."""
    try:
        return DEGRADATIONS[name]
    except (KeyError, TypeError):
        raise SpaqError(f"unknown degradation {name!r}; known: {', '.join(DEGRADATIONS)}") from None


def check_severity(severity) -> float:
    """Severity as float in [0, 1], else a SpaqError."""
    try:
        s = float(severity)
    except (TypeError, ValueError) as e:
        raise SpaqError(f"severity must be a number in [0, 1], got {severity!r}") from e
    if not (0.0 <= s <= 1.0) or math.isnan(s):
        raise SpaqError(f"severity must be in [0, 1], got {s}")
    return s


def _g(x) -> str:
    return f"{x:g}" if isinstance(x, (int, float)) else str(x)


def _interp(lo, hi, how, s):
    if how == "geo":
        return float(lo * (hi / lo) ** s)
    return float(lo + (hi - lo) * s)


def degradation_params(name: str, severity: float, rng: np.random.Generator, *, sample_rate: int,
                       fmt, options: dict | None = None, n_sources: int = 1, directions=None) -> dict:
    """Physical parameters of degradation ``name`` at ``severity`` for a signal of
    format ``fmt`` at ``sample_rate``. ``options`` may override the ranges
    (``{param: [at0, at1]}``) and set choices (``codecs``, ``axis``, ``heads``,
    ``colours``, ``packet_ms``). Random choices (signs, axes, codec) come from ``rng``.
    ``directions``: the scene's source directions ``[(azimuth_deg, elevation_deg), ...]``
    (head frame, at the start); with them rotation and misplacement move the source's
    lateral angle monotonically (module docstring), without them their sense is random."""
    d = get_degradation(name)
    s = check_severity(severity)
    opt = dict(options or {})
    ctx = DrawContext(sample_rate, fmt, opt, n_sources, directions)
    return {"severity": s, **d.params(d.severity_values(s, sample_rate, opt), s, rng, ctx)}


# --------------------------------------------------------------------- helpers
def fractional_delay(x, delay_samples: float) -> np.ndarray:
    """Delay ``x (..., T)`` by a fractional number of samples (frequency domain on a
    zero-padded copy, so nothing wraps around); output ``(..., T)``."""
    x = np.asarray(x, dtype=np.float64)
    T = x.shape[-1]
    pad = int(np.ceil(abs(delay_samples))) + 64
    n = int(2 ** np.ceil(np.log2(T + 2 * pad)))
    X = np.fft.rfft(x, n, axis=-1)
    w = 2 * np.pi * np.fft.rfftfreq(n)
    y = np.fft.irfft(X * np.exp(-1j * w * delay_samples), n, axis=-1)
    if delay_samples < 0:  # advanced content wraps to the end of the padded buffer: zero it
        y[..., n - pad:] = 0.0
    return y[..., :T]


def decorrelate(x, sample_rate: int, rng: np.random.Generator, length_ms: float = 20.0) -> np.ndarray:
    """Per-channel independent decorrelation filters (exponentially decaying Gaussian
    noise, unit energy, ~``length_ms`` long) applied to ``x (C, T)``; same length and
    expected power as the input."""
    x = np.asarray(x, dtype=np.float64)
    L = max(8, int(length_ms * 1e-3 * sample_rate))
    t = np.arange(L)
    h = rng.standard_normal((x.shape[0], L)) * np.exp(-t / (L / 4))
    h /= np.sqrt(np.sum(h ** 2, axis=-1, keepdims=True))
    n = int(2 ** np.ceil(np.log2(x.shape[-1] + L)))
    return np.fft.irfft(np.fft.rfft(x, n, axis=-1) * np.fft.rfft(h, n, axis=-1), n, axis=-1)[:, : x.shape[-1]]


def decorrelate_orthogonal(x, sample_rate: int, rng: np.random.Generator, frame_s: float = 0.021) -> np.ndarray:
    """Per-channel independent decorrelated copies of ``x (C, T)`` that are orthogonal to ``x`` and
    of its power in every STFT bin (frames of ~``frame_s``, a power of two in samples, 75 % overlap):
    each bin's phase randomised per frame, the bin's projection on the input (over the whole signal)
    removed and its power restored. Mixed as ``sqrt(1 - a) x + sqrt(a) copy`` the band powers stay
    those of ``x`` and only the coherence with ``x`` (and between channels) falls, as ``sqrt(1 - a)``:
    a ladder in ``a`` changes the signal monotonically in every realisation. Same shape as ``x``."""
    x = np.asarray(x, dtype=np.float64)
    T = x.shape[-1]
    n = 1 << max(4, int(round(np.log2(frame_s * sample_rate))))
    if T < n:  # a signal shorter than one frame: the largest power of two it holds
        n = 1 << max(2, int(np.floor(np.log2(max(T, 4)))))
    out = np.zeros_like(x)
    for c in range(x.shape[0]):
        _, _, X = stft(x[c], nperseg=n, noverlap=3 * n // 4)
        D = X * np.exp(2j * np.pi * rng.random(X.shape))
        px = np.sum(np.abs(X) ** 2, axis=-1, keepdims=True)
        D = D - np.sum(D * np.conj(X), axis=-1, keepdims=True) / np.maximum(px, 1e-300) * X
        D *= np.sqrt(px / np.maximum(np.sum(np.abs(D) ** 2, axis=-1, keepdims=True), 1e-300))
        _, y = istft(D, nperseg=n, noverlap=3 * n // 4)
        y = np.pad(y, (0, max(0, T - y.size)))[:T]
        # the overlap-add of frames whose phases are unrelated sums their powers, not their amplitudes:
        # the same loss in every bin, restored with one gain; then what of x the overlap-add let back in
        # is removed once more (over the whole signal)
        y = y - np.dot(y, x[c]) / max(float(np.dot(x[c], x[c])), 1e-300) * x[c]
        out[c] = y * np.sqrt(float(np.dot(x[c], x[c])) / max(float(np.dot(y, y)), 1e-300))
    return out


#: the blur degradation's decorrelators (option ``decorrelator``); chains recorded before the option
#: existed (no ``decorrelator`` in their parameters) replay with ``filter``, which made them
DECORRELATORS = {"orthogonal": decorrelate_orthogonal, "filter": decorrelate}


def phase_vocoder(x, rate: float, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    """Time-scale ``x (..., T)`` by ``1/rate`` (rate > 1 shortens) with a phase vocoder
    (Hann STFT, phase advance per bin accumulated over output frames). Output length
    ``round(T / rate)``; pitch is kept."""
    x = np.asarray(x, dtype=np.float64)
    T = x.shape[-1]
    _, _, X = stft(x, nperseg=n_fft, noverlap=n_fft - hop, boundary="zeros", padded=True)
    M = X.shape[-1]
    steps = np.arange(0, M - 1, rate)
    k = np.floor(steps).astype(int)
    frac = steps - k
    mag = (1 - frac) * np.abs(X[..., k]) + frac * np.abs(X[..., k + 1])
    omega = 2 * np.pi * hop * np.arange(X.shape[-2]) / n_fft
    dphi = np.angle(X[..., 1:]) - np.angle(X[..., :-1]) - omega[:, None]
    dphi = dphi - 2 * np.pi * np.round(dphi / (2 * np.pi)) + omega[:, None]
    adv = dphi[..., k]
    phase = np.angle(X[..., :1]) + np.concatenate([np.zeros_like(adv[..., :1]), np.cumsum(adv, axis=-1)[..., :-1]],
                                                  axis=-1)
    _, y = istft(mag * np.exp(1j * phase), nperseg=n_fft, noverlap=n_fft - hop, boundary=True)
    n_out = int(round(T / rate))
    if y.shape[-1] < n_out:
        y = np.pad(y, [(0, 0)] * (y.ndim - 1) + [(0, n_out - y.shape[-1])])
    return y[..., :n_out]


def codec_roundtrip(x, sample_rate: int, codec: str, bitrate_kbps: float, workdir: str | None = None):
    """Encode and decode each channel of ``x (C, T)`` separately with ffmpeg (``codec``
    opus/mp3/aac at ``bitrate_kbps`` per channel). The codec delay is removed by
    cross-correlation; output ``(C, T)`` and info with the measured bitrate (encoded
    bytes * 8 / duration, mean over channels) and the delay removed."""
    if codec not in CODECS:
        raise SpaqError(f"unknown codec {codec!r}; use one of {', '.join(CODECS)}")
    require_binary("ffmpeg")
    spec = CODECS[codec]
    x = np.asarray(x, dtype=np.float64)
    C, T = x.shape
    dur = T / sample_rate
    out = np.zeros_like(x)
    with tempfile.TemporaryDirectory(prefix="spaq-codec-", dir=workdir) as tmp:
        # one ffmpeg run encodes every channel to its own mono stream, one run decodes them all
        src = os.path.join(tmp, "in.wav")
        sf.write(src, x.T.astype(np.float32), sample_rate, subtype="FLOAT")
        graph = ";".join(f"[0:a]pan=mono|c0=c{c}[a{c}]" for c in range(C))
        args = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", "-threads", "1", "-i", src,
                "-filter_complex", graph]
        encs = [os.path.join(tmp, f"enc{c}.{spec['ext']}") for c in range(C)]
        for c in range(C):
            args += ["-map", f"[a{c}]", "-map_metadata", "-1", "-c:a", spec["encoder"],
                     "-b:a", f"{int(bitrate_kbps)}k", *spec["extra"]]
            if spec["rate"]:
                args += ["-ar", str(spec["rate"])]
            args += [encs[c]]
        run_tool(args)
        sizes = [os.path.getsize(e) for e in encs]
        args = ["ffmpeg", "-nostdin", "-hide_banner", "-v", "error", "-y", "-threads", "1"]
        for e in encs:
            args += ["-i", e]
        raws = [os.path.join(tmp, f"dec{c}.f32") for c in range(C)]
        for c in range(C):
            args += ["-map", f"{c}:a", "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), raws[c]]
        run_tool(args)
        decoded = [np.fromfile(r, dtype="<f4").astype(np.float64) for r in raws]
    # delay from the loudest channel, searched over 0..100 ms
    ref_c = int(np.argmax(np.sum(x ** 2, axis=-1)))
    d = decoded[ref_c]
    max_lag = int(0.1 * sample_rate)
    n = min(len(d), T + max_lag)
    cc = correlate(d[:n], x[ref_c], mode="full", method="fft")
    lags = np.arange(-T + 1, n)
    ok = (lags >= 0) & (lags <= max_lag)
    lag = int(lags[ok][np.argmax(cc[ok])]) if np.any(x[ref_c] != 0) else 0
    for c in range(C):
        seg = decoded[c][lag:lag + T]
        out[c, : len(seg)] = seg
    info = {"measured_bitrate_kbps": float(np.mean(sizes) * 8 / dur / 1000), "codec_delay_samples": lag}
    return out, info


def _noise(shape, colour, rng):
    from .sources import pink_noise

    C, T = shape
    if colour == "pink":
        return np.stack([pink_noise(T, rng) for _ in range(C)])
    return rng.standard_normal((C, T))


def apply_signal_degradation(x, params: dict, name: str, sample_rate: int, fmt):
    """Apply signal-stage degradation ``name`` with ``params`` (from
    :func:`degradation_params`) to ``x (C, T)``; returns ``(y (C, T), extra)`` where
    ``extra`` holds measured facts to record (e.g. codec bitrate)."""
    d = get_degradation(name)
    if d.stage != "signal":
        raise SpaqError(f"{name!r} is not a signal-stage degradation")
    return d.apply(np.asarray(x, dtype=np.float64), params, sample_rate, fmt)


def _sign(rng) -> int:
    return 1 if rng.random() < 0.5 else -1


# --------------------------------------------------------------------- the degradations
# (registration order is the order of DEGRADATIONS, of the docs table and of error messages)
@register_degradation("noise")
class Noise(Degradation):
    ranges = {"snr_db": (40.0, 0.0, "lin")}
    options = ("colours",)
    list_choices = {"colours": ("white", "pink")}

    def params(self, v, s, rng, ctx):
        colours = ctx.options.get("colours", ["white", "pink"])
        return dict(snr_db=v["snr_db"], colour=str(colours[int(rng.integers(len(colours)))]),
                    noise_seed=int(rng.integers(2**62)))

    def apply(self, x, params, sample_rate, fmt):
        C, T = x.shape
        rng = np.random.default_rng(params["noise_seed"])
        n = _noise((C, T), params["colour"], rng)
        if getattr(fmt, "is_ambisonics", False):  # diffuse: equal-power, uncorrelated N3D channels
            n = n * n3d_to_sn3d_gains(order_from_channels(C))[:, None]
        ps, pn = np.sum(x ** 2), np.sum(n ** 2)
        if ps == 0:
            return x.copy(), {"note": "silent input, no noise added"}
        n *= np.sqrt(ps / pn * 10 ** (-params["snr_db"] / 10))
        return x + n, {}


@register_degradation("lowpass")
class Lowpass(Degradation):
    ranges = {"cutoff_hz": (16000.0, 1000.0, "geo")}

    def params(self, v, s, rng, ctx):
        return dict(cutoff_hz=min(v["cutoff_hz"], 0.45 * ctx.sample_rate))

    def apply(self, x, params, sample_rate, fmt):
        sos = butter(4, params["cutoff_hz"], "lowpass", fs=sample_rate, output="sos")
        return sosfiltfilt(sos, x, axis=-1), {}


@register_degradation("bandpass")
class Bandpass(Degradation):
    ranges = {"low_hz": (50.0, 500.0, "geo"), "high_hz": (16000.0, 3400.0, "geo")}

    def check_options(self, options, where, sample_rate):
        # both ends geometric: low < high at severities 0 and 1 holds in between; high is capped at 0.45 fs
        low = options.get("low_hz", self.ranges["low_hz"][:2])
        high = options.get("high_hz", self.ranges["high_hz"][:2])
        for i, s in enumerate((0, 1)):
            top = min(float(high[i]), 0.45 * sample_rate)
            if not float(low[i]) < top:
                raise SpaqError(f"{where}: low_hz {_g(low[i])} must be below high_hz {_g(top)} (at most 0.45 x the "
                                f"sample rate) at severity {s}")

    def params(self, v, s, rng, ctx):
        return dict(low_hz=v["low_hz"], high_hz=min(v["high_hz"], 0.45 * ctx.sample_rate))

    def apply(self, x, params, sample_rate, fmt):
        sos = butter(4, [params["low_hz"], params["high_hz"]], "bandpass", fs=sample_rate, output="sos")
        return sosfiltfilt(sos, x, axis=-1), {}


@register_degradation("clipping")
class Clipping(Degradation):
    ranges = {"clip_db": (0.5, 20.0, "lin")}
    limits = {"clip_db": (0.0, None)}

    def params(self, v, s, rng, ctx):
        return dict(clip_db=v["clip_db"])

    def apply(self, x, params, sample_rate, fmt):
        peak = np.max(np.abs(x))
        thr = peak * 10 ** (-params["clip_db"] / 20)
        y = np.clip(x, -thr, thr)
        return y, {"clipped_fraction": float(np.mean(np.abs(x) > thr))}


@register_degradation("quantisation")
class Quantisation(Degradation):
    ranges = {"bits": (16.0, 3.0, "lin")}
    limits = {"bits": (1.0, 32.0)}

    def params(self, v, s, rng, ctx):
        return dict(bits=int(round(v["bits"])))

    def apply(self, x, params, sample_rate, fmt):
        step = 2.0 / 2 ** params["bits"]
        return np.clip(np.round(x / step) * step, -1.0, 1.0 - step), {}


@register_degradation("codec")
class Codec(Degradation):
    ranges = {"bitrate_kbps": (128.0, 12.0, "geo")}
    options = ("codecs",)
    list_choices = {"codecs": tuple(CODECS)}

    def params(self, v, s, rng, ctx):
        opt, fs = ctx.options, ctx.sample_rate
        codecs = opt.get("codecs", list(CODECS))
        for c in codecs:
            if c not in CODECS:
                raise SpaqError(f"unknown codec {c!r}; use one of {', '.join(CODECS)}")
        codec = str(codecs[int(rng.integers(len(codecs)))])
        br = v["bitrate_kbps"]
        if codec == "mp3":  # MPEG-1/2 layer III rates
            allowed = np.array([8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320])
            if fs >= 32000:
                allowed = allowed[allowed >= 32]
                if "bitrate_kbps" not in opt:  # MPEG-1 has nothing below 32: spread the ladder over 128 -> 32
                    lo, hi, how = self.ranges["bitrate_kbps"]
                    br = _interp(lo, 32.0, how, s)
            # nearest standard rate (ties towards the lower rate, so the ladder never rises)
            br = float(allowed[np.argmin(np.abs(np.log(allowed / br)) - 1e-9 * (allowed < br))])
        else:
            br = float(max(6, round(br)))
        return dict(codec=codec, bitrate_kbps=br)

    def apply(self, x, params, sample_rate, fmt):
        return codec_roundtrip(x, sample_rate, params["codec"], params["bitrate_kbps"])


@register_degradation("order_truncation")
class OrderTruncation(Degradation):
    formats = ("ambisonics",)
    ranges = {}

    def params(self, v, s, rng, ctx):
        order = ctx.fmt.order if getattr(ctx.fmt, "is_ambisonics", False) else 0
        to = int(math.floor(order * (1 - s) + 1e-9))
        if s > 0:
            to = min(to, max(0, order - 1))
        return dict(from_order=order, to_order=to)

    def apply(self, x, params, sample_rate, fmt):
        if order_from_channels(x.shape[0]) is None:
            raise SpaqError("order truncation needs an ambisonic signal")
        y = x.copy()
        y[(params["to_order"] + 1) ** 2:] = 0.0
        return y, {}


@register_degradation("rotation")
class Rotation(Degradation):
    stage = "scene"
    ranges = {"angle_deg": (0.0, 90.0, "lin")}
    options = ("axis",)
    choices = {"axis": ("yaw", "random")}  # the first: the default

    def params(self, v, s, rng, ctx):
        axis = ctx.options.get("axis", "yaw")
        sense = _sign(rng)
        ang = v["angle_deg"]
        if axis == "yaw":
            vec = [0.0, 0.0, 1.0]
            if ctx.directions:
                sense = lateral_sense(*ctx.directions[0][:2]) or sense
        elif axis == "random":
            r = rng.standard_normal(3)
            vec = (r / np.linalg.norm(r)).tolist()
        else:
            raise SpaqError(f"rotation axis must be 'yaw' or 'random', not {axis!r}")
        return dict(angle_deg=float(ang * sense), axis=[float(a) for a in vec])

    def scene_mod(self, mods, params):
        from scipy.spatial.transform import Rotation as R

        r = R.from_rotvec(np.asarray(params["axis"]) * math.radians(params["angle_deg"])).as_matrix()
        mods["rotation"] = r @ mods.get("rotation", np.eye(3))


class _SceneParams(Degradation):
    """Scene stage: the renderer reads the params under the degradation's name."""

    stage = "scene"

    def scene_mod(self, mods, params):
        mods[self.name] = params


@register_degradation("misplacement")
class Misplacement(_SceneParams):
    ranges = {"angle_deg": (0.0, 90.0, "lin")}

    def params(self, v, s, rng, ctx):
        src = int(rng.integers(max(1, ctx.n_sources)))
        bearing = float(rng.uniform(-180, 180))
        if ctx.directions and src < len(ctx.directions):
            az, el = (float(a) for a in ctx.directions[src][:2])
            b = bearing_to_other_pole(az, el)
            if b is None:  # median plane: either pole (a pole itself: any bearing)
                b = bearing_to_pole(az, el, 1 if bearing >= 0 else -1)
            bearing = bearing if b is None else b
        return dict(angle_deg=v["angle_deg"], source=src, bearing_deg=bearing)


@register_degradation("blur")
class Blur(Degradation):
    ranges = {"amount": (0.0, 1.0, "lin")}
    limits = {"amount": (0.0, 1.0)}
    options = ("decorrelator",)
    choices = {"decorrelator": tuple(DECORRELATORS)}  # the first: the default

    def params(self, v, s, rng, ctx):
        kind = self.choice(ctx, "decorrelator")
        return dict(amount=v["amount"], decorrelator_seed=int(rng.integers(2**62)), decorrelator=kind)

    def apply(self, x, params, sample_rate, fmt):
        a = params["amount"]
        dec = DECORRELATORS[params.get("decorrelator", "filter")]
        dx = dec(x, sample_rate, np.random.default_rng(params["decorrelator_seed"]))
        return np.sqrt(1 - a) * x + np.sqrt(a) * dx, {}


@register_degradation("downmix")
class Downmix(Degradation):
    """The spatial image collapsed towards mono, ``amount`` 0..1. Binaural: each ear becomes
    ``(1 - amount) * itself + amount * the mean of both`` (1: diotic, the same signal in both ears,
    as a mono downmix played over headphones). Ambisonics: the directional channels (ACN >= 1) are
    scaled by ``1 - amount`` (1: W alone, an omnidirectional field with no direction)."""

    ranges = {"amount": (0.0, 1.0, "lin")}
    limits = {"amount": (0.0, 1.0)}

    def params(self, v, s, rng, ctx):
        return dict(amount=v["amount"])

    def apply(self, x, params, sample_rate, fmt):
        a = float(params["amount"])
        if getattr(fmt, "is_ambisonics", False):
            y = np.array(x, copy=True)
            y[1:] *= 1.0 - a
            return y, {}
        return (1.0 - a) * x + a * x.mean(axis=0, keepdims=True), {}


@register_degradation("ild")
class ILD(Degradation):
    formats = ("binaural",)
    ranges = {"ild_change_db": (0.0, 12.0, "lin")}

    def params(self, v, s, rng, ctx):
        return dict(ild_change_db=v["ild_change_db"] * _sign(rng))

    def apply(self, x, params, sample_rate, fmt):
        g = params["ild_change_db"] / 2
        return x * (10 ** (np.array([g, -g]) / 20))[:, None], {}


@register_degradation("itd")
class ITD(Degradation):
    formats = ("binaural",)
    ranges = {"itd_change_us": (0.0, 600.0, "lin")}

    def params(self, v, s, rng, ctx):
        return dict(itd_change_us=v["itd_change_us"] * _sign(rng))

    def apply(self, x, params, sample_rate, fmt):
        d = params["itd_change_us"] * 1e-6 * sample_rate
        y = x.copy()
        if d >= 0:
            y[1] = fractional_delay(x[1], d)
        else:
            y[0] = fractional_delay(x[0], -d)
        return y, {}


@register_degradation("hrtf_swap")
class HRTFSwap(_SceneParams):
    formats = ("binaural",)
    ranges = {"weight": (0.0, 1.0, "lin")}
    limits = {"weight": (0.0, 1.0)}
    options = ("heads",)

    def check_option(self, option, value, where):
        from .config import check_hrtf

        if option != "heads":
            return super().check_option(option, value, where)
        if not (isinstance(value, list) and value):
            raise SpaqError(f"{where} must be a list of one or more HRTF names or .sofa paths; got {value!r}")
        for i, head in enumerate(value):
            check_hrtf(head, f"{where}[{i}]")

    def params(self, v, s, rng, ctx):
        heads = ctx.options.get("heads", ["sonicom-1", "sonicom-2"])
        return dict(weight=v["weight"], head=str(heads[int(rng.integers(len(heads)))]))


@register_degradation("reverb")
class Reverb(_SceneParams):
    ranges = {"rt60_factor": (1.0, 2.0, "geo"), "drr_change_db": (0.0, 6.0, "lin")}
    options = ("direction", "tail")
    # the first: the default. tail "shared": the changed room's diffuse tail is the unchanged room's
    # noise under the new decay; "redrawn": a new draw per RT60 (before the thirtieth session; chains
    # recorded without the key replay so)
    choices = {"direction": ("either", "longer", "shorter"), "tail": ("shared", "redrawn")}
    needs_room = True

    def params(self, v, s, rng, ctx):
        # one direction of change: longer RT60 with more reverberant energy (lower DRR), as in a
        # less absorbing room, or shorter with less; opposite signs would partly cancel.
        # option direction: "either" (default: drawn), "longer" or "shorter" (the draw is made
        # anyway, so the other random choices of a corpus stay the same)
        longer = rng.random() < 0.5
        direction = self.choice(ctx, "direction")
        if direction != "either":
            longer = direction == "longer"
        f = v["rt60_factor"]
        return dict(rt60_factor=f if longer else 1.0 / f, drr_change_db=v["drr_change_db"] * (-1 if longer else 1),
                    tail=self.choice(ctx, "tail"))


@register_degradation("gain")
class Gain(Degradation):
    ranges = {"gain_db": (0.0, 12.0, "lin")}

    def params(self, v, s, rng, ctx):
        return dict(gain_db=v["gain_db"] * _sign(rng))

    def apply(self, x, params, sample_rate, fmt):
        return x * 10 ** (params["gain_db"] / 20), {}


@register_degradation("channel_imbalance")
class ChannelImbalance(Degradation):
    ranges = {"imbalance_db": (0.0, 6.0, "lin")}

    def params(self, v, s, rng, ctx):
        n_ch = ctx.fmt.n_channels
        spread = v["imbalance_db"]
        if n_ch == 2:
            sign = _sign(rng)
            gains = [sign * spread / 2, -sign * spread / 2]
        else:
            gains = rng.uniform(-spread / 2, spread / 2, n_ch).tolist()
        return dict(imbalance_db=spread, channel_gains_db=[float(g) for g in gains])

    def apply(self, x, params, sample_rate, fmt):
        g = 10 ** (np.asarray(params["channel_gains_db"]) / 20)
        return x * g[:, None], {}


@register_degradation("misalignment")
class Misalignment(Degradation):
    ranges = {"delay_ms": (0.0, 50.0, "lin")}
    limits = {"delay_ms": (0.0, None)}

    def params(self, v, s, rng, ctx):
        return dict(delay_ms=v["delay_ms"], delay_samples=int(round(v["delay_ms"] * 1e-3 * ctx.sample_rate)))

    def apply(self, x, params, sample_rate, fmt):
        k, T = params["delay_samples"], x.shape[-1]
        y = np.zeros_like(x)
        y[:, k:] = x[:, : T - k] if k < T else 0.0
        return y, {}


@register_degradation("packet_loss")
class PacketLoss(Degradation):
    ranges = {"loss_rate": (0.0, 0.3, "lin")}
    limits = {"loss_rate": (0.0, 1.0)}
    options = ("packet_ms",)
    numbers = {"packet_ms": (0.0, None)}

    def params(self, v, s, rng, ctx):
        return dict(loss_rate=v["loss_rate"], packet_ms=float(ctx.options.get("packet_ms", 20.0)),
                    loss_seed=int(rng.integers(2**62)))

    def apply(self, x, params, sample_rate, fmt):
        fs, T = sample_rate, x.shape[-1]
        rng = np.random.default_rng(params["loss_seed"])
        P = max(1, int(round(params["packet_ms"] * 1e-3 * fs)))
        n_p = int(np.ceil(T / P))
        lost = rng.random(n_p) < params["loss_rate"]
        mask = np.repeat(~lost, P)[:T].astype(np.float64)
        ramp = int(0.0025 * fs)
        if ramp > 1:  # raised-cosine fades at each loss edge (the mask is smoothed)
            win = np.hanning(2 * ramp + 1)
            win /= win.sum()
            mask = np.convolve(np.pad(mask, ramp, mode="edge"), win, mode="valid")
            mask[np.repeat(lost, P)[:T]] = 0.0
        extra = dict(lost_packets=int(lost.sum()), n_packets=n_p, realised_loss_rate=float(lost.mean()))
        return x * mask, extra


def _pad_to(y: np.ndarray, T: int) -> np.ndarray:
    if y.shape[-1] < T:
        y = np.pad(y, ((0, 0), (0, T - y.shape[-1])))
    return y[:, :T]


@register_degradation("time_stretch")
class TimeStretch(Degradation):
    ranges = {"stretch": (1.0, 1.5, "lin")}
    limits = {"stretch": (0.25, 4.0)}

    def params(self, v, s, rng, ctx):
        return dict(stretch=v["stretch"])

    def apply(self, x, params, sample_rate, fmt):
        r = params["stretch"]
        if r == 1.0:
            return x.copy(), {}
        return _pad_to(phase_vocoder(phase_vocoder(x, r), 1.0 / r), x.shape[-1]), {}


@register_degradation("resample")
class Resample(Degradation):
    ranges = {"rate_hz": (None, 8000.0, "geo")}

    def params(self, v, s, rng, ctx):
        fs, target = ctx.sample_rate, v["rate_hz"]
        cands = [r for r in STANDARD_RATES if r <= fs] or [fs]
        return dict(rate_hz=int(min(cands, key=lambda r: abs(math.log(r / target)))))

    def apply(self, x, params, sample_rate, fmt):
        r, fs = params["rate_hz"], sample_rate
        if r == fs:
            return x.copy(), {}
        g = math.gcd(int(r), int(fs))
        low = resample_poly(x, r // g, fs // g, axis=-1)
        y = resample_poly(low, fs // g, r // g, axis=-1)
        return _pad_to(y, x.shape[-1]), {}
