"""Checkpoint registry: name -> packaged file or download URL, sha256, env override, cache.

Resolution order (first hit wins), :func:`resolve`:
  1. an explicit path given by the caller (``--checkpoint``, ``--weights``);
  2. the environment variable named in the entry (e.g. ``SPAQ_QASTANET_CHECKPOINT``);
  3. a packaged file (spaq's own small weights live inside the package);
  4. the cache directory (:func:`spaq.cache.cache_dir`), sha256-checked.
Nothing is downloaded unless asked: :func:`fetch` (``spaq weights fetch NAME``, or
``resolve(..., download=True)``) downloads once per process (a failure is remembered), with a
short timeout, to a temporary file in the cache, sha256-checked, renamed atomically
(:func:`spaq.io.atomic_write`; the file gets the umask's permissions; a failure, Ctrl-C or SIGTERM during the
download leaves no temporary file). The timeout is a deadline for the whole download, not per read: a server
that trickles bytes cannot hold it longer. ``file://`` URLs work
(offline installs). A registry file that fails its sha256 is never used. An explicit or
environment path may hold another checkpoint (a retrained one): its sha256 is reported, not
enforced.
"""
from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .cache import cache_dir, sha256_file
from .errors import SpaqError, WeightsNotFoundError

__all__ = ["WeightSpec", "REGISTRY", "resolve", "fetch", "cache_dir", "sha256_file", "ResolvedWeights",
           "how_to_get", "FETCH_TIMEOUT_S"]

#: Seconds a download may take in all (connection, headers and every byte); past them it gives up in one line.
FETCH_TIMEOUT_S = 20.0

#: bytes asked for per read: small enough that the deadline is checked often on a slow server
_READ_BLOCK = 1 << 16

@dataclass(frozen=True)
class WeightSpec:
    name: str
    url: str | None
    sha256: str
    filename: str
    env_var: str
    licence: str
    packaged: str | None = None  # path relative to spaq/resources


#: the quality parameters' licence (every version: the same two listening tests)
_QUALITY_LICENCE = ("MIT (spaq); fitted on the Neural Codec MUSHRA rating dataset (CC BY 4.0, Stahl et al. 2024) and "
                    "the parametric spatial-codings MUSHRA (Apache-2.0, Stahl & Holighaus, AES 2023)")

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
        sha256="e5c54353a24547ef63d74623f48a88c87e6c5535e50506cc38e0bc4e6efdc40b",
        filename="quality_v1.json",
        env_var="SPAQ_QUALITY_PARAMS",
        licence=_QUALITY_LICENCE,
        packaged="weights/quality_v1.json",
    ),
    # version 5 of the quality parameters (the distortions summed, before version 6's Euclidean rule): the
    # teacher the shipped reference-free predictor (predictor_v1) was trained on, kept so that its recipe
    # reproduces it
    "quality_v5": WeightSpec(
        name="quality_v5",
        url=None,
        sha256="f6add5d75960bc77a78bc9b51a3b29d80228bbada551387081807bb9881afbed",
        filename="quality_v5.json",
        env_var="SPAQ_QUALITY_V5_PARAMS",
        licence=_QUALITY_LICENCE,
        packaged="weights/quality_v5.json",
    ),
    "bast_ku100": WeightSpec(
        name="bast_ku100",
        url=None,
        sha256="00b2e89d1bb5dafc6093600cb15549282f9c4afb8901a0dc44375a512b303aa0",
        filename="bast_ku100.pt",
        env_var="SPAQ_LOCALIZER_WEIGHTS",
        licence="MIT (spaq); trained on scenes rendered with the Neumann KU 100 HRTFs (B. Bernschuetz, TH Koeln)",
        packaged="weights/bast_ku100.pt",
    ),
    "bast_cues": WeightSpec(
        name="bast_cues",
        url=None,
        sha256="4a71f255e214f142920692f9c3b4f5e5b612628a1b8ce62b0e97b3500444cb8b",
        filename="bast_cues.pt",
        env_var="SPAQ_LOCALIZER_CUES_WEIGHTS",
        licence=("MIT (spaq); trained on scenes rendered with the Neumann KU 100 HRTFs (B. Bernschuetz, TH Koeln) and "
                 "SONICOM subject 1 (spatialaudiometrics; CC BY-SA 3.0)"),
        packaged="weights/bast_cues.pt",
    ),
    "sqm_v1": WeightSpec(
        name="sqm_v1",
        url=None,
        sha256="d18202c5f0e2905565bfa435ca0f8907d4b0d77af2ed25cdf9bace297868e76c",
        filename="sqm_v1.pt",
        env_var="SPAQ_SQM_WEIGHTS",
        licence="MIT (spaq); trained on scenes rendered with the Neumann KU 100 (B. Bernschuetz, TH Koeln) and "
                "SONICOM subject 1 (CC BY-SA 3.0) HRTFs",
        packaged="weights/sqm_v1.pt",
    ),
    "sqm_v2_source": WeightSpec(
        name="sqm_v2_source",
        url=None,
        sha256="e73234b446a1d310ea4ee1583829d9f63b69f00955e2e0ef2fe5a795d948110e",
        filename="sqm_v2_source.pt",
        env_var="SPAQ_SQM_SOURCE_WEIGHTS",
        licence="MIT (spaq); trained on scenes rendered with the Neumann KU 100 (B. Bernschuetz, TH Koeln) and "
                "SONICOM subject 1 (CC BY-SA 3.0) HRTFs",
        packaged="weights/sqm_v2_source.pt",
    ),
    "predictor_v1": WeightSpec(
        name="predictor_v1",
        url=None,
        sha256="cd37956ad72eaf39090ead1c68336c89c9816811087306ca7a79f503d1520be8",
        filename="predictor_v1.pt",
        env_var="SPAQ_PREDICTOR_WEIGHTS",
        licence="MIT (spaq); trained on spaq corpus-engine scenes (KU100 and SONICOM-1 HRTFs) with spaq's quality "
                "metric as teacher; its MUSHRA reading fitted on the Neural Codec MUSHRA rating dataset (CC BY 4.0, "
                "Stahl et al. 2024)",
        packaged="weights/predictor_v1.pt",
    ),
}


