"""Try (issue 20, twenty-fourth session; not shipped): clean multi-source anchor scenes for the
reference-free predictor, after `eval_predictor_param_coding.py` showed that it reads real wide,
multi-source binaural scenes as impaired (every training scene has one source).

    PYTHONPATH=src python benchmarks/try_predictor_wide.py --workdir /tmp/pred --cache /tmp/pc [--sources 4]
        [--types chord percussive]

Builds (cached in --workdir) a split of clean anchor scenes only (seed 9200, the recipe's families,
formats, sources, heads and voices, 3 scenes each, half in rooms) with 1 to ``--sources`` sources of the
anchor's type (`corpus.anchor_sources`), adds them to the recipe's training rows (target: the teacher's
identity score) and refits the shipped recipe; variants with and without the `blur` rows (a widened
image, which no listener can tell from a wide scene without the reference). Reports the pooled ladders
over the held-out seeds 9900-9902, accuracy / MAE, the MUSHRA LOSO Pearson (speech codecs, the recipe's
calibration scale) and the spatial-codings test (42 items; Pearson / Spearman and the mean score per
condition). The spatial test is the one that found the fault, so it is no longer untouched by this try.

Twenty-fifth session: ``--sweep-scenes N`` adds degraded sweeps of wide scenes too (seed 9300, N
scenes per family x format x type, 1 to ``--sources`` sources; `corpus.scene_sources`; their sweep
ids offset so that the ranking term never pairs two sweeps), with variants with and without the
anchors and the blur rows; ``--real-content DIR`` also reports each variant on
`eval_predictor_real_content.py`'s real recordings (`results/predictor_real_content.md`);
``--only TEXT ...`` fits only the variants whose names contain one of the texts.

    PYTHONPATH=src python benchmarks/try_predictor_wide.py --workdir /tmp/pred --cache /tmp/pc \
        --types chord percussive harmonic speech --sweep-scenes 2 --real-content /tmp/rc --only "wide degraded"

Written against the recipe before it carried full-band speech and the `bright` scenes (commit
1ed61f6; twenty-sixth session). The recipe now has both (``corpus.speech_upper_band_db``, ``extra``),
so its numbers reproduce at that commit, not on the current recipe.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_predictor as EP  # noqa: E402


from spaq.train.predictor import EXTRA_SWEEP_OFFSET as WIDE_SWEEP_OFFSET  # noqa: E402  (the recipe's own offset)


def _wide_split(tc, types, **over):
    from spaq.train.predictor import CorpusSplit

    return CorpusSplit(**{**{k: getattr(tc.corpus, k) for k in tc.corpus.keys()}, **over,
                          **({"sources": list(types)} if types else {})})


def wide_anchors(tc, wd: Path, types=None, sources: int = 4):
    """The clean anchor scenes of 1..``sources`` sources of ``types`` (default: the recipe's)
    beside the recipe (seed 9200, 3 scenes per family x format x type), cached in ``wd``."""
    from spaq.train.predictor import split_records

    sp = _wide_split(tc, types, seed=9200, scenes=0, anchor_scenes=3, anchor_sources=int(sources))
    return split_records(sp, wd / "predictor_wide_anchors.csv")


def wide_sweeps(tc, wd: Path, types=None, sources: int = 4, scenes: int = 2):
    """The degraded sweeps of scenes of 1..``sources`` sources of ``types`` (seed 9300, ``scenes``
    per family x format x type), cached in ``wd``: the rows the recipe fits on (``fit_rows``),
    their sweep ids offset by :data:`WIDE_SWEEP_OFFSET` so that the ranking term never pairs one
    of them with a training sweep of the same id."""
    from spaq.train.predictor import fit_rows, split_records

    sp = _wide_split(tc, types, seed=9300, scenes=int(scenes), anchor_scenes=0, scene_sources=int(sources))
    rows = fit_rows(split_records(sp, wd / "predictor_wide_sweeps.csv"), sp, tc.fit, log=lambda m: None)
    return rows.assign(sweep=rows["sweep"] + WIDE_SWEEP_OFFSET)


def _param_coding_features(cache: Path):
    from spaq.io import read_audio, resample
    from spaq.metrics.functional.predictor import FEATURE_NAMES, predictor_features
    from spaq.train.quality import param_coding_table

    pc = param_coding_table(cache)
    rows = []
    for f in pc["deg"]:
        x, sr = read_audio(str(cache / f))
        x = resample(x, sr, 48000)  # as spaq.predict reads a file
        with torch.no_grad():
            rows.append(predictor_features(torch.tensor(x[None], dtype=torch.float64), 48000, "binaural")[0].numpy())
    return pc, pd.DataFrame(np.stack(rows), columns=list(FEATURE_NAMES))


def main(argv=None):
    from scipy.stats import pearsonr, spearmanr

    from spaq.train.predictor import (CorpusSplit, FitSection, PredictorTrainConfig, fit_predictor, fit_rows,
                                      loso_calibration, mushra_predictor_table, mushra_stats, predict_table,
                                      split_records)

    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--cache", required=True, help="the spatial-codings items (benchmarks/rebuild_param_coding.py)")
    ap.add_argument("--sources", type=int, default=4)
    ap.add_argument("--types", nargs="+", default=None,
                    help="source types of the wide anchors (default: the recipe's; e.g. chord percussive: music-like)")
    ap.add_argument("--sweep-scenes", type=int, default=0,
                    help="+ degraded sweeps of wide scenes too: N scenes per family x format x type (seed 9300, "
                         "1 to --sources sources of --types, the recipe's families and severities)")
    ap.add_argument("--real-content", default=None,
                    help="also report benchmarks/eval_predictor_real_content.py's check (its cache directory)")
    ap.add_argument("--only", nargs="+", default=None, help="fit only the variants whose names contain one of these texts (and the shipped recipe)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    wd = Path(a.workdir)
    tc = PredictorTrainConfig.from_yaml(ROOT / "configs/train/predictor.yaml")
    train = fit_rows(split_records(tc.corpus, wd / "predictor_train.csv"), tc.corpus, tc.fit, log=lambda m: None)
    wide = wide_anchors(tc, wd, a.types, a.sources)
    label = f"{len(wide)} clean anchors of 1-{a.sources} sources" + (f" ({', '.join(a.types)})" if a.types else "")
    tests = {s: split_records(CorpusSplit(**{**EP.HELD_OUT, "seed": s}), wd / f"predictor_heldout_seed{s}.csv",
                              log=lambda m: None) for s in (9900, 9901, 9902)}
    mt = mushra_predictor_table(tc.mushra_dir(), tc.calibration.ratings, log=lambda m: None)
    pc, P = _param_coding_features(Path(a.cache))
    print(f"training rows {len(train)}; wide anchors {len(wide)} (targets {wide['target'].min():.1f}-{wide['target'].max():.1f})")
    variants = {"shipped recipe": train,
                f"+ {label}": pd.concat([train, wide], ignore_index=True),
                "... and without the blur rows": pd.concat([train[train["family"] != "blur"], wide], ignore_index=True)}
    if a.sweep_scenes > 0:
        sweeps = wide_sweeps(tc, wd, a.types, a.sources, a.sweep_scenes)
        sl = f"{len(sweeps)} rows of wide degraded sweeps"
        print(f"wide sweeps: {len(sweeps)} rows ({sweeps['family'].value_counts().to_dict()})")
        variants[f"+ {label} + {sl}"] = pd.concat([train, wide, sweeps], ignore_index=True)
        variants[f"+ {sl}"] = pd.concat([train, sweeps], ignore_index=True)
        variants[f"+ {label} + {sl}, without the blur rows"] = pd.concat(
            [d[d["family"] != "blur"] for d in (train, wide, sweeps)], ignore_index=True)
    if a.only:
        variants = {k: v for k, v in variants.items() if k == "shipped recipe" or any(o in k for o in a.only)}
    fit = FitSection(**{k: getattr(tc.fit, k) for k in tc.fit.keys()})
    L = ["| variant | accuracy / MAE (3 seeds) | noise | lowpass | clipping | opus | mp3 | aac | reverb | MUSHRA LOSO | "
         "spatial test r / rho | without the mono condition r / rho | per condition (FOA, Param1, Param2, FOA-Amb-P1, "
         "FOA-Amb-P2, Mono) |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    nm = (pc["condition"] != "Mono").to_numpy()  # a diotic downmix: judged against the reference only
    rc, rc_results = None, {}
    if a.real_content:
        import eval_predictor_real_content as RC
        rc = RC.build_table(Path(a.real_content))
    for name, rows in variants.items():
        model, _ = fit_predictor(rows, fit, log=lambda m: None)
        if rc is not None:
            rc_results[name] = RC.evaluate(model, rc)
            print("\n".join(RC.table_lines({name: rc_results[name]})[2:]), flush=True)
        pooled, acc, mae = EP.pooled_heldout(model, tests)
        lo = mushra_stats(mt, loso_calibration(mt, predict_table(model, mt)["raw"], tc.calibration.scale))["pearson_coded"]
        s = predict_table(model, P)["raw"]
        cond = pc.assign(s=s).groupby("condition", sort=False)["s"].mean()
        L.append(f"| {name} | {acc:.3f} / {mae:.1f} | " + " | ".join(f"{np.mean(pooled[f]):.3f}" for f in EP.LADDERS)
                 + f" | {lo:.3f} | {pearsonr(s, pc['mean'])[0]:.3f} / {spearmanr(s, pc['mean'])[0]:.3f} | "
                 + f"{pearsonr(s[nm], pc['mean'][nm])[0]:.3f} / {spearmanr(s[nm], pc['mean'][nm])[0]:.3f} | "
                 + ", ".join(f"{v:.0f}" for v in cond.to_numpy()) + " |")
        print(L[-1], flush=True)
    print("\n".join(L))
    if rc is not None:
        print("\nreal content (eval_predictor_real_content.py; per family: mean per-sweep Spearman over the sweeps the "
              "teacher hears (n), and over all)")
        print("\n".join(RC.table_lines(rc_results)))


if __name__ == "__main__":
    main()
