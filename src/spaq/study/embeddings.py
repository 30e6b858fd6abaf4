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
(Pearson, all pairs), ``scatter.png`` (every pair, per encoder and metric) and ``report.md``
(with the CPU seconds per pair). Besides the metrics, ``severity`` and listening scores from the
manifest are correlation targets (``y``) when present.
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


def pair_similarity(encoder, ref, deg, fmt=None, ref_cache: dict | None = None, ref_key=None) -> dict:
    """``ref``, ``deg``: ``(B, C, T)`` at ``encoder.sample_rate`` -> dict of ``(B,)``: ``score``
    (mean of the ears, or mono), ``better_ear`` and one per view (the classic policy).

    Each distinct view is embedded once (a diotic pair's two ears cost one); with ``ref_cache``
    (a dict) and ``ref_key`` (e.g. the reference's path) the reference's embeddings are kept
    there and reused by later pairs with the same reference."""
    from ..metrics.functional.classic import channels_for, combine

    def embed_views(views):
        out, seen = {}, []
        for v, x in views.items():
            hit = next((e for y, e in seen if y.shape == x.shape and torch.equal(y, x)), None)
            out[v] = hit if hit is not None else encoder(x)
            if hit is None:
                seen.append((x, out[v]))
        return out

    rv = channels_for(torch.as_tensor(np.asarray(ref, dtype=np.float64)), fmt, encoder.sample_rate)
    dv = channels_for(torch.as_tensor(np.asarray(deg, dtype=np.float64)), fmt, encoder.sample_rate)
    if getattr(encoder, "binaural", False):  # one binaural view: the ears (or the decode), mono to both ears
        rv, dv = ({"binaural": torch.stack([v.get("left", v.get("mono")), v.get("right", v.get("mono"))], dim=1)}
                  for v in (rv, dv))
    key = None if ref_cache is None or ref_key is None else (encoder.name, ref_key, tuple(rv[next(iter(rv))].shape))
    if key is not None and key in ref_cache:
        re = ref_cache[key]
    else:
        re = embed_views(rv)
        if key is not None:
            ref_cache[key] = re
    de = embed_views(dv)
    per_view = {v: frame_cosine(re[v], de[v]) for v in dv}
    if "binaural" in per_view:
        return {"score": per_view["binaural"], **per_view}
    return combine(per_view, higher_is_better=True)


#: manifest columns read as listening scores (the first present), reported as ``listening``
LISTENING_COLUMNS = ("listening", "mushra", "mos", "listening_score")


def _manifest_columns(corpus, n: int) -> dict:
    """From the manifest: ``family`` (its ``family`` column, else ``degradation_types``; "all"
    when it has none), ``severity`` and ``listening`` (the first of :data:`LISTENING_COLUMNS`)
    as float arrays when present."""
    import pandas as pd

    path = os.path.abspath(os.path.expanduser(os.fspath(corpus)))
    out = {"family": ["all"] * n}
    try:
        if os.path.isdir(path):
            from ..data.corpus import read_manifest

            df = read_manifest(path)
        elif path.lower().endswith(".parquet"):
            df = pd.read_parquet(path)
        else:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception:
        return out
    if len(df) != n:
        return out
    for col in ("family", "degradation_types"):
        if col in df.columns:
            out["family"] = [str(v) if str(v) else "none" for v in df[col]]
            break
    if "severity" in df.columns:
        out["severity"] = pd.to_numeric(df["severity"], errors="coerce").to_numpy(dtype=np.float64)
    for col in LISTENING_COLUMNS:
        if col in df.columns:
            out["listening"] = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
            break
    return out


