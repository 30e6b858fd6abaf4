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
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list of {file, score, class, score_band, mushra_calibrated, probabilities, format, level_dbfs, warnings} (+ input_format for a loudspeaker layout, scored binaurally; {file, error} for a file that could not be scored)."),
    checkpoint: Optional[Path] = typer.Option(None, "--checkpoint", metavar="PATH", help="Predictor checkpoint; default: the packaged one."),
):
    """Score 0..100 and class (low < 40 <= medium < 70 <= high) of each FILE, without a reference.

    The class comes from the model's class head, the score from its score head: where the score falls in
    another band the line says so (JSON: score_band).

    A file that cannot be scored is reported on one line and the others are still scored (exit status 2)."""
    from ..api import predict
    from ..errors import SpaqError, SpaqInputError
    from .output import print_json

    if format:  # a bad --format is one error, not one per file
        from ..formats import parse_format

        try:
            parse_format(format)
        except ValueError as e:
            raise SpaqInputError(str(e)) from None
    rows, failed = [], []
    for f in files:
        try:
            r = predict(str(f), fmt=format, checkpoint=str(checkpoint) if checkpoint else None)
        except SpaqError as e:
            msg = str(e)
            msg = msg if str(f) in msg else f"{f}: {msg}"
            if (len(files) == 1 and not as_json) or not isinstance(e, SpaqInputError):  # a checkpoint problem
                raise type(e)(msg) from None  # concerns every file
            # several files, or --json: the others are still scored; each bad one is a line on stderr (and an
            # {"file", "error"} entry in the JSON list), and the exit status is 2 at the end
            failed.append(msg)
            rows.append({"file": str(f), "error": msg})
            continue
        rows.append({"file": str(f), **r})
    if as_json:
        print_json(rows)
    else:
        _print_rows([r for r in rows if "error" not in r])
    if failed:
        for m in failed[:-1]:
            typer.echo(f"spaq: error: {m}", err=True)
        raise SpaqError(f"{failed[-1]} ({len(failed)} of {len(files)} files could not be scored)")


def _print_rows(rows: list) -> None:
    if not rows:
        return
    w = max(len(r["file"]) for r in rows)
    for r in rows:
        p = r["probabilities"]
        other = "" if r["score_band"] == r["class"] else f" (the score's band: {r['score_band']})"
        typer.echo(f"{r['file']:<{w}}  {r['score']:5.1f}  {r['class']:<6}{other}  (low {p['low']:.2f}, medium "
                   f"{p['medium']:.2f}, high {p['high']:.2f})  {r['format']}"
                   + (f" (from {r['input_format']})" if r.get("input_format") else "") + f"  [MUSHRA-calibrated "
                   f"{r['mushra_calibrated']:.1f}]" + ("" if r.get("level_dbfs") is None else f"  level {r['level_dbfs']:.1f} dBFS"))
        for m in r["warnings"]:  # stderr: with several files, each warning names its file
            typer.echo(f"  warning: {m}" if len(rows) == 1 else f"  warning ({r['file']}): {m}", err=True)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_cmd)
