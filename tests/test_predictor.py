"""The reference-free predictor (``predictor`` metric, ``spaq.predict``, ``spaq predict``):
real values from the shipped checkpoint on corpus-engine scenes, bad input, batch without a
reference column, the training recipe's pieces."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import spaq
from spaq.cli import main
from spaq.errors import SpaqError

from conftest import binaural_noise, plane_wave_scene

REPO = Path(__file__).resolve().parents[1]
FS = 48000


@pytest.fixture(scope="module")
def noise_ladder():
    """One speech binaural scene of the corpus engine (held-out seed), clean and with noise at 3
    severities."""
    from spaq.train.quality import sweep

    return sweep("noise", "binaural", "speech", [0.3, 0.6, 1.0], 9900, 7, duration_s=1.5, voices=["it"])


def test_noise_ladder_is_monotone_and_classes_span_the_bands(noise_ladder):
    ref, degs = noise_ladder
    out = spaq.predict(np.stack([ref] + degs), sample_rate=FS)
    s = [o["score"] for o in out]
    assert s[0] > 70 and out[0]["class"] == "high", out[0]  # clean speech
    assert s[0] > s[1] > s[3] and s[0] > s[2] > s[3], s  # more noise, lower score
    assert out[-1]["class"] == "low" and s[0] - s[-1] > 50, s
    for o in out:
        assert o["format"] == "binaural" and abs(sum(o["probabilities"].values()) - 1) < 1e-9
        # the listener-calibrated reading is the checkpoint's linear map of the score
        assert o["mushra_calibrated"] >= 0 and o["mushra_calibrated"] <= 100


def test_dual_mono_is_scored_as_mono(noise_ladder, tmp_path):
    """Two channels carrying one signal (the difference >= 60 dB below the sum) are scored as the
    mono signal they are, with a warning: read as binaural, every diotic file scored 96-99."""
    from spaq.metrics.predictor import dual_mono

    ref, _ = noise_ladder
    m = ref[:1]
    a, b = spaq.predict(np.concatenate([m, m]), sample_rate=FS), spaq.predict(m, sample_rate=FS)
    assert a["format"] == "mono" and a["score"] == b["score"] and "dual mono" in a["warnings"][0], a
    # (0.01 / 2.01)^2: 46 dB below the sum is two signals; (1e-4 / 2)^2, 86 dB below, is one
    assert spaq.predict(np.stack([m[0], m[0] * 1.01]), sample_rate=FS)["format"] == "binaural"
    assert dual_mono(torch.from_numpy(np.stack([m[0], m[0] * (1 + 1e-4)])[None]))
    # the threshold itself: b = (1 + e) a puts the difference (e / (2 + e))^2 below the sum, -60 dB at e = 0.002002
    assert dual_mono(torch.from_numpy(np.stack([m[0], m[0] * 1.0019])[None]))
    assert not dual_mono(torch.from_numpy(np.stack([m[0], m[0] * 1.0021])[None]))
    assert not dual_mono(torch.zeros(1, 2, 100))  # silence is no signal (the silent answer applies)
    p = tmp_path / "dual.wav"
    sf.write(p, np.concatenate([m, m]).T.astype(np.float32), FS, subtype="FLOAT")
    r = spaq.score(None, str(p), metrics=["predictor"]).results["predictor"]
    assert r.values["detected_format"] == "mono" and abs(float(r.score) - b["score"]) < 1e-3


def test_lowpass_and_clipping_cost_score():
    """Scenes of the held-out seed and voice (not in the training recipe)."""
    from spaq.train.quality import sweep

    for fam in ("lowpass", "clipping"):
        ref, degs = sweep(fam, "binaural", "speech", [1.0], 9900, 11, duration_s=1.5, voices=["it"])
        a, b = spaq.predict(np.stack([ref, degs[0]]), sample_rate=FS)
        assert a["score"] > b["score"] + 20, (fam, a, b)


def test_batched_equals_loop_and_formats():
    x = np.stack([binaural_noise(1.0, FS, seed=s) for s in (1, 2)])
    both = spaq.predict(x, sample_rate=FS)
    for i in range(2):
        one = spaq.predict(x[i], sample_rate=FS)
        assert abs(one["score"] - both[i]["score"]) < 1e-4
    foa = spaq.predict(plane_wave_scene(1, 1.0, FS), sample_rate=FS)
    hoa = spaq.predict(plane_wave_scene(3, 1.0, FS), sample_rate=FS)
    mono = spaq.predict(x[0, :1], sample_rate=FS)
    assert (foa["format"], hoa["format"], mono["format"]) == ("foa", "hoa", "mono")
    assert all(0 <= r["score"] <= 100 for r in (foa, hoa, mono))
    # each format's own network reads added noise as an impairment: white noise at the signal's level scores far
    # below the clean input (measured: FOA 97 -> 11, 3OA 100 -> 10, mono 70 -> 14; 40 points is a wide margin)
    rng = np.random.default_rng(5)
    for clean, fmt in ((plane_wave_scene(1, 1.0, FS), "foa"), (plane_wave_scene(3, 1.0, FS), "hoa"), (x[0, :1], "mono")):
        noisy = clean + np.sqrt(np.mean(clean[0] ** 2)) * rng.standard_normal(clean.shape)
        a, b = spaq.predict(clean, sample_rate=FS), spaq.predict(noisy, sample_rate=FS)
        assert a["format"] == b["format"] == fmt and a["score"] - b["score"] > 40.0, (fmt, a["score"], b["score"])


def test_silence_has_a_defined_answer():
    r = spaq.predict(np.zeros((2, FS)), sample_rate=FS)
    assert r["score"] == 0.0 and r["class"] == "low" and r["probabilities"]["low"] == 1.0
    assert any("silent" in w for w in r["warnings"])
    quiet = spaq.predict(np.full((2, FS), 1e-6), sample_rate=FS)  # -120 dBFS: below the metric's floor
    assert quiet["score"] == 0.0 and quiet["class"] == "low" and quiet["warnings"]
    x = np.stack([np.zeros((2, FS)), binaural_noise(1.0, FS, seed=3)])
    mixed = spaq.predict(x, sample_rate=FS)
    assert mixed[0]["score"] == 0.0 and mixed[1]["score"] == spaq.predict(x[1], sample_rate=FS)["score"]
    # silence still has a format (the one a sounding signal of that shape gets), and a channel count
    # that is no format is refused for silence as for sound
    assert [r["format"] for r in mixed] == ["binaural", "binaural"]
    assert spaq.predict(np.zeros((4, FS)), sample_rate=FS)["format"] == "foa"
    assert spaq.predict(np.zeros((6, FS)), sample_rate=FS, fmt="5.1")["format"] == "binaural"
    with pytest.raises(SpaqError, match="3 channels"):
        spaq.predict(np.zeros((3, FS)), sample_rate=FS)
    with pytest.raises(SpaqError, match="expects 4 channels"):
        spaq.predict(np.zeros((2, FS)), sample_rate=FS, fmt="foa")


@pytest.mark.parametrize("bad,match", [
    (np.zeros((2, 0)), "empty"),
    (np.full((2, FS), np.nan), "NaN"),
    (np.ones((2, 1000)) * 0.1, "^the signal is too short: 20.8 ms"),  # a subject, not "is too short"
    (np.random.default_rng(0).standard_normal((3, FS)) * 0.1, "3 channels"),
])
def test_bad_input_is_one_line(bad, match):
    with pytest.raises(SpaqError, match=match) as e:
        spaq.predict(bad, sample_rate=FS)
    assert "\n" not in str(e.value)


def test_score_reports_it_and_needs_no_reference(noise_ladder):
    ref, degs = noise_ladder
    rep = spaq.score(ref, degs[0], sample_rate=FS, metrics=["predictor", "quality"])
    direct = spaq.predict(degs[0], sample_rate=FS)["score"]
    assert abs(rep.results["predictor"].score - direct) < 1e-4
    alone = spaq.score(None, degs[0], sample_rate=FS, metrics=["predictor"])
    assert abs(alone.results["predictor"].score - direct) < 1e-4
    with pytest.raises(SpaqError, match="no reference"):
        spaq.score(None, degs[0], sample_rate=FS, metrics=["quality"])


def test_cli_json_and_errors(tmp_path, noise_ladder, capsys):
    ref, degs = noise_ladder
    a, b = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(a, ref.T.astype(np.float32), FS, subtype="FLOAT")
    sf.write(b, degs[-1].T.astype(np.float32), FS, subtype="FLOAT")
    assert main(["predict", str(a), str(b), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["file"] for r in rows] == [str(a), str(b)]
    assert rows[0]["score"] > rows[1]["score"] and rows[1]["class"] == "low"
    assert main(["predict", str(a)]) == 0  # the plain line carries the level it read too
    assert f"level {rows[0]['level_dbfs']:.1f} dBFS" in capsys.readouterr().out
    empty = tmp_path / "e.wav"
    sf.write(empty, np.zeros((0, 2), np.float32), FS)
    assert main(["predict", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("spaq: error:") and "\n" not in err and "e.wav" in err
    # several files: a bad one is reported on one line (an {file, error} entry with --json), the
    # others are still scored, and the exit status says something failed
    assert main(["predict", str(a), str(empty), str(b), "--json"]) == 2
    got = capsys.readouterr()
    rows2 = json.loads(got.out)
    assert [r["file"] for r in rows2] == [str(a), str(empty), str(b)] and "error" in rows2[1]
    assert rows2[0]["score"] == pytest.approx(rows[0]["score"]) and rows2[2]["score"] == pytest.approx(rows[1]["score"])
    assert got.err.strip().count("\n") == 0 and "1 of 3 files" in got.err
    assert main(["predict", str(a), str(b), "--format", "nosuch"]) == 2  # one error, not one per file
    err = capsys.readouterr().err.strip()
    assert err.count("spaq: error:") == 1 and "unknown format" in err


def test_batch_manifest_without_reference(tmp_path, noise_ladder):
    from spaq.batch import score_batch

    ref, degs = noise_ladder
    rows = []
    for i, x in enumerate([ref, degs[-1]]):
        p = tmp_path / f"d{i}.wav"
        sf.write(p, x.T.astype(np.float32), FS, subtype="FLOAT")
        rows.append({"id": f"x{i}", "deg": p.name})
    m = tmp_path / "m.csv"
    pd.DataFrame(rows).to_csv(m, index=False)
    df = score_batch(m, tmp_path / "o.csv", metrics=["predictor"], progress=False)
    assert list(df["status"]) == ["ok", "ok"]
    assert df["predictor"][0] > df["predictor"][1] and df["predictor.class_index"][1] == 0
    first = list(df["predictor"])
    # a silent file has the defined answer here too, and a metric that needs a reference is skipped
    # on these rows (the predictor still scores them) rather than failing every row
    sf.write(tmp_path / "d2.wav", np.zeros((FS, 2), np.float32), FS, subtype="FLOAT")
    pd.DataFrame(rows + [{"id": "x2", "deg": "d2.wav"}]).to_csv(m, index=False)
    df = score_batch(m, tmp_path / "o2.csv", metrics=["predictor", "cues"], progress=False)
    assert list(df["status"]) == ["ok", "ok", "ok"] and df["predictor"][2] == 0.0
    assert list(df["predictor"][:2]) == pytest.approx(first) and df["cues"].isna().all()
    assert set(df["cues.skipped"]) == {"no reference path in the manifest"}
    with pytest.raises(SpaqError, match="no reference paths, but cues needs one"):  # before any work
        score_batch(m, tmp_path / "o3.csv", metrics=["cues"], progress=False)
    assert not (tmp_path / "o3.csv").exists()


def test_predict_lists_mono_vectors_and_layouts():
    a, b = binaural_noise(1.0, FS, seed=4), binaural_noise(0.6, FS, seed=5)
    each = [spaq.predict(x, sample_rate=FS)["score"] for x in (a, b)]
    for batch in ([a, b], (torch.from_numpy(a), torch.from_numpy(b))):  # lengths differ: each on its own
        assert [r["score"] for r in spaq.predict(batch, sample_rate=FS)] == pytest.approx(each, abs=1e-4)
    assert spaq.predict(a[0], sample_rate=FS)["score"] == pytest.approx(spaq.predict(a[:1], sample_rate=FS)["score"])
    assert spaq.predict(a[0], sample_rate=FS)["format"] == "mono"
    with pytest.raises(SpaqError, match="^item 1: .*NaN"):
        spaq.predict([a, np.full((2, FS), np.nan)], sample_rate=FS)
    with pytest.raises(SpaqError, match="^x is an array: sample_rate is required"):
        spaq.predict(a)
    five = np.stack([binaural_noise(1.0, FS, seed=6)[0] * g for g in (1.0, 0.8, 0.6, 0.4, 0.2)])
    r = spaq.predict(five, sample_rate=FS, fmt="5.0")
    assert r["format"] == "binaural" and r["input_format"].startswith("5.0 loudspeakers")
    assert "rendered binaurally" in r["warnings"][0]


def test_a_given_reference_is_not_read_by_reference_free_metrics():
    x = binaural_noise(1.0, FS, seed=7)
    alone = spaq.score(None, x, sample_rate=FS, metrics=["predictor"]).results["predictor"].score
    rep = spaq.score(np.zeros_like(x), x, sample_rate=FS, metrics=["predictor"])  # a silent reference: no error
    assert rep.results["predictor"].score == pytest.approx(alone) and "needs no reference" in rep.warnings[0]


def test_checkpoint_holds_scalers_and_calibration():
    from spaq.models import checkpoint
    from spaq.weights import resolve

    w = resolve("predictor_v1", offline=True)
    assert w.source == "packaged" and w.verified
    model, meta = checkpoint.load(w.path, architecture="predictor")
    assert torch.all(model.std > 0) and model.mean.shape == (model.cfg.n_in,)
    cal = meta["train"]["calibration"]
    assert cal["applied"] and cal["b"] > 0
    assert meta["train"]["recipe"]["corpus"]["heads"] == ["default", "sonicom-1"]  # never the held-out head


def test_fit_is_deterministic_and_recipe_loads():
    from spaq.metrics.functional.predictor import FEATURE_NAMES
    from spaq.train.predictor import FitSection, PredictorTrainConfig, fit_predictor, predict_table

    tc = PredictorTrainConfig.from_yaml(REPO / "configs/train/predictor.yaml")
    assert tc.calibration.apply and "sonicom-2" not in tc.corpus.heads
    # full-band clean content: speech with its upper band, and the wide bright scenes beside the corpus
    assert tc.corpus.speech_upper_band_db == -18 and any("bright" in e.sources for e in tc.extra)
    assert all("sonicom-2" not in e.heads and e.seed not in (9900, 9901, 9902) for e in tc.extra)
    assert len({e.seed for e in tc.extra} | {tc.corpus.seed}) == len(tc.extra) + 1
    rng = np.random.default_rng(0)
    X = rng.standard_normal((60, len(FEATURE_NAMES)))
    df = pd.DataFrame(X, columns=list(FEATURE_NAMES))
    df["target"] = 100 / (1 + np.exp(-2 * X[:, 0]))  # a learnable target
    fit = FitSection(epochs=80)
    m1, _ = fit_predictor(df, fit, log=lambda m: None)
    m2, _ = fit_predictor(df, fit, log=lambda m: None)
    p1, p2 = predict_table(m1, df), predict_table(m2, df)
    assert np.array_equal(p1["raw"], p2["raw"])
    assert np.corrcoef(p1["raw"], df["target"])[0, 1] > 0.9
    with pytest.raises(SpaqError, match="unknown feature group"):
        PredictorTrainConfig.from_dict({"fit": {"groups": ["nope"]}})


def test_train_command_writes_a_loadable_checkpoint(tmp_path, capsys):
    """``spaq train predictor`` end to end on a tiny recipe (one family, format and source, no
    listener calibration): the teacher is the quality metric with the pinned parameters, the checkpoint loads."""
    import yaml

    from spaq.models import checkpoint

    cfg = {"seed": 3, "corpus": {"seed": 1, "duration_s": 0.6, "voices": ["en-us"], "heads": ["default"],
                                 "sources": ["harmonic"], "formats": ["binaural"], "mono": False,
                                 "families": ["lowpass"], "severities": [0.5, 1.0], "scenes": 2},
           "fit": {"epochs": 30}, "calibration": {"apply": False}}
    # an extra split beside the corpus (the shipped recipe's wide scenes are two of these)
    cfg["extra"] = [{**cfg["corpus"], "seed": 2, "sources": ["percussive"], "scenes": 1}]
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "p.pt"
    assert main(["train", "predictor", str(p), "--out", str(out), "--workdir", str(tmp_path / "w")]) == 0
    summary = json.loads(capsys.readouterr().out)
    model, meta = checkpoint.load(out, architecture="predictor")
    assert meta["train"]["n_train"] == 9  # (2 + 1 extra) scenes x (clean + 2 severities)
    assert "extra" in meta["train"]["data"]["network_and_scalers"]
    tables = [pd.read_csv(f) for f in sorted((tmp_path / "w").glob("predictor_train_*.csv"))]
    assert sorted(len(t) for t in tables) == [3, 6]
    for table in tables:
        clean = table[table["severity"] == 0]["target"]
        assert np.allclose(clean, 100.0, atol=1e-6) and (table[table["severity"] == 1.0]["target"] < 100).all()
    assert summary["calibration"]["applied"] is False and float(model.calib_b) == 1.0
    # the extra split's sweep ids are offset: the ranking term pairs rows of one sweep only
    from spaq.train.predictor import EXTRA_SWEEP_OFFSET, PredictorTrainConfig, training_rows

    tc = PredictorTrainConfig.from_yaml(p)
    rows = training_rows(tc, tc.fit, tmp_path / "w", log=lambda m: None)
    extra = rows["source"] == "percussive"
    assert extra.sum() == 3 and (rows.loc[extra, "sweep"] > EXTRA_SWEEP_OFFSET).all()
    assert (rows.loc[~extra, "sweep"] < EXTRA_SWEEP_OFFSET).all()
    with pytest.raises(SpaqError, match="unknown source type 'piano'"):
        PredictorTrainConfig.from_dict({"extra": [{"sources": ["piano"]}]})


def _bursts(seconds: float, seed: int) -> np.ndarray:
    """Speech-like test signal: 120 ms noise bursts with 80 ms gaps (sharp offsets), 48 kHz."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    gate = (np.arange(n) % int(0.2 * FS)) < int(0.12 * FS)
    return rng.standard_normal(n) * gate * 0.1


