"""spaq's disk cache: where derived tables and downloaded checkpoints are kept.

``cache_dir()`` is ``$SPAQ_CACHE_DIR``, default ``~/.cache/spaq``. :func:`cached_array` keeps
numpy tables that are slow to compute (decoder matrices, DoA look-up tables) there;
:mod:`spaq.weights` keeps downloaded checkpoints there. Nothing here knows about checkpoints.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["cache_dir", "cached_array", "sha256_file", "json_sha256"]


def cache_dir() -> Path:
    """``$SPAQ_CACHE_DIR``, else ``~/.cache/spaq`` (not created here)."""
    return Path(os.environ.get("SPAQ_CACHE_DIR") or Path.home() / ".cache" / "spaq")


def sha256_file(path) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def json_sha256(obj) -> str:
    """sha256 (hex) of ``obj``'s canonical JSON (sorted keys; what JSON cannot write, as ``str``):
    the key of a cached table or a config, equal for equal contents."""
    import json

    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def cached_array(name: str, make, check=None):
    """A derived table (numpy array) kept in ``<cache_dir>/<name>.npy`` (``name`` may hold a
    sub-folder): read from there when present and ``check(array)`` accepts it, else computed
    with ``make()`` and written with :func:`spaq.io.atomic_write` (temp file, then rename). A
    read-only or broken cache only costs time. The caller puts whatever the table depends on
    into ``name``."""
    import numpy as np

    path = cache_dir() / f"{name}.npy"
    if path.is_file():
        try:
            a = np.load(path)
            if check is None or check(a):
                return a
        except (OSError, ValueError):
            pass
    a = make()
    from .files import atomic_write

    try:
        atomic_write(path, lambda tmp: np.save(tmp, a))
    except OSError:
        pass
    return a
