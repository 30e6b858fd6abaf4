import numpy as np
import pytest
import torch

from conftest import binaural_noise, plane_wave_scene
from spaq.io import load_pair
from spaq.metrics.cues import Cues, cue_maps, summarise_cue_maps


@pytest.fixture(scope="module")
def cues():
    return Cues()


def _score(m, x, y):
    return m.score(load_pair(x, y, sample_rate=48000), maps=True)


def test_identity_is_zero_binaural_and_ambisonics(cues):
    for x in (binaural_noise(0.5), plane_wave_scene(1, 0.5), plane_wave_scene(3, 0.5)):
        r = _score(cues, x, x)
        for k in ("ild_median_abs_db", "coherence_mean_abs", "level_mean_abs_db"):
            assert r.values[k] == pytest.approx(0.0, abs=1e-9), k
        if x.shape[0] > 2:
            assert r.values["directiveness_mean_abs"] == pytest.approx(0.0, abs=1e-12)
        assert r.values["audible_fraction"] > 0.9


def test_ild_change_of_right_ear(cues):
    x = binaural_noise(0.6)
    y = x.copy()
    y[1] *= 10 ** (-6 / 20)  # right ear -6 dB: ILD (left re right) +6 dB in every band
    r = _score(cues, x, y)
    assert r.values["ild_median_abs_db"] == pytest.approx(6.0, abs=0.05)
    d = r.maps["d_ild_db"]
    assert np.nanmedian(d) == pytest.approx(6.0, abs=0.05) and np.nanmin(d) > 5.5
    assert r.values["coherence_mean_abs"] < 1e-6  # coherence is level-independent


def test_level_change_both_ears(cues):
    x = binaural_noise(0.6)
    r = _score(cues, x, 0.5 * x)
    assert r.values["level_mean_abs_db"] == pytest.approx(20 * np.log10(2), abs=0.02)
    assert r.values["ild_median_abs_db"] < 1e-6


def test_decorrelated_right_ear_lowers_coherence(cues):
    x = binaural_noise(0.6, seed=1)
    y = x.copy()
    y[1] = binaural_noise(0.6, seed=2)[1]  # independent noise, same spectrum and level
    r = _score(cues, x, y)
    # fine-structure coherence (bands below 1.3 kHz) collapses; the envelope coherence used
    # above (not mean-removed, as in eMoBi-Q/QASTAnet) drops less
    assert np.nanmean(r.maps["d_coherence"][:10]) < -0.6
    assert np.nanmean(r.maps["d_coherence"][10:]) < -0.05
    assert r.values["coherence_mean_abs"] > 0.25
    assert r.values["level_mean_abs_db"] < 1.5


def test_diffuse_vs_plane_wave_directiveness(cues):
    from spaq.spatial.ambisonics import diffuse_field

    x = plane_wave_scene(1, 0.8, dirs=((40.0, 0.0),))
    rng = np.random.default_rng(0)
    noises = rng.standard_normal((64, x.shape[-1]))
    d = diffuse_field(noises, 1, rng)
    d *= np.sqrt(np.mean(x[0] ** 2) / np.mean(d[0] ** 2))
    r = _score(cues, x, d)
    assert r.values["directiveness_mean_abs"] > 0.3
    assert np.nanmean(r.maps["d_directiveness"]) < -0.3  # a diffuse field has low directiveness


def test_chunked_equals_unchunked(cues):
    torch.manual_seed(0)
    x = torch.from_numpy(binaural_noise(3.0, seed=3))[None]
    y = x.clone()
    y[:, 1] *= 0.7
    y = y + 0.01 * torch.randn_like(y)
    full = cue_maps(x, y, cues.frontend, None, chunk_frames=None)
    ch = cue_maps(x, y, cues.frontend, None, chunk_frames=20)  # 0.8 s chunks, 1 s context
    # ILD and level use the real envelope only (causal filters): chunking changes them only by
    # float32 rounding of the band signals (per value about 2 x 1.4e-5 dB for d_ild's four levels;
    # 1e-4 covers the largest of the 2175 values; no bin is near the hearing threshold here)
    for k in ("d_ild_db", "d_level_db"):
        assert full[k].shape == ch[k].shape == (1, 29, 75)
        assert float((full[k] - ch[k]).abs().nan_to_num(0).max()) < 1e-4, k
    # the envelope coherence uses the circular Hilbert transform of the whole signal, whose
    # 1/t tails reach past a chunk's context: maps differ slightly, summaries by < 1e-4
    assert float((full["d_coherence"] - ch["d_coherence"]).abs().nan_to_num(0).max()) < 2e-2
    sf, sc = summarise_cue_maps(full), summarise_cue_maps(ch)
    for k in sf:
        assert abs(float(sf[k][0] - sc[k][0])) < 1e-4, k


def test_batched_equals_single_and_gradient(cues):
    x = binaural_noise(0.3, seed=4)
    ys = [0.8 * x, x[::-1].copy()]
    single = [_score(cues, x, y).values["level_mean_abs_db"] for y in ys]
    batch = cues.score(load_pair(np.stack([x, x]), np.stack(ys), sample_rate=48000)).values["level_mean_abs_db"]
    # a dB mean of float32 band levels (fast front-end): batch and single may use other FFT
    # kernels, so rounding (3 FFTs x sqrt(log2 N) x 6e-8 x 2 x 4.34 dB x 2 = 1.4e-5 dB), not bits
    np.testing.assert_allclose(batch, single, rtol=0, atol=1.5e-5)  # was atol=1e-9
    ref = torch.from_numpy(x)[None]
    deg = (0.8 * ref).clone().requires_grad_(True)
    m = cue_maps(ref, deg, cues.frontend, None)
    loss = torch.nanmean(m["d_level_db"] ** 2)
    loss.backward()
    assert torch.isfinite(deg.grad).all()
    # scaling the degraded signal up towards the reference lowers the loss
    assert float((deg.grad * deg.detach()).sum()) < 0


def test_fast_default_matches_exact_mode(cues):
    """Cues default to the fast front-end; its summaries stay close to exact mode."""
    from spaq.metrics.cues import Cues

    exact = Cues(fast=False)
    assert cues.fast and not exact.fast
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 48000)).astype(np.float32) * 0.05
    y = x.copy()
    y[:, 1] *= 0.5  # right ear -6 dB
    a = summarise_cue_maps(cues.maps(torch.from_numpy(x), torch.from_numpy(y)))
    b = summarise_cue_maps(exact.maps(torch.from_numpy(x), torch.from_numpy(y)))
    assert abs(float(b["ild_median_abs_db"][0]) - 6.02) < 0.1
    assert abs(float(a["ild_median_abs_db"][0]) - float(b["ild_median_abs_db"][0])) < 0.05
    assert abs(float(a["level_mean_abs_db"][0]) - float(b["level_mean_abs_db"][0])) < 0.05
