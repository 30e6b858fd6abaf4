"""Loudspeaker layouts: registry, format strings, and the physics of their binaural render."""
import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from spaq.errors import SpaqInputError
from spaq.formats import SpatialFormat, detect_format, parse_format
from spaq.io import load_pair
from spaq.spatial.hrtf import load_hrtf
from spaq.spatial.layouts import (
    LAYOUTS,
    LayoutError,
    get_layout,
    layout_to_binaural_pair,
    layouts_with_channels,
    render_layout_binaural,
)
from spaq.spatial.render import render_binaural

FS = 48000
EPS64 = np.finfo(np.float64).eps

EXPECTED = {  # name: (labels in file order, LFE index) -- SMPTE / ITU-R BS.2051 orders
    "mono": ("C", None),
    "stereo": ("L R", None),
    "5.0": ("L R C Ls Rs", None),
    "5.1": ("L R C LFE Ls Rs", 3),
    "7.0": ("L R C Lss Rss Lrs Rrs", None),
    "7.1": ("L R C LFE Lss Rss Lrs Rrs", 3),
    "5.1.4": ("L R C LFE Ls Rs Ltf Rtf Ltb Rtb", 3),
    "7.1.4": ("L R C LFE Lss Rss Lrs Rrs Ltf Rtf Ltb Rtb", 3),
}
ANGLES = {  # BS.2051 nominal (azimuth counter-clockwise from the front, elevation up)
    "C": (0, 0), "L": (30, 0), "R": (-30, 0), "Ls": (110, 0), "Rs": (-110, 0),
    "Lss": (90, 0), "Rss": (-90, 0), "Lrs": (135, 0), "Rrs": (-135, 0),
    "Ltf": (45, 45), "Rtf": (-45, 45), "Ltb": (135, 45), "Rtb": (-135, 45),
}


@pytest.fixture(scope="module")
def ku100():
    return load_hrtf("default", FS)


