"""Is the blur-ladder miss of ``quality`` a corpus artefact? (issue 19; a measurement, nothing shipped)

``eval_quality.py``'s held-out blur sweeps (its seed, voices and SONICOM-2 head, the same scene index
as its monotonic section) rendered twice and scored with the shipped ``quality``:

* ``filter``: the corpus engine's decorrelator until then (:func:`spaq.data.degradations.decorrelate`: 20 ms of
  exponentially decaying Gaussian noise per channel). In an ERB band it acts as a nearly constant complex
  gain, so the mix ``sqrt(1 - a) x + sqrt(a) dx`` colours the band and partly cancels the direct sound,
  and a single realisation changes the signal monotonically only in expectation;
* ``orthogonal`` (:func:`spaq.data.degradations.decorrelate_orthogonal`, the engine's default since this
  measurement): orthogonal to the input in every STFT bin (21 ms frames, 75 % overlap; a random phase per
  bin and frame, each bin's projection on the input removed over the item and its power restored), so the
  mix keeps every band's power and only the coherence falls with ``a``.

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
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_quality as eq  # noqa: E402

from spaq.metrics.quality import Quality  # noqa: E402
from spaq.train import quality as tq  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decorrelator", choices=["filter", "orthogonal"], default="filter")
    ap.add_argument("--scenes", type=int, default=1, help="scenes per format x source (as eval_quality --scenes)")
    a = ap.parse_args(argv)
    options = {"blur": {"decorrelator": a.decorrelator}}
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
                                         heads=eq.SWAP_HEADS, options=options)
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
