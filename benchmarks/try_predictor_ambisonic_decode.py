"""Try (issue 20, forty-fifth session; not shipped): the reference-free predictor reads ambisonic input
through its binaural decode, as a listener hears it, instead of from W and the intensity vectors.

Why: the reverb ladder's worst held-out sweep (seed 9900 #62, a third-order note in a 0.22 s room) reads
17-20 clean (target 100) and rises along the sweep. The listener sits near a pressure node of the note's
strong partial, so the field has little active intensity (``diffuseness_mean`` 0.70, as a long room) and W
is 11 dB below X/Y/Z; a longer room fills the node. Neither says what the binaural rendering sounds like:
a coherent tone. Variants (the features of binaural and mono input never change; the format one-hot stays):

    A  the binaural spatial features of the decode (interaural coherence mean/spread, ILD spread, IPD
       spread: the shared front-end on ``decode_binaural_effective``) beside the intensity features
    C  A without the intensity features (diffuseness mean/spread, directional share, XYZ/W level: zeros)
    D  A without the diffuseness mean/spread only
    E  everything from the decode: the monaural features of the ears' mean instead of W, the spatial
       features as for binaural input (side/mid level in the last slot), the intensity features zeros
    F  E, but the ``edge`` group (where the spectrum ends, how steeply) still from W: a band limit is the
       signal's, and the decode's HRTF colouring (pinna notches) is no edge a listener hears
    G  E for third-order input, but first-order input keeps W's monaural features (the mono rows are W of
       the FOA scenes). Shipped in the forty-sixth session as the FOA / 3OA network of a routed checkpoint
       (``predictor_features(..., ambisonic_read="decode")``, recipe top-level ``ambisonic``); its third-order
       monaural mix there is taken from the rendering in float32 as binaural input's is, where this patch
       averaged in float64 (float32 rounding apart)

``--extra JSON`` appends splits to the recipe's ``extra`` (e.g. ``'[{"seed": 9600, "sources": ["harmonic"],
"families": ["lowpass"], "scenes": 4}]'``: 4 single-note low-pass sweeps per format).

    PYTHONPATH=src python benchmarks/try_predictor_ambisonic_decode.py --variant E --workdir DIR [--seed 7]

builds the recipe's training tables (``configs/train/predictor.yaml``: corpus split + extra splits) and the
held-out tables of seeds 9900-9902 with the variant's features into DIR (~15 min of CPU the first time,
cached after; the tables' cache keys do not know the patch, so give each build its own DIR: one serves A, C
and D, and E, F and G need one each), fits the recipe's 15 networks (``--seed`` replaces the recipe's fit seed) and prints the pooled ladders (as ``eval_predictor_seeds.py``), per format,
held-out accuracy / MAE and the speech-codec MUSHRA half's LOSO Pearson. Results:
``benchmarks/results/predictor_seeds.md`` (forty-fifth session).
"""
import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_predictor as EP  # noqa: E402
import spaq.metrics.functional.predictor as FP  # noqa: E402
from spaq.train.predictor import (CorpusSplit, FitSection, PredictorTrainConfig, fit_predictor,  # noqa: E402
                                  loso_calibration, mushra_predictor_table, mushra_stats, predict_table,
                                  split_records, training_rows)

ROOT = Path(__file__).resolve().parents[1]
INTENSITY = ["diffuseness_mean", "diffuseness_spread", "directional_share"]
ZEROED = {"A": [], "C": INTENSITY + ["spatial_level_db"], "D": INTENSITY[:2], "E": INTENSITY, "F": INTENSITY, "G": INTENSITY}
SAMPLE_RATE = 48000  # the corpus engine's rate (the patched mono mix has no rate argument)


