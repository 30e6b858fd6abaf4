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
from spaq.study.encoders import BastEncoder, Encoder, load_encoder

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
    p = tmp_path / "tiny.onnx"
    try:
        torch.onnx.export(_Tiny(), (torch.zeros(1, FS),), str(p), input_names=["x"],
                          dynamic_axes={"x": {0: "b", 1: "t"}}, dynamo=False)
    except Exception as e:  # the exporter needs the onnx package
        pytest.skip(f"cannot export a test ONNX model here: {type(e).__name__}")
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
