"""The cue-feature BAST (issue 16): features, streaming scene sampler, localize plumbing, auto choice."""
import importlib

import numpy as np
import pytest
import torch
from scipy.signal import oaconvolve

from spaq.localization import localize
from spaq.models.bast import BAST, BASTConfig, BinauralCues
from spaq.spatial.hrtf import load_hrtf
from spaq.train.localizer import CueSceneSampler, SyntheticSpec, save_checkpoint

L = importlib.import_module("spaq.localization.localize")
FS = 48000
TINY = dict(sample_rate=FS, hop=960, n_mels=29, n_frames=12, patch=(4, 4), stride=(4, 4), dim=16, depth=1, heads=2,
            mlp_dim=32, features="cues", n_classes=2, class_names=("music", "noise"))
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _render(h, k, seed, n=FS):
    src = np.random.default_rng(seed).standard_normal(n + h.taps)
    return 0.05 * oaconvolve(src[None], h.hrir[k], axes=-1)[:, h.taps:h.taps + n]


@pytest.fixture(scope="module")
def tiny_cue_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("ck") / "tiny_cues.pt"
    save_checkpoint(p, BAST(BASTConfig(**TINY)).eval(), {"note": "untrained, plumbing tests"})
    return p


def test_cue_features_per_ear_mirror():
    """Swapping the ears swaps the per-ear inputs exactly (ILD and IPD sine change sign with the ear)."""
    cfg = BASTConfig(**TINY)
    h = load_hrtf("ku100", FS)
    x = torch.as_tensor(_render(h, int(h.nearest_index(60.0, 0.0)), 1)[None])
    f = BinauralCues(cfg)(x)
    g = BinauralCues(cfg)(x.flip(1))
    assert f.shape == (1, 2, 5, 29, 50)
    assert torch.allclose(f[:, 0], g[:, 1], atol=1e-4) and torch.allclose(f[:, 1], g[:, 0], atol=1e-4)
    assert float(f[0, 0, 1].median()) > 0.3  # source on the left: the left ear's ILD channel is positive (dB / 10)
    out = BAST(cfg)(f[..., :12])
    assert out.direction.shape == (1, 3) and out.class_logits.shape == (1, 2)
    with pytest.raises(ValueError, match="n_mels=29"):
        BinauralCues(BASTConfig(**{**TINY, "n_mels": 32}))


def test_streaming_sampler_shapes_labels_and_rooms():
    cfg = BASTConfig(**TINY)
    spec = SyntheticSpec(hrtf="ku100", sources=("pink_noise", "harmonic"), room_fraction=0.5, noise_fraction=0.5)
    smp = CueSceneSampler(cfg, spec, seed=0, n_sources=4, rooms_per_head=1, dirs_per_room=2, log=lambda m: None)
    X, D, C = smp.render(16, np.random.default_rng(0))
    X2, D2, _ = smp.render(16, np.random.default_rng(0))
    assert np.array_equal(X, X2) and np.array_equal(D, D2)  # a function of the generator
    assert X.shape == (16, 2, cfg.window_samples) and np.allclose(np.linalg.norm(D, axis=1), 1.0, atol=1e-5)
    assert set(C.tolist()) <= {0, 1}
    room_dirs = {tuple(smp.dirs[0][k]) for k in smp.rooms[0][0][1]}
    assert any(tuple(d) in room_dirs for d in D)  # some scenes are in the room bank
    f, d, c = smp.sample(4, np.random.default_rng(1))
    assert f.shape == (4,) + cfg.feature_shape() and torch.isfinite(f).all()
    old = smp.rooms[0][0][0]
    smp.refresh()
    assert smp.rooms[0][0][0] is not old


def test_localize_with_cue_checkpoint(tiny_cue_ckpt):
    x = 0.1 * np.random.default_rng(3).standard_normal((2, 2 * FS))
    r = localize(x, FS, weights=tiny_cue_ckpt)
    assert r.method == "bast" and r.provenance["features"] == "cues" and r.provenance["method_choice"]
    assert r.frame_times_s.shape[0] == 16  # 100 frames, windows of 12 every 6 frames: 15, and one at the end
    r16 = localize(x[:, ::3], 16000, weights=tiny_cue_ckpt)  # resampled to 48 kHz
    assert r16.provenance["input_sample_rate"] == 16000 and np.isfinite(r16.azimuth_deg[0])
    # said in one line (first warning): the cues above 8 kHz are missing, not silently resampled
    assert r16.warnings[0].startswith("resampled from 16000 Hz to 48000 Hz") and "8.0 kHz" in r16.warnings[0]
    assert not any(w.startswith("resampled") for w in r.warnings)
    r_lo = localize(x * 1e-3, FS, weights=tiny_cue_ckpt)  # level-normalised input: same answer
    assert abs(r_lo.azimuth_deg[0] - r.azimuth_deg[0]) < 1e-3


def test_direct_coherence_separates_anechoic_and_reverberant():
    from spaq.spatial.room import place_in_room, room_impulse_response

    h = load_hrtf("ku100", FS)
    k = int(h.nearest_index(40.0, 0.0))
    dry = _render(h, k, 5)
    rng = np.random.default_rng(0)
    rs = place_in_room([7.0, 5.0, 3.0], 0.7, h.azimuth_deg[k], h.elevation_deg[k], 2.5, rng)
    rir, _ = room_impulse_response(rs, FS, "binaural", hrtf=h, rng=rng, ism_order=3, length_s=0.8)
    src = np.random.default_rng(5).standard_normal(2 * FS)
    wet = oaconvolve(src[None], rir, axes=-1)[:, FS:2 * FS]
    c_dry = L.direct_coherence(*L._cue_input(dry, FS)[1:])
    c_wet = L.direct_coherence(*L._cue_input(wet, FS)[1:])
    assert c_dry > 0.85 > 0.5 > c_wet, (c_dry, c_wet)
    r = localize(dry, FS)  # auto: templates, and says why
    assert r.method == "templates" and "coherence" in r.provenance["method_choice"]
    r2 = localize(dry, FS, n_sources=2)
    assert r2.method == "templates" and "several sources" in r2.provenance["method_choice"]


def test_auto_rule_switches_to_the_cue_model_below_the_threshold(monkeypatch, tiny_cue_ckpt):
    """With a threshold above a reverberant signal's coherence, auto takes the cue BAST (the packaged
    one, or here the env-var override) and both sides of a comparison use it."""
    from spaq.localization import compare_localization

    h = load_hrtf("ku100", FS)
    x = _render(h, int(h.nearest_index(-30.0, 0.0)), 8)
    x = x + 0.05 * np.random.default_rng(9).standard_normal(x.shape)  # diffuse-like noise: low coherence
    monkeypatch.setattr(L, "AUTO_COHERENCE", 1.01)
    monkeypatch.setenv("SPAQ_LOCALIZER_CUES_WEIGHTS", str(tiny_cue_ckpt))
    r = localize(x, FS)
    assert r.method == "bast" and r.provenance["features"] == "cues" and "< 1.01" in r.provenance["method_choice"]
    c = compare_localization(x, x, FS)
    assert c.reference.method == c.degraded.method == "bast" and c.error_deg[0] < 1e-6
