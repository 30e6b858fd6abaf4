"""A blind reverberation feature for the reference-free predictor's reverb ladder (issue 20, tried,
not shipped).

Question: the reverb ladder (Spearman of the prediction against severity over the held-out sweeps
that lengthen the room) is -0.41 pooled over three held-out seeds. Is the reason a missing feature
(the shipped ``decay_s_*`` are decay times of band sums, which the next note or syllable fills), or
the model? Two parts:

    PYTHONPATH=src python benchmarks/try_predictor_reverb.py feature [--sweeps 8]
        renders ``reverb_longer`` sweeps (5 severities + clean; speech, harmonic, pink noise;
        binaural SONICOM-2 and the W channel of FOA; seed 4242, nothing of the training recipe) and
        prints the mean / lowest within-sweep Spearman against severity of the shipped band-sum
        decay times and of the per-bin decay time below (~30 s)
    PYTHONPATH=src python benchmarks/try_predictor_reverb.py ladders --workdir DIR [--pmax 0 10 20 40]
        the shipped recipe fitted (5 members, as shipped) on the training split, then a reverberance
        penalty after the network: ``score - pmax * clip(rt60_hat - 0.3, 0, 1)``, ``rt60_hat`` a
        linear regression of the scenes' true RT60 (replayed from the corpus engine's draws; 0 when
        anechoic) on the three per-bin decay times, fitted on the clean speech and harmonic rows of
        the training split; held-out ladders of seeds 9900-9902 (pooled over sweeps, and the reverb
        ladder per source) and the MUSHRA LOSO Pearson. Tables with kept audio are cached in DIR
        (about 10 min of CPU the first time).
    PYTHONPATH=src python benchmarks/try_predictor_reverb.py network --workdir DIR [--pmax 0 10 20 40]
        the penalty inside the network instead: the recipe refitted on targets ``teacher - pmax *
        clip((rt60 - 0.3) / 1.2, 0, 1)`` from each row's true RT60, with the shipped features and with
        the three per-bin decay times appended (``fit_predictor(extra_columns=...)``); held-out ladders
        as above (held-out targets get the same penalty).

The per-bin decay time (``tail``): ``-60 / s10`` per band group (250-1000, 1000-4000,
4000-12000 Hz), ``s10`` the 10th percentile of the level slopes (dB/s, least squares over 160 ms)
of every STFT bin (~43 ms window, hop an eighth of it) and frame within 40 dB of the group's
loudest bin (levels floored 60 dB below it): a single bin shows a harmonic's decay after the note
changes, because the next note's harmonics fall in other bins (the decay-rate-distribution idea of
blind RT60 estimators, Wen, Habets and Naylor 2008; Löllmann et al. 2010, per bin).
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GROUPS = ((250.0, 1000.0), (1000.0, 4000.0), (4000.0, 12000.0))
TAIL = ["tail_s_low", "tail_s_mid", "tail_s_high"]


def bin_levels(m: torch.Tensor, sample_rate: int, window_s=0.04, slope_s=0.16):
    """``(B, T)`` mono -> ``(levels (B, F, N) dB per STFT bin and frame (window ~``window_s``, hop an
    eighth of it), bin frequencies (F,), kernel (2, 1, k))``: convolved with a bin's levels, the kernel's
    rows give the least-squares slope (dB/s) and the mean level over ``slope_s`` from each frame on."""
    n_fft = 1 << int(math.ceil(math.log2(window_s * sample_rate)))
    hop = n_fft // 8
    fr = sample_rate / hop
    k = max(3, int(round(slope_s * fr)))
    if m.shape[-1] < n_fft + (k + 1) * hop:
        m = torch.nn.functional.pad(m, (0, n_fft + (k + 1) * hop - m.shape[-1]))
    s = torch.stft(m, n_fft, hop, window=torch.hann_window(n_fft, dtype=m.dtype), center=False, return_complex=True)
    lv_all = 10 * torch.log10(s.real ** 2 + s.imag ** 2 + 1e-20)
    f = torch.linspace(0, sample_rate / 2, lv_all.shape[-2], dtype=m.dtype)
    tt = torch.arange(k, dtype=m.dtype) - (k - 1) / 2
    kern = torch.stack([tt / (tt * tt).sum() * fr, torch.full_like(tt, 1.0 / k)])[:, None]
    return lv_all, f, kern


def tail(m: torch.Tensor, sample_rate: int, window_s=0.04, slope_s=0.16, q=0.10) -> torch.Tensor:
    """``(B, T)`` mono -> ``(B, 3)`` per-bin decay times (s; 3 when no decay is seen)."""
    lv_all, f, kern = bin_levels(m, sample_rate, window_s, slope_s)
    out = []
    for lo, hi in GROUPS:
        sel = (f >= lo) & (f < min(hi, 0.45 * sample_rate))
        lv = lv_all[:, sel, :]
        top = lv.amax((-2, -1), keepdim=True)
        lv = torch.maximum(lv, top - 60.0)
        B, K, N = lv.shape
        sm = torch.nn.functional.conv1d(lv.reshape(B * K, 1, N), kern).reshape(B, K, 2, -1)
        slope, act = sm[:, :, 0], sm[:, :, 1] >= top - 40.0
        s10 = []
        for b in range(B):
            v = slope[b][act[b]]
            s10.append(torch.kthvalue(v, max(1, int(math.ceil(q * v.numel())))).values if v.numel() else v.new_zeros(()))
        out.append((60.0 / torch.clamp(-torch.stack(s10), min=20.0)).clamp(max=3.0))
    return torch.stack(out, -1)


def _mono(x: np.ndarray) -> torch.Tensor:
    """``(S, C, T)`` -> the predictor's mono mix ``(S, T)`` float32 (binaural: mean of the ears; else W)."""
    x = torch.from_numpy(np.asarray(x, dtype=np.float32))
    return x.mean(1) if x.shape[1] == 2 else x[:, 0]


