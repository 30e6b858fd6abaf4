"""Classic (non-spatial) metrics in the registry: PESQ, STOI/ESTOI, ViSQOL, DNSMOS, BS.1770
loudness difference, SI-SDR and a multi-resolution STFT distance.

Each scores one-channel signals, so spatial input goes through the one policy of
:func:`spaq.metrics.functional.classic.channels_for`: binaural -> each ear; ambisonics and
loudspeaker layouts -> each ear of the shared binaural decode/render plus ``omni`` (W, or the
mean of the non-LFE loudspeaker feeds); mono -> ``mono``. ``score`` is the mean of the two ears
(mono: the mono value), ``values`` hold ``left``, ``right``, ``better_ear``, ``omni``/``mono``
and per-metric extras. Input is ``(B, C, T)`` at the metric's ``sample_rate``.

The library-backed metrics need the optional packages of the ``classic`` extra
(``pip install 'spaq[classic]'``); without them the metric is :class:`MetricUnavailable`
(``spaq.score`` lists it as skipped; ``spaq metrics`` says why). None runs by default
(``default_rank = None``); none streams.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import torch

from ..errors import SpaqInputError
from .base import Metric, MetricResult, MetricUnavailable
from .functional import classic as F

__all__ = ["ClassicMetric", "Pesq", "PesqNarrowBand", "Stoi", "Estoi", "Visqol", "VisqolSpeech", "Dnsmos",
           "DistillMos", "Loudness", "SiSdr", "MrStft"]

_FORMATS = ("binaural", "ambisonics", "mono", "layout")


class ClassicMetric(Metric):
    """Shared plumbing: the spatial policy, per-view library calls, availability."""

    formats = _FORMATS
    default_rank = None
    streamable = False
    #: import names of the optional packages this metric needs
    requires: tuple = ()
    #: how to install them (None: the ``classic`` extra)
    install_hint: str | None = None

    @classmethod
    def available(cls) -> str | None:
        for m in cls.requires:
            if importlib.util.find_spec(m) is None:
                return f"{cls.name} needs the '{F._PIP.get(m, m)}' package: {cls.install_hint or F.INSTALL_HINT}"
        return None

    def __init__(self):
        for m in self.requires:
            F.require(self.name, m)

    # one view, one batch item -> float or dict (headline under "value"); overridden
    def view_value(self, ref: np.ndarray | None, deg: np.ndarray, view: str):  # pragma: no cover - interface
        raise NotImplementedError

    def forward(self, ref: torch.Tensor, deg: torch.Tensor, fmt=None) -> dict:
        """``ref``, ``deg``: ``(B, C, T)`` at :attr:`sample_rate` (``fmt``: a
        :class:`~spaq.formats.SpatialFormat`, None to infer mono/binaural/ambisonics from C)
        -> dict of ``(B,)`` float64 tensors: ``score``, ``better_ear``, one per view and
        ``<view>_<extra>`` for the metric's extras."""
        self.check_tensors(ref, deg)
        o_ref, o_deg = F.pair_decode_orders(ref if self.needs_reference else None, deg, fmt)
        dv = F.channels_for(deg, fmt, self.sample_rate, o_deg)
        rv = F.channels_for(ref, fmt, self.sample_rate, o_ref) if self.needs_reference else {k: None for k in dv}
        per_view = {}
        for v in dv:
            d = dv[v].detach().cpu().numpy().astype(np.float64)
            r = None if rv[v] is None else rv[v].detach().cpu().numpy().astype(np.float64)
            rows = [self.view_value(None if r is None else r[b], d[b], v) for b in range(d.shape[0])]
            if isinstance(rows[0], dict):
                per_view[v] = torch.tensor([x["value"] for x in rows], dtype=torch.float64)
                for k in rows[0]:
                    if k != "value":
                        per_view[f"{v}_{k}"] = torch.tensor([x[k] for x in rows], dtype=torch.float64)
            else:
                per_view[v] = torch.tensor(rows, dtype=torch.float64)
        heads = {k: t for k, t in per_view.items() if k in ("left", "right", "omni", "mono")}
        out = F.combine(heads, self.higher_is_better)
        out.update(per_view)
        return out

    def extra_warnings(self, pair) -> list:
        return []

    def score(self, pair, maps: bool = False) -> MetricResult:
        self.check_format(pair)
        if pair.streamed:
            raise MetricUnavailable(f"{self.name} does not stream long files; score a shorter excerpt")
        ref = torch.from_numpy(pair.ref) if self.needs_reference else None
        deg = torch.from_numpy(pair.deg)
        if not pair.batched and deg.dim() == 2:
            ref = None if ref is None else ref[None]
            deg = deg[None]
        with torch.no_grad():
            out = self.forward(ref, deg, pair.format)
        s = out.pop("score")
        views = "each ear" + (" of the binaural decode/render, and omni" if pair.format.kind in ("ambisonics", "layout")
                              else "") if pair.format.kind != "mono" else "the mono signal"
        return self.result(s, out, pair=pair, warnings=self.extra_warnings(pair),
                           provenance={"policy": f"scored on {views}; score = "
                                                 f"{'mean of the ears' if pair.format.kind != 'mono' else 'mono'}",
                                       **self.provenance()})

    def provenance(self) -> dict:
        return {}


