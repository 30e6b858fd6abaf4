"""The cue-feature BAST (bast_cues) and the ``method="auto"`` rule on the sets of
eval_localizer_v2.py, one front-end pass per item (issue 16).

Per item the cue features are computed once (:func:`spaq.localization.localize._cue_input`) and
shared by: the direct-sound coherence, template matching (default heads) and the cue BAST with
whole-signal pooling of its windows (weight sqrt(power * coherence^(2 p)) for each pooling power p
in ``--powers``). ``auto`` applies the shipped rule (templates when the coherence is at least
``AUTO_COHERENCE``, else the cue BAST with the shipped pooling power). Per-item values are kept
in the JSON (``items``), so the rule's threshold can be chosen on development scenes
(``--seed 777``) and applied unchanged to the held-out ones (the default seed).

Usage: python benchmarks/eval_localizer_cues.py [--n 100] [--seed S] [--cache DIR] [--json OUT]
           [--weights CKPT] [--powers 0,2,4,8] [--sets a,b]
       python benchmarks/eval_localizer_cues.py --rule OUT.json  (rule table over thresholds)
"""
import argparse
import importlib
import json
import sys
import time

import numpy as np
import torch

import eval_localizer_v2 as ev
from spaq.spatial.angles import sph2cart
from spaq.train.localizer import evaluate_directions

L = importlib.import_module("spaq.localization.localize")


def _unit(res):
    return sph2cart(np.nan_to_num(res.azimuth_deg[:1]), np.nan_to_num(res.elevation_deg[:1]))[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=ev.SEED)
    ap.add_argument("--cache", default="")
    ap.add_argument("--json", default="")
    ap.add_argument("--weights", default=None)
    ap.add_argument("--powers", default="0,2,4,8")
    ap.add_argument("--sets", default="ku100_anechoic,ku100_horizontal,ku100_rooms,sonicom2_anechoic")
    a = ap.parse_args()
    torch.set_num_threads(1)
    powers = [float(p) for p in a.powers.split(",")]
    model, _ = L.load_localizer(a.weights, L.CUES_WEIGHTS_NAME)
    out = {"seed": a.seed, "n": a.n, "auto_coherence": L.AUTO_COHERENCE, "pooling_power": L.CUE_COHERENCE_POWER,
           "sets": {}, "items": {}}
    for name in a.sets.split(","):
        x, dirs, kinds = ev.get_set(name, a.n, a.cache, a.seed)
        rows = {"coherence": [], "templates": [], **{f"bast_p{p:g}": [] for p in powers}}
        cpu = {"front_end": 0.0, "templates": 0.0, "bast": 0.0}
        for xi in x:
            xi = xi.astype(np.float64)
            c = time.process_time()
            cues = L._cue_input(xi, ev.FS)
            cpu["front_end"] += time.process_time() - c
            rows["coherence"].append(L.direct_coherence(cues[1], cues[2]))
            c = time.process_time()
            rows["templates"].append(_unit(L._localize_templates(xi, ev.FS, 1, None, None, cues=cues)))
            cpu["templates"] += time.process_time() - c
            c = time.process_time()
            for p in powers:
                L.CUE_COHERENCE_POWER = p
                rows[f"bast_p{p:g}"].append(_unit(L._localize_binaural(xi, ev.FS, "x", 1, a.weights, 30.0, None,
                                                                       cues=cues)))
            cpu["bast"] += (time.process_time() - c) / len(powers)
        L.CUE_COHERENCE_POWER = out["pooling_power"]
        true = dirs[:, 0]
        coh = np.array(rows["coherence"])
        preds = {k: np.stack(v) for k, v in rows.items() if k != "coherence"}
        shipped = f"bast_p{out['pooling_power']:g}"
        preds["auto"] = np.where((coh >= L.AUTO_COHERENCE)[:, None], preds["templates"], preds[shipped])
        res = {}
        for k, p in preds.items():
            st = evaluate_directions(p, true)
            err = np.degrees(np.arccos(np.clip(np.sum(p * true, -1), -1, 1)))
            st["median_by_kind"] = {kk: float(np.median(err[np.array(kinds) == kk])) for kk in sorted(set(kinds))}
            res[k] = st
            print(name, k, json.dumps({kk: round(v, 3) for kk, v in st.items() if isinstance(v, float)}), flush=True)
        res["auto"]["share_bast"] = float(np.mean(coh < L.AUTO_COHERENCE))
        n = len(x)
        res["cpu_ms_per_item"] = {k: 1000 * v / n for k, v in cpu.items()}
        out["sets"][name] = res
        out["items"][name] = {"coherence": coh.tolist(), "true": true.tolist(),
                              **{k: v.tolist() for k, v in preds.items()}}
        if a.json:
            with open(a.json, "w") as fh:
                json.dump(out, fh)


def rule(path):
    d = json.load(open(path))
    p = f"bast_p{d['pooling_power']:g}"
    for t in (0.0, 0.7, 0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.96, 1.01):
        cells = []
        for name, it in d["items"].items():
            true, coh = np.array(it["true"]), np.array(it["coherence"])
            pred = np.where((coh >= t)[:, None], np.array(it["templates"]), np.array(it[p]))
            err = np.degrees(np.arccos(np.clip(np.sum(pred * true, -1), -1, 1)))
            cells.append(f"{name} {np.median(err):.1f}/{np.mean(err):.1f} (bast {np.mean(coh < t):.0%})")
        print(f"t={t:.2f}: " + "; ".join(cells))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--rule":
        rule(sys.argv[2])
    else:
        main()
