"""spaq generate on bad input and failed runs: one-line errors before anything is written, no folder left
that blocks a rerun, --resume continues the corpus recorded in corpus.json, config checks, HRTF names."""
import json
import os

import pandas as pd
import pytest
import soundfile as sf
import yaml

from spaq.cli import main
from spaq.data import corpus as corpus_mod
from spaq.data.config import validate_config
from spaq.data.corpus import generate_corpus
from spaq.errors import SpaqError

HRTF_HINT = "use a built-in name (default/KU100, sonicom-1, sonicom-2, kemar) or a path to a .sofa file"
# tiny and fast: harmonic sources, 0.2 s, one degradation
BASE = {"corpus": {"name": "robust", "n": 12, "seed": 0, "duration_s": 0.2},
        "scene": {"formats": {"binaural": 1}, "sources": {"types": {"harmonic": 1}}},
        "degradations": {"types": {"noise": 1}}}


def _cfg(tmp_path, d=None, name="c.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(BASE if d is None else d))
    return str(p)


def _run(capsys, *args):
    """spaq's exit status and its stderr lines (the progress bar is off)."""
    rc = main(["generate", *map(str, args), "-q"])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    return rc, err


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _audio(n, keys=("deg", "ref")):
    return sorted(f"audio/{i:06d}_{k}.wav" for i in range(n) for k in keys)


def _fail_first(monkeypatch, exc):
    calls = []

    def boom(task):
        calls.append(task[2])
        raise exc

    monkeypatch.setattr(corpus_mod, "_generate_one", boom)
    return calls


# ----------------------------------------------------------------- 1. a run that finishes no item
@pytest.mark.parametrize("exc,rc_want,line", [
    (SpaqError("scene broke at render"), 2, "spaq: error: scene broke at render"),
    (KeyboardInterrupt(), 130, "spaq: interrupted"),
])
def test_failure_before_first_item_removes_the_folders_it_created(tmp_path, monkeypatch, capsys, exc, rc_want, line):
    cfg = _cfg(tmp_path)
    out = tmp_path / "new" / "deeper" / "corpus"  # three folders created by the run
    calls = _fail_first(monkeypatch, exc)
    rc, err = _run(capsys, cfg, "--out", out, "--n", "2")
    assert (rc, err, calls) == (rc_want, [line], [0])
    assert not (tmp_path / "new").exists()
    monkeypatch.undo()
    rc, err = _run(capsys, cfg, "--out", out, "--n", "2")  # the rerun goes through
    assert (rc, err) == (0, [])
    assert len(pd.read_parquet(out / "manifest.parquet")) == 2
    assert _tree(out) == sorted(["audio", "corpus.json", "items.jsonl", "manifest.parquet"] + _audio(2))


def test_failure_before_first_item_leaves_an_empty_folder_empty(tmp_path, monkeypatch, capsys):
    cfg = _cfg(tmp_path)
    out = tmp_path / "mine"
    out.mkdir()
    _fail_first(monkeypatch, SpaqError("boom"))
    assert _run(capsys, cfg, "--out", out, "--n", "2") == (2, ["spaq: error: boom"])
    assert out.is_dir() and os.listdir(out) == []
    monkeypatch.undo()
    assert _run(capsys, cfg, "--out", out, "--n", "2", "--resume") == (0, [])  # --resume into it works too
    assert list(pd.read_parquet(out / "manifest.parquet")["item_id"]) == ["000000", "000001"]


def test_render_time_error_then_rerun_with_the_fixed_config(tmp_path, capsys):
    """A config whose error shows only when the first item is rendered (an unreadable file in
    scene.files_folder): one line, no folder left; the same --out then takes the fixed config."""
    bad_dir = tmp_path / "sounds"
    bad_dir.mkdir()
    (bad_dir / "a.wav").write_text("not audio")
    bad = dict(BASE, scene={"files_folder": str(bad_dir), "sources": {"types": {"files": 1}}})
    out = tmp_path / "o"
    rc, err = _run(capsys, _cfg(tmp_path, bad, "bad.yaml"), "--out", out, "--n", "2")
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"spaq: error: cannot read audio file {bad_dir / 'a.wav'}")
    assert not out.exists()
    assert _run(capsys, _cfg(tmp_path), "--out", out, "--n", "2") == (0, [])
    assert len(pd.read_parquet(out / "manifest.parquet")) == 2


