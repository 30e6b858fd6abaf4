"""Channel-based loudspeaker layouts (mono, stereo, 5.x, 7.x, 7.1.4) and their binaural render.

A :class:`Layout` says what each channel of a channel-based signal is: its label, the
nominal direction of its loudspeaker (degrees, azimuth counter-clockwise from the front
so that L is +30, elevation up; see :mod:`spaq.spatial.angles`) and which channel, if
any, is the LFE. Channel orders are the SMPTE / ITU-R BS.2051 file orders; angles are
the BS.2051 nominal ones:

============  ==========================================  ==================================
name          channels                                    directions (azimuth, elevation)
============  ==========================================  ==================================
mono          C                                           C 0
stereo        L R                                         L/R +-30
5.0           L R C Ls Rs                                 C 0, L/R +-30, Ls/Rs +-110
5.1           L R C LFE Ls Rs                             as 5.0
7.0           L R C Lss Rss Lrs Rrs                       Lss/Rss +-90, Lrs/Rrs +-135
7.1           L R C LFE Lss Rss Lrs Rrs                   as 7.0
5.1.4         5.1 + Ltf Rtf Ltb Rtb                       tops: +-45 and +-135 at elevation 45
7.1.4         7.1 + Ltf Rtf Ltb Rtb                       tops: +-45 and +-135 at elevation 45
============  ==========================================  ==================================

(5.1.4 uses the same top layer as 7.1.4 here.) Mono, for binaural analysis, is one
loudspeaker straight ahead (0, 0).

Binaural render (:func:`render_layout_binaural`): every loudspeaker feed convolved with
the HRIR pair of its direction (default HRTF: Neumann KU 100, interpolated lookup, the
same as :func:`spaq.spatial.render.render_binaural` for a static source) and summed; the
LFE channel is dropped (it carries no direction, and the HRIRs are not measured for it),
so LFE content never reaches the ears and plays no part in spatial analysis.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import oaconvolve

from ..errors import SpaqInputError
from .angles import wrap_azimuth

__all__ = [
    "Layout",
    "LayoutError",
    "LAYOUTS",
    "get_layout",
    "layout_names",
    "layouts_with_channels",
    "layout_hrirs",
    "render_layout_binaural",
    "layout_to_binaural_pair",
    "layout_to_ambisonics",
]


class LayoutError(SpaqInputError, ValueError):
    """Unknown layout name, or a signal that does not fit its layout (one line)."""


@dataclass(frozen=True)
class Layout:
    """A loudspeaker layout: ``labels``, ``azimuth_deg`` and ``elevation_deg`` have one entry
    per channel (file order); ``lfe`` is the index of the LFE channel or None."""

    name: str
    labels: tuple[str, ...]
    azimuth_deg: tuple[float, ...]
    elevation_deg: tuple[float, ...]
    lfe: int | None = None

    def __post_init__(self):
        n = len(self.labels)
        if len(self.azimuth_deg) != n or len(self.elevation_deg) != n:
            raise ValueError(f"layout {self.name!r}: labels, azimuths and elevations differ in length")
        if self.lfe is not None and not 0 <= self.lfe < n:
            raise ValueError(f"layout {self.name!r}: LFE index {self.lfe} out of range 0..{n - 1}")
        object.__setattr__(self, "labels", tuple(str(s) for s in self.labels))
        object.__setattr__(self, "azimuth_deg", tuple(float(a) for a in wrap_azimuth(self.azimuth_deg).ravel()))
        object.__setattr__(self, "elevation_deg", tuple(float(e) for e in self.elevation_deg))

    @property
    def n_channels(self) -> int:
        return len(self.labels)

    @property
    def spatial_channels(self) -> tuple[int, ...]:
        """Indices of the channels with a direction (all but the LFE)."""
        return tuple(i for i in range(self.n_channels) if i != self.lfe)

    def describe(self) -> str:
        """E.g. ``"5.1 loudspeakers (L R C LFE Ls Rs)"``."""
        word = "loudspeaker" if self.n_channels == 1 else "loudspeakers"
        return f"{self.name} {word} ({' '.join(self.labels)})"


_L, _R, _C = ("L", 30.0, 0.0), ("R", -30.0, 0.0), ("C", 0.0, 0.0)
_LFE = ("LFE", 0.0, 0.0)  # no direction; the angles are placeholders, never used
_LS, _RS = ("Ls", 110.0, 0.0), ("Rs", -110.0, 0.0)
_LSS, _RSS = ("Lss", 90.0, 0.0), ("Rss", -90.0, 0.0)
_LRS, _RRS = ("Lrs", 135.0, 0.0), ("Rrs", -135.0, 0.0)
_TOPS = (("Ltf", 45.0, 45.0), ("Rtf", -45.0, 45.0), ("Ltb", 135.0, 45.0), ("Rtb", -135.0, 45.0))


def _make(name: str, speakers) -> Layout:
    labels, az, el = zip(*speakers)
    lfe = labels.index("LFE") if "LFE" in labels else None
    return Layout(name, labels, az, el, lfe)


LAYOUTS: dict[str, Layout] = {
    lay.name: lay
    for lay in (
        _make("mono", [_C]),
        _make("stereo", [_L, _R]),
        _make("5.0", [_L, _R, _C, _LS, _RS]),
        _make("5.1", [_L, _R, _C, _LFE, _LS, _RS]),
        _make("7.0", [_L, _R, _C, _LSS, _RSS, _LRS, _RRS]),
        _make("7.1", [_L, _R, _C, _LFE, _LSS, _RSS, _LRS, _RRS]),
        _make("5.1.4", [_L, _R, _C, _LFE, _LS, _RS, *_TOPS]),
        _make("7.1.4", [_L, _R, _C, _LFE, _LSS, _RSS, _LRS, _RRS, *_TOPS]),
    )
}
_ALIASES = {"1.0": "mono", "2.0": "stereo"}


def layout_names() -> list[str]:
    """Names of the registered layouts, in registry order."""
    return list(LAYOUTS)


def layouts_with_channels(n_channels: int) -> list[Layout]:
    """The registered layouts with ``n_channels`` channels (possibly none)."""
    return [lay for lay in LAYOUTS.values() if lay.n_channels == int(n_channels)]


def get_layout(name) -> Layout:
    """The layout called ``name`` (case-insensitive; "1.0" and "2.0" are mono and stereo);
    a :class:`Layout` is returned as is. Unknown names raise :class:`LayoutError`."""
    if isinstance(name, Layout):
        return name
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in LAYOUTS:
        raise LayoutError(f"unknown loudspeaker layout {str(name)!r}; use one of {', '.join(LAYOUTS)}")
    return LAYOUTS[key]


def _as_layout(obj) -> Layout:
    """A Layout from a Layout, a layout name or a SpatialFormat of a layout (duck-typed:
    importing spaq.formats here would be circular)."""
    if isinstance(obj, (Layout, str)):
        return get_layout(obj)
    name = getattr(obj, "layout", None)
    if name is None:
        describe = getattr(obj, "describe", None)
        what = describe() if callable(describe) else repr(obj)
        raise LayoutError(f"format {what} is not a loudspeaker layout")
    return get_layout(name)


# (hrtf sha256, hrtf name, rate, layout, method) -> HRIRs (n_spatial, 2, taps) of the spatial channels
_HRIR_CACHE: dict[tuple, np.ndarray] = {}
_HRIR_CACHE_MAX = 64


def layout_hrirs(layout, hrtf, method: str = "interpolated") -> np.ndarray:
    """HRIR pairs ``(n_spatial, 2, taps)`` of the layout's directional channels (LFE left
    out), looked up once per (HRTF set, sample rate, layout, method) and cached."""
    lay = _as_layout(layout)
    key = (hrtf.sha256, hrtf.name, int(hrtf.sample_rate), lay, method)
    h = _HRIR_CACHE.get(key)
    if h is None:
        idx = list(lay.spatial_channels)
        az = np.asarray(lay.azimuth_deg)[idx]
        el = np.asarray(lay.elevation_deg)[idx]
        h = np.asarray(hrtf.lookup(az, el, method), dtype=np.float64)  # (S, 2, taps)
        h.setflags(write=False)
        if len(_HRIR_CACHE) >= _HRIR_CACHE_MAX:
            _HRIR_CACHE.clear()
        _HRIR_CACHE[key] = h
    return h


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, on any device
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def layout_to_ambisonics(x, layout, order: int = 1) -> np.ndarray:
    """Loudspeaker feeds ``x (..., C, T)`` -> ``(..., (order+1)^2, T)`` ACN/SN3D: each feed a plane wave from its
    loudspeaker's nominal direction (the sound field at the listening position, anechoic, no distance
    attenuation), summed; the LFE channel is dropped. A phantom image's active intensity then points where the
    velocity vector of its panning does (equal feeds on L and C: 15 deg), and uncorrelated feeds stay apart in
    time-frequency: what :func:`spaq.auditory.doa.intensity_doa` reads."""
    from .ambisonics import encode_plane_waves

    lay = _as_layout(layout)
    x = _to_numpy(x)
    if x.ndim < 2 or x.shape[-2] != lay.n_channels:
        raise LayoutError(f"layout {lay.describe()} has {lay.n_channels} channels but the signal has shape {x.shape}")
    ch = list(lay.spatial_channels)
    az, el = np.asarray(lay.azimuth_deg)[ch], np.asarray(lay.elevation_deg)[ch]
    return encode_plane_waves(np.asarray(x[..., ch, :], dtype=np.float64), az, el, int(order))  # (..., S, T) batched


def render_layout_binaural(x, layout, hrtf=None, sample_rate: int = 48000,
                           method: str = "interpolated") -> np.ndarray:
    """Binaural render of loudspeaker feeds ``x (..., C, T)`` -> ``(..., 2, T)`` (left, right).

    ``layout``: a :class:`Layout`, a layout name ("5.1", "7.1.4", ...) or a
    :class:`~spaq.formats.SpatialFormat` of kind layout/mono; ``C`` must be its channel
    count. Each loudspeaker feed is convolved with the HRIR pair of its nominal direction
    (anechoic, no distance attenuation) and the results are summed; the **LFE channel is
    dropped**. Mono is one loudspeaker straight ahead, stereo two at +-30 degrees.
    ``hrtf``: an :class:`~spaq.spatial.hrtf.HRTFSet` (resampled to ``sample_rate`` if it is
    at another rate) or None for ``load_hrtf("default", sample_rate)`` (Neumann KU 100).
    ``method``: HRIR lookup, "interpolated" (default) or "nearest".

    The output has the input's length ``T``: the convolution tail (taps - 1 samples) is cut,
    as in :func:`spaq.spatial.render.render_binaural`, so a reference and a degraded signal
    of equal length give renders of equal length. Vectorised over the leading (batch) axes;
    HRIRs are cached per (HRTF, rate, layout, method). float32 input gives float32 output,
    anything else float64 (computed in float64 either way).
    """
    lay = _as_layout(layout)
    x = _to_numpy(x)
    if x.ndim < 2:
        raise LayoutError(f"loudspeaker feeds must be (..., channels, time), got shape {x.shape}")
    if x.shape[-2] != lay.n_channels:
        raise LayoutError(f"layout {lay.describe()} has {lay.n_channels} channels but the signal has {x.shape[-2]}")
    if hrtf is None:
        from .hrtf import load_hrtf

        hrtf = load_hrtf("default", int(sample_rate))
    elif int(hrtf.sample_rate) != int(sample_rate):
        hrtf = hrtf.resampled(int(sample_rate))
    out_dtype = np.float32 if x.dtype == np.float32 else np.float64
    h = layout_hrirs(lay, hrtf, method)  # (S, 2, taps)
    T = x.shape[-1]
    lead = x.shape[:-2]
    y = np.zeros(lead + (2, T), dtype=np.float64)
    ones = (1,) * len(lead)
    for k, ch in enumerate(lay.spatial_channels):  # a few loudspeakers; each call vectorised over the batch
        feed = np.asarray(x[..., ch:ch + 1, :], dtype=np.float64)  # (..., 1, T)
        if not feed.any():
            continue
        y += oaconvolve(feed, h[k].reshape(ones + h[k].shape), axes=-1)[..., :T]
    return y.astype(out_dtype, copy=False)


def layout_to_binaural_pair(ref, deg, fmt, sample_rate: int, hrtf=None,
                            method: str = "interpolated") -> tuple[np.ndarray, np.ndarray]:
    """Binaural renders ``(ref_bin, deg_bin)``, each ``(..., 2, T)``, of a reference and a
    degraded signal ``(..., C, T)`` in loudspeaker format ``fmt`` (a SpatialFormat of kind
    layout or mono, a layout name or a :class:`Layout`), both with the same HRIRs
    (see :func:`render_layout_binaural`; LFE dropped, length kept)."""
    lay = _as_layout(fmt)
    return (render_layout_binaural(ref, lay, hrtf, sample_rate, method),
            render_layout_binaural(deg, lay, hrtf, sample_rate, method))
