"""Try (issue 17, thirty-fourth session; not shipped): how far a *training-free* distance of the
direct-path transfer functions goes on the sqm protocol, when the dry source is known.

The source-informed encoder (``sqm_v2_source``) learns from features of each ear against the dry
source, read from the direct path (:func:`spaq.models.sqm.direct_path`). Is the learning what
limits it, or the features? Here the same direct path (:func:`spaq.models.sqm.direct_path`, cut
``AFTER_MS`` after the direct sound) gives each ear's direct-path signal, and a scene's vector is, over
``NB`` ERB-spaced bands 300 Hz - ``FMAX``: the ILD (dB), each ear's level re the source (dB, the two
ears' common mean removed) and the ITD (the cross-correlation of the two direct-path responses, peak
within +-1 ms, per 50 us). Bands where the source has less than 1e-4 of its strongest band's power
are left out. The distance of two scenes is the rms difference over the entries both have, with
weights ``W_ILD``, ``W_SHAPE``, ``W_ITD``. Nothing is learned: this is the content invariance the
transfer functions give by themselves.

    PYTHONPATH=src python benchmarks/eval_sqm.py --prerender --scenes S.pt --refs 8 --trials 80 --groups 20 --per-group 26 --clip 1.0
    [W_SHAPE=.. W_ITD=.. W_ILD=.. AFTER_MS=..] PYTHONPATH=src python benchmarks/try_sqm_transfer_function.py \
        --scenes S.pt --refs 8 --trials 80 --groups 20 --per-group 26 --clip 1.0 --md OUT.md

(the DoA and speed rows of the table come from the embedding model ``eval_sqm`` loads: ignore them).
Results: ``benchmarks/results/sqm.md``, thirty-fourth session.
"""
from __future__ import annotations

import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import eval_sqm as E  # noqa: E402

from spaq.models.sqm import direct_path  # noqa: E402

SR = 48000
AFTER_MS = float(os.environ.get("AFTER_MS", "2.5"))
W_SHAPE = float(os.environ.get("W_SHAPE", "1.0"))
W_ITD = float(os.environ.get("W_ITD", "1.0"))   # per 50 us
W_ILD = float(os.environ.get("W_ILD", "1.0"))
NB = int(os.environ.get("NB", "32"))
FMAX = float(os.environ.get("FMAX", "16000"))


def erb_edges(lo: float, hi: float, n: int) -> np.ndarray:
    """``n + 1`` band edges (Hz) equally spaced on the ERB-number scale."""
    erb = 21.4 * np.log10(1 + 0.00437 * np.array([lo, hi]))
    return (10 ** (np.linspace(erb[0], erb[1], n + 1) / 21.4) - 1) / 0.00437


def features(x: np.ndarray) -> np.ndarray:
    """A scene ``x (3, T)`` (ears, dry source) -> its vector: ILD, the two ears' levels re the source
    (common mean removed) per band, and the ITD; NaN in the bands the source hardly excites."""
    y = direct_path(torch.from_numpy(np.asarray(x, np.float64))[None], SR, AFTER_MS)[0].numpy()
    n = y.shape[-1]
    m = 1 << int(math.ceil(math.log2(2 * n)))
    Y = np.fft.rfft(y, m)  # (3, F): the direct-path ears and the source
    p = np.abs(Y[2]) ** 2
    # ITD: the cross-correlation of the two ears' direct-path responses (the cross-spectrum over the
    # source's power), within +-1 ms, parabolic peak
    cc = np.fft.irfft(Y[0] * Y[1].conj() / (p + 1e-3 * p.mean()), m)
    lagmax = int(0.001 * SR)
    c = np.concatenate([cc[-lagmax:], cc[:lagmax + 1]])
    k, off = int(np.argmax(c)), 0.0
    if 0 < k < len(c) - 1 and c[k - 1] - 2 * c[k] + c[k + 1] != 0:
        off = 0.5 * (c[k - 1] - c[k + 1]) / (c[k - 1] - 2 * c[k] + c[k + 1])
    itd_us = (k + off - lagmax) / SR * 1e6
    f = np.fft.rfftfreq(m, 1 / SR)
    idx = np.digitize(f, erb_edges(300.0, FMAX, NB)) - 1
    ok = (idx >= 0) & (idx < NB)
    bS, bL, bR = (np.bincount(idx[ok], q[ok], NB) for q in (p, np.abs(Y[0]) ** 2, np.abs(Y[1]) ** 2))
    valid = bS > 1e-4 * bS.max()
    db = lambda a, b: np.where(valid, 10 * np.log10((a + 1e-30) / (b + 1e-30)), np.nan)  # noqa: E731
    gl, gr = db(bL, bS), db(bR, bS)
    mu = np.nanmean(np.concatenate([gl, gr]))
    return np.concatenate([W_ILD * db(bL, bR), W_SHAPE * (gl - mu), W_SHAPE * (gr - mu), [W_ITD * itd_us / 50.0]])


def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """rms difference over the entries both vectors have (broadcast over leading dimensions)."""
    d = (a.double() - b.double()) ** 2
    ok = torch.isfinite(d)
    return torch.sqrt(torch.where(ok, d, torch.zeros_like(d)).sum(-1) / ok.sum(-1).clamp_min(1))


if __name__ == "__main__":
    E.run_with(features, dist, sys.argv[1:])
