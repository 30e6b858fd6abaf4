"""``spaq study embeddings``: does an audio encoder's embedding similarity follow the classic
metrics? Per pair of a corpus, the frame-wise cosine similarity of reference and degraded
embeddings for each encoder, next to the classic metrics, then their correlations.

Per pair and encoder: the pair at the encoder's rate (:func:`spaq.io.load_pair`), the one-channel
views of the classic metrics' spatial policy (:func:`spaq.metrics.functional.classic.channels_for`:
each ear, plus omni for ambisonics/layouts, or mono), each view embedded ``(1, frames, dim)``,
cosine similarity per frame (over the common frames), mean over frames; the pair's value is the
mean of the ears (mono: the mono view), as for the classic metrics.

Writes into ``DIR``: ``pairs.csv`` (one row per pair: id, family, ``emb.<encoder>``, each
metric's score), ``correlations.csv`` (columns ``x, y, family, n, pearson, pearson_lo,
pearson_hi, spearman, spearman_lo, spearman_hi``; ``family`` "all" pools every pair; 95 %
percentile bootstrap intervals from :func:`spaq.evaluate.bootstrap`), ``heatmap.png``
(Pearson, all pairs) and ``report.md``.
"""
from __future__ import annotations

import math
import os

import numpy as np
import torch

from ..errors import SpaqError

__all__ = ["DEFAULT_METRICS", "frame_cosine", "pair_similarity", "run_study"]

#: classic metrics the study compares against by default (fast, reference-based)
DEFAULT_METRICS = ("pesq", "stoi", "si_sdr", "mrstft", "loudness")

CSV_COLUMNS = ["x", "y", "family", "n", "pearson", "pearson_lo", "pearson_hi", "spearman", "spearman_lo",
               "spearman_hi"]


def frame_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(B, Fa, D)``, ``(B, Fb, D)`` -> ``(B,)``: cosine similarity per frame over the first
    ``min(Fa, Fb)`` frames, averaged over frames (1 = same direction in every frame)."""
    n = min(a.shape[1], b.shape[1])
    a, b = a[:, :n].to(torch.float64), b[:, :n].to(torch.float64)
    cos = torch.sum(a * b, dim=-1) / (torch.linalg.vector_norm(a, dim=-1) * torch.linalg.vector_norm(b, dim=-1)
                                      ).clamp_min(1e-12)
    return cos.mean(dim=1)


def pair_similarity(encoder, ref, deg, fmt=None) -> dict:
    """``ref``, ``deg``: ``(B, C, T)`` at ``encoder.sample_rate`` -> dict of ``(B,)``: ``score``
    (mean of the ears, or mono), ``better_ear`` and one per view (the classic policy)."""
    from ..metrics.functional.classic import channels_for, combine

    rv = channels_for(torch.as_tensor(np.asarray(ref, dtype=np.float64)), fmt, encoder.sample_rate)
    dv = channels_for(torch.as_tensor(np.asarray(deg, dtype=np.float64)), fmt, encoder.sample_rate)
    per_view = {v: frame_cosine(encoder(rv[v]), encoder(dv[v])) for v in dv}
    return combine(per_view, higher_is_better=True)


def _families(corpus, n: int) -> list:
    """The manifest's ``family`` column (else ``degradation_types``), "all" when it has none."""
    import pandas as pd

    path = os.path.abspath(os.path.expanduser(os.fspath(corpus)))
    try:
        if os.path.isdir(path):
            from ..data.corpus import read_manifest

            df = read_manifest(path)
        elif path.lower().endswith(".parquet"):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception:
        return ["all"] * n
    for col in ("family", "degradation_types"):
        if col in df.columns and len(df) == n:
            return [str(v) if str(v) else "none" for v in df[col]]
    return ["all"] * n


def _stats(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> dict:
    from ..evaluate import bootstrap, correlations

    c = correlations(x, y)
    ci = bootstrap(x, y, n_boot=n_boot, seed=seed) if x.size >= 3 else {}
    nan2 = (math.nan, math.nan)
    return {"n": int(x.size), "pearson": c["pearson"], "pearson_lo": ci.get("pearson", nan2)[0],
            "pearson_hi": ci.get("pearson", nan2)[1], "spearman": c["spearman"],
            "spearman_lo": ci.get("spearman", nan2)[0], "spearman_hi": ci.get("spearman", nan2)[1]}


def correlation_table(df, xs: list, ys: list, n_boot: int = 1000, seed: int = 0):
    """Rows of ``correlations.csv`` for every (x, y) and family ("all" first)."""
    import pandas as pd

    fams = ["all"] + sorted(set(df["family"]) - {"all"})
    rows = []
    for x in xs:
        for y in ys:
            for f in fams:
                sub = df if f == "all" else df[df["family"] == f]
                a = sub[x].to_numpy(dtype=np.float64)
                b = sub[y].to_numpy(dtype=np.float64)
                ok = np.isfinite(a) & np.isfinite(b)
                rows.append({"x": x, "y": y, "family": f, **_stats(a[ok], b[ok], n_boot, seed)})
    return pd.DataFrame(rows, columns=CSV_COLUMNS)


def _heatmap(path: str, corr, xs: list, ys: list) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    allc = corr[corr["family"] == "all"]
    m = np.array([[float(allc[(allc["x"] == x) & (allc["y"] == y)]["pearson"].iloc[0]) for y in ys] for x in xs])
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(ys), 1.0 + 0.6 * len(xs)))
    im = ax.imshow(m, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(len(ys)), ys, rotation=30, ha="right")
    ax.set_yticks(range(len(xs)), xs)
    for i in range(len(xs)):
        for j in range(len(ys)):
            ax.text(j, i, "n/a" if not np.isfinite(m[i, j]) else f"{m[i, j]:.2f}", ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="Pearson r (all pairs)")
    ax.set_title("embedding similarity vs classic metrics")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(v) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.3f}"


