"""Functional core of spaq's own global quality metric (``quality``): pure functions on
tensors, differentiable where the maths allows:

* :func:`quality_maps` -- per-bin distortion maps from the shared auditory front-end
  (:class:`~spaq.auditory.frontend.AuditoryFrontEnd`, 29 gammatone bands x 40 ms frames,
  computed once for reference and degraded, ears of both in one pass);
* :func:`pool_features` -- length-normalised pooling: the mean over the audible bins of
  each map (never a sum over frames), so scores do not depend on duration;
* :class:`spaq.models.quality.QualityMapping` -- non-negative weights and a log-logistic
  mapping to 0..100 (100 for identical signals).

What is compared (ambisonics are decoded to the ears with the MagLS decoder of the default
KU100 HRTF, the same one the ``cues`` metric uses, so both formats share one scale):

* timbral, on both ears together (binaural summation, version 3): sensation level (dB above
  the ISO 389-7 threshold floor, 100 dB SPL at digital full scale) of the ear-averaged
  gammatone envelope power per band and frame: energy the degraded signal *adds*
  (``added_db``) and *misses* (``missing_db``) beyond the just-noticeable level difference
  (:data:`LEVEL_JND_DB`, version 3), with the diffuse part of each signal's band power judged
  as a texture over 1 s (:func:`texture_power`, weighted by 1 - the reference's interaural
  coherence, :data:`TEXTURE_FRAMES`; version 4) and what the reference's own sound masks left
  out (both signals' band levels floored at the reference's masked threshold,
  :func:`masked_threshold`, :data:`MASKING`; version 5), and the loss of coherence between reference
  and degraded band signals, cross-spectra and powers summed over the ears (``incoherence``:
  fine structure below 1.3 kHz, envelope above) -- ViSQOL/NSIM-like structure on spaq's own
  representation -- and (version 14) ``noisiness``, the envelope fluctuation the degraded signal adds
  within a band (:func:`_band_cues`' ``fluct``: var / mean^2 of the band power over a 40 ms frame, 0 for
  a steady partial, 1 for Gaussian noise): per band, the mean over the frames of the degraded minus the
  reference fluctuation weighted by the reference's interaural coherence, clamped at 0
  (:func:`_band_texture_excess`), counted where the reference's band is heard above what its other
  bands mask. Noise 10-20 dB under a tone raises the band's level by less than
  the level JND, so ``added_db`` misses it, but it makes the tone's steady envelope fluctuate, which is
  how it is heard (a tone masks noise far less than noise masks a tone); noise added to noise, or to
  the diffuse part a decorrelating coder resynthesises, adds no fluctuation. Summing the ears first means a diffuse part that is decorrelated
  differently at each ear (what parametric spatial codings resynthesise) costs less than a
  per-ear comparison made it cost, while diotic input is unchanged;
* spatial, frame by frame: change of ILD (dB), of interaural coherence magnitude and of
  interaural phase (``d_ipd``, weighted by both coherences); for ambisonics also first-order
  directiveness and the shift of the intensity direction per band and frame (``d_direction``,
  weighted by the reference directiveness; 1 = 180 degrees);
* spatial, as statistics (version 3): ``d_ic_mean``, the change of each band's time-mean
  interaural coherence (the width/diffuseness of the image), and ``d_ild_mean``, the change
  of each band's time-mean ILD beyond 2 dB (a systematic lateral shift; :func:`mean_change`; version 11:
  ``d_ild_mean``'s bands weighted by the reference's sensation level and ``d_ic_mean``'s by the share of
  the time they have interaural coherences, ``statistic_weights``);
* spatial, from the ITD (version 12): each frame's low-frequency ITD (:func:`frame_itd`, the summary
  cross-correlation of the fine-structure bands' interaural coherences), and ``d_itd``, the median
  change of it over the frames where both signals are coherent (:func:`itd_change`): the lateral
  displacement where the ILD no longer grows with the angle (near the interaural poles).

Playback level: an overall gain difference between degraded and reference is treated as a
volume setting and compensated before comparison (energy match of both ears, or of W for
ambisonics: broadband in versions 1-14, as the front-end's bands hear it in version 15,
:data:`GAIN_MATCHES`; limited to +-20 dB; reported as ``gain_compensation_db``); absolute level
matters only through the hearing threshold, assuming digital full scale = 100 dB SPL.
"""
from __future__ import annotations

import math
from functools import partial

import torch

from ...auditory.binaural_cues import frame
from ...auditory.frontend import AUDIBLE_HZ, AuditoryFrontEnd
from ...auditory.pairs import ear_spectrum
from ...auditory.streaming import SegmentReader, run_chunked
from ...models.quality import LATERAL_FEATURES, SPATIAL_FEATURES, TIMBRAL_FEATURES, QualityMapping
from ...spatial.decoders import channel_energy, pair_orders

__all__ = ["quality_maps", "quality_maps_streamed", "pool_features", "quality_features", "gain_match",
           "distortion_maps", "moving_average", "texture_power", "masked_threshold", "MAX_GAIN_DB", "TEXTURE_FRAMES",
           "MASKING"]