@dataclass(frozen=True)
class ResolvedWeights:
    path: Path
    sha256: str
    source: str  # "explicit", "env", "packaged", "cache", "download"
    verified: bool  # sha256 equals the registry's


def _offline(offline: bool | None) -> bool:
    if offline is not None:
        return offline
    return os.environ.get("SPAQ_OFFLINE", "").lower() in ("1", "true", "yes")




def how_to_get(spec: WeightSpec) -> str:
    """One line: where ``spec``'s file can come from."""
    if spec.url is None and spec.packaged:
        return (f"{spec.name} weights not found: they ship inside spaq (resources/{spec.packaged}; reinstall spaq), "
                f"or pass a checkpoint path, or set {spec.env_var}=PATH")
    local = Path(spec.url.split("?")[0]).name if spec.url else spec.filename
    return (f"{spec.name} weights not found: run `spaq weights fetch {spec.name}`, or pass --checkpoint PATH, or set "
            f"{spec.env_var}=PATH; offline installs: `spaq weights fetch {spec.name} --url file:///path/{local}` "
            f"(official file: {spec.url})")


def missing(name: str) -> str | None:
    """None when the checkpoint ``name`` is found here without a download (environment variable,
    packaged, cache), else one line saying why not and how to get it (``spaq version``, ``spaq metrics``)."""
    try:
        resolve(name, offline=True)
    except WeightsNotFoundError as e:
        spec = REGISTRY[name]
        if spec.url and not os.environ.get(spec.env_var):
            return f"not downloaded: spaq weights fetch {name} (or --checkpoint PATH, or {spec.env_var}=PATH)"
        return " ".join(str(e).split())  # a path that does not exist, a corrupt file...: the resolver's own words
    return None


def resolve(name: str, path=None, offline: bool | None = None, download: bool = False) -> ResolvedWeights:
    """Find the checkpoint ``name``; raise :class:`WeightsNotFoundError` (one line) if absent.

    Never downloads unless ``download=True`` (and not ``offline`` / ``SPAQ_OFFLINE=1``)."""
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
                raise WeightsNotFoundError(f"packaged {name} weights {p} are corrupt "
                                           f"(sha256 {digest[:12]}…, expected {spec.sha256[:12]}…); reinstall spaq")
            return ResolvedWeights(p, digest, "packaged", True)
    cached = cache_dir() / spec.filename
    if cached.is_file():
        digest = sha256_file(cached)
        if digest == spec.sha256:
            return ResolvedWeights(cached, digest, "cache", True)
    if download and not _offline(offline) and spec.url:
        return ResolvedWeights(fetch(name), spec.sha256, "download", True)
    raise WeightsNotFoundError(how_to_get(spec))


#: (name, url) -> message of a download that failed in this process (one attempt per process).
_FAILED: dict[tuple[str, str], str] = {}


class _Terminated(BaseException):
    """SIGTERM during a download (raised by the handler :func:`fetch` installs, so that the temporary file is
    removed before the process ends as SIGTERM asks)."""


def _raise_terminated(signum, frame):
    raise _Terminated()


