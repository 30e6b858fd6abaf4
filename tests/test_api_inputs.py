"""The Python API's array inputs (forty-eighth session's bug hunt): integer PCM is scaled to full scale as
files are, a rate no audio has and a rate contradicting a file are refused, one metric name is a name."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import spaq
from spaq.errors import SpaqInputError
from spaq.io import MIN_INPUT_RATE, as_audio_array

FS = 48000


def _noise(n=FS, seed=0):
    return np.random.default_rng(seed).standard_normal((2, n)) * 0.05


def test_integer_pcm_is_scaled_like_a_file(tmp_path):
    x = _noise()
    i16 = np.round(x * 32767).astype(np.int16)
    assert np.array_equal(as_audio_array(i16), i16 / 32768.0)
    assert np.array_equal(as_audio_array(torch.from_numpy(i16)), i16 / 32768.0)
    u8 = (np.round(x * 100) + 128).astype(np.uint8)
    assert np.allclose(as_audio_array(u8), (u8.astype(float) - 128) / 128)
    # the same numbers as the int16 file read by soundfile (which scales by 32768)
    sf.write(str(tmp_path / "a.wav"), i16.T, FS, subtype="PCM_16")
    a = spaq.predict(i16, sample_rate=FS)["score"]
    b = spaq.predict(str(tmp_path / "a.wav"))["score"]
    # the same sample values (int16 / 32768 is exact in float32); the file is read as float32, the array as
    # float64, so the features differ by float32 rounding (~1e-7 relative), far below 1e-4 points of the score
    assert a == pytest.approx(b, abs=1e-4)
    with pytest.raises(SpaqInputError, match="dtype bool"):
        as_audio_array(x > 0)


def test_rates_and_names():
    x = _noise()
    with pytest.raises(SpaqInputError, match=f"below {MIN_INPUT_RATE} Hz"):
        spaq.score(x, x, sample_rate=1, metrics=["cues"])
    with pytest.raises(SpaqInputError, match=f"below {MIN_INPUT_RATE} Hz"):
        spaq.localize(x, 2000)
    one = spaq.score(x, 0.5 * x, sample_rate=FS, metrics="cues")
    assert list(one.results) == ["cues"]
    with pytest.raises(SpaqInputError, match="missing"):
        spaq.score(x, None, sample_rate=FS, metrics=["cues"])
    with pytest.raises(SpaqInputError, match="empty list"):
        spaq.predict([])


def test_sample_rate_contradicting_a_file(tmp_path):
    p = str(tmp_path / "a.wav")
    sf.write(p, _noise().T, FS)
    with pytest.raises(SpaqInputError, match="is at 48000 Hz"):
        spaq.score(p, p, sample_rate=16000, metrics=["cues"])
    with pytest.raises(SpaqInputError, match="is at 48000 Hz"):
        spaq.score(p, p, sample_rate=16000, metrics=["cues"], stream=True)
    assert spaq.score(p, p, sample_rate=FS, metrics=["cues"]).results["cues"].score == 0.0


@pytest.mark.parametrize("kw, phrase", [(dict(n_sources=2.5), "n_sources"), (dict(n_sources=0), "n_sources"),
                                        (dict(frame_s=0), "frame_s"), (dict(frame_s=-1.0), "frame_s")])
def test_localize_arguments(kw, phrase):
    with pytest.raises(SpaqInputError, match=phrase):
        spaq.localize(_noise(), FS, **kw)
    with pytest.raises(SpaqInputError, match="complex"):
        spaq.localize(_noise().astype(complex), FS)


def test_one_silent_ear_is_named_as_such():
    x = _noise(2 * FS)
    y = x.copy()
    y[1] = 0.0
    r = spaq.score(x, y, sample_rate=FS, metrics=["cues", "localization"])
    assert any("both ears" in w for w in r.results["cues"].warnings)
    assert not any("reference is above" in w for w in r.results["cues"].warnings)
    loc = " ".join(r.results["localization"].warnings)
    assert "one ear silent" in loc and "degraded signal is silent" not in loc


def test_over_range_and_clipped_input_are_said(tmp_path):
    """Float samples beyond full scale and a signal flattened at full scale each get a warning, the same
    whether the pair is loaded whole or streamed; a signal well below full scale gets none."""
    x = _noise()
    over = spaq.score(x, 30 * x, sample_rate=FS, metrics=["cues"]).warnings
    assert any("beyond full scale" in w and w.startswith("deg") for w in over)
    clipped = np.clip(20 * x, -1.0, 1.0)
    assert any("looks clipped" in w for w in spaq.score(x, clipped, sample_rate=FS, metrics=["cues"]).warnings)
    assert not any("full scale" in w or "clipped" in w for w in spaq.score(x, 0.5 * x, sample_rate=FS,
                                                                           metrics=["cues"]).warnings)
    r, d = str(tmp_path / "r.wav"), str(tmp_path / "d.wav")
    sf.write(r, x.T, FS, subtype="FLOAT")
    sf.write(d, (30 * x).T, FS, subtype="FLOAT")
    whole = spaq.score(r, d, metrics=["cues"], stream=False).warnings
    streamed = spaq.score(r, d, metrics=["cues"], stream=True).warnings
    assert [w for w in whole if "full scale" in w] == [w for w in streamed if "full scale" in w] != []


def test_checkpoint_goes_to_one_metric(tmp_path):
    """--checkpoint is QASTAnet's when qastanet is scored, else the one named metric's that loads weights: QASTAnet's
    weights were handed to every metric that takes a checkpoint, and quality failed reading them as its parameters."""
    from spaq.api import checkpoint_metric
    from spaq.metrics import metric_class

    def pick(*names, ck="w.pt"):
        return checkpoint_metric({n: metric_class(n) for n in names}, ck)

    assert pick("quality", "qastanet", "cues", "localization") == "qastanet"
    assert pick("quality", "cues") == "quality"
    assert pick("predictor") == "predictor"
    assert pick("quality", "cues", ck=None) is None
    with pytest.raises(SpaqInputError, match="each load their own"):
        pick("quality", "sqm")
    with pytest.raises(SpaqInputError, match="none of cues loads one"):
        pick("cues")
    # a file that is not quality's parameters, given for qastanet: quality still scores with its own
    bogus = tmp_path / "weights.pth.tar"
    bogus.write_bytes(b"\x80\x02 not a quality parameter file")
    x = _noise()
    rep = spaq.score(x, 0.5 * x, sample_rate=FS, metrics=["quality", "qastanet"], checkpoint=str(bogus), align=False)
    assert "quality" in rep.results and rep.results["quality"].score == pytest.approx(
        spaq.score(x, 0.5 * x, sample_rate=FS, metrics=["quality"], align=False).results["quality"].score, abs=1e-9)
    assert "qastanet" in rep.skipped  # binaural input (and not its weights)


def test_a_skipped_metric_says_why_when_asked_for():
    """report.results["qastanet"] for binaural input (or without its weights) raised a bare KeyError; now the
    KeyError carries the skip reason, and a metric never asked for says which were scored. The mapping
    stays a dict (JSON, to_dict) and survives pickling (spaq batch's workers)."""
    import pickle

    import spaq
    from spaq.spatial.hrtf import load_hrtf
    from spaq.spatial.render import render_binaural

    x = render_binaural(0.05 * np.random.default_rng(0).standard_normal(24000), 30, 0, load_hrtf("ku100", 48000))
    r = spaq.score(x, 0.5 * x, sample_rate=48000, metrics=["cues", "qastanet"])
    assert isinstance(r.results, dict) and list(r.results) == ["cues"]
    with pytest.raises(KeyError, match="qastanet was skipped: qastanet scores ambisonics input only"):
        r.results["qastanet"]
    with pytest.raises(KeyError, match="pesq was not scored; scored: cues"):
        r["pesq"]
    back = pickle.loads(pickle.dumps(r))
    assert back.results["cues"].score == r.results["cues"].score
    with pytest.raises(KeyError, match="qastanet was skipped"):
        back.results["qastanet"]
