"""spaq batch: same scores as spaq.score, bad items recorded, resume after an interruption,
workers / dask give the same table, manifests (CSV, parquet, corpus folder), CLI exit codes."""
import json
import os
import re

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import spaq
from spaq import batch as batch_mod
from spaq.batch import BASE_COLUMNS, BatchFailed, journal_path, read_pairs, score_batch, summary
from spaq.errors import SpaqError

from conftest import interrupted_batch

METRICS = ["cues", "quality"]
FS = 48000
N_GOOD = 4


def _write(path, x):
    sf.write(str(path), np.asarray(x, dtype=np.float32).T, FS, subtype="FLOAT")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """4 good binaural pairs (0.5 s noise; degraded: added noise 34 dB down and 9.5 dB more
    at each step) and
    3 bad ones: a missing degraded file, a 3-channel pair, a silent reference."""
    d = tmp_path_factory.mktemp("pairs")
    (d / "audio").mkdir()
    rng = np.random.default_rng(7)
    rows = []
    for i in range(N_GOOD):
        x = 0.1 * rng.standard_normal((2, FS // 2))
        y = x + 0.002 * 3 ** i * rng.standard_normal(x.shape)
        _write(d / "audio" / f"r{i}.wav", x)
        _write(d / "audio" / f"d{i}.wav", y)
        rows.append({"id": f"good{i}", "ref": f"audio/r{i}.wav", "deg": f"audio/d{i}.wav"})
    x = 0.1 * rng.standard_normal((3, FS // 2))
    _write(d / "audio" / "three_r.wav", x)
    _write(d / "audio" / "three_d.wav", 0.5 * x)
    _write(d / "audio" / "silent.wav", np.zeros((2, FS // 2)))
    bad = [{"id": "missing", "ref": "audio/r0.wav", "deg": "audio/nothere.wav"},
           {"id": "three", "ref": "audio/three_r.wav", "deg": "audio/three_d.wav"},
           {"id": "silent", "ref": "audio/silent.wav", "deg": "audio/d0.wav"}]
    rows = rows[:2] + bad[:2] + rows[2:] + bad[2:]  # bad items in between good ones
    pd.DataFrame(rows).to_csv(d / "m.csv", index=False)
    return d


@pytest.fixture(scope="module")
def clean(corpus, tmp_path_factory):
    """A clean one-process run: (output path, table)."""
    out = tmp_path_factory.mktemp("clean") / "scores.parquet"
    df = score_batch(corpus / "m.csv", out, metrics=METRICS, progress=False)
    return out, df


def test_table_matches_score_and_records_bad_items(corpus, clean):
    out, df = clean
    assert list(df["id"]) == ["good0", "good1", "missing", "three", "good2", "good3", "silent"]
    assert list(df.columns[:len(BASE_COLUMNS)]) == BASE_COLUMNS
    assert {"cues", "cues.ild_median_abs_db", "cues.skipped", "quality", "quality.timbral_score",
            "quality.spatial_score", "quality.skipped"} <= set(df.columns)
    # the table on disk is the table returned; the journal stays while items failed (--resume retries them)
    pd.testing.assert_frame_equal(pd.read_parquet(out), df)
    assert os.path.exists(journal_path(out))
    ok = df[df["status"] == "ok"]
    assert len(ok) == N_GOOD
    for _, row in ok.iterrows():
        rep = spaq.score(row["ref"], row["deg"], metrics=METRICS)
        assert row["ref"] == str(corpus / "audio" / f"r{row['id'][-1]}.wav")
        assert row["format"] == "binaural" and row["duration_s"] == 0.5 and row["error"] == ""
        for m in METRICS:
            assert row[m] == rep.results[m].score  # same floats, not approximately
            for k, v in rep.results[m].values.items():
                assert row[f"{m}.{k}"] == float(v)
            assert row[f"{m}.skipped"] == ""
    # more noise, lower quality and larger cue differences: the scores are real
    q, c = ok.set_index("id")["quality"], ok.set_index("id")["cues"]
    assert 99 < q["good0"] and q["good0"] > q["good1"] > q["good2"] > q["good3"] > 50
    assert c["good0"] < c["good1"] < c["good2"] < c["good3"]
    bad = df[df["status"] == "error"].set_index("id")
    assert "not found" in bad.loc["missing", "error"] and "nothere.wav" in bad.loc["missing", "error"]
    assert "3 channels" in bad.loc["three", "error"]
    assert "silent" in bad.loc["silent", "error"]
    assert bad[METRICS].isna().all().all() and bad["duration_s"].isna().all()
    assert all("\n" not in e for e in df["error"])
    s = summary(df)
    assert (s["n_items"], s["n_ok"], s["n_error"]) == (7, 4, 3)
    assert [e["id"] for e in s["errors"]] == ["missing", "three", "silent"]
    assert s["metrics"]["quality"]["mean"] == pytest.approx(ok["quality"].mean())
    assert s["metrics"]["cues"]["median"] == pytest.approx(ok["cues"].median())
    json.dumps(s)  # JSON-able


def test_unexpected_exception_is_recorded(corpus, tmp_path, monkeypatch):
    import spaq.api

    real = spaq.api.score

    def boom(ref, deg, **kw):
        if deg.endswith("d1.wav"):
            raise ZeroDivisionError("division by zero\nin a metric")
        return real(ref, deg, **kw)

    monkeypatch.setattr(spaq.api, "score", boom)
    pairs = read_pairs(corpus / "m.csv").iloc[:2]
    df = score_batch(pairs, tmp_path / "o.csv", metrics=["cues"], progress=False)
    assert list(df["status"]) == ["ok", "error"]
    assert df["error"][1] == "ZeroDivisionError: division by zero in a metric"


def test_resume_after_interruption(corpus, clean, tmp_path, monkeypatch):
    _, ref_df = clean
    out = tmp_path / "scores.parquet"
    real = batch_mod._score_one
    calls = []

    def interrupted(task):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(task["id"])
        return real(task)

    monkeypatch.setattr(batch_mod, "_score_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        score_batch(corpus / "m.csv", out, metrics=METRICS, progress=False)
    assert not out.exists()  # never a partial table that looks complete
    journal = journal_path(out)
    lines = open(journal).read().splitlines()
    assert len(lines) == 3 and json.loads(lines[0])["journal_header"]["metrics"] == METRICS
    # a journal in the way: refused without --resume, and with other options
    with pytest.raises(SpaqError, match="--resume"):
        score_batch(corpus / "m.csv", out, metrics=METRICS, progress=False)
    with pytest.raises(SpaqError, match="written with metrics cues,quality"):
        score_batch(corpus / "m.csv", out, metrics=["cues"], resume=True, progress=False)
    with pytest.raises(SpaqError, match="written with"):
        score_batch(corpus / "m.csv", out, metrics=METRICS, fast=False, resume=True, progress=False)
    with open(journal, "a") as f:
        f.write('{"id": "good2", "sta')  # a line cut by the interruption
    calls.clear()
    monkeypatch.setattr(batch_mod, "_score_one", lambda task: (calls.append(task["id"]), real(task))[1])
    df = score_batch(corpus / "m.csv", out, metrics=METRICS, resume=True, progress=False)
    assert calls == ["missing", "three", "good2", "good3", "silent"]  # only the rest
    pd.testing.assert_frame_equal(df, ref_df)
    pd.testing.assert_frame_equal(pd.read_parquet(out), ref_df)
    # three items failed: the journal stays, a plain run is refused, --resume scores only those again
    assert os.path.exists(journal)
    with pytest.raises(SpaqError, match="items that failed.*--resume.*--overwrite"):
        score_batch(corpus / "m.csv", out, metrics=METRICS, progress=False)
    calls.clear()
    df = score_batch(corpus / "m.csv", out, metrics=METRICS, resume=True, progress=False)
    assert calls == ["missing", "three", "silent"]
    pd.testing.assert_frame_equal(df, ref_df)
    # every item ok: the journal goes, and the finished table is refused unless --overwrite
    pairs = read_pairs(corpus / "m.csv")
    good = pairs[pairs["id"].str.startswith("good")]
    out2 = tmp_path / "good.parquet"
    score_batch(good, out2, metrics=METRICS, progress=False)
    assert not os.path.exists(journal_path(out2))
    with pytest.raises(SpaqError, match="--overwrite"):
        score_batch(good, out2, metrics=METRICS, progress=False)
    with pytest.raises(SpaqError, match="complete"):
        score_batch(good, out2, metrics=METRICS, resume=True, progress=False)
    calls.clear()
    df = score_batch(corpus / "m.csv", out, metrics=METRICS, overwrite=True, progress=False)
    assert len(calls) == 7
    pd.testing.assert_frame_equal(df, ref_df)


def test_resume_refuses_changed_files(corpus, tmp_path, monkeypatch):
    out = tmp_path / "s.csv"
    interrupted_batch(monkeypatch, "good0", lambda: score_batch(corpus / "m.csv", out, metrics=["cues"], progress=False))
    m = pd.read_csv(corpus / "m.csv")
    m.loc[0, "deg"] = "audio/d3.wav"
    m.to_csv(tmp_path / "changed.csv", index=False)
    (tmp_path / "audio").symlink_to(corpus / "audio")
    with pytest.raises(SpaqError, match="item good0 was scored for other files"):
        score_batch(tmp_path / "changed.csv", out, metrics=["cues"], resume=True, progress=False)


def test_resume_scores_again_the_items_whose_files_changed(tmp_path, monkeypatch, capsys):
    """The journal records a fingerprint of each item's files (size, mtime, sampled bytes): a file
    replaced at the same path -- even with the same size and its old mtime kept, as ``cp -p`` does --
    is scored again on --resume, and the run says so; unchanged items are not; a record without a
    fingerprint (an earlier spaq) is scored again."""
    from spaq.cli import main

    rng = np.random.default_rng(3)
    x = 0.1 * rng.standard_normal((2, FS // 2))
    _write(tmp_path / "r.wav", x)
    _write(tmp_path / "d.wav", x + 0.02 * rng.standard_normal(x.shape))
    pd.DataFrame([{"id": "k1", "ref": "r.wav", "deg": "d.wav"},
                  {"id": "k2", "ref": "r.wav", "deg": "nothere.wav"}]).to_csv(tmp_path / "m.csv", index=False)
    out = tmp_path / "s.csv"
    real = batch_mod._score_one
    calls = []
    monkeypatch.setattr(batch_mod, "_score_one", lambda task: (calls.append(task["id"]), real(task))[1])
    first = score_batch(tmp_path / "m.csv", out, metrics=["cues"], progress=False)
    assert list(first["status"]) == ["ok", "error"] and first["cues"][0] > 0.1
    rec = batch_mod.read_journal(journal_path(out), key="id", cast=str)["k1"]
    assert rec["inputs"]["deg"] == batch_mod.file_fingerprint(str(tmp_path / "d.wav"))
    assert rec["inputs"]["deg"]["size"] == os.path.getsize(tmp_path / "d.wav")
    # nothing changed: only the failed item is scored again
    calls.clear()
    df = score_batch(tmp_path / "m.csv", out, metrics=["cues"], resume=True, progress=False)
    assert calls == ["k2"] and df.attrs["rescored"] == {"files_changed": [], "no_fingerprint": []}
    assert df["cues"][0] == first["cues"][0]
    # a journal written before fingerprints: its records are scored again, and counted
    lines = open(journal_path(out)).read().splitlines()
    recs = [json.loads(line) for line in lines]
    for r in recs[1:]:
        r.pop("inputs", None)
    with open(journal_path(out), "w") as f:
        f.write("\n".join(json.dumps(r) for r in recs) + "\n")
    calls.clear()
    df = score_batch(tmp_path / "m.csv", out, metrics=["cues"], resume=True, progress=False)
    assert calls == ["k1", "k2"] and df.attrs["rescored"] == {"files_changed": [], "no_fingerprint": ["k1"]}
    assert df["cues"][0] == first["cues"][0]
    # deg replaced by the reference at the same path, same size, old mtime kept: scored again (0: same signal)
    st = os.stat(tmp_path / "d.wav")
    _write(tmp_path / "d.wav", x)
    os.utime(tmp_path / "d.wav", ns=(st.st_atime_ns, st.st_mtime_ns))
    now = os.stat(tmp_path / "d.wav")
    assert (now.st_size, now.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    _write(tmp_path / "nothere.wav", x)  # and the failed item fixed
    calls.clear()
    capsys.readouterr()
    assert main(["batch", str(tmp_path / "m.csv"), "--out", str(out), "-m", "cues", "-q", "--resume"]) == 0
    assert calls == ["k1", "k2"]
    assert capsys.readouterr().err == ("spaq: --resume scored 1 pair again: its files changed since the journal "
                                       "recorded it (k1)\n")
    table = pd.read_csv(out)
    assert list(table["status"]) == ["ok", "ok"] and list(table["cues"]) == [0.0, 0.0]
    assert not os.path.exists(journal_path(out))


def test_resume_refusal_names_the_settings_that_differ(corpus, tmp_path, monkeypatch):
    """A resume with other settings is refused naming each one that differs, also those the message
    did not show before (--no-align, --n-sources, --checkpoint), as the journal has it and as this run asks."""
    out = tmp_path / "s.csv"
    interrupted_batch(monkeypatch, "good0", lambda: score_batch(corpus / "m.csv", out, metrics=["cues"], progress=False))
    with pytest.raises(SpaqError, match=r"was written with --align; this run asks for --no-align: use the same "
                                        r"options to resume, or --overwrite"):
        score_batch(corpus / "m.csv", out, metrics=["cues"], resume=True, progress=False, align=False)
    with pytest.raises(SpaqError, match=r"written with metrics cues, each metric's default speed; this run asks for "
                                        r"metrics cues,quality, --exact:"):
        score_batch(corpus / "m.csv", out, metrics=["cues", "quality"], fast=False, resume=True, progress=False)
    old = batch_mod._fingerprint(["cues"], None, "cpu")
    new = dict(batch_mod._fingerprint(["quality"], True, "cuda", "/w.pth", False, 2), spaq="9.9", journal_version=7,
               tool="other", extra="x")
    was, now = batch_mod._settings_diff(old, new)
    assert was == ("tool spaq batch, journal version 1, spaq " + spaq.__version__ + ", metrics cues, each metric's "
                   "default speed, device cpu, no --checkpoint, --align, no --n-sources, extra None")
    assert now == ("tool other, journal version 7, spaq 9.9, metrics quality, --fast, device cuda, --checkpoint /w.pth, "
                   "--no-align, --n-sources 2, extra x")


def test_resume_refuses_other_packaged_weights(corpus, tmp_path, monkeypatch):
    """Weights replaced under the same spaq version (a retrained model in a development install)
    would mix two models' scores in one table: the resume names them and stops."""
    import dataclasses

    from spaq.weights import REGISTRY

    out = tmp_path / "s.csv"
    interrupted_batch(monkeypatch, "good0", lambda: score_batch(corpus / "m.csv", out, metrics=["cues"], progress=False))
    header = json.loads(open(journal_path(out)).readline())["journal_header"]
    assert header["weights"]["predictor_v1"] == REGISTRY["predictor_v1"].sha256
    assert "qastanet" not in header["weights"]  # downloaded, not shipped
    monkeypatch.setitem(REGISTRY, "predictor_v1", dataclasses.replace(REGISTRY["predictor_v1"], sha256="0" * 64))
    with pytest.raises(SpaqError, match=r"other packaged weights \(predictor_v1\)"):
        score_batch(corpus / "m.csv", out, metrics=["cues"], resume=True, progress=False)
    monkeypatch.undo()
    lines = open(journal_path(out)).read().splitlines()  # a journal from before the record
    head = json.loads(lines[0])
    del head["journal_header"]["weights"]
    with open(journal_path(out), "w") as f:
        f.write("\n".join([json.dumps(head)] + lines[1:]) + "\n")
    with pytest.raises(SpaqError, match="earlier spaq that did not record its weights"):
        score_batch(corpus / "m.csv", out, metrics=["cues"], resume=True, progress=False)


def test_two_workers_and_dask_local_same_table(corpus, clean, tmp_path):
    _, ref_df = clean
    df2 = score_batch(corpus / "m.csv", tmp_path / "w2.parquet", metrics=METRICS, workers=2, progress=False)
    pd.testing.assert_frame_equal(df2, ref_df)  # manifest order, same floats
    pytest.importorskip("distributed")
    dd = score_batch(corpus / "m.csv", tmp_path / "dask.csv", metrics=METRICS, workers=2, dask="local",
                     progress=False)
    pd.testing.assert_frame_equal(dd, ref_df)
    back = pd.read_csv(tmp_path / "dask.csv", keep_default_na=False, na_values=[""])
    assert list(back["id"]) == list(ref_df["id"])
    np.testing.assert_array_equal(back["quality"].to_numpy(), ref_df["quality"].to_numpy())


_SLOW_BATCH = """
import sys, time
import spaq.batch


def slow(task):  # 0.4 s a pair: time to interrupt the run while the workers score
    import spaq.batch as b  # in a Dask worker (slow pickled by value) b._score_one is the real one

    time.sleep(0.4)
    return getattr(b, "_real_score_one", b._score_one)(task)


spaq.batch._real_score_one, spaq.batch._score_one = spaq.batch._score_one, slow
if __name__ == "__main__":
    from spaq.cli.app import main
    sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig, runner", [("SIGTERM", ["--workers", "2"]), ("SIGINT", ["--dask", "local", "--workers", "2"])])
def test_a_signal_to_the_process_group_stops_the_run_cleanly(corpus, tmp_path, sig, runner):
    """Ctrl-C in a terminal, or ``timeout -s INT|TERM``, signals the whole process group, workers
    included: the run prints one line (how many pairs are done, --resume), exits 128 + the signal, leaves
    no lock and no traceback (not one per Dask worker), and the resume writes the very table a run
    without interruption writes."""
    import signal
    import subprocess
    import sys
    import time

    if "--dask" in runner:
        pytest.importorskip("distributed")
    signo = getattr(signal, sig)
    m = pd.read_csv(corpus / "m.csv")
    m = m[m["id"].str.startswith("good")]
    big = pd.concat([m.assign(id=m["id"] + f"_{k}") for k in range(6)], ignore_index=True)  # 24 pairs
    big["ref"] = [str(corpus / p) for p in big["ref"]]
    big["deg"] = [str(corpus / p) for p in big["deg"]]
    big.to_csv(tmp_path / "big.csv", index=False)
    (tmp_path / "slow_batch.py").write_text(_SLOW_BATCH)
    out = tmp_path / "s.csv"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(os.path.dirname(spaq.__file__)),
                                                       os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(tmp_path / "slow_batch.py"), "batch", str(tmp_path / "big.csv"),
                             "--out", str(out), "-m", "cues", "-q", *runner], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    journal = journal_path(out)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:  # once a pair is done
            if os.path.exists(journal) and len(open(journal).read().splitlines()) >= 2:
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signo)  # as the terminal and timeout do: every process of the group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    err = err.decode()
    assert proc.returncode == 128 + signo, err
    assert re.fullmatch(r"spaq: interrupted: (\d+) of 24 pairs done \(in " + re.escape(journal) +
                        r"\); run the same command with --resume to score the rest\n", err), err
    assert not os.path.exists(str(out) + ".lock") and not out.exists()
    resumed = score_batch(tmp_path / "big.csv", out, metrics=["cues"], resume=True, progress=False)
    fresh = score_batch(tmp_path / "big.csv", tmp_path / "fresh.csv", metrics=["cues"], progress=False)
    pd.testing.assert_frame_equal(resumed, fresh, check_exact=True)
    assert open(out, "rb").read() == open(tmp_path / "fresh.csv", "rb").read()


def test_dask_missing_is_one_line(corpus, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails as if not installed
    with pytest.raises(SpaqError, match=r"pip install 'spaq\[dask\]' \(from a clone: pip install -e '\.\[dask\]'\)"):
        score_batch(corpus / "m.csv", tmp_path / "o.csv", metrics=["cues"], dask="local", progress=False)


def test_corpus_folder_and_parquet_manifests(tmp_path):
    from spaq.data.config import validate_config
    from spaq.data.corpus import generate_corpus

    cfg = {"corpus": {"name": "b", "kind": "pairs", "n": 2, "seed": 1, "duration_s": 0.5},
           "scene": {"formats": {"binaural": 1}, "sources": {"count": [1, 1], "types": {"pink_noise": 1}}},
           "degradations": {"count": [1, 1], "severity": [0.3, 0.8], "types": {"noise": 1, "lowpass": 1}}}
    folder = tmp_path / "corpus"
    generate_corpus(validate_config(cfg), str(folder), progress=False)
    pairs = read_pairs(folder)
    assert list(pairs["id"]) == ["000000", "000001"] and list(pairs["format"]) == ["binaural"] * 2
    assert pairs["ref"][0] == str(folder / "audio" / "000000_ref.wav")
    df = score_batch(folder, tmp_path / "c.parquet", metrics=["cues"], progress=False)
    assert list(df["status"]) == ["ok", "ok"] and list(df["id"]) == ["000000", "000001"]
    rep = spaq.score(str(folder / "audio" / "000001_ref.wav"), str(folder / "audio" / "000001_deg.wav"),
                     metrics=["cues"])
    assert df["cues"][1] == rep.results["cues"].score
    # a parquet manifest elsewhere with absolute paths and no id column: ids are row numbers
    pd.DataFrame({"ref": list(pairs["ref"]), "deg": list(pairs["deg"])}).to_parquet(tmp_path / "m.parquet")
    p2 = read_pairs(tmp_path / "m.parquet")
    assert list(p2["id"]) == ["0", "1"] and list(p2["ref"]) == list(pairs["ref"])


@pytest.mark.parametrize("content, msg", [
    (None, "not found"),
    ("", "is empty"),
    ("a,b\nx.wav,y.wav\n", "needs columns ref,deg"),
    ("ref,deg\n", "lists no pairs"),
    ("id,ref,deg\n1,a.wav,b.wav\n2,a.wav,b.wav\n1,a.wav,c.wav\n", "duplicate id 1"),
])
def test_read_pairs_errors(tmp_path, content, msg):
    p = tmp_path / "m.csv"
    if content is not None:
        p.write_text(content)
    with pytest.raises(SpaqError, match=msg):
        read_pairs(p)


def test_bad_options(corpus, tmp_path):
    with pytest.raises(SpaqError, match="unknown metric 'nope'"):
        score_batch(corpus / "m.csv", tmp_path / "o.csv", metrics=["nope"], progress=False)
    with pytest.raises(SpaqError, match=".parquet or .csv"):
        score_batch(corpus / "m.csv", tmp_path / "o.txt", metrics=["cues"], progress=False)
    with pytest.raises(SpaqError, match="--workers"):
        score_batch(corpus / "m.csv", tmp_path / "o.csv", metrics=["cues"], workers=0, progress=False)
    assert not list(tmp_path.iterdir())  # nothing written
    # --overwrite removes the old table only once the workers / scheduler are there
    (tmp_path / "old.csv").write_text("id\n")
    with pytest.raises(SpaqError, match="scheduler address"):
        score_batch(corpus / "m.csv", tmp_path / "old.csv", metrics=["cues"], dask="", overwrite=True,
                    progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["old.csv"]


def test_a_second_run_on_the_same_output_is_refused(corpus, tmp_path):
    """While one run holds the output (its lock), another -- say a --resume started too early -- is
    refused in one line and writes nothing; once the first is done the lock is gone."""
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "o.csv"
    with open(str(out) + ".lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(SpaqError, match="another spaq batch is writing"):
            score_batch(corpus / "m.csv", out, metrics=["cues"], resume=True, progress=False)
        assert not out.exists() and not os.path.exists(journal_path(out))
        fcntl.flock(held, fcntl.LOCK_UN)
    os.remove(str(out) + ".lock")
    pairs = read_pairs(corpus / "m.csv")
    score_batch(pairs[pairs["id"] == "good0"], out, metrics=["cues"], progress=False)
    assert out.exists() and not os.path.exists(str(out) + ".lock")


def test_strict_raises_after_writing(corpus, tmp_path):
    pairs = read_pairs(corpus / "m.csv")
    with pytest.raises(BatchFailed, match="1 of 2 items failed") as e:
        score_batch(pairs[pairs["id"].isin(["good0", "missing"])], tmp_path / "o.csv", metrics=["cues"],
                    strict=True, progress=False)
    assert (tmp_path / "o.csv").exists() and list(e.value.table["status"]) == ["ok", "error"]


def test_cli_exit_codes(corpus, tmp_path, capsys):
    from spaq.cli import main
    pd.read_csv(corpus / "m.csv").iloc[[0, 1]].to_csv(tmp_path / "good.csv", index=False)
    (tmp_path / "audio").symlink_to(corpus / "audio")
    assert main(["batch", str(tmp_path / "good.csv"), "--out", str(tmp_path / "g.parquet"), "-m", "cues", "-q"]) == 0
    cap = capsys.readouterr()
    assert "2 of 2 pairs scored" in cap.out and cap.err == ""
    # some failed: 0 by default with a one-line note, 1 with --strict
    args = ["batch", str(corpus / "m.csv"), "-m", "cues", "-q", "--json"]
    assert main(args + ["--out", str(tmp_path / "a.csv")]) == 0
    cap = capsys.readouterr()
    obj = json.loads(cap.out)
    assert obj["out"] == str(tmp_path / "a.csv") and (obj["n_ok"], obj["n_error"]) == (4, 3)
    assert obj["metrics"]["cues"]["n"] == 4
    assert cap.err == (f"spaq: 3 of 7 items failed (see the status column of {tmp_path / 'a.csv'}; once fixed, "
                       "the same command with --resume scores only those)\n")
    # --strict exits 1, after writing the table
    assert main(args + ["--out", str(tmp_path / "b.csv"), "--strict"]) == 1
    assert (tmp_path / "b.csv").exists() and "3 of 7 items failed" in capsys.readouterr().err
    # user errors: one line, exit 2, no traceback
    for bad in (["batch", str(tmp_path / "none.csv"), "--out", str(tmp_path / "x.csv")],
                ["batch", str(corpus / "m.csv"), "--out", str(tmp_path / "a.csv"), "-m", "cues"]):
        assert main(bad) == 2
        err = capsys.readouterr().err
        assert err.startswith("spaq: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert main(["batch", str(corpus / "m.csv"), "--out", str(tmp_path / "a.csv"), "-m", "cues", "-q",
                 "--overwrite"]) == 0


def test_checkpoint_offline_and_align_options(corpus, tmp_path):
    """--checkpoint is checked once, before any work (not once per pair); --no-align scores
    the pairs as given and is part of the resume fingerprint."""
    out = tmp_path / "t.csv"
    with pytest.raises(SpaqError, match="checkpoint not found"):
        score_batch(corpus / "m.csv", out, metrics=METRICS, progress=False, checkpoint=tmp_path / "nothere.pth")
    assert not out.exists() and not os.path.exists(journal_path(out))
    df = score_batch(corpus / "m.csv", out, metrics=["cues"], progress=False, offline=True, align=False)
    ok = df[df["status"] == "ok"]
    for _, row in ok.iterrows():
        rep = spaq.score(row["ref"], row["deg"], metrics=["cues"], align=False)
        assert row["cues"] == pytest.approx(rep.results["cues"].score, rel=1e-12)
    assert batch_mod._fingerprint(["cues"], None, "cpu", None, False)["align"] is False
    assert "align" not in batch_mod._fingerprint(["cues"], None, "cpu")
    # a pair that differs only by a 20 ms delay: the batch's align setting is the one applied
    x = 0.1 * np.random.default_rng(11).standard_normal((2, FS))
    late = np.zeros_like(x)
    late[:, 960:] = x[:, :-960]
    _write(tmp_path / "r.wav", x)
    _write(tmp_path / "d.wav", late)
    pd.DataFrame([{"id": "late", "ref": "r.wav", "deg": "d.wav"}]).to_csv(tmp_path / "late.csv", index=False)
    rows = {}
    for align in (False, True):
        df = score_batch(tmp_path / "late.csv", tmp_path / f"late_{align}.csv", metrics=["cues"], progress=False,
                         align=align)
        rows[align] = float(df["cues"].iloc[0])
        rep = spaq.score(str(tmp_path / "r.wav"), str(tmp_path / "d.wav"), metrics=["cues"], align=align)
        assert rows[align] == pytest.approx(rep.results["cues"].score, rel=1e-12)
    assert rows[True] == pytest.approx(0.0, abs=1e-9)  # aligned: the same samples
    aligned = pd.read_csv(tmp_path / "late_True.csv")
    assert aligned["delay_ms"].iloc[0] == pytest.approx(20.0, abs=1e-9) and aligned["delay_applied"].iloc[0] == "yes"
    assert np.isnan(pd.read_csv(tmp_path / "late_False.csv")["delay_ms"].iloc[0])  # --no-align: none estimated
    # as given, each frame compares independent noise: band levels over 40 ms differ by about a dB
    assert rows[False] > 0.3


def test_several_sources_per_pair(tmp_path, capsys):
    """--n-sources reaches localization for every pair; each source's error and directions become
    columns (``localization.error_deg.<i>``, ``localization.reference_directions.<i>.azimuth_deg``),
    equal to what spaq.score gives; a count where no metric finds sources is refused before any work."""
    from scipy.signal import oaconvolve

    from spaq.cli import main
    from spaq.data.sources import make_source
    from spaq.spatial.hrtf import load_hrtf

    h = load_hrtf("ku100", FS)

    def two(moved):
        rng = np.random.default_rng(5)
        y = 0
        for kind, (az, el) in (("chord", (40.0, 10.0)), ("noise_bursts", (-20.0 - moved, 10.0))):
            v = oaconvolve(make_source(kind, 1.0, FS, rng)[0][None], h.hrir[int(h.nearest_index(az, el))], axes=-1)
            y = y + v[:, :FS] / np.sqrt(np.mean(v[:, :FS] ** 2))
        return 0.03 * y

    _write(tmp_path / "r.wav", two(0.0))
    _write(tmp_path / "d.wav", two(40.0))
    pd.DataFrame([{"id": "p", "ref": "r.wav", "deg": "d.wav"}]).to_csv(tmp_path / "m.csv", index=False)
    df = score_batch(tmp_path / "m.csv", tmp_path / "t.csv", metrics=["localization"], progress=False, n_sources=2)
    rep = spaq.score(str(tmp_path / "r.wav"), str(tmp_path / "d.wav"), metrics=["localization"],
                     n_sources=2).results["localization"]
    row = df.iloc[0]
    assert [row["localization.error_deg.1"], row["localization.error_deg.2"]] == pytest.approx(
        rep.values["error_deg"], abs=1e-9)
    assert sorted(rep.values["error_deg"])[0] < 2.0 and sorted(rep.values["error_deg"])[1] > 30.0
    for i in (1, 2):
        assert row[f"localization.reference_directions.{i}.azimuth_deg"] == pytest.approx(
            rep.values["reference_directions"][i - 1]["azimuth_deg"], abs=1e-9)
    assert row["localization"] == pytest.approx(np.mean(rep.values["error_deg"]), abs=1e-3)
    assert batch_mod._fingerprint(["localization"], None, "cpu", n_sources=2)["n_sources"] == 2
    assert "n_sources" not in batch_mod._fingerprint(["localization"], None, "cpu")
    # one source by default: one error column
    one = score_batch(tmp_path / "m.csv", tmp_path / "one.csv", metrics=["localization"], progress=False)
    assert "localization.error_deg.1" in one.columns and "localization.error_deg.2" not in one.columns
    # refused before any work, one line through the command
    out = tmp_path / "x.csv"
    with pytest.raises(SpaqError, match="finds sources"):
        score_batch(tmp_path / "m.csv", out, metrics=["cues"], progress=False, n_sources=2)
    assert not out.exists() and not os.path.exists(journal_path(out))
    assert main(["batch", str(tmp_path / "m.csv"), "--out", str(out), "-m", "localization", "--n-sources", "0",
                 "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spaq: error: ") and err.count("\n") == 1 and "n_sources" in err
    assert main(["batch", str(tmp_path / "m.csv"), "--out", str(out), "-m", "localization", "--n-sources", "2",
                 "-q"]) == 0
    assert pd.read_csv(out)["localization.error_deg.2"].iloc[0] == pytest.approx(row["localization.error_deg.2"])


def test_manifest_columns_travel_and_join_on_several_keys(tmp_path, capsys):
    """A listening test's manifest (ref, deg, condition, item: no id) -> the table keeps condition and item, and
    `spaq evaluate --on condition,item` joins the ratings on both; the manifest's numeric column (item) is not
    taken for a metric."""
    from spaq.cli import main

    rng = np.random.default_rng(12)
    rows, mos = [], []
    for item in (1, 2):
        x = 0.1 * rng.standard_normal((2, FS // 2))
        _write(tmp_path / f"r{item}.wav", x)
        for k, cond in enumerate(("clean", "mild", "harsh")):
            _write(tmp_path / f"d{item}{cond}.wav", x + 0.003 * 4 ** k * rng.standard_normal(x.shape))
            rows.append({"ref": f"r{item}.wav", "deg": f"d{item}{cond}.wav", "condition": cond, "item": item})
            mos.append({"condition": cond, "item": item, "mushra": 95 - 30 * k + item})
    pd.DataFrame(rows).to_csv(tmp_path / "m.csv", index=False)
    pd.DataFrame(mos).to_csv(tmp_path / "mos.csv", index=False)
    df = score_batch(tmp_path / "m.csv", tmp_path / "s.csv", metrics=["cues"], progress=False)
    assert list(df.columns[:12]) == ["id", "ref", "deg", "status", "error", "format", "duration_s", "delay_ms",
                                     "delay_applied", "warnings", "condition", "item"]
    assert df["condition"].tolist() == [r["condition"] for r in rows]
    assert df["item"].astype(int).tolist() == [r["item"] for r in rows]
    assert main(["evaluate", str(tmp_path / "s.csv"), "--mos-table", str(tmp_path / "mos.csv"), "--on", "condition,item",
                 "--mos", "mushra", "--bootstrap", "0", "--mapping", "1", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_items"] == 6 and set(out["metrics"]) == {"cues"}
    # more added noise, lower ratings: cues (lower is better) rises as the ratings fall
    assert out["metrics"]["cues"]["spearman"] < -0.8 and out["warnings"] == []
    # one key alone would match each rating row to both items (twice the rows, and a significance that is not
    # there): refused, naming the shared key
    assert main(["evaluate", str(tmp_path / "s.csv"), "--mos-table", str(tmp_path / "mos.csv"), "--on", "condition",
                 "--mos", "mushra", "--bootstrap", "0", "--mapping", "1", "--json"]) == 2
    assert "rows that share a key on 'condition'" in capsys.readouterr().err


def test_the_table_carries_each_pairs_warnings(tmp_path):
    """The reader's findings (here a 5.1 file in film order: a full-band feed in the LFE slot) and the metrics'
    warnings were computed for every pair but never reached the table. They are now its ``warnings`` column,
    one cell per pair; a clean pair's cell is empty."""
    rng = np.random.default_rng(11)
    film = rng.standard_normal((48000, 6)) * 0.05  # every channel full band, the LFE slot (index 3) included
    smpte = film.copy()
    smpte[:, 3] = 0.0
    for name, x in (("film", film), ("smpte", smpte)):
        sf.write(tmp_path / f"{name}.wav", x, 48000, subtype="FLOAT")
        sf.write(tmp_path / f"{name}_d.wav", 0.9 * x, 48000, subtype="FLOAT")
    pd.DataFrame({"id": ["film", "smpte"], "ref": ["film.wav", "smpte.wav"], "deg": ["film_d.wav", "smpte_d.wav"],
                  "format": ["5.1", "5.1"]}).to_csv(tmp_path / "m.csv", index=False)
    df = score_batch(tmp_path / "m.csv", tmp_path / "s.csv", metrics=["cues"], progress=False)
    assert "warnings" in BASE_COLUMNS and list(df["status"]) == ["ok", "ok"]
    w = dict(zip(df["id"], df["warnings"].fillna("")))
    assert "the LFE of 5.1" in w["film"] and "full-band loudspeaker feed" in w["film"]
    assert "LFE" not in w["smpte"]
    back = pd.read_csv(tmp_path / "s.csv", keep_default_na=False)
    assert back["warnings"].tolist() == df["warnings"].fillna("").tolist()
