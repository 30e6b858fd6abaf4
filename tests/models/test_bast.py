"""BAST architecture: shapes per integration mode, weight sharing, heads, front-end."""
import math

import pytest
import torch

from spaq.models.bast import BAST, BASTConfig, BinauralLogMel, direction_to_angles

SMALL = dict(n_mels=32, n_frames=24, patch=(8, 8), stride=(4, 4), dim=32, depth=1, heads=2, mlp_dim=64,
             sample_rate=16000, n_fft=512, hop=160, fmax=7000.0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("integration", ["ADD", "SUB", "CONCAT"])
@pytest.mark.parametrize("share", [True, False])
def test_shapes_and_sharing(integration, share):
    cfg = BASTConfig(**SMALL, integration=integration, share_weights=share, n_classes=3, elevation_head=True)
    m = BAST(cfg).eval()
    x = torch.randn(5, 2, 32, 24)
    out = m(x)
    assert out.direction.shape == (5, 3)
    assert out.class_logits.shape == (5, 3)
    assert out.elevation.shape == (5,)
    assert bool((out.elevation.abs() <= math.pi / 2).all())
    names = {n for n, _ in m.named_parameters()}
    assert any(n.startswith("enc_right") for n in names) is (not share)
    width = m.direction_head.in_features
    assert width == (64 if integration == "CONCAT" else 32)


def test_sub_with_shared_weights_is_antisymmetric_in_the_ears():
    torch.manual_seed(0)
    cfg = BASTConfig(**SMALL, integration="SUB", share_weights=True)
    m = BAST(cfg).eval()
    x = torch.randn(2, 2, 32, 24)
    swapped = x.flip(1)
    # SUB of shared encoders: tokens change sign when ears swap; ADD: identical
    cfg2 = BASTConfig(**SMALL, integration="ADD", share_weights=True)
    m2 = BAST(cfg2).eval()
    assert torch.allclose(m2(x).direction, m2(swapped).direction, atol=1e-5)
    assert not torch.allclose(m(x).direction, m(swapped).direction, atol=1e-3)


def test_level_invariance_and_bad_shape():
    cfg = BASTConfig(**SMALL)
    m = BAST(cfg).eval()
    x = torch.randn(3, 2, 32, 24)
    assert torch.allclose(m(x).direction, m(x + 4.0).direction, atol=1e-4)  # +4 nepers of gain
    with pytest.raises(ValueError, match="expects"):
        m(torch.randn(3, 1, 32, 24))


def test_frontend_shapes_and_ild():
    cfg = BASTConfig(**SMALL)
    fe = BinauralLogMel(cfg)
    t = torch.randn(1, 1, cfg.window_samples)
    x = torch.cat([t, 0.5 * t], dim=1)
    f = fe(x)
    assert f.shape == (1, 2, 32, cfg.n_frames)
    ild = (f[:, 0] - f[:, 1]).mean()
    assert abs(float(ild) - math.log(4.0)) < 1e-3  # power ratio 4 in natural log


def test_direction_to_angles():
    v = torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    az, el = direction_to_angles(v)
    assert torch.allclose(az[[0, 2]], torch.tensor([45.0, 180.0]))
    assert torch.allclose(el, torch.tensor([0.0, 90.0, 45.0]))
    _, el2 = direction_to_angles(v, torch.tensor([0.1, 0.2, 0.3]))
    assert torch.allclose(el2, torch.rad2deg(torch.tensor([0.1, 0.2, 0.3])))


def test_config_roundtrip():
    cfg = BASTConfig(**SMALL, n_classes=2, class_names=("speech", "music"))
    assert BASTConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError):
        BASTConfig(integration="MUL")


def test_ipd_features_and_model():
    cfg = BASTConfig(**SMALL, features="logmel_ipd", integration="CONCAT")
    fe = BinauralLogMel(cfg)
    t = torch.randn(1, cfg.window_samples + 5)
    d = 3  # samples: right ear lags -> positive interaural phase slope
    x = torch.stack([t[:, d:], t[:, :-d]], dim=1)[..., : cfg.window_samples]
    f = fe(x)
    assert f.shape == (1, 2, 3, 32, cfg.n_frames)
    # cos^2 + sin^2 = 1 and the right ear sees the opposite sine
    assert torch.allclose(f[:, 0, 1] ** 2 + f[:, 0, 2] ** 2, torch.ones(1, 32, cfg.n_frames), atol=1e-4)
    assert torch.allclose(f[:, 1, 2], -f[:, 0, 2])
    # low bands: IPD close to 2 pi f d / fs (left leads by d samples)
    fb = fe.fb
    centre = (fb * torch.linspace(0, 8000, fb.shape[1])).sum(1) / fb.sum(1)
    ipd = torch.atan2(f[0, 0, 2], f[0, 0, 1]).median(dim=-1).values
    expect = 2 * math.pi * centre * d / 16000
    low = centre < 1500
    assert torch.allclose(ipd[low], expect[low], atol=0.15)
    m = BAST(cfg).eval()
    assert m(f).direction.shape == (1, 3)
    with pytest.raises(ValueError, match="logmel_ipd"):
        m(torch.randn(1, 2, 32, cfg.n_frames))
