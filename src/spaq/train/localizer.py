"""Training of the BAST binaural localiser.

Two data paths:

* **synthetic** (``spaq train localizer CONFIG.yaml``): scenes rendered on the fly from
  the corpus engine's building blocks (``spaq.spatial.hrtf``, ``spaq.data.sources``,
  ``spaq.spatial.room``): a source of a random type at one of the measured HRTF
  directions, anechoic or in a shoebox room, optional diffuse noise at a random SNR.
  Every example is a function of ``(seed, split, index)``: the same config and seed give
  the same data, the same model (up to floating-point non-determinism of threads).
* **csv** (``spaq train localizer --csv INDEX.csv``): the user's labelled recordings,
  columns ``input_file,class,azimuth_deg,elevation_deg``; ``input_file`` is a binaural
  audio file or a precomputed ``[2, n_mels, T]`` log-mel ``.npy``/``.pt``; split into
  train/validation by file.

Checkpoints are written by :mod:`spaq.models.checkpoint` (self-describing: format,
architecture and config, state_dict, sample rate, class names, versions, training summary;
read with ``torch.load(weights_only=True)``); inference (:func:`spaq.models.bast.predict`,
:mod:`spaq.localization`) needs nothing from here.
"""
from __future__ import annotations

import csv
import hashlib
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import ConfigError, from_dict, load_config
from ..errors import SpaqError, SpaqInputError
from ..losses import MultiTaskLoss
from ..models import checkpoint
from ..models.bast import BAST, BASTConfig, BinauralLogMel, crop_frames, predict, waveforms_to_features
from ..spatial.angles import lateral_angle, sph2cart, wrap_azimuth
from . import check_run, one_cycle

__all__ = [
    "CHECKPOINT_FORMAT",
    "LocalizerTrainConfig",
    "SyntheticSpec",
    "synthesize",
    "synthesize_parallel",
    "SpectralSceneSampler",
    "CueSceneSampler",
    "build_model",
    "read_index",
    "train_localizer",
    "train_cue_localizer",
    "train_from_csv",
    "save_checkpoint",
    "load_checkpoint",
    "evaluate_directions",
]

CHECKPOINT_FORMAT = checkpoint.FORMAT  # written by save_checkpoint (the older BAST tag still loads)
CLASS_OF_SOURCE = {"speech": "speech", "babble": "speech", "harmonic": "music", "chord": "music",
                   "percussive": "music", "pink_noise": "noise", "noise_bursts": "noise"}


# --------------------------------------------------------------------------- configs


@dataclass
class SyntheticSpec:
    """How synthetic training scenes are drawn."""

    hrtf: str = "ku100"
    sources: tuple[str, ...] = ("speech", "harmonic", "chord", "percussive", "pink_noise", "noise_bursts")
    room_fraction: float = 0.5
    rt60_s: tuple[float, float] = (0.2, 0.8)
    room_dims_m: tuple[tuple[float, float, float], tuple[float, float, float]] = (
        (4.0, 3.0, 2.5), (10.0, 8.0, 4.0))  # min, max
    distance_m: tuple[float, float] = (1.0, 3.0)
    noise_fraction: float = 0.5
    snr_db: tuple[float, float] = (5.0, 40.0)
    level_dbfs: tuple[float, float] = (-40.0, -15.0)

    @classmethod
    def from_dict(cls, d: dict, where: str = "data") -> "SyntheticSpec":
        """The spec from a mapping, through :mod:`spaq.config` (strict, one-line errors)."""
        return from_dict(cls, d, where)


@dataclass
class LocalizerTrainConfig:
    """A training recipe (YAML keys of the same names, at the top level or under
    ``localizer:``; ``model`` is a BASTConfig dict, ``data`` a :class:`SyntheticSpec` dict)."""

    seed: int = 0
    model: dict = field(default_factory=dict)
    loss: str = "MIX"
    class_weight: float = 0.3
    elevation_weight: float = 0.3
    lr: float = 1e-3
    weight_decay: float = 0.01
    epochs: int = 10
    batch_size: int = 64
    n_train: int = 8000
    n_val: int = 800
    val_fraction: float = 0.2  # csv: share of files held out
    threads: int = 1
    workers: int = 1  # processes rendering synthetic scenes
    spectral_batch: int = 0  # on-the-fly spectral-domain anechoic scenes added to each batch
    spectral_bank: int = 2000  # source clips in the bank of the spectral sampler
    stop_epoch: int = 0  # > 0: stop after this many epochs (the lr schedule still spans ``epochs``)
    # streaming training (model.features == "cues"): every batch is rendered fresh by CueSceneSampler
    steps: int = 0  # optimiser steps (replaces epochs x n_train)
    val_every: int = 100  # steps between validations
    source_bank: int = 400  # source clips (1.5 s) in the sampler's bank
    rooms_per_head: int = 24  # rooms in the bank of each head
    dirs_per_room: int = 12  # source directions per room (binaural room responses precomputed once)
    refresh_every: int = 25  # steps between replacing one room per head (new room, new directions)
    data: dict = field(default_factory=dict)  # synthetic spec

    @classmethod
    def from_yaml(cls, path) -> "LocalizerTrainConfig":
        """The recipe in YAML file ``path``, through :mod:`spaq.config`; ``data`` is checked
        against :class:`SyntheticSpec` here (and kept as the mapping given)."""
        tc = load_config(path, cls, section="localizer")
        try:
            SyntheticSpec.from_dict(tc.data)
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None
        return tc


