"""Try (issue 20, thirty-third session; not shipped): a monotone reverberance term for the
reference-free predictor's reverb ladder.

The per-bin decay time of ``try_predictor_reverb.py`` (``tail_s_*``, per band group: -60 / the 10th
percentile of the level slopes of every STFT bin) rises with the room on every held-out reverb sweep
that lengthens it (mid band: Spearman +1.00 on all 8 such sweeps of seed 9900), while the shipped
network's score does not fall with it (-0.34 there). Can a term that *must* fall with that decay time
carry the ladder without costing the other ladders? The index (``rho``):

    rho = g * max(0, log2(tail_s_mid / T0)),   T0 = 0.3 s,
    g   = clip((mod_mid - 2 dB) / 2 dB, 0, 1)   (gate "mod"; "none": g = 1)

doublings of the mid-band (1-4 kHz) decay time above 0.3 s; the gate removes stationary sound (pink
noise reads ~1.25 s: random level fluctuations, no free decays to hear), whose modulation depth
``mod_mid`` is 1.2-1.9 dB against >= 4.4 dB for speech and notes, reverberant or not. Two parts:

    PYTHONPATH=src python benchmarks/try_predictor_reverb_penalty.py posthoc --workdir DIR [--weights 0 2 4 8]
        the shipped weights' score logit minus ``w * rho`` (the network unchanged); held-out ladders of
        seeds 9900-9902 pooled over sweeps (as ``eval_predictor_seeds.py``) and MAE against the teacher
    PYTHONPATH=src python benchmarks/try_predictor_reverb_penalty.py joint --workdir DIR [--weights 2 4 8] [--members 5]
        the recipe's fit (``configs/train/predictor.yaml``'s ``fit``, 5 members) on its main corpus split
        only (not the ``extra`` splits), with ``rho`` subtracted from the score logit inside the fit:
        ``w`` learned (softplus, from 0.31) and fixed at each ``--weights``, against the same fit without it

    PYTHONPATH=src python benchmarks/try_predictor_reverb_penalty.py estimators --workdir DIR
        the decay-time estimators themselves on the held-out sweeps (speech and harmonic sources; reverb:
        the sweeps that lengthen the room): per
        family, the mean within-sweep Spearman of the estimate against severity and its mean range
        (octaves): ``tail_s_mid`` and a *free-decay* estimate, the median level slope (1-4 kHz bins,
        160 ms) after each offset (a bin's frame that is its maximum over 160 ms either side, within
        30 dB of the loudest and 6 dB above the level 160 ms before)

    PYTHONPATH=src python benchmarks/try_predictor_reverb_penalty.py consistent --workdir DIR [--weights 0.1 0.2 0.4]
        (thirty-fourth session) the features that move the same way along every ladder, reverb included
        (mean within-sweep Spearman per family), and a few of them subtracted from the score logit after
        the network

Tables with kept audio are cached in DIR (the main training split ~12 min of CPU, each held-out seed
~3 min, the first time). Results: ``benchmarks/results/predictor_seeds.md``.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_predictor as EP  # noqa: E402
import try_predictor_reverb as TR  # noqa: E402

SEEDS = (9900, 9901, 9902)
T0 = 0.3
GATE_DB = (2.0, 2.0)  # gate from mod_mid 2 dB (0) to 4 dB (1)


def rho(df, gate: str = "mod") -> np.ndarray:
    """The reverberance index of each row (see the module docstring)."""
    g = np.clip((df["mod_mid"].to_numpy(dtype=np.float64) - GATE_DB[0]) / GATE_DB[1], 0, 1) if gate == "mod" else 1.0
    return g * np.maximum(0.0, np.log2(df["tail_s_mid"].to_numpy(dtype=np.float64) / T0))


def tables(workdir: Path, train: bool = False):
    """``{seed: held-out table}`` (+ the main training split's table) with the per-bin decay times."""
    from spaq.train.predictor import CorpusSplit, PredictorTrainConfig, split_audio_dir, split_cache_path, split_records

    quiet = lambda m: None  # noqa: E731

    def table(split, stem):
        df = split_records(split, workdir / f"{stem}.csv", quiet, keep_audio=True)
        return TR._with_tail(df, split_audio_dir(split_cache_path(split, workdir / f"{stem}.csv")))

    tests = {s: table(CorpusSplit(**{**EP.HELD_OUT, "seed": s}), f"predictor_heldout_seed{s}") for s in SEEDS}
    if not train:
        return tests, None, None
    tc = PredictorTrainConfig.from_yaml(ROOT / "configs/train/predictor.yaml")
    return tests, table(tc.corpus, "predictor_train"), tc


def ladders_of(z_by_seed: dict, tests: dict) -> tuple[dict, float]:
    """Pooled per-sweep ladders and the mean MAE against the teacher for score logits per seed."""
    pooled, mae = {f: [] for f in EP.LADDERS}, []
    for s, t in tests.items():
        p = {"raw": 100.0 / (1.0 + np.exp(-z_by_seed[s]))}
        lad = EP.ladders(p, t, seed=s, per_sweep=True)
        for f in EP.LADDERS:
            pooled[f] += lad[f].get("sweeps", [])
        mae.append(float(np.mean(np.abs(p["raw"] - t["target"].to_numpy(dtype=np.float64)))))
    return pooled, float(np.mean(mae))


def _row(label: str, pooled: dict, mae: float) -> str:
    return f"| {label} | {mae:.1f} | " + " | ".join(f"{np.mean(pooled[f]):+.2f}" for f in EP.LADDERS) + " |"


def _header(first: str) -> str:
    return (f"| {first} | MAE | " + " | ".join(EP.LADDERS) + " |\n|---|---|" + "---|" * len(EP.LADDERS))


def _logits(tests: dict) -> dict:
    """The packaged weights' score logit per held-out table (a score of 99.99 in float32 would tie)."""
    from spaq.metrics.functional.predictor import FEATURE_NAMES
    from spaq.models import checkpoint
    from spaq.weights import resolve

    model, _ = checkpoint.load(resolve("predictor_v1", offline=True).path, architecture="predictor")
    z = {}
    for s, t in tests.items():
        with torch.no_grad():
            z[s] = model(torch.tensor(t[list(FEATURE_NAMES)].to_numpy(dtype=np.float64),
                                      dtype=torch.float32))["score_logit"].double().numpy()
    return z


def posthoc(workdir: Path, weights):
    tests, _, _ = tables(workdir)
    z = _logits(tests)
    print(_header("w, gate"))
    for gate in ("mod", "none"):
        for w in weights:
            if w == 0 and gate == "none":
                continue
            pooled, mae = ladders_of({s: z[s] - w * rho(tests[s], gate) for s in tests}, tests)
            print(_row(f"{w:g}, {gate}", pooled, mae), flush=True)


@contextlib.contextmanager
def _monotone_path(rho_of_rows: dict, fixed: float | None):
    """While active, every new :class:`PredictorNet` subtracts ``softplus(a) * rho`` from its score
    logit, ``rho`` the tensor ``rho_of_rows["rho"]`` (rows of the batch it is called with); ``a``
    trainable (from softplus 0.31) or fixed so that softplus(a) = ``fixed``."""
    from spaq.models.predictor import PredictorNet

    fwd, init = PredictorNet.forward, PredictorNet.__init__

    def new_init(self, cfg):
        init(self, cfg)
        if fixed is None:
            self.rho_a = torch.nn.Parameter(torch.tensor(-1.0))
        else:
            self.register_buffer("rho_a", torch.tensor(float(np.log(np.expm1(fixed)))))

    def new_fwd(self, feats):
        o = fwd(self, feats)
        z = o["score_logit"] - torch.nn.functional.softplus(self.rho_a) * rho_of_rows["rho"]
        return {**o, "score_logit": z, "raw": torch.sigmoid(z), "score": 100 * torch.sigmoid(z)}

    PredictorNet.__init__, PredictorNet.forward = new_init, new_fwd
    try:
        yield
    finally:
        PredictorNet.__init__, PredictorNet.forward = init, fwd


def joint(workdir: Path, weights, members: int):
    from spaq.metrics.functional.predictor import FEATURE_NAMES
    from spaq.train.predictor import FitSection, fit_predictor, fit_rows

    torch.set_num_threads(2)
    tests, df, tc = tables(workdir, train=True)
    fit = FitSection(**{**asdict(tc.fit), "members": 1})
    rows = fit_rows(df, tc.corpus, fit, lambda m: None)
    print(_header(f"joint fit ({members} members, main split), w"))
    for fixed in [0.0, None] + list(weights):
        state, zs = {"rho": torch.tensor(rho(rows), dtype=torch.float32)}, {s: [] for s in tests}
        with (_monotone_path(state, fixed) if fixed != 0.0 else contextlib.nullcontext()):
            for k in range(members):
                state["rho"] = torch.tensor(rho(rows), dtype=torch.float32)
                m, _ = fit_predictor(rows, FitSection(**{**asdict(fit), "seed": int(fit.seed) + k}), lambda s: None)
                ws = float(torch.nn.functional.softplus(m.rho_a.detach())) if fixed != 0.0 else 0.0
                for s, t in tests.items():
                    state["rho"] = torch.tensor(rho(t), dtype=torch.float32)
                    X = torch.tensor(t[list(FEATURE_NAMES)].to_numpy(dtype=np.float64), dtype=torch.float32)
                    with torch.no_grad():
                        zs[s].append(m(X)["score_logit"].double().numpy())
        pooled, mae = ladders_of({s: np.mean(v, 0) for s, v in zs.items()}, tests)
        label = "none (the recipe's fit)" if fixed == 0.0 else (f"learned ({ws:.2f})" if fixed is None else f"fixed {fixed:g}")
        print(_row(label, pooled, mae), flush=True)


def _fit_member(rows, fit, rho_rows, w: float, absolute) -> "object":
    """One member of the recipe's fit (``spaq.train.predictor.fit_predictor``'s loss and optimiser)
    whose score logit is ``network - w * rho``, with the absolute terms (class CE, score MSE, logit
    MSE) only on the rows where ``absolute`` is True; the ranking term on every sweep."""
    from spaq.metrics.functional.predictor import FEATURE_NAMES
    from spaq.models.predictor import PredictorConfig, PredictorNet
    from spaq.train.predictor import _severity_pairs, feature_columns, score_class

    torch.manual_seed(int(fit.seed))
    idx, names = feature_columns(fit.groups)
    model = PredictorNet(PredictorConfig(n_features=len(FEATURE_NAMES), feature_index=idx, feature_names=names,
                                         hidden=list(fit.hidden), dropout=float(fit.dropout)))
    X = torch.tensor(rows[list(FEATURE_NAMES)].to_numpy(dtype=np.float64), dtype=torch.float32)
    y = torch.tensor(rows["target"].to_numpy(dtype=np.float64), dtype=torch.float32)
    c = torch.tensor(score_class(rows["target"].to_numpy()), dtype=torch.long)
    r = torch.tensor(rho_rows, dtype=torch.float32)
    m = torch.tensor(np.asarray(absolute, dtype=bool))
    lc = float(fit.logit_clip)
    y_logit = torch.logit(torch.clamp(y, lc, 100.0 - lc) / 100)
    sub = X[:, model.index]
    model.set_scaler(sub.mean(0), sub.std(0, unbiased=False))
    opt = torch.optim.AdamW(model.parameters(), lr=float(fit.lr), weight_decay=float(fit.weight_decay))
    counts = torch.bincount(c[m], minlength=3).float().clamp_min(1)
    cw = counts.sum() / (3 * counts)
    lo_i, hi_i = _severity_pairs(rows)
    model.train()
    for _ in range(int(fit.epochs)):
        opt.zero_grad()
        out = model(X)
        z = out["score_logit"] - w * r
        ce = torch.nn.functional.cross_entropy(out["logits"][m], c[m], weight=cw)
        loss = ce + float(fit.reg_weight) * torch.mean((torch.sigmoid(z[m]) - y[m] / 100) ** 2)
        loss = loss + float(fit.logit_weight) * torch.mean((z[m] - y_logit[m]) ** 2)
        loss = loss + float(fit.rank_weight) * torch.mean(torch.relu(float(fit.rank_margin) - (z[lo_i] - z[hi_i])))
        loss.backward()
        opt.step()
    model.eval()
    return model


def relative(workdir: Path, weights, members: int):
    """The joint fit with rooms judged only relatively: rows in a room (the reverb sweeps, the clean
    room anchors) leave the absolute terms, so nothing asks the network to cancel ``w * rho`` there."""
    from spaq.metrics.functional.predictor import FEATURE_NAMES
    from spaq.train.predictor import FitSection, fit_rows

    torch.set_num_threads(2)
    tests, df, tc = tables(workdir, train=True)
    df = df.assign(rt60=TR.row_rt60(df, tc.corpus))
    fit = FitSection(**{**asdict(tc.fit), "members": 1})
    rows = fit_rows(df, tc.corpus, fit, lambda m: None)
    room = rows["rt60"].to_numpy() > 0
    print(f"{int(room.sum())} of {len(rows)} training rows in a room")
    print(_header(f"relative rooms ({members} members, main split), w"))
    for w in [0.0] + list(weights):
        zs = {s: [] for s in tests}
        for k in range(members):
            m = _fit_member(rows, FitSection(**{**asdict(fit), "seed": int(fit.seed) + k}), rho(rows), w, ~room)
            for s, t in tests.items():
                X = torch.tensor(t[list(FEATURE_NAMES)].to_numpy(dtype=np.float64), dtype=torch.float32)
                with torch.no_grad():
                    zs[s].append(m(X)["score_logit"].double().numpy() - w * rho(t))
        pooled, mae = ladders_of({s: np.mean(v, 0) for s, v in zs.items()}, tests)
        print(_row(f"{w:g}", pooled, mae), flush=True)


def free_decay_s(m: torch.Tensor, sample_rate: int, lo: float = 1000.0, hi: float = 4000.0, window_s: float = 0.04,
                 slope_s: float = 0.16, rise_db: float = 6.0, act_db: float = 30.0) -> np.ndarray:
    """``(B, T)`` mono -> ``(B,)`` decay time (s, 3 when fewer than 5 offsets): -60 / the median
    level slope of the ``slope_s`` after each offset of a 1-4 kHz STFT bin (see the module docstring)."""
    lv, f, kern = TR.bin_levels(m, sample_rate, window_s, slope_s)  # the per-bin levels of ``tail_s_*``
    lv = lv[:, (f >= lo) & (f < hi), :]
    top = lv.amax((-2, -1), keepdim=True)
    lv = torch.maximum(lv, top - 60.0)
    B, K, N = lv.shape
    k = kern.shape[-1]
    sl = torch.nn.functional.conv1d(lv.reshape(B * K, 1, N), kern[:1]).reshape(B, K, -1)
    n = sl.shape[-1]
    level = lv[..., :n]
    past = torch.nn.functional.pad(lv, (k, 0), value=-1e9).unfold(-1, k + 1, 1)[..., :n, :]
    fut = lv.unfold(-1, k, 1)[..., :n, :]
    peak = (level >= past.amax(-1)) & (level >= fut.amax(-1)) & (level >= top - act_db) & (level - past[..., 0] >= rise_db)
    out = []
    for b in range(B):
        v = sl[b][peak[b]]
        out.append(60.0 / max(20.0, -float(torch.quantile(v, 0.5))) if v.numel() >= 5 else 3.0)
    return np.asarray(out)


def estimators(workdir: Path):
    from scipy.stats import spearmanr

    from spaq.train.predictor import CorpusSplit, split_audio_dir, split_cache_path

    tests, _, _ = tables(workdir)
    rows = []
    for s, t in tests.items():
        audio = split_audio_dir(split_cache_path(CorpusSplit(**{**EP.HELD_OUT, "seed": s}),
                                                 workdir / f"predictor_heldout_seed{s}.csv"))
        longer = EP.reverb_longer(t, s)  # reverb: the sweeps that lengthen the room, as the ladder
        t = t[(t["source"] != "pink_noise") & ((t["family"] != "reverb") | t["sweep"].map(lambda w: longer.get(int(w), False)))]
        for (sw, kind), g in t.groupby(["sweep", "format"]):
            fd = free_decay_s(TR._mono(np.load(Path(audio) / f"{int(sw):05d}_{kind}.npy")), 48000)
            sev = sorted(g["severity"].unique())
            g = g.sort_values("severity")
            est = {"tail_s_mid": g["tail_s_mid"].to_numpy(dtype=np.float64),
                   "free decay": fd[[sev.index(v) for v in g["severity"]]]}
            r = {"family": g["family"].iloc[0]}
            for name, v in est.items():
                r[name] = spearmanr(g["severity"], v)[0] if np.ptp(v) > 0 else 0.0
                r[name + " range"] = float(np.ptp(np.log2(v)))
            rows.append(r)
    import pandas as pd

    df = pd.DataFrame(rows).groupby("family").mean()
    print("| estimator | " + " | ".join(df.index) + " |\n|---|" + "---|" * len(df.index))
    for c in df.columns:
        print(f"| {c} | " + " | ".join(f"{v:+.2f}" for v in df[c]) + " |")


def consistent(workdir: Path, weights):
    """Features that fall (or rise) along every ladder, reverb included, as a term after the network: per
    feature, the mean within-sweep Spearman against severity per family (speech and harmonic sources;
    reverb: the lengthening sweeps), then the score logit minus ``w * sign * feature`` for a few of them."""
    from scipy.stats import spearmanr

    from spaq.metrics.functional.predictor import FEATURE_NAMES

    tests, _, _ = tables(workdir)
    rows = {}
    for f in list(FEATURE_NAMES) + ["tail_s_mid"]:
        rows[f] = {}
        for fam in EP.LADDERS:
            rs = []
            for s, t in tests.items():
                g0 = t[(t["family"] == fam) & (t["source"] != "pink_noise")]
                if fam == "reverb":
                    longer = EP.reverb_longer(t, s)
                    g0 = g0[g0["sweep"].map(lambda w: longer.get(int(w), False))]
                rs += [spearmanr(g["severity"], g[f])[0] for _, g in g0.groupby(["sweep", "format"]) if g[f].nunique() > 1]
            rows[f][fam] = float(np.mean(rs)) if rs else float("nan")
    print("| feature | " + " | ".join(EP.LADDERS) + " |\n|---|" + "---|" * len(EP.LADDERS))
    for f, r in rows.items():
        if abs(r["reverb"]) > 0.6:
            print(f"| {f} | " + " | ".join(f"{r[fam]:+.2f}" for fam in EP.LADDERS) + " |")
    z = _logits(tests)
    print()
    print(_header("term, w"))
    print(_row("none", *ladders_of(z, tests)))
    for expr, sign in (("mod_mid", -1), ("range_mid", -1), ("range_mid - range_low", -1), ("range_mid - crest_db", -1)):
        for w in weights:
            zz = {s: z[s] - w * sign * tests[s].eval(expr).to_numpy(dtype=np.float64) for s in tests}
            print(_row(f"-({expr}), {w:g}" if sign < 0 else f"{expr}, {w:g}", *ladders_of(zz, tests)), flush=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="part", required=True)
    for name, default in (("posthoc", [0, 2, 4, 8]), ("joint", [2, 4, 8]), ("relative", [2, 4, 8]), ("estimators", []),
                          ("consistent", [0.1, 0.2, 0.4])):
        p = sub.add_parser(name)
        p.add_argument("--workdir", required=True)
        p.add_argument("--weights", type=float, nargs="+", default=default)
        p.add_argument("--members", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(1)
    wd = Path(a.workdir)
    wd.mkdir(parents=True, exist_ok=True)
    if a.part == "posthoc":
        posthoc(wd, a.weights)
    elif a.part == "estimators":
        estimators(wd)
    elif a.part == "consistent":
        consistent(wd, a.weights)
    elif a.part == "joint":
        joint(wd, a.weights, a.members)
    else:
        relative(wd, a.weights, a.members)


if __name__ == "__main__":
    main()
