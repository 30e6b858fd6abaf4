"""Functional core of the classic metrics (PESQ, STOI, ViSQOL, DNSMOS, loudness, SI-SDR,
multi-resolution STFT distance) and the one spatial input policy they share.

Spatial input policy (:func:`channels_for`): a classic metric scores one-channel signals, so a
spatial signal ``(B, C, T)`` is turned into named one-channel *views* ``(B, T)``:

============  ==============================================================================
binaural      ``left``, ``right`` (channels 0 and 1)
ambisonics    ``left``, ``right`` of the shared MagLS binaural decode
              (:func:`spaq.spatial.decoders.hrtf_decoder`, default HRTF), and ``omni``: the
              W channel (ACN 0, SN3D: the pressure at the centre)
layout        ``left``, ``right`` of the shared virtual-loudspeaker render
              (:func:`spaq.spatial.layouts.render_layout_binaural`, LFE dropped), and
              ``omni``: the mono downmix, the **mean** of the non-LFE channels (sum / count:
              content common to all loudspeakers keeps one loudspeaker's level)
mono          ``mono``
============  ==============================================================================

:func:`combine` turns per-view values into a metric's output: ``score`` is the mean of the
two ears (``mono`` for mono input), ``better_ear`` the better of the two in the metric's
direction, and every view's value is kept under its name (``left``, ``right``, ``omni``,
``mono``).

The library-backed scores (``pesq_value``, ...) take 1-D float64 numpy arrays at the metric's
rate and return floats, or raise a one-line :class:`~spaq.errors.SpaqInputError` for input
the library cannot score (silence, no speech, too short), never the library's own exception.
:func:`si_sdr` and :func:`mrstft` are torch and differentiable.
"""
from __future__ import annotations

import importlib
import math
import warnings

import numpy as np
import torch

from ...errors import SpaqInputError
from ..base import MetricUnavailable

__all__ = ["INSTALL_HINT", "require", "channels_for", "pair_decode_orders", "combine", "pesq_value", "stoi_value", "visqol_value",
           "dnsmos_value", "distillmos_model", "distillmos_value", "loudness_value", "si_sdr", "mrstft", "PESQ_BEST", "MRSTFT_RESOLUTIONS"]

INSTALL_HINT = "pip install 'spaq[classic]' (from a clone: pip install -e '.[classic]')"
#: Distill-MOS declares torchaudio (no build for spaq's torch) and transformers, neither of which its
#: network needs: install it and its one dependency without theirs
DISTILLMOS_HINT = "pip install --no-deps distillmos==0.9.1 xls-r-sqa==0.1.0"


def require(metric: str, *modules: str):
    """Import ``modules`` (the last one is returned) or raise :class:`MetricUnavailable`
    naming the missing package and how to install it."""
    mod = None
    for m in modules:
        try:
            mod = importlib.import_module(m)
        except ImportError as e:
            missing = (getattr(e, "name", None) or m).split(".")[0]
            raise MetricUnavailable(f"{metric} needs the '{_PIP.get(missing, missing)}' package: {INSTALL_HINT}") from None
    return mod


_PIP = {"visqol": "visqol-python", "pyloudnorm": "pyloudnorm", "speechmos": "speechmos", "pystoi": "pystoi",
        "pesq": "pesq", "onnxruntime": "onnxruntime", "librosa": "librosa", "requests": "requests",
        "distillmos": "distillmos", "xls_r_sqa": "xls-r-sqa"}


# ------------------------------------------------------------------------------ spatial policy
def _format_of(fmt, n_ch: int):
    """``fmt`` (a :class:`~spaq.formats.SpatialFormat`, a format string, or None: inferred from ``n_ch``)
    as a :class:`~spaq.formats.SpatialFormat`."""
    from ...formats import SpatialFormat, parse_format

    if fmt is None:
        return _infer_format(n_ch)
    return fmt if isinstance(fmt, SpatialFormat) else parse_format(fmt)


