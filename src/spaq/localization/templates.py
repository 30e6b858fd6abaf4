"""Training-free binaural localisation by template matching (the same-head upper bound).

In the spirit of May et al. (2011, GMMs of ILD/ITD per band) and Baumgartner et al. (2014,
spectral-shape templates): the cues of the signal (:func:`spaq.auditory.binaural_features`:
ILD, IPD, coherence and each ear's spectral shape per ERB band and 40 ms frame) are compared
with the same cues of every direction of an HRTF set, computed once per set from frozen white
noise rendered through its measured HRIRs (cached on disk with :func:`spaq.cache.cached_array`,
keyed by the set's sha256).

Per frame ``f`` and direction ``d`` the distance is a weighted sum of squares over bands ``b``
(a Gaussian log-likelihood with fixed variances)::

    D[f, d] = sum_b w[f, b] * ( (ILD - ILD_d)^2 / s_ild^2 + |u - u_d|^2 / s_ipd^2
                                + sum_ears (S - S_d)^2 / s_shape^2 )

with ``u`` the IPD unit vector and ``S`` the spectral shape with a smooth (quadratic over the
ERB-band index) trend removed per ear and frame: the unknown source spectrum is assumed smooth,
so only the head's spectral detail is compared (comparing only from 2.7 kHz up was tried:
benchmarks/results/localizer_v2.md). ``w[f, b]``: the interaural coherence to the
power ``coherence_power`` (frames and bands dominated by one direct sound count more) times an
activity mask (band level within ``active_range_db`` of that band's loudest frame and above the
hearing threshold).

Heads: every head of ``hrtf`` (default: the KU100 and SONICOM subject 1) is matched, and where the
direct sound dominates (coherence at least ``drr_coherence``) also each head's templates scaled in
frequency by :data:`HEAD_SCALES` (:func:`scale_variant`; another listener's transfer functions
resemble a set's own scaled by a common factor, larger heads and pinnae lower); the candidate whose
best direction has the smallest distance summed over the signal wins (:func:`summed_distances`: two
matrix-vector products per candidate, so the scales cost almost nothing). Held-out unseen SONICOM
subject: median 10.3 -> 9.8 deg, mean 18.2 -> 16.6 deg, front-back 7.2 % unchanged (9.6 deg since the
thirty-seventh session's room settings and their front-end).

Rooms: where the direct sound does not dominate (power-weighted interaural coherence of the
active units below ``drr_coherence`` = 0.85; reverberant rooms have a median of 0.70 on development
scenes, anechoic signals a 10th percentile of 0.87-0.93), the templates are also matched as heard in a
diffuse reverberant field at direct-to-reverberant ratios of 6 and 0 dB (:func:`drr_variant`: each
ear's band power plus the set's diffuse-field power at that ratio, which compresses the ILD and
pulls the spectral shapes towards the diffuse-field shape), and the variant that fits best is used, as heads are chosen
(held-out KU100 rooms: median 30.6 -> 22.4 deg, front-back 33 -> 26 %; anechoic sets unchanged).
One source there is also observed with :data:`REVERBERANT` (10 ms frames, coherence^4: the onset weighting
sees the direct sound's rise before the first reflections fill the frame; held-out rooms 22.9 -> 18.2 deg),
from the same pass of the bands as the 20 ms cues (:data:`OBSERVATION_FRONTEND`'s ``divisor_ms``).

Dereverberation (one source, :data:`DEREVERB`): where the bands up to 1.5 kHz are less coherent than 0.95
(the head shadows little there, so one direct sound keeps both ears coherent from any direction, far-lateral
ones included; reverberation does not), the late reverberation is removed by weighted prediction error
(:func:`spaq.dsp.wpe_dereverberate`: in each STFT bin, each frame minus its prediction from the frames
10.7-181 ms before, one multichannel filter for both ears, so the interaural cues of the direct sound stay)
and the cues are observed again. That gate also decides the room settings and reverberant templates for one
source. The exact-head stage still reads the signal as given. Held-out KU100 rooms: median 18.2 -> 9.9 deg; 8.9
deg with the room settings retuned after it (:data:`REVERBERANT`); 7.8 deg with a 32-tap filter
(benchmarks/results/localizer_v2.md, forty-second session).

One source: the direction that minimises the distance summed over all frames -- unless the
exact-head stage recognises the signal (:func:`exact_head_fit`: the interaural transfer function and
the ear spectra at 4096-point DFT resolution against each head's own HRTFs; used where its interaural
misfit is below ``EXACT["max_fit"]``, i.e. the set's own head at one of its measured directions; held-out
KU100: front-back 3 -> 0 %, horizontal azimuth MAE 1.7 -> 0.014 deg, tonal sources included). Several
sources (:data:`MULTI_SOURCE` settings): every unit (frame x group of 2 bands) votes for its best
direction; the vote histogram, smoothed over ``vote_cap_deg``, gives peaks at least
``min_separation_deg`` apart, each refined by the units that voted near it; then the directions
are fitted jointly (each unit explained by the source that fits it best, coordinate descent on
the summed distance), so a source that dominates few units is not outvoted by a continuous one --
unless the exact-head votes answer (:func:`exact_votes`: every bin of a 2048-point STFT votes, by its
amplitude, for the directions of each head whose interaural transfer function it matches, each found
source cancelled in every bin before the next is voted for; used where the found directions match
enough bins sharply; held-out two sources 60 deg apart, both within 10 deg: 68 -> 93 %).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import SpaqInputError
from ..threads import intra_op_threads

__all__ = ["TemplateSet", "template_set", "localize_templates", "subgrid_direction", "TEMPLATE_VERSION"]

TEMPLATE_VERSION = 1
ANALYSIS_RATE = 48000
#: frequency scalings of each head's templates matched beside it (:func:`scale_variant`): another
#: listener's HRTFs resemble a set's own scaled in frequency (Middlebrooks 1999: a larger head and
#: pinnae move the same spectral features down by a common factor)
HEAD_SCALES = (0.92, 0.96, 1.0, 1.04, 1.08)
#: one source where the direct sound dominates and the band templates answer (not the exact-head stage): the
#: answer is refined between the set's measured directions -- the minimum of a quadratic fitted to the summed
#: distances of the directions within this many grid spacings (the set's median nearest-neighbour distance,
#: :meth:`TemplateSet.spacing_deg`: 4.1 deg KU100, 4.3 deg SONICOM) of the best one, at most one spacing away
#: (:func:`subgrid_direction`), never across the frontal plane (front and back stay the grid search's decision);
#: ``subgrid_spacings=0`` (DEFAULTS): off, the answer stays a measured direction. Forty-third session,
#: development seeds 777-781 (sonicom-2, 100 items each): within 8 deg 0.53 / 0.40 / 0.41 / 0.44 / 0.47 -> 0.56 /
#: 0.44 / 0.46 / 0.50 / 0.51, means unchanged (radii of 10-16 deg compared: 12-14 best; a shift of at most 1 or 1.5
#: spacings alike); in rooms it did not help (KU100 rooms: medians better on 2 of 5 seeds, worse on 2), so it is
#: not used there. Sources between the measured directions gain most: KU100 directions off a grid of every 8th
#: one (tests/test_localize_templates.py), mean error 12.5 -> 9.7 deg
SUBGRID_SPACINGS = 3.0
#: the band templates compare each ear's spectral shape only in the bands centred at or above this (Hz); 0: every band
#: (the interaural terms always keep every band). Tried in the fiftieth session at 2.5 kHz (the pinna's bands only:
#: below, a head's and torso's shape differs from head to head) and not made the default: on the development seeds
#: 777-781 (sonicom-2, 150 items each) front-back fell 16.7 -> 13.6 % on average and every median by 0.5-2.3 deg,
#: but on held-out content it did not carry over (the held-out seed 160016: 7.3 deg / 6.2 % -> 7.4 deg / 10.3 %;
#: real speech, 3 x 120 items: front-back 14.1 -> 13.8 %, medians 7.0 / 8.6 / 7.1 -> 6.6 / 7.6 / 7.4 deg), while
#: the MIT KEMAR gained (real speech medians 33.3 / 20.4 / 28.4 -> 23.9 / 20.3 / 25.9 deg).
#: benchmarks/try_shape_min_hz.py; benchmarks/results/localizer_v2.md ("Fiftieth session")
SHAPE_MIN_HZ = 0.0
DEFAULTS = dict(sigma_ild_db=1.5, sigma_ipd=0.35, sigma_shape_db=8.0, coherence_power=8.0, active_range_db=30.0,
                shape_degree=2, shape_min_hz=SHAPE_MIN_HZ, global_range_db=30.0, onset_power=4.0, onset_db=3.0,
                frame_ms=20.0, drr_variants_db=(float("inf"), 6.0, 0.0), drr_coherence=0.85, head_scales=HEAD_SCALES,
                dereverb=None, subgrid_spacings=SUBGRID_SPACINGS)
#: overrides for several sources: no onset weighting, no spectral shape (a mixture's shape fits no
#: single direction), looser ILD, units of 2 bands x 1 frame (tuned on development scenes, not the benchmark's)
MULTI_SOURCE = dict(onset_power=0.0, sigma_shape_db=1e3, sigma_ild_db=3.0, group_bands=2,
                    drr_variants_db=(float("inf"),))
#: overrides for one source where the direct sound does not dominate (a room; ``direct_sound`` False): 10 ms
#: frames, so that the onset weighting sees a rise before the first reflections (2-20 ms after the direct
#: sound) have filled the frame, and a gentler coherence weighting (in a room few units are near 1). Chosen
#: on the development rooms (seeds 777 / 778, 400 items: median 23.2 -> 18.9 deg, within 8 deg 28 -> 35 %;
#: benchmarks/results/localizer_v2.md, thirty-seventh session); the caller's own options win. Since the forty-second
#: session (after :data:`DEREVERB`): coherence^2 and a looser spectral shape (sigma 11 dB instead of 8: what the
#: dereverberation leaves, the first reflections, still colours each ear's spectrum); five development seeds, 200
#: items each: medians 9.9 / 10.5 / 9.1 / 8.4 / 12.5 -> 9.5 / 9.5 / 8.5 / 7.9 / 12.0 deg, every mean lower
REVERBERANT = dict(frame_ms=10.0, coherence_power=2.0, sigma_shape_db=11.0)
#: dereverberation before the cues are observed (one source): where the coherence of the bands up to ``below_hz``
#: is below ``below``, the late reverberation is removed by weighted prediction error (:func:`spaq.dsp.wpe_dereverberate`,
#: the other keys its options: 1024-point frames at a 256-sample hop, 32 taps from 2 frames back -- 10.7 ms
#: to 181 ms after a sound -- one pass, bins 100 Hz-16 kHz: the bands the templates read; a signal too short
#: for 32 taps, :func:`spaq.dsp.wpe_min_samples`, gets the longest filter it supports, none below ``min_taps``) and the cues are
#: observed again. The gate reads the bands up to 1.5 kHz, where the head shadows little (a far-lateral anechoic
#: source stays coherent there). Chosen on the development rooms (seeds 777 / 778,
#: 200 items each: median 16.3 / 19.6 -> 9.9 / 10.5 deg with 20 taps; after :data:`REVERBERANT`'s retune, 32 taps
#: instead of 20 on seeds 777-781: 9.5 / 9.5 / 8.5 / 7.9 / 12.0 -> 7.6 / 7.9 / 8.2 / 7.9 / 11.7 deg;
#: benchmarks/results/localizer_v2.md, forty-second session); development anechoic items below the gate: KU100
#: 0 %, the unseen sonicom-2 0.5 %. ``max_frames``: the filter's statistics from at most 256 frames spread over
#: the signal (a 1.4 s signal has 256; 1 s items use all theirs): on 10 s room streams (KU100, 2 x 40 streams,
#: forty-third session) 400 / 256 / 200 frames gave medians 4.1 / 4.1 / 4.1 and 4.2 / 4.2 / 4.1 deg, means 6.6 /
#: 6.0 / 7.0 and 10.6 / 10.4 / 11.5 deg, at 0.39 / 0.34 / 0.30 s of CPU per stream
DEREVERB = dict(below=0.95, below_hz=1500.0, n_fft=1024, hop=256, taps=32, min_taps=12, delay=2, iterations=1,
                band_hz=(100.0, 16000.0), max_frames=256)
#: the exact-head stage (one source): the interaural transfer function and each ear's spectrum at DFT
#: resolution (:func:`exact_head_fit`); ``max_fit``: the interaural misfit per unit weight below which
#: its direction replaces the band templates' (the signal is recognised as the set's own head at one
#: of its measured directions). Development scenes (seed 777, 300 per set): KU100 at its own directions
#: 99th percentile 0.02, the unseen sonicom-2 5th percentile 0.20, KU100 rooms minimum 4; the sigmas
#: were chosen there too
EXACT = dict(f_min=200.0, f_max=16000.0, ipd_max_hz=1500.0, sigma_ild_db=2.0, sigma_ipd=0.35,
             sigma_shape_db=10.0, coherence_power=4.0, active_range_db=30.0, shape_degree=2, max_fit=0.1)
#: the exact-head stage for several sources (:func:`exact_votes`): every time-frequency bin of a
#: 2048-point STFT votes for the directions whose interaural transfer function it matches; chosen on
#: development scenes like :data:`EXACT`. ``removal``: how the bins of a source already found stop voting
#: for the next -- "null" (default: each bin weighted by the share of its power left when that source is
#: cancelled, to ``null_power``) or "explained" (before the thirty-fourth session: the bins it explains
#: within ``explained`` are dropped)
EXACT_VOTES = dict(n_fft=2048, f_min=200.0, f_max=16000.0, ipd_max_hz=1500.0, sigma_ild_db=1.0, sigma_ipd=0.3,
                   active_range_db=40.0, explained=4.6, max_frames=50, sharp=1.0, min_share=0.55, chunk_bins=24,
                   level_power=0.5, removal="null", null_power=1.0)
_SETS: dict = {}
#: the front-end settings of the observed cues (:func:`spaq.auditory.binaural_features.feature_frontend`;
#: the templates themselves are the exact front-end's means over frames of frozen noise)
#: ``divisor_ms``: its decimation factors also divide the room settings' 10 ms frames (:data:`REVERBERANT`), so
#: one pass of the bands gives the cues at both frame lengths (:func:`_observed_cues`' ``also_ms``)
OBSERVATION_FRONTEND = dict(exact=False, coarse=True, divisor_ms=REVERBERANT["frame_ms"])


class TemplateSet:
    """Cue templates of one HRTF set: ``ild (D, F)``, ``ipd (D, 2, F)`` (cos, sin),
    ``shape (D, 2, F)`` (each ear's band levels re their mean, dB), directions ``(D, 3)``."""

    def __init__(self, hrtf, table: np.ndarray):
        self.hrtf = hrtf
        self.name = hrtf.name
        self.sha256 = hrtf.sha256
        self.sample_rate = hrtf.sample_rate
        self.azimuth_deg = hrtf.azimuth_deg
        self.elevation_deg = hrtf.elevation_deg
        self.directions = hrtf.directions
        self.table = table
        self.ild = table[:, 0]
        self.ipd = table[:, 1:3]
        self.shape = table[:, 4:6]
        self._flat = {}
        self._drr = {}  # DRR -> reverberant variant (drr_variant)
        self._scaled = {}  # scale -> frequency-scaled variant (scale_variant)
        self._powers = None  # HRIR band powers (_band_powers)
        self._exact = {}  # n_fft -> DFT-resolution templates (exact_templates)
        self._spacing = None  # median nearest-neighbour distance of the directions, degrees (spacing_deg)

    def spacing_deg(self) -> float:
        """The median over directions of the angle to the nearest other direction (degrees): the grid's step."""
        if self._spacing is None:
            from scipy.spatial import cKDTree

            d = np.asarray(self.directions, dtype=np.float64)
            if len(d) < 2:
                self._spacing = 180.0
            else:  # the nearest other unit vector's chord -> its angle
                chord = cKDTree(d).query(d, k=2)[0][:, 1]
                self._spacing = float(np.degrees(np.median(2 * np.arcsin(np.clip(chord / 2, 0.0, 1.0)))))
        return self._spacing

    def flat(self, degree: int) -> np.ndarray:
        """Templates as vectors, transposed ``(5 F, D)``, and their squares, in the order of
        :func:`_observation`."""
        if degree not in self._flat:
            t = np.concatenate([self.ild, self.ipd[:, 0], self.ipd[:, 1], _detrend(self.shape[:, 0], degree),
                                _detrend(self.shape[:, 1], degree)], axis=-1).astype(np.float64)
            self._flat[degree] = (np.ascontiguousarray(t.T), np.ascontiguousarray((t * t).T))
        return self._flat[degree]


def _detrend(a: np.ndarray, degree: int) -> np.ndarray:
    """Remove the least-squares polynomial of ``degree`` over the last axis (band index)."""
    n = a.shape[-1]
    v = np.vander(np.linspace(-1, 1, n), degree + 1)
    q, _ = np.linalg.qr(v)
    return a - (a @ q) @ q.T


def _make_table(hrtf, n_seconds: float = 0.5, batch: int = 48) -> np.ndarray:
    from scipy.signal import oaconvolve

    from ..auditory.binaural_features import binaural_features, feature_frontend

    fe = feature_frontend(hrtf.sample_rate)  # 40 ms frames: templates are means over frames of stationary
    n = int(n_seconds * hrtf.sample_rate)  # noise, the same for the 20 ms analysis frames up to estimation noise
    noise = np.random.default_rng(20251202).standard_normal(n + hrtf.taps)
    out = []
    for a in range(0, hrtf.n_directions, batch):
        h = hrtf.hrir[a:a + batch]  # (B, 2, taps)
        y = oaconvolve(noise[None, None, :], h, axes=-1)[..., hrtf.taps: hrtf.taps + n]
        with intra_op_threads(1):
            f, _ = binaural_features(torch.from_numpy(y), fe)  # (B, 6, F, nf)
        f = f.to(torch.float64).mean(-1).numpy()
        u = f[:, 1:3]
        f[:, 1:3] = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-9)
        out.append(f)
    return np.concatenate(out).astype(np.float32)  # (D, 6, F)


