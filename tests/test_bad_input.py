"""What users get wrong, through ``main([...])``: every refusal is exit status 2 with exactly
one ``spaq: error: ...`` line on stderr and no traceback; every acceptance says what it did
in a warning. Signals are short binaural noise unless the case needs ambisonics."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.signal as sps
import soundfile as sf

from spaq.cli import main
from spaq.spatial.sh import sh_matrix

from conftest import QASTANET_DIR

REPO = Path(__file__).resolve().parents[1]
QASTANET_CKPT = QASTANET_DIR / "model_weights.pth.tar"  # conftest: $SPAQ_SHARED_DIR or ../shared
FS = 48000


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("SPAQ_OFFLINE", "1")
    monkeypatch.setenv("SPAQ_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("SPAQ_QASTANET_CHECKPOINT", raising=False)


def noise(seconds: float = 0.5, channels: int = 2, fs: int = FS, seed: int = 0, n: int | None = None) -> np.ndarray:
    """``(channels, T)`` band-passed noise, partly correlated across channels, RMS -26 dBFS."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fs)) if n is None else n
    b, a = sps.butter(2, [150, 12000], btype="bandpass", fs=fs)
    common = rng.standard_normal(n)
    x = sps.lfilter(b, a, common + 0.5 * rng.standard_normal((channels, n)), axis=-1)
    return x * 10 ** (-26 / 20) / np.sqrt(np.mean(x ** 2))


def foa(seconds: float = 0.5, fs: int = FS, n: int | None = None) -> np.ndarray:
    s = noise(seconds, 2, fs, seed=3, n=n)
    x = sh_matrix(1, [30.0, -110.0], [10.0, 0.0]) @ s
    return x * 10 ** (-26 / 20) / np.sqrt(np.mean(x[0] ** 2))


def write(path: Path, x: np.ndarray, fs: int = FS, subtype: str = "FLOAT") -> str:
    sf.write(str(path), np.ascontiguousarray(np.asarray(x).T), fs, subtype=subtype)
    return str(path)


def run(capsys, argv):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out and "Traceback" not in cap.err
    return rc, cap.out, cap.err


def refused(capsys, argv, *phrases) -> str:
    rc, out, err = run(capsys, argv)
    assert rc == 2, (rc, out, err)
    lines = [ln for ln in err.splitlines()]
    assert len(lines) == 1 and lines[0].strip(), err
    assert lines[0].startswith("spaq: error: ")
    assert out == ""
    for p in phrases:
        assert p.lower() in lines[0].lower(), (p, lines[0])
    return lines[0]


def accepted(capsys, argv) -> dict:
    rc, out, err = run(capsys, list(argv) + ["--json"])
    assert rc == 0, err
    return json.loads(out)


@pytest.fixture
def good(tmp_path):
    x = noise()
    return write(tmp_path / "ref.wav", x), write(tmp_path / "deg.wav", 0.8 * x)


# --------------------------------------------------------------------------- unreadable / invalid files


def test_missing_file(tmp_path, good, capsys):
    missing = tmp_path / "nope.wav"
    line = refused(capsys, ["score", missing, good[1]], "not found")
    assert str(missing) in line
    refused(capsys, ["score", good[0], missing], "not found")


def test_text_file_named_wav(tmp_path, good, capsys):
    bad = tmp_path / "notes.wav"
    bad.write_bytes(b"this is not audio\n" * 50)
    line = refused(capsys, ["score", good[0], bad], "cannot read")
    assert str(bad) in line


def test_directory_is_not_a_file(tmp_path, good, capsys):
    refused(capsys, ["score", tmp_path, good[1]], "not a file")


def test_empty_wav(tmp_path, good, capsys):
    empty = write(tmp_path / "empty.wav", np.zeros((2, 0)))
    assert sf.info(empty).frames == 0
    refused(capsys, ["score", empty, good[1]], "empty", "0 samples")
    refused(capsys, ["score", good[0], empty], "empty")


def test_shorter_than_one_frame(tmp_path, capsys):
    x = noise(n=1000)  # 20.8 ms < 40 ms
    r, g = write(tmp_path / "r.wav", x), write(tmp_path / "g.wav", x)
    refused(capsys, ["score", r, g], "too short", "40 ms")


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "Inf"), (-np.inf, "Inf")])
def test_non_finite_samples(tmp_path, good, capsys, bad, word):
    x = noise()
    x[1, 100:103] = bad
    f = write(tmp_path / "bad.wav", x)
    line = refused(capsys, ["score", good[0], f], word, "3 non-finite")
    assert "deg" in line
    refused(capsys, ["score", f, good[1]], word)