def _reverberate(x: np.ndarray, rt60: float, seed: int) -> np.ndarray:
    """``x`` plus an exponentially decaying noise tail of ``rt60`` s (direct-to-reverberant 0 dB)."""
    from scipy.signal import fftconvolve

    rng = np.random.default_rng(seed)
    t = np.arange(int(1.5 * rt60 * FS)) / FS
    h = rng.standard_normal(len(t)) * 10 ** (-3 * t / rt60)
    h *= 1 / np.sqrt(np.sum(h ** 2))
    h[0] += 1.0
    return fftconvolve(x, h)[: len(x)]


def test_temporal_features_follow_reverberation_and_noise():
    """The decay time grows with the RT60 and with a noise floor that stops decays, in every band
    group; the modulation ratio (2-10 Hz over 10-40 Hz) grows when a short room smooths the fast
    fluctuations (a long one smooths the 5 Hz bursts too: not monotone, which is why the decay
    time is the reverberation feature)."""
    from spaq.metrics.functional.predictor import FEATURE_NAMES, predictor_features

    x = _bursts(2.0, 0)
    items = [x] + [_reverberate(x, rt, 1) for rt in (0.3, 0.6, 1.2)]
    noisy = [x + np.random.default_rng(2).standard_normal(len(x)) * 0.1 * 10 ** (-snr / 20) for snr in (30, 10)]
    f = predictor_features(torch.from_numpy(np.stack(items + noisy))[:, None], FS, "mono").numpy()
    col = {n: i for i, n in enumerate(FEATURE_NAMES)}
    for g in ("low", "mid", "high"):
        d = f[:, col[f"decay_s_{g}"]]
        assert np.all(np.diff(d[:4]) > 0), (g, d)  # dry < 0.3 s < 0.6 s < 1.2 s
        assert d[0] < 0.1 and 0.2 < d[2] < 0.8, (g, d)  # dry offsets are fast; a 0.6 s room decays slower
        assert d[0] < d[4] < d[5], (g, d)  # a noise floor stops the decays: the lower the SNR, the longer
    m = f[:, col["modratio_db_mid"]]
    assert m[1] > m[0] + 1, m  # a short room smooths the fast (10-40 Hz) fluctuations first


