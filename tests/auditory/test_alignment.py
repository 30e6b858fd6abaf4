"""Time alignment: delayed copies (+noise, phase-randomised, low-passed) in binaural, FOA and
mono; unrelated signals flagged unreliable; apply_delay; bad input."""
import numpy as np
import pytest
import torch
from scipy.signal import istft, stft

from spaq.auditory.alignment import RELIABLE_THRESHOLD, Alignment, apply_delay, estimate_delay
from spaq.errors import SpaqInputError
from spaq.spatial.ambisonics import encode

FS = 48000
DUR = 2.0
PAD = int(0.3 * FS)
DELAYS_MS = [-250, -80, -20, -1, 0, 1, 5, 20, 80, 250]


def speech_like(n, rng):
    """Mono ``(n,)``: a gliding-pitch harmonic voice plus noise, syllable-modulated, with pauses."""
    t = np.arange(n) / FS
    f0 = 120 + 25 * np.sin(2 * np.pi * 0.5 * t + rng.uniform(0, 6))
    ph = 2 * np.pi * np.cumsum(f0) / FS
    voice = sum(np.cos(k * ph + rng.uniform(0, 6)) / k for k in range(1, 40))
    syll = np.maximum(0.0, np.sin(2 * np.pi * rng.uniform(3.5, 5.5) * t + rng.uniform(0, 6))) ** 2
    pauses = (np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) > -0.4).astype(float)
    return (voice + 0.3 * rng.standard_normal(n)) * syll * pauses


def pair(src, d):
    """ref ``(..., T)`` and ``deg[t] = ref[t - d]`` cut from the same longer source (no zeros)."""
    n = int(DUR * FS)
    return src[..., PAD:PAD + n], src[..., PAD - d:PAD - d + n]


def add_noise(x, snr_db, rng):
    return x + rng.standard_normal(x.shape) * np.sqrt(np.mean(x**2) / 10 ** (snr_db / 10))


def phase_randomise(x, rng, nperseg=1024):
    """STFT magnitude kept, phase random per bin and frame (a resynthesising codec's worst case)."""
    _, _, z = stft(x, FS, nperseg=nperseg)
    z = np.abs(z) * np.exp(2j * np.pi * rng.uniform(size=z.shape))
    return istft(z, FS, nperseg=nperseg)[1][..., :x.shape[-1]]


@pytest.fixture(scope="module")
def sources():
    rng = np.random.default_rng(15)
    n = int(DUR * FS) + 2 * PAD
    mono = speech_like(n, rng)
    from spaq.spatial.hrtf import load_hrtf
    from spaq.spatial.render import render_binaural

    return {
        "mono": mono[None, :],
        "ambisonics": encode(mono, 60.0, 10.0, order=1),  # FOA ACN/SN3D (4, T)
        "binaural": render_binaural(mono, 60.0, 10.0, load_hrtf("default", FS)),  # (2, T)
    }


@pytest.mark.parametrize("kind", ["binaural", "ambisonics", "mono"])
def test_delayed_copy_plus_noise_exact_to_one_sample(sources, kind):
    rng = np.random.default_rng(1)
    for ms in DELAYS_MS:
        d = int(round(ms * FS / 1000))
        ref, deg = pair(sources[kind], d)
        a = estimate_delay(ref, add_noise(deg, 20.0, rng), FS, kind)
        assert abs(a.delay_samples - d) <= 1, (kind, ms, a)
        assert a.method == "envelope+fine" and a.reliable, (kind, ms, a)
        assert a.delay_ms == pytest.approx(1000.0 * a.delay_samples / FS)


@pytest.mark.parametrize("kind", ["binaural", "ambisonics", "mono"])
def test_phase_randomised_copy_within_2_ms(sources, kind):
    rng = np.random.default_rng(2)
    for ms in DELAYS_MS:
        d = int(round(ms * FS / 1000))
        ref, deg = pair(sources[kind], d)
        a = estimate_delay(ref, phase_randomise(deg, rng), FS, kind)
        assert abs(a.delay_ms - ms) <= 2.0, (kind, ms, a)
        # the waveform is incoherent: the fine stage must not have been trusted
        assert a.method == "envelope" and a.fine_correlation < 0.5, (kind, ms, a)
        assert a.reliable, (kind, ms, a)


@pytest.mark.parametrize("ms", [-20, 0, 5, 80])
def test_low_passed_copy_found_exactly(sources, ms):
    """A zero-phase 2 kHz low-pass (FFT brick wall: no delay of its own) of a delayed copy."""
    d = int(round(ms * FS / 1000))
    ref, deg = pair(sources["mono"], d)
    spec = np.fft.rfft(deg, axis=-1)
    spec[..., np.fft.rfftfreq(deg.shape[-1], 1 / FS) > 2000] = 0
    lp = np.fft.irfft(spec, n=deg.shape[-1], axis=-1)
    a = estimate_delay(ref, lp, FS, "mono")
    assert a.delay_samples == d and a.method == "envelope+fine", a


def test_unrelated_noise_is_unreliable():
    rng = np.random.default_rng(3)
    for kind, ch in [("mono", 1), ("binaural", 2), ("ambisonics", 4), ("layout", 6)]:
        a = estimate_delay(rng.standard_normal((ch, FS * 2)), rng.standard_normal((ch, FS * 2)), FS, kind)
        assert not a.reliable and a.confidence < RELIABLE_THRESHOLD, (kind, a)