def _infer_format(n_ch: int):
    from ...formats import SpatialFormat
    from ...spatial.sh import order_from_channels

    if n_ch == 1:
        return SpatialFormat("mono")
    if n_ch == 2:
        return SpatialFormat("binaural")
    order = order_from_channels(n_ch)
    if order is None:
        raise SpaqInputError(f"{n_ch} channels is neither mono, binaural nor ambisonics: give the format "
                             f"(a loudspeaker layout)")
    return SpatialFormat("ambisonics", order)


def pair_decode_orders(ref, deg, fmt=None):
    """The orders ``((B,), (B,))`` at which an ambisonic pair ``(B, C, T)`` is decoded
    (:func:`spaq.spatial.decoders.pair_orders`: W alone beside a higher-order signal takes its
    order), or ``(None, None)`` when the pair is not ambisonic."""
    from ...spatial.decoders import channel_energy, pair_orders

    if ref is None:
        return None, None
    c = deg.shape[-2]
    if _format_of(fmt, c).kind != "ambisonics" or ref.shape[-2] != c:
        return None, None
    t = lambda x: x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    o = pair_orders(channel_energy(t(ref)), channel_energy(t(deg)))
    return o[..., 0], o[..., 1]


def channels_for(x, fmt=None, sample_rate: int = 48000, orders=None) -> dict:
    """The one-channel views of ``x (B, C, T)`` (torch or numpy) that a classic metric scores,
    by the policy in this module's docstring: an ordered dict ``name -> (B, T)`` of the
    input's type (torch stays torch, differentiable through the ambisonic decode; a layout's
    render is numpy, so gradients do not flow through layouts). ``fmt``: a
    :class:`~spaq.formats.SpatialFormat` or None (1 channel: mono, 2: binaural, (N+1)^2:
    ambisonics ACN/SN3D). ``sample_rate``: the rate of ``x`` (HRIRs/decoder at that rate).
    ``orders`` ``(B,)``: the decoders' orders for ambisonic input (a pair's,
    :func:`pair_decode_orders`; None: each signal's effective order)."""
    c = x.shape[-2]
    fmt = _format_of(fmt, c)
    if fmt.n_channels != c and not (fmt.is_ambisonics and fmt.order == 0):
        raise SpaqInputError(f"format {fmt.describe()} expects {fmt.n_channels} channel{'' if fmt.n_channels == 1 else 's'}, got {c}")
    is_torch = isinstance(x, torch.Tensor)
    if fmt.kind == "mono":
        return {"mono": x[:, 0]}
    if fmt.kind == "binaural":
        return {"left": x[:, 0], "right": x[:, 1]}
    if fmt.kind == "ambisonics":
        from ...spatial.decoders import decode_binaural_effective

        xt = x if is_torch else torch.from_numpy(np.asarray(x, dtype=np.float64))
        b = decode_binaural_effective(xt, sample_rate, orders)  # (B, 2, T), at its (pair's) effective order
        if not is_torch:
            b = b.numpy()
        return {"left": b[:, 0], "right": b[:, 1], "omni": x[:, 0]}
    # a loudspeaker layout
    from ...spatial.layouts import render_layout_binaural

    lay = fmt.layout_spec
    xn = x.detach().cpu().numpy() if is_torch else np.asarray(x)
    b = render_layout_binaural(xn.astype(np.float64), lay, sample_rate=sample_rate)
    omni = xn[:, list(lay.spatial_channels)].astype(np.float64).mean(axis=1)
    if is_torch:
        b, omni = torch.from_numpy(b).to(x.device), torch.from_numpy(omni).to(x.device)
    return {"left": b[:, 0], "right": b[:, 1], "omni": omni}


def combine(per_view: dict, higher_is_better: bool) -> dict:
    """Per-view ``(B,)`` values -> the metric's output dict: ``score`` (mean of ``left`` and
    ``right``, or ``mono``), ``better_ear`` (binaural views only) and each view's value."""
    out = {}
    if "left" in per_view:
        lft, rgt = per_view["left"], per_view["right"]
        out["score"] = (lft + rgt) / 2
        out["better_ear"] = torch.maximum(lft, rgt) if higher_is_better else torch.minimum(lft, rgt)
    else:
        out["score"] = per_view["mono"]
    out.update(per_view)
    return out