def test_folder_of_a_killed_run_without_finished_items_takes_any_config(tmp_path, capsys):
    """What a run killed (SIGKILL) before its first item leaves: corpus.json (of another config), an
    empty journal, an item file written before its journal line and a temporary file. A rerun with
    another config, without --resume, starts afresh there and nothing of the old run stays."""
    out = tmp_path / "o"
    (out / "audio").mkdir(parents=True)
    (out / "corpus.json").write_text(json.dumps({"format": "spaq-corpus/1", "name": "old", "seed": 77,
                                                 "config_hash": "0" * 64, "config": {"corpus": {"n": 9}}}))
    (out / "items.jsonl").write_text("")
    (out / "audio" / "000000_neg.wav").write_bytes(b"RIFF")
    (out / "audio" / ".000001_ref.123.0123456789ab.tmp.wav").write_bytes(b"half")
    assert _run(capsys, _cfg(tmp_path), "--out", out, "--n", "2", "--seed", "5") == (0, [])
    assert _tree(out) == sorted(["audio", "corpus.json", "items.jsonl", "manifest.parquet"] + _audio(2))
    meta = json.loads((out / "corpus.json").read_text())
    assert (meta["name"], meta["seed"], meta["config"]["corpus"]["n"]) == ("robust", 5, 2)


def test_unfinished_folder_with_other_files_is_still_refused(tmp_path, capsys):
    out = tmp_path / "o"
    (out / "audio").mkdir(parents=True)
    (out / "corpus.json").write_text(json.dumps({"name": "old", "seed": 77, "config_hash": "0" * 64}))
    (out / "notes.txt").write_text("mine")
    rc, err = _run(capsys, _cfg(tmp_path), "--out", out, "--n", "2")
    assert rc == 2 and err == [f"spaq: error: output folder {out} holds another corpus (old, seed 77); "
                               "choose another --out"]
    assert (out / "notes.txt").read_text() == "mine" and (out / "corpus.json").exists()


def test_failure_after_finished_items_keeps_them(tmp_path, monkeypatch, capsys):
    cfg = _cfg(tmp_path)
    out = tmp_path / "o"
    real = corpus_mod._generate_one

    def second_fails(task):
        if task[2] == 1:
            raise SpaqError("boom at item 1")
        return real(task)

    monkeypatch.setattr(corpus_mod, "_generate_one", second_fails)
    assert _run(capsys, cfg, "--out", out, "--n", "3") == (2, ["spaq: error: boom at item 1"])
    assert list(pd.read_parquet(out / "manifest.parquet")["index"]) == [0]
    assert _tree(out) == sorted(["audio", "corpus.json", "items.jsonl", "manifest.parquet"] + _audio(1))
    # a resume that fails again before finishing an item keeps what the corpus holds
    _fail_first(monkeypatch, SpaqError("boom again"))
    assert _run(capsys, cfg, "--out", out, "--resume") == (2, ["spaq: error: boom again"])
    assert _tree(out) == sorted(["audio", "corpus.json", "items.jsonl", "manifest.parquet"] + _audio(1))
    monkeypatch.undo()
    assert _run(capsys, cfg, "--out", out, "--resume") == (0, [])
    assert list(pd.read_parquet(out / "manifest.parquet")["index"]) == [0, 1, 2]


