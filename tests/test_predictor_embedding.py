"""The predictor's optional audio embedding (issue 20): the ``hf=DIR`` transformers encoder on a
tiny random wav2vec2 saved locally (never a download), a predictor trained with it end to end
(``spaq train predictor`` with ``fit.embedding``), loaded by the metric / ``spaq.predict``, and
the shipped features-only ``predictor_v1`` unchanged."""
from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest
import torch

import spaq
from spaq.cli import main
from spaq.errors import SpaqError
from spaq.metrics.encoders import Encoder, HFEncoder, load_encoder, signal_embedding

from conftest import binaural_noise

CONV_KERNEL, CONV_STRIDE = [10, 3], [5, 2]


def _frames(n: int) -> int:
    for k, s in zip(CONV_KERNEL, CONV_STRIDE):
        n = (n - k) // s + 1
    return n


@pytest.fixture(scope="module")
def tiny_w2v(tmp_path_factory):
    """A random 2-layer wav2vec2 (hidden 16) and its feature extractor, saved with save_pretrained."""
    tr = pytest.importorskip("transformers", reason="the hf=DIR encoder needs transformers: pip install 'spaq[wav2vec2]'",
                             exc_type=ImportError)
    d = tmp_path_factory.mktemp("w2v") / "tiny"
    cfg = tr.Wav2Vec2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                            conv_dim=[8, 8], conv_kernel=CONV_KERNEL, conv_stride=CONV_STRIDE,
                            num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2, vocab_size=8)
    torch.manual_seed(0)
    tr.utils.logging.disable_progress_bar()
    tr.Wav2Vec2Model(cfg).save_pretrained(str(d))
    tr.Wav2Vec2FeatureExtractor(do_normalize=True, sampling_rate=16000).save_pretrained(str(d))
    return d


def test_hf_encoder_equals_transformers_on_the_normalised_input(tiny_w2v):
    import transformers as tr

    enc = load_encoder(f"hf={tiny_w2v}")
    assert isinstance(enc, HFEncoder) and enc.sample_rate == 16000 and enc.normalize and not enc.binaural
    g = torch.Generator().manual_seed(1)
    x = 0.1 * torch.randn(2, 1600, generator=g) + torch.tensor([[0.3], [-0.05]])  # offsets: normalising matters
    y = enc(x)
    assert y.shape == (2, _frames(1600), 16) == (2, 159, 16)
    model = tr.AutoModel.from_pretrained(str(tiny_w2v), local_files_only=True).eval()
    fe = tr.Wav2Vec2FeatureExtractor.from_pretrained(str(tiny_w2v), local_files_only=True)
    inp = fe(list(x.numpy()), sampling_rate=16000, return_tensors="pt").input_values
    assert torch.allclose(enc.prepare(x), inp, atol=1e-6)  # the feature extractor's normalisation
    assert float(inp.mean(-1).abs().max()) < 1e-6 and float(x.mean(-1).abs().max()) > 0.04
    with torch.no_grad():
        ref = model(inp, output_hidden_states=True)
    assert torch.allclose(y, ref.last_hidden_state.double(), atol=1e-5)
    y0 = load_encoder(f"hf@0={tiny_w2v}")(x)
    assert torch.allclose(y0, ref.hidden_states[0].double(), atol=1e-5)
    assert not torch.allclose(y0, y, atol=1e-3)
    with pytest.raises(SpaqError, match="layer 3 out of range 0..2"):
        load_encoder(f"hf@3={tiny_w2v}")
    # 48 kHz binaural in -> mean of the ears resampled to 16 kHz -> mean over frames
    b = torch.from_numpy(binaural_noise(0.2, seed=3)[None].astype(np.float64))
    e = signal_embedding(enc, b, 48000, "binaural")
    m = torch.from_numpy(spaq.io.resample(b.mean(1).numpy(), 48000, 16000))
    assert e.shape == (1, 16) and torch.allclose(e, enc(m).mean(1), atol=1e-12)


