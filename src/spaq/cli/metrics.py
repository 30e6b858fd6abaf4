"""``spaq metrics``: the metrics, one line each, with whether each can run here."""
from __future__ import annotations

import typer

from .output import print_json

__all__ = ["register"]


def _availability(name: str) -> str | None:
    """None when ``name`` can run here, else the one-line reason (a missing optional package)."""
    from ..errors import SpaqError
    from ..metrics import metric_class

    try:
        cls = metric_class(name)
    except SpaqError as e:
        return str(e)
    fn = getattr(cls, "available", None)
    return fn() if callable(fn) else None


def metrics_cmd(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """List the metrics, one line each: name, available (yes/no), description (and why not)."""
    from ..metrics import list_metrics

    ms = list_metrics()
    why = {k: _availability(k) for k in ms}
    if as_json:  # name -> description (unchanged); an unavailable metric's line says why
        print_json({k: (v if why[k] is None else f"{v} (unavailable: {why[k]})") for k, v in ms.items()})
        return
    w = max(len(k) for k in ms)
    for k, v in ms.items():
        flag = "yes" if why[k] is None else "no "
        typer.echo(f"{k.ljust(w)}  {flag}  {v}" + ("" if why[k] is None else f"  (unavailable: {why[k]})"))


def register(app: typer.Typer) -> None:
    """Add ``metrics`` to ``app``."""
    app.command("metrics")(metrics_cmd)
