"""The one angle convention of spaq.

Public API angles are **degrees**: azimuth counter-clockwise from the front
(+x front, +y left, +z up), elevation up from the horizontal plane. Internally,
directions are unit vectors ``(..., 3)`` in that same (x, y, z) frame.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "sph2cart",
    "cart2sph",
    "wrap_azimuth",
    "great_circle_deg",
    "is_front_back_confusion",
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
    """Great-circle angle in degrees between two directions given in degrees (broadcasts)."""
    v1, v2 = sph2cart(az1, el1), sph2cart(az2, el2)
    c = np.clip(np.sum(v1 * v2, axis=-1), -1.0, 1.0)
    return np.rad2deg(np.arccos(c))


def is_front_back_confusion(az_true, el_true, az_est, el_est, margin_deg: float = 0.0):
    """True where the estimate is closer to the true direction mirrored about the
    interaural (y-z) plane than to the true direction itself, by more than ``margin_deg``."""
    mirrored_az = wrap_azimuth(180.0 - np.asarray(az_true, dtype=np.float64))
    d_true = great_circle_deg(az_true, el_true, az_est, el_est)
    d_mirror = great_circle_deg(mirrored_az, el_true, az_est, el_est)
    return d_mirror + margin_deg < d_true