def _report(corpus, df, corr, encoders, metrics, skipped: dict) -> str:
    lines = ["# spaq study embeddings", "",
             f"Corpus: `{corpus}`, {len(df)} pairs, families: {', '.join(sorted(set(df['family'])))}.", "",
             "Encoders: " + ", ".join(f"`{e.name}` ({e.sample_rate} Hz)" for e in encoders) + ".",
             "Per pair: frame-wise cosine similarity of reference and degraded embeddings, mean over frames; "
             "spatial input by the classic metrics' policy (each ear, score = mean of the ears).", "",
             "Metrics: " + ", ".join(f"`{m}`" for m in metrics) + ". Intervals: 95 % percentile bootstrap over pairs.",
             "", "![heat map](heatmap.png)", "", "| x | y | family | n | Pearson [95 % CI] | Spearman [95 % CI] |",
             "|---|---|---|---|---|---|"]
    for _, r in corr.iterrows():
        lines.append(f"| {r['x']} | {r['y']} | {r['family']} | {r['n']} | {_fmt(r['pearson'])} "
                     f"[{_fmt(r['pearson_lo'])}, {_fmt(r['pearson_hi'])}] | {_fmt(r['spearman'])} "
                     f"[{_fmt(r['spearman_lo'])}, {_fmt(r['spearman_hi'])}] |")
    if skipped:
        lines += ["", "Not scored (one line each):", ""] + [f"- {k}: {v}" for k, v in skipped.items()]
    lines.append("")
    return "\n".join(lines)


def run_study(corpus, out_dir, encoders=("bast",), metrics=DEFAULT_METRICS, n_boot: int = 1000, seed: int = 0,
              progress=None) -> dict:
    """Run the study on ``corpus`` (a corpus folder or a manifest, see
    :func:`spaq.batch.read_pairs`) and write its files into ``out_dir``. ``encoders``:
    :class:`~spaq.study.encoders.Encoder` instances or specs for
    :func:`~spaq.study.encoders.load_encoder`. Returns ``{"pairs": DataFrame,
    "correlations": DataFrame, "files": [...]}``."""
    import pandas as pd

    import spaq

    from ..batch import read_pairs
    from ..io import load_pair
    from .encoders import Encoder, load_encoder

    encs = [e if isinstance(e, Encoder) else load_encoder(e) for e in encoders]
    if not encs:
        raise SpaqError("study embeddings: no encoder given")
    names = [e.name for e in encs]
    if len(set(names)) != len(names):
        raise SpaqError(f"study embeddings: encoder names repeat: {', '.join(names)}")
    metrics = list(metrics)
    pairs = read_pairs(corpus)
    fams = _families(corpus, len(pairs))
    rows, skipped = [], {}
    for i, p in enumerate(pairs.itertuples(index=False)):
        row = {"id": p.id, "family": fams[i]}
        fmt = p.format or None
        for e in encs:
            col = f"emb.{e.name}"
            try:
                pr = load_pair(p.ref, p.deg, target_rate=e.sample_rate, fmt=fmt)
                r, d = (np.asarray(a) for a in (pr.ref, pr.deg))
                r, d = (a[None] if a.ndim == 2 else a for a in (r, d))
                row[col] = float(pair_similarity(e, r, d, pr.format)["score"][0])
            except SpaqError as ex:
                row[col] = math.nan
                skipped[f"{p.id} {col}"] = str(ex)
        try:
            rep = spaq.score(p.ref, p.deg, metrics=metrics, fmt=fmt)
            for m in metrics:
                row[m] = float(rep.results[m].score) if m in rep.results else math.nan
                if m in rep.skipped:
                    skipped[f"{p.id} {m}"] = rep.skipped[m]
        except SpaqError as ex:
            for m in metrics:
                row[m] = math.nan
            skipped[f"{p.id} metrics"] = str(ex)
        rows.append(row)
        if progress is not None:
            progress(i + 1, len(pairs))
    df = pd.DataFrame(rows, columns=["id", "family"] + [f"emb.{n}" for n in names] + metrics)
    xs = [f"emb.{n}" for n in names]
    corr = correlation_table(df, xs, metrics, n_boot=n_boot, seed=seed)
    os.makedirs(out_dir, exist_ok=True)
    files = [os.path.join(out_dir, f) for f in ("pairs.csv", "correlations.csv", "heatmap.png", "report.md")]
    df.to_csv(files[0], index=False)
    corr.to_csv(files[1], index=False)
    _heatmap(files[2], corr, xs, metrics)
    with open(files[3], "w") as fh:
        fh.write(_report(corpus, df, corr, encs, metrics, skipped))
    return {"pairs": df, "correlations": corr, "files": files, "skipped": skipped}
