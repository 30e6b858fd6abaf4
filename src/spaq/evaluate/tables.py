"""Tables for ``spaq evaluate``: loading (CSV, TSV, Parquet, JSON lines), joins, row
exclusion, per-condition aggregation, and :func:`evaluate_table`, which runs
:func:`spaq.evaluate.statistics.evaluate` on every metric column."""
from __future__ import annotations

import json
import math
import os

import numpy as np

from ..errors import SpaqError
from ..extras import install_hint
from .statistics import compare_correlations, compare_dependent_correlations, evaluate

__all__ = ["load_table", "join_scores", "default_metric_columns", "evaluate_table", "NOT_METRICS"]

#: columns that are never metric scores: ids, file names, ``spaq batch``'s bookkeeping
NOT_METRICS = frozenset({"id", "item_id", "index", "n", "ref", "deg", "status", "error", "format",
                         "duration", "duration_s", "delay_ms", "delay_applied"})


def load_table(path: str, text_columns=()):
    """A CSV, TSV, Parquet or JSON-lines table as a DataFrame (one-line errors). ``text_columns``: columns of a
    CSV / TSV read as text, not numbers (join keys: ids "02" and "2", or "1.10" and "1.1", stay apart)."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas comes with the data extra
        raise SpaqError(f"reading tables needs pandas: {install_hint('data')}") from None
    if not os.path.isfile(path):
        raise SpaqError(f"table not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".parquet":
            return pd.read_parquet(path)
        if ext in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True)
        return pd.read_csv(path, sep="\t" if ext == ".tsv" else ",", dtype={str(c): str for c in text_columns} or None)
    except Exception as e:  # unreadable or malformed file
        raise SpaqError(f"cannot read table {path}: {' '.join(str(e).split())}") from None


def join_scores(df, other, on: str):
    """``df`` (metric scores) joined with ``other`` (listening scores) on ``on``: a column both
    have, or ``DF_COL=OTHER_COL``; several keys separated by commas (``condition,item`` or
    ``cond=codec,item=file``: rows match on all of them). Keys are compared as text (a CSV id "7"
    and a Parquet id 7 are the same item); on a name clash ``df``'s column wins (``other``'s gets
    ``_mos``)."""
    keys = [k.strip() for k in str(on).split(",")]
    if not all(keys):
        raise SpaqError(f"--on {on!r}: give COL or COL=OTHER_COL, several separated by commas")
    df, other = df.copy(), other.copy()
    lefts = []
    for key in keys:
        left, _, right = key.partition("=")
        left, right = left.strip(), (right.strip() or left.strip())
        for name, d, col in (("TABLE", df, left), ("--mos-table", other, right)):
            if col not in d.columns:
                raise SpaqError(f"no column {col!r} in {name} (columns: {', '.join(map(str, d.columns))})")
        if right != left:
            if left in other.columns:  # the listening table's own column of that name steps aside
                other = other.rename(columns={left: f"{left}_mos"})
            other = other.rename(columns={right: left})
        df[left] = df[left].astype(str)
        other[left] = other[left].astype(str)
        lefts.append(left)
    if len(set(lefts)) != len(lefts):
        raise SpaqError(f"--on {on!r} names a column twice")
    for name, d in (("TABLE", df), ("--mos-table", other)):
        dup = d.duplicated(subset=lefts, keep=False)
        if dup.any():  # each would be matched with every row of the same key: items counted twice
            first = ", ".join(f"{k}={d.loc[dup, k].iloc[0]}" for k in lefts)
            raise SpaqError(f"{name} has {int(dup.sum())} rows that share a key on {on!r} (e.g. {first}): give one "
                            "row per item (average the ratings first), or join on more columns")
    out = df.merge(other, on=lefts, how="inner", suffixes=("", "_mos"))
    if out.empty:
        raise SpaqError(f"no rows of TABLE match --mos-table on {on!r}")
    return out


def _ratings_stats(col) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, std (ddof 1) and count of a column of rating lists (lists or JSON strings)."""
    mean, std, n = [], [], []
    for v in col:
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except json.JSONDecodeError:
                raise SpaqError(f"ratings must be lists such as [70, 82, 64], got {v[:40]!r}") from None
        a = np.asarray(v, dtype=np.float64).ravel()
        a = a[np.isfinite(a)]
        mean.append(a.mean() if a.size else math.nan)
        std.append(a.std(ddof=1) if a.size > 1 else math.nan)
        n.append(a.size)
    return np.asarray(mean), np.asarray(std), np.asarray(n, dtype=np.float64)


