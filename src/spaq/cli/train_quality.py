"""``spaq train quality``: fit spaq's quality model (spaq.train.quality)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]


def train_quality_cmd(
    config: Path = typer.Argument(..., help="Recipe, e.g. configs/train/quality.yaml."),
    out: Path = typer.Option(Path("quality_v1.json"), "--out", "-o", metavar="PATH", help="Parameters file to write."),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="N", help="Override the recipe's seed."),
    workdir: Optional[Path] = typer.Option(None, "--workdir", metavar="DIR", help="Folder for the feature tables (default: next to --out); "
                                                                                "existing tables are reused."),
):
    """Fit spaq's quality model (MUSHRA + synthetic sweeps); reproduces the shipped parameters."""
    from .output import output_file, print_json

    output_file(out, "parameters file")  # a path that cannot be written fails before the work
    import os

    import torch

    from ..train.quality import QualityTrainConfig, train_quality

    tc = QualityTrainConfig.from_yaml(config)
    if seed is not None:
        tc.seed = int(seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    summary = train_quality(tc, out, log=lambda m: typer.echo(m, err=True), workdir=workdir)
    print_json(summary)  # standard JSON: a NaN (a statistic that could not be computed) as null


def register(train: typer.Typer) -> None:
    """Add ``quality`` to the ``train`` group."""
    train.command("quality")(train_quality_cmd)
