"""``spaq train sqm``: train the SQM spatial embedding (spaq.train.sqm)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]


def train_sqm_cmd(
    config: Path = typer.Argument(..., help="YAML recipe (e.g. spaq/resources/weights/sqm_v1.yaml)."),
    out: Path = typer.Option(Path("sqm.pt"), "--out", "-o", metavar="PATH", help="Checkpoint to write."),
    steps: Optional[int] = typer.Option(None, "--steps", metavar="N", help="Override the number of steps."),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="N", help="Override the seed."),
    cache: Optional[Path] = typer.Option(None, "--cache", metavar="DIR", help="Folder for the rendered scene banks."),
):
    """Train the SQM spatial embedding from a recipe (scenes rendered from the corpus engine's parts)."""
    from .output import output_file

    output_file(out, "checkpoint")  # a path that cannot be written fails before the work
    from ..train.sqm import SQMTrainConfig, train_sqm

    tc = SQMTrainConfig.from_yaml(config)
    if steps is not None:
        tc.steps = int(steps)
    if seed is not None:
        tc.seed = int(seed)
    log = lambda m: typer.echo(m, err=True)  # noqa: E731
    _, summary = train_sqm(tc, out, log=log, cache_dir=cache)
    typer.echo(json.dumps({"checkpoint": str(out), "sha256": summary["sha256"], "cpu_s": summary["cpu_s"],
                           "last": summary["history"][-1] if summary["history"] else {}}, indent=2))


def register(train: typer.Typer) -> None:
    """Add ``sqm`` to the ``train`` group."""
    train.command("sqm")(train_sqm_cmd)