def default_metric_columns(df, skip=()) -> list:
    """The numeric columns of ``df`` that look like metric scores: not in ``skip``, not in
    :data:`NOT_METRICS` (ids, file names, ``spaq batch``'s ``status``/``error``/``format``/
    ``duration_s``), not a ``M.skipped`` reason (an all-empty text column reads as numbers);
    in a ``spaq batch`` table, the metrics it scored (each ``M`` has an ``M.skipped`` column; the manifest
    columns it carries, such as a severity, are not metrics); when the table has ``metric`` and
    ``metric.value`` columns, only the ``metric`` ones (name the others with ``metrics=``)."""
    import pandas as pd

    skip = set(skip) | NOT_METRICS
    cols = [c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c])
            and not str(c).startswith("_") and not str(c).endswith(("_sha256", ".skipped"))]
    scored = [c for c in cols if f"{c}.skipped" in df.columns]
    if scored:  # a spaq batch table: its metrics are the columns with a M.skipped column (not the manifest's)
        return scored
    top = [c for c in cols if "." not in str(c)]
    return top if top and len(top) < len(cols) else cols


def known_directions(columns) -> dict:
    """``{column: +1 | -1}`` for the columns named after a registered metric (``spaq batch`` writes each
    metric's score under its name): +1 where higher is better."""
    from ..metrics import metric_class, registered

    names = set(registered())
    return {c: (1 if metric_class(c).higher_is_better else -1) for c in columns if c in names}


def _spearman(x, y) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(x, y)[0]) if np.ptp(x) > 0 and np.ptp(y) > 0 else float("nan")


