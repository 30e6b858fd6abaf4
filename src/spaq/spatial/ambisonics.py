"""Ambisonics (ACN, SN3D unless stated) of any order: encoding, rotation,
truncation and binaural decoding. SH come from :mod:`spaq.spatial.sh`.

Shapes: mono signals ``(..., time)``; ambisonic signals ``(..., n_ch, time)`` with
``n_ch = (order+1)^2``; binaural ``(..., 2, time)``. Angles in degrees.

Encoding a plane wave ``s(t)`` from ``(az, el)`` gives ``Y(az, el) s(t)``, so the
omni channel W carries ``s`` at unit gain (SN3D).
"""
from __future__ import annotations

import numpy as np

from ..errors import SpaqError
from .angles import cart2sph, sph2cart
from .sh import convert_normalisation, n_channels, order_from_channels, sh_matrix

__all__ = [
    "encode",
    "encode_plane_waves",
    "fibonacci_directions",
    "diffuse_field",
    "rotation_matrix",
    "sh_rotation_matrix",
    "rotate",
    "rotate_yaw",
    "head_turn_yaw",
    "truncate",
    "binaural_decoder",
    "magls_cutoff_hz",
    "decode_binaural",
]


def encode(signal, azimuth_deg, elevation_deg, order: int, normalisation: str = "sn3d") -> np.ndarray:
    """Encode mono ``signal (..., T)`` as a plane wave of ``order``.

    ``azimuth_deg``/``elevation_deg``: scalars for a fixed direction or arrays ``(T,)``
    for a moving source (per-sample panning). Returns ``(..., n_ch, T)``.
    """
    s = np.asarray(signal, dtype=np.float64)
    y = sh_matrix(order, azimuth_deg, elevation_deg, "n3d" if normalisation == "n3d" else "sn3d")
    if normalisation == "fuma":
        if order != 1:
            raise SpaqError("FuMa is defined up to third order, but spaq encodes it at first order only")
    if y.ndim == 1:
        out = y[:, None] * s[..., None, :]
    else:
        if y.shape[-1] != s.shape[-1]:
            raise SpaqError(f"trajectory has {y.shape[-1]} points for {s.shape[-1]} samples")
        out = y * s[..., None, :]
    if normalisation == "fuma":
        out = convert_normalisation(out, "sn3d", "fuma")
    return out


def encode_plane_waves(signals, azimuth_deg, elevation_deg, order: int) -> np.ndarray:
    """Sum of plane waves: ``signals (S, T)`` (or ``(..., S, T)`` with fixed directions), directions ``(S,)``
    (or ``(S, T)`` for moving sources) -> ``(n_ch, T)`` (``(..., n_ch, T)``) ACN/SN3D."""
    s = np.asarray(signals, dtype=np.float64)
    az = np.asarray(azimuth_deg, dtype=np.float64)
    el = np.asarray(elevation_deg, dtype=np.float64)
    y = sh_matrix(order, az, el)  # (n_ch, S) or (n_ch, S, T)
    if y.ndim == 2:
        return y @ s
    return np.einsum("cst,st->ct", y, s)


