"""The ``localization`` metric: angular error between the directions found in the reference
and in the degraded signal (binaural: HRTF template matching or a BAST-family model; ambisonics: active
intensity), per source, with the directions themselves in ``values``.

Binaural method (``method="auto"``, :func:`spaq.localization.localize`): template matching against
HRTF cue sets (:mod:`spaq.localization.templates`) for coherent (anechoic-like) references and for
several sources, the cue-feature BAST model (``bast_cues``) for reverberant ones (low direct-sound
coherence), each where it had the lower held-out error (``benchmarks/results/localizer_v2.md``);
the degraded signal is localised with the reference's method; given ``weights`` (a BAST
checkpoint), that model. The method used is in ``provenance["method"]`` with the reason in
``provenance["method_choice"]``."""
from __future__ import annotations

import numpy as np
import torch

from ..errors import SpaqInputError
from .base import Metric, MetricResult, MetricUnavailable

__all__ = ["Localization"]


def _side_warnings(c, have: list) -> list:
    """The warnings of a comparison's two localisations, each prefixed by its side, that ``have``
    does not hold yet."""
    out = []
    for side, res in (("reference", c.reference), ("degraded", c.degraded)):
        out += [f"{side}: {w}" for w in (res.warnings if res is not None else []) if f"{side}: {w}" not in have + out]
    ref = c.reference
    conf = np.asarray(getattr(ref, "confidence", []), dtype=np.float64).reshape(-1)
    low = [i for i, v in enumerate(conf) if np.isfinite(v) and v < LOW_CONFIDENCE]
    if low and not (ref is not None and ref.warnings):  # (a reverberant reference is already said to be unreliable)
        w = (f"reference: the direction of source {low[0] + 1} was found with confidence {conf[low[0]]:.2f} (below "
             f"{LOW_CONFIDENCE:g}): its cues fit no direction well, so the error against it means little")
        if w not in have + out:
            out.append(w)
    return out


#: below this confidence a reference direction is reported as unreliable (a warning beside the error)
LOW_CONFIDENCE = 0.2


def _format_name(f) -> str:
    """What :func:`spaq.localization.compare_localization` is told: binaural, ambisonics, or the layout's name."""
    if f.is_binaural:
        return "binaural"
    return f.layout if f.kind == "layout" else "ambisonics"


