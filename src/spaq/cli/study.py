"""``spaq study``: studies of what the metrics agree with (``spaq study embeddings``)."""
from __future__ import annotations

import typer

__all__ = ["register"]


def embeddings_cmd(
    corpus: str = typer.Argument(..., help="A corpus folder or a manifest (.csv/.parquet with ref,deg)."),
    out: str = typer.Option(..., "--out", help="Folder for correlations.csv, pairs.csv, heatmap.png, scatter.png, "
                                               "report.md."),
    encoder: list[str] = typer.Option(["bast"], "--encoder", "-e",
                                      help="bast, sqm (spaq's own), resemblyzer, cdpam, distillmos (weights inside their packages), "
                                           "wav2vec2=PATH, vggish=PATH, openl3=PATH or NAME@RATE=PATH "
                                           "(local TorchScript/ONNX files), hf[@LAYER]=DIR (a local transformers "
                                           "wav2vec2/HuBERT/WavLM directory); repeatable."),
    metric: list[str] = typer.Option(None, "--metric", "-m", help="Classic metrics to compare with (repeatable; "
                                                                   "default pesq, stoi, si_sdr, mrstft, loudness)."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the intervals (0: none)."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    resume: bool = typer.Option(False, "--resume", help="Reuse the values of an earlier pairs.csv in --out "
                                                       "(add an encoder or a metric without recomputing the rest)."),
):
    """Frame-wise cosine similarity of encoder embeddings per pair, next to classic metrics,
    and their correlations (Pearson, Spearman, bootstrap 95 % intervals) per family."""
    from ..study.embeddings import DEFAULT_METRICS, check_study_args, run_study
    from .output import metric_names, output_folder

    output_folder(out, "study folder")  # bad arguments and a path in the way: one line before any work
    metrics = check_study_args(metric_names(metric) or DEFAULT_METRICS, n_boot, seed, out)

    import time

    t0 = time.time()

    def progress(i, n):
        typer.echo(f"pair {i}/{n} ({time.time() - t0:.0f} s)", err=True)

    res = run_study(corpus, out, encoders=encoder, metrics=metrics, n_boot=n_boot, seed=seed,
                    resume=resume, progress=progress)
    for f in res["files"]:
        typer.echo(f)


def register(app: typer.Typer) -> None:
    """Add the ``study`` group to ``app``."""
    group = typer.Typer(help="Studies: how embeddings and metrics relate.", no_args_is_help=True,
                        context_settings={"help_option_names": ["-h", "--help"]})
    group.command("embeddings")(embeddings_cmd)
    app.add_typer(group, name="study")
