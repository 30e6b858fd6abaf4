"""Speed and memory of the qastanet, cues and quality metrics on third-order ambisonic pairs.

    python benchmarks/bench_score.py [--durations 5 10 30 600] [--metric qastanet qastanet-exact cues]
                                     [--checkpoint PATH] [--baseline] [--cli] [--cuda-batch 64]

Kinds: ``qastanet``, ``cues``, ``quality`` (each metric's default, fast mode) and
``qastanet-exact``, ``cues-exact``, ``quality-exact`` (float64, full rate). Each case runs in a
fresh subprocess (peak RSS of that process = torch + model + the calls).
Prints, per duration: the first metric call on that length (``cold``: it also builds the
per-length tables) and the best of three further calls (``warm``), time per second of audio,
real-time factor, peak memory; with --baseline also a naive float32 full-rate implementation of the same chain
(time-domain decoding, FIR gammatone, full-signal Hilbert, FIR low-pass — the official
structure) measured in the same run, and the ratio. The official implementation's own
figures on this machine kind (../shared/README.md): 10 s -> 10 s and 3.4 GB; 30 s -> 39 s
and 8.6 GB.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CKPT = REPO.parent / "shared" / "qastanet" / "model_weights.pth.tar"


def make_pair(seconds: float, order: int = 3, fs: int = 48000, seed: int = 0):
    import numpy as np
    import scipy.signal as sps

    from spaq.spatial.sh import sh_matrix

    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    b, a = sps.butter(2, [200, 10000], btype="bandpass", fs=fs)
    src = sps.lfilter(b, a, rng.standard_normal((2, n)), axis=-1).astype(np.float32)
    src *= (0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * np.arange(n) / fs)).astype(np.float32)
    y = sh_matrix(order, [30.0, -100.0], [10.0, 0.0]).astype(np.float32)
    ref = y @ src
    ref *= 10 ** (-26 / 20) / np.sqrt(np.mean(ref[0] ** 2))
    deg = ref + 0.02 * rng.standard_normal(ref.shape).astype(np.float32) * ref.std()
    return ref, deg


def write_pair_files(seconds: float, folder: str, block_s: float = 10.0):
    """Write a long 3OA pair to float32 WAVs block by block (never whole in memory)."""
    import soundfile as sf

    paths = (f"{folder}/ref.wav", f"{folder}/deg.wav")
    with sf.SoundFile(paths[0], "w", 48000, 16, "FLOAT") as fr, sf.SoundFile(paths[1], "w", 48000, 16, "FLOAT") as fd:
        done, i = 0.0, 0
        while done < seconds:
            sec = min(block_s, seconds - done)
            r, d = make_pair(sec, seed=i)
            fr.write(r.T)
            fd.write(d.T)
            done += sec
            i += 1
    return paths


def naive_qastanet_features(ref, deg, sd):
    """Reference structure of the official chain in float32 (for timing only)."""
    import math

    import torch

    from spaq.dsp import fft_convolve, mimo_fir_filter

    dec = sd["ambi2bin_procs.0.hoa2bin_t"].float()
    x = torch.stack([mimo_fir_filter(ref, dec[:, : ref.shape[-2]]), mimo_fir_filter(deg, dec[:, : deg.shape[-2]])], 1)
    h = torch.complex(sd["gammatone_real"], sd["gammatone_imag"])
    g = fft_convolve(x.unsqueeze(-2).to(torch.complex64), h)  # (B, 2, 2, 29, T)
    m = g.abs()
    spec = torch.fft.rfft(m)
    spec = spec * -1j
    spec[..., 0] = 0
    env = torch.complex(m, torch.fft.irfft(spec, n=m.shape[-1]))
    lp = sd["lowpass"].float().to(torch.complex64)
    env = fft_convolve(env, lp)
    fl = 1920
    nf = m.shape[-1] // fl
    e = env[..., : nf * fl].unflatten(-1, (nf, fl))
    gg = g[..., : nf * fl].unflatten(-1, (nf, fl))
    p = e.real.mean(-1) ** 2
    c1 = (gg[:, :, 0] * gg[:, :, 1].conj()).mean(-1)
    c2 = (e[:, :, 0] * e[:, :, 1].conj()).mean(-1)
    return p.sum() + c1.abs().sum() + c2.abs().sum() + math.pi


def _fast(kind: str) -> bool:
    return not kind.endswith("-exact")


def _metric(kind: str, checkpoint: str):
    """The metric object of a benchmark kind (``qastanet``, ``cues``, ``quality``, ``-exact``)."""
    if kind.startswith("qastanet"):
        from spaq.metrics.qastanet import Qastanet

        return Qastanet(checkpoint=checkpoint, fast=_fast(kind))
    if kind.startswith("quality"):
        from spaq.metrics.quality import Quality

        return Quality(fast=_fast(kind))
    from spaq.metrics.cues import Cues

    return Cues(fast=_fast(kind))


def _clock() -> float:
    """Wall clock by default; ``SPAQ_BENCH_CLOCK=cpu``: this process's CPU time (all threads), which
    other jobs on a shared machine do not inflate (use with SPAQ_BENCH_THREADS=1)."""
    return time.process_time() if os.environ.get("SPAQ_BENCH_CLOCK") == "cpu" else time.perf_counter()


def child(args) -> None:
    import resource

    import torch

    torch.set_num_threads(int(os.environ.get("SPAQ_BENCH_THREADS", "2")))
    torch.set_grad_enabled(False)
    if args.kind.startswith("cuda"):  # batched throughput on a GPU: --cuda-batch B pairs of 10 s
        from spaq.metrics.qastanet import Qastanet

        m = Qastanet(checkpoint=args.checkpoint, device="cuda", fast=not args.kind.endswith("-exact"))
        ref, deg = make_pair(args.seconds)
        r = torch.from_numpy(ref)[None].expand(args.batch, -1, -1).contiguous().cuda()
        d = torch.from_numpy(deg)[None].expand(args.batch, -1, -1).contiguous().cuda()
        with torch.no_grad():
            m.forward(r[:2], d[:2])
            torch.cuda.synchronize()
            best = float("inf")
            for _ in range(3):
                t0 = _clock()
                m.forward(r, d)
                torch.cuda.synchronize()
                best = min(best, _clock() - t0)
        print(json.dumps({"kind": args.kind, "seconds": args.seconds, "batch": args.batch, "call_s": best,
                          "x_realtime": args.batch * args.seconds / best,
                          "gpu_peak_mb": torch.cuda.max_memory_allocated() / 2**20,
                          "device": torch.cuda.get_device_name()}))
        return
    if args.seconds > 60:  # long: files written by the parent, streamed chunk by chunk (as `spaq score` does)
        from spaq.io import load_pair

        paths = (f"{args.files}/ref.wav", f"{args.files}/deg.wav")
        m = _metric(args.kind, args.checkpoint)
        t0 = _clock()
        score = m.score(load_pair(*paths, target_rate=48000, stream=True)).score
        dt = _clock() - t0
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"kind": args.kind, "seconds": args.seconds, "call_s": dt, "warm_s": None, "load_s": 0.0,
                          "peak_mb": peak_mb, "score": score, "streamed": True}))
        return
    ref, deg = make_pair(args.seconds)
    r = torch.from_numpy(ref)[None]
    d = torch.from_numpy(deg)[None]
    t_load = _clock()
    if args.kind == "baseline":
        sd = torch.load(args.checkpoint, map_location="cpu", weights_only=True)["state_dict"]
        fn = lambda: naive_qastanet_features(r, d, sd)  # noqa: E731
    elif args.kind.startswith(("qastanet", "quality")):
        m = _metric(args.kind, args.checkpoint)
        fn = lambda: m.forward(r, d)  # noqa: E731
    else:
        from spaq.metrics.cues import summarise_cue_maps

        m = _metric(args.kind, args.checkpoint)
        fn = lambda: summarise_cue_maps(m.maps(r, d))  # noqa: E731
    if args.kind.startswith("quality"):  # builds and caches the HRTF decoder (cues as below)
        m.forward(r[..., :48000], d[..., :48000])
    elif args.kind.startswith("cues"):
        m.maps(r[..., :48000], d[..., :48000])
    t_load = _clock() - t_load
    with torch.no_grad():
        t0 = _clock()
        fn()
        dt = _clock() - t0
        warm = None
        if args.seconds <= 30:
            warm = float("inf")
            for _ in range(3):
                t0 = _clock()
                fn()
                warm = min(warm, _clock() - t0)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"kind": args.kind, "seconds": args.seconds, "call_s": dt, "warm_s": warm, "load_s": t_load,
                      "peak_mb": peak_mb}))


def write_pair_elsewhere(seconds: float, folder: str):
    """``write_pair_files`` in a subprocess: this process stays small, so the peak RSS of the
    children it starts next is theirs alone (Linux carries a process's peak RSS across exec)."""
    subprocess.run([sys.executable, __file__, "--write-pair", folder, "--seconds", str(seconds)], check=True)
    return (f"{folder}/ref.wav", f"{folder}/deg.wav")


def run_case(kind: str, seconds: float, checkpoint: str, timeout: float = 3600, files: str | None = None):
    cmd = [sys.executable, __file__, "--child", kind, "--seconds", str(seconds), "--checkpoint", checkpoint]
    if files:  # long pairs: written once here, so the child's peak RSS is the metric's alone
        cmd += ["--files", files]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        return {"kind": kind, "seconds": seconds, "error": (p.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def _cli_runs(checkpoint: str, repeat: int = 5, seconds: float = 10, metrics=("qastanet",)):
    """Whole `spaq score` processes on a 3OA pair of ``seconds``: wall times, peak RSS
    (``metrics`` empty: every default metric)."""
    import shutil
    import tempfile

    local = Path(sys.executable).with_name("spaq")  # the spaq of this interpreter's environment
    exe = str(local) if local.exists() else (shutil.which("spaq") or "spaq")
    times, peaks = [], []
    with tempfile.TemporaryDirectory() as tmp:
        r, d = write_pair_elsewhere(seconds, tmp)
        sel = [a for m in metrics for a in ("--metric", m)]
        for _ in range(repeat):
            t0 = time.perf_counter()
            p = subprocess.Popen([exe, "score", r, d, *sel, "--json", "--checkpoint", checkpoint],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            _, status, ru = os.wait4(p.pid, 0)
            if status:
                raise SystemExit(f"spaq score failed: {p.stderr.read().decode().strip()}")
            times.append(time.perf_counter() - t0)
            peaks.append(ru.ru_maxrss / 1024)
    return times, peaks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--durations", type=float, nargs="*", default=[5, 10, 30])
    ap.add_argument("--metric", nargs="+", default=["qastanet", "qastanet-exact", "cues", "cues-exact", "quality",
                                                   "quality-exact"],
                    help="qastanet, cues, quality (each fast, their default); qastanet-exact, cues-exact, "
                         "quality-exact")
    ap.add_argument("--checkpoint", default=os.environ.get("SPAQ_QASTANET_CHECKPOINT", str(DEFAULT_CKPT)))
    ap.add_argument("--baseline", action="store_true", help="also time the naive float32 chain (<= 30 s inputs)")
    ap.add_argument("--cli", action="store_true", help="time whole `spaq score` processes on the 10 s pair")
    ap.add_argument("--cli-long", type=float, default=0, metavar="SECONDS",
                    help="one whole `spaq score` process (every default metric, streamed) on a 3OA pair this long")
    ap.add_argument("--cuda-batch", type=int, default=0, help="with a CUDA device: batched throughput of B x 10 s pairs")
    ap.add_argument("--child", default=None)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--files", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--write-pair", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    if args.write_pair:
        write_pair_files(args.seconds, args.write_pair)
        return
    if args.child:
        args.kind = args.child
        return child(args)
    print(f"third-order (16 ch) pairs at 48 kHz, torch threads {os.environ.get('SPAQ_BENCH_THREADS', '2')}"
          + (", CPU time (SPAQ_BENCH_CLOCK=cpu)" if os.environ.get("SPAQ_BENCH_CLOCK") == "cpu" else ""))
    print(f"{'metric':15s} {'audio s':>8s} {'cold s':>8s} {'warm s':>8s} {'s/s audio':>10s} {'x realtime':>10s} "
          f"{'peak MB':>8s} {'vs naive':>9s}")
    import tempfile

    long_dir = tempfile.TemporaryDirectory() if any(sec > 60 for sec in args.durations) else None
    for sec in args.durations:
        base = None
        files = None
        if sec > 60:
            files = f"{long_dir.name}/{sec:g}"
            os.makedirs(files, exist_ok=True)
            write_pair_elsewhere(sec, files)
        if args.baseline and sec <= 30:
            base = run_case("baseline", sec, args.checkpoint)
            if "error" not in base:
                print(f"{'naive f32':15s} {sec:8.0f} {base['call_s']:8.2f} {base['warm_s']:8.2f} "
                      f"{base['warm_s'] / sec:10.3f} {sec / base['warm_s']:10.1f} {base['peak_mb']:8.0f} {'1.00':>9s}")
            else:
                print(f"{'naive f32':15s} {sec:8.0f} failed: {base['error']}")
        for kind in args.metric:
            r = run_case(kind, sec, args.checkpoint, files=files)
            if "error" in r:
                print(f"{kind:15s} {sec:8.0f} failed: {r['error']}")
                continue
            best = r["warm_s"] if r.get("warm_s") else r["call_s"]
            warm = f"{r['warm_s']:8.2f}" if r.get("warm_s") else f"{'-':>8s}"
            ratio = f"{base['warm_s'] / best:.2f}x" if base and "error" not in base else ""
            print(f"{kind:15s} {sec:8.0f} {r['call_s']:8.2f} {warm} {best / sec:10.3f} {sec / best:10.1f} "
                  f"{r['peak_mb']:8.0f} {ratio:>9s}")
        if files:
            import shutil

            shutil.rmtree(files, ignore_errors=True)
    if long_dir is not None:
        long_dir.cleanup()
    if args.cli:
        for metrics, label in ((("qastanet",), "spaq score --metric qastanet"), ((), "spaq score (every default metric)")):
            times, peaks = _cli_runs(args.checkpoint, metrics=metrics)
            ts = sorted(times)
            print(f"whole-process `{label}` on the 10 s pair ({len(ts)} runs): "
                  f"median {ts[len(ts) // 2]:.2f} s, best {ts[0]:.2f} s, peak RSS {max(peaks):.0f} MB")
    if args.cli_long:
        times, peaks = _cli_runs(args.checkpoint, repeat=1, seconds=args.cli_long, metrics=())
        print(f"whole-process `spaq score` (every default metric, streamed) on a {args.cli_long:.0f} s 3OA pair: "
              f"{times[0]:.1f} s, peak RSS {peaks[0]:.0f} MB")
    if args.cuda_batch:
        import torch

        if not torch.cuda.is_available():
            print("--cuda-batch: no CUDA device here: skipped")
        else:
            for kind in ("cuda", "cuda-exact"):
                cmd = [sys.executable, __file__, "--child", kind, "--seconds", "10", "--batch", str(args.cuda_batch),
                       "--checkpoint", args.checkpoint]
                p = subprocess.run(cmd, capture_output=True, text=True)
                if p.returncode:
                    print(f"{kind}: failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
                    continue
                r = json.loads(p.stdout.strip().splitlines()[-1])
                print(f"{kind} ({r['device']}): {r['batch']} x 10 s 3OA pairs in {r['call_s']:.3f} s = "
                      f"{r['x_realtime']:.0f}x real time, GPU peak {r['gpu_peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