class Localization(Metric):
    name = "localization"
    version = "1.5"  # 1.1: binaural default is template matching (was the BAST model); 1.2: cue BAST when reverberant;
    # 1.3: the templates gained the exact-head stages (one source, several: level-weighted 2048-point votes) and
    # frequency-scaled heads; 1.4: the several-source votes cancel each found source in every bin (they dropped
    # the bins it explained): n_sources >= 2 only; 1.5: loudspeaker layouts by the intensity of their feeds
    # encoded as plane waves (were rendered binaurally: a phantom image between L and C read 165 deg, now 15)
    description = ("angular error (degrees) between source directions found in reference and degraded "
                   "(binaural: HRTF cue template matching; ambisonics and loudspeaker layouts: intensity vectors); "
                   "lower is better")
    unit = "deg"
    higher_is_better = False
    score_range = (0.0, 180.0)
    best_value = 0.0
    sample_rate = 48000
    formats = ("binaural", "ambisonics", "layout")
    differentiable = False
    needs_weights = False  # templates come from the packaged HRTF sets; the BAST model ships inside the package
    streamable = True
    min_duration_s = 0.47  # the BAST model's window (templates need one 40 ms frame)
    default_rank = 4
    reading = "degrees, lower is better: angular shift of the source directions (0 = same place)"

    def __init__(self, device: str = "cpu", n_sources: int = 1, weights=None, method: str = "auto", hrtf=None):
        self.n_sources = int(n_sources)
        self.weights = weights
        self.method = method
        self.hrtf = hrtf

    def _kw(self) -> dict:
        return {"n_sources": self.n_sources, "weights": self.weights, "method": self.method, "hrtf": self.hrtf}

    @staticmethod
    def _choice(method: str | None) -> str:
        # binaural: replaced by the reference's own provenance["method_choice"] (localize() says why)
        if method == "templates":
            return "templates: lower held-out error on coherent signals (benchmarks/results/localizer_v2.md)"
        if method == "bast":
            return "bast: weights given, method='bast' asked for, or a reverberant reference"
        return f"{method}: ambisonics or loudspeaker feeds (plane waves from their loudspeakers)"

    #: Streamed (long) pairs are localised segment by segment, this many seconds each.
    segment_s = 10.0

    def _score_streamed(self, pair, fmt: str) -> MetricResult:
        """Long files: directions found per segment (never the whole signal in memory); the
        score is the mean error over segments, weighted by the reference segment's energy."""
        from ..localization import compare_localization

        step = int(self.segment_s * pair.sample_rate_used)
        errs, weights, segs, warn, method, prov, notes = [], [], [], [], None, {}, []
        for a, r, d in pair.segments(step):
            if r.shape[-1] < 0.5 * pair.sample_rate_used and a > 0:
                continue  # a short tail: too little to localise
            try:
                c = compare_localization(r[0], d[0], pair.sample_rate_used, fmt, **self._kw())
            except SpaqInputError as e:
                if "silent" in str(e):
                    continue
                raise MetricUnavailable(f"localization: {e}") from None
            it = c.to_dict()
            warn += _side_warnings(c, warn)
            if c.degraded is None and c.note:
                notes.append(c.note)
            method = it["reference"]["method"]
            prov = it["reference"].get("provenance", {})
            segs.append({"start_s": a / pair.sample_rate_used, "error_deg": it["error_deg"],
                         "reference_directions": it["reference"]["sources"],
                         "degraded_directions": (it["degraded"] or {}).get("sources")})
            if np.isfinite(c.mean_error_deg):
                errs.append(c.mean_error_deg)
                a = np.asarray(r, dtype=np.float64)[0]
                weights.append(float(np.sum((a[:1] if fmt == "ambisonics" else a) ** 2)))
        if not segs:
            raise MetricUnavailable("localization: every segment of the reference is silent: no direction")
        if not errs:
            warn.append(notes[0] if notes and all(n == notes[0] for n in notes)
                        else "degraded signal gives no direction in any segment" + (f" ({notes[0]})" if notes else ""))
        score = float(np.average(errs, weights=weights)) if errs and sum(weights) > 0 else float("nan")
        return self.result(score, {"segments": segs, "segment_s": self.segment_s,
                                   "pooling": "reference-energy-weighted mean of the segments' errors"},
                           pair=pair, provenance={"method": method, "method_choice": self._choice(method), **prov},
                           warnings=warn + ([f"long input: localised in {self.segment_s:.0f} s segments"]
                                            if len(segs) > 1 else []))

    def score(self, pair, maps: bool = False) -> MetricResult:
        from ..localization import compare_localization

        self.check_format(pair)
        fmt = _format_name(pair.format)
        if pair.streamed:
            return self._score_streamed(pair, fmt)
        scores, items, warn = [], [], []
        for b in range(pair.ref.shape[0]):
            try:
                c = compare_localization(pair.ref[b], pair.deg[b], pair.sample_rate_used, fmt, **self._kw())
            except SpaqInputError as e:
                raise MetricUnavailable(f"localization: {e}") from None
            scores.append(c.mean_error_deg)
            items.append(c.to_dict())
            if c.note:
                warn.append(c.note)
            warn += _side_warnings(c, warn)
        score = np.asarray(scores, dtype=np.float64)
        values = {"error_deg": [it["error_deg"] for it in items] if pair.batched else items[0]["error_deg"],
                  "reference_directions": [it["reference"]["sources"] for it in items] if pair.batched
                  else items[0]["reference"]["sources"],
                  "degraded_directions": [(it["degraded"] or {}).get("sources") for it in items] if pair.batched
                  else (items[0]["degraded"] or {}).get("sources")}
        method = items[0]["reference"]["method"]
        return self.result(score, values, pair=pair, warnings=warn,
                           provenance={"method": method, "method_choice": self._choice(method),
                                       **items[0]["reference"].get("provenance", {})})

    def forward(self, ref: torch.Tensor, deg: torch.Tensor) -> dict:
        """``(B, C, T)`` at 48 kHz (2 channels: binaural, else ambisonics ACN/SN3D) -> ``{"score":
        (B,)}`` mean angular error in degrees (not differentiable: directions are found by
        search)."""
        from ..localization import compare_localization

        self.check_tensors(ref, deg)
        fmt = "binaural" if ref.shape[-2] == 2 else "ambisonics"
        out = []
        for r, d in zip(ref.detach().cpu().numpy(), deg.detach().cpu().numpy()):
            try:
                c = compare_localization(r, d, self.sample_rate, fmt, **self._kw())
            except SpaqInputError as e:
                raise MetricUnavailable(f"localization: {e}") from None
            out.append(c.mean_error_deg)
        return {"score": torch.tensor(out, dtype=torch.float64)}
