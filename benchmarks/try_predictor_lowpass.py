"""Why the predictor's low-pass ladder misses -0.9 (issue 20), and a spectral-edge feature tried
against it (twenty-third session; not shipped, see benchmarks/results/predictor_seeds.md).

    PYTHONPATH=src python benchmarks/try_predictor_lowpass.py diagnose --workdir DIR
    PYTHONPATH=src python benchmarks/try_predictor_lowpass.py edge --workdir DIR [--scenes 2 4]
        [--fit-seeds 7 17 27] [--members 5] [--variants shipped "+ edge (3)" "+ bw40_oct"]
    PYTHONPATH=src python benchmarks/try_predictor_lowpass.py mushra --workdir DIR [--scenes 2 4]

``diagnose``: the held-out low-pass sweeps (seeds 9900-9902, SONICOM-2, audible sources) of the
packaged predictor, with the teacher's targets, the predictions and the band and edge features of
the sweeps below -0.9.

``edge``: the shipped recipe refitted with the ``edge`` feature group of
``spaq.metrics.functional.predictor`` added to its groups (where the long-term spectrum ends,
``bw40_oct``, and the steepest one-octave fall of its upper envelope, ``edge_drop_db`` / ``edge_oct``:
see that module), for several fitting seeds and ensemble sizes and, with ``--scenes``, on a training
split with more scenes per family x format x source; pooled over the held-out seeds 9900-9902.

The MUSHRA LOSO figure is given twice: the 2-parameter calibration on the score (the shipped reading)
and on the score's logit (the network's own scale, where the sigmoid's ceiling does not compress the
items the network is sure about).

``mushra``: the recipe with and without the three edge features (and with ``--scenes``, on larger
training splits) on the speech-codec MUSHRA half:
LOSO statistics and the mean uncalibrated score per condition and per stimulus.

Needs the tables of ``split_records(..., keep_audio=True)`` in DIR (the training split of
``configs/train/predictor.yaml``, the held-out seeds); they are made when missing (about 5 min CPU
for the training split at 2 scenes, 1.5 min per held-out seed, 11 min at 4 scenes).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

EDGE = ["bw40_oct", "edge_drop_db", "edge_oct"]
#: name -> (groups added to the recipe's, extra columns); ``bw40_alone``: the ``edge`` group's
#: ``bw40_oct`` alone, under its own name (a feature column cannot also be an extra one)
VARIANTS = {"shipped": ((), ()), "+ bw40_oct": ((), ("bw40_alone",)), "+ edge (3)": (("edge",), ())}


def _tables(wd: Path, scenes: int | None = None):
    """The recipe, its training split (``scenes`` per cell) and the held-out seeds' tables."""
    import eval_predictor as EP
    from spaq.train.predictor import CorpusSplit, PredictorTrainConfig, split_records

    quiet = lambda m: None  # noqa: E731
    tc = PredictorTrainConfig.from_yaml(ROOT / "configs/train/predictor.yaml")
    split = tc.corpus if scenes is None else replace(tc.corpus, scenes=int(scenes))
    tests = {s: split_records(CorpusSplit(**{**EP.HELD_OUT, "seed": s}), wd / f"predictor_heldout_seed{s}.csv",
                              log=quiet, keep_audio=True) for s in (9900, 9901, 9902)}
    train = split_records(split, wd / "predictor_train.csv", log=quiet, keep_audio=True)
    for t in [train, *tests.values()]:
        t["bw40_alone"] = t["bw40_oct"]
    return tc, (train, split), tests


def _mushra(tc):
    from spaq.train.predictor import mushra_predictor_table

    mt = mushra_predictor_table(tc.mushra_dir(), tc.calibration.ratings, lambda m: None)
    return mt.assign(bw40_alone=mt["bw40_oct"])


def diagnose(wd: Path):
    from scipy.stats import spearmanr

    from spaq.models import checkpoint
    from spaq.train.predictor import predict_table
    from spaq.weights import resolve

    _, _, tests = _tables(wd)
    model, _ = checkpoint.load(resolve("predictor_v1", offline=True).path, architecture="predictor")
    for s, t in tests.items():
        t = t[t["family"] == "lowpass"]
        d = t.assign(pred=np.asarray(predict_table(model, t)["raw"]))
        for (sw, fmt), g in d[d["source"] != "pink_noise"].groupby(["sweep", "format"]):
            g = g.sort_values("severity")
            r = float(spearmanr(g["severity"], g["pred"])[0])
            print(f"seed {s} sweep {sw} {fmt} {g['source'].iloc[0]}: Spearman {r:+.2f}")
            if r > -0.9:
                for c in ["target", "pred", "top_band", "range_high"] + EDGE:
                    print(f"    {c:13s}", " ".join(f"{v:7.2f}" for v in g[c]))


