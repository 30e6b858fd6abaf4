"""``spaq weights fetch|path NAME``: checkpoints, where they are, fetch them."""
from __future__ import annotations

from typing import Optional

import typer

from ..errors import SpaqError

__all__ = ["register"]


def weights_fetch(name: str = typer.Argument(..., help="Checkpoint name, e.g. qastanet."),
                  url: Optional[str] = typer.Option(None, "--url", metavar="URL", help="Download from this URL instead (sha256 still checked)."),
                  timeout: Optional[float] = typer.Option(None, "--timeout", metavar="SECONDS",
                                                          help="Seconds for the whole download (default 20).")):
    """Download a checkpoint into the cache (sha256-checked, atomic)."""
    from .. import weights

    if name not in weights.REGISTRY:
        raise SpaqError(f"unknown weights {name!r}; known: {', '.join(sorted(weights.REGISTRY))}")
    if timeout is not None and not 0 < timeout < float("inf"):
        raise SpaqError(f"--timeout must be a number of seconds > 0, got {timeout:g}")
    typer.echo(str(weights.fetch(name, url=url, timeout=weights.FETCH_TIMEOUT_S if timeout is None else timeout)))


def weights_path(name: str = typer.Argument(..., help="Checkpoint name, e.g. qastanet.")):
    """Print where a checkpoint is found (no download)."""
    from .. import weights

    typer.echo(str(weights.resolve(name, offline=True).path))


def register(app: typer.Typer) -> None:
    """Add the ``weights`` group (``fetch``, ``path``) to ``app``."""
    group = typer.Typer(no_args_is_help=True, help="Checkpoints: where they are, fetch them.")
    group.command("fetch")(weights_fetch)
    group.command("path")(weights_path)
    app.add_typer(group, name="weights")
