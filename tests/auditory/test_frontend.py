"""The shared auditory front-end: its envelope low-pass and its fast (windowed, decimated) bands."""
import numpy as np
import torch

from spaq.auditory.frontend import AuditoryFrontEnd, _one_pole_lowpass


def test_envelope_lowpass_is_scipy_butterworth():
    """The closed-form first-order low-pass (used at every decimated rate) is scipy's butter(1)."""
    import scipy.signal as sps

    for fs in (48000, 16000, 3200, 800):
        (b0, b1), p, tail = _one_pole_lowpass(150.0, fs)
        b, a = sps.butter(1, 2 * 150.0 / fs)
        np.testing.assert_allclose([b0, b1, -p], [b[0], b[1], a[1]], rtol=1e-12)
        assert p ** tail < 1e-20 <= p ** (tail - 1)


def test_fast_bands_are_decimated_exact_bands():
    """Fast mode: each band equals the exact band (full rate, float64) at the centres
    ``j D + (D - 1) / 2`` of its groups of D samples, up to the response dropped outside the
    window (and float32 band arithmetic). Half-sample times: the exact band of the signal
    delayed by a fractional (band-limited) delay, a phase ramp on its spectrum."""
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((2, 48000)) * 0.05)
    exact, fast = AuditoryFrontEnd(), AuditoryFrontEnd(decimate=True)
    assert fast.decimation[0] >= 16 and fast.decimation[-1] >= 2 and exact.decimation == [1] * 29
    t = x.shape[-1]
    n = exact.spectrum_length(t)
    spec = torch.fft.rfft(x, n=n)
    k = torch.arange(spec.shape[-1], dtype=torch.float64)
    full = {}
    for d in sorted(set(fast.decimation)):
        shifted = spec * torch.exp(1j * torch.pi * (d - 1) * k / n)  # x(t + (d - 1) / 2)
        full[d] = torch.cat([band for _, _, band, _ in exact.bands(shifted, t)], dim=-2)
    seen = 0
    for b, d, band, env in fast.bands(torch.fft.rfft(x.float(), n=fast.spectrum_length(t)), t):
        sub = full[d][..., b, ::d][..., : band.shape[-1]]
        assert band.shape == sub.shape
        err = float((band - sub).abs().pow(2).mean() / sub.abs().pow(2).mean())
        assert err < 2e-7, (b, d, err)  # window of +-12 bandwidths: 3.6e-8 here (+-4: 1e-6)
        seen += b.stop - b.start
    assert seen == 29


def test_decimated_envelopes_read_their_band_to_a_fast_length():
    """A decimated band's envelope is the low-passed analytic signal of its magnitude over the smallest
    2^a 3^b 5^c length >= its frames' samples (its own samples continue into the gammatone padding), not over
    a length with a large prime factor (8x slower transforms): unchanged where the length is already such a
    number, the same frames either way, close to exact mode's envelope-based cues."""
    from spaq.auditory.binaural_features import binaural_features
    from spaq.dsp import next_fast_len

    rng = np.random.default_rng(1)
    fast = AuditoryFrontEnd(decimate=True)
    for n_samples in (48000, 47999):
        x = torch.from_numpy(rng.standard_normal((2, n_samples)) * 0.05)
        spec = torch.fft.rfft(x.float(), n=fast.spectrum_length(n_samples))
        for b, d, band, env in fast.bands(spec, n_samples):
            t = n_samples // d
            assert band.shape[-1] == env.shape[-1] == t
            if next_fast_len(t) == t:  # lengths that are already fast: as before, to the bit
                assert torch.equal(env, fast._lowpass_analytic(torch.abs(band), d))
            else:  # a longer read: not the envelope of the truncated band
                assert not torch.equal(env, fast._lowpass_analytic(torch.abs(band), d))
        # the cues agree with exact mode (full rate, circular over the signal) as closely at either length
        f_fast, l_fast = binaural_features(x, AuditoryFrontEnd(decimate=True, frame_ms=40.0))
        f_exact, l_exact = binaural_features(x, AuditoryFrontEnd(frame_ms=40.0))
        w = (f_exact[3].clamp(0, 1) ** 8).double()
        ic_err = float((w * (f_fast[3] - f_exact[3]).abs()).sum() / w.sum())
        # fast mode's windowed, decimated bands against the full-rate ones (an approximation fixed by the window, not
        # rounding: 0.00095 at both lengths); the longer envelope read must not widen it
        assert ic_err < 0.003, (n_samples, ic_err)
        assert float((l_fast - l_exact).abs().max()) < 0.05


