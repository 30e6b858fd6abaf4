"""Rebuild the 7 rebuildable trials of the shared binaural MUSHRA of parametric spatial-audio
codings (issue 19) once into a cache, with the authors' own generator, run by path from
``../shared/listening-tests/ambisonics-param-coding/generate_stimuli`` (nothing is copied).

    python benchmarks/rebuild_param_coding.py [--cache DIR] [--seed 19]

Writes ``DIR/<trial>_<condition>.wav`` (44.1 kHz binaural, PCM 24, the authors' file names:
``_ref_binau``, ``_foa_binau``, ``_param1_binau``, ``_param2_binau``, ``_foa_amb_param{1,2}_binau``,
``_mono``) and ``DIR/ratings.csv``: one row per trial x test condition with the mean MUSHRA
rating over the 22 sessions (``webmushra_results.csv``, trial -> files from
``webmushra_config.yaml``) and the authors' BAM-Q and PEMO-Q scores of the same stimulus.
Default DIR: ``$SPAQ_CACHE_DIR/param_coding`` (``~/.cache/spaq/param_coding``).

The generator needs ``spaudiopy`` (``pip install 'spaq[listening]'``), pyroomacoustics, librosa
and matplotlib; its Harpex VST wrapper imports ``dawdreamer``, which is not needed (Harpex is not
rebuilt) and is replaced by an empty module; on SciPy >= 1.17, spaudiopy's call of the removed
``scipy.special.sph_harm(m, n, azi, zen)`` is served by ``sph_harm_y(n, m, zen, azi)`` (the same
function, documented by SciPy as the replacement), and on pyroomacoustics >= 0.8 the removed
``ShoeBox(absorption=a)`` (amplitude absorption) by ``materials=Material(1 - (1 - a)^2)`` (only
the image-source positions and orders are used; the authors compute the amplitudes themselves).
Memory: the parametric codings of the reverberant scenes build a ~15-30 GB array of which they
read a quarter or nothing; the module's numpy is wrapped so that this array is gathered only
where read (:class:`_LeanNumpy`, same values); peak memory is then 7.5 GB (string quartet), CPU
about 9 min for the 7 trials (one thread). Pink noise and the diffuse tails are drawn from
numpy's global generator without a seed in the original: here ``np.random.seed(seed)`` is set
once per trial (seed + trial index), so rebuilt stimuli are reproducible and statistically
equivalent to the published ones, not identical. Harpex and the two speech scenes (EBU SQAM
download) are not rebuilt.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "listening-tests" / "ambisonics-param-coding"

#: trial id in the ratings file (webMUSHRA writes '+' as a space) -> (scenario, reverb)
TRIALS = {
    "pink_noise_anech": ("pink_noise", "anech"),
    "drums saw_anech": ("drums+saw", "anech"),
    "drums saw_medrev": ("drums+saw", "medrev"),
    "drums saw_strongrev": ("drums+saw", "strongrev"),
    "string_quartet_anech": ("string_quartet", "anech"),
    "string_quartet_medrev": ("string_quartet", "medrev"),
    "string_quartet_strongrev": ("string_quartet", "strongrev"),
}
#: MUSHRA condition -> (file suffix, name in bamq.csv / pemoq.csv)
CONDITIONS = {
    "FOA": ("foa_binau", "foa"),
    "Param1": ("param1_binau", "param1"),
    "Param2": ("param2_binau", "param2"),
    "FOA-Amb-Param1": ("foa_amb_param1_binau", "foa_amb_param1"),
    "FOA-Amb-Param2": ("foa_amb_param2_binau", "foa_amb_param2"),
    "Mono": ("mono", "mono"),
}
REFERENCE = "ref_binau"
FS = 44100


def default_cache() -> Path:
    return Path(os.environ.get("SPAQ_CACHE_DIR", Path.home() / ".cache" / "spaq")) / "param_coding"


def item_path(cache: Path, trial: str, condition: str | None = None) -> Path:
    """The cached wav of ``trial`` (ratings id) and ``condition`` (None: the reference)."""
    scen, rev = TRIALS[trial]
    suffix = REFERENCE if condition is None else CONDITIONS[condition][0]
    return Path(cache) / f"{scen}_{rev}_{suffix}.wav"


class _LazyGather:
    """``take_along_axis(sh_mat[..., None, None], stacked index, axis=0)`` evaluated only where it
    is read: the authors' ``parametric_ambisonic`` builds the spherical-harmonic matrix of every
    unused image source per time-frequency bin, ``(S, (N+1)^2, F, T)`` float64 (about 15 GB for
    the string quartet's ~1040 image sources), then reads nothing of it (``'isotropic'``
    ambient) or its first 4 channels in one product ``X @ Y.transpose(2, 3, 0, 1)`` (``'foa'``),
    which casts them to complex (another 7 GB). Here the slice stays lazy and the product is
    formed over blocks of 8 frequency bins: per bin and frame the same sums of the same terms."""

    __array_ufunc__ = None  # numpy defers ``ndarray @ self`` to __rmatmul__

    def __init__(self, arr, idx, axes=None):
        self.arr, self.idx, self.axes = arr, idx, axes
        self.shape = idx.shape if axes is None else tuple(idx.shape[a] for a in axes)

    def _full(self):
        import numpy as np

        x = np.take_along_axis(self.arr, self.idx, axis=0)
        return x if self.axes is None else x.transpose(self.axes)

    def __array__(self, dtype=None, copy=None):
        x = self._full()
        return x if dtype is None else x.astype(dtype)

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        full = slice(None)
        if self.axes is None and len(key) >= 2 and key[0] == full and all(k == full for k in key[2:]):
            return _LazyGather(self.arr[:, key[1]], self.idx[:, key[1]])
        return self._full()[key]

    def transpose(self, *axes):
        if self.axes is None and tuple(axes) == (2, 3, 0, 1):
            return _LazyGather(self.arr, self.idx, (2, 3, 0, 1))
        return self._full().transpose(*axes)

    def __rmatmul__(self, a):
        import numpy as np

        if self.axes != (2, 3, 0, 1):
            return a @ self._full()
        out = []
        for f in range(0, self.idx.shape[2], 8):
            y = np.take_along_axis(self.arr, self.idx[:, :, f:f + 8], axis=0).transpose(2, 3, 0, 1)
            out.append(a[f:f + 8] @ y)
        return np.concatenate(out, axis=0)


class _LeanNumpy(types.ModuleType):
    """numpy for the authors' ``parametric_ambisonic`` module, with two memory-lean equivalents:
    ``stack`` of one index array repeated along axis 1 is a broadcast view (no copies), and
    ``take_along_axis`` over such a view with more than 2 rows is a :class:`_LazyGather`."""

    def __init__(self):
        import numpy

        super().__init__("numpy")
        self._np = numpy

    def __getattr__(self, name):
        return getattr(self._np, name)

    def stack(self, arrays, axis=0, **kw):
        np = self._np
        if axis == 1 and not kw and len(arrays) > 1 and all(a is arrays[0] for a in arrays):
            a = arrays[0]
            return np.broadcast_to(a[:, None], (a.shape[0], len(arrays)) + a.shape[1:])
        return np.stack(arrays, axis=axis, **kw)

    def take_along_axis(self, arr, indices, axis=None):
        np = self._np
        if axis == 0 and indices.ndim == 4 and indices.shape[0] > 2 and indices.strides[1] == 0:
            return _LazyGather(arr, indices)
        return np.take_along_axis(arr, indices, axis=axis)


@contextlib.contextmanager
def _authors_code(gen_dir: Path):
    """Import the authors' generator from ``gen_dir`` (working directory and sys.path set there,
    as its README asks: 'run stimulus generation scripts from ./generate_stimuli/')."""
    old_cwd, old_path = os.getcwd(), list(sys.path)
    stub = types.ModuleType("utils.vst_wrappers")  # Harpex VST (dawdreamer): not rebuilt
    stub.HarpexUpmixerWrapper = None
    saved = {k: sys.modules.get(k) for k in ("utils", "utils.vst_wrappers", "generate_stimuli",
                                              "parametric_ambisonic")}
    try:
        os.chdir(gen_dir)
        sys.path.insert(0, str(gen_dir))
        import matplotlib
        import scipy.special as sps

        matplotlib.use("Agg")
        if not hasattr(sps, "sph_harm"):  # removed in SciPy 1.17; spaudiopy 0.2 still calls it
            sps.sph_harm = lambda m, n, azi, zen: sps.sph_harm_y(n, m, zen, azi)
        import pyroomacoustics as pra

        shoebox = pra.ShoeBox
        if "absorption" not in shoebox.__init__.__code__.co_varnames:  # removed in pyroomacoustics 0.8+
            def _shoebox(dim, fs, absorption=None, **kw):
                # the deprecated argument was the amplitude absorption: energy = 1 - (1 - a)^2
                if absorption is not None:
                    kw["materials"] = pra.Material(1 - (1 - absorption) ** 2)
                return shoebox(dim, fs, **kw)

            pra.ShoeBox = _shoebox
        importlib.import_module("utils")
        sys.modules["utils.vst_wrappers"] = stub
        gs = importlib.import_module("generate_stimuli")
        gs.pamb.np = _LeanNumpy()
        # the module constants the authors set under __main__
        gs.PARAM_WINLEN = 0.02
        gs.HRIR_PATH_FOA = "mag_ls_binaural_decoder_weights/irsOrd1.wav"
        gs.HRIR_PATH = "mag_ls_binaural_decoder_weights/irsOrd3.wav"
        gs.ROOM_SIM_MIN_IMAGE_ORDER = 2
        yield gs
    finally:
        if "pra" in locals():
            pra.ShoeBox = shoebox
        os.chdir(old_cwd)
        sys.path[:] = old_path
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def _scene(gs, scenario: str):
    """Source signals, directions and peak level of one scenario, as in the authors'
    ``generate_stimuli.py`` ``__main__`` block (the same files, gains and directions)."""
    import numpy as np
    import soundfile

    normalise_db = -12
    if scenario == "pink_noise":
        x1 = gs.pink_noise(int(2.5 * FS))
        x2 = gs.pink_noise(int(2.5 * FS))
        signals = np.stack([x1, x2], -1)
        directions = np.pi / 180 * np.array([[-45, 90], [45, 90]]).T
        normalise_db = -18
    elif scenario == "drums+saw":
        drumbeat, _ = soundfile.read("source_audio/freesound/385676__scydan__trip-acoustic-beat_cut.wav")
        sawtooth, _ = soundfile.read("source_audio/saw.wav")
        sawtooth = 0.3 * sawtooth[:int(2.5 * FS)]
        signals = np.stack([drumbeat, sawtooth], -1)
        directions = np.pi / 180 * np.array([[-90, 90], [45, 45]]).T
    elif scenario == "string_quartet":
        parts = [soundfile.read(f"source_audio/gomes_string_quartet/Mov1_{p}_Haydn_StringQuartet_op76_n1_cut.wav")[0]
                 for p in ("Violin1", "Violin2", "Viola", "Cello")]
        signals = np.stack(parts, -1)
        directions = np.pi / 180 * np.array([[-90, 90], [-30, 90], [30, 90], [90, 90]]).T
    else:
        raise ValueError(scenario)
    return signals, directions, normalise_db


def _room(reverb: str):
    import numpy as np

    if reverb == "anech":
        return None, np.nan, np.nan
    drr, t60 = (0, 0.3) if reverb == "medrev" else (-6, 0.6)
    return np.array([7, 6, 3.5]), drr, t60


#: the ambisonic signals the generator writes before decoding them (``--ambisonics``): the third-order
#: reference (ACN/SN3D, 16 channels) and its first four channels (the FOA condition, before the
#: authors' order-1 MagLS decoder and its -1.5 dB)
AMBISONICS = ("ref_amb", "foa_amb")


def ambisonic_path(cache: Path, trial: str, which: str) -> Path:
    """The cached ambisonic wav of ``trial`` (``which``: one of :data:`AMBISONICS`)."""
    scen, rev = TRIALS[trial]
    return Path(cache) / f"{scen}_{rev}_{which}.wav"


def rebuild(cache: Path, seed: int = 19, force: bool = False, log=print, trials=None,
            ambisonics: bool = False) -> None:
    import numpy as np

    gen = SHARED / "generate_stimuli"
    if not gen.is_dir():
        raise SystemExit(f"listening test not found: {SHARED}")
    cache = Path(cache).resolve()
    cache.mkdir(parents=True, exist_ok=True)
    listener_pos = np.array([3.5, 4, 1.5])
    with _authors_code(gen) as gs:
        for i, trial in enumerate(TRIALS):
            if trials and trial not in trials:
                continue
            scen, rev = TRIALS[trial]
            want = [item_path(cache, trial)] + [item_path(cache, trial, c) for c in CONDITIONS]
            if ambisonics:
                want += [ambisonic_path(cache, trial, w) for w in AMBISONICS]
            if not force and all(p.is_file() for p in want):
                continue
            t0 = time.process_time()
            np.random.seed(seed + i)  # the original draws pink noise and diffuse tails unseeded
            signals, directions, normalise_db = _scene(gs, scen)
            room, drr, t60 = _room(rev)
            tmp = cache / f".partial-{os.getpid()}"
            tmp.mkdir(exist_ok=True)
            with contextlib.redirect_stdout(sys.stderr):
                gs.generate_trial(signals, str(tmp / f"{scen}_{rev}"), directions, room, t60, drr, listener_pos,
                                  normalise_db, FS, 3, None)
            for p in want:  # keep the binaural files the test played (and the ambisonics asked for)
                os.replace(tmp / p.name, p)
            for p in tmp.glob(f"{scen}_{rev}_*"):
                p.unlink()
            log(f"{trial}: {len(want)} files ({time.process_time() - t0:.1f} s CPU)")
        with contextlib.suppress(OSError):
            (cache / f".partial-{os.getpid()}").rmdir()
    write_ratings(cache)


def ratings_table():
    """Mean MUSHRA rating per trial x test condition (42 rows) with the authors' BAM-Q/PEMO-Q."""
    import pandas as pd
    import yaml

    ev = SHARED / "evaluate_listening_experiment_results"
    cfg = yaml.safe_load((ev / "webmushra_config.yaml").read_text())
    files = {}
    for page in cfg["pages"]:
        for p in (page if isinstance(page, list) else [page]):
            if isinstance(p, dict) and p.get("type") == "mushra":
                files[p["id"]] = p["stimuli"]
    r = pd.read_csv(ev / "webmushra_results.csv")
    rows = []
    objective = {n: pd.read_csv(SHARED / "objective_evaluation" / f"{n}.csv") for n in ("bamq", "pemoq")}
    for trial, (scen, rev) in TRIALS.items():
        stim = files[f"{scen}_{rev}"]
        for cond, (suffix, oname) in CONDITIONS.items():
            assert stim[cond].endswith(f"{scen}_{rev}_{suffix}.wav"), (trial, cond, stim[cond])
            v = r[(r["trial_id"] == trial) & (r["rating_stimulus"] == cond)]["rating_score"].astype(float)
            row = {"trial": trial, "scenario": scen, "reverb": rev, "condition": cond,
                   "ref": f"{scen}_{rev}_{REFERENCE}.wav", "deg": f"{scen}_{rev}_{suffix}.wav",
                   "mean": float(v.mean()), "std": float(v.std(ddof=1)), "n": int(v.size)}
            for n, t in objective.items():
                s = t[(t["reverberation"] == rev) & (t["scenario"] == scen) & (t["method"] == oname)]["score"]
                row[n] = float(s.iloc[0]) if len(s) == 1 else float("nan")
            rows.append(row)
    return pd.DataFrame(rows)


def write_ratings(cache: Path):
    t = ratings_table()
    t.to_csv(Path(cache) / "ratings.csv", index=False)
    return t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default=str(default_cache()), help="output folder (default %(default)s)")
    ap.add_argument("--seed", type=int, default=19, help="seed of the unseeded noise (+ trial index)")
    ap.add_argument("--force", action="store_true", help="rebuild even when the files are there")
    ap.add_argument("--trials", nargs="+", default=None, choices=list(TRIALS), metavar="TRIAL",
                    help="only these trials (default: all 7; separate processes may build different trials)")
    ap.add_argument("--ambisonics", action="store_true",
                    help="also keep the third-order reference and the FOA condition as ambisonics (ACN/SN3D), "
                         "<scene>_<reverb>_ref_amb.wav / _foa_amb.wav")
    a = ap.parse_args(argv)
    rebuild(Path(a.cache), a.seed, a.force, trials=a.trials, ambisonics=a.ambisonics)
    print(f"wrote {a.cache}")


if __name__ == "__main__":
    main()