def _pearson_spearman(x: np.ndarray, y: np.ndarray) -> dict:
    """Pearson and Spearman (Pearson of average ranks) for the bootstrap resamples: the same
    numbers as :func:`spaq.evaluate.correlations` without its Kendall tau (unused here, and most
    of its cost); NaN where a resample is constant."""
    from scipy.stats import rankdata

    def r(a, b):
        a, b = a - a.mean(), b - b.mean()
        d = math.sqrt(float(np.dot(a, a)) * float(np.dot(b, b)))
        return float(np.dot(a, b) / d) if d > 0 else math.nan

    return {"pearson": r(x, y), "spearman": r(rankdata(x), rankdata(y))}


def _stats(x: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> dict:
    from ..evaluate import bootstrap, correlations

    c = correlations(x, y)
    ci = bootstrap(x, y, stat=_pearson_spearman, n_boot=n_boot, seed=seed) if x.size >= 3 else {}
    nan2 = (math.nan, math.nan)
    return {"n": int(x.size), "pearson": c["pearson"], "pearson_lo": ci.get("pearson", nan2)[0],
            "pearson_hi": ci.get("pearson", nan2)[1], "spearman": c["spearman"],
            "spearman_lo": ci.get("spearman", nan2)[0], "spearman_hi": ci.get("spearman", nan2)[1]}


def correlation_table(df, xs: list, ys: list, n_boot: int = 1000, seed: int = 0, pairs: list | None = None):
    """Rows of ``correlations.csv`` for every (x, y) of ``xs`` x ``ys`` (then the extra
    ``pairs`` of (x, y)) and family ("all" first)."""
    import pandas as pd

    fams = ["all"] + sorted(set(df["family"]) - {"all"})
    rows = []
    for x, y in [(x, y) for x in xs for y in ys] + list(pairs or []):
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


def _scatter(path: str, df, xs: list, ys: list) -> None:
    """One panel per (encoder, y): every pair, coloured by family."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fams = sorted(set(df["family"]))
    cmap = plt.get_cmap("tab20", max(len(fams), 1))
    fig, axes = plt.subplots(len(xs), len(ys), figsize=(2.4 * len(ys), 2.2 * len(xs)), squeeze=False)
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            ax = axes[i][j]
            for k, f in enumerate(fams):
                sub = df[df["family"] == f]
                ax.scatter(sub[y], sub[x], s=6, color=cmap(k), label=f)
            ax.set_xlabel(y, fontsize=7)
            if j == 0:
                ax.set_ylabel(x, fontsize=7)
            ax.tick_params(labelsize=6)
    axes[0][-1].legend(fontsize=5, loc="best", markerscale=1.5)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(v) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{v:.3f}"


def _report(corpus, df, corr, encoders, metrics, skipped: dict) -> str:
    timing = [f"`{c[len('cpu_s.'):]}` {df[c].mean():.2f} s" for c in df.columns if c.startswith("cpu_s.")
              and np.isfinite(df[c]).any()]
    lines = ["# spaq study embeddings", "",
             f"Corpus: `{corpus}`, {len(df)} pairs, families: {', '.join(sorted(set(df['family'])))}.", "",
             "Encoders: " + ", ".join(f"`{e.name}` ({e.sample_rate} Hz)" for e in encoders) + ".",
             "Per pair: frame-wise cosine similarity of reference and degraded embeddings, mean over frames; "
             "spatial input by the classic metrics' policy (each ear, score = mean of the ears).", "",
             "Metrics: " + ", ".join(f"`{m}`" for m in metrics) + ". Intervals: 95 % percentile bootstrap over pairs.",
             "", "CPU time per pair (mean, one thread): " + (", ".join(timing) or "n/a") + ".",
             "", "![heat map](heatmap.png)", "", "![scatter plots](scatter.png)", "",
             "| x | y | family | n | Pearson [95 % CI] | Spearman [95 % CI] |", "|---|---|---|---|---|---|"]
    for _, r in corr.iterrows():
        lines.append(f"| {r['x']} | {r['y']} | {r['family']} | {r['n']} | {_fmt(r['pearson'])} "
                     f"[{_fmt(r['pearson_lo'])}, {_fmt(r['pearson_hi'])}] | {_fmt(r['spearman'])} "
                     f"[{_fmt(r['spearman_lo'])}, {_fmt(r['spearman_hi'])}] |")
    if skipped:
        lines += ["", "Not scored (one line each):", ""] + [f"- {k}: {v}" for k, v in skipped.items()]
    lines.append("")
    return "\n".join(lines)


def _previous(out_dir) -> dict:
    """``{(id, column): value}`` of an earlier ``pairs.csv`` in ``out_dir`` (for ``resume``)."""
    import pandas as pd

    path = os.path.join(out_dir, "pairs.csv")
    if not os.path.isfile(path):
        return {}
    try:
        old = pd.read_csv(path, dtype={"id": str}, keep_default_na=True)
    except Exception:
        return {}
    return {(str(r["id"]), c): r[c] for _, r in old.iterrows() for c in old.columns if c not in ("id", "family")}


def _check_pairs(pairs) -> None:
    """One line, before any work, for a pair whose reference or degraded file is absent (the study compares the
    two, so every pair needs both)."""
    bad = []
    for p in pairs.itertuples(index=False):
        for what, f in (("reference", p.ref), ("degraded", p.deg)):
            if not f:
                bad.append(f"pair {p.id} has no {what} file")
            elif not os.path.isfile(f):
                bad.append(f"pair {p.id}: {what} file {f} " + ("is not a file" if os.path.exists(f) else "not found"))
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise SpaqError(f"study embeddings: {bad[0]}{more}")


def check_study_args(metrics, n_boot, seed, out_dir) -> list:
    """The arguments of :func:`run_study` that need no file read, checked in one line before any work: known
    metric names, each once; ``n_boot`` and ``seed`` whole numbers >= 0 (``n_boot`` 0: no intervals);
    ``out_dir`` not a file. Returns the metric names as a list."""
    from ..metrics import check_metric_names

    metrics = check_metric_names(metrics, "study embeddings: ")
    for name, v in (("--n-boot", n_boot), ("--seed", seed)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise SpaqError(f"study embeddings: {name} must be a whole number >= 0, got {v!r}")
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise SpaqError(f"study embeddings: cannot write the study folder {out_dir}: it is a file, not a folder")
    return metrics


def run_study(corpus, out_dir, encoders=("bast",), metrics=DEFAULT_METRICS, n_boot: int = 1000, seed: int = 0,
              progress=None, resume: bool = False) -> dict:
    """Run the study on ``corpus`` (a corpus folder or a manifest, see
    :func:`spaq.batch.read_pairs`) and write its files into ``out_dir``. ``encoders``:
    :class:`~spaq.metrics.encoders.Encoder` instances or specs for
    :func:`~spaq.metrics.encoders.load_encoder`. Correlations: each encoder against each metric,
    the manifest's ``severity`` and listening scores (:data:`LISTENING_COLUMNS`, as
    ``listening``) when present, and each metric against those two. ``resume``: reuse the
    values of an earlier ``pairs.csv`` in ``out_dir`` (same ids and columns), so that adding an
    encoder or a metric computes only that. ``pairs.csv`` records the CPU seconds per pair of
    each encoder and of the metrics (``cpu_s.*``). Returns ``{"pairs": DataFrame,
    "correlations": DataFrame, "files": [...]}``. Unknown or repeated metrics, a negative ``n_boot`` or ``seed``,
    an ``out_dir`` that is a file and a pair whose reference or degraded file is absent are one-line
    :class:`SpaqError` before any work (:func:`check_study_args`)."""
    import time

    import pandas as pd

    import spaq

    from ..batch import read_pairs
    from ..files import atomic_write
    from ..io import load_pair
    from ..metrics.encoders import Encoder, load_encoder

    metrics = check_study_args(metrics, n_boot, seed, out_dir)
    pairs = read_pairs(corpus)
    _check_pairs(pairs)
    encs = [e if isinstance(e, Encoder) else load_encoder(e) for e in encoders]
    if not encs:
        raise SpaqError("study embeddings: no encoder given")
    names = [e.name for e in encs]
    if len(set(names)) != len(names):
        raise SpaqError(f"study embeddings: encoder names repeat: {', '.join(names)}")
    extra = _manifest_columns(corpus, len(pairs))
    old = _previous(out_dir) if resume else {}
    rows, skipped, ref_cache = [], {}, {}
    for i, p in enumerate(pairs.itertuples(index=False)):
        row = {"id": p.id, "family": extra["family"][i]}
        for k in ("severity", "listening"):
            if k in extra:
                row[k] = float(extra[k][i])
        fmt = p.format or None
        for e in encs:
            col = f"emb.{e.name}"
            if (str(p.id), col) in old:
                row[col] = float(old[(str(p.id), col)])
                row[f"cpu_s.{col}"] = float(old.get((str(p.id), f"cpu_s.{col}"), math.nan))
                continue
            t0 = time.process_time()
            try:
                pr = load_pair(p.ref, p.deg, target_rate=e.sample_rate, fmt=fmt)
                r, d = (np.asarray(a) for a in (pr.ref, pr.deg))
                r, d = (a[None] if a.ndim == 2 else a for a in (r, d))
                row[col] = float(pair_similarity(e, r, d, pr.format, ref_cache, p.ref)["score"][0])
            except SpaqError as ex:
                row[col] = math.nan
                skipped[f"{p.id} {col}"] = str(ex)
            row[f"cpu_s.{col}"] = time.process_time() - t0
        todo = [m for m in metrics if (str(p.id), m) not in old]
        for m in metrics:
            if m not in todo:
                row[m] = float(old[(str(p.id), m)])
        t0 = time.process_time()
        if todo:
            try:
                rep = spaq.score(p.ref, p.deg, metrics=todo, fmt=fmt)
                for m in todo:
                    row[m] = float(rep.results[m].score) if m in rep.results else math.nan
                    if m in rep.skipped:
                        skipped[f"{p.id} {m}"] = rep.skipped[m]
            except SpaqError as ex:
                for m in todo:
                    row[m] = math.nan
                skipped[f"{p.id} metrics"] = str(ex)
            row["cpu_s.metrics"] = time.process_time() - t0
        else:
            row["cpu_s.metrics"] = float(old.get((str(p.id), "cpu_s.metrics"), math.nan))
        rows.append(row)
        if progress is not None:
            progress(i + 1, len(pairs))
    xs = [f"emb.{n}" for n in names]
    targets = [k for k in ("severity", "listening") if k in extra]
    cols = ["id", "family"] + targets + xs + metrics + [f"cpu_s.{x}" for x in xs] + ["cpu_s.metrics"]
    df = pd.DataFrame(rows, columns=cols)
    ys = metrics + targets
    os.makedirs(out_dir, exist_ok=True)
    files = [os.path.join(out_dir, f) for f in ("pairs.csv", "correlations.csv", "heatmap.png", "scatter.png",
                                                 "report.md")]
    atomic_write(files[0], lambda t: df.to_csv(t, index=False))  # first: the costly part, kept for resume
    corr = correlation_table(df, xs, ys, n_boot=n_boot, seed=seed, pairs=[(m, t) for m in metrics for t in targets])
    text = _report(corpus, df, corr, encs, metrics, skipped)
    atomic_write(files[1], lambda t: corr.to_csv(t, index=False))
    atomic_write(files[2], lambda t: _heatmap(t, corr, xs, ys))
    atomic_write(files[3], lambda t: _scatter(t, df, xs, ys))
    atomic_write(files[4], lambda t: open(t, "w").write(text))
    return {"pairs": df, "correlations": corr, "files": files, "skipped": skipped}