def template_set(hrtf="default") -> TemplateSet:
    """Templates of an HRTF set (name, SOFA path or :class:`~spaq.spatial.hrtf.HRTFSet`), at
    the analysis rate (48 kHz; sets at other rates are resampled); computed once and cached on
    disk. A SOFA file that is not SimpleFreeFieldHRIR raises a one-line :class:`~spaq.errors.SpaqError`."""
    from ..cache import cached_array
    from ..spatial.hrtf import HRTFSet, load_hrtf

    h = hrtf if isinstance(hrtf, HRTFSet) else load_hrtf(str(hrtf), ANALYSIS_RATE)
    if h.sample_rate != ANALYSIS_RATE:
        h = h.resampled(ANALYSIS_RATE)
    key = (h.sha256, h.sample_rate, h.n_directions)
    if key not in _SETS:
        name = f"loc_templates/v{TEMPLATE_VERSION}_{h.sha256[:20]}_{h.sample_rate}_{h.n_directions}"
        table = cached_array(name, lambda: _make_table(h),
                             check=lambda a: a.ndim == 3 and a.shape[0] == h.n_directions and a.shape[1] == 6)
        if len(_SETS) > 6:
            _SETS.clear()
        _SETS[key] = TemplateSet(h, table)
    return _SETS[key]


def exact_fft_size(ts: TemplateSet) -> int:
    """DFT size of the exact-head stage: at least 4096 (a partial's leakage into the bins beside it
    carries the interaural transfer function of the partial's frequency, not theirs: at 1024 points a
    harmonic tone left a misfit of 0.06-0.18 at its own direction, at 4096 0.004-0.01) and four HRIR
    lengths (the ear spectra of a frame are then the source's times the HRTF's)."""
    return max(4096, 1 << int(np.ceil(np.log2(4 * ts.hrtf.taps))))


def exact_templates(ts: TemplateSet, n_fft: int, f_min: float, f_max: float, ipd_max_hz: float) -> dict:
    """The set's HRTFs at every second DFT bin of size ``n_fft`` from ``f_min`` to ``f_max`` Hz
    (cached on the set, float32): ``freqs (K,)``, ``bins`` (mask over the ``n_fft // 2 + 1`` bins),
    ``ild``, ``ild2`` (its square) ``(D, K)`` dB, ``u_re``, ``u_im`` ``(D, K_lo)`` (unit interaural
    phasors up to ``ipd_max_hz``), ``level``, ``level2`` ``(2, D, K)`` dB. (Every second bin: a
    partial 4096-point bins from a sampled bin is far down its window's main lobe.)"""
    key = (n_fft, f_min, f_max, ipd_max_hz)
    if key not in ts._exact:
        f = np.fft.rfftfreq(n_fft, 1.0 / ANALYSIS_RATE)
        bins = (f >= f_min) & (f <= f_max) & (np.arange(len(f)) % 2 == 0)
        H = np.fft.rfft(ts.hrtf.hrir, n=n_fft, axis=-1)[..., bins]  # (D, 2, K)
        level = 20 * np.log10(np.abs(H) + 1e-12)
        lo = f[bins] <= ipd_max_hz
        u = H[:, 0, lo] * np.conj(H[:, 1, lo])
        u = u / np.maximum(np.abs(u), 1e-30)
        ild = level[:, 0] - level[:, 1]
        lev = np.ascontiguousarray(level.transpose(1, 0, 2))
        c = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
        ts._exact[key] = {"freqs": f[bins], "bins": bins, "lo": lo, "ild": c(ild), "ild2": c(ild * ild),
                          "u_re": c(u.real), "u_im": c(u.imag), "level": c(lev), "level2": c(lev * lev)}
    return ts._exact[key]


