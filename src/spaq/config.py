"""One loader for every spaq config: (nested) dataclasses built from YAML files or dicts.

A config is a dataclass whose fields are the allowed keys; their defaults are the
config's defaults. :func:`from_dict` builds one from a mapping, :func:`load_config` from a
YAML file (or a mapping, or None for all defaults). Both are strict:

* an unknown key raises :class:`ConfigError` with one line naming the key, where it is
  and the keys allowed there (``unknown config key 'corpus.sampel_rate'; allowed here:
  name, kind, ...``);
* values are type-checked against the field annotations: ``int``, ``float`` (an int is
  accepted and kept as given), ``str``, ``bool``, ``list[X]``/``tuple[X, ...]``/
  ``tuple[X, Y]`` (a YAML list becomes a list or tuple), ``dict[str, X]``,
  ``Optional[X]``, unions, ``Any`` and nested dataclasses (also as ``dict`` values).

Fields with ``metadata={"config": False}`` are not config keys (e.g. a base folder set
by the code). Checks beyond types (ranges, names) stay with each config's owner.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .errors import SpaqError

__all__ = ["ConfigError", "from_dict", "load_config", "read_yaml", "config_keys", "repo_root", "RecipeConfig", "Section"]


class ConfigError(SpaqError):
    """A config file or mapping that does not fit its schema (one line, names the key)."""


class Section:
    """Mixin for config sections that are also read like the dicts they replace:
    ``section["key"]`` and ``section.get("key", default)`` read the field ``key``."""

    def __getitem__(self, key: str):
        if key not in config_keys(type(self)):
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default=None):
        return getattr(self, key) if key in config_keys(type(self)) else default

    def keys(self):
        return config_keys(type(self))


def config_keys(cls) -> list[str]:
    """The keys a config dataclass accepts, in field order."""
    return [f.name for f in dataclasses.fields(cls) if f.init and f.metadata.get("config", True)]


def _here(where: str) -> str:
    return where or "config"


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _type_name(tp) -> str:
    if tp is type(None):
        return "null"
    if isinstance(tp, type):
        return {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
                "list": "a list", "tuple": "a list", "dict": "a mapping"}.get(tp.__name__, tp.__name__)
    origin = typing.get_origin(tp)
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    return str(tp)


def _fail(where: str, tp, v) -> ConfigError:
    hint = ""
    if tp is float and isinstance(v, str):
        try:
            float(v)
            hint = " (YAML reads 1e-3 as text: write 1.0e-3)"
        except ValueError:
            pass
    return ConfigError(f"{_here(where)}: expected {_type_name(tp)}, got {_short(v)} ({type(v).__name__}){hint}")


def _convert(tp, v, where: str):
    """``v`` checked against annotation ``tp`` (and converted where the type says so)."""
    if tp is Any or tp is object:
        return v
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union or (hasattr(types, "UnionType") and isinstance(tp, types.UnionType)):
        if v is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        errors = []
        for a in options:
            try:
                return _convert(a, v, where)
            except ConfigError as e:
                errors.append(e)
        if len(options) == 1:
            raise errors[0]
        names = " or ".join(dict.fromkeys(_type_name(a) for a in args))
        raise ConfigError(f"{_here(where)}: expected {names}, got {_short(v)} ({type(v).__name__})")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, v, where)
    if tp is bool:
        if not isinstance(v, bool):
            raise _fail(where, tp, v)
        return v
    if tp is int:
        if not isinstance(v, int) or isinstance(v, bool):
            raise _fail(where, tp, v)
        return v
    if tp is float:
        if not isinstance(v, (int, float)) or isinstance(v, bool):
            raise _fail(where, tp, v)
        return v
    if tp is str:
        if not isinstance(v, str):
            raise _fail(where, tp, v)
        return v
    if tp in (list, tuple) or origin in (list, tuple):
        if not isinstance(v, (list, tuple)):
            raise _fail(where, tp, v)
        kind = origin or tp
        if not args:
            return kind(v)
        if kind is list:
            return [_convert(args[0], x, f"{where}[{i}]") for i, x in enumerate(v)]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], x, f"{where}[{i}]") for i, x in enumerate(v))
        if len(v) != len(args):
            raise ConfigError(f"{_here(where)}: expected a list of {len(args)} values, got {_short(v)}")
        return tuple(_convert(a, x, f"{where}[{i}]") for i, (a, x) in enumerate(zip(args, v)))
    if tp is dict or origin is dict:
        if not isinstance(v, dict):
            raise _fail(where, tp, v)
        if not args:
            return dict(v)
        kt, vt = args
        return {_convert(kt, k, where): _convert(vt, x, f"{where}.{k}" if where else str(k)) for k, x in v.items()}
    if isinstance(tp, type):
        if not isinstance(v, tp):
            raise _fail(where, tp, v)
        return v
    raise TypeError(f"spaq.config cannot check the annotation {tp!r} at {_here(where)}")  # a bug, not input


def from_dict(cls, d, where: str = ""):
    """Build config dataclass ``cls`` from mapping ``d`` (None: all defaults). ``where`` is
    the dotted path of ``d`` in the whole config, used in error messages. Nested
    dataclass fields are built from nested mappings; missing keys take the defaults.
    Raises :class:`ConfigError` (one line) for unknown keys and wrong types."""
    if d is None and not where:
        d = {}
    if isinstance(d, cls):
        return d
    if not isinstance(d, dict):
        raise ConfigError(f"{_here(where)}: expected a mapping, got {type(d).__name__}")
    allowed = config_keys(cls)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for k, v in d.items():
        path = f"{where}.{k}" if where else str(k)
        if k not in allowed:
            raise ConfigError(f"unknown config key {path!r}; allowed here: {', '.join(allowed) or '(none)'}")
        kwargs[k] = _convert(hints[k], v, path)
    return cls(**kwargs)


def read_yaml(path) -> dict:
    """The mapping in YAML file ``path`` ({} for an empty file); one-line :class:`ConfigError`
    when it is missing, unreadable, not YAML or not a mapping."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path} is not valid YAML: {' '.join(str(e).split())}") from None
    if d is None:
        return {}
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: a config must be a mapping, got {type(d).__name__}")
    return d