def test_cut_journal_line_does_not_swallow_the_next_record(tmp_path):
    cfg = validate_config(BASE)
    out = tmp_path / "o"
    generate_corpus(cfg, str(out), n=1, progress=False)
    with open(out / "items.jsonl", "a", encoding="utf-8") as f:
        f.write('{"index": 1, "cut by a kill')
    # a corpus with n 1 recorded; the cut line is skipped, a new record after it must still parse
    (out / "corpus.json").write_text((out / "corpus.json").read_text().replace('"n": 1', '"n": 2'))
    df = generate_corpus(cfg, str(out), resume=True, progress=False)
    assert list(df["index"]) == [0, 1]
    lines = (out / "items.jsonl").read_text().splitlines()
    assert len(lines) == 3 and json.loads(lines[2])["index"] == 1


@pytest.mark.parametrize("scene,msg", [
    ({"formats": {"hoa99": 1}}, "scene.formats: ambisonic order 99 of 'hoa99' is above 10"),
    ({"files_folder": "EMPTY", "sources": {"types": {"files": 1}}},
     "scene.files_folder: no audio files (.wav, .flac, .ogg, .aiff, .aif, .mp3) in EMPTY"),
    ({"hrtf": "kemr"}, "scene.hrtf: unknown HRTF 'kemr'"),
])
def test_checks_before_anything_is_written(tmp_path, capsys, scene, msg):
    empty = tmp_path / "empty"
    empty.mkdir()
    scene = json.loads(json.dumps(scene).replace("EMPTY", str(empty)))
    d = dict(BASE, scene={**BASE["scene"], **scene})
    out = tmp_path / "o"
    rc, err = _run(capsys, _cfg(tmp_path, d), "--out", out, "--n", "2")
    assert rc == 2 and len(err) == 1 and msg.replace("EMPTY", str(empty)) in err[0], err
    assert not out.exists()


# ----------------------------------------------------------------- 2. --resume continues the recorded corpus
def test_resume_uses_the_recorded_n_and_seed(tmp_path, monkeypatch, capsys):
    cfg = _cfg(tmp_path)  # corpus.n 12, seed 0
    out, ref = tmp_path / "o", tmp_path / "ref"
    assert _run(capsys, cfg, "--out", ref, "--n", "4", "--seed", "9") == (0, [])
    expect = pd.read_parquet(ref / "manifest.parquet")
    real = corpus_mod._generate_one

    def interrupt_at_2(task):
        if task[2] == 2:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(corpus_mod, "_generate_one", interrupt_at_2)
    assert _run(capsys, cfg, "--out", out, "--n", "4", "--seed", "9") == (130, ["spaq: interrupted"])
    monkeypatch.undo()
    assert len(pd.read_parquet(out / "manifest.parquet")) == 2
    assert _run(capsys, cfg, "--out", out, "--resume") == (0, [])  # neither --n nor --seed
    got = pd.read_parquet(out / "manifest.parquet")
    assert list(got["index"]) == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(got, expect)  # seed 9 (same hashes), not the config's seed 0
    assert _tree(out) == sorted(["audio", "corpus.json", "items.jsonl", "manifest.parquet"] + _audio(4))
    assert len((out / "items.jsonl").read_text().splitlines()) == 4
    # the same values again are fine (nothing left to do)
    assert _run(capsys, cfg, "--out", out, "--resume", "--n", "4", "--seed", "9") == (0, [])


def test_resume_refuses_another_n_or_seed(tmp_path, capsys):
    cfg = _cfg(tmp_path)
    out = tmp_path / "o"
    assert _run(capsys, cfg, "--out", out, "--n", "3") == (0, [])
    before = _tree(out)
    marker = out / "corpus.json"
    for args, line in [
        (["--n", "2"], f"--n 2 differs from the n 3 recorded in {marker}; --resume continues the recorded corpus: "
                       "leave out --n (or generate into another --out)"),
        (["--n", "6"], f"--n 6 differs from the n 3 recorded in {marker}; --resume continues the recorded corpus: "
                       "leave out --n (or generate into another --out)"),
        (["--seed", "5"], f"--seed 5 differs from the seed 0 recorded in {marker}; --resume continues the recorded "
                          "corpus: leave out --seed (or generate into another --out)"),
    ]:
        assert _run(capsys, cfg, "--out", out, "--resume", *args) == (2, [f"spaq: error: {line}"])
    assert _tree(out) == before == sorted(["audio", "corpus.json", "items.jsonl", "manifest.parquet"] + _audio(3))
    assert len(pd.read_parquet(out / "manifest.parquet")) == 3


