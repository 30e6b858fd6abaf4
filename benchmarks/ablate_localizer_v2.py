"""Small-budget ablation of the streaming BAST recipe (issue 16): inputs (cue features vs log-mel
at the same time-frequency grid: 29 bands x 20 ms frames), integration (SUB vs ADD vs CONCAT), ears
(separate vs shared transformer weights), direction loss (MIX vs MSE vs AD) and heads (class head
only vs class + explicit elevation head). One factor at a time from the recipe
(``spaq/resources/weights/bast_cues.yaml``), each trained from the same seed on the same stream of
scenes (``--steps`` batches, smaller banks than the recipe) and scored on the recipe's validation
scenes (split "val": unseen sources, rooms and noise; KU100 and sonicom-1, half in rooms; one
0.48 s window each). Pooling over windows is ablated on whole items by tune_localizer_auto.py.

Usage: python benchmarks/ablate_localizer_v2.py RECIPE.yaml [--steps 150] [--out rows.jsonl]
"""
import argparse
import copy
import json
import time

import torch

from spaq.train.localizer import LocalizerTrainConfig, train_cue_localizer

VARIANTS = [
    ("cues, SUB, class head (recipe)", {}, {}),
    ("log-mel (29 mel bands, 20 ms hop)", {"features": "logmel", "n_fft": 2048, "fmin": 300.0, "fmax": 12000.0}, {}),
    ("cues, CONCAT", {"integration": "CONCAT"}, {}),
    ("cues, class + elevation head", {"elevation_head": True}, {}),
    ("cues, ADD", {"integration": "ADD"}, {}),
    ("cues, shared ear weights", {"share_weights": True}, {}),
    ("cues, MSE direction loss", {}, {"loss": "MSE"}),
    ("cues, AD direction loss", {}, {"loss": "AD"}),
    # the spread a seed alone gives (other initialisation, stream and validation scenes)
    ("cues, SUB, class head (recipe), seed 1", {}, {"seed": 1}),
    ("cues, shared ear weights, seed 1", {"share_weights": True}, {"seed": 1}),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("recipe")
    ap.add_argument("--steps", type=int, default=250)
    ap.add_argument("--out", default="")
    ap.add_argument("--only", default="", help="comma list of variant indices")
    a = ap.parse_args()
    torch.set_num_threads(1)
    base = LocalizerTrainConfig.from_yaml(a.recipe)
    base.steps, base.val_every = a.steps, a.steps
    # banks and validation scenes as in the recipe: the recipe run itself is the baseline row
    for i, (name, model_over, tc_over) in enumerate(VARIANTS):
        if a.only and str(i) not in a.only.split(","):
            continue
        tc = copy.deepcopy(base)
        tc.model = {**tc.model, **model_over}
        for k, v in tc_over.items():
            setattr(tc, k, v)
        c0 = time.process_time()
        s = train_cue_localizer(tc, f"/tmp/ablate_v2_{i}.pt", log=lambda m: None)
        h = s["history"][-1]
        row = {"variant": name, "steps": a.steps, "batch": tc.batch_size, "cpu_s": round(time.process_time() - c0, 1),
               **{k[4:]: h[k] for k in h if k.startswith("val_")}}
        print(json.dumps(row), flush=True)
        if a.out:
            with open(a.out, "a") as fh:
                fh.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