def test_hf_encoder_errors_are_one_line(tmp_path, monkeypatch):
    """Without transformers installed too: the checks before the import and the install line."""
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text('{"model_type": "wav2vec2"}')
    for spec, match in [(f"hf={tmp_path / 'nowhere'}", "no config.json"), (f"hf={tmp_path}", "no config.json"),
                        (f"hf@x={d}", "integer layer")]:
        with pytest.raises(SpaqError, match=match) as e:
            load_encoder(spec)
        assert "\n" not in str(e.value)
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(SpaqError, match=r"pip install 'spaq\[wav2vec2\]'") as e:
        load_encoder(f"hf={d}")
    assert "\n" not in str(e.value)


def test_predictor_with_an_embedding_end_to_end(tmp_path, tiny_w2v, capsys):
    """``spaq train predictor`` with ``fit.embedding: hf=DIR`` on a tiny recipe; the checkpoint
    stores the spec; ``spaq.predict`` computes the embedding and equals a manual forward of
    [features, mean embedding]; the encoder moved away -> a one-line error."""
    import yaml

    from spaq.api import clear_metric_cache
    from spaq.metrics.functional.predictor import predictor_features
    from spaq.models import checkpoint

    model_dir = tmp_path / "w2v"
    shutil.copytree(tiny_w2v, model_dir)
    cfg = {"seed": 3, "corpus": {"seed": 1, "duration_s": 0.6, "voices": ["en-us"], "heads": ["default"],
                                 "sources": ["harmonic"], "formats": ["binaural"], "mono": False,
                                 "families": ["lowpass"], "severities": [0.5, 1.0], "scenes": 2},
           "fit": {"epochs": 30, "embedding": f"hf={model_dir}"}, "calibration": {"apply": False}}
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "p.pt"
    assert main(["train", "predictor", str(p), "--out", str(out), "--workdir", str(tmp_path / "w")]) == 0
    capsys.readouterr()
    assert len(list((tmp_path / "w").glob("predictor_train_*_audio/*.npy"))) == 2  # the split's audio, kept
    model, meta = checkpoint.load(out, architecture="predictor")
    assert model.cfg.embedding == f"hf={model_dir}" and model.cfg.n_embedding == 16
    assert model.mean.shape == (model.cfg.n_in,) and model.cfg.n_in == len(model.cfg.feature_index) + 16
    assert torch.all(model.std[-16:] > 1e-6)  # the scaler covers the embedding

    x = np.stack([binaural_noise(1.0, seed=5), 0.3 * binaural_noise(1.0, seed=6)]).astype(np.float32)
    clear_metric_cache()
    got = spaq.predict(x, sample_rate=48000, checkpoint=str(out))
    xt = torch.from_numpy(x.astype(np.float64))
    enc = load_encoder(model.cfg.embedding)
    feats = torch.cat([predictor_features(xt, 48000, "binaural").double(), signal_embedding(enc, xt, 48000, "binaural")],
                      dim=-1)
    m = model.double()
    with torch.no_grad():
        o = m(feats)
        no_emb = m(torch.cat([feats[:, :-16], torch.zeros(2, 16, dtype=torch.float64)], -1))
    assert [r["score"] for r in got] == pytest.approx(o["score"].tolist(), abs=1e-9)
    proba = torch.softmax(o["logits"], -1)
    assert [r["probabilities"]["high"] for r in got] == pytest.approx(proba[:, 2].tolist(), abs=1e-9)
    assert float((o["logits"] - no_emb["logits"]).abs().max()) > 1e-3  # the embedding reaches the output

    shutil.move(str(model_dir), str(tmp_path / "moved"))
    clear_metric_cache()
    with pytest.raises(SpaqError, match="needs its embedding encoder.*no config.json") as e:
        spaq.predict(x[0], sample_rate=48000, checkpoint=str(out))
    assert "\n" not in str(e.value)
    wav = tmp_path / "x.wav"
    import soundfile as sf

    sf.write(str(wav), x[0].T, 48000, subtype="FLOAT")
    assert main(["predict", str(wav), "--checkpoint", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert "no config.json" in err and len(err.splitlines()) == 1


def test_embedding_needs_its_columns():
    import pandas as pd

    from spaq.metrics.functional.predictor import FEATURE_NAMES
    from spaq.train.predictor import FitSection, fit_predictor

    df = pd.DataFrame(np.random.default_rng(0).standard_normal((20, len(FEATURE_NAMES))), columns=list(FEATURE_NAMES))
    df["target"] = 50.0
    with pytest.raises(SpaqError, match="no embedding columns"):
        fit_predictor(df, FitSection(epochs=2, embedding="bast"), log=lambda m: None)


def test_shipped_predictor_is_features_only_and_unchanged():
    """predictor_v1 (sha256-verified) has no embedding: the metric is a features-only forward."""
    from spaq.metrics import load_metric
    from spaq.metrics.functional.predictor import predictor_features
    from spaq.weights import resolve

    w = resolve("predictor_v1", offline=True)
    assert w.verified
    m = load_metric("predictor")
    assert m.encoder is None and m.model.cfg.embedding == "" and m.model.cfg.n_embedding == 0
    assert m.model.index.tolist() == list(m.model.cfg.feature_index)
    x = torch.from_numpy(np.stack([binaural_noise(1.0, seed=7), 0.5 * binaural_noise(1.0, seed=8)]).astype(np.float64))
    assert m.model.cfg.input_level_dbfs is None  # the shipped weights read inputs at their own level
    with torch.no_grad():
        want = m.model(predictor_features(x, 48000, "binaural"))["score"]
    assert torch.equal(m.predict_tensor(x)["score"], want.double())


class _Recorder(Encoder):
    """An encoder that keeps its input and returns its first samples as 2 frames."""

    name = "rec"

    def __init__(self, binaural: bool, rate: int):
        self.binaural, self.sample_rate = binaural, rate

    def embed(self, x):
        self.seen = x
        return torch.stack([x[..., :3].reshape(x.shape[0], -1)] * 2, dim=1)


def test_signal_embedding_gives_each_format_the_encoders_view():
    from spaq.metrics.functional.classic import channels_for

    g = np.random.default_rng(0)
    x2, x4, x1 = (torch.from_numpy(g.standard_normal((1, c, 4800))) for c in (2, 4, 1))
    mono = _Recorder(False, 48000)
    signal_embedding(mono, x2, 48000, "binaural")
    assert torch.allclose(mono.seen.double(), x2.mean(1).float().double())
    signal_embedding(mono, x4, 48000, "foa")
    assert torch.equal(mono.seen, x4[:, 0].float())  # W
    signal_embedding(mono, x1, 48000, "mono")
    assert torch.equal(mono.seen, x1[:, 0].float())
    bi = _Recorder(True, 48000)
    signal_embedding(bi, x1, 48000, "mono")
    assert torch.equal(bi.seen, x1[:, [0, 0]].float())  # mono to both ears
    signal_embedding(bi, x2, 48000, "binaural")
    assert torch.equal(bi.seen, x2.float())
    signal_embedding(bi, x4, 48000, "foa")
    v = channels_for(x4, None, 48000)
    assert torch.equal(bi.seen, torch.stack([v["left"], v["right"]], 1).float())  # the shared binaural decode
    low = _Recorder(False, 16000)
    e = signal_embedding(low, x2, 48000, "binaural")
    assert low.seen.shape == (1, 1600) and e.shape == (1, 3)  # resampled to the encoder's rate
    assert torch.allclose(low.seen.double(), torch.from_numpy(spaq.io.resample(x2.mean(1).numpy(), 48000, 16000)).float()
                          .double())
