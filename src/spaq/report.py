"""Figures: per-band / per-frame diagnostic maps."""
from __future__ import annotations

import numpy as np

from .files import atomic_write

__all__ = ["plot_maps", "save_maps_npz", "color_scale", "wrap_title"]

_LABELS = {
    "d_ild_db": "ILD difference (dB)",
    "d_coherence": "interaural coherence difference",
    "d_level_db": "band level difference (dB)",
    "d_directiveness": "directiveness difference",
    "d_ild": "QASTAnet |dILD| feature",
    "d_power": "QASTAnet power feature",
    "d_directiveness_q": "QASTAnet directiveness feature",
}

#: the least top of a map's colour scale, about a tenth of a just-noticeable difference in its unit, so that
#: a map of float noise around 0 (a pure rotation's ``missing_db``, an unchanged directiveness) is drawn flat,
#: not as a pattern of 1e-7; maps not named here: 1e-6
SCALE_FLOOR = {"d_ild_db": 0.1, "d_level_db": 0.1, "added_db": 0.1, "missing_db": 0.1, "d_coherence": 0.005,
               "d_directiveness": 0.01}

#: colour maps: one-sided data (>= 0 everywhere) on a sequential scale from 0, signed data on a
#: diverging scale centred on 0
SEQUENTIAL, DIVERGING = "magma", "RdBu_r"

#: characters per title line at the figure's width (10 in, 9 pt)
TITLE_CHARS = 110


def color_scale(data, floor: float = 1e-6) -> tuple[str, float, float]:
    """``(cmap, vmin, vmax)`` for a map ``(bands, frames)`` (NaN allowed): when every finite
    value is >= 0, :data:`SEQUENTIAL` from 0 to the 99th percentile; otherwise
    :data:`DIVERGING` from ``-lim`` to ``lim`` with ``lim`` the 99th percentile of ``|data|``,
    so that 0 is the scale's centre. The top is at least ``floor`` (an all-zero map still draws; the map's
    :data:`SCALE_FLOOR` keeps float noise flat)."""
    a = np.asarray(data, dtype=np.float64)
    finite = a[np.isfinite(a)]
    if not finite.size:
        return SEQUENTIAL, 0.0, 1.0
    if finite.min() >= 0:
        return SEQUENTIAL, 0.0, max(float(np.percentile(finite, 99)), float(floor))
    lim = max(float(np.percentile(np.abs(finite), 99)), float(floor))
    return DIVERGING, -lim, lim


def wrap_title(text: str, width: int = TITLE_CHARS) -> str:
    """``text`` broken into lines of at most ``width`` characters (long words, e.g. paths,
    are split too), so that a long title is not clipped by the figure's edge."""
    import textwrap

    return "\n".join(textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)) or text


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
    """Bands x time heat maps ``{metric.map: (bands, frames)}``, one panel per map, written
    atomically to a PNG; colour scales from :func:`color_scale`, titles wrapped by
    :func:`wrap_title`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k for k in maps]
    n = len(names)
    panel_titles = []
    for name in names:
        short = name.split(".", 1)[-1]
        panel_titles.append(wrap_title(f"{name}: {_LABELS.get(short, short)} (grey: no value there: the reference "
                                       f"below hearing threshold, or a frame with no estimate)"))
    title = wrap_title(title) if title else ""
    extra = 0.16 * sum(t.count("\n") for t in panel_titles) + 0.18 * title.count("\n")
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.3 * n + 0.6 + extra), squeeze=False, sharex=True)
    fc = np.asarray(center_hz)
    for ax, name, panel_title in zip(axes[:, 0], names, panel_titles):
        data = np.asarray(maps[name], dtype=float)
        cmap, vmin, vmax = color_scale(data, SCALE_FLOOR.get(name.split(".", 1)[-1], 1e-6))
        t_end = data.shape[-1] * frame_s
        im = ax.imshow(np.ma.masked_invalid(data), aspect="auto", origin="lower", cmap=cmap, vmin=vmin, vmax=vmax,
                       extent=(0, t_end, -0.5, data.shape[0] - 0.5), interpolation="nearest")
        ticks = np.arange(0, data.shape[0], max(1, data.shape[0] // 6))
        ax.set_yticks(ticks)
        ax.set_yticklabels([f"{fc[i]:.0f}" for i in ticks] if len(fc) == data.shape[0] else ticks)
        ax.set_ylabel("band (Hz)")
        ax.set_title(panel_title, fontsize=9)
        ax.set_facecolor("0.85")
        fig.colorbar(im, ax=ax, pad=0.01)
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        fig.suptitle(title, fontsize=10)
    # the title's room in inches (about 0.3 in per line at 10 pt), whatever the number of panels
    top = 1 - 0.3 * (1 + title.count("\n")) / fig.get_figheight() if title else 1
    fig.tight_layout(rect=(0, 0, 1, top))
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
