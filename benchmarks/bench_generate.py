"""Corpus generation speed: items/s for configs/benchmark.yaml (4 s pairs, FOA +
binaural, mixed degradations incl. codecs, 20 % rooms) with 1 and 2 workers.

    python benchmarks/bench_generate.py            # the 1000-item corpus of issue 5
    python benchmarks/bench_generate.py --n 40     # a quick run

Prints items/s per worker count, the extrapolated time for 1000 items and the
speed-up of 2 workers over 1 (same items, so the same work).
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

from spaq.data.config import load_config
from spaq.data.corpus import generate_corpus

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--config", default=os.path.join(HERE, "..", "configs", "benchmark.yaml"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    rates = {}
    for w in args.workers:
        out = tempfile.mkdtemp(prefix=f"spaq-bench-w{w}-")
        shutil.rmtree(out)
        t0 = time.perf_counter()
        df = generate_corpus(cfg, out, n=args.n, workers=w, progress=False)
        dt = time.perf_counter() - t0
        rates[w] = len(df) / dt
        print(f"workers={w}: {len(df)} items in {dt:.1f} s = {rates[w]:.2f} items/s "
              f"(1000 items: {1000 / rates[w] / 60:.1f} min); formats {df['format'].value_counts().to_dict()}, "
              f"rooms {df['room_rt60_s'].notna().mean():.0%}")
        shutil.rmtree(out)
    if 1 in rates and len(rates) > 1:
        for w, r in rates.items():
            if w != 1:
                print(f"speed-up {w} workers vs 1: {r / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