# ------------------------------------------------------------------------------ PESQ
class Pesq(ClassicMetric):
    name = "pesq"
    version = "1.4"  # 1.1: causal MagLS decoder; 1.2: at its effective order; 1.3: MagLS cutoff at kr = N; 1.4: W alone at the other's order
    description = "PESQ wide band (ITU-T P.862.2, 16 kHz) via the 'pesq' package, per ear; MOS-LQO, higher is better"
    unit = "MOS-LQO"
    higher_is_better = True
    score_range = (1.0, F.PESQ_BEST["wb"])
    sample_rate = 16000
    min_duration_s = 1.0
    reading = "MOS-LQO 1 to 4.64 (identical), higher is better: speech codec quality per ear (mean of the ears)"
    requires = ("pesq",)
    mode = "wb"

    def view_value(self, ref, deg, view):
        return F.pesq_value(ref, deg, self.sample_rate, self.mode, self.name, view)

    def provenance(self):
        return {"library": f"pesq {_version('pesq')}", "mode": self.mode}


class PesqNarrowBand(Pesq):
    name = "pesq_nb"
    description = "PESQ narrow band (ITU-T P.862 + P.862.1, 8 kHz) via the 'pesq' package, per ear; MOS-LQO, higher is better"
    score_range = (1.0, F.PESQ_BEST["nb"])
    sample_rate = 8000
    reading = "MOS-LQO 1 to 4.55 (identical), higher is better: telephone-band speech quality per ear"
    mode = "nb"


# ------------------------------------------------------------------------------ STOI
class Stoi(ClassicMetric):
    """STOI via pystoi. Declared at 16 kHz: the common speech rate, so 16 kHz input reaches
    pystoi untouched and pystoi resamples to its internal 10 kHz with its own resampler (the
    reference implementation's), which makes the value equal to ``pystoi.stoi(x, y, 16000)``;
    declaring 10 kHz would put spaq's resampler in front instead."""

    name = "stoi"
    version = "1.4"  # 1.1: causal MagLS decoder; 1.2: at its effective order; 1.3: MagLS cutoff at kr = N; 1.4: W alone at the other's order
    description = "short-time objective intelligibility (Taal 2011) via pystoi, per ear; higher is better"
    unit = "STOI"
    higher_is_better = True
    score_range = (-1.0, 1.0)
    best_value = 1.0
    sample_rate = 16000
    min_duration_s = 1.0
    reading = "intelligibility index, 1 = identical (typically 0.4 to 1), higher is better; per ear, mean of the ears"
    requires = ("pystoi",)
    extended = False
    #: pystoi's own result varies in the last bit from call to call (its numpy matmul's
    #: summation order depends on the arrays' memory alignment): the contract's determinism
    #: check allows 1e-12 relative for this metric instead of bit equality
    bitwise_deterministic = False

    def view_value(self, ref, deg, view):
        return F.stoi_value(ref, deg, self.sample_rate, self.extended, self.name, view)

    def provenance(self):
        return {"library": f"pystoi {_version('pystoi')}", "internal_rate": 10000}


