"""``spaq train predictor``: fit the reference-free quality predictor (spaq.train.predictor)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]


def train_predictor_cmd(
    config: Path = typer.Argument(..., help="Recipe, e.g. configs/train/predictor.yaml."),
    out: Path = typer.Option(Path("predictor_v1.pt"), "--out", "-o", metavar="PATH", help="Checkpoint to write."),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="N", help="Override the recipe's seed."),
    workdir: Optional[Path] = typer.Option(None, "--workdir", metavar="DIR", help="Folder for the feature tables (default: next to --out); existing tables of the same corpus section are reused."),
):
    """Generate the training corpus, score it with the quality metric (teacher), fit the network,
    calibrate on the MUSHRA half; reproduces the shipped predictor_v1 weights."""
    from .output import output_file, print_json

    output_file(out, "checkpoint")  # a path that cannot be written fails before the work
    import os

    import torch

    from ..train.predictor import PredictorTrainConfig, train_predictor

    tc = PredictorTrainConfig.from_yaml(config)
    if seed is not None:
        tc.seed = int(seed)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    summary = train_predictor(tc, out, log=lambda m: typer.echo(m, err=True), workdir=workdir)
    print_json(summary)  # standard JSON: a NaN (a statistic that could not be computed) as null


def register(train: typer.Typer) -> None:
    """Add ``predictor`` to the ``train`` group."""
    train.command("predictor")(train_predictor_cmd)
