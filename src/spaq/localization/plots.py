"""Plots of localisation results: :func:`plot_localization`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import SpaqError
from .localize import LocalizationResult

__all__ = ["plot_localization"]


def plot_localization(result: LocalizationResult, out_path, title: str | None = None) -> None:
    """Draw the trajectory (coloured by time) and the overall direction(s) (stars) on an
    azimuth-elevation map (azimuth from +180 on the left to -180 on the right, so that
    left of the listener is on the left) and save it to ``out_path`` (PNG, PDF, SVG; written
    atomically by :func:`spaq.io.atomic_write`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.2))
    t = result.frame_times_s
    sc = None
    markers = ["o", "s", "^", "D", "v"]
    for s in range(result.n_sources):
        ok = ~np.isnan(result.frame_azimuth_deg[s])
        if ok.any():
            sc = ax.scatter(result.frame_azimuth_deg[s, ok], result.frame_elevation_deg[s, ok], c=t[ok], cmap="viridis",
                            vmin=float(t.min()), vmax=float(t.max()) if t.max() > t.min() else float(t.min()) + 1,
                            s=18, marker=markers[s % len(markers)], alpha=0.8)
        if not np.isnan(result.azimuth_deg[s]):
            ax.plot(result.azimuth_deg[s], result.elevation_deg[s], marker="*", ms=18, mec="k", mfc="tab:red",
                    ls="none")
            ax.annotate(f"S{s + 1} ({result.azimuth_deg[s]:.1f}°, {result.elevation_deg[s]:.1f}°, "
                        f"conf {result.confidence[s]:.2f})", (result.azimuth_deg[s], result.elevation_deg[s]),
                        textcoords="offset points", xytext=(8, 8), fontsize=8)
    if sc is not None:
        fig.colorbar(sc, ax=ax, label="time (s)")
    ax.set_xlim(180, -180)
    ax.set_ylim(-90, 90)
    ax.set_xticks(np.arange(-180, 181, 45))
    ax.set_yticks(np.arange(-90, 91, 30))
    ax.grid(True, alpha=0.4)
    ax.set_xlabel("azimuth (deg, + left)")
    ax.set_ylabel("elevation (deg)")
    ax.set_title(title or f"{result.format} localisation ({result.method})")
    fig.tight_layout()
    from ..files import atomic_write

    # the format from the name asked for (the temporary file's own name ends in .tmp when it has none): PNG by default
    ext = Path(str(out_path)).suffix[1:].lower()
    fmt = ext if ext in fig.canvas.get_supported_filetypes() else "png"
    try:
        atomic_write(out_path, lambda tmp: fig.savefig(tmp, dpi=110, format=fmt))
    except (OSError, ValueError) as e:
        raise SpaqError(f"cannot write plot {out_path}: {' '.join(str(e).split())}") from None
    finally:
        plt.close(fig)
