"""Fast variants of ``quality``'s features on the two listening tests (issue 19, tried, not shipped).

The joint fit of the shipped recipe (``configs/train/quality.yaml``: both tests, each test's mean error
removed and its squared error divided by its ratings' variance, spatial mode ``statistic``) needs only
the pooled features of the 64 speech-codec items and the 42 rebuilt spatial-codings items. This script
keeps the front-end's cues of every item once (exact mode, delay-aligned, as ``spaq train quality``
computes them), recomputes the timbral features from them with variations, and reruns the recipe's fit
and cross-validation (leave one speech stimulus out, leave one spatial trial out) in seconds.

    python benchmarks/try_quality_variants.py --workdir /tmp/qv [--pc DIR]

``--pc``: the rebuilt items (``benchmarks/rebuild_param_coding.py``; default the spaq cache). The
synthetic spatial weights ``v0`` are the shipped parameters' (``provenance.synthetic_spatial_weights``),
and the first row reproduces the shipped held-out figures (version 6: speech LOSO 0.706, spatial LOTO
0.913; with ``--params src/spaq/resources/weights/quality_v5.json``, version 5's synthetic weights and
rule: 0.708 / 0.890). The other rows use that file's combination rule unless they say otherwise.

Variants (twenty-eighth session):

* ``stationary narrow dips, w bands``: the level difference of each band and frame split into its mean
  over the item's active frames (a fixed coloration) and the rest; dips of the fixed part narrower than
  ``w`` ERB bands are removed (morphological opening over bands), the rest is compared as before.
  Narrow dips of a frequency *response* are much less audible than peaks or broad dips (Bücklein 1981);
  the sixteenth session applied that to every frame, which cost the speech codecs, whose narrow holes
  change from frame to frame.
* ``no fixed part``: the fixed coloration removed altogether (the upper bound of that idea).
* ``+ ILD flicker``: one more spatial statistic with a free weight in the joint fit,
  :func:`ild_flicker`: how much faster the degraded signal's ILD changes from one 10 ms (or 20 ms)
  sub-frame to the next than the reference's, per band (the parametric codings of the anechoic
  pink-noise pair re-decide every 20 ms which of the two noises is rendered as a direction and which
  as diffuse sound, so the image flickers; reverberant references flicker by themselves). The
  sub-frame powers are the metric's own band envelopes averaged over quarters of each 40 ms frame
  (the cache of the first run holds them). ``band mean clamped``: the bands' signed changes averaged,
  then a negative mean counted as 0 (the definition built into the metric on the branch
  ``quality-v6-flicker`` and not shipped: ``benchmarks/results/quality_explorations.md`` says why).

Variant (twenty-ninth session, shipped as version 6): ``combination p``: the timbral and spatial
distortions added as ``(D_t^p + D_s^p)^(1/p)`` instead of summed (p = 1); p = 2 is the Euclidean
distance over the two perceptual dimensions, the rule of dimension-based quality models; 1.5 and 3 as
its sensitivity.

Each run prints the held-out figures, the spatial test's in-sample Pearson and the fitted weights
(the 10 ms flicker run also every spatial item's held-out score). About 1.8 min on 2 cores the first
time (the cues), 1 min after.
"""
from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import spaq.metrics.functional.quality as fq  # noqa: E402
from spaq.train import quality as tq  # noqa: E402


N_SUB = 4  # sub-frames of each 40 ms frame: 10 ms


