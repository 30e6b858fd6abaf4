"""CLI commands ``spaq localize`` and ``spaq train localizer``: ``register(app)`` adds them to
the main typer app (the ``train`` group is reused if the app already has one).

User errors are raised as :class:`~spaq.errors.SpaqError`; ``spaq.cli.main`` prints them as
one line and exits with status 2."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from .errors import SpaqError

__all__ = ["register"]


def _train_group(app: typer.Typer) -> typer.Typer:
    for g in getattr(app, "registered_groups", []):
        if g.name == "train" and g.typer_instance is not None:
            return g.typer_instance
    group = typer.Typer(help="Train spaq's models.", no_args_is_help=True)
    app.add_typer(group, name="train")
    return group


def _print_human(res) -> None:
    typer.echo(f"{res.format} ({res.method}):")
    for i in range(res.n_sources):
        a, e, c = res.azimuth_deg[i], res.elevation_deg[i], res.confidence[i]
        if a != a:  # NaN
            typer.echo(f"  source {i + 1}: not found")
        else:
            typer.echo(f"  source {i + 1}: azimuth {a:7.1f} deg  elevation {e:6.1f} deg  confidence {c:.2f}")
    if res.class_probabilities:
        best = max(res.class_probabilities, key=res.class_probabilities.get)
        typer.echo(f"  class: {best} ({res.class_probabilities[best]:.2f})")


def register(app: typer.Typer) -> None:
    """Add ``localize`` and ``train localizer`` to ``app``."""

    @app.command("localize")
    def localize_cmd(
        file: Path = typer.Argument(..., help="Binaural (2 channels) or ambisonic (ACN, (N+1)^2 channels) audio file."),
        format: Optional[str] = typer.Option(None, "--format", help="binaural | ambisonics | foa | hoa3 ... (/sn3d, /n3d, /fuma); default: from the channel count."),
        frames: bool = typer.Option(False, "--frames", help="Also report the trajectory over time."),
        plot: Optional[Path] = typer.Option(None, "--plot", help="Draw directions on an azimuth-elevation map (PNG)."),
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
        n_sources: int = typer.Option(1, "--n-sources", min=1, help="Number of sources to find."),
        weights: Optional[Path] = typer.Option(None, "--weights", help="Localizer checkpoint (binaural); default: the packaged one."),
    ):
        """Direction(s) of the source(s) in FILE, with confidence (and a trajectory with --frames)."""
        from .localization import localize, plot_localization

        res = localize(file, format=format, n_sources=n_sources, weights=weights)
        if plot is not None:
            plot_localization(res, plot, title=f"{file.name}: {res.format} ({res.method})")
        if as_json:
            typer.echo(json.dumps(res.to_dict(frames=frames), indent=2))
            return
        _print_human(res)
        if frames:
            typer.echo("  time_s  " + "  ".join(f"az{i + 1:<6} el{i + 1:<6}" for i in range(res.n_sources)))
            for k, t in enumerate(res.frame_times_s):
                cells = []
                for s in range(res.n_sources):
                    a, e = res.frame_azimuth_deg[s, k], res.frame_elevation_deg[s, k]
                    cells.append("   -       -    " if a != a else f"{a:7.1f} {e:6.1f} ")
                typer.echo(f"  {t:6.2f}  " + " ".join(cells))
        if plot is not None:
            typer.echo(f"  plot: {plot}")

    train = _train_group(app)

    @train.command("localizer")
    def train_localizer_cmd(
        config: Optional[Path] = typer.Argument(None, help="YAML recipe (e.g. spaq/resources/weights/bast_ku100.yaml)."),
        csv: Optional[Path] = typer.Option(None, "--csv", help="Index CSV: input_file,class,azimuth_deg,elevation_deg."),
        out: Path = typer.Option(Path("localizer.pt"), "--out", "-o", help="Checkpoint to write."),
        epochs: Optional[int] = typer.Option(None, "--epochs", help="Override the number of epochs."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Override the seed."),
        integration: Optional[str] = typer.Option(None, "--integration", help="ADD | SUB | CONCAT."),
        share_weights: Optional[bool] = typer.Option(None, "--share-weights/--separate-weights", help="Share the ear encoders."),
        loss: Optional[str] = typer.Option(None, "--loss", help="MSE | AD | MIX."),
        cache: Optional[Path] = typer.Option(None, "--cache", help="Folder for rendered training features (synthetic data)."),
    ):
        """Train the BAST localizer from a recipe (synthetic scenes) or from a labelled index (--csv)."""
        from .train.localizer import LocalizerTrainConfig, train_from_csv, train_localizer

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
