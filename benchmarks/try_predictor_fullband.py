"""Try (issue 20, twenty-fifth session; not shipped): full-band clean speech for the predictor's corpus.

Espeak-ng synthesises at 22.05 kHz, so every clean speech item of the corpus ends at ~9.6 kHz; real
speech does not. This try gives espeak's speech a synthetic upper band (its 4-10.5 kHz band shifted
up by 7 kHz, high-passed at 11 kHz, GAIN_DB re the original: a crude bandwidth extension, by
monkeypatching ``spaq.data.sources._speech`` in this process only), rebuilds the recipe's training
split with it (and, with ``--heldout-bwe``, the three held-out seeds), and refits the recipe alone and
with the ``bright`` wide scenes of ``try_predictor_wide.py --types bright percussive --sweep-scenes 2``
(cached in /tmp/pred; built there when absent). Reports pooled held-out ladders, MUSHRA LOSO, the
real-content check (``eval_predictor_real_content.py``'s table in /tmp/rc) and the MUSHRA per condition.

    PYTHONPATH=src python benchmarks/try_predictor_fullband.py -18 "bwe speech" "bwe speech + bright" --heldout-bwe
    PYTHONPATH=src python benchmarks/try_predictor_fullband.py -18 "bwe + bright, rank 12" --heldout-bwe   # (variants by name)

~8 min CPU for the training split, ~1.5 min per held-out seed, ~2 min per fit.
Results: benchmarks/results/predictor_real_content.md.
"""
import sys; from pathlib import Path
ROOT_ = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT_ / "src")); sys.path.insert(0, str(ROOT_ / "benchmarks"))
import numpy as np, pandas as pd, torch
from scipy.signal import butter, sosfiltfilt
import spaq.data.sources as S
_orig = S._speech
GAIN_DB = float(sys.argv[1]) if len(sys.argv) > 1 else -12.0
ONLY = [a for a in sys.argv[2:] if not a.startswith("--")]
def _bwe(x, sr):
    t = np.arange(len(x)) / sr
    band = sosfiltfilt(butter(6, [4000, 10500], "bandpass", fs=sr, output="sos"), x)
    up = sosfiltfilt(butter(8, 11000, "highpass", fs=sr, output="sos"), 2 * band * np.cos(2 * np.pi * 7000 * t))
    return x + 10 ** (GAIN_DB / 20) * up
def _speech(n, sr, r, opt):
    x, meta = _orig(n, sr, r, opt)
    return _bwe(x, sr), {**meta, "bwe_db": GAIN_DB}
S._speech = _speech
import eval_predictor as EP, eval_predictor_real_content as RC
from spaq.train.predictor import (CorpusSplit, FitSection, PredictorTrainConfig, fit_predictor, fit_rows, predict_table,
    split_records, loso_calibration, mushra_predictor_table, mushra_stats)
torch.set_num_threads(1)
wd=Path("/tmp/pred"); ROOT=ROOT_; q=lambda m: None
tc=PredictorTrainConfig.from_yaml(ROOT/"configs/train/predictor.yaml")
train=fit_rows(split_records(tc.corpus, wd/f"predictor_train_bwe{int(-GAIN_DB)}.csv", log=print), tc.corpus, tc.fit, log=q)
HELD_BWE = "--heldout-bwe" in sys.argv
if not HELD_BWE:
    S._speech = _orig  # the evaluation splits are the cached (plain espeak) ones
types=["bright","percussive"]
sw=CorpusSplit(**{**{k: getattr(tc.corpus,k) for k in tc.corpus.keys()}, "seed":9300,"scenes":2,"anchor_scenes":0,"scene_sources":4,"sources":types})
sweeps=fit_rows(split_records(sw, wd/"predictor_wide_sweeps.csv", log=q), sw, tc.fit, log=q)
sweeps=sweeps.assign(sweep=sweeps["sweep"]+300000)
an=CorpusSplit(**{**{k: getattr(tc.corpus,k) for k in tc.corpus.keys()}, "seed":9200,"scenes":0,"anchor_scenes":3,"anchor_sources":4,"sources":types})
anchors=split_records(an, wd/"predictor_wide_anchors.csv", log=q)
tests={s: split_records(CorpusSplit(**{**EP.HELD_OUT,"seed":s}), wd/(f"predictor_heldout_bwe{int(-GAIN_DB)}_seed{s}.csv" if HELD_BWE else f"predictor_heldout_seed{s}.csv"), log=q) for s in (9900,9901,9902)}
S._speech = _orig  # the MUSHRA table is real speech
mt=mushra_predictor_table(tc.mushra_dir(), tc.calibration.ratings, log=q)
rc=RC.build_table(Path("/tmp/rc"))
fit=FitSection(**{k: getattr(tc.fit,k) for k in tc.fit.keys()})
V = {"bwe + bright sweeps only": ({}, pd.concat([train, sweeps], ignore_index=True)),
     "bwe + bright, rank 12": (dict(rank_weight=12.0), pd.concat([train, anchors, sweeps], ignore_index=True)),
     "bwe + bright anchors only": ({}, pd.concat([train, anchors], ignore_index=True))}
for name, (over, rows) in V.items():
    if ONLY and name not in ONLY: continue
    model,_=fit_predictor(rows, FitSection(**{**{k: getattr(tc.fit,k) for k in tc.fit.keys()}, **over}), log=q)
    pooled,acc,mae=EP.pooled_heldout(model,tests)
    raw=predict_table(model,mt)["raw"]
    lo=mushra_stats(mt, loso_calibration(mt, raw, tc.calibration.scale))["pearson_coded"]
    print(f"| {name} | {acc:.3f} / {mae:.1f} | "+" | ".join(f"{np.mean(pooled[f]):.3f}" for f in EP.LADDERS)+f" | {lo:.3f} |", flush=True)
    print("\n".join(RC.table_lines({name: RC.evaluate(model, rc)})[2:]), flush=True)
for name, rows in {"bwe speech": train, "bwe speech + bright": pd.concat([train, anchors, sweeps], ignore_index=True),
                   "bwe speech + bright, no blur": pd.concat([d[d.family != "blur"] for d in (train, anchors, sweeps)], ignore_index=True)}.items():
    if ONLY and name not in ONLY: continue
    model,_=fit_predictor(rows, fit, log=q)
    pooled,acc,mae=EP.pooled_heldout(model,tests)
    raw=predict_table(model,mt)["raw"]
    lo=mushra_stats(mt, loso_calibration(mt, raw, tc.calibration.scale))["pearson_coded"]
    print(f"| {name} | {acc:.3f} / {mae:.1f} | "+" | ".join(f"{np.mean(pooled[f]):.3f}" for f in EP.LADDERS)+f" | {lo:.3f} |", flush=True)
    print("\n".join(RC.table_lines({name: RC.evaluate(model, rc)})[2:]), flush=True)
    print(mt.assign(raw=raw).groupby("condition")[["mean","raw"]].mean().round(1).sort_values("mean").T.to_string(), flush=True)
