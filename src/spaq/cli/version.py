"""``spaq version``: versions of spaq, torch, numpy, the corpus engine's rendering, the checkpoints and the
named HRTF sets found."""
from __future__ import annotations

import typer

from ..errors import SpaqError
from .output import print_json

__all__ = ["register"]


def version_cmd(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")):
    """Versions of spaq, torch, numpy, the checkpoints and the named HRTF sets found (nothing is downloaded)."""
    import numpy
    import torch

    from .. import __version__, weights
    from ..data import ENGINE_VERSION

    info = {"spaq": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "corpus_engine": ENGINE_VERSION, "checkpoints": {}}
    why = {}
    for name, spec in weights.REGISTRY.items():
        try:
            w = weights.resolve(name, offline=True)
            info["checkpoints"][name] = {"path": str(w.path), "sha256": w.sha256, "official": w.verified}
        except SpaqError:
            info["checkpoints"][name] = None
            why[name] = weights.missing(name)
    from ..spatial.hrtf import HRTF_SETS, named_hrtf_paths

    found = named_hrtf_paths()
    info["hrtf_sets"] = {k: found.get(k) for k in HRTF_SETS}
    if as_json:
        print_json(info)
        return
    typer.echo(f"spaq {info['spaq']}  torch {info['torch']}  numpy {info['numpy']}  "
               f"corpus engine {info['corpus_engine']}")
    for k, v in info["checkpoints"].items():
        typer.echo(f"  {k}: " + (f"{v['path']} (sha256 {v['sha256'][:12]}…)" if v else why[k]))
    typer.echo("HRTF sets (--hrtf NAME):")
    for k, v in info["hrtf_sets"].items():
        typer.echo(f"  {k}: " + (v if v else f"not installed: {HRTF_SETS[k]}"))


def register(app: typer.Typer) -> None:
    """Add ``version`` to ``app``."""
    app.command("version")(version_cmd)
