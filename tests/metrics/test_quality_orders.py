"""Effective-order decoding and ``d_order`` (quality version 8, issue 19): an ambisonic signal is
decoded at the highest order that carries energy, as renderers decode lower-order content, and
the share of the reference's higher-order energy the degraded signal lacks is ``d_order``."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from spaq.auditory.frontend import AuditoryFrontEnd
from spaq.auditory.pairs import ear_spectrum
from spaq.io import load_pair
from spaq.metrics import load_metric
from spaq.metrics.functional.quality import order_loss, pool_features, quality_maps
from spaq.models.quality import LATER_FEATURES, SPATIAL_FEATURES, TIMBRAL_FEATURES, QualityMapping
from spaq.spatial.ambisonics import encode, truncate
from spaq.spatial.decoders import ORDER_PRESENT_SHARE, effective_order, hrtf_decoder, hrtf_decoders

FS = 48000
# The order energies are float32 spectra (an energy share needs no more): a band energy carries a
# relative error of a few unit roundoffs (6e-8) x sqrt(log2 of the window) per value, well under 1e-6,
# and a share or a loss built from two of them under 2e-6. Paths that run the same float32 spectra on
# other memory layouts (a strided view, another batch) may round differently by that much: levels
# in dB then differ by <= 4.34 x 2e-6 (the bound of tests/metrics/test_quality.py's F32_LEVEL_DB is
# of the same size).
F32_SHARE = 2e-6
F32_DB = 4.34 * F32_SHARE


def _scene(order: int, seconds: float = 0.5, seed: int = 2) -> np.ndarray:
    """Two noise plane waves (30 deg left and up, 120 deg right behind) of ``order``, ``(C, T)``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    return (encode(0.05 * rng.standard_normal(n), 30.0, 20.0, order)
            + encode(0.03 * rng.standard_normal(n), -120.0, 0.0, order))


def _padded(x: np.ndarray, order: int) -> np.ndarray:
    return truncate(x, order, keep_channels=True)


def test_effective_order_is_the_highest_order_with_energy():
    e = np.ones(16)
    assert int(effective_order(torch.tensor(e))) == 3
    for n in range(4):
        z = e.copy()
        z[(n + 1) ** 2:] = 0.0
        assert int(effective_order(torch.tensor(z))) == n
    # numerical dust below the share does not count, energy just above it does
    z = e.copy()
    z[4:] = 0.0
    z[6] = 0.5 * ORDER_PRESENT_SHARE * 4  # ACN 6: order 2
    assert int(effective_order(torch.tensor(z))) == 1
    z[6] = 2.0 * ORDER_PRESENT_SHARE * 5
    assert int(effective_order(torch.tensor(z))) == 2
    # batched, silence is order 0
    b = torch.stack([torch.tensor(e), torch.zeros(16)])
    assert effective_order(b).tolist() == [3, 0]
    with pytest.raises(ValueError):
        effective_order(torch.ones(5))


def test_each_signal_of_a_batch_is_decoded_with_its_own_order():
    fe = AuditoryFrontEnd()
    x3 = torch.from_numpy(_scene(3, 0.2))
    x1 = torch.from_numpy(_padded(_scene(3, 0.2, seed=5), 1))
    x = torch.stack([x3, x1])  # (2, 16, T)
    decs = hrtf_decoders(3)
    got = ear_spectrum(x, fe, decs, orders=torch.tensor([3, 1]))
    want3 = ear_spectrum(x3[None], fe, hrtf_decoder(3))[0]
    want1 = ear_spectrum(x1[None, :4], fe, hrtf_decoder(1))[0]
    # exact mode: float64 spectra, the same FFTs on a gathered copy (rounding ~1e-16 x log2 N)
    np.testing.assert_allclose(got[0].numpy(), want3.numpy(), rtol=0, atol=1e-12 * float(want3.abs().max()))
    np.testing.assert_allclose(got[1].numpy(), want1.numpy(), rtol=0, atol=1e-12 * float(want1.abs().max()))
    # the zero-padded first-order signal through the third-order decoder is another signal
    zp = ear_spectrum(x1[None], fe, hrtf_decoder(3))[0]
    assert float((zp - want1).abs().max()) > 1e-3 * float(want1.abs().max())


