"""The auditory front-end shared by every spaq metric (QASTAnet, cues, quality).

``AuditoryFrontEnd`` computes, per ear, band and 40 ms frame: band power (with hearing
threshold floor), ILD and interaural coherence, and for ambisonics the first-order
directiveness. One object serves the official QASTAnet checkpoint and spaq's own
training-free metrics, on CPU or GPU, and is differentiable.

Processing (eMoBi-Q / QASTAnet chain): complex 4th-order gammatone (Hohmann 2002, 29 bands
315-12500 Hz, 1 ERB) -> magnitude -> analytic signal (circular Hilbert over the whole
signal) -> first-order 150 Hz low-pass -> frames.

Implementation: all filters are applied in the frequency domain with their exact IIR
transfer functions, on float64 spectra (both modes) (the official model's features are sensitive to relative
errors of 1e-7 in weak bands: float32 FFT processing moves its scores by up to 0.013).
The gammatone IIR is applied by zero-padded FFT (its tail is < 1e-12 after the padding);
the envelope low-pass is applied by a circular FFT on the analytic signal followed by an
exact correction of the wrapped-around state (``y_lin[t] = y_circ[t] - p^t S``), so the
result equals the official causal ``lfilter`` with zero initial state. In fast mode a decimated band's
envelope is taken over its samples up to the next 2^a 3^b 5^c length (they continue into the padding), not
over exactly ``n_samples // D``, whose large prime factors made real files' FFTs about 8x slower
(``benchmarks/results/frontend_lengths.md``); round lengths and full-rate bands are as described.
"""
from __future__ import annotations

import math
import threading

import numpy as np
import torch
from torch import nn

from ..dsp import next_fast_len
from ..threads import in_background, intra_op_threads, parallel_streams
from .binaural_cues import binaural_frame_features
from .directiveness import directiveness, erb_grouping_matrix, smoothing_coefficients
from .gammatone import GammatoneFilterbank, hohmann_coefficients
from .thresholds import band_power_floor

__all__ = ["AuditoryFrontEnd", "AUDIBLE_HZ"]

GAMMATONE_PAD = 4096  # samples of zero padding: the slowest gammatone IR is < 1e-12 after it
AUDIBLE_HZ = 20.0  # the lower edge of hearing: power below it (DC, infrasound) is not sound


