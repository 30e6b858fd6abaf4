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
        return " ".join(str(e).split())
    fn = getattr(cls, "available", None)
    try:
        why = fn() if callable(fn) else None
    except Exception as e:  # a plugin whose check itself fails: not usable, and one line on why
        why = f"{name}: its availability check failed: {type(e).__name__}: {e}"
    return None if why is None else " ".join(str(why).split()) or f"{name} is not available here"


def metrics_cmd(as_json: bool = typer.Option(False, "--json", help="Print one JSON object: name -> description, "
                                                                  "available, reason (when not available).")):
    """List the metrics, one line each: name, available (yes/no), description (and why not)."""
    from ..metrics import list_metrics

    ms = list_metrics()
    why = {k: _availability(k) for k in ms}
    if as_json:  # name -> {description, available, reason (only when unavailable: what to install, as `spaq score` says)}
        print_json({k: {"description": v, "available": why[k] is None, **({} if why[k] is None else {"reason": why[k]})}
                    for k, v in ms.items()})
        return
    w = max(len(k) for k in ms)
    for k, v in ms.items():
        flag = "yes" if why[k] is None else "no "
        typer.echo(f"{k.ljust(w)}  {flag}  {v}" + ("" if why[k] is None else f"  (unavailable: {why[k]})"))


def register(app: typer.Typer) -> None:
    """Add ``metrics`` to ``app``."""
    app.command("metrics")(metrics_cmd)
