"""Statistics of objective scores against listening-test scores (ITU-T P.1401 style).

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
* :func:`evaluate` -- all of the above for one metric (:func:`spaq.evaluate.tables.evaluate_table`: for several
  metric columns of a table, what ``spaq evaluate`` runs).

Correlations and mapped errors are computed on items where both values are finite; the
number dropped is reported.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import SpaqError

__all__ = ["correlations", "p1401_mapping", "Mapping", "ci95", "prediction_errors", "bootstrap", "compare_correlations",
           "compare_dependent_correlations", "evaluate", "MetricEvaluation"]


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
        raise SpaqError(f"an order-{order} mapping needs at least {order + 2} items, got {x.size}")
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


def compare_dependent_correlations(x1, x2, y, directions=None) -> dict:
    """Williams' t test (Steiger 1980, eq. 7) of two metrics ``x1``, ``x2`` correlated with
    the same MOS ``y`` on the same items ``(N,)``: a dependent-correlation test that uses the
    metrics' correlation with each other, so it is sharper than the independent Fisher-z form
    when the metrics agree. Each metric is oriented so its correlation with ``y`` is
    positive (the test compares |r|), or by ``directions`` ``(d1, d2)`` (+1 / -1: the direction
    each is meant to go; then a metric that goes the other way has a negative r). Returns ``r1``,
    ``r2``, ``r12``, ``t``, ``df`` (``N - 3``) and the two-sided ``p``."""
    from scipy.stats import t as student

    x1, y = _as_xy(x1, y)
    x2, _ = _as_xy(x2, y)
    ok = np.isfinite(x1) & np.isfinite(x2) & np.isfinite(y)
    x1, x2, y = x1[ok], x2[ok], y[ok]
    n = x1.size
    if n < 5:
        raise SpaqError("comparing correlations needs at least 5 items with both metrics")
    r1, r2 = _pearson(x1, y), _pearson(x2, y)
    if directions is None:
        s1, s2 = (1.0 if r1 >= 0 else -1.0), (1.0 if r2 >= 0 else -1.0)
    else:
        s1, s2 = (1.0 if d >= 0 else -1.0 for d in directions)
    r1, r2 = s1 * r1, s2 * r2
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
    are dropped (``n_dropped``). ``name`` is a label only: ``direction`` (+1 higher is better, -1 lower) None
    fits the data's own; :func:`spaq.evaluate.evaluate_table` passes a registered metric's defined direction
    (``known_directions``), as ``spaq evaluate`` does."""
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
