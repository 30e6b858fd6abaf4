"""Content that does not fit its declared format gives a one-line warning (spaq.spatial.checks): a full-band
feed in a layout's LFE slot (film channel order read as SMPTE), ambisonics whose first-order channels are too
loud for SN3D (N3D or FuMa read as ACN/SN3D); what is silent when no direction can be found; FuMa's order."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import butter, sosfilt

from spaq import score
from spaq.cli import main
from spaq.io import load_pair
from spaq.localization import localize
from spaq.spatial.ambisonics import diffuse_field, encode, encode_plane_waves
from spaq.spatial.room import place_in_room, room_impulse_response
from spaq.spatial.sh import convert_normalisation

SR = 48000


def _feed(rng, n):
    """A full-band loudspeaker feed: noise under a slow envelope (as the probe's), -26 dBFS."""
    t = np.arange(n) / SR
    return 0.05 * rng.standard_normal(n) * (0.5 + 0.5 * np.abs(np.sin(2 * np.pi * 3 * t)))


def _lfe(rng, n):
    """An LFE feed: noise low-passed at 120 Hz (4th order)."""
    return 0.1 * sosfilt(butter(4, 120, fs=SR, output="sos"), rng.standard_normal(n))


# ----------------------------------------------------------------------------- layouts: the LFE slot

SMPTE = {"5.1": "L R C LFE Ls Rs", "7.1": "L R C LFE Lss Rss Lrs Rrs", "7.1.4": "L R C LFE Lss Rss Lrs Rrs Ltf Rtf Ltb Rtb"}


def _layout_pair(layout: str, order: str, lfe: str = "lowpass", n: int = SR):
    """(C, n) feeds of ``layout`` in the SMPTE order or in film order (LFE moved to the end of the bed:
    L C R <surrounds> LFE, the heights after it), with an LFE that is low-passed noise, silent or dither."""
    rng = np.random.default_rng(3)
    labels = SMPTE[layout].split()
    feeds = {lab: _feed(rng, n) for lab in labels if lab != "LFE"}
    feeds["LFE"] = {"lowpass": _lfe(rng, n), "silent": np.zeros(n),
                    "dither": 10 ** (-95 / 20) * rng.standard_normal(n)}[lfe]
    if order == "smpte":
        return np.stack([feeds[lab] for lab in labels])
    bed = [lab for lab in labels if not lab.startswith(("Lt", "Rt"))]
    film = ["L", "C", "R"] + [lab for lab in bed if lab not in ("L", "C", "R", "LFE")] + ["LFE"] \
        + [lab for lab in labels if lab.startswith(("Lt", "Rt"))]
    return np.stack([feeds[lab] for lab in film])


def _lfe_warnings(warnings):
    return [w for w in warnings if "the LFE of" in w]


@pytest.mark.parametrize("layout", ["5.1", "7.1", "7.1.4"])
@pytest.mark.parametrize("lfe", ["lowpass", "silent", "dither"])
def test_smpte_order_no_lfe_warning(layout, lfe):
    x = _layout_pair(layout, "smpte", lfe)
    p = load_pair(x, x, sample_rate=SR, fmt=layout)
    assert _lfe_warnings(p.warnings) == []


@pytest.mark.parametrize("layout,n_ch", [("5.1", 6), ("7.1", 8), ("7.1.4", 12)])
def test_film_order_lfe_warning(layout, n_ch):
    x = _layout_pair(layout, "film")
    p = load_pair(x, x, sample_rate=SR, fmt=layout)
    w = _lfe_warnings(p.warnings)
    assert len(w) == 2 and w[1] == w[0].replace("ref <array>", "deg <array>", 1)  # one line per side
    assert w[0].startswith(f"ref <array>: channel 4 of {n_ch} (index 3), the LFE of {layout} ({SMPTE[layout]}), "
                           "has content up to ")
    assert "kHz (" in w[0] and "% of its energy above 200 Hz" in w[0] and "\n" not in w[0]
    assert w[0].endswith(f"reorder the channels to {SMPTE[layout]}")
    top = float(w[0].split("content up to ")[1].split(" kHz")[0])
    assert top > 20.0  # white noise: 99 % of its energy below 23.x kHz
    share = float(w[0].split(" kHz (")[1].split(" %")[0])
    assert share >= 95


def test_film_order_5_1_files_cli_score_and_localize(tmp_path, capsys):
    """The probe's case through the CLI (score --json, streamed or not) and localize: the warning names the file."""
    x = _layout_pair("5.1", "film", n=2 * SR)
    ref = tmp_path / "film_ref.wav"
    sf.write(ref, x.T, SR, subtype="FLOAT")
    deg = tmp_path / "film_deg.wav"
    y = x.copy()
    y[3] = sosfilt(butter(8, 1000, fs=SR, output="sos"), y[3])  # the Ls (in the LFE slot) low-passed at 1 kHz
    sf.write(deg, y.T, SR, subtype="FLOAT")
    for stream in ("--no-stream", "--stream"):
        assert main(["score", str(ref), str(deg), "--format", "5.1", "-m", "cues", "--json", stream]) == 0
        out = json.loads(capsys.readouterr().out)
        w = _lfe_warnings(out["warnings"])
        assert [v.split(":")[0] for v in w] == [f"ref ({ref})", f"deg ({deg})"]
        assert "content up to 1.1 kHz" in w[1]  # the low-passed Ls: what was found is said
    r = localize(str(ref), format="5.1")
    assert _lfe_warnings(r.warnings) and r.warnings[0].startswith(f"{ref}: channel 4 of 6 (index 3)")
    s = score(_layout_pair("5.1", "smpte"), _layout_pair("5.1", "smpte"), sample_rate=SR, fmt="5.1", metrics=["cues"])
    assert _lfe_warnings(s.warnings) == []


# ----------------------------------------------------------------------------- ambisonics: normalisation

def _scenes(order: int) -> dict:
    """ACN/SN3D renderings of the corpus engine's parts: one plane wave, three sources, a room (its
    ambisonic room response), diffuse pink-ish noise, and a room plus diffuse noise."""
    rng = np.random.default_rng(7)
    n = SR
    s = np.stack([_feed(rng, n) for _ in range(3)])
    out = {"plane wave": encode(s[0], 30.0, 10.0, order),
           "three sources": encode_plane_waves(s, [30.0, -100.0, 160.0], [0.0, 20.0, -10.0], order)}
    spec = place_in_room((6.0, 4.5, 3.0), 0.6, 30.0, 0.0, 2.0, np.random.default_rng(0))
    rir, _ = room_impulse_response(spec, SR, "ambisonics", order=order, rng=np.random.default_rng(1))
    from scipy.signal import oaconvolve

    out["room"] = oaconvolve(s[:1], rir, axes=-1)[:, :n]
    out["diffuse"] = diffuse_field(rng.standard_normal((32, n)) * 0.05, order, rng)
    out["room + diffuse"] = out["room"] + 0.3 * out["diffuse"]
    return out


def _ratio_warnings(warnings):
    return [w for w in warnings if "times the energy of W" in w or "W channel" in w]


@pytest.mark.parametrize("order", [1, 3])
def test_sn3d_renderings_no_warning(order):
    for name, x in _scenes(order).items():
        p = load_pair(x, x, sample_rate=SR)
        assert _ratio_warnings(p.warnings) == [], name


@pytest.mark.parametrize("order,spell", [(1, "foa"), (3, "hoa3")])
def test_n3d_read_as_sn3d_warns(order, spell):
    for name, x in _scenes(order).items():
        n3d = convert_normalisation(x, "sn3d", "n3d")
        p = load_pair(x, n3d, sample_rate=SR)
        w = _ratio_warnings(p.warnings)
        assert len(w) == 1 and w[0].startswith("deg <array>: its first-order channels carry "), name
        r = float(w[0].split("carry ")[1].split(" times")[0])
        assert 2.7 <= r <= 3.3, (name, r)  # N3D: 3 x what SN3D gives (about 1)
        assert f"--format {spell}/n3d" in w[0]
        assert ("--format foa/fuma" in w[0]) == (order == 1)
        # read as what it is: no warning, and the same signal as the SN3D one
        q = load_pair(x, n3d, sample_rate=SR, fmt=f"{spell}/n3d")
        assert _ratio_warnings(q.warnings) == []
        np.testing.assert_allclose(q.deg[0], x, atol=1e-9)


def test_fuma_read_as_acn_warns_and_localize_says_so(tmp_path):
    x = _scenes(1)["plane wave"]
    fuma = convert_normalisation(x, "sn3d", "fuma")
    p = load_pair(x, fuma, sample_rate=SR)
    w = _ratio_warnings(p.warnings)
    assert len(w) == 1 and "carry 2.00 times the energy of W" in w[0] and "--format foa/fuma" in w[0]
    assert _ratio_warnings(load_pair(x, fuma, sample_rate=SR, fmt="foa/fuma").warnings) == []
    f = tmp_path / "fuma.wav"
    sf.write(f, fuma.T, SR, subtype="FLOAT")
    r = localize(str(f))
    assert r.warnings and r.warnings[0].startswith(f"{f}: its first-order channels carry 2.00 times")
    assert _ratio_warnings(localize(str(f), format="foa/fuma").warnings) == []
    # streamed: the same line from the one pass over the file
    ref = tmp_path / "ref.wav"
    sf.write(ref, x.T, SR, subtype="FLOAT")
    ps = load_pair(str(ref), str(f), stream=True)
    assert _ratio_warnings(ps.warnings) == [w[0].replace("deg <array>", f"deg ({f})")]


def test_w_silent_beside_first_order_warns():
    rng = np.random.default_rng(0)
    x = np.zeros((4, SR))
    x[1] = _feed(rng, SR)  # a quad file with content in its second channel, read as FOA
    ref = _scenes(1)["plane wave"]
    p = load_pair(ref, x, sample_rate=SR)
    assert _ratio_warnings(p.warnings) == ["deg <array>: its W channel (channel 1, omnidirectional) is silent while "
                                           "its first-order channels are not: not an ACN/SN3D ambisonic signal, or its "
                                           "channels are in another order"]


# ----------------------------------------------------------------------------- what is silent

def test_score_w_only_beside_3oa_says_what_is_silent():
    ref = _scenes(3)["plane wave"]
    deg = np.zeros_like(ref)
    deg[0] = ref[0]  # W only (the probe's a3_wonly)
    rep = score(ref, deg, sample_rate=SR, metrics=["localization"])
    w = [v for v in rep.warnings if v.startswith("localization: degraded signal: no direction")]
    assert len(w) == 1 and "its first-order (directional) channels 2-4 are silent" in w[0]
    assert "the input is silent" not in w[0]


# ----------------------------------------------------------------------------- binaural: two ears or not


def test_low_band_coherence_blockwise_reads_as_the_whole_signal():
    """The streamed accumulator (files read block by block) keeps evenly spread segments whatever the
    length and reads what the whole-signal function reads: two ears near 1, two unrelated signals near
    1 / segments; blocks that split segments change nothing; too little signal reads None."""
    from spaq.dsp import LowBandCoherence, low_band_coherence

    rng = np.random.default_rng(11)
    for T, block in ((3 * SR, 4096), (60 * SR, 1 << 18)):
        s = rng.standard_normal(T)
        ears = np.stack([s, np.roll(s, 12) + 0.2 * rng.standard_normal(T)])
        indep = rng.standard_normal((2, T))
        for sig, lo, hi in ((ears, 0.85, 1.0), (indep, 0.0, 0.08)):
            acc = LowBandCoherence(SR)
            for b in range(0, T, block):
                acc.add(sig[:, b:b + block])
            v, whole = acc.value(), low_band_coherence(sig, SR)
            assert lo < v < hi and lo < whole < hi
            assert abs(v - whole) < 0.05
            assert 16 <= len(acc.held) <= 32  # evenly thinned, not the first segments only
            ks = np.array([k for k, _ in acc.held])
            assert ks.max() * acc.hop > 0.9 * (T - acc.n)  # the end of the signal is read
        one = LowBandCoherence(SR)
        one.add(ears)
        two = LowBandCoherence(SR)
        two.add(ears[:, :7777])
        two.add(ears[:, 7777:])
        assert one.value() == pytest.approx(two.value(), abs=1e-9)
    short = LowBandCoherence(SR)
    short.add(indep[:, :12000])  # 0.25 s: fewer than 16 segments
    assert short.value() is None


def test_score_warns_when_a_binaural_reference_is_two_unrelated_signals(tmp_path):
    """Two unrelated channels read as binaural (a spaced pair far apart, two tracks) were scored as two ears
    with no word. The reference (and a signal read alone, by the predictor) now gets the warning, in memory
    and streamed alike, with the coherence and the way to read a loudspeaker pair; a degraded signal is not
    checked (its lost coherence may be the degradation), and a binaural rendering gets no warning."""
    from spaq.spatial.hrtf import load_hrtf
    from spaq.spatial.render import render_binaural

    rng = np.random.default_rng(5)
    indep = 0.05 * rng.standard_normal((2, 2 * SR))
    ears = render_binaural(0.05 * rng.standard_normal(2 * SR), 60.0, 0.0, load_hrtf("ku100", SR))[:, :2 * SR]

    def said(ws, who):
        return [w for w in ws if w.startswith(who) and "does not look like a binaural signal" in w]

    pr = load_pair(indep, 0.7 * indep, sample_rate=SR)
    assert len(said(pr.warnings, "ref")) == 1 and "--format stereo" in said(pr.warnings, "ref")[0]
    assert float(said(pr.warnings, "ref")[0].split("coherence ")[1].split(" ")[0]) < 0.1
    assert not said(load_pair(ears, indep, sample_rate=SR).warnings, "")  # the degraded one is not checked
    assert not said(load_pair(ears, ears, sample_rate=SR).warnings, "")
    assert said(load_pair(indep, indep, sample_rate=SR, reference_free=True).warnings, "deg")
    # files, streamed in blocks: the same finding
    for name, x in (("ind.wav", indep), ("ears.wav", ears)):
        sf.write(tmp_path / name, x.T, SR, subtype="FLOAT")
    import spaq.io as io

    old = io.STREAM_BLOCK
    try:
        streamed = io._load_pair_streamed(str(tmp_path / "ind.wav"), str(tmp_path / "ears.wav"), None, None, False, 0.0)
        assert len(said(streamed.warnings, "ref")) == 1
        io.STREAM_BLOCK = 3001  # blocks that split the segments
        streamed = io._load_pair_streamed(str(tmp_path / "ears.wav"), str(tmp_path / "ind.wav"), None, None, False, 0.0)
        assert not said(streamed.warnings, "")
    finally:
        io.STREAM_BLOCK = old
    r = score(str(tmp_path / "ind.wav"), str(tmp_path / "ind.wav"), metrics=["cues"])
    assert said(r.warnings, "ref")