class Estoi(Stoi):
    name = "estoi"
    description = "extended STOI (Jensen & Taal 2016) via pystoi, per ear; higher is better"
    unit = "ESTOI"
    reading = "intelligibility index, 1 = identical, higher is better (handles modulated noise); mean of the ears"
    extended = True


# ------------------------------------------------------------------------------ ViSQOL
class Visqol(ClassicMetric):
    name = "visqol"
    version = "1.4"  # 1.1: causal MagLS decoder; 1.2: at its effective order; 1.3: MagLS cutoff at kr = N; 1.4: W alone at the other's order
    description = "ViSQOL v3 audio mode (48 kHz) via visqol-python, per ear; MOS-LQO, higher is better"
    unit = "MOS-LQO"
    higher_is_better = True
    score_range = (1.0, 5.0)
    best_value = 4.732101253042348  # the bundled SVR's output for all-ones similarity (any identical pair)
    sample_rate = 48000
    min_duration_s = 1.0
    reading = "MOS-LQO, 4.73 = identical, higher is better: general audio quality per ear (mean of the ears)"
    requires = ("visqol",)
    mode = "audio"
    #: visqol-python's numpy pipeline (FFTs, matmuls) gave two calls on the same input that differ
    #: in the last bits once in a contract run (1.45564444 both; not reproduced in isolation, as
    #: pystoi: numpy's kernels depend on memory alignment): the determinism check allows 1e-12
    bitwise_deterministic = False

    def __init__(self, lattice: bool = False):
        """``lattice`` (speech mode): the deep-lattice mapping of the C++ default (needs
        ``ai-edge-litert``); default False: visqol-python's polynomial mapping, no extra package."""
        super().__init__()
        from visqol import VisqolApi

        self.api = VisqolApi()
        if self.mode == "speech":
            self.api.create(mode="speech", use_lattice_model=bool(lattice))
        else:
            self.api.create(mode="audio")
        self.lattice = bool(lattice) and self.mode == "speech"

    def view_value(self, ref, deg, view):
        return F.visqol_value(self.api, ref, deg, self.sample_rate, self.name, view)

    def provenance(self):
        p = {"library": f"visqol-python {_version('visqol-python')}", "mode": self.mode}
        if self.mode == "speech":
            p["mapping"] = "lattice" if self.lattice else "polynomial (scaled to 5)"
        return p


class VisqolSpeech(Visqol):
    name = "visqol_speech"
    description = "ViSQOL v3 speech mode (16 kHz) via visqol-python, per ear; MOS-LQO, higher is better"
    best_value = 5.0
    sample_rate = 16000
    reading = "MOS-LQO, 5 = identical, higher is better: speech quality per ear (mean of the ears)"
    mode = "speech"


# ------------------------------------------------------------------------------ reference-free MOS models
class ReferenceFreeMos(ClassicMetric):
    """A packaged reference-free speech-MOS model at 16 kHz, per ear: MOS 1-5 of the degraded signal
    alone, higher is better; the degraded signal is scored as given (no alignment to or trimming by a
    reference)."""

    higher_is_better = True
    score_range = (1.0, 5.0)
    sample_rate = 16000
    needs_reference = False
    align_input = False
    min_duration_s = 1.0


