"""The reference-free predictor on real listeners' spatial judgements (issue 20): the 42 rebuilt items
of the shared binaural MUSHRA of parametric spatial-audio codings (7 trials x 6 codings; issue 19's
test), scored from the coded file alone.

    python benchmarks/rebuild_param_coding.py --cache DIR     # once (about 10 min CPU)
    PYTHONPATH=src python benchmarks/eval_predictor_param_coding.py --cache DIR
        [--checkpoint PATH] [--out benchmarks/results/predictor_param_coding.md]

Nothing of the predictor was fitted or chosen on this test (its calibration saw only the speech-codec
half). Reported: Pearson / Spearman of the score with the mean ratings over the 42 items; the same after a
leave-one-trial-out calibration (the checkpoint's own scale: ``a + b * logit(score)`` fitted on the other 6
trials); the mean within-trial Spearman (does it order the 6 codings of one scene?); what it gives the 7
hidden references; and, on the same items, the packaged Distill-MOS (reference-free) and the authors'
intrusive BAM-Q and PEMO-Q scores (they see the reference: context, not rivals).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def _stats(pred, y) -> dict:
    from scipy.stats import pearsonr, spearmanr

    pred, y = np.asarray(pred, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(pred)
    return {"pearson": float(pearsonr(pred[ok], y[ok])[0]), "spearman": float(spearmanr(pred[ok], y[ok])[0]),
            "n": int(ok.sum())}


def _within_trial(table, pred) -> float:
    from scipy.stats import spearmanr

    t = table.assign(pred=np.asarray(pred, dtype=np.float64))
    rs = [float(spearmanr(g["pred"], g["mean"])[0]) for _, g in t.groupby("trial") if g["pred"].nunique() > 1]
    return float(np.mean(rs)) if rs else float("nan")


def main(argv=None):
    import torch

    import spaq
    from spaq.files import atomic_write
    from spaq.metrics import metric_class
    from spaq.models import checkpoint as ckpt
    from spaq.train.predictor import loso_calibration
    from spaq.train.quality import param_coding_table
    from spaq.weights import resolve

    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", required=True, help="the folder benchmarks/rebuild_param_coding.py wrote")
    ap.add_argument("--checkpoint", default=None, help="default: the packaged predictor_v1")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/predictor_param_coding.md"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    root = Path(a.cache)
    table = param_coding_table(root)
    w = resolve("predictor_v1", path=a.checkpoint, offline=True)
    model, _ = ckpt.load(w.path, architecture="predictor")
    scale = model.cfg.calib_scale
    score = np.array([spaq.predict(str(root / f), checkpoint=w.path)["score"] for f in table["deg"]])
    refs = sorted(set(table["ref"]))
    ref_score = {r: spaq.predict(str(root / r), checkpoint=w.path)["score"] for r in refs}
    y = table["mean"].to_numpy(dtype=np.float64)
    loto = loso_calibration(table.assign(stimulus=table["trial"]), score, scale)  # a trial is the left-out unit
    rows = {"spaq predictor, score (no fit to these listeners)": (score, _stats(score, y)),
            f"spaq predictor, leave-one-trial-out calibrated ({scale})": (loto, _stats(loto, y))}
    why = metric_class("distillmos").available()
    if not why:
        d = [spaq.score(str(root / f), str(root / f), metrics=["distillmos"], align=False, strict=True)
             .results["distillmos"].score for f in table["deg"]]
        rows["Distill-MOS (packaged, reference-free)"] = (np.array(d), _stats(d, y))
    for k, label in (("bamq", "BAM-Q (authors' scores; intrusive)"), ("pemoq", "PEMO-Q (authors' scores; intrusive)")):
        rows[label] = (table[k].to_numpy(dtype=np.float64), _stats(table[k], y))

    L = ["# Reference-free predictor on the spatial-codings MUSHRA (issue 20)", "",
         f"`PYTHONPATH=src python benchmarks/eval_predictor_param_coding.py --cache DIR` (checkpoint sha256 "
         f"{w.sha256[:8]}...). The 42 rebuilt items of the shared binaural MUSHRA of parametric spatial-audio "
         "codings (7 trials x FOA, two parametric, two hybrid codings, mono; mean ratings of 22 sessions; "
         "`benchmarks/rebuild_param_coding.py`), each scored from the coded file alone (44.1 kHz, resampled). "
         "Nothing of the predictor was fitted or chosen on this test.", "",
         "| predictor | Pearson | Spearman | mean within-trial Spearman (6 codings) |", "|---|---|---|---|"]
    for label, (p, st) in rows.items():
        L.append(f"| {label} | {st['pearson']:.3f} | {st['spearman']:.3f} | {_within_trial(table, p):.3f} |")
    t = table.assign(score=score)
    L += ["", "Per condition (mean over the 7 trials):", "", "| condition | mean rating | mean predictor score |",
          "|---|---|---|"]
    for cond, g in t.groupby("condition", sort=False):
        L.append(f"| {cond} | {g['mean'].mean():.1f} | {g['score'].mean():.1f} |")
    L += ["", "Hidden references (not among the 42; rated about 100 by design): predictor score "
          + ", ".join(f"{Path(r).stem.replace('_ref_binau', '')} {v:.1f}" for r, v in ref_score.items()) + ".", ""]
    atomic_write(a.out, lambda tmp: Path(tmp).write_text("\n".join(L), encoding="utf-8"))
    print("\n".join(L))


if __name__ == "__main__":
    main()
