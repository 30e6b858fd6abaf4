"""Intensity-vector DoA: plane waves, two sources, trajectories, diffuseness, bad input."""
import numpy as np
import pytest
import torch

from spaq.auditory.doa import fibonacci_sphere, intensity_doa
from spaq.errors import SpaqInputError
from spaq.spatial.angles import cart2sph, great_circle_deg, sph2cart
from spaq.spatial.sh import convert_normalisation, sh_matrix

FS = 16000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def encode(order, az, el, s):
    """Plane wave(s): az, el (D,), s (T,) or (D, T) -> (D, C, T) ACN/SN3D."""
    Y = sh_matrix(order, np.atleast_1d(az), np.atleast_1d(el))  # (C, D)
    s = np.broadcast_to(s, (Y.shape[1], s.shape[-1]))
    return Y.T[:, :, None] * s[:, None, :]


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_plane_waves_within_one_degree_any_order(order):
    rng = np.random.default_rng(order)
    dirs = fibonacci_sphere(40)
    az, el, _ = cart2sph(dirs)
    az = np.append(az, [0.0, 90.0, 180.0, -90.0, 33.0])
    el = np.append(el, [0.0, 0.0, 0.0, 89.5, -89.5])
    x = encode(order, az, el, rng.standard_normal(FS // 4))
    r = intensity_doa(x, FS)
    assert r.azimuth_deg.shape == (len(az), 1)
    err = great_circle_deg(az, el, r.azimuth_deg[:, 0], r.elevation_deg[:, 0])
    assert err.max() < 1.0, err.max()
    assert np.all(r.confidence > 0.99)
    assert np.all(r.diffuseness < 0.01)
    assert not r.silent.any()


def test_plane_wave_torch_input_and_normalisations():
    rng = np.random.default_rng(3)
    az, el = 123.0, -27.0
    x = encode(1, az, el, rng.standard_normal(FS // 4))[0]
    for norm in ("n3d", "fuma"):
        y = convert_normalisation(x, "sn3d", norm)
        r = intensity_doa(torch.as_tensor(y, dtype=torch.float32), FS, normalisation=norm)
        assert great_circle_deg(az, el, r.azimuth_deg[0], r.elevation_deg[0]) < 1.0


def _gated_noise(rng, n, segments=40):
    g = (rng.random(segments) > 0.5).repeat(int(np.ceil(n / segments)))[:n]
    return rng.standard_normal(n) * g


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_sources_60_degrees_apart_both_found(seed):
    rng = np.random.default_rng(seed)
    a1, e1 = rng.uniform(-180, 180), rng.uniform(-40, 40)
    v1 = sph2cart(a1, e1)
    perp = np.cross(v1, rng.standard_normal(3))
    perp /= np.linalg.norm(perp)
    a2, e2, _ = cart2sph(0.5 * v1 + np.sqrt(0.75) * perp)  # 60 deg away
    assert abs(great_circle_deg(a1, e1, a2, e2) - 60.0) < 1e-6
    n = 2 * FS
    x = encode(2, [a1], [e1], _gated_noise(rng, n))[0] + encode(2, [a2], [e2], _gated_noise(rng, n))[0]
    r = intensity_doa(x, FS, n_sources=2)
    est = list(zip(r.azimuth_deg, r.elevation_deg))
    for a, e in [(a1, e1), (a2, e2)]:
        err = min(great_circle_deg(a, e, ea, ee) for ea, ee in est)
        assert err < 3.0, (a, e, est)
    assert np.all(r.confidence > 0.2)


def test_trajectory_follows_a_jump():
    rng = np.random.default_rng(5)
    n = FS
    s = rng.standard_normal(n)
    x = encode(1, [30.0], [0.0], s)[0]
    x[:, n // 2:] = encode(1, [-100.0], [20.0], s[n // 2:])[0]
    r = intensity_doa(x, FS, n_sources=1, frame_s=0.1)
    t = r.frame_times_s
    assert r.frame_azimuth_deg.shape == (1, len(t))
    first = t < 0.4
    last = t > 0.6
    assert np.all(great_circle_deg(30.0, 0.0, r.frame_azimuth_deg[0, first], r.frame_elevation_deg[0, first]) < 1.0)
    assert np.all(great_circle_deg(-100.0, 20.0, r.frame_azimuth_deg[0, last], r.frame_elevation_deg[0, last]) < 1.0)


def test_diffuse_field_is_diffuse_and_plane_wave_is_not():
    rng = np.random.default_rng(7)
    dirs = fibonacci_sphere(200)
    az, el, _ = cart2sph(dirs)
    x = encode(1, az, el, rng.standard_normal((200, FS // 2))).sum(0)
    r = intensity_doa(x, FS, allow_silence=True, max_diffuseness=1.0)
    assert r.diffuseness > 0.6
    y = encode(1, [10.0], [10.0], rng.standard_normal(FS // 2))[0] * 40 + x
    r2 = intensity_doa(y, FS)
    assert r2.diffuseness < 0.2
    assert great_circle_deg(10.0, 10.0, r2.azimuth_deg[0], r2.elevation_deg[0]) < 3.0


def test_silence_is_said_clearly():
    x = np.zeros((4, FS // 4))
    with pytest.raises(SpaqInputError, match="silent"):
        intensity_doa(x, FS)
    r = intensity_doa(np.stack([x, encode(1, [40.0], [0.0], np.ones(FS // 4) * 0 + np.random.default_rng(0).standard_normal(FS // 4))[0]]), FS, allow_silence=True)
    assert r.silent.tolist() == [True, False]
    assert np.isnan(r.azimuth_deg[0, 0]) and abs(r.azimuth_deg[1, 0] - 40.0) < 1.0
    d = r.to_dict()
    assert d["azimuth_deg"][0][0] is None


def test_what_is_silent_is_said():
    """No direction: the message says what is silent, not 'the input is silent' for a loud file (a quad file
    with content in channel 0 only, read as W; one with content in channel 1 only; W alone beside 3OA)."""
    rng = np.random.default_rng(0)
    w_only = np.zeros((4, FS // 2))
    w_only[0] = 0.1 * rng.standard_normal(FS // 2)
    with pytest.raises(SpaqInputError, match=r"^the input: its first-order \(directional\) channels 2-4 are silent "
                                             r"\(all zero\) while W is not \(-20 dBFS\): an omnidirectional signal "
                                             r"has no direction"):
        intensity_doa(w_only, FS)
    y_only = np.roll(w_only, 1, axis=0)
    with pytest.raises(SpaqInputError, match=r"^the input: its W \(omnidirectional, channel 1\) is silent \(all zero\) "
                                             r"while its first-order channels are not \(-20 dBFS\): not an ACN/SN3D "
                                             r"ambisonic signal, or its channels are in another order"):
        intensity_doa(y_only, FS)
    with pytest.raises(SpaqInputError, match=r"^the input is silent \(W and its first-order channels below -100 dBFS\)"):
        intensity_doa(np.zeros((4, FS // 2)), FS)
    good = encode(1, [40.0], [0.0], rng.standard_normal(FS // 2))[0]
    with pytest.raises(SpaqInputError, match=r"^1 of 2 items \(first: item 1\): its first-order"):
        intensity_doa(np.stack([good, w_only]), FS)
    hoa3 = np.zeros((16, FS // 2))
    hoa3[0] = w_only[0]
    with pytest.raises(SpaqInputError, match=r"channels 2-4 are silent"):
        intensity_doa(hoa3, FS)


def test_bad_channel_counts():
    with pytest.raises(SpaqInputError, match="not ambisonics"):
        intensity_doa(np.zeros((5, 1000)), FS)
    with pytest.raises(SpaqInputError, match="FuMa"):
        intensity_doa(np.zeros((9, 1000)), FS, normalisation="fuma")


def test_onset_weighting_prefers_the_direct_sound():
    """A gated source at 30 deg and a stronger copy 30 ms later from -60 deg (a reflection):
    energy weighting follows the reflection, onset weighting (precedence) the direct sound."""
    rng = np.random.default_rng(0)
    n = FS
    s = rng.standard_normal(n) * np.repeat(rng.random(20) > 0.5, n // 20)
    d = int(0.03 * FS)
    refl = 1.2 * np.concatenate([np.zeros(d), s[:-d]])
    x = sh_matrix(1, 30.0, 0.0)[:, None] * s + sh_matrix(1, -60.0, 0.0)[:, None] * refl
    plain = intensity_doa(x, FS)
    onset = intensity_doa(x, FS, onset_power=2.0)
    assert great_circle_deg(-60.0, 0.0, plain.azimuth_deg[0], plain.elevation_deg[0]) < 3.0
    assert great_circle_deg(30.0, 0.0, onset.azimuth_deg[0], onset.elevation_deg[0]) < 2.0
    # a plane wave is unaffected
    y = encode(1, [100.0], [-10.0], rng.standard_normal(FS // 2))[0]
    r = intensity_doa(y, FS, onset_power=2.0)
    assert great_circle_deg(100.0, -10.0, r.azimuth_deg[0], r.elevation_deg[0]) < 1.0
