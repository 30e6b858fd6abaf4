"""The ``spaq`` command line: :func:`main` (``main(argv=None) -> int``, tests call it
in-process) and :func:`entry` (the console script). The typer app and the error handling are
in :mod:`spaq.cli.app`; each command is a module of this package with ``register(app)``."""
from __future__ import annotations

from .app import entry, main

__all__ = ["main", "entry"]
