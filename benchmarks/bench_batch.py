"""`spaq batch` throughput against a plain loop over `spaq.score`, measured in the same run.

    python benchmarks/bench_batch.py                  # 24 pairs of 2 s binaural, default metrics
    python benchmarks/bench_batch.py --n 96 --dask    # also a local Dask cluster

The pairs are written once (white noise through graded low-pass filters, 48 kHz). The
baseline is the simplest thing a user would write: one process calling `spaq.score` on
each pair (metric objects reused between calls, as `spaq.score` does). Then `score_batch`
runs with 1 and W workers (and on a local Dask cluster of W workers with --dask); every
figure includes start-up (process spawn, imports), which is what a user waits for. Prints
seconds per pair and the speed-up over the baseline, and checks that every run's table
holds the same scores.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import numpy as np
import soundfile as sf
from scipy.signal import butter, sosfilt


def write_pairs(folder: str, n: int, seconds: float, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    rows = ["id,ref,deg"]
    for i in range(n):
        ref = 0.1 * rng.standard_normal((int(48000 * seconds), 2)).astype(np.float32)
        cut = 2000 + 14000 * (i % 8) / 7
        deg = sosfilt(butter(6, cut, fs=48000, output="sos"), ref, axis=0).astype(np.float32)
        sf.write(os.path.join(folder, f"r{i}.wav"), ref, 48000, subtype="FLOAT")
        sf.write(os.path.join(folder, f"d{i}.wav"), deg, 48000, subtype="FLOAT")
        rows.append(f"{i},r{i}.wav,d{i}.wav")
    path = os.path.join(folder, "pairs.csv")
    with open(path, "w") as f:
        f.write("\n".join(rows) + "\n")
    return path


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--metric", nargs="+", default=None, help="default: spaq score's default metrics")
    ap.add_argument("--dask", action="store_true", help="also run on a local Dask cluster")
    args = ap.parse_args(argv)

    import spaq
    from spaq.batch import score_batch

    tmp = tempfile.mkdtemp(prefix="spaq-bench-batch-")
    try:
        manifest = write_pairs(tmp, args.n, args.seconds)
        t0 = time.perf_counter()
        base = []
        for i in range(args.n):
            rep = spaq.score(os.path.join(tmp, f"r{i}.wav"), os.path.join(tmp, f"d{i}.wav"), metrics=args.metric)
            base.append({k: v.score for k, v in rep.results.items()})
        t_base = time.perf_counter() - t0
        print(f"{args.n} pairs of {args.seconds:g} s binaural; metrics {sorted(base[0])}")
        print(f"  baseline loop over spaq.score (1 process): {t_base:6.1f} s = {t_base / args.n:.3f} s/pair")
        runs = [("score_batch, 1 process", dict(workers=1)),
                (f"score_batch, {args.workers}-process pool", dict(workers=args.workers))]
        if args.dask:
            runs.append((f"score_batch, Dask local, {args.workers} workers", dict(workers=args.workers, dask="local")))
        for name, kw in runs:
            out = os.path.join(tmp, "out.parquet")
            t0 = time.perf_counter()
            df = score_batch(manifest, out, metrics=args.metric, overwrite=True, progress=False, **kw)
            dt = time.perf_counter() - t0
            same = all(np.isclose(df.loc[i, m], base[i][m], rtol=0, atol=1e-9, equal_nan=True)
                       for i in range(args.n) for m in base[i])
            print(f"  {name:38s} {dt:6.1f} s = {dt / args.n:.3f} s/pair, {t_base / dt:4.2f}x the baseline; "
                  f"same scores: {same}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
