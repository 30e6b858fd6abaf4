"""Why the predictor's low-pass ladder misses -0.9 (issue 20), and a spectral-edge feature tried
against it (twenty-third session; not shipped, see benchmarks/results/predictor_seeds.md).

    PYTHONPATH=src python benchmarks/try_predictor_lowpass.py diagnose --workdir DIR
    PYTHONPATH=src python benchmarks/try_predictor_lowpass.py edge --workdir DIR [--scenes 2 4]
        [--fit-seeds 7 17 27] [--members 5] [--hop 1024] [--variants shipped "+ edge (3)" "+ bw40_oct"]
    PYTHONPATH=src python benchmarks/try_predictor_lowpass.py mushra --workdir DIR [--hop 1024] [--scenes 2 4]

``diagnose``: the held-out low-pass sweeps (seeds 9900-9902, SONICOM-2, audible sources) of the
packaged predictor, with the teacher's targets, the predictions and the band and edge features of
the sweeps below -0.9.

``edge``: the shipped recipe refitted with the edge features appended (``fit_predictor(extra_columns=
...)``), for several fitting seeds and ensemble sizes and, with ``--scenes``, on a training split with
more scenes per family x format x source; pooled over the held-out seeds 9900-9902. The edge
features of the predictor's mono mix (ears' mean, W, the channel): the long-term spectrum (an STFT
of 2048 samples, hop ``--hop``, the frames within 60 dB of the loudest) in 1/6-octave bands from
250 Hz to 0.45 fs, each band's *upper envelope* (its loudest bin, so a line spectrum reads as its
partials), floored 80 dB below the loudest band; then

* ``bw40_oct``: where the envelope last falls below (loudest - 40 dB), in octaves re 1 kHz,
  interpolated between bands (a continuous version of the shipped ``top_band``);
* ``edge_drop_db``: the steepest one-octave fall of the envelope (dB), and ``edge_oct`` where it
  starts (octaves re 1 kHz): a filter's or codec's cut is steeper than most sources' own roll-off.

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
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

EDGE = ["bw40_oct", "edge_drop_db", "edge_oct"]
#: name -> the columns appended to the recipe's features
VARIANTS = {"shipped": (), "+ bw40_oct": ("bw40_oct",), "+ edge (3)": tuple(EDGE)}
_N_FFT = 2048


def edge_features(m: np.ndarray, sr: int = 48000, hop: int = 1024) -> np.ndarray:
    """``(B, T)`` mono mixes -> ``(B, 3)``: ``bw40_oct``, ``edge_drop_db``, ``edge_oct`` (module docstring)."""
    x = torch.as_tensor(np.asarray(m, dtype=np.float64))
    if x.shape[-1] < _N_FFT:
        x = torch.nn.functional.pad(x, (0, _N_FFT - x.shape[-1]))
    s = torch.stft(x, _N_FFT, hop, window=torch.hann_window(_N_FFT, dtype=x.dtype), center=False,
                   return_complex=True)
    p = (s.real ** 2 + s.imag ** 2).numpy()  # (B, K, N)
    f = np.linspace(0, sr / 2, p.shape[1])
    edges = 250.0 * 2 ** (np.arange(0, 64) / 6)
    edges = edges[edges <= 0.45 * sr]
    member = [(f >= lo) & (f < hi) for lo, hi in zip(edges[:-1], edges[1:])]
    keep = [i for i, mb in enumerate(member) if mb.any()]
    centres = np.sqrt(edges[:-1] * edges[1:])[keep]
    out = np.zeros((p.shape[0], 3))
    for b in range(p.shape[0]):
        e = p[b].sum(0)
        act = e > e.max() * 1e-6
        lt = p[b][:, act].mean(1) if act.any() else p[b].mean(1)
        lv = 10 * np.log10(np.array([lt[member[i]].max() for i in keep]) + 1e-20)
        lv = np.maximum(lv, lv.max() - 80.0)
        rel = lv - lv.max()
        j = int(np.nonzero(rel >= -40.0)[0][-1])
        oct_ = np.log2(centres[j] / 1000.0)
        if j + 1 < len(rel):  # interpolate the crossing between band j and j + 1
            oct_ += min((rel[j] + 40.0) / max(rel[j] - rel[j + 1], 1e-9), 1.0) / 6
        drop = lv[:-6] - lv[6:]
        k = int(np.argmax(drop))
        out[b] = (oct_, drop[k], np.log2(centres[k] / 1000.0))
    return out


def add_edge(df, audio_dir, hop: int):
    """``df`` with the :data:`EDGE` columns from the audio ``make_split`` kept in ``audio_dir``."""
    df = df.copy()
    for c in EDGE:
        df[c] = 0.0
    for (sw, kind), g in df.groupby(["sweep", "format"]):
        x = np.load(os.path.join(audio_dir, f"{int(sw):05d}_{kind}.npy"))
        fe = edge_features(x.mean(1) if kind == "binaural" else x[:, 0], hop=hop)
        sev = sorted(g["severity"].unique())
        for i, r in g.iterrows():
            df.loc[i, EDGE] = fe[sev.index(r["severity"])]
    return df


def _tables(wd: Path, hop: int, scenes: int | None = None):
    """The recipe, its training split (``scenes`` per cell) and the held-out seeds' tables, with the edge columns."""
    import eval_predictor as EP
    from spaq.train.predictor import (CorpusSplit, PredictorTrainConfig, split_audio_dir, split_cache_path,
                                      split_records)

    quiet = lambda m: None  # noqa: E731

    def table(split, name):
        t = split_records(split, wd / name, log=quiet, keep_audio=True)
        return add_edge(t, split_audio_dir(split_cache_path(split, wd / name)), hop)

    tc = PredictorTrainConfig.from_yaml(ROOT / "configs/train/predictor.yaml")
    split = tc.corpus if scenes is None else replace(tc.corpus, scenes=int(scenes))
    tests = {s: table(CorpusSplit(**{**EP.HELD_OUT, "seed": s}), f"predictor_heldout_seed{s}.csv")
             for s in (9900, 9901, 9902)}
    return tc, (table(split, "predictor_train.csv"), split), tests


