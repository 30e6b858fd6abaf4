"""``spaq evaluate TABLE``: objective scores against listening-test scores (spaq.evaluate).
User errors are raised as :class:`~spaq.errors.SpaqError` (one line, exit status 2)."""
from __future__ import annotations

import math
import os
from typing import List, Optional

import typer

from ..errors import SpaqError
from .output import output_file, print_json

__all__ = ["register"]


def _parse_exclude(items) -> dict:
    out: dict = {}
    for it in items or []:
        if "=" not in it:
            raise SpaqError(f"--exclude takes COLUMN=VALUE, got {it!r}")
        k, v = it.split("=", 1)
        out.setdefault(k, []).append(v)
    return out


def _parse_directions(items) -> dict:
    out = {}
    for it in items or []:
        name, _, sign = it.rpartition("=")
        if not name or sign not in ("+1", "1", "-1", "higher", "lower"):
            raise SpaqError(f"--direction takes METRIC=higher|lower, got {it!r}")
        out[name] = 1 if sign in ("+1", "1", "higher") else -1
    return out


def _print_human(res: dict) -> None:
    from rich.table import Table

    from .output import console

    con = console()
    mos = res["mos"]
    con.print(f"{res['n_items']} items; MOS from [bold]{mos['source']}[/bold]"
              + (f", averaged per {mos['aggregate']}" if mos["aggregate"] else "")
              + (f"; {res['n_excluded']} rows excluded" if res["n_excluded"] else ""), highlight=False)
    t = Table(show_header=True, header_style="bold")
    for c in ("metric", "n", "Pearson", "Spearman", "Kendall", "rmse (mapped)", "rmse*", "outliers"):
        t.add_column(c)

    def ci(e, k):
        v = e["ci"].get(k)
        return f" [{v[0]:.2f}, {v[1]:.2f}]" if v and not math.isnan(v[0]) else ""

    for name, e in res["metrics"].items():
        t.add_row(name, str(e["n"]) + (f" (-{e['n_dropped']})" if e["n_dropped"] else ""),
                  f"{e['pearson']:.3f}{ci(e, 'pearson')}", f"{e['spearman']:.3f}{ci(e, 'spearman')}",
                  f"{e['kendall']:.3f}{ci(e, 'kendall')}", f"{e['rmse']:.2f}{ci(e, 'rmse')}",
                  "" if e["rmse_star"] is None else f"{e['rmse_star']:.2f}",
                  "" if e["outlier_ratio"] is None else f"{e['outlier_ratio']:.2f}")
    con.print(t)
    for name, why in res.get("skipped", {}).items():
        con.print(f"[yellow]{name} skipped:[/yellow] {why}", highlight=False)
    for w in res.get("warnings", []):
        con.print(f"[yellow]warning:[/yellow] {w}", highlight=False)
    alpha = res.get("alpha", 0.05)
    mark = f" (significant at {alpha:g})"
    for c in res["comparisons"]:
        w = (f"; Williams t {c['williams_t']:.2f}, p {c['williams_p']:.3f}"
             + (mark if c.get("williams_significant") else "")) if "williams_t" in c else ""
        con.print(f"{c['best']} vs {c['other']}: Fisher z {c['z']:.2f}, p {c['p']:.3f}"
                  + (mark if c["significant"] else "") + w, highlight=False)