def test_spectrum_bins_are_the_dft_bins_mod_n():
    """The fast mode's window bins, taken as slices of the half spectrum, are the n-point DFT's bins lo..hi-1
    (mod n) of the real signal: checked against the full DFT for even and odd n, ranges below 0, past n / 2,
    and ranges that take the gather (wrapping further)."""
    from spaq.auditory.frontend import spectrum_bins

    rng = np.random.default_rng(3)
    for n in (16, 17, 1000, 1001):
        x = torch.from_numpy(rng.standard_normal((2, n)))
        full = torch.fft.fft(x)
        half = torch.fft.rfft(x)
        cases = [(0, n // 2 + 1), (-5, 7), (3, n - 2), (-(n // 2) + 1, n), (n // 2, n // 2 + 3), (-n - 3, 2), (1, 2 * n + 5)]
        for lo, hi in cases + [tuple(sorted(rng.integers(-n, 2 * n, 2) + [0, 1])) for _ in range(50)]:
            got = spectrum_bins(half, n, int(lo), int(hi))
            want = full[..., np.arange(lo, hi) % n]
            assert got.shape == want.shape
            assert torch.allclose(got, want, rtol=0, atol=1e-9 * n), (n, lo, hi)


def test_band_plan_map_on_two_threads_equals_the_bands_in_order():
    """``BandPlan.map`` with two threads allowed (items taken costliest first, on two threads) gives what ``bands``
    yields, value for value and in its order, in fast mode with its exactness fallback (a low-passed ear: its
    high bands are computed from the whole spectrum, items of their own) and in exact mode; and the binaural cues
    (``binaural_from_spectrum``, the ``cues`` metric's path) equal the one-thread ones bit for bit."""
    import scipy.signal as sps

    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 24000)) * 0.05
    x[1] = sps.sosfilt(sps.butter(8, 4000, fs=48000, output="sos"), x[1])  # a steep limit: whole-spectrum items
    old = torch.get_num_threads()
    try:
        for decimate in (True, False):
            fe = AuditoryFrontEnd(48000, decimate=decimate)
            t = x.shape[-1]
            spec = torch.fft.rfft(torch.from_numpy(x), n=fe.spectrum_length(t), dim=-1)
            torch.set_num_threads(1)
            ref = list(fe.bands(spec, t))
            cues1 = fe.binaural(torch.from_numpy(x))
            torch.set_num_threads(2)
            plan = fe.band_plan(spec, t)
            assert not decimate or any(whole for _, _, whole in plan.items)
            got = plan.map(lambda *item: item)
            assert len(got) == len(ref) == len(plan)
            for (b1, d1, s1, e1), (b2, d2, s2, e2) in zip(ref, got):
                assert b1 == b2 and d1 == d2 and torch.equal(s1, s2) and torch.equal(e1, e2)
            cues2 = fe.binaural(torch.from_numpy(x))
            assert all(torch.equal(cues1[k], cues2[k]) for k in cues1)
    finally:
        torch.set_num_threads(old)


