"""Long files are streamed chunk by chunk: every default metric gives the score it gives on the
whole signal (cues/quality within 1e-4, qastanet to the official sum over frames)."""
import numpy as np
import pytest
import soundfile as sf

from spaq.api import score
from spaq.io import load_pair
from spaq.metrics.cues import Cues
from spaq.metrics.localization import Localization
from spaq.metrics.quality import Quality

from conftest import binaural_noise, plane_wave_scene


def _files(tmp_path, kind, seconds=2.4, dirs=((30.0, 10.0), (-110.0, 0.0))):
    if kind == "binaural":
        x = binaural_noise(seconds, seed=3)
        y = binaural_noise(seconds, seed=3, itd=20, ild_db=7.0)
        y = y + 0.02 * np.random.default_rng(4).standard_normal(y.shape)
    else:
        x = plane_wave_scene(1 if kind == "foa" else 3, seconds, seed=5, dirs=dirs)
        y = np.roll(x, 3, axis=-1) * 0.7 + 0.01 * np.random.default_rng(6).standard_normal(x.shape)
    sf.write(tmp_path / "r.wav", x.T, 48000, subtype="FLOAT")
    sf.write(tmp_path / "d.wav", y.T, 48000, subtype="FLOAT")
    return tmp_path / "r.wav", tmp_path / "d.wav"


def _both(metric, r, d, chunk_frames=16):
    whole = load_pair(r, d, target_rate=48000, stream=False)
    streamed = load_pair(r, d, target_rate=48000, stream=True)
    old = metric.chunk_frames
    try:
        metric.chunk_frames = None  # unchunked reference
        a = metric.score(whole)
        metric.chunk_frames = chunk_frames  # several streamed chunks of 16 frames (0.64 s)
        b = metric.score(streamed)
    finally:
        metric.chunk_frames = old
    return a, b


@pytest.mark.parametrize("kind", ["binaural", "foa", "hoa3"])
@pytest.mark.parametrize("fast", [False, True])
def test_cues_streamed_equal_unchunked(tmp_path, kind, fast):
    r, d = _files(tmp_path, kind)
    a, b = _both(Cues(fast=fast), r, d)
    assert a.score > 0.2  # a real difference is being measured
    for k, v in a.values.items():
        assert b.values[k] == pytest.approx(v, abs=1e-4), k


@pytest.mark.parametrize("kind", ["binaural", "hoa3"])
def test_quality_streamed_equal_unchunked(tmp_path, kind):
    r, d = _files(tmp_path, kind)
    a, b = _both(Quality(), r, d)
    assert a.score < 95
    assert b.score == pytest.approx(a.score, abs=1e-4)
    for k in ("timbral_score", "spatial_score", "gain_compensation_db"):
        assert b.values[k] == pytest.approx(a.values[k], abs=1e-4), k


def test_qastanet_streamed_equal_unchunked(tmp_path, qastanet_metric):
    r, d = _files(tmp_path, "hoa3")
    a, b = _both(qastanet_metric, r, d)
    assert 0.0 < a.score < 0.99
    assert b.score == pytest.approx(a.score, abs=1e-4)
    assert b.values["n_frames"] == a.values["n_frames"] == 60


def test_localization_streamed_segments(tmp_path):
    """A first-order plane wave at (30, 10) deg and the same scene turned 40 deg in yaw, (70, 10): the error is
    their great-circle distance, acos(sin^2 10 + cos^2 10 cos 40) = 39.37 deg, whole and in every 1 s segment
    (one plane wave: the intensity direction is exact up to rounding)."""
    from spaq.spatial.ambisonics import rotate

    x = plane_wave_scene(1, 3.0, seed=5, dirs=((30.0, 10.0),))
    sf.write(tmp_path / "r.wav", x.T, 48000, subtype="FLOAT")
    sf.write(tmp_path / "d.wav", rotate(x, yaw_deg=40.0).T, 48000, subtype="FLOAT")
    r, d = tmp_path / "r.wav", tmp_path / "d.wav"
    expect = np.degrees(np.arccos(np.sin(np.radians(10)) ** 2 + np.cos(np.radians(10)) ** 2 * np.cos(np.radians(40))))
    m = Localization()
    whole = m.score(load_pair(r, d, target_rate=48000, stream=False))
    assert whole.score == pytest.approx(expect, abs=0.5)
    m.segment_s = 1.0
    s = m.score(load_pair(r, d, target_rate=48000, stream=True))
    assert [g["start_s"] for g in s.values["segments"]] == [0.0, 1.0, 2.0]
    assert s.score == pytest.approx(whole.score, abs=0.01)
    for g in s.values["segments"]:  # both sources found in every segment
        for key, az in (("reference_directions", 30.0), ("degraded_directions", 70.0)):
            src = g[key][0]
            assert src["azimuth_deg"] == pytest.approx(az, abs=2.0), key
            assert src["elevation_deg"] == pytest.approx(10.0, abs=2.0), key
        assert g["error_deg"][0] == pytest.approx(expect, abs=0.5)


def test_score_api_streams_long_files(tmp_path, monkeypatch):
    r, d = _files(tmp_path, "foa")
    whole = score(r, d, metrics=["cues", "quality"])
    monkeypatch.setenv("SPAQ_STREAM_MB", "0.5")  # these files are 1.8 MiB at 48 kHz
    streamed = score(r, d, metrics=["cues", "quality"])
    assert streamed.streamed and not whole.streamed and streamed.to_dict()["streamed"] is True
    assert streamed["cues"].score == pytest.approx(whole["cues"].score, abs=1e-4)
    assert streamed["quality"].score == pytest.approx(whole["quality"].score, abs=1e-4)


def test_progress_reported_while_streaming(tmp_path):
    r, d = _files(tmp_path, "binaural", seconds=25.0)  # three 10 s chunks
    seen = []
    report = score(r, d, metrics=["cues"], stream=True, progress=lambda name, f: seen.append((name, f)))
    assert report.streamed and {n for n, _ in seen} == {"cues"}
    fr = [f for _, f in seen]
    assert len(fr) >= 3 and fr[-1] == pytest.approx(1.0) and all(b >= a for a, b in zip(fr, fr[1:]))
    seen.clear()
    score(r, d, metrics=["cues"], stream=False, progress=lambda name, f: seen.append((name, f)))
    assert seen == []  # in-memory pairs are not reported