MAX_GAIN_DB = 20.0
#: level differences (dB, per band and 40 ms frame, both ears together) up to this are not counted
#: by added_db / missing_db: the just-noticeable level difference of a short narrow-band sound is
#: about 1-2 dB (0.5, 1, 1.5, 2 and 3 dB were compared on the two listening tests, issue 19)
LEVEL_JND_DB = 1.5
#: systematic ILD shifts (per band, of the time mean) below this are not counted by d_ild_mean
#: (localisation blur; 1, 2 and 3 dB were compared on the spatial-codings MUSHRA, issue 19)
ILD_BLUR_DB = 2.0
#: the statistics of the spatial image: pooled feature -> (the two maps it compares, threshold)
STATISTICS = {"d_ic_mean": ("ic_ref", "ic_deg", 0.0), "d_ild_mean": ("ild_ref", "ild_deg", ILD_BLUR_DB)}
#: the map that weighs each statistic's bands when the maps carry it (version 11; absent: every band alike)
STATISTIC_WEIGHTS = {"d_ic_mean": "ic_weight", "d_ild_mean": "ild_weight"}
#: the band weightings each statistic can have (``statistic_weights``; "equal" for none)
STATISTIC_WEIGHTINGS = {"d_ild_mean": ("equal", "level"), "d_ic_mean": ("equal", "time")}
#: bands of each ambisonic order within this range (dB) of the order's loudest band in the
#: reference count for ``d_order`` (:func:`order_loss`; version 8)
ORDER_BAND_RANGE_DB = 30.0
#: diffuse sound is judged over a longer window (version 4, issue 19): where the reference's
#: interaural coherence ``c`` (per band and frame) is low, each signal's band power entering
#: added_db / missing_db is ``c p + (1 - c) p_smoothed``, ``p_smoothed`` its centred moving average
#: over this many 40 ms frames (1 s). Listeners keep the time-averaged statistics of sound
#: textures (reverberation, decorrelated resynthesis), not their frame-by-frame detail (McDermott,
#: Schemitsch and Simoncelli 2013); direct sound (c = 1, every diotic signal) is unchanged. 5, 13,
#: 25 and 50 frames were compared on the two listening tests (benchmarks/results/quality_explorations.md).
TEXTURE_FRAMES = 25
#: masking of the timbral comparison (version 5, issue 19): both signals' band levels entering
#: added_db / missing_db are floored at the reference's masked threshold (:func:`masked_threshold`),
#: so that a component the reference's own sound masks is not counted when a codec removes or adds
#: it (the principle of PEAQ and PESQ's disturbance, on spaq's ERB bands): excitation spread 15 dB
#: per ERB band upwards, 35 dB downwards, forward masking decaying 10 dB per 40 ms frame, threshold
#: 4 dB below the masker (noise-masking-tone offsets are a few dB). 4, 5, 6 and 8 dB were compared
#: on the two listening tests (benchmarks/results/quality_explorations.md); None turns it off.
MASKING = dict(up_db=15.0, down_db=35.0, decay_db=10.0, offset_db=4.0, horizon=8)
TIMBRAL_MAPS = TIMBRAL_FEATURES  # (B, 1, F, nf): both ears together
# (B, F, nf); the statistics, d_order and d_itd (from the frame-wise ITDs itd_ref / itd_deg) pooled apart
SPATIAL_MAPS = tuple(k for k in SPATIAL_FEATURES if k not in STATISTICS and k not in ("d_order", "d_itd"))


def _gain_db(er: torch.Tensor, ed: torch.Tensor) -> torch.Tensor:
    """Gain (dB) that brings energy ``ed`` to ``er``, within +-``MAX_GAIN_DB``; 0 dB if either is 0."""
    ok = (ed > 0) & (er > 0)
    g_db = torch.where(ok, 10 * torch.log10(torch.where(ok, er / torch.where(ok, ed, torch.ones_like(ed)),
                                                        torch.ones_like(er))), torch.zeros_like(er))
    return torch.clamp(g_db, -MAX_GAIN_DB, MAX_GAIN_DB)


#: what the overall gain match equalises (the parameters' ``gain_match``): ``broadband`` (versions 1-14),
#: the waveform energy; ``heard`` (version 15), that energy as the front-end's bands hear it
#: (:meth:`AuditoryFrontEnd.heard_weights`), so that energy above the top band (centre 11.8 kHz), which no feature
#: sees, does not turn the degraded signal up: a 14 kHz low-pass of white noise was compensated by 1.3 dB
#: binaurally and 2.3 dB in FOA (W unfiltered), 100.0 against 72.9; ``audible`` (version 16), the heard energy
#: from :data:`~spaq.auditory.frontend.AUDIBLE_HZ` (20 Hz) up: a DC offset or infrasound is no sound (a 0.05 DC
#: offset under noise at -26 dBFS was matched as 5.2 dB of extra level, 15.8 against 100.0)
GAIN_MATCHES = ("broadband", "heard", "audible")


def _matched_energy(x: torch.Tensor, ambisonic: bool, frontend: AuditoryFrontEnd | None = None,
                    min_hz: float = 0.0) -> torch.Tensor:
    """Energy ``(B,)`` the gain match compares: of both ears, or of W for ambisonics; with ``frontend``, as its
    bands hear it from ``min_hz`` up (``gain_match`` "heard": 0, "audible": 20 Hz), else broadband."""
    x = (x[:, :1] if ambisonic else x).to(torch.float64)
    if frontend is None:
        return torch.sum(x ** 2, dim=(-2, -1))
    spec = torch.fft.rfft(x, dim=-1)
    w = frontend.heard_weights(x.shape[-1], device=x.device, min_hz=min_hz)
    return torch.sum((spec.real ** 2 + spec.imag ** 2) * w, dim=(-2, -1))


