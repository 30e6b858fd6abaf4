"""The template localiser's candidate heads on an unseen head, and onset windows in rooms (issue 16;
twenty-first session, tried, not shipped). Development seeds only: sonicom-2 779-783, KU100 rooms
777-778, KU100 anechoic 779 (the held-out seed 160016 is not run here).

    PYTHONPATH=src python benchmarks/try_template_candidates.py oracle  [--cache DIR]
        per item of sonicom-2 seeds 779-783, the best direction of every candidate set the localiser
        compares where the direct sound dominates (KU100 and SONICOM-1, each x 5 frequency scales):
        the shipped choice (smallest summed distance), each candidate alone, the oracle candidate
        (smallest error: not available to a localiser), the choice with the KU100 candidates
        handicapped by a margin (KU100 must fit better by that factor), the candidate chosen by the
        interaural terms alone and the candidate whose frames agree most with its summed answer
    PYTHONPATH=src python benchmarks/try_template_candidates.py margin  [--cache DIR]
        the same margins on KU100 rooms (777, 778) and KU100 anechoic (779), where the KU100 is the
        head: what a margin against the dummy head costs its own recordings
    PYTHONPATH=src python benchmarks/try_template_candidates.py consensus [--cache DIR]
        one consensus template per direction (mean over heads x scales on SONICOM-1's grid) with the
        between-candidate variance added to each cue's variance, instead of choosing a candidate
    PYTHONPATH=src python benchmarks/try_template_candidates.py frontback [--cache DIR] [--n 3000] [--seeds ...] [--heads ...]
        a front/back classifier (scikit-learn) on the time-averaged template observation, trained on
        renders through KU100 and SONICOM-1 at the 5 scales, used to flip the localiser's answer
        to its front/back mirror where it disagrees confidently
    PYTHONPATH=src python benchmarks/try_template_candidates.py committee [--cache DIR] [--heads ...]
        front/back decided by a committee of every candidate set (each judges front against back with its own
        templates) instead of the best-fitting one alone (twenty-second session)
    PYTHONPATH=src python benchmarks/try_template_candidates.py heads [--cache DIR]
        leave one head out: KU100, SONICOM-2 and KEMAR items localised with the templates of other heads only
        (is the unseen-head figure a same-database figure?)
    PYTHONPATH=src python benchmarks/try_template_candidates.py onset [--cache DIR]
        rooms: the spectra of short windows (1.25 / 2 ms Tukey) at high-frequency onsets (>= 6 dB
        rise), 1.5-16 kHz, matched against the KU100 HRIRs' same windows on the cone of the shipped
        answer's lateral angle (precedence: the direct sound before the first reflection)

The sets come from ``eval_localizer_v2.get_set`` (rendered once into ``--cache``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_localizer_v2 import FS, KINDS, _loudest, _source, get_set  # noqa: E402
from spaq.localization import templates as T  # noqa: E402
from spaq.spatial.angles import great_circle_deg, is_front_back_confusion, lateral_angle, sph2cart  # noqa: E402

SONICOM_DEV = (779, 780, 781, 782, 783)
O = dict(T.DEFAULTS)


def _truth(dirs):
    d = dirs[:, 0]
    return np.degrees(np.arctan2(d[:, 1], d[:, 0])), np.degrees(np.arcsin(np.clip(d[:, 2], -1, 1)))


def _azel(d):
    return float(np.degrees(np.arctan2(d[1], d[0]))), float(np.degrees(np.arcsin(np.clip(d[2], -1, 1))))


def _score(est, taz, tel):
    est = np.asarray(est, dtype=np.float64)
    err = great_circle_deg(est[:, 0], est[:, 1], taz, tel)
    fb = np.array([is_front_back_confusion(taz[i], tel[i], est[i, 0], est[i, 1]) for i in range(len(est))])
    return err, fb


def _sums(x, opts=O):
    x = np.asarray(x, dtype=np.float64)
    x = x * (10 ** (-30 / 20) / np.sqrt(np.mean(x ** 2)))  # as localize_templates analyses
    cues = T._observed_cues(x, opts["frame_ms"])
    return x, cues, T.observation_sums(T._pool(T._observation(x, opts, cues), 10))


def _candidates(direct=True):
    return T.candidate_sets(T.default_heads(), direct, tuple(O["drr_variants_db"]), T.HEAD_SCALES)


def _choose(fits, margin):
    """fits: (fit, direction, is_ku100) per candidate; KU100 must fit better by ``margin``."""
    return min(fits, key=lambda f: f[0] / margin if f[2] else f[0])


def oracle(cache):
    cands = _candidates()
    R, Q, TEL, labels = [], [], [], [T._label(c) for c in cands]
    for seed in SONICOM_DEV:
        x, dirs, _ = get_set("sonicom2_anechoic", 100, cache, seed)
        taz, tel = _truth(dirs)
        for i in range(len(x)):
            xx, cues, sums = _sums(x[i])
            obs = T._observation(xx, O, cues)
            oi = {**O, "sigma_shape_db": 1e3}  # the interaural terms only
            sums_i = T.observation_sums(T._pool(T._observation(xx, oi, cues), 10))
            row, quad = [], []
            v = sph2cart(taz[i], tel[i])
            lat, pol = float(lateral_angle(v)), np.degrees(np.arctan2(v[2], v[0]))
            for c in cands:
                D = T.summed_distances(c, sums, **O)
                k = int(np.argmin(D))
                az, el = _azel(c.directions[k])
                e, fb = _score([[az, el]], taz[i:i + 1], tel[i:i + 1])
                d = c.directions[k]
                Df, fw = T.frame_distances(xx, c, observation=obs, **O)  # the frames' own best directions
                near = c.directions[np.argmin(Df, 1)] @ d >= np.cos(np.radians(15.0))
                conc = float((fw * near).sum() / max(float(fw.sum()), 1e-12))
                row.append((float(D[k]), float(e[0]), float(fb[0]), c.name == "ku100", conc,
                            float(T.summed_distances(c, sums_i, **oi).min())))
                dp = abs((np.degrees(np.arctan2(d[2], d[0])) - pol + 180) % 360 - 180)  # polar-angle error
                quad.append(float(dp > 90) if abs(lat) <= 60 else -1.0)
            R.append(row)
            Q.append(quad)
            TEL.append(tel[i])
    R = np.array(R, dtype=np.float64)
    n = len(R)
    pick = lambda ch: R[np.arange(n), ch]  # noqa: E731
    print(f"sonicom-2, seeds {SONICOM_DEV}, n {n}")
    print("| choice | median | front-back | KU100 chosen |\n|---|---|---|---|")
    for m in (1.0, 0.95, 0.9, 0.85, 0.8):
        F = R[:, :, 0] / np.where(R[:, :, 3] > 0, m, 1.0)
        ch = np.argmin(F, 1)
        s = pick(ch)
        lab = "shipped (smallest summed distance)" if m == 1.0 else f"KU100 must fit better by x{m:g}"
        print(f"| {lab} | {np.median(s[:, 1]):.1f} | {100 * s[:, 2].mean():.1f} % | {int(R[np.arange(n), ch, 3].sum())} |")
    ch = np.argmin(R[:, :, 5], 1)
    s = pick(ch)
    print(f"| candidate by the interaural terms alone (ILD, IPD) | {np.median(s[:, 1]):.1f} | {100 * s[:, 2].mean():.1f} % "
          f"| {int(R[np.arange(n), ch, 3].sum())} |")
    ch = np.argmax(R[:, :, 4] - 1e-9 * R[:, :, 0], 1)
    s = pick(ch)
    print(f"| most frames agreeing (within 15 deg of the summed answer) | {np.median(s[:, 1]):.1f} | "
          f"{100 * s[:, 2].mean():.1f} % | {int(R[np.arange(n), ch, 3].sum())} |")
    s = pick(np.argmin(R[:, :, 1], 1))
    print(f"| oracle candidate (smallest error) | {np.median(s[:, 1]):.1f} | {100 * s[:, 2].mean():.1f} % | |")
    ch = np.argmin(R[:, :, 0], 1)
    s, q, tel_all = pick(ch), np.array(Q)[np.arange(n), ch], np.array(TEL)
    ku = R[np.arange(n), ch, 3] > 0
    print(f"shipped choice where a KU100 candidate wins ({int(ku.sum())} items): median {np.median(s[ku, 1]):.1f} deg, "
          f"front-back {100 * s[ku, 2].mean():.1f} %; where a SONICOM-1 one wins: {np.median(s[~ku, 1]):.1f} deg, "
          f"{100 * s[~ku, 2].mean():.1f} %")
    conf = s[:, 2] > 0
    print(f"shipped choice: confused items' errors, percentiles 10/50: {np.percentile(s[conf, 1], 10):.0f} / "
          f"{np.median(s[conf, 1]):.0f} deg; share with true elevation >= 75 deg: {np.mean(tel_all[conf] >= 75):.2f}; "
          f"quadrant errors (polar error > 90 deg, |lateral| <= 60 deg): {100 * q[q >= 0].mean():.1f} % of those items")
    for j, lab in enumerate(labels):
        print(f"| {lab} alone | {np.median(R[:, j, 1]):.1f} | {100 * R[:, j, 2].mean():.1f} % | |")


def margin(cache):
    from spaq.localization.localize import direct_coherence

    for name, seeds in (("ku100_rooms", (777, 778)), ("ku100_anechoic", (779,))):
        for seed in seeds:
            x, dirs, _ = get_set(name, 100, cache, seed)
            taz, tel = _truth(dirs)
            est, ratio = {m: [] for m in (1.0, 0.9, 0.85, 0.8)}, []
            for i in range(len(x)):
                xx, cues, sums = _sums(x[i])
                direct = direct_coherence(cues[0], cues[1]) >= O["drr_coherence"]
                fits = []
                for c in _candidates(direct):
                    D = T.summed_distances(c, sums, **O)
                    fits.append((float(D.min()), c.directions[int(np.argmin(D))], c.name == "ku100"))
                ratio.append(min(f[0] for f in fits if f[2]) / min(f[0] for f in fits if not f[2]))
                ex = T._exact_stage(xx, T.default_heads(), {})
                for m in est:
                    d = ex["set"].directions[ex["k"]] if ex["used"] else _choose(fits, m)[1]
                    est[m].append(_azel(d))
            print(f"{name} {seed}: best KU100 fit / best SONICOM-1 fit, percentiles 50/90/95: "
                  + " / ".join(f"{v:.2f}" for v in np.percentile(ratio, [50, 90, 95])))
            for m, e in est.items():
                err, fb = _score(e, taz, tel)
                print(f"{name} {seed}: KU100 margin x{m:g}: median {np.median(err):.1f} deg, mean {err.mean():.1f}, "
                      f"front-back {100 * fb.mean():.1f} %", flush=True)


def consensus(cache):
    deg = int(O["shape_degree"])
    bases = [T.template_set(h) for h in T.default_heads()]
    grid = bases[-1].directions  # SONICOM-1's grid
    flats = []
    for b in bases:
        nn = np.argmax(grid @ b.directions.T, axis=1)
        for sc in T.HEAD_SCALES:
            flats.append(T.scale_variant(b, sc).flat(deg)[0][:, nn])
    Fl = np.stack(flats)  # (candidates, 5F, G)
    mu, var = Fl.mean(0), Fl.var(0)
    F = Fl.shape[1] // 5
    sig2 = np.repeat(np.array([O["sigma_ild_db"], O["sigma_ipd"], O["sigma_ipd"], O["sigma_shape_db"],
                               O["sigma_shape_db"]]) ** 2, F)[:, None]
    lam, logdet = sig2 / (sig2 + var), 0.5 * np.log((sig2 + var) / sig2)
    for alpha in (0.0, 1.0):
        errs, fbs = [], []
        for seed in SONICOM_DEV:
            x, dirs, _ = get_set("sonicom2_anechoic", 100, cache, seed)
            taz, tel = _truth(dirs)
            est = []
            for i in range(len(x)):
                xx = np.asarray(x[i], dtype=np.float64)
                xx = xx * (10 ** (-30 / 20) / np.sqrt(np.mean(xx ** 2)))
                z, om, _ = T._observation(xx, O, T._observed_cues(xx, O["frame_ms"]))
                c, a, W = (om * z * z).sum(0), (om * z).sum(0), om.sum(0)
                D = (lam * (c[:, None] - 2 * mu * a[:, None] + mu * mu * W[:, None])).sum(0) + alpha * (W[:, None] * logdet).sum(0)
                est.append(_azel(grid[int(np.argmin(D))]))
            e, f = _score(est, taz, tel)
            errs.append(e)
            fbs.append(f)
        print(f"consensus template, log-det weight {alpha:g}: median {np.median(np.concatenate(errs)):.1f} deg, "
              f"front-back {100 * np.concatenate(fbs).mean():.1f} %", flush=True)


def _feature(x):
    xx = np.asarray(x, dtype=np.float64)
    xx = xx * (10 ** (-30 / 20) / np.sqrt(np.mean(xx ** 2)))
    z, om, _ = T._observation(xx, O, T._observed_cues(xx, O["frame_ms"]))
    W = om.sum(0)
    return np.where(W > 0, (om * z).sum(0) / np.maximum(W, 1e-30), 0.0)


def frontback(cache, n, seeds=SONICOM_DEV, heads=("ku100", "sonicom-1")):
    from scipy.signal import oaconvolve
    from sklearn.ensemble import HistGradientBoostingClassifier

    from spaq.spatial.hrtf import load_hrtf

    X, Y = [], []
    for hi, head in enumerate(heads):
        h = load_hrtf(head, FS)
        scaled = {s: h.frequency_scaled(s) for s in T.HEAD_SCALES}
        for i in range(n):
            rng = np.random.default_rng([5151, hi, i])
            k, s = int(rng.integers(h.n_directions)), float(rng.choice(T.HEAD_SCALES))
            hr = scaled[s].hrir[k]
            src = _source(KINDS[i % len(KINDS)], rng)
            if not np.any(src):
                continue
            lat = float(lateral_angle(h.directions[k]))
            if abs(lat) > 75:  # front and back meet at the interaural axis
                continue
            X.append(_feature(_loudest(oaconvolve(src[None], hr, axes=-1))))
            Y.append(int(h.directions[k][0] > 0))
    clf = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=0).fit(np.array(X), np.array(Y))
    rows = {t: ([], []) for t in (0.0, 0.7, 0.8, 0.9)}
    acc_c, acc_t = [], []
    for seed in seeds:
        x, dirs, _ = get_set("sonicom2_anechoic", 100, cache, seed)
        taz, tel = _truth(dirs)
        from spaq.localization import localize

        base = np.array([[float(r.azimuth_deg[0]), float(r.elevation_deg[0])] for r in (localize(xi, FS) for xi in x)])
        p = clf.predict_proba(np.array([_feature(xi) for xi in x]))[:, 1]
        front = dirs[:, 0, 0] > 0
        bfront = np.cos(np.radians(base[:, 0])) * np.cos(np.radians(base[:, 1])) > 0
        m = np.abs(np.degrees(np.arcsin(np.clip(dirs[:, 0, 1], -1, 1)))) <= 75
        acc_c += list(((p > 0.5) == front)[m])
        acc_t += list((bfront == front)[m])
        for t, (E, Fb) in rows.items():
            e = base.copy()
            if t > 0:
                flip = np.where(bfront, p, 1 - p) < 1 - t
                e[flip, 0] = (180 - e[flip, 0] + 180) % 360 - 180
            err, fb = _score(e, taz, tel)
            E.append(err)
            Fb.append(fb)
    print(f"front/back of sonicom-2, seeds {tuple(seeds)} (|lateral| <= 75): classifier {np.mean(acc_c):.3f}, "
          f"localiser {np.mean(acc_t):.3f}")
    for t, (E, Fb) in rows.items():
        lab = "localiser as shipped" if t == 0 else f"flipped where the classifier says the other side with p > {t:g}"
        print(f"  {lab}: median {np.median(np.concatenate(E)):.1f} deg, front-back {100 * np.concatenate(Fb).mean():.1f} %")


def committee(cache, heads=("default", "sonicom-1")):
    """Front/back by a committee (twenty-second session): every candidate set judges front against back with
    its own templates (its best distance in the back half minus that in the front half, over its own best),
    and the shipped choice's answer is mirrored where the committee says the other side."""
    cands = T.candidate_sets(list(heads), True, tuple(O["drr_variants_db"]), T.HEAD_SCALES)
    rows = []
    for seed in SONICOM_DEV:
        x, dirs, _ = get_set("sonicom2_anechoic", 100, cache, seed)
        taz, tel = _truth(dirs)
        for i in range(len(x)):
            _, _, sums = _sums(x[i])
            best, prefs = None, []
            for c in cands:
                D = T.summed_distances(c, sums, **O)
                k = int(np.argmin(D))
                if best is None or D[k] < best[0]:
                    best = (float(D[k]), c.directions[k])
                ok = np.abs(c.directions[:, 1]) < 0.97  # off the interaural axis
                front = c.directions[:, 0] > 0
                prefs.append((D[~front & ok].min() - D[front & ok].min()) / max(float(D[k]), 1e-9))
            rows.append((taz[i], tel[i], best[1], np.array(prefs)))
    print(f"sonicom-2, seeds {SONICOM_DEV}, candidates of {tuple(heads)} x {len(T.HEAD_SCALES)} scales")
    print("| rule | median | front-back |\n|---|---|---|")
    rules = [("shipped choice", lambda p: None), ("majority of candidates", lambda p: np.sign(p).sum()),
             ("sum of relative preferences", lambda p: p.sum()), ("median preference", lambda p: np.median(p))]
    rules += [(f"majority, flip only with a margin >= {t}",
               lambda p, t=t: np.sign(p).sum() if abs(np.sign(p).sum()) >= t else None) for t in (3, 5, 7)]
    for lab, rule in rules:
        est = []
        for _, _, d, p in rows:
            v = rule(p)
            flip = v is not None and v != 0 and (d[0] > 0) != (v > 0) and abs(d[0]) > 1e-6
            est.append(_azel(d * np.array([-1.0, 1.0, 1.0]) if flip else d))
        err, fb = _score(est, np.array([r[0] for r in rows]), np.array([r[1] for r in rows]))
        print(f"| {lab} | {np.median(err):.1f} | {100 * fb.mean():.1f} % |")


