"""The ``sqm`` metric: distance between learned spatial-image embeddings (SQM-BS family).

The shipped SQM encoder (:mod:`spaq.models.sqm`, weights ``sqm_v1`` inside the package; recipe
``spaq/resources/weights/sqm_v1.yaml``, model card ``spaq/resources/weights/sqm_v1.md``) embeds the
reference and the degraded signal separately; ``score`` is the cosine distance of their
utterance embeddings (0 = the same spatial image, grows with the angular separation of the
sources; with a checkpoint whose ``SQMConfig.dereverb`` is set, a signal the localiser's room gate reads as
reverberant is dereverberated first, as that encoder was trained). Content, level and time alignment need not match (``align_input`` False); lengths may
differ in :func:`spaq.metrics.functional.sqm.sqm_distances` (through ``spaq.score`` the pair is
cut to a common length: ``--trim``). Ambisonic input is decoded to binaural with the shared
MagLS decoder (:func:`spaq.spatial.decoders.hrtf_decoder`); loudspeaker layouts and mono are
rendered binaurally by ``spaq.score``. With the mono source of each signal
(``Sqm().distances(ref, deg, ref_source=..., deg_source=...)``) the source-informed encoder
``sqm_v2_source`` (binaural + source, 3 channels, read through each ear's direct-path estimate:
:func:`spaq.models.sqm.direct_path`) scores the pair instead.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import SpaqInputError
from ..spatial.angles import cart2sph
from ..models.sqm import BINAURAL_WEIGHTS, SOURCE_WEIGHTS
from ..spatial.decoders import DEFAULT_DECODER, channel_energy, decode_binaural_effective, pair_orders
from .base import Metric, MetricResult
from .functional.sqm import sqm_distances

__all__ = ["Sqm", "load_sqm", "SOURCE_WEIGHTS"]


def load_sqm(checkpoint=None, name: str = BINAURAL_WEIGHTS):
    """The SQM encoder (eval mode, frozen) and its resolved weights (:func:`spaq.models.sqm.load_pretrained`;
    ``name``: :data:`~spaq.models.sqm.BINAURAL_WEIGHTS` binaural, :data:`SOURCE_WEIGHTS` binaural + the mono source)."""
    from ..models.sqm import load_pretrained

    return load_pretrained(checkpoint, name=name)


class Sqm(Metric):
    name = "sqm"
    # 1.1: with the dry sources, sqm_v2_source (direct path) instead of sqm_v1_source; 1.2: ambisonic
    # input decoded with the causal MagLS decoder; 1.3: each ambisonic signal at its effective order;
    # 1.4: MagLS cutoff where the order resolves the head (kr = N); 1.5: W alone beside a higher-order signal
    # decoded at that signal's order (spaq.spatial.decoders.pair_orders)
    version = "1.5"
    description = ("learned spatial-image distance (SQM-BS family): cosine distance of 16-d embeddings of ref and "
                   "deg; content, length and alignment need not match; lower is better")
    unit = "cosine distance"
    higher_is_better = False
    score_range = (0.0, 2.0)
    best_value = 0.0
    sample_rate = 48000
    formats = ("binaural", "ambisonics")
    differentiable = False  # the scored path is float32 and no_grad; spaq.losses.SpatialLoss is the differentiable one
    needs_weights = False  # shipped inside the package
    streamable = False
    min_duration_s = 0.5
    align_input = False  # an embedding distance: no alignment needed
    common_length = False  # nor one length: each signal is embedded whole
    accepts_sources = True  # with the dry sources: the source-informed encoder (SOURCE_WEIGHTS)
    default_rank = None
    reading = "cosine distance, lower is better: 0 = same spatial image; grows with the sources' angular separation"
    produces_maps = True

    def __init__(self, checkpoint=None, device: str = "cpu", fast: bool = True, source_checkpoint=None):
        """``fast``: the front-end's decimated mode (as trained); ``False``: every band at full rate.
        ``checkpoint``: the binaural encoder (None: the shipped ``sqm_v1``); ``source_checkpoint``:
        the source-informed encoder used when :meth:`distances` gets the mono sources (None: the
        shipped :data:`SOURCE_WEIGHTS`, loaded on first use)."""
        model, w = load_sqm(checkpoint)
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.weights = w
        self.fast = bool(fast)
        self._source_checkpoint = source_checkpoint
        self._source_model = None

    def source_model(self):
        """The source-informed encoder (3 channels: left, right, the mono source) and its weights:
        ``checkpoint`` itself when it is one, else ``source_checkpoint`` / the shipped :data:`SOURCE_WEIGHTS`."""
        if self.model.cfg.channels == 3:
            return self.model, self.weights
        if self._source_model is None:
            m, w = load_sqm(self._source_checkpoint, name=SOURCE_WEIGHTS)
            if m.cfg.channels != 3:
                raise SpaqInputError(f"{self.name}: the source checkpoint takes {m.cfg.channels} channels, not binaural "
                                     "+ the mono source (3)")
            self._source_model = (m.to(self.device), w)
        return self._source_model

    def _binaural(self, x: torch.Tensor, orders: torch.Tensor | None = None) -> torch.Tensor:
        c = x.shape[-2]
        if c == 2:
            return x
        order = int(round(c ** 0.5)) - 1
        if (order + 1) ** 2 != c:
            raise SpaqInputError(f"{self.name}: expected 2 (binaural) or (N+1)^2 (ambisonics) channels, got {c}")
        return decode_binaural_effective(x, self.sample_rate, orders)  # at the pair's effective orders

    def distances(self, ref: torch.Tensor, deg: torch.Tensor, ref_source=None, deg_source=None) -> dict:
        """``(B, C, T_r)``, ``(B, C, T_d)`` (lengths may differ) -> the
        :func:`~spaq.metrics.functional.sqm.sqm_distances` dict. ``ref_source``, ``deg_source``:
        the mono signal each was rendered from (``(B, T)`` or ``(B, 1, T)``, same length as its
        signal, at the gain it was rendered with), both or neither; with them the source-informed
        encoder (:meth:`source_model`) scores binaural + source."""
        for label, x in (("reference", ref), ("degraded", deg)):
            if not isinstance(x, torch.Tensor) or x.dim() != 3:
                raise SpaqInputError(f"{self.name}: expected a (batch, channels, time) tensor for the {label}")
            if x.shape[-1] < self.model.cfg.frame_len:
                raise SpaqInputError(f"{self.name}: the {label} signal is shorter than one 40 ms frame")
        if ref.shape[:2] != deg.shape[:2]:
            raise SpaqInputError(f"{self.name}: reference and degraded batch/channels differ: "
                                 f"{tuple(ref.shape[:2])} vs {tuple(deg.shape[:2])}")
        if (ref_source is None) != (deg_source is None):
            raise SpaqInputError(f"{self.name}: give both sources (ref_source and deg_source) or neither")
        model = self.model
        if ref_source is not None:
            model = self.source_model()[0]
        elif model.cfg.channels == 3:
            raise SpaqInputError(f"{self.name}: this checkpoint takes binaural + the mono source (3 channels): pass "
                                 "ref_source and deg_source")
        model.decimate = self.fast
        orders = (None, None)
        if ref.shape[-2] != 2:  # an ambisonic pair: one rule for both signals' decoders (W alone at the other's order)
            o = pair_orders(channel_energy(ref), channel_energy(deg)).to(self.device)
            orders = (o[..., 0], o[..., 1])
        r = self._binaural(ref.to(self.device), orders[0]).to(torch.float32)
        d = self._binaural(deg.to(self.device), orders[1]).to(torch.float32)
        if ref_source is not None:
            from ..models.sqm import with_source

            try:
                r = with_source(r, ref_source, "reference source")
                d = with_source(d, deg_source, "degraded source")
            except ValueError as e:
                raise SpaqInputError(f"{self.name}: {e}") from None
            for label, x in (("reference", r), ("degraded", d)):
                if bool((x[:, 2].abs().amax(-1) == 0).any()):
                    raise SpaqInputError(f"{self.name}: the {label} source is silent: the source-informed encoder "
                                         "reads each ear against its dry source; pass the signal it was rendered from")
        return sqm_distances(model, r, d)

    def forward(self, ref: torch.Tensor, deg: torch.Tensor) -> dict:
        """``(B, C, T)`` pair (same shape: the metric contract) -> dict of ``(B,)`` tensors:
        ``score`` = ``cosine_distance``, ``deep_feature_distance``. Different lengths:
        :meth:`distances`."""
        self.check_tensors(ref, deg)
        out = self.distances(ref, deg)
        return {"score": out["score"], "deep_feature_distance": out["deep_feature_distance"]}

    def score(self, pair, maps: bool = False, sources=None) -> MetricResult:
        """``pair``'s two signals may differ in length (``common_length = False``). ``sources``: None,
        or a mono :class:`~spaq.io.SignalPair` of the reference's and the degraded signal's dry sources
        (same rate as ``pair``, each as long as its signal): then the source-informed
        encoder scores the pair."""
        self.check_format(pair)
        if pair.streamed:
            from .base import MetricUnavailable

            raise MetricUnavailable(f"{self.name} does not stream long files; score a shorter excerpt")
        src = {}
        if sources is not None:
            src = {"ref_source": torch.from_numpy(np.ascontiguousarray(sources.ref[:, 0])),
                   "deg_source": torch.from_numpy(np.ascontiguousarray(sources.deg[:, 0]))}
        with torch.no_grad():
            out = self.distances(torch.from_numpy(pair.ref), torch.from_numpy(pair.deg), **src)
        used = self.source_model()[1] if src else self.weights
        values = {"cosine_distance": out["cosine_distance"], "deep_feature_distance": out["deep_feature_distance"]}
        for k in ("dereverberated_ref", "dereverberated_deg"):
            if k in out:
                values[k] = out[k].double().numpy()
        if "doa_ref" in out:
            for side in ("ref", "deg"):
                az, el, _ = cart2sph(out[f"doa_{side}"].double().cpu().numpy())
                values[f"doa_{side}_azimuth_deg"] = np.asarray(az, dtype=np.float64).reshape(-1)
                values[f"doa_{side}_elevation_deg"] = np.asarray(el, dtype=np.float64).reshape(-1)
        return self.result(out["score"], values, pair=pair,
                           provenance={"encoder": f"{used.path.stem} (binaural + dry source)" if src else f"{used.path.stem} (binaural)",
                                       "checkpoint_sha256": used.sha256, "checkpoint_source": used.source,
                                       "binaural_decoder": DEFAULT_DECODER if pair.format.is_ambisonics else None,
                                       "mode": "fast" if self.fast else "exact",
                                       "dereverberation": "where the room gate reads reverberation (values "
                                       "dereverberated_ref / _deg)" if "dereverberated_ref" in out else "off"},
                           maps={"frame_distance": out["frame_distance"][:, None, :]} if maps else None)
