"""Robustness of more commands: one-line errors before any work, no partial files.

* ``spaq train localizer``: a step-based recipe refuses --epochs/--cache (and takes --steps), an epoch-based one and
  --csv refuse --steps;
* ``spaq weights fetch``: the timeout is a deadline for the whole download (a server that trickles bytes cannot
  hold it longer), and a failure, Ctrl-C or SIGTERM during the download leaves no temporary file;
* ``spaq train quality``: the fit.itd_lateral cross-check (and the ambisonic items) before the feature runs;
* ``spaq study embeddings``: unknown metric, missing file, negative --n-boot, --out in the way: before the work;
* ``spaq metrics --json``: ``available`` and ``reason`` per metric, as ``spaq score`` says it.
"""
from __future__ import annotations

import dataclasses
import http.server
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from spaq.cli import main
from spaq.errors import SpaqError

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "src" / "spaq" / "resources" / "weights"
CUES = str(WEIGHTS / "bast_cues.yaml")  # step-based (steps: 3000)
KU100 = str(WEIGHTS / "bast_ku100.yaml")  # epoch-based (epochs: 36)


def _err_line(capsys) -> str:
    cap = capsys.readouterr()
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spaq: error: "), cap.err
    assert "Traceback" not in cap.err + cap.out
    return lines[0]


# --------------------------------------------------------------------------- 1. train localizer: steps vs epochs


@pytest.mark.parametrize("args, msg", [
    ([CUES, "--epochs", "1"], "the recipe is step-based (steps: 3000); --epochs does not apply: use --steps N"),
    ([CUES, "--cache", "CACHE"], "the recipe is step-based (steps: 3000) and renders fresh scenes every batch; "
                                 "--cache does not apply"),
    ([CUES, "--steps", "0"], "steps must be an integer >= 1, got 0"),  # 0 would silently make it epoch-based
    ([KU100, "--steps", "5"], "the recipe is epoch-based (epochs: 36); --steps does not apply: use --epochs N"),
    (["--csv", "x.csv", "--steps", "5"], "--steps does not apply to --csv training"),
    (["--csv", "x.csv", "--cache", "CACHE"], "--cache does not apply to --csv training"),
])
def test_localizer_options_a_recipe_would_ignore_are_one_line_errors(tmp_path, capsys, monkeypatch, args, msg):
    import spaq.train.localizer as L

    def no_work(*a, **k):
        raise AssertionError("training started")

    for f in ("train_localizer", "train_cue_localizer", "train_from_csv", "synthesize_parallel"):
        monkeypatch.setattr(L, f, no_work)
    out = tmp_path / "loc.pt"
    args = [str(tmp_path / "cache") if a == "CACHE" else a for a in args]
    assert main(["train", "localizer", *args, "-o", str(out)]) == 2
    assert msg in _err_line(capsys)
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_localizer_steps_applies_to_step_recipes_and_the_recipe_is_unchanged_without_it(tmp_path, capsys,
                                                                                        monkeypatch):
    import spaq.train.localizer as L

    seen = []

    def fake(tc, out_path, log=print):  # the streaming trainer, as train_localizer calls it
        seen.append((tc.steps, tc.epochs))
        return {"history": [{"step": tc.steps}], "sha256": "0" * 64, "best_val_mean_deg": 1.0}

    monkeypatch.setattr(L, "train_cue_localizer", fake)
    out = str(tmp_path / "loc.pt")
    assert main(["train", "localizer", CUES, "--steps", "7", "-o", out]) == 0
    assert json.loads(capsys.readouterr().out)["last_epoch"] == {"step": 7}
    assert main(["train", "localizer", CUES, "-o", out]) == 0
    capsys.readouterr()
    assert seen == [(7, 10), (3000, 10)]  # without --steps: the recipe's 3000 steps
    # the library refuses a cache a step recipe would not use, too
    tc = L.LocalizerTrainConfig.from_yaml(CUES)
    with pytest.raises(SpaqError, match="step-based recipe .* keeps no feature cache"):
        L.train_localizer(tc, out, cache_dir=tmp_path / "cache")
    assert seen == [(7, 10), (3000, 10)] and not (tmp_path / "cache").exists()


# --------------------------------------------------------------------------- 2. weights fetch: deadline, cleanup


