"""``spaq train quality`` (kept apart from :mod:`spaq.train.quality` so that the CLI starts
without importing torch)."""
from __future__ import annotations

import json
from pathlib import Path


def register_train_quality(train_typer) -> None:
    """Add ``quality`` to a ``train`` typer group (see spaq.localize_cli._train_group)."""
    import typer

    @train_typer.command("quality")
    def train_quality_cmd(
        config: Path = typer.Argument(..., help="Recipe, e.g. configs/train/quality.yaml."),
        out: Path = typer.Option(Path("quality_v1.json"), "--out", "-o", help="Parameters file to write."),
        seed: int = typer.Option(None, "--seed", help="Override the recipe's seed."),
        workdir: Path = typer.Option(None, "--workdir", help="Folder for the feature tables (default: next to --out); "
                                                              "existing tables are reused."),
    ):
        """Fit spaq's quality model (MUSHRA + synthetic sweeps); reproduces the shipped parameters."""
        import os

        import torch

        from .quality import QualityTrainConfig, train_quality

        tc = QualityTrainConfig.from_yaml(config)
        if seed is not None:
            tc.seed = int(seed)
        torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
        summary = train_quality(tc, out, log=lambda m: typer.echo(m, err=True), workdir=workdir)
        typer.echo(json.dumps(summary, indent=2))
