"""Checkpoint registry: name -> download URL, sha256, cache, offline override.

Resolution order (first hit wins):
  1. an explicit path given by the caller (``--checkpoint``);
  2. the environment variable named in the entry (e.g. ``SPAQ_QASTANET_CHECKPOINT``);
  3. a packaged file (spaq's own small weights live inside the package);
  4. the cache directory (``$SPAQ_CACHE_DIR``, default ``~/.cache/spaq``), sha256-checked;
  5. a download, unless ``SPAQ_OFFLINE=1`` (or ``offline=True``): to a temporary file in the
     cache, sha256-checked, then renamed atomically.
A registry file that fails its sha256 is never used. An explicit or environment path may
hold another checkpoint (a retrained one): its sha256 is reported, not enforced.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .errors import WeightsNotFoundError

__all__ = ["WeightSpec", "REGISTRY", "resolve", "cache_dir", "sha256_file", "ResolvedWeights"]


@dataclass(frozen=True)
class WeightSpec:
    name: str
    url: str | None
    sha256: str
    filename: str
    env_var: str
    licence: str
    packaged: str | None = None  # path relative to spaq/resources


REGISTRY: dict[str, WeightSpec] = {
    "qastanet": WeightSpec(
        name="qastanet",
        url=("https://raw.githubusercontent.com/Orange-OpenSource/QASTAnet/"
             "f69873d61dc02fa89f4603b399a89038957d0988/resources/metric_config/model_weights.pth.tar"),
        sha256="88e542a89ecac6bbd11f9f6be4d6045b05f06da32d7fe70d9bc313ac6b682e49",
        filename="qastanet_model_weights.pth.tar",
        env_var="SPAQ_QASTANET_CHECKPOINT",
        licence="MIT, Copyright (c) Orange SA (QASTAnet, Llave & Pallone)",
    ),
    "quality_v1": WeightSpec(
        name="quality_v1",
        url=None,
        sha256="30a7902128aeb3196bad007ae889b1c189a2226e470564e828648b063acf2db4",
        filename="quality_v1.json",
        env_var="SPAQ_QUALITY_PARAMS",
        licence="MIT (spaq); fitted on the Neural Codec MUSHRA rating dataset (CC BY 4.0, Stahl et al. 2024)",
        packaged="weights/quality_v1.json",
    ),
}


@dataclass(frozen=True)
class ResolvedWeights:
    path: Path
    sha256: str
    source: str  # "explicit", "env", "packaged", "cache", "download"
    verified: bool  # sha256 equals the registry's


def cache_dir() -> Path:
    return Path(os.environ.get("SPAQ_CACHE_DIR") or Path.home() / ".cache" / "spaq")


def cached_array(name: str, make, check=None):
    """A derived table (numpy array) kept in ``<cache_dir>/<name>.npy`` (``name`` may hold a
    sub-folder): read from there when present and ``check(array)`` accepts it, else computed
    with ``make()`` and written atomically (temp file, then rename). A read-only or broken
    cache only costs time. The caller puts whatever the table depends on into ``name``."""
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
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npy")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, a)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        pass
    return a


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _offline(offline: bool | None) -> bool:
    if offline is not None:
        return offline
    return os.environ.get("SPAQ_OFFLINE", "").lower() in ("1", "true", "yes")


def how_to_get(spec: WeightSpec) -> str:
    return (f"{spec.name} weights not found: run `spaq weights fetch {spec.name}` when online, or pass "
            f"--checkpoint PATH, or set {spec.env_var}=PATH (official file: {spec.url})")


def resolve(name: str, path=None, offline: bool | None = None, download: bool = True) -> ResolvedWeights:
    """Find the checkpoint ``name``; raise :class:`WeightsNotFoundError` (one line) if absent."""
    if name not in REGISTRY:
        raise WeightsNotFoundError(f"unknown weights {name!r}; known: {', '.join(sorted(REGISTRY))}")
    spec = REGISTRY[name]
    for source, candidate in (("explicit", path), ("env", os.environ.get(spec.env_var))):
        if candidate:
            p = Path(candidate).expanduser()
            if not p.is_file():
                raise WeightsNotFoundError(f"{name} checkpoint {p} does not exist ({source} path)")
            digest = sha256_file(p)
            return ResolvedWeights(p, digest, source, digest == spec.sha256)
    if spec.packaged:
        from importlib.resources import files

        p = Path(str(files("spaq") / "resources" / spec.packaged))
        if p.is_file():
            digest = sha256_file(p)
            if digest != spec.sha256:
                raise WeightsNotFoundError(f"packaged {name} weights are corrupt (sha256 {digest[:12]}…)")
            return ResolvedWeights(p, digest, "packaged", True)
    cached = cache_dir() / spec.filename
    if cached.is_file():
        digest = sha256_file(cached)
        if digest == spec.sha256:
            return ResolvedWeights(cached, digest, "cache", True)
    if download and not _offline(offline) and spec.url:
        return ResolvedWeights(fetch(name), spec.sha256, "download", True)
    raise WeightsNotFoundError(how_to_get(spec))


def fetch(name: str, url: str | None = None, timeout: float = 60.0) -> Path:
    """Download ``name`` into the cache (temp file, sha256 check, atomic rename); returns the path."""
    spec = REGISTRY[name]
    url = url or spec.url
    dest_dir = cache_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / spec.filename
    fd, tmp = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".part", dir=dest_dir)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    for block in iter(lambda: resp.read(1 << 20), b""):
                        h.update(block)
                        out.write(block)
            except OSError as e:
                raise WeightsNotFoundError(f"cannot download {name} weights from {url}: {e}") from None
        if h.hexdigest() != spec.sha256:
            raise WeightsNotFoundError(
                f"downloaded {name} weights fail their sha256 check ({h.hexdigest()[:12]}… != {spec.sha256[:12]}…)")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest
