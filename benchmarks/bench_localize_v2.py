"""Speed of binaural localize(): templates vs BAST on one 20 s KU100 stream (best of 5; one thread unless
--threads); the templates also on the same source in a shoebox room (RT60 0.7 s: the room settings,
templates.REVERBERANT, and the dereverberation, templates.DEREVERB, against each turned off).

Usage: python benchmarks/bench_localize_v2.py [--threads N]   (torch threads; default 1, the README's figures; the
issue's budget is 2 cores)"""
import argparse
import os
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # what `import spaq` sets when torch is not loaded yet (torch is, below)

import numpy as np
import torch
from scipy.signal import oaconvolve

from spaq.localization import default_weights_path, localize
from spaq.localization.templates import localize_templates
from spaq.spatial.hrtf import load_hrtf
from spaq.spatial.room import place_in_room, room_impulse_response


def _templates(sig, fs, method=None, **kw):  # localize() has no reverberant option: the function behind it
    return localize_templates(sig, fs, **kw)


_ap = argparse.ArgumentParser(description=__doc__)
_ap.add_argument("--threads", type=int, default=1)
torch.set_num_threads(_ap.parse_args().threads)
h = load_hrtf("ku100", 48000)
s = np.random.default_rng(0).standard_normal(20 * 48000) * 0.05
x = oaconvolve(s[None], h.hrir[int(h.nearest_index(30, 0))], axes=-1)[:, : len(s)]
rng = np.random.default_rng(7)
rir, _ = room_impulse_response(place_in_room(np.array([6.0, 5.0, 3.0]), 0.7, 30.0, 0.0, 2.5, rng), 48000, "binaural",
                               hrtf=h, rng=rng, ism_order=3, length_s=0.8)
room = oaconvolve(s[None], rir, axes=-1)[:, : len(s)]
for label, kw in [("templates in a room (room settings)", dict(x=room, method="templates")),
                  ("templates in a room, room settings off", dict(x=room, method="templates", reverberant={})),
                  ("templates in a room, dereverberation off", dict(x=room, method="templates", dereverb={})),
                  ("templates (KU100 + sonicom-1 heads)", dict(method="templates")),
                  ("templates (KU100 only)", dict(method="templates", hrtf="ku100")),
                  ("templates, 2 sources", dict(method="templates", n_sources=2)),
                  ("auto (default)", dict()),
                  ("bast, cue features (bast_cues)", dict(method="bast")),
                  ("bast, log-mel (bast_ku100)", dict(method="bast", weights=default_weights_path()))]:
    sig = kw.pop("x", x)
    run = localize if not {"reverberant", "dereverb"} & set(kw) else _templates
    run(sig, 48000, **kw)
    walls, cpus = [], []
    for _ in range(5):
        t, c = time.perf_counter(), time.process_time()
        run(sig, 48000, **kw)
        walls.append(time.perf_counter() - t)
        cpus.append(time.process_time() - c)
    print(f"| {label} | {min(cpus) * 1000:.0f} ms | {20 / min(cpus):.0f}x | {min(walls) * 1000:.0f} ms | "
          f"{20 / min(walls):.0f}x |", flush=True)
