"""Is the blur-ladder miss of ``quality`` a corpus artefact? (issue 19; a measurement, nothing shipped)

``eval_quality.py``'s held-out blur sweeps (its seed, voices and SONICOM-2 head, the same scene index
as its monotonic section) rendered twice and scored with the shipped ``quality``:

* ``filter``: the corpus engine's decorrelator (:func:`spaq.data.degradations.decorrelate`: 20 ms of
  exponentially decaying Gaussian noise per channel). In an ERB band it acts as a nearly constant complex
  gain, so the mix ``sqrt(1 - a) x + sqrt(a) dx`` colours the band and partly cancels the direct sound,
  and a single realisation changes the signal monotonically only in expectation;
* ``orthogonal``: a decorrelator orthogonal to the input in every STFT bin (21 ms frames, 75 % overlap;
  a random phase per bin and frame, then each bin's projection on the input removed over the item and the
  bin's power restored), so the mix keeps every bin's power and only the coherence falls with ``a``.

Prints each sweep's scores, ``d_ic_mean`` and ``missing_db`` and its Spearman against severity.

    python benchmarks/try_blur_decorrelator.py --decorrelator filter --scenes 3
    python benchmarks/try_blur_decorrelator.py --decorrelator orthogonal --scenes 3

About 1.5 min of CPU per decorrelator and scene count 1 (blur sweeps only are rendered).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from scipy.signal import istft, stft
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_quality as eq  # noqa: E402

from spaq.data import degradations as dg  # noqa: E402
from spaq.metrics.quality import Quality  # noqa: E402
from spaq.train import quality as tq  # noqa: E402


def orthogonal_decorrelate(x, sample_rate: int, rng: np.random.Generator, frame_s: float = 0.021) -> np.ndarray:
    """``x (C, T)`` -> a copy with every STFT bin's phase randomised per frame, then orthogonal to ``x``
    in every bin (over the whole item) at the same power per bin; channels independent."""
    x = np.asarray(x, dtype=np.float64)
    n = 1 << int(round(np.log2(frame_s * sample_rate)))
    out = np.empty_like(x)
    for c in range(x.shape[0]):
        _, _, X = stft(x[c], nperseg=n, noverlap=3 * n // 4)
        D = X * np.exp(2j * np.pi * rng.random(X.shape))
        px = np.sum(np.abs(X) ** 2, axis=-1, keepdims=True)
        D = D - np.sum(D * np.conj(X), axis=-1, keepdims=True) / np.maximum(px, 1e-30) * X
        D *= np.sqrt(px / np.maximum(np.sum(np.abs(D) ** 2, axis=-1, keepdims=True), 1e-30))
        _, y = istft(D, nperseg=n, noverlap=3 * n // 4)
        out[c] = y[: x.shape[-1]] if y.size >= x.shape[-1] else np.pad(y, (0, x.shape[-1] - y.size))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decorrelator", choices=["filter", "orthogonal"], default="filter")
    ap.add_argument("--scenes", type=int, default=1, help="scenes per format x source (as eval_quality --scenes)")
    a = ap.parse_args(argv)
    if a.decorrelator == "orthogonal":
        dg.decorrelate = orthogonal_decorrelate  # what the Blur degradation calls
    metric = Quality()
    sevs = [0.0, 0.25, 0.5, 0.75, 1.0]
    rhos, idx = [], 0
    for fam in eq.EVAL_FAMILIES:  # the scene index of eval_quality's monotonic section (all families)
        kinds = tq.FAMILIES[fam][2]
        for fmt in ("binaural", "hoa3"):
            if ("binaural" if fmt == "binaural" else "ambisonics") not in kinds:
                continue
            for sname, stype in eq.SOURCES.items():
                for sc in range(a.scenes):
                    idx += 1
                    if fam != "blur":
                        continue
                    ref, degs = tq.sweep(fam, fmt, stype, sevs, eq.SEED, idx, duration_s=1.5,
                                         hrtf=eq.HEAD if fmt == "binaural" else "default", voices=eq.VOICES,
                                         heads=eq.SWAP_HEADS)
                    r, d = torch.from_numpy(np.stack([ref] * len(degs))), torch.from_numpy(np.stack(degs))
                    with torch.no_grad():
                        _, f = metric.features(r, d)
                        s = metric.model(f)["score"].numpy()
                    rho = float(spearmanr(sevs, s)[0])
                    rhos.append(rho)
                    print(f"{a.decorrelator} {fmt} {sname} scene {sc}: Spearman {rho:+.2f}; scores "
                          f"{np.round(s, 1).tolist()}; d_ic_mean {np.round(f['d_ic_mean'].numpy(), 3).tolist()}; "
                          f"missing_db {np.round(f['missing_db'].numpy(), 2).tolist()}", flush=True)
    print(f"{a.decorrelator}: {sum(r <= -0.9 + 1e-9 for r in rhos)} of {len(rhos)} sweeps <= -0.9")


if __name__ == "__main__":
    main()