def evaluate_cmd(
    table: str = typer.Argument(..., help="Scores table (CSV, TSV, Parquet, JSON lines), e.g. the output of `spaq batch`."),
    mos: Optional[str] = typer.Option(None, "--mos", metavar="COL", help="Column with the listening score (MOS, MUSHRA mean...)."),
    ratings: Optional[str] = typer.Option(None, "--ratings", metavar="COL", help="Column with each item's list of ratings (mean, spread and count are derived): instead of --mos."),
    metric: Optional[List[str]] = typer.Option(None, "--metric", "-m", metavar="COL", help="Metric column (repeatable). Default: every numeric column that is not MOS or an id (of a `spaq batch` table: the metric scores, not their sub-values)."),
    mos_table: Optional[str] = typer.Option(None, "--mos-table", metavar="PATH", help="Separate table holding the listening scores, joined to TABLE on --on."),
    on: Optional[str] = typer.Option(None, "--on", metavar="COL[=COL],...", help="Column both tables share (with --mos-table), or TABLE_COL=MOS_COL; several separated by commas (rows match on all), e.g. condition,item."),
    std: Optional[str] = typer.Option(None, "--std", metavar="COL", help="Column with each item's rating standard deviation (for rmse* and outliers)."),
    votes: Optional[str] = typer.Option(None, "--votes", metavar="COL", help="Column with each item's number of ratings."),
    aggregate: Optional[str] = typer.Option(None, "--aggregate", metavar="COL", help="Average metric and MOS per value of this column first (condition-level analysis)."),
    cluster: Optional[str] = typer.Option(None, "--cluster", metavar="COL", help="Bootstrap whole groups of this column (e.g. stimulus)."),
    exclude: Optional[List[str]] = typer.Option(None, "--exclude", metavar="COL=VALUE", help="Leave out rows where COLUMN=VALUE (repeatable), e.g. condition=Reference."),
    direction: Optional[List[str]] = typer.Option(None, "--direction", metavar="METRIC=higher|lower", help="METRIC=higher|lower: which way the metric goes with quality (default: from the data's rank correlation)."),
    mapping: int = typer.Option(3, "--mapping", metavar="0|1|3", help="P.1401 mapping order: 3 (monotonic cubic), 1 (linear) or 0 (none: the metric is on the MOS scale)."),
    bootstrap: int = typer.Option(1000, "--bootstrap", metavar="N", help="Bootstrap resamples for the confidence intervals (0: none)."),
    level: float = typer.Option(0.95, "--level", metavar="P", help="Confidence level of the intervals."),
    seed: int = typer.Option(0, "--seed", metavar="N", help="Seed of the bootstrap."),
    alpha: float = typer.Option(0.05, "--alpha", metavar="P", help="Significance level of the comparisons (Fisher z and Williams' t)."),
    plot: Optional[str] = typer.Option(None, "--plot", metavar="PNG", help="Write scatter plots with the mapping to this PNG file."),
    report: Optional[str] = typer.Option(None, "--report", metavar="MD", help="Write a Markdown report to this file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
):
    """Correlate metric scores with listening-test scores (ITU-T P.1401).

    Pearson, Spearman, Kendall, P.1401 mapped rmse (and rmse*, outlier ratio when the rating spread is known),
    bootstrap intervals, Fisher-z and Williams-t comparisons."""
    from ..evaluate import (default_metric_columns, evaluate_table, join_scores, load_table, plot_evaluation,
                           public_result, write_report)

    if not 0 < level < 1:
        raise SpaqError("--level must be between 0 and 1")
    if not 0 < alpha < 1:
        raise SpaqError("--alpha must be between 0 and 1")
    if bootstrap < 0:
        raise SpaqError("--bootstrap must be >= 0")
    if mapping not in (0, 1, 3):
        raise SpaqError("--mapping must be 0, 1 or 3")
    if plot:
        output_file(plot, "plot")
    if report:
        output_file(report, "report")
    if plot and report and os.path.abspath(plot) == os.path.abspath(report):
        raise SpaqError("--plot and --report name the same file; give each its own")
    keys = [k.partition("=") for k in on.split(",")] if on else []  # join keys are read as text (ids "02" and "2")
    lefts = {k[0].strip() for k in keys}
    df = load_table(table, sorted(lefts))
    auto = not metric
    if mos_table is not None:
        if on is None:
            raise SpaqError("--mos-table needs --on COLUMN (the column both tables share)")
        other = load_table(mos_table, [(k[2] or k[0]).strip() for k in keys])
        if not metric and lefts <= set(df.columns):  # default metrics: TABLE's own metric columns, not the joined table's
            metric = default_metric_columns(df, lefts)
        df = join_scores(df, other, on)
    res = evaluate_table(df, mos=mos, metrics=metric or None, skip_unusable=auto, ratings=ratings, std=std, votes=votes,
                         cluster=cluster, aggregate=aggregate, order=mapping, n_boot=bootstrap, seed=seed,
                         level=level, alpha=alpha, directions=_parse_directions(direction), exclude=_parse_exclude(exclude))
    if not res["metrics"] and res["skipped"]:  # nothing to report: say why, do not print an empty table
        raise SpaqError("no metric column could be evaluated: " + "; ".join(f"{k}: {v}" for k, v in res["skipped"].items()))
    written = []
    if plot:
        plot_evaluation(plot, res, title=table)
        written.append(plot)
    if report:
        fig = os.path.relpath(plot, os.path.dirname(os.path.abspath(report))) if plot else None
        write_report(report, res, fig)
        written.append(report)
    out = public_result(res)
    if as_json:
        out["files"] = written
        print_json(out)
    else:
        _print_human(out)
        for p in written:
            typer.echo(f"wrote {p}")


def register(app: typer.Typer) -> None:
    """Add ``evaluate`` to ``app``."""
    app.command("evaluate")(evaluate_cmd)
