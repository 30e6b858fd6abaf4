"""Tests for spaq.io: reading/writing, validation errors, resampling, alignment, formats."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import soundfile
import torch

from spaq import io as spaq_io
from spaq.errors import SpaqError, SpaqInputError
from spaq.formats import SpatialFormat
from spaq.io import SignalPair, load_pair, read_audio, resample, write_audio

SR = 16000


def sine(f=440.0, sr=SR, dur=0.25, ch=2, amp=0.5, phase_step=0.3):
    t = np.arange(int(round(dur * sr))) / sr
    return np.stack([amp * np.sin(2 * np.pi * f * t + k * phase_step) for k in range(ch)])


def wav(tmp_path, name, x, sr=SR, subtype="FLOAT"):
    p = tmp_path / name
    soundfile.write(str(p), np.asarray(x).T, sr, subtype=subtype)
    return p


# ----------------------------------------------------------------------- reading / writing


@pytest.mark.parametrize(
    "ext,subtype,tol",
    [
        ("wav", "PCM_U8", 2.0**-7),
        ("wav", "PCM_16", 2.0**-15),
        ("wav", "PCM_24", 2.0**-23),
        ("wav", "PCM_32", 2.0**-31),
        ("wav", "FLOAT", 2.0**-24),
        ("flac", "PCM_16", 2.0**-15),
        ("flac", "PCM_24", 2.0**-23),
    ],
)
def test_subtype_round_trip(tmp_path, ext, subtype, tol):
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.99, 0.99, size=(3, 2000))
    x[0, :3] = [-1.0, 0.0, 0.5]
    p = tmp_path / f"x_{subtype}.{ext}"
    write_audio(p, x, 22050, subtype=subtype)
    y, sr = read_audio(p)
    assert sr == 22050
    # float32 holds every sample of <= 24-bit PCM and float files exactly; 32-bit PCM needs float64
    assert y.dtype == (np.float64 if subtype == "PCM_32" else np.float32) and y.shape == (3, 2000)
    exact, _ = soundfile.read(str(p), dtype="float64", always_2d=True)
    np.testing.assert_array_equal(y.astype(np.float64), exact.T)
    err = np.max(np.abs(y - x))
    assert err <= tol, (subtype, err)
    # the quantisation is real for the integer formats (not e.g. silently written as float)
    if subtype.startswith("PCM") and subtype != "PCM_32":
        assert err > tol / 64
    assert soundfile.info(str(p)).subtype == subtype
    assert np.max(np.abs(y)) <= 1.0


def test_read_mono_is_1_by_T(tmp_path):
    x = sine(ch=1)[0]
    p = tmp_path / "m.wav"
    soundfile.write(str(p), x, SR, subtype="FLOAT")
    y, sr = read_audio(p)
    assert y.shape == (1, x.size) and sr == SR
    np.testing.assert_allclose(y[0], x, atol=1e-7)


def test_write_mono_1d(tmp_path):
    x = sine(ch=1)[0]
    write_audio(tmp_path / "m.wav", x, SR)
    y, _ = read_audio(tmp_path / "m.wav")
    assert y.shape == (1, x.size)


def test_read_missing_file(tmp_path):
    with pytest.raises(SpaqInputError, match="not found.*nope.wav"):
        read_audio(tmp_path / "nope.wav")


def test_read_text_file_renamed_wav(tmp_path):
    p = tmp_path / "notes.wav"
    p.write_text("this is not audio\n" * 10)
    with pytest.raises(SpaqInputError, match=r"cannot read .*notes\.wav as audio") as ei:
        read_audio(p)
    assert "\n" not in str(ei.value)


def test_read_directory(tmp_path):
    with pytest.raises(SpaqInputError, match="not a file"):
        read_audio(tmp_path)


def test_write_audio_atomic_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "out.wav"
    real_write = soundfile.write

    def failing_write(file, data, samplerate, *args, **kwargs):
        # write a partial file, then fail mid-way
        with open(file, "wb") as fh:
            fh.write(b"RIFF\x00\x00partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(soundfile, "write", failing_write)
    with pytest.raises(SpaqError, match="cannot write .*out.wav.*disk full"):
        write_audio(target, sine(), SR)
    assert not target.exists()
    assert os.listdir(tmp_path) == []

    # an existing file is left untouched by a failed overwrite
    monkeypatch.setattr(soundfile, "write", real_write)
    write_audio(target, sine(amp=0.25), SR)
    before = target.read_bytes()
    monkeypatch.setattr(soundfile, "write", failing_write)
    with pytest.raises(SpaqError):
        write_audio(target, sine(amp=0.75), SR)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["out.wav"]


def test_write_audio_keyboard_interrupt_cleans_up(tmp_path, monkeypatch):
    def interrupted(file, *a, **k):
        with open(file, "wb") as fh:
            fh.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(soundfile, "write", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_audio(tmp_path / "o.flac", sine(), SR, subtype="PCM_16")
    assert os.listdir(tmp_path) == []


def test_write_audio_overwrites_and_no_temp_left(tmp_path):
    target = tmp_path / "o.wav"
    write_audio(target, sine(amp=0.1), SR)
    write_audio(target, sine(amp=0.2), SR)
    y, _ = read_audio(target)
    assert np.max(np.abs(y)) == pytest.approx(0.2, rel=1e-3)
    assert os.listdir(tmp_path) == ["o.wav"]


def test_write_audio_bad_extension(tmp_path):
    with pytest.raises(SpaqError, match="extension"):
        write_audio(tmp_path / "o.xyz", sine(), SR)
    assert os.listdir(tmp_path) == []


# ----------------------------------------------------------------------- resampling


def _freq_amp(x, sr):
    """Frequency (zero-crossing fit) and amplitude (RMS * sqrt 2) of a sine, edges dropped."""
    n = x.size
    y = x[n // 10 : -n // 10]
    s = np.signbit(y)
    idx = np.flatnonzero(s[:-1] & ~s[1:])  # upward crossings
    # linear interpolation of crossing times
    frac = y[idx] / (y[idx] - y[idx + 1])
    tc = (idx + frac) / sr
    freq = (len(tc) - 1) / (tc[-1] - tc[0])
    amp = math.sqrt(2.0) * np.sqrt(np.mean(y[idx[0] : idx[-1]] ** 2))
    return freq, amp


def test_resample_441_to_48k_keeps_frequency_and_amplitude():
    sr_in, sr_out, f0, a0 = 44100, 48000, 1000.0, 0.7
    x = a0 * np.sin(2 * np.pi * f0 * np.arange(44100 // 2) / sr_in)
    y = resample(x[None], sr_in, sr_out)
    assert y.shape == (1, 24000)
    f, a = _freq_amp(y[0], sr_out)
    assert f == pytest.approx(f0, rel=0.005)
    assert a == pytest.approx(a0, rel=0.005)
    # and sample values agree with the analytic sine at the new rate, away from edges
    ref = a0 * np.sin(2 * np.pi * f0 * np.arange(24000) / sr_out)
    assert np.max(np.abs(y[0, 2000:-2000] - ref[2000:-2000])) < 0.005 * a0


def test_resample_identity_and_batch_axes():
    x = np.random.default_rng(1).standard_normal((2, 3, 100))
    np.testing.assert_array_equal(resample(x, 8000, 8000), x)
    y = resample(x, 8000, 16000)
    assert y.shape == (2, 3, 200) and y.dtype == np.float64


def test_resample_rejects_bad_rate():
    with pytest.raises(SpaqInputError, match="positive integer"):
        resample(np.zeros((1, 10)), 0, 16000)


# ----------------------------------------------------------------------- load_pair: happy paths


def test_load_pair_files_basic(tmp_path):
    x = sine(dur=0.3)
    r = wav(tmp_path, "ref.wav", x)
    d = wav(tmp_path, "deg.wav", 0.5 * x)
    pair = load_pair(r, d)
    assert isinstance(pair, SignalPair)
    assert pair.ref.shape == pair.deg.shape == (1, 2, 4800)
    # a float/<=24-bit file is held in float32, sample for sample what float64 reading gives
    assert pair.ref.dtype == pair.deg.dtype == np.float32
    np.testing.assert_array_equal(pair.ref[0], read_audio(r)[0])
    import soundfile as sf
    np.testing.assert_array_equal(pair.ref[0].astype(np.float64), sf.read(str(r), dtype="float64", always_2d=True)[0].T)
    np.testing.assert_allclose(pair.deg, 0.5 * pair.ref, atol=1e-7)
    assert pair.sample_rate_in == pair.sample_rate_used == SR
    assert pair.format == SpatialFormat("binaural")
    assert pair.warnings == []
    assert pair.batched is False
    assert pair.ref_name == str(r) and pair.deg_name == str(d)
    assert pair.duration_s == pytest.approx(0.3)


def test_load_pair_arrays_2d_3d_and_torch():
    x = sine(ch=4)
    p = load_pair(x, 0.9 * x, sample_rate=SR)
    assert p.ref.shape == (1, 4, x.shape[1]) and not p.batched
    assert p.format == SpatialFormat("ambisonics", 1)
    assert p.ref_name == p.deg_name == "<array>"

    xb = np.stack([x, 0.5 * x, 0.25 * x])
    p = load_pair(xb, xb[:, :, ::-1].copy(), sample_rate=SR)
    assert p.batched and p.ref.shape == (3, 4, x.shape[1])
    np.testing.assert_array_equal(p.ref, xb)

    assert p.ref.dtype == np.float64  # float64 arrays keep their precision
    t = torch.tensor(xb, dtype=torch.float32, requires_grad=True)
    p = load_pair(t, t * 0.5, sample_rate=SR)
    assert isinstance(p.ref, np.ndarray) and p.ref.dtype == np.float32
    p2 = load_pair(t, xb, sample_rate=SR)  # mixed precision: both float64
    assert p2.ref.dtype == p2.deg.dtype == np.float64
    assert p.batched and p.ref.shape == (3, 4, x.shape[1])
    np.testing.assert_allclose(p.deg, 0.5 * xb, atol=1e-6)


def test_load_pair_broadcasts_unbatched_ref_over_batch():
    x = sine()
    degs = np.stack([x, 0.5 * x])
    p = load_pair(x, degs, sample_rate=SR)
    assert p.batched and p.ref.shape == p.deg.shape == (2, 2, x.shape[1])
    np.testing.assert_array_equal(p.ref[1], x)


def test_load_pair_file_and_array_mixed(tmp_path):
    x = sine()
    r = wav(tmp_path, "r.wav", x)
    p = load_pair(r, x, sample_rate=SR)
    assert p.ref_name == str(r) and p.deg_name == "<array>"
    np.testing.assert_allclose(p.ref, p.deg, atol=1e-7)


def test_odd_length_kept():
    x = sine()[:, :1001]
    p = load_pair(x, x, sample_rate=SR)
    assert p.ref.shape[-1] == 1001 and p.warnings == []


def test_mono_accepted_only_with_fmt():
    x = sine(ch=1)
    p = load_pair(x, x, sample_rate=SR, fmt="mono")
    assert p.format.kind == "mono" and p.ref.shape == (1, 1, x.shape[1])


def test_fmt_given_matching_and_as_object():
    x = sine(ch=9)
    p = load_pair(x, x, sample_rate=SR, fmt="hoa2")
    assert p.format == SpatialFormat("ambisonics", 2)
    p = load_pair(x, x, sample_rate=SR, fmt=SpatialFormat("ambisonics", 2))
    assert p.format.order == 2
    p = load_pair(x, x, sample_rate=SR, fmt="ambisonics")  # order from the channel count
    assert p.format == SpatialFormat("ambisonics", 2)


# ----------------------------------------------------------------------- rates and lengths


def test_differing_rates_resample_deg_and_warn(tmp_path):
    r = wav(tmp_path, "r.wav", sine(f=500, sr=48000, dur=0.5), sr=48000)
    d = wav(tmp_path, "d.wav", sine(f=500, sr=44100, dur=0.5), sr=44100)
    p = load_pair(r, d)
    assert p.ref.shape == p.deg.shape == (1, 2, 24000)
    assert p.sample_rate_in == p.sample_rate_used == 48000
    assert len(p.warnings) == 1
    assert "44100" in p.warnings[0] and "48000" in p.warnings[0] and "resampled" in p.warnings[0]
    # the resampled deg equals the ref away from the edges
    assert np.max(np.abs(p.ref[..., 2000:-2000] - p.deg[..., 2000:-2000])) < 0.005


def test_differing_rates_with_target_rate_go_straight_to_target(tmp_path):
    # a 44.1 kHz file against a 48 kHz array, both to 16 kHz
    r = sine(f=500, sr=48000, dur=0.5)
    f = wav(tmp_path, "d.wav", sine(f=500, sr=44100, dur=0.5), sr=44100)
    p = load_pair(r, f, sample_rate=48000, target_rate=16000)
    assert p.sample_rate_in == 48000 and p.sample_rate_used == 16000
    assert p.ref.shape == p.deg.shape == (1, 2, 8000)
    assert p.warnings == ["sample rates differ: ref at 48000 Hz, deg at 44100 Hz; both resampled to 16000 Hz"]
    assert np.max(np.abs(p.ref[..., 500:-500] - p.deg[..., 500:-500])) < 0.005


def test_target_rate_resamples_both():
    x = sine(f=300, sr=48000, dur=0.2)
    p = load_pair(x, x, sample_rate=48000, target_rate=16000)
    assert p.sample_rate_in == 48000 and p.sample_rate_used == 16000
    assert p.ref.shape == (1, 2, 3200) and p.warnings == []
    expected = sine(f=300, sr=16000, dur=0.2)
    assert np.max(np.abs(p.ref[0, :, 400:-400] - expected[:, 400:-400])) < 0.005
    assert p.duration_s == pytest.approx(0.2)


def test_small_length_difference_trims_and_warns():
    x = sine(dur=0.5)  # 8000 samples
    p = load_pair(x, x[:, :7950], sample_rate=SR)  # 0.625 %
    assert p.ref.shape == p.deg.shape == (1, 2, 7950)
    assert len(p.warnings) == 1
    w = p.warnings[0]
    assert "8000" in w and "7950" in w and "0.62" in w and "trimmed" in w
    np.testing.assert_array_equal(p.ref[0], x[:, :7950])


def test_large_length_difference_refuses_unless_trim():
    x = sine(dur=0.5)
    with pytest.raises(SpaqInputError, match=r"lengths differ by 5\.00 %.*--trim"):
        load_pair(x, x[:, :7600], sample_rate=SR)
    p = load_pair(x, x[:, :7600], sample_rate=SR, trim=True)
    assert p.ref.shape == p.deg.shape == (1, 2, 7600)
    assert any("7600" in w and "trimmed" in w for w in p.warnings)


# ----------------------------------------------------------------------- normalisation


def test_fuma_to_sn3d_values():
    # a plane wave from azimuth 30 deg, elevation 20 deg, in FuMa (W X Y Z, W at -3 dB)
    az, el = np.deg2rad(30.0), np.deg2rad(20.0)
    s = sine(ch=1)[0]
    fuma = np.stack([s / math.sqrt(2), s * math.cos(az) * math.cos(el), s * math.sin(az) * math.cos(el), s * math.sin(el)])
    p = load_pair(fuma, fuma, sample_rate=SR, fmt="foa/fuma")
    assert p.format == SpatialFormat("ambisonics", 1, "fuma")
    sn3d = p.ref[0]
    # ACN order W Y Z X, SN3D: W = 1
    np.testing.assert_allclose(sn3d[0], s, atol=1e-12)
    np.testing.assert_allclose(sn3d[1], s * math.sin(az) * math.cos(el), atol=1e-12)
    np.testing.assert_allclose(sn3d[2], s * math.sin(el), atol=1e-12)
    np.testing.assert_allclose(sn3d[3], s * math.cos(az) * math.cos(el), atol=1e-12)
    np.testing.assert_array_equal(p.ref, p.deg)


def test_n3d_to_sn3d_values():
    x = np.ones((9, 1000)) * 0.1
    x[:, ::2] = -0.1
    p = load_pair(x, x, sample_rate=SR, fmt="hoa2/n3d")
    gains = np.array([1] + [1 / math.sqrt(3)] * 3 + [1 / math.sqrt(5)] * 5)
    np.testing.assert_allclose(p.ref[0], x * gains[:, None], rtol=1e-12)
    assert p.format.normalisation == "n3d"


# ----------------------------------------------------------------------- errors


def test_error_missing_file(tmp_path):
    d = wav(tmp_path, "d.wav", sine())
    with pytest.raises(SpaqInputError, match="not found.*missing_ref.wav"):
        load_pair(tmp_path / "missing_ref.wav", d)


def test_error_not_audio(tmp_path):
    r = wav(tmp_path, "r.wav", sine())
    bad = tmp_path / "deg.wav"
    bad.write_text("hello, I am text")
    with pytest.raises(SpaqInputError, match=r"cannot read .*deg\.wav as audio"):
        load_pair(r, bad)


def test_error_empty_file(tmp_path):
    r = wav(tmp_path, "r.wav", sine())
    e = wav(tmp_path, "empty.wav", np.zeros((2, 0)))
    with pytest.raises(SpaqInputError, match=r"deg \(.*empty\.wav\) is empty \(0 samples\)"):
        load_pair(r, e)


def test_error_too_short(tmp_path):
    x = sine(dur=0.03)  # 30 ms
    r = wav(tmp_path, "short.wav", x)
    with pytest.raises(SpaqInputError, match=r"short\.wav\) is too short: 30\.0 ms"):
        load_pair(r, r)
    # the check is at the used rate: 640 samples at 16 kHz = 40 ms passes
    ok = sine(dur=0.04)
    assert load_pair(ok, ok, sample_rate=SR).ref.shape[-1] == 640
    with pytest.raises(SpaqInputError, match="too short"):
        load_pair(ok, ok, sample_rate=SR, min_duration_s=0.1)


@pytest.mark.parametrize("bad,word", [(np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")])
def test_error_nonfinite_says_which(bad, word):
    x = sine()
    y = x.copy()
    y[1, 100] = bad
    with pytest.raises(SpaqInputError, match=rf"^deg <array> contains {word} samples"):
        load_pair(x, y, sample_rate=SR)
    with pytest.raises(SpaqInputError, match=rf"^ref <array> contains {word} samples"):
        load_pair(y, x, sample_rate=SR)


def test_error_nan_in_file_names_file(tmp_path):
    x = sine()
    x[0, 5] = np.nan
    r = wav(tmp_path, "nanref.wav", x)
    d = wav(tmp_path, "d.wav", sine())
    with pytest.raises(SpaqInputError, match=r"ref \(.*nanref\.wav\) contains NaN"):
        load_pair(r, d)


def test_error_channel_counts_differ(tmp_path):
    r = wav(tmp_path, "r.wav", sine(ch=2))
    d = wav(tmp_path, "d.wav", sine(ch=4))
    with pytest.raises(SpaqInputError, match="different channel counts: 2 in .*r.wav.*4 in .*d.wav"):
        load_pair(r, d)


@pytest.mark.parametrize("ch", [3, 5, 8])
def test_error_channel_count_not_spatial(ch):
    x = sine(ch=ch)
    with pytest.raises(SpaqInputError, match=rf"{ch} channels is neither binaural"):
        load_pair(x, x, sample_rate=SR)


def test_error_mono_without_fmt():
    x = sine(ch=1)
    with pytest.raises(SpaqInputError, match=r"1 channel \(mono\).*--format mono"):
        load_pair(x, x, sample_rate=SR)


def test_error_fmt_channel_mismatch(tmp_path):
    r = wav(tmp_path, "r4.wav", sine(ch=4))
    with pytest.raises(SpaqInputError, match=r"expects 2 channels but ref \(.*r4\.wav\) has 4"):
        load_pair(r, r, fmt="binaural")
    with pytest.raises(SpaqInputError, match="expects 9 channels"):
        load_pair(r, r, fmt="hoa2")
    x = sine(ch=2)
    with pytest.raises(SpaqInputError, match="expects 1 channel but"):
        load_pair(x, x, sample_rate=SR, fmt="mono")


def test_error_fuma_not_4_channels():
    x = sine(ch=9)
    # FuMa is defined to third order: it is spaq that reads it at first order only, and the message says so
    with pytest.raises(SpaqInputError, match=r"^FuMa is defined up to third order, but spaq reads it at first order "
                                             r"\(4 channels, W X Y Z\) only; ref <array> has 9 channels: convert it to "
                                             r"ACN/SN3D or ACN/N3D and give --format hoa2 or hoa2/n3d$"):
        load_pair(x, x, sample_rate=SR, fmt="foa/fuma")
    with pytest.raises(SpaqInputError, match="FuMa"):
        load_pair(x, x, sample_rate=SR, fmt="ambisonics/fuma")
    x4 = sine(ch=4)  # four channels, but a FuMa order above 1 asked for
    with pytest.raises(SpaqInputError, match=r"spaq reads it at first order .* has 4 channels: give --format foa/fuma$"):
        load_pair(x4, x4, sample_rate=SR, fmt="hoa3/fuma")
    from spaq.localization import localize  # the localizer reads formats with the same line

    with pytest.raises(SpaqInputError, match=r"^FuMa is defined up to third order, .* array has 9 channels: convert"):
        localize(x, SR, format="foa/fuma")


def test_error_unknown_fmt_string():
    x = sine()
    with pytest.raises(SpaqInputError, match="unknown format"):
        load_pair(x, x, sample_rate=SR, fmt="quadraphonic")


def test_error_silent_ref_and_warning_silent_deg(tmp_path):
    x = sine()
    z = np.zeros_like(x)
    with pytest.raises(
        SpaqInputError, match=r"reference is silent \(all samples are zero\): nothing to compare against"
    ):
        load_pair(z, x, sample_rate=SR)
    rz = wav(tmp_path, "zero.wav", z, subtype="PCM_16")
    with pytest.raises(SpaqInputError, match=r"zero\.wav.*reference is silent"):
        load_pair(rz, rz)
    p = load_pair(x, z, sample_rate=SR)
    assert len(p.warnings) == 1 and "degraded signal is silent" in p.warnings[0]
    np.testing.assert_array_equal(p.deg, 0.0)
    # one silent item in a batched ref is refused, naming the item
    xb = np.stack([x, z])
    with pytest.raises(SpaqInputError, match=r"batch item 1\).*reference is silent"):
        load_pair(xb, np.stack([x, x]), sample_rate=SR)


def test_error_sample_rate_required_for_arrays(tmp_path):
    x = sine()
    with pytest.raises(SpaqInputError, match="sample_rate is required"):
        load_pair(x, x)
    r = wav(tmp_path, "r.wav", x)
    with pytest.raises(SpaqInputError, match="deg is an array: sample_rate is required"):
        load_pair(r, torch.tensor(x))


def test_error_bad_array_shapes():
    x = sine()
    with pytest.raises(SpaqInputError, match=r"shape \(4000,\); expected \(channels, time\)"):
        load_pair(x[0], x[0], sample_rate=SR)
    with pytest.raises(SpaqInputError, match=r"shape \(4000, 2\): 4000 channels.*transposed"):
        load_pair(x.T, x.T, sample_rate=SR)
    with pytest.raises(SpaqInputError, match="different batch sizes: 2 and 3"):
        load_pair(np.stack([x] * 2), np.stack([x] * 3), sample_rate=SR)


def test_error_bad_rates():
    x = sine()
    with pytest.raises(SpaqInputError, match="sample_rate must be a positive integer"):
        load_pair(x, x, sample_rate=-1)
    with pytest.raises(SpaqInputError, match="target_rate must be a positive integer"):
        load_pair(x, x, sample_rate=SR, target_rate=0)


def test_all_errors_are_one_line(tmp_path):
    bad = tmp_path / "b.wav"
    bad.write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt garbage")
    with pytest.raises(SpaqInputError) as ei:
        load_pair(bad, bad)
    assert "\n" not in str(ei.value) and "b.wav" in str(ei.value)


def test_module_exports():
    assert set(spaq_io.__all__) == {"SignalPair", "PairReader", "read_audio", "write_audio", "atomic_write", "load_pair", "resample",
                                    "stream_threshold_bytes", "check_input_rate", "check_file_rate", "MIN_INPUT_RATE",
                                    "as_audio_array"}


def test_atomic_write_umask_permissions_and_no_leftover_on_failure(tmp_path):
    import os
    import stat

    from spaq.io import atomic_write

    old = os.umask(0o022)
    try:
        p = tmp_path / "sub" / "table.csv"
        atomic_write(p, lambda tmp: open(tmp, "w").write("a\n1\n"))
        assert p.read_text() == "a\n1\n"
        assert stat.S_IMODE(p.stat().st_mode) == 0o644  # mkstemp would give 0600

        def broken(tmp):
            open(tmp, "w").write("half")
            raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            atomic_write(p, broken)
        assert p.read_text() == "a\n1\n" and sorted(x.name for x in p.parent.iterdir()) == ["table.csv"]
    finally:
        os.umask(old)


@pytest.mark.parametrize("stream", [False, True])
def test_ambisonic_pairs_of_two_orders_are_zero_padded(tmp_path, stream):
    """A third-order reference and a first-order degraded file (or the reverse; or a one-channel
    file, read as W): the lower-order signal gets zero channels up to the other's count, with a
    warning; the metrics then decode it at its own order (W alone at the other's). Other
    mismatches stay errors."""
    x = sine(ch=16)
    r = wav(tmp_path, "r.wav", x)
    d = wav(tmp_path, "d.wav", x[:4])
    # one channel beside ambisonics: a mono downmix, read as W and zero-padded (decoded at the other's order)
    m = wav(tmp_path, "m.wav", x[:1])
    for other, n, said in ((d, 4, "order-1 ambisonics"), (m, 1, "one channel: read as W")):
        for a, b, low in ((r, other, "deg"), (other, r, "ref")):
            p = load_pair(a, b, stream=stream)
            ref, deg = p.reader.read(0, p.n_samples) if stream else (p.ref, p.deg)
            assert ref.shape[-2] == deg.shape[-2] == 16 and p.format.order == 3
            short = deg if low == "deg" else ref
            np.testing.assert_array_equal(short[..., n:, :], 0.0)
            np.testing.assert_allclose(short[0, :n], x[:n], atol=1e-6)
            assert any(w.startswith(f"{low} (") and said in w and "16 channels" in w for w in p.warnings)
    with pytest.raises(SpaqInputError, match="different channel counts: 16 in .*2 in"):
        load_pair(r, wav(tmp_path, "b.wav", x[:2]), stream=stream)
    # one channel beside two (binaural): played diotically, the same signal in both ears
    b2 = wav(tmp_path, "b2.wav", x[:2])
    for a, b, low in ((b2, m, "deg"), (m, b2, "ref")):
        p = load_pair(a, b, stream=stream)
        ref, deg = p.reader.read(0, p.n_samples) if stream else (p.ref, p.deg)
        assert ref.shape[-2] == deg.shape[-2] == 2 and p.format.kind == "binaural"
        short = deg if low == "deg" else ref
        np.testing.assert_allclose(short[0, 0], x[0], atol=1e-6)
        np.testing.assert_array_equal(short[0, 1], short[0, 0])
        assert any(w.startswith(f"{low} (") and "played diotically" in w for w in p.warnings)
    with pytest.raises(SpaqInputError, match="different channel counts: 1 in .*3 in"):
        load_pair(m, wav(tmp_path, "c3.wav", x[:3]), stream=stream)
    with pytest.raises(SpaqInputError, match="different channel counts"):
        load_pair(r, d, fmt="foa/fuma", stream=stream)
    with pytest.raises(SpaqInputError, match="different channel counts"):
        load_pair(r, d, fmt="binaural", stream=stream)


def test_level_stats_and_peaks_match_their_definition():
    """``_level_stats`` (peak from a max and a min, hot samples counted only where the peak reaches HOT_LEVEL) gives
    ``(max |x|, count(|x| >= HOT_LEVEL), size)``; ``_peaks`` is per item and propagates NaN (the content check)."""
    from spaq.io import HOT_LEVEL, _check_content, _level_stats, _peaks

    rng = np.random.default_rng(3)
    for scale in (0.1, 0.5, 1.5):
        for dt in (np.float32, np.float64):
            x = (scale * rng.standard_normal((3, 2, 5000))).astype(dt)
            x[1, 0, 7] = -HOT_LEVEL  # exactly at the level, negative
            a = np.abs(x)
            assert _level_stats(x) == (float(a.max()), int(np.count_nonzero(a >= HOT_LEVEL)), x.size)
            assert np.array_equal(_peaks(x), a.reshape(3, -1).max(-1))
            assert np.array_equal(_check_content(x, "x"), _peaks(x))
    x = np.zeros((2, 2, 100), np.float32)
    x[1, 1, 5] = -0.25
    assert _peaks(x).tolist() == [0.0, 0.25] and _level_stats(x[:0]) == (0.0, 0, 0)
    x[0, 0, 3] = np.nan
    assert np.isnan(_peaks(x)[0])
    with pytest.raises(SpaqInputError, match="NaN"):
        _check_content(x, "x")