def evaluate_table(df, mos: str | None = None, metrics=None, ratings: str | None = None, std: str | None = None,
                   votes: str | None = None, cluster: str | None = None, aggregate: str | None = None,
                   order: int = 3, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                   directions: dict | None = None, exclude: dict | None = None,
                   skip_unusable: bool | None = None, alpha: float = 0.05) -> dict:
    """Evaluate metric columns of ``df`` against its MOS column.

    MOS comes from ``mos`` (a column of numbers, with optional ``std``/``votes`` columns) or
    from ``ratings`` (a column of per-listener rating lists: mean, std and count are derived).
    ``metrics``: column names (default: :func:`default_metric_columns`). Rows whose ``status`` column (as written by ``spaq batch``) is not ``ok`` are left
    out. ``exclude``: ``{column: [values]}`` rows to leave out (e.g. hidden references); a
    value that matches no row is an error (a typo would otherwise exclude nothing).
    ``aggregate``: average metric and MOS over the rows of each value of this column (P.1401
    condition-based analysis; std and votes then pool the raw ratings when ``ratings`` is
    given, else they are the spread of the row means and the row count). ``cluster``:
    resample whole groups of this column in the bootstrap. ``directions``: ``{metric: +1|-1}``
    overrides the sign of each mapping (default: a registered metric's own direction,
    :func:`known_directions`, with a warning where the data go the other way; another column's: the
    sign of Spearman's rho). A mapping fitted on fewer than three items per parameter gets a warning.
    ``skip_unusable`` (default: when ``metrics`` is not given): a metric column with fewer
    than 3 finite values or a constant one is listed under ``"skipped"`` instead of raising.

    Returns ``{"n_rows", "n_excluded", "n_items", "mos", "metrics": {name:
    MetricEvaluation.to_dict()}, "skipped": {name: reason}, "alpha", "comparisons": [...], "warnings"}``
    where comparisons test each metric's Pearson r, signed by its mapping's direction (a metric that
    correlates the wrong way ranks last), against the best one's: Fisher z
    (``z``, ``p``, ``significant``) and, on the items both metrics scored, Williams' t
    (``williams_t``, ``williams_p``, ``williams_significant``); significant means
    ``p < alpha`` for both."""
    import pandas as pd

    if not 0 < alpha < 1:
        raise SpaqError(f"alpha must be between 0 and 1, got {alpha}")
    if mos is None and ratings is None:
        raise SpaqError("say which column holds the listening scores: --mos COL or --ratings COL")
    if mos is not None and ratings is not None:
        raise SpaqError("give --mos COL or --ratings COL, not both (--ratings derives the mean from the rating lists)")
    for c in [mos, ratings, std, votes, cluster, aggregate, *(metrics or [])]:
        if c is not None and c not in df.columns:
            raise SpaqError(f"no column {c!r} in the table (columns: {', '.join(map(str, df.columns))})")
    n_rows = len(df)
    keep = np.ones(n_rows, dtype=bool)
    if "status" in df.columns:
        keep &= (df["status"].astype(str) == "ok").to_numpy()
    for col, values in (exclude or {}).items():
        if col not in df.columns:
            raise SpaqError(f"no column {col!r} in the table")
        text = df[col].astype(str)
        for v in values:
            if not (text == str(v)).any():
                known = sorted(text.unique().tolist())
                raise SpaqError(f"--exclude {col}={v}: no row has this value (values of {col}: "
                                + ", ".join(known[:12]) + (", ..." if len(known) > 12 else "") + ")")
        keep &= ~text.isin([str(v) for v in values]).to_numpy()
    df = df[keep].reset_index(drop=True)
    if df.empty:
        raise SpaqError("no rows left to evaluate")
    if ratings is not None:
        lists = [json.loads(v) if isinstance(v, str) else list(v) for v in df[ratings]]
        m, s, n = _ratings_stats(lists)
        df = df.assign(_mos=m, _std=s, _votes=n, _lists=lists)
    else:
        df = df.assign(_mos=pd.to_numeric(df[mos], errors="coerce"),
                       _std=pd.to_numeric(df[std], errors="coerce") if std else np.nan,
                       _votes=pd.to_numeric(df[votes], errors="coerce") if votes else np.nan)
    skip = {mos, ratings, std, votes, cluster, aggregate}
    if skip_unusable is None:
        skip_unusable = metrics is None
    if metrics is None:
        metrics = default_metric_columns(df, skip)
        if not metrics:
            raise SpaqError("no numeric metric columns found; name them with --metric")
    metrics = list(metrics)
    for c in metrics:
        if not pd.api.types.is_numeric_dtype(df[c]):
            df[c] = pd.to_numeric(df[c], errors="coerce")
    if aggregate is not None:
        rows = []
        for key, g in df.groupby(aggregate, sort=True):
            r = {aggregate: key, **{c: float(np.nanmean(g[c].to_numpy(dtype=np.float64))) for c in metrics}}
            if ratings is not None:
                allr = np.concatenate([np.asarray(v, dtype=np.float64) for v in g["_lists"]])
                r.update(_mos=allr.mean(), _std=allr.std(ddof=1) if allr.size > 1 else np.nan, _votes=allr.size)
            else:
                r.update(_mos=g["_mos"].mean(), _std=g["_mos"].std(ddof=1), _votes=len(g))
            if cluster is not None:
                r[cluster] = g[cluster].iloc[0]
            rows.append(r)
        df = pd.DataFrame(rows)
    y = df["_mos"].to_numpy(dtype=np.float64)
    src = ratings or mos
    if not np.isfinite(y).any():
        raise SpaqError(f"the listening scores ({src}) hold no numbers (text or empty cells?)")
    if np.nanmax(y) == np.nanmin(y):
        raise SpaqError(f"every listening score ({src}) is {float(np.nanmax(y)):g}: a constant has no correlation "
                        "with anything")
    sd = df["_std"].to_numpy(dtype=np.float64)
    nv = df["_votes"].to_numpy(dtype=np.float64)
    have_ci = bool(np.isfinite(sd).any() and np.isfinite(nv).any())
    cl = df[cluster].astype(str).to_numpy() if cluster is not None else None
    if cl is not None and len(set(cl)) < 2:
        raise SpaqError(f"--cluster {cluster}: every row is in one group ({cl[0]}); resampling whole groups needs "
                        "at least 2")
    out = {"n_rows": int(n_rows), "n_excluded": int(n_rows - int(keep.sum())), "n_items": int(len(df)),
           "mos": {"mean": float(np.nanmean(y)), "std": float(np.nanstd(y)),
                   "source": ratings or mos, "aggregate": aggregate},
           "metrics": {}, "skipped": {}, "alpha": float(alpha), "comparisons": [], "warnings": []}
    known = known_directions(metrics)
    for c in list(metrics):
        v = df[c].to_numpy(dtype=np.float64)
        ok = np.isfinite(v) & np.isfinite(y)
        fin = v[ok]
        need = max(3, int(order) + 2)  # the mapping's parameters need that many items
        if fin.size < need or np.ptp(fin) == 0:
            why = f"{fin.size} items with finite values (at least {need} needed)" if fin.size < need else "constant"
            if not skip_unusable:  # asked for by name: say so, do not print a row of NaN
                raise SpaqError(f"{c}: {why}: nothing to evaluate")
            out["skipped"][str(c)] = why
            metrics.remove(c)
            continue
        direction = (directions or {}).get(c)
        if direction is None and c in known:  # a registered metric: the direction it is defined with
            direction = known[c]
            rho = _spearman(fin, y[ok])
            if rho == rho and rho * direction < 0:
                word = "higher" if direction > 0 else "lower"
                out["warnings"].append(
                    f"{c} is {word}-is-better, but here it {'falls' if direction > 0 else 'rises'} with the listening "
                    f"scores (Spearman {rho:+.3f}): its mapping keeps the defined direction; --direction "
                    f"{c}={'lower' if direction > 0 else 'higher'} fits the data's instead")
        n_params = {0: 0, 1: 2, 3: 4}.get(int(order), int(order) + 1)
        if n_params and fin.size < 3 * n_params:
            hint = "--mapping 1, or more items" if n_params > 2 else "more items"
            out["warnings"].append(f"{c}: {fin.size} items for a {n_params}-parameter mapping: its mapped rmse and "
                                   f"intervals mean little ({hint})")
        ev = evaluate(v, y, name=str(c), order=order, direction=direction, std=sd if have_ci else None,
                      votes=nv if have_ci else None, clusters=cl, n_boot=n_boot, seed=seed, level=level)
        out["metrics"][str(c)] = ev.to_dict()
    if len(out["metrics"]) > 1:
        # Pearson in the direction each metric is mapped with: one that goes the wrong way ranks low, not by |r|
        def agree(e):
            return e["pearson"] * e["mapping"]["direction"] if e["pearson"] == e["pearson"] else -2.0

        best = max(out["metrics"].values(), key=agree)
        for e in out["metrics"].values():
            if e is best:
                continue
            n = min(e["n"], best["n"])
            t = compare_correlations(agree(best), agree(e), n)
            c = {"best": best["metric"], "other": e["metric"], **t, "significant": bool(t["p"] < alpha)}
            try:  # the same items scored by both metrics: the dependent (Williams) test as well
                w = compare_dependent_correlations(df[best["metric"]].to_numpy(dtype=np.float64),
                                                   df[e["metric"]].to_numpy(dtype=np.float64), y,
                                                   directions=(best["mapping"]["direction"], e["mapping"]["direction"]))
                c.update(williams_t=w["t"], williams_p=w["p"], williams_significant=bool(w["p"] < alpha),
                         r_between=w["r12"])
            except SpaqError:
                pass
            out["comparisons"].append(c)
    out["_data"] = {"mos": y, **{str(c): df[c].to_numpy(dtype=np.float64) for c in metrics}}
    return out