def test_edge_features_follow_a_lowpass_cut():
    """White noise cut by the corpus engine's low-pass (4th-order Butterworth, zero-phase: 8th order
    in magnitude, 48 dB per octave). Its response falls 40 dB where (f / fc)^8 = 99, 0.83 octave
    above the cutoff ``fc``: ``bw40_oct`` is there (within a quarter octave, 1.5 of its 1/6-octave
    bands: a band's loudest bin sits at its lower edge on a falling spectrum, and the long-term
    spectrum of a 2 s noise), moves down one octave per octave of cutoff, and does not depend on the
    level; the steepest one-octave fall is the filter's (> 35 dB, clean noise < 10 dB) and starts
    within an octave of the cutoff."""
    from scipy.signal import butter, sosfiltfilt

    from spaq.metrics.functional.predictor import FEATURE_NAMES, predictor_features

    x = np.random.default_rng(3).standard_normal(2 * FS) * 0.1
    cuts = [8000.0, 4000.0, 2000.0, 1000.0]
    items = [x] + [sosfiltfilt(butter(4, fc, "lowpass", fs=FS, output="sos"), x) for fc in cuts]
    items.append(items[2] * 0.01)  # the 4 kHz cut 40 dB quieter
    f = predictor_features(torch.from_numpy(np.stack(items))[:, None], FS, "mono").numpy()
    col = {n: i for i, n in enumerate(FEATURE_NAMES)}
    bw, drop, at = (f[:, col[n]] for n in ("bw40_oct", "edge_drop_db", "edge_oct"))
    expect = np.log2(np.array(cuts) / 1000.0) + np.log2(99.0) / 8
    assert np.all(np.abs(bw[1:5] - expect) < 0.25), (bw, expect)
    assert bw[0] > bw[1] + 0.5, bw  # the clean noise reaches 0.45 fs (21.6 kHz, 4.4 octaves)
    for v in (bw, drop, at):  # level-free (float32 spectra: 1e-6 relative)
        assert abs(v[5] - v[2]) < 1e-4 * (1 + abs(v[2])), v
    assert np.all(drop[1:5] > 35) and drop[0] < 10, drop
    assert np.all(np.abs(at[1:5] - np.log2(np.array(cuts) / 1000.0)) < 1.0), at


def test_packaged_weights_read_the_edge_group_by_name_and_calibrate_on_the_logit():
    """The shipped network reads its columns by index, names and index agree (the edge group
    included); its listener reading is ``clamp(a + b * logit(score / 100), 0, 100)``."""
    from spaq.metrics.functional.predictor import FEATURE_NAMES
    from spaq.models import checkpoint
    from spaq.weights import resolve

    model, meta = checkpoint.load(resolve("predictor_v1", offline=True).path, architecture="predictor")
    assert {"bw40_oct", "edge_drop_db", "edge_oct"} <= set(model.cfg.feature_names)
    assert [FEATURE_NAMES[i] for i in model.cfg.feature_index] == list(model.cfg.feature_names)
    assert model.cfg.calib_scale == "logit" and meta["train"]["calibration"]["scale"] == "logit"
    rng = np.random.default_rng(1)
    X = torch.zeros(16, len(FEATURE_NAMES))
    X[:, model.index] = (model.mean + model.std * torch.tensor(rng.standard_normal((16, model.cfg.n_in)),
                                                               dtype=torch.float32))
    with torch.no_grad():
        o = model(X)
    s = o["score"].double().clamp(0.05, 99.95)
    want = (float(model.calib_a) + float(model.calib_b) * torch.log(s / (100 - s))).clamp(0, 100)
    assert torch.allclose(o["mushra"].double(), want, atol=1e-3)  # float32 logits of |z| < 8


def test_calibration_scale_defaults_to_linear_for_older_checkpoints(tmp_path):
    """A checkpoint written before ``calib_scale`` existed has no such key: it loads as linear and reads
    ``a + b * score``; the logit scale reads ``a + b * logit``; an unknown scale is refused."""
    from spaq.models import checkpoint
    from spaq.models.predictor import PredictorConfig, PredictorNet, calibration_input
    from spaq.train.predictor import PredictorTrainConfig, fit_calibration

    net = PredictorNet(PredictorConfig(n_features=4, hidden=[8]))
    net.set_calibration(10.0, 0.5)
    p = tmp_path / "old.pt"
    checkpoint.save(p, net)
    ck = torch.load(p, weights_only=False)
    del ck["config"]["calib_scale"]
    torch.save(ck, p)
    old, _ = checkpoint.load(p, architecture="predictor")
    score = torch.tensor([0.0, 20.0, 50.0, 99.0, 100.0])
    assert old.cfg.calib_scale == "linear"
    assert torch.allclose(old.calibrate(score), torch.tensor([10.0, 20.0, 35.0, 59.5, 60.0]))
    old.cfg.calib_scale = "logit"
    z = torch.tensor([np.log(0.05 / 99.95), np.log(20 / 80), 0.0, np.log(99), np.log(99.95 / 0.05)])
    assert torch.allclose(old.calibrate(score), (10 + 0.5 * z).float(), atol=1e-5)
    # the fit is least squares on that input: exact on ratings that are linear in the logit
    raw = np.array([5.0, 30.0, 50.0, 70.0, 95.0])
    y = 40.0 + 6.0 * calibration_input(raw, "logit")
    assert np.allclose(fit_calibration(raw, y, "logit"), (40.0, 6.0))
    with pytest.raises(ValueError, match="calib_scale"):
        PredictorConfig(calib_scale="log")
    with pytest.raises(SpaqError, match="calibration.scale"):
        PredictorTrainConfig.from_dict({"calibration": {"scale": "log"}})


