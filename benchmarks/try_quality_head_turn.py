"""How far the listener of an ambisonic pair of two orders turns the head (issue 19, quality version 10).

Second- and first-order MagLS decoders err differently at each direction, so with a still head an
order-2 truncation of a source scores below the order-1 one wherever the second-order decoder happens
to err more (`try_order_ild.py`). Version 10 hears a pair decoded at two different orders with the head
turning back and forth over +-R degrees of yaw (``head_turn`` in the parameters). This script prints,
for each range R:

* ``swaps``: plane waves of pink noise (1 s, KU100 decoders) at 72 directions (every 15 deg of azimuth
  at elevations 0, +30, -20) whose order-2 truncation scores at or below the order-1 one, and the
  spread (10th-90th percentile) of the order-2 score over the directions;
* ``FOA items``: the spatial-codings test's FOA condition scored from its ambisonic files (7 items, a
  third-order reference against its first four channels), mean error and RMSE against the mean
  ratings after the test's offset, as ``eval_quality_foa_ambisonic.py`` reports them;

with the given parameters (default: the shipped ones) and only ``head_turn`` changed. The range is a
recipe choice (``configs/train/quality.yaml``), not a fit; the table is what it was chosen from.

    python benchmarks/rebuild_param_coding.py --ambisonics          # once, for the FOA items
    python benchmarks/try_quality_head_turn.py [--ranges 0 20 30 45 60 90 180] [--params JSON]
    python benchmarks/try_quality_head_turn.py --ranges 0 45 --no-foa --plot benchmarks/results/quality_head_turn.png
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "benchmarks"))

FS = 48000
DIRECTIONS = [(az, el) for el in (0, 30, -20) for az in range(0, 360, 15)]


def plane_wave_scores(metric) -> np.ndarray:
    """Scores ``(len(DIRECTIONS), 2)`` of the order-2 and order-1 truncations of each plane wave."""
    from spaq.data.sources import pink_noise
    from spaq.spatial.ambisonics import encode, truncate

    s = 0.05 * pink_noise(FS, np.random.default_rng(0))
    out = []
    for az, el in DIRECTIONS:
        x = encode(s, az, el, 3)
        d = torch.from_numpy(np.stack([truncate(x, n, keep_channels=True) for n in (2, 1)])).float()
        r = torch.from_numpy(x)[None].float().expand(2, -1, -1)
        with torch.no_grad():
            out.append(metric(r, d)["score"].numpy())
    return np.asarray(out, dtype=np.float64)


def plot(curves: dict, path: Path) -> None:
    """Order-2 and order-1 scores against azimuth on the horizontal plane, one panel per range."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    az = np.array([a for a, e in DIRECTIONS if e == 0])
    idx = [i for i, (a, e) in enumerate(DIRECTIONS) if e == 0]
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.4), sharey=True, squeeze=False)
    for ax, (rng, sc) in zip(axes[0], curves.items()):
        ax.plot(az, sc[idx, 0], "o-", label="order 2")
        ax.plot(az, sc[idx, 1], "s--", label="order 1")
        swap = [a for a, i in zip(az, idx) if sc[i, 0] <= sc[i, 1]]
        for a in swap:
            ax.axvline(a, color="red", alpha=0.25)
        ax.set_title("still head" if rng == 0 else f"head turning ±{rng:g}°")
        ax.set_xlabel("azimuth of the plane wave (deg), elevation 0")
        ax.set_xticks(range(0, 361, 60))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("quality of the truncated third-order scene")
    axes[0][0].legend(loc="lower left")
    fig.suptitle("Third-order pink-noise plane wave truncated to orders 2 and 1 (KU100 MagLS decoders)\n"
                 "red lines: order 2 scored at or below order 1", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp" + path.suffix)
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def foa_items(metric, root: Path) -> tuple[float, float] | None:
    from spaq.train.quality import (ORDER_CONDITION, _load_ambisonic_foa_pair, _load_binaural_pair, ambisonic_paths,
                                    param_coding_table)

    if not (root / "ratings.csv").is_file():
        return None
    table = param_coding_table(root)
    binaural = [float(metric.score(_load_binaural_pair(root / r["ref"], root / r["deg"])).score)
                for _, r in table.iterrows()]
    offset = float(np.mean(np.asarray(binaural) - table["mean"].to_numpy()))
    err = []
    for _, r in table[table["condition"] == ORDER_CONDITION].iterrows():
        ref, deg = _load_ambisonic_foa_pair(*ambisonic_paths(root, r))
        with torch.no_grad():
            s = float(metric(torch.from_numpy(ref)[None], torch.from_numpy(deg)[None])["score"][0])
        err.append(s - r["mean"] - offset)
    e = np.asarray(err)
    return float(e.mean()), float(np.sqrt(np.mean(e ** 2)))


def main(argv=None):
    from rebuild_param_coding import default_cache

    from spaq.metrics.quality import Quality, load_quality_params

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranges", nargs="+", type=float, default=[0, 20, 30, 45, 60, 90, 180])
    ap.add_argument("--period", type=float, default=4.0, help="seconds per back-and-forth sweep")
    ap.add_argument("--params", default=None, help="quality parameters JSON (default: the shipped ones)")
    ap.add_argument("--cache", default=str(default_cache()), help="the rebuilt spatial-codings items")
    ap.add_argument("--plot", default=None, help="PNG: order-2 and order-1 scores against azimuth, still head and "
                                                  "each other range")
    ap.add_argument("--no-foa", action="store_true", help="skip the FOA items (the plane waves only)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    base = json.loads(Path(a.params).read_text()) if a.params else load_quality_params()[0]
    print("| range (deg) | order-2 at or below order-1, of 72 directions | order-2 score, 10th-90th percentile | "
          "FOA items: mean error / RMSE |")
    print("|---|---|---|---|")
    curves = {}
    for rng in a.ranges:
        p = {k: v for k, v in base.items() if k != "head_turn"}
        if rng > 0:
            p["head_turn"] = {"range_deg": float(rng), "period_s": float(a.period)}
        m = Quality(params=p)
        sc = curves[rng] = plane_wave_scores(m)
        sw = int(np.sum(sc[:, 0] <= sc[:, 1]))
        lo, hi = np.percentile(sc[:, 0], [10, 90])
        foa = None if a.no_foa else foa_items(m, Path(a.cache))
        cell = "(skipped)" if a.no_foa else "(rebuild missing)" if foa is None else f"{foa[0]:+.1f} / {foa[1]:.1f}"
        print(f"| {rng:g} | {sw} | {lo:.1f}-{hi:.1f} | {cell} |", flush=True)
    if a.plot:
        plot(curves, Path(a.plot))
        print(f"wrote {a.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
