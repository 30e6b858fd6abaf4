"""The reference-free predictor's teacher against the dry scene (issue 20, reverb ladder; tried).

The shipped predictor's teacher scores each corpus item against its own clean scene: a clean scene in
a room is 100 ("a clean room is no impairment"), while a reverb sweep that lengthens the same kind of
room is marked down. A reference-free model sees only the signal, so the two targets contradict each
other, and the reverb ladder stays at -0.41 (pooled over three held-out seeds; target <= -0.9). The
nineteenth session's tries put a penalty of the true RT60 into the target, whose size was a free
choice. Here the teacher itself decides: every item whose scene is in a room is scored against the
*dry* rendering of the same scene (same sources, directions, head, format and diffuse noise; no room),
so a room costs what spaq's calibrated ``quality`` says it costs, and a clean room and a lengthened
one are judged on one scale. Anechoic items keep their targets.

Result (twenty-first session; ``benchmarks/results/predictor_seeds.md``, last section): not shipped.
Against its dry twin every room scene scores at the bottom of ``quality``'s scale (held-out reverb
sweeps 1-13 points, timbral part alone 3-75), so the new targets have no range left along a reverb
sweep; the network learns "room: about 5" and the ladder does not move (-0.406 -> -0.433).

    PYTHONPATH=src python benchmarks/try_predictor_dry_teacher.py --workdir DIR [--room-probability 0 0.5]

Reads (or makes, about 10 min of CPU each) the split tables of ``spaq train predictor`` / the
evaluation in DIR, replays the draws of every room sweep, renders its dry twin and rescores its items;
fits the shipped recipe on the new targets (and, with ``--room-probability`` > 0, on a training split
whose other families are in rooms with that probability too); prints the held-out statistics against
the new targets, the ladders pooled over seeds 9900-9902 and the MUSHRA LOSO Pearson.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _replay(split, sw: int, fam: str, src: str, voice: str, head: str, kind: str):
    """``(family, index, room_probability)`` of sweep ``sw`` as :func:`make_split` drew it."""
    from spaq.train.predictor import ANCHOR_SWEEP_OFFSET

    if sw >= ANCHOR_SWEEP_OFFSET:
        fams = list(split.families)
        n_per = len(split.formats) * len(split.sources) * max(1, int(split.anchor_scenes))
        idx = sw - ANCHOR_SWEEP_OFFSET
        return fams[(idx - 1) // n_per], idx, float(split.anchor_room_probability)
    return fam, sw, float(split.room_probability)


def dry_targets(df, split, log=print) -> np.ndarray:
    """New targets for the rows of ``df`` (a split table): the teacher against the dry twin of each
    room scene; the old target elsewhere."""
    from spaq.data.scenes import _source_signals, render_scene
    from spaq.train.predictor import SWEEP_FORMAT, _teacher, _teacher_scores
    from spaq.train.quality import sweep, sweep_draws

    teacher = _teacher()
    tgt = df["target"].to_numpy(dtype=np.float64).copy()
    n_room = 0
    for sw, g in df.groupby("sweep"):
        r0 = g.iloc[0]
        fam, idx, rp = _replay(split, int(sw), r0["family"], r0["source"], r0["voice"], r0["head"], r0["format"])
        fmt = SWEEP_FORMAT[r0["format"]]
        kw = dict(duration_s=float(split.duration_s), hrtf=r0["head"] or "default", voices=[r0["voice"]],
                  room_probability=rp)
        cfg, scene, _ = sweep_draws(fam, fmt, r0["source"], int(split.seed), idx, **kw)
        if scene["room"] is None:
            continue
        n_room += 1
        sevs = sorted(float(s) for s in g["severity"].unique() if s > 0)
        ref, degs = sweep(fam, fmt, r0["source"], sevs, int(split.seed), idx, **kw)
        opts = dict(cfg["scene"]["speech"])
        opts["files_folder"] = None
        dry = np.asarray(render_scene({**scene, "room": None}, _source_signals(scene, opts)), dtype=np.float64)
        items = [ref] + degs
        for kind, gk in g.groupby("format"):
            if kind == "mono":
                s = _teacher_scores(teacher, np.repeat(dry[:1], 2, 0), [np.repeat(x[:1], 2, 0) for x in items])
            else:
                s = _teacher_scores(teacher, dry, items)
            order = [0.0] + sevs
            for i, row in gk.iterrows():
                tgt[df.index.get_loc(i)] = float(s[order.index(float(row["severity"]))])
    log(f"  {n_room} room sweeps rescored against their dry scenes")
    return tgt


def main():
    import eval_predictor as EP
    from spaq.train.predictor import (CorpusSplit, FitSection, PredictorTrainConfig, fit_predictor, fit_rows,
                                      loso_calibration, mushra_predictor_table, mushra_stats, predict_table,
                                      split_records)

    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--room-probability", type=float, nargs="+", default=[0.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[9900, 9901, 9902])
    a = ap.parse_args()
    torch.set_num_threads(2)
    tc = PredictorTrainConfig.from_yaml(ROOT / "configs/train/predictor.yaml")
    fit = FitSection(**asdict(tc.fit))
    tests = {}
    for s in a.seeds:
        sp = CorpusSplit(**{**EP.HELD_OUT, "seed": s})
        t = split_records(sp, a.workdir / f"predictor_heldout_seed{s}.csv", log=lambda m: None)
        tests[s] = (t, t.assign(target=dry_targets(t, sp)))
    mt = mushra_predictor_table(tc.mushra_dir(), tc.calibration.ratings, lambda m: None)
    head = "| training split | teacher | MUSHRA LOSO | held-out accuracy / MAE / Spearman | " + " | ".join(EP.LADDERS) + " |"
    print(head + "\n|" + "---|" * (head.count("|") - 1), flush=True)
    for rp in a.room_probability:
        split = replace(tc.corpus, room_probability=float(rp))
        df = split_records(split, a.workdir / "predictor_train.csv", log=lambda m: None)
        dfd = df.assign(target=dry_targets(df, split))
        for name, d in (("own clean scene", df), ("dry scene", dfd)):
            model, _ = fit_predictor(fit_rows(d, split, fit, lambda m: None), fit, lambda m: None)
            pooled, st = {f: [] for f in EP.LADDERS}, []
            for s, (t, td) in tests.items():
                tt = td if name == "dry scene" else t
                pt = predict_table(model, tt)
                st.append(EP.corpus_stats(pt, tt))
                lad = EP.ladders(pt, tt, seed=s, per_sweep=True)
                for f in EP.LADDERS:
                    pooled[f] += lad[f].get("sweeps", [])
            loso = mushra_stats(mt, loso_calibration(mt, predict_table(model, mt)["raw"]))["pearson_coded"]
            m = lambda k: np.mean([x[k] for x in st])  # noqa: E731
            print(f"| room probability {rp:g} | {name} | {loso:.3f} | {m('accuracy'):.3f} / {m('mae'):.1f} / "
                  f"{m('spearman'):.3f} | " + " | ".join(f"{np.mean(pooled[f]):+.3f}" for f in EP.LADDERS) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