# ----------------------------------------------------------------- 3. config values: one line, the key named
@pytest.mark.parametrize("patch,msg", [
    ({"scene": {"formats": {"hoa99": 1}}},
     "scene.formats: ambisonic order 99 of 'hoa99' is above 10; use binaural, foa, hoa2 .. hoa10 "
     "or ambisonics:N (N 1..10)"),
    ({"scene": {"formats": {"foa": ".nan"}}}, "scene.formats.foa: weight must be a finite number >= 0, not nan"),
    ({"scene": {"formats": {"foa": "a"}}}, "scene.formats.foa: weight must be a number"),
    ({"degradations": {"options": {"noise": {"snr_db": ["a", "b"]}}}},
     "degradations.options.noise.snr_db must be [value at severity 0, at 1], two numbers; got ['a', 'b']"),
    ({"degradations": {"options": {"noise": {"snr_db": [30]}}}},
     "degradations.options.noise.snr_db must be [value at severity 0, at 1], two numbers; got [30]"),
    ({"degradations": {"options": {"lowpass": {"cutoff_hz": [8000, 0]}}}},
     "degradations.options.lowpass.cutoff_hz must be [value at severity 0, at 1], two numbers above 0; got [8000, 0]"),
    ({"degradations": {"options": {"blur": {"amount": [0, 1.5]}}}},
     "degradations.options.blur.amount must be [value at severity 0, at 1], two numbers within [0, 1]; got [0, 1.5]"),
    ({"degradations": {"options": {"misalignment": {"delay_ms": [-5, 5]}}}},
     "degradations.options.misalignment.delay_ms must be [value at severity 0, at 1], two numbers >= 0; got [-5, 5]"),
    ({"degradations": {"options": {"bandpass": {"low_hz": [50, 5000]}}}},
     "degradations.options.bandpass: low_hz 5000 must be below high_hz 3400 (at most 0.45 x the sample rate) "
     "at severity 1"),
    ({"degradations": {"options": {"noise": {"colours": ["blue"]}}}},
     "degradations.options.noise.colours must be a list of one or more of white, pink; got ['blue']"),
    ({"degradations": {"options": {"codec": {"codecs": "opus"}}}},
     "degradations.options.codec.codecs must be a list of one or more of opus, mp3, aac; got 'opus'"),
    ({"degradations": {"options": {"rotation": {"axis": "roll"}}}},
     "degradations.options.rotation.axis must be one of yaw, random, not 'roll'"),
    ({"degradations": {"options": {"packet_loss": {"packet_ms": "x"}}}},
     "degradations.options.packet_loss.packet_ms must be a number above 0; got 'x'"),
    ({"scene": {"sources": {"level_dbfs": ["a", "b"]}}},
     "scene.sources.level_dbfs[0]: expected a number, got 'a' (str)"),
    ({"scene": {"sources": {"level_dbfs": [-10, -20]}}}, "scene.sources.level_dbfs: min -10.0 is above max -20.0"),
    ({"scene": {"sources": {"distance_m": [".nan", 2]}}},
     "scene.sources.distance_m: expected [min, max], two finite numbers, got [nan, 2]"),
    ({"scene": {"room": {"rt60_s": [0.8, 0.3]}}}, "scene.room.rt60_s: min 0.8 is above max 0.3"),
    ({"degradations": {"triplet_gap": [0.5, 0.2]}}, "degradations.triplet_gap: min 0.5 is above max 0.2"),
    ({"scene": {"diffuse": {"directions": 0}}}, "scene.diffuse.directions must be an integer 1..1024, not 0"),
    ({"scene": {"room": {"margin_m": 2.0}}},
     "scene.room.margin_m must be >= 0 and below half the smallest room dimension (2.4 m in scene.room.dims_m), "
     "not 2.0"),
    ({"scene": {"room": {"ism_order": -1}}}, "scene.room.ism_order must be an integer >= 0, not -1"),
])
def test_bad_values_one_line_before_any_work(tmp_path, capsys, monkeypatch, patch, msg):
    d = json.loads(json.dumps(BASE))
    for sec, vals in patch.items():
        for k, v in vals.items():
            d[sec][k] = {**d[sec][k], **v} if isinstance(d[sec].get(k), dict) and isinstance(v, dict) else v
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(d).replace("'.nan'", ".nan"))
    rendered = _fail_first(monkeypatch, AssertionError("must not render"))
    out = tmp_path / "o"
    rc, err = _run(capsys, p, "--out", out, "--n", "2")
    assert (rc, err) == (2, [f"spaq: error: {p}: {msg}"])
    assert rendered == [] and not out.exists()


