"""Try (issue 16, fiftieth session; not made the default): the band templates' spectral-shape term read only in the
bands centred at or above ``shape_min_hz`` (``spaq.localization.templates.SHAPE_MIN_HZ``, 0 = every band).

The idea: elevation and front/back live in the pinna's bands; below about 2-3 kHz each ear's spectral shape is the
head's and torso's, which differs from head to head, so on a head the templates do not come from it may mislead.
The interaural terms (ILD, IPD) keep every band.

    PYTHONPATH=src python benchmarks/try_shape_min_hz.py dev [--seeds 777 778 779 780 781] [--values 0 2000 2500 3000]
        development sets (eval_localizer_v2.py's sonicom2_anechoic; --sets for others), 150 items per seed
    PYTHONPATH=src python benchmarks/try_shape_min_hz.py heldout [--values 0 2500]
        the held-out content seed 160016 (sonicom2_anechoic, ku100_rooms, 100 items) and real speech
        (eval_localizer_real_speech.py's items: sonicom-2 and the MIT KEMAR, seeds 5-7, 120 each)

Results: benchmarks/results/localizer_v2.md ("Fiftieth session").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import eval_localizer_v2 as E  # noqa: E402

from spaq.localization.templates import localize_templates  # noqa: E402
from spaq.train.localizer import evaluate_directions  # noqa: E402


def _row(label, x, dirs, value):
    pred = np.array([localize_templates(np.asarray(xi, np.float64), 48000, shape_min_hz=value)["directions"][0]
                     for xi in x])
    st = evaluate_directions(pred, dirs)
    print(f"| {label} | {value:g} | {st['median_deg']:.1f} | {st['mean_deg']:.1f} | {100 * st['front_back_rate']:.1f} % |",
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("part", choices=["dev", "heldout"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[777, 778, 779, 780, 781])
    ap.add_argument("--sets", nargs="+", default=["sonicom2_anechoic"])
    ap.add_argument("--values", type=float, nargs="+", default=None)
    ap.add_argument("--cache", default="", help="folder for the rendered sets (eval_localizer_v2.py's cache)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print("| items | shape_min_hz | median (deg) | mean | front-back |\n|---|---|---|---|---|")
    if a.part == "dev":
        for name in a.sets:
            for seed in a.seeds:
                x, dirs, _ = E.get_set(name, 150, a.cache, seed)
                for v in a.values or [0.0, 2000.0, 2500.0, 3000.0]:
                    _row(f"{name} {seed}", x, dirs[:, 0], v)
        return
    import eval_localizer_real_speech as R

    for name in ("sonicom2_anechoic", "ku100_rooms"):
        x, dirs, _ = E.get_set(name, 100, a.cache, E.SEED)
        for v in a.values or [0.0, 2500.0]:
            _row(f"{name} {E.SEED}", x, dirs[:, 0], v)
    speech = R.load_speech(R.SPEECH)
    for head in ("sonicom-2", "kemar"):
        for seed in (5, 6, 7):
            x, dirs = R.render(speech, head, seed, 120)
            for v in a.values or [0.0, 2500.0]:
                _row(f"real speech, {head}, seed {seed}", x, dirs, v)


if __name__ == "__main__":
    main()