def test_zero_padding_a_pair_does_not_change_its_score():
    """First-order content scores the same as 4 channels and zero-padded to 16: both are decoded
    with the first-order decoder, and orders the reference does not have do not count."""
    m = load_metric("quality")
    a = _scene(1, seed=3)
    b = a * 0.8 + 0.004 * np.random.default_rng(4).standard_normal(a.shape)
    s4 = m.score(load_pair(a, b, sample_rate=FS, target_rate=FS))
    s16 = m.score(load_pair(_padded(np.pad(a, ((0, 12), (0, 0))), 3), np.pad(b, ((0, 12), (0, 0))),
                            sample_rate=FS, target_rate=FS))
    assert s4.score < 99
    # the same decoder on the same samples; only float32 rounding on another memory layout differs
    assert s16.score == pytest.approx(s4.score, rel=F32_SHARE)
    for k in TIMBRAL_FEATURES + SPATIAL_FEATURES:
        assert s16.values[k] == pytest.approx(s4.values[k], rel=F32_SHARE, abs=F32_DB), k


def test_d_order_counts_the_orders_a_truncation_removed():
    fe = AuditoryFrontEnd()
    x = torch.from_numpy(_scene(3))[None]
    decs = hrtf_decoders(3)
    got = []
    for n in (3, 2, 1, 0):
        y = torch.from_numpy(_padded(x[0].numpy(), n))[None]
        got.append(float(pool_features(quality_maps(x, y, fe, decs, chunk_frames=None))["d_order"][0]))
    # (3 - n) / 3 of the orders above W are gone, the kept ones unchanged (no gain change: W is kept)
    np.testing.assert_allclose(got, [0.0, 1 / 3, 2 / 3, 1.0], atol=F32_SHARE)  # 0 and 1 per order, up to float32 rounding
    # half the energy of every order above W gone: 1/2; energy added to them: not counted
    h = x.clone()
    h[:, 1:] *= np.sqrt(0.5)
    assert float(pool_features(quality_maps(x, h, fe, decs, chunk_frames=None))["d_order"][0]) == pytest.approx(
        0.5, abs=F32_SHARE)
    h = x.clone()
    h[:, 1:] *= 2.0
    assert float(pool_features(quality_maps(x, h, fe, decs, chunk_frames=None))["d_order"][0]) == 0.0
    # a change alike in every order (gain, low-pass) is timbre, not lost resolution
    from scipy.signal import butter, sosfilt

    lp = torch.from_numpy(sosfilt(butter(8, 3000, fs=FS, output="sos"), x[0].numpy(), axis=-1))[None]
    f = pool_features(quality_maps(x, 0.5 * lp, fe, decs, chunk_frames=None))
    assert float(f["d_order"][0]) < 0.02 and float(f["missing_db"][0]) > 1.0
    # binaural input has no d_order; a reference of order 0 has no order to lose
    e = torch.zeros(1, 2, 4, 5, 7, dtype=torch.float64)
    e[:, :, 0] = 1.0
    assert float(order_loss(e)[0]) == 0.0


def test_truncation_ladder_is_monotone_with_the_shipped_weights():
    m = load_metric("quality")
    x = _scene(3, seed=6)
    degs = [_padded(x, n) for n in (2, 1, 0)]
    r = m.score(load_pair(np.stack([x] * 3), np.stack(degs), sample_rate=FS, target_rate=FS))
    s = np.asarray(r.score)
    assert np.all(np.diff(s) < 0) and s[0] < 100, s
    np.testing.assert_allclose(np.asarray(r.values["d_order"]), [1 / 3, 2 / 3, 1.0], atol=F32_SHARE)


def test_orders_are_chosen_on_the_whole_signal_when_chunked():
    """Higher orders that carry sound only in the last second still make the whole reference
    third order: every chunk is decoded at order 3, as the unchunked signal is."""
    fe = AuditoryFrontEnd()
    x = _padded(_scene(3, 2.0, seed=7), 1)
    late = _scene(3, 2.0, seed=8)
    x[:, -FS:] += late[:, -FS:]
    a = torch.from_numpy(x)[None]
    b = torch.from_numpy(_padded(x, 1))[None]
    decs = hrtf_decoders(3)
    f1 = pool_features(quality_maps(a, b, fe, decs, chunk_frames=None))
    f2 = pool_features(quality_maps(a, b, fe, decs, chunk_frames=10, context_frames=5))
    assert float(f1["d_order"][0]) > 0.5
    assert float(f2["d_order"][0]) == pytest.approx(float(f1["d_order"][0]), rel=F32_SHARE)
    # levels: the same decoders in every chunk (a chunk decoded at another order would move them
    # by decibels; the tolerance is the float32 band rounding of test_quality's chunked test)
    assert float(f2["missing_db"][0]) == pytest.approx(float(f1["missing_db"][0]), rel=1e-3, abs=1e-4)


