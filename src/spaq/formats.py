"""Spatial formats: what the channels of a signal mean."""
from __future__ import annotations

from dataclasses import dataclass

from .spatial.sh import NORMALISATIONS, n_channels, order_from_channels

__all__ = ["SpatialFormat", "detect_format", "parse_format"]


@dataclass(frozen=True)
class SpatialFormat:
    """``kind`` is "binaural", "ambisonics" or "mono"; ambisonics carries order and
    normalisation ("sn3d" default, ACN channel order; "fuma" implies W X Y Z)."""

    kind: str
    order: int = 0
    normalisation: str = "sn3d"

    @property
    def n_channels(self) -> int:
        if self.kind == "binaural":
            return 2
        if self.kind == "mono":
            return 1
        return n_channels(self.order)

    @property
    def is_ambisonics(self) -> bool:
        return self.kind == "ambisonics"

    @property
    def is_binaural(self) -> bool:
        return self.kind == "binaural"

    def describe(self) -> str:
        if self.kind == "ambisonics":
            norm = "ACN/SN3D" if self.normalisation == "sn3d" else self.normalisation.upper()
            return f"ambisonics order {self.order} ({norm})"
        return self.kind

    def to_dict(self) -> dict:
        d = {"kind": self.kind, "description": self.describe()}
        if self.kind == "ambisonics":
            d.update(order=self.order, normalisation=self.normalisation)
        return d


BINAURAL = SpatialFormat("binaural")
MONO = SpatialFormat("mono")


def detect_format(n_ch: int) -> SpatialFormat:
    """Default reading of a channel count: 2 -> binaural, (N+1)^2 -> ambisonics ACN/SN3D."""
    if n_ch == 2:
        return BINAURAL
    if n_ch == 1:
        return MONO
    order = order_from_channels(n_ch)
    if order is None:
        raise ValueError(
            f"{n_ch} channels is neither binaural (2) nor ambisonics ((N+1)^2: 4, 9, 16, 25, ...); "
            "use --format to say what it is"
        )
    return SpatialFormat("ambisonics", order)


def parse_format(text: str) -> SpatialFormat:
    """Parse a user format string: "binaural", "mono", "foa", "hoa2", "hoa3",
    "ambisonics", "ambisonics:N", optionally with a normalisation suffix
    "/sn3d", "/n3d" or "/fuma" (e.g. "foa/fuma", "ambisonics:3/n3d").
    For "ambisonics" without an order the order comes from the channel count (order 0 here)."""
    t = text.strip().lower()
    norm = "sn3d"
    if "/" in t:
        t, norm = t.split("/", 1)
        if norm not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {norm!r} in format {text!r}; use one of {NORMALISATIONS}")
    if t in ("binaural", "bin"):
        return BINAURAL
    if t == "mono":
        return MONO
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
        f"unknown format {text!r}; use binaural, foa, hoa2, hoa3, ambisonics[:N], optionally /sn3d, /n3d or /fuma"
    )