def _silent(x: np.ndarray) -> bool:
    return not np.any(x)


def _finite(metric: str, *xs) -> None:
    for x in xs:
        if x is not None and not np.all(np.isfinite(x)):
            raise SpaqInputError(f"{metric}: the signal has NaN or infinite samples")


def _check_len(metric: str, x: np.ndarray, fs: int, need_s: float, why: str) -> None:
    if x.shape[-1] < int(math.ceil(need_s * fs)):
        raise SpaqInputError(f"{metric}: {x.shape[-1] / fs:.3g} s of audio is too short: {why} needs at least "
                             f"{need_s:g} s")


def _check_silence(metric: str, ref, deg, view: str = "") -> None:
    where = f" ({view})" if view else ""
    if ref is not None and _silent(ref):
        raise SpaqInputError(f"{metric}: the reference{where} is silent: {metric} is undefined")
    if deg is not None and _silent(deg):
        raise SpaqInputError(f"{metric}: the degraded signal{where} is silent: {metric} is undefined")


# ------------------------------------------------------------------------------ library scores
#: PESQ's MOS-LQO of an identical pair (raw P.862 score 4.5 through the P.862.1 / P.862.2 mappings)
PESQ_BEST = {"nb": 0.999 + 4.0 / (1.0 + math.exp(-1.4945 * 4.5 + 4.6607)),
             "wb": 0.999 + 4.0 / (1.0 + math.exp(-1.3669 * 4.5 + 3.8224))}


def pesq_value(ref: np.ndarray, deg: np.ndarray, fs: int, mode: str, name: str = "pesq", view: str = "") -> float:
    """``pesq.pesq(fs, ref, deg, mode)`` (MOS-LQO; ``mode`` "wb" at 16 kHz, "nb" at 8 kHz)."""
    pesq = require(name, "pesq")
    _finite(name, ref, deg)
    _check_len(name, ref, fs, 0.25, "PESQ")
    _check_silence(name, ref, deg, view)
    try:
        return float(pesq.pesq(fs, ref, deg, mode))
    except pesq.NoUtterancesError:
        raise SpaqInputError(f"{name}: PESQ found no speech (no utterances) in the {view or 'signal'}: "
                             f"it scores speech only") from None
    except pesq.PesqError as e:
        msg = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        raise SpaqInputError(f"{name}: PESQ refused the {view or 'signal'}: {msg}") from None


def stoi_value(ref: np.ndarray, deg: np.ndarray, fs: int, extended: bool, name: str = "stoi", view: str = "") -> float:
    """``pystoi.stoi(ref, deg, fs, extended)`` (pystoi resamples to 10 kHz itself)."""
    pystoi = require(name, "pystoi")
    _finite(name, ref, deg)
    _check_len(name, ref, fs, 0.4, "STOI (30 frames of 25.6 ms, hop 12.8 ms, at 10 kHz)")
    _check_silence(name, ref, None, view)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        try:
            v = float(pystoi.stoi(ref, deg, fs, extended=extended))
        except Exception:  # numpy AxisError / ValueError on degenerate input
            raise SpaqInputError(f"{name}: STOI cannot score the {view or 'signal'}: too short or too silent once "
                                 f"its silent frames are removed") from None
    if any("Not enough STFT frames" in str(x.message) for x in w):
        raise SpaqInputError(f"{name}: too short or too silent: STOI needs 30 frames (0.384 s at 10 kHz) of "
                             f"the reference within 40 dB of its loudest frame ({view or 'signal'})")
    return v


