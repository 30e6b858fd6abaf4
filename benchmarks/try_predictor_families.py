"""Does the predictor read real codec listeners better when its corpus has degradations more like a
neural speech codec's? (issue 20, twenty-third session; tried, see benchmarks/results/predictor_seeds.md)

    PYTHONPATH=src python benchmarks/try_predictor_families.py --workdir DIR
        [--families time_stretch packet_loss quantisation] [--fit-seeds 7 17 27]

The shipped recipe (`configs/train/predictor.yaml`) is refitted on its training split plus the sweeps of
one more corpus family (the recipe's formats, sources, voices, heads, seed and severities; 2 scenes per
format x source, no anchors; sweep ids from 6001 so that no scene repeats one of the recipe's), then
on all of them together:

* ``time_stretch``: the corpus engine's phase-vocoder round trip (stretch 1 -> 1.5 and back): the phasey,
  smeared partials a vocoder leaves, the closest the engine has to a neural codec's resynthesis;
* ``packet_loss``: 20 ms packets lost (0 -> 30 %) with 2.5 ms fades: gaps and discontinuities;
* ``quantisation``: uniform requantisation (16 -> 3 bits): signal-correlated noise.

Reported: MUSHRA LOSO on the speech-codec half, the held-out corpus (seeds 9900-9902, SONICOM-2) and its
ladders, as in ``try_predictor_lowpass.py``; and the mean uncalibrated score per condition.
Extra rows are cached in DIR (about 1 min CPU per family).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

#: family name -> (corpus degradation, options, formats), as ``spaq.train.quality.FAMILIES`` holds them
EXTRA = {"time_stretch": ("time_stretch", {}, ("binaural", "ambisonics")),
         "packet_loss": ("packet_loss", {}, ("binaural", "ambisonics")),
         "quantisation": ("quantisation", {}, ("binaural", "ambisonics"))}


def extra_rows(tc, wd: Path, fam: str, k: int):
    """The sweeps of family ``fam`` in the recipe's corpus (no anchors), sweep ids from 6001 + 1000 k, cached."""
    from spaq.files import atomic_write
    from spaq.train.predictor import CorpusSplit, make_split
    from spaq.train.quality import FAMILIES

    FAMILIES.setdefault(fam, EXTRA[fam])
    path = wd / f"predictor_extra_{fam}_{tc.corpus.seed}_{tc.corpus.scenes}.csv"
    if path.is_file():
        return pd.read_csv(path, keep_default_na=False)
    sp = CorpusSplit(**{**asdict(tc.corpus), "families": [fam], "anchor_scenes": 0})
    df = pd.DataFrame(make_split(sp, log=lambda m: None, index_offset=6000 + 1000 * k))
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))
    return df


def main():
    import eval_predictor as EP
    from spaq.train.predictor import (CorpusSplit, FitSection, PredictorTrainConfig, fit_predictor, fit_rows,
                                      loso_calibration, mushra_predictor_table, mushra_stats, predict_table,
                                      split_records)

    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--families", nargs="+", default=list(EXTRA), choices=list(EXTRA))
    ap.add_argument("--fit-seeds", type=int, nargs="+", default=[7])
    a = ap.parse_args()
    torch.set_num_threads(2)
    quiet = lambda m: None  # noqa: E731
    tc = PredictorTrainConfig.from_yaml(ROOT / "configs/train/predictor.yaml")
    df = split_records(tc.corpus, a.workdir / "predictor_train.csv", log=quiet)
    extra = {fam: extra_rows(tc, a.workdir, fam, k) for k, fam in enumerate(a.families)}
    for fam, e in extra.items():
        print(f"{fam}: {len(e)} rows, teacher at severity 1: median {e[e['severity'] == 1.0]['target'].median():.1f}")
    tests = {s: split_records(CorpusSplit(**{**EP.HELD_OUT, "seed": s}), a.workdir / f"predictor_heldout_seed{s}.csv",
                              log=quiet) for s in (9900, 9901, 9902)}
    mt = mushra_predictor_table(tc.mushra_dir(), tc.calibration.ratings, quiet)
    variants = {"shipped": []} | {f"+ {fam}": [fam] for fam in a.families}
    if len(a.families) > 1:
        variants["+ " + " + ".join(a.families)] = list(a.families)
    print("| fit seed | training rows | MUSHRA LOSO | held-out accuracy / MAE | " + " | ".join(EP.LADDERS) + " |")
    print("|---|---|---|---|" + "---|" * len(EP.LADDERS), flush=True)
    cols = []
    for fs in a.fit_seeds:
        fit = FitSection(**{**asdict(tc.fit), "seed": int(fs)})
        for name, fams in variants.items():
            d = pd.concat([df] + [extra[f] for f in fams], ignore_index=True)
            model, _ = fit_predictor(fit_rows(d, tc.corpus, fit, quiet), fit, quiet)
            pooled, acc, mae = EP.pooled_heldout(model, tests)
            raw = predict_table(model, mt)["raw"]
            loso = mushra_stats(mt, loso_calibration(mt, raw))["pearson_coded"]
            if fs == a.fit_seeds[0]:
                mt[name] = raw
                cols.append(name)
            print(f"| {fs} | {name} ({len(d)}) | {loso:.3f} | {acc:.3f} / {mae:.1f} | "
                  + " | ".join(f"{np.mean(pooled[f]):+.3f}" for f in EP.LADDERS) + " |", flush=True)
    print(mt.groupby("condition")[["mean"] + cols].mean().round(1).to_string())


if __name__ == "__main__":
    main()
