"""How much the reference-free predictor's score depends on the digital gain of a file (issue 20).

    PYTHONPATH=src python benchmarks/eval_predictor_level.py [--checkpoint A.pt B.pt ...]
        [--cache DIR] [--out benchmarks/results/predictor_level.md]

Real recordings, each scored as it is and scaled by -20, -10, -6, +6 and +10 dB (a gain that would
push a sample to full scale is left out for that item):

* the speech-codec MUSHRA half the predictor is calibrated on (64 rated files, dual mono, read as
  mono as the calibration reads them; ``../shared``);
* with ``--cache DIR`` (``benchmarks/rebuild_param_coding.py``), the 42 binaural files of the
  spatial-codings MUSHRA (35 codings + 7 hidden references; its mono condition is a one-channel file
  and left out).

Reported per checkpoint and gain: mean / 95th percentile / largest absolute score change against the
file as it is, and the MUSHRA half's leave-one-stimulus-out Pearson (the recipe's calibration refitted at that
gain) -- the figure the README reports at gain 0. The last column scales every file to one active level
(-30 dBFS), removing the level differences between the files. Nothing is fitted here.
"""
from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

GAINS = (-20.0, -10.0, -6.0, 0.0, 6.0, 10.0)
EQUAL_DBFS = -30.0  # "equal level": every file scaled to this active level (amid the speech files' own levels)


def _scores(metric, items, kind) -> np.ndarray:
    """``(items, gains + 1)`` scores; NaN where the gain would reach full scale. The last column: every
    item scaled to the same active level (``EQUAL_DBFS``), the level differences between files removed."""
    import torch

    from spaq.metrics.functional.predictor import active_level_db, mono_mix

    out = np.full((len(items), len(GAINS) + 1), np.nan)
    for i, x in enumerate(items):
        pk = float(np.abs(x).max())
        t = torch.from_numpy(x)[None]
        eq = EQUAL_DBFS - float(active_level_db(mono_mix(t, kind))[0])
        for j, g in enumerate(GAINS + (eq,)):
            k = 10 ** (g / 20)
            if pk * k < 0.999:
                out[i, j] = float(metric.predict_tensor(t * k, kind)["score"][0])
    return out


def main(argv=None):
    import soundfile as sf
    import torch

    from spaq.files import atomic_write
    from spaq.io import resample
    from spaq.metrics.predictor import Predictor
    from spaq.train.predictor import PredictorTrainConfig, _mushra_audio, loso_calibration, mushra_stats
    from spaq.train.quality import mushra_table
    from spaq.weights import resolve

    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", nargs="*", default=[None], help="default: the packaged predictor_v1")
    ap.add_argument("--cache", default=None, help="the folder benchmarks/rebuild_param_coding.py wrote")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/predictor_level.md"))
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    tc = PredictorTrainConfig.from_yaml(ROOT / "configs/train/predictor.yaml")
    root = tc.mushra_dir()
    if not root.is_dir():
        sys.exit(f"error: MUSHRA data not found at {root}")
    table = mushra_table(root, tc.calibration.ratings)
    sets = {"speech-codec MUSHRA (64 files, mono)": (list(_mushra_audio(root, table)), "mono")}  # (1, T) each
    if a.cache:
        files = sorted(glob.glob(str(Path(a.cache) / "*_binau.wav")))
        if not files:
            sys.exit(f"error: no *_binau.wav in {a.cache} (run benchmarks/rebuild_param_coding.py)")
        items = []
        for f in files:
            x, fs = sf.read(f, dtype="float64", always_2d=True)
            items.append(resample(x.T, fs, 48000) if fs != 48000 else x.T)
        sets[f"spatial-codings MUSHRA ({len(files)} binaural files)"] = (items, "binaural")

    L = ["# The predictor's score against the gain of the file (issue 20)", "",
         "`PYTHONPATH=src python benchmarks/eval_predictor_level.py --checkpoint ... --cache DIR`. Each real file "
         "scored as it is and scaled by the gain (items a gain would clip are left out at that gain); the "
         "absolute score change against the file as it is. LOSO: the speech-codec half's leave-one-stimulus-out Pearson of the "
         "calibrated reading at that gain (the README's figure at 0 dB).", ""]
    for ck in a.checkpoint:
        w = resolve("predictor_v1", path=ck, offline=True)
        m = Predictor(checkpoint=w.path)
        lvl = m.model.cfg.input_level_dbfs
        L += [f"## checkpoint sha256 {w.sha256[:8]}... (input level: "
              + ("features at the file's own level" if lvl is None else f"scaled to {lvl:g} dBFS active level") + ")", "",
              "| set | " + " | ".join(f"{g:+g} dB" for g in GAINS if g != 0) + f" | every file at {EQUAL_DBFS:g} dBFS |",
              "|---|" + "---|" * len(GAINS)]
        for name, (items, kind) in sets.items():
            S = _scores(m, items, kind)
            d = np.abs(S - S[:, [GAINS.index(0.0)]])
            cells = [f"{np.nanmean(d[:, j]):.1f} / {np.nanpercentile(d[:, j], 95):.1f} / {np.nanmax(d[:, j]):.1f}"
                     for j, g in enumerate(GAINS + (None,)) if g != 0]
            L.append(f"| {name}: mean / p95 / max change, n at +10 dB {int(np.isfinite(S[:, len(GAINS) - 1]).sum())} | " + " | ".join(cells) + " |")
            if kind == "mono":
                lo = []
                for j in range(len(GAINS) + 1):
                    ok = np.isfinite(S[:, j])
                    t = table[ok].reset_index(drop=True)
                    raw = S[ok, j]
                    lo.append(mushra_stats(t, loso_calibration(t, raw, m.model.cfg.calib_scale))["pearson_coded"])
                L.append("| speech-codec MUSHRA: LOSO Pearson (0 dB: "
                         f"{lo[GAINS.index(0.0)]:.3f}) | " + " | ".join(f"{v:.3f}" for j, v in enumerate(lo) if j == len(GAINS) or GAINS[j] != 0) + " |")
        L.append("")
    atomic_write(a.out, lambda tmp: Path(tmp).write_text("\n".join(L), encoding="utf-8"))
    print("\n".join(L))


if __name__ == "__main__":
    main()