def test_good_option_values_still_validate():
    cfg = validate_config({"scene": {"formats": {"hoa10": 1, "binaural": 1}, "hrtf": "KU100"},
                           "degradations": {"types": {"noise": 1}, "options": {
                               "noise": {"snr_db": [30, -5], "colours": ["pink"]},
                               "codec": {"codecs": ["opus", "mp3"], "bitrate_kbps": [96, 16]},
                               "bandpass": {"low_hz": [100, 300], "high_hz": [12000, 4000]},
                               "rotation": {"axis": "random"}, "packet_loss": {"packet_ms": 10},
                               "hrtf_swap": {"heads": ["ku100", "sonicom-2"]}}}})
    # the values are kept as given (the config hash of existing corpora does not change)
    assert cfg["degradations"]["options"]["noise"] == {"snr_db": [30, -5], "colours": ["pink"]}
    assert cfg["scene"]["hrtf"] == "KU100"


# ----------------------------------------------------------------- 4. HRTF names
@pytest.mark.parametrize("patch,msg", [
    ({"scene": {"hrtf": "kemr"}}, f"scene.hrtf: unknown HRTF 'kemr'; {HRTF_HINT}"),
    ({"scene": {"hrtf": "sonicom-3"}}, f"scene.hrtf: unknown HRTF 'sonicom-3'; {HRTF_HINT}"),
    ({"scene": {"hrtf": "/nonexistent/head.sofa"}},
     f"scene.hrtf: SOFA file not found: /nonexistent/head.sofa; {HRTF_HINT}"),
    ({"degradations": {"types": {"hrtf_swap": 1}, "options": {"hrtf_swap": {"heads": ["sonicom-1", "kemr"]}}}},
     f"degradations.options.hrtf_swap.heads[1]: unknown HRTF 'kemr'; {HRTF_HINT}"),
    ({"degradations": {"types": {"hrtf_swap": 1}, "options": {"hrtf_swap": {"heads": "sonicom-1"}}}},
     "degradations.options.hrtf_swap.heads must be a list of one or more HRTF names or .sofa paths; got 'sonicom-1'"),
])
def test_unknown_hrtf_lists_the_known_names(tmp_path, capsys, patch, msg):
    d = json.loads(json.dumps(BASE))
    for sec, vals in patch.items():
        d[sec].update(vals)
    p = _cfg(tmp_path, d)
    out = tmp_path / "o"
    assert _run(capsys, p, "--out", out, "--n", "2") == (2, [f"spaq: error: {p}: {msg}"])
    assert not out.exists()


def test_hrtf_sofa_path_accepted(tmp_path):
    from spaq.spatial.hrtf import named_hrtf_paths

    sofa = named_hrtf_paths().get("sonicom-1")
    if sofa is None:
        pytest.skip("needs spatialaudiometrics (its example SOFA files)")
    cfg = validate_config(dict(BASE, scene={**BASE["scene"], "hrtf": sofa}))
    df = generate_corpus(cfg, str(tmp_path / "o"), n=1, progress=False)
    assert df["hrtf_name"].tolist() == ["example_sofa_1"]
    assert sf.info(str(tmp_path / "o" / df["reference_path"][0])).channels == 2
