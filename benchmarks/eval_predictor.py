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
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from spaq.train.predictor import reverb_longer as _reverb_longer  # noqa: E402
from spaq.train.predictor import (CorpusSplit, FitSection, PredictorTrainConfig, embedding_table,  # noqa: E402
                                  fit_predictor, fit_rows, loso_calibration, mushra_predictor_table,
                                  mushra_stats, predict_table, score_class, split_records,
                                  training_rows)

#: the held-out split: other seed, voices and head than configs/train/predictor.yaml
HELD_OUT = dict(seed=9900, voices=["en-gb", "it", "es-419", "fr-be"], heads=["sonicom-2"], scenes=1,
                speech_upper_band_db=-18.0, degradation_options="engine", room_reference_rt60_s=0.4,
                room_reference_formats=["binaural", "hoa"])
# full-band speech, as the recipe's corpus (configs/train/predictor.yaml); degradations: the corpus
# engine's current defaults (the recipe pins those its weights were trained with: RECIPE_OPTIONS); the
# teacher's room reference as the recipe's (room_reference: long rooms judged against the same room at 0.4 s)
HELD_OUT_DURATION = 1.5  # CorpusSplit's default, as in the training recipe
LADDERS = ["noise", "lowpass", "clipping", "opus", "mp3", "aac", "reverb"]
#: the first weights' fit (the study's features + band + spatial; 64-32 MLP, all rows, MSE only)
V1_FIT = dict(groups=["psycho", "band", "spatial", "format"], hidden=[64, 32], epochs=300, members=1, logit_weight=0.0,
              rank_weight=0.0, rank_margin=0.02, rank_on_logit=False, audible_only=False)
_ALL = ["psycho", "band", "spatial", "format", "temporal"]
#: (name, fit overrides of the recipe): feature groups left out of the shipped recipe, then the
#: first weights' recipe and the steps from it to the shipped one
ABLATION = {
    "psycho (the study's 19)": dict(groups=["psycho", "format"]),
    "psycho + band": dict(groups=["psycho", "band", "format"]),
    "psycho + spatial": dict(groups=["psycho", "spatial", "format"]),
    "band + spatial": dict(groups=["band", "spatial", "format"]),
    "psycho + band + spatial (no temporal)": dict(groups=["psycho", "band", "spatial", "format"]),
    "no edge (the five groups of the first predictor_v1)": dict(groups=_ALL),
    "no edge, 5 networks (the first predictor_v1's fit)": dict(groups=_ALL, members=5),
    "shipped recipe (all six groups)": {},
    "v1 recipe (49 features, 64-32, MSE, all rows)": V1_FIT,
    "v1 + temporal": {**V1_FIT, "groups": _ALL},
    "v1 + temporal + audible rows": {**V1_FIT, "groups": _ALL, "audible_only": True},
    "... + logit term": {**V1_FIT, "groups": _ALL, "audible_only": True, "logit_weight": 0.1},
    "... + ranking on the logit": {**V1_FIT, "groups": _ALL, "audible_only": True, "logit_weight": 0.1,
                                   "rank_weight": 4.0, "rank_margin": 0.2, "rank_on_logit": True},
    "... + 128-64, 400 epochs (one member)": {**V1_FIT, "groups": _ALL, "audible_only": True, "logit_weight": 0.1,
                                              "rank_weight": 4.0, "rank_margin": 0.2, "rank_on_logit": True,
                                              "hidden": [128, 64], "epochs": 400},
}


EMBEDDING_LABELS = {"bast": "BAST embedding (96)", "distillmos": "Distill-MOS embedding (200)"}


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


def reverb_longer(df, seed: int | None = None) -> dict:
    """Held-out sweep id -> True when its reverb lengthens the RT60 (:func:`spaq.train.predictor.reverb_longer`);
    ``seed``: the split's (default: the held-out split's)."""
    return _reverb_longer(df, HELD_OUT["seed"] if seed is None else int(seed), HELD_OUT_DURATION)


