"""The embedding-distance study of issue 18, reproducible: the corpora, the runs, the results file.

    # (a) synthetic corpus: the original study's families (noise, codec, time-stretch) + spatial ones
    spaq generate configs/study_embeddings.yaml --out corpus_study
    spaq study embeddings corpus_study --out study_corpus -e bast -e resemblyzer \
        -m pesq -m stoi -m estoi -m si_sdr -m mrstft -m loudness -m visqol -m visqol_speech -m quality -m cues
    # (b) the shared speech-codec MUSHRA half (coded conditions, mean rating per stimulus x condition)
    python benchmarks/study_embeddings.py mushra-manifest mushra.csv
    spaq study embeddings mushra.csv --out study_mushra -e bast -e resemblyzer -e cdpam \
        -m pesq -m stoi -m estoi -m si_sdr -m mrstft -m loudness -m visqol -m visqol_speech -m dnsmos -m quality
    # per-ear exactness of the classic metrics against the libraries' own calls (16 kHz binaural)
    python benchmarks/study_embeddings.py exactness corpus_study --out exactness.json
    # the results file (headline tables; copies each correlations.csv next to it)
    python benchmarks/study_embeddings.py summary study_corpus study_mushra --exactness exactness.json \
        --out benchmarks/results/study_embeddings.md

One thread (OMP_NUM_THREADS=1); every number is CPU time (time.process_time), not wall time.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
MUSHRA = REPO.parent / "shared" / "listening-tests" / "speech-codec-mushra"
#: the original study (two files): OpenL3 <-> STOI and VGGish <-> PESQ Pearson
ORIGINAL = {("openl3", "stoi"): 0.947, ("vggish", "pesq"): 0.970}


def mushra_manifest(out: Path, root: Path = MUSHRA, with_reference: bool = False) -> pd.DataFrame:
    """A study manifest (``id, ref, deg, family, listening``) of the shared MUSHRA half: one row
    per stimulus x coded condition (``with_reference``: the hidden references too), ``listening``
    the mean rating, ``family`` the condition; paths absolute (the files stay in shared/)."""
    from spaq.train.quality import mushra_table

    t = mushra_table(root)
    if not with_reference:
        t = t[t["condition"] != "Reference"]
    audio = Path(root).resolve() / "audio"
    df = pd.DataFrame({"id": [f.replace("/", "_").removesuffix(".wav") for f in t["file"]],
                       "ref": [str(audio / s / "ref.wav") for s in t["stimulus"]],
                       "deg": [str(audio / f) for f in t["file"]],
                       "family": t["condition"].to_numpy(), "listening": t["mean"].to_numpy()})
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    return df


EXACT_METRICS = ("pesq", "pesq_nb", "stoi", "estoi", "visqol_speech", "dnsmos", "loudness", "visqol")


def exactness(corpus: str, n_pairs: int = 12, fs: int = 16000, metrics=EXACT_METRICS) -> dict:
    """Max |spaq's per-ear value - the library's own call on that channel| over the first
    ``n_pairs`` binaural pairs of ``corpus`` at ``fs`` (``visqol`` audio mode at 48 kHz)."""
    import pesq as pesq_lib
    import pyloudnorm
    from pystoi import stoi as stoi_lib
    from visqol import VisqolApi

    import spaq
    from spaq.batch import read_pairs
    from spaq.io import load_pair, resample
    from spaq.metrics import metric_class

    speech, audio = VisqolApi(), VisqolApi()
    speech.create(mode="speech", use_lattice_model=False)
    audio.create(mode="audio")

    def lib(name, r, d, rate):
        if name in ("pesq", "pesq_nb"):
            return pesq_lib.pesq(rate, r, d, "wb" if name == "pesq" else "nb")
        if name in ("stoi", "estoi"):
            return stoi_lib(r, d, rate, extended=name == "estoi")
        if name == "visqol_speech":
            return speech.measure_from_arrays(r, d, rate).moslqo
        if name == "visqol":
            return audio.measure_from_arrays(r, d, rate).moslqo
        if name == "dnsmos":
            from speechmos import dnsmos

            return dnsmos.run(np.clip(d, -1.0, 1.0), rate)["ovrl_mos"]
        if name == "loudness":
            m = pyloudnorm.Meter(rate)
            return abs(m.integrated_loudness(d) - m.integrated_loudness(r))
        raise KeyError(name)

    pairs = read_pairs(corpus)
    pairs = pairs[pairs["format"].isin(["binaural", ""])]
    deltas: dict = {}
    used = 0
    t0 = time.process_time()
    for p in pairs.itertuples(index=False):
        if used >= n_pairs:
            break
        for name in metrics:
            rate = 48000 if name == "visqol" else fs  # the caller's rate; spaq resamples to the metric's
            mrate = metric_class(name).sample_rate or rate
            pr = load_pair(p.ref, p.deg, target_rate=rate, fmt="binaural")
            r, d = np.asarray(pr.ref, np.float64)[0], np.asarray(pr.deg, np.float64)[0]  # (2, T)
            try:
                res = spaq.score(r, d, sample_rate=rate, metrics=[name], align=False, strict=True).results[name]
            except spaq.SpaqError:
                continue  # refused (e.g. no utterance): nothing to compare
            for ear, ch in (("left", 0), ("right", 1)):
                v = float(res.values[ear])
                lv = float(lib(name, resample(r[ch], rate, mrate), resample(d[ch], rate, mrate), mrate))
                deltas.setdefault(name, []).append(abs(v - lv))
        used += 1
    out = {name: {"max_abs_delta": float(np.max(v)), "n_ear_values": len(v)} for name, v in deltas.items()}
    out["_pairs"] = used
    out["_cpu_s"] = time.process_time() - t0
    return out


def _row(corr: pd.DataFrame, x: str, y: str, family: str = "all") -> pd.Series | None:
    hit = corr[(corr["x"] == x) & (corr["y"] == y) & (corr["family"] == family)]
    return None if hit.empty else hit.iloc[0]


def _cell(r) -> str:
    if r is None or not np.isfinite(r["pearson"]):
        return "n/a"
    return f"{r['pearson']:.3f} [{r['pearson_lo']:.2f}, {r['pearson_hi']:.2f}] / {r['spearman']:.3f}"


def _table(corr: pd.DataFrame, xs: list, ys: list, family: str = "all") -> list[str]:
    lines = ["| x \\ y | " + " | ".join(ys) + " |", "|---" * (len(ys) + 1) + "|"]
    for x in xs:
        lines.append(f"| {x} | " + " | ".join(_cell(_row(corr, x, y, family)) for y in ys) + " |")
    return lines


def headline(corpus_dir: Path, mushra_dir: Path) -> list[str]:
    """One table: Pearson (Spearman) of each encoder and metric against PESQ, STOI and severity
    on the synthetic corpus, and against the mean MUSHRA rating on the listening test (from
    the two ``pairs.csv``, all pairs, finite values)."""
    from scipy.stats import pearsonr, spearmanr

    pa, pb = (pd.read_csv(d / "pairs.csv", dtype={"id": str}) for d in (corpus_dir, mushra_dir))
    skip = ("id", "family", "severity", "listening")
    cols = [c for c in dict.fromkeys(list(pa.columns) + list(pb.columns))
            if c not in skip and not c.startswith("cpu_s.")]
    xs = [c for c in cols if c.startswith("emb.")] + [c for c in cols if not c.startswith("emb.")]

    def c(df, x, y):
        if x not in df or y not in df:
            return "–"
        a, b = df[x].to_numpy(np.float64), df[y].to_numpy(np.float64)
        ok = np.isfinite(a) & np.isfinite(b)
        if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
            return "–"
        return f"{pearsonr(a[ok], b[ok])[0]:.2f} ({spearmanr(a[ok], b[ok])[0]:.2f})"

    lines = ["| x | ↔ PESQ (a) | ↔ STOI (a) | ↔ severity (a) | ↔ MUSHRA mean (b) |", "|---|---|---|---|---|"]
    for x in xs:
        lines.append(f"| {x} | {c(pa, x, 'pesq')} | {c(pa, x, 'stoi')} | {c(pa, x, 'severity')} | "
                     f"{c(pb, x, 'listening')} |")
    return [f"(a) synthetic corpus, {len(pa)} pairs; (b) shared speech-codec MUSHRA half, {len(pb)} coded "
            "stimulus x condition means. Pearson (Spearman) over all pairs; – : not computed there.", ""] + lines


def summary(dirs: list[Path], out: Path, exact: Path | None = None) -> str:
    lines = ["# Embedding-distance study (issue 18)", "",
             "Produced by `benchmarks/study_embeddings.py` (commands in its docstring). Cells: Pearson "
             "[95 % bootstrap interval] / Spearman over pairs. `emb.X`: mean frame-wise cosine similarity of "
             "reference and degraded embeddings of encoder X (higher = more similar); spatial pairs by the classic "
             "metrics' policy (each ear, mean of the ears). Severity correlations are expected negative for "
             "similarities and higher-is-better metrics.", ""]
    if len(dirs) == 2:
        lines += ["## Headline", ""] + headline(dirs[0], dirs[1]) + [""]
    for d in dirs:
        pairs = pd.read_csv(d / "pairs.csv", dtype={"id": str})
        corr = pd.read_csv(d / "correlations.csv")
        name = d.name
        shutil.copyfile(d / "correlations.csv", out.parent / f"study_embeddings_{name}_correlations.csv")
        xs = sorted({x for x in corr["x"] if x.startswith("emb.")})
        metrics = [c for c in pairs.columns if c not in ("id", "family", "severity", "listening")
                   and not c.startswith(("emb.", "cpu_s."))]
        targets = [t for t in ("listening", "severity") if t in pairs.columns]
        fams = sorted(set(pairs["family"]))
        lines += [f"## {name}: {len(pairs)} pairs", "",
                  f"Families: {', '.join(f'{f} ({int((pairs.family == f).sum())})' for f in fams)}.", ""]
        cpu = {c[len("cpu_s."):]: pairs[c] for c in pairs.columns if c.startswith("cpu_s.")}
        lines.append("CPU seconds per pair (one thread; mean, max): " + ", ".join(
            f"`{k}` {v.mean():.2f}, {v.max():.2f}" for k, v in cpu.items() if np.isfinite(v).any()) + ".")
        lines.append("")
        lines += ["### Encoders against the metrics and targets (all pairs)", ""]
        lines += _table(corr, xs, metrics + targets) + [""]
        if targets:
            lines += [f"### Metrics against {' and '.join(targets)} (all pairs)", "",
                      "| metric | " + " | ".join(targets) + " |", "|---" * (len(targets) + 1) + "|"]
            for m in metrics + xs:
                lines.append(f"| {m} | " + " | ".join(_cell(_row(corr, m, t) if not m.startswith("emb.")
                                                            else _row(corr, m, t)) for t in targets) + " |")
            lines.append("")
        orig = [f for f in ("noise", "codec", "time_stretch") if f in fams]
        if "severity" in pairs.columns and orig:
            cols = xs + [m for m in ("pesq", "stoi", "visqol") if m in pairs.columns]
            lines += ["### The original study's families at three levels (severity terciles 0-1/3, 1/3-2/3, "
                      "2/3-1; means)", "", "| family | level | n | " + " | ".join(cols) + " |",
                      "|---|---|---|" + "---|" * len(cols)]
            for f in orig:
                sub = pairs[pairs.family == f]
                lvl = np.minimum((sub["severity"].to_numpy() * 3).astype(int), 2)
                for k, name in enumerate(("low", "mid", "high")):
                    g = sub[lvl == k]
                    means = " | ".join(f"{g[c].mean():.3f}" for c in cols)
                    lines.append(f"| {f} | {name} | {len(g)} | {means} |")
            lines.append("")
        lines += ["### Per family: each encoder against PESQ and STOI (Pearson / Spearman)", "",
                  "| family | n | " + " | ".join(f"{x}↔{y}" for x in xs for y in ("pesq", "stoi")) + " |",
                  "|---|---|" + "---|" * (2 * len(xs))]
        for f in fams:
            n = int((pairs.family == f).sum())
            cells = []
            for x in xs:
                for y in ("pesq", "stoi"):
                    r = _row(corr, x, y, f)
                    cells.append("n/a" if r is None or not np.isfinite(r["pearson"]) else
                                 f"{r['pearson']:.2f} / {r['spearman']:.2f}")
            lines.append(f"| {f} | {n} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## The original study's numbers", "",
              "On two files: OpenL3 ↔ STOI 0.947, VGGish ↔ PESQ 0.970 (Pearson). OpenL3 and VGGish cannot be "
              "loaded here without a download; `-e openl3=PATH` / `-e vggish=PATH` take a user's exported model.", ""]
    if exact is not None and exact.is_file():
        ex = json.loads(exact.read_text())
        lines += ["## Per-ear exactness of the classic metrics", "",
                  f"Binaural pairs of the corpus at 16 kHz (`visqol` audio mode at 48 kHz), {ex['_pairs']} pairs, "
                  "`align=False`: max |spaq's per-ear value - the library's own call on that channel| "
                  "(target 1e-3).", "", "| metric | ear values | max abs delta |", "|---|---|---|"]
        for k, v in ex.items():
            if not k.startswith("_"):
                lines.append(f"| {k} | {v['n_ear_values']} | {v['max_abs_delta']:.3g} |")
        lines.append("")
    text = "\n".join(lines)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return text


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("mushra-manifest")
    a.add_argument("out", type=Path)
    a.add_argument("--root", type=Path, default=MUSHRA)
    a.add_argument("--with-reference", action="store_true")
    b = sub.add_parser("exactness")
    b.add_argument("corpus")
    b.add_argument("--pairs", type=int, default=12)
    b.add_argument("--out", type=Path, required=True)
    b.add_argument("--metrics", nargs="+", default=list(EXACT_METRICS))
    c = sub.add_parser("summary")
    c.add_argument("dirs", nargs="+", type=Path)
    c.add_argument("--exactness", type=Path, default=None)
    c.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "study_embeddings.md")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    if args.cmd == "mushra-manifest":
        if not args.root.is_dir():
            print(f"MUSHRA folder {args.root} not found", file=sys.stderr)
            return 1
        df = mushra_manifest(args.out, args.root, args.with_reference)
        print(f"{len(df)} pairs -> {args.out}")
    elif args.cmd == "exactness":
        res = exactness(args.corpus, args.pairs, metrics=args.metrics)
        if args.out.is_file():  # keep the other metrics' numbers of an earlier run
            res = {**json.loads(args.out.read_text()), **res}
        args.out.write_text(json.dumps(res, indent=1))
        print(json.dumps(res, indent=1))
    else:
        print(summary(args.dirs, args.out, args.exactness))
    return 0


if __name__ == "__main__":
    sys.exit(main())