class Dnsmos(ReferenceFreeMos):
    name = "dnsmos"
    version = "1.3"  # 1.1: causal MagLS decoder; 1.2: at its effective order; 1.3: MagLS cutoff at kr = N (no pair)
    description = ("DNSMOS P.835 (reference-free, the ONNX models inside speechmos, onnxruntime, 16 kHz) per ear; "
                   "overall MOS, higher is better")
    unit = "MOS (P.835 OVRL)"
    reading = ("predicted overall MOS 1 to 5 of the degraded signal alone (speech; noise and processing), higher is "
               "better; sig/bak/p808 in values")
    requires = ("onnxruntime", "librosa", "requests", "speechmos")

    def __init__(self):
        super().__init__()
        F.require(self.name, "onnxruntime", "librosa", "speechmos.dnsmos")

    def view_value(self, ref, deg, view):
        o = F.dnsmos_value(deg, self.sample_rate, self.name, view)
        return {"value": o["ovrl"], "sig": o["sig"], "bak": o["bak"], "p808": o["p808"]}

    def extra_warnings(self, pair):
        if np.max(np.abs(pair.deg)) > 1.0:
            return ["samples beyond +-1 were clipped before DNSMOS (speechmos takes [-1, 1])"]
        return []

    def provenance(self):
        return {"library": f"speechmos {_version('speechmos')}, onnxruntime {_version('onnxruntime')}",
                "models": "speechmos/dnsmos_models/sig_bak_ovr.onnx, model_v8.onnx (shipped in the wheel)"}


# ------------------------------------------------------------------------------ Distill-MOS
class DistillMos(ReferenceFreeMos):
    name = "distillmos"
    version = "1.3"  # 1.1: causal MagLS decoder; 1.2: at its effective order; 1.3: MagLS cutoff at kr = N (no pair)
    description = ("Distill-MOS (reference-free speech MOS, a compact network distilled from an XLS-R (wav2vec 2.0) "
                   "quality model; weights inside the distillmos wheel, 16 kHz) per ear; higher is better")
    unit = "MOS"
    reading = "predicted MOS 1 to 5 of the degraded signal alone (speech), higher is better"
    requires = ("distillmos", "xls_r_sqa")
    install_hint = F.DISTILLMOS_HINT

    def __init__(self):
        self.model = F.distillmos_model(self.name)

    def view_value(self, ref, deg, view):
        return F.distillmos_value(deg, self.sample_rate, self.name, view)

    def provenance(self):
        return {"library": f"distillmos {_version('distillmos')}, xls-r-sqa {_version('xls-r-sqa')}",
                "models": "distillmos/weights/distill_mos_v7.pt (shipped in the wheel; MIT, Microsoft)"}


# ------------------------------------------------------------------------------ loudness
class Loudness(ClassicMetric):
    """ITU-R BS.1770-4 integrated loudness difference via pyloudnorm (K-weighting, 400 ms
    blocks, -70 LUFS absolute and -10 LU relative gates), per ear. ``score`` is the mean
    over the ears of ``|deg - ref|`` in LU (lower is better, 0 = same loudness); the signed
    difference and each side's loudness are in ``values`` (``left_delta_lu``,
    ``left_ref_lufs``, ``left_deg_lufs``, ...; ``delta_lu``: the mean signed difference)."""

    name = "loudness"
    version = "1.4"  # 1.1: causal MagLS decoder; 1.2: at its effective order; 1.3: MagLS cutoff at kr = N; 1.4: W alone at the other's order
    description = "BS.1770 integrated loudness difference |deg - ref| in LU via pyloudnorm, per ear; lower is better"
    unit = "LU (|dL|)"
    higher_is_better = False
    score_range = (0.0, None)
    best_value = 0.0
    sample_rate = 48000
    min_duration_s = 0.4
    reading = "LU, lower is better: |loudness change| per ear (0 = same loudness); the signed change is delta_lu"
    requires = ("pyloudnorm",)

    def __init__(self):
        super().__init__()
        import pyloudnorm

        self.meter = pyloudnorm.Meter(self.sample_rate)

    def view_value(self, ref, deg, view):
        o = F.loudness_value(self.meter, ref, deg, self.sample_rate, self.name, view)
        return {"value": abs(o["delta_lu"]), **o}

    def forward(self, ref, deg, fmt=None):
        out = super().forward(ref, deg, fmt)
        if "left_delta_lu" in out:
            out["delta_lu"] = (out["left_delta_lu"] + out["right_delta_lu"]) / 2
        else:
            out["delta_lu"] = out["mono_delta_lu"]
        return out

    def provenance(self):
        return {"library": f"pyloudnorm {_version('pyloudnorm')}", "standard": "ITU-R BS.1770-4"}