def test_split_cache_key_follows_the_split_and_the_feature_names(monkeypatch, tmp_path):
    """A cached table is reused only for the same split and the same feature names: a feature added
    later gets a new table (an old one lacks its column) instead of a KeyError at fitting time."""
    import spaq.metrics.functional.predictor as fp
    from spaq.train.predictor import CorpusSplit, split_cache_path

    base = split_cache_path(CorpusSplit(), tmp_path / "t.csv")
    assert base == split_cache_path(CorpusSplit(), tmp_path / "t.csv") and base.parent == tmp_path
    assert base.name.startswith("t_") and base.suffix == ".csv"
    assert split_cache_path(CorpusSplit(seed=1), tmp_path / "t.csv") != base
    monkeypatch.setattr(fp, "FEATURE_NAMES", fp.FEATURE_NAMES + ("a_new_feature",))
    assert split_cache_path(CorpusSplit(), tmp_path / "t.csv") != base
    monkeypatch.undo()
    # the teacher's metric version (its ambisonics decoder) and the corpus engine's rendering version
    import spaq.data
    from spaq.metrics.quality import Quality

    monkeypatch.setattr(spaq.data, "ENGINE_VERSION", spaq.data.ENGINE_VERSION + 1)
    assert split_cache_path(CorpusSplit(), tmp_path / "t.csv") != base
    monkeypatch.undo()
    monkeypatch.setattr(Quality, "version", Quality.version + ".x")
    assert split_cache_path(CorpusSplit(), tmp_path / "t.csv") != base


def test_anchor_sources_draw_wider_scenes_and_keep_old_cache_keys(tmp_path):
    """``corpus.anchor_sources`` gives the anchors 1..N sources of their type; at its default (one
    source, as the sweeps) the scene draws and the cached tables' keys are those from before the option."""
    from spaq.train.predictor import CorpusSplit, split_cache_path
    from spaq.train.quality import sweep_draws

    one = [len(sweep_draws("noise", "binaural", "harmonic", 9200, i)[1]["sources"]) for i in range(1, 13)]
    many = [len(sweep_draws("noise", "binaural", "harmonic", 9200, i, n_sources=4)[1]["sources"]) for i in range(1, 13)]
    assert one == [1] * 12 and set(many) <= {1, 2, 3, 4} and max(many) >= 3
    assert sweep_draws("noise", "binaural", "harmonic", 9200, 5)[1] == sweep_draws(
        "noise", "binaural", "harmonic", 9200, 5, n_sources=1)[1]
    base = split_cache_path(CorpusSplit(), tmp_path / "t.csv")
    assert split_cache_path(CorpusSplit(anchor_sources=1), tmp_path / "t.csv") == base
    assert split_cache_path(CorpusSplit(anchor_sources=4), tmp_path / "t.csv") != base
    # the degraded sweeps' scenes likewise (``corpus.scene_sources``)
    assert split_cache_path(CorpusSplit(scene_sources=1), tmp_path / "t.csv") == base
    assert split_cache_path(CorpusSplit(scene_sources=4), tmp_path / "t.csv") not in (
        base, split_cache_path(CorpusSplit(anchor_sources=4), tmp_path / "t.csv"))
    # and full-band speech (``corpus.speech_upper_band_db``, None: espeak as it is)
    assert split_cache_path(CorpusSplit(speech_upper_band_db=None), tmp_path / "t.csv") == base
    assert split_cache_path(CorpusSplit(speech_upper_band_db=-18.0), tmp_path / "t.csv") != base


def test_make_split_draws_sweeps_and_anchors_with_their_source_counts(monkeypatch):
    """``corpus.scene_sources`` reaches the degraded sweeps and ``corpus.anchor_sources`` the
    anchors (each sweep's draws are asked for with its own count)."""
    import spaq.train.predictor as tp
    import spaq.train.quality as tq
    from spaq.errors import SpaqError

    asked = []

    def fake_sweep(fam, fmt, src, sevs, seed, idx, **kw):
        asked.append((fam, len(sevs), kw["n_sources"]))
        raise SpaqError("not rendered in this test")

    monkeypatch.setattr(tq, "render_sweep", fake_sweep)
    monkeypatch.setattr(tp, "_teacher", lambda: None)
    split = tp.CorpusSplit(families=["noise", "lowpass"], formats=["foa"], sources=["speech"], scenes=1,
                           anchor_scenes=1, anchor_sources=2, scene_sources=3)
    assert tp.make_split(split, log=lambda m: None) == []
    assert asked == [("noise", 5, 3), ("lowpass", 5, 3), ("noise", 0, 2), ("lowpass", 0, 2)]


def test_audible_rows_leave_out_drier_rooms_and_noise_in_noise():
    """Only degraded rows a listener hears without a reference are fitted: the clean rows stay;
    reverb sweeps that shorten the RT60 and noise added to a pink-noise source go."""
    from spaq.train.predictor import audible_rows, reverb_longer

    rows = []
    for sw in range(1, 9):
        for sev in (0.0, 0.5, 1.0):
            rows.append({"sweep": sw, "family": "reverb", "format": "foa", "source": "harmonic", "head": "",
                         "voice": "en-us", "severity": sev})
    for src in ("speech", "pink_noise"):
        for sev in (0.0, 1.0):
            rows.append({"sweep": 20, "family": "noise", "format": "foa", "source": src, "head": "", "voice": "en-us",
                         "severity": sev})
    df = pd.DataFrame(rows)
    longer = reverb_longer(df, seed=5)
    assert set(longer) == set(range(1, 9)) and 0 < sum(longer.values()) < 8  # the engine draws both directions
    keep = audible_rows(df, seed=5)
    for k, r in zip(keep, rows):
        if r["severity"] == 0:
            assert k
        elif r["family"] == "reverb":
            assert k == longer[r["sweep"]]
        else:
            assert k == (r["source"] == "speech")


def test_reverb_longer_replays_the_sweep_draws():
    """:func:`reverb_longer` predicts the direction that :func:`spaq.train.quality.sweep` renders:
    a lengthened room decays more slowly at full severity than its reference, a shortened one
    faster (speech: its offsets show the room; sustained harmonic notes do not)."""
    from spaq.metrics.functional.predictor import FEATURE_NAMES, predictor_features
    from spaq.train.predictor import reverb_longer
    from spaq.train.quality import sweep

    col = FEATURE_NAMES.index("decay_s_mid")
    df = pd.DataFrame([{"sweep": sw, "family": "reverb", "format": "mono", "source": "speech", "head": "",
                        "voice": "en-us", "severity": 1.0} for sw in (1, 2, 3, 4, 5, 6)])
    longer = reverb_longer(df, seed=11, duration_s=1.5)
    assert len(set(longer.values())) == 2, longer
    # a table read back with pandas' default NA handling has NaN for the empty head: same answer
    assert reverb_longer(df.assign(head=np.nan), seed=11, duration_s=1.5) == longer
    seen = set()
    for sw, lo in longer.items():
        if lo in seen:
            continue
        seen.add(lo)
        ref, (deg,) = sweep("reverb", "foa", "speech", [1.0], 11, sw, duration_s=1.5, voices=["en-us"])
        f = predictor_features(torch.from_numpy(np.stack([ref[:1], deg[:1]])), FS, "mono").numpy()[:, col]
        assert (f[1] > f[0]) == lo, (sw, lo, f)


def test_reverb_longer_family_always_lengthens_the_room():
    """The ``reverb_longer`` family renders the sweeps of ``reverb`` whose draw lengthens the RT60
    as they are, and lengthens those whose draw shortens it (same scene, same magnitudes)."""
    from spaq.metrics.functional.predictor import FEATURE_NAMES, predictor_features
    from spaq.train.predictor import reverb_longer
    from spaq.train.quality import sweep

    col = FEATURE_NAMES.index("decay_s_mid")
    df = pd.DataFrame([{"sweep": sw, "family": "reverb", "format": "mono", "source": "speech", "head": "",
                        "voice": "en-us", "severity": 1.0} for sw in (1, 2, 3, 4, 5, 6)])
    longer = reverb_longer(df, seed=11, duration_s=1.5)
    lo = next(sw for sw, v in longer.items() if v)
    sh = next(sw for sw, v in longer.items() if not v)
    ref, (a,) = sweep("reverb", "foa", "speech", [1.0], 11, lo, duration_s=1.5, voices=["en-us"])
    ref2, (b,) = sweep("reverb_longer", "foa", "speech", [1.0], 11, lo, duration_s=1.5, voices=["en-us"])
    np.testing.assert_array_equal(ref, ref2)
    np.testing.assert_array_equal(a, b)
    ref3, (c,) = sweep("reverb_longer", "foa", "speech", [1.0], 11, sh, duration_s=1.5, voices=["en-us"])
    f = predictor_features(torch.from_numpy(np.stack([ref3[:1], c[:1]])), FS, "mono").numpy()[:, col]
    assert f[1] > f[0], f


