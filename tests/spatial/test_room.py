"""Shoebox rooms: RT60, DRR and direct-path direction of the room responses."""
import numpy as np
import pytest

from spaq.auditory.doa import intensity_doa
from spaq.errors import SpaqError
from spaq.spatial.angles import great_circle_deg
from spaq.spatial.hrtf import load_hrtf
from spaq.spatial.room import measure_drr, measure_rt60, place_in_room, response_length_s, room_impulse_response

FS = 48000


@pytest.mark.parametrize("rt60", [0.3, 0.9])
def test_rt60_honoured(rt60):
    spec = place_in_room((6.0, 4.5, 3.0), rt60, 30, 0, 2.0, np.random.default_rng(0))
    rir, info = room_impulse_response(spec, FS, "ambisonics", order=1, rng=np.random.default_rng(1))
    assert abs(measure_rt60(rir[0], FS) - rt60) / rt60 < 0.1
    assert info["ism_order"] >= 1 and info["absorption"] > 0


def test_direct_path_direction_and_drr():
    rng = np.random.default_rng(2)
    spec = place_in_room((7.0, 5.0, 3.0), 0.5, -50, 15, 1.5, rng)
    az, el, dist = spec.direction()
    assert abs(az + 50) < 1e-6 and abs(el - 15) < 1e-6 and abs(dist - 1.5) < 1e-6
    rir, _ = room_impulse_response(spec, FS, "ambisonics", order=1, rng=rng, normalise="direct")
    # first 2 ms (direct sound only): intensity DoA within 1 degree of the placed direction
    s = np.random.default_rng(3).standard_normal(FS // 4)
    early = rir[:, : int(0.002 * FS)]
    x = np.stack([np.convolve(s, h)[: len(s)] for h in early])
    d = intensity_doa(x, FS)
    assert great_circle_deg(-50, 15, d.azimuth_deg[0], d.elevation_deg[0]) < 1.0
    drr = measure_drr(rir[0], FS)
    rir_q, _ = room_impulse_response(spec, FS, "ambisonics", order=1, rng=rng, normalise="direct",
                                     reverb_gain_db=-6.0)
    assert abs(measure_drr(rir_q[0], FS) - drr - 6.0) < 0.5


def test_binaural_room_cues_and_energy():
    h = load_hrtf("default", FS)
    spec = place_in_room((6.0, 5.0, 3.0), 0.4, 90, 0, 1.5, np.random.default_rng(4))
    rir, info = room_impulse_response(spec, FS, "binaural", hrtf=h, rng=np.random.default_rng(5))
    assert rir.shape[0] == 2
    onset = np.argmax(np.abs(rir).max(0) > 0.3 * np.abs(rir).max())
    early = rir[:, : onset + 64]
    assert np.sum(early[0] ** 2) > 4 * np.sum(early[1] ** 2)  # left source: left ear louder (> 6 dB)
    assert abs(measure_rt60(rir[0], FS) - 0.4) / 0.4 < 0.15
    assert info["normalise"] == "energy"


def test_impossible_room_is_refused():
    with pytest.raises(SpaqError):
        place_in_room((0.8, 4, 3), 0.5, 0, 0, 1.0, np.random.default_rng(0))


def test_tail_drawn_for_another_length_is_that_draw_cut_or_continued():
    """``tail_draw_length_s``: the diffuse tail's noise is the draw a response of that length makes,
    cut or continued; at the response's own length the response is exactly the default one."""
    from spaq.spatial.room import _tail_noise

    base = _tail_noise(np.random.default_rng(3), 4, 500, 500)
    np.testing.assert_array_equal(base, np.random.default_rng(3).standard_normal((4, 500)))
    np.testing.assert_array_equal(_tail_noise(np.random.default_rng(3), 4, 300, 500), base[:, :300])
    longer = _tail_noise(np.random.default_rng(3), 4, 800, 500)
    np.testing.assert_array_equal(longer[:, :500], base)
    assert longer.shape == (4, 800) and abs(np.std(longer[:, 500:]) - 1) < 0.1
    # the generator is left where the draw of 500 leaves it (the later draws do not move)
    r1, r2 = np.random.default_rng(3), np.random.default_rng(3)
    _tail_noise(r1, 4, 800, 500)
    r2.standard_normal((4, 500))
    assert r1.uniform() == r2.uniform()
    spec = place_in_room((6.0, 4.5, 3.0), 0.5, 30, 0, 2.0, np.random.default_rng(0))
    a, _ = room_impulse_response(spec, FS, "ambisonics", order=1, rng=np.random.default_rng(1))
    b, _ = room_impulse_response(spec, FS, "ambisonics", order=1, rng=np.random.default_rng(1),
                                 tail_draw_length_s=response_length_s(0.5))
    np.testing.assert_array_equal(a, b)


def test_min_rt60_is_the_rooms_bound():
    """``min_rt60_s``: the RT60 of fully absorbing walls, where pyroomacoustics' inverse Sabine
    formula stops (just above it builds, just below it is refused)."""
    import pyroomacoustics as pra

    from spaq.spatial.room import min_rt60_s

    dims = (8.5, 7.7, 3.5)
    lo = min_rt60_s(dims)
    v, s = 8.5 * 7.7 * 3.5, 2 * (8.5 * 7.7 + 8.5 * 3.5 + 7.7 * 3.5)
    assert lo == pytest.approx(0.161 * v / s, rel=0.01)  # Sabine's 0.161 V / S
    assert pra.inverse_sabine(lo * (1 + 1e-6), list(dims))[0] <= 1.0
    with pytest.raises(ValueError):
        pra.inverse_sabine(lo * 0.999, list(dims))


def test_measure_drr_of_a_known_response():
    """measure_drr on a response whose ratio is known by construction: a unit impulse at 10 ms and, from 20 ms on,
    an exponential tail of energy 0.1 (the window of 2.5 ms about the peak holds the impulse only): 10 dB, to
    rounding. Scaling the tail by -6 dB adds 6 dB; a leading axis (two ears) sums."""
    n = int(0.5 * FS)
    rir = np.zeros(n)
    rir[int(0.01 * FS)] = 1.0
    t = np.arange(n - int(0.02 * FS))
    tail = np.random.default_rng(0).standard_normal(len(t)) * np.exp(-t / (0.05 * FS))
    rir[int(0.02 * FS):] = tail * np.sqrt(0.1 / np.sum(tail ** 2))
    assert measure_drr(rir, FS) == pytest.approx(10.0, abs=1e-9)
    quieter = rir.copy()
    quieter[int(0.02 * FS):] *= 10 ** (-6 / 20)
    assert measure_drr(quieter, FS) == pytest.approx(16.0, abs=1e-9)
    assert measure_drr(np.stack([rir, rir]), FS) == pytest.approx(10.0, abs=1e-9)
