"""``spaq score REF DEG``: every applicable metric on one pair (table, JSON, maps)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import SpaqError
from .output import metric_names, print_json, print_report

__all__ = ["register"]


def _check_maps_metrics(names) -> None:
    """``--maps`` with metrics none of which gives maps (their ``produces_maps``): one line before any work (as an
    unknown name is); None: the default metrics."""
    from ..metrics import check_metric_names, default_metrics, metric_class, registered

    def maps_of(n):
        try:
            return bool(getattr(metric_class(n), "produces_maps", False))
        except SpaqError:  # a plugin that does not load: said by the scoring itself
            return False

    names = check_metric_names(names) if names else list(default_metrics())
    if not any(maps_of(n) for n in names):
        give = [n for n in registered() if maps_of(n)]
        raise SpaqError(f"--maps: {', '.join(names)} give{'s' if len(names) == 1 else ''} no maps; metrics that do: "
                        f"{', '.join(give)} (add one with -m)")


def _write_maps(out: str, report) -> list[str]:
    from ..auditory.frontend import AuditoryFrontEnd
    from ..report import plot_maps, save_maps_npz

    base = out[:-4] if out.endswith((".npz", ".png")) else out
    maps = {}
    for name, res in report.results.items():
        for k, v in res.maps.items():
            if getattr(v, "ndim", 0) == 2:
                maps[f"{name}.{k}"] = v
    if not maps:
        raise SpaqError("no metric produced maps for this input")
    fe = AuditoryFrontEnd()
    fc = fe.center_frequencies_hz.numpy()
    frame_s = fe.frame_len / fe.sample_rate
    written: list[str] = []
    try:
        save_maps_npz(base + ".npz", maps, fc, frame_s)
        written.append(base + ".npz")
        plot_maps(base + ".png", maps, fc, frame_s, title=f"{Path(report.deg).name} vs {Path(report.ref).name}")
        written.append(base + ".png")
    except OSError as e:  # no partial output: remove what was written
        for p in written:
            try:
                os.unlink(p)
            except OSError:
                pass
        parent = os.path.dirname(os.path.abspath(base))
        why = (f"{parent} is a file, not a folder" if os.path.isfile(parent)
               else f"the folder {parent} does not exist" if not os.path.exists(parent) else (e.strerror or str(e)))
        raise SpaqError(f"cannot write maps {base}.npz/.png: {why}") from None
    return written


def _stream_progress():
    """``(callback, stop)`` drawing one progress bar per metric on stderr while a streamed
    (long) pair is scored; nothing when stderr is not a terminal."""
    if not sys.stderr.isatty():
        return None, lambda: None
    state: dict = {}

    def cb(metric: str, fraction: float) -> None:
        if "bar" not in state:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            state["bar"] = Progress(TextColumn("{task.description}"), BarColumn(),
                                    TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                                    console=Console(stderr=True), transient=True)
            state["bar"].start()
        if metric not in state:
            state[metric] = state["bar"].add_task(f"{metric} (streamed)", total=1.0)
        state["bar"].update(state[metric], completed=min(1.0, fraction))

    def stop() -> None:
        if "bar" in state:
            state["bar"].stop()

    return cb, stop


def score_cmd(
    ref: str = typer.Argument(..., help="Reference audio file (WAV/FLAC...)."),
    deg: str = typer.Argument(..., help="Degraded audio file."),
    metric: Optional[List[str]] = typer.Option(None, "--metric", "-m", metavar="NAME", help="Metric to run (repeatable, or several separated by commas); see `spaq metrics`."),
    fmt: Optional[str] = typer.Option(None, "--format", metavar="FORMAT", help="Override format detection: binaural, foa, hoa2, hoa3, ambisonics:N, with /sn3d (default), /n3d or /fuma; loudspeaker layouts mono, stereo, 5.0, 5.1, 7.0, 7.1, 5.1.4, 7.1.4 (rendered binaurally)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    maps: Optional[str] = typer.Option(None, "--maps", metavar="OUT", help="Write per-band/per-frame maps to OUT.npz and a figure OUT.png."),
    trim: bool = typer.Option(False, "--trim", help="Trim to the shorter signal even if lengths differ by 1 % or more."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", metavar="PATH", help="Weights file of one metric: QASTAnet's (official format) when qastanet is scored, else that of the one metric named that loads weights (quality, sqm, predictor)."),
    offline: bool = typer.Option(False, "--offline", help="Never download weights."),
    device: str = typer.Option("cpu", "--device", metavar="DEVICE", help="torch device (cpu, cuda)."),
    fast: Optional[bool] = typer.Option(None, "--fast/--exact", help="Auditory bands at reduced rates (--fast: ~10x faster) or at full rate in float64 (--exact). Default: fast for every metric (qastanet within 1.8e-3 of the official scores on its 17 test pairs, quality within 0.14 points of exact)."),
    align: bool = typer.Option(True, "--align/--no-align", help="Estimate the delay between REF and DEG (band envelopes, refined on the fine structure; +-300 ms) and compare their overlap (default). qastanet always gets the pair as given, like the official code."),
    source: Optional[List[str]] = typer.Option(None, "--source", metavar="MONO", help="The dry mono source REF was rendered from, then DEG's (give it twice, in that order; same lengths as their signals): sqm then scores with its source-informed encoder."),
    n_sources: Optional[int] = typer.Option(None, "--n-sources", metavar="N", help="localization: how many sources to find in each signal (default 1); each one's directions and error in the result."),
    stream: Optional[bool] = typer.Option(None, "--stream/--no-stream", help="Read the files chunk by chunk instead of whole (bounded memory, same scores). Default: when their samples at 48 kHz exceed SPAQ_STREAM_MB (256 MiB, about 44 s of 3OA)."),
):
    """Score DEG against REF (binaural or ambisonics ACN/SN3D, any sample rate)."""
    from ..api import score
    from ..errors import SpaqInputError

    if source and len(source) != 2:
        raise SpaqInputError(f"--source takes two files (REF's dry source, then DEG's), got {len(source)}")
    if maps is not None:  # OUT.npz and OUT.png: a name in a writable folder, checked before the work
        from .output import output_file

        output_file(maps[:-4] if maps.endswith((".npz", ".png")) else maps, "maps")
        _check_maps_metrics(metric_names(metric))
    progress, stop = _stream_progress()
    try:
        report = score(ref, deg, metrics=metric_names(metric), fmt=fmt, trim=trim, checkpoint=checkpoint,
                       offline=True if offline else None, maps=maps is not None, device=device, fast=fast,
                       stream=stream, progress=progress, align=align, sources=tuple(source) if source else None,
                       n_sources=n_sources)
    finally:
        stop()
    written = _write_maps(maps, report) if maps else []
    if as_json:
        d = report.to_dict()
        if written:
            d["maps_files"] = written
        print_json(d)
    else:
        print_report(report)
        for p in written:
            typer.echo(f"wrote {p}")


def register(app: typer.Typer) -> None:
    """Add ``score`` to ``app``."""
    app.command("score")(score_cmd)
