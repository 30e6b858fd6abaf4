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
so the first row reproduces the shipped held-out figures (speech LOSO 0.708, spatial LOTO 0.890).

Variants (twenty-eighth session):

* ``stationary narrow dips, w bands``: the level difference of each band and frame split into its mean
  over the item's active frames (a fixed coloration) and the rest; dips of the fixed part narrower than
  ``w`` ERB bands are removed (morphological opening over bands), the rest is compared as before.
  Narrow dips of a frequency *response* are much less audible than peaks or broad dips (Bücklein 1981);
  the sixteenth session applied that to every frame, which cost the speech codecs, whose narrow holes
  change from frame to frame.
* ``no fixed part``: the fixed coloration removed altogether (the upper bound of that idea).
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


def dump(path: Path, pc_root: Path) -> dict:
    """The cues (``p_ear``, ``ic``, ``xc``, floor) and pooled features of every item of both tests."""
    if path.is_file():
        return pickle.load(open(path, "rb"))
    from spaq.metrics.quality import Quality

    cap = {}
    orig = fq._maps_from_cues

    def wrap(c, floor, gain_db):
        cap["c"] = {k: v.detach().cpu().numpy() for k, v in c.items() if torch.is_tensor(v)}
        cap["floor"] = floor.cpu().numpy()
        return orig(c, floor, gain_db)

    fq._maps_from_cues = wrap
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
        fq._maps_from_cues = orig
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


def tables(data: dict, variant=None):
    import pandas as pd

    out = []
    for name in ("speech", "spatial"):
        rows = []
        for it in data[name]:
            r = {**it["row"], **{k: it["feats"][k] for k in tq.TIMBRAL_FEATURES + tq.SPATIAL_FEATURES
                                 if k in it["feats"]}}
            r["added_db"], r["missing_db"] = timbral(it, variant)
            rows.append(r)
        out.append(pd.DataFrame(rows))
    return out


def cross_validate(mt, pt, v0: np.ndarray, seed: int = 7, starts: int = 8) -> dict:
    from scipy.stats import pearsonr

    tests = [tq._matrices(mt), tq._matrices(pt)]
    groups = [mt["stimulus"].to_numpy(), pt["trial"].to_numpy()]
    args = ("statistic", seed, starts, None, 0.05, "offset_normalised")
    held = tq.joint_cv(tests, groups, v0, *args)
    coded = (mt["condition"] != "Reference").to_numpy()
    return {"speech_loso": float(pearsonr(held[0][coded], tests[0][2][coded])[0]),
            "spatial_loto": float(pearsonr(held[1], tests[1][2])[0])}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--pc", type=Path, default=None, help="rebuilt spatial-codings items (default: the spaq cache)")
    a = ap.parse_args(argv)
    from spaq.cache import cache_dir

    data = dump(a.workdir / "quality_cues.pkl", a.pc or cache_dir() / "param_coding")
    for it in data["speech"][:2] + data["spatial"][:2]:  # the recomputation is the metric's
        got = timbral(it)
        assert np.allclose(got, (it["feats"]["added_db"], it["feats"]["missing_db"]), atol=1e-9), got
    params = json.loads((ROOT / "src/spaq/resources/weights/quality_v1.json").read_text())
    v0 = np.array([params["provenance"]["synthetic_spatial_weights"][n] for n in tq.SPATIAL_FEATURES])
    print("| variant | speech LOSO | spatial LOTO |\n|---|---|---|")
    for label, var in [("shipped", None)] + [(f"stationary narrow dips, {w} bands", stationary_dips(w)) for w in (3, 5, 7)] + \
            [("no fixed part", no_fixed_part)]:
        r = cross_validate(*tables(data, var), v0)
        print(f"| {label} | {r['speech_loso']:.3f} | {r['spatial_loto']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