def patch(variant: str) -> None:
    """Replace the ambisonic feature functions of ``spaq.metrics.functional.predictor`` for ``variant``."""
    orig_amb, orig_mono, orig_features = FP._spatial_ambisonics, FP.mono_mix, FP.predictor_features
    edge = [FP.FEATURE_NAMES.index(n) for n in FP.FEATURE_GROUPS["edge"]]

    decode = FP._decode  # the shipped decode reading's own rendering (variant G is what shipped, routed by format)

    def spatial(x, sample_rate):
        amb = orig_amb(x, sample_rate)
        b = FP._spatial_binaural(decode(x, sample_rate), sample_rate)
        last = b[:, 7:] if variant in ("E", "F", "G") else amb[:, 7:]  # side/mid level of the decode, or XYZ/W level
        return torch.cat([b[:, :4], amb[:, 4:7], last], -1)

    def mono(x, kind):
        if kind in (("hoa",) if variant == "G" else ("foa", "hoa")):
            return decode(x, SAMPLE_RATE).mean(-2).to(x.dtype)
        return orig_mono(x, kind)

    def features_f(x, sample_rate, kind, level_dbfs=None):
        out = orig_features(x, sample_rate, kind, level_dbfs)
        if kind in ("foa", "hoa"):  # the edge group of W, as the unpatched features compute it
            if level_dbfs is not None:
                raise ValueError("variant F is written for the recipe's features at the level given")
            w_edge = FP._psycho_band(orig_mono(x.to(torch.float32), kind), sample_rate)[2].to(out.dtype)
            out[:, edge] = torch.nan_to_num(w_edge, nan=0.0, posinf=0.0, neginf=0.0)
        return out

    FP._spatial_ambisonics = spatial
    if variant in ("E", "F", "G"):
        FP.mono_mix = mono
    if variant == "F":
        FP.predictor_features = features_f


def zero(df: pd.DataFrame, cols: list) -> pd.DataFrame:
    if not cols:
        return df
    df = df.copy()
    df.loc[df["format"].isin(["foa", "hoa"]).to_numpy(), cols] = 0.0
    return df


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=sorted(ZEROED), default="E")
    ap.add_argument("--workdir", type=Path, required=True, help="table cache (one per build: A/C/D share one)")
    ap.add_argument("--seed", type=int, default=None, help="fit seed (default: the recipe's)")
    ap.add_argument("--extra", default="[]", help="JSON list of splits appended to the recipe's extra")
    a = ap.parse_args()
    torch.set_num_threads(2)
    patch(a.variant)
    log = lambda m: None  # noqa: E731
    raw = yaml.safe_load((ROOT / "configs/train/predictor.yaml").read_text())
    raw["extra"] = list(raw.get("extra") or []) + json.loads(a.extra)
    tc = PredictorTrainConfig.from_dict(raw, base_dir=ROOT)
    fit = FitSection(**{**asdict(tc.fit), "seed": int(tc.seed if a.seed is None else a.seed)})
    (a.workdir / "train").mkdir(parents=True, exist_ok=True)
    df = zero(training_rows(tc, fit, a.workdir / "train", log=log), ZEROED[a.variant])
    model, _ = fit_predictor(df, fit, log, input_level_dbfs=tc.input_level_dbfs)
    pooled, stats, rows = {f: [] for f in EP.LADDERS}, [], []
    for s in (9900, 9901, 9902):
        t = split_records(CorpusSplit(**{**EP.HELD_OUT, "seed": s}), a.workdir / f"predictor_heldout_seed{s}.csv",
                          log=log)
        t = zero(t, ZEROED[a.variant])
        pt = predict_table(model, t)
        stats.append(EP.corpus_stats(pt, t))
        for f, v in EP.ladders(pt, t, seed=s, per_sweep=True).items():
            pooled[f] += v.get("sweeps", [])
        for fmt in ("binaural", "foa", "hoa", "mono"):
            sub = (t["format"] == fmt).to_numpy()
            lad = EP.ladders({k: v[sub] for k, v in pt.items()}, t[sub], seed=s, per_sweep=True)
            rows += [(fmt, f, x) for f in EP.LADDERS for x in lad[f].get("sweeps", [])]
    per = pd.DataFrame(rows, columns=["format", "family", "rho"]).pivot_table(
        index="family", columns="format", values="rho", aggfunc="mean")
    print(per.round(3).to_string())
    mt = mushra_predictor_table(tc.mushra_dir(), tc.calibration.ratings, log)
    loso = mushra_stats(mt, loso_calibration(mt, predict_table(model, mt)["raw"], tc.calibration.scale))
    print(f"| {a.variant}, fit seed {fit.seed} | {loso['pearson_coded']:.3f} | "
          f"{np.mean([x['accuracy'] for x in stats]):.3f} / {np.mean([x['mae'] for x in stats]):.1f} | "
          + " | ".join(f"{np.mean(pooled[f]):.3f}" for f in EP.LADDERS) + " |")


if __name__ == "__main__":
    main()
