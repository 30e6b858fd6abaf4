"""``spaq localize FILE``: direction(s) of the source(s) in one file.

User errors are raised as :class:`~spaq.errors.SpaqError`; ``spaq.cli.main`` prints them as
one line and exits with status 2."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["register"]


def _print_human(res) -> None:
    from ..spatial.angles import lateral_angle, sph2cart

    typer.echo(f"{res.format} ({res.method}):")
    for i in range(res.n_sources):
        a, e, c = res.azimuth_deg[i], res.elevation_deg[i], res.confidence[i]
        if a != a:  # NaN
            typer.echo(f"  source {i + 1}: not found")
        else:
            lat = float(lateral_angle(sph2cart(a, e)))
            typer.echo(f"  source {i + 1}: azimuth {a:7.1f} deg  elevation {e:6.1f} deg  (lateral {lat:5.1f} deg)  "
                       f"confidence {c:.2f}")
    ex = res.provenance.get("exact_head") if res.method == "templates" else None
    if ex:  # which template head answered, and whether the exact-head stage recognised it
        refined = ", refined between the measured directions" if res.provenance.get("refined_between_directions") else ""
        how = (f"exact-head match, misfit {ex['fit']:.3f}" if ex["used"] else
               f"band templates{refined}; exact-head stage not used: best misfit {ex['fit']:.3f}, on {ex['hrtf']}")
        sc = res.provenance.get("head_scale", 1.0)
        head = res.provenance.get("hrtf") if sc == 1.0 else f"{res.provenance.get('hrtf')} scaled x{sc:g} in frequency"
        typer.echo(f"  templates: {head} ({how})")
        if res.provenance.get("dereverberated"):
            g = res.provenance.get("room_gate") or {}
            typer.echo(f"  dereverberated (WPE): low-band coherence {g.get('coherence', float('nan')):.2f} "
                       f"< {g.get('threshold', float('nan')):g}")
    if res.class_probabilities:
        best = max(res.class_probabilities, key=res.class_probabilities.get)
        typer.echo(f"  class: {best} ({res.class_probabilities[best]:.2f})")
    for w in res.warnings:
        typer.echo(f"  warning: {w}")


def localize_cmd(
    file: Path = typer.Argument(..., help="Binaural (2 channels) or ambisonic (ACN, (N+1)^2 channels) audio file."),
    format: Optional[str] = typer.Option(None, "--format", metavar="FORMAT", help="binaural | ambisonics | foa | hoa3 ... (/sn3d, /n3d, /fuma); default: from the channel count."),
    frames: bool = typer.Option(False, "--frames", help="Also report the trajectory over time."),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="PNG", help="Draw directions on an azimuth-elevation map (PNG)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    n_sources: int = typer.Option(1, "--n-sources", min=1, metavar="N", help="Number of sources to find."),
    weights: Optional[Path] = typer.Option(None, "--weights", metavar="PATH", help="Localizer checkpoint (binaural): a path, or a packaged one's name (bast_ku100: the log-mel BAST; bast_cues: the cue-feature BAST, what --method bast uses by default)."),
    method: str = typer.Option("auto", "--method", metavar="METHOD", help="Binaural: auto | templates (training-free HRTF template matching) | bast (the trained model, default the cue-feature bast_cues); auto: bast with --weights, else templates (the cue BAST has lost to them on every development set, so auto's switch to it for reverberant signals is off)."),
    hrtf: Optional[str] = typer.Option(None, "--hrtf", metavar="NAME|SOFA", help="Templates of this HRTF set (ku100, sonicom-1, sonicom-2, kemar: `spaq version` lists those installed; or a SimpleFreeFieldHRIR SOFA file); default: the better fit of KU100 and SONICOM subject 1."),
):
    """Direction(s) of the source(s) in FILE, with confidence (and a trajectory with --frames)."""
    import numpy as np

    from ..localization import localize, plot_localization
    from .output import output_file

    if plot is not None:  # before the work: a plot that cannot be written fails at once
        output_file(plot, "plot")
    with np.errstate(divide="ignore"):  # the level check of a silent file: log10(0) is -inf, not a warning
        res = localize(file, format=format, n_sources=n_sources, weights=weights, method=method, hrtf=hrtf)
    if plot is not None:
        plot_localization(res, plot, title=f"{file.name}: {res.format} ({res.method})")
    if as_json:
        from .output import print_json

        print_json(res.to_dict(frames=frames))
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


def register(app: typer.Typer) -> None:
    """Add ``localize`` to ``app``."""
    app.command("localize")(localize_cmd)
