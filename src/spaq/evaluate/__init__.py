"""Evaluate objective scores against listening-test scores (ITU-T P.1401 style).

* :mod:`.statistics` -- correlations, the P.1401 mapping and mapped errors, bootstrap
  intervals, Fisher-z and Williams' t comparisons; :func:`evaluate` for one metric.
* :mod:`.tables` -- loading tables, joins, exclusions, aggregation; :func:`evaluate_table`
  for the metric columns of a table (what ``spaq evaluate`` runs).
* :mod:`.report` -- scatter plots, the Markdown report, the JSON-ready result.
"""
from __future__ import annotations

from .report import plot_evaluation, public_result, report_markdown, write_report
from .statistics import (Mapping, MetricEvaluation, bootstrap, ci95, compare_correlations,
                         compare_dependent_correlations, correlations, evaluate, p1401_mapping, prediction_errors)
from .tables import NOT_METRICS, default_metric_columns, evaluate_table, join_scores, load_table

__all__ = ["correlations", "p1401_mapping", "Mapping", "ci95", "prediction_errors", "bootstrap",
           "compare_correlations", "compare_dependent_correlations", "evaluate", "MetricEvaluation", "evaluate_table",
           "default_metric_columns", "load_table", "join_scores", "NOT_METRICS", "plot_evaluation", "report_markdown", "write_report",
           "public_result"]
