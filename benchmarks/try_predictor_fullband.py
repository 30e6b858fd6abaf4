"""Try (issue 20, twenty-fifth session; not shipped): full-band clean speech for the predictor's corpus.

Espeak-ng synthesises at 22.05 kHz, so every clean speech item of the corpus ends at ~9.6 kHz; real
speech does not. This try gives espeak's speech a synthetic upper band (its 4-10.5 kHz band shifted
up by 7 kHz, high-passed at 11 kHz, ``--gain-db`` re the original: a crude bandwidth extension, by
monkeypatching ``spaq.data.sources._speech`` in this process only), rebuilds the recipe's training
split with it (and, with ``--heldout-bwe``, the three held-out seeds), and refits the recipe alone and
with the ``bright`` wide scenes of ``try_predictor_wide.py --types bright percussive --sweep-scenes 2``
(``try_predictor_wide.wide_anchors`` / ``wide_sweeps``, cached in --workdir). Reports pooled held-out ladders, MUSHRA LOSO, the
real-content check (``eval_predictor_real_content.py``'s table in --real-content) and the MUSHRA per condition.

    PYTHONPATH=src python benchmarks/try_predictor_fullband.py --gain-db -18 --heldout-bwe \
        [--only "bwe speech" "bwe speech + bright" ...]   (variants by name; default all)

~8 min CPU for the training split, ~1.5 min per held-out seed, ~2 min per fit.
Results: benchmarks/results/predictor_real_content.md.

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


def bandwidth_extended(speech, gain_db: float):
    """``speech`` (spaq.data.sources._speech) with the upper band added to what it returns."""
    from scipy.signal import butter, sosfiltfilt

    def _speech(n, sr, r, opt):
        x, meta = speech(n, sr, r, opt)
        t = np.arange(len(x)) / sr
        band = sosfiltfilt(butter(6, [4000, 10500], "bandpass", fs=sr, output="sos"), x)
        up = sosfiltfilt(butter(8, 11000, "highpass", fs=sr, output="sos"), 2 * band * np.cos(2 * np.pi * 7000 * t))
        return x + 10 ** (gain_db / 20) * up, {**meta, "bwe_db": gain_db}

    return _speech


def main(argv=None):
    import eval_predictor as EP
    import eval_predictor_real_content as RC
    import try_predictor_wide as TW

    import spaq.data.sources as S
    from spaq.train.predictor import (CorpusSplit, FitSection, PredictorTrainConfig, fit_predictor, fit_rows,
                                      loso_calibration, mushra_predictor_table, mushra_stats, predict_table,
                                      split_records)

    ap = argparse.ArgumentParser()
    ap.add_argument("--gain-db", type=float, default=-18.0, help="level of the added upper band re the speech")
    ap.add_argument("--heldout-bwe", action="store_true", help="rebuild the held-out seeds with it too")
    ap.add_argument("--workdir", default="/tmp/pred")
    ap.add_argument("--real-content", default="/tmp/rc", help="eval_predictor_real_content.py's cache")
    ap.add_argument("--only", nargs="+", default=None, help="fit only these variants (names as printed)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    q = lambda m: None  # noqa: E731
    wd, tag = Path(a.workdir), f"bwe{int(-a.gain_db)}"
    tc = PredictorTrainConfig.from_yaml(ROOT / "configs/train/predictor.yaml")
    plain = S._speech
    S._speech = bandwidth_extended(plain, a.gain_db)  # this process only; restored below
    try:
        train = fit_rows(split_records(tc.corpus, wd / f"predictor_train_{tag}.csv", log=print), tc.corpus, tc.fit, log=q)
        if not a.heldout_bwe:
            S._speech = plain
        tests = {s: split_records(CorpusSplit(**{**EP.HELD_OUT, "seed": s}),
                                  wd / (f"predictor_heldout_{tag}_seed{s}.csv" if a.heldout_bwe
                                        else f"predictor_heldout_seed{s}.csv"), log=q) for s in (9900, 9901, 9902)}
    finally:
        S._speech = plain  # the bright scenes have no speech; the MUSHRA table is real speech
    types = ["bright", "percussive"]
    anchors, sweeps = TW.wide_anchors(tc, wd, types, 4), TW.wide_sweeps(tc, wd, types, 4, 2)
    mt = mushra_predictor_table(tc.mushra_dir(), tc.calibration.ratings, log=q)
    rc = RC.build_table(Path(a.real_content))
    bright = pd.concat([train, anchors, sweeps], ignore_index=True)
    variants = {"bwe speech": ({}, train),
                "bwe speech + bright": ({}, bright),
                "bwe speech + bright, no blur": ({}, bright[bright["family"] != "blur"]),
                "bwe + bright sweeps only": ({}, pd.concat([train, sweeps], ignore_index=True)),
                "bwe + bright anchors only": ({}, pd.concat([train, anchors], ignore_index=True)),
                "bwe + bright, rank 12": ({"rank_weight": 12.0}, bright)}
    base = {k: getattr(tc.fit, k) for k in tc.fit.keys()}
    for name, (over, rows) in variants.items():
        if a.only and name not in a.only:
            continue
        model, _ = fit_predictor(rows.reset_index(drop=True), FitSection(**{**base, **over}), log=q)
        pooled, acc, mae = EP.pooled_heldout(model, tests)
        raw = predict_table(model, mt)["raw"]
        lo = mushra_stats(mt, loso_calibration(mt, raw, tc.calibration.scale))["pearson_coded"]
        print(f"| {name} | {acc:.3f} / {mae:.1f} | " + " | ".join(f"{np.mean(pooled[f]):.3f}" for f in EP.LADDERS)
              + f" | {lo:.3f} |", flush=True)
        print("\n".join(RC.table_lines({name: RC.evaluate(model, rc)})[2:]), flush=True)
        print(mt.assign(raw=raw).groupby("condition")[["mean", "raw"]].mean().round(1).sort_values("mean").T.to_string(),
              flush=True)


if __name__ == "__main__":
    main()
