"""Ablation of the BAST localiser on a small budget: integration (ADD/SUB/CONCAT), shared vs
separate ear encoders, loss (MSE/AD/MIX). One factor changes at a time from the recipe's
baseline; every variant trains on the same first N rendered training scenes of the recipe
(features cached by `train_localizer`) with the same seed, and is scored on the held-out
KU100 anechoic set (unseen content) of benchmarks/eval_localizer.py.

With ``--spectral-batch K`` (default 32) every batch also gets K fresh spectral-domain
anechoic scenes (one shared source bank for all variants).

Usage: python benchmarks/ablate_localizer.py RECIPE.yaml --cache DIR [--n 4000] [--epochs 4] [--out rows.jsonl]
"""
import argparse
import copy
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from eval_localizer import evaluate  # noqa: E402

from spaq.models.bast import BASTConfig  # noqa: E402
from spaq.train.localizer import (LocalizerTrainConfig, SpectralSceneSampler, SyntheticSpec, _fit,  # noqa: E402
                                  build_model, classes_of)

VARIANTS = [
    ("baseline", {}),
    ("ADD", {"integration": "ADD"}),
    ("CONCAT", {"integration": "CONCAT"}),
    ("shared", {"share_weights": True}),
    ("MSE", {"loss": "MSE"}),
    ("AD", {"loss": "AD"}),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("recipe")
    ap.add_argument("--cache", required=True)
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--n-test", type=int, default=400)
    ap.add_argument("--only", default="")
    ap.add_argument("--spectral-batch", type=int, default=32)
    ap.add_argument("--spectral-bank", type=int, default=1500)
    ap.add_argument("--out", default="ablation.jsonl")
    a = ap.parse_args()
    torch.set_num_threads(1)
    base = LocalizerTrainConfig.from_yaml(a.recipe)
    files = sorted(f for f in os.listdir(a.cache) if f.startswith("loc_train_"))
    vfiles = sorted(f for f in os.listdir(a.cache) if f.startswith("loc_val_"))
    tr = torch.load(os.path.join(a.cache, files[0]), weights_only=True)
    va = torch.load(os.path.join(a.cache, vfiles[0]), weights_only=True)
    n = min(a.n, tr["dirs"].shape[0])
    spec = SyntheticSpec.from_dict(base.data)
    sampler = None
    if a.spectral_batch > 0:
        sampler = SpectralSceneSampler(BASTConfig.from_dict(base.model), spec, a.spectral_bank, base.seed,
                                       split="ablation")
    for name, change in VARIANTS:
        if a.only and name not in a.only.split(","):
            continue
        tc = copy.deepcopy(base)
        tc.epochs = a.epochs
        tc.spectral_batch = a.spectral_batch
        tc.model = dict(tc.model)
        for k, v in change.items():
            if k == "loss":
                tc.loss = v
            else:
                tc.model[k] = v
        model = build_model(tc, classes_of(SyntheticSpec.from_dict(tc.data)))
        t = time.time()
        s = _fit(model, tr["feats"][:n], tr["dirs"][:n], tr["cls"][:n], va["feats"], va["dirs"], va["cls"], tc,
                 crop_train=False, log=lambda m: print(name, m, flush=True), sampler=sampler)
        res = evaluate(None, a.n_test, ["ku100_anechoic"], cache_dir=a.cache, model=model, log=lambda *x: None)
        m = res["sets"]["ku100_anechoic"]
        row = {"variant": name, **change, "integration_": tc.model.get("integration"),
               "share_weights_": tc.model.get("share_weights"), "loss_": tc.loss, "n_train": n, "epochs": a.epochs,
               "train_seconds": round(time.time() - t), "params": sum(p.numel() for p in model.parameters()), **m}
        print(json.dumps(row), flush=True)
        with open(a.out, "a") as fh:
            fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
