"""Evaluate the ``sqm`` spatial embedding with the SQM-BS paper's protocol, ``cues`` beside it.

Held-out everything: the unseen SONICOM subject (``sonicom-2``, never in training), content drawn
with a seed and split no training bank uses, rooms of their own draws. Non-matched content
throughout (every scene has its own source clip). Conditions: ``anechoic`` (no noise) and
``rooms`` (shoebox, RT60 0.3-0.8 s, diffuse noise at 5-20 dB SNR; reference and tests of one
group share the room, RT60, distance and SNR range).

Tests (each number for ``sqm`` and for ``cues``, the training-free median |dILD|, computed in the
same run on the same scenes):

* monotonicity: Spearman of distance with angular separation -- azimuth (references on the
  horizontal plane, tests 0-180 deg away at the same elevation) and elevation (tests at every
  measured elevation of the reference's azimuth);
* content invariance: common area of the normal densities fitted to the distances of (same
  direction, other content) and (other direction >= 30 deg, other content);
* retrieval: 20 direction groups (>= 20 deg apart) x R recordings, mean precision@10/@25
  (anechoic);
* 2AFC: reference, test A 5-15 deg away, test B 30-60 deg away (three contents): share of
  trials where A is closer;
* DoA RMSE of the auxiliary head (azimuth wrapped, elevation) on the monotonicity scenes;
* identity: distance of a signal to itself vs the median distance at 25-35 deg;
* speed: embedding a 10 s binaural signal (x real time, CPU time, 1 and 2 threads), cues on
  the same 10 s pair in the same run.

``cues`` here is computed from each scene's own cues (:func:`spaq.auditory.pairs.paired_cues`)
combined per pair exactly as :func:`spaq.metrics.functional.cues.maps_from_cues` does, so every
pair of a retrieval set is affordable; the script checks it against ``Cues().forward`` on a few
pairs and prints the largest difference.

    PYTHONPATH=src python benchmarks/eval_sqm.py [--checkpoint X.pt] [--quick] [--json FILE.json] [--md FILE.md]
        [--distance cosine|deep]

``--distance deep`` reports the metric's second value, the deep-feature distance (time-aligned
activations; the first frames of the shorter clip), in the sqm column instead of the cosine distance.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch

from spaq.metrics.cues import Cues
from spaq.metrics.functional.sqm import cosine_distance, deep_feature_distance, sqm_input
from spaq.models.sqm import load_pretrained
from spaq.spatial.angles import cart2sph, great_circle_deg, sph2cart, wrap_azimuth
from spaq.spatial.hrtf import load_hrtf
from spaq.train.sqm import SQMDataSpec, render_scene

SR = 48000
SOURCES = ("speech", "harmonic", "chord", "percussive", "pink_noise", "noise_bursts")


class Scenes:
    """Renders scenes of the test head with their own content, and their sqm embeddings and cue tables."""

    def __init__(self, head: str, clip_s: float, seed: int, model, cues: Cues, store: dict | None = None):
        self.store = {} if store is None else store  # scene number -> (x float16, ild, below): a pre-render
        self.h = load_hrtf(head, SR)
        self.clip_s, self.seed, self.model, self.cues = clip_s, seed, model, cues
        self.spec = SQMDataSpec(level_dbfs=(-35.0, -20.0))
        self.n = 0
        self.cpu = 0.0

    def render(self, ks, cond: dict | None) -> dict:
        """Directions ``ks`` (grid indices) in one condition (None: anechoic without noise, else
        ``rt60_s``, ``dims_m``, ``distance_m``, ``snr_db`` range) -> dict with ``x (N, 3, T)``,
        ``emb (N, E)``, ``doa (N, 3)``, ``dirs (N, 3)`` and the per-scene cues."""
        if all(self.n + i in self.store for i in range(len(ks))):
            got = [self.store[self.n + i] for i in range(len(ks))]
            self.n += len(ks)
            x = torch.stack([g[0] for g in got]).float()
            cue = [{"ild": torch.stack([g[1] for g in got]), "below": torch.stack([g[2] for g in got])}]
            return self._finish(ks, x, cue)
        xs = []
        first = self.n
        for k in ks:
            rng = np.random.default_rng([self.seed, 777, self.n])
            self.n += 1
            kind = SOURCES[int(rng.integers(len(SOURCES)))]
            if cond is None:
                x, _ = render_scene(self.h, int(k), kind, rng, self.clip_s, self.spec, room=False, snr_db=math.inf)
            else:
                x, _ = render_scene(self.h, int(k), kind, rng, self.clip_s, self.spec, room=True,
                                    rt60_s=cond["rt60_s"], snr_db=float(rng.uniform(*cond["snr_db"])),
                                    dims_m=cond["dims_m"], distance_m=cond["distance_m"])
            xs.append(x)
        x = torch.from_numpy(np.stack(xs))
        cue = []
        with torch.no_grad():
            for a in range(0, len(x), 32):
                b2 = x[a:a + 32, :2].to(torch.float64)
                from spaq.auditory.pairs import paired_cues

                c = paired_cues(b2, b2, self.cues.frontend, None, False)
                cue.append({"ild": c["ild"][:, 0], "below": c["below_floor"][:, 0]})
        il, bl = torch.cat([c["ild"] for c in cue]), torch.cat([c["below"] for c in cue])
        for i in range(len(ks)):
            self.store[first + i] = (x[i].to(torch.float16), il[i].float(), bl[i])
        return self._finish(ks, x, cue)

    def _finish(self, ks, x, cue) -> dict:
        embs, doas, acts = [], [], []
        c0 = time.process_time()
        with torch.no_grad():
            for a in range(0, len(x), 32):
                if self.model is None:  # pre-render only
                    embs.append(torch.zeros(len(x[a:a + 32]), 16))
                    continue
                xi, _ = sqm_input(x[a:a + 32, : self.model.cfg.channels], self.model.cfg)  # as the metric reads it
                o = self.model(xi)
                embs.append(o["utterance"])
                if DISTANCE == "deep":
                    acts.append([t.float() for t in o["activations"]])
                if "doa" in o:
                    doas.append(torch.nn.functional.normalize(o["doa"], dim=-1))
        self.cpu += time.process_time() - c0
        dirs = sph2cart(self.h.azimuth_deg[list(ks)], self.h.elevation_deg[list(ks)])
        return {"x": x, "emb": torch.cat(embs), "doa": torch.cat(doas) if doas else None,
                "acts": [torch.cat(layer) for layer in zip(*acts)] if acts else None,
                "dirs": np.asarray(dirs).reshape(-1, 3),
                "ild": torch.cat([c["ild"] for c in cue]).double(), "below": torch.cat([c["below"] for c in cue])}


def cues_pair(S: dict, i, T: dict, j) -> np.ndarray:
    """cues score (median |dILD| dB over the reference's audible bins) of reference scenes ``i``
    of ``S`` against degraded scenes ``j`` of ``T`` (index arrays of one length)."""
    i, j = np.atleast_1d(i), np.atleast_1d(j)
    ild_r, below_r = S["ild"][i], S["below"][i]
    ild_d, below_d = T["ild"][j], T["below"][j]
    d = torch.where(below_d, torch.zeros_like(ild_d), ild_d / 2) - ild_r / 2
    d = torch.where(~below_r, d.abs(), torch.full_like(d, float("nan")))
    flat = d.reshape(len(i), -1).numpy()
    return np.array([np.median(r[np.isfinite(r)]) if np.isfinite(r).any() else np.nan for r in flat])


#: which of the metric's two distances the sqm column reports: "cosine" (the utterance embeddings', the
#: metric's score) or "deep" (the deep-feature distance of ``values``: layer-wise mean |difference| of the
#: activations over channels and the common frames, summed over layers) -- ``--distance``
DISTANCE = "cosine"


def sqm_pair(S, i, T, j) -> np.ndarray:
    i, j = np.atleast_1d(i), np.atleast_1d(j)
    if DISTANCE == "deep":
        return deep_feature_distance([a[i] for a in S["acts"]], [a[j] for a in T["acts"]]).numpy()
    return cosine_distance(S["emb"][i], T["emb"][j]).numpy()


def angle(S, i, T, j) -> np.ndarray:
    a, b = S["dirs"][np.atleast_1d(i)], T["dirs"][np.atleast_1d(j)]
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1, 1)))


def room_cond(rng) -> dict:
    return {"rt60_s": float(rng.uniform(0.3, 0.8)), "dims_m": rng.uniform([4.0, 3.0, 2.5], [10.0, 8.0, 4.0]),
            "distance_m": float(rng.uniform(1.0, 2.5)), "snr_db": (5.0, 20.0)}


def spearman(x, y) -> float:
    from scipy.stats import spearmanr

    ok = np.isfinite(x) & np.isfinite(y)
    return float(spearmanr(x[ok], y[ok]).statistic)


def common_area(a, b) -> float:
    """Overlap of the normal densities fitted to samples ``a`` and ``b`` (0: separated, 1: equal)."""
    from scipy.stats import norm

    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    ma, sa, mb, sb = a.mean(), max(a.std(), 1e-9), b.mean(), max(b.std(), 1e-9)
    lo, hi = min(ma - 6 * sa, mb - 6 * sb), max(ma + 6 * sa, mb + 6 * sb)
    t = np.linspace(lo, hi, 20001)
    return float(np.trapezoid(np.minimum(norm.pdf(t, ma, sa), norm.pdf(t, mb, sb)), t))


def monotonicity(sc: Scenes, rooms: bool, n_ref: int, rng) -> dict:
    """Azimuth and elevation series -> pairs (distances, separations) per metric."""
    h = sc.h
    az_offsets = [0, 5, 10, 15, 20, 30, 45, 60, 90, 120, 150, 180]
    out = {"az": [], "el": []}
    doa_err = []
    for r in range(n_ref):
        cond = room_cond(rng) if rooms else None
        # azimuth series on the horizontal plane
        az0 = float(rng.choice(np.arange(0, 360, 5)))
        sign = 1 if rng.random() < 0.5 else -1
        ks = [int(h.nearest_index(az0, 0.0))] + [int(h.nearest_index(wrap_azimuth(az0 + sign * d), 0.0))
                                                  for d in az_offsets]
        S = sc.render(ks, cond)
        idx = np.arange(1, len(ks))
        out["az"].append(np.stack([angle(S, 0, S, idx), sqm_pair(S, np.zeros(len(idx), int), S, idx),
                                   cues_pair(S, np.zeros(len(idx), int), S, idx)], 1))
        doa_err.append(_doa(S))
        # elevation series at one azimuth
        az1 = float(rng.choice([0, 30, 60, 90, 120, 150, 180, 210, 240, 270, 300, 330]))
        el0 = float(rng.choice([-30.0, 0.0, 30.0]))
        els = np.unique(h.elevation_deg[np.abs(wrap_azimuth(h.azimuth_deg - az1)) < 0.5])
        els = els[els < 89.0]
        ks = [int(h.nearest_index(az1, el0))] + [int(h.nearest_index(az1, e)) for e in els]
        S = sc.render(ks, cond)
        idx = np.arange(1, len(ks))
        out["el"].append(np.stack([angle(S, 0, S, idx), sqm_pair(S, np.zeros(len(idx), int), S, idx),
                                   cues_pair(S, np.zeros(len(idx), int), S, idx)], 1))
        doa_err.append(_doa(S))
        if r == 0:
            ident = (sqm_pair(S, [0], S, [0])[0], cues_pair(S, [0], S, [0])[0])
    res = {}
    for key in ("az", "el"):
        P = np.concatenate(out[key])
        res[f"spearman_{key}"] = {"sqm": spearman(P[:, 0], P[:, 1]), "cues": spearman(P[:, 0], P[:, 2])}
    P = np.concatenate(out["az"] + out["el"])
    same, far = P[P[:, 0] < 1.0], P[P[:, 0] >= 30.0]
    res["common_area"] = {"sqm": common_area(same[:, 1], far[:, 1]), "cues": common_area(same[:, 2], far[:, 2])}
    at30 = P[(P[:, 0] >= 25) & (P[:, 0] <= 35)]
    res["median_at_30"] = {"sqm": float(np.median(at30[:, 1])), "cues": float(np.nanmedian(at30[:, 2]))}
    res["identity"] = {"sqm": float(ident[0]), "cues": float(ident[1])}
    res["identity_ratio"] = {m: res["identity"][m] / max(res["median_at_30"][m], 1e-12) for m in ("sqm", "cues")}
    E = np.concatenate(doa_err) if doa_err and doa_err[0] is not None else None
    if E is not None:
        res["doa_rmse_deg"] = {"azimuth": float(np.sqrt(np.mean(E[:, 0] ** 2))),
                               "elevation": float(np.sqrt(np.mean(E[:, 1] ** 2))),
                               "great_circle_median": float(np.median(E[:, 2]))}
    res["n_pairs"] = {"az": int(sum(len(p) for p in out["az"])), "el": int(sum(len(p) for p in out["el"]))}
    return res


def _doa(S):
    if S["doa"] is None:
        return None
    pa, pe, _ = cart2sph(S["doa"].double().numpy())
    ta, te, _ = cart2sph(S["dirs"])
    daz = np.abs(wrap_azimuth(np.asarray(pa) - np.asarray(ta)))
    daz = np.where(np.abs(np.asarray(te)) > 80, 0.0, daz)  # azimuth undefined at the poles
    return np.stack([daz, np.asarray(pe) - np.asarray(te), great_circle_deg(ta, te, pa, pe)], 1)


def two_afc(sc: Scenes, rooms: bool, n: int, rng) -> dict:
    h = sc.h
    dirs = h.directions
    ok = np.flatnonzero(h.elevation_deg >= -45)
    hits = {"sqm": [], "cues": []}
    for t in range(n):
        cond = room_cond(rng) if rooms else None
        k = int(rng.choice(ok))
        ang = np.degrees(np.arccos(np.clip(dirs @ dirs[k], -1, 1)))
        near, far = np.flatnonzero((ang >= 5) & (ang <= 15)), np.flatnonzero((ang >= 30) & (ang <= 60))
        S = sc.render([k, int(rng.choice(near)), int(rng.choice(far))], cond)
        for m, f in (("sqm", sqm_pair), ("cues", cues_pair)):
            d = f(S, [0, 0], S, [1, 2])
            hits[m].append(1.0 if d[0] < d[1] else (0.5 if d[0] == d[1] else 0.0))
    return {m: float(np.mean(v)) for m, v in hits.items()}


def retrieval(sc: Scenes, n_groups: int, per_group: int, rng, rooms: bool = False) -> dict:
    h = sc.h
    dirs = h.directions
    ok = list(rng.permutation(np.flatnonzero(h.elevation_deg >= -45)))
    chosen = []
    for k in ok:
        if all(np.degrees(np.arccos(np.clip(dirs[k] @ dirs[c], -1, 1))) >= 20 for c in chosen):
            chosen.append(int(k))
        if len(chosen) == n_groups:
            break
    parts = []
    for k in chosen:
        parts.append(sc.render([k] * per_group, room_cond(rng) if rooms else None))
    S = {key: (torch.cat([p[key] for p in parts]) if torch.is_tensor(parts[0][key]) else
               np.concatenate([p[key] for p in parts])) for key in ("emb", "ild", "below", "dirs")}
    if parts[0]["acts"] is not None:
        S["acts"] = [torch.cat(layer) for layer in zip(*(p["acts"] for p in parts))]
    lab = np.repeat(np.arange(len(chosen)), per_group)
    N = len(lab)
    D = {"sqm": (np.stack([sqm_pair(S, np.full(N, i), S, np.arange(N)) for i in range(N)]) if DISTANCE == "deep"
                 else cosine_distance(S["emb"][:, None], S["emb"][None]).numpy()),
         "cues": np.stack([cues_pair(S, np.full(N, i), S, np.arange(N)) for i in range(N)])}
    res = {}
    for m, Dm in D.items():
        Dm = Dm.copy()
        np.fill_diagonal(Dm, np.inf)
        Dm = np.where(np.isfinite(Dm), Dm, np.inf)
        order = np.argsort(Dm, axis=1, kind="stable")
        for K in (10, 25):
            res[f"p@{K}_{m}"] = float(np.mean(lab[order[:, :K]] == lab[:, None]))
    res["groups"], res["per_group"] = len(chosen), per_group
    return res


def speed(model, cues: Cues) -> dict:
    """Embedding 10 s, as the metric runs it (:func:`sqm_input` first), best of 3 at 1 and 2 threads: independent noise
    in the two ears (``sqm_x_realtime_*``: it reads as reverberant, so an encoder with ``cfg.dereverb`` runs its
    dereverberation: the slow case) and the same noise rendered through one KU100 direction (``*_anechoic``: the
    room gate only)."""
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 2, 10 * SR)).astype(np.float32) * 0.05)
    h = load_hrtf("ku100", SR)
    from scipy.signal import oaconvolve

    xa = torch.from_numpy(oaconvolve(x[0, :1].double().numpy(), h.hrir[int(h.nearest_index(30.0, 0.0))],
                                     axes=-1)[:, : 10 * SR].astype(np.float32))[None]
    out = {}
    for th in (1, 2):
        torch.set_num_threads(th)
        for tag, sig in (("", x), ("_anechoic", xa)):
            xm = torch.cat([sig, sig.mean(1, keepdim=True)], dim=1) if model.cfg.channels == 3 else sig  # + the source
            with torch.no_grad():
                model(sqm_input(xm, model.cfg)[0])
                best_w, best_c = math.inf, math.inf
                for _ in range(3):
                    t, c = time.perf_counter(), time.process_time()
                    model(sqm_input(xm, model.cfg)[0])
                    best_w, best_c = min(best_w, time.perf_counter() - t), min(best_c, time.process_time() - c)
            out[f"sqm_x_realtime_{th}thread{tag}"] = 10.0 / best_w
            out[f"sqm_cpu_s_{th}thread{tag}"] = best_c
            cues.forward(x.double(), x.double())
            t = time.perf_counter()
            cues.forward(x.double(), x.double())
            out[f"cues_pair_x_realtime_{th}thread"] = 10.0 / (time.perf_counter() - t)
    torch.set_num_threads(1)
    return out


def check_cues(sc: Scenes, cues: Cues, rng) -> float:
    """Largest |this script's cues - Cues().forward| over a few pairs (dB)."""
    ok = np.flatnonzero(sc.h.elevation_deg >= -45)
    S = sc.render([int(k) for k in rng.choice(ok, 4)], None)
    mine = cues_pair(S, [0, 1], S, [2, 3])
    with torch.no_grad():
        ref = cues.forward(S["x"][[0, 1], :2].double(), S["x"][[2, 3], :2].double())["score"].numpy()
    return float(np.max(np.abs(mine - ref)))


TARGETS = {("anechoic", "spearman_az"): ">= 0.98", ("anechoic", "spearman_el"): ">= 0.90",
           ("rooms", "spearman_az"): ">= 0.95", ("rooms", "spearman_el"): ">= 0.75",
           ("anechoic", "common_area"): "<= 0.05", ("rooms", "common_area"): "<= 0.10",
           ("anechoic", "2afc"): ">= 0.95", ("rooms", "2afc"): ">= 0.90",
           ("anechoic", "identity_ratio"): "< 0.01", ("rooms", "identity_ratio"): "< 0.01"}
PAPER = {"spearman_az": "0.96", "spearman_el": "0.66", "common_area": "0.15"}


def to_markdown(res: dict) -> str:
    """The result table (sqm beside cues, targets of issue 17, the paper's numbers)."""
    f = lambda v: "n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.3f}"  # noqa: E731
    rows = ["| test | condition | sqm | cues | target | paper (SQM-BS) |", "|---|---|---|---|---|---|"]
    names = {"spearman_az": "Spearman, azimuth", "spearman_el": "Spearman, elevation",
             "common_area": "content invariance: common area", "2afc": "2AFC (5-15 vs 30-60 deg)",
             "identity_ratio": "identity / median at 30 deg"}
    for key, label in names.items():
        for cond in ("anechoic", "rooms"):
            v = res[cond][key]
            rows.append(f"| {label} | {cond} | {f(v['sqm'])} | {f(v['cues'])} | {TARGETS.get((cond, key), '')} | "
                        f"{PAPER.get(key, '') if cond == 'anechoic' else ''} |")
    r = res.get("retrieval_anechoic")
    if r:
        rows.append(f"| retrieval precision@10 ({r['groups']} groups x {r['per_group']}) | anechoic | "
                    f"{f(r['p@10_sqm'])} | {f(r['p@10_cues'])} | >= 0.95 | 0.93 |")
        rows.append(f"| retrieval precision@25 | anechoic | {f(r['p@25_sqm'])} | {f(r['p@25_cues'])} | >= 0.92 | 0.90 |")
    for cond in ("anechoic", "rooms"):
        d = res[cond].get("doa_rmse_deg")
        if d:
            rows.append(f"| DoA head RMSE az / el (deg) | {cond} | {d['azimuth']:.1f} / {d['elevation']:.1f} | "
                        "n/a (no DoA) | | |")
    sp = res.get("speed")
    if sp:
        rows.append(f"| speed: 10 s binaural, x real time per CPU-second (1 thread) | | "
                    f"{10.0 / sp['sqm_cpu_s_1thread']:.0f} | | >= 100 | |")
    return "\n".join(rows) + "\n"


def run_with(vector, distance, argv=None) -> None:
    """The protocol with another distance in place of the metric's (a reference point, not the metric):
    ``vector(x)`` maps a scene ``x (3, T)`` (numpy: the ears and the dry source) to its vector, and
    ``distance(a, b)`` (torch, broadcast over leading dimensions) compares two. The DoA and speed rows
    still come from the embedding model ``main`` loads."""
    global cosine_distance, sqm_pair
    finish = Scenes._finish

    def _finish(self, ks, x, cue):
        out = finish(self, ks, x, cue)
        out["emb"] = torch.from_numpy(np.stack([vector(xx.numpy()) for xx in x]))
        return out

    Scenes._finish = _finish
    cosine_distance = distance
    sqm_pair = lambda S, i, T, j: distance(S["emb"][np.atleast_1d(i)], T["emb"][np.atleast_1d(j)]).numpy()  # noqa: E731
    main(argv)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--head", default="sonicom-2")
    ap.add_argument("--clip", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--refs", type=int, default=10, help="reference directions per monotonicity series")
    ap.add_argument("--trials", type=int, default=100, help="2AFC trials per condition")
    ap.add_argument("--groups", type=int, default=20)
    ap.add_argument("--per-group", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="monotonicity and 2AFC only, fewer scenes (ablation)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--md", default=None, help="also write the table as Markdown here")
    ap.add_argument("--scenes", default=None, help="pre-rendered scenes (written by --prerender, read otherwise)")
    ap.add_argument("--prerender", action="store_true", help="render the scenes and their cues only (no model)")
    ap.add_argument("--speed-only", action="store_true", help="only the speed figures (10 s binaural, 1 and 2 threads)")
    ap.add_argument("--distance", choices=["cosine", "deep"], default="cosine",
                    help="the sqm column: the utterance embeddings' cosine distance (the metric's score) or the "
                         "deep-feature distance of its values")
    a = ap.parse_args(argv)
    global DISTANCE
    DISTANCE = a.distance
    torch.set_num_threads(1)
    store = torch.load(a.scenes, weights_only=False) if a.scenes and not a.prerender and os.path.isfile(a.scenes) \
        else None
    if a.prerender:
        model, w = None, None
    else:
        model, w = load_pretrained(a.checkpoint)
    cues = Cues()
    if a.speed_only:
        print(json.dumps(speed(model, cues), indent=1))
        return
    sc = Scenes(a.head, a.clip, a.seed, model, cues, store)
    rng = np.random.default_rng(a.seed)
    t0, c0 = time.time(), time.process_time()
    res = {"checkpoint": str(w.path) if w else None, "sha256": w.sha256 if w else None, "head": a.head,
           "clip_s": a.clip, "config": model.cfg.to_dict() if model else None, "distance": a.distance}
    if not a.quick:
        res["cues_check_max_abs_db"] = check_cues(sc, cues, rng)
    for cond in ("anechoic", "rooms"):
        rooms = cond == "rooms"
        res[cond] = monotonicity(sc, rooms, a.refs if not a.quick else max(3, a.refs // 2), rng)
        res[cond]["2afc"] = two_afc(sc, rooms, a.trials if not a.quick else a.trials // 2, rng)
        print(cond, json.dumps(res[cond]), file=sys.stderr, flush=True)
    if not a.quick:
        res["retrieval_anechoic"] = retrieval(sc, a.groups, a.per_group, rng)
        print("retrieval", json.dumps(res["retrieval_anechoic"]), file=sys.stderr, flush=True)
        if model is not None:
            res["speed"] = speed(model, cues)
    if a.prerender:
        torch.save(sc.store, a.scenes)
    res["scenes"] = sc.n
    res["wall_s"], res["cpu_s"] = round(time.time() - t0, 1), round(time.process_time() - c0, 1)
    text = json.dumps(res, indent=1, default=float)
    if a.md:
        with open(a.md, "w") as f:
            f.write(to_markdown(res))
    if a.json:
        os.makedirs(os.path.dirname(a.json) or ".", exist_ok=True)
        with open(a.json, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