def test_confidence_falls_with_snr(sources):
    rng = np.random.default_rng(4)
    ref, deg = pair(sources["mono"], 240)
    conf = [estimate_delay(ref, add_noise(deg, snr, rng), FS, "mono").confidence for snr in (30, 10, 0, -10)]
    assert all(a > b for a, b in zip(conf, conf[1:])), conf


def test_layout_uses_the_channel_sum(sources):
    """5 loudspeaker feeds of one source, all delayed by 20 ms, with noise."""
    rng = np.random.default_rng(5)
    gains = np.array([0.2, 1.0, 0.7, 0.1, 0.4])[:, None]
    ref, deg = pair(gains * sources["mono"], 960)
    a = estimate_delay(ref, add_noise(deg, 20.0, rng), FS, "layout")
    assert abs(a.delay_samples - 960) <= 1 and a.reliable, a


def test_different_lengths_and_torch_input(sources):
    ref, deg = pair(sources["mono"], 480)
    deg = np.concatenate([np.zeros((1, 1000)), deg], axis=-1)  # 1000 more samples of latency, longer deg
    a = estimate_delay(torch.from_numpy(ref).float(), torch.from_numpy(deg).float(), FS, "mono")
    b = estimate_delay(ref[0], deg[0], FS, "mono")  # (T,) is one channel
    assert a.delay_samples == b.delay_samples == 1480
    assert isinstance(a, Alignment) and set(a.to_dict()) >= {"delay_samples", "delay_ms", "confidence", "method",
                                                           "reliable"}


def test_apply_delay_lines_up_the_pair(sources):
    for d in (-700, 0, 700):
        ref, deg = pair(sources["binaural"], d)
        r, g = apply_delay(ref, deg, d)
        assert r.shape == g.shape == (2, ref.shape[-1] - abs(d))
        np.testing.assert_array_equal(r, g)  # a pure delay undone is the identity, sample for sample
        # batch dimensions and torch tensors
        r, g = apply_delay(torch.from_numpy(ref)[None], torch.from_numpy(deg[..., :-5])[None], d)
        assert isinstance(r, torch.Tensor) and r.shape == g.shape == (1, 2, ref.shape[-1] - abs(d) - (5 if d >= 0 else max(0, 5 + d)))
    with pytest.raises(SpaqInputError, match="no overlap"):
        apply_delay(np.zeros((1, 10)), np.zeros((1, 10)), 10)


def test_bad_input_one_line_errors():
    x = np.random.default_rng(0).standard_normal((2, FS))
    cases = [
        (dict(ref=x, deg=x, sample_rate=FS, kind="stereo"), "unknown alignment kind"),
        (dict(ref=x, deg=x[:1], sample_rate=FS, kind="layout"), "different channel counts"),
        (dict(ref=x[:1], deg=x[:1], sample_rate=FS, kind="binaural"), "binaural needs 2 channels"),
        (dict(ref=x, deg=x, sample_rate=FS, kind="mono"), "mono needs 1 channel"),
        (dict(ref=x, deg=np.zeros_like(x), sample_rate=FS, kind="binaural"), "silent"),
        (dict(ref=x, deg=np.where(x > 2, np.nan, x), sample_rate=FS, kind="binaural"), "NaN"),
        (dict(ref=x[None], deg=x[None], sample_rate=FS, kind="binaural"), "one pair at a time"),
        (dict(ref=x[:, :100], deg=x[:, :100], sample_rate=FS, kind="binaural"), "too short"),
        (dict(ref=x, deg=x, sample_rate=0, kind="binaural"), "sample_rate"),
        (dict(ref=x, deg=x, sample_rate=FS, kind="binaural", max_delay_ms=-1), "max_delay_ms"),
        (dict(ref=x, deg=x, sample_rate=FS, kind="binaural", max_delay_ms="long"), "max_delay_ms"),
        (dict(ref=[["a", "b"], ["c", "d"]], deg=x, sample_rate=FS, kind="binaural"), "not a numeric array"),
    ]
    for kw, msg in cases:
        with pytest.raises(SpaqInputError, match=msg) as e:
            estimate_delay(**kw)
        assert "\n" not in str(e.value)


def test_range_sums_match_slices():
    from spaq.auditory.alignment import _range_sums

    x = np.random.default_rng(6).standard_normal(1000)
    for starts, stops in [(np.arange(0, 50), np.arange(900, 950)), (np.arange(300, 0, -1), np.arange(700, 1000)),
                          (np.arange(0, 400), np.arange(200, 600))]:  # last: ranges overlap
        want = np.array([x[a:b].sum() for a, b in zip(starts, stops)])
        np.testing.assert_allclose(_range_sums(x, starts, stops), want, rtol=0, atol=1e-11)


def test_search_range_is_respected_and_result_is_json_ready(sources):
    import json

    ref, deg = pair(sources["mono"], 960)  # 20 ms
    a = estimate_delay(ref, deg, FS, "mono", max_delay_ms=10.0)  # the true delay is out of range
    assert abs(a.delay_samples) <= 480
    z = estimate_delay(ref, deg, FS, "mono", max_delay_ms=0.0)
    assert z.delay_samples == 0 and z.method == "envelope"
    d = json.loads(json.dumps(z.to_dict(), allow_nan=False))
    assert d["fine_correlation"] is None and d["delay_ms"] == 0.0
