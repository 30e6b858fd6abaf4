"""BAST-family binaural localiser (architecture only, no file IO).

After Kuang et al., "BAST: Binaural Audio Spectrogram Transformer for binaural sound
localization": each ear's log-mel spectrogram is cut into overlapping patches and
embedded, each ear is encoded by a transformer (shared or separate weights), the two
token sequences are integrated by ADD, SUB or CONCAT (feature axis), a third
transformer works on the integrated tokens, and mean-pooled tokens feed the heads.

Differences from the published code: the output is a full 3D direction (a vector,
normalised downstream: azimuth and elevation), optional sound-class logits and an
optional explicit elevation head; per-ear patch embeddings (separate unless shared);
the input is made level-invariant by removing the item's mean log-energy over both ears
(interaural differences are kept).

Input option ``features="cues"`` (issue 16): instead of log-mel, the direction-carrying cues of
the shared auditory front-end (:func:`spaq.auditory.binaural_features`: per ERB band and 20 ms
frame ILD, IPD cos/sin, interaural coherence and each ear's spectral shape), arranged per ear as
``(B, 2, 5, n_bands, n_frames)`` (:data:`CUE_CHANNELS`); ``n_mels`` is then the number of
gammatone bands (29 at 48 kHz) and ``hop`` the frame length in samples.

Shapes: waveforms ``(batch, 2, time)`` -> features ``(batch, 2, n_mels, n_frames)`` (BAST's
log-mel; with ``features="logmel_ipd"`` ``(batch, 2, 3, n_mels, n_frames)``: log-mel plus
interaural phase per ear); :class:`BAST` takes those features and returns a :class:`BASTOutput`
with ``direction (batch, 3)`` (not normalised), ``class_logits (batch, n_classes)`` or
None, ``elevation (batch,)`` in radians or None.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn
from .config import ArchitectureConfig

__all__ = ["BASTConfig", "BASTOutput", "BAST", "BinauralLogMel", "BinauralCues", "feature_module", "INTEGRATIONS",
           "CUE_CHANNELS"]

INTEGRATIONS = ("ADD", "SUB", "CONCAT")
FEATURES = ("logmel", "logmel_ipd", "cues")
#: per-ear channels of ``features="cues"`` (from :func:`spaq.auditory.binaural_features`), seen from that ear:
#: its spectral shape / 10 dB, ILD / 10 dB (sign: that ear louder), IPD cos, IPD sin (sign: that ear leads), coherence
CUE_CHANNELS = ("shape", "ild", "ipd_cos", "ipd_sin", "ic")


@dataclass
class BASTConfig(ArchitectureConfig):
    """Architecture and front-end of a BAST localiser (all of it is stored in checkpoints)."""
    label = "BAST"

    sample_rate: int = 32000
    n_fft: int = 1024
    hop: int = 320
    n_mels: int = 64
    fmin: float = 50.0
    fmax: float = 15000.0
    n_frames: int = 48  # frames per analysis window (hop * n_frames samples)
    patch: tuple = (16, 16)  # (mel, time)
    stride: tuple = (8, 8)
    dim: int = 96
    depth: int = 2
    heads: int = 4
    mlp_dim: int = 192
    dropout: float = 0.1
    integration: str = "SUB"
    share_weights: bool = False
    features: str = "logmel"  # "logmel": (B, 2, F, T) as BAST; "logmel_ipd": (B, 2, 3, F, T)
    n_classes: int = 0  # 0: no class head
    class_names: tuple = ()
    elevation_head: bool = False

    def __post_init__(self):
        self.patch = tuple(int(p) for p in self.patch)
        self.stride = tuple(int(s) for s in self.stride)
        self.class_names = tuple(str(c) for c in self.class_names)
        self.integration = str(self.integration).upper()
        if self.integration not in INTEGRATIONS:
            raise ValueError(f"integration must be one of {INTEGRATIONS}, got {self.integration!r}")
        if self.class_names and len(self.class_names) != self.n_classes:
            raise ValueError(f"{len(self.class_names)} class names for n_classes={self.n_classes}")
        if self.features not in FEATURES:
            raise ValueError(f"features must be one of {FEATURES}, got {self.features!r}")
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not a multiple of heads {self.heads}")

    @property
    def channels_per_ear(self) -> int:
        return {"logmel": 1, "logmel_ipd": 3, "cues": len(CUE_CHANNELS)}[self.features]

    def feature_shape(self, n_frames: int | None = None) -> tuple:
        """Shape of one item's features (without batch)."""
        t = self.n_frames if n_frames is None else n_frames
        if self.features == "logmel":
            return (2, self.n_mels, t)
        return (2, self.channels_per_ear, self.n_mels, t)

    @property
    def window_samples(self) -> int:
        """Samples of audio in one analysis window (``n_frames`` frames; cue frames do not overlap)."""
        if self.features == "cues":
            return self.hop * self.n_frames
        return self.hop * (self.n_frames - 1)

    def grid(self) -> tuple[int, int]:
        """Number of patches along (mel, time)."""
        nh = max(0, math.ceil((self.n_mels - self.patch[0]) / self.stride[0])) + 1
        nw = max(0, math.ceil((self.n_frames - self.patch[1]) / self.stride[1])) + 1
        return nh, nw

    def to_dict(self) -> dict:
        d = asdict(self)
        d["patch"] = list(self.patch)
        d["stride"] = list(self.stride)
        d["class_names"] = list(self.class_names)
        return d



