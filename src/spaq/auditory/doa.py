"""Training-free direction of arrival (DoA) for ambisonics from the active intensity vector.

For ACN/SN3D signals of any order >= 1 only the first-order channels are used:
W (ACN 0), Y (1), Z (2), X (3). In the STFT domain, per time-frequency bin,

    I(t, f) = Re{ conj(W) * [X, Y, Z] }      (points towards the source in spaq's frame)
    E(t, f) = (|W|^2 + |X|^2 + |Y|^2 + |Z|^2) / 2
    psi     = 1 - |<I>| / <E>                 (diffuseness, <.> = short moving average over frames)

For an SN3D plane wave ``|I| = E`` and ``psi = 0``; in an isotropic diffuse field
``psi -> 1``. Each bin votes for the direction ``I / |I|`` with weight
``E * (1 - psi)^diffuseness_power`` (bins more diffuse than ``max_diffuseness`` or
more than ``dynamic_range_db`` below the loudest bin do not vote).

Several sources: the votes are smoothed on a Fibonacci grid of the sphere with a
von Mises-Fisher kernel; the highest peak is refined by a weighted mean shift of
the votes within ``cap_deg``, the votes inside that cap are removed, and the
search repeats (greedy peak picking with removal). Per-frame trajectories: the
votes of each analysis frame (``frame_s``) are assigned to the nearest overall
source and averaged (with one source: the frame's weighted mean direction, so a
moving source is followed); frames without votes for a source are NaN.

Shapes: ``x`` is ``(..., channels, time)``; overall results are ``(..., n_sources)``,
trajectories ``(..., n_sources, n_frames)``. Not differentiable (peak picking);
numpy or torch in, numpy out.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import SpaqInputError
from ..spatial.angles import cart2sph
from ..spatial.sh import convert_normalisation, order_from_channels

__all__ = ["DoAResult", "intensity_doa", "intensity_vectors", "fibonacci_sphere"]


@dataclass
class DoAResult:
    """Directions found by :func:`intensity_doa`.

    Overall (per item, per source, strongest first): ``azimuth_deg``, ``elevation_deg``,
    ``confidence`` (share of the direction votes that fall within ``cap_deg`` of the
    source, 0..1), shapes ``(..., n_sources)``; ``diffuseness`` ``(...)`` is the
    energy-weighted mean diffuseness of the item. Trajectories: ``frame_azimuth_deg``,
    ``frame_elevation_deg``, ``frame_confidence`` (share of the frame's votes), shapes
    ``(..., n_sources, n_frames)``, NaN where a frame has no vote for that source;
    ``frame_times_s`` ``(n_frames,)`` are frame centres. ``silent`` ``(...)`` marks
    items that were silent (all their angles are NaN).
    """

    azimuth_deg: np.ndarray
    elevation_deg: np.ndarray
    confidence: np.ndarray
    diffuseness: np.ndarray
    frame_times_s: np.ndarray
    frame_azimuth_deg: np.ndarray
    frame_elevation_deg: np.ndarray
    frame_confidence: np.ndarray
    silent: np.ndarray
    sample_rate: int
    n_sources: int
    method: str = "intensity"
    settings: dict = field(default_factory=dict)

    def to_dict(self, frames: bool = True) -> dict:
        """JSON-ready dict (NaN -> None)."""

        def clean(a):
            a = np.asarray(a, dtype=np.float64)
            return np.where(np.isnan(a), None, np.round(a, 4)).tolist()

        d = {
            "method": self.method,
            "sample_rate": self.sample_rate,
            "n_sources": self.n_sources,
            "azimuth_deg": clean(self.azimuth_deg),
            "elevation_deg": clean(self.elevation_deg),
            "confidence": clean(self.confidence),
            "diffuseness": clean(self.diffuseness),
            "silent": np.asarray(self.silent).tolist(),
            "settings": dict(self.settings),
        }
        if frames:
            d.update(
                frame_times_s=clean(self.frame_times_s),
                frame_azimuth_deg=clean(self.frame_azimuth_deg),
                frame_elevation_deg=clean(self.frame_elevation_deg),
                frame_confidence=clean(self.frame_confidence),
            )
        return d


def fibonacci_sphere(n: int) -> np.ndarray:
    """``n`` near-uniform unit vectors ``(n, 3)`` on the sphere (x front, y left, z up)."""
    i = np.arange(n, dtype=np.float64) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(np.maximum(0.0, 1.0 - z * z))
    phi = i * math.pi * (3.0 - math.sqrt(5.0))
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


def _first_order_sn3d(x: torch.Tensor, normalisation: str) -> torch.Tensor:
    n_ch = x.shape[-2]
    normalisation = normalisation.lower()
    if normalisation == "fuma":
        if n_ch != 4:
            from ..spatial.sh import fuma_order_message

            raise SpaqInputError(fuma_order_message(n_ch, "the signal"))
        return convert_normalisation(x, "fuma", "sn3d")
    if order_from_channels(n_ch) is None:
        raise SpaqInputError(
            f"{n_ch} channels is not ambisonics ((N+1)^2 = 4, 9, 16, ... channels, ACN order); "
            "intensity DoA needs at least first order"
        )
    foa = x[..., :4, :]
    if normalisation != "sn3d":
        try:
            foa = convert_normalisation(foa, normalisation, "sn3d")
        except ValueError as e:
            raise SpaqInputError(str(e)) from None
    return foa


def _nfft_for(sample_rate: int, nfft: int | None) -> int:
    if nfft is not None:
        return int(nfft)
    return int(2 ** round(math.log2(max(64.0, 0.02 * sample_rate))))  # ~20 ms


def intensity_vectors(
    x,
    sample_rate: int,
    *,
    normalisation: str = "sn3d",
    nfft: int | None = None,
    fmin: float = 80.0,
    fmax: float | None = None,
    smooth_frames: int = 5,
):
    """STFT-domain intensity analysis of ambisonics ``(..., channels, time)``.

    Returns ``(I, E, psi, hop)``: active intensity ``(..., 3, F, N)`` (x, y, z),
    energy density ``(..., F, N)``, diffuseness ``(..., F, N)`` in 0..1 (moving
    average of ``smooth_frames`` STFT frames), and the hop in samples. Only bins in
    ``[fmin, fmax]`` are returned. float64 torch tensors.
    """
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x.detach())
    xt = xt.to(torch.float64)
    if xt.ndim < 2:
        raise SpaqInputError(f"ambisonic input must be (..., channels, time), got shape {tuple(xt.shape)}")
    foa = _first_order_sn3d(xt, normalisation)
    batch_shape = foa.shape[:-2]
    T = foa.shape[-1]
    n = _nfft_for(sample_rate, nfft)
    hop = n // 2
    if T < n:
        foa = torch.nn.functional.pad(foa, (0, n - T))
    flat = foa.reshape(-1, foa.shape[-1])
    spec = torch.stft(flat, n, hop_length=hop, window=torch.hann_window(n, dtype=torch.float64),
                      center=True, return_complex=True)  # (B*4, F, N)
    freqs = torch.arange(spec.shape[-2], dtype=torch.float64) * sample_rate / n
    hi = sample_rate / 2 if fmax is None else min(float(fmax), sample_rate / 2)
    keep = (freqs >= fmin) & (freqs <= hi)
    if not bool(keep.any()):
        raise SpaqInputError(f"no STFT bin between fmin={fmin} Hz and fmax={hi} Hz at {sample_rate} Hz")
    spec = spec[:, keep]
    spec = spec.reshape(*batch_shape, 4, spec.shape[-2], spec.shape[-1])
    W, Y, Z, X = spec.unbind(-3)
    vel = torch.stack([X, Y, Z], dim=-3)  # (..., 3, F, N)
    I = (W.conj().unsqueeze(-3) * vel).real
    E = 0.5 * (W.abs() ** 2 + (vel.abs() ** 2).sum(-3))
    k = max(1, int(smooth_frames))
    if k > 1:
        def smooth(a):
            shp = a.shape
            a2 = a.reshape(-1, 1, shp[-1])
            a2 = torch.nn.functional.avg_pool1d(a2, k, stride=1, padding=k // 2, count_include_pad=False)
            return a2[..., : shp[-1]].reshape(shp)

        Is, Es = smooth(I), smooth(E)
    else:
        Is, Es = I, E
    psi = (1.0 - Is.norm(dim=-3) / Es.clamp_min(1e-300)).clamp(0.0, 1.0)
    return I, E, psi, hop


_LUT_STEP = 1.0  # degrees


def _nearest_grid(grid: torch.Tensor, u: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Index of the (approximately) nearest point of ``grid`` for each vote ``u (K, 3)``,
    through an azimuth-elevation lookup table of ``_LUT_STEP`` degrees."""
    az = torch.rad2deg(torch.atan2(u[:, 1], u[:, 0])) % 360.0
    el = torch.rad2deg(torch.asin(u[:, 2].clamp(-1.0, 1.0))) + 90.0
    ia = torch.round(az / _LUT_STEP).long() % lut.shape[0]
    ie = torch.round(el / _LUT_STEP).long().clamp(0, lut.shape[1] - 1)
    return lut[ia, ie]


_KERNELS: dict = {}


def _grid_kernel(n: int, kappa: float):
    """Fibonacci grid ``(n, 3)`` and its von Mises-Fisher smoothing matrix ``(n, n)`` (cached)."""
    key = (n, round(kappa, 9))
    if key not in _KERNELS:
        grid = torch.as_tensor(fibonacci_sphere(n))
        K = torch.exp(kappa * (grid @ grid.T - 1.0)).to(torch.float32)
        a = torch.arange(0.0, 360.0, _LUT_STEP, dtype=torch.float64)
        e = torch.arange(-90.0, 90.0 + _LUT_STEP / 2, _LUT_STEP, dtype=torch.float64)
        A, E = torch.meshgrid(torch.deg2rad(a), torch.deg2rad(e), indexing="ij")
        pts = torch.stack([E.cos() * A.cos(), E.cos() * A.sin(), E.sin()], -1).reshape(-1, 3).to(torch.float32)
        g32 = grid.to(torch.float32)

        def make():  # nearest grid point of every LUT direction (0.5-1 s: cached on disk)
            return torch.cat([torch.argmax(pts[i: i + 8192] @ g32.T, dim=1)
                              for i in range(0, pts.shape[0], 8192)]).numpy().astype(np.int32)

        from ..cache import cached_array

        tag = hashlib.sha256(grid.numpy().tobytes()).hexdigest()[:12]  # the grid the table was made for
        lut = torch.from_numpy(cached_array(f"doa/nearest_lut_{tag}_n{n}_step{_LUT_STEP:g}", make,
                                            check=lambda t: t.shape == (pts.shape[0],) and int(t.max()) < n)).long()
        if len(_KERNELS) > 4:
            _KERNELS.clear()
        _KERNELS[key] = (grid, K, lut.reshape(len(a), len(e)))
    return _KERNELS[key]


def _refine(u: torch.Tensor, w: torch.Tensor, start: torch.Tensor, cos_cap: float, iters: int = 5):
    d = start.to(u.dtype)
    for _ in range(iters):
        wi = torch.where((u @ d) >= cos_cap, w, torch.zeros_like(w))
        m = wi @ u
        nm = m.norm()
        if nm <= 0:
            break
        d_new = m / nm
        if float(d_new @ d) > 1 - 1e-15:
            d = d_new
            break
        d = d_new
    return d


def _silence_message(where: str, why: str, xt: torch.Tensor, item: int, silence_db: float,
                     max_diffuseness: float) -> str:
    """What is silent in item ``item`` of ``xt (..., channels, time)`` (as read), one line: every channel; W
    alone (not ACN/SN3D ambisonics, or another channel order); the first-order channels (a W-only signal:
    no direction); or every bin's direction (a fully diffuse field)."""
    x = xt.reshape(-1, xt.shape[-2], xt.shape[-1])[item]
    w = float(x[0].pow(2).mean().sqrt())
    d = float(x[1:4].pow(2).mean(-1).sum().sqrt())
    db = lambda v: f"{20 * math.log10(v):.0f} dBFS" if v > 0 else "all zero"  # noqa: E731
    thr = 10.0 ** (silence_db / 20.0)
    tail = "no direction can be estimated"
    if why == "w" and d > thr:
        return (f"{where}: its W (omnidirectional, channel 1) is silent ({db(w)}) while its first-order channels are "
                f"not ({db(d)}): not an ACN/SN3D ambisonic signal, or its channels are in another order; {tail}")
    if why == "w":
        return f"{where} is silent (W and its first-order channels below {silence_db:g} dBFS): {tail}"
    if d <= 1e-5 * w:
        return (f"{where}: its first-order (directional) channels 2-4 are silent ({db(d)}) while W is not ({db(w)}): "
                f"an omnidirectional signal has no direction (a mono signal, or channels that are not ambisonics, "
                f"e.g. loudspeaker feeds, read as ACN); {tail}")
    return (f"{where} has no directional time-frequency bin (every bin's diffuseness above {max_diffuseness:g}: a "
            f"fully diffuse field, its directional part silent): {tail}")


def intensity_doa(
    x,
    sample_rate: int,
    n_sources: int = 1,
    frame_s: float = 0.1,
    *,
    normalisation: str = "sn3d",
    nfft: int | None = None,
    fmin: float = 80.0,
    fmax: float | None = None,
    dynamic_range_db: float = 60.0,
    max_diffuseness: float = 0.9,
    diffuseness_power: float = 8.0,
    smooth_frames: int = 5,
    grid_points: int = 2562,
    kernel_deg: float = 6.0,
    cap_deg: float = 20.0,
    refine_deg: float = 8.0,
    silence_db: float = -100.0,
    allow_silence: bool = False,
    onset_power: float = 0.0,
    onset_frames: int = 4,
) -> DoAResult:
    """Directions of arrival of ``n_sources`` sources in ambisonics ``x (..., channels, time)``.

    ``x``: ACN channel order, ``normalisation`` "sn3d" (default), "n3d" or "fuma"
    (4 channels, W X Y Z); any order >= 1 (only first-order channels are used).
    ``frame_s``: duration of one trajectory frame. ``cap_deg``: radius of the cone of
    votes that belongs to one source (also the smallest separation resolved).
    ``onset_power`` > 0 favours onsets (direct sound before its reflections, as the precedence
    effect does): each vote is also weighted by ``clip(E / E_prev - 1, 0, 10) ** onset_power``
    with ``E_prev`` the bin's mean energy over the ``onset_frames`` previous STFT frames.
    Silence (RMS of W below ``silence_db`` dBFS, or no bin above the diffuseness
    limit) raises :class:`SpaqInputError` unless ``allow_silence`` is True, in which
    case those items come back with NaN angles and ``silent=True``.
    See :class:`DoAResult` for the outputs.
    """
    if int(n_sources) < 1:
        raise SpaqInputError(f"n_sources must be >= 1, got {n_sources}")
    n_sources = int(n_sources)
    if sample_rate <= 0:
        raise SpaqInputError(f"sample rate must be positive, got {sample_rate}")
    I, E, psi, hop = intensity_vectors(
        x, sample_rate, normalisation=normalisation, nfft=nfft, fmin=fmin, fmax=fmax, smooth_frames=smooth_frames
    )
    batch_shape = tuple(E.shape[:-2])
    F, N = E.shape[-2], E.shape[-1]
    onset = None
    if onset_power > 0:
        k = max(1, int(onset_frames))
        c = torch.nn.functional.pad(E.cumsum(-1), (k + 1, 0))  # c[..., j] = sum E[..., :j-k-1]
        prev = (c[..., k: k + N] - c[..., :N]) / k  # mean of the k frames before each frame
        onset = ((E / prev.clamp_min(1e-300) - 1.0).clamp(0.0, 10.0) ** onset_power)
        onset[..., :k] = 0.0
    xt = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x.detach()).to(torch.float64)
    w_rms = xt[..., 0, :].pow(2).mean(-1).sqrt().reshape(-1)

    frames_per_block = max(1, int(round(frame_s * sample_rate / hop)))
    n_blocks = max(1, math.ceil(N / frames_per_block))
    block_of_frame = torch.arange(N) // frames_per_block
    frame_times = (np.arange(n_blocks) * frames_per_block + (frames_per_block - 1) / 2.0) * hop / sample_rate
    frame_times = np.minimum(frame_times, (N - 1) * hop / sample_rate)

    kappa = 1.0 / (1.0 - math.cos(math.radians(kernel_deg)))
    grid, kernel, lut = _grid_kernel(int(grid_points), kappa)
    cos_cap = math.cos(math.radians(cap_deg))
    cos_refine = math.cos(math.radians(min(cap_deg, refine_deg)))

    B = int(np.prod(batch_shape)) if batch_shape else 1
    If = I.reshape(B, 3, F * N)
    Ef = E.reshape(B, F * N)
    psif = psi.reshape(B, F * N)
    onf = onset.reshape(B, F * N) if onset is not None else None
    blk = block_of_frame.repeat(F)  # bin index f*N + n -> block of frame n

    az = np.full((B, n_sources), np.nan)
    el = np.full((B, n_sources), np.nan)
    conf = np.full((B, n_sources), np.nan)
    diff = np.full((B,), np.nan)
    f_az = np.full((B, n_sources, n_blocks), np.nan)
    f_el = np.full((B, n_sources, n_blocks), np.nan)
    f_conf = np.full((B, n_sources, n_blocks), np.nan)
    silent = np.zeros(B, dtype=bool)
    thr = 10.0 ** (silence_db / 20.0)

    why = [None] * B  # what is silent, per silent item (the message names the first)
    for b in range(B):
        e = Ef[b]
        if float(w_rms[b]) <= thr or float(e.max()) <= 0.0:
            silent[b] = True
            why[b] = "w"
            continue
        floor = float(e.max()) * 10.0 ** (-dynamic_range_db / 10.0)
        nI = If[b].norm(dim=0)
        valid = (e > floor) & (psif[b] <= max_diffuseness) & (nI > 0)
        if not bool(valid.any()):
            silent[b] = True
            why[b] = "diffuse"
            continue
        diff[b] = float((psif[b] * e).sum() / e.sum())
        u = (If[b][:, valid] / nI[valid]).T.contiguous()  # (K, 3)
        wv = e[valid] * (1.0 - psif[b][valid]).clamp_min(0.0) ** diffuseness_power
        if onf is not None:
            wv = wv * onf[b][valid]
        bv = blk[valid]
        total = float(wv.sum())
        if total <= 0:
            silent[b] = True
            continue
        remaining = wv.clone()
        cell = _nearest_grid(grid, u, lut)
        dirs = []
        for s in range(n_sources):
            if float(remaining.sum()) <= 1e-12 * total:
                break
            counts = torch.zeros(grid.shape[0], dtype=torch.float32).index_add_(0, cell, remaining.to(torch.float32))
            h = kernel @ counts
            d = _refine(u, remaining, grid[int(torch.argmax(h))], cos_refine)
            inside = (u @ d) >= cos_cap
            conf[b, s] = float(wv[inside].sum()) / total
            remaining = torch.where(inside, torch.zeros_like(remaining), remaining)
            dirs.append(d)
        if not dirs:
            silent[b] = True
            continue
        D = torch.stack(dirs)  # (S, 3)
        a, e_, _ = cart2sph(D.numpy())
        az[b, : len(dirs)], el[b, : len(dirs)] = a, e_
        # trajectories: each frame's votes go to the nearest source found overall
        best = torch.argmax(u @ D.T, dim=1)  # (K,)
        blk_tot = torch.zeros(n_blocks, dtype=wv.dtype).index_add_(0, bv, wv)
        for s in range(len(dirs)):
            sel = best == s
            m = torch.zeros(n_blocks, 3, dtype=wv.dtype).index_add_(0, bv[sel], u[sel] * wv[sel, None])
            ws = torch.zeros(n_blocks, dtype=wv.dtype).index_add_(0, bv[sel], wv[sel])
            has = ws > 0
            if bool(has.any()):
                fa, fe, _ = cart2sph(m[has].numpy())
                idx = has.numpy()
                f_az[b, s, idx], f_el[b, s, idx] = fa, fe
                f_conf[b, s, idx] = (ws[has] / blk_tot[has]).numpy()

    silent_r = silent.reshape(batch_shape) if batch_shape else silent[0]
    if silent.any() and not allow_silence:
        n_sil = int(silent.sum())
        first = int(np.flatnonzero(silent)[0])
        where = "the input" if B == 1 else f"{n_sil} of {B} items (first: item {first})"
        raise SpaqInputError(_silence_message(where, why[first], xt, first, silence_db, max_diffuseness))

    def shp(a, *tail):
        return a.reshape(batch_shape + tail) if batch_shape else a.reshape(tail)

    return DoAResult(
        azimuth_deg=shp(az, n_sources),
        elevation_deg=shp(el, n_sources),
        confidence=shp(conf, n_sources),
        diffuseness=diff.reshape(batch_shape) if batch_shape else np.float64(diff[0]),
        frame_times_s=frame_times,
        frame_azimuth_deg=shp(f_az, n_sources, n_blocks),
        frame_elevation_deg=shp(f_el, n_sources, n_blocks),
        frame_confidence=shp(f_conf, n_sources, n_blocks),
        silent=silent_r,
        sample_rate=int(sample_rate),
        n_sources=n_sources,
        settings=dict(
            normalisation=normalisation, nfft=_nfft_for(sample_rate, nfft), fmin=fmin, fmax=fmax,
            frame_s=frame_s, cap_deg=cap_deg, kernel_deg=kernel_deg, max_diffuseness=max_diffuseness,
            onset_power=onset_power,
        ),
    )
