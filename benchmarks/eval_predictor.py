"""Evaluate the reference-free predictor (issue 20) -> benchmarks/results/predictor.md.

    PYTHONPATH=src python benchmarks/eval_predictor.py --workdir DIR [--checkpoint PATH]

* held-out corpus: seed 9900, espeak voices en-gb/it/es-419/fr-be, binaural head SONICOM-2
  (none in the training recipe); target = the ``quality`` metric (teacher) on each pair;
  accuracy / macro-F1 of the class head against the teacher's MUSHRA band, MAE and Spearman of
  the uncalibrated score against the teacher, per format;
* real listeners: the speech-codec MUSHRA half, the 56 coded means, leave-one-stimulus-out
  calibrated Pearson (the network never saw these files; only the 2 calibration parameters are
  refitted without the held-out stimulus);
* severity ladders: per sweep, Spearman of the prediction against severity (clean = 0), mean per family;
* the feature ablation: the same recipe with feature groups left out.
Feature tables are cached in ``--workdir`` (``spaq train predictor`` writes the training one).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from spaq.train.predictor import reverb_longer as _reverb_longer  # noqa: E402
from spaq.train.predictor import (CorpusSplit, FitSection, PredictorTrainConfig, _calib, embedding_table,  # noqa: E402
                                  fit_calibration, fit_predictor, fit_rows, loso_calibration, mushra_predictor_table,
                                  mushra_stats, predict_table, score_class, split_records)

#: the held-out split: other seed, voices and head than configs/train/predictor.yaml
HELD_OUT = dict(seed=9900, voices=["en-gb", "it", "es-419", "fr-be"], heads=["sonicom-2"], scenes=1)
HELD_OUT_DURATION = 1.5  # CorpusSplit's default, as in the training recipe
LADDERS = ["noise", "lowpass", "clipping", "opus", "mp3", "aac", "reverb"]
ABLATION = {
    "psycho (the study's 19)": ["psycho", "format"],
    "psycho + band": ["psycho", "band", "format"],
    "psycho + spatial": ["psycho", "spatial", "format"],
    "band + spatial": ["band", "spatial", "format"],
    "psycho + band + spatial (v1's features)": ["psycho", "band", "spatial", "format"],
    "psycho + band + spatial + temporal (shipped)": ["psycho", "band", "spatial", "format", "temporal"],
}


def macro_f1(y, p) -> float:
    f = []
    for c in range(3):
        tp = np.sum((p == c) & (y == c))
        fp = np.sum((p == c) & (y != c))
        fn = np.sum((p != c) & (y == c))
        if tp + fp + fn == 0:
            continue
        f.append(2 * tp / max(2 * tp + fp + fn, 1))
    return float(np.mean(f))


def corpus_stats(pt, df) -> dict:
    from scipy.stats import spearmanr

    y = df["target"].to_numpy(dtype=np.float64)
    c = score_class(y)
    p = pt["proba"].argmax(1)
    return {"n": int(len(y)), "accuracy": float(np.mean(p == c)), "macro_f1": macro_f1(c, p),
            "mae": float(np.mean(np.abs(pt["raw"] - y))), "spearman": float(spearmanr(pt["raw"], y)[0]),
            "band_accuracy_from_score": float(np.mean(score_class(pt["raw"]) == c))}


def reverb_longer(df) -> dict:
    """Held-out sweep id -> True when its reverb lengthens the RT60 (:func:`spaq.train.predictor.reverb_longer`)."""
    return _reverb_longer(df, HELD_OUT["seed"], HELD_OUT_DURATION)


def ladders(pt, df, audible_only: bool = True) -> dict:
    """Per family, Spearman of the prediction against severity per sweep (clean = 0). With
    ``audible_only``, the sweeps a listener could judge without a reference: not the pink-noise
    source (noise added to noise is not heard as a fault) and, for reverb, the sweeps that
    lengthen the RT60."""
    from scipy.stats import spearmanr

    out = {}
    d = df.assign(pred=pt["raw"])
    longer = reverb_longer(df) if audible_only else {}
    for fam in LADDERS:
        rs = []
        g0 = d[d["family"] == fam]
        if audible_only:
            g0 = g0[g0["source"] != "pink_noise"]
            if fam == "reverb":
                g0 = g0[g0["sweep"].map(lambda s: longer.get(int(s), False))]
        for _, g in g0.groupby(["sweep", "format"]):
            if g["pred"].nunique() > 1:
                rs.append(float(spearmanr(g["severity"], g["pred"])[0]))
        out[fam] = {"mean": float(np.mean(rs)) if rs else float("nan"), "worst": float(np.max(rs)) if rs else float("nan"),
                    "median": float(np.median(rs)) if rs else float("nan"),
                    "n": len(rs), "share_le_-0.9": float(np.mean(np.array(rs) <= -0.9)) if rs else float("nan")}
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--checkpoint", default=None, help="default: the packaged predictor_v1")
    ap.add_argument("--config", default=str(ROOT / "configs/train/predictor.yaml"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/predictor.md"))
    ap.add_argument("--audio-train", default=None, help="audio kept by make_split (embedding ablation)")
    ap.add_argument("--audio-test", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    c0 = time.process_time()
    wd = Path(a.workdir)
    tc = PredictorTrainConfig.from_yaml(a.config)
    train = fit_rows(split_records(tc.corpus, wd / "predictor_train.csv"), tc.corpus, tc.fit)
    test = split_records(CorpusSplit(**HELD_OUT), wd / "predictor_heldout.csv")
    mt = mushra_predictor_table(tc.mushra_dir(), tc.calibration.ratings)
    from spaq.models import checkpoint
    from spaq.weights import resolve

    w = resolve("predictor_v1", path=a.checkpoint, offline=True)
    model, meta = checkpoint.load(w.path, architecture="predictor")
    pt = predict_table(model, test)
    res = {"overall": corpus_stats(pt, test), "per_format": {}, "checkpoint_sha256": w.sha256}
    for fmt in ["binaural", "foa", "hoa", "mono"]:
        m = (test["format"] == fmt).to_numpy()
        res["per_format"][fmt] = corpus_stats({k: v[m] for k, v in pt.items()}, test[m])
    res["ladders"] = ladders(pt, test)
    res["ladders_all_sweeps"] = ladders(pt, test, audible_only=False)
    raw_m = predict_table(model, mt)["raw"]
    res["mushra"] = {"loso": mushra_stats(mt, loso_calibration(mt, raw_m)), "uncalibrated": mushra_stats(mt, raw_m)}
    # ablation: same recipe, groups left out
    abl = {}
    for name, groups in ABLATION.items():
        fit = FitSection(**{**{k: getattr(tc.fit, k) for k in tc.fit.keys()}, "groups": groups})
        t1 = time.process_time()
        mdl, _ = fit_predictor(train, fit, log=lambda m: None)
        res["fit_cpu_s"] = time.process_time() - t1
        s = corpus_stats(predict_table(mdl, test), test)
        raw = predict_table(mdl, mt)["raw"]
        s["mushra_loso_pearson"] = mushra_stats(mt, loso_calibration(mt, raw))["pearson_coded"]
        s["ladder_mean"] = float(np.nanmean([v["mean"] for v in ladders(predict_table(mdl, test), test).values()]))
        abl[name] = s
    if a.audio_train and a.audio_test:
        t1 = time.process_time()
        # spaq's BAST encoder, the mono mix the metric gives it (spaq.train.predictor.embedding_table):
        # the same model `fit.embedding: bast` would train
        et, ee = embedding_table(a.audio_train, train, "bast"), embedding_table(a.audio_test, test, "bast")
        emb_cpu = time.process_time() - t1
        tr2, te2 = train.join(et), test.join(ee)
        for name, groups in (("BAST embedding (96) + format", ["format"]),
                             ("shipped features + BAST embedding", ["psycho", "band", "spatial", "format"])):
            fit = FitSection(**{**{k: getattr(tc.fit, k) for k in tc.fit.keys()}, "groups": groups, "embedding": "bast"})
            mdl, _ = fit_predictor(tr2, fit, log=lambda m: None)
            pt2 = predict_table(mdl, te2)
            s = corpus_stats(pt2, te2)
            s["mushra_loso_pearson"] = float("nan")
            s["ladder_mean"] = float(np.nanmean([v["mean"] for v in ladders(pt2, te2).values()]))
            abl[name] = s
        res["embedding_cpu_s"] = emb_cpu
    res["ablation"] = abl
    res["eval_cpu_s"] = time.process_time() - c0
    write(res, a.out, len(train), len(test))
    print(json.dumps(res, indent=1, default=float))


def write(res, out, n_train, n_test):
    L = ["# Reference-free predictor (issue 20): evaluation", "",
         "`PYTHONPATH=src python benchmarks/eval_predictor.py --workdir DIR` (feature tables cached in DIR).", "",
         f"Training split {n_train} items (seed 9100, voices en-us/de/fr-fr/es, heads KU100 + SONICOM-1); held-out split "
         f"{n_test} items (seed 9900, voices en-gb/it/es-419/fr-be, head SONICOM-2). Target: spaq's `quality` metric "
         "(teacher) on each (clean, degraded) pair; classes: its MUSHRA band (>= 70 high, 40-70 medium, < 40 low). "
         "MAE and Spearman use the network's uncalibrated score (the teacher's scale); the class is the class head's.", "",
         "## Held-out corpus", "", "| format | n | accuracy | macro-F1 | MAE | Spearman |", "|---|---|---|---|---|---|"]
    for k, s in [("all", res["overall"])] + list(res["per_format"].items()):
        L.append(f"| {k} | {s['n']} | {s['accuracy']:.3f} | {s['macro_f1']:.3f} | {s['mae']:.1f} | {s['spearman']:.3f} |")
    m = res["mushra"]
    L += ["", "## Real listeners (speech-codec MUSHRA half, 56 coded means, reference-free)", "",
          "| predictor | Pearson | Spearman | RMSE |", "|---|---|---|---|",
          f"| spaq predictor, LOSO-calibrated | {m['loso']['pearson_coded']:.3f} | {m['loso']['spearman_coded']:.3f} | {m['loso']['rmse_coded']:.1f} |",
          f"| spaq predictor, uncalibrated (teacher scale) | {m['uncalibrated']['pearson_coded']:.3f} | {m['uncalibrated']['spearman_coded']:.3f} | {m['uncalibrated']['rmse_coded']:.1f} |",
          "| DNSMOS P.808 (benchmarks/eval_quality.py) | 0.287 | | |", "| DNSMOS OVRL | 0.016 | | |", "",
          "## Severity ladders (held-out sweeps; per sweep Spearman of the prediction vs severity 0, 0.2, ..., 1)", "",
          "Audible sweeps: speech and harmonic sources (noise added to a pink-noise source is no fault a listener "
          "hears without a reference) and, for reverb, the sweeps that lengthen the RT60 (the engine draws the "
          "direction; a drier room is no impairment). All sweeps in the last columns.", "",
          "| family | sweeps | mean | median | worst | share <= -0.9 | all sweeps: n, mean |", "|---|---|---|---|---|---|---|"]
    for f, v in res["ladders"].items():
        w = res["ladders_all_sweeps"][f]
        L.append(f"| {f} | {v['n']} | {v['mean']:.3f} | {v['median']:.3f} | {v['worst']:.3f} | {v['share_le_-0.9']:.2f} | "
                 f"{w['n']}, {w['mean']:.3f} |")
    L += ["", "## Feature ablation (same recipe and seed, groups left out; `format` one-hot always in)", "",
          "| features | accuracy | macro-F1 | MAE | Spearman | MUSHRA LOSO Pearson | mean ladder Spearman |",
          "|---|---|---|---|---|---|---|"]
    for n, s in res["ablation"].items():
        L.append(f"| {n} | {s['accuracy']:.3f} | {s['macro_f1']:.3f} | {s['mae']:.1f} | {s['spearman']:.3f} | "
                 f"{s['mushra_loso_pearson']:.3f} | {s['ladder_mean']:.3f} |")
    L += ["", f"Fitting one network on the cached features: {res['fit_cpu_s']:.1f} s CPU"
          + (f"; BAST embeddings of both splits: {res['embedding_cpu_s']:.0f} s CPU" if "embedding_cpu_s" in res else "")
          + f"; this evaluation {res['eval_cpu_s']:.0f} s CPU.", ""]
    from spaq.files import atomic_write

    atomic_write(out, lambda tmp: Path(tmp).write_text("\n".join(L), encoding="utf-8"))


if __name__ == "__main__":
    main()
