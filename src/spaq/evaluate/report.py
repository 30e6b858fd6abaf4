"""Outputs of ``spaq evaluate``: scatter plots with the P.1401 mapping, a Markdown report,
and the JSON-ready result."""
from __future__ import annotations

import numpy as np

from .statistics import Mapping

__all__ = ["plot_evaluation", "report_markdown", "write_report", "public_result"]


def plot_evaluation(path: str, result: dict, title: str = "") -> None:
    """One scatter panel per metric (metric vs MOS) with its P.1401 mapping curve and the
    statistics, written atomically to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..files import atomic_write

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
        alpha = result.get("alpha", 0.05)
        sig = (lambda yes: f" (significant at {alpha:g})" if yes else " (not significant)")
        lines += ["", "Tests of Pearson, signed by each metric's direction, against the best metric (Fisher z, "
                  "P.1401 7.6.1; Williams' t for the same items, which accounts for the metrics' correlation with "
                  "each other):", ""]
        for c in result["comparisons"]:
            w = (f"; Williams t = {c['williams_t']:.2f}, p = {c['williams_p']:.3f}"
                 + sig(c.get("williams_significant")) if "williams_t" in c else "")
            lines.append(f"- {c['best']} vs {c['other']}: z = {c['z']:.2f}, p = {c['p']:.3f}"
                         + sig(c["significant"]) + w)
    if result.get("warnings"):
        lines += ["", "Warnings:", ""] + [f"- {w}" for w in result["warnings"]]
    if figure:
        lines += ["", f"![scatter plots]({figure})"]
    return "\n".join(lines) + "\n"


def write_report(path: str, result: dict, figure: str | None = None) -> None:
    """Write :func:`report_markdown` atomically."""
    from ..files import atomic_write

    text = report_markdown(result, figure)

    def w(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, w)


def public_result(result: dict) -> dict:
    """``result`` without its private arrays (JSON-ready)."""
    return {k: v for k, v in result.items() if not k.startswith("_")}
