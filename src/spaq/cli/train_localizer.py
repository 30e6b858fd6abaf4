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
    epochs: Optional[int] = typer.Option(None, "--epochs", metavar="N",
                                         help="Override the number of epochs (epoch-based recipes and --csv)."),
    steps: Optional[int] = typer.Option(None, "--steps", metavar="N",
                                        help="Override the number of steps (step-based recipes, e.g. bast_cues.yaml)."),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="N", help="Override the seed."),
    integration: Optional[str] = typer.Option(None, "--integration", metavar="ADD|SUB|CONCAT", help="ADD | SUB | CONCAT."),
    share_weights: Optional[bool] = typer.Option(None, "--share-weights/--separate-weights", help="Share the ear encoders."),
    loss: Optional[str] = typer.Option(None, "--loss", metavar="MSE|AD|MIX", help="MSE | AD | MIX."),
    cache: Optional[Path] = typer.Option(None, "--cache", metavar="DIR",
                                         help="Folder for rendered training features (epoch-based synthetic recipes)."),
):
    """Train the BAST localizer from a recipe (synthetic scenes) or from a labelled index (--csv)."""
    from .output import output_file

    output_file(out, "checkpoint")  # a path that cannot be written fails before the work
    from ..train.localizer import LocalizerTrainConfig, train_from_csv, train_localizer

    if config is None and csv is None:
        raise SpaqError("give a CONFIG recipe or --csv INDEX.csv")
    tc = LocalizerTrainConfig.from_yaml(config) if config is not None else LocalizerTrainConfig()
    _check_mode(tc, config, csv, epochs, steps, cache)
    if epochs is not None:
        tc.epochs = int(epochs)
    if steps is not None:
        tc.steps = int(steps)
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


def _check_mode(tc, config, csv, epochs, steps, cache) -> None:
    """One-line errors, before any work, for an option the run would ignore: a step-based recipe (``steps`` > 0:
    fresh scenes every batch) has no epochs and no feature cache; an epoch-based recipe and --csv have no steps;
    --csv renders nothing to cache."""
    from ..train import check_run

    if csv is not None:
        if steps is not None:
            raise SpaqError("--steps does not apply to --csv training, which is epoch-based: use --epochs N")
        if cache is not None:
            raise SpaqError("--cache does not apply to --csv training (it renders no scenes): leave it out")
    elif tc.steps > 0:
        if epochs is not None:
            raise SpaqError(f"{config}: the recipe is step-based (steps: {tc.steps}); --epochs does not apply: "
                            f"use --steps N")
        if cache is not None:
            raise SpaqError(f"{config}: the recipe is step-based (steps: {tc.steps}) and renders fresh scenes "
                            f"every batch; --cache does not apply: leave it out")
    elif steps is not None:
        where = f"{config}: the recipe" if config is not None else "the default recipe"
        raise SpaqError(f"{where} is epoch-based (epochs: {tc.epochs}); --steps does not apply: use --epochs N")
    check_run(steps=steps, epochs=epochs)  # --steps 0 would silently make a step recipe epoch-based


def register(train: typer.Typer) -> None:
    """Add ``localizer`` to the ``train`` group."""
    train.command("localizer")(train_localizer_cmd)
