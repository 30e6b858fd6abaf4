"""Enhancement demo of the spatial losses (issue 17): a small binaural speech-enhancement model
trained with L1 only, L1 + lambda * SpatialLoss and L1 + lambda * CueLoss on the same data, steps,
batches and seed, then scored on a held-out set (the paper's Table 4 protocol, scaled down to CPU).

Data (all from spaq's own parts, 48 kHz, 1 s clips): an espeak-ng speech clip
(:func:`spaq.data.sources.make_source`) at a random measured direction of the head (elevation
-30..60 deg), rendered by FFT multiplication with the head's HRIR pair; plus noise that is
spatially different: diffuse pink noise (:func:`spaq.train.localizer._diffuse_noise`, 12 random
directions of the same head) or a point noise source (pink noise, noise bursts or babble) at a
measured direction >= 40 deg away; SNR -5..10 dB (binaural power). Training heads ``ku100`` and
``sonicom-1``; the held-out set uses ``sonicom-2`` (never in training) and its own seed, so its
sentences, voices and noises are drawn independently. Target: the clean binaural speech.

Model: per-ear magnitude masks on the STFT (1024-point Hann, hop 256) of both ears: log
magnitudes of both ears -> Linear -> GRU -> Linear -> sigmoid masks (left, right), applied to
each ear's complex STFT (noisy phase), inverse STFT. Loss ``L1`` = mean |waveform error| + mean
|STFT-magnitude error|; the spatial variants add ``lambda`` x the loss, with ``lambda`` set so
the extra term equals L1 at initialisation (measured on the first batch with the untrained model,
rounded to one significant figure; same initial model for every variant).

Held-out scores, per variant and for the unprocessed noisy input, against the clean binaural
speech: ILD error (the registry's ``cues`` metric: median |dILD| dB over bands and frames; and
the activity-weighted mean |dILD| of :func:`spaq.auditory.binaural_features.binaural_features`),
IPD error (unit-vector distance, same weighting) and ITD error in microseconds (the IPD phase
difference / (2 pi fc) in the fine-structure bands below 1.3 kHz, same weighting), SI-SDR (dB,
mean of the ears), PESQ wb per ear and ``sqm`` (all registry metrics via :func:`spaq.score`).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/enhance_demo.py [--quick]
        [--out benchmarks/results/enhance_demo.md]   # the .json beside it
    python benchmarks/enhance_demo.py --report-only benchmarks/results/enhance_demo.json   # Markdown only
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time

import numpy as np
import torch
from torch import nn

import spaq
from spaq.auditory.binaural_features import binaural_features, feature_frontend
from spaq.data.sources import make_source
from spaq.losses import CueLoss, SpatialLoss
from spaq.spatial.angles import great_circle_deg
from spaq.spatial.hrtf import load_hrtf
from spaq.train.localizer import _diffuse_noise
from spaq.train.sqm import _fft_convolve

SR = 48000
N_FFT, HOP = 1024, 256
TRAIN_HEADS = ("ku100", "sonicom-1")
TEST_HEAD = "sonicom-2"
POINT_NOISES = ("pink_noise", "noise_bursts", "babble")


def cpu_s() -> float:
    """CPU seconds of this process and its finished children (espeak-ng runs as a child)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


