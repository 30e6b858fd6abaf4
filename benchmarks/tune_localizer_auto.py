"""Development-scene choice of the binaural ``method="auto"`` rule (issue 16).

On development scenes (content seed 777, not the held-out 160016 of eval_localizer_v2.py) of the
KU100 anechoic, KU100 rooms, sonicom-2 and two-source sets: per item the direct-sound coherence
(:func:`spaq.localization.localize.direct_coherence`) and the error of template matching and of the
cue BAST (``--weights`` or the packaged ``bast_cues``); prints the error of the rule "templates when
coherence >= t, else BAST" for a range of t, and the cue BAST's error for several coherence powers of
its window pooling.

Usage: python benchmarks/tune_localizer_auto.py [--n 48] [--cache DIR] [--weights CKPT] [--json OUT]
"""
import argparse
import importlib
import json

import numpy as np
import torch

import eval_localizer_v2 as ev
from spaq.localization import localize
L = importlib.import_module("spaq.localization.localize")
from spaq.spatial.angles import sph2cart


def err(pred_dirs, true):
    return float(np.degrees(np.arccos(np.clip(np.max(pred_dirs @ true.T), -1, 1))))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=48)
    ap.add_argument("--cache", default="")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--json", default="")
    ap.add_argument("--sets", default="ku100_anechoic,ku100_rooms,sonicom2_anechoic")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    powers = (0.0, 2.0, 4.0, 8.0)
    for name in a.sets.split(","):
        x, dirs, kinds = ev.get_set(name, a.n, a.cache, 777)
        for xi, di, k in zip(x, dirs, kinds):
            xi = xi.astype(np.float64)
            _, f, lev = L._cue_input(xi, ev.FS)
            coh = L.direct_coherence(f, lev)
            rt = localize(xi, ev.FS, method="templates")
            r = {"set": name, "kind": k, "coherence": coh,
                 "templates": err(sph2cart(rt.azimuth_deg, rt.elevation_deg), di[:1])}
            for pw in powers:
                L.CUE_COHERENCE_POWER = pw
                rb = localize(xi, ev.FS, method="bast", weights=a.weights)
                r[f"bast_p{pw:g}"] = err(sph2cart(rb.azimuth_deg, rb.elevation_deg), di[:1])
            rows.append(r)
        print(name, "done", flush=True)
    out = {"rows": rows}
    for pw in powers:
        for name in a.sets.split(","):
            e = [r[f"bast_p{pw:g}"] for r in rows if r["set"] == name]
            print(f"bast pooling power {pw:g} {name}: median {np.median(e):.1f} mean {np.mean(e):.1f}")
    best_p = min(powers, key=lambda pw: np.mean([r[f"bast_p{pw:g}"] for r in rows]))
    out["best_power"] = best_p
    print("best pooling power (mean over all dev items):", best_p)
    sets = a.sets.split(",")
    out["rule"] = {}
    for t in (0.0, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.92, 0.95, 0.97, 1.01):
        per = {}
        for name in sets:
            e = [r["templates"] if r["coherence"] >= t else r[f"bast_p{best_p:g}"] for r in rows if r["set"] == name]
            per[name] = (float(np.median(e)), float(np.mean(e)))
        out["rule"][t] = per
        print(f"t={t:.2f} " + " ".join(f"{n}: {m:.1f}/{mm:.1f}" for n, (m, mm) in per.items()))
    for name in sets:
        c = [r["coherence"] for r in rows if r["set"] == name]
        print(f"coherence {name}: median {np.median(c):.3f} 10-90 % {np.percentile(c, 10):.3f}-{np.percentile(c, 90):.3f}")
    if a.json:
        json.dump(out, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
