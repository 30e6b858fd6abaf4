"""Reference-free features of one signal for the ``predictor`` metric (pure tensor functions).

``predictor_features(x (B, C, T), sample_rate, kind) -> (B, N_FEATURES)`` float64, in the
order of :data:`FEATURE_NAMES`, grouped (:data:`FEATURE_GROUPS`) so an ablation can drop a
group by columns:

* ``psycho`` (19): the study's psychoacoustic features of the mono mix (binaural: mean of the
  ears; ambisonics: W; mono: the channel): zero-crossing rate, RMS (dBFS), spectral centroid,
  bandwidth, 85 % roll-off (kHz), flatness, 13 MFCC means (40 mel bands, DCT-II) -- numpy/torch,
  no librosa;
* ``band`` (20): band and modulation statistics of the same mix: 12 log-spaced bands (60 Hz to
  22 kHz) of the STFT power, per band the mean level relative to the loudest band (8 merged
  groups), the spread between the 95th and 10th percentile of frame levels (a noise-floor /
  SNR estimate; low, mid, high), the modulation depth (std over frames of the dB level; low,
  mid, high), the highest band within 50 dB of the loudest (bandwidth), spectral flux, crest
  factor and the fraction of samples within 0.1 dB of the peak (clipping);
* ``spatial`` (8): binaural: from :func:`spaq.auditory.binaural_features` on at most
  ``SPATIAL_EXCERPT_S`` (the loudest excerpt, on steps of a tenth of it), the level-weighted mean and spread of the
  interaural coherence, the spread of the ILD over frames, the IPD spread below 1.3 kHz, the
  side/mid level of the excerpt;
  ambisonics: mean/spread of the diffuseness from :func:`spaq.auditory.doa.intensity_vectors`
  and the energy share of the directional (order >= 1) channels; zeros where they do not apply;
* ``format`` (4): one-hot binaural / FOA / HOA (order >= 2) / mono;
* ``temporal`` (6): how fast the sound decays and how its envelope fluctuates, of the same mix,
  at a 5 ms resolution the 42 ms frames above cannot give (what reverberation and added noise
  change first): in 3 band groups (250-1000, 1000-4000, 4000-12000 Hz) of a 10 ms STFT, the
  *decay time* ``-60 / s10`` (seconds; ``s10`` the 10th percentile, over the frames within
  40 dB of the group's loudest (levels floored 50 dB below it), of the level slope in dB/s, a least-squares line over 40 ms):
  the steepest decays of dry sound are offsets (short), a room's are its reverberant tail
  (``RT60``-like) and a noise floor stops them (long); and the *modulation ratio*: the
  envelope's modulation energy at 2-10 Hz (syllables, notes) over that at 10-40 Hz, in dB
  (smoothed by reverberation: higher; filled by noise: lower; after Falk et al.'s SRMR).
  Appended after ``format`` so that the column indices of checkpoints made before it stay valid.
* ``edge`` (3): where the spectrum ends and how abruptly, of the same mix (what a low-pass filter or
  a codec's bandwidth limit changes, and a listener hears as muffled without a reference): the
  long-term spectrum over the active frames above, in 1/6-octave bands from 250 Hz to 0.45 times the
  sample rate, each band's *upper envelope* (its loudest bin, so a line spectrum reads as its
  partials) floored 80 dB below the loudest band; ``bw40_oct``: where the envelope last falls below
  (loudest - 40 dB), in octaves re 1 kHz, interpolated between bands (a continuous ``top_band``);
  ``edge_drop_db``: the steepest one-octave fall of the envelope (a filter's cut is steeper than most
  sources' own roll-off) and ``edge_oct`` where it starts (octaves re 1 kHz). Appended after
  ``temporal``, as ``temporal`` was; the shipped ``predictor_v1`` uses it (``fit.groups``;
  ``benchmarks/try_predictor_lowpass.py`` measured it).

Level: with ``level_dbfs`` (a checkpoint's ``input_level_dbfs``, a recipe's top-level option) the
whole input is first scaled by one gain so that its mono mix's *active level*
(:func:`active_level_db`: the mean power of its 43 ms frames within 40 dB of the loudest) is that
(-26 dBFS is the P.56 practice of speech-quality models), so that the features, and the scores made
from them, do not depend on the digital gain of a file; ``rms_db`` is then the level of the whole
input relative to its active level (how much of it is pause). The spatial features are ratios (one
gain for every channel). By default (None; the shipped ``predictor_v1``) they are computed at the
level given.

Ambisonic input read through its binaural decode (``ambisonic_read="decode"``; the default
``"intensity"`` is the reading above): the ``spatial`` group is the binaural one of
:func:`spaq.spatial.decoders.decode_binaural_effective`'s rendering (interaural coherence, ILD and
IPD spread, side/mid level; the diffuseness and directional-share slots zero), and the monaural
groups of third- and higher-order input are read from the ears' mean of that rendering (first-order
input keeps W, the signal the mono rows of the recipe are). A standing wave in a short room carries
little active intensity, so its diffuseness reads as a long room's, while its rendering is a coherent
tone; the decode reads what a listener hears (``benchmarks/results/predictor_seeds.md``, forty-fifth
and forty-sixth sessions). A checkpoint's ``ambisonic_read`` names the reading its network was fitted on.

Silence (every sample below ``SILENCE_DBFS``) gives finite features; the metric maps it to a
defined answer itself.
"""
from __future__ import annotations

