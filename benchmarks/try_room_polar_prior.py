"""A learned prior on the polar angle for the templates in rooms (issue 16; tried in the thirty-seventh
session, not shipped; numbers in benchmarks/results/localizer_v2.md).

In rooms the band templates keep the lateral angle (median lateral error ~3 deg) and lose the polar
angle (front/back, elevation). Tried: a classifier of the polar angle (24 bins of 15 deg, interaural-polar
coordinates) from what the templates see of an item -- each feature's frame-weighted mean and spread over
the observation (ILD, IPD cos/sin, both ears' spectral shape per band), the templates' distance profile
over polar bins on the found lateral cone, the found direction, the direct-sound coherence -- trained on
KU100 room items of other seeds (scikit-learn gradient boosting; needs scikit-learn, not a spaq
dependency). Its log-probabilities are added to the KU100 templates' summed distances (weight ``--lam``)
on the items the localiser treats as reverberant.

    python benchmarks/try_room_polar_prior.py render --seed 5000 --n 2500 --out DIR/tr5000.npz
    python benchmarks/try_room_polar_prior.py render --seed 777 --n 200 --out DIR/dev777.npz
    python benchmarks/try_room_polar_prior.py fit --train DIR/tr5000.npz DIR/tr5001.npz --dev DIR/dev777.npz DIR/dev778.npz

Items: ``eval_localizer_v2.render_set("ku100_rooms", n, seed)`` (training seeds 5000+, development 777 / 778;
the held-out seed 160016 was not used). About 0.07 s of CPU per item; keep ``--n`` <= 2500 per process
(12 GB at 5000).
"""
import argparse
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

NB = 24  # polar bins of 15 deg


def lat_pol(v):
    """Unit vectors ``(..., 3)`` -> (lateral angle, polar angle 0..360: 0 front, 90 up, 180 back), degrees."""
    v = np.asarray(v, float)
    return np.degrees(np.arcsin(np.clip(v[..., 1], -1, 1))), np.degrees(np.arctan2(v[..., 2], v[..., 0])) % 360.0


def render(seed, n, out):
    import eval_localizer_v2 as E
    from spaq.localization import templates as T

    torch.set_num_threads(1)
    ts = T.template_set("ku100")
    sets = [ts, T.drr_variant(ts, 6.0), T.drr_variant(ts, 0.0)]  # the reverberant candidates at scale 1
    x, d, k = E.render_set("ku100_rooms", n, seed=seed)
    rows = []
    for xi in x:
        xi = xi.astype(np.float64)
        xi = xi * (10 ** (-30 / 20) / np.sqrt(np.mean(xi ** 2)))
        r = T.localize_templates(xi, 48000)
        opts = {**T.DEFAULTS}
        z, om, wb = T._observation(xi, opts, T._observed_cues(xi, opts["frame_ms"]))
        wsum = np.maximum(om.sum(0), 1e-12)
        m = (om * z).sum(0) / wsum
        s = np.sqrt(np.maximum((om * z * z).sum(0) / wsum - m * m, 0))
        sums = T.observation_sums((z, om, wb))
        W = max(float(wb.sum()), 1e-12)
        dist = np.min([T.summed_distances(t, sums) for t in sets], axis=0) / W
        rows.append((m, s, dist.astype(np.float32), r["directions"][0], r["direct_sound"], r["direct_coherence"], W))
    cols = list(zip(*rows))
    np.savez(out, m=np.stack(cols[0]), s=np.stack(cols[1]), dist=np.stack(cols[2]), tdir=np.stack(cols[3]),
             direct=np.array(cols[4]), coh=np.array(cols[5]), W=np.array(cols[6]), true=d[:, 0], kinds=np.array(k))


def _grid():
    from spaq.spatial.angles import sph2cart
    from spaq.spatial.hrtf import load_hrtf

    h = load_hrtf("ku100", 48000)
    dirs = sph2cart(h.azimuth_deg, h.elevation_deg)
    lat, pol = lat_pol(dirs)
    return dirs, lat, (pol // (360 / NB)).astype(int) % NB


def _load(files):
    ds = [np.load(f) for f in files]
    return {k: np.concatenate([d[k] for d in ds]) for k in ds[0].files}


def design(d, dlat, dbin, lat_win=12.0):
    tl, tp = lat_pol(d["tdir"])
    prof = []
    for i in range(len(tl)):
        sel = np.abs(dlat - tl[i]) <= lat_win
        p = np.full(NB, np.nan)
        np.fmin.at(p, dbin[sel], d["dist"][i][sel])
        p = np.where(np.isnan(p), np.nanmax(p), p)
        prof.append(p - p.min())
    X = np.concatenate([d["m"], d["s"], np.array(prof),
                        np.c_[tl / 90, np.cos(np.radians(tp)), np.sin(np.radians(tp)), d["coh"], np.log(d["W"])]], 1)
    return np.nan_to_num(X)


def err(pred, true):
    return np.degrees(np.arccos(np.clip((pred * true).sum(1), -1, 1)))


def front_back(pred, true):
    return float(np.mean(err(pred, true * np.array([-1, 1, 1])) < err(pred, true)))


def fit(train, dev, lams):
    from sklearn.ensemble import HistGradientBoostingClassifier

    dirs, dlat, dbin = _grid()
    tr = _load(train)
    ytr = (lat_pol(tr["true"])[1] // (360 / NB)).astype(int) % NB
    clf = HistGradientBoostingClassifier(max_iter=400, learning_rate=0.05, l2_regularization=1.0,
                                         early_stopping=True, random_state=0).fit(design(tr, dlat, dbin), ytr)
    print(f"trained on {len(ytr)} items ({clf.n_iter_} iterations)")
    for f in dev:
        d = _load([f])
        P = np.zeros((len(d["true"]), NB))
        P[:, clf.classes_] = clf.predict_proba(design(d, dlat, dbin))
        y = (lat_pol(d["true"])[1] // (360 / NB)).astype(int) % NB
        for name, Q in (("learned", P), ("oracle bin", np.where(np.arange(NB)[None] == y[:, None], 1.0, 1e-3))):
            for lam in ([10.0] if name == "oracle bin" else list(lams)):
                cost = d["dist"] - lam * np.log(np.maximum(Q[:, dbin], 1e-6))
                pred = np.where(d["direct"][:, None], d["tdir"], dirs[np.argmin(cost, axis=1)])
                e = err(pred, d["true"])
                print(f"{os.path.basename(f)} {name} lam {lam}: bin accuracy {np.mean(Q.argmax(1) == y):.3f}, median "
                      f"{np.median(e):.1f} deg, within 8 deg {100 * np.mean(e <= 8):.0f} %, front-back "
                      f"{100 * front_back(pred, d['true']):.1f} %")
        e0 = err(d["tdir"], d["true"])
        print(f"{os.path.basename(f)} templates (shipped): median {np.median(e0):.1f} deg, within 8 deg "
              f"{100 * np.mean(e0 <= 8):.0f} %, front-back {100 * front_back(d['tdir'], d['true']):.1f} %")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("render")
    r.add_argument("--seed", type=int, required=True)
    r.add_argument("--n", type=int, required=True)
    r.add_argument("--out", required=True)
    f = sub.add_parser("fit")
    f.add_argument("--train", nargs="+", required=True)
    f.add_argument("--dev", nargs="+", required=True)
    f.add_argument("--lam", type=float, nargs="+", default=[1.0, 3.0])
    a = ap.parse_args()
    if a.cmd == "render":
        render(a.seed, a.n, a.out)
    else:
        fit(a.train, a.dev, a.lam)


if __name__ == "__main__":
    main()