def leave_one_head_out(cache):
    """The template localiser on a head none of its template heads comes from (twenty-second session): each of
    the three licensed heads at hand (KU100, SONICOM-1's database sibling SONICOM-2, the MIT KEMAR) localised
    with the templates of the other heads only (development seeds), beside the shipped choice."""
    from spaq.localization import localize

    runs = [("ku100_anechoic", (779,), ["sonicom-1", "kemar"]),
            ("sonicom2_anechoic", SONICOM_DEV, ["ku100", "sonicom-1"]),
            ("sonicom2_anechoic", SONICOM_DEV, ["ku100", "kemar"]),
            ("kemar_anechoic", (779, 780), ["ku100", "sonicom-1"])]
    print("| items (head, seeds) | template heads | median | front-back | median lateral |\n|---|---|---|---|---|")
    for name, seeds, heads in runs:
        E, F, L = [], [], []
        for seed in seeds:
            x, dirs, _ = get_set(name, 100, cache, seed)
            taz, tel = _truth(dirs)
            est = []
            for xi in x:
                r = localize(xi.astype(np.float64), FS, method="templates", hrtf=heads)
                est.append((float(r.azimuth_deg[0]), float(r.elevation_deg[0])))
            err, fb = _score(est, taz, tel)
            lat_t = lateral_angle(sph2cart(taz, tel))
            lat_e = lateral_angle(sph2cart(np.array([e[0] for e in est]), np.array([e[1] for e in est])))
            E.append(err)
            F.append(fb)
            L.append(np.abs(lat_e - lat_t))
        E, F, L = np.concatenate(E), np.concatenate(F), np.concatenate(L)
        print(f"| {name} {seeds} | {' + '.join(heads)} | {np.median(E):.1f} | {100 * F.mean():.1f} % | {np.median(L):.1f} |",
              flush=True)


