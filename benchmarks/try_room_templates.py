"""Room-aware templates for the binaural localiser (issue 16, tried, not shipped).

Question: do the early reflections that mislead the band templates in rooms (diagnosis in
benchmarks/results/localizer_v2.md, sixteenth session) become harmless when the templates include
them? Each direction's band powers get the image sources' powers added (shoebox, reflections up to
``--order``, gains (1 - absorption)^n * d0 / d_image, each image heard through the set's HRTF of
its nearest measured direction; power sums per ERB band, as :func:`spaq.localization.templates.drr_variant`
adds the diffuse field), then matched like the DRR variants (the best-fitting variant wins).

    PYTHONPATH=src python benchmarks/try_room_templates.py expected --seed 777 [--n 100]
        the expectation over 16 random rooms of the corpus engine's distribution (dims 4-10 x 3-8 x
        2.5-4 m, RT60 0.2-0.8 s, 1-3 m, ear height 1-1.8 m), variants x 0.25..2 of it beside the
        shipped candidates (default heads)
    PYTHONPATH=src python benchmarks/try_room_templates.py oracle --seed 777 [--n 40]
        the upper bound: each item's own room (its geometry, listener, yaw, distance and absorption,
        replayed from the evaluation's draws), KU100 templates only, exact-head stage off

Items: ``benchmarks/eval_localizer_v2.py``'s ``ku100_rooms`` set at a development seed.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_localizer_v2 as E  # noqa: E402

from spaq.localization import templates as T  # noqa: E402
from spaq.spatial.angles import cart2sph, sph2cart  # noqa: E402
from spaq.train.localizer import evaluate_directions  # noqa: E402


def images(dims, s, max_count):
    """Image-source positions ``(N, 3)`` and reflection counts ``(N,)`` of a shoebox with walls at
    0 and ``dims``, for a source at ``s``, 1..``max_count`` reflections."""
    axes = []
    for a in range(3):
        c = []
        for k in range(-max_count, max_count + 1):
            c.append((2 * k * dims[a] + s[a], 2 * abs(k)))
            c.append((2 * k * dims[a] - s[a], abs(2 * k - 1)))
        axes.append(c)
    pos, cnt = [], []
    for px, cx in axes[0]:
        for py, cy in axes[1]:
            for pz, cz in axes[2]:
                if 1 <= cx + cy + cz <= max_count:
                    pos.append((px, py, pz))
                    cnt.append(cx + cy + cz)
    return np.array(pos), np.array(cnt)


def room_powers(ts, dims, lis, yaw, alpha, dist, max_count):
    """Band powers ``(D, 2, F)`` of the image sources of every direction of ``ts`` in one room
    (direct path = 1), the source at ``dist`` (per direction, shortened to stay 0.5 m inside)."""
    P = T._band_powers(ts)
    v = sph2cart(ts.azimuth_deg + yaw, ts.elevation_deg)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_hi = np.where(v > 0, (dims - 0.5 - lis) / v, np.where(v < 0, (0.5 - lis) / v, np.inf))
    d = np.clip(np.minimum(dist, np.min(t_hi, axis=1)), 0.3, None)
    src = lis + d[:, None] * v
    acc = np.zeros_like(P)
    for i in range(len(P)):
        pos, cnt = images(dims, src[i], max_count)
        w = pos - lis
        g2 = (1 - alpha) ** cnt * (d[i] / np.linalg.norm(w, axis=1)) ** 2
        a2, e2, _ = cart2sph(w)
        k = np.argmax(sph2cart(a2 - yaw, e2) @ ts.directions.T, axis=1)
        acc[i] = (g2[:, None, None] * P[k]).sum(0)
    return acc


def expected_powers(ts, n_rooms, max_count, seed=0):
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    acc = 0.0
    for _ in range(n_rooms):
        dims = rng.uniform([4.0, 3.0, 2.5], [10.0, 8.0, 4.0])
        alpha, _ = pra.inverse_sabine(float(rng.uniform(0.2, 0.8)), list(dims))
        lis = rng.uniform([0.5, 0.5, 1.0], [dims[0] - 0.5, dims[1] - 0.5, min(1.8, dims[2] - 0.5)])
        acc = acc + room_powers(ts, dims, lis, float(rng.uniform(-180, 180)), alpha,
                                rng.uniform(1.0, 3.0, size=len(ts.directions)), max_count)
    return acc / n_rooms


def variant(ts, early, gain, drr_db):
    """``ts`` heard with ``gain`` x ``early`` added (and the diffuse field at ``drr_db``, as
    :func:`~spaq.localization.templates.drr_variant`)."""
    P = T._band_powers(ts)
    diff = P.mean(axis=0, keepdims=True)
    g = 0.0 if not np.isfinite(drr_db) else P.sum(axis=(1, 2), keepdims=True) / diff.sum() * 10 ** (-drr_db / 10)
    L0 = 10 * np.log10(np.maximum(P, 1e-30))
    L1 = 10 * np.log10(np.maximum(P + gain * early + g * diff, 1e-30))
    table = ts.table.copy()
    table[:, 0] += ((L1[:, 0] - L1[:, 1]) - (L0[:, 0] - L0[:, 1])).astype(table.dtype)
    table[:, 4:6] += ((L1 - L1.mean(-1, keepdims=True)) - (L0 - L0.mean(-1, keepdims=True))).astype(table.dtype)
    v = T.TemplateSet(ts.hrtf, table)
    v.drr_db = float(drr_db)
    return v


def stats(pred, dirs):
    st = evaluate_directions(pred, dirs)
    err = np.degrees(np.arccos(np.clip(np.sum(pred * dirs, -1), -1, 1)))
    return {"median_deg": st["median_deg"], "mean_deg": st["mean_deg"], "front_back_rate": st["front_back_rate"],
            "median_lateral_error_deg": st["median_lateral_error_deg"], "within_8deg": float(np.mean(err <= 8))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["expected", "oracle"])
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--order", type=int, default=None, help="reflections (default 2 expected, 3 oracle)")
    ap.add_argument("--cache", default="")
    a = ap.parse_args()
    torch.set_num_threads(1)
    n = a.n or (100 if a.mode == "expected" else 40)
    x, dirs, _ = E.get_set("ku100_rooms", 100, a.cache, a.seed)
    shipped = T.candidate_sets
    out = {}
    if a.mode == "expected":
        order = a.order or 2
        early = {}

        def with_early(gains):
            def cands(heads, direct, drrs, scales):
                c = shipped(heads, direct, drrs, scales)
                if direct:
                    return c
                for h in heads:
                    b = T.template_set(h)
                    if b.name not in early:
                        early[b.name] = expected_powers(b, 16, order)
                    c += [variant(b, early[b.name], g, float(d)) for g in gains for d in drrs]
                return c
            return cands

        for label, gains in (("shipped", ()), ("+ expected early x 1", (1.0,)), ("+ x 0.5, 1", (0.5, 1.0)),
                             ("+ x 0.25, 0.5, 1, 2", (0.25, 0.5, 1.0, 2.0))):
            T.candidate_sets = with_early(gains) if gains else shipped
            pred = np.stack([T.localize_templates(xi.astype(np.float64), 48000)["directions"][0] for xi in x[:n]])
            out[label] = stats(pred, dirs[:n, 0])
            print(label, json.dumps({k: round(v, 3) for k, v in out[label].items()}), flush=True)
    else:
        import pyroomacoustics as pra

        from spaq.spatial.hrtf import load_hrtf
        from spaq.spatial.room import place_in_room

        order = a.order or 3
        h = load_hrtf("ku100", 48000)
        ts = T.template_set("default")
        set_key = list(E.SETS).index("ku100_rooms")
        specs = []
        for i in range(200):  # replay render_set's draws (items whose room fails are skipped there too)
            rng = np.random.default_rng([a.seed, set_key, i])
            kind = E.KINDS[i % len(E.KINDS)]
            k = int(rng.choice(np.arange(h.n_directions)))
            E._source(kind, rng)
            dims = rng.uniform([4.0, 3.0, 2.5], [10.0, 8.0, 4.0])
            rt60 = float(rng.uniform(0.2, 0.8))
            try:
                specs.append(place_in_room(dims, rt60, h.azimuth_deg[k], h.elevation_deg[k],
                                           float(rng.uniform(1.0, 3.0)), rng))
            except Exception:  # noqa: BLE001 - as render_set
                continue
        preds, base = [], []
        for j in range(n):
            rs = specs[j]
            dims, lis = np.array(rs.dims_m), np.array(rs.listener_m)
            d0 = float(np.linalg.norm(np.array(rs.source_m) - lis))
            alpha, _ = pra.inverse_sabine(rs.rt60_s, list(dims))
            acc = room_powers(ts, dims, lis, rs.listener_yaw_deg, alpha, np.full(len(ts.directions), d0), order)
            T.candidate_sets = shipped
            base.append(T.localize_templates(x[j].astype(np.float64), 48000, hrtf=["default"], exact=False)["directions"][0])
            cands = [variant(ts, acc, g, d) for g in (0.0, 0.5, 1.0) for d in (np.inf, 6.0, 0.0, -6.0)]
            T.candidate_sets = lambda heads, direct, drrs, scales, c=cands: c
            preds.append(T.localize_templates(x[j].astype(np.float64), 48000, hrtf=["default"], exact=False)["directions"][0])
        out["KU100 templates, shipped candidates"] = stats(np.stack(base), dirs[:n, 0])
        out["+ the item's own room (oracle)"] = stats(np.stack(preds), dirs[:n, 0])
        for k, v in out.items():
            print(k, json.dumps({kk: round(vv, 3) for kk, vv in v.items()}), flush=True)
    T.candidate_sets = shipped


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"{time.time() - t0:.0f} s")
