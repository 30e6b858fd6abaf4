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


def plane_wave_swaps(metric) -> tuple[int, float, float]:
    from spaq.data.sources import pink_noise
    from spaq.spatial.ambisonics import encode, truncate

    s = 0.05 * pink_noise(FS, np.random.default_rng(0))
    swaps, o2 = 0, []
    for az, el in DIRECTIONS:
        x = encode(s, az, el, 3)
        d = torch.from_numpy(np.stack([truncate(x, n, keep_channels=True) for n in (2, 1)])).float()
        r = torch.from_numpy(x)[None].float().expand(2, -1, -1)
        with torch.no_grad():
            sc = metric(r, d)["score"].numpy()
        swaps += int(sc[0] <= sc[1])
        o2.append(float(sc[0]))
    return swaps, float(np.percentile(o2, 10)), float(np.percentile(o2, 90))


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
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    base = json.loads(Path(a.params).read_text()) if a.params else load_quality_params()[0]
    print("| range (deg) | order-2 at or below order-1, of 72 directions | order-2 score, 10th-90th percentile | "
          "FOA items: mean error / RMSE |")
    print("|---|---|---|---|")
    for rng in a.ranges:
        p = {k: v for k, v in base.items() if k != "head_turn"}
        if rng > 0:
            p["head_turn"] = {"range_deg": float(rng), "period_s": float(a.period)}
        m = Quality(params=p)
        sw, lo, hi = plane_wave_swaps(m)
        foa = foa_items(m, Path(a.cache))
        cell = "(rebuild missing)" if foa is None else f"{foa[0]:+.1f} / {foa[1]:.1f}"
        print(f"| {rng:g} | {sw} | {lo:.1f}-{hi:.1f} | {cell} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