def exact_head_fit(x: np.ndarray, ts: TemplateSet, spectra=None, **opts) -> tuple:
    """The exact-head stage for one source: ``(misfit, k)``, the direction index ``k`` of ``ts``
    whose HRTF pair explains the time-averaged ear spectra of ``x (2, T)`` (48 kHz) best, and the
    interaural part of its misfit per unit weight. Per DFT bin ``f`` (:func:`exact_templates`) with
    ear powers ``P_l, P_r`` and cross-spectrum ``C`` averaged over frames, weighted by activity
    (within ``active_range_db`` of the loudest bin) times the coherence ``|C| / sqrt(P_l P_r)`` to
    ``coherence_power``::

        misfit(d) = sum_f w_f [ (ILD_f - ILD_d,f)^2 / s_ild^2 + |C_f/|C_f| - u_d,f|^2 / s_ipd^2 (f <= ipd_max_hz)
                                + sum_ears (L_f - L_d,f - trend)^2 / s_shape^2 ]

    ``trend``: the weighted least-squares polynomial of ``shape_degree`` in log frequency (the
    unknown source spectrum, assumed smooth over the active bins). The ratio of the ears' spectra is
    the interaural transfer function whatever the source, so a tonal source (whose partials
    sample the HRTF at a few frequencies, not as the band templates' white noise does) is matched as
    well as a noise; the interaural part (the first two terms) is ~0 at the right direction of the
    right head whatever the source. ``spectra``: ``(P_l, P_r, C)`` at ``exact_fft_size(ts)``."""
    o = {**EXACT, **opts}
    n_fft = exact_fft_size(ts)
    t = exact_templates(ts, n_fft, float(o["f_min"]), float(o["f_max"]), float(o["ipd_max_hz"]))
    PL, PR, C = exact_spectra(x, n_fft) if spectra is None else spectra
    PL, PR, C = PL[t["bins"]].astype(np.float64), PR[t["bins"]].astype(np.float64), C[t["bins"]].astype(np.complex128)
    pm = np.maximum(PL, PR)
    if not np.any(pm > 0):
        return float("inf"), 0
    lev = 10 * np.log10(np.maximum(pm, 1e-300))
    coh = np.abs(C) / np.sqrt(np.maximum(PL * PR, 1e-300))
    w = (lev >= lev.max() - float(o["active_range_db"])) * np.clip(coh, 0.0, 1.0) ** float(o["coherence_power"])

    def wsq(M, M2, v, wv):  # sum_f wv_f (v_f - M_d,f)^2 for every direction d, as matrix-vector products
        return float(wv @ (v * v)) - 2.0 * _mv(M, wv * v) + _mv(M2, wv)

    ild = 10 * np.log10(np.maximum(PL, 1e-300) / np.maximum(PR, 1e-300))
    D = wsq(t["ild"], t["ild2"], ild, w) / float(o["sigma_ild_db"]) ** 2
    lo = t["lo"]
    u = C[lo] / np.maximum(np.abs(C[lo]), 1e-300)  # |u - u_d|^2 = 2 - 2 Re(u conj(u_d)) for unit phasors
    wl = w[lo]
    D = D + (2.0 * wl.sum() - 2.0 * (_mv(t["u_re"], wl * u.real) + _mv(t["u_im"], wl * u.imag))) / float(o["sigma_ipd"]) ** 2
    Di = D.copy()
    lf = np.log(t["freqs"])
    V = np.vander((lf - lf.mean()) / (lf.max() - lf.mean()), int(o["shape_degree"]) + 1)
    W = w / float(o["sigma_shape_db"]) ** 2
    WV = W[:, None] * V
    A_inv = np.linalg.pinv(V.T @ WV)
    for e, P in enumerate((PL, PR)):
        le = 10 * np.log10(np.maximum(P, 1e-300))
        q = (le @ WV)[None] - _mv(t["level"][e], WV)  # (D, p): V' W (l - L_d)
        D = D + wsq(t["level"][e], t["level2"][e], le, W) - np.einsum("dp,pq,dq->d", q, A_inv, q)
    k = int(np.argmin(D))
    return float(max(Di[k], 0.0) / max(float(w.sum()), 1e-30)), k


