"""The base of the architectures' config dataclasses (``BASTConfig``, ``SQMConfig``,
``PredictorConfig``): ``from_dict`` rebuilds one from a checkpoint's stored config, refusing
unknown keys (``ValueError``, which :func:`spaq.models.checkpoint.load` turns into a one-line error)."""
from __future__ import annotations

from dataclasses import fields

__all__ = ["ArchitectureConfig"]


class ArchitectureConfig:
    #: the name in the error message ("unknown <label> config keys")
    label: str = "model"

    @classmethod
    def from_dict(cls, d: dict):
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown {cls.label} config keys: {sorted(unknown)}")
        return cls(**d)