def ladders(pt, df, audible_only: bool = True, min_teacher_drop: float = 0.0, seed: int | None = None,
            per_sweep: bool = False, families=None) -> dict:
    """Per family, Spearman of the prediction against severity per sweep (clean = 0). With
    ``audible_only``, the sweeps a listener could judge without a reference: not the pink-noise
    source (noise added to noise is not heard as a fault) and, for reverb, the sweeps that
    lengthen the RT60. ``min_teacher_drop``: only sweeps whose teacher score falls at least this
    much from the clean item to the most severe one (a codec ladder on a sustained tone that the
    teacher scores 100 throughout is no ladder anyone hears). ``families``: these instead of
    :data:`LADDERS`."""
    from scipy.stats import spearmanr

    out = {}
    d = df.assign(pred=pt["raw"])
    longer = reverb_longer(df, seed) if audible_only else {}
    for fam in (LADDERS if families is None else families):
        rs = []
        g0 = d[d["family"] == fam]
        if audible_only:
            g0 = g0[g0["source"] != "pink_noise"]
            if fam == "reverb":
                g0 = g0[g0["sweep"].map(lambda s: longer.get(int(s), False))]
        for _, g in g0.groupby(["sweep", "format"]):
            t = g.sort_values("severity")["target"].to_numpy()
            if t[0] - t[-1] < min_teacher_drop:
                continue
            if g["pred"].nunique() > 1:
                rs.append(float(spearmanr(g["severity"], g["pred"])[0]))
        out[fam] = {"mean": float(np.mean(rs)) if rs else float("nan"), "worst": float(np.max(rs)) if rs else float("nan"),
                    "median": float(np.median(rs)) if rs else float("nan"),
                    "n": len(rs), "share_le_-0.9": float(np.mean(np.array(rs) <= -0.9)) if rs else float("nan")}
        if per_sweep:
            out[fam]["sweeps"] = rs
    return out


def pooled_heldout(model, tests: dict) -> tuple[dict, float, float]:
    """``model`` on several held-out tables (``{seed: table}``): every sweep's ladder Spearman per family
    (:func:`ladders`, pooled over the seeds), and the mean accuracy and MAE over the seeds."""
    from spaq.train.predictor import predict_table

    pooled, acc, mae = {f: [] for f in LADDERS}, [], []
    for s, t in tests.items():
        pt = predict_table(model, t)
        st = corpus_stats(pt, t)
        acc.append(st["accuracy"])
        mae.append(st["mae"])
        lad = ladders(pt, t, seed=s, per_sweep=True)
        for f in LADDERS:
            pooled[f] += lad[f].get("sweeps", [])
    return pooled, float(np.mean(acc)), float(np.mean(mae))


def ablation_row(model, test, mushra_table=None, scale: str = "linear") -> tuple[dict, dict]:
    """One row of the ablation table for a fitted ``model``: its held-out corpus statistics, the
    MUSHRA LOSO Pearson (NaN without ``mushra_table``), the mean and the reverb ladder; and the
    per-family ladders (:func:`ladders`)."""
    pt = predict_table(model, test)
    s = corpus_stats(pt, test)
    s["mushra_loso_pearson"] = (float("nan") if mushra_table is None else mushra_stats(
        mushra_table, loso_calibration(mushra_table, predict_table(model, mushra_table)["raw"], scale))["pearson_coded"])
    lad = ladders(pt, test)
    s["ladder_mean"] = float(np.nanmean([v["mean"] for v in lad.values()]))
    s["ladder_reverb"] = lad["reverb"]["mean"]
    return s, lad


def extra_reverb_rows(tc, wd: Path, scenes: int):
    """Rows of ``scenes`` scenes per format x source of the ``reverb_longer`` family (the recipe's
    corpus otherwise, no anchors, sweep ids from 5001 so that no scene repeats one of the recipe's),
    cached in ``wd``."""
    from dataclasses import asdict

    from spaq.files import atomic_write
    from spaq.train.predictor import make_split, split_cache_path

    sp = CorpusSplit(**{**asdict(tc.corpus), "families": ["reverb_longer"], "scenes": int(scenes), "anchor_scenes": 0})
    path = split_cache_path(sp, wd / "predictor_reverb_longer.csv")  # keyed by the whole split (speech, level too)
    if path.is_file():
        return pd.read_csv(path, keep_default_na=False)
    df = pd.DataFrame(make_split(sp, log=lambda m: None, index_offset=5000))
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
    return df


