"""Direction-carrying binaural features per ERB band and frame, from the shared front-end.

:func:`binaural_features` runs :class:`spaq.auditory.frontend.AuditoryFrontEnd`'s gammatone
bands (no second filterbank) and returns, per band and frame (``frame_len`` of the front-end,
40 ms by default), the ``FEATURES``:

* ``ild``: interaural level difference in dB, ``10 log10(P_left / P_right)`` of the band
  powers (positive: louder left);
* ``ipd_cos``, ``ipd_sin``: the interaural phase difference as a unit vector; below
  ``fine_structure_hz`` (1.3 kHz, where phase-locking holds) the phase of the fine-structure
  cross-correlation of the complex band signals, above it the phase of the cross-correlation of
  the band envelopes' low-passed analytic signals with their frame mean removed (the envelope
  ITD); positive: left leads;
* ``ic``: interaural coherence ``|cross| / sqrt(P_l P_r)`` of the same signals (0..1);
* ``shape_left``, ``shape_right``: each ear's monaural spectral shape, its band levels in dB
  relative to their mean over bands (in the frame).

Shapes: input ``(..., 2, T)`` (left, right) -> features ``(..., 6, bands, frames)`` and band
levels ``(..., 2, bands, frames)`` in dB (floored at the front-end's hearing threshold, so
level-relative weights can be built from them). Where both ears are below the floor the IPD
is (1, 0) and the coherence 0.
"""
from __future__ import annotations

import torch

from .binaural_cues import frame
from .frontend import AuditoryFrontEnd

__all__ = ["FEATURES", "BandCues", "binaural_features", "feature_frontend"]

FEATURES = ("ild", "ipd_cos", "ipd_sin", "ic", "shape_left", "shape_right")
#: with gradients (losses), the IPD vector's norm is floored at this share of the louder ear's band power (:func:`_finish`)
IPD_FLOOR = 1e-6
_FRONTENDS: dict = {}


def feature_frontend(sample_rate: int, decimate: bool = True, frame_ms: float = 40.0,
                     exact: bool = True, coarse: bool = False, divisor_ms: float | None = None) -> AuditoryFrontEnd:
    """The shared front-end at ``sample_rate`` (fast decimated mode by default) with
    ``frame_ms`` frames, one per setting. ``exact=False`` (localisation): the fast mode without its
    exactness fallback (bands whose spectrum leaks out of their window or spreads over their skirts
    are recomputed from the whole spectrum otherwise; needed for QASTAnet's reference features of
    band-limited material, not for direction cues: 4x faster on real content, mean cue change 0.003).
    ``coarse=True`` (implies ``exact=False``; template localisation): each band at half the rate
    (decimation safety 6 instead of 12 times its bandwidth: its skirts beyond 3 bandwidths fold
    back at about -30 dB) from float32 ear spectra, another 1.5-1.7x on direction cues (mean cue
    change 0.01; benchmarks/results/localizer_v2.md has the accuracy before and after).
    ``divisor_ms``: the decimation factors also divide frames of that length, so that
    :func:`binaural_features` can frame one pass of the bands at both lengths (``frame_lens``)."""
    exact = bool(exact) and not coarse
    key = (int(sample_rate), bool(decimate), float(frame_ms), exact, bool(coarse),
           None if divisor_ms is None else float(divisor_ms))
    if key not in _FRONTENDS:
        kw = {} if exact else dict(window_tolerance=1.0, spread_tolerance=1.0)
        if coarse:
            kw["fast_spectrum_dtype"] = torch.float32
        fe = AuditoryFrontEnd(int(sample_rate), frame_ms=float(frame_ms), decimate=decimate, **kw)
        div = None if divisor_ms is None else int(round(float(divisor_ms) / 1000 * int(sample_rate)))
        if coarse and decimate:
            fe.set_decimation(True, safety=6.0, frame_divisor=div)
        elif div is not None and decimate:
            fe.set_decimation(True, frame_divisor=div)
        _FRONTENDS[key] = fe
    return _FRONTENDS[key]


def _pw(a: torch.Tensor) -> torch.Tensor:
    return a.real ** 2 + a.imag ** 2