def test_channel_counts_differ(tmp_path, good, capsys):
    f = write(tmp_path / "foa.wav", foa())
    refused(capsys, ["score", good[0], f], "different channel counts", "2", "4")


def test_three_channels(tmp_path, capsys):
    x = noise(channels=3)
    r, g = write(tmp_path / "r.wav", x), write(tmp_path / "g.wav", x)
    refused(capsys, ["score", r, g], "3 channels", "neither binaural")


def test_mono_needs_format(tmp_path, capsys):
    x = noise(channels=1)
    r, g = write(tmp_path / "r.wav", x), write(tmp_path / "g.wav", x)
    refused(capsys, ["score", r, g], "mono")


# --------------------------------------------------------------------------- lengths, rates


def test_lengths_differ_more_than_1_percent(tmp_path, capsys):
    x = noise(0.5)
    r = write(tmp_path / "r.wav", x)
    g = write(tmp_path / "g.wav", 0.8 * x[:, :23000])  # 4.2 % shorter
    refused(capsys, ["score", r, g, "--metric", "cues"], "lengths differ", "--trim")
    d = accepted(capsys, ["score", r, g, "--metric", "cues", "--trim"])
    assert any("lengths differ" in w and "23000" in w for w in d["warnings"])
    assert d["duration_s"] == pytest.approx(23000 / FS)
    assert d["results"]["cues"]["values"]["level_mean_abs_db"] == pytest.approx(-20 * math.log10(0.8), abs=0.05)


def test_lengths_differ_less_than_1_percent(tmp_path, capsys):
    x = noise(0.5)
    r = write(tmp_path / "r.wav", x)
    g = write(tmp_path / "g.wav", x[:, :23900])  # 0.4 % shorter
    d = accepted(capsys, ["score", r, g, "--metric", "cues"])
    assert any("lengths differ" in w and "trimmed to 23900" in w for w in d["warnings"])
    assert d["results"]["cues"]["score"] == pytest.approx(0.0, abs=1e-9)  # same signal, trimmed


def test_different_sample_rates(tmp_path, capsys):
    x = noise(0.5)
    r = write(tmp_path / "r.wav", x)
    y = sps.resample_poly(x, 147, 160, axis=-1)  # 48 kHz -> 44.1 kHz
    g = write(tmp_path / "g.wav", y, fs=44100)
    d = accepted(capsys, ["score", r, g, "--metric", "cues"])
    assert d["sample_rate_in"] == 48000 and d["sample_rate_used"] == 48000
    assert any("sample rates differ" in w and "44100" in w and "resampled" in w for w in d["warnings"])
    # down and up again: the band-limited noise survives, the cues hardly move
    assert d["results"]["cues"]["score"] < 0.2


def test_odd_length(tmp_path, capsys):
    x = foa(n=24001)
    r = write(tmp_path / "r.wav", x)
    g = write(tmp_path / "g.wav", 0.9 * x)
    if not QASTANET_CKPT.is_file():
        d = accepted(capsys, ["score", r, g, "--metric", "cues"])
        assert math.isfinite(d["results"]["cues"]["score"])
        pytest.skip(f"official QASTAnet checkpoint not found at {QASTANET_CKPT.resolve()}; only cues checked")
    d = accepted(capsys, ["score", r, g, "--metric", "qastanet", "--checkpoint", QASTANET_CKPT])
    q = d["results"]["qastanet"]
    assert 0.001 <= q["score"] <= 0.999
    assert any("odd length" in w for w in q["warnings"])
    assert d["duration_s"] == pytest.approx(24001 / FS)


# --------------------------------------------------------------------------- silence


