"""Audio input/output and input validation: files or arrays in, a checked signal pair out.

Everything a user can get wrong about their audio is caught here and raised as a
:class:`~spaq.errors.SpaqInputError` with a one-line message that names the input,
so that metrics can assume clean ``[B, C, T]`` float32 or float64 signals (float32 when the
source holds no more precision: 8-24-bit PCM or float files, float32 arrays):

* both inputs exist, are readable audio, non-empty, finite;
* ref and deg have the same channel count, which is a spatial format
  (2 = binaural, (N+1)^2 = ambisonics ACN) or matches the format given;
* the reference is not silent (a silent degraded signal is accepted with a warning);
* a common sample rate (deg resampled to ref's, then both to ``target_rate``);
* a common length (< 1 % difference trimmed with a warning, more refused unless ``trim``);
* ambisonics in ACN/SN3D (N3D and FuMa inputs are converted);
* content that does not fit the format gives a warning (:mod:`spaq.spatial.checks`: a full-band feed
  in a layout's LFE slot, another channel order; ambisonics whose first-order channels are too loud
  for SN3D, N3D or FuMa read as SN3D).

Shapes: signals are ``(channels, time)`` for one item or ``(batch, channels, time)``;
:class:`SignalPair` always holds ``(batch, channels, time)``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

from .files import atomic_write  # noqa: F401  (spaq.io.atomic_write stays importable)
from .errors import SpaqError, SpaqInputError
from .formats import SpatialFormat, detect_format, fuma_order_message, parse_format
from .spatial.checks import FormatContent, format_warnings
from .spatial.layouts import get_layout
from .spatial.sh import convert_normalisation, order_from_channels

__all__ = ["SignalPair", "PairReader", "read_audio", "write_audio", "atomic_write", "load_pair", "resample", "stream_threshold_bytes",
           "check_input_rate", "check_file_rate", "MIN_INPUT_RATE", "as_audio_array"]

#: Relative length difference (|Tr - Td| / max) below which ref and deg are trimmed silently-ish (with a warning).
LENGTH_TOLERANCE = 0.01

ARRAY_NAME = "<array>"

#: Default size (MiB) of a file pair's samples at the metrics' rate above which :func:`load_pair`
#: streams it instead of loading it whole (``SPAQ_STREAM_MB`` overrides).
STREAM_MB_DEFAULT = 256

#: Frames per block when files are scanned or streamed.
STREAM_BLOCK = 1 << 18


@dataclass
class SignalPair:
    """A validated reference/degraded pair.

    ``ref`` and ``deg`` are ``(batch, channels, time)`` float32 or float64 numpy arrays of the
    same shape (the times differ only when loaded with ``keep_lengths``), at ``sample_rate_used``; ambisonics are ACN/SN3D whatever the input
    normalisation was (``format.normalisation`` reports the user's input one).
    ``batched`` says whether the user gave ``(batch, channels, time)`` input
    (so that callers can return per-item results unreduced, or squeeze the batch).
    """

    ref: np.ndarray | None
    deg: np.ndarray | None
    sample_rate_in: int
    sample_rate_used: int
    format: SpatialFormat
    warnings: list[str] = field(default_factory=list)
    batched: bool = False
    ref_name: str = ARRAY_NAME
    deg_name: str = ARRAY_NAME
    reader: "PairReader | None" = None
    #: the delay found between reference and degraded and what was done with it
    #: (:meth:`spaq.auditory.alignment.Alignment.to_dict` plus ``applied``), None when not asked
    alignment: dict | None = None

    @property
    def streamed(self) -> bool:
        """True when the signals are not in memory: ``ref``/``deg`` are None and ``reader``
        reads ``(1, channels, n)`` segments of both on demand (long files)."""
        return self.reader is not None

    @property
    def n_samples(self) -> int:
        """Common length in samples at ``sample_rate_used`` (the reference's with ``keep_lengths``)."""
        return self.reader.n_samples if self.streamed else self.ref.shape[-1]

    @property
    def n_channels(self) -> int:
        return self.reader.n_channels if self.streamed else self.ref.shape[-2]

    @property
    def duration_s(self) -> float:
        """Duration of the (common) signal in seconds at ``sample_rate_used``."""
        return self.n_samples / float(self.sample_rate_used)

    def segments(self, block: int = STREAM_BLOCK):
        """Yield ``(start, ref, deg)`` with ``(B, C, n)`` numpy segments of at most ``block``
        samples covering the pair (in memory or streamed)."""
        for a in range(0, self.n_samples, block):
            b = min(self.n_samples, a + block)
            if self.streamed:
                r, d = self.reader.read(a, b)
            else:
                r, d = self.ref[..., a:b], self.deg[..., a:b]
            yield a, r, d


# --------------------------------------------------------------------------- files


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def read_audio(path) -> tuple[np.ndarray, int]:
    """Read an audio file (any format libsndfile reads: WAV 8/16/24/32-bit int or float, FLAC, ...).

    Returns ``(x, sample_rate)`` with ``x`` of shape ``(channels, time)``, integer formats
    scaled to [-1, 1] (mono files come as ``(1, time)``): float32 when that holds every sample
    exactly (8-24-bit PCM, 32-bit float, compressed formats), float64 for 32-bit PCM and
    64-bit float files.
    Raises :class:`SpaqInputError` if the file is missing, not a file, or not readable audio.
    A valid file with 0 samples is returned as ``(channels, 0)``: :func:`load_pair` refuses it.
    """
    p = Path(path)
    info = _file_info(p)
    try:
        data = _read_channels_first(p, 0, info.frames, _dtype_for(info))
    except (soundfile.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as e:
        raise SpaqInputError(f"cannot read {p} as audio (not a supported audio file or corrupt): {_one_line(e)}") from e
    return data, int(info.samplerate)


def _dtype_for(info) -> str:
    """float32 when it holds every sample of the file exactly, float64 for 32-bit PCM and doubles."""
    return "float64" if info.subtype in ("PCM_32", "DOUBLE") else "float32"


def _read_channels_first(path, start: int, stop: int, dtype: str, block: int = 1 << 16) -> np.ndarray:
    """Frames ``start:stop`` of an audio file as ``(channels, n)``, read block by block straight
    into that layout (no whole ``(time, channels)`` copy; cache-friendly transposes)."""
    with soundfile.SoundFile(str(path)) as f:
        stop = min(stop, f.frames)
        out = np.empty((f.channels, max(0, stop - start)), dtype=dtype)
        buf = np.empty((max(1, min(out.shape[1], block)), f.channels), dtype=dtype)
        if start:
            f.seek(start)
        done = 0
        while done < out.shape[1]:
            want = min(len(buf), out.shape[1] - done)
            n = f.read(out=buf[:want], dtype=dtype, always_2d=True).shape[0]
            if n == 0:
                break
            out[:, done:done + n] = buf[:n].T
            done += n
    return out[:, :done]


def _format_from_extension(path: Path) -> str:
    ext = path.suffix.lstrip(".").upper()
    aliases = {"AIF": "AIFF", "OGA": "OGG", "OPUS": "OGG"}
    ext = aliases.get(ext, ext)
    if ext not in soundfile.available_formats():
        raise SpaqError(
            f"cannot write {path}: unknown audio file extension {path.suffix!r} "
            "(use .wav, .flac, .aiff, ...)"
        )
    return ext


def write_audio(path, x, sample_rate: int, subtype: str = "FLOAT") -> None:
    """Write ``x`` of shape ``(channels, time)`` (or ``(time,)`` for mono) to ``path``.

    The container comes from the extension, ``subtype`` is a soundfile subtype
    ("FLOAT", "PCM_16", "PCM_24", ...); integer subtypes clip to [-1, 1].
    Atomic: the data goes to a temporary file in the same folder that is then
    renamed over ``path`` with :func:`os.replace`, so ``path`` is either the old
    file or the complete new one, never a partial file; the temporary file is
    removed on any failure. Raises :class:`SpaqError` if the file cannot be written.
    """
    p = Path(path)
    fmt = _format_from_extension(p)
    arr = _to_numpy(x, "data to write")
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise SpaqInputError(f"cannot write {p}: expected (channels, time), got shape {tuple(arr.shape)}")
    sample_rate = _check_rate(sample_rate, "sample_rate")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise SpaqError(f"cannot write {p}: folder {folder} does not exist")
    try:
        atomic_write(p, lambda tmp: soundfile.write(tmp, np.ascontiguousarray(arr.T), sample_rate, subtype=subtype,
                                                    format=fmt))
    except Exception as e:
        if not isinstance(e, SpaqError):
            raise SpaqError(f"cannot write {p}: {_one_line(e)}") from e
        raise


# --------------------------------------------------------------------------- resampling


#: the lowest sample rate of audio spaq scores (Hz): below it there is no audio band left to compare (and the
#: resampling to a metric's rate would need filters as long as the ratio)
MIN_INPUT_RATE = 4000


def check_input_rate(sr, label: str) -> int:
    """``sr`` as int if it is a sample rate spaq reads audio at (a positive integer >= :data:`MIN_INPUT_RATE`);
    else :class:`SpaqInputError` naming ``label``."""
    sr = _check_rate(sr, label if label == "sample_rate" else f"{label}: sample rate")
    if sr < MIN_INPUT_RATE:
        raise SpaqInputError(f"{label}: sample rate {sr} Hz is below {MIN_INPUT_RATE} Hz, the lowest spaq reads "
                             "(no audio band left to score)")
    return sr


def check_file_rate(file_rate: int, sample_rate, name: str) -> int:
    """A file's own rate, where the caller's ``sample_rate`` (for arrays) is None or agrees with it; a
    one-line :class:`SpaqInputError` where it contradicts the file (it would be silently ignored)."""
    if sample_rate is not None and _check_rate(sample_rate, "sample_rate") != int(file_rate):
        raise SpaqInputError(f"sample_rate={sample_rate} but {name} is at {int(file_rate)} Hz; sample_rate is for "
                             "arrays (a file's own rate is used)")
    return int(file_rate)


def _check_rate(sr, what: str) -> int:
    try:
        ok = float(sr) == int(sr) and int(sr) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(sr, bool):
        raise SpaqInputError(f"{what} must be a positive integer number of Hz, got {sr!r}")
    return int(sr)


def resample(x, sr_from: int, sr_to: int) -> np.ndarray:
    """Resample ``x`` ``(..., time)`` from ``sr_from`` to ``sr_to`` Hz along the last axis.

    Polyphase filtering (:func:`scipy.signal.resample_poly`) with the reduced
    ratio ``sr_to/g : sr_from/g``; output length ``ceil(time * sr_to / sr_from)``.
    Returns float32 for float32 input, else float64 (the input unchanged if the rates are
    equal); the filtering itself runs in float64.
    """
    sr_from = _check_rate(sr_from, "sr_from")
    sr_to = _check_rate(sr_to, "sr_to")
    x = np.asarray(x)
    out_dtype = np.float32 if x.dtype == np.float32 else np.float64
    x = x.astype(out_dtype, copy=False)
    if sr_from == sr_to:
        return x
    g = math.gcd(sr_from, sr_to)
    from scipy.signal import resample_poly  # imported here: scipy.signal takes ~1 s to import

    return resample_poly(x.astype(np.float64), sr_to // g, sr_from // g, axis=-1).astype(out_dtype, copy=False)


def _resample_halfwidth(up: int, down: int) -> int:
    """Input samples on each side that one output sample of :func:`resample` depends on
    (``scipy.signal.resample_poly``'s default filter has ``10 max(up, down)`` taps per side at
    the upsampled rate), rounded up to a multiple of ``down`` with a margin."""
    need = (10 * max(up, down)) // up + 2
    return -(-need // down) * down + down


class _FileSegments:
    """Segments of one audio file, resampled to ``sr_to``, read on demand.

    ``read(a, b)`` returns output samples ``a:b`` as ``(channels, b - a)``: the same values as
    resampling the whole file with :func:`resample` (each block is resampled with enough
    input on both sides, at a multiple of the polyphase period), without ever holding it."""

    def __init__(self, path, info, sr_to: int, dtype):
        self.path = str(path)
        self.channels, self.frames, self.sr_from = int(info.channels), int(info.frames), int(info.samplerate)
        self.sr_to = int(sr_to)
        g = math.gcd(self.sr_from, self.sr_to)
        self.up, self.down = self.sr_to // g, self.sr_from // g
        self.n_out = -(-self.frames * self.up // self.down)
        self.pad = _resample_halfwidth(self.up, self.down)
        self.dtype = dtype

    def _read_in(self, a: int, b: int) -> np.ndarray:
        return _read_channels_first(self.path, a, b, self.dtype)

    def read(self, a: int, b: int) -> np.ndarray:
        if self.up == self.down:
            return self._read_in(a, b)
        from scipy.signal import resample_poly

        i0 = max(0, (a * self.down // self.up) // self.down * self.down - self.pad)
        i1 = min(self.frames, -(-b * self.down // self.up) + self.pad)
        y = resample_poly(self._read_in(i0, i1).astype(np.float64), self.up, self.down, axis=-1)
        o0 = i0 * self.up // self.down  # exact: i0 is a multiple of down
        return y[:, a - o0:b - o0].astype(self.dtype, copy=False)


class PairReader:
    """Reads aligned ``(ref, deg)`` segments of two long audio files on demand, as
    :func:`load_pair` would have delivered them whole: ``read(a, b)`` returns two
    ``(1, channels, b - a)`` numpy arrays at the pair's rate (each file resampled on the fly if
    needed), ambisonics in ACN/SN3D, trimmed to the common length ``n_samples``."""

    def __init__(self, ref: _FileSegments, deg: _FileSegments, n_samples: int, normalisation: str | None,
                 offsets: tuple[int, int] = (0, 0), n_channels: int | None = None, fmt=None):
        self._files = (ref, deg)
        self._fmt = fmt  # the pair's format: a one-channel file beside a layout goes to its centre (_pad_channels)
        self._offsets = (int(offsets[0]), int(offsets[1]))
        self.n_samples = int(n_samples)
        #: both signals' channel count (ambisonics of a lower order are zero-padded to it)
        self.n_channels = int(n_channels or ref.channels)
        self.dtype = ref.dtype
        self._norm = normalisation
        #: called as ``on_read(a, b)`` after each read (progress reporting); None: nothing
        self.on_read = None

    def read(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = max(0, int(a)), min(self.n_samples, int(b))
        out = []
        for f, o in zip(self._files, self._offsets):
            x = _pad_channels(f.read(a + o, b + o), self.n_channels, self._fmt)
            if self._norm not in (None, "sn3d"):
                x = convert_normalisation(x, self._norm, "sn3d")
            out.append(np.ascontiguousarray(x, dtype=self.dtype)[None])
        if self.on_read is not None:
            self.on_read(a, b)
        return out[0], out[1]


def stream_threshold_bytes() -> int:
    """Pairs of files larger than this (samples at the metrics' rate, both files) are streamed:
    ``SPAQ_STREAM_MB`` (MiB) or :data:`STREAM_MB_DEFAULT`."""
    v = os.environ.get("SPAQ_STREAM_MB", "")
    try:
        mb = float(v) if v.strip() else STREAM_MB_DEFAULT
    except ValueError:
        raise SpaqInputError(f"SPAQ_STREAM_MB must be a number of MiB, got {v!r}") from None
    return int(mb * 2 ** 20)


def _scan_file(path, label: str, dtype: str, content=None) -> tuple[bool, tuple]:
    """One pass over a file in blocks: raise if it holds NaN/Inf; return whether it is silent and its
    level statistics (:func:`_level_stats`); ``content``: a :class:`spaq.spatial.checks.FormatContent`
    fed every block."""
    silent = True
    peak, hot, n = 0.0, 0, 0
    with soundfile.SoundFile(str(path)) as f:
        for block in f.blocks(blocksize=STREAM_BLOCK, dtype=dtype, always_2d=True):
            pk = _check_content(block.T, label)  # per channel
            if silent and bool((pk > 0).any()):
                silent = False
            p, h, m = _level_stats(block, float(pk.max()))
            peak, hot, n = max(peak, p), hot + h, n + m
            if content is not None:
                content.add(block.T)
    return silent, (peak, hot, n)


# --------------------------------------------------------------------------- pairs


def _is_pathlike(x) -> bool:
    return isinstance(x, (str, os.PathLike))


def _to_numpy(x: Any, label: str) -> np.ndarray:
    """Array-like audio -> float32 (float32 input) or float64 numpy. Integer PCM (e.g. int16 from
    ``scipy.io.wavfile.read``) is scaled to [-1, 1) by its type's full scale, as :func:`read_audio` reads
    integer files: signed ``x / 2^(bits-1)``, unsigned (8-bit WAV) ``(x - 2^(bits-1)) / 2^(bits-1)``."""
    if x is None:
        raise SpaqInputError(f"{label} is missing (None); expected a file path or an array")
    if isinstance(x, (bytes, bytearray)):
        raise SpaqInputError(f"{label} is bytes; give a file path as str or pathlib.Path, or an array of samples")
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        import torch

        if x.is_complex():
            raise SpaqInputError(f"{label} is complex; expected real-valued audio")
        if x.is_floating_point():
            dt = torch.float32 if x.dtype == torch.float32 else torch.float64
            return x.detach().to(device="cpu", dtype=dt).numpy()
        x = x.detach().cpu().numpy()  # integer tensors: scaled as integer arrays below
    arr = np.asarray(x)
    if np.iscomplexobj(arr):
        raise SpaqInputError(f"{label} is complex; expected real-valued audio")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise SpaqInputError(f"{label} has dtype {arr.dtype}; expected real-valued audio samples")
    if np.issubdtype(arr.dtype, np.integer):
        bits = 8 * arr.dtype.itemsize
        full = float(2 ** (bits - 1))
        if np.issubdtype(arr.dtype, np.unsignedinteger):
            return (arr.astype(np.float64) - full) / full
        return arr.astype(np.float64) / full
    return arr.astype(np.float32 if arr.dtype == np.float32 else np.float64, copy=False)


def _load_one(x, role: str, sample_rate: int | None) -> tuple[np.ndarray, int, str, bool, str]:
    """-> (x [B, C, T] float32 or float64, rate, name, batched, label for messages)."""
    if _is_pathlike(x):
        name = str(x)
        label = f"{role} ({name})"
        data, sr = read_audio(x)
        return data[None], sr, name, False, label
    label = f"{role} {ARRAY_NAME}"
    arr = _to_numpy(x, role if x is None or isinstance(x, (bytes, bytearray)) else label)
    if sample_rate is None:
        raise SpaqInputError(f"{role} is an array: sample_rate is required for array inputs")
    shape = tuple(arr.shape)
    if arr.ndim == 2:
        c, t = arr.shape
        batched = False
        arr = arr[None]
    elif arr.ndim == 3:
        batched = True
        c, t = arr.shape[1:]
    else:
        raise SpaqInputError(
            f"{label} has shape {tuple(arr.shape)}; expected (channels, time) or (batch, channels, time)"
        )
    if arr.shape[0] == 0:
        raise SpaqInputError(f"{label} has an empty batch (shape {tuple(arr.shape)})")
    if c == 0:
        raise SpaqInputError(f"{label} has no channels (shape {tuple(arr.shape)})")
    if c > t > 0:
        raise SpaqInputError(
            f"{label} has shape {shape}: {c} channels and {t} samples; "
            "expected (channels, time) — is it transposed (time, channels)?"
        )
    return np.ascontiguousarray(arr), check_input_rate(sample_rate, "sample_rate"), ARRAY_NAME, batched, label


def as_audio_array(x: Any, label: str = "signal") -> np.ndarray:
    """Array-like audio (numpy, torch, nested lists) as float32 / float64 numpy, integer PCM scaled to
    [-1, 1) by its type's full scale; one-line :class:`SpaqInputError` for complex, boolean, object or
    missing input. What every entry point of spaq reads arrays with."""
    return _to_numpy(x, label)


#: a signal with more than this share of its samples at or above :data:`HOT_LEVEL` of full scale looks clipped
HOT_SHARE = 1e-3
HOT_LEVEL = 0.99


def _peaks(x: np.ndarray) -> np.ndarray:
    """``max |x|`` over every axis but the first (``(B,)``; ``x (C, T)``: per channel): two reductions without
    a temporary array; NaN propagates."""
    y = x.reshape(x.shape[0], -1)
    return np.maximum(y.max(axis=-1), -y.min(axis=-1))


def _level_stats(x: np.ndarray, peak: float | None = None) -> tuple[float, int, int]:
    """``(peak |x|, samples at or above HOT_LEVEL, samples)`` of any block of samples (``peak``: its peak when
    already known; the hot samples are counted only when it reaches HOT_LEVEL, else there are none)."""
    if not x.size:
        return 0.0, 0, 0
    peak = float(_peaks(x.reshape(1, -1))[0]) if peak is None else float(peak)
    hot = int(np.count_nonzero(np.abs(x) >= HOT_LEVEL)) if peak >= HOT_LEVEL else 0
    return peak, hot, int(x.size)


def _level_warning(stats: tuple, label: str) -> str | None:
    """A warning for samples beyond full scale (|x| > 1: they would clip in an integer file) or for a signal
    that looks clipped (more than HOT_SHARE of its samples at or above HOT_LEVEL); None otherwise."""
    peak, hot, n = stats
    if peak > 1.0:
        return (f"{label} has samples beyond full scale (peak {20 * np.log10(peak):+.1f} dBFS): written to an "
                "integer file they would clip")
    if n and hot > HOT_SHARE * n:
        return (f"{label} looks clipped: {100 * hot / n:.1f} % of its samples are within 0.1 dB of full scale")
    return None


def _check_content(x: np.ndarray, label: str) -> np.ndarray:
    """Raise for an empty signal or NaN / Inf samples; return the peaks :func:`_peaks` (``(B,)`` of ``x (B, C, T)``),
    whose finiteness is the check (a max and a min propagate NaN; no temporary array)."""
    if x.shape[-1] == 0:
        raise SpaqInputError(f"{label} is empty (0 samples)")
    pk = _peaks(x)
    if np.isfinite(pk).all():
        return pk
    finite = np.isfinite(x)
    if not finite.all():
        has_nan = bool(np.isnan(x).any())
        has_inf = bool(np.isinf(x).any())
        what = " and ".join(w for w, h in (("NaN", has_nan), ("Inf", has_inf)) if h)
        n_bad = int(x.size - finite.sum())
        raise SpaqInputError(f"{label} contains {what} samples ({n_bad} non-finite values)")


def _channels_to_pad(n_ref: int, n_deg: int, fmt, ref_label: str, deg_label: str, warnings: list) -> int:
    """The channel count both signals get: their own when equal; for ambisonic signals of two
    orders (4, 9, 16, ... channels; ``fmt`` None or ambisonics in ACN) the larger, the
    lower-order one zero-padded, and one channel beside ambisonics read as W; one channel beside
    two (``fmt`` None or binaural) two, played diotically (:func:`_pad_channels`); a warning says
    which; otherwise the one-line error."""
    if n_ref == n_deg:
        return n_ref
    f = fmt
    if isinstance(fmt, str):
        try:
            f = parse_format(fmt)
        except ValueError:
            f = None  # _resolve_format reports a bad format; here it only means "neither binaural nor ambisonics"
    known = isinstance(f, SpatialFormat)
    if known and f.is_layout and f.kind != "mono" and sorted((n_ref, n_deg)) == [1, get_layout(f.layout).n_channels]:
        low, high = (ref_label, deg_label) if n_ref == 1 else (deg_label, ref_label)
        lay = get_layout(f.layout)
        where = "the centre loudspeaker (C)" if "C" in lay.labels else "L and R at -3 dB each (a phantom centre)"
        warnings.append(f"{low} has one channel beside {high}'s {lay.name} layout: {low} is played from {where}, as a "
                        f"mono downmix over the loudspeakers")
        return lay.n_channels
    if sorted((n_ref, n_deg)) == [1, 2] and (fmt is None or (known and f.kind == "binaural")):
        low, high = (ref_label, deg_label) if n_ref == 1 else (deg_label, ref_label)
        warnings.append(f"{low} has one channel and {high} two: {low} is played diotically (the same signal in both "
                        f"ears, as a mono downmix over headphones)")
        return 2
    # one channel beside an ambisonic signal counts as order 0 (W); alone it stays mono
    o_r, o_d = (0 if n == 1 else order_from_channels(n) for n in (n_ref, n_deg))
    ambi = fmt is None or (known and f.is_ambisonics and f.normalisation.lower() != "fuma")
    if not (ambi and o_r is not None and o_d is not None and max(o_r, o_d) >= 1):
        raise SpaqInputError(f"ref and deg have different channel counts: {n_ref} in {ref_label}, {n_deg} in {deg_label}")
    low, high = (ref_label, deg_label) if o_r < o_d else (deg_label, ref_label)
    if min(o_r, o_d) == 0:  # one channel beside ambisonics: a mono downmix, read as W (SN3D: the omni signal)
        warnings.append(f"{low} has one channel: read as W (order-0 ambisonics, ACN/SN3D) and zero-padded to "
                        f"{max(n_ref, n_deg)} channels; metrics decode it with {high}'s order-{max(o_r, o_d)} decoder")
    else:
        warnings.append(f"{low} is order-{min(o_r, o_d)} ambisonics and {high} order {max(o_r, o_d)}: the lower-order "
                        f"signal is zero-padded to {max(n_ref, n_deg)} channels (metrics decode each signal at the order "
                        f"it carries; W alone at the other's)")
    return max(n_ref, n_deg)


def _mono_gains(fmt, n: int) -> np.ndarray | None:
    """The ``(n,)`` gains a one-channel signal gets beside a loudspeaker layout of ``n`` channels (``fmt``): 1 on
    its centre loudspeaker, or 1/sqrt(2) on L and R where it has none (stereo); None for other formats."""
    f = fmt
    if isinstance(fmt, str):
        try:
            f = parse_format(fmt)
        except ValueError:
            return None
    if not (isinstance(f, SpatialFormat) and f.is_layout and f.kind != "mono"):
        return None
    lay = get_layout(f.layout)
    if lay.n_channels != n:
        return None
    g = np.zeros(n)
    if "C" in lay.labels:
        g[lay.labels.index("C")] = 1.0
    else:
        g[[lay.labels.index("L"), lay.labels.index("R")]] = 1.0 / np.sqrt(2.0)
    return g


def _pad_channels(x: np.ndarray, n: int, fmt=None) -> np.ndarray:
    """``(..., C, T)`` -> ``(..., n, T)`` with zero channels appended (``x`` itself when C == n); one
    channel to two: the same signal twice (diotic, beside a binaural signal); one channel beside a loudspeaker
    layout ``fmt`` of ``n`` channels: on its centre loudspeaker (:func:`_mono_gains`)."""
    if x.shape[-2] == n:
        return x
    g = _mono_gains(fmt, n) if x.shape[-2] == 1 else None
    if g is not None:
        return x * g.astype(x.dtype)[:, None]
    if x.shape[-2] == 1 and n == 2:
        return np.repeat(x, 2, axis=-2)
    pad = [(0, 0)] * x.ndim
    pad[-2] = (0, n - x.shape[-2])
    return np.pad(x, pad)


def _resolve_format(fmt, n_ch: int, ref_label: str) -> tuple[SpatialFormat, str]:
    """-> (format as reported, with the user's normalisation; that normalisation)."""
    if fmt is None:
        try:
            f = detect_format(n_ch)
        except ValueError as e:
            raise SpaqInputError(f"{ref_label}: {_one_line(e)}") from e
        if f.kind == "mono":
            raise SpaqInputError(
                f"{ref_label} has 1 channel (mono), which is not a spatial format; "
                "give the format mono (--format mono) to score it anyway"
            )
        return f, f.normalisation
    if isinstance(fmt, str):
        try:
            f = parse_format(fmt)
        except ValueError as e:
            raise SpaqInputError(_one_line(e)) from e
    elif isinstance(fmt, SpatialFormat):
        f = fmt
    else:
        raise SpaqInputError(f"format must be a SpatialFormat or a string, got {type(fmt).__name__}")
    if f.is_ambisonics:
        norm = f.normalisation.lower()
        if f.order == 0:  # "ambisonics" without an order: take it from the channel count
            order = order_from_channels(n_ch)
            if order is None:
                raise SpaqInputError(
                    f"format ambisonics expects (N+1)^2 channels (4, 9, 16, ...) but {ref_label} has {n_ch}"
                )
            f = SpatialFormat("ambisonics", order, norm)
        if norm == "fuma" and (f.order != 1 or n_ch != 4):
            raise SpaqInputError(fuma_order_message(n_ch, ref_label))
        if f.n_channels != n_ch:
            raise SpaqInputError(f"format {f.describe()} expects {f.n_channels} channel{'' if f.n_channels == 1 else 's'} but {ref_label} has {n_ch}")
        return f, norm
    if f.n_channels != n_ch:
        raise SpaqInputError(f"format {f.describe()} expects {f.n_channels} channel{'' if f.n_channels == 1 else 's'} but {ref_label} has {n_ch}")
    return f, f.normalisation


def _format_content(fmt, n_ch: int, sr: int, check_binaural: bool = False):
    """A :class:`~spaq.spatial.checks.FormatContent` for a file of ``n_ch`` channels read in ``fmt`` (as
    :func:`_resolve_format` reads it), or None when there is nothing to check or the format does not fit
    (the checks after the scan say so); ``check_binaural``: whether a binaural file is checked for being two
    ears (the reference's)."""
    try:
        f = _resolve_format(fmt, n_ch, "")[0]
    except SpaqInputError:
        return None
    c = FormatContent(f, sr, n_ch, check_binaural)
    return c if c.active else None


def _check_duration(n: int, sr: int, label: str, min_duration_s: float) -> None:
    dur = n / sr
    if dur < min_duration_s:
        raise SpaqInputError(
            f"{label} is too short: {dur * 1000:.1f} ms ({n} samples at {sr} Hz), "
            f"at least {min_duration_s * 1000:.0f} ms is needed"
        )


def _common_length(tr: int, td: int, sr: int, ref_label: str, deg_label: str, trim: bool, warnings: list,
                   slack: int = 0) -> int:
    """The length both signals are trimmed to (< 1 % difference: with a warning; more: only with
    ``trim``). ``slack``: a difference up to this many samples is expected (the delay an
    alignment removed from one side's start: a delayed copy of equal length ends early) and
    trimmed silently; only the rest counts."""
    if abs(tr - td) <= slack:
        return min(tr, td)
    if tr == td:
        return tr
    rel = (abs(tr - td) - slack) / max(tr, td)
    n = min(tr, td)
    if rel >= LENGTH_TOLERANCE and not trim:
        raise SpaqInputError(
            f"ref and deg lengths differ by {rel * 100:.2f} % ({tr / sr:.3f} s vs {td / sr:.3f} s: {tr} vs {td} samples "
            f"at the {sr} Hz they are compared at; "
            f"{ref_label}, {deg_label}), more than {LENGTH_TOLERANCE * 100:.0f} %; "
            "use --trim (trim=True) to compare the common start"
        )
    warnings.append(f"lengths differ: ref has {tr} samples, deg {td} at {sr} Hz ({tr / sr:.3f} s vs {td / sr:.3f} s, "
                    f"{rel * 100:.2f} % difference); both trimmed to {n} samples")
    return n


#: seconds at the start of each file from which the delay of a streamed pair is estimated
ALIGN_WINDOW_S = 30.0


#: delays below this (ms) are reported but not applied: a filter's group delay, a small part
#: of one 40 ms analysis frame, which no metric scores as an impairment
MIN_APPLIED_DELAY_MS = 0.5


def _should_apply(al) -> bool:
    return bool(al.reliable) and abs(al.delay_ms) >= MIN_APPLIED_DELAY_MS


def _estimate(ref, deg, sr: int, kind: str):
    """:func:`spaq.auditory.alignment.estimate_delay`, or None when there is nothing to align
    (a silent or too short side: the metrics say what they make of it)."""
    from .auditory.alignment import estimate_delay

    try:
        return estimate_delay(ref, deg, sr, kind)
    except SpaqInputError:
        return None


def _alignment_note(al, applied: bool) -> dict:
    d = al.to_dict()
    d["applied"] = bool(applied)
    return d


def _align_warning(al, applied: bool, where: str = "") -> str | None:
    if not applied and not al.reliable:
        from .auditory.alignment import MAX_DELAY_MS

        return (f"delay between reference and degraded not estimated reliably{where} (confidence "
                f"{al.confidence:.2f}; delays up to {MAX_DELAY_MS:g} ms either way are searched): not aligned; "
                "--no-align (align=False) silences this")
    if applied and al.delay_samples != 0:
        lag = "lags" if al.delay_samples > 0 else "leads"
        return f"aligned{where}: the degraded signal {lag} the reference by {abs(al.delay_ms):.1f} ms; both trimmed to the overlap"
    return None


def _align_arrays(r: np.ndarray, d: np.ndarray, sr: int, kind: str, warnings: list):
    """Per batch item, the delay of ``d`` against ``r`` (``(B, C, T)``; one side may have batch
    1) -> (list of ref items, list of deg items) shifted to a common start (not yet trimmed to a
    common length) and the alignment record. An unreliable estimate is not applied (a warning
    says so)."""
    b = max(r.shape[0], d.shape[0])
    rs, ds, notes = [], [], []
    for i in range(b):
        ri, di = r[min(i, r.shape[0] - 1)], d[min(i, d.shape[0] - 1)]
        al = _estimate(ri, di, sr, kind)
        if al is None:
            rs.append(ri)
            ds.append(di)
            notes.append({"applied": False, "reason": "a side is silent or too short: not aligned"})
            continue
        applied = _should_apply(al)
        k = al.delay_samples if applied else 0
        rs.append(ri[..., max(0, -k):])
        ds.append(di[..., max(0, k):])
        notes.append(_alignment_note(al, applied))
        w = _align_warning(al, applied, f" (batch item {i})" if b > 1 else "")
        if w:
            warnings.append(w)
    return rs, ds, (notes[0] if b == 1 else {"items": notes})


def _rate_warning(sr_r: int, sr_d: int, sr_used: int, warnings: list) -> None:
    if sr_d != sr_r:
        what = f"deg resampled to ref's {sr_r} Hz" if sr_used == sr_r else f"both resampled to {sr_used} Hz"
        warnings.append(f"sample rates differ: ref at {sr_r} Hz, deg at {sr_d} Hz; {what}")


def _file_info(path):
    p = Path(path)
    if not p.exists():
        raise SpaqInputError(f"audio file not found: {p}")
    if not p.is_file():
        raise SpaqInputError(f"not a file: {p}")
    try:
        info = soundfile.info(str(p))
    except (soundfile.SoundFileError, RuntimeError, OSError, ValueError, TypeError) as e:
        raise SpaqInputError(f"cannot read {p} as audio (not a supported audio file or corrupt): {_one_line(e)}") from e
    check_input_rate(info.samplerate, str(p))
    return info


def _stream_size(ref, deg, target_rate) -> int | None:
    """Bytes the pair would take at the metrics' rate if loaded whole; None if not two readable files."""
    if not (_is_pathlike(ref) and _is_pathlike(deg)):
        return None
    total = 0
    for path in (ref, deg):
        info = _file_info(path)
        sr_to = target_rate or info.samplerate
        per = np.dtype(_dtype_for(info)).itemsize
        total += info.channels * math.ceil(info.frames * sr_to / max(1, info.samplerate)) * per
    return total


def _load_pair_streamed(ref, deg, target_rate, fmt, trim, min_duration_s, align: bool = False) -> SignalPair:
    """:func:`load_pair` for two long files: the same checks, made in one pass over each file
    in blocks, and a :class:`PairReader` instead of the samples."""
    ref_label, deg_label = f"ref ({ref})", f"deg ({deg})"
    infos = [_file_info(ref), _file_info(deg)]
    for info, label in zip(infos, (ref_label, deg_label)):
        if info.frames == 0:
            raise SpaqInputError(f"{label} is empty (0 samples)")
    dt = "float64" if "float64" in (_dtype_for(infos[0]), _dtype_for(infos[1])) else "float32"
    contents = [_format_content(fmt, int(info.channels), int(info.samplerate), check)
                for info, check in zip(infos, (True, False))]
    scans = [_scan_file(p, label, dt, c) for p, label, c in ((ref, ref_label, contents[0]), (deg, deg_label, contents[1]))]
    silent = [sc[0] for sc in scans]
    warnings: list[str] = []
    n_ch = _channels_to_pad(int(infos[0].channels), int(infos[1].channels), fmt, ref_label, deg_label, warnings)
    spatial_fmt, in_norm = _resolve_format(fmt, n_ch, ref_label)
    if silent[0]:
        raise SpaqInputError(f"{ref_label}: reference is silent (all samples are zero): nothing to compare against")
    for (_, stats), lab in zip(scans, (ref_label, deg_label)):  # as the whole-file path says them
        w = _level_warning(stats, lab)
        if w and w not in warnings:
            warnings.append(w)
    if silent[1]:
        warnings.append(f"degraded signal is silent (all samples are zero): {deg_label}")
    for c, lab in zip(contents, (ref_label, deg_label)):
        if c is not None:
            warnings.extend(w for w in c.warnings(lab) if w not in warnings)
    sr_r, sr_d = int(infos[0].samplerate), int(infos[1].samplerate)
    sr_used = sr_r if target_rate is None else _check_rate(target_rate, "target_rate")
    _rate_warning(sr_r, sr_d, sr_used, warnings)
    files = [_FileSegments(p, info, sr_used, dt) for p, info in zip((ref, deg), infos)]
    for f, label in zip(files, (ref_label, deg_label)):
        _check_duration(f.n_out, sr_used, label, min_duration_s)
    offsets, alignment, slack = (0, 0), None, 0
    lengths = [files[0].n_out, files[1].n_out]
    if align:
        w = int(ALIGN_WINDOW_S * sr_used)
        al = _estimate(_pad_channels(files[0].read(0, min(w, files[0].n_out)), n_ch, spatial_fmt),
                       _pad_channels(files[1].read(0, min(w, files[1].n_out)), n_ch, spatial_fmt), sr_used,
                       spatial_fmt.kind)
        if al is None:
            alignment = {"applied": False, "reason": "a side is silent or too short: not aligned"}
        else:
            applied = _should_apply(al)
            k = al.delay_samples if applied else 0
            offsets = (max(0, -k), max(0, k))
            lengths = [lengths[0] - offsets[0], lengths[1] - offsets[1]]
            slack = abs(k)
            alignment = _alignment_note(al, applied)
            note = _align_warning(al, applied)
            if note:
                warnings.append(note)
    n = _common_length(lengths[0], lengths[1], sr_used, ref_label, deg_label, trim, warnings, slack)
    norm = in_norm if spatial_fmt.is_ambisonics else None
    return SignalPair(ref=None, deg=None, sample_rate_in=sr_r, sample_rate_used=sr_used, format=spatial_fmt,
                      warnings=warnings, batched=False, ref_name=str(ref), deg_name=str(deg),
                      reader=PairReader(files[0], files[1], n, norm, offsets, n_channels=n_ch, fmt=spatial_fmt),
                      alignment=alignment)


def load_pair(
    ref,
    deg,
    *,
    sample_rate: int | None = None,
    target_rate: int | None = None,
    fmt: SpatialFormat | str | None = None,
    trim: bool = False,
    min_duration_s: float = 0.04,
    stream: bool | None = None,
    align: bool = False,
    keep_lengths: bool = False,
    reference_free: bool = False,
) -> SignalPair:
    """Load, validate and align a reference/degraded pair.

    ``ref``/``deg``: file paths, or numpy arrays / torch tensors of shape
    ``(channels, time)`` or ``(batch, channels, time)`` (then ``sample_rate`` in Hz is
    required; it is only used for array inputs). One side may be unbatched (or have
    batch 1) and is broadcast over the other's batch.
    ``fmt``: a :class:`SpatialFormat`, a string for :func:`parse_format`, or None to
    detect from the channel count. ``target_rate``: resample both to this rate
    (None keeps ref's rate). ``trim``: trim both to the shorter when the lengths
    differ by 1 % or more (below 1 % they are always trimmed, with a warning).
    ``stream``: for two file paths, ``True`` returns a streamed pair (``ref``/``deg`` None,
    ``reader`` reads segments on demand; the same checks, made block by block), ``None``
    (default) streams when the pair's samples at the used rate would exceed
    :func:`stream_threshold_bytes` (256 MiB: about 44 s of 3OA), ``False`` never streams.
    ``align``: estimate the delay of ``deg`` against ``ref`` (per batch item; a streamed pair
    from its first ``ALIGN_WINDOW_S`` seconds) with :func:`spaq.auditory.alignment.estimate_delay`
    and trim both to their overlap; the lengths are compared after alignment. The record is
    ``pair.alignment``; an unreliable estimate is not applied and gives a warning; a delay below
    ``MIN_APPLIED_DELAY_MS`` (a filter's group delay) is reported, not applied.
    ``keep_lengths`` (in memory, without ``align`` or ``trim``): each signal keeps its own length,
    for metrics that score each signal whole (``common_length = False``: an embedding distance);
    ``ref`` and ``deg`` then differ in time. ``reference_free``: the pair is ``deg`` alone (for
    metrics that need no reference; ``ref`` is not read): messages name the degraded signal, and its
    silence is a warning, not an error (such a metric defines the score of silence).

    Returns a :class:`SignalPair` with ``(batch, channels, time)`` signals, both float32 when
    both sources are float32-exact (see :func:`read_audio`), else both float64.
    Raises :class:`SpaqInputError` for anything wrong with the input.
    """
    if sample_rate is not None and all(_is_pathlike(v) for v in (ref, deg) if v is not None):
        # only files: sample_rate can only have been meant for them, and a contradiction would be silently ignored
        for v in (ref, deg):
            if v is not None:
                check_file_rate(_file_info(v).samplerate, sample_rate, str(v))
    if stream is not False:
        size = _stream_size(ref, deg, target_rate)
        if size is not None and (stream or size > stream_threshold_bytes()):
            return _load_pair_streamed(ref, deg, target_rate, fmt, trim, min_duration_s, align)
        if stream and size is None:
            raise SpaqInputError("stream=True needs two file paths")
    d, sr_d, deg_name, deg_b, deg_label = _load_one(deg, "deg", sample_rate)
    if reference_free:  # the degraded signal stands in for the reference: read and checked once
        r, sr_r, ref_name, ref_b, ref_label = d, sr_d, deg_name, deg_b, deg_label
    else:
        r, sr_r, ref_name, ref_b, ref_label = _load_one(ref, "ref", sample_rate)
        peaks_r = _check_content(r, ref_label)
    peaks_d = _check_content(d, deg_label)  # (B,) each item's peak |x|
    if reference_free:
        peaks_r = peaks_d
    warnings: list[str] = []

    # channels and format (ambisonics of two orders: the lower one zero-padded)
    n_ch = _channels_to_pad(r.shape[1], d.shape[1], fmt, ref_label, deg_label, warnings)
    r, d = _pad_channels(r, n_ch, fmt), _pad_channels(d, n_ch, fmt)
    spatial_fmt, in_norm = _resolve_format(fmt, n_ch, ref_label)

    # batch
    br, bd = r.shape[0], d.shape[0]
    if br != bd and br != 1 and bd != 1:
        raise SpaqInputError(f"ref and deg have different batch sizes: {br} and {bd}")
    batched = ref_b or deg_b

    # silence
    ref_silent = peaks_r == 0  # all samples zero (the zero-padded channels add none)
    if ref_silent.any() and not reference_free:
        where = f" (batch item {int(np.flatnonzero(ref_silent)[0])})" if r.shape[0] > 1 else ""
        raise SpaqInputError(
            f"{ref_label}{where}: reference is silent (all samples are zero): nothing to compare against"
        )
    for x, pk, lab in ((d, peaks_d, deg_label),) if reference_free else ((r, peaks_r, ref_label), (d, peaks_d, deg_label)):
        w = _level_warning(_level_stats(x, float(pk.max())), lab)
        if w and w not in warnings:
            warnings.append(w)
    deg_silent = peaks_d == 0
    if deg_silent.any():
        where = f" (batch items {np.flatnonzero(deg_silent).tolist()})" if d.shape[0] > 1 else ""
        warnings.append(f"degraded signal is silent (all samples are zero){where}: {deg_label}")
    # a binaural reference (or the one signal read without one) is checked for being two ears; a degraded
    # signal's lost coherence may be its degradation
    for x, sr_x, lab, ears in (((d, sr_d, deg_label, True),) if reference_free else
                               ((r, sr_r, ref_label, True), (d, sr_d, deg_label, False))):
        warnings.extend(w for w in format_warnings(x, spatial_fmt, sr_x, lab, ears) if w not in warnings)

    # sample rates: each side goes straight to the rate used (no double resampling)
    sample_rate_in = sr_r
    sr_used = sr_r if target_rate is None else _check_rate(target_rate, "target_rate")
    _rate_warning(sr_r, sr_d, sr_used, warnings)
    d = resample(d, sr_d, sr_used)
    r = d if reference_free else resample(r, sr_r, sr_used)

    # duration, alignment and lengths
    for x, label in ((r, ref_label), (d, deg_label)):
        _check_duration(x.shape[-1], sr_used, label, min_duration_s)
    alignment = None
    if align:
        rs, ds, alignment = _align_arrays(r, d, sr_used, spatial_fmt.kind, warnings)
        slack = max(abs(r.shape[-1] - x.shape[-1]) + abs(d.shape[-1] - y.shape[-1]) for x, y in zip(rs, ds))
        n = _common_length(min(x.shape[-1] for x in rs), min(x.shape[-1] for x in ds), sr_used, ref_label,
                           deg_label, trim, warnings, slack)
        _check_duration(n, sr_used, "the aligned overlap", min_duration_s)
        r, d = np.stack([x[..., :n] for x in rs]), np.stack([x[..., :n] for x in ds])
    elif keep_lengths and not trim:
        if r.shape[-1] != d.shape[-1]:
            warnings.append(f"lengths differ: ref has {r.shape[-1]} samples, deg {d.shape[-1]} at {sr_used} Hz; "
                            "each signal is scored whole")
    else:
        n = _common_length(r.shape[-1], d.shape[-1], sr_used, ref_label, deg_label, trim, warnings)
        r, d = r[..., :n], d[..., :n]

    # normalisation -> ACN/SN3D
    if spatial_fmt.is_ambisonics and in_norm != "sn3d":
        r = convert_normalisation(r, in_norm, "sn3d")
        d = convert_normalisation(d, in_norm, "sn3d")

    # broadcast the batch
    b = max(r.shape[0], d.shape[0])
    if r.shape[0] != b:
        r = np.broadcast_to(r, (b,) + r.shape[1:])
    if d.shape[0] != b:
        d = np.broadcast_to(d, (b,) + d.shape[1:])

    dtype = np.float32 if (r.dtype == np.float32 and d.dtype == np.float32) else np.float64
    return SignalPair(
        ref=np.ascontiguousarray(r, dtype=dtype),
        deg=np.ascontiguousarray(d, dtype=dtype),
        sample_rate_in=sample_rate_in,
        sample_rate_used=sr_used,
        format=spatial_fmt,
        warnings=warnings,
        batched=batched,
        ref_name=ref_name,
        deg_name=deg_name,
        alignment=alignment,
    )