class _Trickle(http.server.BaseHTTPRequestHandler):
    """Announces 1 MB, then sends one byte every 20 ms (each read well within any per-read timeout)."""

    stop = threading.Event()

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(10 ** 6))
        self.end_headers()
        try:
            while not self.stop.is_set():
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.02)
        except OSError:  # the client gave up
            pass

    def log_message(self, *a):
        pass


@pytest.fixture
def trickle(tmp_path, monkeypatch):
    """(url, cache folder): a local server that trickles bytes; registry qastanet entry with a dummy sha; an empty
    cache; no failure remembered from other tests."""
    from spaq import weights

    cache = tmp_path / "cache"
    monkeypatch.setenv("SPAQ_CACHE_DIR", str(cache))
    reg = dict(weights.REGISTRY)
    reg["qastanet"] = dataclasses.replace(reg["qastanet"], sha256="0" * 64)
    monkeypatch.setattr(weights, "REGISTRY", reg)
    monkeypatch.setattr(weights, "_FAILED", {})
    _Trickle.stop.clear()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    srv.daemon_threads = True
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/model_weights.pth.tar", cache
    finally:
        _Trickle.stop.set()
        srv.shutdown()
        srv.server_close()


def test_fetch_timeout_is_a_deadline_for_the_whole_download(trickle):
    from spaq import weights

    url, cache = trickle
    t0 = time.monotonic()
    with pytest.raises(SpaqError) as e:
        weights.fetch("qastanet", url=url, timeout=0.8)
    took = time.monotonic() - t0
    msg = str(e.value)
    assert "\n" not in msg and f"cannot download qastanet weights from {url}: not complete within 0.8 s" in msg
    # not 1 MB x 20 ms (5.6 h), not a per-read timeout (which never fires here); the bound leaves a loaded machine room
    assert 0.75 <= took < 10.0
    got = int(msg.split("(")[1].split(" bytes")[0])
    assert 5 <= got < 200  # bytes did arrive: it was slow, not silent
    assert list(cache.iterdir()) == []  # no temporary file, no target


def test_cli_weights_fetch_timeout_option(trickle, capsys):
    url, cache = trickle
    t0 = time.monotonic()
    assert main(["weights", "fetch", "qastanet", "--url", url, "--timeout", "0.5"]) == 2
    assert time.monotonic() - t0 < 10.0  # the trickle alone would take 5.6 h
    assert "not complete within 0.5 s" in _err_line(capsys) and list(cache.iterdir()) == []
    assert main(["weights", "fetch", "qastanet", "--url", url + "?b", "--timeout", "0"]) == 2
    assert "--timeout must be a number of seconds > 0, got 0" in _err_line(capsys)
    assert list(cache.iterdir()) == []


def test_fetch_interrupted_by_ctrl_c_leaves_no_temporary_file(trickle):
    from spaq import weights

    url, cache = trickle

    def ctrl_c(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGALRM, ctrl_c)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            weights.fetch("qastanet", url=url, timeout=5)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert cache.is_dir() and list(cache.iterdir()) == []


def test_fetch_stopped_by_sigterm_cleans_up_then_passes_the_signal_on(trickle):
    """SIGTERM's default action ends the process at once (no finally runs): fetch catches it for the download,
    removes the temporary file, restores the previous handler and raises the signal again for it."""
    from spaq import weights

    url, cache = trickle

    class Stopped(Exception):
        pass

    seen = []

    def previous(signum, frame):
        seen.append((signum, sorted(p.name for p in cache.iterdir())))  # what is on disk when it arrives
        raise Stopped

    old = signal.signal(signal.SIGTERM, previous)
    try:
        timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM))
        timer.start()
        with pytest.raises(Stopped):
            weights.fetch("qastanet", url=url, timeout=5)
        timer.join()
        assert signal.getsignal(signal.SIGTERM) is previous  # restored
    finally:
        signal.signal(signal.SIGTERM, old)
    assert seen == [(signal.SIGTERM, [])]  # the signal reached the previous handler once, after the cleanup
    assert list(cache.iterdir()) == []


# --------------------------------------------------------------------------- 3. train quality: cross-check first


def _quality_recipe(tmp_path, **changes) -> Path:
    import yaml

    d = yaml.safe_load((REPO / "configs" / "train" / "quality.yaml").read_text())
    for key, value in changes.items():
        section, _, name = key.partition("__")
        if name:
            d[section][name] = value
        else:
            d[section] = value
    p = tmp_path / "recipe.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


