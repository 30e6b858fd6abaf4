"""The sqm protocol (``eval_sqm.py``) with a training-free distance in place of the embedding:
the energy distance between the template localiser's direction posteriors (a reference point
for issue 17; ``benchmarks/results/sqm.md``, "Seventh session").

Per scene: the summed template distances of :mod:`spaq.localization.templates` for the candidate
(head x scale x reverberant variant, gated as the localiser gates them) that fits best, a posterior
``exp(-KAPPA x distance per unit weight)`` over its directions pooled onto a 642-point Fibonacci grid
(``KAPPA=inf``: the best direction only), and between two scenes the energy distance of their
posteriors on the sphere (great-circle distance / 180 deg; 0 for identical signals). The DoA and speed
rows of the table still come from the embedding model that ``eval_sqm`` loads (ignore them).

    KAPPA=3 PYTHONPATH=src python benchmarks/eval_sqm_template_posterior.py --scenes /tmp/sqm_eval_scenes.pt \
        --refs 8 --trials 80 --groups 20 --per-group 26 --clip 1.0 --json out.json --md out.md
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_sqm as E  # noqa: E402

from spaq.localization import templates as T  # noqa: E402
from spaq.localization.localize import direct_coherence  # noqa: E402

KAPPA = float(os.environ.get("KAPPA", "inf"))
N_GRID = 642


def fibonacci_grid(n: int) -> np.ndarray:
    """``n`` nearly uniform unit vectors ``(n, 3)``."""
    i = np.arange(n) + 0.5
    polar = np.arccos(1 - 2 * i / n)
    az = np.pi * (1 + 5 ** 0.5) * i
    return np.stack([np.cos(az) * np.sin(polar), np.sin(az) * np.sin(polar), np.cos(polar)], 1)


GRID = fibonacci_grid(N_GRID)
ANGLE = torch.from_numpy(np.arccos(np.clip(GRID @ GRID.T, -1, 1)) / np.pi)  # great-circle / 180 deg
HEADS = T.default_heads()
_NEAREST: dict = {}  # template set name -> nearest grid point of each of its directions


def posterior(x: np.ndarray) -> np.ndarray:
    """Binaural ``x (2, T)`` at 48 kHz -> posterior over the grid ``(N_GRID,)``."""
    x = np.asarray(x, np.float64)
    x = x * (10 ** (-30 / 20) / max(float(np.sqrt(np.mean(x ** 2))), 1e-12))  # as the localiser analyses
    o = dict(T.DEFAULTS)
    cues = T._observed_cues(x, o["frame_ms"])
    obs = T._observation(x, o, cues)
    direct = bool(direct_coherence(cues[0], cues[1]) >= float(o["drr_coherence"]))
    sums = T.observation_sums(obs)
    opts = {k: v for k, v in o.items() if k not in ("drr_variants_db", "drr_coherence", "head_scales")}
    ts = min(T.candidate_sets(HEADS, direct, o["drr_variants_db"], o["head_scales"]),  # the localiser's head selection
             key=lambda c: float(T.summed_distances(c, sums, **opts).min()))
    d = T.summed_distances(ts, sums, **opts)
    if ts.name not in _NEAREST:
        _NEAREST[ts.name] = np.argmax(ts.directions @ GRID.T, axis=1)
    p = np.zeros(N_GRID)
    if math.isinf(KAPPA):
        p[_NEAREST[ts.name][int(np.argmin(d))]] = 1.0
    else:
        weight = max(float(obs[2].sum()), 1e-9)
        np.add.at(p, _NEAREST[ts.name], np.exp(-(d - d.min()) / weight * KAPPA))
        p /= p.sum()
    return p


def energy_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Energy distance of posteriors ``(..., N_GRID)`` (broadcast) under the great-circle metric."""
    a, b = a.double(), b.double()
    return ((a @ ANGLE) * b).sum(-1) - 0.5 * ((a @ ANGLE) * a).sum(-1) - 0.5 * ((b @ ANGLE) * b).sum(-1)


if __name__ == "__main__":
    E.run_with(lambda x: posterior(x[:2]), energy_distance, sys.argv[1:])
