"""``spaq metrics``: the metrics, one line each."""
from __future__ import annotations

import typer

from .output import print_json

__all__ = ["register"]


def metrics_cmd(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """List the metrics, one line each."""
    from ..metrics import list_metrics

    ms = list_metrics()
    if as_json:
        print_json(ms)
        return
    w = max(len(k) for k in ms)
    for k, v in ms.items():
        typer.echo(f"{k.ljust(w)}  {v}")


def register(app: typer.Typer) -> None:
    """Add ``metrics`` to ``app``."""
    app.command("metrics")(metrics_cmd)
