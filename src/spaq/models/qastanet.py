"""The QASTAnet score network (Llave & Pallone, Orange), architecture only.

Input: feature differences ``(B, 4, n_heads, n_bands, n_frames)`` in the order
(d_ild, d_gamma, d_power, d_directiveness); output: score ``(B,)`` in [0.001, 0.999].

The official "SWAP" temporal pooling computes ``einsum("...j,...i->...", softmax(beta x), x)``,
which is ``sum_i x_i`` (the softmax weights sum to one): a plain **sum over frames**, so
the score of an unchanged pair grows with duration. ``pooling="official"`` reproduces that;
``pooling="mean"`` divides by the number of frames and rescales to a 3 s reference length.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["QastanetNet", "NETWORK_KEYS", "FRONTEND_KEYS", "split_official_state_dict"]


class _SwapPooling(nn.Module):
    """Holds the (unused) ``beta`` of the official SWAP layer so checkpoints load strictly."""

    def __init__(self):
        super().__init__()
        self.beta = nn.Parameter(torch.tensor(1.0))


class QastanetNet(nn.Module):
    def __init__(self, n_features: int = 4, n_bands: int = 29):
        super().__init__()
        self.freq_weighting = nn.Parameter(torch.ones(1, n_features, 1, n_bands, 1))
        self.conv1 = nn.Conv3d(n_features, 16, kernel_size=1)
        self.conv2 = nn.Conv3d(16, 16, kernel_size=1)
        self.conv3 = nn.Conv3d(16, 6, kernel_size=1)
        self.conv_avg_freq = nn.Conv3d(n_bands, 1, kernel_size=1)
        self.temp_pooling = _SwapPooling()
        self.fc1 = nn.Linear(6, 16)
        self.fc2 = nn.Linear(16, 1)

    def frame_activations(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 4, H, F, T)`` -> per-frame activations ``(B, 6, H, T)`` before pooling."""
        x = x * self.freq_weighting
        x = F.leaky_relu(self.conv1(x))
        x = F.leaky_relu(self.conv2(x))
        x = F.leaky_relu(self.conv3(x))  # (B, 6, H, F, T)
        x = x.permute(0, 3, 1, 2, 4)  # (B, F, 6, H, T)
        x = F.leaky_relu(self.conv_avg_freq(x))
        return x.squeeze(1)

    def decide(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled activations ``(B, 6, H)`` -> score ``(B,)`` clamped to [0.001, 0.999]."""
        x = pooled.permute(0, 2, 1)
        x = F.leaky_relu(self.fc1(x))
        x = torch.sigmoid(self.fc2(x)).squeeze(-1)
        return torch.clamp(x.mean(dim=-1), 0.001, 0.999)

    def forward(self, x: torch.Tensor, pooling: str = "official", ref_frames: int = 75) -> torch.Tensor:
        act = self.frame_activations(x)
        if pooling == "official":
            pooled = act.sum(dim=-1)
        elif pooling == "mean":
            pooled = act.mean(dim=-1) * ref_frames
        else:
            raise ValueError(f"unknown pooling {pooling!r}")
        return self.decide(pooled)


NETWORK_KEYS = {
    "freq_weighting", "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "conv3.weight",
    "conv3.bias", "conv_avg_freq.weight", "conv_avg_freq.bias", "temp_pooling.beta", "fc1.weight",
    "fc1.bias", "fc2.weight", "fc2.bias",
}
FRONTEND_KEYS = {
    "center_frequencies_hz", "limit_threshold", "gammatone_real", "gammatone_imag", "lowpass",
    "ambi2bin_procs.0.hoa2bin_t", "directiveness.alpha_dif", "directiveness.freq_2_erb_m",
    "directiveness.stft.window",
}


def split_official_state_dict(sd: dict) -> tuple[dict, dict]:
    """Split an official QASTAnet ``state_dict`` into (network, front-end buffers).
    Raises ``ValueError`` naming missing or unexpected keys."""
    keys = set(sd)
    missing = (NETWORK_KEYS | FRONTEND_KEYS) - keys
    extra = keys - (NETWORK_KEYS | FRONTEND_KEYS)
    if missing or extra:
        raise ValueError(
            "not an official QASTAnet checkpoint"
            + (f"; missing {sorted(missing)[:4]}" if missing else "")
            + (f"; unexpected {sorted(extra)[:4]}" if extra else "")
        )
    return {k: sd[k] for k in NETWORK_KEYS}, {k: sd[k] for k in FRONTEND_KEYS}