class AuditoryFrontEnd(nn.Module):
    """See the module docstring. All public methods take ``(..., T)``-shaped float tensors at
    ``sample_rate`` and return float64 features."""

    def __init__(self, sample_rate: int = 48000, frame_ms: float = 40.0, env_lowpass_hz: float = 150.0,
                 mso_rolloff_hz: float = 1300.0, full_scale_db_spl: float = 100.0, band_group: int = 3,
                 decimate: bool = False, decimation_safety: float = 12.0, window_bw: float = 12.0,
                 window_tolerance: float = 1e-6, spread_tolerance: float = 1e-3,
                 fast_spectrum_dtype: torch.dtype = torch.float64):
        super().__init__()
        # ear spectra in fast mode: float64 by default (qastanet's official features need it, see
        # set_decimation); metrics whose features are band-level differences (cues, quality) may
        # take float32 (tests/metrics/test_quality.py and test_cues.py bound fast vs exact)
        self.fast_spectrum_dtype = fast_spectrum_dtype
        self.sample_rate = int(sample_rate)
        self.frame_len = int(frame_ms / 1000 * sample_rate)
        self.mso_rolloff_hz = mso_rolloff_hz
        self.band_group = band_group
        self.band_dtype = torch.complex64
        self.gammatone = GammatoneFilterbank(sample_rate)
        fc = self.gammatone.center_frequencies_hz.numpy()
        self.env_lowpass_hz = env_lowpass_hz
        self.lp_b, self.lp_pole, self.lp_tail = _one_pole_lowpass(env_lowpass_hz, sample_rate)
        self.decimation_safety = decimation_safety
        self.window_bw = window_bw
        self.window_tolerance = window_tolerance
        self.spread_tolerance = spread_tolerance
        self.set_decimation(decimate)
        self.register_buffer("power_floor", torch.from_numpy(band_power_floor(fc, full_scale_db_spl)))
        n_fft = self.frame_len
        self.register_buffer("dir_window", torch.sqrt(torch.hann_window(n_fft, dtype=torch.float64)))
        self.register_buffer("dir_alpha", torch.from_numpy(smoothing_coefficients(n_fft, n_fft, sample_rate)))
        self.register_buffer("dir_grouping", torch.from_numpy(erb_grouping_matrix(fc, n_fft, sample_rate)))

    def set_decimation(self, decimate: bool, safety: float | None = None, window_bw: float | None = None,
                       frame_divisor: int | None = None) -> None:
        """Fast mode: band k is computed at ``fs / D_k`` (``D_k`` the largest divisor of the frame
        length, <= 64, with ``fs / D_k >= safety x`` the band's gammatone bandwidth ``b_k``) from
        the spectrum bins within ``window_bw x b_k`` of its centre (where the response is above
        ``(1 + window_bw^2)^-2`` of its peak), folded onto ``n / D_k`` bins, i.e. the exact
        samples of the band truncated to that window, taken at the centres ``j D + (D - 1) / 2``
        of the groups of D samples (frame means are then midpoint sums); the envelope low-pass
        applies the full-rate filter's response at the decimated bins. A band whose actual
        spectrum the window misses (out-of-window energy above ``window_tolerance``) or that is
        spread over its skirts (energy beyond ``fs / 4 D_k`` of its centre above
        ``spread_tolerance``) is computed from its whole spectrum, the latter at a quarter of the
        rate (see :meth:`_leaky_bands`): steep band limits and codecs. Not bit-exact:
        tests/metrics/test_qastanet_fast.py bounds the deviation of qastanet's scores.
        ``frame_divisor`` (samples): every ``D_k`` also divides it, so that the band signals can be framed
        at that length too (:func:`spaq.auditory.binaural_features.binaural_features`' ``frame_lens``);
        None keeps the previous setting (at first the frame length alone)."""
        self.decimate = bool(decimate)
        if frame_divisor is not None:
            self._decimation_base = math.gcd(self.frame_len, int(frame_divisor))
        # ear spectra in float64 in exact mode, and by default in fast mode too: an FFT spreads
        # the rounding errors of strong components over every bin, and the official features of
        # bands far below the rest of the signal (band-limited or codec material, quiet frames)
        # depend on their exact values. ``fast_spectrum_dtype`` may lower it in fast mode.
        self.spectrum_dtype = self.fast_spectrum_dtype if self.decimate else torch.float64
        # directiveness: per-frame STFT (errors stay within the frame): float32 in fast mode
        self.directiveness_dtype = torch.float32 if self.decimate else torch.float64
        if safety is not None:
            self.decimation_safety = float(safety)
        if window_bw is not None:
            self.window_bw = float(window_bw)
        fc = self.gammatone.center_frequencies_hz.cpu().numpy()
        bw = (24.7 + fc / 9.265) / (math.pi * 720 * 2 ** (-6) / 36)  # pole bandwidth (Hz)
        self._bandwidth_hz = bw
        divisors = [k for k in range(1, 65) if self.frame_divisor % k == 0]
        self.decimation = [max(k for k in divisors if k == 1 or (self.decimate and
                                                                 self.sample_rate / k >= self.decimation_safety * b))
                           for b in bw]
        self._lcm = math.lcm(*self.decimation)

    # ------------------------------------------------------------------ basics
    def _fc_max(self, bands: slice) -> float:
        """The highest centre frequency (Hz) of a slice of bands (cached: asked per band group and call)."""
        cache = self.__dict__.setdefault("_fc_max_cache", {})
        key = (bands.start, bands.stop)
        if key not in cache:
            cache[key] = float(self.center_frequencies_hz[bands].max())
        return cache[key]

    @property
    def center_frequencies_hz(self) -> torch.Tensor:
        return self.gammatone.center_frequencies_hz

    @property
    def n_bands(self) -> int:
        return self.gammatone.n_bands

    @property
    def frame_divisor(self) -> int:
        """The length (samples) every decimation factor divides: the frame length, or its greatest common
        divisor with :meth:`set_decimation`'s ``frame_divisor``. Band signals can be framed at any multiple."""
        return int(getattr(self, "_decimation_base", self.frame_len))

    def n_frames(self, n_samples: int) -> int:
        return n_samples // self.frame_len

    def spectrum_length(self, n_samples: int, extra: int = 0) -> int:
        """FFT length used for a signal of ``n_samples`` (plus ``extra`` samples of FIR tail):
        even and a multiple of every decimation factor (so ``n = 2 (n_half - 1)``)."""
        m = math.lcm(self._lcm, 2)
        return m * next_fast_len(-(-(n_samples + GAMMATONE_PAD + extra) // m))

    def half_spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """``x (..., T)`` -> its half spectrum ``(..., n // 2 + 1)`` at ``n = spectrum_length(T)`` in
        ``spectrum_dtype``: the input of :meth:`band_plan`. On two intra-op threads where the call may use two
        (:func:`spaq.threads.parallel_streams`) and there are at least two signals: torch's transform of a batch
        then gives each signal's spectrum exactly as on one thread (tested), in about 60 % of the time (the
        localiser's 20 s binaural stream: 31 -> 20 ms), while the band groups that follow run one per thread."""
        lead = math.prod(x.shape[:-1])
        with intra_op_threads(2 if lead >= 2 and parallel_streams() >= 2 else 1):
            return torch.fft.rfft(x.to(self.spectrum_dtype), n=self.spectrum_length(x.shape[-1]), dim=-1)

    def _window_geometry(self, n: int, bands: slice, decim: int):
        """Fast-mode window of each band: ``(starts (G,) signed bin, width = J m, J, m)`` (cached per length,
        bands, factor and window: every call of :meth:`bands` asks for the same ones)."""
        key = (int(n), bands.start, bands.stop, int(decim), float(self.window_bw), self.sample_rate)
        cache = self.__dict__.setdefault("_geometry_cache", {})
        geo = cache.get(key)  # one read: another thread may clear the cache meanwhile (BandPlan)
        if geo is None:
            if len(cache) > 256:
                cache.clear()
            geo = self._window_geometry_uncached(n, bands, decim)
            geo[0].setflags(write=False)  # shared by every caller
            cache[key] = geo
        return geo

    def _window_geometry_uncached(self, n: int, bands: slice, decim: int):
        m = n // decim
        fc = self.center_frequencies_hz.cpu().numpy()[bands]
        half = np.ceil(self.window_bw * self._bandwidth_hz[bands] * n / self.sample_rate)
        n_fold = int(min(decim, np.max(np.ceil((2 * half + 1) / m))))
        width = n_fold * m
        starts = np.round(fc * n / self.sample_rate).astype(np.int64) - width // 2
        return starts, width, n_fold, m

    def _gammatone_response(self, n: int, bands: slice, device, bins: torch.Tensor | None = None) -> torch.Tensor:
        """Exact IIR transfer functions ``(n_bands_in_slice, n)`` at the n-point DFT bins (or at
        the bins ``(n_bands_in_slice, m)`` given), computed in float64 and returned as
        ``band_dtype`` (elementwise values keep their relative precision)."""
        coef, norm = hohmann_coefficients(self.center_frequencies_hz.cpu().numpy()[bands], self.sample_rate)
        if bins is not None:
            # 1 - a e^{-2 pi i k / n} = 1 - lam e^{i theta}, theta = 2 pi (fc/fs - k/n) reduced to
            # [-pi, pi) in float64; real part (1 - lam) + 2 lam sin^2(theta/2) has no cancellation,
            # so float32 keeps the response's relative precision at every bin
            lam = torch.as_tensor(np.abs(coef), device=device, dtype=torch.float32)[:, None]
            f0 = torch.as_tensor(np.angle(coef) / (2 * math.pi), device=device)[:, None]
            theta = 2 * math.pi * (torch.remainder(f0 - bins.to(torch.float64) / n + 0.5, 1.0) - 0.5)
            theta = theta.to(torch.float32)
            d = torch.complex((1 - lam) + 2 * lam * torch.sin(theta / 2) ** 2, -lam * torch.sin(theta))
            d = d * d
            return torch.as_tensor(norm, device=device, dtype=torch.float32)[:, None] / (d * d)
        key = (n, str(device))
        wc = getattr(self, "_w_cache", (None,))  # one read (threads: BandPlan)
        if wc[0] != key:  # the n-th roots of unity, once per length
            wc = self._w_cache = (key, torch.exp(-2j * math.pi * torch.arange(n, dtype=torch.float64, device=device) / n))
        w = wc[1]
        a = torch.as_tensor(coef, device=device)[:, None]
        d = 1 - a * w[None, :]
        d = d * d
        return (torch.as_tensor(norm, device=device)[:, None] / (d * d)).to(self.band_dtype)

    def decoder_spectrum(self, decoder: torch.Tensor, n: int) -> torch.Tensor:
        """Half spectra ``(2, C, n//2+1)`` of an FIR binaural decoder ``(2, C, L)`` at length ``n``
        in ``spectrum_dtype`` (cached for the last length: chunks and batches reuse it)."""
        key = (n, decoder.data_ptr(), tuple(decoder.shape), str(decoder.device), self.spectrum_dtype)
        if getattr(self, "_dec_cache", (None,))[0] != key:
            self._dec_cache = None  # free the old one first
            self._dec_cache = (key, torch.fft.rfft(decoder.to(self.spectrum_dtype), n=n, dim=-1))
        return self._dec_cache[1]

    def _lowpass_tables(self, t: int, decim: int, cdtype, rdtype, device) -> tuple:
        """The per-length constants of :meth:`_lowpass_analytic` (cached for the last few lengths:
        every band group and chunk of a signal reuses them): the analytic-signal gains, the low-pass
        response on the rfft bins, ``b0`` and the pole's decay ``p^t`` over the corrected head."""
        key = (t, decim, cdtype, rdtype, str(device))
        cache = self.__dict__.setdefault("_lp_cache", {})
        tables = cache.get(key)  # one read: another thread may clear the cache meanwhile (BandPlan)
        if tables is None:
            if len(cache) > 16:
                cache.clear()
            k = torch.arange(t // 2 + 1, device=device)
            gain = torch.where((k == 0) | (2 * k == t), 1.0, 2.0).to(rdtype)
            w = torch.exp(-2j * math.pi * k.to(torch.float64) / t)
            (b0, b1), p, lp_tail = self.lp_b, self.lp_pole, self.lp_tail
            if decim > 1:
                # one pole at the reduced rate with the full-rate filter's decay per unit time
                # (pole p^D), DC gain 1 and DC group delay (0.5 + p / (1 - p) full-rate samples):
                # the envelope's frame means keep the full-rate filter's lag at onsets and offsets,
                # and the filter stays a recursion, so the causal correction below stays exact
                q = p ** decim
                b1 = (1 - q) * (0.5 + p / (1 - p)) / decim - q
                b0 = 1 - q - b1
                p, lp_tail = q, -(-lp_tail // decim)
            lp = ((b0 + b1 * w) / (1 - p * w)).to(cdtype)
            n_head = min(t, lp_tail)
            decay = (p ** torch.arange(n_head, device=device, dtype=torch.float64)).to(rdtype)
            tables = cache[key] = (gain, lp, b0, decay)
        return tables

    def _lowpass_analytic(self, mag: torch.Tensor, decim: int = 1) -> torch.Tensor:
        """Causal first-order low-pass (zero state) of the analytic signal of ``mag`` ``(..., T)``
        (circular Hilbert over T) -> complex ``(..., T)``.

        One rfft and one ifft: the circular filter result ``y_c`` is corrected to the causal one
        exactly with ``y[t] = y_c[t] - p^t (y_c[0] - b0 z[0])`` (``z`` the analytic signal,
        ``p`` the pole), since the wrapped-around part of a one-pole filter decays as ``p^t``.
        """
        t = mag.shape[-1]
        half = torch.fft.rfft(mag, dim=-1)  # (..., t//2+1)
        gain, lp, b0, decay = self._lowpass_tables(t, decim, half.dtype, mag.dtype, mag.device)
        z_half = half * gain
        y = torch.fft.ifft(z_half * lp, n=t, dim=-1)  # zero-padded negative frequencies
        z0 = z_half.sum(dim=-1, keepdim=True) / t
        n_head = decay.shape[-1]
        head = y[..., :n_head] - (y[..., :1] - b0 * z0) * decay
        if y.requires_grad or head.requires_grad:
            return torch.cat([head, y[..., n_head:]], dim=-1)
        y[..., :n_head] = head
        return y

    # ------------------------------------------------------------------ cues
    def heard_weights(self, n: int, device=None, min_hz: float = 0.0) -> torch.Tensor:
        """``(n // 2 + 1,)`` float64 weights on the bins of an ``n``-point rfft: 0 below ``min_hz`` (``quality``'s
        gain match "audible" passes :data:`AUDIBLE_HZ`: a DC offset or infrasound is no sound; a 0.05 DC offset
        under noise at -26 dBFS was matched as 5.2 dB of extra level and read 15.8), 1 from there up to the top
        band's centre, then that band's upper skirt, ``(1 + ((f - fc) / b)^2)^-4`` (the 4th-order gammatone's
        power response, pole bandwidth ``b``, as :meth:`_leaky_bands` uses): a signal's energy weighted by it
        leaves out what lies above every band, which no feature sees. Cached per length and ``min_hz``."""
        key = (int(n), str(device), float(min_hz))
        if getattr(self, "_heard_cache", (None,))[0] != key:
            f = torch.arange(n // 2 + 1, dtype=torch.float64, device=device) * (self.sample_rate / n)
            fc, b = float(self.center_frequencies_hz.max()), float(self._bandwidth_hz[-1])
            w = torch.where(f <= fc, torch.ones_like(f), (1 + ((f - fc) / b) ** 2) ** -4)
            w = torch.where(f < float(min_hz), torch.zeros_like(f), w)
            self._heard_cache = (key, w)
        return self._heard_cache[1]

    def band_groups(self) -> list:
        """Consecutive bands with the same decimation factor, at most ``band_group`` at a time:
        list of ``(slice, decimation)``."""
        groups = []
        for k, d in enumerate(self.decimation):
            if groups and groups[-1][1] == d and k - groups[-1][0] < self.band_group:
                continue
            groups.append((k, d))
        bounds = [g[0] for g in groups] + [self.n_bands]
        return [(slice(g[0], stop), g[1]) for g, stop in zip(groups, bounds[1:])]

    def bands(self, half: torch.Tensor, n_samples: int, envelope_min_hz: float | None = None):
        """Gammatone band signals and their low-passed analytic envelopes, group by group.

        ``half``: half spectrum ``(..., n//2+1)`` (``n = spectrum_length(T)``, even) of real
        signals of ``n_samples`` samples. Yields ``(bands, decim, band, env)``: a slice of bands,
        its decimation factor, the complex band signals ``(..., G, n_samples // decim)`` (the
        exact gammatone outputs when ``decim == 1``) and the low-passed analytic signals of
        their magnitudes, same shape; ``env`` is None for a group whose bands all lie below
        ``envelope_min_hz`` (callers that use only their fine structure there). The same items as
        :meth:`band_plan`'s, in order."""
        plan = self.band_plan(half, n_samples, envelope_min_hz)
        for i in range(len(plan)):
            yield plan.compute(i)

    def band_plan(self, half: torch.Tensor, n_samples: int, envelope_min_hz: float | None = None) -> "BandPlan":
        """The work items of :meth:`bands` (same arguments), each computable on its own and in any order, from
        any thread (:class:`BandPlan`): a consumer may compute them on two threads and get what :meth:`bands`
        yields, value for value."""
        return BandPlan(self, half, n_samples, envelope_min_hz)

    def _folded_window(self, ext: torch.Tensor, lo: int, n: int, bands: slice, decim: int) -> torch.Tensor:
        """``ext (..., K)``: spectrum bins ``lo .. lo + K - 1`` (mod n) -> ``(..., G, m)``,
        ``m = n / decim``: for each band, the bins within ``window_bw x`` its bandwidth of its
        centre (rounded up to ``J m`` contiguous bins), times its response, folded (summed over
        ``j``) onto position ``bin mod m``; the m-point inverse DFT then gives the band,
        truncated to that window, at every ``decim``-th sample."""
        starts, width, n_fold, m = self._window_geometry(n, bands, decim)
        key = (n, str(ext.device), bands.start, bands.stop, self.window_bw, decim)
        h = self._kept("_window_cache", key)
        if h is None:  # responses on the windows: computed once per spectrum length
            signed = starts[:, None] + np.arange(width)[None, :]
            idx = torch.from_numpy(signed % n).to(ext.device)
            h = self._gammatone_response(n, bands, ext.device, bins=idx) / decim
            # sample at the centre of each group of decim samples, t = j decim + (decim - 1) / 2
            # (a fractional delay: the band is band-limited): frame means of the decimated
            # samples are then midpoint-rule sums, not left-endpoint ones
            shift = np.exp(1j * np.pi * (decim - 1) * signed / n)
            h = h * torch.from_numpy(shift).to(device=ext.device, dtype=h.dtype)
            h = self._keep("_window_cache", key, h.unflatten(-1, (n_fold, m)))  # (G, J, m)
        out = []
        for g, s0 in enumerate(starts):
            seg = ext[..., s0 - lo:s0 - lo + width].unflatten(-1, (n_fold, m))  # (..., J, m), a view
            folded = seg[..., 0, :] * h[g, 0]
            for j in range(1, n_fold):
                if folded.requires_grad:
                    folded = folded + seg[..., j, :] * h[g, j]
                else:  # in place: the same sums, about a third faster
                    folded.addcmul_(seg[..., j, :], h[g, j])
            out.append(torch.roll(folded, int(s0 % m), dims=-1))  # bin s0 + i -> position (s0 + i) mod m
        return torch.stack(out, dim=-2)

    def _leaky_bands(self, half: torch.Tensor, n: int) -> tuple:
        """Fast mode: which bands the window-and-decimate scheme would not capture, from the
        actual spectrum ``half (..., n//2+1)`` -> two lists of bools per band:

        * ``leaky``: the energy of spectrum x response outside the band's window (both signs of
          frequency) exceeds ``window_tolerance`` of its total. Steep band limits (low-pass,
          codecs) put a band's whole output in the far skirts of its response, outside the
          window, and the official model uses features of such bands in frames far below the
          rest of the signal (the ILD of a removed band), which need it to ~1e-9 relative.
        * ``wide``: the energy beyond a quarter of the reduced rate from the band's centre
          exceeds ``spread_tolerance`` of its total (output spread over the skirts, so that its
          magnitude varies faster than the reduced rate follows).

        From the power spectrum summed over blocks of bins much narrower than any band (one
        small matrix product), for any signal of the batch."""
        key = (n, str(half.device), self.window_bw, tuple(self.decimation))
        if getattr(self, "_leak_cache", (None,))[0] != key:
            block = max(1, int(n * min(self._bandwidth_hz) / self.sample_rate / 8))  # bins per block
            n_blk = -(-(n // 2 + 1) // block)
            centre = np.arange(n_blk) * block + (block - 1) / 2  # bin of each block's centre
            w = np.zeros((3, n_blk, self.n_bands))  # outside the window, beyond fs / 4D, all
            fc = self.center_frequencies_hz.cpu().numpy()
            for bands, d in self.band_groups():
                if d == 1:
                    continue
                starts, width, _, _ = self._window_geometry(n, bands, d)
                for g, k in enumerate(range(bands.start, bands.stop)):
                    for sign in (1, -1):
                        f = sign * centre * self.sample_rate / n
                        r2 = (1 + ((f - fc[k]) / self._bandwidth_hz[k]) ** 2) ** -4  # |response|^2
                        inside = (sign * centre >= starts[g]) & (sign * centre < starts[g] + width)
                        w[0, :, k] += np.where(inside, 0.0, r2)
                        w[1, :, k] += np.where(np.abs(f - fc[k]) > self.sample_rate / (4 * d), r2, 0.0)
                        w[2, :, k] += r2
            self._leak_cache = (key, block, torch.from_numpy(w).to(half.device))
        _, block, w = self._leak_cache
        r = torch.view_as_real(half).double()  # contiguous (..., bins, 2): the same squares and sums, 40 % faster
        r.mul_(r)
        p = r[..., 0] + r[..., 1]
        pad = w.shape[1] * block - p.shape[-1]
        pb = torch.nn.functional.pad(p, (0, pad)).unflatten(-1, (-1, block)).sum(-1).flatten(0, -2)
        e = pb @ w  # (3, signals, bands)
        tot = e[2].clamp(min=1e-300)
        leaky = (e[0] / tot > self.window_tolerance).any(dim=0)
        wide = (e[1] / tot > self.spread_tolerance).any(dim=0)
        return leaky.tolist(), wide.tolist()

    def _folded_full(self, full: torch.Tensor, k: int, decim: int) -> torch.Tensor:
        """Band ``k`` from the whole spectrum ``full (..., n)`` (no window), folded onto
        ``m = n / decim`` bins with the half-group delay of :meth:`_folded_window`:
        the exact band at times ``j decim + (decim - 1) / 2`` -> ``(..., m)``."""
        n = full.shape[-1]
        m = n // decim
        return (full * self._full_response(n, slice(k, k + 1), decim, full.device)).unflatten(-1, (decim, m)).sum(dim=-2)

    #: the whole-spectrum responses kept for one spectrum length (:meth:`_full_response`), in elements at most (32 MB
    #: of complex64: a 10 s signal's few whole-spectrum bands, which its second signal and every chunk of that length
    #: then read)
    FULL_CACHE_ELEMENTS = 1 << 22

    def _full_response(self, n: int, bands: slice, decim: int, device) -> torch.Tensor:
        """The bands' responses on all ``n`` DFT bins, ``band_dtype``: ``(G, n)`` for ``decim == 1``; for one band
        folded by :meth:`_folded_full`, ``(n,)`` divided by ``decim`` and delayed by half a group (that delay, the
        same for every band of a factor, kept first). Kept for one spectrum length, up to
        :attr:`FULL_CACHE_ELEMENTS` (signals of one length scored again and again, e.g. the predictor's 0.5 s
        excerpt: 10 % of its front-end's time went to recomputing them; a 10 s FOA pair's QASTAnet features:
        about a sixth)."""
        key = (n, str(device), bands.start, bands.stop, decim)
        h = self._kept("_full_cache", key)
        if h is not None:
            return h
        h = self._gammatone_response(n, bands, device)
        if decim > 1:
            delay = (n, str(device), "delay", decim)
            shift = self._kept("_full_cache", delay)
            if shift is None:
                signed = torch.arange(n, device=device, dtype=torch.float64)
                signed = torch.where(signed >= n // 2, signed - n, signed)
                shift = self._keep("_full_cache", delay, torch.exp(1j * math.pi * (decim - 1) * signed / n).to(h.dtype),
                                   self.FULL_CACHE_ELEMENTS)
            h = h[0] / decim
            h = h * shift
        return self._keep("_full_cache", key, h, self.FULL_CACHE_ELEMENTS)

    def _kept(self, name: str, key: tuple):
        """What :meth:`_keep` kept in the cache attribute ``name`` under ``key`` (whose first two entries are the
        spectrum length and device), or None."""
        length, cache = getattr(self, name, (None, {}))  # one read (threads: BandPlan)
        return cache.get(key) if length == key[:2] else None

    def _keep(self, name: str, key: tuple, value: torch.Tensor, max_elements: int | None = None) -> torch.Tensor:
        """Keep ``value`` under ``key`` in the cache attribute ``name`` for :meth:`_kept`: responses for one spectrum
        length at a time (another length replaces them), within ``max_elements`` in all (None: no bound); returns
        ``value``."""
        length, cache = getattr(self, name, (None, {}))
        if length != key[:2]:
            length, cache = key[:2], {}
        if max_elements is None or sum(v.numel() for v in list(cache.values())) + value.numel() <= max_elements:
            # a new dict: a thread reading the old one meanwhile is not disturbed
            setattr(self, name, (length, {**cache, key: value}))
        return value

    def binaural_from_spectrum(self, spec: torch.Tensor, n_samples: int) -> dict:
        """Cues from the half spectrum ``(..., 2, n//2+1)`` (``n = spectrum_length(T)``) of
        a binaural signal of ``n_samples`` samples. Returns dict of ``(..., F, nf)``: ``power``,
        ``ild``, ``coherence`` (complex), ``below_floor``."""
        fc = self.center_frequencies_hz

        def cues(bands, decim, band, env):
            fine = fc[bands] < self.mso_rolloff_hz
            return binaural_frame_features(band, env, self.frame_len // decim, self.power_floor[bands], fine)
        out = self.band_plan(spec, n_samples).map(cues)  # two threads where allowed, in order
        return {k: torch.cat([o[k] for o in out], dim=-2) for k in out[0]}

    def binaural(self, x: torch.Tensor) -> dict:
        """Binaural cues of ``(..., 2, T)`` (left, right); see :meth:`binaural_from_spectrum`."""
        return self.binaural_from_spectrum(self.half_spectrum(x), x.shape[-1])

    def directiveness(self, hoa: torch.Tensor, state: torch.Tensor | None = None, return_state: bool = False):
        """``(..., C>=4, T)`` ACN/SN3D -> ``(..., F, nf)`` first-order directiveness per ERB band
        (and the smoothing state to continue on a next chunk, see
        :func:`spaq.auditory.directiveness.directiveness`)."""
        return directiveness(hoa[..., :4, :].to(self.directiveness_dtype), self.dir_window, self.dir_alpha, self.dir_grouping,
                             state=state, return_state=return_state)


def _one_pole_lowpass(cutoff_hz: float, sample_rate: float):
    """First-order Butterworth low-pass (bilinear, prewarped; = ``scipy.signal.butter(1, ...)``)
    -> ``((b0, b1), pole, tail)`` with ``pole^tail < 1e-20``."""
    k = math.tan(math.pi * cutoff_hz / sample_rate)
    b0 = k / (1 + k)
    p = (1 - k) / (1 + k)
    return (b0, b0), p, int(math.ceil(math.log(1e-20) / math.log(p)))


class BandPlan:
    """:meth:`AuditoryFrontEnd.bands` as a list of work items: ``len(plan)`` groups of bands (a decimated group
    whose spectrum the window misses is split off band by band, as :meth:`AuditoryFrontEnd._leaky_bands` says),
    ``plan.items[i]`` ``(bands, decim, whole)`` and ``plan.compute(i)`` -> ``(bands, decim, band, env)``. The
    spectra the items share (the Hermitian completion, the bins every window needs) are made once, on first
    need, under a lock, so items may be computed on several threads; each item's arithmetic does not depend on
    the thread or the order."""

    def __init__(self, fe: AuditoryFrontEnd, half: torch.Tensor, n_samples: int, envelope_min_hz: float | None = None):
        self.fe, self.n_samples, self.envelope_min_hz = fe, int(n_samples), envelope_min_hz
        self.n = n = 2 * (half.shape[-1] - 1)
        # spectra are computed in float64 (an FFT spreads rounding errors of strong components
        # over weak bins); from here on every operation is elementwise or per band, so float32
        # keeps each band's relative precision
        self.half = half = half.to(fe.band_dtype)
        self._full = self._ext = None
        self._lock = threading.Lock()
        self.groups = groups = fe.band_groups()
        # tolerances of 1 or more flag nothing (a share of a band's energy is at most 1): the check is skipped
        checked = any(d > 1 for _, d in groups) and min(fe.window_tolerance, fe.spread_tolerance) < 1.0
        leaky, wide = fe._leaky_bands(half, n) if checked else ([False] * fe.n_bands,) * 2
        work = []  # (bands, decim, whole spectrum?): flagged bands on their own
        for bands, decim in groups:
            start = bands.start
            for k in range(bands.start, bands.stop):
                if decim > 1 and (leaky[k] or wide[k]):
                    if k > start:
                        work.append((slice(start, k), decim, False))
                    d = decim
                    if wide[k]:  # the largest divisor of the frame length <= decim / 4
                        d = max(j for j in range(1, decim // 4 + 1) if fe.frame_divisor % j == 0) if decim >= 4 else 1
                    work.append((slice(k, k + 1), d, True))
                    start = k + 1
            if start < bands.stop:
                work.append((slice(start, bands.stop), decim, False))
        self.items = work

    def __len__(self) -> int:
        return len(self.items)

    def _full_spectrum(self) -> torch.Tensor:
        with self._lock:
            if self._full is None:  # Hermitian completion (the signals are real)
                n, half = self.n, self.half
                self._full = torch.cat([half, torch.conj(half[..., 1:n // 2].flip(-1))], dim=-1)
            return self._full

    def _window_bins(self) -> tuple:
        with self._lock:
            if self._ext is None:  # the bins every window needs, contiguous: ext[i] = X[lo + i]
                geo = [self.fe._window_geometry(self.n, b, d) for b, d in self.groups if d > 1]
                lo = min(int(g[0].min()) for g in geo)
                hi = max(int(g[0].max()) + g[1] for g in geo)
                self._ext = (spectrum_bins(self.half, self.n, lo, hi), lo)
            return self._ext

    def map(self, fn, indices=None) -> list:
        """``[fn(*self.compute(i)) for i in indices]`` (None: every item), in that order, value for value. Where
        the call may use two threads (:func:`spaq.threads.parallel_streams`) and there is no autograd graph to
        build, the items are computed on two threads (:func:`spaq.threads.in_background`), each taking the
        costliest item not yet taken (bands x samples at their rate: the high bands, decimated least, come last
        in the plan), so that neither is left with a long item while the other has nothing to do. ``fn`` must
        share no mutable state between items."""
        indices = list(range(len(self))) if indices is None else [int(i) for i in indices]
        if len(indices) < 2 or (torch.is_grad_enabled() and self.half.requires_grad):  # a loss's graph: in order
            return [fn(*self.compute(i)) for i in indices]
        done = [None] * len(indices)
        cost = [(self.items[i][0].stop - self.items[i][0].start) / self.items[i][1] for i in indices]
        taken = iter(sorted(range(len(indices)), key=lambda j: -cost[j]))
        lock = threading.Lock()

        def drain():
            with torch.no_grad():  # grad mode is per thread
                while True:
                    with lock:
                        j = next(taken, None)
                    if j is None:
                        return
                    done[j] = fn(*self.compute(indices[j]))
        other = in_background(drain)
        try:
            with intra_op_threads(1):
                drain()
        except BaseException:  # an error or Ctrl-C here: the other thread takes no further item
            with lock:
                for _ in taken:
                    pass
            raise
        other()
        return done

    def compute(self, i: int) -> tuple:
        """Item ``i`` -> ``(bands, decim, band, env)`` (:meth:`AuditoryFrontEnd.bands`)."""
        fe, n = self.fe, self.n
        bands, decim, whole = self.items[i]
        if decim == 1 or whole:
            full = self._full_spectrum()
            if decim == 1:
                prod = full.unsqueeze(-2) * fe._full_response(n, bands, 1, self.half.device)
            else:  # the band's whole spectrum, not a window: its exact samples
                prod = fe._folded_full(full, bands.start, decim).unsqueeze(-2)
        else:
            ext, lo = self._window_bins()
            prod = fe._folded_window(ext, lo, n, bands, decim)
        full_band = torch.fft.ifft(prod, dim=-1)
        del prod
        t = self.n_samples // decim
        band = full_band[..., :t]
        if self.envelope_min_hz is not None and float(fe._fc_max(bands)) < self.envelope_min_hz:
            return bands, decim, band, None
        # the envelope's circular transforms at a fast length: a decimated band's own samples continue past
        # t (into the gammatone padding), so they are read up to the next 2^a 3^b 5^c length (at most the
        # whole m, itself such a length) rather than transformed at t, which for most signal lengths has a
        # large prime factor (8x slower: real files' cues took about twice as long as the benchmarks');
        # full-rate bands (the official chain: circular over the signal) and whole-spectrum ones keep t
        tl = t if decim == 1 or whole else min(next_fast_len(t), full_band.shape[-1])
        return bands, decim, band, fe._lowpass_analytic(torch.abs(full_band[..., :tl]), decim)[..., :t]


def spectrum_bins(half: torch.Tensor, n: int, lo: int, hi: int) -> torch.Tensor:
    """Bins ``lo .. hi - 1`` (signed, taken mod ``n``) of the ``n``-point DFT of real signals from their half
    spectrum ``half (..., n // 2 + 1)`` -> ``(..., hi - lo)``: ``X[k] = half[k]`` for ``0 <= k <= n / 2``, the
    conjugate ``conj(half[n - k])`` above it and ``conj(half[-k])`` below 0. Slices of ``half`` where the
    range wraps at most once each way (every window of the fast mode), else one gather (the same values)."""
    if -(n // 2) < lo <= n // 2 and 0 < hi <= n:
        parts = [torch.conj(half[..., 1:1 - lo].flip(-1))] if lo < 0 else []
        parts.append(half[..., max(lo, 0):min(hi, n // 2 + 1)])
        if hi > n // 2 + 1:  # bins n // 2 + 1 .. hi - 1
            parts.append(torch.conj(half[..., n - hi + 1:n - n // 2].flip(-1)))
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
    k = np.arange(lo, hi) % n
    neg = torch.from_numpy(k > n // 2).to(half.device)
    src = torch.from_numpy(np.where(k > n // 2, n - k, k)).to(half.device)
    ext = half[..., src]
    return torch.where(neg, torch.conj(ext), ext)
