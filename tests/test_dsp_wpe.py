"""spaq.dsp.wpe_dereverberate: weighted prediction error dereverberation (issue 16's room localisation)."""
import numpy as np
import pytest
import torch
from scipy.signal import fftconvolve

from spaq.dsp import wpe_dereverberate, wpe_max_taps, wpe_min_samples, wpe_stft

FS = 16000


def _room(seed=0, seconds=3.0, rt60=0.6, fs=FS):
    """White noise through two exponentially decaying random responses with a shared direct path
    (a unit impulse in the left ear, 0.5 two samples later in the right): ``(dry (T,), wet (2, T), rirs)``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    dry = rng.standard_normal(n)
    L = int(rt60 * fs)
    decay = np.exp(-6.9 * np.arange(L) / L)  # -60 dB at rt60
    rirs = rng.standard_normal((2, L)) * decay * 0.12
    rirs[:, : int(0.003 * fs)] = 0.0  # the first reflections arrive 3 ms after the direct sound
    rirs[0, 0] += 1.0
    rirs[1, 2] += 0.5
    wet = np.stack([fftconvolve(dry, r)[:n] for r in rirs])
    return dry, wet, rirs


def _response(dry, y, length):
    """Least-squares response of each channel of ``y`` to ``dry`` (``(2, length)``), by spectral division."""
    n = len(dry)
    D = np.fft.rfft(dry, 2 * n)
    Y = np.fft.rfft(y, 2 * n, axis=-1)
    return np.fft.irfft(Y * np.conj(D) / (np.abs(D) ** 2 + 1e-3 * np.mean(np.abs(D) ** 2)), axis=-1)[:, :length]


def test_removes_the_reverberation_within_reach_and_keeps_the_direct_sound():
    dry, wet, rirs = _room()
    y = wpe_dereverberate(torch.from_numpy(wet), n_fft=512, hop=128, taps=20, delay=2).numpy()
    assert y.shape == wet.shape and y.dtype == wet.dtype
    h_in, h_out = _response(dry, wet, 9600), _response(dry, y, 9600)
    # 50-150 ms: past the filter's delay (2 hops of 8 ms) and window (32 ms), within its reach (2 + 20 hops)
    reach = slice(int(0.05 * FS), int(0.15 * FS))
    e_in, e_out = (float(np.sum(h[:, reach] ** 2)) for h in (h_in, h_out))
    assert 10 * np.log10(e_in / e_out) > 10.0  # measured 13.9 dB on three seeds
    # the direct sound: each ear's first samples of the response, and their ratio (the interaural cue), kept
    assert h_out[0, 0] == pytest.approx(1.0, abs=0.1) and h_out[1, 2] == pytest.approx(0.5, abs=0.05)  # 0.95, 0.47
    assert h_out[1, 2] / h_out[0, 0] == pytest.approx(0.5, abs=0.02)  # measured 0.498


def test_anechoic_input_is_nearly_unchanged():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 2 * FS))
    x[1] = 0.7 * np.roll(x[0], 5)  # one direct sound, no reflections: nothing to predict from 3 hops back
    y = wpe_dereverberate(torch.from_numpy(x), n_fft=512, hop=128, taps=10, delay=3).numpy()
    err = 10 * np.log10(np.sum((y - x)[:, 2048:-2048] ** 2) / np.sum(x[:, 2048:-2048] ** 2))
    assert err < -15.0  # measured -23 dB: white noise is unpredictable; only the estimate's own noise is removed


def test_matches_nara_wpe():
    nara = pytest.importorskip("nara_wpe.wpe", reason="nara_wpe (the test extra) is the reference implementation")

    _, wet, _ = _room(seed=1, seconds=2.0)
    win = torch.hann_window(512, dtype=torch.float64)
    Y = torch.stft(torch.from_numpy(wet), 512, 128, window=win, return_complex=True).permute(1, 0, 2)  # (F, C, N)
    ref = nara.wpe(Y.numpy(), taps=10, delay=3, iterations=3, statistics_mode="full")
    ours = wpe_stft(Y, taps=10, delay=3, iterations=3).numpy()
    changed = np.linalg.norm(ref - Y.numpy()) / np.linalg.norm(Y.numpy())
    assert changed > 0.5  # WPE removes much of this reverberation (0.71) ...
    assert np.linalg.norm(ours - ref) / np.linalg.norm(ref) < 0.02  # ... and both remove the same (0.0096:
    # complex128 against complex64 and the diagonal loading)


def test_band_limits_and_short_input():
    _, wet, _ = _room(seed=2, seconds=2.0)
    y = wpe_dereverberate(torch.from_numpy(wet), n_fft=512, hop=128, taps=10, delay=3, band_hz=(500.0, 3000.0),
                          sample_rate=FS).numpy()
    diff = np.abs(np.fft.rfft(y - wet, axis=-1)) ** 2
    f = np.fft.rfftfreq(wet.shape[-1], 1 / FS)
    inside, above = diff[:, (f > 700) & (f < 2800)].mean(), diff[:, f > 4000].mean()
    assert above < 1e-4 * inside  # bins above the band pass through (what is left: the synthesis window's leakage)
    with pytest.raises(ValueError, match="too few"):
        wpe_dereverberate(torch.zeros(2, wpe_min_samples(2, 512, 128, 10, 3) - 1), n_fft=512, hop=128, taps=10, delay=3)
    with pytest.raises(ValueError, match="needs sample_rate"):
        wpe_dereverberate(torch.from_numpy(wet), band_hz=(500.0, 3000.0))


def test_max_taps_is_the_inverse_of_min_samples():
    for n in range(20000, 60000, 37):  # integer arithmetic: exact
        for C in (1, 2, 4):
            t = wpe_max_taps(n, C, 1024, 256, 2)
            assert wpe_min_samples(C, 1024, 256, t, 2) <= n < wpe_min_samples(C, 1024, 256, t + 1, 2)
    assert wpe_max_taps(48000, 2) == 36 and wpe_max_taps(24000, 2) == 17


def test_wpe_applies_its_filter_a_group_of_blocks_at_a_time_with_the_same_result(monkeypatch):
    """The filter's overlap-save application in groups of blocks (bounded memory on long recordings) gives what
    one pass over every block gives: each block's transforms and products are the same."""
    import spaq.dsp as dsp

    g = torch.Generator().manual_seed(3)
    Y = torch.complex(torch.randn(40, 2, 700, generator=g), torch.randn(40, 2, 700, generator=g))
    whole = dsp.wpe_stft(Y, taps=6, delay=2)
    monkeypatch.setattr(dsp, "WPE_APPLY_BYTES", 16 * 40 * 2 * 32 * 3)  # 3 blocks of 32 frames per group (lag 7)
    grouped = dsp.wpe_stft(Y, taps=6, delay=2)
    # the same transforms per block (equal to the bit here); an FFT library may batch differently elsewhere, so to
    # float32 rounding of a 32-point transform of values of order 10 (a few ulps, ~1e-5 absolute)
    torch.testing.assert_close(grouped, whole, rtol=1e-5, atol=1e-5 * float(whole.abs().max()))
    assert not torch.equal(grouped, Y) and float((grouped - Y).abs().max()) > 0.1  # the filter did act
