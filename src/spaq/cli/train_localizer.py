"""``spaq train localizer``: train the BAST localizer (spaq.train.localizer)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import SpaqError

__all__ = ["register"]


def train_localizer_cmd(
    config: Optional[Path] = typer.Argument(None, help="YAML recipe (e.g. spaq/resources/weights/bast_ku100.yaml)."),
    csv: Optional[Path] = typer.Option(None, "--csv", metavar="INDEX.csv", help="Index CSV: input_file,class,azimuth_deg,elevation_deg."),
    out: Path = typer.Option(Path("localizer.pt"), "--out", "-o", metavar="PATH", help="Checkpoint to write."),
    epochs: Optional[int] = typer.Option(None, "--epochs", metavar="N", help="Override the number of epochs."),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="N", help="Override the seed."),
    integration: Optional[str] = typer.Option(None, "--integration", metavar="ADD|SUB|CONCAT", help="ADD | SUB | CONCAT."),
    share_weights: Optional[bool] = typer.Option(None, "--share-weights/--separate-weights", help="Share the ear encoders."),
    loss: Optional[str] = typer.Option(None, "--loss", metavar="MSE|AD|MIX", help="MSE | AD | MIX."),
    cache: Optional[Path] = typer.Option(None, "--cache", metavar="DIR", help="Folder for rendered training features (synthetic data)."),
):
    """Train the BAST localizer from a recipe (synthetic scenes) or from a labelled index (--csv)."""
    from .output import output_file

    output_file(out, "checkpoint")  # a path that cannot be written fails before the work
    from ..train.localizer import LocalizerTrainConfig, train_from_csv, train_localizer

    if config is None and csv is None:
        raise SpaqError("give a CONFIG recipe or --csv INDEX.csv")
    tc = LocalizerTrainConfig.from_yaml(config) if config is not None else LocalizerTrainConfig()
    if epochs is not None:
        tc.epochs = int(epochs)
    if seed is not None:
        tc.seed = int(seed)
    tc.model = dict(tc.model)
    if integration is not None:
        if integration.upper() not in ("ADD", "SUB", "CONCAT"):
            raise SpaqError(f"--integration must be ADD, SUB or CONCAT, not {integration!r}")
        tc.model["integration"] = integration.upper()
    if share_weights is not None:
        tc.model["share_weights"] = bool(share_weights)
    if loss is not None:
        if loss.upper() not in ("MSE", "AD", "MIX"):
            raise SpaqError(f"--loss must be MSE, AD or MIX, not {loss!r}")
        tc.loss = loss.upper()
    log = lambda m: typer.echo(m, err=True)  # noqa: E731
    if csv is not None:
        summary = train_from_csv(csv, out, tc, log=log)
    else:
        summary = train_localizer(tc, out, cache_dir=cache, log=log)
    last = summary["history"][-1] if summary.get("history") else {}
    typer.echo(json.dumps({"checkpoint": str(out), "sha256": summary["sha256"],
                           "best_val_mean_deg": summary.get("best_val_mean_deg"), "last_epoch": last}, indent=2))


def register(train: typer.Typer) -> None:
    """Add ``localizer`` to the ``train`` group."""
    train.command("localizer")(train_localizer_cmd)
