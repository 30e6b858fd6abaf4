"""``spaq generate CONFIG``: a synthetic spatial corpus (spaq.data)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register", "generate_command"]


def generate_command(
    config: Path = typer.Argument(..., help="corpus config (YAML); see configs/ for examples"),
    out: Path = typer.Option(..., "--out", "-o", metavar="DIR", help="output folder (new, empty, or this corpus with --resume)"),
    n: Optional[int] = typer.Option(None, "--n", metavar="N", help="number of items (overrides corpus.n; --resume: the corpus's own, from its corpus.json)"),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="N", help="corpus seed (overrides corpus.seed; --resume: the corpus's own, from its corpus.json)"),
    workers: int = typer.Option(1, "--workers", "-w", metavar="N", help="worker processes"),
    resume: bool = typer.Option(False, "--resume", help="continue the corpus in --out (its recorded n and seed), skipping finished items"),
    csv: bool = typer.Option(False, "--csv", help="also write manifest.csv"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bar"),
) -> None:
    """Generate a synthetic spatial corpus: audio files plus manifest.parquet."""
    from ..data.config import load_config
    from ..data.corpus import generate_corpus
    from .output import console

    # user errors raise SpaqError: spaq.cli.main prints them as one line and exits 2
    cfg = load_config(config)
    df = generate_corpus(cfg, str(out), n=n, seed=seed, workers=workers, resume=resume,
                         csv=True if csv else None, progress=not quiet)
    if not quiet:
        console().print(f"{len(df)} items in {out} (manifest.parquet)")


def register(app: typer.Typer) -> None:
    """Add ``generate`` to the spaq typer app."""
    app.command("generate")(generate_command)
