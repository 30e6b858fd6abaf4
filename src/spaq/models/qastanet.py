"""The QASTAnet score network (Llave & Pallone, Orange), architecture only.

Input: feature differences ``(B, 4, n_heads, n_bands, n_frames)`` in the order
(d_ild, d_gamma, d_power, d_directiveness); output: score ``(B,)`` in [0.001, 0.999].

The official "SWAP" temporal pooling computes ``einsum("...j,...i->...", softmax(beta x), x)``,
which is ``sum_i x_i`` (the softmax weights sum to one): a plain **sum over frames**, so
the score of an unchanged pair grows with duration. ``pooling="official"`` reproduces that;
``pooling="mean"`` divides by the number of frames and rescales to a 3 s reference length.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SpaqError

__all__ = ["QastanetNet", "NETWORK_KEYS", "FRONTEND_KEYS", "split_official_state_dict", "apply_official_frontend_buffers",
           "load_official_checkpoint"]


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


def apply_official_frontend_buffers(frontend, sd: dict) -> None:
    """Check and take the front-end tables of an official QASTAnet ``state_dict`` into an
    :class:`~spaq.auditory.frontend.AuditoryFrontEnd`.

    The gammatone FIRs and low-pass FIR it carries are truncations of the same IIR filters
    spaq applies exactly (checked here to 1e-6); thresholds and directiveness tables are
    taken as they are."""
    nb = frontend.n_bands
    for key, shape in (("gammatone_real", (nb, None)), ("gammatone_imag", (nb, None)),
                       ("center_frequencies_hz", (nb,)), ("limit_threshold", (nb,)),
                       ("directiveness.alpha_dif", tuple(frontend.dir_alpha.shape)),
                       ("directiveness.freq_2_erb_m", tuple(frontend.dir_grouping.shape)),
                       ("directiveness.stft.window", tuple(frontend.dir_window.shape))):
        got = tuple(sd[key].shape)
        if len(got) != len(shape) or any(s is not None and g != s for g, s in zip(got, shape)):
            raise ValueError(f"checkpoint entry {key} has shape {got}, expected {shape}")
    if not torch.allclose(sd["center_frequencies_hz"].double(), frontend.center_frequencies_hz, rtol=1e-9):
        raise ValueError("checkpoint gammatone centre frequencies differ from spaq's")
    n_taps = sd["gammatone_real"].shape[1]
    from ..auditory.gammatone import gammatone_fir

    ref = gammatone_fir(frontend.center_frequencies_hz.numpy(), frontend.sample_rate, n_taps)
    err = max(float(np.abs(sd["gammatone_real"].double().numpy() - ref.real).max()),
              float(np.abs(sd["gammatone_imag"].double().numpy() - ref.imag).max()))
    if err > 1e-6:
        raise ValueError(f"checkpoint gammatone filters differ from the Hohmann filterbank ({err:.2e})")
    lp = sd["lowpass"].double().numpy()
    (b0, b1), p = frontend.lp_b, frontend.lp_pole  # impulse response of (b0 + b1 z^-1) / (1 - p z^-1)
    imp = np.concatenate([[b0], (b1 + b0 * p) * p ** np.arange(len(lp) - 1, dtype=np.float64)])
    if not np.allclose(lp, imp, atol=1e-9):
        raise ValueError("checkpoint low-pass filter is not the first-order Butterworth spaq expects")
    frontend.power_floor = sd["limit_threshold"].double().clone()
    frontend.dir_alpha = sd["directiveness.alpha_dif"].double().clone()
    frontend.dir_grouping = sd["directiveness.freq_2_erb_m"].double().clone()
    frontend.dir_window = sd["directiveness.stft.window"].double().clone()


def load_official_checkpoint(path):
    """Load an official QASTAnet checkpoint (dict with ``state_dict``) with ``weights_only=True``
    and strict key/shape checks -> (network, front-end, decoder ``(2, 16, 128)`` float64)."""
    from ..auditory.frontend import AuditoryFrontEnd

    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad files
        why = " ".join(str(e).split())[:200]
        why = f"{type(e).__name__}: {why}" if len(why) < 20 else why  # a bare code (e.g. "101") says nothing alone
        raise SpaqError(f"cannot read QASTAnet checkpoint {path}: not a torch checkpoint file ({why})") from None
    if not isinstance(ck, dict) or "state_dict" not in ck:
        raise SpaqError(f"{path} is not a QASTAnet checkpoint (no 'state_dict' entry)")
    try:
        net_sd, buffers = split_official_state_dict(ck["state_dict"])
        net = QastanetNet()
        net.load_state_dict(net_sd, strict=True)
        frontend = AuditoryFrontEnd()
        apply_official_frontend_buffers(frontend, buffers)
    except (ValueError, RuntimeError) as e:
        raise SpaqError(f"{path}: {str(e).splitlines()[0][:300]}") from None
    decoder = buffers["ambi2bin_procs.0.hoa2bin_t"].to(torch.float64)
    if decoder.ndim != 3 or decoder.shape[0] != 2:
        raise SpaqError(f"{path}: decoder has shape {tuple(decoder.shape)}, expected (2, C, taps)")
    net.eval()
    return net, frontend, decoder
