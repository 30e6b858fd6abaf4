"""``spaq study embeddings``: the encoder interface (spaq's BAST trunk, local TorchScript/ONNX
models, tiny random ones here: never a download), frame-wise cosine similarity, and the
correlation table against classic metrics."""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from spaq.errors import SpaqError
from spaq.study.embeddings import CSV_COLUMNS, frame_cosine, pair_similarity
from spaq.metrics.encoders import BastEncoder, Encoder, SqmEncoder, load_encoder

FS = 16000


class _Tiny(torch.nn.Module):
    """A random framing encoder: 25 ms frames, 10 ms hop, 8 filters (no bias: gain-equivariant), magnitude."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv1d(1, 8, 400, stride=160, bias=False)

    def forward(self, x):
        return torch.abs(self.conv(x[:, None])).transpose(1, 2)  # (B, frames, 8)


@pytest.fixture(scope="module")
def tiny_ts(tmp_path_factory):
    p = tmp_path_factory.mktemp("enc") / "tiny.pt"
    torch.jit.script(_Tiny()).save(str(p))
    return str(p)


def _noise(seconds, fs, seed):
    rng = np.random.default_rng(seed)
    s = rng.standard_normal(int(seconds * fs)) * 0.05
    return np.stack([s, np.roll(s, 4) * 0.8])


def test_frame_cosine_by_hand():
    a = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [5.0, 5.0]]])
    b = torch.tensor([[[0.0, 2.0], [2.0, 2.0]]])  # 2 frames: compared over the common 2
    assert float(frame_cosine(a, b)[0]) == pytest.approx((0.0 + 1.0) / 2)


def test_torchscript_preset_loads_local_file(tiny_ts):
    enc = load_encoder(f"wav2vec2={tiny_ts}")
    assert enc.name == "wav2vec2" and enc.sample_rate == 16000
    x = torch.from_numpy(_noise(1.0, FS, 0))
    y = enc(x)
    assert y.shape == (2, 1 + (FS - 400) // 160, 8)
    ref = x[None].numpy()
    same = pair_similarity(enc, ref, ref.copy())
    assert float(same["score"][0]) == pytest.approx(1.0, abs=1e-12)
    noisy = ref + np.random.default_rng(1).standard_normal(ref.shape) * 0.05
    sim = pair_similarity(enc, ref, noisy)
    assert float(sim["score"][0]) < 0.999 and set(sim) >= {"left", "right", "better_ear"}
    assert load_encoder(f"mine@22050={tiny_ts}").sample_rate == 22050


def test_onnx_loader(tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")  # torch's exporter needs it (the test extra installs it)
    p = tmp_path / "tiny.onnx"
    torch.onnx.export(_Tiny(), (torch.zeros(1, FS),), str(p), input_names=["x"],
                      dynamic_axes={"x": {0: "b", 1: "t"}}, dynamo=False)
    enc = load_encoder(f"openl3={p}")
    assert enc.sample_rate == 48000
    x = torch.from_numpy(_noise(0.5, FS, 2))
    ts = torch.jit.script(_Tiny())
    assert torch.allclose(enc(x), ts(x.float()).double(), atol=1e-5)


def test_bad_encoder_specs_are_one_line():
    for spec in ("nope", "nope=/x", "wav2vec2=/no/such/file.pt", "x@abc=/y"):
        with pytest.raises(SpaqError) as e:
            load_encoder(spec)
        assert "\n" not in str(e.value)


def test_bast_trunk_embeds_windows():
    enc = BastEncoder()
    assert enc.sample_rate == 32000
    x = torch.from_numpy(_noise(1.0, 32000, 3))
    y = enc(x)
    assert y.shape == (2, (1 + 32000 // 320) // 48, enc.model.cfg.dim)
    assert float(frame_cosine(y, y)[0]) == pytest.approx(1.0)
    with pytest.raises(SpaqError, match="too short"):
        enc(x[:, :3200])


def test_sqm_encoder_embeds_the_binaural_image():
    """The sqm encoder takes both ears: a pair that keeps the image (6 dB quieter) is more similar
    than one with the ears swapped (the mirror image), identity gives 1, mono input is fed to both
    ears, and a mono-shaped tensor is a one-line error."""
    enc = load_encoder("sqm")
    assert isinstance(enc, SqmEncoder) and enc.binaural and enc.sample_rate == 48000
    x = _noise(1.0, 48000, 5)[None]  # (1, 2, T): right ear delayed 4 samples and 2 dB down
    same = float(pair_similarity(enc, x, x)["score"][0])
    quieter = float(pair_similarity(enc, x, 0.5 * x)["score"][0])
    mirror = float(pair_similarity(enc, x, x[:, ::-1].copy())["score"][0])
    assert same == pytest.approx(1.0, abs=1e-9)
    assert quieter > 0.99 and mirror < 0.9
    y = enc(torch.from_numpy(x))
    assert y.shape == (1, 48000 // enc.model.cfg.frame_len, 16)
    mono = float(pair_similarity(enc, x[:, :1], x[:, :1])["score"][0])
    assert mono == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(SpaqError, match="binaural"):
        enc(torch.from_numpy(x[:, 0]))


def test_study_writes_correlations(tmp_path, tiny_ts):
    rows = []
    for i in range(8):
        ref = _noise(1.0, FS, 10 + i)
        fam = "noise" if i % 2 == 0 else "gain"
        sev = 1 + i // 2
        rng = np.random.default_rng(20 + i)
        deg = ref + 0.01 * sev * rng.standard_normal(ref.shape) if fam == "noise" else ref * (1 - 0.15 * sev)
        sf.write(tmp_path / f"r{i}.wav", ref.T, FS, subtype="FLOAT")
        sf.write(tmp_path / f"d{i}.wav", deg.T, FS, subtype="FLOAT")
        rows.append({"id": f"p{i}", "ref": f"r{i}.wav", "deg": f"d{i}.wav", "family": fam})
    man = tmp_path / "pairs.csv"
    pd.DataFrame(rows).to_csv(man, index=False)
    out = tmp_path / "study"
    from spaq.cli import main

    rc = main(["study", "embeddings", str(man), "--out", str(out), "-e", f"tiny@16000={tiny_ts}",
               "-m", "si_sdr", "-m", "loudness", "--n-boot", "200"])
    assert rc == 0
    corr = pd.read_csv(out / "correlations.csv")
    assert list(corr.columns) == CSV_COLUMNS
    assert set(corr["family"]) == {"all", "noise", "gain"} and set(corr["y"]) == {"si_sdr", "loudness"}
    pairs = pd.read_csv(out / "pairs.csv")
    assert len(pairs) == 8 and pairs["emb.tiny"].between(-1, 1).all()
    # a gain change scales every embedding (no bias): cosine 1 up to float32 rounding
    g = pairs[pairs["family"] == "gain"]
    assert np.allclose(g["emb.tiny"], 1.0, atol=1e-6)
    from scipy.stats import pearsonr, spearmanr

    row = corr[(corr["y"] == "si_sdr") & (corr["family"] == "noise")].iloc[0]
    nz = pairs[pairs["family"] == "noise"]
    assert row["n"] == 4
    assert row["pearson"] == pytest.approx(pearsonr(nz["emb.tiny"], nz["si_sdr"])[0], abs=1e-9)
    assert row["spearman"] == pytest.approx(spearmanr(nz["emb.tiny"], nz["si_sdr"])[0], abs=1e-9)
    assert row["spearman"] == pytest.approx(1.0)  # more noise: lower SI-SDR and lower cosine
    allrow = corr[(corr["y"] == "loudness") & (corr["family"] == "all")].iloc[0]
    assert allrow["n"] == 8 and allrow["pearson_lo"] <= allrow["pearson"] <= allrow["pearson_hi"]
    assert (out / "heatmap.png").stat().st_size > 1000
    rep = (out / "report.md").read_text()
    assert "tiny" in rep and "| emb.tiny | si_sdr | noise | 4 |" in rep


def test_encoder_interface_checks_shapes():
    class Bad(Encoder):
        name = "bad"

        def embed(self, x):
            return torch.zeros(1, 2, 3, 4)

    with pytest.raises(SpaqError, match="not \\(batch, frames, dim\\)"):
        Bad()(torch.zeros(2, 100))
    with pytest.raises(SpaqError, match="mono waveforms"):
        Bad()(torch.zeros(2, 2, 100))


@pytest.mark.parametrize("cmd", [["study"], ["study", "embeddings"]])
def test_help_without_type_placeholders(capsys, cmd):
    from spaq.cli import main

    assert main([*cmd, "-h"]) == 0
    out = capsys.readouterr().out
    assert out.count("Usage: spaq " + " ".join(cmd)) == 1
    for junk in ("<bool>", "<str>", "<int>", "<float>", "<path>", "<list", "{"):
        assert junk not in out, (junk, out)


class _Counting(Encoder):
    """Frames of 10 ms RMS and zero-crossing share; counts its calls (one per embedded view batch)."""

    name = "count"
    sample_rate = FS

    def __init__(self):
        self.calls = 0

    def embed(self, x):
        self.calls += 1
        f = x[:, : x.shape[1] // 160 * 160].reshape(x.shape[0], -1, 160)
        return torch.stack([f.pow(2).mean(-1).sqrt(), (f[..., 1:] * f[..., :-1] < 0).float().mean(-1) + 0.1], -1)


def _write_pairs(tmp_path, n=6, diotic=False, shared_ref=False):
    rows = []
    for i in range(n):
        ref = _noise(1.0, FS, 0 if shared_ref else 30 + i)
        if diotic:
            ref = np.stack([ref[0], ref[0]])
        deg = ref + 0.01 * (1 + i) * np.random.default_rng(40 + i).standard_normal(ref.shape[-1])
        rname = "r.wav" if shared_ref else f"r{i}.wav"
        sf.write(tmp_path / rname, ref.T, FS, subtype="FLOAT")
        sf.write(tmp_path / f"d{i}.wav", deg.T, FS, subtype="FLOAT")
        rows.append({"id": f"p{i}", "ref": rname, "deg": f"d{i}.wav", "family": "noise", "severity": (1 + i) / n,
                     "mushra": 100 - 10 * i})
    man = tmp_path / "pairs.csv"
    pd.DataFrame(rows).to_csv(man, index=False)
    return man


def test_study_severity_listening_and_resume(tmp_path):
    from spaq.study.embeddings import run_study

    man = _write_pairs(tmp_path)
    enc = _Counting()
    res = run_study(man, tmp_path / "out", encoders=[enc], metrics=["si_sdr"], n_boot=100)
    pairs, corr = res["pairs"], res["correlations"]
    assert list(pairs["listening"]) == [100 - 10 * i for i in range(6)]
    assert set(corr["y"]) == {"si_sdr", "severity", "listening"}
    # each metric against the targets too; more noise: lower SI-SDR, lower listening score
    row = corr[(corr["x"] == "si_sdr") & (corr["y"] == "listening") & (corr["family"] == "all")].iloc[0]
    assert row["spearman"] == pytest.approx(1.0)
    assert corr[(corr["x"] == "si_sdr") & (corr["y"] == "severity")]["spearman"].iloc[0] == pytest.approx(-1.0)
    assert (pairs["cpu_s.emb.count"] >= 0).all() and (pairs["cpu_s.metrics"] > 0).all()
    assert "CPU time per pair" in (tmp_path / "out" / "report.md").read_text()
    assert (tmp_path / "out" / "scatter.png").stat().st_size > 1000
    calls = enc.calls
    # resume: the earlier values are reused, only the new encoder runs
    enc2 = _Counting()
    enc2.name = "count2"
    again = run_study(man, tmp_path / "out", encoders=[enc, enc2], metrics=["si_sdr"], n_boot=100, resume=True)
    assert enc.calls == calls and enc2.calls == calls
    assert np.array_equal(again["pairs"]["emb.count"], pairs["emb.count"])
    assert np.allclose(again["pairs"]["emb.count2"], pairs["emb.count"], atol=1e-12)
    assert np.array_equal(again["pairs"]["si_sdr"], pairs["si_sdr"])


def test_shared_reference_and_diotic_views_are_embedded_once(tmp_path):
    from spaq.study.embeddings import run_study

    man = _write_pairs(tmp_path, n=3, diotic=True, shared_ref=True)
    enc = _Counting()
    res = run_study(man, tmp_path / "out", encoders=[enc], metrics=["si_sdr"], n_boot=50)
    # the one reference (both ears equal): once; each diotic degraded signal: once
    assert enc.calls == 1 + 3
    fresh = _Counting()
    from spaq.io import load_pair

    p = load_pair(str(tmp_path / "r.wav"), str(tmp_path / "d1.wav"), target_rate=FS)
    r, d = (np.asarray(a) if np.ndim(a) == 3 else np.asarray(a)[None] for a in (p.ref, p.deg))
    direct = pair_similarity(fresh, r, d, p.format)
    assert fresh.calls == 2 and float(direct["left"][0]) == float(direct["right"][0])
    assert res["pairs"]["emb.count"].iloc[1] == pytest.approx(float(direct["score"][0]), abs=1e-12)


def test_packaged_encoder_missing_package_is_one_line(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "resemblyzer", None)
    monkeypatch.setitem(sys.modules, "cdpam", None)
    for name in ("resemblyzer", "cdpam"):
        with pytest.raises(SpaqError, match="spaq\\[encoders\\]") as e:
            load_encoder(name)
        assert "\n" not in str(e.value)


def _speechlike(seconds, fs, seed):
    t = np.arange(int(seconds * fs)) / fs
    rng = np.random.default_rng(seed)
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t) ** 2
    x = sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) / k for k, f in enumerate((140, 280, 420, 700, 1100), 1))
    return (0.05 * env * x + 0.002 * rng.standard_normal(t.size)).astype(np.float32)


def test_resemblyzer_weights_from_the_wheel():
    pytest.importorskip("resemblyzer", exc_type=ImportError)
    enc = load_encoder("resemblyzer")
    x = torch.from_numpy(np.stack([_speechlike(2.4, 16000, 0), _speechlike(2.4, 16000, 1)]))
    y = enc(x)
    assert y.shape == (2, 1 + (240 - 160) // 40, 256)
    assert torch.allclose(torch.linalg.vector_norm(y, dim=-1), torch.ones(2, 3, dtype=torch.float64), atol=1e-5)
    assert float(frame_cosine(y, enc(x * 0.1))[0]) == pytest.approx(1.0, abs=1e-4)  # level-normalised
    noisy = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    assert float(frame_cosine(y, enc(noisy))[0]) < 0.99
    with pytest.raises(SpaqError, match="too short"):
        enc(x[:, :16000])


def test_cdpam_weights_from_the_wheel():
    pytest.importorskip("cdpam", exc_type=ImportError)
    enc = load_encoder("cdpam")
    assert enc.sample_rate == 22050
    x = torch.from_numpy(_speechlike(0.5, 22050, 2))[None]
    noisy = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    y = enc(torch.cat([x, noisy]))  # one call: CDPAM costs about 2 s of CPU per second of audio
    assert y.shape == (2, 1, 512) and torch.isfinite(y).all()
    assert float(frame_cosine(y[:1], y[1:])[0]) < 0.99


def test_distillmos_embedding_is_what_its_mos_head_reads():
    """The ``distillmos`` encoder's pooled state, read through the package's own score head
    (linear, sigmoid, 1 + 4x, mean over segments), gives exactly the package's MOS, for one
    zero-padded segment and for several overlapping ones; level-invariant (peak scaling)."""
    import importlib.util

    if importlib.util.find_spec("distillmos") is None or importlib.util.find_spec("xls_r_sqa") is None:
        pytest.skip("distillmos is not installed (pip install --no-deps distillmos==0.9.1 xls-r-sqa==0.1.0)")
    enc = load_encoder("distillmos")
    head = enc.model.transformer_pool_attn.pool.linear3
    for seconds, segments in ((1.5, 1), (12.0, 1 + int(np.ceil((12 * 16000 - 122880) / 16000)))):
        x = torch.from_numpy(np.stack([_speechlike(seconds, 16000, 3), _speechlike(seconds, 16000, 4)]))
        y = enc(x)
        assert y.shape == (2, segments, 200)
        with torch.no_grad():
            mos = (1 + 4 * torch.sigmoid(head(y.float()))).mean(dim=1).squeeze(-1)
            ref = enc.model(x).squeeze(-1)
        assert torch.allclose(mos, ref, atol=1e-5), (mos, ref)
    assert torch.allclose(enc(x * 0.25), y, atol=1e-4)


def test_distillmos_encoder_missing_package_is_one_line(monkeypatch):
    import sys

    from spaq.metrics.functional import classic as F

    monkeypatch.setitem(sys.modules, "distillmos", None)
    monkeypatch.setattr(F, "_DISTILLMOS", {})
    with pytest.raises(SpaqError, match="--no-deps distillmos") as e:
        load_encoder("distillmos")
    assert "\n" not in str(e.value)
