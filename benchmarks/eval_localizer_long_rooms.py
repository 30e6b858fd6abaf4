"""Long binaural room streams (10 s, KU100, shoebox rooms RT60 0.2-0.8 s, the sources of eval_localizer_v2.py
five clips in a row): accuracy and CPU of the template localiser with the dereverberation's statistics read from
at most 400 / 256 / 200 frames (templates.DEREVERB's ``max_frames``; 1 s items have about 180 frames, so the 1 s
sets of eval_localizer_v2.py cannot show it).

Usage: python benchmarks/eval_localizer_long_rooms.py [--seed 5001] [--n 40] [--frames 400 256 200]"""
import argparse
import time

import numpy as np
import torch
from scipy.signal import oaconvolve

import eval_localizer_v2 as E
from spaq.localization.templates import DEREVERB, localize_templates
from spaq.spatial.angles import sph2cart
from spaq.spatial.hrtf import load_hrtf
from spaq.spatial.room import place_in_room, room_impulse_response

FS = 48000


def streams(seed: int, n: int, seconds: int = 10):
    """``n`` room streams ``(2, seconds * FS)``, their true directions ``(3,)`` and source kinds."""
    h = load_hrtf("ku100", FS)
    X, D, K, i = [], [], [], 0
    while len(X) < n:
        rng = np.random.default_rng([seed, 99, i])
        i += 1
        kind = E.KINDS[i % len(E.KINDS)]
        k = int(rng.integers(h.n_directions))
        s = np.concatenate([E._source(kind, rng, seconds=2.0) for _ in range(seconds // 2)])
        dims, rt60 = rng.uniform([4.0, 3.0, 2.5], [10.0, 8.0, 4.0]), float(rng.uniform(0.2, 0.8))
        try:
            rs = place_in_room(dims, rt60, h.azimuth_deg[k], h.elevation_deg[k], float(rng.uniform(1.0, 3.0)), rng)
            rir, _ = room_impulse_response(rs, FS, "binaural", hrtf=h, rng=rng, ism_order=3,
                                           length_s=min(1.2 * rt60, 1.0))
        except Exception:  # noqa: BLE001 - impossible room: draw again
            continue
        X.append(oaconvolve(s[None], rir, axes=-1)[:, :seconds * FS])
        D.append(sph2cart(h.azimuth_deg[k], h.elevation_deg[k]))
        K.append(kind)
    return X, D, K


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=5001)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--frames", type=int, nargs="+", default=[400, 256, 200])
    a = ap.parse_args()
    torch.set_num_threads(1)
    X, D, _ = streams(a.seed, a.n)
    print(f"{len(X)} streams of 10 s, seed {a.seed}")
    print("| max_frames | median | mean | within 8 deg | CPU s per stream |\n|---|---|---|---|---|")
    for mf in a.frames:
        errs, t0 = [], time.process_time()
        for x, d in zip(X, D):
            p = localize_templates(x, FS, dereverb=dict(DEREVERB, max_frames=mf))["directions"][0]
            errs.append(np.degrees(np.arccos(np.clip(p @ d, -1, 1))))
        e = np.array(errs)
        print(f"| {mf} | {np.median(e):.1f} | {e.mean():.1f} | {np.mean(e <= 8) * 100:.0f} % | "
              f"{(time.process_time() - t0) / len(X):.2f} |", flush=True)


if __name__ == "__main__":
    main()
