"""Held-out numbers of spaq's ``quality`` on the two shared listening tests (issue 19): the shipped
recipe (``configs/train/quality.yaml``, version 3: joint fit on both tests) cross-validated, with
and without delay alignment, a speech-only fit of the timbral weights for comparison, and BAM-Q /
PEMO-Q on the spatial-codings items. (Version 1 and 2 numbers were measured on their own features
and are kept in the model card; the features changed in version 3, so they are not recomputed here.)

    python benchmarks/rebuild_param_coding.py                   # once: the 42 spatial-codings items
    spaq train quality configs/train/quality.yaml --out /tmp/q/quality_v1.json --workdir /tmp/q
    python benchmarks/eval_quality_calibration.py --workdir /tmp/q --out benchmarks/results/quality_calibration.md

Reads the feature tables ``spaq train quality`` leaves in ``--workdir`` (aligned) and computes
the unaligned ones there if missing (same features, ``align=False``). Every "held-out" number is
held out: leave-one-stimulus-out on the speech-codec half (56 coded stimulus x condition means),
leave-one-trial-out on the spatial codings (42 items), each prediction from parameters fitted
without that stimulus / trial (the other test whole). Statistics from :func:`spaq.evaluate.evaluate`:
Pearson and Spearman of the raw score, RMSE after the P.1401 third-order monotonic mapping,
95 % bootstrap intervals resampling whole stimuli / trials (2000 draws). With ``--out X.md`` it also
writes ``X.json`` (every number) and ``X.png`` (held-out scores against the mean ratings of both tests,
and BAM-Q on the spatial items).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from spaq.evaluate import evaluate
from spaq.files import atomic_write
from spaq.train import quality as tq

#: version 1 parameters (quality_v1.json before issue 19, sha256 30a79021...)
V1 = {"timbral": [0.3234808464181789, 0.4053866659063172, 0.009633660240908918],
      "spatial": [0.1487472224326411, 4.628972309226151, 6.223548927441599, 0.0, 0.0, 0.0, 0.0],
      "exponent": 2.442645790283338}  # version 1 had no *_mean statistics (weight 0)


def _scores(Ft, Fs, m):
    w = np.array([m["timbral_weights"][n] for n in tq.TIMBRAL_FEATURES])
    v = np.array([m["spatial_weights"].get(n, 0.0) for n in tq.SPATIAL_FEATURES])
    d = tq.combine(Ft @ w, tq.spatial_distortion(Fs, v), float(m.get("combination", 1.0)))
    return 100.0 / (1.0 + np.where(d > 0, d, 1.0) ** m["exponent"] * (d > 0))


def _ev(x, y, clusters, name, n_boot):
    e = evaluate(x, y, name=name, clusters=clusters, n_boot=n_boot, seed=0)
    return {"pearson": e.pearson, "spearman": e.spearman, "rmse": e.rmse, "n": e.n,
            "pearson_mapped": e.pearson_mapped, "ci": {k: list(v) for k, v in e.ci.items()}}


def _row(label, r):
    c = r["ci"]
    f = lambda k: f"{r[k]:.3f} [{c[k][0]:.2f}, {c[k][1]:.2f}]" if k in c else f"{r[k]:.3f}"  # noqa: E731
    return (f"| {label} | {r['n']} | {f('pearson')} | {f('spearman')} | {r['rmse']:.1f} [{c['rmse'][0]:.1f}, {c['rmse'][1]:.1f}] "
            f"| {f('pearson_mapped')} |")


def tables(workdir: Path, stem: str, tc, log=print):
    """Aligned and unaligned feature tables of both tests (computed here when missing)."""
    import pandas as pd

    metric = None
    out = {}
    for align in (True, False):
        for kind in ("mushra", "param_coding"):
            p = tq.feature_table_path(workdir, stem, kind, tc, align)
            if not p.is_file():
                metric = metric or tq._metric(**tc.feature_params())  # as the recipe hears them
                if kind == "mushra":
                    root = tc.mushra_dir()
                    t = tq.mushra_features(root, tq.mushra_table(root, tc.mushra["ratings"]), metric, log, align=align)
                else:
                    root = tc.param_coding_dir()
                    t = tq.param_coding_features(root, tq.param_coding_table(root), metric, log, align=align)
                atomic_write(p, lambda tmp: t.to_csv(tmp, index=False))
            out[(kind, align)] = pd.read_csv(p)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workdir", type=Path, required=True, help="spaq train quality's --workdir")
    ap.add_argument("--stem", default="quality_v1", help="stem of the feature tables (the --out name)")
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "configs" / "train" / "quality.yaml"),
                    help="the joint-fit recipe (its fit.spatial / fit.timbral / seed / starts)")
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=None, help="Markdown report (also printed)")
    a = ap.parse_args(argv)
    tc = tq.QualityTrainConfig.from_yaml(a.config)
    T = tables(a.workdir, a.stem, tc, log=lambda m: print(m, file=sys.stderr))
    params = json.loads((Path(tq.__file__).resolve().parents[1] / "resources" / "weights" / "quality_v1.json").read_text())
    syn = tq.feature_table_path(a.workdir, a.stem, "synthetic", tc)  # the recipe's sweeps (version 12: the d_itd weight)
    itd_cal = None
    if str(tc.fit["itd_lateral"]):
        if not syn.is_file():
            sys.exit(f"error: {syn} missing: run spaq train quality with --workdir {a.workdir} first")
        import pandas as pd
        itd_cal = tq.itd_calibration(pd.read_csv(syn).to_dict("records"), tc)
    v0 = np.array([params["provenance"]["synthetic_spatial_weights"][n] for n in tq.SPATIAL_FEATURES])
    mode, seed, starts = str(tc.fit["spatial"]), int(tc.seed), int(tc.fit["starts"])
    ms = float(tc.fit["min_spatial_scale"])
    pto = str(tc.fit["per_test"])
    pc = float(tc.fit["combination"])
    tt = 0 if tc.fit["timbral"] == "speech" else None
    res, lines = {}, []
    m_ = params["mapping"]
    sp_coded = (T[("mushra", True)]["condition"] != "Reference").to_numpy()
    for align in (True, False):
        mt, pt = T[("mushra", align)], T[("param_coding", align)]
        tests = [tq._matrices(mt), tq._matrices(pt)]
        groups = [mt["stimulus"].to_numpy(), pt["trial"].to_numpy()]
        held = tq.joint_cv(tests, groups, v0, mode, seed, starts, tt, ms, pto, pc, itd_cal)
        # version 1 procedure on the speech half alone (timbral weights + exponent, LOSO)
        v1_loso = tq.loso_predictions(mt, seed, starts)
        y_s, y_p = tests[0][2], tests[1][2]
        key = "aligned" if align else "not aligned"
        if align:
            shown = (mt, pt, held)
        res[key] = {}
        if align:
            res[key]["speech: speech-only fit (timbral weights + exponent; LOSO)"] = _ev(
                v1_loso[sp_coded], y_s[sp_coded], groups[0][sp_coded], "q", a.boot)
        else:
            res[key]["speech: speech-only fit (timbral weights + exponent; LOSO)"] = _ev(v1_loso[sp_coded], y_s[sp_coded], groups[0][sp_coded], "q", a.boot)
        res[key]["speech: shipped recipe, joint fit (LOSO)"] = _ev(held[0][sp_coded], y_s[sp_coded], groups[0][sp_coded], "q", a.boot)
        if align:
            res[key]["spatial: shipped parameters (in-sample: fitted on it)"] = _ev(_scores(*tests[1][:2], m_), y_p, groups[1], "q",
                                                                        a.boot)
        res[key]["spatial: shipped recipe, joint fit (LOTO)"] = _ev(held[1], y_p, groups[1], "q", a.boot)
    pt = T[("param_coding", True)]
    for m in ("bamq", "pemoq"):
        res["aligned"][f"spatial {m.upper()} (authors' scores, published stimuli)"] = _ev(
            pt[m].to_numpy(float), pt["mean"].to_numpy(float), pt["trial"].to_numpy(), m, a.boot)
    delays = {k: T[(k, True)]["delay_ms"].to_numpy(float) for k in ("mushra", "param_coding")}

    lines += ["# quality calibration on two real listening tests (issue 19)", "",
              "Made by `python benchmarks/eval_quality_calibration.py` (see its docstring for the commands). "
              f"Joint-fit mode `{mode}`, distortions combined with order {pc:g}, timbral weights from `{tc.fit['timbral']}`, seed {seed}, {starts} starts; 95 % intervals resample whole stimuli / trials "
              f"({a.boot} draws). RMSE after the P.1401 third-order monotonic mapping (fitted per test on all its items, as P.1401 "
              "does to remove a test's context); the last column is the Pearson of the mapped scores (the targets are on the raw "
              "Pearson).", ""]
    for key in ("aligned", "not aligned"):
        lines += [f"## Delay alignment: {key}", "", "| score | n | Pearson [95 % CI] | Spearman [95 % CI] | RMSE (P.1401) | Pearson after the P.1401 mapping |",
                  "|---|---|---|---|---|---|"]
        lines += [_row(k, r) for k, r in res[key].items()]
        lines.append("")
    lines += ["## Delays the alignment applied", "",
              f"- speech codecs: {np.count_nonzero(delays['mushra'])} of {len(delays['mushra'])} items shifted "
              f"({np.min(delays['mushra']):+.2f} .. {np.max(delays['mushra']):+.2f} ms)",
              f"- spatial codings: {np.count_nonzero(delays['param_coding'])} of {len(delays['param_coding'])} items "
              f"shifted ({np.min(delays['param_coding']):+.2f} .. {np.max(delays['param_coding']):+.2f} ms)", ""]
    mt, pt_ = T[("mushra", True)], T[("param_coding", True)]
    th = tq.fit_joint([tq._matrices(mt), tq._matrices(pt_)], v0, mode, seed, starts, tt, ms, pto, pc, itd_cal)
    wj, vj, kj = tq._unpack(th, v0, mode)
    vj = tq.with_itd_weight(vj, itd_cal)
    m, pv = params["mapping"], params["provenance"]
    lines += ["## Shipped parameters and their data", "",
              "| parameter | version 1 | shipped | recipe refitted here | shipped fitted on |",
              "|---|---|---|---|---|"]
    for i, n in enumerate(tq.TIMBRAL_FEATURES):
        v1 = f"{V1['timbral'][i]:.4g}" if i < len(V1["timbral"]) else "—"  # features added later
        lines.append(f"| w `{n}` | {v1} | {m['timbral_weights'].get(n, 0.0):.4g} | {wj[i]:.4g} | "
                     f"{pv['timbral_weights']} |")
    for i, n in enumerate(tq.SPATIAL_FEATURES):
        v1 = f"{V1['spatial'][i]:.4g}" if i < len(V1["spatial"]) else "—"  # features added later
        here = "— (the ambisonic FOA items, below)" if n == "d_order" else f"{vj[i]:.4g}"
        lines.append(f"| v `{n}` | {v1} | {m['spatial_weights'][n]:.4g} | {here} | {pv['spatial_weights']} |")
    lines += [f"| k (exponent) | {V1['exponent']:.4g} | {m['exponent']:.4g} | {kj:.4g} | {pv['exponent']} |",
              f"| p (combination: the order of the sum of the timbral and spatial distortions) | 1 | "
              f"{float(m.get('combination', 1.0)):g} | {pc:g} | {pv.get('combination', 'not set: the sum (1)')} |", "",
              f"Joint fit: {tc.fit['timbral']} timbral weights, spatial mode `{mode}` (a = "
              f"{vj[0] / v0[0] if v0[0] else float('nan'):.3f} on the synthetic ratios).", ""]
    foa = params.get("cross_validation", {}).get("foa_ambisonic_loto")
    if foa:
        lines += [f"`d_order` (version 8): fitted on the FOA condition scored from its ambisonic form ({foa['n']} "
                  f"items, the other parameters fixed, the test's mean error removed); leave one trial out: RMSE "
                  f"{foa['rmse_offset']:.2f} (mean error {foa['mean_error_offset']:+.2f}; with weight 0: "
                  f"{foa['rmse_offset_without_d_order']:.2f}). `benchmarks/eval_quality_foa_ambisonic.py` compares "
                  f"it with the binaural files the listeners heard and with the zero-padded third-order decode.", ""]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        atomic_write(a.out, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        atomic_write(a.out.with_suffix(".json"), lambda tmp: Path(tmp).write_text(json.dumps(res, indent=1) + "\n"))
        plot(a.out.with_suffix(".png"), *shown, res["aligned"], version=params.get("version"))


def plot(path: Path, mt, pt, held, res: dict, version=None) -> None:
    """Held-out scores against the mean ratings: the speech-codec half (coded items, one colour per
    codec), the spatial codings (one marker per coding, one colour per trial), and BAM-Q on the same
    spatial items, each titled with its Pearson and 95 % interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    coded = (mt["condition"] != "Reference").to_numpy()

    def title(ax, name, key):
        r = res[key]
        ax.set_title(f"{name}\nPearson {r['pearson']:.3f} [{r['ci']['pearson'][0]:.2f}, {r['ci']['pearson'][1]:.2f}]",
                     fontsize=10)

    ax = axes[0]
    for cond in sorted(set(mt["condition"][coded])):
        m = coded & (mt["condition"] == cond).to_numpy()
        ax.scatter(held[0][m], mt["mean"].to_numpy()[m], s=22, label=cond)
    title(ax, "speech codecs, leave one stimulus out", "speech: shipped recipe, joint fit (LOSO)")
    ax.legend(fontsize=6, ncol=2, loc="lower right")
    markers = dict(zip(sorted(set(pt["condition"])), "osD^v*"))
    trials = sorted(set(pt["trial"]))
    colours = dict(zip(trials, plt.cm.tab10.colors))
    for ax, x, name, key in ((axes[1], held[1], "spatial codings, leave one trial out (colour: trial)",
                              "spatial: shipped recipe, joint fit (LOTO)"),
                             (axes[2], pt["bamq"].to_numpy(float), "BAM-Q (authors' scores), same items (colour: trial)",
                              "spatial BAMQ (authors' scores, published stimuli)")):
        for cond, mk in markers.items():
            for tr in trials:
                m = ((pt["condition"] == cond) & (pt["trial"] == tr)).to_numpy()
                if m.any():
                    ax.scatter(x[m], pt["mean"].to_numpy()[m], marker=mk, color=colours[tr], s=30,
                               label=cond if tr == trials[0] else None)
        title(ax, name, key)
    axes[1].legend(fontsize=7, loc="lower right")
    for ax, xl in zip(axes, (f"quality {version or ''} (held out)", f"quality {version or ''} (held out)", "BAM-Q")):
        ax.set_xlabel(xl)
        ax.set_ylabel("mean rating (MUSHRA)")
        ax.grid(alpha=0.3)
    for ax in axes[:2]:
        ax.set_xlim(-2, 102)
    for ax in axes:
        ax.set_ylim(-2, 102)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)


if __name__ == "__main__":
    main()
