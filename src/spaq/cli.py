"""The ``spaq`` command. Entry point ``main(argv=None) -> int`` (tests call it in-process).

Errors a user can cause are printed as one line (``spaq: error: ...``) with exit status 2;
nothing else is printed and no partial output file is left.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

# torch's OpenMP threads spin while they wait: with another busy process on a 2-core machine a
# 10 s qastanet call took 11-12 s instead of 0.3 s; passive waiting costs ~7 % when the machine
# is idle and keeps it at 0.46 s when it is not. Set before torch is imported; the user's own
# OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import typer  # noqa: E402

try:  # typer >= 0.20 vendors click as typer._click
    from typer._click import exceptions as _click_exc  # noqa: E402
except ImportError:  # older typer depends on click itself
    from click import exceptions as _click_exc

from .errors import SpaqError

# typer >= 0.20 defines Exit/Abort itself (its vendored click has no such attributes)
_EXIT = tuple({getattr(_click_exc, "Exit", typer.Exit), typer.Exit})
_ABORT = tuple({getattr(_click_exc, "Abort", typer.Abort), typer.Abort})

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="spaq: SPatial Audio Quality - score binaural and ambisonic audio against a reference.")
weights_app = typer.Typer(no_args_is_help=True, help="Checkpoints: where they are, fetch them.")
app.add_typer(weights_app, name="weights")


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, allow_nan=True) + "\n")


def _fmt_num(v) -> str:
    try:
        import numpy as np

        if isinstance(v, (list, tuple)) or (hasattr(v, "shape") and getattr(v, "shape", ()) != ()):
            return "[" + ", ".join(_fmt_num(x) for x in np.asarray(v).ravel()) + "]"
        v = float(v)
    except (TypeError, ValueError):
        return str(v)
    if v != v:
        return "n/a"
    return f"{v:.4f}" if abs(v) < 1000 else f"{v:.1f}"


def _is_numeric(v) -> bool:
    """Numbers and (nested) lists of numbers; directions and other structures go to --json."""
    if isinstance(v, (list, tuple)):
        return all(_is_numeric(x) for x in v) and len(v) <= 8
    if v is None:
        return True
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def _print_report(report) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    fmt = report.format.get("description", report.format.get("kind"))
    con.print(f"[bold]ref[/bold] {report.ref}\n[bold]deg[/bold] {report.deg}")
    rate = f"{report.sample_rate_in} Hz" + (
        f" -> {report.sample_rate_used} Hz" if report.sample_rate_in != report.sample_rate_used else "")
    con.print(f"format: {fmt}; {report.duration_s:.2f} s; sample rate {rate}")
    table = Table(show_header=True, header_style="bold")
    for col in ("metric", "score", "unit", "better", "details"):
        table.add_column(col)
    for name, res in report.results.items():
        details = ", ".join(f"{k}={_fmt_num(v)}" for k, v in res.values.items() if _is_numeric(v))
        table.add_row(name, _fmt_num(res.score), res.unit, "higher" if res.higher_is_better else "lower", details)
    con.print(table)
    for name, why in report.skipped.items():
        con.print(f"[yellow]{name} skipped:[/yellow] {why}", highlight=False)
    for w in report.warnings:
        con.print(f"[yellow]warning:[/yellow] {w}", highlight=False)


def _write_maps(out: str, report) -> list[str]:
    from .auditory.frontend import AuditoryFrontEnd
    from .report import plot_maps, save_maps_npz

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
        raise SpaqError(f"cannot write maps {base}.npz/.png: {e.strerror or e}") from None
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


@app.command("score")
def score_cmd(
    ref: str = typer.Argument(..., help="Reference audio file (WAV/FLAC...)."),
    deg: str = typer.Argument(..., help="Degraded audio file."),
    metric: Optional[List[str]] = typer.Option(None, "--metric", "-m", help="Metric to run (repeatable); see `spaq metrics`."),
    fmt: Optional[str] = typer.Option(None, "--format", help="Override format detection: binaural, foa, hoa2, hoa3, ambisonics:N, with /sn3d (default), /n3d or /fuma."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
    maps: Optional[str] = typer.Option(None, "--maps", help="Write per-band/per-frame maps to OUT.npz and a figure OUT.png."),
    trim: bool = typer.Option(False, "--trim", help="Trim to the shorter signal even if lengths differ by 1 % or more."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="QASTAnet checkpoint (official format)."),
    offline: bool = typer.Option(False, "--offline", help="Never download weights."),
    device: str = typer.Option("cpu", "--device", help="torch device (cpu, cuda)."),
    fast: Optional[bool] = typer.Option(None, "--fast/--exact", help="Auditory bands at reduced rates (--fast: ~10x faster) or at full rate in float64 (--exact). Default: fast for every metric (qastanet within 1.8e-3 of the official scores on its 17 test pairs, quality within 0.14 points of exact)."),
    stream: Optional[bool] = typer.Option(None, "--stream/--no-stream", help="Read the files chunk by chunk instead of whole (bounded memory, same scores). Default: when their samples at 48 kHz exceed SPAQ_STREAM_MB (256 MiB, about 40 s of 3OA)."),
):
    """Score DEG against REF (binaural or ambisonics ACN/SN3D, any sample rate)."""
    from .api import score

    progress, stop = _stream_progress()
    try:
        report = score(ref, deg, metrics=metric, fmt=fmt, trim=trim, checkpoint=checkpoint,
                       offline=True if offline else None, maps=maps is not None, device=device, fast=fast,
                       stream=stream, progress=progress)
    finally:
        stop()
    written = _write_maps(maps, report) if maps else []
    if as_json:
        d = report.to_dict()
        if written:
            d["maps_files"] = written
        _print_json(d)
    else:
        _print_report(report)
        for p in written:
            typer.echo(f"wrote {p}")


@app.command("qastanet")
def qastanet_cmd(
    ref: str = typer.Option(..., "--ref", help="Reference audio file path (ambisonics ACN/SN3D)."),
    deg: str = typer.Option(..., "--deg", help="Degraded audio file path."),
    checkpoint: Optional[str] = typer.Option(None, "--checkpoint", help="Model weights file path (official model_weights.pth.tar)."),
    config: Optional[str] = typer.Option(None, "--config", help="Model configuration (official model_args.yml); only SWAP pooling with features ild, gam, mon, dir exists."),
    verbose: bool = typer.Option(False, "--verbose/--no-verbose", help="Print processing time."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    offline: bool = typer.Option(False, "--offline", help="Never download weights."),
    fast: bool = typer.Option(False, "--fast", help="Fast mode (as `spaq score`): ~10x faster, within 1.8e-3 of the official scores on the test pairs; default here is exact (float64, full rate)."),
):
    """Drop-in for the official run_qastanet.py: same options, same printout (exact mode by default)."""
    import time

    import yaml

    from .api import score

    if config:
        try:
            with open(config) as f:
                cfg = yaml.safe_load(f) or {}
        except OSError as e:
            raise SpaqError(f"cannot read config {config}: {e.strerror}") from None
        if cfg.get("pooling_layer", "SWAP") != "SWAP" or list(cfg.get("feature_names", ["ild", "gam", "mon", "dir"])) != ["ild", "gam", "mon", "dir"]:
            raise SpaqError(f"{config}: only the published configuration (SWAP pooling, features ild, gam, mon, dir) is supported")
    t0 = time.time()
    report = score(ref, deg, metrics=["qastanet"], checkpoint=checkpoint, offline=True if offline else None, strict=True,
                   fast=fast)
    res = report.results["qastanet"]
    if as_json:
        _print_json({"ref": report.ref, "deg": report.deg, "score": res.score, "duration_s": report.duration_s,
                     "checkpoint_sha256": res.provenance["checkpoint_sha256"], "warnings": report.warnings})
        return
    if verbose:
        typer.echo(f"Score estimated in {time.time() - t0:.2f} seconds for an audio example of {report.duration_s:.2f} seconds.")
    for w in report.warnings:
        typer.echo(f"warning: {w}", err=True)
    typer.echo(f"QASTAnet predicts a quality of {res.score:.2f} (scaled between 0 and 1).")


@app.command("metrics")
def metrics_cmd(as_json: bool = typer.Option(False, "--json")):
    """List the metrics, one line each."""
    from .metrics import list_metrics

    ms = list_metrics()
    if as_json:
        _print_json(ms)
        return
    w = max(len(k) for k in ms)
    for k, v in ms.items():
        typer.echo(f"{k.ljust(w)}  {v}")


@app.command("demo")
def demo_cmd(as_json: bool = typer.Option(False, "--json"), out: Optional[str] = typer.Option(None, "--out", help="Also keep the demo WAV files in this folder.")):
    """Score a built-in demo pair (third-order ambisonic scene, low-passed), offline."""
    from .api import score
    from .demo import demo_pair
    from .io import write_audio

    ref, deg, fs, what = demo_pair()
    if out:
        os.makedirs(out, exist_ok=True)
        write_audio(os.path.join(out, "demo_ref.wav"), ref, fs)
        write_audio(os.path.join(out, "demo_deg.wav"), deg, fs)
    report = score(ref, deg, sample_rate=fs, offline=True)
    report.ref, report.deg = f"<demo reference: {what}>", "<demo degraded: same scene low-passed at 4 kHz>"
    if as_json:
        _print_json(report.to_dict())
    else:
        _print_report(report)


@app.command("version")
def version_cmd(as_json: bool = typer.Option(False, "--json")):
    """Versions of spaq, torch, numpy and the checkpoints found."""
    import numpy
    import torch

    from . import __version__, weights

    info = {"spaq": __version__, "torch": torch.__version__, "numpy": numpy.__version__, "checkpoints": {}}
    for name in weights.REGISTRY:
        try:
            w = weights.resolve(name, offline=True)
            info["checkpoints"][name] = {"path": str(w.path), "sha256": w.sha256, "official": w.verified}
        except SpaqError:
            info["checkpoints"][name] = None
    if as_json:
        _print_json(info)
        return
    typer.echo(f"spaq {info['spaq']}  torch {info['torch']}  numpy {info['numpy']}")
    for k, v in info["checkpoints"].items():
        typer.echo(f"  {k}: " + (f"{v['path']} (sha256 {v['sha256'][:12]}…)" if v else "not available offline"))


@weights_app.command("fetch")
def weights_fetch(name: str = typer.Argument(..., help="Checkpoint name, e.g. qastanet."),
                  url: Optional[str] = typer.Option(None, "--url", help="Download from this URL instead (sha256 still checked).")):
    """Download a checkpoint into the cache (sha256-checked, atomic)."""
    from . import weights

    if name not in weights.REGISTRY:
        raise SpaqError(f"unknown weights {name!r}; known: {', '.join(sorted(weights.REGISTRY))}")
    typer.echo(str(weights.fetch(name, url=url)))


@weights_app.command("path")
def weights_path(name: str = typer.Argument(...)):
    """Print where a checkpoint is found (no download)."""
    from . import weights

    typer.echo(str(weights.resolve(name, offline=True).path))


def _register_plugins() -> None:
    from .batch_cli import register as register_batch
    from .data.cli import register as register_data
    from .evaluate_cli import register as register_evaluate
    from .localize_cli import _train_group
    from .localize_cli import register as register_localize
    from .train.quality_cli import register_train_quality

    register_data(app)
    register_localize(app)
    register_evaluate(app)
    register_batch(app)
    register_train_quality(_train_group(app))


_register_plugins()


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 user error)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        # with standalone_mode=False a command's typer.Exit(code) comes back as the return value
        rc = app(args=args, prog_name="spaq", standalone_mode=False)
    except SpaqError as e:
        msg = " ".join(str(e).split())
        sys.stderr.write(f"spaq: error: {msg}\n")
        return 2
    except _EXIT as e:
        return int(e.exit_code or 0)
    except _click_exc.ClickException as e:
        sys.stderr.write(f"spaq: error: {' '.join(e.format_message().split())}\n")
        return 2
    except _ABORT:
        sys.stderr.write("spaq: aborted\n")
        return 130
    except KeyboardInterrupt:
        sys.stderr.write("spaq: interrupted\n")
        return 130
    if rc == 130:  # typer's click turns Ctrl-C (KeyboardInterrupt) into status 130 when not standalone
        sys.stderr.write("spaq: interrupted\n")
    return rc if isinstance(rc, int) else 0


def entry() -> None:  # console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
