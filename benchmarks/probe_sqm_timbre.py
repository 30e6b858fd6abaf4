"""Probe: does ``sqm`` read a timbral change at the same direction as a move? (issue 17, "timbre read as space")

The forty-ninth session's probe (README, "Timbre read as space") was not committed; this is a documented
equivalent. Every signal is anechoic binaural on the held-out head ``sonicom-2`` (never in any training bank),
rendered by FFT multiplication of a mono source with the head's measured HRIR, from content drawn with a
seed and stream no training bank or evaluation uses (``numpy.random.default_rng([seed, 4242, case])``).

For each case (a source type x a reference direction on the horizontal plane) the reference ``ref`` is
compared, with the metric's own arithmetic (:func:`spaq.metrics.functional.sqm.sqm_distances`, the score),
with:

* ``ref`` itself changed in timbre at the same direction (the same change on both ears, zero-phase, so the
  interaural cues are kept): low-pass 16 / 8 / 4 / 2 / 1 kHz (4th-order Butterworth, zero-phase, as the
  ``lowpass`` degradation), a tilt EQ of +-6 dB (:func:`spaq.train.sqm.tilt_eq`: +-6 dB at 16 kHz about
  1 kHz), white noise independent per ear at 20 / 10 dB SNR, the 4 kHz low-pass with noise at 20 dB SNR
  (the README's figure), 16-bit requantisation; and two changes of a kind the timbre augmentation never
  draws: a 500 Hz high-pass and a 300-3400 Hz band (telephone);
* the same source at the same direction, other content (another draw of the same type);
* the same source moved by 10 / 20 / 45 deg in azimuth (the measured direction nearest to
  ``azimuth + delta`` at the same elevation; the angles actually used are reported).

Summaries: the share of (case, change) pairs whose distance exceeds that case's 20 deg move (also 10 deg),
over the changes of the augmentation's families and over the two unseen ones; the Spearman correlation of
distance with the low-pass ladder's severity (16 -> 1 kHz; +1 when the ladder is ordered), per case (mean) and
of the mean distances; the README's single case (speech at 30 deg) alone.

    PYTHONPATH=src python benchmarks/probe_sqm_timbre.py [--checkpoint X.pt] [--json F.json] [--md F.md]

About 1-2 CPU minutes (24 cases x 19 signals of 2 s; one thread).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
import torch
from scipy.signal import butter, sosfiltfilt
from scipy.stats import spearmanr

from spaq.data.sources import make_source
from spaq.metrics.functional.sqm import sqm_distances
from spaq.models.sqm import load_pretrained
from spaq.spatial.angles import great_circle_deg
from spaq.spatial.hrtf import load_hrtf
from spaq.train.sqm import _fft_convolve, add_ear_noise, lowpass, requantise, tilt_eq

SR = 48000
KINDS = ("speech", "harmonic", "chord", "percussive", "pink_noise", "noise_bursts")
AZIMUTHS = (30.0, -60.0, 120.0, -150.0)
MOVES = (10.0, 20.0, 45.0)
LADDER = (16000.0, 8000.0, 4000.0, 2000.0, 1000.0)
TRAINED = ["lp16k", "lp8k", "lp4k", "lp2k", "lp1k", "tilt+6", "tilt-6", "noise20", "noise10", "lp4k+noise20",
           "requant16"]
UNSEEN = ["hp500", "band300-3400"]


def _band(y, lo, hi):
    sos = butter(4, [lo, hi], "bandpass", fs=SR, output="sos") if hi else butter(4, lo, "highpass", fs=SR,
                                                                                  output="sos")
    return sosfiltfilt(sos, y, axis=-1)


def changes(y: np.ndarray, rng: np.random.Generator) -> dict:
    """The timbral changes of the binaural ``y (2, T)`` at its own direction."""
    out = {f"lp{int(f // 1000)}k": lowpass(y, f, SR) for f in LADDER}
    out["tilt+6"], out["tilt-6"] = tilt_eq(y, 6.0, SR), tilt_eq(y, -6.0, SR)
    out["noise20"] = add_ear_noise(y, 20.0, rng)
    out["noise10"] = add_ear_noise(y, 10.0, rng)
    out["lp4k+noise20"] = add_ear_noise(lowpass(y, 4000.0, SR), 20.0, rng)
    out["requant16"] = requantise(y)
    out["hp500"] = _band(y, 500.0, None)
    out["band300-3400"] = _band(y, 300.0, 3400.0)
    return out


def nearest(h, az: float, el: float) -> int:
    """The measured direction of ``h`` nearest to ``(az, el)``."""
    return int(np.argmin(great_circle_deg(h.azimuth_deg, h.elevation_deg, az, el)))


def render(h, s: np.ndarray, k: int, n: int, pad: int) -> np.ndarray:
    return _fft_convolve(s, h.hrir[k])[:, pad: pad + n]


def run(model, seed: int, clip_s: float, head: str) -> dict:
    h = load_hrtf(head, SR)
    n, pad = int(round(clip_s * SR)), int(0.2 * SR)
    cases = []
    case = 0
    for az in AZIMUTHS:
        for kind in KINDS:
            rng = np.random.default_rng([seed, 4242, case])
            s, _ = make_source(kind, (n + pad) / SR, SR, rng, level_dbfs=-26.0)
            s2, _ = make_source(kind, (n + pad) / SR, SR, rng, level_dbfs=-26.0)
            k = nearest(h, az, 0.0)
            a0, e0 = float(h.azimuth_deg[k]), float(h.elevation_deg[k])
            ref = render(h, s, k, n, pad)
            degs = {"other content": render(h, s2, k, n, pad)}
            angles = {}
            for d in MOVES:
                km = nearest(h, a0 + d, e0)
                angles[f"move {d:g} deg"] = float(great_circle_deg(a0, e0, h.azimuth_deg[km], h.elevation_deg[km]))
                degs[f"move {d:g} deg"] = render(h, s, km, n, pad)
            degs.update(changes(ref, rng))
            names = list(degs)
            D = torch.from_numpy(np.stack([degs[m] for m in names]).astype(np.float32))
            R = torch.from_numpy(ref.astype(np.float32))[None].expand(len(names), -1, -1).contiguous()
            with torch.no_grad():
                d = sqm_distances(model, R, D)["score"].numpy()
            cases.append({"kind": kind, "azimuth_deg": a0, "elevation_deg": e0, "move_angles_deg": angles,
                          "distance": {m: float(v) for m, v in zip(names, d)}})
            case += 1
    return summarise(cases)


def summarise(cases: list) -> dict:
    names = list(cases[0]["distance"])
    M = np.array([[c["distance"][m] for m in names] for c in cases])
    col = {m: M[:, i] for i, m in enumerate(names)}

    def share(keys, move):
        x = np.stack([col[m] > col[move] for m in keys])
        return float(x.mean())

    sev = np.arange(len(LADDER))
    lad = np.stack([col[f"lp{int(f // 1000)}k"] for f in LADDER], 1)  # (cases, 5)
    per_case = [spearmanr(sev, r)[0] for r in lad]
    head = next(c for c in cases if c["kind"] == "speech" and abs(c["azimuth_deg"] - 30.0) < 3)
    return {
        "cases": cases,
        "table": {m: {"median": float(np.median(col[m])), "mean": float(np.mean(col[m])),
                      "speech_30deg": float(head["distance"][m])} for m in names},
        "summary": {
            "share_trained_changes_above_20deg_move": share(TRAINED, "move 20 deg"),
            "share_trained_changes_above_10deg_move": share(TRAINED, "move 10 deg"),
            "share_unseen_changes_above_20deg_move": share(UNSEEN, "move 20 deg"),
            "share_lp4k_noise20_above_20deg_move": share(["lp4k+noise20"], "move 20 deg"),
            "share_lp2k_above_45deg_move": share(["lp2k"], "move 45 deg"),
            "lowpass_ladder_spearman_mean_over_cases": float(np.nanmean(per_case)),
            "lowpass_ladder_spearman_of_mean_distances": float(spearmanr(sev, lad.mean(0))[0]),
            "lowpass_ladder_ordered_share": float(np.mean([np.all(np.diff(r) > 0) for r in lad])),
            "lowpass_ladder_spearman_speech_30deg": float(spearmanr(sev, lad[cases.index(head)])[0]),
            "median_move_angles_deg": {m: float(np.median([c["move_angles_deg"][m] for c in cases]))
                                       for m in cases[0]["move_angles_deg"]},
            "n_cases": len(cases),
        },
    }


def to_markdown(res: dict, label: str) -> str:
    rows = [f"| change at the same direction, or move ({label}) | median | mean | speech at 30 deg |", "|---|---|---|---|"]
    for m, v in res["table"].items():
        rows.append(f"| {m} | {v['median']:.3f} | {v['mean']:.3f} | {v['speech_30deg']:.3f} |")
    rows.append("")
    rows += [f"- {k}: {json.dumps(v) if isinstance(v, dict) else (f'{v:.3f}' if isinstance(v, float) else v)}"
             for k, v in res["summary"].items()]
    return "\n".join(rows) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default=None, help="an sqm checkpoint (default: the shipped sqm_v1)")
    ap.add_argument("--head", default="sonicom-2")
    ap.add_argument("--seed", type=int, default=4949)
    ap.add_argument("--clip", type=float, default=2.0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--md", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    model, w = load_pretrained(a.checkpoint)
    c0 = time.process_time()
    res = run(model, a.seed, a.clip, a.head)
    res.update({"checkpoint": str(w.path), "sha256": w.sha256, "head": a.head, "seed": a.seed, "clip_s": a.clip,
                "cpu_s": round(time.process_time() - c0, 1)})
    label = os.path.basename(str(w.path))
    md = to_markdown(res, label)
    print(md)
    print(json.dumps(res["summary"], indent=1), file=sys.stderr)
    if a.md:
        with open(a.md, "w") as f:
            f.write(md)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