def _band_cues_sub(x, frontend, decoder, n_min=0):
    """The metric's band cues plus ``p_sub (B, 2 sig, 2 ears, F, N_SUB, nf)``: the envelope power of
    each ear in ``N_SUB`` equal parts of every frame, computed as ``p_ear`` is (same band signals)."""
    import math

    from spaq.auditory.binaural_cues import frame

    seen = []  # the envelopes of the metric's own pass over the bands (no second filtering)
    bands = frontend.bands

    def keep(spec, t):
        for item in bands(spec, t):
            seen.append((item[1], item[3]))
            yield item

    frontend.bands = keep
    try:
        out = _ORIG_BAND_CUES(x, frontend, decoder, n_min)
    finally:
        del frontend.bands  # the class's method again
    subs = []
    for decim, env in seen:
        e = frame(env.real, frontend.frame_len // decim)  # (B, S, E, G, nf, fl)
        a = torch.stack([p.mean(-1) for p in torch.tensor_split(e, N_SUB, dim=-1)], dim=-2)
        subs.append((a.to(torch.float64) / math.sqrt(2.0)) ** 2 / 2)
    out["p_sub"] = torch.cat(subs, dim=-3)
    return out


_ORIG_BAND_CUES = fq._band_cues


def ild_flicker(item: dict, merge: int = 1, signed: bool = False, band_mean_first: bool = False) -> float:
    """How much faster the degraded signal's ILD changes than the reference's: per band, the mean
    |ILD(t) - ILD(t - 1)| over consecutive sub-frames (``merge`` of the 10 ms sub-frames summed in power:
    1 -> 10 ms, 2 -> 20 ms; ILD of sensation levels over the hearing threshold, as ``d_ild_db``; steps
    where the reference is audible in both sub-frames), degraded minus reference, negative changes
    counted as 0 (``signed``: as they are), averaged over the bands that have any step
    (``band_mean_first``: the signed changes averaged over the bands, then a negative mean counted as 0,
    so that single bands' estimation noise cancels). 0 for identical signals and for diotic ones."""
    p = item["c"]["p_sub"][0]  # (S, E, F, N_SUB, nf)
    s, e, nb, ns, nf = p.shape
    p = np.moveaxis(p, -2, -1).reshape(s, e, nb, nf * ns)  # time order
    if merge > 1:
        n = p.shape[-1] // merge * merge
        p = p[..., :n].reshape(s, e, nb, n // merge, merge).sum(-1) / merge
    fl = item["floor"].reshape(1, 1, -1, 1)
    sl = 10 * np.log10(np.maximum(p, fl) / fl)
    ild = sl[:, 0] - sl[:, 1]  # (S, F, T)
    on = (p[0] > fl[0]).any(axis=0)  # the reference audible in either ear (F, T)
    ok = on[:, 1:] & on[:, :-1]
    has = ok.any(-1)
    if not has.any():
        return 0.0
    step = np.abs(np.diff(ild, axis=-1))
    fr = (step * ok).sum(-1) / np.maximum(ok.sum(-1), 1)  # (S, F)
    ch = fr[1] - fr[0]
    if band_mean_first:
        return float(np.mean(ch[has]) if signed else max(0.0, np.mean(ch[has])))
    return float(np.mean(ch[has] if signed else np.clip(ch, 0, None)[has]))


def dump(path: Path, pc_root: Path) -> dict:
    """The cues (``p_ear``, ``ic``, ``xc``, floor) and pooled features of every item of both tests."""
    if path.is_file():
        return pickle.load(open(path, "rb"))
    from spaq.metrics.quality import Quality

    cap = {}
    orig, orig_bc = fq._maps_from_cues, fq._band_cues

    def wrap(c, floor, gain_db):
        cap["c"] = {k: v.detach().cpu().numpy() for k, v in c.items() if torch.is_tensor(v)}
        cap["floor"] = floor.cpu().numpy()
        return orig({k: v for k, v in c.items() if k != "p_sub"}, floor, gain_db)

    fq._maps_from_cues, fq._band_cues = wrap, _band_cues_sub
    try:
        metric = Quality(fast=False)
        out = {}
        mroot = ROOT / "../shared/listening-tests/speech-codec-mushra"
        tables = {"speech": tq.mushra_table(mroot), "spatial": tq.param_coding_table(pc_root)}
        for name, t in tables.items():
            items = []
            for _, r in t.iterrows():
                pair = (tq._load_mono_pair(mroot, r["stimulus"], r["file"]) if name == "speech" else
                        tq._load_binaural_pair(pc_root / r["ref"], pc_root / r["deg"]))
                f = tq.pair_features(metric, pair)
                items.append({"row": r.to_dict(), "feats": f, "c": cap["c"], "floor": cap["floor"]})
            out[name] = items
            print(f"{name}: {len(items)} items", flush=True)
    finally:
        fq._maps_from_cues, fq._band_cues = orig, orig_bc
    path.parent.mkdir(parents=True, exist_ok=True)
    pickle.dump(out, open(path, "wb"))
    return out


def timbral(item: dict, variant=None) -> tuple[float, float]:
    """``added_db``, ``missing_db`` of one item recomputed from its cues as ``quality`` does (checked
    equal to the metric's), with ``variant(diff (F, nf), active (F, nf)) -> diff`` applied to the
    level difference first."""
    c = {k: torch.from_numpy(v) for k, v in item["c"].items()}
    fl = torch.from_numpy(item["floor"]).view(-1, 1).double()
    pb = c["p_ear"].double().mean(2)
    aud = pb > fl
    coh = torch.abs(c["ic"][:, 0]).double()
    coh = torch.where(torch.isfinite(coh), coh.clamp(0, 1), torch.ones_like(coh))
    sl = 10 * torch.log10(torch.maximum(fq.texture_power(pb, coh), fl) / fl)
    sl = torch.maximum(sl, fq.masked_threshold(sl[:, 0], **fq.MASKING).unsqueeze(1))
    active = (aud[:, 0] | aud[:, 1])[0].numpy()
    diff = (sl[:, 1] - sl[:, 0])[0].numpy()
    if not active.any():
        return 0.0, 0.0
    if variant is not None:
        diff = variant(diff, active)
    j = fq.LEVEL_JND_DB
    return (float(np.mean(np.clip(diff - j, 0, None)[active])), float(np.mean(np.clip(-diff - j, 0, None)[active])))


def _fixed_part(diff, active):
    return np.nan_to_num(np.nanmean(np.where(active, diff, np.nan), axis=-1))


def stationary_dips(w: int):
    from scipy.ndimage import grey_opening

    def f(diff, active):
        s = _fixed_part(diff, active)
        broad = grey_opening(np.clip(-s, 0, None), size=w, mode="nearest")  # dips at least w bands wide
        return diff - s[:, None] + (np.clip(s, 0, None) - broad)[:, None]
    return f


def no_fixed_part(diff, active):
    return diff - _fixed_part(diff, active)[:, None]


def tables(data: dict, variant=None, flicker=None):
    """Feature tables of both tests; ``flicker``: keyword arguments of :func:`ild_flicker`, whose value
    becomes the column ``d_ild_flicker``."""
    import pandas as pd

    out = []
    for name in ("speech", "spatial"):
        rows = []
        for it in data[name]:
            r = {**it["row"], **{k: it["feats"][k] for k in tq.TIMBRAL_FEATURES + tq.SPATIAL_FEATURES
                                 if k in it["feats"]}}
            r["added_db"], r["missing_db"] = timbral(it, variant)
            if flicker is not None:
                r["d_ild_flicker"] = ild_flicker(it, **flicker)
            rows.append(r)
        out.append(pd.DataFrame(rows))
    return out


def _with_flicker(df):
    ft, fs, y = tq._matrices(df)
    return ft, np.concatenate([fs, df[["d_ild_flicker"]].to_numpy(dtype=np.float64)], axis=1), y


def cross_validate(mt, pt, v0: np.ndarray, seed: int = 7, starts: int = 8, combination: float = 1.0) -> dict:
    """The recipe's fit and cross-validation; with a ``d_ild_flicker`` column, that feature is one more
    spatial term whose weight the joint fit sets (mode ``statistic`` plus one free weight).
    ``combination``: how the timbral and spatial distortions add up (``fit.combination``)."""
    from scipy.stats import pearsonr

    flick = "d_ild_flicker" in pt
    mats = _with_flicker if flick else tq._matrices
    tests = [mats(mt), mats(pt)]
    groups = [mt["stimulus"].to_numpy(), pt["trial"].to_numpy()]
    args = ("statistic", seed, starts, None, 0.05, "offset_normalised", combination)
    unpack, n_spatial = tq._unpack, tq._n_spatial
    if flick:
        v0 = np.append(v0, 0.0)

        def _unpack(theta, v0_, mode):
            w, v, k = unpack(np.concatenate([theta[:-2], theta[-1:]]), v0_[:-1], mode)
            return w, np.append(v, np.exp(theta[-2])), k
        tq._unpack, tq._n_spatial = _unpack, (lambda mode: n_spatial(mode) + 1)
    try:
        th = tq.fit_joint(tests, v0, *args)
        held = tq.joint_cv(tests, groups, v0, *args)
        w, v, k = tq._unpack(th, v0, "statistic")
    finally:
        tq._unpack, tq._n_spatial = unpack, n_spatial
    coded = (mt["condition"] != "Reference").to_numpy()
    return {"speech_loso": float(pearsonr(held[0][coded], tests[0][2][coded])[0]),
            "spatial_loto": float(pearsonr(held[1], tests[1][2])[0]),
            "spatial_fit": float(pearsonr(tq.joint_pred(th, *tests[1][:2], v0, "statistic", combination) if not flick
                                          else _pred(th, tests[1], v0, unpack, combination), tests[1][2])[0]),
            "weights": {"timbral": w.round(4).tolist(), "spatial": v.round(4).tolist(), "exponent": round(k, 3)},
            "heldout_spatial": held[1]}


def _pred(th, test, v0, unpack, combination=1.0):
    w, v, k = unpack(np.concatenate([th[:-2], th[-1:]]), v0[:-1], "statistic")
    v = np.append(v, np.exp(th[-2]))
    d = tq.combine(test[0] @ w, test[1] @ v, combination)
    return 100.0 / (1.0 + np.where(d > 0, d, 1.0) ** k * (d > 0))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--pc", type=Path, default=None, help="rebuilt spatial-codings items (default: the spaq cache)")
    ap.add_argument("--params", type=Path, default=ROOT / "src/spaq/resources/weights/quality_v1.json",
                    help="parameters whose synthetic spatial weights v0 and combination rule the fits use "
                         "(default: the shipped ones; quality_v5.json: version 5)")
    ap.add_argument("--combination", type=float, default=None,
                    help="order of the distortions' sum for every row (default: that of --params)")
    a = ap.parse_args(argv)
    from spaq.cache import cache_dir

    data = dump(a.workdir / "quality_cues.pkl", a.pc or cache_dir() / "param_coding")
    for it in data["speech"][:2] + data["spatial"][:2]:  # the recomputation is the metric's
        got = timbral(it)
        assert np.allclose(got, (it["feats"]["added_db"], it["feats"]["missing_db"]), atol=1e-9), got
    params = json.loads(Path(a.params).read_text())
    v0 = np.array([params["provenance"]["synthetic_spatial_weights"][n] for n in tq.SPATIAL_FEATURES])
    comb = float(params["mapping"].get("combination", 1.0)) if a.combination is None else float(a.combination)
    print("| variant | speech LOSO | spatial LOTO | spatial, fitted on it | fitted weights (timbral; spatial; exponent) |")
    print("|---|---|---|---|---|")
    runs = [(f"{Path(a.params).name} (combination {comb:g})", None, None, comb)] + \
        [(f"combination {q:g}", None, None, q) for q in (1.0, 1.5, 2.0, 3.0) if q != comb] + [
        r + (comb,) for r in
        [(f"stationary narrow dips, {w} bands", stationary_dips(w), None) for w in (3, 5, 7)] + \
        [("no fixed part", no_fixed_part, None)] + \
        [(f"+ ILD flicker, {10 * m} ms{', signed' if sg else ''}", None, {"merge": m, "signed": sg})
         for m in (1, 2) for sg in (False, True)] + \
        [("+ ILD flicker, 10 ms, band mean clamped", None, {"band_mean_first": True})]]
    for label, var, fl, q in runs:
        r = cross_validate(*tables(data, var, fl), v0, combination=q)
        wt = r["weights"]
        print(f"| {label} | {r['speech_loso']:.3f} | {r['spatial_loto']:.3f} | {r['spatial_fit']:.3f} | "
              f"{wt['timbral']}; {wt['spatial']}; {wt['exponent']} |", flush=True)
        if label == "+ ILD flicker, 10 ms":
            names = [it["row"]["deg"] for it in data["spatial"]]
            ys = [it["row"]["mean"] for it in data["spatial"]]
            for n, y, p in zip(names, ys, r["heldout_spatial"]):
                print(f"    {n}: rated {y:.1f}, held out {p:.1f}")


if __name__ == "__main__":
    main()
