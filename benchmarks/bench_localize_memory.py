"""Peak memory and time of binaural template localisation for one and for two sources on long streams
(KU100, two uncorrelated noise sources at +-30 deg azimuth, one thread), each call in a fresh process.

The baseline is one source on the same stream, measured in the same run: several sources used to hold every
(frame, band group) unit's distance to every direction at once (1.6 GB peak at 20 s, 3.9 GB at 60 s, against about
1.4 GB for one source at 60 s); they now read them a chunk of frames at a time
(``spaq.localization.templates.CHUNK_BYTES``), so the ratio should stay near 1 whatever the length.

Usage: python benchmarks/bench_localize_memory.py [--seconds 20 60]
"""
import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np, torch
from scipy.signal import oaconvolve
from spaq.localization import localize
from spaq.spatial.hrtf import load_hrtf
torch.set_num_threads(1)
dur, n_src = float(sys.argv[1]), int(sys.argv[2])
h = load_hrtf("ku100", 48000)
rng = np.random.default_rng(0)
n = int(dur * 48000)
x = sum(oaconvolve(rng.standard_normal(n)[None] * 0.05, h.hrir[int(h.nearest_index(az, 0))], axes=-1)[:, :n]
        for az in (30, -30))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
localize(x, 48000, method="templates", n_sources=n_src)
print(json.dumps({"seconds": time.perf_counter() - t, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "before_mb": base / 1024}))
"""


def run(dur, n_src):
    out = subprocess.run([sys.executable, "-c", CHILD, str(dur), str(n_src)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, nargs="+", default=[20.0, 60.0])
    a = ap.parse_args()
    print("| stream | sources | time (s) | x real time | peak RSS (MB) | over the process before the call (MB) |")
    print("|---|---|---|---|---|---|")
    for dur in a.seconds:
        r = {k: run(dur, k) for k in (1, 2)}
        for k, v in r.items():
            print(f"| {dur:g} s | {k} | {v['seconds']:.2f} | {dur / v['seconds']:.0f}x | {v['peak_mb']:.0f} | "
                  f"{v['peak_mb'] - v['before_mb']:.0f} |", flush=True)
        print(f"| {dur:g} s | ratio 2 / 1 | {r[2]['seconds'] / r[1]['seconds']:.2f} | | "
              f"{(r[2]['peak_mb'] - r[2]['before_mb']) / max(r[1]['peak_mb'] - r[1]['before_mb'], 1):.2f} (added memory) | |",
              flush=True)


if __name__ == "__main__":
    main()
