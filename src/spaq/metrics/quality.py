"""spaq's own global quality metric (``quality``): binaural and ambisonics, 0..100.

The functional core is :mod:`spaq.metrics.functional.quality` (distortion maps from the
shared auditory front-end, length-normalised pooling) and
:class:`spaq.models.quality.QualityMapping` (non-negative weights and a log-logistic mapping
to 0..100, 100 for identical signals); this class owns the shipped parameters and the
decoder. Ambisonics are decoded to the ears with the MagLS decoder of the default KU100 HRTF
(:mod:`spaq.spatial.decoders`), the one the ``cues`` metric uses, so both formats share one
scale; each signal at its effective order (version 8: a third-order file whose orders 2 and 3
are zero is first-order content and is decoded as first-order content is played, with the
first-order decoder), and what the degraded signal lost of the reference's higher orders is ``d_order``.
An overall gain difference is compensated as a volume setting (within +-20 dB).
"""
from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import torch

from ..auditory.frontend import AuditoryFrontEnd
from ..auditory.streaming import SegmentReader
from ..errors import SpaqError
from ..models.quality import QualityMapping
from ..spatial.decoders import DEFAULT_DECODER, hrtf_decoders
from .base import Metric, MetricResult
from .functional.quality import (GAIN_MATCHES, MAX_GAIN_DB, STATISTIC_WEIGHTINGS, _nanmean, distortion_maps, gain_match,
                                 pool_features, quality_features, quality_maps, quality_maps_streamed)

__all__ = ["Quality", "load_quality_params", "quality_maps", "pool_features", "quality_features", "gain_match",
           "MAX_GAIN_DB"]