def binaural_features(x, frontend: AuditoryFrontEnd | None = None, sample_rate: int | None = None,
                      fine_structure_hz: float = 1300.0, grad: bool = False, frame_lens=None):
    """``x (..., 2, T)`` at the front-end's rate -> ``(features (..., 6, F, nf), levels_db
    (..., 2, F, nf))`` as float32 tensors; see the module docstring. Give ``frontend`` or
    ``sample_rate``. ``grad``: keep the autograd graph (for losses; square roots then get a
    tiny floor -- 1e-30 on float32 powers, 1e-40 on float64 magnitudes -- so silent bands give
    finite gradients; values change only in bands at the hearing floor); by default no graph is built.
    ``frame_lens`` (samples, several): one pass of the bands framed at each length (each a multiple of
    every decimation factor the front-end uses, :func:`feature_frontend`'s ``divisor_ms``) -> a list of
    ``(features, levels_db)``, one per length; None: the front-end's own frame length, one pair."""
    if not grad:
        with torch.no_grad():
            return _features(x, frontend, sample_rate, fine_structure_hz, 0.0, frame_lens)
    return _features(x, frontend, sample_rate, fine_structure_hz, 1.0, frame_lens)


def _features(x, frontend, sample_rate, fine_structure_hz, eps, frame_lens=None):
    cues = BandCues(x, frontend, sample_rate, fine_structure_hz, frame_lens, eps=eps)
    out = cues.result()
    return out[0] if frame_lens is None else out


