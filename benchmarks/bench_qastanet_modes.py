"""qastanet's fast (default) and exact modes in the same run: speed on a 10 s 3OA pair and
agreement on band-limited and codec material.

    python benchmarks/bench_qastanet_modes.py [--seconds 10] [--repeats 5] [--threads 1]
                                              [--checkpoint PATH] [--no-material]

Prints the median time of ``forward`` on the pair of ``bench_score.make_pair`` in each
mode (after one warm-up call that builds the per-length tables), their ratio, and the worst
``|fast - exact|`` over the material of tests/metrics/test_qastanet_fast.py (exact mode is
the one checked against the official scores). Absolute times depend on the machine's load:
compare the two modes of one run.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CKPT = REPO.parent / "shared" / "qastanet" / "model_weights.pth.tar"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--checkpoint", default=str(DEFAULT_CKPT))
    ap.add_argument("--no-material", action="store_true", help="timing only")
    a = ap.parse_args(argv)

    import torch

    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_score import make_pair
    from spaq.metrics.qastanet import Qastanet

    torch.set_num_threads(a.threads)
    modes = {"fast": Qastanet(checkpoint=a.checkpoint), "exact": Qastanet(checkpoint=a.checkpoint, fast=False)}
    r, d = make_pair(a.seconds)
    ref, deg = torch.from_numpy(r)[None], torch.from_numpy(d)[None]
    times = {k: [] for k in modes}
    scores = {}
    with torch.no_grad():
        for k, m in modes.items():
            scores[k] = float(m.forward(ref, deg)["score"][0])  # warm-up: per-length tables
        for _ in range(a.repeats):  # interleaved, so load changes hit both modes alike
            for k, m in modes.items():
                t0 = time.perf_counter()
                m.forward(ref, deg)
                times[k].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{a.seconds:g} s 3OA pair, {a.threads} thread(s), median of {a.repeats}:")
    for k in modes:
        print(f"  {k:5s} {med[k]:.3f} s (min {min(times[k]):.3f})  score {scores[k]:.6f}")
    print(f"  exact / fast = {med['exact'] / med['fast']:.2f}")
    if a.no_material:
        return
    sys.path.insert(0, str(REPO / "tests"))
    sys.path.insert(0, str(REPO / "tests" / "metrics"))
    from test_qastanet_fast import fast_exact_deltas, material

    res = fast_exact_deltas(modes["fast"], modes["exact"], material())
    worst = max(res, key=lambda k: abs(res[k][0] - res[k][1]))
    print(f"band-limited / codec material, {len(res)} pairs: worst |fast - exact| = "
          f"{abs(res[worst][0] - res[worst][1]):.5f} ({worst}: fast {res[worst][0]:.5f}, exact {res[worst][1]:.5f})")
    for k, (f, e) in sorted(res.items(), key=lambda kv: -abs(kv[1][0] - kv[1][1]))[:5]:
        print(f"  {k:24s} fast {f:.5f} exact {e:.5f} diff {f - e:+.5f}")


if __name__ == "__main__":
    main()
