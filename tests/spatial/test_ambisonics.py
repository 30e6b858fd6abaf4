"""Ambisonics: encoding, rotation, truncation, normalisations and binaural decoding."""
import numpy as np
import pytest

from spaq.auditory.doa import intensity_doa
from spaq.spatial.ambisonics import (binaural_decoder, decode_binaural, diffuse_field, encode, fibonacci_directions,
                                     head_turn_yaw, magls_cutoff_hz, rotate, rotate_yaw, rotation_matrix,
                                     sh_rotation_matrix, truncate)
from spaq.spatial.angles import cart2sph, great_circle_deg, sph2cart
from spaq.spatial.hrtf import load_hrtf
from spaq.spatial.render import trajectory
from spaq.spatial.sh import convert_normalisation, sh_matrix

FS = 48000


def noise(n=FS // 2, seed=0):
    return np.random.default_rng(seed).standard_normal(n)


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize("az,el", [(0, 0), (37, 12), (-120, -25), (170, 60)])
def test_plane_wave_direction_recovered_within_1deg(order, az, el):
    x = encode(noise(), az, el, order)
    d = intensity_doa(x, FS)
    err = great_circle_deg(az, el, d.azimuth_deg[0], d.elevation_deg[0])
    assert err < 1.0, err
    assert d.diffuseness < 0.05


@pytest.mark.parametrize("order", [1, 2, 4])
def test_sh_rotation_exact(order):
    r = rotation_matrix(40, -25, 15)
    m = sh_rotation_matrix(order, r)
    a2, e2, _ = cart2sph(r @ sph2cart(-70, 20))
    assert np.allclose(m @ sh_matrix(order, -70, 20), sh_matrix(order, a2, e2), atol=1e-10)


@pytest.mark.parametrize("order", [1, 3, 5])
@pytest.mark.parametrize("yaw", [37.0, -140.0])
def test_rotate_yaw_is_the_sh_rotation(order, yaw):
    import torch

    x = np.random.default_rng(order).standard_normal((2, (order + 1) ** 2, 64))
    want = rotate(x, yaw)
    got = rotate_yaw(torch.from_numpy(x), np.deg2rad(yaw)).numpy()
    assert np.allclose(got, want, atol=1e-12)
    # per-sample angles: each sample turned by its own angle
    ang = np.linspace(-np.pi, np.pi, 64)
    got = rotate_yaw(torch.from_numpy(x), torch.from_numpy(ang)).numpy()
    for t in (0, 17, 63):
        assert np.allclose(got[..., t], rotate(x[..., t:t + 1], np.rad2deg(ang[t]))[..., 0], atol=1e-12)


def test_rotate_yaw_turns_a_plane_wave():
    import torch

    x = encode(noise(seed=3), 20, 10, 3)
    y = rotate_yaw(torch.from_numpy(x), np.deg2rad(50.0)).numpy()
    d = intensity_doa(y, FS)
    assert great_circle_deg(70, 10, d.azimuth_deg[0], d.elevation_deg[0]) < 1.0


@pytest.mark.parametrize("n,period", [(48000, 4.0), (480000, 4.0), (9600, 4.0), (100000, 1.0)])
def test_head_turn_covers_the_range_evenly(n, period):
    yaw = np.rad2deg(head_turn_yaw(0, n, n, FS, 60.0, period).numpy())
    assert yaw.min() >= -60.0 - 1e-9 and yaw.max() <= 60.0 + 1e-9
    assert yaw[0] == pytest.approx(-60.0)
    # a whole number of back-and-forth sweeps: every orientation in the range equally often
    hist, _ = np.histogram(yaw, bins=12, range=(-60, 60))
    assert hist.max() - hist.min() <= 0.01 * n / 12 + 4
    cycles = max(1, round(n / (FS * period)))
    assert np.max(np.abs(np.diff(yaw))) <= 4 * 60.0 * cycles / n + 1e-9  # constant speed, no jump
    # a segment of the signal is the same samples of the whole trajectory
    seg = np.rad2deg(head_turn_yaw(n // 3, n // 2, n, FS, 60.0, period).numpy())
    assert np.allclose(seg, yaw[n // 3:n // 2])


@pytest.mark.parametrize("yaw,pitch,roll", [(30, 0, 0), (-75, 20, 0), (10, -15, 40)])
def test_rotation_measured_within_1deg(yaw, pitch, roll):
    x = encode(noise(seed=1), 20, 10, 3)
    y = rotate(x, yaw, pitch, roll)
    expect = cart2sph(rotation_matrix(yaw, pitch, roll) @ sph2cart(20, 10))
    d = intensity_doa(y, FS)
    assert great_circle_deg(expect[0], expect[1], d.azimuth_deg[0], d.elevation_deg[0]) < 1.0
    # energy per order is kept (rotation is orthogonal within each order in N3D): a rotation that moved
    # energy between orders, or mixed one order's block wrongly, changes some order's sum by far more
    # than float64 rounding (~1e-15 relative)
    yn, xn = convert_normalisation(y, "sn3d", "n3d"), convert_normalisation(x, "sn3d", "n3d")
    for n in range(4):
        block = slice(n * n, (n + 1) * (n + 1))
        assert np.isclose(np.sum(yn[block] ** 2), np.sum(xn[block] ** 2), rtol=1e-9), n


def test_yaw_adds_to_azimuth():
    x = encode(noise(seed=2), 10, 0, 1)
    d = intensity_doa(rotate(x, yaw_deg=45), FS)
    assert abs(d.azimuth_deg[0] - 55) < 1.0


def test_truncation_and_normalisations():
    x = encode(noise(1000), 30, 20, 3)
    assert truncate(x, 1).shape[0] == 4
    z = truncate(x, 1, keep_channels=True)
    assert z.shape == x.shape and np.all(z[4:] == 0) and np.array_equal(z[:4], x[:4])
    assert np.allclose(encode(noise(1000), 30, 20, 3, "n3d"), convert_normalisation(x, "sn3d", "n3d"))
    f = encode(noise(1000), 30, 20, 1, "fuma")
    assert np.allclose(convert_normalisation(f, "fuma", "sn3d"), x[:4])
    assert np.allclose(f[0], noise(1000) / np.sqrt(2))  # FuMa W at -3 dB


def test_moving_source_encoding():
    T = FS
    az, el = trajectory(-60, 0, T, FS, azimuth_speed_deg_s=120)
    x = encode(noise(T, 3), az, el, 1)
    d0 = intensity_doa(x[:, : FS // 10], FS)
    d1 = intensity_doa(x[:, -FS // 10:], FS)
    assert abs(d0.azimuth_deg[0] - (-57)) < 4 and abs(d1.azimuth_deg[0] - 57) < 4


def test_diffuse_field_is_diffuse():
    sig = np.random.default_rng(4).standard_normal((32, FS // 2))
    x = diffuse_field(sig, 1, np.random.default_rng(0))
    # long-term diffuseness 1 - |<W [X Y Z]>| / <(W^2 + X^2 + Y^2 + Z^2) / 2>: 1 diffuse, 0 plane wave
    w, yy, z, xx = x
    psi = 1 - np.linalg.norm([np.mean(w * xx), np.mean(w * yy), np.mean(w * z)]) / np.mean((x ** 2).sum(0) / 2)
    assert psi > 0.9
    assert intensity_doa(x, FS).diffuseness > 0.6  # short-time estimate (biased low by averaging)
    assert np.isclose(np.mean(x[0] ** 2), 1.0, rtol=0.05)  # W has one signal's power


@pytest.fixture(scope="module")
def ku100():
    return load_hrtf("default", FS)


def test_binaural_decoders(ku100):
    s = noise(FS // 2, 5)
    ref = np.stack([np.convolve(s, h)[: len(s)] for h in ku100.interpolate(90, 0)])
    res = {}
    for method in ("ls", "magls"):
        dec = binaural_decoder(ku100, 3, method)
        assert dec.shape[:2] == (2, 16)
        y = decode_binaural(encode(s, 90, 0, 3), dec)

        def band_db(z, lo, hi):
            f = np.fft.rfftfreq(z.shape[-1], 1 / FS)
            p = np.abs(np.fft.rfft(z, axis=-1)) ** 2
            return 10 * np.log10(p[:, (f >= lo) & (f < hi)].sum(-1))

        hf_err = np.abs(band_db(y, 6000, 16000) - band_db(ref, 6000, 16000))  # per ear, dB
        lf_err = np.abs(band_db(y, 100, 1000) - band_db(ref, 100, 1000))
        ild = 10 * np.log10(np.sum(y[0] ** 2) / np.sum(y[1] ** 2))
        res[method] = (hf_err.max(), lf_err.max(), ild)
    ild_ref = 10 * np.log10(np.sum(ref[0] ** 2) / np.sum(ref[1] ** 2))
    # low frequencies are reproduced by both; MagLS keeps the high-frequency level that LS loses
    assert res["ls"][1] < 1.0 and res["magls"][1] < 1.0
    print(res)
    assert res["magls"][0] < 3.0 and res["magls"][0] < res["ls"][0] - 3.0
    assert abs(res["magls"][2] - ild_ref) < 2.0


def _magnitude_error_db(hrtf, decoder, bands=((2000, 4000), (4000, 8000), (8000, 16000)), n_fft=512):
    """Per band: rms over the set's directions (quadrature weights), ears and bins of the dB error of
    the decoded plane waves' magnitudes against the HRIRs' own."""
    w = hrtf.quadrature_weights()
    w = w / w.sum()
    H = np.abs(np.fft.rfft(hrtf.hrir, n_fft, axis=-1))  # (K, 2, F)
    Y = sh_matrix(int(round(np.sqrt(decoder.shape[1]))) - 1, hrtf.azimuth_deg, hrtf.elevation_deg)
    R = np.abs(np.einsum("ecf,ck->kef", np.fft.rfft(decoder, n_fft, axis=-1), Y))
    err = 20 * np.log10((R + 1e-12) / (H + 1e-12))
    f = np.fft.rfftfreq(n_fft, 1 / hrtf.sample_rate)
    return [float(np.sqrt(np.einsum("k,kef->", w, err[..., (f >= lo) & (f < hi)] ** 2) / (2 * ((f >= lo) & (f < hi)).sum())))
            for lo, hi in bands]


def test_magls_decoder_is_causal_and_matches_the_hrirs(ku100):
    """Decoded plane waves from 64 directions against the KU100's own HRIRs, per band (medians over
    directions and ears). Before the modelling delay, the acausal part of the MagLS filters wrapped to the
    buffer end and was faded out: 12-27 % of each filter's energy in its last eighth, MagLS 0.4-1 dB off LS
    below the cutoff and -7 / -9 dB at 4-8 / 8-16 kHz for order 3."""
    dirs = np.asarray(fibonacci_directions(64))
    az, el = dirs[:, 0], dirs[:, 1]
    hr = np.stack([ku100.interpolate(a, e) for a, e in zip(az, el)])  # (K, 2, taps)
    n_fft = 4096
    f = np.fft.rfftfreq(n_fft, 1 / FS)

    def band_db(h, lo, hi):  # (K, 2) band energies in dB
        m = (f >= lo) & (f < hi)
        return 10 * np.log10((np.abs(np.fft.rfft(h, n_fft)) ** 2)[..., m].sum(-1))

    rms_err = {}
    for order in (1, 2, 3):
        Y = sh_matrix(order, az, el)
        resp = {m: np.einsum("ent,nk->ket", binaural_decoder(ku100, order, m), Y) for m in ("ls", "magls")}
        d = binaural_decoder(ku100, order, "magls")
        tail = (d[..., -d.shape[-1] // 8:] ** 2).sum(-1) / (d ** 2).sum(-1)
        assert tail.max() < 1e-3, (order, tail.max())
        # below the cutoff MagLS is LS: same magnitudes
        cut = magls_cutoff_hz(order)
        lf = band_db(resp["magls"], 100, 0.95 * cut) - band_db(resp["ls"], 100, 0.95 * cut)
        assert np.abs(np.median(lf)) < 0.05, (order, np.median(lf))
        rms_err[order] = _magnitude_error_db(ku100, d)
        # above it, the magnitudes of the HRIRs (LS loses 11-21 dB at 4-16 kHz)
        for lo, hi in ((2000, 4000), (4000, 8000), (8000, 16000)):
            err = np.median(band_db(resp["magls"], lo, hi) - band_db(hr, lo, hi))
            assert abs(err) < 1.5, (order, lo, hi, err)
    # a higher order is closer to the HRIRs in every band above 2 kHz (magnitude error per bin, rms over
    # the KU100's 2702 directions, quadrature-weighted, and both ears).
    # With the least-squares part up to 700 (N + 1) Hz (before version 9 of quality) the order-3 decoder
    # was the furthest at 2-4 kHz (LS beyond kr = N loses magnitude)
    for lo_order in (1, 2):
        assert all(a > b for a, b in zip(rms_err[lo_order], rms_err[lo_order + 1])), rms_err


def test_magls_cutoff_is_where_the_order_resolves_the_head():
    """kr = N with r = 8.75 cm: 624 Hz per order, at least 200 Hz."""
    assert magls_cutoff_hz(0) == 200.0
    for n in (1, 2, 3, 5):
        assert magls_cutoff_hz(n) == pytest.approx(n * 343.0 / (2 * np.pi * 0.0875))
    assert 620 < magls_cutoff_hz(1) < 630
