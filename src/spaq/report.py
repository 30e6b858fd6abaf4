"""Figures: per-band / per-frame diagnostic maps."""
from __future__ import annotations

import numpy as np

from .io import atomic_write

__all__ = ["plot_maps", "save_maps_npz"]

_LABELS = {
    "d_ild_db": ("ILD difference (dB)", "RdBu_r", True),
    "d_coherence": ("interaural coherence difference", "RdBu_r", True),
    "d_level_db": ("band level difference (dB)", "RdBu_r", True),
    "d_directiveness": ("directiveness difference", "RdBu_r", True),
    "d_ild": ("QASTAnet |dILD| feature", "magma", False),
    "d_power": ("QASTAnet power feature", "magma", False),
    "d_directiveness_q": ("QASTAnet directiveness feature", "magma", False),
}


def save_maps_npz(path: str, maps: dict, center_hz, frame_s: float) -> None:
    """Write maps ``{metric.map: (bands, frames)}`` plus band centres and frame times, atomically."""
    arrays = {k: np.asarray(v) for k, v in maps.items()}
    n_frames = max((a.shape[-1] for a in arrays.values()), default=0)
    arrays["band_center_hz"] = np.asarray(center_hz)
    arrays["frame_time_s"] = np.arange(n_frames) * frame_s

    def w(tmp):
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)

    atomic_write(path, w)


def plot_maps(path: str, maps: dict, center_hz, frame_s: float, title: str = "") -> None:
    """Bands x time heat maps, one panel per map, written atomically to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in maps]
    n = len(names)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.3 * n + 0.6), squeeze=False, sharex=True)
    fc = np.asarray(center_hz)
    for ax, name in zip(axes[:, 0], names):
        data = np.asarray(maps[name], dtype=float)
        short = name.split(".", 1)[-1]
        label, cmap, symmetric = _LABELS.get(short, (short, "viridis", False))
        finite = data[np.isfinite(data)]
        if finite.size and symmetric:
            lim = max(float(np.percentile(np.abs(finite), 99)), 1e-6)
            vmin, vmax = -lim, lim
        elif finite.size:
            vmin, vmax = float(finite.min()), float(np.percentile(finite, 99)) or 1e-6
        else:
            vmin, vmax = -1, 1
        t_end = data.shape[-1] * frame_s
        im = ax.imshow(np.ma.masked_invalid(data), aspect="auto", origin="lower", cmap=cmap, vmin=vmin, vmax=vmax,
                       extent=(0, t_end, -0.5, data.shape[0] - 0.5), interpolation="nearest")
        ticks = np.arange(0, data.shape[0], max(1, data.shape[0] // 6))
        ax.set_yticks(ticks)
        ax.set_yticklabels([f"{fc[i]:.0f}" for i in ticks] if len(fc) == data.shape[0] else ticks)
        ax.set_ylabel("band (Hz)")
        ax.set_title(f"{name}: {label} (grey: reference below hearing threshold)", fontsize=9)
        ax.set_facecolor("0.85")
        fig.colorbar(im, ax=ax, pad=0.01)
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.985) if title else None)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
