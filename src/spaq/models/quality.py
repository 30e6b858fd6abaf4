"""spaq's global quality mapping: pooled distortion features -> 0..100 score (no file IO).

``QualityMapping`` holds non-negative weights for the timbral and the spatial distortion
features (pooled by :func:`spaq.metrics.quality.pool_features`) and one exponent:

    D_t = sum_i w_i f_i          (timbral distortion, >= 0)
    D_s = sum_j v_j s_j          (spatial distortion, >= 0; the lateral terms below counted once)
    D   = (D_t ** p + D_s ** p) ** (1 / p)
    score = 100 / (1 + D ** k)

A log-logistic mapping: monotone decreasing in every feature, 100 exactly for identical
signals (all features 0), 50 at ``D = 1`` (the weights carry the scale).

The lateral displacement of the image is read from two cues, and counted once (version 12):
the lateral terms of the level and phase differences (:data:`LATERAL_FEATURES`) and the
low-frequency ITD change ``d_itd`` (ms) enter as ``max(sum_lateral v_j s_j, v_itd d_itd)``
instead of a sum. Near an interaural pole the ILD stops growing with the lateral angle (it even
falls past about 60 deg) and the phase differences wrap, while the ITD keeps growing; where both
cues are reliable they read the same displacement (``v_itd`` is the recipe's ratio of the two
on its training sweeps), so the larger of the two is the displacement heard. ``v_itd = 0``
(parameters of versions 1-11) gives the plain sum. The timbral and
spatial sub-scores use the same mapping on ``D_t`` and ``D_s`` alone. ``p`` (``combination``)
is how the two kinds of impairment add up: ``p = 1`` sums them (versions 1-5); ``p = 2``
(version 6) is the Euclidean distance in a space whose axes are the two perceptual
dimensions, the rule of dimension-based quality models (an impairment on one dimension adds
less to one already heard on the other than to none). ``p`` is a fixed choice of the
recipe, not a fitted weight. Parameters are kept as logarithms so that any real value is a
valid (positive) weight, which is what the fitting code optimises. Shapes: every feature
``(B,)`` -> scores ``(B,)``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["TIMBRAL_FEATURES", "SPATIAL_FEATURES", "LATER_FEATURES", "LATERAL_FEATURES", "QualityMapping"]

#: pooled timbral features (see spaq.metrics.quality): added / missing sensation level (dB),
#: loss of ref-deg coherence (0..1); (version 14) added envelope fluctuation within a band (``noisiness``,
#: 0..1: noise heard in a tonal band whose level it barely raises)
TIMBRAL_FEATURES = ("added_db", "missing_db", "incoherence", "noisiness")
#: pooled spatial features: |dILD| dB, |d|IC||, IPD change (fraction of pi), |d directiveness|,
#: intensity direction shift (fraction of 180 deg) -- these two are 0 for binaural input -- and
#: (version 3) the change of the per-band time-mean interaural coherence (``d_ic_mean``) and ILD
#: beyond 2 dB (``d_ild_mean``, dB); (version 8, ambisonics only) the share of the reference's
#: higher-order energy the degraded signal lacks (``d_order``, 0..1: lost spatial resolution);
#: (version 12) the median change of the low-frequency ITD over the frames where both signals have one
#: (``d_itd``, ms; its weight enters the lateral maximum, not the sum: see the module docstring)
SPATIAL_FEATURES = ("d_ild_db", "d_ic", "d_ipd", "d_directiveness", "d_direction", "d_ic_mean", "d_ild_mean",
                    "d_order", "d_itd")
#: features added after version 1's parameter format: parameters written before them (the
#: predictor's teacher ``quality_v5.json``, versions 1-13) give them weight 0
LATER_FEATURES = ("d_order", "d_itd", "noisiness")
#: the spatial terms that carry the lateral displacement of the image (level and phase differences):
#: their weighted sum and ``v_itd d_itd`` enter ``D_s`` as their maximum
LATERAL_FEATURES = ("d_ild_db", "d_ipd", "d_ild_mean")


class QualityMapping(nn.Module):
    """See the module docstring. ``log_w``: ``(len(TIMBRAL_FEATURES),)``; ``log_v``:
    ``(len(SPATIAL_FEATURES),)``; ``log_k``: scalar; ``combination``: the order ``p >= 1`` of
    the sum of ``D_t`` and ``D_s`` (not a parameter: the recipe fixes it). A weight of exactly 0
    is stored as ``-inf`` (allowed)."""

    def __init__(self, log_w=None, log_v=None, log_k: float = 0.0, combination: float = 1.0):
        super().__init__()
        if not float(combination) >= 1.0:
            raise ValueError(f"the combination order must be >= 1, got {combination}")
        self.combination = float(combination)
        nt, ns = len(TIMBRAL_FEATURES), len(SPATIAL_FEATURES)
        lw = torch.zeros(nt, dtype=torch.float64) if log_w is None else torch.as_tensor(log_w, dtype=torch.float64)
        lv = torch.zeros(ns, dtype=torch.float64) if log_v is None else torch.as_tensor(log_v, dtype=torch.float64)
        if lw.shape != (nt,) or lv.shape != (ns,):
            raise ValueError(f"log_w must have {nt} entries and log_v {ns}, got {tuple(lw.shape)}, {tuple(lv.shape)}")
        self.log_w = nn.Parameter(lw)
        self.log_v = nn.Parameter(lv)
        self.log_k = nn.Parameter(torch.tensor(float(log_k), dtype=torch.float64))

    @property
    def exponent(self) -> float:
        return float(torch.exp(self.log_k.detach()))

    def weights(self) -> dict:
        w = torch.exp(self.log_w.detach()).tolist()
        v = torch.exp(self.log_v.detach()).tolist()
        return {"timbral": dict(zip(TIMBRAL_FEATURES, w)), "spatial": dict(zip(SPATIAL_FEATURES, v)),
                "exponent": self.exponent, "combination": self.combination}

    @staticmethod
    def to_score(d: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """``(..., )`` distortion >= 0 -> 0..100 (100 at 0)."""
        d = torch.clamp(d, min=0.0)
        safe = torch.where(d > 0, d, torch.ones_like(d))
        p = torch.where(d > 0, torch.exp(k * torch.log(safe)), torch.zeros_like(d))
        return 100.0 / (1.0 + p)

    @staticmethod
    def combine(dt: torch.Tensor, ds: torch.Tensor, p: float) -> torch.Tensor:
        """``(D_t^p + D_s^p)^(1/p)`` of two ``(...,)`` distortions >= 0 (``D_t + D_s`` at ``p = 1``);
        finite gradients where both are 0."""
        if p == 1.0:
            return dt + ds
        m = torch.maximum(dt, ds)
        safe = torch.where(m > 0, m, torch.ones_like(m))
        inner = (dt / safe) ** p + (ds / safe) ** p  # >= 1 where m > 0
        r = torch.where(m > 0, inner, torch.ones_like(inner)) ** (1.0 / p)
        return torch.where(m > 0, m * r, torch.zeros_like(m))

    def distortions(self, feats: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """``feats``: name -> ``(B,)`` tensor (missing spatial names count as 0). Returns
        ``(D_t, D_s)``."""
        ref = feats[TIMBRAL_FEATURES[0]]
        zero = torch.zeros_like(torch.as_tensor(ref, dtype=torch.float64))
        dt = zero.clone()
        for i, n in enumerate(TIMBRAL_FEATURES):
            dt = dt + torch.exp(self.log_w[i]) * torch.as_tensor(feats[n], dtype=torch.float64)
        ds, lateral, itd = zero.clone(), zero.clone(), zero.clone()
        for j, n in enumerate(SPATIAL_FEATURES):
            if n in feats:
                term = torch.exp(self.log_v[j]) * torch.nan_to_num(torch.as_tensor(feats[n], dtype=torch.float64))
                if n == "d_itd":
                    itd = term
                elif n in LATERAL_FEATURES:
                    lateral = lateral + term
                else:
                    ds = ds + term
        return dt, ds + torch.maximum(lateral, itd)

    def forward(self, feats: dict) -> dict:
        """Returns dict of ``(B,)``: ``score``, ``timbral_score``, ``spatial_score`` (0..100),
        ``timbral_distortion``, ``spatial_distortion`` and ``distortion`` (the two combined: the
        score is ``to_score(distortion)``)."""
        dt, ds = self.distortions(feats)
        d = self.combine(dt, ds, self.combination)
        return {
            "score": self.to_score(d, self.log_k.exp()),
            "timbral_score": self.to_score(dt, self.log_k.exp()),
            "spatial_score": self.to_score(ds, self.log_k.exp()),
            "timbral_distortion": dt,
            "spatial_distortion": ds,
            "distortion": d,
        }

    # --------------------------------------------------------------- (de)serialisation
    def to_params(self) -> dict:
        """JSON-ready parameters (weights as plain numbers, 0 for -inf log-weights)."""
        w = self.weights()
        return {"timbral_weights": w["timbral"], "spatial_weights": w["spatial"], "exponent": w["exponent"],
                "combination": w["combination"]}

    @classmethod
    def from_params(cls, p: dict) -> "QualityMapping":
        """Inverse of :meth:`to_params`; refuses missing or negative entries. Parameters without a
        ``combination`` (versions 1-5) sum the two distortions (``p = 1``); without a weight of a
        feature of :data:`LATER_FEATURES` (versions 1-13) give it weight 0."""
        def weights(group: dict, names: tuple) -> list:  # a later feature's missing weight reads 0
            return [float(group.get(n, 0.0) if n in LATER_FEATURES else group[n]) for n in names]

        try:
            tw = weights(p["timbral_weights"], TIMBRAL_FEATURES)
            sw = weights(p["spatial_weights"], SPATIAL_FEATURES)
            k = float(p["exponent"])
            c = float(p.get("combination", 1.0))
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"quality parameters incomplete or malformed: {e}") from None
        if min(tw + sw) < 0 or not k > 0:
            raise ValueError("quality weights must be >= 0 and the exponent > 0")
        lg = lambda x: math.log(x) if x > 0 else float("-inf")  # noqa: E731
        return cls([lg(x) for x in tw], [lg(x) for x in sw], math.log(k), c)
