"""``spaq demo``: score the built-in demo pair, offline."""
from __future__ import annotations

import os
from typing import Optional

import typer

from .output import print_json, print_report

__all__ = ["register"]


def demo_cmd(as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
             out: Optional[str] = typer.Option(None, "--out", metavar="DIR", help="Also keep the demo WAV files in this folder.")):
    """Score a built-in demo pair (third-order ambisonic scene, low-passed), offline."""
    from ..api import score
    from ..demo import demo_pair
    from ..io import write_audio

    ref, deg, fs, what = demo_pair()
    if out:
        from .output import output_folder

        os.makedirs(output_folder(out, "demo folder"), exist_ok=True)
        write_audio(os.path.join(out, "demo_ref.wav"), ref, fs)
        write_audio(os.path.join(out, "demo_deg.wav"), deg, fs)
    report = score(ref, deg, sample_rate=fs, offline=True)
    report.ref, report.deg = f"<demo reference: {what}>", "<demo degraded: same scene low-passed at 4 kHz>"
    if as_json:
        print_json(report.to_dict())
    else:
        print_report(report)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to ``app``."""
    app.command("demo")(demo_cmd)