class BASTOutput(NamedTuple):
    direction: torch.Tensor  # (B, 3), not normalised
    class_logits: torch.Tensor | None  # (B, n_classes)
    elevation: torch.Tensor | None  # (B,) radians


def _mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    """Slaney-style triangular mel filters ``(n_mels, n_fft // 2 + 1)`` (HTK mel scale)."""
    def hz2mel(f):
        return 2595.0 * math.log10(1.0 + f / 700.0)

    fmax = min(fmax, sr / 2)
    mels = torch.linspace(hz2mel(fmin), hz2mel(fmax), n_mels + 2, dtype=torch.float64)
    hz = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)
    freqs = torch.linspace(0, sr / 2, n_fft // 2 + 1, dtype=torch.float64)
    lo, ce, hi = hz[:-2, None], hz[1:-1, None], hz[2:, None]
    up = (freqs[None] - lo) / (ce - lo)
    down = (hi - freqs[None]) / (hi - ce)
    fb = torch.clamp(torch.minimum(up, down), min=0.0)
    fb = fb * (2.0 / (hi - lo))  # equal area
    return fb.to(torch.float32)


class BinauralLogMel(nn.Module):
    """Waveforms ``(B, 2, T)`` -> log-mel ``(B, 2, n_mels, frames)`` (natural log of power + 1e-8),
    or with ``features="logmel_ipd"`` ``(B, 2, 3, n_mels, frames)``: per ear its log-mel and the
    cosine and sine of the interaural phase difference per mel band (phase of the mel-weighted
    cross-spectrum, seen from that ear: the right ear's sine has the opposite sign).

    ``frames = 1 + T // hop`` (centred STFT, Hann window)."""

    def __init__(self, cfg: BASTConfig):
        super().__init__()
        self.n_fft, self.hop = cfg.n_fft, cfg.hop
        self.ipd = cfg.features == "logmel_ipd"
        self.register_buffer("window", torch.hann_window(cfg.n_fft), persistent=False)
        self.register_buffer("fb", _mel_filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, T = x.shape
        spec = torch.stft(x.reshape(B * C, T).float(), self.n_fft, self.hop, window=self.window,
                          center=True, return_complex=True)
        power = spec.real ** 2 + spec.imag ** 2  # (BC, F, N)
        mel = torch.matmul(self.fb, power)
        logmel = torch.log(mel + 1e-8).reshape(B, C, mel.shape[-2], mel.shape[-1])
        if not self.ipd:
            return logmel
        spec = spec.reshape(B, C, spec.shape[-2], spec.shape[-1])
        cross = spec[:, 0] * spec[:, 1].conj()  # (B, F, N)
        cm = torch.complex(torch.matmul(self.fb, cross.real), torch.matmul(self.fb, cross.imag))
        mag = cm.abs().clamp_min(1e-12)
        cos, sin = cm.real / mag, cm.imag / mag
        left = torch.stack([logmel[:, 0], cos, sin], dim=1)
        right = torch.stack([logmel[:, 1], cos, -sin], dim=1)
        return torch.stack([left, right], dim=1)  # (B, 2, 3, M, N)


class BinauralCues(nn.Module):
    """Waveforms ``(B, 2, T)`` at ``cfg.sample_rate`` -> cue features ``(B, 2, 5, n_bands, T // hop)``
    per ear (:data:`CUE_CHANNELS`), from the shared front-end
    (:func:`spaq.auditory.binaural_features.binaural_features`, fast decimated mode, frames of
    ``hop`` samples). :meth:`with_levels` also returns the band levels ``(B, 2, n_bands, frames)`` dB."""

    def __init__(self, cfg: BASTConfig):
        super().__init__()
        from ..auditory.binaural_features import feature_frontend

        self.fe = feature_frontend(cfg.sample_rate, frame_ms=1000.0 * cfg.hop / cfg.sample_rate, exact=False)
        nb = len(self.fe.center_frequencies_hz)
        if nb != cfg.n_mels:
            raise ValueError(f"features='cues' at {cfg.sample_rate} Hz has {nb} bands; set n_mels={nb}")

    @staticmethod
    def arrange(f: torch.Tensor) -> torch.Tensor:
        """Cues ``(B, 6, F, N)`` (:data:`spaq.auditory.binaural_features.FEATURES`) -> per ear ``(B, 2, 5, F, N)``."""
        ild, cos, sin, ic, sl, sr = (f[:, i] for i in range(6))
        left = torch.stack([sl / 10.0, ild / 10.0, cos, sin, ic], dim=1)
        right = torch.stack([sr / 10.0, -ild / 10.0, cos, -sin, ic], dim=1)
        return torch.stack([left, right], dim=1)

    def with_levels(self, x: torch.Tensor):
        from ..auditory.binaural_features import binaural_features

        f, lev = binaural_features(x, self.fe)
        return self.arrange(f), lev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.with_levels(x)[0]


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float):
        super().__init__()
        self.n1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.n2 = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim),
                                nn.Dropout(dropout))

    def forward(self, x):
        h = self.n1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.ff(self.n2(x))