@pytest.fixture
def no_quality_work(monkeypatch):
    import spaq.train.quality as Q

    def no_work(*a, **k):
        raise AssertionError("feature computation started")

    for f in ("mushra_table", "mushra_features", "_synthetic_records", "param_coding_features",
              "param_coding_ambisonic_features"):
        monkeypatch.setattr(Q, f, no_work)


@pytest.mark.parametrize("changes, msg", [
    ({"synthetic__spatial": ["rotation", "blur"]},
     "fit.itd_lateral names 'misplacement', which is not one of synthetic.spatial (rotation, blur)"),
    ({"fit__itd_lateral": "itd", "synthetic__formats": ["hoa3"]},
     "fit.itd_lateral names 'itd', but the recipe renders no itd sweeps to set the d_itd weight (itd applies to "
     "binaural signals; synthetic.formats: hoa3"),
])
def test_quality_itd_lateral_cross_check_comes_before_any_work(tmp_path, capsys, no_quality_work, changes, msg):
    recipe = _quality_recipe(tmp_path, **changes)
    out = tmp_path / "work" / "q.json"
    t0 = time.monotonic()
    assert main(["train", "quality", str(recipe), "-o", str(out)]) == 2
    assert msg in _err_line(capsys)
    assert time.monotonic() - t0 < 10 and not (tmp_path / "work").exists()  # not even the workdir


def test_quality_shipped_recipe_passes_the_cross_check():
    from spaq.train.quality import QualityTrainConfig, check_itd_lateral

    tc = QualityTrainConfig.from_yaml(REPO / "configs" / "train" / "quality.yaml")
    assert tc.fit["itd_lateral"] == "misplacement"
    check_itd_lateral(tc)  # no error
    tc.fit.itd_lateral = ""
    check_itd_lateral(tc)  # no ITD term: nothing to check


def test_quality_missing_ambisonic_items_before_the_feature_runs(tmp_path, capsys, monkeypatch):
    import spaq.train.quality as Q

    pc = tmp_path / "pc"
    pc.mkdir()
    (pc / "ratings.csv").write_text("trial,condition,ref,deg,mean\nx_anech,FOA,x_anech_ref_binau.wav,"
                                    "x_anech_foa_binau.wav,50\n")
    for f in ("x_anech_ref_binau.wav", "x_anech_foa_binau.wav"):
        (pc / f).write_bytes(b"")
    mushra = tmp_path / "mushra"
    mushra.mkdir()
    monkeypatch.setattr(Q, "mushra_table", lambda root, ratings: None)  # the ratings themselves are not the point

    def no_work(*a, **k):
        raise AssertionError("feature computation started")

    for f in ("mushra_features", "_synthetic_records", "param_coding_features", "param_coding_ambisonic_features"):
        monkeypatch.setattr(Q, f, no_work)
    recipe = _quality_recipe(tmp_path, mushra__path=str(mushra), param_coding__path=str(pc),
                             param_coding__ambisonics=True)
    assert main(["train", "quality", str(recipe), "-o", str(tmp_path / "q.json")]) == 2
    assert "ambisonic spatial-codings items missing: x_anech_ref_amb.wav" in _err_line(capsys)
    assert not (tmp_path / "q.json").exists()


# --------------------------------------------------------------------------- 4. study embeddings: before the work


