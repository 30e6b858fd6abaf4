"""Optional dependencies (pyproject extras): one-line hints that work from PyPI and from a clone."""
from __future__ import annotations

import importlib.util

from .errors import SpaqError

__all__ = ["install_hint", "missing_modules", "require_modules"]


def install_hint(extra: str) -> str:
    """``pip install 'spaq[EXTRA]'`` plus the command that works from a clone of the repository."""
    return f"pip install 'spaq[{extra}]' (from a clone: pip install -e '.[{extra}]')"


def missing_modules(*modules: str) -> list:
    """The names among ``modules`` that cannot be imported here (checked without importing them)."""
    out = []
    for m in modules:
        try:
            found = importlib.util.find_spec(m) is not None
        except (ImportError, ValueError):  # a broken or half-removed package
            found = False
        if not found:
            out.append(m)
    return out


def require_modules(what: str, modules, extra: str) -> None:
    """Raise a one-line :class:`SpaqError` naming the missing ``modules`` that ``what`` needs."""
    missing = missing_modules(*modules)
    if missing:
        raise SpaqError(f"{what} needs {', '.join(missing)} (not installed): {install_hint(extra)}")