def gain_match(ref: torch.Tensor, deg: torch.Tensor, ambisonic: bool,
               frontend: AuditoryFrontEnd | None = None, min_hz: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale ``deg (B, C, T)`` so that its energy (both channels, or W for ambisonics; as ``frontend``'s bands
    hear it from ``min_hz`` up when given, else broadband) equals the reference's, within +-``MAX_GAIN_DB``.
    Returns ``(scaled deg, gain_db (B,))``; a silent degraded signal is left as it is (gain 0 dB)."""
    g_db = _gain_db(_matched_energy(ref, ambisonic, frontend, min_hz), _matched_energy(deg, ambisonic, frontend, min_hz))
    return deg * (10 ** (g_db / 20)).to(deg.dtype).view(-1, 1, 1), g_db


def _band_cues(x: torch.Tensor, frontend: AuditoryFrontEnd, decoder, n_min: int = 0,
               orders: torch.Tensor | None = None) -> dict:
    """One pass of the shared front-end (its gammatone responses, band groups, decimation and
    envelope low-pass) over reference and degraded ears ``x (B, 2, C, T)``.
    Returns ``p_ear (B, 2 sig, 2 ears, F, nf)`` (envelope power, unfloored), ``ic`` interaural
    coherence ``(B, 2 sig, F, nf)`` and ``xc`` reference-degraded coherence of both ears together
    (cross-spectra and powers summed over the ears) ``(B, F, nf)`` (complex, NaN where a power is 0).
    ``decoder``: one ``(2, C_dec, L)`` tensor, or a dict of them by order with ``orders (B, 2)``
    (effective-order decoding, :func:`~spaq.auditory.pairs.ear_spectrum`)."""
    t = x.shape[-1]
    spec = ear_spectrum(x, frontend, decoder, n_min, orders)
    fc = frontend.center_frequencies_hz

    def group(bands, decim, band, env):  # band, env: (B, S, E, G, T')
        fl = frontend.frame_len // decim
        # coherence signal as in the front-end's binaural cues: fine structure below the MSO
        # roll-off, complex envelope above
        fine = (fc[bands] < frontend.mso_rolloff_hz).view(-1, 1).to(band.device)
        z = frame(torch.where(fine, band, env), fl)  # (B, S, E, G, nf, fl)
        pw = z.real ** 2 + z.imag ** 2  # (B, S, E, G, nf, fl): the band's power, sample by sample
        pz = torch.mean(pw, dim=-1).to(torch.float64)  # (B, S, E, G, nf)
        x_ia = torch.mean(z[:, :, 0] * torch.conj(z[:, :, 1]), dim=-1).to(torch.complex128)
        x_rd = torch.mean(z[:, 0] * torch.conj(z[:, 1]), dim=-1).to(torch.complex128)
        a = frame(env.real, fl).mean(dim=-1).to(torch.float64) / math.sqrt(2.0)
        # envelope fluctuation within the frame (version 14): var / mean^2 of the band's power, each ear,
        # then the ears' mean; 0 for a steady tone, 1 for Gaussian noise (its power is exponential)
        e2 = torch.mean(pw * pw, dim=-1).to(torch.float64)
        fluct = (e2 - pz ** 2) / torch.where(pz > 0, pz, torch.ones_like(pz)) ** 2
        # both ears together (binaural summation): cross and powers summed over the ears
        return {"p_ear": a ** 2 / 2, "ic": _normalise(x_ia, pz[:, :, 0], pz[:, :, 1]),
                "xc": _normalise(x_rd.sum(dim=1), pz[:, 0].sum(dim=1), pz[:, 1].sum(dim=1)),
                "fluct": fluct.clamp(0.0, 1.0).mean(dim=2)}
    out = frontend.band_plan(spec, t).map(group)  # the band groups on two threads where allowed, in order
    c = {k: torch.cat([o[k] for o in out], dim=-2) for k in out[0]}
    c["itd"], c["itd_peak"] = frame_itd(c["ic"], fc.to(c["ic"].device), frontend.mso_rolloff_hz)
    return c


#: the interaural delays (ms) the frame-wise ITD is searched over (:func:`frame_itd`): +-1.5 ms in 10 us steps,
#: beyond the largest natural ITD (about 0.8 ms), so that a delay imposed on a lateral source is still read
ITD_GRID_MS = torch.linspace(-1.5, 1.5, 301, dtype=torch.float64)
#: frames where either signal's ITD peak (the mean over the fine-structure bands of the coherence's real
#: part at the best delay, 0..1) is below this have no ITD (``d_itd``): a lateral position is heard from
#: the ITD of coherent sound; in diffuse or decorrelated sound the peak is low and its delay arbitrary
#: (0.5, 0.7, 0.8 and 0.9 were compared, benchmarks/results/quality_explorations.md)
ITD_MIN_PEAK = 0.7


def frame_itd(ic: torch.Tensor, fc_hz: torch.Tensor, below_hz: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each frame's interaural time difference from the complex interaural coherences of the
    fine-structure bands (centre frequency below ``below_hz``, the MSO roll-off): the delay of
    :data:`ITD_GRID_MS` that maximises ``mean_f Re(ic_f exp(-i 2 pi f_c tau))``, the summary
    cross-correlation of the bands (a Jeffress-style read-out of the phase differences that is
    not wrapped at each band's period). ``ic (..., F, nf)`` -> ``(itd_ms (..., nf), peak (..., nf))``,
    NaN where no band has a coherence; positive = the left ear leads."""
    fine = fc_hz < below_hz
    z = ic[..., fine, :]  # (..., Ff, nf)
    ok = torch.isfinite(z.real)
    z = torch.where(ok, z, torch.zeros_like(z))
    n = ok.sum(dim=-2)
    tau = ITD_GRID_MS.to(z.device) * 1e-3
    rot = torch.exp(-2j * math.pi * fc_hz[fine].to(torch.float64).view(-1, 1) * tau.view(1, -1))  # (Ff, G)
    cc = torch.einsum("...fn,fg->...ng", z.to(torch.complex128), rot.to(z.device)).real  # (..., nf, G)
    peak, idx = cc.max(dim=-1)
    nn_ = n.clamp(min=1).to(torch.float64)
    nan = torch.full_like(peak, float("nan"))
    return (torch.where(n > 0, ITD_GRID_MS.to(z.device)[idx], nan), torch.where(n > 0, peak / nn_, nan))


def _normalise(cross: torch.Tensor, pa: torch.Tensor, pb: torch.Tensor) -> torch.Tensor:
    """Complex coherence ``cross / sqrt(pa pb)``, NaN where a power is 0 (safe gradients)."""
    den = pa * pb
    ok = den > 0
    coh = cross / torch.sqrt(torch.where(ok, den, torch.ones_like(den)))
    return torch.where(ok, coh, torch.full_like(coh, float("nan")))


def _intensity(hoa: torch.Tensor, frontend: AuditoryFrontEnd) -> torch.Tensor:
    """First-order active intensity per ERB band and frame: ``(..., C>=4, T)`` -> ``(..., 3, F, nf)``
    (same STFT frames and band grouping as the front-end's directiveness)."""
    win = frontend.dir_window
    L = win.shape[0]
    lead = hoa.shape[:-2]
    x = hoa[..., :4, :].reshape(-1, hoa.shape[-1]).to(torch.float64)
    spec = torch.stft(x, n_fft=L, hop_length=L, win_length=L, window=win.to(x.device), center=False,
                      return_complex=True) / L
    spec = spec.reshape(*lead, 4, spec.shape[-2], spec.shape[-1])
    inten = torch.real(spec[..., :1, :, :].conj() * spec[..., 1:4, :, :]) * math.sqrt(3 / 2)
    return torch.einsum("kf,...fl->...kl", frontend.dir_grouping.to(inten.dtype).to(inten.device), inten)


def _order_energy(hoa: torch.Tensor, frontend: AuditoryFrontEnd) -> torch.Tensor:
    """Energy of each ambisonic order per ERB band and frame: ``(..., (N+1)^2, T)`` ->
    ``(..., N+1, F, nf)`` (the directiveness's STFT frames and band grouping; one order at a
    time, so memory holds at most 2N+1 channels' spectra)."""
    win = frontend.dir_window.to(torch.float32)  # float32: an energy share, not a level to 1e-6 dB
    L = win.shape[0]
    lead = hoa.shape[:-2]
    n_max = int(round(hoa.shape[-2] ** 0.5)) - 1
    group = frontend.dir_grouping.to(torch.float32).to(hoa.device)
    out = []
    for n in range(n_max + 1):
        x = hoa[..., n * n:(n + 1) ** 2, :].reshape(-1, hoa.shape[-1]).to(torch.float32)
        spec = torch.stft(x, n_fft=L, hop_length=L, win_length=L, window=win.to(x.device), center=False,
                          return_complex=True)
        p = (spec.real ** 2 + spec.imag ** 2).reshape(*lead, 2 * n + 1, spec.shape[-2], spec.shape[-1]).sum(dim=-3)
        out.append(torch.einsum("kf,...fl->...kl", group, p).to(torch.float64) / (L * L))
    return torch.stack(out, dim=-3)


def _quality_chunk(r: torch.Tensor, d: torch.Tensor, keep: tuple, n_min: int, state, *,
                   frontend: AuditoryFrontEnd, decoder, gain_db: torch.Tensor | None,
                   orders: torch.Tensor | None = None):
    """The core on one chunk ``(B, C, n)``: band cues of frames ``keep = (k0, k1)`` (and for
    ambisonics directiveness, carrying its smoothing ``state``, intensity and the energy of each
    order)."""
    k0, k1 = keep
    fl = frontend.frame_len
    # (B, 2, C, n) filled in place, in the front-end's spectrum dtype (float64 in exact mode,
    # float32 in fast mode, whose spectra are float32 anyway): no copies of r and d besides x
    x = r.new_empty((r.shape[0], 2) + tuple(r.shape[1:]), dtype=frontend.spectrum_dtype)
    x[:, 0] = r
    x[:, 1] = d if gain_db is None else d * (10 ** (gain_db / 20)).to(x.dtype).view(-1, 1, 1)
    c = {k: v[..., k0:k1] for k, v in _band_cues(x, frontend, decoder, n_min, orders).items()}
    if decoder is not None:
        seg = x[..., k0 * fl:k1 * fl]
        c["dir"], state = frontend.directiveness(seg, state=state, return_state=True)
        c["inten"] = _intensity(seg, frontend)
        if orders is not None:
            c["order_energy"] = _order_energy(seg, frontend)
    return c, state


def head_turned(reader: SegmentReader, sample_rate: int, range_deg: float, period_s: float,
                turned: torch.Tensor | None = None) -> SegmentReader:
    """``reader`` of an ambisonic pair ``(B, C, T)`` with both signals of each pair turned by the same
    head movement (:func:`spaq.spatial.ambisonics.head_turn_yaw`,
    :func:`~spaq.spatial.ambisonics.rotate_yaw`): the scene as a listener hears it who turns the head
    back and forth over ``+-range_deg``. ``turned`` ``(B,)`` bool: the pairs that turn (None: all)."""
    from ...spatial.ambisonics import head_turn_yaw, rotate_yaw

    n = reader.n_samples

    def read(a, b):
        r, d = reader.read(a, b)
        yaw = head_turn_yaw(a, a + r.shape[-1], n, sample_rate, range_deg, period_s).to(r.device)
        if turned is not None:  # (B, n): a still head for the others
            yaw = yaw[None, :] * turned.to(device=r.device, dtype=yaw.dtype)[:, None]
        return rotate_yaw(r, yaw.to(r.dtype)), rotate_yaw(d, yaw.to(d.dtype))

    return SegmentReader(n, read)


def quality_maps_streamed(reader: SegmentReader, frontend: AuditoryFrontEnd, decoder=None,
                          chunk_frames: int | None = 250, context_frames: int = 25,
                          compensate_gain: bool | str = True, head_turn: dict | None = None,
                          statistic_weights: dict | None = None) -> dict:
    """:func:`quality_maps` of a pair read chunk by chunk from ``reader`` (bounded memory): a
    first pass accumulates the energies for the gain match (and, with effective-order decoding,
    each channel's energy) when there is more than one chunk, then :func:`_quality_chunk` runs
    over the chunks (:func:`~spaq.auditory.streaming.run_chunked`). ``head_turn``
    (``{"range_deg", "period_s"}``; None: a still head): with effective-order decoding, the pairs whose
    two signals are decoded at different orders are heard by a listener who turns the head back and
    forth (:func:`head_turned`, both signals turned alike). Two decoders of different orders err
    differently at each direction, so a still head would judge the pair by where its sources happen to
    sit in those error patterns; one decoder's errors are common to both signals and cancel.
    ``statistic_weights`` (version 11; None: every band alike): ``{"d_ild_mean": "level"}`` puts
    ``ild_weight`` (the reference's band level where the ILDs count) in the maps, ``{"d_ic_mean": "time"}``
    ``ic_weight`` (1 where the coherences count), and :func:`pool_features` weighs each statistic's bands
    by its map's time mean."""
    n_samples = reader.n_samples
    n_ch = reader.n_channels()
    ambi = decoder is not None
    by_order = isinstance(decoder, dict)
    if ambi and n_ch < 4:
        raise ValueError("ambisonic input needs at least 4 channels (first order)")
    if not ambi and n_ch != 2:
        raise ValueError("binaural input must have 2 channels (left, right)")
    fl = frontend.frame_len
    single = chunk_frames is None or n_samples // fl <= chunk_frames + 2 * context_frames
    gain_db = orders = None
    if compensate_gain not in (False, True, *GAIN_MATCHES):
        raise ValueError(f"compensate_gain: False, True (broadband) or one of {GAIN_MATCHES}, not {compensate_gain!r}")
    hear = frontend if compensate_gain in ("heard", "audible") else None  # whose bands weigh the energies (None: broadband)
    low = AUDIBLE_HZ if compensate_gain == "audible" else 0.0  # and from which frequency up
    if single and (compensate_gain or by_order):  # whole signal: differentiable through the gain
        r, d = reader.read(0, n_samples)
        if compensate_gain:
            gain_db = _gain_db(_matched_energy(r, ambi, hear, low), _matched_energy(d, ambi, hear, low))
        if by_order:
            orders = pair_orders(channel_energy(r), channel_energy(d))
    elif compensate_gain or by_order:  # a first pass accumulates the energies block by block
        er = ed = cr = cd = 0
        step = chunk_frames * fl
        for a in range(0, n_samples, step):
            r, d = reader.read(a, min(n_samples, a + step))
            er, ed = er + _matched_energy(r, ambi, hear, low), ed + _matched_energy(d, ambi, hear, low)
            if by_order:
                cr, cd = cr + channel_energy(r), cd + channel_energy(d)
        gain_db = _gain_db(er, ed) if compensate_gain else None
        orders = pair_orders(cr, cd) if by_order else None
    turned = None
    if orders is not None and head_turn and float(head_turn.get("range_deg", 0)) > 0:
        turned = orders[..., 0] != orders[..., 1]  # (B,): decoded at different orders
        if bool(turned.any()):  # energies and orders are the same after a yaw turn: computed before it
            reader = head_turned(reader, int(frontend.sample_rate), float(head_turn["range_deg"]),
                                 float(head_turn["period_s"]), turned)
    core = partial(_quality_chunk, frontend=frontend, decoder=decoder, gain_db=gain_db, orders=orders)
    c = run_chunked(reader, fl, chunk_frames, context_frames, core)
    if gain_db is None:
        gain_db = torch.zeros(c["p_ear"].shape[0], dtype=torch.float64, device=c["p_ear"].device)
    out = _maps_from_cues(c, frontend.power_floor.to(gain_db.device), gain_db, statistic_weights)
    out["head_turned"] = (torch.zeros_like(gain_db, dtype=torch.bool) if turned is None
                          else turned.to(device=gain_db.device))  # (B,): heard with the head turn
    return out


def quality_maps(ref: torch.Tensor, deg: torch.Tensor, frontend: AuditoryFrontEnd,
                 decoder=None, chunk_frames: int | None = 250,
                 context_frames: int = 25, compensate_gain: bool | str = True, head_turn: dict | None = None,
                 statistic_weights: dict | None = None) -> dict:
    """Per-bin distortion maps of ``deg`` against ``ref``, both ``(B, C, T)`` at the front-end's
    rate: binaural (C = 2, ``decoder=None``) or ambisonics ACN/SN3D (C >= 4, ``decoder`` the
    ``(2, C_dec, L)`` binaural decoder, or a dict of the decoders of every order up to C's,
    :func:`spaq.spatial.decoders.hrtf_decoders`: effective-order decoding, each signal decoded at
    the highest order that carries energy, :func:`spaq.spatial.decoders.effective_order`, and the
    ``order_energy`` ``(B, 2, N+1, F, nf)`` of each signal per order, band and frame in the maps,
    which :func:`pool_features` turns into ``d_order``).

    Returns dict of float64 tensors, NaN where a bin does not count:
    ``added_db``, ``missing_db``, ``incoherence`` ``(B, 1, F, nf)`` (both ears together; bins where
    reference or degraded is audible); ``noisiness`` ``(B, 1, F, nf)`` (each band's value in the frames
    where the reference's band is heard, version 14); ``d_ild_db``, ``d_ic``, ``d_ipd`` and, for ambisonics,
    ``d_directiveness``, ``d_direction`` ``(B, F, nf)`` (bins where the reference is audible);
    ``gain_db`` ``(B,)`` (the compensation applied to ``deg``); ``head_turned`` ``(B,)`` bool (the pairs
    heard with ``head_turn``: ambisonic pairs decoded at two different orders).
    ``compensate_gain``: False (none), True or "broadband" (versions 1-14), "heard" (version 15), "audible" (version 16;
    :data:`GAIN_MATCHES`): what the overall gain match equalises.
    Long signals are processed in chunks of ``chunk_frames`` (with context) so memory is
    bounded; the directiveness smoothing state is carried exactly (``None``: one pass,
    differentiable).
    """
    return quality_maps_streamed(SegmentReader.from_tensors(ref, deg), frontend, decoder, chunk_frames,
                                 context_frames, compensate_gain, head_turn, statistic_weights)


def moving_average(x: torch.Tensor, n: int) -> torch.Tensor:
    """Centred moving average over ``n`` frames along the last axis ``(..., nf)`` -> ``(..., nf)``;
    at the edges the mean of the frames the window holds (no padding)."""
    nf = x.shape[-1]
    cs = torch.cat([torch.zeros_like(x[..., :1]), torch.cumsum(x, dim=-1)], dim=-1)
    i = torch.arange(nf, device=x.device)
    lo = torch.clamp(i - n // 2, min=0)
    hi = torch.clamp(i - n // 2 + n, max=nf)
    return (cs[..., hi] - cs[..., lo]) / (hi - lo).to(x.dtype)


def texture_power(p: torch.Tensor, coherence: torch.Tensor, n: int = TEXTURE_FRAMES) -> torch.Tensor:
    """Band power ``p (B, S, F, nf)`` of the signals with their diffuse part judged as a texture:
    ``c p + (1 - c) moving_average(p, n)``, ``c (B, F, nf)`` in [0, 1] (the reference's
    interaural coherence magnitude) -> ``(B, S, F, nf)``. ``c = 1`` leaves ``p`` unchanged."""
    c = coherence.unsqueeze(1)
    return c * p + (1 - c) * moving_average(p, n)


def masked_threshold(level: torch.Tensor, up_db: float, down_db: float, decay_db: float, offset_db: float,
                     horizon: int = 8) -> torch.Tensor:
    """Masked threshold (dB) of a band-level pattern ``level (B, F, nf)`` (dB, bands one ERB apart)
    -> ``(B, F, nf)``, the largest of:

    * simultaneous masking: the level of each *other* band of the same frame less ``up_db`` per
      band above it or ``down_db`` per band below it (the spread of excitation);
    * forward masking: the level of any band (its own included) in the ``horizon`` frames before,
      less that spread and ``decay_db`` per frame;

    less ``offset_db`` (how far below a masker's level a component stays inaudible)."""
    nb = level.shape[-2]
    i = torch.arange(nb, device=level.device)
    dist = (i[:, None] - i[None, :]).to(level.dtype)  # (F, F'): band f - masker band f'
    spread = torch.where(dist > 0, up_db * dist, -down_db * dist)
    spread = spread + torch.diag(torch.full((nb,), float("inf"), dtype=level.dtype, device=level.device))
    thr = (level.unsqueeze(-3) - spread.unsqueeze(-1)).amax(dim=-2)  # (B, F, nf): the other bands
    every = torch.maximum(thr, level)  # and the band itself (spread 0), the maskers of later frames
    for k in range(1, min(int(horizon), level.shape[-1] - 1) + 1):
        prev = torch.nn.functional.pad(every[..., :-k], (k, 0), value=float("-inf")) - decay_db * k
        thr = torch.maximum(thr, prev)
    return thr - offset_db


def _maps_from_cues(c: dict, floor: torch.Tensor, gain_db: torch.Tensor,
                    statistic_weights: dict | None = None) -> dict:
    weights = statistic_weights or {}
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=floor.device)
    fl = floor.view(-1, 1).to(torch.float64)
    p = c["p_ear"]  # (B, S, E, F, nf)
    audible = p > fl
    sl = 10 * torch.log10(torch.maximum(p, fl) / fl)  # sensation level per ear, dB >= 0
    # timbre of both ears together (binaural summation): sensation level of the ear-averaged power
    pb = p.mean(dim=2)  # (B, S, F, nf)
    aud_b = pb > fl
    # the reference's interaural coherence (1 where it has none: silent, or one ear only)
    coh_r = torch.abs(c["ic"][:, 0]).to(torch.float64)
    coh_r = torch.where(torch.isfinite(coh_r), coh_r.clamp(0, 1), torch.ones_like(coh_r))
    pt = texture_power(pb, coh_r)
    sl_b = 10 * torch.log10(torch.maximum(pt, fl) / fl)
    # the reference's band stands out of what its other bands mask (and is audible): where its envelope is heard
    heard = aud_b[:, 0]
    if MASKING is not None:  # both signals floored at the reference's masked threshold
        thr = masked_threshold(sl_b[:, 0], **MASKING).unsqueeze(1)
        heard = heard & (sl_b[:, 0] > thr[:, 0])
        sl_b = torch.maximum(sl_b, thr)
    active = (aud_b[:, 0] | aud_b[:, 1]).unsqueeze(1)  # (B, 1, F, nf)
    diff = (sl_b[:, 1] - sl_b[:, 0]).unsqueeze(1)
    rho = torch.nan_to_num(torch.abs(c["xc"]).to(torch.float64), nan=0.0).clamp(0, 1).unsqueeze(1)
    incoh = torch.where((aud_b[:, 0] & aud_b[:, 1]).unsqueeze(1), 1 - rho, torch.ones_like(rho))
    out = {  # level differences within the just-noticeable difference are not counted
        "added_db": torch.where(active, torch.clamp(diff - LEVEL_JND_DB, min=0), nan),
        "missing_db": torch.where(active, torch.clamp(-diff - LEVEL_JND_DB, min=0), nan),
        "incoherence": torch.where(active, incoh, nan),
        # version 14: the envelope fluctuation the degraded band adds to the reference's (noise in a tone)
        "noisiness": _band_texture_excess(c["fluct"][:, 1] - c["fluct"][:, 0], coh_r, heard).unsqueeze(1),
    }
    aud_r = audible[:, 0]
    # interaural cues; the reference's image counts where any of its ears is audible
    ref_on = aud_r.any(dim=1)
    ild = sl[:, :, 0] - sl[:, :, 1]  # (B, S, F, nf), floored ears
    ic = c["ic"]
    ic_ok = torch.isfinite(ic.real) & audible.any(dim=2)
    ic0 = torch.where(ic_ok, ic, torch.zeros_like(ic))
    mag = torch.abs(ic0).to(torch.float64)
    ipd = torch.angle(ic0[:, 1] * torch.conj(ic0[:, 0])).abs().to(torch.float64) / math.pi
    out["d_ild_db"] = torch.where(ref_on, torch.abs(ild[:, 1] - ild[:, 0]), nan)
    out["d_ic"] = torch.where(ref_on, torch.abs(mag[:, 1] - mag[:, 0]), nan)
    out["d_ipd"] = torch.where(ref_on, ipd * mag[:, 0] * mag[:, 1], nan)
    # interaural coherence magnitude of each signal where both have one (for d_ic_mean)
    both = ic_ok[:, 0] & ic_ok[:, 1]
    out["ic_ref"] = torch.where(both, mag[:, 0], nan)
    out["ic_deg"] = torch.where(both, mag[:, 1], nan)
    # 1 where the coherences count, 0 elsewhere: each band by the share of the time it has them
    if weights.get("d_ic_mean") == "time":
        out["ic_weight"] = both.to(torch.float64)
    # ILD of each signal where both are audible (for d_ild_mean)
    on_both = ref_on & audible[:, 1].any(dim=1)
    out["ild_ref"] = torch.where(on_both, ild[:, 0], nan)
    out["ild_deg"] = torch.where(on_both, ild[:, 1], nan)
    # the reference's sensation level (both ears together) where the ILDs count
    if weights.get("d_ild_mean") == "level":
        out["ild_weight"] = torch.where(on_both, 10 * torch.log10(torch.maximum(pb[:, 0], fl) / fl), nan)
    if "dir" in c:
        d = c["dir"]
        d_ok = ref_on & torch.isfinite(d[:, 0])
        dd = torch.nan_to_num(d[:, 1], nan=0.0) - torch.nan_to_num(d[:, 0], nan=0.0)
        out["d_directiveness"] = torch.where(d_ok, torch.abs(dd), nan)
        i_r, i_d = c["inten"][:, 0], c["inten"][:, 1]  # (B, 3, F, nf)
        nr = torch.linalg.vector_norm(i_r, dim=1)
        nd = torch.linalg.vector_norm(i_d, dim=1)
        both = (nr > 0) & (nd > 0)
        cosang = torch.sum(i_r * i_d, dim=1) / torch.where(both, nr * nd, torch.ones_like(nr))
        ang = torch.where(both, torch.arccos(cosang.clamp(-1 + 1e-12, 1 - 1e-12)) / math.pi,
                          torch.where(nr > 0, torch.full_like(nr, 0.5), torch.zeros_like(nr)))
        ang = torch.where(both & (cosang >= 1 - 1e-12), torch.zeros_like(ang), ang)
        out["d_direction"] = torch.where(d_ok, ang * torch.nan_to_num(d[:, 0], nan=0.0), nan)
    if "order_energy" in c:
        out["order_energy"] = c["order_energy"]
    if "itd" in c:  # each frame's ITD of both signals where both have one (for d_itd)
        itd_ok = (c["itd_peak"] >= ITD_MIN_PEAK).all(dim=1) & ref_on.any(dim=1)  # (B, nf)
        out["itd_ref"] = torch.where(itd_ok, c["itd"][:, 0], nan)
        out["itd_deg"] = torch.where(itd_ok, c["itd"][:, 1], nan)
    out["gain_db"] = gain_db
    return out


def _band_texture_excess(d: torch.Tensor, weight: torch.Tensor, counted: torch.Tensor) -> torch.Tensor:
    """Each band's excess over the whole signal (version 14's ``noisiness``): the mean of ``weight * d`` over
    the ``counted`` frames of the band, clamped at 0, written into those frames (NaN elsewhere), so that a
    mean over the counted bins weighs each band by its number of frames. ``d``, ``weight``, ``counted``
    ``(B, F, nf)`` -> ``(B, F, nf)``. A mean before the clamp, not a clamp per frame: the positive part of a
    noisy per-frame difference would grow as the signal gets shorter (fewer frames, more spread)."""
    n = counted.sum(dim=-1, keepdim=True)
    s = torch.where(counted, weight * d, torch.zeros_like(d)).sum(dim=-1, keepdim=True)
    m = torch.clamp(s / n.clamp(min=1), min=0)
    return torch.where(counted, m.expand_as(d), torch.full_like(d, float("nan")))


def _nanmean(x: torch.Tensor, dims) -> torch.Tensor:
    ok = torch.isfinite(x)
    n = ok.sum(dim=dims)
    s = torch.where(ok, x, torch.zeros_like(x)).sum(dim=dims)
    return torch.where(n > 0, s / n.clamp(min=1), torch.zeros_like(s))


def pool_features(maps: dict) -> dict:
    """Length-normalised pooling: mean of each map over its counted bins (ears, bands,
    frames) -> dict of ``(B,)`` (0 where no bin counts). A sum over frames never occurs, so
    a stationary signal and its first half give the same features."""
    out = {}
    for k in TIMBRAL_MAPS:
        out[k] = _nanmean(maps[k], (1, 2, 3))
    for k in SPATIAL_MAPS:
        if k in maps:
            out[k] = _nanmean(maps[k], (1, 2))
    for k, (a, b, thr) in STATISTICS.items():
        if a in maps:
            out[k] = mean_change(maps[a], maps[b], thr, maps.get(STATISTIC_WEIGHTS[k]))
    if "order_energy" in maps:
        out["d_order"] = order_loss(maps["order_energy"])
    if "itd_ref" in maps:
        out["d_itd"] = itd_change(maps["itd_ref"], maps["itd_deg"])
    return out


def itd_change(itd_ref: torch.Tensor, itd_deg: torch.Tensor) -> torch.Tensor:
    """``d_itd`` (version 12): the median over frames of ``|ITD_deg - ITD_ref|`` (ms) of two ``(B, nf)``
    frame-wise ITDs (NaN where not both signals have one, :data:`ITD_MIN_PEAK`) -> ``(B,)``, 0 where
    no frame has both. The median, not the mean: the lateral position heard over the signal, which
    a few frames whose summary cross-correlation peaks at another period do not move. Piecewise
    constant in the signals (the ITD is the best delay of a grid): no gradient flows through it."""
    d = torch.abs(itd_deg - itd_ref)
    return torch.nan_to_num(torch.nanmedian(d, dim=-1).values, nan=0.0)


def order_loss(order_energy: torch.Tensor) -> torch.Tensor:
    """``d_order``: the share of the reference's higher-order energy the degraded signal lacks,
    relative to its omnidirectional part -- the spatial resolution it loses (an ambisonic signal
    of order N resolves directions to about the width of its order-N beam; truncating it to lower
    orders widens the beam and the image). ``order_energy (B, 2, N+1, F, nf)`` (reference,
    degraded; :func:`quality_maps`) -> ``(B,)``: per order ``n >= 1`` and band, the energies summed
    over frames as shares of the band's W energy, ``clamp(1 - (E_deg,n / E_deg,0) / (E_ref,n /
    E_ref,0), 0, 1)``, averaged over the bands within :data:`ORDER_BAND_RANGE_DB` of their loudest
    band in both the reference's order n and the degraded W, then over the orders the reference has
    (0 when none counts). Truncating a full-order reference of order N to order M gives
    ``(N - M) / N``; a level or spectral change alike in every order (gain, low-pass: timbre, which
    ``missing_db`` counts) gives 0, and so does energy added to the higher orders."""
    e = order_energy.sum(dim=-1)  # (B, 2, N+1, F)
    er, ed = e[:, 0, 1:], e[:, 1, 1:]  # (B, N, F)
    wr, wd = e[:, 0, :1], e[:, 1, :1]  # (B, 1, F)
    floor = 10 ** (-ORDER_BAND_RANGE_DB / 10)
    counted = ((er > 0) & (er >= er.amax(dim=-1, keepdim=True) * floor)
               & (wr > 0) & (wd > 0) & (wd >= wd.amax(dim=-1, keepdim=True) * floor))
    one = torch.ones_like(er)
    share_r = er / torch.where(counted, wr, one).expand_as(er)
    share_d = ed / torch.where(counted, wd, one).expand_as(ed)
    loss = torch.clamp(1 - share_d / torch.where(counted, share_r, one), 0.0, 1.0)
    nb = counted.sum(dim=-1)  # (B, N)
    per_order = torch.where(counted, loss, torch.zeros_like(loss)).sum(dim=-1) / nb.clamp(min=1)
    has = nb > 0
    n_orders = has.sum(dim=-1)
    return torch.where(n_orders > 0, torch.where(has, per_order, torch.zeros_like(per_order)).sum(dim=-1)
                       / n_orders.clamp(min=1), torch.zeros_like(per_order[:, 0]))


def band_mean_change(ref: torch.Tensor, deg: torch.Tensor,
                     threshold: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per band, ``|time mean of deg - time mean of ref| - threshold`` clamped at 0, of a cue
    ``(B, F, nf)`` (NaN where not both signals have it) -> ``(change (B, F), has (B, F))``,
    ``has``: the band has any such frame (``change`` is 0 where it has none)."""
    has = torch.isfinite(ref).any(dim=-1)
    band = torch.clamp(torch.abs(_nanmean(deg, (-1,)) - _nanmean(ref, (-1,))) - threshold, min=0.0)
    return torch.where(has, band, torch.zeros_like(band)), has


def mean_change(ref: torch.Tensor, deg: torch.Tensor, threshold: float = 0.0,
                weight: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`band_mean_change` averaged over the bands that have any frame -> ``(B,)`` (0 when
    none has). ``d_ic_mean``: the interaural coherence magnitude (the width and diffuseness of
    the image: the long-term mean of the short-time coherence); ``d_ild_mean``: the ILD in dB
    beyond :data:`ILD_BLUR_DB` (a systematic lateral shift). Both are statistics of the spatial
    image, blind to which frame a decorrelated diffuse part falls in; 0 for identical images,
    duration-independent on stationary content. ``weight`` ``(B, F, nf)`` (NaN where the cue does
    not count; None: every band alike): each band counts by its time mean (version 11, ``d_ild_mean``
    weighted by the reference's sensation level: the lateral image follows the louder bands, and a
    codec's shift of a band that barely sounds moves it little)."""
    band, has = band_mean_change(ref, deg, threshold)
    if weight is not None:
        w = torch.where(has, _nanmean(weight, (-1,)).clamp(min=0.0), torch.zeros_like(band))
        tot = w.sum(dim=-1)
        return torch.where(tot > 0, (w * band).sum(dim=-1) / tot.clamp(min=1e-12), torch.zeros_like(band[..., 0]))
    n = has.sum(dim=-1)
    return torch.where(n > 0, band.sum(dim=-1) / n.clamp(min=1), torch.zeros_like(band[..., 0]))


def distortion_maps(maps: dict, model: QualityMapping, pooled: dict | None = None) -> dict:
    """Weighted per-bin maps ``(B, F, nf)`` of the timbral and spatial distortions:
    ``timbral_distortion`` and ``spatial_distortion``. The bin means (over counted bins) of the
    timbral map and of the frame-wise spatial terms are their pooled distortions; the statistics
    of the image (``d_ic_mean``, ``d_ild_mean``) enter per band, spread over each counted frame of
    that band, so that the map shows which bands changed (their mean over bins weighs bands by
    their counted frames, where the pooled statistic weighs bands equally). The lateral terms
    (:data:`~spaq.models.quality.LATERAL_FEATURES`) are shown as the model counts them: where the
    pooled ITD term exceeds their pooled sum (version 12), each frame's weighted ITD change,
    spread over its bands, replaces them. ``pooled``: :func:`pool_features` of ``maps`` when the
    caller has it already (computed here otherwise, only where an ITD term exists)."""
    w = torch.exp(model.log_w.detach())
    v = torch.exp(model.log_v.detach())
    t = sum(w[i] * _nanmean(maps[k], (1,)) for i, k in enumerate(TIMBRAL_MAPS))
    rest = lateral = None
    for j, k in enumerate(SPATIAL_FEATURES):
        if k in maps:
            term = v[j] * torch.nan_to_num(maps[k], nan=0.0)
        elif k in STATISTICS and STATISTICS[k][0] in maps:
            a, b, thr = STATISTICS[k]
            term = v[j] * band_mean_change(maps[a], maps[b], thr)[0].unsqueeze(-1).expand_as(maps[a])
        elif k == "d_order" and "order_energy" in maps:  # a whole-signal statistic: spread evenly
            term = (v[j] * order_loss(maps["order_energy"])).view(-1, 1, 1).expand_as(maps["d_ild_db"])
        else:
            continue
        if k in LATERAL_FEATURES:
            lateral = term if lateral is None else lateral + term
        else:
            rest = term if rest is None else rest + term
    j_itd = SPATIAL_FEATURES.index("d_itd")
    if lateral is not None and "itd_ref" in maps and float(v[j_itd]) > 0:
        pooled = pooled if pooled is not None else pool_features(maps)
        lat_pooled = sum(v[SPATIAL_FEATURES.index(k)] * pooled[k] for k in LATERAL_FEATURES if k in pooled)
        itd_frames = v[j_itd] * torch.nan_to_num(torch.abs(maps["itd_deg"] - maps["itd_ref"]), nan=0.0)
        binds = (v[j_itd] * pooled["d_itd"] > lat_pooled).view(-1, 1, 1)
        lateral = torch.where(binds, itd_frames.unsqueeze(1).expand_as(lateral), lateral)
    s = rest if lateral is None else lateral if rest is None else rest + lateral
    valid = torch.isfinite(maps["d_ild_db"])
    s = torch.where(valid, s, torch.full_like(s, float("nan")))
    return {"timbral_distortion": t, "spatial_distortion": s}


def quality_features(ref, deg, frontend, decoder=None, chunk_frames=250, head_turn=None,
                     statistic_weights: dict | None = None, compensate_gain: bool | str = True) -> dict:
    """:func:`quality_maps` then :func:`pool_features`, plus ``gain_db``."""
    m = quality_maps(ref, deg, frontend, decoder, chunk_frames, compensate_gain=compensate_gain, head_turn=head_turn,
                     statistic_weights=statistic_weights)
    f = pool_features(m)
    f["gain_db"] = m["gain_db"]
    return f


