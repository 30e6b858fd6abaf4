import numpy as np
import pytest

import spaq
from conftest import binaural_noise, plane_wave_scene
from spaq.spatial.angles import great_circle_deg
from spaq.spatial.ambisonics import rotate


def test_ambisonic_rotation_is_measured():
    x = plane_wave_scene(1, 1.0, dirs=((40.0, 10.0),))
    r = spaq.score(x, rotate(x, yaw_deg=30.0), sample_rate=48000, metrics=["localization"]).results["localization"]
    expected = float(great_circle_deg(40.0, 10.0, 70.0, 10.0))
    assert r.score == pytest.approx(expected, abs=1.0)
    assert r.values["reference_directions"][0]["azimuth_deg"] == pytest.approx(40.0, abs=1.0)
    assert r.values["degraded_directions"][0]["azimuth_deg"] == pytest.approx(70.0, abs=1.0)


def test_identity_is_zero_and_batched():
    x = plane_wave_scene(1, 1.0, dirs=((-120.0, 0.0),))
    b = spaq.score(np.stack([x, x]), np.stack([x, rotate(x, yaw_deg=-45.0)]), sample_rate=48000,
                   metrics=["localization"]).results["localization"]
    assert b.score.shape == (2,)
    assert b.score[0] == pytest.approx(0.0, abs=1e-6)
    assert b.score[1] == pytest.approx(45.0, abs=1.0)


def test_binaural_swapped_ears_moves_the_source():
    x = binaural_noise(1.0, ild_db=10.0, itd=20)  # left-leading, louder left: source on the left
    r = spaq.score(x, x[::-1].copy(), sample_rate=48000, metrics=["localization"]).results["localization"]
    ref_az = r.values["reference_directions"][0]["azimuth_deg"]
    deg_az = r.values["degraded_directions"][0]["azimuth_deg"]
    assert ref_az > 20 and deg_az < -20  # left vs right hemisphere
    assert r.score > 40
