"""Real spherical harmonics in ACN order: the one SH implementation of spaq.

Normalisations: ``"sn3d"`` (default, AmbiX), ``"n3d"`` and ``"fuma"`` (first
order only, as it is defined: W scaled by 1/sqrt(2), channel order W X Y Z).
No Condon-Shortley phase. Angles in degrees (see :mod:`spaq.spatial.angles`).

    Y_nm(az, el) = N_n|m| P_n|m|(sin el) * (cos(m az) if m >= 0 else sin(|m| az))
    N_nm (SN3D) = sqrt((2 - delta_m0) (n-m)! / (n+m)!)

so W = 1, Y = sin(az)cos(el), Z = sin(el), X = cos(az)cos(el).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "n_channels",
    "order_from_channels",
    "acn",
    "acn_to_nm",
    "sh_matrix",
    "n3d_to_sn3d_gains",
    "convert_normalisation",
    "fuma_order_message",
]

NORMALISATIONS = ("sn3d", "n3d", "fuma")


def n_channels(order: int) -> int:
    """Number of ambisonic channels (N+1)^2 of order N."""
    return (int(order) + 1) ** 2


def order_from_channels(n_ch: int) -> int | None:
    """Ambisonic order N for (N+1)^2 channels, or None if n_ch is not a square >= 4."""
    r = math.isqrt(int(n_ch))
    if r * r != n_ch or r < 2:
        return None
    return r - 1


def acn(n: int, m: int) -> int:
    """ACN index of order n, degree m."""
    return n * n + n + m


def acn_to_nm(k: int) -> tuple[int, int]:
    """(order, degree) of ACN index k."""
    n = math.isqrt(k)
    return n, k - n * n - n


def _legendre_no_cs(order: int, x: np.ndarray) -> dict:
    """Associated Legendre P_n^m(x), m >= 0, n <= order, without Condon-Shortley phase."""
    out = {}
    s = np.sqrt(np.maximum(0.0, 1.0 - x * x))
    pmm = np.ones_like(x)
    for m in range(order + 1):
        if m > 0:
            pmm = pmm * (2 * m - 1) * s
        out[(m, m)] = pmm
        if m + 1 <= order:
            out[(m + 1, m)] = x * (2 * m + 1) * pmm
        for n in range(m + 2, order + 1):
            out[(n, m)] = ((2 * n - 1) * x * out[(n - 1, m)] - (n + m - 1) * out[(n - 2, m)]) / (n - m)
    return out


def sh_matrix(order: int, azimuth_deg, elevation_deg, normalisation: str = "sn3d") -> np.ndarray:
    """Real SH of all ACN channels up to ``order``.

    azimuth_deg, elevation_deg: ``(...)`` degrees (broadcast together).
    Returns ``(n_ch, ...)`` float64, ``n_ch = (order+1)^2``, ACN order.
    """
    normalisation = normalisation.lower()
    if normalisation not in ("sn3d", "n3d"):
        raise ValueError(f"sh_matrix supports sn3d or n3d, not {normalisation!r}")
    az = np.deg2rad(np.asarray(azimuth_deg, dtype=np.float64))
    el = np.deg2rad(np.asarray(elevation_deg, dtype=np.float64))
    az, el = np.broadcast_arrays(az, el)
    leg = _legendre_no_cs(order, np.sin(el))
    out = np.empty((n_channels(order),) + az.shape)
    for n in range(order + 1):
        for m in range(-n, n + 1):
            am = abs(m)
            norm = math.sqrt((2.0 - (am == 0)) * math.factorial(n - am) / math.factorial(n + am))
            if normalisation == "n3d":
                norm *= math.sqrt(2 * n + 1)
            trig = np.cos(am * az) if m >= 0 else np.sin(am * az)
            out[acn(n, m)] = norm * leg[(n, am)] * trig
    return out


def n3d_to_sn3d_gains(order: int) -> np.ndarray:
    """Per-channel gains ``(n_ch,)`` that turn N3D signals into SN3D ones."""
    return np.array([1.0 / math.sqrt(2 * acn_to_nm(k)[0] + 1) for k in range(n_channels(order))])


def convert_normalisation(x, src: str, dst: str = "sn3d"):
    """Convert ambisonic signals ``(..., n_ch, time)`` between sn3d, n3d and fuma.

    FuMa is first order (4 channels, order W X Y Z, W at -3 dB); the result of a
    conversion to or from FuMa is in/from ACN order. Works on numpy arrays and
    torch tensors (same type out).
    """
    src, dst = src.lower(), dst.lower()
    for s in (src, dst):
        if s not in NORMALISATIONS:
            raise ValueError(f"unknown ambisonic normalisation {s!r}; use one of {NORMALISATIONS}")
    if src == dst:
        return x
    n_ch = x.shape[-2]
    order = order_from_channels(n_ch)
    if order is None:
        raise ValueError(f"{n_ch} channels is not an ambisonic channel count")
    if "fuma" in (src, dst) and order != 1:
        raise ValueError("FuMa is defined up to third order, but spaq converts it at first order (4 channels) only")

    def gains(vec):
        g = np.asarray(vec, dtype=np.float64)
        try:
            import torch

            if isinstance(x, torch.Tensor):
                return torch.as_tensor(g, dtype=x.dtype, device=x.device)[:, None]
        except ImportError:  # pragma: no cover
            pass
        return g[:, None].astype(x.dtype, copy=False)

    # bring to sn3d/ACN
    if src == "n3d":
        y = x * gains(n3d_to_sn3d_gains(order))
    elif src == "fuma":  # W X Y Z -> ACN W Y Z X, W*sqrt(2)
        y = x[..., [0, 2, 3, 1], :] * gains([math.sqrt(2.0), 1.0, 1.0, 1.0])
    else:
        y = x
    if dst == "sn3d":
        return y
    if dst == "n3d":
        return y / gains(n3d_to_sn3d_gains(order))
    # dst == fuma: ACN W Y Z X -> W X Y Z, W/sqrt(2)
    return (y * gains([1.0 / math.sqrt(2.0), 1.0, 1.0, 1.0]))[..., [0, 3, 1, 2], :]


def fuma_order_message(n_ch: int, label: str) -> str:
    """The one line for FuMa asked of a signal that is not 4 channels (or of an order above 1): FuMa is defined
    up to third order, spaq reads it at first order only."""
    o = order_from_channels(n_ch)
    name = f"hoa{o}" if o else "ambisonics:N"
    fix = ("give --format foa/fuma" if n_ch == 4 else
           f"convert it to ACN/SN3D or ACN/N3D and give --format {name} or {name}/n3d")
    return (f"FuMa is defined up to third order, but spaq reads it at first order (4 channels, W X Y Z) only; "
            f"{label} has {n_ch} channels: {fix}")