def test_logit_term_orders_the_saturated_tail():
    """Where the teacher is near 0 (0.05..2), the 0..1 MSE leaves the order to chance; the logit
    term (``logit_weight``) fits it: the predicted order of the tail follows the target's."""
    from scipy.stats import spearmanr

    from spaq.metrics.functional.predictor import FEATURE_NAMES
    from spaq.train.predictor import FitSection, fit_predictor, predict_table

    rng = np.random.default_rng(1)
    X = rng.standard_normal((200, len(FEATURE_NAMES)))
    df = pd.DataFrame(X, columns=list(FEATURE_NAMES))
    df["target"] = 100 / (1 + np.exp(3 * X[:, 0] + 4))  # most of the rows in the tail near 0..2
    tail = df["target"].to_numpy() < 2
    assert tail.sum() > 20
    m, _ = fit_predictor(df, FitSection(epochs=300, logit_weight=0.5), log=lambda m: None)
    p = predict_table(m, df)["raw"]
    assert spearmanr(p[tail], df["target"][tail])[0] > 0.9


def test_ensemble_averages_its_members_and_round_trips(tmp_path):
    """``fit.members = K``: one checkpoint whose logits are the mean of K networks fitted from
    seeds seed..seed+K-1, each equal to fitting it alone; saved and loaded unchanged."""
    from spaq.metrics.functional.predictor import FEATURE_NAMES
    from spaq.models import checkpoint
    from spaq.train.predictor import FitSection, fit_predictor

    rng = np.random.default_rng(3)
    X = rng.standard_normal((80, len(FEATURE_NAMES)))
    df = pd.DataFrame(X, columns=list(FEATURE_NAMES))
    df["target"] = 100 / (1 + np.exp(-2 * X[:, 0]))
    singles = [fit_predictor(df, FitSection(epochs=40, seed=5 + k), log=lambda m: None)[0] for k in range(3)]
    ens, _ = fit_predictor(df, FitSection(epochs=40, seed=5, members=3), log=lambda m: None)
    xt = torch.tensor(X, dtype=torch.float32)
    with torch.no_grad():
        outs = [m(xt) for m in singles]
        o = ens(xt)
        assert torch.allclose(o["score_logit"], torch.stack([u["score_logit"] for u in outs]).mean(0), atol=1e-5)
        assert torch.allclose(o["logits"], torch.stack([u["logits"] for u in outs]).mean(0), atol=1e-5)
        assert not torch.allclose(outs[0]["score_logit"], outs[1]["score_logit"])  # the members differ
    checkpoint.save(tmp_path / "e.pt", ens, train={"note": "test"})
    back, _ = checkpoint.load(tmp_path / "e.pt", architecture="predictor")
    assert back.cfg.members == 3
    with torch.no_grad():
        assert torch.equal(back(xt)["score"], o["score"])


def test_anchor_scenes_are_clean_rows_apart_from_the_sweeps():
    """``corpus.anchor_scenes``: extra clean scenes (severity 0, the teacher's identity score),
    family ``anchor``, sweep ids apart from the sweeps' (no ranking pairs with them), none for
    reverb, and in a room with ``anchor_room_probability`` 1 (not the sweep's anechoic scene)."""
    from spaq.metrics.functional.predictor import FEATURE_NAMES
    from spaq.train.predictor import ANCHOR_SWEEP_OFFSET, CorpusSplit, _severity_pairs, fit_rows, FitSection, make_split

    split = CorpusSplit(seed=1, duration_s=0.6, voices=["en-us"], heads=["default"], sources=["harmonic"],
                        formats=["binaural"], mono=False, families=["lowpass", "reverb"], severities=[1.0], scenes=1,
                        anchor_scenes=1, anchor_room_probability=1.0)
    df = pd.DataFrame(make_split(split, log=lambda m: None))
    anchors = df[df["family"] == "anchor"]
    assert len(anchors) == 1 and len(df) == 5  # 2 sweeps x (clean + 1 severity) + 1 anchor (none for reverb)
    a = anchors.iloc[0]
    assert a["severity"] == 0 and a["sweep"] == ANCHOR_SWEEP_OFFSET + 1 and abs(a["target"] - 100) < 1e-6
    clean = df[(df["family"] == "lowpass") & (df["severity"] == 0)].iloc[0]
    assert clean["sweep"] == 1  # the same scene index, rendered in a room for the anchor
    assert not np.allclose(a[list(FEATURE_NAMES)].astype(float), clean[list(FEATURE_NAMES)].astype(float))
    lo, hi = _severity_pairs(df)
    assert not set(lo.tolist() + hi.tolist()) & set(np.flatnonzero(df["family"].to_numpy() == "anchor").tolist())
    kept = fit_rows(df, split, FitSection(audible_only=True), log=lambda m: None)
    assert (kept["family"] == "anchor").sum() == 1


def test_active_level_counts_the_sound_not_the_pauses():
    """The active level of a tone with a silent half is the tone's level (A^2 / 2), whatever the
    pause; digital silence has none (-inf)."""
    from spaq.metrics.functional.predictor import active_level_db

    t = np.arange(FS) / FS
    tone = 0.1 * np.sin(2 * np.pi * 1000 * t)
    half = tone.copy()
    half[12 * 2048:] = 0.0  # on a frame boundary (frames of 2048 samples): 12 of 23 frames sound
    m = torch.from_numpy(np.stack([tone, half, np.zeros(FS)]))
    lv = active_level_db(m)
    want = 10 * np.log10(0.1 ** 2 / 2)  # -23.01 dBFS
    assert abs(float(lv[0]) - want) < 0.05 and abs(float(lv[1]) - want) < 0.05
    assert float(lv[2]) == -np.inf
    # whole-signal RMS would put the half-silent tone 2.9 dB lower
    assert abs(10 * np.log10(np.mean(half ** 2)) - (want + 10 * np.log10(12 * 2048 / FS))) < 0.05


def test_features_do_not_depend_on_the_input_gain():
    """With ``level_dbfs`` every input is scaled to that active level before its features: the same
    sound 30 dB down or 10 dB up gives the same features (binaural, FOA); at the given level (the
    default, the shipped weights) ``rms_db`` follows the gain. Silence stays finite and unscaled."""
    from spaq.metrics.functional.predictor import FEATURE_NAMES, predictor_features

    LEVEL = -26.0
    x = binaural_noise(1.0, seed=3)
    x[:, 30000:] = 0.0  # a pause: rms_db is then below the active level
    xb = torch.from_numpy(np.stack([x, x * 10 ** (-30 / 20), x * 10 ** (10 / 20)]))
    f = predictor_features(xb, FS, "binaural", level_dbfs=LEVEL)
    assert torch.allclose(f[1], f[0], rtol=1e-6, atol=1e-6) and torch.allclose(f[2], f[0], rtol=1e-6, atol=1e-6)
    i = FEATURE_NAMES.index("rms_db")
    assert LEVEL - 3.5 < float(f[0, i]) < LEVEL - 1.5  # 30000 of 48000 samples sound
    raw = predictor_features(xb, FS, "binaural")
    assert abs(float(raw[0, i] - raw[1, i]) - 30.0) < 0.01
    foa = plane_wave_scene(1, 1.0)
    fa = predictor_features(torch.from_numpy(np.stack([foa, 0.01 * foa])), FS, "foa", level_dbfs=LEVEL)
    assert torch.allclose(fa[1], fa[0], rtol=1e-6, atol=1e-6)
    z = predictor_features(torch.zeros(1, 1, FS, dtype=torch.float64), FS, "mono", level_dbfs=LEVEL)
    assert bool(torch.isfinite(z).all())


def test_checkpoint_says_whether_inputs_are_level_normalised(tmp_path):
    """``input_level_dbfs`` travels in the checkpoint: a checkpoint written before it (no such key)
    loads as None and scores at the input's own level (a gain moves its score); one with -26 dBFS
    gives the same score at any gain. The recipe sets it for every split (not per split), and the
    cached tables' key follows it (None keeps the key tables had before the option)."""
    import spaq.metrics.functional.predictor as fp
    from spaq.metrics.predictor import Predictor
    from spaq.models import checkpoint
    from spaq.models.predictor import PredictorConfig, PredictorNet
    from spaq.train.predictor import CorpusSplit, PredictorTrainConfig, split_cache_path

    torch.manual_seed(0)
    net = PredictorNet(PredictorConfig(n_features=fp.N_FEATURES, hidden=[8], input_level_dbfs=-26.0))
    net.set_scaler(torch.zeros(fp.N_FEATURES), torch.full((fp.N_FEATURES,), 10.0))
    new, old = tmp_path / "new.pt", tmp_path / "old.pt"
    checkpoint.save(new, net)
    ck = torch.load(new, weights_only=False)
    del ck["config"]["input_level_dbfs"]
    torch.save(ck, old)
    x = torch.from_numpy(np.stack([binaural_noise(1.0, seed=5), 0.1 * binaural_noise(1.0, seed=5)]))
    m_new = Predictor(checkpoint=new)
    assert m_new.training_levels() is None  # gain-invariant: no level warning
    o_new = m_new.predict_tensor(x)
    s_new = o_new["score"]
    assert abs(float(o_new["level_dbfs"][0] - o_new["level_dbfs"][1]) - 20.0) < 1e-3  # the input's own level
    m_old = Predictor(checkpoint=old)
    assert m_old.model.cfg.input_level_dbfs is None
    s_old = m_old.predict_tensor(x)["score"]
    assert abs(float(s_new[0] - s_new[1])) < 1e-6
    assert abs(float(s_old[0] - s_old[1])) > 1e-3
    base = split_cache_path(CorpusSplit(), tmp_path / "t.csv")
    assert split_cache_path(CorpusSplit(input_level_dbfs=None), tmp_path / "t.csv") == base
    lv = split_cache_path(CorpusSplit(input_level_dbfs=-26), tmp_path / "t.csv")
    assert lv != base and lv == split_cache_path(CorpusSplit(input_level_dbfs=-26.0), tmp_path / "t.csv")
    tc = PredictorTrainConfig.from_dict({"input_level_dbfs": -26, "extra": [{"seed": 5}]})
    assert tc.corpus.input_level_dbfs == -26.0 and tc.extra[0].input_level_dbfs == -26.0
    assert PredictorTrainConfig.from_dict({}).corpus.input_level_dbfs is None
    with pytest.raises(SpaqError, match="input_level_dbfs"):
        PredictorTrainConfig.from_dict({"corpus": {"input_level_dbfs": -20}})


