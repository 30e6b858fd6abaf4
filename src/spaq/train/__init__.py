"""Training recipes (``spaq train ...``) and what they share: the run's arguments checked in one line before any
work (:func:`check_run`) and the one-cycle learning-rate schedule (:func:`one_cycle`)."""
from __future__ import annotations

from ..errors import SpaqError

__all__ = ["check_run", "one_cycle"]


def check_run(steps=None, epochs=None, seed=None, min_steps: int = 1) -> None:
    """One-line errors for a run's counts: ``steps`` >= ``min_steps``, ``epochs`` >= 1, ``seed`` >= 0 (None: not
    checked)."""
    for name, v, lo in (("steps", steps, min_steps), ("epochs", epochs, 1), ("seed", seed, 0)):
        if v is not None and (isinstance(v, bool) or int(v) != v or int(v) < lo):
            raise SpaqError(f"{name} must be an integer >= {lo}, got {v!r}")


def one_cycle(opt, max_lr: float, total_steps: int):
    """torch's ``OneCycleLR`` over ``total_steps`` with 10 % warm-up. Where that warm-up is exactly one step
    (10 steps) torch divides by zero; it then lasts 1.5 steps (the schedule of every other length unchanged)."""
    import torch

    total = max(1, int(total_steps))
    pct = 0.1 if abs(0.1 * total - 1.0) > 1e-9 else 1.5 / total
    return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=max_lr, total_steps=total, pct_start=pct)