def packaged_mos(mt, mushra_dir: Path) -> dict:
    """The packaged reference-free MOS models of the registry (``dnsmos``: OVRL and P.808 from its
    values; ``distillmos``) on the MUSHRA files through ``spaq.score`` (mean of the two ears, as a user
    gets it): name -> :func:`mushra_stats`, or the reason it was skipped."""
    import spaq
    from spaq.metrics import metric_class

    out = {}
    for name, keys in (("dnsmos", ("value", "p808")), ("distillmos", ("value",))):
        why = metric_class(name).available()
        if why:
            out[name] = {"skipped": why}
            continue
        vals = {k: [] for k in keys}
        for f in mt["file"]:
            path = str(mushra_dir / "audio" / f)
            r = spaq.score(path, path, metrics=[name], align=False, strict=True).results[name]
            for k in keys:
                vals[k].append(r.score if k == "value" else (r.values[f"left_{k}"] + r.values[f"right_{k}"]) / 2
                               if f"left_{k}" in r.values else r.values.get(k, float("nan")))
        for k in keys:
            out[name if k == "value" else f"{name}_{k}"] = mushra_stats(mt, np.asarray(vals[k], dtype=np.float64))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--checkpoint", default=None, help="default: the packaged predictor_v1")
    ap.add_argument("--config", default=str(ROOT / "configs/train/predictor.yaml"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/predictor.md"))
    ap.add_argument("--audio-train", default=None, help="audio kept by make_split (embedding ablation)")
    ap.add_argument("--audio-test", default=None)
    ap.add_argument("--encoders", nargs="+", default=["bast"],
                    help="embedding ablation (with --audio-train/--audio-test): encoder specs, e.g. bast distillmos")
    ap.add_argument("--extra-reverb-scenes", type=int, default=0,
                    help="ablation: + N scenes per format x source of the reverb_longer family (sweeps that only "
                         "lengthen the room; sweep ids from 5001, cached in --workdir), rows for N/2 and N")
    a = ap.parse_args()
    torch.set_num_threads(1)
    c0 = time.process_time()
    wd = Path(a.workdir)
    tc = PredictorTrainConfig.from_yaml(a.config)
    # the recipe's rows: its corpus split and its extra splits (training_rows), read once per
    # audible_only setting (the only fit option that changes which rows are kept); the embedding
    # ablation below uses the corpus split alone (the audio kept with it in --audio-train)
    rows = {bool(tc.fit.audible_only): training_rows(tc, tc.fit, wd)}

    def rows_for(fit):
        if bool(fit.audible_only) not in rows:
            rows[bool(fit.audible_only)] = training_rows(tc, fit, wd, log=lambda m: None)
        return rows[bool(fit.audible_only)]

    train = rows[bool(tc.fit.audible_only)]
    # the held-out split and the MUSHRA files featurised at the recipe's input level, as its rows are
    # with the decode features where the recipe routes FOA / 3OA input to a second network (as its training rows)
    test = split_records(CorpusSplit(**{**HELD_OUT, "input_level_dbfs": tc.input_level_dbfs,
                                        "decode_features": tc.ambisonic is not None}), wd / "predictor_heldout.csv")
    mt = mushra_predictor_table(tc.mushra_dir(), tc.calibration.ratings, level_dbfs=tc.input_level_dbfs)
    from spaq.models import checkpoint
    from spaq.weights import resolve

    w = resolve("predictor_v1", path=a.checkpoint, offline=True)
    model, meta = checkpoint.load(w.path, architecture="predictor")
    if bool(model.cfg.ambisonic) != (tc.ambisonic is not None):
        sys.exit(f"error: the checkpoint {'routes' if model.cfg.ambisonic else 'does not route'} FOA / 3OA input to a "
                 f"second network, the recipe {a.config} {'does' if tc.ambisonic is not None else 'does not'}: give the "
                 "recipe it was trained with (--config)")
    if model.cfg.input_level_dbfs != tc.input_level_dbfs:
        sys.exit(f"error: the checkpoint reads inputs at input_level_dbfs {model.cfg.input_level_dbfs}, the recipe "
                 f"{a.config} at {tc.input_level_dbfs}: give the recipe it was trained with (--config)")
    pt = predict_table(model, test)
    res = {"overall": corpus_stats(pt, test), "per_format": {}, "checkpoint_sha256": w.sha256}
    for fmt in ["binaural", "foa", "hoa", "mono"]:
        m = (test["format"] == fmt).to_numpy()
        res["per_format"][fmt] = corpus_stats({k: v[m] for k, v in pt.items()}, test[m])
    res["ladders"] = ladders(pt, test)
    res["ladders_all_sweeps"] = ladders(pt, test, audible_only=False)
    res["ladders_teacher_drop10"] = ladders(pt, test, min_teacher_drop=10.0)
    raw_m = predict_table(model, mt)["raw"]
    res["mushra"] = {"loso": mushra_stats(mt, loso_calibration(mt, raw_m, model.cfg.calib_scale)), "uncalibrated": mushra_stats(mt, raw_m)}
    res["mushra_packaged"] = packaged_mos(mt, tc.mushra_dir())
    # ablation: the recipe with groups left out, and the steps from the first weights' recipe
    abl = {}
    for name, over in ABLATION.items():
        fit = FitSection(**{**{k: getattr(tc.fit, k) for k in tc.fit.keys()}, **over})
        t1 = time.process_time()
        mdl, _ = fit_predictor(rows_for(fit), fit, log=lambda m: None, input_level_dbfs=tc.input_level_dbfs)
        if not over:
            res["fit_cpu_s"] = time.process_time() - t1
        abl[name], _ = ablation_row(mdl, test, mt, tc.calibration.scale)
    if a.extra_reverb_scenes > 0:
        rev = extra_reverb_rows(tc, wd, a.extra_reverb_scenes)
        for n in sorted({max(1, a.extra_reverb_scenes // 2), a.extra_reverb_scenes}):
            fit = FitSection(**{k: getattr(tc.fit, k) for k in tc.fit.keys()})
            both = pd.concat([train, fit_rows(rev[rev["scene"] < n], tc.corpus, fit)], ignore_index=True)
            mdl, _ = fit_predictor(both, fit, log=lambda m: None, input_level_dbfs=tc.input_level_dbfs)
            s, lad = ablation_row(mdl, test, mt, tc.calibration.scale)
            s["ladders"] = {k: v["mean"] for k, v in lad.items()}
            abl[f"+ {n} scenes of reverb_longer ({int((rev['scene'] < n).sum())} rows)"] = s
    if a.audio_train and a.audio_test:
        from spaq.metrics.encoders import load_encoder
        from spaq.train.predictor import mushra_embedding_table

        res["embedding_cpu_s"] = {}
        for spec in a.encoders:
            t1 = time.process_time()
            # the encoder on the signal the metric gives it (spaq.train.predictor.embedding_table): the
            # same model `fit.embedding: SPEC` would train; the MUSHRA files' embeddings for the LOSO column
            enc = load_encoder(spec)
            corpus_rows = fit_rows(split_records(tc.corpus, wd / "predictor_train.csv"), tc.corpus, tc.fit)
            et, ee = embedding_table(a.audio_train, corpus_rows, enc), embedding_table(a.audio_test, test, enc)
            mte = mt.join(mushra_embedding_table(tc.mushra_dir(), mt, enc))
            res["embedding_cpu_s"][spec] = time.process_time() - t1
            tr2, te2 = corpus_rows.join(et), test.join(ee)
            label = EMBEDDING_LABELS.get(spec, spec)
            for name, groups in ((f"{label} + format", ["format"]), (f"shipped features + {label}", list(tc.fit.groups))):
                fit = FitSection(**{**{k: getattr(tc.fit, k) for k in tc.fit.keys()}, "groups": groups, "embedding": spec})
                mdl, _ = fit_predictor(tr2, fit, log=lambda m: None)
                abl[name], _ = ablation_row(mdl, te2, mte, tc.calibration.scale)
    res["ablation"] = abl
    res["eval_cpu_s"] = time.process_time() - c0
    write(res, a.out, len(train), len(test))
    print(json.dumps(res, indent=1, default=float))


def write(res, out, n_train, n_test):
    L = ["# Reference-free predictor (issue 20): evaluation", "",
         "`PYTHONPATH=src python benchmarks/eval_predictor.py --workdir DIR` (feature tables cached in DIR).", "",
         f"Training rows {n_train} (the recipe's corpus split, seed 9100, voices en-us/de/fr-fr/es, heads KU100 + SONICOM-1, "
         f"and its extra splits); held-out split {n_test} items (seed 9900, voices en-gb/it/es-419/fr-be, head SONICOM-2, "
         "speech as the recipe's corpus makes it). Target: spaq's `quality` metric "
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
          ]
    labels = {"dnsmos": "DNSMOS OVRL (speechmos, same run)", "dnsmos_p808": "DNSMOS P.808 (same run)",
              "distillmos": "Distill-MOS (distillmos, same run)"}
    for k, v in res.get("mushra_packaged", {}).items():
        L.append(f"| {labels.get(k, k)} | skipped: {v['skipped']} | | |" if "skipped" in v else
                 f"| {labels.get(k, k)} | {v['pearson_coded']:.3f} | {v['spearman_coded']:.3f} | |")
    L += ["", "Packaged MOS models: the mean of the two ears' scores of each file, uncalibrated (a monotonic "
          "mapping would not change the Spearman; a linear one not the Pearson).", "",
          "## Severity ladders (held-out sweeps; per sweep Spearman of the prediction vs severity 0, 0.2, ..., 1)", "",
          "Audible sweeps: speech and harmonic sources (noise added to a pink-noise source is no fault a listener "
          "hears without a reference) and, for reverb, the sweeps that lengthen the RT60 (the engine draws the "
          "direction; a drier room is no impairment). Teacher-audible: of those, the sweeps whose teacher "
          "score falls >= 10 points from clean to severity 1 (codecs on sustained tones often do not). All "
          "sweeps in the last columns.", "",
          "| family | sweeps | mean | median | worst | share <= -0.9 | teacher-audible: n, mean | all sweeps: n, mean |",
          "|---|---|---|---|---|---|---|---|"]
    for f, v in res["ladders"].items():
        w, t = res["ladders_all_sweeps"][f], res["ladders_teacher_drop10"][f]
        L.append(f"| {f} | {v['n']} | {v['mean']:.3f} | {v['median']:.3f} | {v['worst']:.3f} | {v['share_le_-0.9']:.2f} | "
                 f"{t['n']}, {t['mean']:.3f} | {w['n']}, {w['mean']:.3f} |")
    L += ["", "## Ablation (same data and seed; rows on audible sweeps where the recipe says so; `format` always in)", "",
          "Feature groups left out of the shipped recipe, then the first weights' recipe and the steps from it to the "
          "shipped one.", "",
          "| variant | accuracy | macro-F1 | MAE | Spearman | MUSHRA LOSO Pearson | mean ladder Spearman | reverb ladder |",
          "|---|---|---|---|---|---|---|---|"]
    for n, s in res["ablation"].items():
        L.append(f"| {n} | {s['accuracy']:.3f} | {s['macro_f1']:.3f} | {s['mae']:.1f} | {s['spearman']:.3f} | "
                 f"{s['mushra_loso_pearson']:.3f} | {s['ladder_mean']:.3f} | {s.get('ladder_reverb', float('nan')):.3f} |")
    extra = {n: s["ladders"] for n, s in res["ablation"].items() if "ladders" in s}
    if extra:
        L += ["", "Per-family ladders of the rows with extra `reverb_longer` scenes (`--extra-reverb-scenes`; the "
              "shipped recipe's in the ladder table above):", ""]
        L += [f"- {n}: " + ", ".join(f"{k} {v:.3f}" for k, v in lad.items()) for n, lad in extra.items()]
    L += ["", f"Fitting the shipped recipe on the cached features: {res['fit_cpu_s']:.1f} s CPU"
          + "".join(f"; {k} embeddings of both splits and the MUSHRA files: {v:.0f} s CPU"
                    for k, v in res.get("embedding_cpu_s", {}).items())
          + f"; this evaluation {res['eval_cpu_s']:.0f} s CPU.", ""]
    from spaq.files import atomic_write

    atomic_write(out, lambda tmp: Path(tmp).write_text("\n".join(L), encoding="utf-8"))


if __name__ == "__main__":
    main()