def load_config(source, cls, *, section: str | None = None):
    """Config dataclass ``cls`` from ``source``: a YAML file path, a mapping, an instance of
    ``cls`` (returned as is) or None (defaults). ``section``: read ``source[section]``
    instead when the mapping has that key (a file holding several configs). Errors from
    a file name the file: ``path: unknown config key ...``."""
    if source is None or isinstance(source, (dict, cls)):
        d, name = source, None
    elif isinstance(source, (str, os.PathLike)):
        d, name = read_yaml(source), str(source)
    else:
        raise ConfigError(f"a config is a YAML file or a mapping, not {type(source).__name__}")
    if section is not None and isinstance(d, dict) and section in d:
        d = d[section]
    try:
        return from_dict(cls, d)
    except ConfigError as e:
        if name is None:
            raise
        raise ConfigError(f"{name}: {e}") from None


def repo_root(config_path) -> Path:
    """The folder that relative data paths of a training recipe refer to: the nearest folder above
    ``config_path`` that holds ``pyproject.toml`` (``configs/train/x.yaml`` -> the repository
    root); without one, the config folder's parent."""
    here = Path(config_path).resolve().parent
    return next((p for p in (here, *here.parents) if (p / "pyproject.toml").is_file()), here.parent)


class RecipeConfig:
    """Base of the training-recipe dataclasses that read data paths relative to a ``base_dir``
    field (declared by the subclass with ``metadata={"config": False}``): one ``from_dict`` /
    ``from_yaml`` pair and one way to resolve a relative path."""

    @classmethod
    def from_dict(cls, d, base_dir=None):
        """The recipe from a mapping (unknown keys and wrong types: one-line SpaqError)."""
        tc = load_config(d, cls)
        if base_dir is not None:
            tc.base_dir = Path(base_dir)
        return tc

    @classmethod
    def from_yaml(cls, path):
        """The recipe from a YAML file; relative data paths then start at :func:`repo_root`."""
        tc = load_config(path, cls)
        tc.base_dir = repo_root(path)
        return tc

    def to_dict(self) -> dict:
        """The config keys and their values (sections, and lists of sections, as plain dicts)."""
        def plain(v):
            if dataclasses.is_dataclass(v):
                return dataclasses.asdict(v)
            return type(v)(plain(x) for x in v) if isinstance(v, (list, tuple)) else v

        return {k: plain(getattr(self, k)) for k in config_keys(type(self))}

    def resolve_path(self, p) -> Path:
        """``p`` as is when absolute, else below ``base_dir``."""
        p = Path(p)
        return p if p.is_absolute() else (self.base_dir / p)
