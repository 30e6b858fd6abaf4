"""Spatial formats: what the channels of a signal mean."""
from __future__ import annotations

from dataclasses import dataclass

from .spatial.layouts import LAYOUTS, Layout, get_layout, layouts_with_channels
from .spatial.sh import NORMALISATIONS, fuma_order_message, n_channels, order_from_channels

__all__ = ["SpatialFormat", "detect_format", "parse_format", "format_argument", "fuma_order_message"]


@dataclass(frozen=True)
class SpatialFormat:
    """``kind`` is "binaural", "ambisonics", "layout" (channel-based loudspeakers) or "mono".

    Ambisonics carries ``order`` and ``normalisation`` ("sn3d" default, ACN channel order;
    "fuma" implies W X Y Z). A layout carries ``layout``, the name of a
    :class:`~spaq.spatial.layouts.Layout` ("stereo", "5.1", "7.1.4", ...). Mono keeps
    kind "mono" (as before) and is also the one-loudspeaker layout "mono" (``layout ==
    "mono"``, ``is_layout`` true): ``SpatialFormat("layout", layout="mono")`` and
    ``SpatialFormat("mono")`` are the same format.
    """

    kind: str
    order: int = 0
    normalisation: str = "sn3d"
    layout: str | None = None

    def __post_init__(self):
        if self.kind == "mono" or (self.kind == "layout" and self.layout is not None
                                   and get_layout(self.layout).name == "mono"):
            object.__setattr__(self, "kind", "mono")
            object.__setattr__(self, "layout", "mono")
        elif self.kind == "layout":
            if self.layout is None:
                raise ValueError(f"a layout format needs a layout name: one of {', '.join(LAYOUTS)}")
            object.__setattr__(self, "layout", get_layout(self.layout).name)  # canonical name
        elif self.layout is not None:
            raise ValueError(f"a {self.kind} format has no loudspeaker layout (got layout={self.layout!r})")

    @property
    def layout_spec(self) -> Layout | None:
        """The :class:`~spaq.spatial.layouts.Layout` (labels, directions, LFE) or None."""
        return get_layout(self.layout) if self.layout is not None else None

    @property
    def n_channels(self) -> int:
        if self.kind == "binaural":
            return 2
        if self.layout is not None:
            return self.layout_spec.n_channels
        return n_channels(self.order)

    @property
    def channel_labels(self) -> tuple[str, ...] | None:
        """Loudspeaker labels of a layout in channel order ("L", "R", "C", "LFE", ...), else None."""
        return self.layout_spec.labels if self.layout is not None else None

    @property
    def is_ambisonics(self) -> bool:
        return self.kind == "ambisonics"

    @property
    def is_binaural(self) -> bool:
        return self.kind == "binaural"

    @property
    def is_layout(self) -> bool:
        """Channel-based loudspeaker feeds (mono included): binaural metrics score their
        render by :func:`spaq.spatial.layouts.render_layout_binaural`."""
        return self.layout is not None

    def describe(self) -> str:
        if self.kind == "ambisonics":
            norm = "ACN/SN3D" if self.normalisation == "sn3d" else self.normalisation.upper()
            return f"ambisonics order {self.order} ({norm})"
        if self.kind == "layout":
            return self.layout_spec.describe()
        return self.kind

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "description": self.describe()}
        if self.kind == "ambisonics":
            d.update(order=self.order, normalisation=self.normalisation)
        if self.layout is not None:
            d.update(layout=self.layout, channels=list(self.channel_labels))
        return d


BINAURAL = SpatialFormat("binaural")
MONO = SpatialFormat("mono")


def _layouts_hint(n_ch: int) -> str:
    fits = layouts_with_channels(n_ch)
    if fits:
        return ("use --format " + " or --format ".join(f"{lay.name} ({' '.join(lay.labels)})" for lay in fits)
                + " (format= in Python)")
    return (f"no loudspeaker layout has {n_ch} channels either ({', '.join(LAYOUTS)}); "
            "use --format to say what it is (format= in Python)")


def detect_format(n_ch: int) -> SpatialFormat:
    """Default reading of a channel count: 1 -> mono, 2 -> binaural, (N+1)^2 -> ambisonics
    ACN/SN3D. Other counts raise a ValueError naming the layouts with that many channels
    (e.g. 6 -> 5.1); loudspeaker layouts are never guessed (stereo needs "stereo")."""
    if n_ch == 2:
        return BINAURAL
    if n_ch == 1:
        return MONO
    order = order_from_channels(n_ch)
    if order is None:
        raise ValueError(
            f"{n_ch} channels is neither binaural (2) nor ambisonics ((N+1)^2: 4, 9, 16, 25, ...); "
            + _layouts_hint(n_ch)
        )
    return SpatialFormat("ambisonics", order)


def parse_format(text: str) -> SpatialFormat:
    """Parse a user format string: "binaural", "mono", "foa", "hoa2", "hoa3",
    "ambisonics", "ambisonics:N", optionally with a normalisation suffix
    "/sn3d", "/n3d" or "/fuma" (e.g. "foa/fuma", "ambisonics:3/n3d"), or a loudspeaker
    layout "stereo", "5.0", "5.1", "7.0", "7.1", "5.1.4", "7.1.4" (also "layout:5.1").
    For "ambisonics" without an order the order comes from the channel count (order 0 here)."""
    t = text.strip().lower()
    norm = "sn3d"
    if "/" in t:
        t, norm = t.split("/", 1)
        if norm not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {norm!r} in format {text!r}; use one of {NORMALISATIONS}")
    lay_name = t[len("layout:"):] if t.startswith("layout:") else t
    try:
        lay = get_layout(lay_name)
    except ValueError:
        lay = None
    if lay is not None:
        if "/" in text:
            raise ValueError(f"format {text!r}: a normalisation applies to ambisonics only, not to loudspeaker layouts")
        return MONO if lay.name == "mono" else SpatialFormat("layout", layout=lay.name)
    if t in ("binaural", "bin"):
        return BINAURAL
    if t == "foa":
        return SpatialFormat("ambisonics", 1, norm)
    if t.startswith("hoa") and t[3:].isdigit():
        return SpatialFormat("ambisonics", int(t[3:]), norm)
    if t.startswith("ambisonics"):
        rest = t[len("ambisonics"):].lstrip(":")
        if rest == "":
            return SpatialFormat("ambisonics", 0, norm)
        if rest.isdigit() and int(rest) >= 1:
            return SpatialFormat("ambisonics", int(rest), norm)
    raise ValueError(
        f"unknown format {text!r}; use binaural, foa, hoa2, hoa3, ambisonics[:N] (optionally /sn3d, /n3d "
        f"or /fuma) or a loudspeaker layout: {', '.join(LAYOUTS)}"
    )


def format_argument(fmt=None, format=None):
    """The one format a Python entry point was given: ``spaq.score``, ``spaq.predict`` and ``spaq.localize`` take
    it as ``fmt=`` or ``format=`` (the CLI's ``--format``), either name; both naming different formats is a
    one-line :class:`~spaq.errors.SpaqInputError`."""
    if fmt is not None and format is not None and str(fmt) != str(format):
        from .errors import SpaqInputError

        raise SpaqInputError(f"fmt={fmt!r} and format={format!r} name two formats: give one")
    return fmt if fmt is not None else format

