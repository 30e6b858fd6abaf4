"""How much the predictor's held-out figures move with the held-out content (issue 20): the
evaluation split of ``eval_predictor.py`` (voices en-gb/it/es-419/fr-be, head SONICOM-2, nothing of the
training recipe) drawn with several seeds, per seed and pooled over all sweeps.

    PYTHONPATH=src python benchmarks/eval_predictor_seeds.py --workdir DIR [--seeds 9900 9901 9902]
        [--checkpoint PATH] [--out benchmarks/results/predictor_seeds.md]

Per seed: accuracy / macro-F1 / MAE / Spearman against the teacher, and the ladder Spearman per
family (mean over its audible sweeps, as ``eval_predictor.py``); pooled: the mean over every sweep of
all seeds (8 sweeps per family and seed; reverb: those that lengthen the room). Feature tables are
cached in DIR (about 3 min of CPU per seed), with the FOA / 3OA features read through the decode too, so
that a routed checkpoint (``ambisonic``) and one that is not are judged on the same tables.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_predictor as EP  # noqa: E402

from spaq.files import atomic_write  # noqa: E402
from spaq.models import checkpoint  # noqa: E402
from spaq.train.predictor import CorpusSplit, predict_table, split_records  # noqa: E402
from spaq.weights import resolve  # noqa: E402


TEACHER_DROP = 10.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--seeds", type=int, nargs="+", default=[9900, 9901, 9902])
    ap.add_argument("--checkpoint", default=None, help="default: the packaged predictor_v1")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/predictor_seeds.md"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    w = resolve("predictor_v1", path=a.checkpoint, offline=True)
    model, _ = checkpoint.load(w.path, architecture="predictor")
    rows, pooled = [], {f: [] for f in EP.LADDERS}
    heard = {f: [] for f in EP.LADDERS}  # the sweeps whose teacher falls >= TEACHER_DROP (predictor.md's column)
    fmts = ("binaural", "foa", "hoa", "mono")
    per_fmt = {(fmt, f): [] for fmt in fmts for f in EP.LADDERS}
    for seed in a.seeds:
        test = split_records(CorpusSplit(**{**EP.HELD_OUT, "seed": seed, "input_level_dbfs": model.cfg.input_level_dbfs,
                                            "decode_features": True}),
                             Path(a.workdir) / f"predictor_heldout_seed{seed}.csv", log=lambda m: None)
        pt = predict_table(model, test)
        st = EP.corpus_stats(pt, test)
        lad = EP.ladders(pt, test, seed=seed, per_sweep=True)
        lad_heard = EP.ladders(pt, test, seed=seed, per_sweep=True, min_teacher_drop=TEACHER_DROP)
        for f in EP.LADDERS:
            pooled[f] += lad[f].get("sweeps", [])
            heard[f] += lad_heard[f].get("sweeps", [])
        for fmt in fmts:
            sub = (test["format"] == fmt).to_numpy()
            lf = EP.ladders({k: v[sub] for k, v in pt.items()}, test[sub], seed=seed, per_sweep=True)
            for f in EP.LADDERS:
                per_fmt[fmt, f] += lf[f].get("sweeps", [])
        rows.append((seed, st, lad))
        print(seed, {k: round(st[k], 3) for k in ("accuracy", "macro_f1", "mae", "spearman")},
              {f: round(v["mean"], 3) for f, v in lad.items()}, flush=True)
    L = ["# Reference-free predictor: the held-out figures over several held-out seeds", "",
         f"`PYTHONPATH=src python benchmarks/eval_predictor_seeds.py --workdir DIR --seeds {' '.join(map(str, a.seeds))}`; "
         f"checkpoint sha256 {w.sha256[:8]}...; the split of `eval_predictor.py` (voices en-gb/it/es-419/fr-be, head "
         "SONICOM-2) drawn with each seed (9900 is the one `predictor.md` reports).", "",
         "| seed | n | accuracy | macro-F1 | MAE | Spearman | " + " | ".join(EP.LADDERS) + " |",
         "|---|---|---|---|---|---|" + "---|" * len(EP.LADDERS)]
    for seed, st, lad in rows:
        L.append(f"| {seed} | {st['n']} | {st['accuracy']:.3f} | {st['macro_f1']:.3f} | {st['mae']:.1f} | {st['spearman']:.3f} | "
                 + " | ".join(f"{lad[f]['mean']:.3f} ({lad[f]['n']})" for f in EP.LADDERS) + " |")
    L.append("| pooled (every sweep) | | | | | | " + " | ".join(
        f"**{np.mean(pooled[f]):.3f}** ({len(pooled[f])})" if pooled[f] else "-" for f in EP.LADDERS) + " |")
    L += ["", "Ladder cells: mean per-sweep Spearman of the prediction against severity (number of sweeps); target "
          "<= -0.9 per family. Share of sweeps <= -0.9, pooled: " + ", ".join(
              f"{f} {np.mean(np.array(pooled[f]) <= -0.9):.2f}" for f in EP.LADDERS if pooled[f]) + ".", "",
          f"Pooled over the sweeps whose teacher falls >= {TEACHER_DROP:g} points from clean to the most severe step "
          "(`predictor.md`'s teacher-audible column: a codec ladder on a sustained tone that the teacher, with its "
          "reference, scores near 100 throughout is no ladder a listener hears): " + ", ".join(
              f"{f} {np.mean(heard[f]):.3f} ({len(heard[f])})" for f in EP.LADDERS if heard[f]) + ".", "",
          "Pooled per format (mean per-sweep Spearman, number of sweeps; mono rows are W of the FOA scenes):", "",
          "| format | " + " | ".join(EP.LADDERS) + " |", "|---|" + "---|" * len(EP.LADDERS)]
    for fmt in fmts:
        L.append(f"| {fmt} | " + " | ".join(f"{np.mean(per_fmt[fmt, f]):.3f} ({len(per_fmt[fmt, f])})" if per_fmt[fmt, f]
                                            else "-" for f in EP.LADDERS) + " |")
    L.append("")
    atomic_write(a.out, lambda tmp: Path(tmp).write_text("\n".join(L), encoding="utf-8"))
    print("\n".join(L))


if __name__ == "__main__":
    main()