def _mv(M: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``M (D, K) float32 @ v (K,) or (K, p)`` in float64 out (torch, one thread)."""
    with intra_op_threads(1):
        return (torch.from_numpy(M) @ torch.from_numpy(np.ascontiguousarray(v, dtype=np.float32))).double().numpy()


def _hann_spectra(x: np.ndarray, n_fft: int, hop: int, max_frames: int | None = None) -> np.ndarray:
    """Hann-windowed DFTs of ``x (2, T)`` in frames of ``n_fft`` every ``hop`` samples (at most
    ``max_frames``, evenly spread; a signal shorter than one frame is one frame, windowed over its own
    length): ``(2, M, n_fft // 2 + 1)`` complex64."""
    n = x.shape[-1]
    if n < n_fft:
        seg = np.zeros((2, 1, n_fft), dtype=np.float32)
        seg[:, 0, :n] = x * np.hanning(n + 1)[:-1]
        return np.fft.rfft(seg, axis=-1)
    starts = np.arange(1 + (n - n_fft) // hop) * hop
    if max_frames is not None and len(starts) > int(max_frames):
        starts = starts[np.linspace(0, len(starts) - 1, int(max_frames)).astype(int)]
    if hop == n_fft and len(starts) == 1 + (n - n_fft) // hop:  # consecutive frames: a view, no copies
        seg = x[:, :len(starts) * n_fft].reshape(2, len(starts), n_fft).astype(np.float32)
    else:
        seg = np.stack([x[:, a:a + n_fft] for a in starts], axis=1).astype(np.float32)  # (2, M, n_fft)
    win = torch.from_numpy(np.hanning(n_fft + 1)[:-1].astype(np.float32))
    with intra_op_threads(1):  # torch's float32 transform: about 4x numpy's here
        return torch.fft.rfft(torch.from_numpy(seg) * win, dim=-1).numpy()


def exact_spectra(x: np.ndarray, n_fft: int) -> tuple:
    """Ear powers and cross-spectrum of ``x (2, T)`` averaged over consecutive Hann frames of
    ``n_fft`` (no overlap: an average, not a time-frequency picture): ``(P_l, P_r, C)``, each
    ``(n_fft // 2 + 1,)``, averaged in float32 and returned as float64 / complex128: :func:`exact_head_fit`'s
    products and floors (1e-300) need float64, which float32 flushes to 0 (a quiet block's ``P_l P_r``
    underflowed there, its coherence read 0 / 0 and the least-squares solve failed on NaN: 'SVD did not
    converge'). A block too quiet for float32 averages (about 1e-19 of full scale) reads as silent."""
    X = _hann_spectra(x, n_fft, n_fft)
    return (np.mean(np.abs(X[0]) ** 2, 0).astype(np.float64), np.mean(np.abs(X[1]) ** 2, 0).astype(np.float64),
            np.mean(X[0] * np.conj(X[1]), 0).astype(np.complex128))


def _band_powers(ts: TemplateSet) -> np.ndarray:
    """Band powers ``(D, 2, F)`` of every HRIR of ``ts`` for white noise: sum over DFT bins of
    ``|H|^2 |G_b|^2`` with the front-end's gammatone responses ``G_b`` (cached on the set)."""
    if ts._powers is None:
        from ..auditory.binaural_features import feature_frontend

        fe = feature_frontend(ANALYSIS_RATE)
        n = 1 << int(np.ceil(np.log2(max(ts.hrtf.taps, 1024))))
        g = fe._gammatone_response(n, slice(0, fe.n_bands), torch.device("cpu"))
        g2 = (g.real.double() ** 2 + g.imag.double() ** 2).numpy()[:, : n // 2 + 1]  # (F, n/2+1)
        h2 = np.abs(np.fft.rfft(ts.hrtf.hrir, n=n, axis=-1)) ** 2  # (D, 2, n/2+1)
        ts._powers = h2 @ g2.T  # (D, 2, F)
    return ts._powers


def _label(ts: TemplateSet) -> str:
    """The set's name, with the scale of a scaled variant and the DRR of a reverberant one."""
    d = getattr(ts, "drr_db", None)
    sc = getattr(ts, "scale", 1.0)
    out = ts.name if sc == 1.0 else f"{ts.name} x{sc:g}"
    return out if d is None or not np.isfinite(d) else f"{out} (DRR {d:g} dB)"


def drr_variant(ts: TemplateSet, drr_db: float) -> TemplateSet:
    """The templates of ``ts`` as heard in a diffuse reverberant field at a direct-to-reverberant
    ratio of ``drr_db`` (total power over ears and bands): each ear's band power gets the
    diffuse-field power (the mean over the set's directions) scaled to that ratio, and the ILD and
    spectral shapes move by the difference this makes to their direct-sound values (the IPD is
    left as it is: the coherence weighting already discounts reverberant units)."""
    if not np.isfinite(drr_db):
        return ts
    cache = ts._drr
    if drr_db not in cache:
        P = _band_powers(ts)  # (D, 2, F)
        diff = P.mean(axis=0, keepdims=True)  # (1, 2, F)
        g = P.sum(axis=(1, 2), keepdims=True) / diff.sum() * 10 ** (-drr_db / 10)  # per direction
        L0 = 10 * np.log10(np.maximum(P, 1e-30))
        L1 = 10 * np.log10(np.maximum(P + g * diff, 1e-30))
        d_ild = (L1[:, 0] - L1[:, 1]) - (L0[:, 0] - L0[:, 1])
        d_shape = (L1 - L1.mean(-1, keepdims=True)) - (L0 - L0.mean(-1, keepdims=True))
        table = ts.table.copy()
        table[:, 0] += d_ild.astype(table.dtype)
        table[:, 4:6] += d_shape.astype(table.dtype)
        v = TemplateSet(ts.hrtf, table)
        v.drr_db = float(drr_db)
        cache[drr_db] = v
    return cache[drr_db]


def scale_variant(ts: TemplateSet, scale: float) -> TemplateSet:
    """The templates of ``ts`` scaled in frequency by ``scale``: every cue that the set has at
    frequency ``f`` appears at ``scale * f`` (``scale`` < 1: a larger head and pinnae), read off
    the set's own band cues by linear interpolation in log frequency (the ends held). ILD, IPD
    (cos, sin, renormalised), coherence and spectral shapes all move together: a head scaled by
    ``1 / scale`` has the same transfer functions at ``scale * f`` as the set at ``f``, its
    interaural delays scaled too. Cached on ``ts``; ``scale`` = 1 is ``ts``."""
    if float(scale) == 1.0:
        return ts
    key = float(scale)
    if key not in ts._scaled:
        from ..auditory.binaural_features import feature_frontend

        lf = np.log(feature_frontend(ANALYSIS_RATE).center_frequencies_hz.cpu().numpy().astype(np.float64))
        src = np.interp(lf - np.log(float(scale)), lf, np.arange(len(lf), dtype=np.float64))
        i0 = np.clip(np.floor(src).astype(int), 0, len(lf) - 1)
        i1 = np.minimum(i0 + 1, len(lf) - 1)
        a = (src - i0)[None, None, :]
        t = ts.table.astype(np.float64)
        table = (1 - a) * t[..., i0] + a * t[..., i1]
        u = table[:, 1:3]
        table[:, 1:3] = u / np.maximum(np.linalg.norm(u, axis=1, keepdims=True), 1e-9)
        v = TemplateSet(ts.hrtf, table.astype(ts.table.dtype))
        v.drr_db = getattr(ts, "drr_db", float("inf"))
        v.scale = float(scale)
        ts._scaled[key] = v
    return ts._scaled[key]


def _observed_cues(x: np.ndarray, frame_ms: float, also_ms: float | None = None):
    """``(features (6, F, nf), levels (2, F, nf))`` of binaural ``x (2, T)`` at the analysis rate,
    from the observation front-end (:data:`OBSERVATION_FRONTEND`); with ``also_ms``, a list of two
    such pairs, at ``frame_ms`` and at ``also_ms``, from one pass of the bands."""
    return _Observed(x, frame_ms, also_ms).result()


#: a signal longer than ``longer_than_s`` is observed in blocks of ``block_s`` seconds, each with ``margin_s`` of the
#: signal on either side that is analysed and dropped. A pass of the bands holds the whole signal's band signals (about
#: 13 MB per second of signal): a 120 s stream took 1.4 GB, 0.5 GB in blocks (and 2.8 s instead of 7.9 s), and a long
#: recording would not fit in memory. A block's frames are a whole-signal pass's up to the bands' circular edges,
#: which the margins take: on a 6 s test signal in 1.5 s blocks, ILD and levels within 0.01 dB, the weighted IPD
#: phasors within 2e-4 on average, the same direction (tests/test_localize_templates.py)
OBSERVE_BLOCKS = dict(longer_than_s=30.0, block_s=20.0, margin_s=0.5)


class _BlockCues:
    """:class:`spaq.auditory.binaural_features.BandCues`' ``result`` / ``keep_lens`` for a long ``x (2, T)``, block by
    block (:data:`OBSERVE_BLOCKS`): the frames of each block's core, from a pass over the core and its margins; no
    block's bands are kept between calls (a call for the first bands only, the room gate's, and a later call for
    all of them each make their passes)."""

    def __init__(self, x: np.ndarray, fe, lens):
        self.x, self.fe = x, fe
        self.lens = [int(fe.frame_len)] if lens is None else [int(n) for n in lens]
        unit = math.lcm(*self.lens)
        rate = ANALYSIS_RATE
        self.core = max(1, int(round(OBSERVE_BLOCKS["block_s"] * rate / unit))) * unit
        self.margin = -(-int(round(OBSERVE_BLOCKS["margin_s"] * rate)) // unit) * unit
        self.keep = list(range(len(self.lens)))
        self._full = None

    def keep_lens(self, keep):
        self.keep = sorted({int(i) for i in keep})
        return self

    def result(self, n_bands: int | None = None) -> list:
        from ..auditory.binaural_features import BandCues

        if n_bands is None and self._full is not None:
            return self._full
        T = self.x.shape[-1]
        parts = [[] for _ in self.lens]
        for start in range(0, T, self.core):
            a, b = max(0, start - self.margin), min(T, start + self.core + self.margin)
            with intra_op_threads(1):
                cues = BandCues(torch.from_numpy(np.ascontiguousarray(self.x[:, a:b])), self.fe, frame_lens=self.lens)
                cues.keep_lens(self.keep)
                out = cues.result(n_bands)
            for i, fl in enumerate(self.lens):
                if out[i] is None:
                    continue
                skip = (start - a) // fl
                count = self.core // fl if start + self.core < T else T // fl - start // fl  # the last: to the end
                parts[i].append(tuple(t[..., skip:skip + count] for t in out[i]))
        res = [None if not p else tuple(torch.cat([q[j] for q in p], dim=-1) for j in range(2)) for p in parts]
        if n_bands is None:
            self._full = res
        return res


class _Observed:
    """:func:`_observed_cues` computed lazily: :meth:`low` the first bands only (the room gate), :meth:`result`
    all of them, the bands already computed kept."""

    def __init__(self, x: np.ndarray, frame_ms: float, also_ms: float | None = None):
        from ..auditory.binaural_features import BandCues, feature_frontend

        fe = feature_frontend(ANALYSIS_RATE, frame_ms=frame_ms, **OBSERVATION_FRONTEND)
        lens = None if also_ms is None else [fe.frame_len, int(round(float(also_ms) / 1000 * ANALYSIS_RATE))]
        self.split = lens is not None and lens[1] % fe.frame_divisor  # a length these bands cannot be framed at
        if self.split:
            self.parts = [_Observed(x, frame_ms), _Observed(x, also_ms)]
            return
        self.also = also_ms is not None
        if x.shape[-1] > OBSERVE_BLOCKS["longer_than_s"] * ANALYSIS_RATE:
            self.cues = _BlockCues(x, fe, lens)
            return
        with intra_op_threads(1):
            self.cues = BandCues(torch.from_numpy(np.ascontiguousarray(x)), fe, frame_lens=lens)

    def low(self, n_bands: int):
        """``(features, levels)`` of the first ``n_bands`` bands at ``frame_ms``."""
        if self.split:
            return self.parts[0].low(n_bands)
        with intra_op_threads(1):
            return self.cues.result(n_bands)[0]

    def first_length_only(self):
        """The bands still to come are framed at ``frame_ms`` only (``also_ms``'s cues will not be needed)."""
        if self.split:
            self.parts[1] = None
        elif self.also:
            self.cues.keep_lens([0])

    def result(self):
        if self.split:
            return [p.result() if p is not None else None for p in self.parts]
        with intra_op_threads(1):
            out = self.cues.result()
        return out if self.also else out[0]


def room_gate(x: np.ndarray, observed: "_Observed | None" = None, cues=None, below_hz: float | None = None) -> float:
    """The coherence :data:`DEREVERB`'s gate reads (:func:`spaq.localization.localize.direct_coherence`) of the
    bands up to ``below_hz`` (None: :data:`DEREVERB`'s) of binaural ``x (2, T)`` at the analysis rate and
    -30 dBFS, where the head shadows little: below ``DEREVERB["below"]`` the late reverberation dominates.
    ``observed``: an :class:`_Observed` of ``x`` already made (its low bands are kept for the cues), else ``cues``:
    ``(features, levels)`` of ``x`` already computed at 20 ms; neither: observed here."""
    from .localize import direct_coherence

    below = float(DEREVERB["below_hz"] if below_hz is None else below_hz)
    n_low = int((_band_centres() <= below).sum())  # a prefix of the bands
    if observed is None and cues is not None:
        f_low, lev_low = cues[0][:, :n_low], cues[1][:, :n_low]
    else:
        f_low, lev_low = (observed if observed is not None else _Observed(x, 20.0)).low(n_low)
    return float(direct_coherence(f_low, lev_low))


def dereverb_taps(n_samples: int, settings: dict | None = None) -> int:
    """The taps :func:`dereverberate` uses on ``n_samples`` samples: ``settings``' (None: :data:`DEREVERB`'s), or
    fewer where the signal is too short for them (:func:`spaq.dsp.wpe_max_taps`)."""
    from ..dsp import wpe_max_taps

    o = dict(DEREVERB if settings is None else settings)
    size = {k: o[k] for k in ("n_fft", "hop", "delay") if k in o}
    return min(int(o.get("taps", 20)), wpe_max_taps(int(n_samples), 2, **size))


def dereverberate(x: np.ndarray, settings: dict | None = None) -> tuple:
    """``x (2, T)`` at the analysis rate -> ``(y, taps)``: ``y`` the same with the late reverberation removed by
    :func:`spaq.dsp.wpe_dereverberate` with :data:`DEREVERB`'s filter (or ``settings``, in its place) of ``taps``
    taps, the longest its length supports (:func:`dereverb_taps`); ``y`` None when that is below ``min_taps``."""
    from ..dsp import wpe_dereverberate

    o = dict(DEREVERB if settings is None else settings)
    taps = dereverb_taps(x.shape[-1], o)
    if taps < int(o.get("min_taps", 1)):
        return None, taps
    kw = {k: v for k, v in o.items() if k not in ("below", "below_hz", "min_taps")}
    kw["taps"] = taps
    y = wpe_dereverberate(torch.from_numpy(np.ascontiguousarray(x)), sample_rate=ANALYSIS_RATE, **kw).numpy()
    return y, taps


def dereverberate_where_reverberant(x: np.ndarray, sample_rate: int = ANALYSIS_RATE) -> tuple:
    """The localiser's room step for any consumer of binaural cues: ``x (2, T)`` at ``sample_rate`` ->
    ``(y (2, T) at sample_rate, info)``. Where :func:`room_gate` reads the low bands as reverberant (below
    ``DEREVERB["below"]``), ``y`` is :func:`dereverberate`'s output, else ``x`` itself; ``info``:
    ``coherence`` (the gate's reading) and ``dereverberated`` (bool). Level is kept."""
    from ..io import resample

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != 2:
        raise SpaqInputError(f"dereverberation needs binaural (2, T) input, got {tuple(x.shape)}")
    a = x if int(sample_rate) == ANALYSIS_RATE else resample(x, int(sample_rate), ANALYSIS_RATE)
    rms = float(np.sqrt(np.mean(a ** 2)))
    if rms == 0 or a.shape[-1] < int(0.02 * ANALYSIS_RATE):
        return x, {"coherence": float("nan"), "dereverberated": False}
    coherence = room_gate(a * (10 ** (-30 / 20) / rms))
    y = dereverberate(a)[0] if coherence < float(DEREVERB["below"]) else None
    if y is None:
        return x, {"coherence": coherence, "dereverberated": False}
    if int(sample_rate) != ANALYSIS_RATE:
        y = resample(y, ANALYSIS_RATE, int(sample_rate))[:, : x.shape[-1]]
    return y, {"coherence": coherence, "dereverberated": True}


def _band_centres() -> np.ndarray:
    """Centre frequencies (Hz) of the observation front-end's bands (:data:`OBSERVATION_FRONTEND`)."""
    from ..auditory.binaural_features import feature_frontend

    fe = feature_frontend(ANALYSIS_RATE, frame_ms=20.0, **OBSERVATION_FRONTEND)
    return np.asarray(fe.center_frequencies_hz, dtype=np.float64)


def _observation(x: np.ndarray, opts: dict, cues=None):
    """Feature vectors ``(nf, 5 F)``, their weights ``(nf, 5 F)`` (already divided by the
    variances) and per-frame band weights ``(nf, F)``. ``cues``: ``(features, levels)`` of ``x``
    already computed with the same front-end settings (:func:`_observed_cues`)."""
    from ..auditory.binaural_features import feature_frontend

    fe = feature_frontend(ANALYSIS_RATE, frame_ms=opts["frame_ms"], **OBSERVATION_FRONTEND)
    f, lev = cues if cues is not None else _observed_cues(x, opts["frame_ms"])
    f = f.to(torch.float64).numpy()  # (6, F, nf)
    lev = lev.to(torch.float64).numpy()  # (2, F, nf)
    floor = 10 * np.log10(fe.power_floor.cpu().numpy())[:, None]
    mean_lev = lev.max(axis=0)  # louder ear
    active = (mean_lev > floor + 1e-6) & (mean_lev >= mean_lev.max(axis=1, keepdims=True) - opts["active_range_db"])
    if opts["global_range_db"] > 0:  # T-F units far below the loudest band of their frame carry little
        active &= mean_lev >= mean_lev.max(axis=0, keepdims=True) - opts["global_range_db"]
    w = active * np.clip(f[3], 0.0, 1.0) ** opts["coherence_power"]  # (F, nf)
    if opts["onset_power"] > 0:  # precedence: units whose level rises (direct sound) count more
        prev = np.concatenate([mean_lev[:, :1], mean_lev[:, :-1]], axis=1)
        rise = np.maximum(mean_lev - prev, 0.0)
        w = w * (1.0 + rise / opts["onset_db"]) ** opts["onset_power"]
    deg = int(opts["shape_degree"])
    z = np.concatenate([f[0], f[1], f[2], _detrend(f[4].T, deg).T, _detrend(f[5].T, deg).T], axis=0).T  # (nf, 5F)
    s = np.array([1 / opts["sigma_ild_db"] ** 2, 1 / opts["sigma_ipd"] ** 2, 1 / opts["sigma_ipd"] ** 2,
                  1 / opts["sigma_shape_db"] ** 2, 1 / opts["sigma_shape_db"] ** 2])[:, None] * np.ones(w.shape[0])
    s[3:, fe.center_frequencies_hz.cpu().numpy() < float(opts["shape_min_hz"])] = 0.0  # SHAPE_MIN_HZ
    omega = (s[:, :, None] * w[None]).reshape(5 * w.shape[0], -1).T  # (nf, 5F)
    return z, omega, w.T


def frame_distances(x: np.ndarray, ts: TemplateSet, observation=None, **opts):
    """``x (2, T)`` at 48 kHz -> distances ``(nf, D)`` (see the module docstring) and the
    frames' total band weights ``(nf,)``. ``observation``: the output of :func:`_observation`
    when already computed (several template sets, one signal)."""
    o = {**DEFAULTS, **opts}
    z, omega, wb = _observation(x, o) if observation is None else observation
    Tt, T2t = ts.flat(int(o["shape_degree"]))  # (K, D) each
    D = (omega * z * z).sum(1)[:, None] - 2.0 * _mm(omega * z, Tt) + _mm(omega, T2t)
    return np.maximum(D, 0.0), wb.sum(1)


def observation_sums(observation) -> tuple:
    """The frames' weighted sums of an observation (:func:`_observation`): ``(sum w z^2, sum_frames w z
    (5 F,), sum_frames w (5 F,))``, all :func:`summed_distances` needs of it."""
    z, omega, _ = observation
    return float((omega * z * z).sum()), (omega * z).sum(0), omega.sum(0)


def summed_distances(ts: TemplateSet, sums: tuple, **opts) -> np.ndarray:
    """The distances of :func:`frame_distances` summed over frames ``(D,)``, from the frames'
    weighted sums (:func:`observation_sums`, computed once per signal): two matrix-vector products
    per template set, what comparing many template sets needs."""
    o = {**DEFAULTS, **opts}
    c, a, w = sums
    Tt, T2t = ts.flat(int(o["shape_degree"]))
    return c - 2.0 * (a @ Tt) + w @ T2t


def _mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` by torch on one thread (numpy's OpenBLAS on two threads of a loaded 2-core
    machine was 5x slower for these small products)."""
    with intra_op_threads(1):
        return (torch.from_numpy(np.ascontiguousarray(a)) @ torch.from_numpy(b)).numpy()


def group_distances(ts: TemplateSet, observation, group_bands: int, **opts):
    """Distances per frame, group of ``group_bands`` consecutive bands and direction
    ``(nf, G, D)`` and the groups' weights ``(nf, G)`` (several sources: in a group of bands
    and a frame one source tends to dominate). A long signal's units take (nf G D) float64:
    several sources read them chunk by chunk (:class:`_Units`)."""
    o = {**DEFAULTS, **opts}
    Dg = _group_distances_gm(ts, observation, int(group_bands), int(o["shape_degree"]))
    return Dg.transpose(1, 0, 2), _group_weights(observation[2], int(group_bands))


def _group_weights(wb: np.ndarray, group_bands: int) -> np.ndarray:
    """The frames' band weights ``(nf, F)`` summed over groups of ``group_bands`` bands ``(nf, G)``."""
    return np.stack([wb[:, a:a + group_bands].sum(1) for a in range(0, wb.shape[1], group_bands)], axis=1)


def _group_distances_gm(ts: TemplateSet, observation, group_bands: int, degree: int) -> np.ndarray:
    """:func:`group_distances`' distances group-major ``(G, nf, D)``: one batched matrix product over the groups,
    each unit's ``sum w z^2 - 2 (w z) . t + w . t^2`` over its group's columns, then clipped at 0 in place."""
    z, omega, wb = observation
    W, cols = _group_templates(ts, degree, wb.shape[1], group_bands)  # (G, 2 C, D), (G, C)
    valid = cols >= 0
    c = np.where(valid, cols, 0)
    og, zg = omega[:, c] * valid, z[:, c]  # (nf, G, C): a short last group's padding weighs 0
    oz = og * zg
    X = np.concatenate([oz, og], axis=-1).transpose(1, 0, 2)  # (G, nf, 2 C)
    with intra_op_threads(1):
        Dg = torch.bmm(torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(W)).numpy()  # (G, nf, D)
    Dg += (oz * zg).sum(-1).T[:, :, None]
    return np.maximum(Dg, 0.0, out=Dg)


def _group_templates(ts: TemplateSet, degree: int, n_bands: int, group_bands: int) -> tuple:
    """Per group of ``group_bands`` bands: its columns of the observation ``(G, C)`` (``C = 5 group_bands``; -1
    pads a short last group) and the templates ``[-2 t; t^2]`` on them ``(G, 2 C, D)`` (cached per set)."""
    key = ("groups", degree, n_bands, group_bands)
    if key not in ts._flat:
        Tt, T2t = ts.flat(degree)
        groups = [np.concatenate([np.arange(a, min(n_bands, a + group_bands)) + j * n_bands for j in range(5)])
                  for a in range(0, n_bands, group_bands)]
        C = 5 * group_bands
        cols = np.full((len(groups), C), -1)
        W = np.zeros((len(groups), 2 * C, Tt.shape[1]))
        for g, cg in enumerate(groups):
            cols[g, :len(cg)] = cg
            W[g, :len(cg)] = -2.0 * Tt[cg]
            W[g, C:C + len(cg)] = T2t[cg]
        ts._flat[key] = (W, cols)
    return ts._flat[key]


#: bytes of float64 distances several sources' passes compute at once (:class:`_Units`, :func:`_frame_votes`): the
#: whole ``(units, directions)`` array of a 20 s signal was 1.6 GB (KU100's 2702 directions), 4 GB at 60 s
CHUNK_BYTES = 16 << 20
#: up to this many bytes (a few seconds of signal) :class:`_Units` keeps its chunks after the first pass instead of
#: computing them again on each
KEEP_BYTES = 128 << 20


class _Units:
    """The units (frame, group of bands) of several sources' fit and their distances to every direction
    (:func:`group_distances`), chunk of frames by chunk (:meth:`chunks`): memory stays about :data:`CHUNK_BYTES`
    whatever the signal's length (the chunks are computed again on each pass; a signal whose distances take at most
    :data:`KEEP_BYTES` keeps them). Units of zero weight are left out: their observation weights are all zero, so
    their distance to every direction is exactly 0 and they add nothing to any vote, refinement or fit. Units are
    ordered chunk by chunk, group-major within a chunk; ``gw (U,)``: the weights of the units kept, in that order."""

    def __init__(self, ts: TemplateSet, observation, group_bands: int, opts: dict, chunk_bytes: int = CHUNK_BYTES,
                 keep_bytes: int = KEEP_BYTES):
        self.ts, self.obs, self.group_bands = ts, observation, int(group_bands)
        self.degree = int({**DEFAULTS, **opts}["shape_degree"])
        wb = observation[2]
        gw = _group_weights(wb, self.group_bands)  # (nf, G)
        n_groups = gw.shape[1]
        self.step = max(1, int(chunk_bytes) // (8 * n_groups * len(ts.directions)))  # frames per chunk
        self.spans = [(r0, min(len(wb), r0 + self.step)) for r0 in range(0, len(wb), self.step)]
        self.keep = [gw[r0:r1].T.reshape(-1) > 0 for r0, r1 in self.spans]  # per chunk, group-major
        self.gw = np.concatenate([gw[r0:r1].T.reshape(-1)[k] for (r0, r1), k in zip(self.spans, self.keep)])
        self._kept = [] if 8 * len(self.gw) * len(ts.directions) <= int(keep_bytes) else None
        self._complete = False

    def chunks(self):
        """Yields ``(start, Dg)``: the distances ``(n, D)`` of the kept units ``start .. start + n - 1``."""
        if self._complete:
            yield from self._kept
            return
        z, omega, wb = self.obs
        if self._kept is not None:
            self._kept = []  # a pass left unfinished kept only part of them
        start = 0
        for (r0, r1), keep in zip(self.spans, self.keep):
            if not keep.any():
                continue
            Dg = _group_distances_gm(self.ts, (z[r0:r1], omega[r0:r1], wb[r0:r1]), self.group_bands, self.degree)
            Dg = Dg.reshape(-1, Dg.shape[-1])
            if not keep.all():
                Dg = Dg[keep]
            if self._kept is not None:
                self._kept.append((start, Dg))
            yield start, Dg
            start += len(Dg)
        self._complete = self._kept is not None


def _frame_votes(ts: TemplateSet, observation, per: int, opts: dict, chunk_bytes: int = CHUNK_BYTES) -> tuple:
    """:func:`frame_distances` reduced chunk by chunk of frames (several sources, whose frames are not pooled):
    ``(best (nf,), bD (nb, D), fw (nf,))``: each frame's nearest direction, the distances summed over blocks of
    ``per`` frames and the frames' weights; memory about :data:`CHUNK_BYTES`."""
    z, omega, wb = observation
    step = per * max(1, int(chunk_bytes) // (8 * per * len(ts.directions)))  # whole blocks per chunk
    best, bD = [], []
    for r0 in range(0, len(z), step):
        D, _ = frame_distances(None, ts, observation=(z[r0:r0 + step], omega[r0:r0 + step], wb[r0:r0 + step]), **opts)
        best.append(np.argmin(D, axis=1))
        bD += [D[i:i + per].sum(0) for i in range(0, len(D), per)]
    return np.concatenate(best), np.stack(bD), wb.sum(1)


def _pool(observation, per: int):
    """Observation of frames -> of blocks of ``per`` frames: ``z = sum(w z) / sum(w)``,
    ``w = sum(w)``. The block's distance to every direction is then the sum of its frames'
    distances minus a constant of the block (the same for all directions and template sets)."""
    z, omega, wb = observation
    nf = z.shape[0]
    idx = np.arange(0, nf, per)
    W = np.add.reduceat(omega, idx, axis=0)
    A = np.add.reduceat(omega * z, idx, axis=0)
    zb = np.where(W > 0, A / np.where(W > 0, W, 1.0), 0.0)
    return zb, W, np.add.reduceat(wb, idx, axis=0)


def _fit_directions(units: "_Units", ks: list, dirs: np.ndarray, sep_deg: float, iterations: int) -> list:
    """Joint fit of several directions: each unit (frame, band group) is explained by the
    direction that fits it best, and each direction in turn moves to where the sum over units of
    ``min(D(unit, own), D(unit, others))`` is smallest (coordinate descent from the vote peaks;
    directions stay ``sep_deg`` apart). A source that dominates few units is not outvoted by
    the units of a louder or continuous one. ``units``: :class:`_Units` (one pass over its chunks per
    direction moved)."""
    ks = list(ks)
    cos_sep = np.cos(np.radians(sep_deg))
    for _ in range(iterations):
        moved = False
        for i in range(len(ks)):
            other = [k for j, k in enumerate(ks) if j != i]
            total = np.zeros(len(dirs))
            for _, Dg in units.chunks():
                total += np.minimum(Dg, np.min(Dg[:, other], axis=1)[:, None]).sum(0)
            near = np.max(dirs @ dirs[other].T, axis=1) >= cos_sep
            total[near] = np.inf
            k = int(np.argmin(total))
            moved |= k != ks[i]
            ks[i] = k
        if not moved:
            break
    return ks


#: the largest misfit whose vote :func:`_gauss` computes: ``exp(-e / 2)`` beyond it is below float32's smallest normal
#: number (1.6e-38), where the vectorised exp falls back to a path 20-60x slower (most of a several-source call's time)
_GAUSS_MAX = 174.0
_GAUSS_FLOOR = float(torch.exp(torch.tensor(-0.5 * _GAUSS_MAX)))


def _gauss(e: torch.Tensor) -> torch.Tensor:
    """``exp(-e / 2)`` of misfits ``0 <= e <= _GAUSS_MAX`` (float32; in place) less ``exp(-_GAUSS_MAX / 2)``, so 0 at
    the cap: every value moves by less than 3e-38 (the floor, and a subnormal result may be flushed to 0; float32
    gives 0 or a subnormal number beyond the cap: no vote a direction could win by; above about 1e-30 the subtraction
    rounds to the value itself)."""
    e = e.mul_(-0.5)
    return torch.exp(e, out=e).sub_(_GAUSS_FLOOR)


def exact_votes(x: np.ndarray, ts: TemplateSet, n_sources: int, sep_deg: float, stft=None, **opts) -> dict:
    """Several sources on the set's own head: every active bin ``(t, f)`` of a Hann STFT of ``x (2, T)``
    (48 kHz; ``n_fft`` points, half overlap, every second bin from ``f_min`` to ``f_max``, at most
    ``max_frames`` frames evenly spread) gives a vote ``a * exp(-e/2)`` to each direction ``d`` (``a``: the
    bin's power re the loudest bin's to the power ``level_power``, 0.5: its amplitude; 0: every bin alike), with
    ``e = (ILD - ILD_d)^2 / s_ild^2 + |u - u_d|^2 / s_ipd^2`` (IPD phasor ``u`` up to ``ipd_max_hz``). A bin
    dominated by one source carries that source's interaural transfer function exactly; a mixed bin
    matches no direction in particular. The strongest direction wins, and the next source is voted for
    at least ``sep_deg`` from those found, by bins weighted by how little of them the found sources
    explain: with ``removal="null"`` (default) each bin's weight is multiplied, per found source, by
    ``(|X_l - r X_r|^2 / (|X_l|^2 + |r X_r|^2) / 2)^null_power``, ``r`` that source's interaural ratio
    ``H_l / H_r`` at the bin's frequency (the set's own HRTFs): the share of the bin's power left when the
    source is cancelled, 0 where it alone sounds and about 1/2 where it is absent, so a bin that
    mixes both sources keeps the part of its weight the other source brings (development two-source
    scenes, seeds 777 / 778: both found within 10 deg 90 / 87 -> 93 / 92 %); with ``"explained"`` the
    bins it explains (``e <= explained``) are dropped instead. Returns ``{"ks", "share"}``: direction
    indices and the share of active bins that one of them matches within ``e <= sharp`` (development scenes, two sources: the
    set's own head 0.52-0.91, an unseen head 0.22-0.54; :data:`EXACT_VOTES` ``min_share``). ``stft``: the
    STFT of ``x`` with these settings when already computed (:func:`_vote_stft`; several heads, one signal)."""
    o = {**EXACT_VOTES, **opts}
    if o["removal"] not in ("null", "explained"):  # before any work
        raise SpaqInputError(f"exact_votes: unknown removal {o['removal']!r}; use 'null' or 'explained'")
    n_fft = int(o["n_fft"])
    t = exact_templates(ts, n_fft, float(o["f_min"]), float(o["f_max"]), float(o["ipd_max_hz"]))
    X = (_vote_stft(x, o) if stft is None else stft)[..., t["bins"]]  # (2, M, K)
    PL, PR = np.abs(X[0]) ** 2 + 1e-30, np.abs(X[1]) ** 2 + 1e-30
    lev = 10 * np.log10(np.maximum(PL, PR))
    active = torch.from_numpy((lev >= lev.max() - float(o["active_range_db"])).T.copy())  # (K, M)
    si, sp = float(o["sigma_ild_db"]), float(o["sigma_ipd"])
    lo = t["lo"]
    k_lo = int(lo.sum())
    u = X[0][:, lo] * np.conj(X[1][:, lo])
    u = u / np.maximum(np.abs(u), 1e-30)
    z_ild = torch.from_numpy((10 * np.log10(PL / PR) / si).astype(np.float32)).T  # (K, M)
    z_re = torch.from_numpy(u.real.astype(np.float32)).T  # (K_lo, M)
    z_im = torch.from_numpy(u.imag.astype(np.float32)).T
    T_ild = torch.from_numpy(t["ild"]).T / si  # (K, D)
    T_re, T_im = torch.from_numpy(t["u_re"]).T, torch.from_numpy(t["u_im"]).T  # (K_lo, D)
    K = z_ild.shape[0]

    def misfit(a: int, b: int, cols=None, cap: float | None = None) -> torch.Tensor:  # e for bins a:b, (b - a, M, D
        Ti = T_ild[a:b] if cols is None else T_ild[a:b, cols]  # or len(cols)), clamped to [0, cap]
        e = (z_ild[a:b, :, None] - Ti[:, None, :]).square_()
        c = min(b, k_lo)
        if a < c:
            Tr = T_re[a:c] if cols is None else T_re[a:c, cols]
            Tm = T_im[a:c] if cols is None else T_im[a:c, cols]
            u = z_re[a:c, :, None] * Tr[:, None, :]  # (2 - 2 (re + im)) / sp^2, in place, the same operations
            u += z_im[a:c, :, None] * Tm[:, None, :]
            e[: c - a] += u.mul_(2.0).neg_().add_(2.0).div_(sp ** 2)
        return e.clamp_(0.0, cap)

    dirs = ts.directions
    ks, e_k = [], []
    # louder bins count more: a bin's level is its strongest source's, so the louder the bin, the
    # more one source dominates it and the more exactly it carries that source's interaural
    # transfer function (a sparse source -- speech -- beside a continuous one -- pink noise -- has
    # few bins to itself, but loud ones)
    keep = active.float() * torch.from_numpy((10 ** (float(o["level_power"]) * (lev - lev.max()) / 10)).T.astype(np.float32))
    step = int(o["chunk_bins"])
    with intra_op_threads(1):
        for _ in range(int(n_sources)):
            v = torch.zeros(T_ild.shape[1], dtype=torch.float64)
            for a in range(0, K, step):
                b = min(K, a + step)
                v += (keep[a:b, :, None] * _gauss(misfit(a, b, cap=_GAUSS_MAX))).sum((0, 1)).double()
            v = v.numpy()
            if ks:
                v[np.max(dirs @ dirs[ks].T, axis=1) >= np.cos(np.radians(sep_deg))] = -1.0
            if v.max() <= 0:
                break
            ks.append(int(np.argmax(v)))
            e_k.append(misfit(0, K, [ks[-1]])[..., 0])  # (K, M): how well the new source explains each bin
            if len(ks) == int(n_sources):
                break
            if o["removal"] == "explained":
                keep = keep * (e_k[-1] > float(o["explained"])).float()
            else:  # cancel the new source in every bin: the share of the bin's power left
                H = np.fft.rfft(ts.hrtf.hrir[ks[-1]], n=n_fft, axis=-1)[..., t["bins"]]  # (2, K)
                r = H[0] / np.where(np.abs(H[1]) > 1e-12, H[1], 1e-12)
                left = np.abs(X[0] - r * X[1]) ** 2 / (np.abs(X[0]) ** 2 + np.abs(r * X[1]) ** 2 + 1e-30)  # (M, K)
                share_left = torch.from_numpy(np.clip(left / 2, 0.0, 1.0).T.astype(np.float32))
                keep = keep * share_left ** float(o["null_power"])
        e_found = torch.stack(e_k).min(dim=0).values[active] if ks else torch.zeros(0)
    share = float((e_found <= float(o["sharp"])).double().mean()) if len(e_found) else 0.0
    return {"ks": ks, "share": share}


def _vote_stft(x: np.ndarray, o: dict) -> np.ndarray:
    """The STFT :func:`exact_votes` reads (``o``: its settings): ``(2, M, n_fft // 2 + 1)``."""
    return _hann_spectra(x, int(o["n_fft"]), int(o["n_fft"]) // 2, int(o["max_frames"]))


def _exact_vote_stage(x: np.ndarray, heads, n_sources: int, sep_deg: float, opts: dict) -> dict:
    """:func:`exact_votes` against every head of ``heads``: the one whose directions match the most
    bins, ``{"ks", "share", "set", "fit", "max_fit", "used"}`` (``fit``: 1 - share, for the provenance)."""
    o = {**EXACT_VOTES, **opts}
    best, stft = None, _vote_stft(x, o)  # one STFT for every head
    for h in heads:
        ts_h = template_set(h)
        r = exact_votes(x, ts_h, n_sources, sep_deg, stft=stft, **o)
        if best is None or r["share"] > best["share"]:
            best = {**r, "set": ts_h}
    best["fit"], best["max_fit"] = 1.0 - best["share"], 1.0 - float(o["min_share"])
    best["used"] = bool(best["share"] >= float(o["min_share"]) and len(best["ks"]) == int(n_sources))
    return best


def _exact_stage(x: np.ndarray, heads, opts: dict) -> dict:
    """:func:`exact_head_fit` against every head of ``heads``: the best ``{"fit", "k", "set",
    "max_fit"}`` (one DFT of ``x`` per DFT size)."""
    o = {**EXACT, **opts}
    spectra, best = {}, None
    for h in heads:
        ts_h = template_set(h)
        n_fft = exact_fft_size(ts_h)
        if n_fft not in spectra:
            spectra[n_fft] = exact_spectra(x, n_fft)
        fit, k = exact_head_fit(x, ts_h, spectra=spectra[n_fft], **o)
        if best is None or fit < best["fit"]:
            best = {"fit": fit, "k": k, "set": ts_h, "max_fit": float(o["max_fit"])}
    best["used"] = bool(best["fit"] <= best["max_fit"])
    return best


def candidate_sets(heads, direct: bool, drr_variants_db: tuple, head_scales: tuple) -> list:
    """The template sets head selection compares, in order: for every head of ``heads`` (names, paths
    or HRTF sets), where the direct sound dominates (``direct``) the set and its frequency-scaled
    variants (``head_scales``), else the set as heard in a diffuse field at each of ``drr_variants_db``
    (scaled heads only where the direct sound dominates: judging a head's fit needs its cues clean; in
    rooms the extra freedom fitted the reverberant mismatch, development median 19.2 -> 18.1 deg but
    mean 37.0 -> 39.1)."""
    drrs = (float("inf"),) if direct else tuple(drr_variants_db)
    scales = tuple(head_scales) if direct else (1.0,)
    bases = [template_set(h) for h in heads]  # once per head (a name or path is loaded here)
    return [scale_variant(drr_variant(b, float(drr)), float(sc)) for b in bases for drr in drrs for sc in scales]


def subgrid_direction(dirs: np.ndarray, cost: np.ndarray, k: int, radius_deg: float,
                      max_shift_deg: float) -> np.ndarray:
    """Refine the best direction ``dirs[k]`` of a grid ``dirs (D, 3)`` (unit vectors) with costs ``cost (D,)``
    between the grid points: a quadratic ``a + b u + c v + d u^2 + e uv + f v^2`` fitted (least squares) to the
    costs of the directions within ``radius_deg`` of it, in the tangent plane at it (``u``, ``v`` in radians),
    and its minimum, at most ``max_shift_deg`` away (further: clamped to that distance) -> a unit vector
    ``(3,)``. ``dirs[k]`` itself where fewer than 6 directions are that close or the fitted quadratic has no
    minimum (not convex)."""
    c0 = np.asarray(dirs[k], dtype=np.float64)
    near = np.flatnonzero(dirs @ c0 >= np.cos(np.radians(radius_deg)))
    if len(near) < 6:
        return c0
    ref = np.array([0.0, 0.0, 1.0]) if abs(c0[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    e1 = np.cross(ref, c0)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(c0, e1)
    u, v = dirs[near] @ e1, dirs[near] @ e2
    A = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=1)
    coef = np.linalg.lstsq(A, np.asarray(cost, dtype=np.float64)[near], rcond=None)[0]
    hess = np.array([[2 * coef[3], coef[4]], [coef[4], 2 * coef[5]]])
    if np.linalg.matrix_rank(A) < 6 or np.any(np.linalg.eigvalsh(hess) <= 0):
        return c0
    uv = -np.linalg.solve(hess, coef[1:3])
    r, cap = float(np.linalg.norm(uv)), float(np.radians(max_shift_deg))
    if r > cap:
        uv *= cap / r
    d = c0 + uv[0] * e1 + uv[1] * e2
    return d / np.linalg.norm(d)


def default_heads() -> tuple:
    """The template sets :func:`localize_templates` compares by default: the KU100 and, where
    installed, SONICOM subject 1 (``sonicom-2`` stays the held-out head)."""
    from ..spatial.hrtf import named_hrtf_paths

    return ("default",) + (("sonicom-1",) if "sonicom-1" in named_hrtf_paths() else ())


def _peaks(votes: np.ndarray, ts: TemplateSet, n: int, cap_deg: float, sep_deg: float):
    dirs = ts.directions
    cos_cap, cos_sep = np.cos(np.radians(cap_deg)), np.cos(np.radians(sep_deg))
    key = ("near", cap_deg)
    if key not in ts._flat:  # sparse neighbourhoods, once per set and cap
        from scipy.sparse import csr_matrix

        ts._flat[key] = csr_matrix((dirs @ dirs.T) >= cos_cap, dtype=np.float64)
    smooth = ts._flat[key] @ votes
    out = []
    for _ in range(n):
        if smooth.max() <= 0:
            break
        k = int(np.argmax(smooth))
        out.append(k)
        smooth = np.where(dirs @ dirs[k] >= cos_sep, 0.0, smooth)
    return out


def localize_templates(x: np.ndarray, sample_rate: int, hrtf=None, n_sources: int = 1,
                       frame_s: float = 0.2, vote_cap_deg: float = 8.0, min_separation_deg: float = 25.0,
                       refine_cap_deg: float = 15.0, fit_iterations: int = 3, head_margin: float = 1.0,
                       cues=None, reverberant: dict | None = None, room_cues=None, **opts) -> dict:
    """Localise the source(s) of binaural ``x (2, T)`` at ``sample_rate`` (resampled to 48 kHz)
    against the templates of ``hrtf`` (a name, SOFA path or HRTFSet, or a list of them: the set
    whose best direction fits the signal best is used -- head selection; None:
    :func:`default_heads`; ``head_margin`` < 1 favours the first set: another set must fit better
    by that factor -- 0.8-0.9 did not help on development scenes). Returns a dict: ``directions (S, 3)``, ``confidence (S,)``
    (weighted share of frames voting within ``refine_cap_deg`` of the source, read with the band templates of the
    head that answered; one source found by the exact-head stage: at least 1 - its misfit / its ``max_fit``), trajectory
    ``frame_times_s (M,)``, ``frame_dirs (M, 3)`` (best direction per ``frame_s`` block),
    ``frame_source (M,)`` (nearest source, -1 for blocks with no weight), ``direct_coherence`` (of all
    bands, of the signal as observed: dereverberated where that ran),
    ``direct_sound`` (whether the direct sound dominates: the gate of the room settings and reverberant
    templates, ``room_gate``: the coherence it read, its threshold and the bands, ``below_hz``; one source:
    the coherence of the bands up to :data:`DEREVERB`'s ``below_hz`` before dereverberation, else of all
    bands against ``drr_coherence``), ``dereverberated`` (whether :data:`DEREVERB` ran),
    ``low_frequency_coherence`` and ``refined`` (whether the answer was moved between the measured directions,
    :data:`SUBGRID_SPACINGS`),
    settings. ``cues``: the
    ``(features, levels)`` of ``x`` at 48 kHz and -30 dBFS with 20 ms frames when already computed
    (:func:`spaq.localization.localize._cue_input`; used only with the default 20 ms frames); ``room_cues``:
    the same at the room settings' frame length, when already computed.
    ``exact=False`` turns the exact-head stages off (:func:`exact_head_fit` for one source,
    :func:`exact_votes` for several); ``exact_opts``: overrides of :data:`EXACT`, and under ``"votes"``
    of :data:`EXACT_VOTES`. The result's ``exact_head`` says which head the stage matched, its misfit
    and whether its directions were used. ``reverberant``: the options for one source where the direct sound
    does not dominate (None: :data:`REVERBERANT`; ``{}``: the same options as elsewhere; options passed
    explicitly are kept); the result's ``settings`` are those used."""
    from ..io import resample

    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != 2:
        raise SpaqInputError(f"template localisation needs binaural (2, T) input, got {tuple(x.shape)}")
    if int(sample_rate) != ANALYSIS_RATE:
        x = resample(x, int(sample_rate), ANALYSIS_RATE)
    rms = float(np.sqrt(np.mean(x ** 2)))
    if rms > 0:  # direction does not depend on level: analyse at -30 dBFS (the front-end floors bands at
        x = x * (10 ** (-30 / 20) / rms)  # the hearing threshold, which would swallow a quiet recording's cues)
    heads = default_heads() if hrtf is None else (list(hrtf) if isinstance(hrtf, (list, tuple)) else [hrtf])
    S = int(n_sources)
    given = set(opts)
    opts = {**DEFAULTS, **(MULTI_SOURCE if S > 1 else {}), **opts}
    fe_frame = float(opts["frame_ms"]) / 1000.0
    if x.shape[-1] < int(fe_frame * ANALYSIS_RATE):
        raise SpaqInputError(f"signal too short for template localisation ({x.shape[-1] / ANALYSIS_RATE:.3f} s "
                             f"< one {fe_frame * 1000:.0f} ms frame)")
    group_bands = opts.pop("group_bands", 29)
    exact_stage = bool(opts.pop("exact", True))
    subgrid = float(opts.pop("subgrid_spacings"))
    exact_opts = dict(opts.pop("exact_opts", {}))
    room = {k: v for k, v in (REVERBERANT if reverberant is None else reverberant).items() if k not in given}
    room_ms = float(room.pop("frame_ms", opts["frame_ms"]))  # the room's frames: kept apart from its weights
    if S > 1 or room_ms == float(opts["frame_ms"]) or x.shape[-1] < int(round(room_ms * ANALYSIS_RATE / 1000)):
        room_ms = None  # the frames stay (several sources, the same length, or a signal shorter than one frame)
    # the cues of x: given, or computed lazily (the gate below needs the low bands only; a signal that is
    # dereverberated is observed again, so its other bands as given are never computed)
    observed = None
    if cues is None or float(opts["frame_ms"]) != 20.0:
        observed = _Observed(x, opts["frame_ms"], also_ms=room_ms)  # one pass of the bands, framed at both lengths
    from .localize import direct_coherence

    dereverb = opts.pop("dereverb")
    dereverb = dict(DEREVERB if dereverb is None else dereverb)  # {}: off
    dereverb_rule = {k: dereverb.pop(k) for k in ("below", "below_hz", "min_taps") if k in dereverb}
    dereverbed, x_given = False, x  # the exact-head stage reads the signal as given (a set's own head, anechoic)
    low_coherence = None
    if S == 1 and dereverb:  # the gate: the coherence of the low bands, where the head shadows little
        low_coherence = room_gate(x, observed, cues, float(dereverb_rule.get("below_hz", np.inf)))
        if low_coherence >= float(dereverb_rule.get("below", 0.0)):  # the direct sound dominates (the gate below)
            if observed is not None:
                observed.first_length_only()  # no room frames needed
        else:  # a shorter signal gets the longest filter it supports; none below min_taps
            y, taps = dereverberate(x, {**dereverb, "min_taps": dereverb_rule.get("min_taps", 1)})
            if y is not None:
                dereverb["taps"] = taps  # the settings report the filter used
                x, dereverbed = y, True
    if dereverbed:  # late reverberation removed: observed again
        observed = _Observed(x, opts["frame_ms"], also_ms=room_ms)
    if observed is not None:
        if room_ms is not None:
            cues, room_cues = observed.result()
        else:
            cues = observed.result()
    coherence = direct_coherence(cues[0], cues[1])
    # the room settings and reverberant templates only where the direct sound does not dominate. One source
    # (dereverberation on): the low bands' coherence before dereverberation, the gate of DEREVERB (development
    # scenes: rooms 96 % below 0.95, anechoic KU100 and sonicom-2 0-0.5 %); otherwise the coherence of all
    # bands below ``drr_coherence`` (rooms: median 0.70; anechoic: 10th percentile 0.87-0.93, far-lateral
    # sources below it)
    drrs = tuple(opts.pop("drr_variants_db"))
    drr_coherence = float(opts.pop("drr_coherence"))
    if low_coherence is not None:
        gate = {"coherence": float(low_coherence), "threshold": float(dereverb_rule.get("below", 0.0)),
                "below_hz": float(dereverb_rule.get("below_hz", np.inf))}
    else:
        gate = {"coherence": float(coherence), "threshold": drr_coherence, "below_hz": None}
    direct = bool(gate["coherence"] >= gate["threshold"])
    if S == 1 and not direct and (room or room_ms is not None):  # a room: its own frames and weights (REVERBERANT)
        opts = {**opts, **room}
        if room_ms is not None:
            opts["frame_ms"] = room_ms
            cues = room_cues if room_cues is not None else _observed_cues(x, room_ms)
            fe_frame = room_ms / 1000.0
    obs = _observation(x, opts, cues)
    nf = obs[0].shape[0]
    per = max(1, int(round(frame_s / fe_frame)))  # analysis frames per trajectory block
    if S == 1:  # one source needs only block sums: pool first (the matrix products shrink per-fold)
        obs, unit = _pool(obs, per), per
    else:
        unit = 1
    fits, sums = [], observation_sums(obs)
    for ts_h in candidate_sets(heads, direct, drrs, tuple(opts.pop("head_scales"))):
        f = float(summed_distances(ts_h, sums, **opts).min())
        fits.append((f if not fits else f / head_margin, ts_h))
    fit, ts = min(fits, key=lambda t: t[0])
    k = per // unit  # trajectory blocks: distances summed over blocks of frame_s
    if S == 1:  # pooled: (blocks, Nd) is small
        D, fw = frame_distances(x, ts, observation=obs, **opts)  # (nf, Nd), (nf,): the best set's only
        best = np.argmin(D, axis=1)  # per-frame vote
        bD = np.stack([D[i * k:(i + 1) * k].sum(0) for i in range(-(-len(D) // k))])
    else:  # every frame: reduced chunk by chunk (a long signal's (nf, Nd) would not fit)
        best, bD, fw = _frame_votes(ts, obs, k, opts)
    if not np.any(fw > 0):
        raise SpaqInputError("no band carries usable binaural cues (below the hearing threshold, or one ear silent "
                             "or the ears uncorrelated): no direction can be estimated")
    dirs = ts.directions
    cos_ref = np.cos(np.radians(refine_cap_deg))
    exact = None
    found_set = ts  # the set whose directions are reported (an exact-head stage's when it is used)
    if S == 1:
        ks = [int(np.argmin(D.sum(0)))]
        if exact_stage:  # the exact-head stage: used where its interaural misfit is small
            exact = _exact_stage(x_given, heads, {kk: v for kk, v in exact_opts.items() if kk != "votes"})
            if exact["used"]:
                found_set, ks = exact["set"], [exact["k"]]
    else:  # votes of every (frame, group of bands), peaks, each refined by the units that voted near it
        units = _Units(ts, obs, int(group_bands), opts)  # their distances, a chunk of frames at a time
        gw = units.gw
        gbest = np.concatenate([np.argmin(Dg, axis=1) for _, Dg in units.chunks()] or [np.zeros(0, dtype=np.int64)])
        seeds = _peaks(np.bincount(gbest, weights=gw, minlength=len(dirs)), ts, S, vote_cap_deg,
                       min_separation_deg)
        ks = []
        if seeds:
            owner = np.argmax(dirs[gbest] @ dirs[seeds].T, axis=1)
            sels = [(owner == i) & (dirs[gbest] @ dirs[k0] >= cos_ref) for i, k0 in enumerate(seeds)]
            cands = [np.flatnonzero(dirs @ dirs[k0] >= cos_ref) for k0 in seeds]
            sums = [np.zeros(len(c)) for c in cands]
            if any(sel.any() for sel in sels):  # each seed refined by the units that voted near it
                for start, Dg in units.chunks():
                    for sel, cand, tot in zip(sels, cands, sums):
                        part = sel[start:start + len(Dg)]
                        if part.any():
                            tot += Dg[part][:, cand].sum(0)
            ks = [k0 if not sel.any() else int(cand[np.argmin(tot)]) for k0, sel, cand, tot in zip(seeds, sels, cands, sums)]
        if fit_iterations > 0 and len(ks) > 1:
            ks = _fit_directions(units, ks, dirs, min_separation_deg, fit_iterations)
        if exact_stage:  # the exact-head votes: used where the found directions match enough bins sharply
            exact = _exact_vote_stage(x, heads, S, min_separation_deg, exact_opts.get("votes", {}))
            if exact["used"]:
                found_set, ks = exact["set"], list(exact["ks"])
    if exact is not None and exact["used"] and found_set is not ts:
        # the exact-head stage recognised another head than the band templates' choice: the frames' votes (the
        # confidence, the trajectory) are read with that head's own band templates, not against the other head's
        ts, dirs = found_set, found_set.directions
        if S == 1:
            D, fw = frame_distances(x, ts, observation=obs, **opts)
            best = np.argmin(D, axis=1)
            bD = np.stack([D[i * k:(i + 1) * k].sum(0) for i in range(-(-len(D) // k))])
        else:
            best, bD, fw = _frame_votes(ts, obs, k, opts)
    found = found_set.directions[ks] if ks else np.zeros((0, 3))
    refined = False
    if subgrid > 0 and S == 1 and direct and len(ks) and not (exact is not None and exact["used"]):
        step = found_set.spacing_deg()  # fitted within subgrid steps, moved at most one step
        d_ref = subgrid_direction(dirs, D.sum(0), ks[0], subgrid * step, step)  # S == 1: D as computed above
        if np.sign(d_ref[0]) != np.sign(found[0][0]):  # front and back are the grid search's decision (it compares
            d_ref = found[0]  # the full templates of both): a refinement across the frontal plane is not made
        refined = bool(d_ref @ found[0] < 1.0 - 1e-12)
        found = d_ref[None]
    conf = np.array([float(fw[(dirs[best] @ d) >= cos_ref].sum() / fw.sum()) for d in found])
    # one source recognised by the exact-head stage as a head's own rendering: the band templates' frames may vote
    # elsewhere (tonal sources fit them badly), so its misfit says how sure it is, and it reads the blocks below
    exact_one = S == 1 and exact is not None and exact["used"] and len(found) > 0
    if exact_one:
        conf = np.maximum(conf, 1.0 - float(exact["fit"]) / float(exact["max_fit"]))
    order = np.argsort(-conf, kind="stable")  # strongest first
    found, conf = found[order], conf[order]
    # trajectory: the blocks' summed distances (bD above)
    nb = len(bD)
    bw = np.array([fw[i * k:(i + 1) * k].sum() for i in range(nb)])
    bdir = dirs[np.argmin(bD, axis=1)]
    if exact_one:  # a block whose band-template vote lies away from the answer: that stage on the block's samples
        o_ex = {**EXACT, **{kk: v for kk, v in exact_opts.items() if kk != "votes"}}  # as _exact_stage merges them
        fl = int(round(fe_frame * ANALYSIS_RATE))
        for i in np.flatnonzero(((bdir @ found[0]) < cos_ref) & (bw > 0)):
            fit_i, k_i = exact_head_fit(x_given[:, i * per * fl:min((i + 1) * per, nf) * fl], found_set, **o_ex)
            if fit_i <= float(o_ex["max_fit"]):
                bdir[i] = found_set.directions[k_i]
    src = np.argmax(bdir @ found.T, axis=1) if len(found) else np.zeros(nb, dtype=int)
    src = np.where(bw > 0, src, -1)
    times = (np.arange(nb) * per + np.minimum(per, nf - np.arange(nb) * per) / 2.0) * fe_frame
    return {"directions": found, "confidence": conf, "frame_times_s": times, "frame_dirs": bdir,
            "frame_source": src, "template_set": found_set, "n_frames": nf,
            "head_fit": {_label(f[1]): round(f[0] / max(float(fw.sum()), 1e-12), 4) for f in fits},
            "direct_coherence": coherence, "direct_sound": direct, "dereverberated": dereverbed, "refined": refined,
            "low_frequency_coherence": low_coherence, "room_gate": gate, "drr_coherence": drr_coherence,
            "drr_db": getattr(ts, "drr_db", float("inf")),
            "head_scale": getattr(found_set, "scale", 1.0),
            "exact_head": None if exact is None else {"hrtf": exact["set"].name, "fit": round(exact["fit"], 4),
                                                      "used": exact["used"]},
            "settings": {**opts, "frame_s": per * fe_frame, "analysis_frame_s": fe_frame,
                         "dereverb": {**dereverb_rule, **dereverb} if dereverb and S == 1 else {},
                         "subgrid_spacings": subgrid,
                         **({"group_bands": group_bands} if S > 1 else {})}}