def score_logit(raw: np.ndarray) -> np.ndarray:
    """The network's score (0..100, a sigmoid x 100) back on its logit scale (clipped at 0.05 / 99.95):
    the input of the shipped listener calibration (``calibration.scale: logit``)."""
    from spaq.models.predictor import calibration_input

    return calibration_input(np.asarray(raw, dtype=np.float64), "logit")


def _fit(tc, df, split, variant, seed=None, members=None):
    from spaq.train.predictor import FitSection, fit_predictor, fit_rows

    quiet = lambda m: None  # noqa: E731
    groups, extra = VARIANTS[variant]
    fit = FitSection(**{**asdict(tc.fit), "seed": int(tc.fit.seed if seed is None else seed),
                        "members": int(members or tc.fit.members), "groups": list(tc.fit.groups) + list(groups)})
    model, _ = fit_predictor(fit_rows(df, split, fit, quiet), fit, quiet, extra_columns=extra)
    return model, fit


def edge(wd: Path, scenes: list[int], fit_seeds: list[int], variants: list[str], members: int | None):
    import eval_predictor as EP
    from spaq.train.predictor import loso_calibration, mushra_stats, predict_table

    torch.set_num_threads(2)
    tc, _, tests = _tables(wd)
    mt = _mushra(tc)
    print("| training scenes | fit seed x members | features | MUSHRA LOSO | MUSHRA LOSO, logit scale | "
          "held-out accuracy / MAE | " + " | ".join(EP.LADDERS) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(EP.LADDERS), flush=True)
    for sc in scenes:
        _, (df, split), _ = _tables(wd, sc)
        for fs, name in [(fs, v) for fs in fit_seeds for v in variants]:
            model, fit = _fit(tc, df, split, name, fs, members)
            pooled, acc, mae = EP.pooled_heldout(model, tests)
            raw = np.asarray(predict_table(model, mt)["raw"], dtype=np.float64)
            loso = mushra_stats(mt, loso_calibration(mt, raw))["pearson_coded"]
            loso_logit = mushra_stats(mt, loso_calibration(mt, score_logit(raw)))["pearson_coded"]
            print(f"| {sc} | {fs} x {fit.members} | {name} | {loso:.3f} | {loso_logit:.3f} | {acc:.3f} / {mae:.1f} | "
                  + " | ".join(f"{np.mean(pooled[f]):+.3f}" for f in EP.LADDERS) + " |", flush=True)


def mushra(wd: Path, scenes: list[int]):
    from spaq.train.predictor import loso_calibration, mushra_stats, predict_table

    torch.set_num_threads(2)
    tc, _, _ = _tables(wd)
    mt = _mushra(tc)
    cols = []
    for sc, name in [(sc, v) for sc in scenes for v in ("shipped", "+ edge (3)")]:
        _, (df, split), _ = _tables(wd, sc)
        model, _ = _fit(tc, df, split, name)
        col = f"{name}, {sc} scenes"
        mt[col] = predict_table(model, mt)["raw"]
        cols.append(col)
        for scale, v in (("linear", mt[col].to_numpy()), ("logit", score_logit(mt[col].to_numpy()))):
            st = mushra_stats(mt, loso_calibration(mt, v))
            print(f"{col}, calibrated on the {scale} scale: LOSO Pearson {st['pearson_coded']:.3f}, "
                  f"Spearman {st['spearman_coded']:.3f}, RMSE {st['rmse_coded']:.1f}")
    print(mt.groupby("condition")[["mean"] + cols + EDGE].mean().round(2).to_string())
    coded = mt[mt["condition"] != "Reference"]
    print(coded.groupby("stimulus")[["mean"] + cols].mean().round(1).to_string())


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="part", required=True)
    for name in ("diagnose", "edge", "mushra"):
        p = sub.add_parser(name)
        p.add_argument("--workdir", type=Path, required=True)
        if name != "diagnose":
            p.add_argument("--scenes", type=int, nargs="+", default=[2], help="training scenes per cell (recipe: 2)")
        if name == "edge":
            p.add_argument("--fit-seeds", type=int, nargs="+", default=[7], help="the recipe's fit seed is 7")
            p.add_argument("--members", type=int, default=None, help="ensemble size (the recipe's: 5)")
            p.add_argument("--variants", nargs="+", default=["shipped", "+ edge (3)"], choices=list(VARIANTS))
    a = ap.parse_args()
    if a.part == "diagnose":
        diagnose(a.workdir)
    elif a.part == "edge":
        edge(a.workdir, a.scenes, a.fit_seeds, a.variants, a.members)
    else:
        mushra(a.workdir, a.scenes)


if __name__ == "__main__":
    main()
