"""Spatial training losses for binaural signals, as ``nn.Module``s with explicit shapes.

* :class:`SpatialLoss`: distance between the frozen SQM encoder's representations
  (:mod:`spaq.models.sqm`, shipped weights ``sqm_v1``) of the estimate and the target:
  ``deep_weight`` x the deep-feature distance (per layer the mean |difference| of the
  activations over channels and frames, summed over layers) + ``cosine_weight`` x the cosine
  distance of the utterance embeddings. Content need not match; the two are cut to their common
  number of frames for the deep features. ``source=True``: the source-informed encoder
  ``sqm_v2_source`` (binaural + the dry mono source of each signal, e.g. for a binaural renderer
  whose mono input is known; it reads each ear's direct-path estimate, differentiably).
* :class:`CueLoss`: differences of the interaural cues of the shared auditory front-end
  (:func:`spaq.auditory.binaural_features.binaural_features` with ``grad=True``): |dILD| / 1 dB,
  the IPD unit-vector distance |u - u'| and |d coherence|, per ERB band and 40 ms frame, weighted by
  the target's band activity (band level within 30 dB of the loudest band-frame); needs aligned
  signals of equal length.

Both take float tensors ``est (B, 2, T)`` and ``target (B, 2, T)`` (left, right) at ``sample_rate``
(default 48 kHz: say another rate, or its signals are read as 48 kHz ones; :class:`SpatialLoss` resamples to
its encoder's 48 kHz with :func:`spaq.dsp.resample_poly`, differentiably, and :class:`CueLoss` computes its
front-end at that rate) and return a scalar (``reduction="mean"``) or ``(B,)`` (``"none"``); gradients flow
to ``est`` (and ``target`` if it requires them), on CPU and CUDA.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .direction import _reduce

__all__ = ["SpatialLoss", "CueLoss"]


def _check(est: torch.Tensor, target: torch.Tensor, name: str, same_length: bool):
    for label, t in (("est", est), ("target", target)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} expects float torch tensors (B, 2, T), got {type(t).__name__} for {label} "
                            "(torch.from_numpy(x).float() converts an array)")
        if not t.is_floating_point():
            raise TypeError(f"{name} expects float tensors (samples in [-1, 1]), got {t.dtype} for {label} "
                            "(integer PCM: x.float() / 32768 for int16)")
    if est.ndim == 2 and target.ndim == 2 and est.shape[0] == 2:
        raise ValueError(f"{name} expects a batch (B, 2, T), got one signal {tuple(est.shape)}: add the batch "
                         "dimension with x.unsqueeze(0)")
    if est.ndim != 3 or target.ndim != 3 or est.shape[1] != 2 or target.shape[1] != 2 \
            or est.shape[0] != target.shape[0] or (same_length and est.shape != target.shape):
        what = "the same" if same_length else "(B, 2, T) with the same B"
        raise ValueError(f"{name} expects est and target of shape (B, 2, T) ({what}), got {tuple(est.shape)} "
                         f"and {tuple(target.shape)}")


def _check_settings(name: str, sample_rate, reduction: str) -> int:
    """A loss's constructor arguments, refused in one line before any forward: ``sample_rate`` a positive whole
    number of Hz (44100.5 was truncated, 0 divided by zero at the first call), ``reduction`` mean, sum or none."""
    from ..errors import SpaqError
    from ..io import _check_rate  # the readers' one rate check (a SpaqError there; a ValueError from a loss)

    try:
        sample_rate = _check_rate(sample_rate, f"{name}: sample_rate")
    except SpaqError as e:
        raise ValueError(str(e)) from None
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"{name}: reduction must be mean, sum or none, got {reduction!r}")
    return sample_rate


class SpatialLoss(nn.Module):
    """Deep-feature + embedding distance of the frozen SQM encoder (see the module docstring).

    ``checkpoint``: an SQM checkpoint path (None: the shipped ``sqm_v1``, or with ``source=True``
    the source-informed ``sqm_v2_source``, which also reads each ear's band level re the dry mono
    source: :meth:`forward` then needs ``est_source`` and ``target_source``). ``sample_rate``: the rate of
    the signals given to :meth:`forward` (resampled to the encoder's 48 kHz). The encoder's
    parameters are frozen and it stays in eval mode (``train()`` does not change it)."""

    def __init__(self, checkpoint=None, deep_weight: float = 1.0, cosine_weight: float = 1.0,
                 reduction: str = "mean", source: bool = False, sample_rate: int = 48000):
        super().__init__()
        self.sample_rate = _check_settings("SpatialLoss", sample_rate, reduction)
        from ..models.sqm import BINAURAL_WEIGHTS, SOURCE_WEIGHTS, SQM, load_pretrained

        base, _ = load_pretrained(checkpoint, name=SOURCE_WEIGHTS if source else BINAURAL_WEIGHTS)
        enc = SQM(base.cfg)
        enc.load_state_dict(base.state_dict())
        for p in enc.parameters():
            p.requires_grad_(False)
        self.encoder = enc.eval()
        self.deep_weight, self.cosine_weight, self.reduction = float(deep_weight), float(cosine_weight), reduction

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()
        return self

    def forward(self, est: torch.Tensor, target: torch.Tensor, est_source=None, target_source=None) -> torch.Tensor:
        """``est (B, 2, T_e)``, ``target (B, 2, T_t)`` -> scalar or ``(B,)``. With a source-informed
        encoder also ``est_source``, ``target_source``: the mono source of each, ``(B, T)`` or
        ``(B, 1, T)`` of its signal's length."""
        _check(est, target, "SpatialLoss", same_length=False)
        from ..metrics.functional.sqm import cosine_distance, deep_feature_distance

        rate = self.encoder.cfg.sample_rate  # the rate the encoder reads (48 kHz): others resampled differentiably
        if self.sample_rate != rate:
            from ..dsp import resample_poly

            est, target = (resample_poly(t, self.sample_rate, rate) for t in (est, target))
            est_source, target_source = (None if t is None else resample_poly(t, self.sample_rate, rate)
                                         for t in (est_source, target_source))

        if self.encoder.cfg.channels == 3:
            if est_source is None or target_source is None:
                raise ValueError("SpatialLoss with a source-informed encoder needs est_source and target_source "
                                 "(B, T) or (B, 1, T)")
            from ..models.sqm import with_source

            est, target = with_source(est, est_source, "est_source"), with_source(target, target_source, "target_source")
        elif est_source is not None or target_source is not None:
            raise ValueError("SpatialLoss: sources given to a binaural-only encoder (use SpatialLoss(source=True))")

        if est.device.type == "cuda":  # cuDNN's LSTM backward needs training mode: plain kernels instead
            with torch.backends.cudnn.flags(enabled=False):
                return self._loss(est, target, cosine_distance, deep_feature_distance)
        return self._loss(est, target, cosine_distance, deep_feature_distance)

    def _loss(self, est, target, cosine_distance, deep_feature_distance):
        enc = self.encoder
        oe = enc.encode(enc.features(est.to(torch.float32), grad=True))
        with torch.set_grad_enabled(torch.is_grad_enabled() and target.requires_grad):
            ot = enc.encode(enc.features(target.to(torch.float32), grad=True))  # same arithmetic as est
        loss = 0.0
        if self.deep_weight:
            loss = loss + self.deep_weight * deep_feature_distance(oe["activations"], ot["activations"])
        if self.cosine_weight:
            loss = loss + self.cosine_weight * cosine_distance(oe["utterance"], ot["utterance"])
        return _reduce(loss.to(est.dtype), self.reduction)


class CueLoss(nn.Module):
    """Interaural cue differences from the differentiable front-end (see the module docstring).
    ``weights``: of the (ILD / 1 dB, IPD unit-vector distance, coherence) terms."""

    def __init__(self, weights: tuple[float, float, float] = (0.1, 1.0, 1.0), active_range_db: float = 30.0,
                 reduction: str = "mean", sample_rate: int = 48000):
        super().__init__()
        self.sample_rate = _check_settings("CueLoss", sample_rate, reduction)
        try:
            self.w = tuple(float(v) for v in weights)
        except (TypeError, ValueError):
            self.w = ()
        if len(self.w) != 3 or not all(math.isfinite(v) and v >= 0 for v in self.w):
            raise ValueError(f"CueLoss: weights are three numbers >= 0 (ILD, IPD, coherence), got {weights!r}")
        if not float(active_range_db) > 0:
            raise ValueError(f"CueLoss: active_range_db must be > 0, got {active_range_db!r}")
        self.active_range_db, self.reduction = float(active_range_db), reduction

    def forward(self, est: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``est (B, 2, T)``, ``target (B, 2, T)`` (aligned) -> scalar or ``(B,)``."""
        from ..auditory.binaural_features import binaural_features, feature_frontend

        _check(est, target, "CueLoss", same_length=True)
        fe = feature_frontend(self.sample_rate)
        if est.shape[-1] < fe.frame_len:
            raise ValueError(f"CueLoss needs at least one {1000 * fe.frame_len / self.sample_rate:.0f} ms frame "
                             f"({fe.frame_len} samples at {self.sample_rate} Hz), got T = {est.shape[-1]}")
        fe_ = fe.to(est.device)
        fest, _ = binaural_features(est, fe_, grad=True)  # (B, 6, F, nf)
        with torch.set_grad_enabled(torch.is_grad_enabled() and target.requires_grad):
            ftar, lev = binaural_features(target, fe_, grad=True)  # same arithmetic as est
        top = lev.amax(dim=1)  # (B, F, nf)
        w = (top >= top.amax(dim=(1, 2), keepdim=True) - self.active_range_db).to(fest.dtype)
        w = w / w.sum(dim=(1, 2), keepdim=True).clamp_min(1.0)
        d_ild = (fest[:, 0] - ftar[:, 0]).abs()
        d_ipd = torch.sqrt((fest[:, 1] - ftar[:, 1]) ** 2 + (fest[:, 2] - ftar[:, 2]) ** 2 + 1e-12)
        d_ic = (fest[:, 3] - ftar[:, 3]).abs()
        per = self.w[0] * d_ild + self.w[1] * d_ipd + self.w[2] * d_ic
        return _reduce((w * per).sum(dim=(1, 2)).to(est.dtype), self.reduction)
