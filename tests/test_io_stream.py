"""Streamed pairs (long files): the same samples and the same checks as loading them whole."""
import numpy as np
import pytest
import soundfile as sf

from spaq.errors import SpaqInputError
from spaq.io import STREAM_BLOCK, load_pair, stream_threshold_bytes


def _write(path, x, sr, subtype="FLOAT"):
    sf.write(str(path), np.ascontiguousarray(x.T), sr, subtype=subtype)
    return path


def _segments_equal(streamed, whole, pieces, atol):
    assert streamed.streamed and streamed.ref is None and streamed.deg is None
    assert streamed.n_samples == whole.ref.shape[-1]
    assert streamed.n_channels == whole.ref.shape[-2]
    assert streamed.format == whole.format and streamed.warnings == whole.warnings
    assert streamed.sample_rate_in == whole.sample_rate_in and streamed.sample_rate_used == whole.sample_rate_used
    n = streamed.n_samples
    edges = sorted({0, n, *np.linspace(0, n, pieces + 1).astype(int).tolist(), 1, n - 3})
    for a, b in zip(edges[:-1], edges[1:]):
        r, d = streamed.reader.read(a, b)
        assert r.shape == (1, whole.ref.shape[1], b - a) and r.dtype == whole.ref.dtype
        np.testing.assert_allclose(r, whole.ref[..., a:b], rtol=0, atol=atol)
        np.testing.assert_allclose(d, whole.deg[..., a:b], rtol=0, atol=atol)


@pytest.mark.parametrize("sr_ref,sr_deg", [(48000, 48000), (44100, 44100), (8000, 8000), (96000, 44100)])
def test_streamed_segments_match_whole_loading(tmp_path, sr_ref, sr_deg):
    rng = np.random.default_rng(1)
    dur = 0.9
    r = _write(tmp_path / "r.wav", 0.3 * rng.standard_normal((4, int(dur * sr_ref))), sr_ref)
    d = _write(tmp_path / "d.wav", 0.3 * rng.standard_normal((4, int(dur * sr_deg))), sr_deg)
    whole = load_pair(r, d, target_rate=48000, stream=False)
    streamed = load_pair(r, d, target_rate=48000, stream=True)
    # resampling is done block by block with enough context: the same values as resampling
    # whole (float32 output; the filtering runs in float64)
    _segments_equal(streamed, whole, pieces=7, atol=0 if sr_ref == sr_deg == 48000 else 2e-7)


def test_streamed_fuma_trim_and_float64(tmp_path):
    rng = np.random.default_rng(2)
    x = 0.5 * rng.standard_normal((4, 48000))
    r = _write(tmp_path / "r.wav", x, 48000, "PCM_32")
    d = _write(tmp_path / "d.wav", x[:, :47700] * 0.5, 48000, "PCM_32")  # 0.6 % shorter
    whole = load_pair(r, d, target_rate=48000, fmt="foa/fuma", stream=False)
    streamed = load_pair(r, d, target_rate=48000, fmt="foa/fuma", stream=True)
    assert whole.ref.dtype == np.float64 and any("trimmed to 47700" in w for w in streamed.warnings)
    _segments_equal(streamed, whole, pieces=3, atol=0)
    # FuMa W is at -3 dB: converted to SN3D by the reader
    raw = sf.read(str(r), dtype="float64", always_2d=True)[0].T
    np.testing.assert_allclose(streamed.reader.read(0, 10)[0][0, 0], np.sqrt(2) * raw[0, :10], rtol=1e-15)


def test_pair_segments_cover_both_kinds(tmp_path):
    rng = np.random.default_rng(3)
    x = 0.1 * rng.standard_normal((2, 30000))
    r, d = _write(tmp_path / "r.wav", x, 48000), _write(tmp_path / "d.wav", -x, 48000)
    for stream in (False, True):
        p = load_pair(r, d, target_rate=48000, stream=stream)
        got = np.concatenate([seg[1] for seg in p.segments(block=7000)], axis=-1)
        starts = [seg[0] for seg in p.segments(block=7000)]
        assert starts == [0, 7000, 14000, 21000, 28000]
        np.testing.assert_array_equal(got[0], x.astype(np.float32))


def test_auto_streaming_threshold(tmp_path, monkeypatch):
    rng = np.random.default_rng(4)
    x = 0.1 * rng.standard_normal((2, 48000))
    r, d = _write(tmp_path / "r.wav", x, 48000), _write(tmp_path / "d.wav", x, 48000)
    assert not load_pair(r, d, target_rate=48000).streamed  # 768 kB: loaded whole
    monkeypatch.setenv("SPAQ_STREAM_MB", "0.5")
    assert stream_threshold_bytes() == 2 ** 19
    assert load_pair(r, d, target_rate=48000).streamed
    assert not load_pair(r, d, target_rate=48000, stream=False).streamed
    monkeypatch.setenv("SPAQ_STREAM_MB", "lots")
    with pytest.raises(SpaqInputError, match="SPAQ_STREAM_MB"):
        load_pair(r, d, target_rate=48000)


def test_streamed_checks(tmp_path):
    rng = np.random.default_rng(5)
    n = STREAM_BLOCK + 5000  # the bad sample sits in the second block of the scan
    x = 0.1 * rng.standard_normal((2, n))
    good = _write(tmp_path / "good.wav", x, 48000)
    bad = x.copy()
    bad[1, STREAM_BLOCK + 10] = np.nan
    nan = _write(tmp_path / "nan.wav", bad, 48000)
    with pytest.raises(SpaqInputError, match=r"deg \(.*nan.wav\) contains NaN"):
        load_pair(good, nan, target_rate=48000, stream=True)
    zero = _write(tmp_path / "zero.wav", np.zeros_like(x), 48000)
    with pytest.raises(SpaqInputError, match="reference is silent"):
        load_pair(zero, good, target_rate=48000, stream=True)
    p = load_pair(good, zero, target_rate=48000, stream=True)
    assert any("degraded signal is silent" in w for w in p.warnings)
    short = _write(tmp_path / "short.wav", x[:, : n // 2], 48000)
    with pytest.raises(SpaqInputError, match="lengths differ by 50"):
        load_pair(good, short, target_rate=48000, stream=True)
    assert load_pair(good, short, target_rate=48000, stream=True, trim=True).n_samples == n // 2
    four = _write(tmp_path / "four.wav", np.zeros((4, 100)) + 0.1, 48000)
    with pytest.raises(SpaqInputError, match="different channel counts"):
        load_pair(good, four, target_rate=48000, stream=True)
    with pytest.raises(SpaqInputError, match="too short"):
        load_pair(four, four, target_rate=48000, stream=True)
    with pytest.raises(SpaqInputError, match="not found"):
        load_pair(tmp_path / "missing.wav", good, target_rate=48000, stream=True)
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(SpaqInputError, match="cannot read"):
        load_pair(tmp_path / "text.wav", good, target_rate=48000, stream=True)
    with pytest.raises(SpaqInputError, match="two file paths"):
        load_pair(x, x, sample_rate=48000, stream=True)
