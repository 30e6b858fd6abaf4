"""Ablation of the SQM embedding at a small, equal budget: front end (shared-front-end cues vs the
raw waveform), 2 vs 3 channels (binaural vs binaural + mono source), with vs without the DoA task.

Every variant trains with the shipped recipe's settings on the first ``--scenes`` scenes of the
recipe's bank (the ones whose waveforms the bank keeps, so the waveform front end sees the same
scenes) for ``--steps`` steps, then is scored on one test bank of the held-out head (sonicom-2,
its own content and rooms; 2 scenes per direction): Spearman of the cosine distance with the
angular separation over all pairs, the common area of (same direction, other content) vs
(>= 30 deg) distances, and the accuracy on graded triplets (which of two is closer in direction).

    PYTHONPATH=src python benchmarks/ablate_sqm.py --cache /tmp/sqm_cache [--steps 600] [--out benchmarks/results/sqm_ablation.json]
"""
from __future__ import annotations

import argparse
import copy
import json
import time

import numpy as np
import torch

from spaq.config import from_dict
from spaq.metrics.functional.sqm import cosine_distance
from spaq.models.sqm import SQMConfig
from spaq.train.sqm import SQMDataSpec, SQMTrainConfig, bank, draw_triplets, subset, train_sqm

RECIPE = "src/spaq/resources/weights/sqm_v1.yaml"
VARIANTS = {
    "cues, 2 ch, DoA (shipped design)": {},
    "cues, 2 ch, no DoA": {"doa_weight": 0.0, "model": {"doa_head": False}},
    "cues, 3 ch (+ source), DoA": {"model": {"channels": 3}},
    "waveform, 2 ch, DoA": {"model": {"front_end": "wave"}},
}


def common_area(a, b) -> float:
    from scipy.stats import norm

    ma, sa, mb, sb = a.mean(), max(a.std(), 1e-9), b.mean(), max(b.std(), 1e-9)
    t = np.linspace(min(ma - 6 * sa, mb - 6 * sb), max(ma + 6 * sa, mb + 6 * sb), 20001)
    return float(np.trapezoid(np.minimum(norm.pdf(t, ma, sa), norm.pdf(t, mb, sb)), t))


def score(model, test: dict) -> dict:
    from scipy.stats import spearmanr

    cfg = model.cfg
    with torch.no_grad():
        if cfg.front_end == "wave":
            e = torch.cat([model(test["waves"][a:a + 64, : cfg.channels].float())["utterance"]
                           for a in range(0, len(test["waves"]), 64)])
        else:
            f = test["feats"].float()
            f = f if cfg.channels == 3 else f[:, : 7 * cfg.n_bands]
            e = model.encode(f)["utterance"]
    D = cosine_distance(e[:, None], e[None]).numpy()
    dirs = test["dirs"].numpy()
    A = np.degrees(np.arccos(np.clip(dirs @ dirs.T, -1, 1)))
    iu = np.triu_indices(len(D), 1)
    d, a = D[iu], A[iu]
    g = test["group"].numpy()
    same = (g[:, None] == g[None])[iu]
    out = {"spearman_all_pairs": float(spearmanr(a, d).statistic),
           "common_area": common_area(d[same], d[a >= 30]),
           "n_pairs": int(len(d))}
    gen = torch.Generator().manual_seed(5)
    a_, p_, q_, ap, aq = draw_triplets(test, 2000, gen, 0.5)
    ok = (aq - ap) > 2.0
    out["triplet_acc"] = float(((D[a_, p_] < D[a_, q_]) & ok.numpy()).sum() / ok.sum())
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--scenes", type=int, default=1000)
    ap.add_argument("--test-directions", type=int, default=150)
    ap.add_argument("--out", default="benchmarks/results/sqm_ablation.json")
    ap.add_argument("--only", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    base = SQMTrainConfig.from_yaml(RECIPE)
    spec = from_dict(SQMDataSpec, base.data, "data")
    cfg = SQMConfig.from_dict(base.model)
    # the first scenes of the recipe's bank (every scene is a function of seed, split and direction
    # index), so only the directions the ablation uses are rendered
    n_dirs = min(base.n_directions, -(-max(a.scenes, base.keep_waves) // 2))
    tr = bank(spec, n_dirs, base.seed, "train", base.clip_s, cfg, a.cache, print, base.keep_waves)
    va = bank(spec, base.n_val_directions, base.seed, "val", base.clip_s, cfg, a.cache, print,
              2 * base.n_val_directions)
    n = min(a.scenes, len(tr.get("waves", tr["dirs"])))
    banks = {"train": subset(tr, n), "val": va}
    tspec = SQMDataSpec(**{**spec.__dict__, "heads": ("sonicom-2",)})
    c0 = time.process_time()
    test = bank(tspec, a.test_directions, 4242, "ablation-test", base.clip_s, cfg, a.cache, print,
                keep_waves=2 * a.test_directions, allow_held_out=True)
    print(f"test bank {len(test['dirs'])} scenes, {time.process_time() - c0:.0f} s CPU", flush=True)
    results = {"steps": a.steps, "train_scenes": n, "test_scenes": int(len(test["dirs"])), "variants": {}}
    for name, over in VARIANTS.items():
        if a.only and a.only not in name:
            continue
        tc = copy.deepcopy(base)
        tc.steps = a.steps
        for k, v in over.items():
            if k == "model":
                tc.model = {**tc.model, **v}
            else:
                setattr(tc, k, v)
        model, summ = train_sqm(tc, banks=banks, log=lambda m: print(name, m, flush=True))
        r = score(model, test)
        r["train_cpu_s"] = summ["cpu_s"]
        r["val"] = summ["history"][-1]
        results["variants"][name] = r
        print(name, json.dumps(r), flush=True)
        with open(a.out, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