@pytest.fixture
def study_pairs(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        r = 0.1 * rng.standard_normal((8000, 2))
        sf.write(tmp_path / f"r{i}.wav", r, 16000)
        sf.write(tmp_path / f"d{i}.wav", r + 0.01 * (i + 1) * rng.standard_normal(r.shape), 16000)
    good = tmp_path / "pairs.csv"
    good.write_text("ref,deg\n" + "".join(f"r{i}.wav,d{i}.wav\n" for i in range(3)))
    missing = tmp_path / "missing.csv"
    missing.write_text("ref,deg\nr0.wav,d0.wav\nr1.wav,nope.wav\nr2.wav,d2.wav\n")
    return good, missing


@pytest.fixture
def no_study_work(monkeypatch):
    import spaq.api
    import spaq.metrics.encoders as E

    def no_work(*a, **k):
        raise AssertionError("study work started")

    monkeypatch.setattr(E, "load_encoder", no_work)
    monkeypatch.setattr(spaq.api, "score", no_work)


@pytest.mark.parametrize("case, extra, msg", [
    ("metric", ["-m", "bogus", "-m", "si_sdr"], "study embeddings: unknown metric 'bogus'; available: "),
    ("metric", ["-m", "si_sdr,si_sdr"], "study embeddings: metric listed twice: si_sdr, si_sdr"),
    ("missing", ["-m", "si_sdr"], "study embeddings: pair 1: degraded file "),
    ("n_boot", ["-m", "si_sdr", "--n-boot", "-5"], "study embeddings: --n-boot must be a whole number >= 0, got -5"),
    ("seed", ["-m", "si_sdr", "--seed", "-1"], "study embeddings: --seed must be a whole number >= 0, got -1"),
])
def test_study_bad_arguments_are_one_line_errors_before_the_work(tmp_path, capsys, study_pairs, no_study_work,
                                                                  case, extra, msg):
    good, missing = study_pairs
    out = tmp_path / "study"
    corpus = missing if case == "missing" else good
    assert main(["study", "embeddings", str(corpus), "--out", str(out), "-e", "bast", *extra]) == 2
    err = _err_line(capsys)
    assert msg in err
    if case == "missing":
        assert str(tmp_path / "nope.wav") in err and err.endswith("not found")
    assert not out.exists()


def test_study_out_in_the_way_is_refused_before_the_work(tmp_path, capsys, study_pairs, no_study_work):
    good, _ = study_pairs
    blocker = tmp_path / "results"
    blocker.write_text("keep me")
    assert main(["study", "embeddings", str(good), "--out", str(blocker), "-m", "si_sdr"]) == 2
    err = _err_line(capsys)
    assert f"cannot write study folder {blocker}: it is a file, not a folder" in err
    assert blocker.read_text() == "keep me"
    assert main(["study", "embeddings", str(good), "--out", str(blocker / "sub"), "-m", "si_sdr"]) == 2
    assert f"{blocker} is a file, not a folder" in _err_line(capsys)
    # the library checks the same before the work
    from spaq.study.embeddings import run_study

    with pytest.raises(SpaqError, match="it is a file, not a folder"):
        run_study(good, blocker, encoders=["bast"], metrics=["si_sdr"])
    with pytest.raises(SpaqError, match="--n-boot must be a whole number >= 0, got -1"):
        run_study(good, tmp_path / "s", encoders=["bast"], metrics=["si_sdr"], n_boot=-1)
    assert blocker.read_text() == "keep me" and not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- 5. metrics --json: availability


def test_metrics_json_has_available_and_reason(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SPAQ_CACHE_DIR", str(tmp_path / "empty-cache"))
    monkeypatch.delenv("SPAQ_QASTANET_CHECKPOINT", raising=False)
    monkeypatch.setitem(sys.modules, "pystoi", None)  # as if the classic extra's pystoi were not installed
    assert main(["metrics", "--json"]) == 0
    ms = json.loads(capsys.readouterr().out)
    assert all(set(v) <= {"description", "available", "reason"} and isinstance(v["available"], bool)
               and v["description"] for v in ms.values())
    assert all(("reason" in v) == (not v["available"]) for v in ms.values())
    assert ms["si_sdr"]["available"] is True and "reason" not in ms["si_sdr"]
    assert ms["cues"] == {"description": ms["cues"]["description"], "available": True}
    stoi = ms["stoi"]
    assert stoi["available"] is False and ms["estoi"]["available"] is False
    assert stoi["reason"] == ("stoi needs the 'pystoi' package: pip install 'spaq[classic]' (from a clone: "
                              "pip install -e '.[classic]')")
    assert "unavailable" not in stoi["description"]  # the reason is its own field
    assert ms["qastanet"]["available"] is False and "spaq weights fetch qastanet" in ms["qastanet"]["reason"]
    # the same line as `spaq score -m stoi` gives for it
    import spaq.api

    spaq.api.clear_metric_cache()
    rng = np.random.default_rng(1)
    x = 0.1 * rng.standard_normal((16000, 2))
    sf.write(tmp_path / "r.wav", x, 16000)
    sf.write(tmp_path / "d.wav", 0.9 * x, 16000)
    assert main(["score", str(tmp_path / "r.wav"), str(tmp_path / "d.wav"), "-m", "stoi,si_sdr", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"]["stoi"] == stoi["reason"]
    # the table view says the same
    assert main(["metrics"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("stoi "))
    assert line.split()[1] == "no" and line.endswith(f"(unavailable: {stoi['reason']})")