def test_parameter_files_without_d_order_give_it_no_weight():
    from importlib.resources import files

    assert "d_order" in LATER_FEATURES
    p = json.loads((files("spaq") / "resources" / "weights" / "quality_v5.json").read_text())
    assert "d_order" not in p["mapping"]["spatial_weights"]
    m = QualityMapping.from_params(p["mapping"])
    assert m.weights()["spatial"]["d_order"] == 0.0
    # an earlier feature missing is still refused
    bad = json.loads(json.dumps(p["mapping"]))
    del bad["spatial_weights"]["d_ic"]
    with pytest.raises(ValueError):
        QualityMapping.from_params(bad)


def test_w_alone_takes_the_order_of_the_signal_it_is_compared_with():
    """Version 13: an omnidirectional signal has no order of its own to be played at; beside a
    signal of order >= 1 it is decoded with that signal's decoder. Orders >= 1 keep their own."""
    from spaq.spatial.decoders import pair_orders

    def energies(order):
        e = np.zeros(16)
        e[:(order + 1) ** 2] = 1.0
        return e

    e = torch.tensor(np.stack([energies(n) for n in (3, 0, 1, 0, 2)]))
    ref = torch.tensor(np.stack([energies(n) for n in (0, 3, 3, 0, 1)]))
    assert pair_orders(ref, e).tolist() == [[3, 3], [3, 3], [3, 1], [0, 0], [1, 2]]
    # silence is order 0 and is decoded like W alone
    assert pair_orders(torch.tensor(energies(2))[None], torch.zeros(1, 16, dtype=torch.float64)).tolist() == [[2, 2]]


@pytest.mark.parametrize("name", ["quality", "cues"])
def test_downmix_ladder_is_monotone_to_w_alone(name):
    """The corpus's ``downmix`` ladder of a third-order scene (every directional channel scaled by
    1, 0.5, 0.25, 0): W alone, decoded with the order-0 decoder as up to version 12, scored better
    than the field with its directional channels at a quarter (quality 13.0 against 11.6 with version
    12) and ``cues`` read a smaller timbral change there (level error 1.9 dB against 5.3 dB).
    Decoded with the reference's third-order decoder, every step is worse than the one before."""
    m = load_metric(name)
    x = _scene(3, 1.0, seed=6)
    degs = []
    for g in (0.5, 0.25, 0.0):
        y = x.copy()
        y[1:] *= g
        degs.append(y)
    r = m.score(load_pair(np.stack([x] * 3), np.stack(degs), sample_rate=FS, target_rate=FS))
    if name == "quality":
        s = np.asarray(r.score)
        assert np.all(np.diff(s) < -2.0), s  # steps of 16 and 5.5 points measured; 2 is far from rounding
    else:
        lev = np.asarray(r.values["level_mean_abs_db"])
        assert np.all(np.diff(lev) > 0.5), lev  # 3.5 / 5.3 / 6.3 dB measured


def test_every_pair_metric_decodes_w_alone_at_the_other_order():
    """``sqm`` and the classic metrics decode a pair by the same rule (``pair_orders``): W alone
    against a third-order reference is heard through the third-order decoder, so scoring the
    ambisonic pair equals scoring both signals decoded at order 3 beforehand."""
    from spaq.metrics.functional.classic import channels_for, pair_decode_orders
    from spaq.spatial.decoders import decode_binaural_effective

    x = _scene(3, 1.0, seed=13)[None]
    w = np.zeros_like(x)
    w[:, 0] = 0.8 * x[:, 0]
    o_ref, o_deg = pair_decode_orders(x, w)
    assert o_ref.tolist() == [3] and o_deg.tolist() == [3]
    three = torch.tensor([3])
    bx = decode_binaural_effective(torch.from_numpy(x), FS, three)
    bw = decode_binaural_effective(torch.from_numpy(w), FS, three)
    views = channels_for(w, None, FS, o_deg)
    np.testing.assert_array_equal(views["left"], bw[:, 0].numpy())
    # alone, W is decoded with the order-0 decoder: another signal (the rule is the pair's)
    assert not np.allclose(channels_for(w, None, FS)["left"], bw[:, 0].numpy(), atol=1e-6)
    si = load_metric("si_sdr").forward(torch.from_numpy(x), torch.from_numpy(w))
    si_b = load_metric("si_sdr").forward(bx, bw)
    # both sides run the same float64 decode on the same samples, then the same metric: equal up to
    # the order of float64 sums (1e-9 dB is ~1e5 unit roundoffs of a ~10 dB value); sqm below runs the
    # same decode cast to float32 and one network: 1e-6 is a few float32 unit roundoffs (6e-8) per layer
    for v in ("left", "right"):
        assert float(si[v][0]) == pytest.approx(float(si_b[v][0]), abs=1e-9)
    m = load_metric("sqm")
    a = m.distances(torch.from_numpy(x), torch.from_numpy(w))
    b = m.distances(bx, bw)
    assert float(a["score"][0]) == pytest.approx(float(b["score"][0]), abs=1e-6)
    assert float(a["deep_feature_distance"][0]) == pytest.approx(float(b["deep_feature_distance"][0]), rel=1e-6)