import functools
import math

import numpy as np
import torch

from ...auditory.frontend import AUDIBLE_HZ  # the lower edge of hearing: power below it is not counted as sound
from ...models.predictor import AMBISONIC_READS  # how ambisonic input is read (module docstring)
from ...threads import in_background, intra_op_threads

__all__ = ["FEATURE_NAMES", "FEATURE_GROUPS", "N_FEATURES", "predictor_features", "mono_mix", "FORMAT_KINDS",
           "AMBISONIC_READS",
           "SPATIAL_EXCERPT_S", "SILENCE_DBFS", "signal_kind", "active_level_db", "rms_level_db", "audible_level_db",
           "AUDIBLE_HZ", "HUM_HZ"]

N_FFT = 2048
HOP = 2048
N_MELS = 40
N_MFCC = 13
SPATIAL_EXCERPT_S = 0.5
SILENCE_DBFS = -90.0
HUM_HZ = 50.0  # below it: hum and rumble, which the training content never was
ACTIVE_RANGE_DB = 40.0    # frames within this of the loudest count as active
FORMAT_KINDS = ("binaural", "foa", "hoa", "mono")
_EPS = 1e-12

PSYCHO = ["zcr", "rms_db", "centroid_khz", "bandwidth_khz", "rolloff_khz", "flatness"] + \
         [f"mfcc{i}" for i in range(N_MFCC)]
BAND = [f"shape{i}" for i in range(8)] + ["range_low", "range_mid", "range_high", "mod_low", "mod_mid", "mod_high",
                                          "top_band", "flux", "crest_db", "clip_fraction"]
SPATIAL = ["ic_mean", "ic_spread", "ild_spread_db", "ipd_spread", "diffuseness_mean", "diffuseness_spread",
           "directional_share", "spatial_level_db"]
FORMAT = [f"is_{k}" for k in FORMAT_KINDS]
TEMPORAL = [f"decay_s_{g}" for g in ("low", "mid", "high")] + [f"modratio_db_{g}" for g in ("low", "mid", "high")]
EDGE = ["bw40_oct", "edge_drop_db", "edge_oct"]
FEATURE_GROUPS = {"psycho": PSYCHO, "band": BAND, "spatial": SPATIAL, "format": FORMAT, "temporal": TEMPORAL,
                  "edge": EDGE}
FEATURE_NAMES = tuple(PSYCHO + BAND + SPATIAL + FORMAT + TEMPORAL + EDGE)
N_FEATURES = len(FEATURE_NAMES)

_CACHE: dict = {}


def signal_kind(n_channels: int, kind: str | None = None) -> str:
    """``binaural`` / ``foa`` / ``hoa`` / ``mono`` from the channel count (and the format kind
    the caller detected: 2 channels are binaural, 4 FOA, 9/16/25... HOA, 1 mono)."""
    if n_channels == 1:
        return "mono"
    if n_channels == 2 and kind in (None, "binaural"):
        return "binaural"
    order = int(round(math.sqrt(n_channels))) - 1
    if (order + 1) ** 2 == n_channels and order >= 1:
        return "foa" if order == 1 else "hoa"
    raise ValueError(f"{n_channels} channels are neither mono, binaural nor ambisonics")