def visqol_value(api, ref: np.ndarray, deg: np.ndarray, fs: int, name: str = "visqol", view: str = "") -> float:
    """``api.measure_from_arrays(ref, deg, fs).moslqo`` (``api``: a created ``visqol.VisqolApi``)."""
    _finite(name, ref, deg)
    _check_silence(name, ref, deg, view)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            v = float(api.measure_from_arrays(ref, deg, fs).moslqo)
    except (ValueError, IndexError) as e:
        raise SpaqInputError(f"{name}: ViSQOL cannot score the {view or 'signal'} (too short? "
                             f"{ref.shape[-1] / fs:.3g} s): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    if not math.isfinite(v):
        raise SpaqInputError(f"{name}: ViSQOL gave no score for the {view or 'signal'} (silent or no similarity)")
    return v


def dnsmos_value(deg: np.ndarray, fs: int = 16000, name: str = "dnsmos", view: str = "") -> dict:
    """``speechmos.dnsmos.run(clip(deg, -1, 1), 16000)``: ``ovrl``, ``sig``, ``bak``, ``p808``
    MOS (1-5; the ONNX models shipped inside the speechmos wheel, no network). Samples beyond
    +-1 are clipped first (speechmos refuses them)."""
    dnsmos = require(name, "onnxruntime", "librosa", "requests", "speechmos.dnsmos")
    _finite(name, deg)
    _check_len(name, deg, fs, 0.5, "DNSMOS (it rates 9 s clips; speechmos loops shorter input, a fragment below 0.5 s)")
    o = dnsmos.run(np.clip(deg, -1.0, 1.0), fs)
    return {"ovrl": float(o["ovrl_mos"]), "sig": float(o["sig_mos"]), "bak": float(o["bak_mos"]),
            "p808": float(o["p808_mos"])}


_DISTILLMOS: dict = {}


def distillmos_model(name: str = "distillmos"):
    """The Distill-MOS network (Stahl and Gamper, Microsoft; MIT; variant 7, its weights inside the
    ``distillmos`` wheel, no download), in eval mode, loaded once per process. Its package imports
    ``torchaudio`` at the top for its file-list command only; where torchaudio is not installed (it
    has no build for spaq's torch) an empty stand-in module serves that import and is removed
    again. The package's "weights loaded" print is kept off stdout (``--json`` output stays clean)."""
    if "model" in _DISTILLMOS:
        return _DISTILLMOS["model"]
    import contextlib
    import importlib.util
    import io
    import sys
    import types

    for m in ("distillmos", "xls_r_sqa"):
        if importlib.util.find_spec(m) is None:
            raise MetricUnavailable(f"{name} needs the '{_PIP.get(m, m)}' package: {DISTILLMOS_HINT}")
    stand_in = importlib.util.find_spec("torchaudio") is None and "torchaudio" not in sys.modules
    if stand_in:
        sys.modules["torchaudio"] = types.ModuleType("torchaudio")
    try:
        import distillmos
    except ImportError as e:
        raise MetricUnavailable(f"{name}: the distillmos package does not import ({e}): {DISTILLMOS_HINT}") from None
    finally:
        if stand_in:
            sys.modules.pop("torchaudio", None)
    with contextlib.redirect_stdout(io.StringIO()):
        model = distillmos.ConvTransformerSQAModel().eval()
    _DISTILLMOS["model"] = model
    return model


def distillmos_value(deg: np.ndarray, fs: int = 16000, name: str = "distillmos", view: str = "") -> float:
    """Distill-MOS of ``deg`` (1-D, 16 kHz): the predicted MOS 1-5 of speech, reference-free
    (:func:`distillmos_model`; the network scales each 7.68 s segment to its peak, pads shorter
    input with zeros and averages overlapping segments of longer input)."""
    if int(fs) != 16000:
        raise ValueError(f"distillmos_value takes 16 kHz input, got {fs} Hz")
    _finite(name, deg)
    _check_len(name, deg, fs, 0.5, "Distill-MOS (it rates 7.68 s segments; shorter input is padded with zeros)")
    if not np.any(deg):
        raise SpaqInputError(f"{name}: the {view or 'signal'} is silent (all samples are zero): no speech to rate")
    model = distillmos_model(name)
    with torch.no_grad():
        v = model(torch.from_numpy(np.ascontiguousarray(deg, dtype=np.float32))[None])
    return float(v.reshape(-1)[0])


def loudness_value(meter, ref: np.ndarray, deg: np.ndarray, fs: int, name: str = "loudness", view: str = "") -> dict:
    """ITU-R BS.1770-4 integrated loudness of each side (``meter``: a ``pyloudnorm.Meter``):
    ``ref_lufs``, ``deg_lufs`` and ``delta_lu`` = deg - ref."""
    _finite(name, ref, deg)
    _check_len(name, ref, fs, 0.4, "BS.1770 integrated loudness (one 400 ms gating block)")
    lr = float(meter.integrated_loudness(ref))
    ld = float(meter.integrated_loudness(deg))
    for side, v in (("reference", lr), ("degraded signal", ld)):
        if not math.isfinite(v):
            raise SpaqInputError(f"{name}: the {side}{f' ({view})' if view else ''} is silent (below the -70 LUFS "
                                 f"absolute gate): loudness undefined")
    return {"ref_lufs": lr, "deg_lufs": ld, "delta_lu": ld - lr}


# ------------------------------------------------------------------------------ torch scores
def si_sdr(ref: torch.Tensor, deg: torch.Tensor) -> torch.Tensor:
    """Scale-invariant SDR in dB of ``deg`` against ``ref``, ``(..., T)`` -> ``(...)``
    (Le Roux et al. 2019, no mean removal, as torchmetrics' default):
    ``a = <deg, ref> / <ref, ref>``, ``SI-SDR = 10 log10((|a ref|^2 + eps) / (|deg - a ref|^2 + eps))``
    with ``eps`` float64's machine epsilon. Computed in float64; differentiable."""
    r, d = ref.to(torch.float64), deg.to(torch.float64)
    eps = torch.finfo(torch.float64).eps
    a = (torch.sum(d * r, dim=-1, keepdim=True) + eps) / (torch.sum(r * r, dim=-1, keepdim=True) + eps)
    t = a * r
    return 10 * torch.log10((torch.sum(t * t, dim=-1) + eps) / (torch.sum((d - t) ** 2, dim=-1) + eps))


#: (fft size, hop, window length) of auraloss' MultiResolutionSTFTLoss defaults
MRSTFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))