class _Encoder(nn.Module):
    def __init__(self, dim, depth, heads, mlp_dim, dropout):
        super().__init__()
        self.blocks = nn.ModuleList([_Block(dim, heads, mlp_dim, dropout) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.norm(x)


class _PatchEmbed(nn.Module):
    """One ear ``(B, [C,] n_mels, n_frames)`` -> tokens ``(B, n_patches, dim)`` (overlapping patches, conv)."""

    def __init__(self, cfg: BASTConfig):
        super().__init__()
        nh, nw = cfg.grid()
        self.pad_h = (nh - 1) * cfg.stride[0] + cfg.patch[0] - cfg.n_mels
        self.pad_w = (nw - 1) * cfg.stride[1] + cfg.patch[1] - cfg.n_frames
        self.proj = nn.Conv2d(cfg.channels_per_ear, cfg.dim, kernel_size=cfg.patch, stride=cfg.stride)
        self.pos = nn.Parameter(torch.randn(1, nh * nw, cfg.dim) * 0.02)

    def forward(self, x):
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if self.pad_h or self.pad_w:
            x = nn.functional.pad(x, (0, self.pad_w, 0, self.pad_h), mode="replicate")
        t = self.proj(x).flatten(2).transpose(1, 2)
        return t + self.pos


class BAST(nn.Module):
    """Binaural spectrogram transformer: ``(B, 2, n_mels, n_frames)`` log-mel -> :class:`BASTOutput`."""

    def __init__(self, cfg: BASTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.embed_left = _PatchEmbed(cfg)
        self.enc_left = _Encoder(d, cfg.depth, cfg.heads, cfg.mlp_dim, cfg.dropout)
        if not cfg.share_weights:
            self.embed_right = _PatchEmbed(cfg)
            self.enc_right = _Encoder(d, cfg.depth, cfg.heads, cfg.mlp_dim, cfg.dropout)
        d3 = 2 * d if cfg.integration == "CONCAT" else d
        self.enc_both = _Encoder(d3, cfg.depth, cfg.heads, 2 * cfg.mlp_dim if cfg.integration == "CONCAT" else cfg.mlp_dim,
                                 cfg.dropout)
        self.direction_head = nn.Linear(d3, 3)
        self.class_head = nn.Linear(d3, cfg.n_classes) if cfg.n_classes > 0 else None
        self.elevation_head = nn.Linear(d3, 1) if cfg.elevation_head else None

    def features(self):
        """The front-end that matches this model (waveforms -> features: :class:`BinauralLogMel`
        or :class:`BinauralCues`); built once per model (kept outside the module tree, so it is not
        part of the state_dict)."""
        fe = self.__dict__.get("_frontend")
        if fe is None:
            fe = feature_module(self.cfg)
            self.__dict__["_frontend"] = fe
        return fe

    def forward(self, spec: torch.Tensor) -> BASTOutput:
        cfg = self.cfg
        want = cfg.feature_shape()
        if tuple(spec.shape[1:]) != want:
            raise ValueError(f"BAST expects (batch, {', '.join(map(str, want))}) features ({cfg.features}), "
                             f"got {tuple(spec.shape)}")
        if cfg.features == "logmel":
            spec = spec - spec.mean(dim=(1, 2, 3), keepdim=True)  # level invariance, ILD kept
        elif cfg.features == "logmel_ipd":
            lm = spec[:, :, 0]
            spec = torch.cat([(lm - lm.mean(dim=(1, 2, 3), keepdim=True)).unsqueeze(2), spec[:, :, 1:]], dim=2)
        left = self.enc_left(self.embed_left(spec[:, 0]))
        if cfg.share_weights:
            right = self.enc_left(self.embed_left(spec[:, 1]))
        else:
            right = self.enc_right(self.embed_right(spec[:, 1]))
        if cfg.integration == "ADD":
            x = left + right
        elif cfg.integration == "SUB":
            x = left - right
        else:
            x = torch.cat([left, right], dim=-1)
        x = self.enc_both(x).mean(dim=1)
        direction = self.direction_head(x)
        logits = self.class_head(x) if self.class_head is not None else None
        elev = (math.pi / 2) * torch.tanh(self.elevation_head(x)[:, 0]) if self.elevation_head is not None else None
        return BASTOutput(direction, logits, elev)


def feature_module(cfg: BASTConfig) -> nn.Module:
    """Waveforms -> features module of ``cfg.features``."""
    return BinauralCues(cfg) if cfg.features == "cues" else BinauralLogMel(cfg)


def direction_to_angles(direction: torch.Tensor, elevation: torch.Tensor | None = None):
    """``(B, 3)`` vectors (and optional explicit elevation ``(B,)`` radians) -> azimuth, elevation
    in degrees ``(B,)``. With an elevation head its value replaces the vector's elevation."""
    v = direction / direction.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    az = torch.rad2deg(torch.atan2(v[:, 1], v[:, 0]))
    if elevation is not None:
        el = torch.rad2deg(elevation)
    else:
        el = torch.rad2deg(torch.atan2(v[:, 2], torch.hypot(v[:, 0], v[:, 1])))
    return az, el


__all__.append("direction_to_angles")


# --------------------------------------------------------------------------- inference helpers


@torch.no_grad()
def waveforms_to_features(x, cfg: BASTConfig, batch: int = 256) -> torch.Tensor:
    """``(N, 2, T)`` waveforms (numpy or torch) at ``cfg.sample_rate`` -> ``(N, *cfg.feature_shape(frames))``
    float32 features (all frames), computed ``batch`` items at a time."""
    fe = feature_module(cfg)
    xt = torch.as_tensor(x, dtype=torch.float32)
    return torch.cat([fe(xt[i: i + batch]) for i in range(0, xt.shape[0], batch)])


def crop_frames(spec: torch.Tensor, n_frames: int, rng=None) -> torch.Tensor:
    """``(..., T)`` -> ``(..., n_frames)``: a random crop (``rng``, a numpy Generator) or the
    centre crop (``rng=None``); a shorter input is padded by repeating its last frame."""
    T = spec.shape[-1]
    if T < n_frames:
        reps = spec[..., -1:].expand(*spec.shape[:-1], n_frames - T)
        return torch.cat([spec, reps], dim=-1)
    a = int(rng.integers(0, T - n_frames + 1)) if rng is not None else (T - n_frames) // 2
    return spec[..., a: a + n_frames]


@torch.no_grad()
def predict(model: BAST, feats: torch.Tensor, batch: int = 512):
    """Unit directions ``(N, 3)`` float64 numpy (elevation from the elevation head when there
    is one) and class probabilities ``(N, K)`` or None, for features ``(N, *cfg.feature_shape())``.
    Puts ``model`` in eval mode."""
    import numpy as np

    model.eval()
    dirs, probs = [], []
    for i in range(0, feats.shape[0], batch):
        out = model(feats[i: i + batch])
        v = torch.nn.functional.normalize(out.direction, dim=-1)
        if out.elevation is not None:
            h = torch.hypot(v[:, 0], v[:, 1]).clamp_min(1e-9)
            c = torch.cos(out.elevation)
            v = torch.stack([v[:, 0] / h * c, v[:, 1] / h * c, torch.sin(out.elevation)], dim=-1)
        dirs.append(v)
        if out.class_logits is not None:
            probs.append(torch.softmax(out.class_logits, dim=-1))
    d = torch.cat(dirs).numpy().astype(np.float64)
    return d, (torch.cat(probs).numpy() if probs else None)


__all__ += ["waveforms_to_features", "crop_frames", "predict"]