class BandCues:
    """The cues of one binaural signal computed band group by band group, on demand: the spectrum once,
    then :meth:`upto` the bands a caller needs first (e.g. the low bands of a gate), and the rest only
    if it goes on -- each band's features are those :func:`binaural_features` gives (they are per band;
    only the spectral shape is relative to the bands computed so far). ``x (..., 2, T)`` at the
    front-end's rate; ``frame_lens`` as :func:`binaural_features`. No autograd graph unless ``eps`` > 0
    (binaural_features' ``grad``); an instance computed lazily runs under ``torch.no_grad``."""

    def __init__(self, x, frontend=None, sample_rate=None, fine_structure_hz: float = 1300.0, frame_lens=None,
                 eps: float = 0.0):
        if frontend is None:
            if sample_rate is None:
                raise ValueError("binaural_features needs a frontend or a sample_rate")
            frontend = feature_frontend(sample_rate)
        x = torch.as_tensor(x)
        if x.ndim < 2 or x.shape[-2] != 2:
            raise ValueError(f"binaural_features needs (..., 2, T), got {tuple(x.shape)}")
        self.fe, self.eps, self.fine_hz = frontend, float(eps), float(fine_structure_hz)
        self.lens = [int(frontend.frame_len)] if frame_lens is None else [int(n) for n in frame_lens]
        with torch.set_grad_enabled(self.eps > 0 and torch.is_grad_enabled()):
            spec = frontend.half_spectrum(x)
        self._plan = frontend.band_plan(spec, x.shape[-1], envelope_min_hz=self.fine_hz)
        self._next = 0  # the plan's next item
        self.n_done = 0  # bands computed so far (a prefix)
        self._lev, self._cross = [[] for _ in self.lens], [[] for _ in self.lens]
        self._dropped = set()  # indices of frame lengths no longer framed (keep_lens)

    def keep_lens(self, keep) -> "BandCues":
        """Frame the bands still to come at the frame lengths of the indices ``keep`` only (a caller that has
        learnt it needs no other): :meth:`result` then gives None for the others."""
        keep = {int(i) for i in keep}
        self._dropped |= set(range(len(self.lens))) - keep
        return self

    def upto(self, n_bands: int | None = None) -> "BandCues":
        """Compute the band groups until at least the first ``n_bands`` bands are done (None: all)."""
        n_bands = self.fe.n_bands if n_bands is None else min(int(n_bands), self.fe.n_bands)
        todo = []  # the plan's items up to the one that completes the first n_bands bands
        while self.n_done < n_bands:
            todo.append(self._next)
            self.n_done = self._plan.items[self._next][0].stop
            self._next += 1
        lens = [(i, n) for i, n in enumerate(self.lens) if i not in self._dropped]
        for _, decim, _ in (self._plan.items[k] for k in todo):
            for _, n in lens:
                if n % decim:
                    raise ValueError(f"frame length {n} is not a multiple of the decimation factor {decim}")
        with torch.set_grad_enabled(self.eps > 0 and torch.is_grad_enabled()):
            # two threads where allowed (BandPlan.map), the values as in order on one
            done = self._plan.map(lambda *item: self._cross_of(*item, lens), todo)
        for out in done:
            for i, (p, c) in out.items():
                self._lev[i].append(p)
                self._cross[i].append(c)
        return self

    def _cross_of(self, bands, decim, band, env, lens: list) -> dict:
        """One item of the plan -> ``{frame length index: (powers, cross)}`` (:func:`_band_cross`)."""
        fine = (self.fe.center_frequencies_hz[bands] < self.fine_hz).to(band.device)
        return {i: _band_cross(band, env, n // decim, fine, self.eps) for i, n in lens}

    def result(self, n_bands: int | None = None) -> list:
        """``(features, levels)`` per frame length (:func:`binaural_features`' list) of the first ``n_bands``
        bands (None: all; computed first where they are not yet), each ``(..., 6, n, nf)`` / ``(..., 2, n, nf)``."""
        self.upto(n_bands)
        n = self.n_done if n_bands is None else int(n_bands)
        return [None if i in self._dropped and n > sum(p.shape[-2] for p in lv) else
                _finish(torch.cat(lv, dim=-2)[..., :n, :], torch.cat(cr, dim=-2)[..., :n, :], self.fe, self.eps, n)
                for i, (lv, cr) in enumerate(zip(self._lev, self._cross))]


def _band_cross(band, env, fl, fine, eps):
    """Band powers ``(..., 2, G, nf)`` and the interaural cross (real, imag, norm) ``(..., 3, G, nf)`` of
    one group of bands framed at ``fl`` samples of its rate (fine structure where ``fine``, envelope above)."""
    bf = frame(band, fl)  # (..., 2, G, nf, fl)
    p = _pw(bf).mean(-1)  # (..., 2, G, nf)
    if bool(fine.all()):  # fine structure only (low bands)
        c = (bf[..., 0, :, :, :] * torch.conj(bf[..., 1, :, :, :])).mean(-1)
        norm = p[..., 0, :, :] * p[..., 1, :, :]
    else:
        ef = frame(env, fl)
        ef = ef - ef.mean(-1, keepdim=True)  # envelope fluctuations: their phase carries the ITD
        c = (ef[..., 0, :, :, :] * torch.conj(ef[..., 1, :, :, :])).mean(-1)
        pe = _pw(ef).mean(-1)
        norm = pe[..., 0, :, :] * pe[..., 1, :, :]
        if bool(fine.any()):  # a group across the roll-off: fine structure where it holds
            f4 = fine.view(-1, 1)
            c = torch.where(f4, (bf[..., 0, :, :, :] * torch.conj(bf[..., 1, :, :, :])).mean(-1), c)
            norm = torch.where(f4, p[..., 0, :, :] * p[..., 1, :, :], norm)
    return p, torch.stack([c.real, c.imag, torch.sqrt(norm + eps * 1e-30)], dim=-3)


def _finish(p, cr, fe, eps, n_bands=None):
    """Features and levels from the bands' powers and interaural cross of :func:`_band_cross` (of the
    front-end's first ``n_bands`` bands; None: all)."""
    p = p.to(torch.float64)  # (..., 2, F, nf)
    cr = cr.to(torch.float64)  # (..., 3, F, nf)
    floor = fe.power_floor[:n_bands].to(p.dtype).view(-1, 1)
    level = 10 * torch.log10(torch.maximum(p, floor))
    ild = level[..., 0, :, :] - level[..., 1, :, :]
    mag = torch.sqrt(cr[..., 0, :, :] ** 2 + cr[..., 1, :, :] ** 2 + eps * 1e-40)
    # the IPD's unit vector; with gradients, its norm floored at IPD_FLOOR of the louder ear's power (a cross 120 dB
    # below it), so that a band with one ear (nearly) silent, whose phase is undefined, does not divide by a
    # vanishing cross: an estimate with one ear exactly 0 had gradients of 9e12 in CueLoss, now 1.9e3 (one ear at
    # -100 dB: 6.1e3 before and after). The vector moves by < 4e-6 on a KU100 source at 80 degrees (ILDs up to
    # ~25 dB); without gradients (eps 0) nothing changes
    mag_u = mag if not eps else torch.sqrt(mag ** 2 + (IPD_FLOOR * p.amax(dim=-3)) ** 2)
    ok = mag_u > 0
    safe = torch.where(ok, mag_u, torch.ones_like(mag_u))
    cos = torch.where(ok, cr[..., 0, :, :] / safe, torch.ones_like(mag))
    sin = torch.where(ok, cr[..., 1, :, :] / safe, torch.zeros_like(mag))
    ic = torch.where(cr[..., 2, :, :] > 0, mag / torch.where(cr[..., 2, :, :] > 0, cr[..., 2, :, :], 1.0), 0.0)
    ic = ic.clamp(0.0, 1.0)
    shape = level - level.mean(dim=-2, keepdim=True)
    feats = torch.stack([ild, cos, sin, ic, shape[..., 0, :, :], shape[..., 1, :, :]], dim=-3)
    return feats.to(torch.float32), level.to(torch.float32)
