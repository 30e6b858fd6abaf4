"""Writing files safely: the one atomic write every module uses (lowest layer: imports
nothing of spaq)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path

__all__ = ["atomic_write", "json_safe"]


def atomic_write(path, writer) -> None:
    """Call ``writer(tmp)`` (``tmp`` a ``str`` path in ``path``'s folder, with ``path``'s
    extension) and rename the result over ``path``: readers see the old file or the complete
    new one, never a partial file; on any failure (Ctrl-C included) the temporary file is
    removed and nothing else changes. The folder is created if needed. The temporary file is
    a fresh name, not ``mkstemp`` (whose files are private, mode 0600), so the result gets
    the usual permissions from the umask."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.parent / f".{p.stem}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp{p.suffix}"
    try:
        writer(str(tmp))
        os.replace(tmp, p)
    except BaseException as e:
        try:
            tmp.unlink()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
            pass
        if isinstance(e, OSError) and e.errno is not None and str(e.filename or "").endswith(tmp.name):
            # the error names the file the caller asked for, not the temporary one (same errno and subclass)
            raise OSError(e.errno, e.strerror, str(p)) from None
        raise


def json_safe(obj):
    """``obj`` as plain standard-JSON values: numpy / torch arrays as (nested) lists, their scalars as
    Python numbers, tuples as lists, and every non-finite float (NaN, +-inf: a value that could not be
    computed) as None, since ``NaN`` is not JSON and strict parsers refuse it. The one conversion behind
    every ``to_dict`` of a result and every ``--json`` output (imports nothing: arrays are recognised by
    their ``tolist``)."""
    if hasattr(obj, "detach"):  # a torch tensor
        obj = obj.detach().cpu().numpy()
    if hasattr(obj, "tolist") and hasattr(obj, "dtype"):  # a numpy array or scalar
        obj = obj.tolist()
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj
