"""Try (issue 17, thirty-fourth session; not shipped): how far a *training-free* distance of the
direct-path transfer functions goes on the sqm protocol, when the dry source is known.

The source-informed encoder (``sqm_v2_source``) learns from features of each ear against the dry
source, read from the direct path (:func:`spaq.models.sqm.direct_path`). Is the learning what
limits it, or the features? Here the same deconvolution gives each ear's direct-path response
(regularised ``Y S* / (|S|^2 + 1e-3 mean |S|^2)``, cut from 1 ms before the direct sound to
``AFTER_MS`` after it, half-Hann fade over the last 0.5 ms), and a scene's vector is, over ``NB``
ERB-spaced bands 300 Hz - ``FMAX``: the ILD (dB), each ear's level re the source (dB, the two ears'
common mean removed) and the ITD (cross-correlation peak within +-1 ms, per 50 us); bands where the
source has less than 1e-4 of its strongest band's power are left out of both sides of a pair. The
distance of two scenes is the rms difference over the bands both have, weights ``W_ILD``,
``W_SHAPE``, ``W_ITD``. Nothing is learned: this is the content invariance the transfer functions
give by themselves.

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

SR = 48000
AFTER_MS = float(os.environ.get("AFTER_MS", "2.5"))
W_SHAPE = float(os.environ.get("W_SHAPE", "1.0"))
W_ITD = float(os.environ.get("W_ITD", "1.0"))   # per 50 us
W_ILD = float(os.environ.get("W_ILD", "1.0"))
NB = int(os.environ.get("NB", "32"))
FMAX = float(os.environ.get("FMAX", "16000"))

def erb_edges(lo, hi, n):
    e = lambda f: 21.4 * np.log10(1 + 0.00437 * f)
    ie = lambda x: (10 ** (x / 21.4) - 1) / 0.00437
    return ie(np.linspace(e(lo), e(hi), n + 1))

def features(x):
    """x (3, T) numpy -> feature vector with NaN where unreliable."""
    x = np.asarray(x, np.float64)
    n = x.shape[-1]
    m = 1 << int(math.ceil(math.log2(2 * n)))
    S = np.fft.rfft(x[2], m); p = np.abs(S) ** 2
    den = p + 1e-3 * p.mean()
    Y = np.fft.rfft(x[:2], m)
    h = np.fft.irfft(Y * (S.conj() / den)[None], m)[:, : n // 2]
    e = (h ** 2).sum(0)
    first = int(np.argmax(e >= e.max() * 10 ** (-0.6)))
    look = int(round(0.0005 * SR))
    pk = first + int(np.argmax(e[first:first + look]))
    a, b = max(0, pk - int(round(0.001 * SR))), pk + int(round(AFTER_MS * SR / 1000))
    hc = np.zeros_like(h); hc[:, a:b] = h[:, a:b]
    ramp = 0.5 * (1 + np.cos(np.pi * np.arange(look) / look)); hc[:, b - look:b] *= ramp
    # ITD from the cut responses' cross-correlation, +-1 ms, parabolic peak
    Hc = np.fft.rfft(hc, m)
    cc = np.fft.irfft(Hc[0] * Hc[1].conj(), m)
    lagmax = int(0.001 * SR)
    c = np.concatenate([cc[-lagmax:], cc[:lagmax + 1]])
    k = int(np.argmax(c)); off = 0.0
    if 0 < k < len(c) - 1:
        den2 = c[k - 1] - 2 * c[k] + c[k + 1]
        off = 0.5 * (c[k - 1] - c[k + 1]) / den2 if den2 != 0 else 0.0
    itd_us = (k + off - lagmax) / SR * 1e6
    # band powers of the direct-path ears against the source
    PL, PR = p * np.abs(Hc[0]) ** 2, p * np.abs(Hc[1]) ** 2
    f = np.fft.rfftfreq(m, 1 / SR)
    ed = erb_edges(300.0, FMAX, NB)
    idx = np.digitize(f, ed) - 1
    ok = (idx >= 0) & (idx < NB)
    bS = np.bincount(idx[ok], p[ok], NB); bL = np.bincount(idx[ok], PL[ok], NB); bR = np.bincount(idx[ok], PR[ok], NB)
    valid = bS > 1e-4 * bS.max()
    ild = np.where(valid, 10 * np.log10((bL + 1e-30) / (bR + 1e-30)), np.nan)
    gl = np.where(valid, 10 * np.log10((bL + 1e-30) / (bS + 1e-30)), np.nan)
    gr = np.where(valid, 10 * np.log10((bR + 1e-30) / (bS + 1e-30)), np.nan)
    mu = np.nanmean(np.concatenate([gl, gr]))
    return np.concatenate([W_ILD * ild, W_SHAPE * (gl - mu), W_SHAPE * (gr - mu), [W_ITD * itd_us / 50.0]])

def dist(a, b):
    a, b = a.double(), b.double()
    d = (a - b) ** 2
    ok = torch.isfinite(d)
    d = torch.where(ok, d, torch.zeros_like(d))
    return torch.sqrt(d.sum(-1) / ok.sum(-1).clamp_min(1))

_finish = E.Scenes._finish
def _fin(self, ks, x, cue):
    out = _finish(self, ks, x, cue)
    out["emb"] = torch.from_numpy(np.stack([features(xx.numpy()) for xx in x]))
    return out
E.Scenes._finish = _fin
E.cosine_distance = dist
E.sqm_pair = lambda S, i, T_, j: dist(S["emb"][np.atleast_1d(i)], T_["emb"][np.atleast_1d(j)]).numpy()
if __name__ == "__main__":
    E.main(sys.argv[1:])
