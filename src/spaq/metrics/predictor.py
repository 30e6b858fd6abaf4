"""The reference-free quality predictor (``predictor``): a 0..100 score, a class (low / medium /
high on the MUSHRA bands >= 70, 40..70, < 40) and class probabilities from the degraded signal
alone, for binaural, ambisonics (any order, ACN/SN3D) and mono.

Functional core: :func:`spaq.metrics.functional.predictor.predictor_features` (psychoacoustic,
band/modulation and spatial features) and :class:`spaq.models.predictor.PredictorNet` (a
multi-task MLP with its scalers and MUSHRA calibration in one checkpoint, ``predictor_v1``,
shipped in the package; ``spaq train predictor configs/train/predictor.yaml`` reproduces it).
The checkpoint routes by format: binaural and mono input go to one network, FOA and HOA input to
a second one that reads them through their binaural decode (``PredictorNet.network``; each
network's features are computed with its own ``ambisonic_read``).
A checkpoint trained with an audio embedding (``fit.embedding``; the shipped ``predictor_v1`` has
none) names its encoder (:mod:`spaq.metrics.encoders` spec, e.g. ``hf=DIR``); the metric loads it
and appends the mean-over-frames embedding (:func:`spaq.metrics.encoders.signal_embedding`) to the
features. Silence (every sample below -90 dBFS) has a defined answer: score 0, class ``low`` with
probability 1, and a warning. Two channels that are the same signal (dual mono: the difference at
least 60 dB below the sum) are scored as mono, with a warning: a diotic signal carries no binaural
cue, and read as binaural every such file scored 96-99 whatever its coding (the speech-codec MUSHRA
files are dual mono). ``values["level_dbfs"]`` is the input's mono-mix RMS level (``rms_db`` as given);
a checkpoint that reads features at the input's own level (``input_level_dbfs`` None, the shipped
weights) warns when that level is more than ``LEVEL_Z`` standard deviations from its training rows'
mean (its stored scaler): the reading depends on level, and more so off the training levels
(``benchmarks/results/predictor_level.md``).
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import SpaqError, SpaqInputError
from ..models.predictor import CLASS_NAMES, score_class
from ..threads import in_background
from .base import Metric, MetricResult
from .functional.predictor import (AUDIBLE_HZ, FEATURE_NAMES, HUM_HZ, SILENCE_DBFS, audible_level_db, mono_mix,
                                  predictor_features, rms_level_db, signal_kind)

__all__ = ["Predictor", "MIN_SAMPLES"]

#: shortest input the features take (250 ms at 48 kHz): the temporal group's modulation ratio reads 2-10 Hz of
#: the envelope, which 100 ms cannot resolve (below 107 ms it reads no bin there at all and the decay times sit at
#: their cap; such clips of a file that scores 8 read 99 "high" with certainty); from 250 ms the bins fall at 4 and
#: 8 Hz (clips of 0.11-0.25 s of that file read 8-22)
MIN_SAMPLES = 12000
#: two channels whose difference is this far below their sum (in energy) are one signal (dual mono)
DUAL_MONO_DB = -60.0
#: a level this many standard deviations from the training rows' mean level gets a warning (3: for
#: predictor_v1 -47 to -4 dBFS, from about its rows' 1st percentile to above their highest, -6 dBFS;
#: 1-3 % of its held-out items, the quiet SONICOM-2 binaural renderings, lie below)
LEVEL_Z = 3.0
_RMS_DB = FEATURE_NAMES.index("rms_db")


def dual_mono(x: torch.Tensor) -> bool:
    """True when every item of ``x (B, 2, T)`` has the same signal in both channels: the energy of
    their difference at least ``-DUAL_MONO_DB`` dB below that of their sum (and not silent)."""
    x = x if x.dtype in (torch.float32, torch.float64) else x.double()
    a, b = x[:, 0], x[:, 1]
    # |a - b| and |a + b| as the norms of the difference and the sum in the samples' own precision: a - b is one
    # rounding of the exact difference (0 for two identical channels) and the norm's cascaded sum is accurate to
    # about 1e-7 of itself, so their ratio is known far better than the 1e-3 (-60 dB in amplitude) it is compared to
    # (3x cheaper than three float64 dot products)
    side = torch.linalg.vector_norm(a - b, dim=-1).double() ** 2
    mid = torch.linalg.vector_norm(a + b, dim=-1).double() ** 2
    return bool(((mid > 0) & (side <= mid * 10 ** (DUAL_MONO_DB / 10))).all())


class Predictor(Metric):
    name = "predictor"
    version = "1.3"  # 1.1: predictor_v1 retrained with the edge group, 15 networks, logit calibration;
    # 1.2: retrained on full-band clean content (speech with an upper band, wide bright scenes) and wide sweeps;
    # 1.3: FOA / HOA input goes to a second network that reads it through its binaural decode (routed checkpoint)
    description = ("reference-free quality predictor 0..100 with a low/medium/high class (MUSHRA bands), "
                   "binaural, ambisonics and mono; trained on spaq's quality metric over corpus-engine pairs, "
                   "calibrated on MUSHRA ratings; shipped weights")
    unit = "MUSHRA-like 0..100 (reference-free)"
    higher_is_better = True
    score_range = (0.0, 100.0)
    sample_rate = 48000
    formats = ("binaural", "ambisonics", "mono")
    needs_reference = False
    differentiable = False
    needs_weights = False  # shipped inside the package
    streamable = False
    min_duration_s = 1.0
    align_input = False
    default_rank = None
    reading = ("0..100 from the degraded signal alone, higher is better; class low < 40 <= medium < 70 <= high "
               "(MUSHRA bands), probabilities in values")

    def __init__(self, checkpoint=None, offline=None, device: str = "cpu"):
        from ..models import checkpoint as ck
        from ..weights import resolve

        w = resolve("predictor_v1", path=checkpoint, offline=True, download=False)
        self.model, self.meta = ck.load(w.path, architecture="predictor", sha256=w.sha256)
        self.model = self.model.double()  # a small MLP: float64 keeps batched == one by one to rounding
        self.sha256, self.source = w.sha256, w.source
        self.encoder = None
        spec = str(getattr(self.model.cfg, "embedding", "") or "")
        if spec:
            from .encoders import load_encoder

            try:
                self.encoder = load_encoder(spec)
            except SpaqError as e:
                raise SpaqError(f"{self.name}: checkpoint {w.path} needs its embedding encoder: {e}") from None

    def _kind(self, n_channels: int, fmt_kind: str | None = None) -> str:
        try:
            return signal_kind(n_channels, fmt_kind)
        except ValueError as e:
            raise SpaqInputError(f"{self.name}: {e}") from None

    def predict_tensor(self, x: torch.Tensor, kind: str | None = None, audible_db: torch.Tensor | None = None) -> dict:
        """``x (B, C, T)`` at 48 kHz -> dict of ``(B,)`` tensors: score (0..100, the teacher's
        scale), mushra_calibrated (the listener-calibrated reading), proba_low/medium/high,
        class_index, silent (no power above 20 Hz within ``SILENCE_DBFS``: DC and infrasound are silence;
        ``audible_db``: that level when already computed, :func:`audible_level_db`), and, where it computed that
        level (on the second thread where two are allowed, beside the features), hum_share."""
        if not isinstance(x, torch.Tensor) or x.dim() != 3:
            raise SpaqInputError(f"{self.name}: expected a (batch, channels, time) tensor")
        if x.shape[-1] < MIN_SAMPLES:
            raise SpaqInputError(f"{self.name}: input too short: {x.shape[-1] / self.sample_rate * 1000:.0f} ms, at least "
                                 f"{MIN_SAMPLES / self.sample_rate * 1000:.0f} ms are needed (its features read the "
                                 "envelope's modulations down to 2 Hz)")
        if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):  # one pass when finite
            raise SpaqInputError(f"{self.name}: input contains NaN or Inf samples")
        kind = kind or self._kind(x.shape[-2])
        audible = in_background(audible_level_db, x, self.sample_rate) if audible_db is None else None
        net = self.model.network(kind)  # a routed checkpoint's FOA / HOA network, else the one network
        level = net.cfg.input_level_dbfs
        f = predictor_features(x, self.sample_rate, kind, level_dbfs=level, ambisonic_read=net.cfg.ambisonic_read)
        # the input's own level: the rms_db feature itself unless the features were computed after scaling
        level_db = (f[:, _RMS_DB].clone() if level is None
                     else rms_level_db(mono_mix(x.to(torch.float32), kind)).to(torch.float64))
        if self.encoder is not None:
            f = torch.cat([f, self.embedding(x, kind).to(f.dtype)], dim=-1)
        with torch.no_grad():
            o = net(f)
        proba = torch.softmax(o["logits"].double(), -1)
        score = o["score"].double()
        raw = o["mushra"].double()
        level, hum = audible() if audible is not None else (audible_db, None)
        silent = level < SILENCE_DBFS
        if bool(silent.any()):
            score = torch.where(silent, torch.zeros_like(score), score)
            raw = torch.where(silent, torch.zeros_like(raw), raw)
            proba = torch.where(silent[:, None], torch.tensor([1.0, 0.0, 0.0], dtype=proba.dtype), proba)
        out = {"score": score, "mushra_calibrated": raw}
        for i, n in enumerate(CLASS_NAMES):
            out[f"proba_{n}"] = proba[:, i]
        out["class_index"] = proba.argmax(-1).double()
        out["silent"] = silent.double()
        out["level_dbfs"] = level_db.double()
        if hum is not None:
            out["hum_share"] = hum.double()
        return out

    def training_levels(self, kind: str = "binaural") -> tuple[float, float] | None:
        """``(low, high)`` dBFS: the mono-mix levels within ``LEVEL_Z`` standard deviations of the
        training rows' mean (the scaler of the network input of ``kind`` goes to), or None where the
        reading does not depend on the level (a checkpoint with ``input_level_dbfs``) or the network
        does not read it."""
        net = self.model.network(kind)
        names = list(net.cfg.feature_names)
        if net.cfg.input_level_dbfs is not None or "rms_db" not in names:
            return None
        i = names.index("rms_db")
        m, s = float(net.mean[i]), float(net.std[i])
        return m - LEVEL_Z * s, m + LEVEL_Z * s

    def embedding(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        """``x (B, C, T)`` at 48 kHz -> ``(B, n_embedding)``: the checkpoint's encoder's
        mean-over-frames embedding (the signal as in training)."""
        from .encoders import signal_embedding

        e = signal_embedding(self.encoder, x.detach().cpu(), self.sample_rate, kind)
        n = int(self.model.cfg.n_embedding)
        if e.shape[-1] != n:
            raise SpaqError(f"{self.name}: the encoder {self.model.cfg.embedding} gives {e.shape[-1]} values, "
                            f"the checkpoint was trained on {n}")
        return e

    def forward(self, ref, deg) -> dict:
        """``deg (B, C, T)`` at 48 kHz (``ref`` ignored; checked when given): 2 channels are
        binaural, (N+1)^2 ambisonics, 1 mono."""
        self.check_tensors(ref, deg)
        return self.predict_tensor(deg)

    def score(self, pair, maps: bool = False) -> MetricResult:
        self.check_format(pair)
        if pair.streamed:
            from .base import MetricUnavailable

            raise MetricUnavailable(f"{self.name} does not stream long files; score a shorter excerpt")
        x = torch.from_numpy(pair.deg)
        kind = "mono" if pair.format.kind == "mono" else self._kind(x.shape[-2], pair.format.kind)
        warn = []
        if kind == "binaural" and dual_mono(x):
            x, kind = x[:, :1], "mono"
            warn.append("the two channels are the same signal (dual mono): scored as mono; a diotic signal has "
                        "no binaural cue, so its spatial image is not judged")
        out = self.predict_tensor(x, kind)
        s, hum = out.pop("score"), out.pop("hum_share")
        idx = out["class_index"].numpy().astype(int)
        if bool(out["silent"].any()):
            warn.append(f"silent input (no power above {AUDIBLE_HZ:g} Hz within {-SILENCE_DBFS:.0f} dB of full scale): "
                        "score 0, class low by definition")
        if bool(((hum > 0.9) & (out["silent"] == 0)).any()):
            warn.append(f"most of the signal's power is below {HUM_HZ:g} Hz (hum or rumble), unlike any content the "
                        "weights were trained on: the reading is uncertain")
        net = self.model.network(kind)  # the network that read it (a routed checkpoint's ambisonic one for FOA / HOA)
        rng = self.training_levels(kind)
        if rng is not None:
            lv = out["level_dbfs"][out["silent"] == 0]
            off = lv[(lv < rng[0]) | (lv > rng[1])]
            if off.numel():
                warn.append(f"input level {float(off[0]):.1f} dBFS is more than {LEVEL_Z:g} standard deviations from "
                            f"the weights' training levels ({rng[0]:.0f} to {rng[1]:.0f} dBFS): the reading depends on "
                            "the level, more so there; scaling the file to about -26 dBFS keeps it where they were trained")
        res = self.result(s, out, pair=pair, warnings=warn,
                          provenance={"checkpoint_sha256": self.sha256, "weights_source": self.source,
                                      "detected": kind,
                                      # which network of a routed checkpoint read it, and how it read ambisonics
                                      "network": "ambisonic" if net is not self.model else "main",
                                      "ambisonic_read": net.cfg.ambisonic_read,
                                      **({"embedding": self.model.cfg.embedding}
                                                           if self.encoder is not None else {})})
        res.values["class"] = ([CLASS_NAMES[i] for i in idx] if pair.batched else CLASS_NAMES[idx[0]])
        # the band the score falls in: the class head and the score head are two estimates, which disagree on
        # about one held-out item in eight (benchmarks/results/predictor.md)
        band = score_class(np.atleast_1d(s.detach().cpu().numpy()))
        res.values["score_band"] = ([CLASS_NAMES[i] for i in band] if pair.batched else CLASS_NAMES[band[0]])
        res.values["detected_format"] = kind
        return res