# ------------------------------------------------------------------------------ torch metrics
class _TorchClassic(ClassicMetric):
    differentiable = True

    def __init__(self):
        pass

    def forward(self, ref, deg, fmt=None):
        """``(B, C, T)`` -> dict of differentiable ``(B,)`` float64 tensors (``score``,
        ``better_ear``, one per view); gradients flow through binaural and ambisonic input."""
        self.check_tensors(ref, deg)
        if deg.shape[-1] < self.min_samples():
            raise SpaqInputError(f"{self.name}: {deg.shape[-1] / self.sample_rate:.3g} s of audio is too short: "
                                   f"it needs at least {self.min_samples()} samples")
        o_ref, o_deg = F.pair_decode_orders(ref, deg, fmt)
        rv = F.channels_for(ref, fmt, self.sample_rate, o_ref)
        dv = F.channels_for(deg, fmt, self.sample_rate, o_deg)
        per_view = {v: self.fn(rv[v], dv[v]) for v in dv}
        return F.combine(per_view, self.higher_is_better)

    def min_samples(self) -> int:
        return 1


class SiSdr(_TorchClassic):
    name = "si_sdr"
    version = "1.4"  # 1.1: causal MagLS decoder; 1.2: at its effective order; 1.3: MagLS cutoff at kr = N; 1.4: W alone at the other's order
    description = "scale-invariant SDR in dB (Le Roux 2019), per ear, torch, differentiable; higher is better"
    unit = "dB"
    higher_is_better = True
    score_range = (None, None)
    sample_rate = 48000
    min_duration_s = 0.04
    reading = ("dB, higher is better: energy of the reference-aligned part over the rest (any gain ignored); "
               "a sample-exact measure: delays and phase changes count as error")

    def fn(self, r, d):
        return F.si_sdr(r, d)

    def score(self, pair, maps: bool = False) -> MetricResult:
        """As every classic metric; a silent degraded signal is refused (its SI-SDR is 0 / 0: undefined;
        the formula's epsilon would read it as 0 dB, better than an audible degradation)."""
        if not pair.streamed:
            deg = np.asarray(pair.deg)
            for b in range(deg.shape[0] if deg.ndim == 3 else 1):
                F._check_silence(self.name, None, deg[b] if deg.ndim == 3 else deg,
                                 f"batch item {b}" if deg.ndim == 3 and deg.shape[0] > 1 else "")
        return super().score(pair, maps)


class MrStft(_TorchClassic):
    name = "mrstft"
    version = "1.4"  # 1.1: causal MagLS decoder; 1.2: at its effective order; 1.3: MagLS cutoff at kr = N; 1.4: W alone at the other's order
    description = ("multi-resolution STFT distance (auraloss definition: spectral convergence + log-magnitude L1, "
                   "FFT 512/1024/2048), per ear, torch, differentiable; lower is better")
    unit = "distance"
    higher_is_better = False
    score_range = (0.0, None)
    best_value = 0.0
    sample_rate = 48000
    min_duration_s = 0.05
    reading = "distance, 0 = identical, lower is better: magnitude-spectrum difference over three STFT resolutions"

    def fn(self, r, d):
        return F.mrstft(r, d)

    def min_samples(self):
        return max(n for n, _, _ in F.MRSTFT_RESOLUTIONS)  # one frame of the largest FFT


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"