def fibonacci_directions(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` nearly uniform directions on the sphere: (azimuth_deg, elevation_deg), each ``(n,)``."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = np.pi * (1 + 5 ** 0.5) * i
    xyz = np.stack([np.sqrt(1 - z * z) * np.cos(phi), np.sqrt(1 - z * z) * np.sin(phi), z], -1)
    az, el, _ = cart2sph(xyz)
    return az, el


def diffuse_field(signals, order: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Diffuse field from ``signals (K, T)`` (mutually incoherent) arriving from ``K``
    Fibonacci directions (randomly rotated when ``rng`` is given), each at gain
    ``1/sqrt(K)`` so W has the power of one signal. Returns ``(n_ch, T)``."""
    s = np.asarray(signals, dtype=np.float64)
    k = s.shape[0]
    az, el = fibonacci_directions(k)
    if rng is not None:
        from scipy.spatial.transform import Rotation  # here: scipy.spatial/signal are slow imports

        r = Rotation.random(random_state=np.random.RandomState(rng.integers(2**31)))
        az, el, _ = cart2sph(r.apply(sph2cart(az, el)))
    return encode_plane_waves(s / np.sqrt(k), az, el, order)


def rotation_matrix(yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """3x3 rotation of directions (x front, y left, z up): first roll about x, then
    pitch about y (positive pitch raises the front), then yaw about z (positive yaw
    turns the scene to the left, i.e. adds to azimuth); positive roll raises the left side."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler("ZYX", [yaw_deg, -pitch_deg, roll_deg], degrees=True).as_matrix()


def sh_rotation_matrix(order: int, rot: np.ndarray) -> np.ndarray:
    """SH-domain matrix ``(n_ch, n_ch)`` that rotates an ACN/SN3D field by the 3x3
    direction rotation ``rot``: a plane wave from ``v`` goes to ``rot @ v``.

    Exact for any order: within each order the SH span is rotation invariant, so
    ``Y(R v) = M Y(v)`` for all ``v``; ``M`` is the least-squares solution on a dense
    Fibonacci grid (block diagonal by order; off-block round-off is zeroed).
    """
    rot = np.asarray(rot, dtype=np.float64)
    n = n_channels(order)
    az, el = fibonacci_directions(max(4 * n, 64))
    u = sph2cart(az, el)  # (K, 3)
    y = sh_matrix(order, az, el)  # (n, K)
    az2, el2, _ = cart2sph(u @ rot.T)  # R u
    y_rot = sh_matrix(order, az2, el2)
    m = np.linalg.lstsq(y.T, y_rot.T, rcond=None)[0].T  # (n, n)
    degrees = np.array([int(np.floor(np.sqrt(k))) for k in range(n)])
    m[degrees[:, None] != degrees[None, :]] = 0.0
    return m


def rotate(x, yaw_deg: float = 0.0, pitch_deg: float = 0.0, roll_deg: float = 0.0,
           rot: np.ndarray | None = None) -> np.ndarray:
    """Rotate an ACN/SN3D scene ``x (..., n_ch, T)`` of any order (see
    :func:`rotation_matrix` for the angles, or pass a 3x3 ``rot``)."""
    x = np.asarray(x)
    order = order_from_channels(x.shape[-2])
    if order is None:
        raise SpaqError(f"{x.shape[-2]} channels is not an ambisonic channel count")
    r = rotation_matrix(yaw_deg, pitch_deg, roll_deg) if rot is None else rot
    m = sh_rotation_matrix(order, r)
    return np.einsum("ij,...jt->...it", m, x)


def rotate_yaw(x, yaw_rad):
    """Turn an ACN/SN3D scene about the vertical axis by a time-varying angle: ``x (..., n_ch, T)``
    (torch tensor, any order), ``yaw_rad`` ``(T,)`` or a scalar, radians (positive adds to the
    azimuth, as :func:`rotation_matrix`) -> ``(..., n_ch, T)``, differentiable.

    A yaw turn mixes only the two components of each degree ``m`` of each order: with ``c`` the
    ``cos(m az)`` component (ACN ``n^2 + n + m``) and ``s`` the ``sin(m az)`` one (``n^2 + n - m``),
    ``c' = c cos(m a) - s sin(m a)`` and ``s' = s cos(m a) + c sin(m a)``; per-order energies are
    unchanged. Per sample, so a head turning during the signal costs ``O(n_ch T)``."""
    import torch

    order = order_from_channels(x.shape[-2])
    if order is None:
        raise SpaqError(f"{x.shape[-2]} channels is not an ambisonic channel count")
    a = torch.as_tensor(yaw_rad, dtype=x.dtype, device=x.device)
    rows = [x[..., :1, :]]
    for n in range(1, order + 1):
        row = [None] * (2 * n + 1)
        row[n] = x[..., n * n + n, :]
        for m in range(1, n + 1):
            c, s = x[..., n * n + n + m, :], x[..., n * n + n - m, :]
            cm, sm = torch.cos(m * a), torch.sin(m * a)
            row[n + m] = c * cm - s * sm
            row[n - m] = s * cm + c * sm
        rows.append(torch.stack(row, dim=-2))
    return torch.cat(rows, dim=-2)


def head_turn_yaw(start: int, stop: int, n_samples: int, sample_rate: int, range_deg: float,
                  period_s: float):
    """Yaw ``(stop - start,)`` float64 torch tensor, radians, of samples ``start:stop`` of a signal of
    ``n_samples`` whose listener turns the head back and forth at a constant speed over
    ``+-range_deg`` (a triangle wave starting at ``-range_deg``): a whole number of sweeps, about
    one per ``period_s`` and at least one over the signal, so every orientation in the range counts
    equally whatever the duration (``range_deg`` 180: every horizontal orientation)."""
    import torch

    cycles = max(1, int(round(n_samples / (sample_rate * float(period_s)))))
    ph = torch.remainder(cycles * torch.arange(start, stop, dtype=torch.float64) / max(1, n_samples), 1.0)
    tri = torch.where(ph < 0.5, 4 * ph - 1, 3 - 4 * ph)  # -1 .. 1 .. -1
    return np.deg2rad(float(range_deg)) * tri


def truncate(x, order: int, keep_channels: bool = False) -> np.ndarray:
    """Truncate ``x (..., n_ch, T)`` to ``order``; with ``keep_channels`` the higher
    channels are zeroed instead of dropped (same channel count as the input)."""
    x = np.asarray(x)
    n_in = x.shape[-2]
    k = n_channels(order)
    if order < 0 or k > n_in:
        raise SpaqError(f"cannot truncate a {n_in}-channel signal to order {order}")
    if not keep_channels:
        return x[..., :k, :]
    y = x.copy()
    y[..., k:, :] = 0.0
    return y


#: the head radius (m) of :func:`magls_cutoff_hz` (the usual spherical-head radius of adult heads and
#: dummy heads, 8.75 cm); the speed of sound (m/s)
HEAD_RADIUS_M = 0.0875
SPEED_OF_SOUND = 343.0
#: the lowest MagLS cutoff (Hz): order 0 fits magnitudes from here up
MAGLS_MIN_CUTOFF_HZ = 200.0


def magls_cutoff_hz(order: int) -> float:
    """MagLS's default cutoff for ``order``: ``N c / (2 pi r)`` Hz (``kr = N``, r = 8.75 cm: 624 Hz
    per order), at least 200 Hz. Above it an order-N spherical-harmonic fit of the HRTFs is
    spatially aliased, and a least-squares fit there loses magnitude (the KU100's order-3 LS decode
    misses 3.9 dB rms per direction at 2-4 kHz with the cutoff at 2.8 kHz, 2.2 dB with it at 1.9 kHz),
    so that a decoder of a higher order could be further from the HRTFs than one of a lower order."""
    return max(MAGLS_MIN_CUTOFF_HZ, float(order) * SPEED_OF_SOUND / (2.0 * np.pi * HEAD_RADIUS_M))


def binaural_decoder(hrtf, order: int, method: str = "magls", n_fft: int | None = None,
                     cutoff_hz: float | None = None, regularisation: float = 1e-3) -> np.ndarray:
    """Ambisonics -> binaural FIR filters ``(2, n_ch, taps)`` from an :class:`HRTFSet`.

    ``method``: "ls" (least squares fit of the complex HRTFs with SH of ``order``,
    quadrature-weighted by spherical Voronoi areas, Tikhonov ``regularisation``) or
    "magls" (magnitude least squares, Schoerkhuber et al. 2018: LS below
    ``cutoff_hz``, default :func:`magls_cutoff_hz` -- where an order-N expansion stops resolving
    a head of radius 8.75 cm, ``kr = N``; above it only magnitudes are fitted, with the phase
    carried from the previous bin's solution).
    Output is at the HRTF's sample rate, ``taps = n_fft``. The phase MagLS carries from
    bin to bin gives its filters an acausal part, which an inverse FFT wraps to the end of
    the buffer; MagLS filters are therefore delayed by ``n_fft // 4`` samples (a modelling
    delay, 2.7 ms at 48 kHz with the KU100's 128-tap HRIRs) so that they are causal before
    both ends are faded. LS filters carry no delay. Default ``n_fft``: twice the HRIR length
    rounded up to a power of two, at least 256, twice that for MagLS.
    """
    method = method.lower()
    if method not in ("ls", "magls"):
        raise SpaqError(f"unknown binaural decoder {method!r}; use 'ls' or 'magls'")
    fs = hrtf.sample_rate
    if n_fft is None:
        n_fft = max(256, 2 * int(2 ** np.ceil(np.log2(hrtf.taps)))) * (2 if method == "magls" else 1)
    if cutoff_hz is None:
        cutoff_hz = magls_cutoff_hz(order)
    H = np.fft.rfft(hrtf.hrir, n_fft, axis=-1)  # (K, 2, F)
    Y = sh_matrix(order, hrtf.azimuth_deg, hrtf.elevation_deg)  # (n, K)
    w = hrtf.quadrature_weights()
    A = (Y * w) @ Y.T  # (n, n)
    A += regularisation * np.trace(A) / A.shape[0] * np.eye(A.shape[0])
    P = np.linalg.solve(A, Y * w)  # (n, K): D = H^T P^T
    freqs = np.fft.rfftfreq(n_fft, 1 / fs)
    D = np.einsum("kef,nk->enf", H, P)  # (2, n, F)
    if method == "magls":
        mag = np.abs(H)  # (K, 2, F)
        start = int(np.searchsorted(freqs, cutoff_hz))
        for f in range(max(start, 1), len(freqs)):
            prev = np.einsum("enf,nk->kef", D[:, :, f - 1:f], Y)[..., 0]  # (K, 2)
            target = mag[:, :, f] * np.exp(1j * np.angle(prev))
            D[:, :, f] = target.T @ P.T
    d = np.fft.irfft(D, n_fft, axis=-1)
    fade = max(8, n_fft // 16)
    if method == "magls":
        d = np.roll(d, n_fft // 4, axis=-1)
        d[..., :fade] *= np.hanning(2 * fade)[:fade]
    d[..., -fade:] *= np.hanning(2 * fade)[fade:]
    return d


def decode_binaural(x, decoder: np.ndarray) -> np.ndarray:
    """Apply decoder filters ``(2, n_ch, taps)`` to ``x (..., n_ch, T)`` -> ``(..., 2, T)``
    (same length as the input; the filter tail is cut)."""
    x = np.asarray(x, dtype=np.float64)
    n = decoder.shape[1]
    if x.shape[-2] < n:
        raise SpaqError(f"decoder needs {n} channels, signal has {x.shape[-2]}")
    x = x[..., :n, :]
    T = x.shape[-1]
    from scipy.signal import fftconvolve

    y = fftconvolve(x[..., None, :, :], decoder, axes=-1)[..., :T]  # (..., 2, n, T)
    return y.sum(axis=-2)
