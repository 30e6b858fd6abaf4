"""spaq.score: delay alignment by default (issue 15.1) and loudspeaker layouts (issue 15.6)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.signal as sps
import soundfile as sf

import spaq
from spaq.cli import main
from spaq.spatial.layouts import LAYOUTS

from conftest import plane_wave_scene

FS = 48000


def _speechlike(n: int, seed: int = 0) -> np.ndarray:
    """Band-passed noise with a 4 Hz syllabic envelope and pauses (a delay is visible in it)."""
    rng = np.random.default_rng(seed)
    b, a = sps.butter(2, [200, 8000], btype="bandpass", fs=FS)
    t = np.arange(n) / FS
    env = np.clip(np.sin(2 * np.pi * 3.7 * t + rng.uniform(0, 6)), 0, None) ** 2 * (rng.uniform(0.3, 1, n // 4800 + 1)
                                                                                      .repeat(4800)[:n])
    x = sps.lfilter(b, a, rng.standard_normal(n)) * env
    return x / np.sqrt(np.mean(x ** 2)) * 0.05


def _delay(x: np.ndarray, k: int) -> np.ndarray:
    """``x (..., T)`` delayed by ``k`` samples (k > 0: later), same length, zeros shifted in."""
    y = np.zeros_like(x)
    if k >= 0:
        y[..., k:] = x[..., :x.shape[-1] - k]
    else:
        y[..., :k] = x[..., -k:]
    return y


def _foa(seconds=3.0, seed=0):
    s = _speechlike(int(seconds * FS), seed)
    from spaq.spatial.ambisonics import encode

    return encode(s, 40.0, 10.0, 1)


@pytest.mark.parametrize("delay_ms", [-250.0, -20.0, 1.0, 5.0, 20.0, 80.0, 250.0])
def test_delayed_identity_scores_as_identity(delay_ms):
    ref = _foa()
    deg = _delay(ref, int(round(delay_ms * FS / 1000)))
    rep = spaq.score(ref, deg, sample_rate=FS, metrics=["quality"])
    assert rep.alignment["applied"] and rep.alignment["delay_samples"] == int(round(delay_ms * FS / 1000))
    # the aligned overlap is the same samples on both sides: every distortion is 0 (to rounding)
    assert rep.results["quality"].score == pytest.approx(100.0, abs=1e-6)
    off = spaq.score(ref, deg, sample_rate=FS, metrics=["quality"], align=False)
    assert off.alignment is None
    if abs(delay_ms) >= 20:  # what alignment fixes: unaligned, a delay reads as a heavy impairment
        assert off.results["quality"].score < 80.0


def test_delayed_degraded_scores_like_undelayed():
    rng = np.random.default_rng(3)
    ref = _foa(seed=1)
    b, a = sps.butter(4, 8000, fs=FS)
    deg = sps.lfilter(b, a, ref, axis=-1) + 0.002 * rng.standard_normal(ref.shape)
    plain = spaq.score(ref, deg, sample_rate=FS, metrics=["quality"])
    base = plain.results["quality"].score
    assert 20.0 < base < 80.0  # a degradation the score resolves, not one at the floor
    # the low-pass filter's own group delay: found, but below MIN_APPLIED_DELAY_MS, so reported and not applied
    lag = plain.alignment["delay_samples"]
    assert not plain.alignment["applied"] and 0 < lag < 10
    n = ref.shape[-1]
    for ms in (20.0, 80.0):
        k = int(ms * FS / 1000)
        late = _delay(deg, k)
        rep = spaq.score(ref, late, sample_rate=FS, metrics=["quality"])
        # the applied delay is the one added plus the filter's, to the sample
        assert rep.alignment["applied"] and rep.alignment["delay_samples"] == k + lag
        s = rep.results["quality"].score
        # exactly the score of the overlap compared as given ...
        d = k + lag
        same = spaq.score(ref[..., :n - d], late[..., d:], sample_rate=FS, metrics=["quality"], align=False)
        assert s == same.results["quality"].score
        # ... which is within 3 points of the undelayed pair's (a shorter overlap, the filter's delay removed)
        assert abs(s - base) <= 3.0, (ms, s, base)


def test_an_unreliable_delay_estimate_is_reported_not_applied():
    """Low-passed at 5 kHz with noise, the speech-like test signal's periodic envelope gives a
    second correlation peak almost as high as the first and the waveforms correlate at 0.84 (< 0.9):
    at 20 ms the estimate (right, 20.1 ms) is marked unreliable and not applied, so the delay counts
    as impairment; at 80 ms the second peak falls outside the search range and it is applied."""
    rng = np.random.default_rng(3)
    ref = _foa(seed=1)
    b, a = sps.butter(4, 5000, fs=FS)
    deg = sps.lfilter(b, a, ref, axis=-1) + 0.002 * rng.standard_normal(ref.shape)
    base = spaq.score(ref, deg, sample_rate=FS, metrics=["quality"]).results["quality"].score
    r20 = spaq.score(ref, _delay(deg, int(0.02 * FS)), sample_rate=FS, metrics=["quality"])
    assert not r20.alignment["reliable"] and not r20.alignment["applied"]
    assert abs(r20.alignment["delay_ms"] - 20.0) < 0.5
    assert r20.results["quality"].score < base
    r80 = spaq.score(ref, _delay(deg, int(0.08 * FS)), sample_rate=FS, metrics=["quality"])
    assert r80.alignment["applied"] and abs(r80.results["quality"].score - base) <= 3.0


def test_binaural_both_ears_one_delay_and_unreliable_is_warned():
    n = 2 * FS
    s = _speechlike(n, 4)
    ref = np.stack([s, 0.7 * _delay(s, 12)])
    deg = _delay(ref, int(0.005 * FS))
    rep = spaq.score(ref, deg, sample_rate=FS, metrics=["cues"])
    assert rep.alignment["delay_samples"] == int(0.005 * FS) and rep.alignment["applied"]
    rng = np.random.default_rng(9)
    other = rng.standard_normal((2, n)) * 0.05
    rep = spaq.score(ref, other, sample_rate=FS, metrics=["cues"])
    assert not rep.alignment["applied"] and not rep.alignment["reliable"]
    assert abs(rep.alignment["delay_ms"]) <= 300.0  # within the search range
    assert any("not estimated reliably" in w and "up to 300 ms either way are searched" in w for w in rep.warnings)
    # an estimate that is not applied changes nothing: the scores are those of the pair as given
    plain = spaq.score(ref, other, sample_rate=FS, metrics=["cues"], align=False)
    assert rep.results["cues"].values == plain.results["cues"].values


def test_qastanet_gets_the_pair_as_given(qastanet_checkpoint):
    """QASTAnet is the official model: no alignment, so its score equals the unaligned call."""
    ref = plane_wave_scene(1, 3.0)
    deg = _delay(ref, 480)
    a = spaq.score(ref, deg, sample_rate=FS, metrics=["qastanet"], checkpoint=qastanet_checkpoint)
    b = spaq.score(ref, deg, sample_rate=FS, metrics=["qastanet"], checkpoint=qastanet_checkpoint, align=False)
    assert a.results["qastanet"].score == b.results["qastanet"].score


def test_cli_json_alignment_and_streamed(tmp_path, capsys):
    ref = _foa(4.0, seed=2)
    deg = _delay(ref, int(0.03 * FS))
    pr, pd = tmp_path / "r.wav", tmp_path / "d.wav"
    sf.write(pr, ref.T.astype(np.float32), FS, subtype="FLOAT")
    sf.write(pd, deg.T.astype(np.float32), FS, subtype="FLOAT")
    assert main(["score", str(pr), str(pd), "-m", "quality", "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    assert whole["alignment"]["applied"] and whole["alignment"]["delay_samples"] == int(0.03 * FS)
    assert whole["results"]["quality"]["score"] == pytest.approx(100.0, abs=1e-6)  # the same samples once aligned
    assert main(["score", str(pr), str(pd), "-m", "quality", "--json", "--stream"]) == 0
    streamed = json.loads(capsys.readouterr().out)
    assert streamed["streamed"] and streamed["alignment"]["delay_samples"] == whole["alignment"]["delay_samples"]
    assert abs(streamed["results"]["quality"]["score"] - whole["results"]["quality"]["score"]) < 1e-3
    assert main(["score", str(pr), str(pd), "-m", "quality", "--json", "--no-align"]) == 0
    off = json.loads(capsys.readouterr().out)
    assert off["alignment"] is None and off["results"]["quality"]["score"] < whole["results"]["quality"]["score"]


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_layout_identity_scores_identity(name):
    lay = LAYOUTS[name]
    rng = np.random.default_rng(1)
    x = np.stack([_speechlike(FS, i) for i in range(lay.n_channels)]) * rng.uniform(0.2, 1, (lay.n_channels, 1))
    rep = spaq.score(x, x.copy(), sample_rate=FS, fmt=name, metrics=["quality", "cues"])
    assert rep.results["quality"].score == pytest.approx(100.0, abs=1e-6)
    assert rep.results["cues"].score == pytest.approx(0.0, abs=1e-9)
    assert "rendered binaurally" in rep.rendered
    assert rep.format["kind"] in ("layout", "mono")
    # a degraded version (one loudspeaker muted) is worse
    if lay.n_channels > 1:
        y = x.copy()
        y[lay.spatial_channels[0]] = 0
        assert spaq.score(x, y, sample_rate=FS, fmt=name, metrics=["quality"]).results["quality"].score < 99.0


def test_layout_streamed_equals_whole(tmp_path):
    lay = LAYOUTS["5.1"]
    x = np.stack([_speechlike(3 * FS, i) for i in range(lay.n_channels)])
    y = sps.lfilter(*sps.butter(2, 4000, fs=FS), x, axis=-1)
    pr, pd = tmp_path / "r.wav", tmp_path / "d.wav"
    sf.write(pr, x.T.astype(np.float32), FS, subtype="FLOAT")
    sf.write(pd, y.T.astype(np.float32), FS, subtype="FLOAT")
    a = spaq.score(str(pr), str(pd), fmt="5.1", metrics=["quality"], stream=True)
    b = spaq.score(str(pr), str(pd), fmt="5.1", metrics=["quality"], stream=False)
    assert a.streamed and not b.streamed
    assert a.results["quality"].score == pytest.approx(b.results["quality"].score, abs=1e-3)


def test_mono_beside_a_layout_plays_from_the_centre(tmp_path):
    """The README's '1 = mono beside a spatial file' held for ambisonics and binaural but a mono file beside a
    5.1 one was refused ('different channel counts'). It now plays from the centre loudspeaker (stereo: L and R
    at -3 dB), with a warning: the pair equals the 6-channel file with the signal on C (or on L and R), whole and
    streamed, and ``format=`` works as ``fmt=`` does (the CLI's name, which the format hints give)."""
    rng = np.random.default_rng(2)
    lay = LAYOUTS["5.1"]
    x = np.stack([_speechlike(2 * FS, i) for i in range(lay.n_channels)]) * rng.uniform(0.2, 1, (lay.n_channels, 1))
    mono = x.sum(0, keepdims=True) * 0.3
    on_c = np.zeros_like(x)
    on_c[lay.labels.index("C")] = mono[0]
    a = spaq.score(x, mono, sample_rate=FS, format="5.1", metrics=["quality", "cues"])
    b = spaq.score(x, on_c, sample_rate=FS, fmt="5.1", metrics=["quality", "cues"])
    for m in ("quality", "cues"):
        assert a.results[m].score == pytest.approx(b.results[m].score, abs=1e-9)
    assert a.results["quality"].score < 60.0  # a mono downmix of a 5.1 scene is a large spatial loss
    assert any("played from the centre loudspeaker (C)" in w for w in a.warnings)
    st = spaq.score(x[:2], x[:1], sample_rate=FS, format="stereo", metrics=["cues"])
    g = np.vstack([x[:1], x[:1]]) / np.sqrt(2)
    assert st.results["cues"].score == pytest.approx(
        spaq.score(x[:2], g, sample_rate=FS, fmt="stereo", metrics=["cues"]).results["cues"].score, abs=1e-9)
    assert any("L and R at -3 dB" in w for w in st.warnings)
    pr, pm = tmp_path / "r.wav", tmp_path / "m.wav"
    sf.write(pr, x.T.astype(np.float32), FS, subtype="FLOAT")
    sf.write(pm, mono.T.astype(np.float32), FS, subtype="FLOAT")
    s = spaq.score(str(pr), str(pm), fmt="5.1", metrics=["quality"], stream=True)
    w = spaq.score(str(pr), str(pm), fmt="5.1", metrics=["quality"], stream=False)
    assert s.streamed and s.results["quality"].score == pytest.approx(w.results["quality"].score, abs=1e-3)
    with pytest.raises(spaq.errors.SpaqInputError, match="name two formats"):
        spaq.score(x, x, sample_rate=FS, fmt="5.1", format="7.1")
