"""The shared auditory front-end's speed at signal lengths that real files have (issue 16, 17, 19, 20 speed
figures are measured at round lengths): binaural cue features of 10 s of noise at 480000 samples (the baseline,
measured in the same run) and at lengths with a large prime factor, one thread, best of 3.

Before the forty-seventh session a decimated band's envelope was transformed at ``n_samples // D`` samples,
which for most lengths has a large prime factor (FFTs about 8x slower there): real files' cues took 1.8-2.2x the
benchmarks' time (quality 1.25-1.5x, cues and sqm 1.7-2x). The envelope now reads the band to the next
2^a 3^b 5^c length (:meth:`spaq.auditory.frontend.AuditoryFrontEnd.bands`); the ratio should be about 1.

    python benchmarks/bench_frontend_lengths.py
"""
import time

import numpy as np
import torch

from spaq.auditory.binaural_features import binaural_features, feature_frontend
from spaq.localization.templates import OBSERVATION_FRONTEND


def best(f, n=3):
    f()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return min(out)


def main():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    fronts = {"fast (quality, cues, sqm)": feature_frontend(48000, exact=False),
              "default (exactness fallback)": feature_frontend(48000),
              "localiser (coarse)": feature_frontend(48000, frame_ms=20.0, **OBSERVATION_FRONTEND)}
    print("| front-end | 480000 samples (s) | 479999 | 480007 | 481022 | worst ratio |")
    print("|---|---|---|---|---|---|")
    for name, fe in fronts.items():
        times = []
        for n in (480000, 479999, 480007, 481022):
            x = torch.from_numpy(rng.standard_normal((2, n)) * 0.05)
            times.append(best(lambda: binaural_features(x, fe)))
        print(f"| {name} | {times[0]:.3f} | " + " | ".join(f"{t:.3f}" for t in times[1:])
              + f" | {max(times[1:]) / times[0]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