def onset(cache):
    from scipy.signal import butter, find_peaks, sosfiltfilt
    from scipy.signal.windows import tukey

    from spaq.localization import localize
    from spaq.spatial.hrtf import load_hrtf

    h = load_hrtf("ku100", FS)

    def spectra(x, starts, n, nfft=256):
        seg = np.stack([x[:, s:s + n] for s in starts if 0 <= s and s + n <= x.shape[1]], 1) * tukey(n, 0.5)
        X = np.fft.rfft(seg, n=nfft, axis=-1)
        return (np.abs(X) ** 2).sum(1)  # (2, bins)

    f = np.fft.rfftfreq(256, 1 / FS)
    edges = 1500.0 * 2 ** (np.arange(0, 4, 1 / 6))
    B = np.stack([(f >= a) & (f < b) for a, b in zip(edges[:-1], edges[1:]) if b <= 16000]).astype(float)
    B = B[B.sum(1) > 0]
    B /= B.sum(1, keepdims=True)
    lf = np.log(np.sqrt(edges[:-1] * edges[1:])[:len(B)])
    V = np.vander(lf - lf.mean(), 2)
    Q, _ = np.linalg.qr(V)
    lat_grid = np.degrees(np.arcsin(np.clip(h.directions[:, 1], -1, 1)))
    sos = butter(4, [1500.0, 16000.0], "bandpass", fs=FS, output="sos")
    for win_ms in (1.25, 2.0):
        n, pre = int(round(win_ms * 1e-3 * FS)), int(round(0.2 * win_ms * 1e-3 * FS))
        hr = np.concatenate([np.zeros((h.n_directions, 2, 64)), h.hrir, np.zeros((h.n_directions, 2, 256))], -1)
        a = np.abs(hr).max(1)
        on = np.argmax(a > 0.1 * a.max(-1, keepdims=True), -1)
        TL = np.stack([spectra(hr[i], [on[i] - pre], n) for i in range(h.n_directions)])  # (D, 2, bins)
        tl = 10 * np.log10(np.maximum(TL @ B.T, 1e-20))  # (D, 2, bands)
        for name, seed in (("ku100_anechoic", 779), ("ku100_rooms", 777), ("ku100_rooms", 778)):
            x, dirs, kinds = get_set(name, 100, cache, seed)
            taz, tel = _truth(dirs)
            est, base = [], []
            for xi in x:
                r = localize(xi, FS)
                b = (float(r.azimuth_deg[0]), float(r.elevation_deg[0]))
                base.append(b)
                xx = np.asarray(xi, dtype=np.float64)
                e = (sosfiltfilt(sos, xx, axis=-1) ** 2).sum(0)
                c = np.concatenate([[0], np.cumsum(e)])
                n0, n1 = int(2e-3 * FS), int(0.75e-3 * FS)
                t = np.arange(n0, len(e) - n1)
                ratio = 10 * np.log10(((c[t + n1] - c[t]) / n1 + 1e-20) / ((c[t] - c[t - n0]) / n0 + 1e-20))
                pk, _ = find_peaks(ratio, height=6.0, distance=int(2.5e-3 * FS))
                if len(pk) == 0:
                    est.append(b)
                    continue
                o = 10 * np.log10(np.maximum(spectra(xx, t[pk] - pre, n) @ B.T, 1e-20))  # (2, bands)
                d_ild = (o[0] - o[1])[None] - (tl[:, 0] - tl[:, 1])
                mean = 0.5 * ((o[0] - tl[:, 0]) + (o[1] - tl[:, 1]))  # the source's spectrum, common to both ears
                shape = mean - (mean @ Q) @ Q.T
                D = (d_ild ** 2).sum(1) / 2.0 ** 2 + (shape ** 2).sum(1) / 3.0 ** 2
                blat = float(lateral_angle(sph2cart(*b)))
                D = np.where(np.abs(lat_grid - blat) <= 10.0, D, np.inf)
                est.append(_azel(h.directions[int(np.argmin(D))]))
            e0, _ = _score(base, taz, tel)
            e1, _ = _score(est, taz, tel)
            kinds = np.array(kinds)
            per = ", ".join(f"{k} {np.median(e0[kinds == k]):.1f} -> {np.median(e1[kinds == k]):.1f}"
                            for k in np.unique(kinds))
            print(f"onset windows {win_ms:g} ms, {name} {seed}: median {np.median(e0):.1f} -> {np.median(e1):.1f} deg "
                  f"({per})", flush=True)
    for seed in (777, 778):  # the localiser without its spectral-shape term, in rooms
        x, dirs, kinds = get_set("ku100_rooms", 100, cache, seed)
        taz, tel = _truth(dirs)
        kinds = np.array(kinds)
        res = []
        for sigma in (T.DEFAULTS["sigma_shape_db"], 1e3):
            old_sigma, T.DEFAULTS["sigma_shape_db"] = T.DEFAULTS["sigma_shape_db"], sigma
            try:
                est = [(float(r.azimuth_deg[0]), float(r.elevation_deg[0])) for r in (localize(xi, FS) for xi in x)]
            finally:
                T.DEFAULTS["sigma_shape_db"] = old_sigma
            res.append(_score(est, taz, tel)[0])
        per = ", ".join(f"{k} {np.median(res[0][kinds == k]):.1f} -> {np.median(res[1][kinds == k]):.1f}" for k in np.unique(kinds))
        print(f"ku100_rooms {seed}, shape term off: median {np.median(res[0]):.1f} -> {np.median(res[1]):.1f} deg ({per})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("part", choices=["oracle", "margin", "consensus", "frontback", "onset", "committee", "heads"])
    ap.add_argument("--cache", default="/tmp/loccache")
    ap.add_argument("--n", type=int, default=3000, help="renders per head (frontback)")
    ap.add_argument("--seeds", type=int, nargs="+", default=list(SONICOM_DEV), help="sonicom-2 seeds (frontback)")
    ap.add_argument("--heads", nargs="+", default=["ku100", "sonicom-1"],
                    help="heads the front/back classifier trains on (frontback; 'kemar' needs slab)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    {"oracle": lambda: oracle(a.cache), "margin": lambda: margin(a.cache), "consensus": lambda: consensus(a.cache),
     "frontback": lambda: frontback(a.cache, a.n, a.seeds, tuple(a.heads)),
     "committee": lambda: committee(a.cache, tuple(a.heads)), "heads": lambda: leave_one_head_out(a.cache), "onset": lambda: onset(a.cache)}[a.part]()


if __name__ == "__main__":
    main()
