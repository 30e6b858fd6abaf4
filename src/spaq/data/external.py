"""External programs used by corpus generation (Debian packages): ffmpeg, espeak-ng.

Missing programs and failed runs raise :class:`spaq.errors.SpaqError` with one line
that names the Debian package to install or the program's own last error line.
"""
from __future__ import annotations

import shutil
import subprocess

from ..errors import SpaqError

__all__ = ["require_binary", "run_tool", "DEBIAN_PACKAGES"]

DEBIAN_PACKAGES = {"ffmpeg": "ffmpeg", "espeak-ng": "espeak-ng"}


def require_binary(name: str) -> str:
    """Full path of program ``name`` on PATH, or a one-line SpaqError naming its Debian package."""
    path = shutil.which(name)
    if path is None:
        pkg = DEBIAN_PACKAGES.get(name, name)
        raise SpaqError(f"{name} not found on PATH: install the Debian package {pkg} (apt-get install {pkg})")
    return path


def run_tool(args: list[str], input: bytes | None = None, timeout: float = 120.0) -> bytes:
    """Run ``args`` (args[0] is looked up with :func:`require_binary`) and return its
    stdout; a non-zero exit raises SpaqError with the program's last stderr line."""
    exe = require_binary(args[0])
    try:
        p = subprocess.run([exe, *args[1:]], input=input, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise SpaqError(f"{args[0]} did not finish within {timeout:.0f} s") from e
    if p.returncode != 0:
        lines = [ln for ln in p.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        last = lines[-1].strip() if lines else "(no message)"
        raise SpaqError(f"{args[0]} failed (exit {p.returncode}): {last}")
    return p.stdout