# ----------------------------------------------------------------------------- data
def render(hrtf, rng: np.random.Generator, clip_s: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """One scene -> ``(noisy (2, T), clean (2, T), meta)`` float32."""
    n = int(round(clip_s * SR))
    pad = hrtf.taps
    ok = np.flatnonzero((hrtf.elevation_deg >= -30) & (hrtf.elevation_deg <= 60))
    k = int(rng.choice(ok))
    az, el = float(hrtf.azimuth_deg[k]), float(hrtf.elevation_deg[k])
    s, _ = make_source("speech", (n + pad) / SR, SR, rng, level_dbfs=-26.0)
    clean = _fft_convolve(s, hrtf.hrir[k])[:, pad: pad + n]
    snr = float(rng.uniform(-5.0, 10.0))
    meta = {"azimuth_deg": az, "elevation_deg": el, "snr_db": snr}
    if rng.random() < 0.5:
        noise = _diffuse_noise(n, hrtf, rng)
        meta["noise"] = "diffuse"
    else:
        sep = great_circle_deg(az, el, hrtf.azimuth_deg, hrtf.elevation_deg)
        kn = int(rng.choice(np.flatnonzero((sep >= 40) & (hrtf.elevation_deg >= -30) & (hrtf.elevation_deg <= 60))))
        kind = POINT_NOISES[int(rng.integers(len(POINT_NOISES)))]
        v, _ = make_source(kind, (n + pad) / SR, SR, rng, level_dbfs=-26.0)
        noise = _fft_convolve(v, hrtf.hrir[kn])[:, pad: pad + n]
        meta.update(noise=kind, noise_azimuth_deg=float(hrtf.azimuth_deg[kn]),
                    noise_elevation_deg=float(hrtf.elevation_deg[kn]))
    noise = noise * math.sqrt(np.mean(clean ** 2) / np.mean(noise ** 2) / 10 ** (snr / 10))
    return (clean + noise).astype(np.float32), clean.astype(np.float32), meta


def make_set(heads, n: int, seed: int, clip_s: float):
    """``n`` scenes, the heads in turn -> ``(noisy (n, 2, T), clean (n, 2, T), metas)``."""
    hs = [load_hrtf(h, SR) for h in heads]
    xs, ys, metas = [], [], []
    for i in range(n):
        x, y, m = render(hs[i % len(hs)], np.random.default_rng([seed, i]), clip_s)
        xs.append(x), ys.append(y), metas.append({"head": heads[i % len(hs)], **m})
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)), metas


