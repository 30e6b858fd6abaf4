"""Evaluate objective scores against listening-test scores (ITU-T P.1401 style).

Functional core, numpy/scipy only; every function takes 1-D arrays of equal length ``(N,)``
(one entry per rated item: a file, or a condition mean) and returns plain Python numbers.

* :func:`correlations` -- Pearson, Spearman and Kendall (tau-b) between a metric and MOS.
* :func:`p1401_mapping` -- the monotonic third-order (or first-order) polynomial that maps a
  metric onto the subjective scale, fitted by least squares with its derivative constrained
  to one sign over the data range (P.1401 Appendix I).
* :func:`prediction_errors` -- after mapping: ``rmse`` with the mapping's degrees of freedom,
  ``N - d`` in the denominator (P.1401 7.5.1), and where the per-item rating spread is known
  the epsilon-insensitive ``rmse*`` (errors inside each item's 95 % confidence interval count
  as 0, 7.7) and the outlier ratio (``|error| > 2 sigma / sqrt(votes)``, 7.5.2.2).
* :func:`bootstrap` -- percentile confidence intervals by resampling items, or whole
  clusters (e.g. every condition of one stimulus) so that correlated items move together.
* :func:`compare_correlations` -- Fisher-z test of the difference of two Pearson
  coefficients on the same number of items (7.6.1); :func:`compare_dependent_correlations`
  -- Williams' t for two metrics scored on the same items (uses their mutual correlation).
* :func:`evaluate` -- all of the above for one metric; :func:`evaluate_table` for several
  metric columns of a table (what ``spaq evaluate`` runs).

Correlations and mapped errors are computed on items where both values are finite; the
number dropped is reported.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import SpaqError

__all__ = ["correlations", "p1401_mapping", "Mapping", "prediction_errors", "bootstrap",
           "compare_correlations", "compare_dependent_correlations", "evaluate", "MetricEvaluation", "evaluate_table", "default_metric_columns", "load_table",
           "plot_evaluation", "write_report"]


# ----------------------------------------------------------------------------- statistics
def _as_xy(x, y) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise SpaqError(f"metric and MOS have different lengths ({x.size} vs {y.size})")
    return x, y


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    xc, yc = x - x.mean(), y - y.mean()
    d = math.sqrt(float(xc @ xc) * float(yc @ yc))
    return float(xc @ yc) / d if d > 0 else math.nan


def correlations(x, y) -> dict:
    """Pearson ``r``, Spearman ``rho`` and Kendall ``tau`` (tau-b, ties handled) of ``x (N,)``
    against ``y (N,)``; NaN when fewer than 3 items or a constant input."""
    from scipy.stats import kendalltau, rankdata

    x, y = _as_xy(x, y)
    if x.size < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"pearson": math.nan, "spearman": math.nan, "kendall": math.nan}
    return {"pearson": _pearson(x, y), "spearman": _pearson(rankdata(x), rankdata(y)),
            "kendall": float(kendalltau(x, y)[0])}


@dataclass
class Mapping:
    """A fitted polynomial ``mos ~ sum_k coef[k] * z**k`` with ``z = (x - center) / scale``;
    ``order`` 0 (identity), 1 or 3; ``direction`` +1 when the mapping rises with ``x``."""

    order: int
    coef: list
    center: float
    scale: float
    direction: int

    @property
    def n_params(self) -> int:
        """Degrees of freedom the mapping takes (P.1401's ``d``); 0 for the identity."""
        return 0 if self.order == 0 else self.order + 1

    def __call__(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.order == 0:
            return x.copy()
        z = (x - self.center) / self.scale
        return np.polynomial.polynomial.polyval(z, np.asarray(self.coef))


def p1401_mapping(x, y, order: int = 3, direction: int | None = None) -> Mapping:
    """Least-squares polynomial mapping of metric ``x (N,)`` onto MOS ``y (N,)``, monotonic
    over ``[min x, max x]`` (P.1401 Appendix I). ``order`` 3 (default), 1, or 0 (identity: the
    metric is already on the MOS scale). ``direction`` +1 (the MOS rises with the metric) or
    -1; default: the sign of Spearman's rho. A cubic whose unconstrained fit is not monotonic
    is refitted with its derivative constrained to ``direction`` on 32 points of the range."""
    x, y = _as_xy(x, y)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if order not in (0, 1, 3):
        raise SpaqError(f"mapping order must be 0, 1 or 3, got {order}")
    if order == 0:
        return Mapping(0, [0.0, 1.0], 0.0, 1.0, 1)
    if x.size < order + 2:
        raise SpaqError(f"a order-{order} mapping needs at least {order + 2} items, got {x.size}")
    if direction is None:
        rho = correlations(x, y)["spearman"]
        direction = -1 if rho < 0 else 1
    center, scale = float(np.mean(x)), float(np.std(x)) or 1.0
    z = (x - center) / scale
    V = np.vander(z, order + 1, increasing=True)
    coef = np.linalg.lstsq(V, y, rcond=None)[0]
    grid = np.linspace(z.min(), z.max(), 32)
    D = np.stack([k * grid ** (k - 1) if k else np.zeros_like(grid) for k in range(order + 1)], axis=1)
    if np.all(direction * (D @ coef) >= -1e-12):
        return Mapping(order, [float(c) for c in coef], center, scale, int(direction))
    from scipy.optimize import minimize

    # constrained fit: start from the best line (monotone with the right sign, or flat)
    lin = np.linalg.lstsq(V[:, :2], y, rcond=None)[0]
    c0 = np.zeros(order + 1)
    c0[0], c0[1] = lin[0], lin[1] if direction * lin[1] >= 0 else 0.0
    ys = float(np.std(y)) or 1.0  # objective on a unit scale so that ftol means the same for any MOS scale
    res = minimize(lambda c: float(np.mean((V @ c - y) ** 2)) / ys ** 2, c0,
                   jac=lambda c: 2 * V.T @ (V @ c - y) / (len(y) * ys ** 2),
                   method="SLSQP", constraints=[{"type": "ineq", "fun": lambda c: direction * (D @ c),
                                                 "jac": lambda c: direction * D}],
                   options={"maxiter": 500, "ftol": 1e-10})
    coef = res.x if np.sum((V @ res.x - y) ** 2) <= np.sum((V @ c0 - y) ** 2) else c0
    return Mapping(order, [float(c) for c in coef], center, scale, int(direction))


def ci95(std, votes) -> np.ndarray:
    """95 % confidence half-width of each item's MOS, ``t(0.975, votes-1) * std / sqrt(votes)``
    (P.1401 7.4; NaN where ``votes < 2``)."""
    from scipy.stats import t

    std = np.asarray(std, dtype=np.float64)
    votes = np.asarray(votes, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(votes >= 2, t.ppf(0.975, np.maximum(votes - 1, 1)) * std / np.sqrt(votes), np.nan)


def prediction_errors(mapped, y, n_params: int, std=None, votes=None) -> dict:
    """Errors of mapped predictions ``mapped (N,)`` against MOS ``y (N,)``:
    ``rmse = sqrt(sum e^2 / (N - d))`` with ``d = n_params`` (P.1401 7.5.1); with ``std`` and
    ``votes`` per item also ``rmse_star`` (each error reduced by the item's 95 % confidence
    half-width, floored at 0, 7.7) and ``outlier_ratio`` (share of items with
    ``|e| > 2 std / sqrt(votes)``, 7.5.2.2)."""
    mapped, y = _as_xy(mapped, y)
    e = y - mapped
    dof = e.size - n_params
    if dof < 1:
        raise SpaqError(f"{e.size} items are too few for a mapping with {n_params} parameters")
    out = {"rmse": float(math.sqrt(np.sum(e ** 2) / dof)), "mae": float(np.mean(np.abs(e)))}
    if std is not None and votes is not None:
        c = ci95(std, votes)
        ok = np.isfinite(c)
        if ok.any():
            es = np.maximum(np.abs(e[ok]) - c[ok], 0.0)
            out["rmse_star"] = float(math.sqrt(np.sum(es ** 2) / max(ok.sum() - n_params, 1)))
            lim = 2 * np.asarray(std, dtype=np.float64)[ok] / np.sqrt(np.asarray(votes, dtype=np.float64)[ok])
            out["outlier_ratio"] = float(np.mean(np.abs(e[ok]) > lim))
    return out


def compare_correlations(r1: float, r2: float, n: int) -> dict:
    """Fisher-z test of ``r1`` against ``r2``, both Pearson coefficients on ``n`` items
    (P.1401 7.6.1, independent-samples form): ``z`` and the two-sided ``p``; the difference is
    significant at 5 % when ``p < 0.05``."""
    from scipy.stats import norm

    if n < 4:
        raise SpaqError("comparing correlations needs at least 4 items")
    z1, z2 = np.arctanh(np.clip([r1, r2], -0.999999, 0.999999))
    z = float((z1 - z2) / math.sqrt(2.0 / (n - 3)))
    return {"z": z, "p": float(2 * norm.sf(abs(z)))}


def compare_dependent_correlations(x1, x2, y) -> dict:
    """Williams' t test (Steiger 1980, eq. 7) of two metrics ``x1``, ``x2`` correlated with
    the same MOS ``y`` on the same items ``(N,)``: a dependent-correlation test that uses the
    metrics' correlation with each other, so it is sharper than the independent Fisher-z form
    when the metrics agree. Each metric is oriented so its correlation with ``y`` is
    positive (the test compares |r|). Returns ``r1``, ``r2``, ``r12``, ``t``, ``df``
    (``N - 3``) and the two-sided ``p``."""
    from scipy.stats import t as student

    x1, y = _as_xy(x1, y)
    x2, _ = _as_xy(x2, y)
    ok = np.isfinite(x1) & np.isfinite(x2) & np.isfinite(y)
    x1, x2, y = x1[ok], x2[ok], y[ok]
    n = x1.size
    if n < 5:
        raise SpaqError("comparing correlations needs at least 5 items with both metrics")
    r1, r2 = _pearson(x1, y), _pearson(x2, y)
    s1, s2 = (1.0 if r1 >= 0 else -1.0), (1.0 if r2 >= 0 else -1.0)
    r1, r2 = abs(r1), abs(r2)
    r12 = s1 * s2 * _pearson(x1, x2)
    det = 1 - r1 ** 2 - r2 ** 2 - r12 ** 2 + 2 * r1 * r2 * r12
    rbar = (r1 + r2) / 2
    den = 2 * (n - 1) / (n - 3) * det + rbar ** 2 * (1 - r12) ** 3
    tval = 0.0 if r1 == r2 else (r1 - r2) * math.sqrt((n - 1) * (1 + r12) / max(den, 1e-300))
    return {"r1": r1, "r2": r2, "r12": float(r12), "t": float(tval), "df": n - 3,
            "p": float(2 * student.sf(abs(tval), n - 3))}


def _stats(x, y, order, direction, std=None, votes=None) -> tuple[dict, Mapping]:
    out = correlations(x, y)
    m = p1401_mapping(x, y, order=order, direction=direction)
    mapped = m(x)
    out.update(prediction_errors(mapped, y, m.n_params, std, votes))
    out["pearson_mapped"] = _pearson(mapped, y)
    return out, m


def bootstrap(x, y, stat=None, n_boot: int = 1000, seed: int = 0, clusters=None, level: float = 0.95) -> dict:
    """Percentile bootstrap confidence intervals: ``{name: (low, high)}`` for every entry of
    ``stat(x, y) -> dict`` (default :func:`correlations`), from ``n_boot`` resamples of the
    items, or of whole ``clusters`` (labels ``(N,)``: all items of a drawn cluster enter
    together). Resamples where a statistic is undefined are left out of its interval."""
    x, y = _as_xy(x, y)
    stat = stat or correlations
    rng = np.random.default_rng(seed)
    groups = None
    if clusters is not None:
        labels = np.asarray(clusters)
        if labels.shape != x.shape:
            raise SpaqError("cluster labels must have one entry per item")
        groups = [np.flatnonzero(labels == u) for u in dict.fromkeys(labels.tolist())]
    n_units = x.size if groups is None else len(groups)
    draws: dict = {}
    for _ in range(int(n_boot)):
        pick = rng.integers(0, n_units, n_units)
        idx = pick if groups is None else np.concatenate([groups[g] for g in pick])
        try:
            s = stat(x[idx], y[idx])
        except SpaqError:
            continue
        for k, v in s.items():
            draws.setdefault(k, []).append(v)
    a = (1 - level) / 2
    out = {}
    for k, v in draws.items():
        v = np.asarray(v, dtype=np.float64)
        v = v[np.isfinite(v)]
        out[k] = (float(np.quantile(v, a)), float(np.quantile(v, 1 - a))) if v.size else (math.nan, math.nan)
    return out


@dataclass
class MetricEvaluation:
    """Everything :func:`evaluate` found for one metric (JSON-ready via :meth:`to_dict`)."""

    metric: str
    n: int
    n_dropped: int
    pearson: float
    spearman: float
    kendall: float
    rmse: float
    mae: float
    pearson_mapped: float
    mapping: dict
    ci: dict = field(default_factory=dict)
    rmse_star: float | None = None
    outlier_ratio: float | None = None
    ci_level: float = 0.95
    n_boot: int = 0
    clustered: bool = False

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ci"] = {k: list(v) for k, v in self.ci.items()}
        return d


def evaluate(x, y, name: str = "metric", order: int = 3, direction: int | None = None, std=None, votes=None,
             clusters=None, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> MetricEvaluation:
    """Correlations, P.1401 mapping and mapped errors of metric ``x (N,)`` against MOS
    ``y (N,)``, with bootstrap confidence intervals (``n_boot = 0``: none). ``std``/``votes``
    ``(N,)``: per-item rating spread and number of ratings, for ``rmse*`` and the outlier
    ratio. ``clusters (N,)``: resample whole clusters. Items where ``x`` or ``y`` is not finite
    are dropped (``n_dropped``)."""
    x, y = _as_xy(x, y)
    ok = np.isfinite(x) & np.isfinite(y)
    sub = (lambda a: None if a is None else np.asarray(a)[ok])
    xs, ys, std_s, votes_s, cl = x[ok], y[ok], sub(std), sub(votes), sub(clusters)
    if xs.size < 3:
        raise SpaqError(f"{name}: {xs.size} items with finite values; at least 3 are needed")
    s, m = _stats(xs, ys, order, direction, std_s, votes_s)
    ci = {}
    if n_boot:  # every resample keeps the full data's mapping direction
        ci = bootstrap(xs, ys, lambda a, b: {k: v for k, v in _stats(a, b, order, m.direction)[0].items()
                                             if k in ("pearson", "spearman", "kendall", "rmse")},
                       n_boot=n_boot, seed=seed, clusters=cl, level=level)
    return MetricEvaluation(metric=name, n=int(xs.size), n_dropped=int((~ok).sum()), pearson=s["pearson"],
                            spearman=s["spearman"], kendall=s["kendall"], rmse=s["rmse"], mae=s["mae"],
                            pearson_mapped=s["pearson_mapped"], mapping=asdict(m), ci=ci,
                            rmse_star=s.get("rmse_star"), outlier_ratio=s.get("outlier_ratio"),
                            ci_level=level, n_boot=int(n_boot), clustered=clusters is not None)


# ----------------------------------------------------------------------------- tables
def load_table(path: str):
    """A CSV, TSV, Parquet or JSON-lines table as a DataFrame (one-line errors)."""
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas comes with the data extra
        raise SpaqError("reading tables needs pandas: pip install spaq[data]") from None
    if not os.path.isfile(path):
        raise SpaqError(f"table not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".parquet":
            return pd.read_parquet(path)
        if ext in (".jsonl", ".ndjson"):
            return pd.read_json(path, lines=True)
        return pd.read_csv(path, sep="\t" if ext == ".tsv" else ",")
    except Exception as e:  # unreadable or malformed file
        raise SpaqError(f"cannot read table {path}: {' '.join(str(e).split())}") from None


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
    """The numeric columns of ``df`` that look like metric scores: not in ``skip``, not an id
    or a count; when the table has ``spaq batch``'s ``metric`` and ``metric.value`` columns,
    only the ``metric`` ones (name the others with ``metrics=``)."""
    import pandas as pd

    skip = set(skip) | {"id", "item_id", "index", "n", "duration_s", "status"}
    cols = [c for c in df.columns if c not in skip and pd.api.types.is_numeric_dtype(df[c])
            and not str(c).startswith("_") and not str(c).endswith("_sha256")]
    top = [c for c in cols if "." not in str(c)]
    return top if top and len(top) < len(cols) else cols


def evaluate_table(df, mos: str | None = None, metrics=None, ratings: str | None = None, std: str | None = None,
                   votes: str | None = None, cluster: str | None = None, aggregate: str | None = None,
                   order: int = 3, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                   directions: dict | None = None, exclude: dict | None = None,
                   skip_unusable: bool | None = None) -> dict:
    """Evaluate metric columns of ``df`` against its MOS column.

    MOS comes from ``mos`` (a column of numbers, with optional ``std``/``votes`` columns) or
    from ``ratings`` (a column of per-listener rating lists: mean, std and count are derived).
    ``metrics``: column names (default: :func:`default_metric_columns`). Rows whose ``status`` column (as written by ``spaq batch``) is not ``ok`` are left
    out. ``exclude``: ``{column: [values]}`` rows to leave out (e.g. hidden references).
    ``aggregate``: average metric and MOS over the rows of each value of this column (P.1401
    condition-based analysis; std and votes then pool the raw ratings when ``ratings`` is
    given, else they are the spread of the row means and the row count). ``cluster``:
    resample whole groups of this column in the bootstrap. ``directions``: ``{metric: +1|-1}``
    overrides the sign of each mapping (default: the sign of Spearman's rho).
    ``skip_unusable`` (default: when ``metrics`` is not given): a metric column with fewer
    than 3 finite values or a constant one is listed under ``"skipped"`` instead of raising.

    Returns ``{"n_rows", "n_excluded", "n_items", "mos", "metrics": {name:
    MetricEvaluation.to_dict()}, "skipped": {name: reason}, "comparisons": [...]}`` where comparisons test each metric's Pearson |r| against the best
    one's (Fisher z)."""
    import pandas as pd

    if mos is None and ratings is None:
        raise SpaqError("say which column holds the listening scores: --mos COL or --ratings COL")
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
        keep &= ~df[col].astype(str).isin([str(v) for v in values]).to_numpy()
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
    sd = df["_std"].to_numpy(dtype=np.float64)
    nv = df["_votes"].to_numpy(dtype=np.float64)
    have_ci = bool(np.isfinite(sd).any() and np.isfinite(nv).any())
    cl = df[cluster].astype(str).to_numpy() if cluster is not None else None
    out = {"n_rows": int(n_rows), "n_excluded": int(n_rows - int(keep.sum())), "n_items": int(len(df)),
           "mos": {"mean": float(np.nanmean(y)), "std": float(np.nanstd(y)),
                   "source": ratings or mos, "aggregate": aggregate},
           "metrics": {}, "skipped": {}, "comparisons": []}
    for c in list(metrics):
        v = df[c].to_numpy(dtype=np.float64)
        fin = v[np.isfinite(v) & np.isfinite(y)]
        if skip_unusable and (fin.size < 3 or np.ptp(fin) == 0):
            out["skipped"][str(c)] = (f"{fin.size} items with finite values" if fin.size < 3 else "constant")
            metrics.remove(c)
            continue
        ev = evaluate(df[c].to_numpy(dtype=np.float64), y, name=str(c), order=order,
                      direction=(directions or {}).get(c), std=sd if have_ci else None,
                      votes=nv if have_ci else None, clusters=cl, n_boot=n_boot, seed=seed, level=level)
        out["metrics"][str(c)] = ev.to_dict()
    if len(out["metrics"]) > 1:
        best = max(out["metrics"].values(), key=lambda e: abs(e["pearson"]) if e["pearson"] == e["pearson"] else -1)
        for e in out["metrics"].values():
            if e is best:
                continue
            n = min(e["n"], best["n"])
            t = compare_correlations(abs(best["pearson"]), abs(e["pearson"]), n)
            c = {"best": best["metric"], "other": e["metric"], **t, "significant": t["p"] < 0.05}
            try:  # the same items scored by both metrics: the dependent (Williams) test as well
                w = compare_dependent_correlations(df[best["metric"]].to_numpy(dtype=np.float64),
                                                   df[e["metric"]].to_numpy(dtype=np.float64), y)
                c.update(williams_t=w["t"], williams_p=w["p"], r_between=w["r12"])
            except SpaqError:
                pass
            out["comparisons"].append(c)
    out["_data"] = {"mos": y, **{str(c): df[c].to_numpy(dtype=np.float64) for c in metrics}}
    return out


# ----------------------------------------------------------------------------- outputs
def plot_evaluation(path: str, result: dict, title: str = "") -> None:
    """One scatter panel per metric (metric vs MOS) with its P.1401 mapping curve and the
    statistics, written atomically to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .io import atomic_write

    data = result["_data"]
    names = list(result["metrics"])
    n = len(names)
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.8 * rows), squeeze=False)
    y = data["mos"]
    for ax, name in zip(axes.ravel(), names):
        e = result["metrics"][name]
        x = data[name]
        ok = np.isfinite(x) & np.isfinite(y)
        ax.scatter(x[ok], y[ok], s=14, alpha=0.75)
        m = Mapping(**e["mapping"])
        if ok.sum() > 1 and np.ptp(x[ok]) > 0:
            g = np.linspace(x[ok].min(), x[ok].max(), 200)
            ax.plot(g, m(g), color="C3", lw=1.5, label=f"order-{m.order} mapping")
        ax.set_xlabel(name)
        ax.set_ylabel("MOS")
        ax.set_title(f"{name}\nr={e['pearson']:.3f} rho={e['spearman']:.3f} tau={e['kendall']:.3f} "
                     f"rmse={e['rmse']:.2f}", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)


def _ci_txt(e: dict, k: str) -> str:
    v = e["ci"].get(k)
    return f" [{v[0]:.3f}, {v[1]:.3f}]" if v and v[0] == v[0] else ""


def report_markdown(result: dict, figure: str | None = None, title: str = "spaq evaluate") -> str:
    """The evaluation as a Markdown report (a table per metric, comparisons, the figure)."""
    lines = [f"# {title}", ""]
    mos = result["mos"]
    lines.append(f"{result['n_items']} items (MOS from `{mos['source']}`"
                 + (f", averaged per `{mos['aggregate']}`" if mos["aggregate"] else "")
                 + f"; {result['n_excluded']} rows excluded). Mapping: P.1401 monotonic polynomial; "
                 "rmse with the mapping's degrees of freedom.")
    any_e = next(iter(result["metrics"].values()), None)
    if any_e and any_e["n_boot"]:
        lines.append(f"Brackets: {int(any_e['ci_level'] * 100)} % bootstrap intervals ({any_e['n_boot']} resamples"
                     + (", clustered" if any_e["clustered"] else "") + ").")
    lines += ["", "| metric | n | Pearson | Spearman | Kendall | rmse (mapped) | rmse* | outlier ratio |",
              "|---|---|---|---|---|---|---|---|"]
    for name, e in result["metrics"].items():
        rs = "" if e["rmse_star"] is None else f"{e['rmse_star']:.2f}"
        orr = "" if e["outlier_ratio"] is None else f"{e['outlier_ratio']:.2f}"
        lines.append(f"| {name} | {e['n']} | {e['pearson']:.3f}{_ci_txt(e, 'pearson')} | "
                     f"{e['spearman']:.3f}{_ci_txt(e, 'spearman')} | {e['kendall']:.3f}{_ci_txt(e, 'kendall')} | "
                     f"{e['rmse']:.2f}{_ci_txt(e, 'rmse')} | {rs} | {orr} |")
    if result["comparisons"]:
        lines += ["", "Tests of |Pearson| against the best metric (Fisher z, P.1401 7.6.1; Williams' t for the "
                  "same items, which accounts for the metrics' correlation with each other):", ""]
        for c in result["comparisons"]:
            w = (f"; Williams t = {c['williams_t']:.2f}, p = {c['williams_p']:.3f}" if "williams_t" in c else "")
            lines.append(f"- {c['best']} vs {c['other']}: z = {c['z']:.2f}, p = {c['p']:.3f}"
                         + (" (significant at 5 %)" if c["significant"] else " (not significant)") + w)
    if figure:
        lines += ["", f"![scatter plots]({figure})"]
    return "\n".join(lines) + "\n"


def write_report(path: str, result: dict, figure: str | None = None) -> None:
    """Write :func:`report_markdown` atomically."""
    from .io import atomic_write

    text = report_markdown(result, figure)

    def w(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, w)


def public_result(result: dict) -> dict:
    """``result`` without its private arrays (JSON-ready)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}
