"""The layers of docs/architecture.md, enforced: a top-level package of ``spaq`` imports only
from packages in lower layers (lazy imports inside functions count too)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "spaq"

#: lowest first; a package may import from any lower layer, never from its own or a higher one
LAYERS = [
    {"errors", "dsp", "files", "threads"},
    {"config", "extras"},
    {"cache"},
    {"spatial"},
    {"auditory", "formats"},
    {"io", "weights"},
    {"models"},
    {"localization"},
    {"metrics"},
    {"api", "evaluate", "report", "jobs", "demo", "losses"},
    {"data"},
    {"batch", "train"},
    {"study"},
    {"cli"},
]
LAYER_OF = {p: i for i, ps in enumerate(LAYERS) for p in ps}
ROOT_NAMES = {"__version__"}  # defined first in spaq/__init__.py, importable from anywhere


def _imports(path: Path, pkg_parts: list[str]) -> set[str]:
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.ImportFrom):
            if n.level == 0:
                if n.module and n.module.startswith("spaq."):
                    out.add(n.module.split(".")[1])
                elif n.module == "spaq":
                    out.update(a.name for a in n.names)
            else:
                base = pkg_parts[:len(pkg_parts) - (n.level - 1)]
                full = base + (n.module.split(".") if n.module else [])
                out.update([full[0]] if full else [a.name for a in n.names])
        elif isinstance(n, ast.Import):
            out.update(a.name.split(".")[1] for a in n.names if a.name.startswith("spaq."))
    return out


def _graph() -> dict[str, set[str]]:
    g: dict[str, set[str]] = {}
    for p in SRC.rglob("*.py"):
        parts = list(p.relative_to(SRC).with_suffix("").parts)
        if parts == ["__init__"]:
            continue
        pkg = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
        if p.name == "__init__.py":
            pkg = parts[:-1]
        g.setdefault(parts[0], set()).update(x for x in _imports(p, pkg) if x != parts[0])
    return g


def test_every_package_has_a_layer():
    missing = sorted(set(_graph()) - set(LAYER_OF) - {"resources"})
    assert not missing, f"add these to docs/architecture.md and LAYERS: {missing}"


@pytest.mark.parametrize("pkg", sorted(LAYER_OF))
def test_imports_go_down_the_layers(pkg):
    g = _graph()
    if pkg not in g:
        pytest.skip(f"{pkg} does not exist yet")
    bad = sorted(d for d in g[pkg] - ROOT_NAMES if LAYER_OF.get(d, -1) >= LAYER_OF[pkg])
    assert not bad, f"spaq.{pkg} (layer {LAYER_OF[pkg]}) imports {bad} (same or higher layer)"


def test_metrics_base_imports_no_metric():
    src = (SRC / "metrics" / "base.py").read_text()
    tree = ast.parse(src)
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(m.split(".")[-1] in ("qastanet", "cues", "quality", "localization", "functional") for m in mods)


def test_no_module_outside_train_and_cli_imports_train():
    g = _graph()
    users = sorted(p for p, deps in g.items() if "train" in deps and p not in ("train", "cli"))
    assert not users, users
