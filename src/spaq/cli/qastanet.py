"""``spaq qastanet --ref REF --deg DEG``: drop-in for the official run_qastanet.py."""
from __future__ import annotations

from typing import Optional

import typer

from ..errors import SpaqError
from .output import print_json

__all__ = ["register"]


def qastanet_cmd(
    ref: str = typer.Option(..., "--ref", metavar="PATH", help="Reference audio file path (ambisonics ACN/SN3D)."),
    deg: str = typer.Option(..., "--deg", metavar="PATH", help="Degraded audio file path."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", metavar="PATH", help="Model weights file path (official model_weights.pth.tar)."),
    config: Optional[str] = typer.Option(None, "--config", metavar="PATH", help="Model configuration (official model_args.yml); only SWAP pooling with features ild, gam, mon, dir exists."),
    verbose: bool = typer.Option(False, "--verbose/--no-verbose", help="Print processing time."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    offline: bool = typer.Option(False, "--offline", help="Never download weights."),
    fast: bool = typer.Option(False, "--fast", help="Fast mode (as `spaq score`): ~10x faster, within 1.8e-3 of the official scores on the test pairs; default here is exact (float64, full rate)."),
):
    """Drop-in for the official run_qastanet.py: same options, same printout (exact mode by default)."""
    import time

    import yaml

    from ..api import score

    if config:
        try:
            with open(config) as f:
                cfg = yaml.safe_load(f) or {}
        except OSError as e:
            raise SpaqError(f"cannot read config {config}: {e.strerror}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise SpaqError(f"{config} is not a YAML file: {' '.join(str(e).split())[:200]}") from None
        if not isinstance(cfg, dict):
            raise SpaqError(f"{config}: expected a mapping (pooling_layer, feature_names), got {type(cfg).__name__}")
        extra = sorted(set(map(str, cfg)) - {"pooling_layer", "feature_names"})
        if extra:  # the official script reads only these two keys: say what is not read, as it would be ignored
            typer.echo(f"warning: {config}: keys not used: {', '.join(extra)}", err=True)
        if cfg.get("pooling_layer", "SWAP") != "SWAP" or list(cfg.get("feature_names", ["ild", "gam", "mon", "dir"])) != ["ild", "gam", "mon", "dir"]:
            raise SpaqError(f"{config}: only the published configuration (SWAP pooling, features ild, gam, mon, dir) is supported")
    t0 = time.time()
    report = score(ref, deg, metrics=["qastanet"], checkpoint=checkpoint, offline=True if offline else None, strict=True,
                   fast=fast)
    res = report.results["qastanet"]
    if as_json:
        print_json({"ref": report.ref, "deg": report.deg, "score": res.score, "duration_s": report.duration_s,
                    "checkpoint_sha256": res.provenance["checkpoint_sha256"], "warnings": report.warnings})
        return
    if verbose:
        typer.echo(f"Score estimated in {time.time() - t0:.2f} seconds for an audio example of {report.duration_s:.2f} seconds.")
    for w in report.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"QASTAnet predicts a quality of {res.score:.2f} (scaled between 0 and 1).")


def register(app: typer.Typer) -> None:
    """Add ``qastanet`` to ``app``."""
    app.command("qastanet")(qastanet_cmd)