def test_level_is_reported_and_off_training_levels_warn():
    """``level_dbfs`` is the mono mix's RMS level; the shipped weights (features at the input's own
    level) warn when it lies beyond mean +- 3 sd of their training rows' level (their scaler), and
    not at the level of the corpus; silence has no level."""
    from spaq.metrics.predictor import LEVEL_Z, Predictor

    m = Predictor()
    lo, hi = m.training_levels()
    i = list(m.model.cfg.feature_names).index("rms_db")
    assert abs(lo - (float(m.model.mean[i]) - LEVEL_Z * float(m.model.std[i]))) < 1e-9
    assert -50 < lo < -35 and -15 < hi < 0  # the corpus renders its clean items at -30..-20 dBFS
    x = binaural_noise(1.0, seed=1)
    want = 10 * np.log10(np.mean(x.mean(0).astype(np.float32) ** 2))
    r = spaq.predict(x, sample_rate=FS)
    assert abs(r["level_dbfs"] - want) < 0.01 and not any("level" in w for w in r["warnings"])
    q = spaq.predict(x * 10 ** (-40 / 20), sample_rate=FS)
    assert abs(q["level_dbfs"] - (want - 40)) < 0.01
    assert any("standard deviations from the weights' training levels" in w for w in q["warnings"])
    assert spaq.predict(np.zeros((2, FS)), sample_rate=FS)["level_dbfs"] is None


def test_teacher_is_quality_with_the_version_5_parameters_the_shipped_weights_learnt_from():
    """The recipe's teacher keeps the parameters predictor_v1 was trained on (quality 5), whatever
    ``quality``'s shipped parameters are now: same sha256 as the registry's quality_v5, and version
    5's rule (the two distortions summed: no ``combination`` key, read as 1)."""
    from spaq.train import predictor as tp
    from spaq.weights import REGISTRY

    t = tp._teacher()
    assert tp.TEACHER_PARAMS == "quality_v5" and t.sha256 == REGISTRY["quality_v5"].sha256
    assert t.params["version"] == 5 and "combination" not in t.params["mapping"]
    assert t.model.combination == 1.0