@lru_cache(maxsize=4)
def _params_cached(path: str, sha: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_quality_params(path=None) -> tuple[dict, str, str]:
    """Shipped (or explicit) parameters -> ``(params dict, sha256, source)``."""
    from ..weights import resolve

    w = resolve("quality_v1", path=path, offline=True, download=False)
    try:
        return _params_cached(str(w.path), w.sha256), w.sha256, w.source
    except (OSError, ValueError) as e:
        raise SpaqError(f"cannot read quality parameters {w.path}: {e}") from None


#: an ambisonic pair whose intensity direction moved at least this far on average (``d_direction``, weighted by
#: the reference's directiveness) while the binaural cues the score weighs leave ``spatial_score`` at or above
#: DIRECTION_WARN_SPATIAL gets a warning: a front/back (or up/down) mirror keeps the interaural cues, so the
#: score reads it as a timbral change (a source at 30 deg turned to 150 deg: spatial 91, quality 63, where a
#: 40 deg turn reads 31 / 30). ``d_direction``'s weight is 0 in the fitted model (README, issue 19). Only where
#: the directiveness is kept (``d_directiveness`` below DIRECTION_WARN_DIRECTIVENESS): a field that lost its
#: direction (W alone: 0.98; blur: 0.4) reads ~90 deg there without pointing anywhere. On the 4290 ambisonic rows of
#: 23 seeds' severity ladders no row warns (36 would without that condition, all W-only or blurred)
DIRECTION_WARN_DEG, DIRECTION_WARN_SPATIAL, DIRECTION_WARN_DIRECTIVENESS = 45.0, 70.0, 0.1


def direction_warnings(features: dict, spatial_score) -> list:
    """The warning of :data:`DIRECTION_WARN_DEG` (none where ``features`` has no ``d_direction``: binaural and
    layout input). ``features``' values and ``spatial_score``: ``(B,)`` tensors."""
    if "d_direction" not in features:
        return []
    deg = 180.0 * features["d_direction"].detach().cpu().double().numpy()
    sp = spatial_score.detach().cpu().double().numpy()
    kept = features["d_directiveness"].detach().cpu().double().numpy() < DIRECTION_WARN_DIRECTIVENESS
    hit = np.flatnonzero((deg >= DIRECTION_WARN_DEG) & (sp >= DIRECTION_WARN_SPATIAL) & kept)
    if not len(hit):
        return []
    where = "" if deg.size == 1 else f" (items {', '.join(str(int(i)) for i in hit[:10])}{', ...' if len(hit) > 10 else ''})"
    return [f"the sound field's direction moved by about {float(deg[hit].max()):.0f} deg{where} (intensity vectors, "
            f"d_direction) while the interaural cues barely changed (spatial_score {float(sp[hit].min()):.0f}): a "
            f"front/back or up/down mirror, which quality reads as a timbral change only; check -m localization"]


class Quality(Metric):
    name = "quality"
    # 2.0: speech-codec weights on delay-aligned features; 3.0: timbre of both ears together, the
    # d_ic_mean / d_ild_mean statistics, fitted jointly on two listening tests (issue 19); 4.0: the
    # diffuse part of the band powers judged as a texture (1 s moving average), refitted; 5.0: what
    # the reference's own sound masks not counted, each test's offset removed and its error
    # normalised in the joint fit, refitted; 6.0: the timbral and spatial distortions combined as a
    # Euclidean distance (``combination`` 2), refitted; 7.0: ambisonic input decoded with the causal
    # MagLS decoder (its acausal part had wrapped to the buffer end and been faded out), refitted;
    # 8.0: each ambisonic signal decoded at its effective order (lower-order content in a
    # higher-order file decoded with its own order's decoder, as such content is played and the
    # spatial-codings test did) and the lost higher-order energy d_order, weighted from that test's FOA condition;
    # 9.0: MagLS decoders with their least-squares part only where the order resolves the head (kr <= N,
    # spaq.spatial.ambisonics.magls_cutoff_hz): a higher order is closer to the HRTFs above 2 kHz; refitted;
    # 10.0: an ambisonic pair decoded at two different orders heard by a listener who turns the head back and
    # forth (+-45 deg, the parameters' head_turn) instead of a still head, so one direction's errors of two
    # decoders do not decide; refitted
    # 11.0: d_ild_mean's bands weighted by the reference's sensation level (the parameters'
    # ild_mean_weights "level"): a codec's shift of a band that barely sounds moves the image little; and
    # d_ic_mean's by the share of the time they have coherences (ic_mean_weights "time"); refitted
    # 12.0: the lateral displacement also read from the low-frequency ITD (d_itd) and counted once with the
    # level and phase terms, as their maximum (the ILD stops growing near the interaural poles); refitted
    # 13.0: an omnidirectional signal (W alone) compared with one of a higher order is decoded with that
    # one's decoder (spaq.spatial.decoders.pair_orders), not the order-0 decoder: the corpus's downmix
    # ladders of third-order scenes are ordered; refitted
    # 14.0: the timbral feature noisiness, the envelope fluctuation the degraded signal adds within a band
    # (noise under a tone that its level JND misses: AAC at 12 kbps on music); refitted (parameters without
    # its weight give it 0)
    # 15.0: the overall gain match equalises the energy the front-end's bands hear (parameters' gain_match
    # "heard"; broadband before), so energy above the top band no longer turns the degraded signal up; refitted
    # 16.0: that gain match from 20 Hz up (gain_match "audible"): a DC offset or infrasound is no sound (a 0.05 DC
    # offset under noise at -26 dBFS read 15.8); refitted
    version = "16.0"
    description = ("spaq's global quality model 0..100 (binaural and ambisonics; 100 = identical): timbral and "
                   "spatial sub-scores, calibrated on two MUSHRA tests (speech codecs, binaural spatial codings) "
                   "and synthetic corpora; shipped parameters")
    unit = "MUSHRA-like 0..100"
    higher_is_better = True
    score_range = (0.0, 100.0)
    best_value = 100.0
    sample_rate = 48000
    formats = ("binaural", "ambisonics")
    differentiable = True
    needs_weights = False  # shipped inside the package
    streamable = True
    min_duration_s = 0.2
    default_rank = 1
    reading = "0..100, higher is better (MUSHRA-like: 100 = identical, 80+ good, below 40 poor)"
    produces_maps = True

    def __init__(self, device: str = "cpu", chunk_s: float = 10.0, params=None, checkpoint=None, offline=None,
                 fast: bool = True):
        """``fast`` (default): the front-end computes every band at a reduced rate from a
        window of its spectrum (about 6x faster; scores within 0.14 points of exact mode on
        synthetic sweeps, median 0.003); ``False``: full rate in float64, the mode the shipped
        parameters were fitted in (``spaq train quality``)."""
        self.device = torch.device(device)
        self.fast = bool(fast)
        # one band at a time: full-rate band signals of a 10 s chunk are 60 MB each (same work)
        self.frontend = AuditoryFrontEnd(band_group=1, decimate=self.fast, fast_spectrum_dtype=torch.float32).to(self.device)
        self.chunk_frames = max(1, int(round(chunk_s * self.sample_rate / self.frontend.frame_len)))
        if params is None:
            params, self.sha256, self.source = load_quality_params(checkpoint)
        else:
            self.sha256, self.source = None, "given"
        self.params = params
        # ambisonics: the listener's head movement both signals are decoded under (None: a still head)
        self.head_turn = params.get("head_turn")
        # the image statistics' band weights (version 11): parameters ild_mean_weights ("level") and
        # ic_mean_weights ("time"); absent: every band alike
        self.statistic_weights = {}
        for stat, key in (("d_ild_mean", "ild_mean_weights"), ("d_ic_mean", "ic_mean_weights")):
            w = params.get(key, "equal")
            if w not in STATISTIC_WEIGHTINGS[stat]:
                raise SpaqError(f"quality parameters are malformed: {key} must be one of "
                                f"{', '.join(map(repr, STATISTIC_WEIGHTINGS[stat]))}, not {w!r}")
            if w != "equal":
                self.statistic_weights[stat] = w
        # what the overall gain match equalises (version 16: "audible", 15: "heard"; absent: "broadband", versions 1-14)
        self.gain_match = params.get("gain_match", "broadband")
        if self.gain_match not in GAIN_MATCHES:
            raise SpaqError(f"quality parameters are malformed: gain_match must be one of "
                            f"{', '.join(map(repr, GAIN_MATCHES))}, not {self.gain_match!r}")
        try:
            self.model = QualityMapping.from_params(params["mapping"]).to(self.device)
        except (KeyError, ValueError) as e:
            raise SpaqError(f"quality parameters are malformed: {e}") from None

    def decoder(self, order: int | None) -> dict | None:
        """The decoders of every order up to ``order`` (None for binaural): each ambisonic signal
        is decoded at its effective order (:func:`spaq.spatial.decoders.effective_order`)."""
        return None if order is None else hrtf_decoders(order, self.sample_rate, self.device)

    def features(self, ref: torch.Tensor, deg: torch.Tensor) -> tuple[dict, dict]:
        """``(B, C, T)`` at 48 kHz (2 channels: binaural, else ambisonics) -> (maps, pooled features)."""
        self.check_tensors(ref, deg)
        c = ref.shape[-2]
        order = None if c == 2 else int(round(c ** 0.5)) - 1
        m = quality_maps(ref.to(self.device), deg.to(self.device), self.frontend, self.decoder(order),
                         self.chunk_frames, compensate_gain=self.gain_match, head_turn=self.head_turn,
                         statistic_weights=self.statistic_weights)
        return m, pool_features(m)

    def forward(self, ref: torch.Tensor, deg: torch.Tensor) -> dict:
        """``(B, C, T)`` -> dict of ``(B,)`` tensors (score, sub-scores, distortions, features),
        differentiable."""
        m, f = self.features(ref, deg)
        out = self.model(f)
        out.update(f)
        out["gain_compensation_db"] = m["gain_db"]
        return out

    def score(self, pair, maps: bool = False) -> MetricResult:
        self.check_format(pair)
        order = pair.format.order if pair.format.is_ambisonics else None
        with torch.no_grad():
            reader = SegmentReader.from_pair(pair, self.device)  # in memory or streamed
            m = quality_maps_streamed(reader, self.frontend, self.decoder(order), self.chunk_frames,
                                      compensate_gain=self.gain_match, head_turn=self.head_turn,
                         statistic_weights=self.statistic_weights)
            f = pool_features(m)
            out = self.model(f)
            dmaps = distortion_maps(m, self.model, f) if maps else None
        vals = {k: out[k] for k in ("timbral_score", "spatial_score", "timbral_distortion", "spatial_distortion",
                                    "distortion")}
        vals["score_0_1"] = out["score"] / 100.0
        vals.update(f)
        vals["gain_compensation_db"] = m["gain_db"]
        warn = []
        if np.any(np.abs(m["gain_db"].cpu().numpy()) >= MAX_GAIN_DB):
            warn.append(f"degraded and reference levels differ by {MAX_GAIN_DB:.0f} dB or more: only "
                        f"{MAX_GAIN_DB:.0f} dB were compensated")
        warn += direction_warnings(f, out["spatial_score"])
        keep = None
        if maps:
            keep = {**dmaps, **{k: _nanmean(m[k], (1,)) if m[k].dim() == 4 else m[k]
                                for k in ("added_db", "missing_db", "d_ild_db")}}
        return self.result(
            out["score"], vals, pair=pair, warnings=warn, maps=keep,
            provenance={"mode": "fast" if self.fast else "exact", "checkpoint_sha256": self.sha256,
                        "weights_source": self.source,
                        "binaural_decoder": DEFAULT_DECODER if pair.format.is_ambisonics else None,
                        # the listener's head turn, where it applied (a pair decoded at two orders)
                        "head_turn": self.head_turn if bool(m["head_turned"].any()) else None,
                        "ild_mean_weights": self.statistic_weights.get("d_ild_mean", "equal"),
                        "ic_mean_weights": self.statistic_weights.get("d_ic_mean", "equal"),
                        "gain_match": self.gain_match,
                        "playback_assumption": "digital full scale = 100 dB SPL; overall gain compensated"})
