"""The one angle convention of spaq.

Public API angles are **degrees**: azimuth counter-clockwise from the front
(+x front, +y left, +z up), elevation up from the horizontal plane. Internally,
directions are unit vectors ``(..., 3)`` in that same (x, y, z) frame.

Interaural-polar geometry: the **lateral angle** is the angle of a direction from the
median (x-z) plane, ``asin(y)`` for a unit vector, +90 at the left pole (+y), -90 at the
right; the **polar angle** turns about the interaural (y) axis. Great-circle **bearings**
are measured in a direction's :func:`tangent_frame` (0 = north/up, 90 = east).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = [
    "sph2cart",
    "cart2sph",
    "wrap_azimuth",
    "great_circle_deg",
    "is_front_back_confusion",
    "lateral_angle",
    "tangent_frame",
    "lateral_sense",
    "bearing_to_pole",
    "bearing_to_other_pole",
]


def sph2cart(azimuth_deg, elevation_deg):
    """Degrees ``(...)`` and ``(...)`` -> unit vectors ``(..., 3)`` (x front, y left, z up)."""
    az = np.deg2rad(np.asarray(azimuth_deg, dtype=np.float64))
    el = np.deg2rad(np.asarray(elevation_deg, dtype=np.float64))
    az, el = np.broadcast_arrays(az, el)
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def cart2sph(xyz):
    """Vectors ``(..., 3)`` (any length) -> (azimuth_deg in (-180, 180], elevation_deg, radius)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    r = np.sqrt(x * x + y * y + z * z)
    az = np.rad2deg(np.arctan2(y, x))
    el = np.rad2deg(np.arctan2(z, np.hypot(x, y)))
    return wrap_azimuth(az), el, r


def wrap_azimuth(azimuth_deg):
    """Wrap degrees to (-180, 180]; accepts 0..360 or any real value."""
    a = np.mod(np.asarray(azimuth_deg, dtype=np.float64) + 180.0, 360.0) - 180.0
    return np.where(a == -180.0, 180.0, a)


def great_circle_deg(az1, el1, az2, el2):
    """Great-circle angle in degrees between two directions given in degrees (broadcasts): ``atan2(|v1 x v2|,
    v1 . v2)``, exact to float64 rounding at every angle (``arccos`` of the dot product read identical
    directions as 8.5e-07 degrees and loses half the digits near 0 and 180)."""
    v1, v2 = np.broadcast_arrays(sph2cart(az1, el1), sph2cart(az2, el2))
    return np.rad2deg(np.arctan2(np.linalg.norm(np.cross(v1, v2), axis=-1), np.sum(v1 * v2, axis=-1)))


def is_front_back_confusion(az_true, el_true, az_est, el_est, margin_deg: float = 0.0):
    """True where the estimate is closer to the true direction mirrored about the
    interaural (y-z) plane than to the true direction itself, by more than ``margin_deg``."""
    mirrored_az = wrap_azimuth(180.0 - np.asarray(az_true, dtype=np.float64))
    d_true = great_circle_deg(az_true, el_true, az_est, el_est)
    d_mirror = great_circle_deg(mirrored_az, el_true, az_est, el_est)
    return d_mirror + margin_deg < d_true


# --------------------------------------------------------------------------- interaural-polar geometry


def lateral_angle(xyz):
    """Lateral angle in degrees ``(...)`` in [-90, 90] of vectors ``(..., 3)`` (any non-zero
    length): the angle from the median plane, + towards the left ear (+y)."""
    xyz = np.asarray(xyz, dtype=np.float64)
    return np.degrees(np.arcsin(np.clip(xyz[..., 1] / np.linalg.norm(xyz, axis=-1), -1.0, 1.0)))


def tangent_frame(azimuth_deg: float, elevation_deg: float):
    """Unit vector ``v`` of a direction and its local ``north``/``east`` tangents, each ``(3,)``
    (the frame in which great-circle bearings are measured: bearing 0 = north, 90 = east)."""
    v = sph2cart(azimuth_deg, elevation_deg)
    east = np.cross([0.0, 0.0, 1.0], v)
    if np.linalg.norm(east) < 1e-9:
        east = np.array([0.0, 1.0, 0.0])
    east /= np.linalg.norm(east)
    north = np.cross(v, east)
    return v, north, east


def lateral_sense(azimuth_deg: float, elevation_deg: float) -> int:
    """Sign of a yaw rotation (+1: azimuth increases) that moves a source at this direction
    towards the median plane, so that its lateral angle changes monotonically for yaw angles
    up to 90 degrees; 0 when either sense does (median plane or exactly lateral)."""
    a = math.radians(azimuth_deg)
    sgn = -math.sin(2 * a) * math.cos(math.radians(elevation_deg))
    return 0 if abs(sgn) < 1e-9 else (1 if sgn > 0 else -1)


def bearing_to_pole(azimuth_deg: float, elevation_deg: float, side: int) -> float | None:
    """Great-circle bearing (degrees) from a direction towards the interaural pole ``side``
    (+1: left, +y; -1: right): moving along it changes the lateral angle by exactly the
    distance moved and keeps the polar angle. None at a pole (every bearing is equivalent)."""
    v, north, east = tangent_frame(azimuth_deg, elevation_deg)
    pole = np.array([0.0, float(side), 0.0])
    t = pole - (pole @ v) * v
    if np.linalg.norm(t) < 1e-9:
        return None
    return float(math.degrees(math.atan2(t @ east, t @ north)))


def bearing_to_other_pole(azimuth_deg: float, elevation_deg: float) -> float | None:
    """:func:`bearing_to_pole` towards the pole on the other side of the median plane (the
    source's lateral angle then moves through 0 and keeps changing monotonically for 90
    degrees or more); None in the median plane (either pole) or at a pole."""
    y = math.sin(math.radians(azimuth_deg)) * math.cos(math.radians(elevation_deg))  # sin(lateral angle)
    if abs(y) < 1e-9:
        return None
    return bearing_to_pole(azimuth_deg, elevation_deg, -1 if y > 0 else 1)