def feature_part(n_sweeps: int):
    from scipy.stats import spearmanr

    from spaq.metrics.functional.predictor import FEATURE_NAMES, predictor_features
    from spaq.train.quality import sweep

    col = {n: i for i, n in enumerate(FEATURE_NAMES)}
    res, i = {}, 0
    for fmt in ("binaural", "foa"):
        for src in ("speech", "harmonic", "pink_noise"):
            for k in range(n_sweeps):
                i += 1
                ref, degs = sweep("reverb_longer", fmt, src, [0.2, 0.4, 0.6, 0.8, 1.0], 4242, i,
                                  hrtf="sonicom-2" if fmt == "binaural" else "default",
                                  voices=[["en-gb", "it", "es-419", "fr-be"][k % 4]])
                xs = np.stack([ref] + degs)
                kind = "binaural" if fmt == "binaural" else "mono"
                if kind == "mono":
                    xs = xs[:, :1]
                f = predictor_features(torch.from_numpy(xs.astype(np.float32)), 48000, kind).numpy()
                t = tail(_mono(xs), 48000).numpy()
                sev = np.arange(len(xs))
                for g, name in enumerate(("low", "mid", "high")):
                    for lab, v in ((f"decay_s_{name} (shipped, band sum)", f[:, col[f"decay_s_{name}"]]),
                                   (f"tail_s_{name} (per bin)", t[:, g])):
                        r = spearmanr(sev, v)[0] if np.ptp(v) > 0 else 0.0
                        res.setdefault(lab, {}).setdefault(src, []).append(r)
    print("| feature | " + " | ".join(f"{s} mean / lowest" for s in ("speech", "harmonic", "pink_noise")) + " |")
    print("|---|---|---|---|")
    for lab, d in res.items():
        print(f"| {lab} | " + " | ".join(f"{np.mean(d[s]):+.2f} / {np.min(d[s]):+.2f}" for s in ("speech", "harmonic", "pink_noise")) + " |")