def mrstft(ref: torch.Tensor, deg: torch.Tensor, resolutions=MRSTFT_RESOLUTIONS, eps: float = 1e-8) -> torch.Tensor:
    """Multi-resolution STFT distance, ``(B, T)`` -> ``(B,)``: auraloss'
    ``MultiResolutionSTFTLoss`` with its defaults (FFT sizes 1024/2048/512, hops 120/240/50,
    Hann windows 600/1200/240, centred reflect-padded frames, ``|X| = sqrt(max(|X|^2, eps))``),
    averaged over resolutions of spectral convergence ``||Y| - |X|||_F / ||Y||_F`` plus
    log-magnitude L1 ``mean |log|Y| - log|X|||``, but **per item** (auraloss pools the
    Frobenius norms over the batch). 0 for identical signals. Float64; differentiable."""
    x, y = deg.to(torch.float64), ref.to(torch.float64)
    total = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
    for n_fft, hop, win in resolutions:
        w = torch.hann_window(win, dtype=torch.float64, device=x.device)
        mags = []
        for s in (x, y):
            z = torch.stft(s, n_fft, hop, win, w, return_complex=True)
            mags.append(torch.sqrt(torch.clamp(z.real ** 2 + z.imag ** 2, min=eps)))
        xm, ym = mags
        sc = torch.linalg.vector_norm(ym - xm, dim=(-2, -1)) / torch.linalg.vector_norm(ym, dim=(-2, -1))
        lm = torch.mean(torch.abs(torch.log(ym) - torch.log(xm)), dim=(-2, -1))
        total = total + sc + lm
    return total / len(resolutions)
