"""Shoebox rooms with pyroomacoustics: binaural and ambisonic room impulse responses.

Hybrid model. Early part: pyroomacoustics' image-source model (absorption from
Sabine's formula for the requested RT60, ``pra.inverse_sabine``) up to
``ism_order``; each image source is a plane wave from its direction in the
listener's head frame, delayed by its distance / c and attenuated by its wall
damping and 1/distance, rendered with the HRIR nearest to its direction (direct
path: interpolated HRIR) or encoded with the SH of its direction. Late part: from
the arrival time of the first image of order ``ism_order`` on, exponentially
decaying noise (60 dB in RT60) from ``n_diffuse`` directions (incoherent plane
waves), level-matched to the image-source energy just before that time.

Normalisation (``normalise``): "direct" gives the direct path unit gain; "energy"
(default) gives the omnidirectional RIR (direct + reflections + tail, as an omni
microphone at the listener would measure it: W in ambisonics) unit energy, so a
source's level is the level of its total sound at the listener.

Shapes: binaural RIR ``(2, L)``, ambisonic RIR ``(n_ch, L)`` ACN/SN3D.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import oaconvolve

from ..errors import SpaqError
from .angles import cart2sph, sph2cart
from .sh import sh_matrix

__all__ = ["RoomSpec", "place_in_room", "room_impulse_response", "response_length_s", "min_rt60_s", "measure_rt60",
           "measure_drr"]

SPEED_OF_SOUND = 343.0


@dataclass
class RoomSpec:
    """A shoebox: ``dims_m`` (x, y, z), ``rt60_s``, the listener at ``listener_m`` facing
    ``listener_yaw_deg`` (azimuth of the head's front in room coordinates) and the
    source at ``source_m``."""

    dims_m: tuple
    rt60_s: float
    listener_m: tuple
    source_m: tuple
    listener_yaw_deg: float = 0.0

    def to_dict(self) -> dict:
        return {k: (list(map(float, v)) if isinstance(v, (tuple, list, np.ndarray)) else float(v))
                for k, v in asdict(self).items()}

    def direction(self):
        """Direct-path (azimuth_deg, elevation_deg, distance_m) in the listener's head frame."""
        v = np.asarray(self.source_m, float) - np.asarray(self.listener_m, float)
        az, el, r = cart2sph(v)
        return float(np.mod(az - self.listener_yaw_deg + 180, 360) - 180), float(el), float(r)


def place_in_room(dims_m, rt60_s, azimuth_deg, elevation_deg, distance_m, rng: np.random.Generator,
                  margin_m: float = 0.5, listener_yaw_deg: float | None = None,
                  tries: int = 200) -> RoomSpec:
    """Random listener position (``margin_m`` from walls, ear height 1.0..1.8 m where
    the room allows) and head yaw, and a source at the requested direction (head frame)
    and distance, shortened if needed to stay ``margin_m`` inside the room."""
    dims = np.asarray(dims_m, dtype=np.float64)
    if np.any(dims <= 2 * margin_m):
        raise SpaqError(f"room {dims.tolist()} m is too small for a {margin_m} m margin")
    for _ in range(tries):
        lo = np.array([margin_m, margin_m, max(margin_m, min(1.0, dims[2] - margin_m - 0.01))])
        hi = np.array([dims[0] - margin_m, dims[1] - margin_m, max(lo[2] + 0.01, min(1.8, dims[2] - margin_m))])
        lis = rng.uniform(lo, hi)
        yaw = float(rng.uniform(-180, 180)) if listener_yaw_deg is None else float(listener_yaw_deg)
        v = sph2cart(azimuth_deg + yaw, elevation_deg)
        # largest distance along v that stays margin_m inside the box
        with np.errstate(divide="ignore", invalid="ignore"):
            t_hi = np.where(v > 0, (dims - margin_m - lis) / v, np.where(v < 0, (margin_m - lis) / v, np.inf))
        d_max = float(np.min(t_hi))
        if d_max >= min(distance_m, 0.5):
            d = min(float(distance_m), d_max)
            src = lis + d * v
            return RoomSpec(tuple(dims), float(rt60_s), tuple(lis), tuple(src), yaw)
    raise SpaqError(f"cannot place a source at {distance_m} m in a {dims.tolist()} m room")


def _images(spec: RoomSpec, fs: int, ism_order: int):
    try:
        import pyroomacoustics as pra
    except ImportError as e:  # pragma: no cover
        from ..extras import install_hint

        raise SpaqError(f"rooms need the PyPI package pyroomacoustics: {install_hint('data')}") from e
    try:
        e_abs, max_order = pra.inverse_sabine(spec.rt60_s, list(spec.dims_m))
    except ValueError as e:
        raise SpaqError(f"RT60 {spec.rt60_s} s is impossible in a {list(spec.dims_m)} m room: {e}") from e
    order = int(min(max_order, ism_order))
    room = pra.ShoeBox(list(spec.dims_m), fs=fs, materials=pra.Material(float(e_abs)), max_order=order)
    room.add_source(list(spec.source_m))
    room.add_microphone(list(spec.listener_m))
    room.image_source_model()
    src = room.sources[0]
    return src.images.T.copy(), src.damping[0].copy(), src.orders.copy(), float(e_abs), order


def min_rt60_s(dims_m) -> float:
    """The shortest RT60 a shoebox of ``dims_m`` (x, y, z) can have: Sabine's formula at energy
    absorption 1, with pyroomacoustics' speed of sound (what :func:`room_impulse_response` can build)."""
    try:
        from pyroomacoustics.parameters import constants
        c = float(constants.get("c"))
    except ImportError:  # pragma: no cover
        c = SPEED_OF_SOUND
    x, y, z = (float(v) for v in dims_m)
    return 24 * math.log(10) * x * y * z / (c * 2 * (x * y + x * z + y * z))


def response_length_s(rt60_s: float) -> float:
    """The length of :func:`room_impulse_response` by default: 1.1 RT60 + 50 ms."""
    return float(rt60_s) * 1.1 + 0.05


def _tail_noise(rng: np.random.Generator, n: int, length: int, draw_length: int) -> np.ndarray:
    """``(n, length)`` Gaussian noise of the diffuse tail: the draw of ``(n, draw_length)`` from
    ``rng`` (what a response of ``draw_length`` samples draws), cut or continued to ``length``;
    the continuation comes from a generator seeded by that draw's last value, so ``rng`` is left
    exactly where a response of ``draw_length`` samples leaves it."""
    base = rng.standard_normal((n, max(1, draw_length)))
    if length <= base.shape[1]:
        return np.ascontiguousarray(base[:, :length])
    seed = np.frombuffer(base[:, -1].tobytes(), dtype=np.uint32)
    more = np.random.default_rng(seed).standard_normal((n, length - base.shape[1]))
    return np.concatenate([base, more], axis=1)


def room_impulse_response(spec: RoomSpec, sample_rate: int, kind: str, order: int = 1, hrtf=None,
                          rng: np.random.Generator | None = None, ism_order: int = 6,
                          n_diffuse: int = 16, rotation: np.ndarray | None = None,
                          reverb_gain_db: float = 0.0, length_s: float | None = None,
                          normalise: str = "energy", tail_draw_length_s: float | None = None):
    """Room impulse response from the source to the listener's ears or SH channels.

    ``kind``: "binaural" (needs ``hrtf`` at ``sample_rate``) or "ambisonics" (``order``).
    ``rotation``: optional 3x3 rotation of all directions in the head frame (scene
    rotation). ``reverb_gain_db``: gain of everything but the direct path (changes
    the DRR). ``normalise``: "energy" or "direct" (see module doc).
    ``tail_draw_length_s``: the length whose random draw the diffuse tail uses (default: the
    response's own length). A room whose RT60 is changed (the corpus engine's ``reverb``) passes the
    unchanged room's length, so that its tail is the same noise (the same directions, the same
    samples where both are long enough; further samples from a generator of their own) under a
    different decay: one draw, not a new one per RT60.
    Returns ``(rir (C, L), info)`` with ``info`` holding absorption, image-source order, mixing
    time and the direct-path direction.
    """
    if kind not in ("binaural", "ambisonics"):
        raise SpaqError(f"room response kind must be binaural or ambisonics, not {kind!r}")
    if kind == "binaural" and hrtf is None:
        raise SpaqError("a binaural room response needs an HRTF set")
    rng = np.random.default_rng(0) if rng is None else rng
    fs = int(sample_rate)
    imgs, damp, orders, e_abs, used_order = _images(spec, fs, ism_order)
    lis = np.asarray(spec.listener_m, dtype=np.float64)
    v = imgs - lis
    dist = np.linalg.norm(v, axis=1)
    az, el, _ = cart2sph(v)
    az = az - spec.listener_yaw_deg
    dirs = sph2cart(az, el)
    if rotation is not None:
        dirs = dirs @ np.asarray(rotation, dtype=np.float64).T
    az, el, _ = cart2sph(dirs)
    direct = int(np.argmin(dist))
    d0 = dist[direct]
    gains = damp * d0 / dist  # direct path -> 1
    rev = 10 ** (reverb_gain_db / 20)
    gains = np.where(np.arange(len(gains)) == direct, gains, gains * rev)
    delays = np.round((dist - d0) / SPEED_OF_SOUND * fs).astype(np.int64)  # direct at t = 0
    if length_s is None:
        length_s = response_length_s(spec.rt60_s)
    L = int(length_s * fs)
    keep = delays < L
    # mixing time: first arrival of the highest computed order (image set complete before it)
    hi = orders == used_order
    t_mix = int(np.min(delays[hi])) if used_order > 0 and np.any(hi) else 0
    t_mix = max(1, min(t_mix, L - 1))

    taps = hrtf.taps if kind == "binaural" else 1
    C = 2 if kind == "binaural" else (order + 1) ** 2
    out = np.zeros((C, L + taps))
    omni = np.zeros(L)
    np.add.at(omni, delays[keep], gains[keep])
    if kind == "ambisonics":
        Y = sh_matrix(order, az[keep], el[keep])  # (C, n)
        for c in range(C):
            np.add.at(out[c], delays[keep], Y[c] * gains[keep])
    else:
        ids = np.flatnonzero(keep)
        h = hrtf.nearest(az[ids], el[ids])  # (n, 2, taps)
        h[ids == direct] = hrtf.interpolate(az[direct], el[direct])
        pos = delays[ids][:, None] + np.arange(taps)[None, :]  # (n, taps)
        for e in range(2):
            np.add.at(out[e], pos.ravel(), (h[:, e, :] * gains[ids][:, None]).ravel())

    # late diffuse tail, level-matched on the omni image-source energy before t_mix
    t = np.arange(L) / fs
    env = np.exp(-3 * np.log(10) * t / spec.rt60_s)  # 60 dB in RT60 (amplitude)
    w0 = max(0, t_mix - int(0.02 * fs))
    e_ism = float(np.sum(omni[w0:t_mix] ** 2))
    e_env = float(np.sum(env[w0:t_mix] ** 2))
    tail_gain = np.sqrt(e_ism / e_env) if e_env > 0 and e_ism > 0 else 0.0
    tail_omni = np.zeros(L)
    if tail_gain > 0 and t_mix < L:
        fade = np.clip((np.arange(L) - t_mix) / max(1, int(0.005 * fs)), 0, 1)
        noise = _tail_noise(rng, n_diffuse, L, L if tail_draw_length_s is None else int(tail_draw_length_s * fs))
        noise *= env * fade * tail_gain / np.sqrt(n_diffuse)
        from .ambisonics import fibonacci_directions
        daz, del_ = fibonacci_directions(n_diffuse)
        daz = daz + rng.uniform(-180, 180)
        tail_omni = noise.sum(axis=0)
        if kind == "ambisonics":
            out[:, :L] += sh_matrix(order, daz, del_) @ noise
        else:
            hd = hrtf.nearest(daz, del_)  # (K, 2, taps)
            for e in range(2):
                out[e, : L + taps - 1] += oaconvolve(noise, hd[:, e, :], axes=-1).sum(axis=0)
    omni_energy = float(np.sum((omni + tail_omni) ** 2))
    if normalise == "energy":
        out /= np.sqrt(omni_energy)
    elif normalise != "direct":
        raise SpaqError(f"normalise must be 'energy' or 'direct', not {normalise!r}")
    info = {
        "normalise": normalise,
        "omni_energy_re_direct": omni_energy,
        "absorption": e_abs,
        "ism_order": used_order,
        "n_images": int(keep.sum()),
        "mixing_time_s": t_mix / fs,
        "direct_delay_s": float(d0 / SPEED_OF_SOUND),
        "reverb_gain_db": float(reverb_gain_db),
    }
    return out[:, :L], info


def measure_rt60(rir, sample_rate: int, decay_db: float = 30.0) -> float:
    """RT60 (s) of a mono ``rir (L,)`` from its Schroeder decay (pyroomacoustics,
    T30 extrapolated to 60 dB by default)."""
    import pyroomacoustics as pra

    return float(pra.experimental.measure_rt60(np.asarray(rir, dtype=np.float64), fs=sample_rate,
                                               decay_db=decay_db))


def measure_drr(rir, sample_rate: int, window_ms: float = 2.5) -> float:
    """Direct-to-reverberant ratio (dB) of ``rir (..., L)``: energy within ``window_ms``
    after the peak vs the rest (summed over leading axes)."""
    r = np.asarray(rir, dtype=np.float64).reshape(-1, np.shape(rir)[-1])
    peak = int(np.argmax(np.max(np.abs(r), axis=0)))
    w = int(window_ms * 1e-3 * sample_rate)
    lo = max(0, peak - w)
    d = np.sum(r[:, lo:peak + w] ** 2)
    rest = np.sum(r ** 2) - d
    return float(10 * np.log10(d / rest))
