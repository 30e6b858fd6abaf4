"""Speed of the reference-free predictor on a 10 s binaural file (issue 20: >= 200x real time
on 2 cores) -> benchmarks/results/predictor_speed.md.

    PYTHONPATH=src python benchmarks/bench_predict.py [--threads 1] [--repeats 7]

Times ``spaq.predict(path)`` end to end (file read, checks, features, network) after one warm-up
call, median over repeats, CPU time (``time.process_time``: what the call costs whatever the
machine's load) and wall time. Baseline in the same run: the intrusive teacher, ``spaq.score``
with the ``quality`` metric on the same file against itself, so the ratio says how much cheaper
the student is. Also FOA and third-order files of the same length (not the issue's target): their
features read the signal through its binaural decode (a routed checkpoint), which costs more.
"""
from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # what `import spaq` sets when torch is not loaded yet (torch is, below)
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def timed(f, repeats):
    f()
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        f()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return float(np.median(cpu)), float(np.median(wall))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/predictor_speed.md"))
    a = ap.parse_args()
    import soundfile as sf
    import torch

    torch.set_num_threads(a.threads)
    import spaq
    from spaq.train.quality import sweep

    ref, degs = sweep("noise", "binaural", "speech", [0.4], 5, 1, duration_s=10.0)
    d = tempfile.mkdtemp()
    p = os.path.join(d, "bin10.wav")
    sf.write(p, degs[0].T.astype(np.float32), 48000, subtype="FLOAT")
    dur = 10.0
    c_p, w_p = timed(lambda: spaq.predict(p), a.repeats)
    c_q, w_q = timed(lambda: spaq.score(p, p, metrics=["quality"], align=False), max(2, a.repeats // 3))
    res = spaq.predict(p)
    amb = {}
    for fmt, label in (("foa", "FOA (4 channels)"), ("hoa3", "third order (16 channels)")):
        _, ds = sweep("noise", fmt, "speech", [0.4], 5, 1, duration_s=10.0)
        pa = os.path.join(d, f"{fmt}10.wav")
        sf.write(pa, ds[0].T.astype(np.float32), 48000, subtype="FLOAT")
        amb[label] = timed(lambda: spaq.predict(pa), max(2, a.repeats // 2))
    lines = ["# Reference-free predictor: speed (10 s binaural file, 48 kHz float WAV)", "",
             f"`PYTHONPATH=src python benchmarks/bench_predict.py --threads {a.threads}` (torch threads {a.threads}; "
             f"medians of {a.repeats} calls after a warm-up). One thread: CPU time is the figure to read (it does not "
             "depend on other jobs on a shared machine). Two threads (the issue's 2 cores): wall time, since the "
             "features' spatial group and the front-end's band groups run on two threads (spaq.threads.in_background) "
             "and CPU time then counts both.", "",
             "| call | CPU s | wall s | real-time ratio (CPU) | real-time ratio (wall) |", "|---|---|---|---|---|",
             f"| `spaq.predict(file)` | {c_p:.4f} | {w_p:.4f} | **{dur / c_p:.0f}x** | {dur / w_p:.0f}x |",
             f"| baseline: `spaq.score(file, file, metrics=['quality'])` (the teacher) | {c_q:.3f} | {w_q:.3f} | "
             f"{dur / c_q:.0f}x | {dur / w_q:.0f}x |"]
    lines += [f"| `spaq.predict(file)`, 10 s {k} | {c:.4f} | {w:.4f} | {dur / c:.0f}x | {dur / w:.0f}x |" for k, (c, w) in amb.items()]
    lines += ["",
             f"Student vs teacher: {c_q / c_p:.1f}x less CPU. Target >= 200x real time on 2 cores: "
             + (f"{'met' if dur / w_p >= 200 else 'NOT met'} (wall, {a.threads} threads)" if a.threads >= 2 else
                f"{'met' if dur / c_p >= 200 else 'NOT met'} on one thread (CPU)")
             + f". Prediction for the file: {res['score']:.1f} ({res['class']}).", ""]
    from spaq.files import atomic_write

    atomic_write(a.out, lambda tmp: Path(tmp).write_text("\n".join(lines), encoding="utf-8"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
