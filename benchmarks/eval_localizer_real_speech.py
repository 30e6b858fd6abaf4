"""Binaural localisation of real speech (issue 16's protocol: real speech, 1 s items, measured HRTF
directions, no interpolation), where ``eval_localizer_v2.py``'s sets use the corpus engine's sources
(espeak speech ends at about 10 kHz).

The speech is the 8 reference recordings of the shared speech-codec MUSHRA half
(``../shared/listening-tests/speech-codec-mushra/audio/stim_0*/ref.wav``: TSP speech, 24 kHz, so it ends at
12 kHz), upsampled to 48 kHz. Each item: a 1.6 s excerpt at a random offset of one recording (in turn),
convolved with the HRIR of a random measured direction of the head, its loudest 1 s kept (as
``eval_localizer_v2.py`` does). Nothing here was used to choose any setting of the localiser.

    PYTHONPATH=src python benchmarks/eval_localizer_real_speech.py [--heads ku100 sonicom-2 kemar]
        [--seeds 5 6 7] [--n 120] [--methods templates auto] [--out benchmarks/results/localizer_real_speech.md]
"""
from __future__ import annotations

import argparse
import glob
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from scipy.signal import oaconvolve, resample_poly

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import eval_localizer_v2 as E  # noqa: E402

from spaq.files import atomic_write  # noqa: E402
from spaq.spatial.angles import sph2cart  # noqa: E402
from spaq.spatial.hrtf import load_hrtf  # noqa: E402
from spaq.train.localizer import evaluate_directions  # noqa: E402

FS = 48000
SPEECH = ROOT.parent / "shared" / "listening-tests" / "speech-codec-mushra" / "audio"


def load_speech(folder: Path) -> list:
    """The references, mono, at 48 kHz."""
    out = []
    for f in sorted(glob.glob(str(folder / "stim_0*" / "ref.wav"))):
        x, fs = sf.read(f, always_2d=True)
        x = x[:, 0]
        out.append(resample_poly(x, FS, fs) if fs != FS else x)
    if not out:
        raise SystemExit(f"no reference recordings under {folder} (the shared folder beside the repository)")
    return out


def render(speech: list, head: str, seed: int, n: int):
    """``(x (n, 2, FS), directions (n, 3))`` for ``head`` (a named HRTF set)."""
    h = load_hrtf(head, FS)
    rng = np.random.default_rng([seed, sum(map(ord, head))])
    X, D = [], []
    for i in range(n):
        s = speech[i % len(speech)]
        a = int(rng.integers(0, len(s) - int(1.6 * FS)))
        k = int(rng.integers(h.n_directions))
        y = oaconvolve(s[None, a:a + int(1.6 * FS)], h.hrir[k], axes=-1)
        X.append(E._loudest(y))
        D.append(sph2cart(h.azimuth_deg[k], h.elevation_deg[k]))
    return np.stack(X), np.stack(D)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heads", nargs="+", default=["ku100", "sonicom-2", "kemar"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[5, 6, 7])
    ap.add_argument("--n", type=int, default=120, help="items per head and seed")
    ap.add_argument("--methods", nargs="+", default=["templates", "auto"])
    ap.add_argument("--speech", type=Path, default=SPEECH)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "localizer_real_speech.md"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    speech = load_speech(a.speech)
    rows = []
    for head in a.heads:
        for m in a.methods:
            per_seed = []
            for seed in a.seeds:
                x, d = render(speech, head, seed, a.n)
                t0 = time.time()
                pred, _, _ = E.run_method(m, x, 1)
                st = evaluate_directions(pred[:, 0], d)
                per_seed.append(st)
                print(f"{head} {m} seed {seed}: median {st['median_deg']:.1f} deg, front-back "
                      f"{100 * st['front_back_rate']:.1f} %, lateral {st['median_lateral_error_deg']:.1f} deg "
                      f"({time.time() - t0:.0f} s)", flush=True)
            rows.append((head, m, per_seed))
    lines = ["# Binaural localisation of real speech (`benchmarks/eval_localizer_real_speech.py`)", "",
             f"{a.n} items of 1 s per head and seed (seeds {', '.join(map(str, a.seeds))}): the 8 TSP reference "
             "recordings of the shared speech-codec MUSHRA half (24 kHz, so up to 12 kHz), at measured HRTF directions "
             "of each head. Per seed: median great-circle error / front-back confusions (targets on the interaural "
             "axis left out) / median lateral error. Issue 16's targets: KU100 median <= 2 deg, front-back <= 2 %; "
             "the held-out SONICOM subject median <= 10 deg, front-back <= 8 %. The KEMAR is a head from another lab "
             "that no template set comes from.", "",
             "| head | method | " + " | ".join(f"seed {s}" for s in a.seeds) + " | pooled front-back |",
             "|---|---|" + "---|" * len(a.seeds) + "---|"]
    for head, m, per_seed in rows:
        cells = [f"{s['median_deg']:.1f}° / {100 * s['front_back_rate']:.1f} % / {s['median_lateral_error_deg']:.1f}°"
                 for s in per_seed]
        pooled = np.mean([s["front_back_rate"] for s in per_seed])
        lines.append(f"| {head} | {m} | " + " | ".join(cells) + f" | {100 * pooled:.1f} % |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        atomic_write(a.out, lambda tmp: Path(tmp).write_text(text))


if __name__ == "__main__":
    main()
