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
