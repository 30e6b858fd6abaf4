"""The ``cues`` metric: training-free spatial and timbral cue differences.

From the shared auditory front-end (the same one QASTAnet uses), per ERB band and 40 ms
frame: ILD difference (dB), interaural coherence difference, band level difference (dB),
and for ambisonics first-order directiveness difference. Ambisonic input is decoded to
binaural with the MagLS decoder of the default HRTF (:mod:`spaq.spatial.decoders`), so the ear
cues mean the same thing for both formats; each signal at its effective order (lower-order
content zero-padded into a higher-order file decoded as such). Bins where the reference is below the hearing
threshold are excluded. No weights. Functional core: :mod:`spaq.metrics.functional.cues`.

How to read it: ``score`` is the **median |ΔILD| in dB** (spatial image only; 0 =
unchanged, ~1 dB is about the just-noticeable ILD change). Timbre is in
``level_mean_abs_db`` and coherence in ``coherence_mean_abs``; read those too (a low-pass
leaves the ILD intact). A degraded signal that is silent where the reference is audible is
flagged by ``degraded_audible_fraction`` and a warning.
"""
from __future__ import annotations

import numpy as np
import torch

from ..auditory.frontend import AuditoryFrontEnd
from ..auditory.streaming import SegmentReader
from ..spatial.decoders import DEFAULT_DECODER, hrtf_decoders
from .base import Metric, MetricResult
from .functional.cues import MAP_NAMES, _nan_reduce, cue_maps, cue_maps_streamed, summarise_cue_maps

__all__ = ["Cues", "cue_maps", "summarise_cue_maps", "MAP_NAMES"]


class Cues(Metric):
    name = "cues"
    # 1.1: ambisonic input decoded with the causal MagLS decoder; 1.2: each ambisonic signal decoded
    # at its effective order (zero-padded higher orders: decoded with the lower order's decoder); 1.3:
    # MagLS cutoff where the order resolves the head (kr = N); 1.4: W alone compared with a higher-order
    # signal decoded with that signal's decoder (spaq.spatial.decoders.pair_orders)
    version = "1.4"
    description = ("training-free cue differences (ILD dB, coherence, level dB, directiveness) per band and frame; "
                   "score = median |dILD| in dB (spatial only: timbre is in level_mean_abs_db); lower is better")
    unit = "dB"
    higher_is_better = False
    score_range = (0.0, None)
    best_value = 0.0
    sample_rate = 48000
    formats = ("binaural", "ambisonics")
    differentiable = True
    needs_weights = False
    streamable = True
    min_duration_s = 0.2
    default_rank = 3
    reading = "dB, lower is better: median |ILD change| (0 = same image, ~1 dB just noticeable); timbre in level_mean_abs_db"
    produces_maps = True

    def __init__(self, device: str = "cpu", chunk_s: float = 10.0, fast: bool = True):
        """``fast`` (default): every band at a reduced rate from a window of its spectrum
        (about 5x faster; summaries within 0.07 dB ILD, 0.005 dB level, 1.1e-3 coherence of
        exact mode on synthetic sweeps); ``False``: full rate in float64."""
        self.device = torch.device(device)
        # one band at a time: full-rate band signals of a 10 s chunk are 60 MB each (same work)
        self.frontend = AuditoryFrontEnd(decimate=fast, band_group=1, fast_spectrum_dtype=torch.float32).to(self.device)
        self.fast = bool(fast)
        self.chunk_frames = max(1, int(round(chunk_s * self.sample_rate / self.frontend.frame_len)))

    def decoder(self, order: int | None) -> dict | None:
        """The binaural decoders for ambisonic input of ``order``, by order: each signal is decoded
        at its effective order (:func:`spaq.spatial.decoders.effective_order`); None for binaural."""
        return None if order is None else hrtf_decoders(order, self.sample_rate, self.device)

    def maps(self, ref: torch.Tensor, deg: torch.Tensor) -> dict:
        """``(B, C, T)`` tensors at 48 kHz (2 channels: binaural, else ambisonics) -> the
        :func:`~spaq.metrics.functional.cues.cue_maps` dict (differentiable)."""
        self.check_tensors(ref, deg)
        return cue_maps(ref.to(self.device), deg.to(self.device), self.frontend, self.decoder(_order(ref)),
                        self.chunk_frames)

    def forward(self, ref: torch.Tensor, deg: torch.Tensor) -> dict:
        """``(B, C, T)`` -> dict of ``(B,)`` tensors: ``score`` (median |ΔILD| dB, not
        differentiable: a median) and the differentiable means ``level_mean_abs_db``,
        ``coherence_mean_abs`` (and ``directiveness_mean_abs`` for ambisonics)."""
        m = self.maps(ref, deg)
        # a median: computed on numpy by the summary helper (no gradient through it)
        med = _nan_reduce(m["d_ild_db"].detach().abs().cpu().numpy(), np.median)
        out = {"score": torch.from_numpy(med).to(m["d_ild_db"].device)}
        out["coherence_mean_abs"] = _nan_mean(m["d_coherence"].abs())
        out["level_mean_abs_db"] = _nan_mean(m["d_level_db"].abs())
        if "d_directiveness" in m:
            out["directiveness_mean_abs"] = _nan_mean(m["d_directiveness"].abs())
        return out

    def score(self, pair, maps: bool = False) -> MetricResult:
        self.check_format(pair)
        order = pair.format.order if pair.format.is_ambisonics else None
        with torch.no_grad():
            reader = SegmentReader.from_pair(pair, self.device)  # in memory or streamed
            m = cue_maps_streamed(reader, self.frontend, self.decoder(order),
                                  self.chunk_frames)
        summ = summarise_cue_maps(m)
        warn = []
        if not np.all(np.isfinite(summ["ild_median_abs_db"])):
            if np.all(np.nan_to_num(summ["audible_fraction"]) == 0):
                warn.append("no band of the reference is above the hearing threshold: cue differences undefined")
            else:  # the reference is heard: what is missing is a band both ears of both signals carry
                warn.append("no band is above the hearing threshold in both ears of both signals (one ear silent?): "
                            "ILD differences undefined; see level_mean_abs_db")
        elif np.any(summ.get("degraded_audible_fraction", np.ones(1)) < 0.05):
            warn.append("the degraded signal is inaudible where the reference is audible: the ILD headline "
                        "says little; see level_mean_abs_db")
        return self.result(
            summ["ild_median_abs_db"], summ, pair=pair, warnings=warn,
            provenance={"mode": "fast" if self.fast else "exact",
                        "binaural_decoder": DEFAULT_DECODER if pair.format.is_ambisonics else None,
                        "headline": "median |dILD| over audible bins (dB); timbre: level_mean_abs_db"},
            maps={k: v for k, v in m.items() if k in MAP_NAMES} if maps else None)


def _order(x: torch.Tensor) -> int | None:
    """Ambisonic order from the channel count of ``(B, C, T)`` (None for 2 channels: binaural)."""
    c = x.shape[-2]
    return None if c == 2 else int(round(c ** 0.5)) - 1


def _nan_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over every axis but the first, ignoring NaN -> ``(B,)`` (NaN if nothing counts)."""
    flat = x.reshape(x.shape[0], -1)
    ok = torch.isfinite(flat)
    n = ok.sum(dim=1)
    s = torch.where(ok, flat, torch.zeros_like(flat)).sum(dim=1)
    return torch.where(n > 0, s / n.clamp(min=1), torch.full_like(s, float("nan")))
