"""Held-out evaluation of a BAST localiser checkpoint on synthetic scenes.

Sets (content unseen in training: other split names give other source signals, voices,
sentences, rooms and noises; directions from the HRTF's measured grid):
  ku100_anechoic   KU100, anechoic, no noise
  ku100_rooms      KU100, shoebox rooms RT60 0.2-0.8 s, no noise
  sonicom_anechoic SONICOM example subject 1 (spatialaudiometrics), anechoic: an unseen head

Usage: python benchmarks/eval_localizer.py CHECKPOINT [--n 400] [--sets a,b] [--json OUT] [--clip-s 2]
Each example is one analysis window (about 0.47 s), scored on its own; with --clip-s, whole
clips of that length are localised with spaq.localize.localize (mean over windows).
"""
import argparse
import json
import os
import time

import numpy as np
import torch

from spaq.train.localizer import (SyntheticSpec, evaluate_directions, load_checkpoint, predict, synthesize_parallel,
                                  waveforms_to_features)

SETS = {
    "ku100_anechoic": dict(hrtf="ku100", room_fraction=0.0, noise_fraction=0.0),
    "ku100_rooms": dict(hrtf="ku100", room_fraction=1.0, noise_fraction=0.0, rt60_s=(0.2, 0.8)),
    "sonicom_anechoic": dict(hrtf="sonicom-1", room_fraction=0.0, noise_fraction=0.0),
}


def test_set(name, cfg, n=400, workers=1, seed=12345, cache_dir=None):
    """Features ``(n, 2, n_mels, n_frames)``, unit directions ``(n, 3)``, class indices of a held-out set."""
    key = f"{name}_{n}_{seed}_{cfg.sample_rate}_{cfg.n_fft}_{cfg.hop}_{cfg.n_mels}_{cfg.n_frames}_{cfg.fmin}_{cfg.fmax}"
    f = os.path.join(cache_dir, f"test_{key}.pt") if cache_dir else None
    if f and os.path.isfile(f):
        d = torch.load(f, weights_only=True)
        return d["feats"], d["dirs"].numpy(), d["cls"].numpy()
    spec = SyntheticSpec(**SETS[name])
    x, dirs, c, _ = synthesize_parallel(spec, n, seed, "test_" + name, cfg.sample_rate, cfg.window_samples,
                                        workers=workers)
    feats = waveforms_to_features(x, cfg)
    if f:
        os.makedirs(cache_dir, exist_ok=True)
        torch.save({"feats": feats, "dirs": torch.as_tensor(dirs), "cls": torch.as_tensor(c)}, f)
    return feats, dirs, c


def evaluate(ckpt, n=400, sets=None, workers=1, seed=12345, log=print, cache_dir=None, model=None):
    if model is None:
        model, meta = load_checkpoint(ckpt)
    else:
        meta = {"sha256": None}
    cfg = model.cfg
    out = {"checkpoint": str(ckpt), "sha256": meta["sha256"], "sets": {}}
    for name in sets or SETS:
        t = time.time()
        spec = SyntheticSpec(**SETS[name])
        feats, d, c = test_set(name, cfg, n, workers, seed, cache_dir)
        pred, probs = predict(model, feats)
        m = evaluate_directions(pred, d.astype(np.float64))
        if probs is not None and cfg.class_names:
            from spaq.train.localizer import classes_of

            names = classes_of(spec)
            true = np.array([list(cfg.class_names).index(names[i]) for i in c])
            m["class_accuracy"] = float(np.mean(probs.argmax(1) == true))
        m["seconds"] = round(time.time() - t, 1)
        out["sets"][name] = m
        log(name, json.dumps(m))
    return out


def evaluate_clips(ckpt, n=200, sets=None, clip_s=2.0, workers=1, seed=54321, log=print):
    """Whole-clip evaluation: ``clip_s`` s scenes localised with :func:`spaq.localize.localize`
    (energy-weighted mean over its non-overlapping windows)."""
    from spaq.localization import localize

    model, meta = load_checkpoint(ckpt)
    cfg = model.cfg
    out = {"checkpoint": str(ckpt), "sha256": meta["sha256"], "clip_s": clip_s, "sets": {}}
    for name in sets or SETS:
        t = time.time()
        spec = SyntheticSpec(**SETS[name])
        x, d, c, _ = synthesize_parallel(spec, n, seed, "clips_" + name, cfg.sample_rate,
                                         int(clip_s * cfg.sample_rate), workers=workers)
        pred = []
        for i in range(n):
            r = localize(x[i].astype(np.float64), cfg.sample_rate, weights=ckpt)
            pred.append(np.array([np.cos(np.radians(r.elevation_deg[0])) * np.cos(np.radians(r.azimuth_deg[0])),
                                  np.cos(np.radians(r.elevation_deg[0])) * np.sin(np.radians(r.azimuth_deg[0])),
                                  np.sin(np.radians(r.elevation_deg[0]))]))
        m = evaluate_directions(np.array(pred), d.astype(np.float64))
        m["seconds"] = round(time.time() - t, 1)
        out["sets"][name] = m
        log(name, json.dumps(m))
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--sets", default=",".join(SETS))
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json")
    ap.add_argument("--cache", help="folder to keep rendered test sets")
    ap.add_argument("--clip-s", type=float, default=0.0, help="> 0: whole-clip evaluation with localize()")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.clip_s > 0:
        res = evaluate_clips(a.checkpoint, a.n, a.sets.split(","), a.clip_s, a.workers)
    else:
        res = evaluate(a.checkpoint, a.n, a.sets.split(","), a.workers, cache_dir=a.cache)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=2)