def row_rt60(df, split) -> np.ndarray:
    """The RT60 (s) of each row's rendered scene, 0 when anechoic, replayed from the draws of
    :func:`spaq.train.quality.sweep` (:func:`~spaq.train.quality.sweep_draws`, as
    :func:`spaq.train.predictor.reverb_longer` does)."""
    from spaq.train.predictor import ANCHOR_SWEEP_OFFSET, SWEEP_FORMAT
    from spaq.train.quality import sweep_draws, sweep_params

    fams = list(split.families)
    n_per = len(split.formats) * len(split.sources) * max(1, int(split.anchor_scenes))
    cache, out = {}, np.zeros(len(df))
    for i, (sw, fam, src, voice, head, fmt, sev) in enumerate(zip(
            df["sweep"], df["family"], df["source"], df["voice"], df["head"], df["format"], df["severity"])):
        key = (int(sw), fmt)
        if key not in cache:
            if int(sw) >= ANCHOR_SWEEP_OFFSET:  # clean anchors: their family from the index, rooms by their own share
                idx = int(sw) - ANCHOR_SWEEP_OFFSET
                f, rp = fams[(idx - 1) // n_per], float(split.anchor_room_probability)
            else:
                idx, f, rp = int(sw), fam, float(split.room_probability)
            cache[key] = (f, sweep_draws(f, SWEEP_FORMAT[fmt], src, split.seed, idx, duration_s=float(split.duration_s),
                                         hrtf=head or "default", voices=[voice], room_probability=rp))
        f, draws = cache[key]
        room = draws[1]["room"]
        if room is None:
            continue
        rt = room["rt60_s"]
        if f == "reverb" and sev > 0:
            rt = float(np.clip(rt * sweep_params("reverb", sev, *draws)["rt60_factor"], 0.1, 3.0))
        out[i] = rt
    return out


def _with_tail(df, audio_dir):
    df = df.copy()
    for c in TAIL:
        df[c] = 0.0
    for (sw, kind), g in df.groupby(["sweep", "format"]):
        t = tail(_mono(np.load(Path(audio_dir) / f"{int(sw):05d}_{kind}.npy")), 48000).numpy()
        sev = sorted(g["severity"].unique())
        for i, r in g.iterrows():
            df.loc[i, TAIL] = t[sev.index(r["severity"])]
    return df


def ladders_part(workdir: Path, pmaxes, network: bool = False):
    from scipy.stats import spearmanr

    import eval_predictor as EP
    from spaq.train.predictor import (CorpusSplit, FitSection, PredictorTrainConfig, _mushra_audio, fit_predictor,
                                      fit_rows, loso_calibration, mushra_predictor_table, mushra_stats, predict_table,
                                      split_audio_dir, split_cache_path, split_records)

    torch.set_num_threads(2)
    workdir.mkdir(parents=True, exist_ok=True)
    quiet = lambda m: None  # noqa: E731

    def table(split, stem):
        df = split_records(split, workdir / f"{stem}.csv", quiet, keep_audio=True)
        return _with_tail(df, split_audio_dir(split_cache_path(split, workdir / f"{stem}.csv")))

    tc = PredictorTrainConfig.from_yaml(ROOT / "configs/train/predictor.yaml")
    df = table(tc.corpus, "predictor_train")
    df["rt60"] = row_rt60(df, tc.corpus)
    fit = FitSection(**asdict(tc.fit))
    if network:
        return _network(tc, df, fit, table, pmaxes)
    model, _ = fit_predictor(fit_rows(df, tc.corpus, fit, quiet), fit, quiet)
    clean = df[(df["severity"] == 0) & (df["source"] != "pink_noise")]
    A = np.column_stack([np.ones(len(clean)), clean[TAIL].to_numpy(dtype=np.float64)])
    beta = np.linalg.lstsq(A, clean["rt60"].to_numpy(dtype=np.float64), rcond=None)[0]

    def rt60_hat(X):  # least-squares line on the three per-bin decay times
        return beta[0] + X[TAIL].to_numpy(dtype=np.float64) @ beta[1:]

    print(f"rt60_hat = {beta[0]:+.3f} + {' + '.join(f'{c:.3f} {n}' for c, n in zip(beta[1:], TAIL))}; "
          f"r on the clean speech/harmonic training rows {np.corrcoef(rt60_hat(clean), clean['rt60'])[0, 1]:.3f}")
    tests = {}
    for s in (9900, 9901, 9902):
        sp = CorpusSplit(**{**EP.HELD_OUT, "seed": s})
        t = table(sp, f"predictor_heldout_seed{s}")
        tests[s] = (t, predict_table(model, t))
    mt = mushra_predictor_table(tc.mushra_dir(), tc.calibration.ratings, quiet)
    mt[TAIL] = np.stack([tail(torch.from_numpy(x.astype(np.float32)), 48000)[0].numpy() for x in _mushra_audio(tc.mushra_dir(), mt)])
    m_raw = predict_table(model, mt)["raw"]
    print("| pmax | MUSHRA LOSO | " + " | ".join(EP.LADDERS) + " | reverb: speech / harmonic / pink noise |")
    print("|---|---|" + "---|" * len(EP.LADDERS) + "---|")
    for pm in pmaxes:
        def pen(X):
            return pm * np.clip(rt60_hat(X) - 0.3, 0, 1)
        pooled, by_src = {f: [] for f in EP.LADDERS}, {}
        for s, (t, pt) in tests.items():
            p2 = dict(pt)
            p2["raw"] = np.clip(pt["raw"] - pen(t), 0, 100)
            lad = EP.ladders(p2, t, seed=s, per_sweep=True)
            for f in EP.LADDERS:
                pooled[f] += lad[f].get("sweeps", [])
            longer = EP.reverb_longer(t, s)
            t2 = t.assign(pred=p2["raw"])
            for (k, _), g in t2[t2["family"] == "reverb"].groupby(["sweep", "format"]):
                if longer.get(int(k), False):
                    by_src.setdefault(g["source"].iloc[0], []).append(spearmanr(g["severity"], g["pred"])[0])
        loso = mushra_stats(mt, loso_calibration(mt, np.clip(m_raw - pen(mt), 0, 100)))["pearson_coded"]
        src = " / ".join(f"{np.mean(by_src.get(k, [np.nan])):+.2f} ({len(by_src.get(k, []))})"
                         for k in ("speech", "harmonic", "pink_noise"))
        print(f"| {pm:g} | {loso:.3f} | " + " | ".join(f"{np.mean(pooled[f]):+.3f}" for f in EP.LADDERS) + f" | {src} |",
              flush=True)


def _network(tc, df, fit, table, pmaxes):
    """The penalty as a target of the network (see the module docstring)."""
    import eval_predictor as EP
    from spaq.train.predictor import (CorpusSplit, _mushra_audio, fit_predictor, fit_rows, loso_calibration,
                                      mushra_predictor_table, mushra_stats, predict_table)

    quiet = lambda m: None  # noqa: E731
    tests = {}
    for s in (9900, 9901, 9902):
        sp = CorpusSplit(**{**EP.HELD_OUT, "seed": s})
        t = table(sp, f"predictor_heldout_seed{s}")
        t["rt60"] = row_rt60(t, sp)
        tests[s] = t
    mt = mushra_predictor_table(tc.mushra_dir(), tc.calibration.ratings, quiet)
    mt[TAIL] = np.stack([tail(torch.from_numpy(x.astype(np.float32)), 48000)[0].numpy() for x in _mushra_audio(tc.mushra_dir(), mt)])
    print("| features | pmax | MUSHRA LOSO | held-out accuracy / MAE | " + " | ".join(EP.LADDERS) + " |")
    print("|---|---|---|---|" + "---|" * len(EP.LADDERS))
    for extra in ((), tuple(TAIL)):
        for pm in pmaxes:
            def pen(t):
                return pm * np.clip((t["rt60"] - 0.3) / 1.2, 0, 1)
            d = df.assign(target=np.clip(df["target"] - pen(df), 0, 100))
            model, _ = fit_predictor(fit_rows(d, tc.corpus, fit, quiet), fit, quiet, extra_columns=extra)
            pooled, acc, mae = EP.pooled_heldout(
                model, {s: t.assign(target=np.clip(t["target"] - pen(t), 0, 100)) for s, t in tests.items()})
            loso = mushra_stats(mt, loso_calibration(mt, predict_table(model, mt)["raw"]))["pearson_coded"]
            print(f"| {'shipped + tail' if extra else 'shipped'} | {pm:g} | {loso:.3f} | {acc:.3f} / {mae:.1f} | "
                  + " | ".join(f"{np.mean(pooled[f]):+.3f}" for f in EP.LADDERS) + " |", flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="part", required=True)
    a1 = sub.add_parser("feature")
    a1.add_argument("--sweeps", type=int, default=8)
    for name in ("ladders", "network"):
        a2 = sub.add_parser(name)
        a2.add_argument("--workdir", required=True)
        a2.add_argument("--pmax", type=float, nargs="+", default=[0, 10, 20, 40])
    a = ap.parse_args()
    if a.part == "feature":
        feature_part(a.sweeps)
    else:
        ladders_part(Path(a.workdir), a.pmax, network=a.part == "network")


if __name__ == "__main__":
    main()
