"""The ``spaq train`` group. Every module named in :data:`TRAINERS` has ``register(train)``,
which adds its trainer command to the group: a new trainer is one more module and one more
name here."""
from __future__ import annotations

import importlib

import typer

__all__ = ["register", "TRAINERS"]

#: trainer modules of this package, as ``spaq train --help`` lists them
TRAINERS = ("train_quality", "train_localizer", "train_sqm", "train_predictor")


def register(app: typer.Typer) -> None:
    """Add the ``train`` group, with every trainer of :data:`TRAINERS`, to ``app``."""
    group = typer.Typer(help="Train spaq's models.", no_args_is_help=True)
    for name in TRAINERS:
        importlib.import_module(f"{__package__}.{name}").register(group)
    app.add_typer(group, name="train")