def noise(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def cues(y):
    """(ILD above 1.5 kHz dB, broadband ILD dB, ITD in samples) of a binaural ``(2, T)``;
    > 0: left ear louder / leading. ITD from the peak of the low-passed cross-correlation."""
    hi = sosfilt(butter(4, 1500, "highpass", fs=FS, output="sos"), y, axis=-1)
    ild_hi = 10 * np.log10(np.sum(hi[0] ** 2) / np.sum(hi[1] ** 2))
    ild_bb = 10 * np.log10(np.sum(y[0] ** 2) / np.sum(y[1] ** 2))
    lo = sosfilt(butter(4, 1500, fs=FS, output="sos"), y, axis=-1)
    n = y.shape[-1]
    c = np.fft.irfft(np.fft.rfft(lo[1], 2 * n) * np.conj(np.fft.rfft(lo[0], 2 * n)), 2 * n)
    m = int(0.0015 * FS)
    lags = np.concatenate([np.arange(0, m + 1), np.arange(-m, 0)])
    return ild_hi, ild_bb, int(lags[np.argmax(np.concatenate([c[: m + 1], c[-m:]]))])


# --------------------------------------------------------------------------- registry


@pytest.mark.parametrize("name", list(EXPECTED))
def test_layout_channels_labels_angles(name):
    lay = get_layout(name)
    labels, lfe = EXPECTED[name]
    assert lay.name == name and lay.labels == tuple(labels.split())
    assert lay.n_channels == len(labels.split()) and lay.lfe == lfe
    assert lay.spatial_channels == tuple(i for i in range(lay.n_channels) if i != lfe)
    for i in lay.spatial_channels:
        assert (lay.azimuth_deg[i], lay.elevation_deg[i]) == ANGLES[lay.labels[i]]


def test_registry_has_the_required_layouts():
    assert {"mono", "stereo", "5.0", "5.1", "7.1", "7.1.4"} <= set(LAYOUTS)
    assert [lay.name for lay in layouts_with_channels(6)] == ["5.1"]
    assert [lay.name for lay in layouts_with_channels(12)] == ["7.1.4"]
    assert layouts_with_channels(3) == []


def test_bad_layout_name_one_line_listing_names():
    with pytest.raises(ValueError) as e:
        get_layout("9.1.6")
    msg = str(e.value)
    assert "\n" not in msg and "9.1.6" in msg
    assert all(n in msg for n in LAYOUTS)
    assert isinstance(e.value, SpaqInputError)  # the CLI prints it as one line


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("name", [n for n in EXPECTED if n != "mono"])
def test_parse_describe_round_trip(name):
    f = parse_format(name)
    labels = EXPECTED[name][0]
    assert f == SpatialFormat("layout", layout=name) and f.is_layout
    assert not f.is_binaural and not f.is_ambisonics
    assert f.n_channels == len(labels.split())
    assert f.describe() == f"{name} loudspeakers ({labels})"
    assert f.to_dict() == {"kind": "layout", "description": f.describe(), "layout": name,
                           "channels": labels.split()}
    assert parse_format(f.layout) == f and parse_format(f"layout:{name.upper()}") == f


def test_mono_is_kind_mono_and_a_layout():
    f = parse_format("mono")
    assert f.kind == "mono" and f.is_layout and f.layout == "mono" and f.n_channels == 1
    assert f == SpatialFormat("mono") == SpatialFormat("layout", layout="mono") == parse_format("1.0")
    assert f.describe() == "mono" and f.to_dict()["channels"] == ["C"]
    assert detect_format(1) == f


@pytest.mark.parametrize("text, fmt", [
    ("binaural", SpatialFormat("binaural")), ("foa", SpatialFormat("ambisonics", 1)),
    ("hoa2", SpatialFormat("ambisonics", 2)), ("hoa3/n3d", SpatialFormat("ambisonics", 3, "n3d")),
    ("foa/fuma", SpatialFormat("ambisonics", 1, "fuma")), ("ambisonics:4", SpatialFormat("ambisonics", 4)),
    ("ambisonics", SpatialFormat("ambisonics", 0)),
])
def test_existing_format_names_unchanged(text, fmt):
    f = parse_format(text)
    assert f == fmt and not f.is_layout and f.layout is None and "layout" not in f.to_dict()


def test_detection_by_channel_count_unchanged():
    assert detect_format(2) == SpatialFormat("binaural")  # stereo only with --format stereo
    assert detect_format(4) == SpatialFormat("ambisonics", 1)
    assert detect_format(16) == SpatialFormat("ambisonics", 3)


@pytest.mark.parametrize("n, hint", [(5, "--format 5.0"), (6, "--format 5.1"), (7, "--format 7.0"),
                                     (8, "--format 7.1"), (10, "--format 5.1.4"), (12, "--format 7.1.4"),
                                     (3, "no loudspeaker layout has 3 channels")])
def test_unusual_channel_count_names_the_fitting_layout(n, hint):
    x = noise((n, FS // 10)) * 0.05
    with pytest.raises(SpaqInputError, match=rf"{n} channels is neither binaural") as e:
        load_pair(x, x, sample_rate=FS)
    assert hint in str(e.value) and "\n" not in str(e.value)


def test_load_pair_with_layout_format():
    x = noise((6, FS // 10)) * 0.05
    p = load_pair(x, x, sample_rate=FS, fmt="5.1")
    assert p.format == SpatialFormat("layout", layout="5.1") and p.ref.shape == (1, 6, FS // 10)
    with pytest.raises(SpaqInputError, match=r"format 7\.1 loudspeakers .* expects 8 channels but .* has 6"):
        load_pair(x, x, sample_rate=FS, fmt="7.1")
    with pytest.raises(SpaqInputError, match="normalisation applies to ambisonics only"):
        load_pair(x, x, sample_rate=FS, fmt="5.1/sn3d")


# --------------------------------------------------------------------------- binaural render


def _one_speaker_cases():
    return [(name, i) for name, lay in LAYOUTS.items() for i in lay.spatial_channels]


@pytest.mark.parametrize("name, ch", _one_speaker_cases())
def test_one_loudspeaker_has_its_side_ild_and_itd(ku100, name, ch):
    lay = get_layout(name)
    x = np.zeros((lay.n_channels, FS // 4))
    x[ch] = noise(FS // 4)
    ild_hi, ild_bb, itd = cues(render_layout_binaural(x, lay, ku100, FS))
    az = lay.azimuth_deg[ch]
    if az == 0:  # centre: the KU 100 is a (nearly) symmetric head; its 0-degree HRIR pair differs by 0.93 dB
        assert abs(ild_bb) < 1.0 and itd == 0
    elif az > 0:  # left loudspeakers (lateral angle >= 30 degrees here): left ear louder by > 5 dB and leads
        assert ild_hi > 5.0 and itd > 0
    else:
        assert ild_hi < -5.0 and itd < 0


def test_mono_layout_is_render_binaural_at_the_front(ku100):
    s = noise(FS // 4)
    y = render_layout_binaural(s[None], "mono", ku100, FS)
    ref = render_binaural(s, 0.0, 0.0, ku100)
    # same HRIRs, same oaconvolve: only the float64 rounding of the lookup/convolution may differ
    np.testing.assert_allclose(y, ref, rtol=0, atol=64 * EPS64 * np.abs(ref).max())


@pytest.mark.parametrize("name", ["stereo", "5.1", "7.1.4"])
def test_render_is_linear_and_batched(ku100, name):
    lay = get_layout(name)
    a, b = noise((3, lay.n_channels, 4800), 1), noise((3, lay.n_channels, 4800), 2)
    ya, yb = render_layout_binaural(a, lay, ku100, FS), render_layout_binaural(b, lay, ku100, FS)
    yab = render_layout_binaural(a + 2.5 * b, lay, ku100, FS)
    assert ya.shape == (3, 2, 4800) and ya.dtype == np.float64
    # FFT convolution in float64: relative rounding ~ eps * log2(n_fft) per loudspeaker; 1e3 eps is a generous bound
    scale = np.abs(yab).max()
    np.testing.assert_allclose(yab, ya + 2.5 * yb, rtol=0, atol=1e3 * EPS64 * scale)
    for i in range(3):  # the batch axis is independent items
        np.testing.assert_allclose(ya[i], render_layout_binaural(a[i], lay, ku100, FS),
                                   rtol=0, atol=1e3 * EPS64 * scale)


@pytest.mark.parametrize("name", ["5.1", "7.1", "5.1.4", "7.1.4"])
def test_lfe_does_not_reach_the_ears(ku100, name):
    lay = get_layout(name)
    x = np.zeros((lay.n_channels, 4800))
    x[lay.lfe] = noise(4800)
    assert not render_layout_binaural(x, lay, ku100, FS).any()
    y = noise((lay.n_channels, 4800), 3)
    z = y.copy()
    z[lay.lfe] = 0.0
    np.testing.assert_array_equal(render_layout_binaural(y, lay, ku100, FS),
                                  render_layout_binaural(z, lay, ku100, FS))


def test_identical_pair_identical_renders_and_length_kept(ku100):
    x = noise((2, 8, 1001)).astype(np.float32)
    r, d = layout_to_binaural_pair(x, x.copy(), parse_format("7.1"), FS, hrtf=ku100)
    assert r.shape == d.shape == (2, 2, 1001) and r.dtype == np.float32
    np.testing.assert_array_equal(r, d)
    assert np.abs(r).max() > 0


def test_default_hrtf_and_other_rate():
    x = noise((2, 4410)) * 0.1
    y = render_layout_binaural(x, "stereo", sample_rate=44100)
    assert y.shape == (2, 4410)
    ild_hi, _, itd = cues(render_layout_binaural(np.stack([x[0], 0 * x[0]]), "stereo", sample_rate=FS))
    assert ild_hi > 5.0 and itd > 0


def test_render_errors_are_one_line():
    with pytest.raises(LayoutError, match=r"layout 5\.1 loudspeakers \(L R C LFE Ls Rs\) has 6 channels but the signal has 8"):
        render_layout_binaural(np.zeros((8, 100)), "5.1")
    with pytest.raises(LayoutError, match="not a loudspeaker layout"):
        layout_to_binaural_pair(np.zeros((4, 100)), np.zeros((4, 100)), parse_format("foa"), FS)
    with pytest.raises(LayoutError, match=r"\(\.\.\., channels, time\)"):
        render_layout_binaural(np.zeros(100), "mono")


def test_layouts_refused_where_not_supported():
    """Corpus generation takes binaural/ambisonics only: a one-line error, no traceback."""
    from spaq.data.config import validate_config
    from spaq.errors import SpaqError

    with pytest.raises(SpaqError, match=r"scene\.formats: .*not 7\.1\.4 loudspeakers"):
        validate_config({"scene": {"formats": ["7.1.4"]}})


@pytest.mark.parametrize("name", [n for n in LAYOUTS if LAYOUTS[n].n_channels > 1])
def test_source_in_one_loudspeaker_is_localised_there(name):
    """A source in one loudspeaker is localised there: by default from the feeds encoded as plane waves (the
    intensity localiser: exact, within 0.5 deg), and with a binaural method asked for (binaural render, then
    the template localiser) nearest to that loudspeaker of the layout, within 30 degrees (the localiser's error
    on its own head, elevated loudspeakers included; measured worst 26)."""
    import scipy.signal as sps

    from spaq.localization import localize
    from spaq.spatial.angles import great_circle_deg

    lay = LAYOUTS[name]
    rng = np.random.default_rng(0)
    n = FS
    b, a = sps.butter(2, [200, 12000], btype="bandpass", fs=FS)
    src = sps.lfilter(b, a, rng.standard_normal(n)) * (0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 4 * np.arange(n) / FS)))
    src *= 0.05 / src.std()
    az, el = np.array(lay.azimuth_deg), np.array(lay.elevation_deg)
    spk = np.array(lay.spatial_channels)
    for k in spk:
        x = np.zeros((lay.n_channels, n))
        x[k] = src
        i = localize(x, FS, format=name)
        assert i.method == "intensity" and "rendered" not in i.format
        assert great_circle_deg(i.azimuth_deg[0], i.elevation_deg[0], az[k], el[k]) < 0.5
        r = localize(x, FS, format=name, method="templates")
        assert "rendered binaurally" in r.format
        d = great_circle_deg(r.azimuth_deg[0], r.elevation_deg[0], az[spk], el[spk])
        assert spk[int(np.argmin(d))] == k, (name, lay.labels[k], r.azimuth_deg[0], r.elevation_deg[0])
        assert d[list(spk).index(k)] <= 30.0
