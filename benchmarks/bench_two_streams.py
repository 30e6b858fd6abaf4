"""Two streams on 2 cores: the front-end's band groups and the predictor's feature groups on a second thread
(``spaq.threads.in_background``, used by ``BandPlan.map`` and ``predictor_features``) against the same code with the
second stream turned off (the work run in the calling thread, as before the fifty-fourth session), in one process,
alternating call by call so that both see the same machine.

    python benchmarks/bench_two_streams.py [--threads 2] [--rounds 15]

Cases: ``cues`` and ``quality`` on a 10 s binaural pair (``spaq.score``), ``localize`` on a 20 s KU100 stream
(anechoic, and the same source in a room of RT60 0.7 s, dereverberated), ``spaq.predict`` on a 10 s binaural file,
and the ``sqm`` embedding of a 10 s binaural signal. Prints each case's median wall time per mode, the real-time
factor and the ratio one stream / two streams, and checks that both modes give the same values (they are computed
by the same arithmetic, item by item). torch runs on ``--threads`` intra-op threads in both modes (the per-call
cap of spaq.threads applies as usual).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # what `import spaq` sets when torch is not loaded yet

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _inline(fn, *args, **kwargs):  # the second stream off: the work runs at once in the caller
    value = fn(*args, **kwargs)
    return lambda: value


def _directions(r):
    return [np.asarray(r.azimuth_deg), np.asarray(r.elevation_deg), np.asarray(r.frame_azimuth_deg)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=15)
    a = ap.parse_args()
    import soundfile as sf
    import torch
    from scipy.signal import oaconvolve

    import spaq
    import spaq.auditory.frontend as fe_mod
    import spaq.metrics.functional.predictor as pred_mod
    from spaq.localization import localize
    from spaq.metrics.functional.sqm import sqm_input
    from spaq.models.sqm import load_pretrained
    from spaq.spatial.hrtf import load_hrtf
    from spaq.spatial.room import place_in_room, room_impulse_response
    from spaq.train.quality import sweep

    torch.set_num_threads(a.threads)
    rng = np.random.default_rng(1)
    b = rng.standard_normal((2, 480000)).astype(np.float32) * 0.05
    b[1] = 0.6 * b[1] + 0.4 * np.roll(b[0], 9)
    bd = b + 0.01 * rng.standard_normal(b.shape).astype(np.float32)
    h = load_hrtf("ku100", 48000)
    s = np.random.default_rng(0).standard_normal(20 * 48000) * 0.05
    anechoic = oaconvolve(s[None], h.hrir[int(h.nearest_index(30, 0))], axes=-1)[:, : len(s)]
    r7 = np.random.default_rng(7)
    rir, _ = room_impulse_response(place_in_room(np.array([6.0, 5.0, 3.0]), 0.7, 30.0, 0.0, 2.5, r7), 48000,
                                   "binaural", hrtf=h, rng=r7, ism_order=3, length_s=0.8)
    room = oaconvolve(s[None], rir, axes=-1)[:, : len(s)]
    _, degs = sweep("noise", "binaural", "speech", [0.4], 5, 1, duration_s=10.0)
    path = os.path.join(tempfile.mkdtemp(), "bin10.wav")
    sf.write(path, degs[0].T.astype(np.float32), 48000, subtype="FLOAT")
    model, _ = load_pretrained(None)
    xs = torch.from_numpy(b[None])
    xs3 = torch.cat([xs, xs.mean(1, keepdim=True)], dim=1) if model.cfg.channels == 3 else xs

    def embed():
        with torch.no_grad():
            out = model(sqm_input(xs3, model.cfg)[0])
        return [out[k] for k in sorted(out) if isinstance(out[k], torch.Tensor)]

    cases = [
        ("cues, 10 s binaural pair", 10.0,
         lambda: spaq.score(b, bd, sample_rate=48000, metrics=["cues"], align=False).results["cues"].score),
        ("quality, 10 s binaural pair", 10.0,
         lambda: spaq.score(b, bd, sample_rate=48000, metrics=["quality"], align=False).results["quality"].score),
        ("localize, 20 s anechoic stream", 20.0, lambda: _directions(localize(anechoic, 48000))),
        ("localize, 20 s stream in a room", 20.0, lambda: _directions(localize(room, 48000))),
        ("spaq.predict, 10 s binaural file", 10.0, lambda: spaq.predict(path)["score"]),
        ("sqm embedding, 10 s binaural", 10.0, embed),
    ]
    modes = {"one stream": _inline, "two streams": spaq.threads.in_background}
    print(f"torch threads {a.threads}, {a.rounds} alternated rounds; medians of wall time\n")
    print("| case | one stream | two streams | ratio | same values |")
    print("|---|---|---|---|---|")
    for label, dur, f in cases:
        times = {m: [] for m in modes}
        values = {}
        for m, bg in modes.items():  # warm-up, and the values of each mode
            fe_mod.in_background = pred_mod.in_background = bg
            values[m] = f()
        for _ in range(a.rounds):
            for m, bg in modes.items():
                fe_mod.in_background = pred_mod.in_background = bg
                t = time.perf_counter()
                f()
                times[m].append(time.perf_counter() - t)
        fe_mod.in_background = pred_mod.in_background = spaq.threads.in_background
        one, two = (float(np.median(times[m])) for m in modes)
        v1, v2 = (values[m] for m in modes)
        same = all(bool(torch.equal(torch.as_tensor(p), torch.as_tensor(q))) for p, q in zip(
            [v1] if not isinstance(v1, (list, tuple)) else v1, [v2] if not isinstance(v2, (list, tuple)) else v2))
        print(f"| {label} | {one * 1000:.0f} ms ({dur / one:.0f}x) | {two * 1000:.0f} ms ({dur / two:.0f}x) | "
              f"{one / two:.2f} | {'yes' if same else 'NO'} |", flush=True)


if __name__ == "__main__":
    main()
