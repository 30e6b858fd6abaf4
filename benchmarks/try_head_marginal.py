"""Marginalising the template heads instead of choosing one (issue 16, tried, not shipped).

Question: for a head the templates never heard (the held-out SONICOM subject), is the direction
better found from the evidence of every candidate template set (each head x frequency scale x DRR
variant) than from the single best-fitting one? Per direction ``u`` of the union of the heads'
grids: ``E(u) = f_min - t log sum_h exp(-(D_h(u) - f_min) / t)``, ``D_h`` a candidate's distance
summed over the signal (its nearest measured direction; a negligible tie-break by the snapping
angle), ``t = tau * f_min``; ``tau`` -> 0 is the shipped rule (the best set's best direction),
large ``tau`` the plain sum over candidates. The exact-head stage keeps its answer where it is used.

    PYTHONPATH=src python benchmarks/try_head_marginal.py --sets v2_sonicom2_anechoic_100_779 ... --tau 0 0.3 1 3 100 --cache DIR

Sets: the cached item files of ``benchmarks/eval_localizer_v2.py --cache DIR`` (e.g.
``--sets sonicom2_anechoic --seed 779``).
"""
import argparse
import time

import numpy as np
import torch

from spaq.localization import templates as T
from spaq.localization.localize import direct_coherence
from spaq.train.localizer import evaluate_directions


def marginal_directions(x: np.ndarray, taus) -> dict:
    """``x (2, T)`` at 48 kHz -> ``{tau: direction (3,)}`` by the rule of the module docstring."""
    x = np.asarray(x, dtype=np.float64)
    x = x * (10 ** (-30 / 20) / float(np.sqrt(np.mean(x ** 2))))
    opts = dict(T.DEFAULTS)
    cues = T._observed_cues(x, opts["frame_ms"])
    obs = T._pool(T._observation(x, opts, cues), 10)
    direct = bool(direct_coherence(cues[0], cues[1]) >= float(opts.pop("drr_coherence")))
    cands = T.candidate_sets(T.default_heads(), direct, tuple(opts.pop("drr_variants_db")), tuple(opts.pop("head_scales")))
    sums = T.observation_sums(obs)
    grids = {ts.directions.shape: ts.directions for ts in cands}
    G = np.concatenate(list(grids.values()))
    Ds = []
    for ts in cands:
        d = T.summed_distances(ts, sums, **opts)
        cs = G @ ts.directions.T
        nn = np.argmax(cs, axis=1)
        snap = np.degrees(np.arccos(np.clip(cs[np.arange(len(G)), nn], -1, 1)))
        Ds.append(d[nn] + 1e-6 * d.min() * snap)
    Ds = np.stack(Ds)
    fmin = Ds.min()
    out = {}
    for tau in taus:
        E = Ds.min(0) if tau == 0 else fmin - tau * fmin * np.log(np.exp(-(Ds - fmin) / (tau * fmin)).sum(0))
        out[tau] = G[np.argmin(E)]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sets", nargs="+", required=True)
    ap.add_argument("--tau", type=float, nargs="+", default=[0.0, 0.3, 1.0, 3.0, 100.0])
    ap.add_argument("--cache", default="/tmp/loccache")
    a = ap.parse_args()
    torch.set_num_threads(1)
    print("| set | rule | median (deg) | front-back |\n|---|---|---|---|")
    for s in a.sets:
        z = np.load(f"{a.cache}/{s}.npz", allow_pickle=True)
        preds, base, t0 = {t: [] for t in a.tau}, [], time.time()
        for x in z["x"]:
            r = T.localize_templates(x, 48000)
            used = (r.get("exact_head") or {}).get("used", False)
            m = marginal_directions(x, a.tau)
            for t in a.tau:
                preds[t].append(r["directions"][0] if used else m[t])
            base.append(r["directions"][0])
        for lab, p in [("shipped", base)] + [(f"tau {t:g}", preds[t]) for t in a.tau]:
            e = evaluate_directions(np.array(p), z["dirs"][:, 0])
            print(f"| {s} | {lab} | {e['median_deg']:.1f} | {100 * e['front_back_rate']:.1f} % |", flush=True)


if __name__ == "__main__":
    main()