@pytest.mark.parametrize("name", ["cues", "sqm"])
def test_other_decoding_metrics_score_zero_padded_content_at_its_order(name):
    """``cues`` and ``sqm`` decode with the same rule: first-order content scores the same as 4
    channels and zero-padded to 16."""
    m = load_metric(name)
    a = _scene(1, 1.0, seed=11)
    b = 0.7 * _scene(1, 1.0, seed=12) + 0.3 * a
    s4 = m.score(load_pair(a, b, sample_rate=FS, target_rate=FS))
    s16 = m.score(load_pair(np.pad(a, ((0, 12), (0, 0))), np.pad(b, ((0, 12), (0, 0))), sample_rate=FS,
                            target_rate=FS))
    assert s4.score > 0
    assert s16.score == pytest.approx(s4.score, rel=F32_SHARE, abs=1e-9)


# --------------------------------------------------------------------------- head turn (version 10)
def _still(params: dict) -> dict:
    """The same parameters heard with a still head (versions 1-9)."""
    return {k: v for k, v in params.items() if k != "head_turn"}


def _plane_wave(az: float, el: float, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    from spaq.data.sources import pink_noise

    return encode(0.05 * pink_noise(int(seconds * FS), np.random.default_rng(seed)), az, el, 3)


def test_shipped_parameters_turn_the_head_over_45_degrees():
    m = load_metric("quality")
    assert m.params["head_turn"] == {"range_deg": 45.0, "period_s": 4.0}


@pytest.mark.parametrize("az,el", [(165, 0), (195, 0), (210, 0), (330, 0), (75, -20), (285, -20)])
def test_order_truncation_is_ordered_where_a_still_head_swaps_it(az, el):
    """Second- and first-order MagLS decoders err differently at each direction: for a still head
    a second-order truncation of one plane wave scored below the first-order one at these
    directions (KU100 decoders, pink noise; 7 of 72 directions on three elevations). Heard with the
    shipped head turn every one is ordered, by a margin."""
    from spaq.metrics.quality import Quality

    m = load_metric("quality")
    still = Quality(params=_still(m.params))
    x = _plane_wave(az, el)
    pair = load_pair(np.stack([x] * 3), np.stack([_padded(x, n) for n in (2, 1, 0)]), sample_rate=FS, target_rate=FS)
    r = m.score(pair)
    s = np.asarray(r.score)
    assert s[0] > s[1] + 3 and s[1] > s[2], s
    assert r.provenance["head_turn"] == {"range_deg": 45.0, "period_s": 4.0}  # the result says how it heard them
    s_still = np.asarray(still.score(pair).score)
    assert not np.allclose(s_still, s)


def test_still_head_swaps_orders_2_and_1_at_210_degrees_without_the_itd():
    """Why the head turns (issue 19's order-truncation ladders, version 10): with the level and phase
    terms alone (no ITD term, as up to version 11) a still head scored the second-order truncation
    below the first-order one at 210 deg. The first-order decode also shifts the low-frequency ITD
    there, which version 12's ITD term reads, so a still head with the shipped weights orders them."""
    import copy

    from spaq.metrics.quality import Quality

    p_still = _still(load_metric("quality").params)
    p_no_itd = copy.deepcopy(p_still)
    p_no_itd["mapping"]["spatial_weights"]["d_itd"] = 0.0
    x = _plane_wave(210, 0)
    pair = load_pair(np.stack([x] * 2), np.stack([_padded(x, n) for n in (2, 1)]), sample_rate=FS, target_rate=FS)
    s = np.asarray(Quality(params=p_no_itd).score(pair).score)
    assert s[0] < s[1] - 3, s
    s12 = np.asarray(Quality(params=p_still).score(pair).score)
    assert s12[0] > s12[1] + 3, s12


def test_pairs_of_one_order_are_heard_with_a_still_head():
    """One decoder's errors are common to both signals: a pair decoded at one order is scored
    exactly as before, whatever the head turn."""
    from spaq.metrics.quality import Quality

    m = load_metric("quality")
    still = Quality(params=_still(m.params))
    from spaq.spatial.ambisonics import rotate

    x = _scene(3, seed=9)
    y = rotate(x, 40.0) + 0.01 * np.random.default_rng(1).standard_normal(x.shape)  # turned and noisy
    pair = load_pair(x, y, sample_rate=FS, target_rate=FS)
    a, b = m.score(pair), still.score(pair)
    assert float(a.score) == float(b.score) and 95 > float(a.score) > 5
    assert a.provenance["head_turn"] is None


def test_head_turn_is_the_turned_scene_heard_still():
    """Wiring: the metric's head turn equals turning both signals by hand
    (:func:`head_turn_yaw`, :func:`rotate_yaw`) and scoring them with a still head."""
    from spaq.metrics.quality import Quality
    from spaq.spatial.ambisonics import head_turn_yaw, rotate_yaw

    m = load_metric("quality")
    still = Quality(params=_still(m.params))
    x = _scene(3, 1.0, seed=10)
    y = _padded(x, 1)
    ht = m.params["head_turn"]
    yaw = head_turn_yaw(0, x.shape[-1], x.shape[-1], FS, ht["range_deg"], ht["period_s"])
    xt, yt = (rotate_yaw(torch.from_numpy(v), yaw).numpy() for v in (x, y))
    a = float(m.score(load_pair(x, y, sample_rate=FS, target_rate=FS)).score)
    b = float(still.score(load_pair(xt, yt, sample_rate=FS, target_rate=FS)).score)
    c = float(still.score(load_pair(x, y, sample_rate=FS, target_rate=FS)).score)
    # the same float64 samples turned in the same order of operations: equal to float32 band rounding
    assert a == pytest.approx(b, abs=1e-3)
    assert abs(a - c) > 0.5  # and the turn matters for this pair


def test_head_turn_is_the_same_when_chunked():
    """The yaw of each sample comes from its place in the whole signal: chunks turn as the whole does.
    ILDs agree to float rounding and levels as without a turn. The envelope IPD of the upper bands is
    computed per segment (over the chunk and its context), and a turning head modulates the
    envelopes slowly, so it moves by a few per cent with the chunking (without a turn 0.1 %); the
    score by hundredths of a point (24 s pair: 0.03 points between 4 s and 10 s chunks; 4 s pair
    in 1.6 s chunks: 0.19)."""
    from spaq.metrics.functional.quality import quality_maps
    from spaq.metrics.quality import Quality

    fe = AuditoryFrontEnd()
    x = _scene(3, 4.0, seed=11)
    a, b = torch.from_numpy(x)[None], torch.from_numpy(_padded(x, 1))[None]
    ht = {"range_deg": 45.0, "period_s": 4.0}
    decs = hrtf_decoders(3)
    f1 = pool_features(quality_maps(a, b, fe, decs, chunk_frames=None, head_turn=ht))
    f2 = pool_features(quality_maps(a, b, fe, decs, chunk_frames=40, context_frames=25, head_turn=ht))
    f0 = pool_features(quality_maps(a, b, fe, decs, chunk_frames=None))
    for k in ("d_ild_db", "d_ild_mean"):
        assert float(f2[k][0]) == pytest.approx(float(f1[k][0]), rel=1e-4, abs=1e-6), k
    # levels: the tolerance of test_orders_are_chosen_on_the_whole_signal_when_chunked
    assert float(f2["missing_db"][0]) == pytest.approx(float(f1["missing_db"][0]), rel=1e-3, abs=1e-4)
    # and the turn changed the pair's ILDs (a still head hears them at one direction only)
    assert abs(float(f1["d_ild_mean"][0]) - float(f0["d_ild_mean"][0])) > 0.1
    params = load_metric("quality").params
    x = _scene(3, 8.0, seed=12)
    pair = load_pair(x, _padded(x, 1), sample_rate=FS, target_rate=FS)
    whole = float(Quality(params=params, chunk_s=60.0).score(pair).score)
    chunked = float(Quality(params=params, chunk_s=3.0).score(pair).score)
    assert chunked == pytest.approx(whole, abs=0.1)
