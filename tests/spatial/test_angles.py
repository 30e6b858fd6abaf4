"""spatial.angles: lateral angle, tangent frames and bearings towards the interaural poles."""
import math

import numpy as np
import pytest

from spaq.spatial.angles import (bearing_to_other_pole, bearing_to_pole, lateral_angle, lateral_sense, sph2cart,
                                 tangent_frame)

EPS = 1e-9  # float64 trigonometry of O(1) values


@pytest.mark.parametrize("az, el, lat", [(0, 0, 0), (90, 0, 90), (-90, 0, -90), (30, 0, 30), (150, 0, 30),
                                         (-150, 0, -30), (90, 60, 30), (0, 90, 0), (45, 45, 30)])
def test_lateral_angle_reference_values(az, el, lat):
    v = sph2cart(az, el)
    assert abs(lateral_angle(v) - lat) < 1e-6  # asin near +-1 loses half the digits
    assert abs(lateral_angle(3.7 * v) - lat) < 1e-6  # any length
    assert lateral_angle(np.stack([v, v])).shape == (2,)


def _move(az, el, dist_deg, bearing_deg):
    v, north, east = tangent_frame(az, el)
    d, b = math.radians(dist_deg), math.radians(bearing_deg)
    return math.cos(d) * v + math.sin(d) * (math.cos(b) * north + math.sin(b) * east)


def test_tangent_frame_is_orthonormal():
    for az, el in [(0, 0), (37, -20), (-120, 80), (10, 90)]:
        v, n, e = tangent_frame(az, el)
        M = np.stack([v, n, e])
        assert np.allclose(M @ M.T, np.eye(3), atol=EPS)
        assert np.allclose(np.cross(e, n), v, atol=EPS)  # (v, east, north) right-handed
        if abs(el) < 90:
            assert n[2] > 0  # north points up


@pytest.mark.parametrize("az, el, side", [(20, 10, 1), (20, 10, -1), (-130, -30, 1), (160, 50, -1)])
def test_bearing_to_pole_moves_lateral_angle_exactly_and_keeps_polar(az, el, side):
    b = bearing_to_pole(az, el, side)
    v0 = sph2cart(az, el)
    lat0 = float(lateral_angle(v0))
    polar0 = math.degrees(math.atan2(v0[2], v0[0]))
    room = 90 - side * lat0  # distance to the pole
    for d in np.linspace(0, room - 1, 7):
        v = _move(az, el, d, b)
        assert abs(float(lateral_angle(v)) - (lat0 + side * d)) < 1e-6
        assert abs(math.degrees(math.atan2(v[2], v[0])) - polar0) < 1e-6
    assert bearing_to_pole(90, 0, 1) is None  # at the left pole


def test_bearing_to_other_pole_crosses_the_median_plane():
    assert bearing_to_other_pole(0, 20) is None and bearing_to_other_pole(180, -10) is None
    for az, el in [(40, 0), (-70, 30)]:
        lat0 = float(lateral_angle(sph2cart(az, el)))
        b = bearing_to_other_pole(az, el)
        lats = [float(lateral_angle(_move(az, el, d, b))) for d in range(0, 91, 10)]
        assert np.all(np.diff(lats) * np.sign(lat0) < 0)  # monotone towards, then past, 0
        assert np.sign(lats[-1]) == -np.sign(lat0)


def test_lateral_sense_moves_towards_the_median_plane():
    for az, el in [(30, 0), (120, 20), (-60, -10), (-160, 40)]:
        s = lateral_sense(az, el)
        assert s in (-1, 1)
        lat0 = abs(float(lateral_angle(sph2cart(az, el))))
        assert abs(float(lateral_angle(sph2cart(az + s * 5.0, el)))) < lat0
    assert lateral_sense(0, 10) == 0 and lateral_sense(90, 0) == 0 and lateral_sense(180, 0) == 0


def test_great_circle_is_exact_near_0_and_180():
    """atan2 of the cross and dot products: identical directions are 0 exactly (arccos gave 8.5e-07 degrees), and a
    tiny or near-antipodal angle keeps its digits (arccos loses half of them there)."""
    from spaq.spatial.angles import great_circle_deg

    rng = np.random.default_rng(0)
    az, el = rng.uniform(-180, 180, 50), rng.uniform(-89, 89, 50)
    assert np.all(great_circle_deg(az, el, az, el) == 0.0)
    # 1e-6 degrees along the equator is 1e-6 degrees to float64 rounding (a few ulps of the inputs' sum)
    assert great_circle_deg(10.0, 0.0, 10.0 + 1e-6, 0.0) == pytest.approx(1e-6, rel=1e-6)
    assert great_circle_deg(0.0, 0.0, 180.0 - 1e-6, 0.0) == pytest.approx(180.0 - 1e-6, abs=1e-9)
    # along a meridian it is the elevation difference
    assert great_circle_deg(30.0, 10.0, 30.0, 55.5) == pytest.approx(45.5, abs=1e-12)