# --------------------------------------------------------------------------- synthetic scenes


def _diffuse_noise(n: int, hrtf, rng: np.random.Generator, n_dirs: int = 12) -> np.ndarray:
    from scipy.signal import oaconvolve

    from ..data.sources import pink_noise

    idx = rng.integers(0, hrtf.n_directions, n_dirs)
    noise = np.stack([pink_noise(n + hrtf.taps, rng) for _ in range(n_dirs)])  # (D, T)
    out = oaconvolve(noise[:, None, :], hrtf.hrir[idx], axes=-1).sum(0)  # (2, T')
    return out[:, hrtf.taps: hrtf.taps + n]


def synthesize(spec: SyntheticSpec, n: int, seed: int, split: str, sample_rate: int, n_samples: int,
               hrtf=None, start: int = 0):
    """Render ``n`` binaural scenes of ``n_samples`` samples.

    Returns ``(x (n, 2, n_samples) float32, direction (n, 3) float32, class_index (n,) int64,
    meta list)``; class indices follow ``classes_of(spec)``. Example ``i`` is drawn from
    ``numpy.random.default_rng([seed, hash(split), start + i])``.
    """
    from scipy.signal import oaconvolve

    from ..data.sources import make_source
    from ..spatial.hrtf import load_hrtf
    from ..spatial.room import place_in_room, room_impulse_response

    hrtf = load_hrtf(spec.hrtf, sample_rate) if hrtf is None else hrtf
    classes = classes_of(spec)
    split_key = int(hashlib.sha256(split.encode()).hexdigest()[:8], 16)
    X = np.zeros((n, 2, n_samples), dtype=np.float32)
    D = np.zeros((n, 3), dtype=np.float32)
    C = np.zeros(n, dtype=np.int64)
    meta = []
    pad = int(0.25 * sample_rate)
    for i in range(n):
        rng = np.random.default_rng([int(seed), split_key, int(start + i)])
        kind = spec.sources[int(rng.integers(len(spec.sources)))]
        k = int(rng.integers(hrtf.n_directions))
        az, el = float(hrtf.azimuth_deg[k]), float(hrtf.elevation_deg[k])
        level = float(rng.uniform(*spec.level_dbfs))
        s, smeta = make_source(kind, (n_samples + 2 * pad) / sample_rate, sample_rate, rng, level_dbfs=level)
        room = bool(rng.random() < spec.room_fraction)
        info = {"type": kind, "azimuth_deg": az, "elevation_deg": el, "room": room}
        if room:
            lo, hi = np.asarray(spec.room_dims_m[0]), np.asarray(spec.room_dims_m[1])
            dims = rng.uniform(lo, hi)
            rt60 = float(rng.uniform(*spec.rt60_s))
            try:
                rs = place_in_room(dims, rt60, az, el, float(rng.uniform(*spec.distance_m)), rng)
                rir, _ = room_impulse_response(rs, sample_rate, "binaural", hrtf=hrtf, rng=rng, ism_order=3,
                                               length_s=min(1.2 * rt60, 1.0))
                y = oaconvolve(s[None], rir, axes=-1)
                info.update(rt60_s=rt60)
            except SpaqError:
                y = oaconvolve(s[None], hrtf.hrir[k], axes=-1)
                info["room"] = False
        else:
            y = oaconvolve(s[None], hrtf.hrir[k], axes=-1)
        # the loudest window among a few candidates after the onset region
        starts = np.linspace(pad // 2, pad + pad // 2, 4).astype(int)
        energies = [float(np.sum(y[:, a: a + n_samples] ** 2)) for a in starts]
        a = int(starts[int(np.argmax(energies))])
        seg = y[:, a: a + n_samples]
        if rng.random() < spec.noise_fraction:
            snr = float(rng.uniform(*spec.snr_db))
            noise = _diffuse_noise(n_samples, hrtf, rng)
            ps, pn = np.mean(seg ** 2), np.mean(noise ** 2)
            if ps > 0 and pn > 0:
                seg = seg + noise * math.sqrt(ps / pn / 10 ** (snr / 10))
            info["snr_db"] = snr
        X[i] = seg
        D[i] = sph2cart(az, el)
        C[i] = classes.index(CLASS_OF_SOURCE.get(kind, kind))
        meta.append(info)
    return X, D, C, meta


def _synth_chunk(args):
    spec, n, seed, split, sr, ns, start = args
    torch.set_num_threads(1)
    return synthesize(spec, n, seed, split, sr, ns, start=start)


def synthesize_parallel(spec: SyntheticSpec, n: int, seed: int, split: str, sample_rate: int, n_samples: int,
                        workers: int = 1, chunk: int = 250):
    """:func:`synthesize` split over ``workers`` processes (same examples as one process)."""
    if workers <= 1 or n <= chunk:
        return synthesize(spec, n, seed, split, sample_rate, n_samples)
    import multiprocessing as mp

    jobs = [(spec, min(chunk, n - a), seed, split, sample_rate, n_samples, a) for a in range(0, n, chunk)]
    with mp.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(_synth_chunk, jobs)
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]), sum((p[3] for p in parts), []))


def classes_of(spec: SyntheticSpec) -> list[str]:
    return sorted({CLASS_OF_SOURCE.get(k, k) for k in spec.sources})


# --------------------------------------------------------------------------- spectral-domain sampler


class SpectralSceneSampler:
    """Fresh anechoic scenes for every batch, built in the STFT-power domain.

    For an HRIR much shorter than the STFT window, ``STFT(s * h) ~ STFT(s) . H`` with
    ``H = rfft(h, n_fft)``; so with a bank of source power spectrograms ``|S|^2 (F, T)``
    (rendered once from ``spaq.data.sources``) and the HRTF set's transfer functions, any
    (source, direction) pair gives the log-mel features of its binaural rendering (and the
    mel-band interaural phase for ``logmel_ipd``) without convolution: every batch draws new
    pairs, so the model sees far more direction/content combinations than a fixed corpus.
    Optional diffuse noise (pink, the HRTF set's diffuse-field power and cross-spectrum) at a
    random SNR. Rooms are not modelled here (mix with rendered scenes for those).
    """

    def __init__(self, cfg: BASTConfig, spec: SyntheticSpec, n_bank: int, seed: int, split: str = "spectral",
                 hrtf=None, log=print):
        from ..data.sources import make_source
        from ..spatial.hrtf import load_hrtf

        self.cfg, self.spec = cfg, spec
        hrtf = load_hrtf(spec.hrtf, cfg.sample_rate) if hrtf is None else hrtf
        H = np.fft.rfft(hrtf.hrir, n=cfg.n_fft, axis=-1)  # (D, 2, F)
        self.H = torch.as_tensor(H.astype(np.complex64))
        self.dirs = torch.as_tensor(sph2cart(hrtf.azimuth_deg, hrtf.elevation_deg).astype(np.float32))
        self.diffuse_pow = (self.H.abs() ** 2).mean(0)  # (2, F)
        self.diffuse_cross = (self.H[:, 0] * self.H[:, 1].conj()).mean(0)  # (F,)
        fe = BinauralLogMel(cfg)
        self.fb = fe.fb
        self.window = torch.hann_window(cfg.n_fft)
        classes = classes_of(spec)
        split_key = int(hashlib.sha256(split.encode()).hexdigest()[:8], 16)
        t = time.time()
        bank, cls = [], []
        for i in range(n_bank):
            rng = np.random.default_rng([int(seed), split_key, i])
            kind = spec.sources[int(rng.integers(len(spec.sources)))]
            x, _ = make_source(kind, cfg.window_samples / cfg.sample_rate + 0.05, cfg.sample_rate, rng,
                               level_dbfs=float(rng.uniform(*spec.level_dbfs)))
            seg = torch.as_tensor(x[: cfg.window_samples], dtype=torch.float32)
            S = torch.stft(seg, cfg.n_fft, cfg.hop, window=self.window, center=True, return_complex=True)
            bank.append((S.real ** 2 + S.imag ** 2)[:, : cfg.n_frames])
            cls.append(classes.index(CLASS_OF_SOURCE.get(kind, kind)))
        self.bank = torch.stack(bank)  # (K, F, T)
        self.cls = torch.as_tensor(cls)
        freqs = torch.linspace(0, cfg.sample_rate / 2, cfg.n_fft // 2 + 1)
        self.pink = 1.0 / freqs.clamp_min(20.0)  # pink power shape (F,)
        log(f"spectral sampler: {n_bank} source clips in {time.time() - t:.0f} s")

    def sample(self, n: int, gen: torch.Generator):
        """``n`` scenes -> (features ``(n, *cfg.feature_shape())``, unit directions ``(n, 3)``, classes ``(n,)``)."""
        k = torch.randint(0, self.bank.shape[0], (n,), generator=gen)
        d = torch.randint(0, self.H.shape[0], (n,), generator=gen)
        S = self.bank[k]  # (n, F, T)
        H = self.H[d]  # (n, 2, F)
        P = S[:, None] * (H.abs() ** 2)[..., None]  # (n, 2, F, T)
        cross = S * (H[:, 0] * H[:, 1].conj())[..., None]  # (n, F, T)
        noisy = torch.rand(n, generator=gen) < self.spec.noise_fraction
        if bool(noisy.any()):
            lo, hi = self.spec.snr_db
            snr = lo + (hi - lo) * torch.rand(n, generator=gen)
            shape = torch.distributions.Exponential(1.0).sample(S.shape)  # chi-square(2)/2 per bin
            Pn = self.pink[None, :, None] * shape
            ps = P.mean(dim=(1, 2, 3))
            pn = (Pn[:, None] * self.diffuse_pow[None, :, :, None]).mean(dim=(1, 2, 3))
            g = torch.where(noisy, ps / pn.clamp_min(1e-30) / 10 ** (snr / 10), torch.zeros_like(ps))
            P = P + g[:, None, None, None] * Pn[:, None] * self.diffuse_pow[None, :, :, None]
            cross = cross + g[:, None, None] * Pn * self.diffuse_cross[None, :, None]
        mel = torch.matmul(self.fb, P)  # (n, 2, M, T)
        logmel = torch.log(mel + 1e-8)
        if self.cfg.features == "logmel":
            feats = logmel
        else:
            cm = torch.complex(torch.matmul(self.fb, cross.real), torch.matmul(self.fb, cross.imag))
            mag = cm.abs().clamp_min(1e-12)
            cos, sin = cm.real / mag, cm.imag / mag
            feats = torch.stack([torch.stack([logmel[:, 0], cos, sin], 1), torch.stack([logmel[:, 1], cos, -sin], 1)], 1)
        return feats, self.dirs[d], self.cls[k]


# --------------------------------------------------------------------------- streaming cue scenes


def _heads(spec: SyntheticSpec) -> list[str]:
    return [h.strip() for h in str(spec.hrtf).split("+") if h.strip()]


class CueSceneSampler:
    """Fresh binaural scenes for every batch, for the cue-feature BAST (``features="cues"``).

    Heads: ``spec.hrtf`` names one HRTF set or several joined by ``+`` (e.g. ``ku100+sonicom-1``),
    drawn with equal probability. Sources: a bank of ``n_sources`` clips (``spaq.data.sources``,
    built once). Anechoic scenes: the source times the HRTF pair of a measured direction (one
    FFT product). Rooms (``spec.room_fraction``): a bank of shoebox rooms per head
    (``spaq.spatial.room``, RT60 and size from ``spec``), each with the binaural room responses
    (image sources + diffuse tail) of ``dirs_per_room`` measured directions computed once and
    reused by every source; one room per head is replaced every ``refresh_every`` calls of
    :meth:`refresh`. Diffuse noise (a bank of pink noise through 12 random HRIRs per head) at a
    random SNR on ``spec.noise_fraction`` of the scenes. The window is taken 0.25-0.5 s after the
    source starts (rooms: reverberation built up). Features by the model's own front-end
    (:func:`~spaq.models.bast.feature_module`: cues, or log-mel for the ablation).
    """

    def __init__(self, cfg: BASTConfig, spec: SyntheticSpec, seed: int, split: str = "stream", n_sources: int = 400,
                 rooms_per_head: int = 24, dirs_per_room: int = 12, log=print):
        from ..data.sources import make_source
        from ..models.bast import feature_module
        from ..spatial.hrtf import load_hrtf

        t = time.process_time()
        self.cfg, self.spec = cfg, spec
        self.sr, self.n = cfg.sample_rate, cfg.window_samples
        self.pre = int(0.5 * self.sr)  # signal before the window (reverberation builds up)
        split_key = int(hashlib.sha256(split.encode()).hexdigest()[:8], 16)
        self.rng = np.random.default_rng([int(seed), split_key])
        self.heads = [load_hrtf(h, self.sr) for h in _heads(spec)]
        self.dirs = [sph2cart(h.azimuth_deg, h.elevation_deg).astype(np.float32) for h in self.heads]
        classes = classes_of(spec)
        seg = self.n + self.pre
        self.src, self.src_cls = [], []
        for i in range(int(n_sources)):
            r = np.random.default_rng([int(seed), split_key, 1, i])
            kind = spec.sources[i % len(spec.sources)]
            x, _ = make_source(kind, seg / self.sr + 0.6, self.sr, r, level_dbfs=-25.0)
            self.src.append(x.astype(np.float32))
            self.src_cls.append(classes.index(CLASS_OF_SOURCE.get(kind, kind)))
        self.noise = [[_diffuse_noise(2 * seg, h, self.rng).astype(np.float32) for _ in range(4)] for h in self.heads]
        self.dirs_per_room = int(dirs_per_room)
        self.rooms = [[self._room(hi) for _ in range(int(rooms_per_head))] if spec.room_fraction > 0 else []
                      for hi in range(len(self.heads))]
        self.features = feature_module(cfg)
        self.build_cpu_s = time.process_time() - t
        log(f"cue sampler: {len(self.heads)} head(s), {n_sources} source clips, "
            f"{sum(len(r) for r in self.rooms)} rooms x {dirs_per_room} directions in {self.build_cpu_s:.0f} s CPU")

    def _room(self, hi: int):
        """``(brirs (M, 2, L) float32, direction indices (M,))`` of a new room for head ``hi``."""
        from ..spatial.room import place_in_room, room_impulse_response

        h, sp, rng = self.heads[hi], self.spec, self.rng
        for _ in range(20):
            dims = rng.uniform(np.asarray(sp.room_dims_m[0]), np.asarray(sp.room_dims_m[1]))
            rt60 = float(rng.uniform(*sp.rt60_s))
            out, ks = [], []
            for k in rng.integers(0, h.n_directions, 3 * self.dirs_per_room):
                if len(out) == self.dirs_per_room:
                    break
                try:
                    rs = place_in_room(dims, rt60, h.azimuth_deg[k], h.elevation_deg[k],
                                       float(rng.uniform(*sp.distance_m)), rng)
                    rir, _ = room_impulse_response(rs, self.sr, "binaural", hrtf=h, rng=rng, ism_order=3,
                                                   length_s=min(1.2 * rt60, 0.6))
                except SpaqError:
                    continue
                out.append(rir.astype(np.float32))
                ks.append(int(k))
            if out:
                L = max(r.shape[-1] for r in out)
                B = np.zeros((len(out), 2, L), np.float32)
                for j, r in enumerate(out):
                    B[j, :, : r.shape[-1]] = r
                return B, np.asarray(ks)
        raise SpaqError("could not place sources in any room of the spec")

    def refresh(self):
        """Replace one room per head (oldest first)."""
        for hi, rooms in enumerate(self.rooms):
            if rooms:
                rooms.pop(0)
                rooms.append(self._room(hi))

    def render(self, n: int, rng: np.random.Generator):
        """``n`` scenes -> (waveforms ``(n, 2, window)`` float32, unit directions ``(n, 3)``, classes ``(n,)``)."""
        from scipy.signal import fftconvolve

        sp, seg = self.spec, self.n + self.pre
        X = np.zeros((n, 2, self.n), np.float32)
        D = np.zeros((n, 3), np.float32)
        C = np.zeros(n, np.int64)
        for i in range(n):
            hi = int(rng.integers(len(self.heads)))
            h = self.heads[hi]
            j = int(rng.integers(len(self.src)))
            s = self.src[j]
            a = int(rng.integers(0, len(s) - seg + 1))
            s = s[a: a + seg]
            if self.rooms[hi] and rng.random() < sp.room_fraction:
                B, ks = self.rooms[hi][int(rng.integers(len(self.rooms[hi])))]
                m = int(rng.integers(len(ks)))
                ir, k = B[m], int(ks[m])
            else:
                k = int(rng.integers(h.n_directions))
                ir = h.hrir[k].astype(np.float32)
            y = fftconvolve(s[None], ir, axes=-1)
            b = self.pre - int(rng.integers(0, self.pre // 2 + 1))  # 0.25-0.5 s after the start
            y = y[:, b: b + self.n]
            if rng.random() < sp.noise_fraction:
                nz = self.noise[hi][int(rng.integers(len(self.noise[hi])))]
                c = int(rng.integers(0, nz.shape[-1] - self.n + 1))
                nz = nz[:, c: c + self.n]
                ps, pn = float(np.mean(y ** 2)), float(np.mean(nz ** 2))
                if ps > 0 and pn > 0:
                    y = y + nz * math.sqrt(ps / pn / 10 ** (float(rng.uniform(*sp.snr_db)) / 10))
            ps = float(np.mean(y ** 2))
            if ps > 0:  # level: the hearing-threshold floor of the front-end matters for quiet scenes
                y = y * (10 ** (float(rng.uniform(*sp.level_dbfs)) / 20) / math.sqrt(ps))
            X[i], D[i], C[i] = y, self.dirs[hi][k], self.src_cls[j]
        return X, D, C

    def sample(self, n: int, rng: np.random.Generator):
        """``n`` scenes -> (features ``(n, *cfg.feature_shape())``, unit directions ``(n, 3)``, classes ``(n,)``)."""
        X, D, C = self.render(n, rng)
        with torch.no_grad():
            f = self.features(torch.from_numpy(X))
        return crop_frames(f, self.cfg.n_frames), torch.from_numpy(D), torch.from_numpy(C)


def _train_step(model, loss_fn, opt, sched, x, yd, yc) -> float:
    """One optimisation step on a batch (forward, multi-task loss, clipped backward, optimiser and
    schedule step) -> the batch loss."""
    out = model(x)
    loss, _ = loss_fn(out.direction, yd, out.class_logits, yc, out.elevation)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    return float(loss.detach())


def train_cue_localizer(tc: LocalizerTrainConfig, out_path, log=print) -> dict:
    """Streaming training (``tc.steps > 0``; the recipe of the cue-feature BAST): ``tc.steps`` batches of ``tc.batch_size``
    fresh scenes from :class:`CueSceneSampler` (seeded by ``tc.seed``), one-cycle lr, validation on
    ``tc.n_val`` fixed scenes (split "val": other sources, rooms and noise) every ``tc.val_every``
    steps; the best validation state is kept and written (also after every improvement, so a run
    that is cut off leaves a model)."""
    torch.set_num_threads(max(1, int(tc.threads)))
    c0, t0 = time.process_time(), time.time()
    spec = SyntheticSpec.from_dict(tc.data)
    model = build_model(tc, classes_of(spec))
    cfg = model.cfg
    kw = dict(rooms_per_head=tc.rooms_per_head, dirs_per_room=tc.dirs_per_room, log=log)
    sampler = CueSceneSampler(cfg, spec, tc.seed, "train", n_sources=tc.source_bank, **kw)
    vs = CueSceneSampler(cfg, spec, tc.seed, "val", n_sources=max(32, tc.n_val // 4),
                         **{**kw, "rooms_per_head": max(2, tc.rooms_per_head // 4)})
    vrng = np.random.default_rng([int(tc.seed), 2])
    vf, vd, vc = zip(*[vs.sample(min(128, tc.n_val - a), vrng) for a in range(0, tc.n_val, 128)])
    vf, vd, vc = torch.cat(vf), torch.cat(vd), torch.cat(vc)
    del vs
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng([int(tc.seed), 3])
    loss_fn = MultiTaskLoss(tc.loss, tc.class_weight, tc.elevation_weight)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    sched = one_cycle(opt, tc.lr, tc.steps)
    info = dict(data="streaming cue scenes", synthetic=_jsonable(spec.__dict__), seed=tc.seed, loss=tc.loss,
                steps=tc.steps, batch_size=tc.batch_size, n_val=tc.n_val, source_bank=tc.source_bank,
                rooms_per_head=tc.rooms_per_head, dirs_per_room=tc.dirs_per_room, refresh_every=tc.refresh_every)
    history, best, best_state, run, run_n = [], math.inf, None, 0.0, 0
    for step in range(1, tc.steps + 1):
        model.train()
        x, yd, yc = sampler.sample(tc.batch_size, rng)
        run, run_n = run + _train_step(model, loss_fn, opt, sched, x, yd, yc), run_n + 1
        if tc.refresh_every > 0 and step % tc.refresh_every == 0:
            sampler.refresh()
        if step % tc.val_every == 0 or step == tc.steps:
            d, p = predict(model, vf)
            vm = evaluate_directions(d, vd.numpy())
            if p is not None:
                vm["class_accuracy"] = float(np.mean(p.argmax(1) == vc.numpy()))
            rec = {"step": step, "train_loss": run / run_n, "seconds": round(time.time() - t0, 1),
                   "cpu_seconds": round(time.process_time() - c0, 1), "lr": float(sched.get_last_lr()[0]),
                   **{f"val_{k}": v for k, v in vm.items()}}
            run, run_n = 0.0, 0
            history.append(rec)
            log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))
            if vm["mean_deg"] < best:
                best = vm["mean_deg"]
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                if step < tc.steps:
                    save_checkpoint(out_path, model, {"history": list(history), "best_val_mean_deg": best,
                                                      "best_step": step, "partial": True, **info})
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    summary = {"history": history, "best_val_mean_deg": best,
               "best_step": int(history[int(np.argmin([h["val_mean_deg"] for h in history]))]["step"]),
               "cpu_seconds": round(time.process_time() - c0, 1), "seconds": round(time.time() - t0, 1), **info}
    summary["sha256"] = save_checkpoint(out_path, model, summary)
    return summary


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path, model: BAST, summary: dict) -> str:
    """Write a self-describing checkpoint (:func:`spaq.models.checkpoint.save`, atomic; the
    training ``summary`` as provenance, the class names beside it); returns its sha256."""
    return checkpoint.save(path, model, train=summary, extra={"class_names": list(model.cfg.class_names)})


def load_checkpoint(path) -> tuple[BAST, dict]:
    """Load a localiser checkpoint -> ``(model in eval mode, checkpoint meta)``
    (:func:`spaq.models.checkpoint.load` with architecture "bast"; ``weights_only=True``, strict).

    Raises :class:`SpaqError` (one line) for missing files, other architectures or
    state_dicts that do not match their config."""
    return checkpoint.load(path, architecture="bast")


# --------------------------------------------------------------------------- evaluation


def evaluate_directions(pred: np.ndarray, target: np.ndarray) -> dict:
    """Angular statistics of unit-vector predictions ``(N, 3)`` vs targets ``(N, 3)``:
    median/mean great-circle error, front-back confusion rate (targets on the interaural axis
    excluded), median lateral-angle error, horizontal-plane azimuth MAE (targets within 5 deg
    of the horizontal plane)."""
    from ..spatial.angles import cart2sph, great_circle_deg, is_front_back_confusion

    pa, pe, _ = cart2sph(pred)
    ta, te, _ = cart2sph(target)
    err = great_circle_deg(ta, te, pa, pe)
    fb = is_front_back_confusion(ta, te, pa, pe)
    lateral = np.abs(np.abs(wrap_azimuth(ta)) - 90.0) < 1e-6  # ill-defined front/back on the axis
    out = {
        "n": int(len(err)),
        "median_deg": float(np.median(err)),
        "mean_deg": float(np.mean(err)),
        "p90_deg": float(np.percentile(err, 90)),
        "front_back_rate": float(np.mean(fb[~lateral])) if np.any(~lateral) else float("nan"),
    }
    # lateral angle (interaural-polar: angle from the median plane), free of front-back/elevation errors
    out["median_lateral_error_deg"] = float(np.median(np.abs(lateral_angle(pred) - lateral_angle(target))))
    hor = np.abs(te) <= 5.0
    if hor.any():
        daz = np.abs(wrap_azimuth(pa[hor] - ta[hor]))
        out["horizontal_n"] = int(hor.sum())
        out["horizontal_azimuth_mae_deg"] = float(np.mean(daz))
    return out


# --------------------------------------------------------------------------- training loop


def _fit(model: BAST, train_feats, train_dir, train_cls, val_feats, val_dir, val_cls, tc: LocalizerTrainConfig,
         crop_train: bool, log=print, sampler: SpectralSceneSampler | None = None, on_best=None) -> dict:
    """Train ``model`` in place; keeps the weights of the best validation epoch. Features are
    ``(N, 2, F, T)`` tensors (or lists of ``(2, F, T_i)`` when ``crop_train``). With a
    ``sampler``, ``tc.spectral_batch`` fresh spectral-domain scenes join every batch.
    ``on_best(model, summary)`` is called after every epoch that improves the validation score
    (with the model holding that epoch's weights), e.g. to checkpoint a run that may be cut off."""
    torch.manual_seed(tc.seed)
    rng = np.random.default_rng(tc.seed)
    gen = torch.Generator().manual_seed(int(tc.seed) + 1)
    cfg = model.cfg
    loss_fn = MultiTaskLoss(tc.loss, tc.class_weight, tc.elevation_weight)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    n = len(train_dir)
    steps_per_epoch = max(1, math.ceil(n / tc.batch_size))
    total = steps_per_epoch * tc.epochs
    sched = one_cycle(opt, tc.lr, total)

    def batch_feats(feats, idx, training):
        if isinstance(feats, torch.Tensor) and not crop_train:
            return feats[idx]
        return torch.stack([crop_frames(feats[int(i)], cfg.n_frames, rng if training else None) for i in idx])

    def val_metrics():
        if val_dir is None or len(val_dir) == 0:
            return None
        vf = batch_feats(val_feats, np.arange(len(val_dir)), False)
        d, p = predict(model, vf)
        m = evaluate_directions(d, val_dir.numpy())
        if p is not None and val_cls is not None and bool((val_cls >= 0).any()):
            ok = val_cls.numpy() >= 0
            m["class_accuracy"] = float(np.mean(p[ok].argmax(1) == val_cls.numpy()[ok]))
        return m

    history = []
    best, best_state = math.inf, None
    t0, c0 = time.time(), time.process_time()
    n_epochs = min(tc.epochs, tc.stop_epoch) if tc.stop_epoch > 0 else tc.epochs
    for epoch in range(n_epochs):
        model.train()
        perm = rng.permutation(n)
        run = 0.0
        for s in range(steps_per_epoch):
            idx = perm[s * tc.batch_size: (s + 1) * tc.batch_size]
            x = batch_feats(train_feats, idx, True)
            yd = train_dir[idx]
            yc = train_cls[idx] if train_cls is not None else None
            if sampler is not None and tc.spectral_batch > 0:
                sx, sd, sc = sampler.sample(int(tc.spectral_batch), gen)
                x, yd = torch.cat([x, sx]), torch.cat([yd, sd])
                yc = torch.cat([yc, sc]) if yc is not None else None
            run += _train_step(model, loss_fn, opt, sched, x, yd, yc)
        vm = val_metrics()
        rec = {"epoch": epoch + 1, "train_loss": run / steps_per_epoch, "seconds": round(time.time() - t0, 1),
               "cpu_seconds": round(time.process_time() - c0, 1), "lr": float(sched.get_last_lr()[0])}
        if vm:
            rec.update({f"val_{k}": v for k, v in vm.items()})
        history.append(rec)
        log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))
        score = vm["mean_deg"] if vm else rec["train_loss"]
        if score < best:
            best = score
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if on_best is not None:
                on_best(model, {"history": list(history), "best_val_mean_deg": best if val_dir is not None else None,
                                "best_epoch": epoch + 1, "partial": epoch + 1 < n_epochs})
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    best_epoch = int(np.argmin([h.get("val_mean_deg", h["train_loss"]) for h in history]) + 1) if history else None
    return {"history": history, "best_val_mean_deg": best if val_dir is not None else None, "best_epoch": best_epoch}


def build_model(tc: LocalizerTrainConfig, class_names: list[str]) -> BAST:
    d = dict(tc.model)
    if class_names:
        d.setdefault("n_classes", len(class_names))
        d["class_names"] = list(class_names)
        if d["n_classes"] != len(class_names):
            raise SpaqInputError(f"model.n_classes={d['n_classes']} but the data has {len(class_names)} classes")
    try:
        cfg = BASTConfig.from_dict(d)
    except (ValueError, TypeError) as e:
        raise SpaqInputError(f"bad model config: {e}") from None
    torch.manual_seed(tc.seed)
    return BAST(cfg)


def train_localizer(tc: LocalizerTrainConfig, out_path, cache_dir=None, log=print) -> dict:
    """Train on synthetic scenes per ``tc.data`` and write a checkpoint at ``out_path``.
    ``cache_dir``: where rendered features are kept between runs (keyed by config; epoch-based recipes only, an
    error with a step-based one)."""
    check_run(steps=tc.steps, epochs=tc.epochs, seed=tc.seed, min_steps=0)
    if tc.steps > 0 and cache_dir is not None:  # not silently ignored
        raise SpaqError(f"a step-based recipe (steps: {tc.steps}) renders fresh scenes every batch and keeps no "
                        f"feature cache: leave out cache_dir (--cache)")
    if tc.steps > 0:  # streaming (the cue-feature recipe): fresh scenes every batch
        return train_cue_localizer(tc, out_path, log=log)
    torch.set_num_threads(max(1, int(tc.threads)))
    spec = SyntheticSpec.from_dict(tc.data)
    classes = classes_of(spec)
    model = build_model(tc, classes)
    cfg = model.cfg

    def data(split, n):
        key = hashlib.sha256(repr((split, n, tc.seed, spec, cfg.sample_rate, cfg.window_samples, cfg.n_fft, cfg.hop,
                                   cfg.n_mels, cfg.fmin, cfg.fmax)).encode()).hexdigest()[:16]
        f = Path(cache_dir) / f"loc_{split}_{key}.pt" if cache_dir else None
        if f is not None and f.is_file():
            d = torch.load(f, weights_only=True)
            return d["feats"], d["dirs"], d["cls"]
        t = time.time()
        x, dirs, cls, _ = synthesize_parallel(spec, n, tc.seed, split, cfg.sample_rate, cfg.window_samples,
                                              workers=tc.workers)
        feats = waveforms_to_features(x, cfg)
        log(f"rendered {n} {split} scenes in {time.time() - t:.0f} s")
        out = feats, torch.as_tensor(dirs), torch.as_tensor(cls)
        if f is not None:
            from ..files import atomic_write

            atomic_write(f, lambda tmp: torch.save({"feats": out[0], "dirs": out[1], "cls": out[2]}, tmp))
        return out

    tf, td, tcl = data("train", tc.n_train)
    vf, vd, vcl = data("val", tc.n_val)
    sampler = None
    if tc.spectral_batch > 0:
        sampler = SpectralSceneSampler(cfg, spec, tc.spectral_bank, tc.seed, log=log)
    info = dict(data="synthetic", synthetic=_jsonable(spec.__dict__), seed=tc.seed, loss=tc.loss,
                n_train=tc.n_train, n_val=tc.n_val, epochs=tc.epochs, stop_epoch=tc.stop_epoch,
                spectral_batch=tc.spectral_batch,
                spectral_bank=tc.spectral_bank if tc.spectral_batch > 0 else 0)

    def on_best(m, partial):  # the best epoch so far is on disk: a run cut off still leaves a model
        if partial.get("partial"):
            save_checkpoint(out_path, m, {**partial, **info})

    summary = _fit(model, tf, td, tcl, vf, vd, vcl, tc, crop_train=False, log=log, sampler=sampler, on_best=on_best)
    summary.update(info)
    summary["sha256"] = save_checkpoint(out_path, model, summary)
    return summary


def _jsonable(d):
    if isinstance(d, dict):
        return {k: _jsonable(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [_jsonable(v) for v in d]
    return d


# --------------------------------------------------------------------------- csv index


@dataclass
class IndexRow:
    path: Path
    cls: str
    azimuth_deg: float
    elevation_deg: float


def read_index(path) -> list[IndexRow]:
    """Read ``input_file,class,azimuth_deg,elevation_deg`` (paths relative to the CSV's folder)."""
    p = Path(path)
    if not p.is_file():
        raise SpaqInputError(f"index not found: {p}")
    need = ["input_file", "class", "azimuth_deg", "elevation_deg"]
    rows = []
    with open(p, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in need if c not in (reader.fieldnames or [])]
        if missing:
            raise SpaqInputError(f"{p}: missing column(s) {', '.join(missing)}; need {','.join(need)}")
        for ln, r in enumerate(reader, start=2):
            try:
                az, el = float(r["azimuth_deg"]), float(r["elevation_deg"])
            except (TypeError, ValueError):
                raise SpaqInputError(f"{p} line {ln}: azimuth_deg/elevation_deg must be numbers") from None
            if not (-180.0 <= az <= 360.0):
                raise SpaqInputError(f"{p} line {ln}: azimuth {az} outside 0..360 / -180..180")
            if not (-90.0 <= el <= 90.0):
                raise SpaqInputError(f"{p} line {ln}: elevation {el} outside -90..90")
            f = Path(r["input_file"])
            f = f if f.is_absolute() else p.parent / f
            rows.append(IndexRow(f, str(r["class"]).strip(), float(wrap_azimuth(az)), el))
    if not rows:
        raise SpaqInputError(f"{p}: no rows")
    return rows


def load_input_features(path: Path, cfg: BASTConfig) -> torch.Tensor:
    """One index entry -> log-mel ``(2, n_mels, T)``: audio (2 channels, resampled to the
    model's rate) or a precomputed ``.npy``/``.pt`` array ``[2, n_mels, T]``."""
    suffix = path.suffix.lower()
    if suffix in (".npy", ".pt"):
        if not path.is_file():
            raise SpaqInputError(f"feature file not found: {path}")
        try:
            arr = np.load(path) if suffix == ".npy" else torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise SpaqInputError(f"cannot read {path}: {' '.join(str(e).split())[:160]}") from None
        t = torch.as_tensor(np.asarray(arr) if suffix == ".npy" else arr, dtype=torch.float32)
        want = list(cfg.feature_shape())[:-1]
        if t.ndim != len(want) + 1 or list(t.shape[:-1]) != want:
            raise SpaqInputError(f"{path}: expected {cfg.features} features [{', '.join(map(str, want))}, T], "
                                 f"got {list(t.shape)}")
        return t
    from ..io import read_audio, resample

    x, sr = read_audio(path)
    if x.shape[0] != 2:
        raise SpaqInputError(f"{path}: the binaural localizer needs 2 channels (left, right), got {x.shape[0]}")
    if sr != cfg.sample_rate:
        x = resample(x, sr, cfg.sample_rate)
    return waveforms_to_features(x[None], cfg)[0]


def train_from_csv(index_csv, out_path, tc: LocalizerTrainConfig | None = None, log=print) -> dict:
    """Train a localiser (direction + class head) on a user index; split by file."""
    tc = tc or LocalizerTrainConfig()
    check_run(epochs=tc.epochs, seed=tc.seed)
    torch.set_num_threads(max(1, int(tc.threads)))
    rows = read_index(index_csv)
    classes = sorted({r.cls for r in rows})
    model = build_model(tc, classes)
    cfg = model.cfg
    files = sorted({str(r.path) for r in rows})
    rng = np.random.default_rng(tc.seed)
    order = rng.permutation(len(files))
    n_val = int(round(tc.val_fraction * len(files))) if len(files) >= 2 else 0
    n_val = min(max(n_val, 1 if len(files) >= 2 and tc.val_fraction > 0 else 0), len(files) - 1)
    val_files = {files[i] for i in order[:n_val]}
    feats = {f: load_input_features(Path(f), cfg) for f in files}

    def pack(sel):
        rs = [r for r in rows if (str(r.path) in val_files) == sel]
        if not rs:
            return None, None, None
        f = [feats[str(r.path)] for r in rs]
        d = torch.as_tensor(sph2cart([r.azimuth_deg for r in rs], [r.elevation_deg for r in rs]), dtype=torch.float32)
        c = torch.as_tensor([classes.index(r.cls) for r in rs], dtype=torch.long)
        return f, d, c

    trf, trd, trc = pack(False)
    vaf, vad, vac = pack(True)
    log(f"{len(files) - n_val} training files, {n_val} validation files, classes: {', '.join(classes)}")
    summary = _fit(model, trf, trd, trc, vaf, vad, vac, tc, crop_train=True, log=log)
    summary.update(data="csv", index=str(index_csv), classes=classes, n_files=len(files),
                   validation_files=sorted(os.path.basename(v) for v in val_files), seed=tc.seed, loss=tc.loss)
    summary["sha256"] = save_checkpoint(out_path, model, summary)
    return summary