def test_half_spectrum_on_two_threads_equals_one_thread():
    """``half_spectrum`` runs torch's transform of two or more signals on two intra-op threads where two are allowed:
    each signal's spectrum is then exactly its one-thread spectrum (the front-end's features stay thread-count
    independent), for the lengths and dtypes the front-end uses (a single signal stays on one thread)."""
    from spaq import threads

    old = torch.get_num_threads()
    try:
        for dtype, lengths in ((torch.float64, (24000, 48000 * 3 + 17, 480000)), (torch.float32, (960000, 123457))):
            fe = AuditoryFrontEnd(48000, decimate=True)
            fe.spectrum_dtype = dtype
            for t in lengths:
                x = torch.from_numpy(np.random.default_rng(t).standard_normal((3, 2, t)) * 0.05)
                torch.set_num_threads(1)
                one = fe.half_spectrum(x)
                torch.set_num_threads(2)
                seen = []
                real = torch.fft.rfft
                try:
                    torch.fft.rfft = lambda *a, **k: seen.append(torch.get_num_threads()) or real(*a, **k)
                    with threads.intra_op_threads(1):  # as the localiser calls it: the budget of two is kept
                        two = fe.half_spectrum(x)
                        fe.half_spectrum(x[0, :1])
                finally:
                    torch.fft.rfft = real
                assert seen == [2, 1] and one.dtype == two.dtype == (torch.complex128 if dtype == torch.float64
                                                                      else torch.complex64)
                assert torch.equal(one, two), (dtype, t)
    finally:
        torch.set_num_threads(old)


def test_whole_spectrum_responses_are_kept_for_one_length_within_a_bound():
    """The whole-spectrum items' responses are kept per spectrum length (a second call on a signal of that length
    reads them): their bands equal those computed with nothing kept, a new length replaces them, and no more than
    ``FULL_CACHE_ELEMENTS`` are kept."""
    import scipy.signal as sps

    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 24000)) * 0.05
    x[1] = sps.sosfilt(sps.butter(8, 4000, fs=48000, output="sos"), x[1])  # whole-spectrum items
    fe = AuditoryFrontEnd(48000, decimate=True)

    def items(sig):
        t = sig.shape[-1]
        spec = torch.fft.rfft(torch.from_numpy(sig), n=fe.spectrum_length(t), dim=-1)
        return list(fe.bands(spec, t))

    cold = items(x)
    n = fe.spectrum_length(24000)
    length, kept = fe._full_cache
    assert length[0] == n and kept and sum(v.numel() for v in kept.values()) <= fe.FULL_CACHE_ELEMENTS
    warm = items(x)
    for (b1, d1, s1, e1), (b2, d2, s2, e2) in zip(cold, warm):
        assert b1 == b2 and d1 == d2 and torch.equal(s1, s2) and torch.equal(e1, e2)
    items(x[:, :12000])
    assert fe._full_cache[0][0] == fe.spectrum_length(12000)
    fe.FULL_CACHE_ELEMENTS = 0  # nothing kept: the same values
    fe._full_cache = (None, {})
    for (b1, d1, s1, e1), (b2, d2, s2, e2) in zip(cold, items(x)):
        assert torch.equal(s1, s2) and torch.equal(e1, e2)
    assert not fe._full_cache[1]


def test_band_plan_map_raises_what_an_item_raises_on_either_thread():
    """An error in one item reaches the caller whichever thread computed it, and the map stops there."""
    import pytest

    fe = AuditoryFrontEnd(48000, decimate=True)
    x = torch.from_numpy(np.random.default_rng(2).standard_normal((2, 12000)) * 0.05)
    spec = torch.fft.rfft(x, n=fe.spectrum_length(12000), dim=-1)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        plan = fe.band_plan(spec, 12000)
        for bad in (0, len(plan) - 1):  # the cheapest item (taken last) and the costliest (taken first)
            def fn(bands, decim, band, env, bad=bad):
                if bands == plan.items[bad][0]:
                    raise ValueError(f"item {bad}")
                return bands
            with pytest.raises(ValueError, match=f"item {bad}"):
                plan.map(fn)
    finally:
        torch.set_num_threads(old)
