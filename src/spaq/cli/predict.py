"""``spaq predict FILE...``: reference-free quality (the ``predictor`` metric) of each file.

User errors are raised as :class:`~spaq.errors.SpaqError`; ``spaq.cli.main`` prints them as
one line and exits with status 2."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

__all__ = ["register"]


def predict_cmd(
    files: List[Path] = typer.Argument(..., help="Audio files: mono, binaural (2 channels) or ambisonics ACN/SN3D."),
    format: Optional[str] = typer.Option(None, "--format", metavar="FORMAT", help="mono | binaural | foa | hoa3 ... (/fuma), or a layout (5.1, ...); default: from the channel count."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of {file, score, class, mushra_calibrated, probabilities, format, warnings}."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", metavar="PATH", help="Predictor checkpoint; default: the packaged one."),
):
    """Score 0..100 and class (low < 40 <= medium < 70 <= high) of each FILE, without a reference."""
    from ..api import predict
    from ..errors import SpaqError
    from .output import print_json

    rows = []
    for f in files:
        try:
            r = predict(str(f), fmt=format, checkpoint=str(checkpoint) if checkpoint else None)
        except SpaqError as e:
            msg = str(e)
            raise type(e)(msg if str(f) in msg else f"{f}: {msg}") from None
        rows.append({"file": str(f), **r})
    if as_json:
        print_json(rows)
        return
    w = max(len(r["file"]) for r in rows)
    for r in rows:
        p = r["probabilities"]
        typer.echo(f"{r['file']:<{w}}  {r['score']:5.1f}  {r['class']:<6}  (low {p['low']:.2f}, medium "
                   f"{p['medium']:.2f}, high {p['high']:.2f})  {r['format']}  [MUSHRA-calibrated "
                   f"{r['mushra_calibrated']:.1f}]")
        for m in r["warnings"]:
            typer.echo(f"  warning: {m}", err=True)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_cmd)
