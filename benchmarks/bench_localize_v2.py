"""Speed of binaural localize(): templates vs BAST on one 20 s KU100 stream (best of 5, one thread).

Usage: python benchmarks/bench_localize_v2.py"""
import time

import numpy as np
import torch
from scipy.signal import oaconvolve

from spaq.localization import default_weights_path, localize
from spaq.spatial.hrtf import load_hrtf

torch.set_num_threads(1)
h = load_hrtf("ku100", 48000)
s = np.random.default_rng(0).standard_normal(20 * 48000) * 0.05
x = oaconvolve(s[None], h.hrir[int(h.nearest_index(30, 0))], axes=-1)[:, : len(s)]
for label, kw in [("templates (KU100 + sonicom-1 heads)", dict(method="templates")),
                  ("templates (KU100 only)", dict(method="templates", hrtf="ku100")),
                  ("templates, 2 sources", dict(method="templates", n_sources=2)),
                  ("auto (default)", dict()),
                  ("bast, cue features (bast_cues)", dict(method="bast")),
                  ("bast, log-mel (bast_ku100)", dict(method="bast", weights=default_weights_path()))]:
    localize(x, 48000, **kw)
    walls, cpus = [], []
    for _ in range(5):
        t, c = time.perf_counter(), time.process_time()
        localize(x, 48000, **kw)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    print(f"| {label} | {min(cpus) * 1000:.0f} ms | {20 / min(cpus):.0f}x | {min(walls) * 1000:.0f} ms | "
          f"{20 / min(walls):.0f}x |", flush=True)
