"""Real-time factor of binaural localisation (BAST) for one stream on CPU.

Prints the RTF (audio seconds per processing second) of the whole localize() path
(feature extraction + model + aggregation) for a 20 s binaural stream at the model's rate
and at 48 kHz (with resampling), and of the model alone, with N threads (default 2).
Target: >= 100x on 2 CPU cores.

Usage: python benchmarks/bench_localize.py [--weights CKPT] [--threads 2] [--seconds 20]
"""
import argparse
import time

import numpy as np
import torch

from spaq.localization import binaural_window_directions, load_localizer, localize


def best_of(fn, repeat=5):
    """(best wall s, median wall s, best CPU s of this process). On a shared machine the wall
    time includes waiting for other processes; CPU time is what an idle machine would need
    (with one thread: wall ~ CPU)."""
    ts, cs = [], []
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        ts.append(time.perf_counter() - t)
        cs.append(time.process_time() - c)
    return min(ts), float(np.median(ts)), min(cs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=20.0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model, meta = load_localizer(a.weights)
    sr = model.cfg.sample_rate
    rng = np.random.default_rng(0)
    x = 0.1 * rng.standard_normal((2, int(a.seconds * sr)))
    x48 = 0.1 * rng.standard_normal((2, int(a.seconds * 48000)))
    localize(x, sr, weights=a.weights)  # warm-up
    import os

    print(f"weights {meta['path']} ({meta['sha256'][:12]}), threads {a.threads}, {a.seconds:.0f} s stream, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for label, arr, rate, ov in [(f"localize() at {sr} Hz", x, sr, 0.0),
                                 ("localize() at 48000 Hz (resampled)", x48, 48000, 0.0),
                                 (f"localize() at {sr} Hz, overlap 0.5", x, sr, 0.5)]:
        best, med, cpu = best_of(lambda: localize(arr, rate, weights=a.weights, overlap=ov))
        print(f"{label:40s} wall best {best * 1000:7.1f} ms (median {med * 1000:7.1f})  RTF {a.seconds / best:5.0f}x  "
              f"| CPU {cpu * 1000:7.1f} ms  RTF(CPU) {a.seconds / cpu:5.0f}x")
    best, med, cpu = best_of(lambda: binaural_window_directions(model, x, sr))
    print(f"{'features + model only':40s} wall best {best * 1000:7.1f} ms (median {med * 1000:7.1f})  "
          f"RTF {a.seconds / best:5.0f}x  | CPU {cpu * 1000:7.1f} ms  RTF(CPU) {a.seconds / cpu:5.0f}x")


if __name__ == "__main__":
    main()
