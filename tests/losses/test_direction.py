"""Direction losses: values, small-angle gradients (the BAST clamp bug), multi-task."""
import math

import pytest
import torch

from spaq.spatial.angles import sph2cart
from spaq.losses import (AngularDistanceLoss, DirectionMSELoss, MixLoss, MultiTaskLoss,
                         angular_distance, make_direction_loss)


def _pair(angle_deg):
    t = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    p = torch.tensor(sph2cart(angle_deg, 0.0)[None], dtype=torch.float64)
    return p, t


@pytest.mark.parametrize("deg", [0.01, 1.0, 2.0, 45.0, 90.0, 179.0])
def test_angular_distance_value(deg):
    p, t = _pair(deg)
    assert abs(math.degrees(float(angular_distance(3.0 * p, t)[0])) - deg) < 1e-6


def test_ad_gradient_nonzero_below_bast_clamp():
    for deg in (0.5, 1.0, 2.0):
        p, t = _pair(deg)
        p = p.clone().requires_grad_(True)
        AngularDistanceLoss()(p, t).backward()
        g = p.grad.norm().item()
        assert g > 0.5, (deg, g)  # |d angle / d p| = 1 for unit p
        # BAST's clamped acos has zero gradient here
        p2 = p.detach().clone().requires_grad_(True)
        torch.acos(torch.clamp((p2 * t).sum(1), -0.999, 0.999)).mean().backward()
        assert p2.grad.norm().item() == 0.0


def test_ad_gradient_finite_at_zero():
    t = torch.tensor([[0.0, 1.0, 0.0]], requires_grad=False)
    p = t.clone().requires_grad_(True)
    loss = AngularDistanceLoss()(p, t)
    loss.backward()
    assert torch.isfinite(p.grad).all()
    assert float(loss.detach()) < 1e-6


def test_mse_and_mix_values_and_shapes():
    p = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    t = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    mse = DirectionMSELoss(reduction="none")(p, t)
    assert torch.allclose(mse, torch.tensor([1.0, 2.0]))
    mix = MixLoss()(p, t)
    assert abs(float(mix) - (1.5 + math.pi / 4)) < 1e-6
    with pytest.raises(ValueError, match=r"\(B, 3\)"):
        DirectionMSELoss()(p[:, :2], t[:, :2])
    with pytest.raises(ValueError):
        make_direction_loss("L1")


def test_multitask_loss_parts_and_ignore_unknown_class():
    torch.manual_seed(0)
    d = torch.randn(4, 3, requires_grad=True)
    t = torch.nn.functional.normalize(torch.randn(4, 3), dim=-1)
    logits = torch.randn(4, 3, requires_grad=True)
    cls = torch.tensor([0, 2, -1, 1])
    el = torch.zeros(4, requires_grad=True)
    total, parts = MultiTaskLoss("AD", class_weight=0.5, elevation_weight=0.25)(d, t, logits, cls, el)
    ce = torch.nn.functional.cross_entropy(logits[[0, 1, 3]], cls[[0, 1, 3]])
    el_err = torch.asin(t[:, 2]).abs().mean()
    expect = angular_distance(d, t).mean() + 0.5 * ce + 0.25 * el_err
    assert torch.allclose(total, expect, atol=1e-6)
    assert set(parts) == {"direction", "class", "elevation"}
    total.backward()
    assert logits.grad[2].abs().sum() == 0  # unknown class ignored
    assert el.grad.abs().sum() > 0