def test_silent_reference_refused(tmp_path, good, capsys):
    z = write(tmp_path / "zero.wav", np.zeros((2, FS // 2)))
    refused(capsys, ["score", z, good[1]], "silent")


def test_silent_degraded_accepted_with_warning(tmp_path, good, capsys):
    z = write(tmp_path / "zero.wav", np.zeros((2, FS // 2)))
    d = accepted(capsys, ["score", good[0], z, "--metric", "cues"])
    assert any("silent" in w for w in d["warnings"])
    v = d["results"]["cues"]["values"]
    # everything audible in the reference is gone: a large, finite level difference
    assert math.isfinite(v["level_mean_abs_db"]) and v["level_mean_abs_db"] > 20
    assert v["audible_fraction"] > 0.5


def test_silent_degraded_cues_score_finite(tmp_path, good, capsys):
    # inaudible degraded bands count as ILD 0 dB and |coherence| 0: a defined, finite result
    z = write(tmp_path / "zero.wav", np.zeros((2, FS // 2)))
    d = accepted(capsys, ["score", good[0], z, "--metric", "cues"])
    assert math.isfinite(d["results"]["cues"]["score"])
    assert d["results"]["cues"]["values"]["coherence_mean_abs"] > 0.1
    assert not any("reference is above the hearing threshold" in w for w in d["warnings"])


# --------------------------------------------------------------------------- file types


def test_sample_formats_all_score(tmp_path, capsys):
    x = noise(0.3)
    y = 0.8 * x
    vals = {}
    for tag, ext, subtype in (("u8", "wav", "PCM_U8"), ("16", "wav", "PCM_16"), ("24", "wav", "PCM_24"),
                              ("float", "wav", "FLOAT"), ("flac", "flac", "PCM_24")):
        r = write(tmp_path / f"r_{tag}.{ext}", x, subtype=subtype)
        g = write(tmp_path / f"g_{tag}.{ext}", y, subtype=subtype)
        assert sf.info(r).subtype == subtype
        d = accepted(capsys, ["score", r, g, "--metric", "cues"])
        vals[tag] = d["results"]["cues"]["values"]
        assert math.isfinite(vals[tag]["level_mean_abs_db"]), tag
        assert vals[tag]["level_mean_abs_db"] == pytest.approx(-20 * math.log10(0.8), abs=0.3), tag
    for k, v in vals["float"].items():
        assert vals["24"][k] == pytest.approx(v, abs=1e-3), k  # 24-bit vs float: same cues
        assert vals["flac"][k] == pytest.approx(v, abs=1e-3), k


# --------------------------------------------------------------------------- options


def test_unknown_metric(good, capsys):
    refused(capsys, ["score", *good, "--metric", "pesq-ish"], "unknown metric", "pesq-ish", "cues")


@pytest.mark.parametrize("fmt, phrase", [("hoa", "unknown format"), ("foa/maxn", "unknown normalisation"),
                                          ("foa", "expects 4 channels")])
def test_bad_format_string(good, capsys, fmt, phrase):
    refused(capsys, ["score", *good, "--format", fmt], phrase)


def test_fuma_needs_first_order(tmp_path, capsys):
    x = sh_matrix(2, [30.0], [0.0]) @ noise(0.2, 1)
    r, g = write(tmp_path / "r.wav", x), write(tmp_path / "g.wav", x)
    refused(capsys, ["score", r, g, "--format", "hoa2/fuma"], "fuma", "first order")


def test_unknown_option_is_one_line(good, capsys):
    refused(capsys, ["score", *good, "--frobnicate"], "--frobnicate")


# --------------------------------------------------------------------------- --maps failures


def test_maps_under_a_regular_file(tmp_path, good, capsys):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    refused(capsys, ["score", *good, "--metric", "cues", "--maps", blocker / "out"], "cannot write maps")
    assert blocker.read_text() == "x"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deg.wav", "not-a-dir", "ref.wav"]  # nothing written


def test_maps_png_unwritable_leaves_no_npz(tmp_path, good, capsys):
    out = tmp_path / "maps"
    out.mkdir()
    (out / "m.png").mkdir()  # the figure cannot replace a directory: fails after the .npz was written
    refused(capsys, ["score", *good, "--metric", "cues", "--maps", out / "m"], "cannot write maps")
    assert sorted(p.name for p in out.iterdir()) == ["m.png"]  # no m.npz, no temp files
    assert list((out / "m.png").iterdir()) == []


def test_maps_not_written_when_scoring_fails(tmp_path, good, capsys):
    z = write(tmp_path / "zero.wav", np.zeros((2, FS // 2)))
    out = tmp_path / "maps" / "m"
    refused(capsys, ["score", z, good[1], "--maps", out], "silent")
    refused(capsys, ["score", *good, "--metric", "nope", "--maps", out], "unknown metric")
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


def test_an_unavailable_or_unknown_device_is_one_line_before_any_work(tmp_path):
    import torch

    import spaq
    from spaq.batch import score_batch
    from spaq.errors import SpaqInputError

    x = np.random.default_rng(0).standard_normal((2, 48000)) * 0.05
    with pytest.raises(SpaqInputError, match="unknown device 'foo'"):
        spaq.score(x, x, sample_rate=48000, metrics=["cues"], device="foo")
    if not torch.cuda.is_available():
        with pytest.raises(SpaqInputError, match="CUDA is not available"):
            spaq.score(x, x, sample_rate=48000, metrics=["cues"], device="cuda")
        with pytest.raises(SpaqInputError, match="CUDA is not available"):
            score_batch([("a.wav", "b.wav")], tmp_path / "o.csv", metrics=["cues"], device="cuda", progress=False)
        assert not list(tmp_path.iterdir())  # no table, no journal


# --------------------------------------------------------------------------- forty-eighth session's bug hunt
def test_outputs_that_cannot_be_written_fail_before_the_work(tmp_path, good, capsys):
    """A folder, a trailing separator, a path under a file: one line each, nothing left behind."""
    folder = tmp_path / "o"
    folder.mkdir()
    afile = tmp_path / "afile"
    afile.write_text("x")
    table = tmp_path / "ev.csv"
    table.write_text("id,mos,m\na,1,1.1\nb,2,2.2\nc,3,2.9\nd,4,4.2\ne,5,4.8\nf,3.5,3.1\n")
    refused(capsys, ["evaluate", table, "--mos", "mos", "--plot", folder, "--bootstrap", "0"], "is a folder")
    refused(capsys, ["evaluate", table, "--mos", "mos", "--report", afile / "r.md", "--bootstrap", "0"],
            "not a folder")
    same = tmp_path / "same.png"
    refused(capsys, ["evaluate", table, "--mos", "mos", "--plot", same, "--report", same, "--bootstrap", "0"],
            "same file")
    assert not same.exists()
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"ref,deg\n{good[0]},{good[1]}\n")
    refused(capsys, ["batch", manifest, "-o", afile / "x.csv", "-m", "cues", "-q"], "not a folder")
    refused(capsys, ["demo", "--out", afile], "is a file")
    refused(capsys, ["localize", good[0], "--plot", folder], "is a folder")
    refused(capsys, ["score", good[0], good[1], "-m", "cues", "--maps", str(folder) + "/"], "is a folder")
    assert sorted(p.name for p in folder.iterdir()) == []


def test_plot_without_an_extension_is_a_png(tmp_path, good, capsys):
    out = tmp_path / "plot_no_ext"
    rc, _, err = run(capsys, ["localize", good[0], "--plot", out])
    assert rc == 0, err
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_qastanet_config_that_is_not_a_mapping(tmp_path, good, capsys):
    text = tmp_path / "text.yml"
    text.write_text("just text")
    bad = tmp_path / "bad.yml"
    bad.write_text("corpus: [1,2")
    refused(capsys, ["qastanet", "--ref", good[0], "--deg", good[1], "--config", text], "expected a mapping")
    refused(capsys, ["qastanet", "--ref", good[0], "--deg", good[1], "--config", bad], "not a YAML file")


def test_listening_scores_that_are_text_or_constant(tmp_path, capsys):
    t = tmp_path / "t.csv"
    t.write_text("id,mos,m\n" + "".join(f"{i},w{i},{i}\n" for i in range(6)))
    refused(capsys, ["evaluate", t, "--mos", "mos", "--bootstrap", "0"], "no numbers")
    c = tmp_path / "c.csv"
    c.write_text("id,mos,m\n" + "".join(f"{i},3,{i}\n" for i in range(6)))
    refused(capsys, ["evaluate", c, "--mos", "mos", "--bootstrap", "0"], "constant")


def test_file_below_the_lowest_rate(tmp_path, capsys):
    x = np.random.default_rng(0).standard_normal((2, 400)) * 0.05
    low = write(tmp_path / "low.wav", x, fs=2000)
    refused(capsys, ["score", low, low, "-m", "cues"], "below 4000 Hz")
    refused(capsys, ["predict", low], "below 4000 Hz")