def _mushra(tc, hop: int):
    from spaq.train.predictor import _mushra_audio, mushra_predictor_table

    mt = mushra_predictor_table(tc.mushra_dir(), tc.calibration.ratings, lambda m: None)
    mt[EDGE] = np.concatenate([edge_features(x, hop=hop) for x in _mushra_audio(tc.mushra_dir(), mt)])
    return mt


def diagnose(wd: Path, hop: int):
    from scipy.stats import spearmanr

    from spaq.models import checkpoint
    from spaq.train.predictor import predict_table
    from spaq.weights import resolve

    _, _, tests = _tables(wd, hop)
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
    """The network's score (0..100, a sigmoid x 100) back on its logit scale (clipped at 0.05 / 99.95)."""
    r = np.clip(np.asarray(raw, dtype=np.float64), 0.05, 99.95)
    return np.log(r / (100.0 - r))


def _fit(tc, df, split, extra, seed=None, members=None):
    from spaq.train.predictor import FitSection, fit_predictor, fit_rows

    quiet = lambda m: None  # noqa: E731
    fit = FitSection(**{**asdict(tc.fit), "seed": int(tc.fit.seed if seed is None else seed),
                        "members": int(members or tc.fit.members)})
    model, _ = fit_predictor(fit_rows(df, split, fit, quiet), fit, quiet, extra_columns=extra)
    return model, fit


def edge(wd: Path, scenes: list[int], fit_seeds: list[int], variants: list[str], members: int | None, hop: int):
    import eval_predictor as EP
    from spaq.train.predictor import loso_calibration, mushra_stats, predict_table

    torch.set_num_threads(2)
    tc, _, tests = _tables(wd, hop)
    mt = _mushra(tc, hop)
    print(f"edge features: STFT hop {hop}")
    print("| training scenes | fit seed x members | features | MUSHRA LOSO | MUSHRA LOSO, logit scale | "
          "held-out accuracy / MAE | " + " | ".join(EP.LADDERS) + " |")
    print("|---|---|---|---|---|---|" + "---|" * len(EP.LADDERS), flush=True)
    for sc in scenes:
        _, (df, split), _ = _tables(wd, hop, sc)
        for fs, name in [(fs, v) for fs in fit_seeds for v in variants]:
            model, fit = _fit(tc, df, split, VARIANTS[name], fs, members)
            pooled, acc, mae = EP.pooled_heldout(model, tests)
            raw = np.asarray(predict_table(model, mt)["raw"], dtype=np.float64)
            loso = mushra_stats(mt, loso_calibration(mt, raw))["pearson_coded"]
            loso_logit = mushra_stats(mt, loso_calibration(mt, score_logit(raw)))["pearson_coded"]
            print(f"| {sc} | {fs} x {fit.members} | {name} | {loso:.3f} | {loso_logit:.3f} | {acc:.3f} / {mae:.1f} | "
                  + " | ".join(f"{np.mean(pooled[f]):+.3f}" for f in EP.LADDERS) + " |", flush=True)


def mushra(wd: Path, hop: int, scenes: list[int]):
    from spaq.train.predictor import loso_calibration, mushra_stats, predict_table

    torch.set_num_threads(2)
    tc, _, _ = _tables(wd, hop)
    mt = _mushra(tc, hop)
    cols = []
    for sc, name in [(sc, v) for sc in scenes for v in ("shipped", "+ edge (3)")]:
        _, (df, split), _ = _tables(wd, hop, sc)
        model, _ = _fit(tc, df, split, VARIANTS[name])
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
        p.add_argument("--hop", type=int, default=1024, help="STFT hop of the edge features (samples at 48 kHz)")
        if name != "diagnose":
            p.add_argument("--scenes", type=int, nargs="+", default=[2], help="training scenes per cell (recipe: 2)")
        if name == "edge":
            p.add_argument("--fit-seeds", type=int, nargs="+", default=[7], help="the recipe's fit seed is 7")
            p.add_argument("--members", type=int, default=None, help="ensemble size (the recipe's: 5)")
            p.add_argument("--variants", nargs="+", default=["shipped", "+ edge (3)"], choices=list(VARIANTS))
    a = ap.parse_args()
    if a.part == "diagnose":
        diagnose(a.workdir, a.hop)
    elif a.part == "edge":
        edge(a.workdir, a.scenes, a.fit_seeds, a.variants, a.members, a.hop)
    else:
        mushra(a.workdir, a.hop, a.scenes)


if __name__ == "__main__":
    main()