def mono_mix(x: torch.Tensor, kind: str) -> torch.Tensor:
    """``(B, C, T)`` -> ``(B, T)``: the ears' mean (binaural), W (ambisonics), the channel (mono)."""
    if kind == "binaural":
        return x.mean(dim=-2)
    return x[..., 0, :]


def _tables(sample_rate: int, dtype, device):
    key = (sample_rate, dtype, str(device))
    if key not in _CACHE:
        nb = N_FFT // 2 + 1
        f = np.linspace(0, sample_rate / 2, nb)
        mel = lambda h: 2595.0 * np.log10(1.0 + h / 700.0)  # noqa: E731
        imel = lambda m: 700.0 * (10 ** (m / 2595.0) - 1.0)  # noqa: E731
        pts = imel(np.linspace(mel(20.0), mel(min(20000.0, sample_rate / 2)), N_MELS + 2))
        fb = np.zeros((N_MELS, nb))
        for i in range(N_MELS):
            lo, c, hi = pts[i], pts[i + 1], pts[i + 2]
            fb[i] = np.clip(np.minimum((f - lo) / (c - lo), (hi - f) / (hi - c)), 0, None)
        k = np.arange(N_MELS)
        dct = np.cos(np.pi / N_MELS * (k[None, :] + 0.5) * np.arange(N_MFCC)[:, None]) * math.sqrt(2.0 / N_MELS)
        dct[0] /= math.sqrt(2.0)
        edges = np.geomspace(60.0, min(22000.0, sample_rate / 2), 13)
        bands = np.stack([((f >= edges[i]) & (f < edges[i + 1])).astype(float) for i in range(12)])
        bands /= np.maximum(bands.sum(1, keepdims=True), 1)
        t = lambda a: torch.as_tensor(a, dtype=dtype, device=device)  # noqa: E731
        # the edge group's 1/6-octave bands (250 Hz .. 0.45 sr): bin membership and centres (octaves re 1 kHz)
        e6 = 250.0 * 2 ** (np.arange(0, 64) / 6)
        e6 = e6[e6 <= 0.45 * sample_rate]
        member = np.stack([(f >= lo) & (f < hi) for lo, hi in zip(e6[:-1], e6[1:])])
        keep = member.any(1)
        centres = np.log2(np.sqrt(e6[:-1] * e6[1:])[keep] / 1000.0)
        _CACHE[key] = (t(f), t(fb), t(dct), t(bands), torch.hann_window(N_FFT, dtype=dtype, device=device),
                       torch.as_tensor(member[keep], device=device), t(centres))
    return _CACHE[key]


