import numpy as np
import pytest
import torch

from conftest import plane_wave_scene
from spaq.errors import SpaqError
from spaq.io import load_pair
from spaq.metrics.base import MetricUnavailable
from spaq.metrics.qastanet import load_official_checkpoint
from spaq.auditory.streaming import chunk_plan


def _pair(x, y, fs=48000):
    return load_pair(x, y, sample_rate=fs)


def test_identity_score_grows_with_duration(qastanet_metric):
    # the official pooling sums over frames: an unchanged pair scores higher when longer
    s = []
    for sec in (1.0, 2.0, 3.0):
        x = plane_wave_scene(1, sec, seed=3)
        s.append(qastanet_metric.score(_pair(x, x)).score)
    assert s[0] < s[1] < s[2]
    assert s[2] - s[0] > 0.05


def test_binaural_refused_one_line(qastanet_metric):
    x = np.random.default_rng(0).standard_normal((2, 48000)) * 0.05
    with pytest.raises(MetricUnavailable) as e:
        qastanet_metric.score(_pair(x, x))
    assert "ambisonics only" in str(e.value) and "\n" not in str(e.value)


def test_odd_length_scores(qastanet_metric):
    x = plane_wave_scene(1, 1.1, seed=1)[:, :48001]
    assert x.shape[-1] == 48001
    y = x + 0.01 * np.random.default_rng(1).standard_normal(x.shape) * x.std()
    r = qastanet_metric.score(_pair(x, y))
    assert 0.001 <= r.score <= 0.999
    assert any("odd length" in w for w in r.warnings)


def test_orders_1_and_2_equal_zero_padded_order_3(qastanet_metric):
    x3 = plane_wave_scene(3, 1.0, seed=2)
    y3 = x3 * np.linspace(1, 0.5, x3.shape[-1])
    for order in (1, 2):
        c = (order + 1) ** 2
        pad = np.zeros_like(x3)
        pady = np.zeros_like(y3)
        pad[:c], pady[:c] = x3[:c], y3[:c]
        a = qastanet_metric.score(_pair(x3[:c], y3[:c])).score
        b = qastanet_metric.score(_pair(pad, pady)).score
        assert a == pytest.approx(b, abs=1e-6)


def test_batched_equals_single(qastanet_metric):
    x = plane_wave_scene(1, 1.0, seed=4)
    y1 = x * 0.5
    y2 = x + 0.05 * x.std() * np.random.default_rng(2).standard_normal(x.shape)
    single = [qastanet_metric.score(_pair(x, y)).score for y in (y1, y2)]
    batch = qastanet_metric.score(load_pair(np.stack([x, x]), np.stack([y1, y2]), sample_rate=48000)).score
    assert batch.shape == (2,)
    # float32 network and sum over 25 frames: batch and single may use other kernels, so
    # rounding of the sum ((n-1) x 6e-8 x score ~ 1e-6) plus each frame's (~20 ops x 6e-8): was 1e-6
    np.testing.assert_allclose(batch, single, rtol=0, atol=4e-6)


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_chunked_equals_unchunked_sum_over_frames(mode, qastanet_metric, qastanet_exact_metric):
    x = plane_wave_scene(1, 6.0, seed=5)
    rng = np.random.default_rng(5)
    y = x + 0.03 * x.std() * rng.standard_normal(x.shape)
    ref = torch.from_numpy(x).float()[None]
    deg = torch.from_numpy(y).float()[None]
    m = qastanet_exact_metric if mode == "exact" else qastanet_metric
    old = m.chunk_frames, m.context_frames
    try:
        m.chunk_frames = 10_000
        with torch.no_grad():
            full = m.features(ref, deg)
            s_full = float(m.net(full.float().nan_to_num(0.0))[0])
        m.chunk_frames, m.context_frames = 40, 25  # 1.6 s chunks, 1 s context
        assert len(chunk_plan(ref.shape[-1], 1920, 40, 25)) == 4
        with torch.no_grad():
            ch = m.features(ref, deg)
            s_ch = float(m.net(ch.float().nan_to_num(0.0))[0])
    finally:
        m.chunk_frames, m.context_frames = old
    assert ch.shape == full.shape == (1, 4, 1, 29, 150)
    # directiveness is carried exactly (float64 in exact mode, float32 in fast mode); binaural
    # features differ only by far Hilbert tails
    np.testing.assert_allclose(ch[:, 3].nan_to_num(0), full[:, 3].nan_to_num(0), atol=1e-9 if mode == "exact" else 1e-6)
    assert abs(s_ch - s_full) < 1e-4


def test_gradient_matches_finite_difference(qastanet_metric):
    torch.manual_seed(0)
    x = torch.from_numpy(plane_wave_scene(1, 0.2, seed=6)).double()[None]
    noise = 0.2 * x.std() * torch.randn_like(x)
    m = qastanet_metric

    def f(d):
        feats = m.features(x, d)
        return m.net.double()(feats.nan_to_num(0.0))[0]

    try:
        deg = (x + noise).clone().requires_grad_(True)
        s = f(deg)
        s.backward()
        g = deg.grad
        assert torch.isfinite(g).all() and g.abs().sum() > 0
        direction = torch.randn_like(x)
        direction /= direction.norm()
        eps = 1e-4 * x.norm()
        with torch.no_grad():
            fd = (f(x + noise + eps * direction) - f(x + noise - eps * direction)) / (2 * eps)
        analytic = (g * direction).sum()
        assert float(analytic) == pytest.approx(float(fd), rel=2e-2, abs=1e-6)
    finally:
        m.net.float()


def test_bad_checkpoints(tmp_path, qastanet_checkpoint):
    p = tmp_path / "junk.pth.tar"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(SpaqError, match="cannot read QASTAnet checkpoint"):
        load_official_checkpoint(p)
    sd = torch.load(qastanet_checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    torch.save({"weights": sd}, tmp_path / "nokey.pth")
    with pytest.raises(SpaqError, match="no 'state_dict'"):
        load_official_checkpoint(tmp_path / "nokey.pth")
    bad = dict(sd)
    bad.pop("fc2.bias")
    torch.save({"state_dict": bad}, tmp_path / "missing.pth")
    with pytest.raises(SpaqError, match="missing"):
        load_official_checkpoint(tmp_path / "missing.pth")
    bad = dict(sd)
    bad["gammatone_real"] = bad["gammatone_real"] * 1.01
    torch.save({"state_dict": bad}, tmp_path / "gt.pth")
    with pytest.raises(SpaqError, match="gammatone"):
        load_official_checkpoint(tmp_path / "gt.pth")


def test_score_files_streams_same_score(tmp_path, qastanet_metric):
    import soundfile as sf

    x = plane_wave_scene(1, 3.0, seed=7)
    y = x + 0.05 * x.std() * np.random.default_rng(7).standard_normal(x.shape)
    sf.write(tmp_path / "r.wav", x.T, 48000, subtype="FLOAT")
    sf.write(tmp_path / "d.wav", y.T, 48000, subtype="FLOAT")
    m = qastanet_metric
    old = m.chunk_frames
    try:
        m.chunk_frames = 20  # several streamed chunks
        streamed = m.score_files(tmp_path / "r.wav", tmp_path / "d.wav")
    finally:
        m.chunk_frames = old
    r = torch.from_numpy(x.astype(np.float32))[None]
    d = torch.from_numpy(y.astype(np.float32))[None]
    with torch.no_grad():
        whole = float(m.forward(r, d)["score"][0])
    assert streamed == pytest.approx(whole, abs=1e-4)
