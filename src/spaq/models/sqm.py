"""SQM: a learned embedding of the spatial image of a binaural signal (SQM-BS family).

After Manocha et al. (Interspeech 2023, "Spatialization quality metric for binaural speech"):
a feature extractor without striding, two bidirectional LSTM layers (64 values per frame) and a
linear head to a 16-dimensional embedding per frame; the utterance embedding is the linear head
applied to an attention-weighted mean of the last LSTM layer over frames. A direction-of-arrival
head (unit-vector regression) on the same pooled vector is the auxiliary task of training.

Front ends (``SQMConfig.front_end``):

* ``"cues"`` (shipped): the interaural and monaural cue features of the shared auditory
  front-end (:func:`spaq.auditory.binaural_features.binaural_features`: ILD, IPD as a unit
  vector, coherence, each ear's spectral shape per ERB band and 40 ms frame), plus each band's
  level relative to the signal's loudest (activity); with ``channels=3`` (binaural + the mono
  source) also each ear's band level relative to the source's (the head's transfer magnitude).
* ``"wave"``: the raw waveform through a learned filterbank (a convolution one frame long with
  a frame hop, log-magnitude), then the same stack -- the paper's raw-waveform front end at
  the budget a 2-core CPU allows (the paper's full-rate ResNet is far beyond it).

Shapes: input ``(B, C, T)`` at 48 kHz, ``C = channels`` (2: left, right; 3: left, right,
source) -> :meth:`SQM.forward` dict with ``frames (B, nf, E)``, ``utterance (B, E)``,
``doa (B, 3)`` (not normalised), ``activations``: list of ``(B, channels_l, nf)`` per layer
(the deep features of the deep-feature distance). ``nf = T // frame_len`` (40 ms frames).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..threads import intra_op_threads
from .config import ArchitectureConfig

__all__ = ["SQMConfig", "SQM", "sqm_features", "with_source", "load_pretrained"]


@dataclass
class SQMConfig(ArchitectureConfig):
    """Architecture of :class:`SQM` (a checkpoint stores it as a dict)."""
    label = "SQM"

    sample_rate: int = 48000
    front_end: str = "cues"  # "cues" or "wave"
    channels: int = 2  # 2: binaural; 3: binaural + mono source
    frame_ms: float = 40.0
    n_bands: int = 29  # ERB bands of the shared front-end at 48 kHz
    wave_filters: int = 128
    conv_channels: int = 64
    res_blocks: int = 2
    kernel: int = 3
    lstm_hidden: int = 32  # per direction: 64 per frame
    embed_dim: int = 16
    doa_head: bool = True
    dropout: float = 0.0  # after the convolutions and between the LSTM layers (training only)
    direct_path_ms: float = 0.0  # 3 channels: > 0 reads the direct sound only (:func:`direct_path`); 0: as given
    #: the ears are read dereverberated where the localiser's room gate reads reverberation: the checkpoint says
    #: so, its consumers (the ``sqm`` metric, the training bank, ``benchmarks/eval_sqm.py``) apply it with
    #: :func:`spaq.metrics.functional.sqm.sqm_input`; the differentiable losses read the signal as given. No shipped
    #: encoder sets it (``configs/train/sqm_dereverb.yaml``: tried, a trade across heads)
    dereverb: bool = False

    def __post_init__(self):
        if self.front_end not in ("cues", "wave"):
            raise ValueError(f"SQM front_end must be 'cues' or 'wave', got {self.front_end!r}")
        if self.channels not in (2, 3):
            raise ValueError(f"SQM channels must be 2 or 3, got {self.channels}")
        if self.direct_path_ms < 0 or (self.direct_path_ms > 0 and self.channels != 3):
            raise ValueError("SQM direct_path_ms must be >= 0, and > 0 only with the mono source (channels 3)")

    @property
    def frame_len(self) -> int:
        return int(round(self.frame_ms * self.sample_rate / 1000))

    @property
    def feature_dim(self) -> int:
        if self.front_end == "wave":
            return self.wave_filters
        return 7 * self.n_bands + (2 * self.n_bands if self.channels == 3 else 0)

    def to_dict(self) -> dict:
        return asdict(self)



def direct_path(x: torch.Tensor, sample_rate: int, after_ms: float, before_ms: float = 1.0,
                regularisation: float = 1e-3, first_db: float = 6.0) -> torch.Tensor:
    """The direct sound of a source-informed input: ``x (B, 3, T)`` (left, right, the dry mono
    source) -> ``(B, 3, T)`` with the ears replaced by the source through the direct part of their
    estimated responses. Each ear's response is estimated over the whole signal by regularised
    deconvolution (``Y S* / (|S|^2 + regularisation x mean |S|^2)``, causal lags up to ``T / 2``),
    its direct sound taken as the first sample whose two-ear energy is within ``first_db`` of the
    response's largest (then that sample's local peak, within 0.5 ms), and the response kept from
    ``before_ms`` before to ``after_ms`` after it (half-Hann fade-out over the last 0.5 ms):
    reflections and diffuse noise after the direct sound are removed, the source's spectrum and
    the head's direct-path filtering are kept. Differentiable in ``x`` (the window's position is
    not). An anechoic input comes back nearly unchanged (its response is the HRIR)."""
    n = x.shape[-1]
    m = 1 << int(math.ceil(math.log2(2 * n)))
    S = torch.fft.rfft(x[:, 2], m)  # (B, F)
    p = S.real ** 2 + S.imag ** 2
    den = p + regularisation * p.mean(-1, keepdim=True).clamp_min(1e-30)
    h = torch.fft.irfft(torch.fft.rfft(x[:, :2], m) * (S.conj() / den)[:, None], m)[..., : n // 2]  # (B, 2, L)
    with torch.no_grad():
        e = h.detach().pow(2).sum(1)  # (B, L)
        first = (e >= e.amax(-1, keepdim=True) * 10 ** (-first_db / 10)).int().argmax(-1)
        look = max(1, int(round(0.0005 * sample_rate)))
        idx = (first[:, None] + torch.arange(look, device=x.device)).clamp(max=e.shape[-1] - 1)
        pk = first + e.gather(1, idx).argmax(-1)  # (B,)
        t = torch.arange(e.shape[-1], device=x.device)[None]
        a = pk[:, None] - int(round(before_ms * sample_rate / 1000))
        b = pk[:, None] + int(round(after_ms * sample_rate / 1000))
        w = ((t >= a) & (t < b)).to(h.dtype)  # the cut, its last ``look`` samples faded out
        ramp = 0.5 * (1 + torch.cos(math.pi * (t - (b - look)).clamp(0, look).to(h.dtype) / look))
        w = w * torch.where(t >= b - look, ramp, torch.ones_like(ramp))
    y = torch.fft.irfft(S[:, None] * torch.fft.rfft(h * w[:, None], m), m)[..., :n]
    return torch.cat([y.to(x.dtype), x[:, 2:3]], dim=1)


def sqm_features(x: torch.Tensor, cfg: SQMConfig, grad: bool = False, decimate: bool = True) -> torch.Tensor:
    """Cue features of ``x (B, C, T)`` (``C = cfg.channels``) -> ``(B, D, nf)``, ``D =
    cfg.feature_dim``: ILD/10 dB, IPD cos, sin, coherence, shapes/10 dB, activity (band level of
    the louder ear re the signal's loudest band-frame, /20 dB, clipped at -3) per band; for 3
    channels also each ear's band level re the source's, /10 dB (with ``cfg.direct_path_ms`` > 0
    everything read from :func:`direct_path` of ``x``). ``grad``: differentiable;
    ``decimate``: the front-end's fast mode (training default; False: every band at full rate)."""
    from ..auditory.binaural_features import binaural_features, feature_frontend

    if cfg.channels == 3 and cfg.direct_path_ms > 0:
        x = direct_path(x, cfg.sample_rate, cfg.direct_path_ms)

    fe = feature_frontend(cfg.sample_rate, decimate=decimate, frame_ms=cfg.frame_ms)
    B = x.shape[0]
    f, lev = binaural_features(x[:, :2], fe, grad=grad)  # (B, 6, F, nf), (B, 2, F, nf)
    scale = torch.tensor([0.1, 1.0, 1.0, 1.0, 0.1, 0.1], dtype=f.dtype, device=f.device).view(1, 6, 1, 1)
    top = lev.amax(dim=1)  # (B, F, nf)
    act = ((top - top.amax(dim=(1, 2), keepdim=True)) / 20.0).clamp(min=-3.0)
    parts = [f * scale, act[:, None]]
    if cfg.channels == 3:
        s = x[:, 2:3].expand(-1, 2, -1)
        # levels only: no envelopes needed (the levels do not depend on fine_structure_hz)
        _, ls = binaural_features(s, fe, grad=grad, fine_structure_hz=float("inf"))
        parts.append(((lev - ls[:, :1]) / 10.0))
    z = torch.cat(parts, dim=1)  # (B, k, F, nf)
    return z.reshape(B, -1, z.shape[-1])


class _Res(nn.Module):
    def __init__(self, ch: int, k: int):
        super().__init__()
        self.c1 = nn.Conv1d(ch, ch, k, padding=k // 2)
        self.c2 = nn.Conv1d(ch, ch, k, padding=k // 2)

    def forward(self, x):
        return torch.relu(x + self.c2(torch.relu(self.c1(x))))


class SQM(nn.Module):
    """The SQM encoder (see the module docstring); ``cfg``: :class:`SQMConfig`."""

    def __init__(self, cfg: SQMConfig | None = None):
        super().__init__()
        cfg = cfg or SQMConfig()
        self.cfg = cfg
        self.decimate = True  # front-end fast mode (an inference setting, not part of the checkpoint)
        if cfg.front_end == "wave":
            self.wave = nn.Conv1d(cfg.channels, cfg.wave_filters, cfg.frame_len, stride=cfg.frame_len, bias=False)
        self.inp = nn.Conv1d(cfg.feature_dim, cfg.conv_channels, cfg.kernel, padding=cfg.kernel // 2)
        self.res = nn.ModuleList([_Res(cfg.conv_channels, cfg.kernel) for _ in range(cfg.res_blocks)])
        self.lstm1 = nn.LSTM(cfg.conv_channels, cfg.lstm_hidden, batch_first=True, bidirectional=True)
        self.lstm2 = nn.LSTM(2 * cfg.lstm_hidden, cfg.lstm_hidden, batch_first=True, bidirectional=True)
        self.drop = nn.Dropout(cfg.dropout)
        self.att = nn.Linear(2 * cfg.lstm_hidden, 1)
        self.head = nn.Linear(2 * cfg.lstm_hidden, cfg.embed_dim)
        self.doa = nn.Linear(2 * cfg.lstm_hidden, 3) if cfg.doa_head else None

    def features(self, x: torch.Tensor, grad: bool = False) -> torch.Tensor:
        """``(B, C, T)`` -> front-end features ``(B, D, nf)``."""
        if x.ndim != 3 or x.shape[1] != self.cfg.channels:
            raise ValueError(f"SQM expects (B, {self.cfg.channels}, T), got {tuple(x.shape)}")
        if x.shape[-1] < self.cfg.frame_len:
            raise ValueError(f"SQM needs at least one {self.cfg.frame_ms:.0f} ms frame "
                             f"({self.cfg.frame_len} samples), got {x.shape[-1]}")
        if self.cfg.front_end == "wave":
            x = x.to(self.wave.weight.dtype)
            rms = x.pow(2).mean(dim=(1, 2), keepdim=True).clamp_min(1e-12).sqrt()
            return torch.log1p(self.wave(x / rms).abs())
        return sqm_features(x, self.cfg, grad=grad, decimate=self.decimate).to(self.inp.weight.dtype)

    def encode(self, z: torch.Tensor) -> dict:
        """Features ``(B, D, nf)`` -> the output dict (see the module docstring). Without gradients on one intra-op
        thread: the LSTMs' small per-frame products took 6-12x longer on two (10 s: 15-40 ms against 2-3 ms; 64
        items still 75 against 66 ms), and the outputs are those of one thread whatever the caller's count."""
        if torch.is_grad_enabled():
            return self._encode(z)
        with intra_op_threads(1):
            return self._encode(z)

    def _encode(self, z: torch.Tensor) -> dict:
        acts = []
        h = torch.relu(self.inp(z))
        acts.append(h)
        for blk in self.res:
            h = blk(h)
            acts.append(h)
        h, _ = self.lstm1(self.drop(h).transpose(1, 2))
        acts.append(h.transpose(1, 2))
        h, _ = self.lstm2(self.drop(h))
        acts.append(h.transpose(1, 2))
        w = torch.softmax(self.att(h).squeeze(-1), dim=1)  # (B, nf)
        pooled = (w.unsqueeze(-1) * h).sum(1)
        out = {"frames": self.head(h), "utterance": self.head(pooled), "activations": acts, "weights": w}
        if self.doa is not None:
            out["doa"] = self.doa(pooled)
        return out

    def forward(self, x: torch.Tensor, grad: bool = False) -> dict:
        """``x (B, C, T)`` at ``cfg.sample_rate`` -> dict (see the module docstring). The signal as given: with
        ``cfg.dereverb`` its consumers dereverberate first (:func:`spaq.metrics.functional.sqm.sqm_input`)."""
        return self.encode(self.features(x, grad=grad or torch.is_grad_enabled() and x.requires_grad))


def with_source(x: torch.Tensor, s, label: str) -> torch.Tensor:
    """The 3-channel input of a source-informed encoder: binaural ``x (B, 2, T)`` with its dry mono
    source ``s`` (``(T,)``, ``(B, T)`` or ``(B, 1, T)``, tensor or array) appended -> ``(B, 3, T)``
    on ``x``'s device and dtype. ValueError (one line, naming ``label``) for another shape, batch or
    length, or non-finite samples."""
    s = torch.as_tensor(s)
    if s.dim() == 1:
        s = s[None, None]
    elif s.dim() == 2:
        s = s[:, None]
    if s.dim() != 3 or s.shape[1] != 1 or s.shape[0] != x.shape[0] or s.shape[-1] != x.shape[-1]:
        raise ValueError(f"the {label} must be mono, (T,), (B, T) or (B, 1, T), with its signal's batch and length "
                         f"({x.shape[0]}, {x.shape[-1]}); got {tuple(s.shape)}")
    if not bool(torch.isfinite(s).all()):
        raise ValueError(f"the {label} contains NaN or Inf")
    return torch.cat([x, s.to(device=x.device, dtype=x.dtype)], dim=1)


#: registry names of the shipped encoders: binaural (2 channels) and source-informed (3 channels)
BINAURAL_WEIGHTS = "sqm_v1"
SOURCE_WEIGHTS = "sqm_v2_source"


def load_pretrained(checkpoint=None, name: str = BINAURAL_WEIGHTS) -> tuple[SQM, object]:
    """A shipped SQM encoder (registry ``name``: ``sqm_v1``, binaural, 2 channels; ``sqm_v2_source``,
    binaural + the mono source, 3 channels), or ``checkpoint`` (a path), in eval mode with frozen
    parameters, and its :class:`spaq.weights.ResolvedWeights`; cached per file."""
    from ..weights import resolve
    from .checkpoint import load

    w = resolve(name, path=checkpoint, offline=True, download=False)
    key = (str(w.path), w.sha256)
    if key not in _PRETRAINED:
        model, _ = load(w.path, architecture="sqm", sha256=w.sha256)
        for p in model.parameters():
            p.requires_grad_(False)
        _PRETRAINED[key] = model
    return _PRETRAINED[key], w


_PRETRAINED: dict = {}
