"""The reference-free quality predictor's network (architecture ``predictor``).

A multi-task MLP on a fixed feature vector (:mod:`spaq.metrics.functional.predictor`):

    features (B, n_in) -> standardise (training-split mean/std, buffers) -> shared encoder
    (Linear-GELU-Dropout per ``hidden`` width) -> class head (B, 3) logits: low / medium / high
                                                -> score head (B,) in 0..1 (sigmoid)

``score = 100 * raw`` is on the teacher's scale (spaq's ``quality`` metric, the scale the class
head's MUSHRA bands refer to); ``mushra`` is the listener-calibrated reading, a 2-parameter
linear map fitted on MUSHRA ratings (buffers ``calib_a``, ``calib_b``):
``mushra = clamp(a + b * x, 0, 100)`` with ``x`` the score itself (``calib_scale: linear``, the
default, and every checkpoint written before the option) or its logit
``x = log(s / (100 - s))``, ``s`` the score clipped to [0.05, 99.95] (``calib_scale: logit``;
:func:`calibration_input`). Identity: linear, a = 0, b = 1. The scalers and the
calibration live in the state_dict, so one checkpoint (``spaq.models.checkpoint``) holds all of
it. ``feature_index`` (config) selects the columns of the full feature vector the network was
trained on (the feature ablation drops groups this way).

Routed by format (``ambisonic``: the config of a second network, empty for a single one): FOA and
HOA input go to that network (:meth:`PredictorNet.network`), fitted on features that read ambisonic
input through its binaural decode (its ``ambisonic_read``), and binaural and mono input to this one.
The two are fitted by one recipe on the same rows (``configs/train/predictor.yaml``, ``ambisonic``)
and share the listener calibration; the second one's parameters are the ``ambisonic.*`` entries of
the one state_dict. Why: read through W and the intensity vectors, a tone in a short room looks as
diffuse as a long room (the reverb ladder), and every shared network that read the decode instead
lowered the MUSHRA half's reading of mono speech (``benchmarks/results/predictor_seeds.md``).

Optional audio embedding (``embedding``: an encoder spec of :func:`spaq.metrics.encoders.load_encoder`,
``n_embedding`` its dimension; empty / 0 for the shipped ``predictor_v1``): the network's input is
then the feature vector followed by the mean-over-frames embedding,
``(B, n_features + n_embedding)``; the selected features and every embedding value are
standardised by the same scaler buffers. The metric computes the embedding at inference from the
spec stored in the checkpoint.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from .config import ArchitectureConfig

__all__ = ["PredictorConfig", "PredictorNet", "CLASS_NAMES", "BANDS", "score_class", "CALIB_SCALES", "calibration_input",
           "AMBISONIC_READS"]

CLASS_NAMES = ("low", "medium", "high")
#: MUSHRA bands: class index 0 low (< 40), 1 medium (40..70), 2 high (>= 70)
BANDS = (40.0, 70.0)


def score_class(s) -> np.ndarray:
    """0..100 scores -> class indices (0 low, 1 medium, 2 high): the band each score falls in."""
    s = np.asarray(s, dtype=np.float64)
    return (s >= BANDS[0]).astype(int) + (s >= BANDS[1]).astype(int)
CALIB_SCALES = ("linear", "logit")
#: how the features read FOA / HOA input (``spaq.metrics.functional.predictor.predictor_features``'s
#: ``ambisonic_read``): W and the intensity vectors, or the binaural decode
AMBISONIC_READS = ("intensity", "decode")
_LOGIT_CLIP = 0.05  # the logit scale clips the 0..100 score to [0.05, 99.95] (logit +-7.6)


def calibration_input(score, scale: str = "linear"):
    """The value the listener calibration is linear in, for a 0..100 ``score`` (tensor or array,
    any shape, same type back): the score itself (``"linear"``) or its logit
    ``log(s / (100 - s))`` with ``s`` clipped to [0.05, 99.95] (``"logit"``)."""
    if scale == "linear":
        return score
    if scale != "logit":
        raise ValueError(f"calibration scale {scale!r}: expected one of {', '.join(CALIB_SCALES)}")
    t = score if isinstance(score, torch.Tensor) else torch.as_tensor(score, dtype=torch.float64)
    s = t.clamp(_LOGIT_CLIP, 100.0 - _LOGIT_CLIP)
    z = torch.log(s / (100.0 - s))
    return z if isinstance(score, torch.Tensor) else z.numpy()


@dataclass
class PredictorConfig(ArchitectureConfig):
    """Everything needed to rebuild the network (stored in checkpoints)."""
    label = "predictor"

    n_features: int = 49                    # length of the full feature vector
    feature_index: list = field(default_factory=list)  # columns used (empty: all)
    feature_names: list = field(default_factory=list)  # names of the columns used
    hidden: list = field(default_factory=lambda: [64, 32])
    dropout: float = 0.1
    sample_rate: int = 48000
    embedding: str = ""                     # encoder spec of the embedding appended to the features ("" = none)
    n_embedding: int = 0                    # its dimension (mean over frames)
    members: int = 1                        # an ensemble of this many MLPs (same input), outputs averaged
    calib_scale: str = "linear"             # the listener calibration's input: the score or its logit
    # the active level (dBFS) the features scale every input to (spaq.metrics.functional.predictor);
    # None: features at the input's own level (the shipped weights; every checkpoint written before the option)
    input_level_dbfs: float | None = None
    # how the features read FOA / HOA input (spaq.metrics.functional.predictor.AMBISONIC_READS): W and the
    # intensity vectors (every checkpoint written before the option) or the binaural decode
    ambisonic_read: str = "intensity"
    # the config of the network FOA / HOA input goes to (its parameters: this one's "ambisonic.*"); empty:
    # this network takes every format (every checkpoint written before the option)
    ambisonic: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.calib_scale not in CALIB_SCALES:
            raise ValueError(f"predictor config: calib_scale {self.calib_scale!r}, expected one of {', '.join(CALIB_SCALES)}")
        if self.ambisonic_read not in AMBISONIC_READS:
            raise ValueError(f"predictor config: ambisonic_read {self.ambisonic_read!r}, expected one of "
                             f"{', '.join(AMBISONIC_READS)}")
        if self.ambisonic and self.ambisonic.get("ambisonic"):
            raise ValueError("predictor config: the ambisonic network cannot route again (its own ambisonic is set)")

    @property
    def n_in(self) -> int:
        return (len(self.feature_index) or self.n_features) + int(self.n_embedding)

    @property
    def embedding_names(self) -> list:
        """Column names of the embedding values in feature tables: ``emb0 .. emb{n-1}``."""
        return [f"emb{j}" for j in range(int(self.n_embedding))]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["feature_index"] = [int(i) for i in self.feature_index]
        d["hidden"] = [int(h) for h in self.hidden]
        if self.ambisonic:
            d["ambisonic"] = PredictorConfig.from_dict(dict(self.ambisonic)).to_dict()
        return d



def _member(cfg: PredictorConfig, n: int):
    """One MLP of the ensemble: ``(encoder, class head, score head)``."""
    layers, d = [], n
    for h in cfg.hidden:
        layers += [nn.Linear(d, int(h)), nn.GELU(), nn.Dropout(cfg.dropout)]
        d = int(h)
    return nn.Sequential(*layers), nn.Linear(d, len(CLASS_NAMES)), nn.Linear(d, 1)


class PredictorNet(nn.Module):
    """``forward(x (B, n_features + n_embedding)) -> {"logits" (B, 3), "score_logit" (B,) (the score
    head before its sigmoid), "raw" (B,) 0..1, "score" (B,) 0..100,
    "mushra" (B,) 0..100}``."""

    def __init__(self, cfg: PredictorConfig):
        super().__init__()
        self.cfg = cfg
        n = cfg.n_in
        self.register_buffer("mean", torch.zeros(n))
        self.register_buffer("std", torch.ones(n))
        self.register_buffer("calib_a", torch.zeros(()))
        self.register_buffer("calib_b", torch.ones(()))
        idx = (list(cfg.feature_index) or list(range(cfg.n_features))) + list(
            range(cfg.n_features, cfg.n_features + int(cfg.n_embedding)))  # the embedding: always all of it
        self.register_buffer("index", torch.tensor(idx, dtype=torch.long), persistent=False)
        self.encoder, self.class_head, self.score_head = _member(cfg, n)
        # members 2.. of an ensemble (the first keeps the single network's parameter names)
        self.more = nn.ModuleList([nn.ModuleList(_member(cfg, n)) for _ in range(int(cfg.members) - 1)])
        # routed by format: the network FOA / HOA input goes to (None: this one takes every format)
        self.ambisonic = PredictorNet(PredictorConfig.from_dict(dict(cfg.ambisonic))) if cfg.ambisonic else None

    def network(self, kind: str) -> "PredictorNet":
        """The network input of ``kind`` (``binaural`` / ``foa`` / ``hoa`` / ``mono``) goes to: the
        ambisonic one for FOA and HOA where the checkpoint routes, else this one. Its features are
        computed with its ``cfg.ambisonic_read``."""
        return self.ambisonic if self.ambisonic is not None and kind in ("foa", "hoa") else self

    def set_scaler(self, mean, std) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
        self.std.copy_(torch.clamp(torch.as_tensor(std, dtype=torch.float32), min=1e-6))

    def set_calibration(self, a: float, b: float) -> None:
        """The listener calibration (of the ambisonic network too: one mapping for both)."""
        self.calib_a.fill_(float(a))
        self.calib_b.fill_(float(b))
        if self.ambisonic is not None:
            self.cfg.ambisonic = {**self.cfg.ambisonic, "calib_scale": self.cfg.calib_scale}  # what a checkpoint stores
            self.ambisonic.cfg.calib_scale = self.cfg.calib_scale
            self.ambisonic.set_calibration(a, b)

    def standardise(self, feats: torch.Tensor) -> torch.Tensor:
        return (feats[..., self.index].to(self.mean.dtype) - self.mean) / self.std  # the model's dtype

    def calibrate(self, score: torch.Tensor) -> torch.Tensor:
        """0..100 score (teacher scale) -> listener-calibrated 0..100 (on ``cfg.calib_scale``)."""
        return (self.calib_a + self.calib_b * calibration_input(score, self.cfg.calib_scale)).clamp(0.0, 100.0)

    def forward(self, feats: torch.Tensor) -> dict:
        """This network's outputs (a routed checkpoint: call it on :meth:`network`'s choice)."""
        x = self.standardise(feats)
        members = [(self.encoder, self.class_head, self.score_head)] + [tuple(m) for m in self.more]
        logits, z = 0.0, 0.0
        for enc, ch, sh in members:  # an ensemble averages the members' logits
            h = enc(x)
            logits = logits + ch(h) / len(members)
            z = z + sh(h)[..., 0] / len(members)
        raw = torch.sigmoid(z)
        return {"logits": logits, "score_logit": z, "raw": raw, "score": 100 * raw, "mushra": self.calibrate(100 * raw)}