def _install_sigterm():
    """Make SIGTERM raise :class:`_Terminated` in the main thread; returns the handler to restore, or None where
    nothing was installed (another thread: only the main thread may set handlers, and signals reach only it;
    SIGTERM ignored: it stays ignored)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return None
    old = signal.getsignal(signal.SIGTERM)
    if old in (signal.SIG_IGN, None):  # ignored, or set outside Python: left as it is
        return None
    signal.signal(signal.SIGTERM, _raise_terminated)
    return old


def _limit_wait(resp, seconds: float) -> None:
    """The next socket operation of the HTTP(S) response ``resp`` waits at most ``seconds`` (no-op for other URL
    schemes, e.g. ``file://``)."""
    sock = getattr(getattr(getattr(resp, "fp", None), "raw", None), "_sock", None)
    if sock is not None and hasattr(sock, "settimeout"):
        try:
            sock.settimeout(max(1e-3, seconds))
        except OSError:
            pass


def fetch(name: str, url: str | None = None, timeout: float = FETCH_TIMEOUT_S) -> Path:
    """Download ``name`` from ``url`` (default: the registry's; ``file://`` works) into the cache:
    temp file, sha256 check, atomic rename; returns the path. One attempt per (name, url) and
    process: a failure is remembered and raised again at once.

    ``timeout``: seconds for the whole download. The body is read in small blocks, each waiting at most the time
    left, and a download still running at the deadline fails in one line; the connection and the response
    headers (inside ``urlopen``) wait at most ``timeout`` per socket operation. Any exception, Ctrl-C included,
    removes the temporary file; so does SIGTERM (main thread only: a handler that raises is installed for the
    download; afterwards the previous handler is restored and the signal sent again, so the process still ends
    as SIGTERM asks)."""
    if name not in REGISTRY:
        raise WeightsNotFoundError(f"unknown weights {name!r}; known: {', '.join(sorted(REGISTRY))}")
    spec = REGISTRY[name]
    url = url or spec.url
    if not url:
        raise WeightsNotFoundError(f"{name} has no download URL: its weights ship inside spaq "
                                   f"(resources/{spec.packaged}); pass --url to fetch another copy")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise SpaqError(f"the download timeout must be a number of seconds > 0, got {timeout!r}")
    key = (name, url)
    if key in _FAILED:
        raise WeightsNotFoundError(f"{_FAILED[key]} (not retried in this process)")
    dest = cache_dir() / spec.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    from .files import atomic_write

    offline_hint = f"offline installs: `spaq weights fetch {name} --url file:///path/{Path(url.split('?')[0]).name}`"

    def write(tmp: str) -> None:
        h = hashlib.sha256()
        deadline = time.monotonic() + timeout
        got = 0

        def too_late() -> WeightsNotFoundError:
            return WeightsNotFoundError(
                f"cannot download {name} weights from {url}: not complete within {timeout:g} s ({got} bytes "
                f"received; a slow or stalled server?); {offline_hint}")

        def left() -> float:
            t = deadline - time.monotonic()
            if t <= 0:
                raise too_late()
            return t

        with open(tmp, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as resp:
                    read = getattr(resp, "read1", None) or resp.read
                    while True:
                        _limit_wait(resp, left())
                        block = read(_READ_BLOCK)
                        if not block:
                            break
                        got += len(block)
                        h.update(block)
                        out.write(block)
                    left()  # the last read may have ended past the deadline
            except (OSError, ValueError) as e:  # URLError, timeouts, refused connections, bad URLs
                reason = getattr(e, "reason", None) or e
                if "timed out" in str(reason).lower():
                    if got and deadline - time.monotonic() < 0.1:  # a read that waited out the time left
                        raise too_late() from None
                    reason = f"no answer within {timeout:g} s (offline, or a proxy that drops traffic?)"
                raise WeightsNotFoundError(
                    f"cannot download {name} weights from {url}: {' '.join(str(reason).split())}; "
                    f"{offline_hint}") from None
        if h.hexdigest() != spec.sha256:
            raise WeightsNotFoundError(f"downloaded {name} weights fail their sha256 check "
                                       f"({h.hexdigest()[:12]}… != {spec.sha256[:12]}…)")

    old_handler = _install_sigterm()
    terminated = False
    try:
        atomic_write(dest, write)  # removes the temporary file on any exception, _Terminated included
    except WeightsNotFoundError as e:
        _FAILED[key] = str(e)
        raise
    except _Terminated:
        terminated = True
    finally:
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
    if terminated:  # the previous handler (by default: end the process) gets the signal it was meant to get
        signal.raise_signal(signal.SIGTERM)  # its handler runs now (an exception it raises goes on from here)
        raise KeyboardInterrupt(f"download of {name} weights stopped by SIGTERM")
    return dest