# ----------------------------------------------------------------------------- model
class MaskNet(nn.Module):
    """Per-ear STFT magnitude masks from both ears' log magnitudes. ``(B, 2, T) -> (B, 2, T)``."""

    def __init__(self, hidden: int = 64):
        super().__init__()
        f = N_FFT // 2 + 1
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.inp = nn.Linear(2 * f, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 2 * f)

    def stft(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 2, T)`` -> complex ``(B, 2, F, frames)``."""
        b = x.shape[0]
        s = torch.stft(x.reshape(-1, x.shape[-1]), N_FFT, HOP, window=self.window, return_complex=True)
        return s.reshape(b, 2, *s.shape[-2:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t = x.shape
        s = self.stft(x)
        feat = torch.log(s.abs() ** 2 + 1e-8).flatten(1, 2).transpose(1, 2)  # (B, frames, 2F)
        h, _ = self.gru(torch.relu(self.inp(feat)))
        m = torch.sigmoid(self.out(h)).transpose(1, 2).unflatten(1, (2, -1))  # (B, 2, F, frames)
        y = torch.istft((s * m).flatten(0, 1), N_FFT, HOP, window=self.window, length=t)
        return y.reshape(b, 2, t)


def l1_loss(model: MaskNet, est: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """mean |waveform error| + mean |STFT magnitude error|."""
    return (est - target).abs().mean() + (model.stft(est).abs() - model.stft(target).abs()).abs().mean()


def train(variant: str, x: torch.Tensor, y: torch.Tensor, init_state: dict, extra, lam: float, steps: int,
          batch: int, seed: int, log=print) -> tuple[MaskNet, dict]:
    model = MaskNet()
    model.load_state_dict(init_state)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    hist = []
    t0 = cpu_s()
    for step in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=g)
        xb, yb = x[idx], y[idx]
        est = model(xb)
        l1 = l1_loss(model, est, yb)
        loss = l1
        term = None
        if extra is not None:
            term = extra(est, yb)
            loss = l1 + lam * term
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        hist.append([float(l1.detach()), None if term is None else float(term.detach())])
        if step % 50 == 0 or step == steps - 1:
            log(f"  {variant} step {step}: L1 {hist[-1][0]:.4f}" + ("" if term is None else f" extra {hist[-1][1]:.4f}")
                + f"  ({cpu_s() - t0:.0f} CPU s)")
    return model, {"cpu_s": cpu_s() - t0, "history": hist}


# ----------------------------------------------------------------------------- evaluation
def cue_errors(est: torch.Tensor, ref: torch.Tensor) -> dict:
    """Activity-weighted (CueLoss's weighting: target band-frames within 30 dB of its loudest)
    band-wise errors -> per-clip ``ild_db``, ``ipd`` (unit-vector distance), ``itd_us``
    (fine-structure bands below 1.3 kHz)."""
    fe = feature_frontend(SR)
    fest, _ = binaural_features(est, fe)
    fref, lev = binaural_features(ref, fe)
    top = lev.amax(dim=1)
    w = (top >= top.amax(dim=(1, 2), keepdim=True) - 30.0).to(torch.float64)
    fc = torch.as_tensor(np.asarray(fe.center_frequencies_hz), dtype=torch.float64).view(1, -1, 1)
    fest, fref = fest.double(), fref.double()
    d_ild = (fest[:, 0] - fref[:, 0]).abs()
    d_ipd = torch.sqrt((fest[:, 1] - fref[:, 1]) ** 2 + (fest[:, 2] - fref[:, 2]) ** 2)
    dphi = torch.atan2(fest[:, 2] * fref[:, 1] - fest[:, 1] * fref[:, 2],
                       fest[:, 1] * fref[:, 1] + fest[:, 2] * fref[:, 2]).abs()
    low = (fc < 1300.0).to(torch.float64).expand_as(w)
    d_itd = dphi / (2 * math.pi * fc) * 1e6

    def wmean(d, ww):
        return ((ww * d).sum(dim=(1, 2)) / ww.sum(dim=(1, 2)).clamp_min(1.0)).numpy()

    return {"ild_db": wmean(d_ild, w), "ipd": wmean(d_ipd, w), "itd_us": wmean(d_itd, w * low)}


def evaluate(est: torch.Tensor, ref: torch.Tensor) -> dict:
    """Per-clip scores of ``est (N, 2, T)`` against ``ref`` -> dict of ``(N,)`` arrays."""
    out = {k: v.tolist() for k, v in cue_errors(est, ref).items()}
    rep = spaq.score(ref.double().numpy(), est.double().numpy(), sample_rate=SR,
                     metrics=["cues", "si_sdr", "pesq", "sqm"], align=False, strict=True)
    arr = lambda v: np.atleast_1d(np.asarray(v, dtype=np.float64)).tolist()  # noqa: E731
    out["cues_median_ild_db"] = arr(rep["cues"].score)
    out["si_sdr_db"] = arr(rep["si_sdr"].score)
    out["pesq_left"] = arr(rep["pesq"].values["left"])
    out["pesq_right"] = arr(rep["pesq"].values["right"])
    out["sqm"] = arr(rep["sqm"].score)
    return out


COLUMNS = [("cues_median_ild_db", "ILD err, cues (dB)", 2), ("ild_db", "ILD err, band mean (dB)", 2),
           ("ipd", "IPD err (unit vec.)", 3), ("itd_us", "ITD err < 1.3 kHz (µs)", 0),
           ("si_sdr_db", "SI-SDR (dB)", 1), ("pesq_left", "PESQ L", 2), ("pesq_right", "PESQ R", 2),
           ("sqm", "sqm", 3)]


def table(rows: dict) -> str:
    lines = ["| system | " + " | ".join(c[1] for c in COLUMNS) + " |",
             "|---|" + "---:|" * len(COLUMNS)]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{np.mean(r[k]):.{d}f}" for k, _, d in COLUMNS) + " |")
    return "\n".join(lines)


def paired(rows: dict, base: str = "L1") -> str:
    """Per-clip differences of each system minus ``base``: mean and 95% interval (1.96 standard errors)."""
    keys = [c for c in COLUMNS if c[0] in ("cues_median_ild_db", "ild_db", "ipd", "itd_us", "si_sdr_db", "sqm")]
    lines = [f"| system - {base} | " + " | ".join(c[1] for c in keys) + " |", "|---|" + "---:|" * len(keys)]
    for name, r in rows.items():
        if name == base:
            continue
        cells = []
        for k, _, dgt in keys:
            d = np.asarray(r[k]) - np.asarray(rows[base][k])
            h = 1.96 * d.std(ddof=1) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
            cells.append(f"{d.mean():+.{dgt + 1}f} ± {h:.{dgt + 1}f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(res: dict, out: str) -> None:
    """``res`` (the JSON's dict) -> ``out`` (Markdown) and the JSON beside it, atomically."""
    from spaq.files import atomic_write

    st, rows, runs, cpu = res["settings"], res["rows"], res["runs"], res["cpu_s"]
    lams, it = st["lambda"], st["init_terms"]
    md = [
        "# Enhancement demo: L1 vs L1 + SpatialLoss vs L1 + CueLoss (issue 17)", "",
        "Generated by `PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/enhance_demo.py`"
        + (" --quick (SMOKE RUN, not results)" if res.get("quick") else "") + ".", "",
        f"Held-out: {st['n_test']} scenes on `{st['test_head']}` (never in training), own seed; means over clips; "
        "reference = the clean binaural speech.", "", table(rows), "",
        "Columns: `cues` = the registry's cues metric (median |dILD| over bands and frames); band mean = "
        "activity-weighted mean |dILD| of `binaural_features` (target band-frames within 30 dB of the loudest); "
        "IPD = unit-vector distance (0..2), same weighting; ITD = |IPD phase difference| / (2 pi fc) in the "
        "fine-structure bands below 1.3 kHz; SI-SDR mean of the ears; PESQ wb (16 kHz) per ear; sqm = the "
        "registry metric (cosine distance of sqm_v1 embeddings, lower is closer).", "",
        "Paired per-clip differences (mean ± 95% interval, 1.96 standard errors over the held-out clips):", "",
        paired(rows), "",
        "## Settings", "",
        f"- data: 1 espeak-ng speech clip of {st['clip_s']} s at a random measured direction (el -30..60 deg) + "
        "diffuse pink noise (50%) or a point noise (pink, bursts or babble) >= 40 deg away; SNR -5..10 dB; "
        f"48 kHz; {st['n_train']} training scenes on {', '.join(st['train_heads'])} (alternating).",
        f"- model: per-ear STFT magnitude masks (STFT {st['stft'][0]}/{st['stft'][1]}, Linear-GRU(64)-Linear, "
        f"sigmoid), {st['model_params']} parameters; the same initial weights, batches (seed {st['seed']}), "
        f"{st['steps']} steps of batch {st['batch']}, Adam lr {st['lr']:g}, grad-norm clip 5 for every variant.",
        f"- L1 = mean |waveform error| + mean |STFT magnitude error|; lambda = L1 / term at initialisation "
        f"(untrained model, first batch; L1 {st['init_l1']:.4f}, SpatialLoss {it['L1 + SpatialLoss']:.4f}, "
        f"CueLoss {it['L1 + CueLoss']:.4f}), one significant figure: "
        + ", ".join(f"{k}: lambda = {v:g}" for k, v in lams.items()) + ".",
        "- training losses (mean over the first 50 -> the last 50 steps): "
        + "; ".join(f"{n}: L1 {np.mean([h[0] for h in r['history'][:50]]):.4f} -> "
                    f"{np.mean([h[0] for h in r['history'][-50:]]):.4f}"
                    + ("" if r["history"][0][1] is None else
                       f", extra {np.mean([h[1] for h in r['history'][:50]]):.3f} -> "
                       f"{np.mean([h[1] for h in r['history'][-50:]]):.3f}")
                    for n, r in runs.items()) + ".",
        "", "## CPU time (1 thread)", "",
        f"- data generation: {cpu['data']:.0f} s (espeak-ng children included)",
        *[f"- train {n}: {v:.0f} s" for n, v in cpu["train"].items()],
        *[f"- evaluate {n}: {v:.0f} s" for n, v in cpu["eval"].items()],
        f"- total: {cpu['total']:.0f} s", "",
    ]

    def text(body):
        return lambda tmp: open(tmp, "w", encoding="utf-8").write(body)

    atomic_write(out, text("\n".join(md)))
    atomic_write(os.path.splitext(out)[0] + ".json", text(json.dumps(res, indent=1)))
    print(f"wrote {out}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    ap.add_argument("--n-train", type=int, default=600)
    ap.add_argument("--n-test", type=int, default=50)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--clip-s", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/enhance_demo.md")
    ap.add_argument("--report-only", metavar="JSON", help="rewrite the Markdown from a results JSON (no training)")
    a = ap.parse_args(argv)
    if a.report_only:
        with open(a.report_only, encoding="utf-8") as f:
            write_report(json.load(f), a.out)
        return 0
    if a.quick:
        a.n_train, a.n_test, a.steps, a.batch = 16, 4, 3, 4
    torch.set_num_threads(1)
    t_all = cpu_s()
    t0 = cpu_s()
    xtr, ytr, _ = make_set(TRAIN_HEADS, a.n_train, 1000 + a.seed, a.clip_s)
    xte, yte, mte = make_set((TEST_HEAD,), a.n_test, 9000 + a.seed, a.clip_s)
    cpu_data = cpu_s() - t0
    print(f"data: {a.n_train} train, {a.n_test} test scenes ({cpu_data:.0f} CPU s)")

    torch.manual_seed(a.seed)
    init = MaskNet()
    n_params = sum(p.numel() for p in init.parameters())
    init_state = {k: v.clone() for k, v in init.state_dict().items()}
    losses = {"L1": None, "L1 + SpatialLoss": SpatialLoss(), "L1 + CueLoss": CueLoss()}
    # lambda: the extra term equals L1 at initialisation (first training batch, untrained model)
    g = torch.Generator().manual_seed(a.seed)
    idx = torch.randint(0, xtr.shape[0], (a.batch,), generator=g)
    with torch.no_grad():
        est0 = init(xtr[idx])
        l1_0 = float(l1_loss(init, est0, ytr[idx]))
        init_terms = {k: float(f(est0, ytr[idx])) for k, f in losses.items() if f is not None}
    lams = {k: float(f"{l1_0 / v:.1g}") for k, v in init_terms.items()}
    print(f"init: L1 {l1_0:.4f}, terms {init_terms}, lambda {lams}")

    rows, runs = {}, {}
    t0 = cpu_s()
    with torch.no_grad():
        rows["noisy input"] = evaluate(xte, yte)
    cpu_eval = {"noisy input": cpu_s() - t0}
    for name, fn in losses.items():
        print(f"training {name}")
        model, info = train(name, xtr, ytr, init_state, fn, lams.get(name, 0.0), a.steps, a.batch, a.seed)
        t0 = cpu_s()
        with torch.no_grad():
            est = torch.cat([model(xte[i: i + 10]) for i in range(0, xte.shape[0], 10)])
        rows[name] = evaluate(est, yte)
        cpu_eval[name] = cpu_s() - t0
        runs[name] = {"cpu_train_s": info["cpu_s"], "lambda": lams.get(name, 0.0),
                      "final_l1_mean_last50": float(np.mean([h[0] for h in info["history"][-50:]])),
                      "history": info["history"]}
        print(table({name: rows[name]}))
    cpu_total = cpu_s() - t_all

    print(table(rows))
    settings = {"train_heads": list(TRAIN_HEADS), "test_head": TEST_HEAD, "n_train": a.n_train, "n_test": a.n_test,
                "clip_s": a.clip_s, "sample_rate": SR, "snr_db": [-5, 10], "steps": a.steps, "batch": a.batch,
                "seed": a.seed, "model_params": n_params, "stft": [N_FFT, HOP], "lr": 1e-3,
                "init_l1": l1_0, "init_terms": init_terms, "lambda": lams}
    res = {"settings": settings, "rows": rows, "runs": runs,
           "means": {n: {k: float(np.mean(v)) for k, v in r.items()} for n, r in rows.items()},
           "cpu_s": {"data": cpu_data, "eval": cpu_eval, "train": {n: r["cpu_train_s"] for n, r in runs.items()},
                     "total": cpu_total},
           "test_scenes": mte, "quick": a.quick}
    if a.out:
        write_report(res, a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
