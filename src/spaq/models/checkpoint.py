"""One checkpoint format for spaq's trained models: save and load, no training code needed.

A checkpoint is one ``torch.save`` file holding a dict:

* ``format``: :data:`FORMAT` (``"spaq-checkpoint/1"``); the older BAST tag
  ``"spaq-bast-localizer/1"`` (the shipped ``bast_ku100.pt``) is read as architecture "bast";
* ``architecture``: a name of :data:`ARCHITECTURES` (e.g. ``"bast"``) and ``config`` (the
  architecture's config as a plain dict), from which the model is rebuilt;
* ``state_dict``: tensors, loaded strictly (no missing or unexpected keys);
* ``sample_rate``; ``versions`` (spaq, torch, numpy at save time); ``train``: training provenance
  (recipe, data, history: plain python values); plus any extra plain fields (BAST: ``class_names``).

Files are written through :func:`spaq.io.atomic_write` and read with
``torch.load(weights_only=True)`` (no pickled code runs). Every problem with a file is a
one-line :class:`~spaq.errors.SpaqError`.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch
from torch import nn

from ..errors import SpaqError
from .bast import BAST, BASTConfig
from .sqm import SQM, SQMConfig
from .predictor import PredictorConfig, PredictorNet

__all__ = ["FORMAT", "LEGACY_FORMATS", "Architecture", "ARCHITECTURES", "save", "load", "versions"]

FORMAT = "spaq-checkpoint/1"
#: Older single-architecture format tags still read, and the architecture they imply.
LEGACY_FORMATS = {"spaq-bast-localizer/1": "bast"}


class Architecture(NamedTuple):
    """How to rebuild a model: ``model_class(config_class.from_dict(config))``; ``label`` names
    it in messages (e.g. "BAST localizer")."""

    model_class: type
    config_class: type
    label: str


ARCHITECTURES: dict[str, Architecture] = {
    "bast": Architecture(BAST, BASTConfig, "BAST localizer"),
    "sqm": Architecture(SQM, SQMConfig, "SQM spatial embedding"),
    "predictor": Architecture(PredictorNet, PredictorConfig, "reference-free quality predictor"),
}


def _architecture_of(model: nn.Module) -> str:
    for name, a in ARCHITECTURES.items():
        if type(model) is a.model_class:
            return name
    raise SpaqError(f"cannot checkpoint a {type(model).__name__}: not a registered architecture "
                    f"({', '.join(sorted(ARCHITECTURES))})")


def versions() -> dict:
    """Versions of spaq, torch and numpy (recorded in every checkpoint)."""
    import numpy as np

    try:
        from importlib.metadata import version

        spaq_v = version("spaq")
    except Exception:  # not installed (source tree)
        from .. import __version__ as spaq_v
    return {"spaq": spaq_v, "torch": torch.__version__.split("+")[0], "numpy": np.__version__}


def save(path, model: nn.Module, train: dict | None = None, extra: dict | None = None) -> str:
    """Write ``model`` (an instance of a registered architecture, with a ``cfg`` holding
    ``to_dict()`` and ``sample_rate``) to ``path`` atomically; returns the file's sha256.
    ``train``: training provenance (plain python values); ``extra``: more top-level fields."""
    from ..cache import sha256_file
    from ..files import atomic_write

    arch = _architecture_of(model)
    cfg = model.cfg
    ck = {
        "format": FORMAT,
        "architecture": arch,
        "config": cfg.to_dict(),
        "sample_rate": int(cfg.sample_rate),
        "versions": versions(),
        "train": dict(train or {}),
        **(extra or {}),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    try:
        atomic_write(path, lambda tmp: _save(ck, tmp))
    except OSError as e:
        raise SpaqError(f"cannot write checkpoint {path}: {' '.join(str(e).split())}") from None
    return sha256_file(path)


def _save(obj, path) -> None:
    """``torch.save`` through a file object: the zip archive inside is then named ``archive/``
    whatever the (temporary) file is called, so the same checkpoint gives the same bytes and
    sha256 (saved to a path, torch names it after the file: a random temporary name)."""
    with open(path, "wb") as f:
        torch.save(obj, f)


def load(path, architecture: str | None = None, sha256: str | None = None) -> tuple[nn.Module, dict]:
    """Load a checkpoint -> ``(model in eval mode on the CPU, meta)``; ``meta`` holds every field
    but the state_dict, plus ``architecture``, ``path`` and ``sha256`` (of the file; pass
    ``sha256`` when already known). ``architecture``: the one expected (else any registered).

    Raises :class:`SpaqError` (one line) for missing or unreadable files, other formats or
    architectures, missing fields and state_dicts that do not match their config."""
    p = Path(path)
    if not p.is_file():
        raise SpaqError(f"checkpoint not found: {p}")
    want = ARCHITECTURES.get(architecture) if architecture else None
    if architecture and want is None:
        raise SpaqError(f"unknown architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    what = f"spaq {want.label}" if want else "spaq"
    try:
        ck = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        why = " ".join(str(e).split())[:200]
        raise SpaqError(f"{p} is not a loadable checkpoint (not a torch file spaq can read: {type(e).__name__}"
                        + (f": {why})" if why else ")")) from None
    fmt = ck.get("format") if isinstance(ck, dict) else type(ck).__name__
    arch = None
    if isinstance(ck, dict):
        arch = LEGACY_FORMATS.get(fmt) or (ck.get("architecture") if fmt == FORMAT else None)
    if arch is None or (architecture and arch != architecture):
        expected = f"{FORMAT!r}" + (f" with architecture {architecture!r}" if architecture else "")
        got = f"format {fmt!r}" + (f", architecture {ck.get('architecture')!r}" if isinstance(ck, dict)
                                     and ck.get("architecture") else "")
        raise SpaqError(f"{p} is not a {what} checkpoint ({got}, expected {expected})")
    a = ARCHITECTURES.get(arch)
    if a is None:
        raise SpaqError(f"{p}: unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    missing = [k for k in ("config", "state_dict") if k not in ck]
    if missing:
        raise SpaqError(f"{p} is not a complete {what} checkpoint: missing {', '.join(missing)}")
    name = a.model_class.__name__
    try:
        cfg = a.config_class.from_dict(ck["config"])
        model = a.model_class(cfg)
        model.load_state_dict(ck["state_dict"], strict=True)
    except (KeyError, ValueError, TypeError, AttributeError, RuntimeError) as e:
        raise SpaqError(f"{p}: checkpoint does not match the {name} architecture: "
                        f"{' '.join(str(e).split())[:200]}") from None
    sr = ck.get("sample_rate")
    if sr is not None and int(sr) != int(cfg.sample_rate):
        raise SpaqError(f"{p}: sample_rate {sr} differs from its config's {cfg.sample_rate}")
    model.eval()
    meta = {k: v for k, v in ck.items() if k != "state_dict"}
    meta["architecture"] = arch
    if sha256 is None:
        from ..cache import sha256_file

        sha256 = sha256_file(p)
    meta["sha256"] = sha256
    meta["path"] = str(p)
    return model, meta