def _spectrum(m: torch.Tensor, win: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` -> power ``(B, bins, frames)`` (at least one frame: short input is zero-padded)."""
    if m.shape[-1] < N_FFT:
        m = torch.nn.functional.pad(m, (0, N_FFT - m.shape[-1]))
    s = torch.stft(m, N_FFT, HOP, window=win, center=False, return_complex=True)
    return s.real ** 2 + s.imag ** 2


def _psycho_band(m: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(B, T)`` mono mix -> the ``psycho``, ``band`` and ``edge`` groups (module docstring)."""
    f, fb, dct, bands, win, member, centres = _tables(sample_rate, m.dtype, m.device)
    p = _spectrum(m, win)  # (B, K, N)
    frame_e = p.sum(1)  # (B, N)
    active = frame_e > frame_e.amax(-1, keepdim=True) * 1e-6  # frames within 60 dB of the loudest
    w = active.to(p.dtype)
    wn = w / w.sum(-1, keepdim=True).clamp_min(1)

    def tmean(v):  # mean over active frames
        return (v * (wn if v.dim() == 2 else wn[:, None, :])).sum(-1)

    tot = frame_e.clamp_min(_EPS)
    cen = (p * f[:, None]).sum(1) / tot
    bw = torch.sqrt(((f[:, None] - cen[:, None, :]) ** 2 * p).sum(1) / tot)
    cum = torch.cumsum(p, 1) / tot[:, None, :]
    roll = f[torch.clamp((cum < 0.85).sum(1), max=len(f) - 1)]
    lp = torch.log(p + _EPS)
    flat = torch.exp(lp.mean(1)) / (p.mean(1) + _EPS)
    melp = torch.einsum("mk,bkn->bmn", fb, p)
    mfcc = torch.einsum("cm,bmn->bcn", dct, 10 * torch.log10(melp + 1e-10))
    sign = torch.sign(m)
    zcr = (sign[:, 1:] != sign[:, :-1]).to(m.dtype).mean(-1)
    rms_db = rms_level_db(m)
    psycho = torch.cat([torch.stack([zcr, rms_db, tmean(cen) / 1000, tmean(bw) / 1000, tmean(roll) / 1000,
                                     tmean(flat)], -1), tmean(mfcc)], -1)
    # band statistics
    bl = 10 * torch.log10(torch.einsum("jk,bkn->bjn", bands, p) + 1e-10)  # (B, 12, N)
    mean_lv = 10 * torch.log10(tmean(10 ** (bl / 10)) + 1e-10)  # (B, 12) energy mean over active frames
    rel = mean_lv - mean_lv.amax(-1, keepdim=True)
    shape = torch.stack([rel[:, 2 * i:2 * i + 2].mean(-1) if i < 4 else rel[:, 8 + (i - 4)] for i in range(8)], -1)
    shape = shape.clamp_min(-80.0)
    n_act = active.sum(-1)
    q = []
    for b in range(bl.shape[0]):  # percentiles over the active frames of each item
        v = bl[b][:, active[b]] if int(n_act[b]) > 0 else bl[b]
        q.append(torch.stack([torch.quantile(v, 0.95, dim=-1) - torch.quantile(v, 0.10, dim=-1),
                              v.std(-1, unbiased=False)], 0))
    q = torch.stack(q, 0)  # (B, 2, 12)
    grp = [slice(0, 4), slice(4, 8), slice(8, 12)]
    ranges = torch.stack([q[:, 0, g].mean(-1) for g in grp], -1)
    mods = torch.stack([q[:, 1, g].mean(-1) for g in grp], -1)
    top = (rel > -50.0).to(m.dtype)
    top_band = (top * torch.arange(12, dtype=m.dtype, device=m.device)).amax(-1)
    lpn = p / tot[:, None, :]
    flux = tmean(torch.nn.functional.pad(torch.sqrt(((lpn[..., 1:] - lpn[..., :-1]) ** 2).sum(1)), (1, 0)))
    peak = m.abs().amax(-1)
    crest = 20 * torch.log10((peak + 1e-10) / torch.sqrt(torch.mean(m ** 2, -1) + 1e-20))
    clip = (m.abs() >= peak[:, None] * 10 ** (-0.1 / 20)).to(m.dtype).mean(-1) * 100.0
    band = torch.cat([shape, ranges, mods, torch.stack([top_band, flux * 10, crest, clip], -1)], -1)
    return psycho, band, _edge(tmean(p), member, centres)


_EDGE_FLOOR_DB = 80.0
_EDGE_BW_DB = 40.0


def _edge(lt: torch.Tensor, member: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Long-term power spectrum ``lt (B, K)`` -> the ``edge`` group ``(B, 3)`` (module docstring);
    ``member (J, K)``: the bins of each 1/6-octave band, ``centres (J,)``: their centres in octaves re 1 kHz."""
    env = (lt[:, None, :] * member.to(lt.dtype)).amax(-1)  # (B, J): each band's loudest bin (powers >= 0)
    lv = 10 * torch.log10(env.to(torch.float64) + 1e-20)
    lv = torch.maximum(lv, lv.amax(-1, keepdim=True) - _EDGE_FLOOR_DB)
    rel = lv - lv.amax(-1, keepdim=True)
    c = centres.to(torch.float64)
    nb = rel.shape[-1]
    above = rel >= -_EDGE_BW_DB
    j = (above.to(torch.float64) * torch.arange(nb, dtype=torch.float64, device=lt.device)).amax(-1).long()  # (B,)
    jn = torch.clamp(j + 1, max=nb - 1)
    rj, rn = rel.gather(-1, j[:, None])[:, 0], rel.gather(-1, jn[:, None])[:, 0]
    frac = ((rj + _EDGE_BW_DB) / torch.clamp(rj - rn, min=1e-9)).clamp(max=1.0)
    bw = c[j] + torch.where(jn > j, frac / 6, torch.zeros_like(frac))
    if nb > 6:
        drop = lv[:, :-6] - lv[:, 6:]
        k = torch.argmax(drop, -1)
        edge_drop, edge_at = drop.gather(-1, k[:, None])[:, 0], c[k]
    else:  # a rate too low for a one-octave span above 250 Hz
        edge_drop, edge_at = torch.zeros_like(bw), c[-1].expand_as(bw)
    return torch.stack([bw, edge_drop, edge_at], -1)


_T_GROUPS = ((250.0, 1000.0), (1000.0, 4000.0), (4000.0, 12000.0))
_T_SLOPE_S = 0.04     # least-squares slope over this span
_T_RANGE_DB = 40.0    # frames within this of the group's loudest count
_T_FLOOR_DB = 50.0    # levels floored this far below the group's loudest frame


def _temporal(m: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """``(B, T)`` mono mix -> ``(B, 6)``: decay time (s) and modulation ratio (dB) per band group
    (see the module docstring)."""
    n_fft = 1 << int(math.ceil(math.log2(0.01 * sample_rate)))  # ~10 ms window
    hop = n_fft // 2
    fr = sample_rate / hop  # frames per second
    if m.shape[-1] < 2 * n_fft:
        m = torch.nn.functional.pad(m, (0, 2 * n_fft - m.shape[-1]))
    win = torch.hann_window(n_fft, dtype=m.dtype, device=m.device)
    s = torch.stft(m, n_fft, hop, window=win, center=False, return_complex=True)
    p = s.real ** 2 + s.imag ** 2  # (B, K, N)
    f = torch.linspace(0, sample_rate / 2, p.shape[-2], dtype=m.dtype, device=m.device)
    n = p.shape[-1]
    k = max(3, int(round(_T_SLOPE_S * fr)))
    tt = torch.arange(k, dtype=m.dtype, device=m.device) - (k - 1) / 2
    decay, modr = [], []
    for lo, hi in _T_GROUPS:
        sel = (f >= lo) & (f < min(hi, 0.45 * sample_rate))
        if not bool(sel.any()):
            z = torch.zeros(m.shape[0], dtype=m.dtype, device=m.device)
            decay.append(z)
            modr.append(z)
            continue
        e = p[:, sel, :].sum(1)  # (B, N) band power envelope
        lv = 10 * torch.log10(e + 1e-12)
        # a floor 50 dB below the group's loudest frame: digital silence between notes would
        # otherwise make every offset fall 100 dB (a floor any recording has)
        lv = torch.maximum(lv, lv.amax(-1, keepdim=True) - _T_FLOOR_DB)
        if n >= k:
            win_lv = lv.unfold(-1, k, 1)  # (B, N-k+1, k)
            slope = (win_lv * tt).sum(-1) / (tt * tt).sum() * fr  # dB/s
            mid_lv = win_lv.mean(-1)
        else:
            slope = torch.zeros(m.shape[0], 1, dtype=m.dtype, device=m.device)
            mid_lv = lv.mean(-1, keepdim=True)
        active = mid_lv >= mid_lv.amax(-1, keepdim=True) - _T_RANGE_DB
        s10 = torch.stack([torch.quantile(slope[b][active[b]], 0.10) for b in range(m.shape[0])])
        decay.append((60.0 / torch.clamp(-s10, min=20.0)).clamp(max=3.0))  # 3 s: no decay seen
        env = e / e.mean(-1, keepdim=True).clamp_min(1e-20)
        spec = torch.fft.rfft(env - env.mean(-1, keepdim=True), dim=-1)
        fm = torch.fft.rfftfreq(n, d=1.0 / fr).to(m.dtype)
        pm = spec.real ** 2 + spec.imag ** 2
        low = pm[:, (fm >= 2.0) & (fm < 10.0)].sum(-1)
        high = pm[:, (fm >= 10.0) & (fm < 40.0)].sum(-1)
        modr.append((10 * torch.log10((low + 1e-12) / (high + 1e-12))).clamp(-30.0, 30.0))
    return torch.stack(decay + modr, -1)


def _loudest(x: torch.Tensor, n: int) -> torch.Tensor:
    """The loudest ``n``-sample excerpt of each item (``(B, C, T)``, starts on steps of ``n // 10``)."""
    t = x.shape[-1]
    if t <= n:
        return x
    step = max(1, n // 10)
    y = x[..., :t - t % step].to(torch.float32)
    blocks = (y * y).sum(-2).reshape(x.shape[0], -1, step).sum(-1).to(torch.float64)  # (B, t // step)
    k = n // step
    c = torch.nn.functional.pad(torch.cumsum(blocks, -1), (1, 0))
    e = c[:, k:] - c[:, :-k]  # energy of each window of k blocks (B, starts)
    s = torch.argmax(e, -1) * step
    return torch.stack([x[i, :, int(s[i]):int(s[i]) + n] for i in range(x.shape[0])])


def _spatial_binaural(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    from ...auditory.binaural_features import binaural_features, feature_frontend

    fe = feature_frontend(sample_rate)
    ex = _loudest(x, int(SPATIAL_EXCERPT_S * sample_rate)).to(torch.float64)
    # one item at a time: the fast front-end picks its full-rate bands per batch, so a batch
    # would make an item's features depend on its neighbours
    out = [binaural_features(ex[i:i + 1].to(torch.float64), fe) for i in range(ex.shape[0])]
    feats = torch.cat([o[0] for o in out]).to(torch.float64)
    level = torch.cat([o[1] for o in out]).to(torch.float64)
    lv = level.amax(-3)  # (B, F, nf): the louder ear
    w = torch.clamp(lv - (lv.amax(dim=(-2, -1), keepdim=True) - 50.0), min=0.0)  # within 50 dB of the loudest
    w = w / w.sum(dim=(-2, -1), keepdim=True).clamp_min(_EPS)
    ild, cos, sin, ic = feats[..., 0, :, :], feats[..., 1, :, :], feats[..., 2, :, :], feats[..., 3, :, :]
    ic_mean = (w * ic).sum((-2, -1))
    ic_spread = torch.sqrt((w * (ic - ic_mean[:, None, None]) ** 2).sum((-2, -1)))
    wf = w.sum(-1, keepdim=True).clamp_min(_EPS)
    ild_m = (w * ild).sum(-1, keepdim=True) / wf
    ild_spread = torch.sqrt(((w * (ild - ild_m) ** 2).sum(-1) / wf[..., 0]) * wf[..., 0]).sum(-1)
    fc = fe.center_frequencies_hz.to(x.device)
    low = (fc < 1300.0).to(torch.float64)[None, :, None]
    wl = w * low
    c = (wl * cos).sum((-2, -1)) / wl.sum((-2, -1)).clamp_min(_EPS)
    s = (wl * sin).sum((-2, -1)) / wl.sum((-2, -1)).clamp_min(_EPS)
    ipd_spread = 1.0 - torch.sqrt(c ** 2 + s ** 2)
    side = ex[..., 0, :] - ex[..., 1, :]
    mid = ex[..., 0, :] + ex[..., 1, :]
    side_db = 10 * torch.log10((side ** 2).mean(-1) + 1e-10) - 10 * torch.log10((mid ** 2).mean(-1) + 1e-10)
    z = torch.zeros_like(ic_mean)
    return torch.stack([ic_mean, ic_spread, ild_spread, ipd_spread, z, z, z, side_db.clamp(-60, 20)], -1)


def _spatial_ambisonics(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    from ...auditory.doa import intensity_vectors

    _, e, psi, _ = intensity_vectors(x[..., :4, :], sample_rate, fmax=min(16000.0, sample_rate / 2))
    w = e / e.sum((-2, -1), keepdim=True).clamp_min(_EPS)
    d_mean = (w * psi).sum((-2, -1))
    d_spread = torch.sqrt((w * (psi - d_mean[:, None, None]) ** 2).sum((-2, -1)))
    pw = (x ** 2).mean(-1)  # (B, C)
    share = pw[:, 1:].sum(-1) / pw.sum(-1).clamp_min(_EPS)
    lvl = 10 * torch.log10(pw[:, 1:4].sum(-1) + 1e-10) - 10 * torch.log10(pw[:, 0] + 1e-10)
    z = torch.zeros_like(d_mean)
    return torch.stack([z, z, z, z, d_mean, d_spread, share, lvl.clamp(-60, 20)], -1)


def rms_level_db(m: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` mono mix -> ``(B,)`` RMS level in dBFS (the ``rms_db`` feature; -100 for silence)."""
    return 10 * torch.log10(torch.mean(m ** 2, -1) + 1e-10)


def audible_level_db(x: torch.Tensor, sample_rate: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``x (B, C, T)`` -> ``(level (B,), hum_share (B,))``: the level in dBFS (mean over channels) of the power
    above :data:`AUDIBLE_HZ`, and the share of that power below :data:`HUM_HZ`. The part below
    :data:`AUDIBLE_HZ` is read from the spectrum of ~3 kHz block means (an exact sum over DFT bins, cheap at
    that rate) and subtracted from the total: a DC offset or an infrasonic tone is not sound. What is left
    more than 60 dB below the total is within the estimate's precision and reads as none (level ~ -3000)."""
    B, C, T = x.shape
    xs = x if x.dtype in (torch.float32, torch.float64) else x.to(torch.float32)
    total = torch.linalg.vector_norm(xs.reshape(B, -1), dim=-1).to(torch.float64) ** 2 / max(1, C * T)
    q = max(1, int(sample_rate) // 3000)
    n = T // q
    if n < 2:
        return 10 * torch.log10(total + 1e-300), torch.zeros_like(total)
    d = xs[..., : n * q].reshape(B, C, n, q).mean(-1).to(torch.float64)  # block means: below ~1 kHz as it is
    win = _bh_window(n)  # sidelobes below -92 dB: a tone does not leak across 20 Hz
    p = torch.fft.rfft(d * win, dim=-1).abs() ** 2
    p[..., 1:(n + 1) // 2] *= 2  # the positive and negative frequency of every bin but DC and Nyquist
    p = p * ((d * d).mean(-1, keepdim=True) / p.sum(-1, keepdim=True).clamp_min(1e-300))  # scaled to d's own power
    k = int(math.ceil(HUM_HZ * n * q / float(sample_rate))) + 1  # only the bins below HUM_HZ are needed from here
    p, f = p[..., :k], torch.arange(k, dtype=torch.float64) * (float(sample_rate) / q) / n
    w = math.pi * f / float(sample_rate)  # the block mean's gain (a q-sample boxcar), divided out
    gain = torch.where(w > 0, torch.sin(q * w) / (q * torch.sin(w).clamp_min(1e-300)), torch.ones_like(w))
    p = p / (gain * gain).clamp_min(1e-12)
    low = p[..., f < AUDIBLE_HZ].sum(-1).mean(-1)
    hum = p[..., (f >= AUDIBLE_HZ) & (f < HUM_HZ)].sum(-1).mean(-1)
    audible = (total - low).clamp_min(0.0)
    audible = torch.where(audible < 1e-6 * total, torch.zeros_like(audible), audible)  # below the estimate's precision
    return 10 * torch.log10(audible + 1e-300), (hum / audible.clamp_min(1e-300)).clamp(0.0, 1.0)


@functools.lru_cache(maxsize=8)
def _bh_window(n: int) -> torch.Tensor:
    from scipy.signal.windows import blackmanharris

    return torch.from_numpy(blackmanharris(n, sym=True))


def active_level_db(m: torch.Tensor) -> torch.Tensor:
    """``(B, T)`` -> ``(B,)`` float64 active level in dBFS: the mean power of the ``N_FFT``-sample
    frames (43 ms at 48 kHz; one frame when shorter; a last partial frame is left out) whose power
    is within ``ACTIVE_RANGE_DB`` of the loudest frame's (-inf for digital silence)."""
    m = m.to(torch.float64)
    n = max(1, m.shape[-1] // N_FFT)
    frames = m[..., : n * N_FFT].reshape(m.shape[0], n, -1) if m.shape[-1] >= N_FFT else m[:, None, :]
    pw = (frames * frames).mean(-1)  # (B, frames)
    act = pw >= pw.amax(-1, keepdim=True) * 10 ** (-ACTIVE_RANGE_DB / 10)
    mean = (pw * act).sum(-1) / act.sum(-1).clamp_min(1)
    return 10 * torch.log10(mean)


def _decode(x: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Ambisonics ``(B, C, T)`` -> its binaural rendering ``(B, 2, T)`` float64 (the shared decoder,
    each item at its effective order; the filter's tail cut)."""
    from ...spatial.decoders import decode_binaural_effective

    return decode_binaural_effective(x.to(torch.float64), sample_rate)[..., :x.shape[-1]]


def _mono_groups(m: torch.Tensor, sample_rate: int) -> tuple:
    """The mono mix's ``psycho``, ``band``, ``edge`` and ``temporal`` groups, float64 (module docstring)."""
    psycho, band, edge = (v.to(torch.float64) for v in _psycho_band(m, sample_rate))
    return psycho, band, edge, _temporal(m, sample_rate).to(torch.float64)


def predictor_features(x: torch.Tensor, sample_rate: int, kind: str,
                       level_dbfs: float | None = None, ambisonic_read: str = "intensity") -> torch.Tensor:
    """``x (B, C, T)`` at ``sample_rate`` of one ``kind`` (:data:`FORMAT_KINDS`) -> features
    ``(B, N_FEATURES)`` float64 (see the module docstring). ``level_dbfs``: each item is first
    scaled (one gain for all its channels) so that its mono mix's active level is this (digital
    silence is left as it is); ``None``: features at the level given. ``ambisonic_read``
    (:data:`AMBISONIC_READS`): how FOA / HOA input is read (W and the intensity vectors, or the
    binaural decode); other kinds ignore it."""
    if ambisonic_read not in AMBISONIC_READS:
        raise ValueError(f"ambisonic_read {ambisonic_read!r}: expected one of {', '.join(AMBISONIC_READS)}")
    if level_dbfs is not None:
        lv = active_level_db(mono_mix(x, kind))
        gain = torch.where(torch.isfinite(lv), 10 ** ((float(level_dbfs) - lv) / 20), torch.ones_like(lv))
        x = x * gain.to(x.dtype)[:, None, None]
    decoded = _decode(x, sample_rate) if kind in ("foa", "hoa") and ambisonic_read == "decode" else None
    # the spectral statistics in float32 (half the cost; 1e-6 relative, far below what they resolve)
    m = (mono_mix(decoded.to(torch.float32), "binaural") if decoded is not None and kind == "hoa"
         else mono_mix(x.to(torch.float32), kind))  # third order: the rendering's ears, as binaural input's
    # where two threads are allowed, the spectral and temporal groups run on the second one while this one computes
    # the spatial group, whose front-end band groups that thread joins in once it is free (spaq.threads.in_background,
    # BandPlan.map); each part on one intra-op thread, so the values are those of one thread
    mono = in_background(_mono_groups, m, sample_rate)
    with intra_op_threads(1):
        if kind == "binaural":
            spatial = _spatial_binaural(x, sample_rate)
        elif decoded is not None:
            spatial = _spatial_binaural(decoded, sample_rate)
        elif kind in ("foa", "hoa"):
            spatial = _spatial_ambisonics(x.to(torch.float64), sample_rate)
        else:
            spatial = torch.zeros(x.shape[0], len(SPATIAL), dtype=torch.float64, device=x.device)
    psycho, band, edge, temporal = mono()
    onehot = torch.zeros(x.shape[0], len(FORMAT_KINDS), dtype=torch.float64, device=x.device)
    onehot[:, FORMAT_KINDS.index(kind)] = 1.0
    out = torch.cat([psycho, band, spatial, onehot, temporal, edge], -1)
    return torch.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