def test_score_band_is_the_band_the_score_falls_in_and_the_cli_names_a_disagreement(noise_ladder, tmp_path, capsys):
    """``score_band`` is the MUSHRA band of ``score`` (< 40 low, 40..70 medium, >= 70 high), whatever the class
    head says; silence is low on both; the plain output names the score's band only where it differs."""
    from spaq.cli import predict as cli_predict
    from spaq.models.predictor import BANDS, score_class

    assert BANDS == (40.0, 70.0)
    assert score_class([0.0, 39.99, 40.0, 69.99, 70.0, 100.0]).tolist() == [0, 0, 1, 1, 2, 2]
    ref, degs = noise_ladder
    out = spaq.predict(np.stack([ref] + degs), sample_rate=FS)
    for o in out:
        assert o["score_band"] == ("low" if o["score"] < 40 else "medium" if o["score"] < 70 else "high"), o
    assert out[0]["score_band"] == "high" and out[-1]["score_band"] == "low"
    assert spaq.predict(np.zeros((2, FS)), sample_rate=FS)["score_band"] == "low"
    a = tmp_path / "a.wav"
    sf.write(a, ref.T.astype(np.float32), FS, subtype="FLOAT")
    assert main(["predict", str(a), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["score_band"] == out[0]["score_band"]
    row = {"file": "x.wav", "score": 72.0, "class": "medium", "score_band": "high", "mushra_calibrated": 50.0,
           "probabilities": {"low": 0.1, "medium": 0.5, "high": 0.4}, "format": "binaural", "level_dbfs": -26.0,
           "warnings": []}
    cli_predict._print_rows([row])
    assert "medium (the score's band: high)" in capsys.readouterr().out
    cli_predict._print_rows([{**row, "class": "high"}])
    assert "the score's band" not in capsys.readouterr().out


def test_room_reference_is_the_same_scene_in_a_shorter_room():
    """:func:`room_reference`: ``None`` for an anechoic scene or a room no longer than the given RT60;
    for a longer room the same scene with a shorter decay (the predictor's own decay-time feature) and
    a larger share of its energy in the direct sound (the DRR raised)."""
    from spaq.metrics.functional.predictor import FEATURE_NAMES, predictor_features
    from spaq.train.quality import room_reference, sweep, sweep_draws

    kw = dict(duration_s=1.0, voices=["en-us"])
    assert room_reference("noise", "binaural", "speech", 11, 1, 0.4, **kw) is None  # anechoic
    rooms = [(i, float(sweep_draws("reverb", "binaural", "speech", 11, i, **kw)[1]["room"]["rt60_s"])) for i in range(1, 9)]
    i_long, rt_long = max(rooms, key=lambda r: r[1])
    assert rt_long > 0.8, rooms
    assert room_reference("reverb", "binaural", "speech", 11, i_long, rt_long, **kw) is None  # not longer
    ref, _ = sweep("reverb", "binaural", "speech", [], 11, i_long, **kw)
    short = room_reference("reverb", "binaural", "speech", 11, i_long, 0.3, **kw)
    assert short.shape == ref.shape
    col = FEATURE_NAMES.index("decay_s_mid")
    decay = [float(predictor_features(torch.from_numpy(x[None]), 48000, "binaural")[0, col]) for x in (ref, short)]
    # the RT60 is cut by rt_long / 0.3 > 2.6x, so the decay time should fall about that much (this scene: 0.31x);
    # 0.6 leaves room for the feature's estimate on 1 s of speech
    assert decay[1] < 0.6 * decay[0], decay
    on = int(np.argmax(np.abs(ref).max(axis=0) > 1e-3 * np.abs(ref).max()))  # the direct sound's first 0.5 ms
    share = [float(np.sum(x[:, on:on + 24] ** 2) / np.sum(x ** 2)) for x in (ref, short)]
    # the DRR rises 6 dB per halving, > 8 dB here: the direct sound's share of the energy grows by well over 2x
    # wherever the reverberant part holds much of it (this scene: about 3x)
    assert share[1] > 2 * share[0], share


def test_split_targets_judge_long_rooms_against_the_room_reference():
    """With ``room_reference_rt60_s`` the teacher scores a long room's clean scene below 100 for the
    chosen formats (it differs from the same room made shorter) and exactly 100 elsewhere; the
    degraded rows fall further (the lengthened room is further from the short one)."""
    import spaq.train.predictor as tp

    base = dict(families=["reverb"], formats=["binaural"], sources=["speech"], scenes=1, severities=[1.0],
                duration_s=1.0, voices=["en-us"], heads=["default"], mono=False)
    # sweep 1 of seed 11: find a seed whose room is longer than 0.25 s and lengthens it
    from spaq.train.quality import sweep_draws

    seed = next(s for s in range(11, 40)
                if sweep_draws("reverb", "binaural", "speech", s, 1, duration_s=1.0, voices=["en-us"])[1]["room"]["rt60_s"] > 0.5)
    own = tp.make_split(tp.CorpusSplit(seed=seed, **base), log=lambda m: None)
    ref = tp.make_split(tp.CorpusSplit(seed=seed, room_reference_rt60_s=0.25, **base), log=lambda m: None)
    other = tp.make_split(tp.CorpusSplit(seed=seed, room_reference_rt60_s=0.25, room_reference_formats=["hoa"], **base),
                          log=lambda m: None)
    t_own, t_ref, t_other = ([r["target"] for r in rows] for rows in (own, ref, other))
    assert t_own[0] == pytest.approx(100.0, abs=1e-6) and t_other == t_own
    assert t_ref[0] < 95.0
    assert [r["zcr"] for r in ref] == [r["zcr"] for r in own]  # the features are the signal's own


def test_recipe_sets_the_room_reference_on_every_split(tmp_path):
    from spaq.errors import SpaqError
    from spaq.train.predictor import CorpusSplit, PredictorTrainConfig, split_cache_path

    tc = PredictorTrainConfig.from_yaml(REPO / "configs/train/predictor.yaml")
    assert tc.room_reference["rt60_s"] > 0
    for sp in [tc.corpus, *tc.extra]:
        assert sp.room_reference_rt60_s == float(tc.room_reference["rt60_s"])
        assert sp.room_reference_formats == list(tc.room_reference["formats"])
    with pytest.raises(SpaqError, match="whole recipe"):
        PredictorTrainConfig(corpus=CorpusSplit(room_reference_rt60_s=0.4))
    with pytest.raises(SpaqError, match="rt60_s"):
        PredictorTrainConfig(room_reference={"formats": ["binaural"]})
    with pytest.raises(SpaqError, match="unknown"):
        CorpusSplit(room_reference_rt60_s=0.4, room_reference_formats=["stereo"])
    # no reference: the key of the tables made before the option; a reference: its own key
    base = split_cache_path(CorpusSplit(), tmp_path / "t.csv")
    assert split_cache_path(CorpusSplit(room_reference_formats=["hoa"]), tmp_path / "t.csv") == base
    k4 = split_cache_path(CorpusSplit(room_reference_rt60_s=0.4), tmp_path / "t.csv")
    assert k4 != base and k4 != split_cache_path(CorpusSplit(room_reference_rt60_s=0.5), tmp_path / "t.csv")


def _hoa_scene(order: int, seconds: float = 1.0, seed: int = 4) -> np.ndarray:
    """A noise source at azimuth 60 deg in ACN/SN3D of ``order``, with a second quieter one (C, T)."""
    from spaq.spatial.sh import sh_matrix

    rng = np.random.default_rng(seed)
    n = int(seconds * FS)
    s = rng.standard_normal((2, n)) * np.array([[0.1], [0.03]])
    y = sh_matrix(order, np.array([60.0, -120.0]), np.array([0.0, 20.0]))  # (C, 2 directions)
    return (y @ s).astype(np.float64)


def test_ambisonic_read_through_the_decode_is_the_binaural_reading_of_the_rendering():
    """``ambisonic_read="decode"``: third-order input reads every group but the format one-hot as the
    binaural features of its rendering (the shared decoder); first-order input keeps W's monaural
    groups and takes the rendering's spatial ones; the default reading is unchanged by the option."""
    from spaq.metrics.functional.predictor import FEATURE_GROUPS, FEATURE_NAMES, predictor_features
    from spaq.spatial.decoders import decode_binaural_effective

    cols = lambda g: [FEATURE_NAMES.index(n) for n in FEATURE_GROUPS[g]]  # noqa: E731
    fmt = cols("format")
    spatial = cols("spatial")
    rest = [i for i in range(len(FEATURE_NAMES)) if i not in fmt]
    for order, kind in ((3, "hoa"), (1, "foa")):
        x = torch.from_numpy(_hoa_scene(order))[None]
        dec = decode_binaural_effective(x, FS)[..., :x.shape[-1]]
        fb = predictor_features(dec, FS, "binaural")[0]
        fd = predictor_features(x, FS, kind, ambisonic_read="decode")[0]
        fi = predictor_features(x, FS, kind)[0]
        assert torch.equal(fi, predictor_features(x, FS, kind, ambisonic_read="intensity")[0])
        assert fd[FEATURE_NAMES.index(f"is_{kind}")] == 1 and fd[FEATURE_NAMES.index("is_binaural")] == 0
        assert torch.allclose(fd[spatial], fb[spatial], rtol=0, atol=1e-9)
        assert float(fi[FEATURE_NAMES.index("diffuseness_mean")]) > 0  # the intensity reading fills these slots
        assert float(fd[FEATURE_NAMES.index("diffuseness_mean")]) == 0
        mono = [i for i in rest if i not in spatial]
        if order == 3:
            assert torch.allclose(fd[mono], fb[mono], rtol=1e-6, atol=1e-6)
        else:
            assert torch.equal(fd[mono], fi[mono])  # W, as the recipe's mono rows
    with pytest.raises(ValueError, match="ambisonic_read"):
        predictor_features(x, FS, "foa", ambisonic_read="w")


def _routed(tmp_path):
    """A tiny routed checkpoint: two ensembles fitted on random rows (the second on other targets)."""
    from spaq.metrics.functional.predictor import FEATURE_NAMES
    from spaq.models import checkpoint
    from spaq.train.predictor import DECODE_PREFIX, FitSection, fit_predictor, route

    rng = np.random.default_rng(5)
    X = rng.standard_normal((90, len(FEATURE_NAMES)))
    df = pd.DataFrame(X, columns=list(FEATURE_NAMES))
    df["format"] = np.array(["binaural", "foa", "hoa", "mono"] * 23)[:90]
    df["target"] = 100 / (1 + np.exp(-2 * X[:, 0]))
    amb = df["format"].isin(["foa", "hoa"]).to_numpy()
    D = X.copy()
    D[amb] = rng.standard_normal((int(amb.sum()), len(FEATURE_NAMES)))
    for j, n in enumerate(FEATURE_NAMES):
        df[DECODE_PREFIX + n] = D[:, j]
    fit = FitSection(epochs=30, members=2)
    main_net, _ = fit_predictor(df, fit, log=lambda m: None)
    from spaq.train.predictor import decode_view

    amb_net, _ = fit_predictor(decode_view(df), FitSection(epochs=30, members=2, seed=11), log=lambda m: None,
                               ambisonic_read="decode")
    net = route(main_net, amb_net)
    net.cfg.calib_scale = "logit"
    net.set_calibration(40.0, 9.0)
    checkpoint.save(tmp_path / "routed.pt", net, train={"note": "test"})
    return df, main_net, amb_net, tmp_path / "routed.pt"


def test_routed_checkpoint_sends_ambisonic_rows_to_its_second_network(tmp_path):
    """A routed checkpoint (``ambisonic``): FOA / HOA rows and inputs go to the second network on the
    decode features, binaural and mono ones to the first on the default features; one calibration;
    saved and loaded unchanged; the metric computes each network's own reading."""
    from spaq.metrics.functional.predictor import predictor_features
    from spaq.metrics.predictor import Predictor
    from spaq.models import checkpoint
    from spaq.train.predictor import decode_view, predict_table

    df, main_net, amb_net, path = _routed(tmp_path)
    net, _ = checkpoint.load(path, architecture="predictor")
    assert net.network("binaural") is net and net.network("mono") is net
    assert net.network("foa") is net.ambisonic and net.network("hoa") is net.ambisonic
    assert net.ambisonic.cfg.ambisonic_read == "decode" and net.cfg.ambisonic_read == "intensity"
    assert net.ambisonic.cfg.calib_scale == "logit" and float(net.ambisonic.calib_b) == 9.0
    amb = df["format"].isin(["foa", "hoa"]).to_numpy()
    p = predict_table(net, df)
    assert np.allclose(p["raw"][~amb], predict_table(main_net, df)["raw"][~amb], atol=1e-5)
    assert np.allclose(p["raw"][amb], predict_table(amb_net, decode_view(df))["raw"][amb], atol=1e-5)
    assert not np.allclose(p["raw"][amb], predict_table(main_net, df)["raw"][amb], atol=1e-3)
    with pytest.raises(SpaqError, match="decode features"):
        predict_table(net, df[[c for c in df.columns if not c.startswith("decode.")]])
    m = Predictor(checkpoint=str(path))
    x = torch.from_numpy(_hoa_scene(1))[None]
    with torch.no_grad():
        want = net.ambisonic.double()(predictor_features(x, FS, "foa", ambisonic_read="decode"))["score"]
    assert torch.allclose(m.predict_tensor(x)["score"], want, rtol=0, atol=1e-9)
    b = torch.from_numpy(binaural_noise(1.0, seed=2)[None])
    with torch.no_grad():
        want = net.double()(predictor_features(b, FS, "binaural"))["score"]
    assert torch.allclose(m.predict_tensor(b)["score"], want, rtol=0, atol=1e-9)
    # the result says which network read it
    r = spaq.score(None, _hoa_scene(1), sample_rate=FS, metrics=["predictor"], checkpoint=str(path), align=False)
    prov = r.results["predictor"].provenance
    assert prov["network"] == "ambisonic" and prov["ambisonic_read"] == "decode" and prov["detected"] == "foa"
    r = spaq.score(None, binaural_noise(1.0, seed=2), sample_rate=FS, metrics=["predictor"], checkpoint=str(path),
                   align=False)
    assert r.results["predictor"].provenance["network"] == "main"


def test_recipe_routes_ambisonic_input_and_keys_its_tables(tmp_path):
    from spaq.train.predictor import CorpusSplit, PredictorTrainConfig, split_cache_path

    tc = PredictorTrainConfig.from_yaml(REPO / "configs/train/predictor.yaml")
    assert tc.ambisonic == {"read": "decode"}
    assert all(sp.decode_features for sp in [tc.corpus, *tc.extra])
    assert not PredictorTrainConfig().corpus.decode_features
    with pytest.raises(SpaqError, match="ambisonic takes read"):
        PredictorTrainConfig(ambisonic={"read": "intensity"})
    with pytest.raises(SpaqError, match="ambisonic takes read"):
        PredictorTrainConfig(ambisonic={"read": "decode", "members": 3})
    with pytest.raises(SpaqError, match="not per split"):
        PredictorTrainConfig(corpus=CorpusSplit(decode_features=True))
    base = split_cache_path(CorpusSplit(), tmp_path / "t.csv")
    assert split_cache_path(CorpusSplit(decode_features=True), tmp_path / "t.csv") != base


def test_train_command_writes_a_routed_checkpoint(tmp_path, capsys):
    """``spaq train predictor`` with ``ambisonic: {read: decode}`` end to end on a tiny recipe: its table holds
    both readings (the FOA rows' decode columns differ from their features, the binaural rows' are a copy),
    the checkpoint routes FOA input to a network fitted on the decode reading, and the binaural network is
    the one the same recipe without ``ambisonic`` writes."""
    import yaml

    from spaq.metrics.functional.predictor import FEATURE_NAMES
    from spaq.models import checkpoint

    base = {"seed": 3, "corpus": {"seed": 1, "duration_s": 0.6, "voices": ["en-us"], "heads": ["default"],
                                  "sources": ["harmonic"], "formats": ["binaural", "foa"], "mono": False,
                                  "families": ["lowpass"], "severities": [0.5, 1.0], "scenes": 1},
            "fit": {"epochs": 20}, "calibration": {"apply": False}}
    paths = {}
    for name, extra in (("single", {}), ("routed", {"ambisonic": {"read": "decode"}})):
        p = tmp_path / f"{name}.yaml"
        p.write_text(yaml.safe_dump({**base, **extra}))
        paths[name] = tmp_path / f"{name}.pt"
        assert main(["train", "predictor", str(p), "--out", str(paths[name]), "--workdir", str(tmp_path / name)]) == 0
        capsys.readouterr()
    table = pd.read_csv(next((tmp_path / "routed").glob("predictor_train_*.csv")))
    dec = ["decode." + n for n in FEATURE_NAMES]
    b, f = table[table["format"] == "binaural"], table[table["format"] == "foa"]
    assert np.array_equal(b[dec].to_numpy(), b[list(FEATURE_NAMES)].to_numpy())
    assert not np.allclose(f[dec].to_numpy(), f[list(FEATURE_NAMES)].to_numpy())
    single, _ = checkpoint.load(paths["single"], architecture="predictor")
    routed, meta = checkpoint.load(paths["routed"], architecture="predictor")
    assert single.ambisonic is None and routed.network("foa").cfg.ambisonic_read == "decode"
    assert meta["train"]["recipe"]["ambisonic"] == {"read": "decode"}
    main_state = {k: v for k, v in routed.state_dict().items() if not k.startswith("ambisonic.")}
    assert all(torch.equal(v, main_state[k]) for k, v in single.state_dict().items())


def test_dc_and_infrasound_are_silence_and_hum_is_flagged():
    """Power below 20 Hz is not sound: a DC offset or a 15 Hz tone gets silence's answer (score 0, class low),
    a 1 kHz tone at the same level does not; mostly-below-50-Hz content is flagged (forty-eighth session)."""
    import spaq
    from spaq.metrics.functional.predictor import audible_level_db

    t = np.arange(2 * 48000) / 48000
    x = torch.from_numpy(0.1 * np.random.default_rng(0).standard_normal((1, 2, 48000)))
    lv, hum = audible_level_db(x, 48000)
    # white noise of RMS 0.1: all of it is audible; 96000 samples estimate the power to sqrt(2 / 96000) = 0.5 %
    # (0.02 dB), and the band below 50 Hz holds 50 / 24000 = 0.2 % of it
    assert float(lv) == pytest.approx(-20.0, abs=0.1) and float(hum) < 0.01
    for f in (0.0, 15.0, 17.3):
        s = np.ones((2, 1)) * (0.3 + 0 * t if f == 0 else 0.2 * np.cos(2 * np.pi * f * t))[None]
        r = spaq.predict(s, sample_rate=48000)
        assert r["score"] == 0.0 and r["class"] == "low", f
        assert any("no power above 20 Hz" in w for w in r["warnings"]), f
    hum_tone = spaq.predict(0.2 * np.sin(2 * np.pi * 30 * t)[None], sample_rate=48000)
    assert any("below 50 Hz" in w for w in hum_tone["warnings"])
    tone = spaq.predict(0.2 * np.sin(2 * np.pi * 1000 * t)[None], sample_rate=48000)
    assert not any("no power above" in w or "below 50 Hz" in w for w in tone["warnings"])


def test_clips_too_short_for_the_temporal_features_are_refused(tmp_path, capsys):
    """Below 250 ms the modulation ratio cannot resolve 2-10 Hz (below 107 ms it reads no bin at all and a clip of a
    heavily degraded file read 99 "high"): refused in one line; from 250 ms scored. With --json a single bad file
    is still a JSON list entry (exit status 2)."""
    x = np.random.default_rng(8).standard_normal((2, FS)) * 0.05
    with pytest.raises(SpaqError, match=r"too short: 200 ms, at least 250 ms"):
        spaq.predict(x[:, : FS // 5], sample_rate=FS)
    assert 0 <= spaq.predict(x[:, : FS // 4], sample_rate=FS)["score"] <= 100
    assert main(["predict", "--json", str(tmp_path / "missing.wav")]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out == [{"file": str(tmp_path / "missing.wav"), "error": f"audio file not found: {tmp_path / 'missing.wav'}"}]


def test_warnings_name_their_file_when_several_are_scored(tmp_path, capsys):
    """Plain output: warnings go to stderr, so with several files each names its file (one file: as before)."""
    x = np.random.default_rng(9).standard_normal((FS // 2, 2)) * 0.05
    a, b = str(tmp_path / "a.wav"), str(tmp_path / "b.wav")
    sf.write(a, x, FS)
    sf.write(b, x, FS)
    assert main(["predict", a, b]) == 0
    err = capsys.readouterr().err
    assert f"warning ({a}): 500 ms of audio" in err and f"warning ({b}): 500 ms of audio" in err
    assert main(["predict", a]) == 0
    assert "  warning: 500 ms of audio" in capsys.readouterr().err


def test_predict_takes_one_signal_as_a_list_of_samples():
    """A plain list of samples (numpy scalars have a shape too, (), so they were taken for a list of signals:
    "item 0: the signal has shape ()") is one mono signal, scored as its array."""
    import spaq

    x = np.random.default_rng(0).standard_normal(24000) * 0.05
    assert spaq.predict(list(x), sample_rate=48000)["score"] == spaq.predict(x, sample_rate=48000)["score"]
    assert spaq.predict(x.tolist(), sample_rate=48000)["format"] == "mono"


def test_predict_says_what_the_reader_found():
    """``spaq.predict`` scores through the pair reader but printed only the predictor's own warnings: an N3D file
    read as SN3D, or a clipped one, was scored without a word. The reader's warnings now come first, about 'the
    signal' (no 'deg'), each once."""
    import spaq
    from spaq.spatial.ambisonics import encode
    from spaq.spatial.sh import convert_normalisation

    rng = np.random.default_rng(3)
    sn3d = encode(rng.standard_normal(48000) * 0.05, 30.0, 0.0, 1)
    ok = spaq.predict(sn3d, sample_rate=48000)
    assert not any("N3D" in w for w in ok["warnings"])
    n3d = spaq.predict(convert_normalisation(sn3d, "sn3d", "n3d"), sample_rate=48000)
    hit = [w for w in n3d["warnings"] if "may be N3D" in w]
    assert len(hit) == 1 and hit[0].startswith("the signal: ") and "deg" not in hit[0]
    loud = spaq.predict(rng.standard_normal((2, 48000)) * 2, sample_rate=48000)["warnings"]
    assert sum("beyond full scale" in w for w in loud) == 1 and len(loud) == len(set(loud))


@pytest.mark.parametrize("kind", ["binaural", "foa"])
def test_features_do_not_depend_on_the_thread_count(kind, noise_ladder):
    """With two threads allowed the spatial group runs beside the spectral ones (spaq.threads.in_background), and
    each part on one torch thread: the feature vector equals the one-thread one bit for bit."""
    from spaq.metrics.functional.predictor import predictor_features

    x = (torch.from_numpy(np.stack(noise_ladder[1][:2])).double() if kind == "binaural"
         else torch.from_numpy(plane_wave_scene(1, 1.5, seed=3)[None]).double())
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = predictor_features(x, FS, kind, level_dbfs=-26.0, ambisonic_read="decode")
        torch.set_num_threads(2)
        two = predictor_features(x, FS, kind, level_dbfs=-26.0, ambisonic_read="decode")
    finally:
        torch.set_num_threads(old)
    assert torch.equal(one, two) and bool(one.abs().sum() > 0)
