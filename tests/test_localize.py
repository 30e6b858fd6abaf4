"""localize(): ambisonics via intensity, binaural via BAST, CLI, plot, bad input."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch
import typer
from typer.testing import CliRunner

from spaq.errors import SpaqError, SpaqInputError
from spaq.localization import localize, plot_localization
from spaq.localization.localize import _cluster
from spaq.cli.localize import register
from spaq.cli.train import register as register_train
from spaq.models.bast import BAST, BASTConfig
from spaq.spatial.angles import great_circle_deg, sph2cart
from spaq.spatial.sh import sh_matrix
from spaq.train.localizer import save_checkpoint

SMALL = dict(n_mels=32, n_frames=24, patch=(8, 8), stride=(4, 4), dim=32, depth=1, heads=2, mlp_dim=64,
             sample_rate=16000, n_fft=512, hop=160, fmax=7000.0, n_classes=2, class_names=("a", "b"))
FS = 16000


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    p = tmp_path_factory.mktemp("ck") / "tiny.pt"
    save_checkpoint(p, BAST(BASTConfig(**SMALL)).eval(), {"note": "untrained, plumbing tests"})
    return p


def test_ambisonic_file_and_trajectory(tmp_path):
    rng = np.random.default_rng(0)
    x = sh_matrix(3, 75.0, -20.0)[:, None] * rng.standard_normal(FS)[None] * 0.1
    f = tmp_path / "hoa3.wav"
    sf.write(f, x.T, FS, subtype="FLOAT")
    r = localize(f)
    assert r.method == "intensity" and r.format.startswith("ambisonics order 3")
    assert great_circle_deg(75.0, -20.0, r.azimuth_deg[0], r.elevation_deg[0]) < 1.0
    ok = ~np.isnan(r.frame_azimuth_deg[0])
    assert ok.sum() >= 8
    assert np.all(great_circle_deg(75.0, -20.0, r.frame_azimuth_deg[0, ok], r.frame_elevation_deg[0, ok]) < 1.0)
    out = tmp_path / "map.png"
    plot_localization(r, out)
    assert out.stat().st_size > 5000


def test_binaural_array_resampled_shapes(tiny_ckpt):
    rng = np.random.default_rng(1)
    x = 0.1 * rng.standard_normal((2, 3 * FS))
    r16 = localize(x, FS, weights=tiny_ckpt)
    assert r16.method == "bast" and r16.sample_rate == FS
    assert r16.azimuth_deg.shape == (1,) and 0.0 <= r16.confidence[0] <= 1.0
    n_win = r16.frame_times_s.shape[0]
    assert r16.frame_azimuth_deg.shape == (1, n_win) and n_win == 13  # 301 frames: 12 windows of 24 + one at the end
    r_ov = localize(x, FS, weights=tiny_ckpt, overlap=0.5)
    assert r_ov.frame_times_s.shape[0] >= 2 * n_win - 2
    with pytest.raises(SpaqInputError, match="overlap"):
        localize(x, FS, weights=tiny_ckpt, overlap=1.0)
    assert set(r16.class_probabilities) == {"a", "b"}
    assert abs(sum(r16.class_probabilities.values()) - 1.0) < 1e-3
    from spaq.io import resample

    r48 = localize(resample(x, FS, 48000), 48000, weights=tiny_ckpt)
    assert r48.provenance["input_sample_rate"] == 48000
    assert great_circle_deg(r16.azimuth_deg[0], r16.elevation_deg[0], r48.azimuth_deg[0], r48.elevation_deg[0]) < 5.0
    d = r16.to_dict(frames=True)
    assert len(d["frames"]["time_s"]) == n_win and d["provenance"]["sha256"]


def test_bad_input_one_line_errors(tmp_path, tiny_ckpt):
    rng = np.random.default_rng(2)
    with pytest.raises(SpaqInputError, match="mono"):
        localize(rng.standard_normal((1, FS)), FS, weights=tiny_ckpt)
    with pytest.raises(SpaqInputError, match="needs 2 channels"):
        localize(rng.standard_normal((4, FS)), FS, format="binaural", weights=tiny_ckpt)
    with pytest.raises(SpaqInputError, match="neither binaural"):
        localize(rng.standard_normal((3, FS)), FS)
    with pytest.raises(SpaqInputError, match="silent"):
        localize(np.zeros((2, FS)), FS, weights=tiny_ckpt)
    with pytest.raises(SpaqInputError, match="silent"):
        localize(np.zeros((4, FS)), FS)
    for method in ("auto", "templates", "bast"):  # shorter than one 20 ms analysis frame, at any rate
        with pytest.raises(SpaqInputError, match="too short for binaural localisation: 19.98 ms"):
            localize(rng.standard_normal((2, 959)), 48000, method=method)
    with pytest.raises(SpaqInputError, match="300 samples at 16000 Hz"):
        localize(rng.standard_normal((2, 300)), 16000)
    assert localize(0.1 * rng.standard_normal((2, 960)), 48000, method="templates").n_sources == 1
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else", "state_dict": {}}, other)
    with pytest.raises(SpaqError, match="not a spaq BAST localizer"):
        localize(rng.standard_normal((2, FS)), FS, weights=other)


def test_weights_env_var_overrides_the_packaged_model(tiny_ckpt, monkeypatch):
    from spaq import weights
    from spaq.localization import WEIGHTS_ENV, WEIGHTS_NAME

    assert weights.REGISTRY[WEIGHTS_NAME].env_var == WEIGHTS_ENV == "SPAQ_LOCALIZER_WEIGHTS"
    monkeypatch.setenv(WEIGHTS_ENV, str(tiny_ckpt))
    r = localize(0.1 * np.random.default_rng(7).standard_normal((2, FS)), FS)
    assert r.provenance["weights"] == "tiny.pt" and set(r.class_probabilities) == {"a", "b"}
    monkeypatch.setenv(WEIGHTS_ENV, str(tiny_ckpt.parent / "gone.pt"))
    with pytest.raises(SpaqError, match="gone.pt does not exist"):
        localize(0.1 * np.random.default_rng(7).standard_normal((2, FS)), FS)


def test_cluster_two_direction_groups():
    rng = np.random.default_rng(3)
    a = sph2cart(30 + rng.normal(0, 2, 40), rng.normal(0, 2, 40))
    b = sph2cart(-60 + rng.normal(0, 2, 20), 10 + rng.normal(0, 2, 20))
    u = np.concatenate([a, b])
    D, share, labels = _cluster(u, np.ones(len(u)), 2)
    assert great_circle_deg(30, 0, *np.degrees([np.arctan2(D[0, 1], D[0, 0]), np.arcsin(D[0, 2])])) < 2
    assert great_circle_deg(-60, 10, *np.degrees([np.arctan2(D[1, 1], D[1, 0]), np.arcsin(D[1, 2])])) < 2
    assert abs(share[0] - 40 / 60) < 0.05 and np.all(labels[:40] == 0) and np.all(labels[40:] == 1)


def test_cli_localize_json_frames_plot_and_errors(tmp_path, tiny_ckpt, capsys):
    from spaq.cli import main

    rng = np.random.default_rng(4)
    f = tmp_path / "bin.wav"
    sf.write(f, 0.1 * rng.standard_normal((2 * FS, 2)), FS)
    png = tmp_path / "traj.png"
    assert main(["localize", str(f), "--json", "--frames", "--plot", str(png), "--weights", str(tiny_ckpt)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["method"] == "bast" and len(d["sources"]) == 1 and "frames" in d
    assert png.stat().st_size > 5000
    a = tmp_path / "foa.wav"
    sf.write(a, (sh_matrix(1, -120.0, 10.0)[:, None] * rng.standard_normal(FS)[None] * 0.1).T, FS, subtype="FLOAT")
    assert main(["localize", str(a), "--format", "ambisonics"]) == 0
    out = capsys.readouterr().out
    assert "azimuth  -120.0" in out and "elevation   10.0" in out
    m = tmp_path / "mono.wav"
    sf.write(m, 0.1 * rng.standard_normal(FS), FS)
    for bad in ([str(m)], [str(tmp_path / "missing.wav")], [str(f), "--format", "hoa2"],
                [str(f), "--weights", str(png)]):
        assert main(["localize", *bad]) == 2, bad
        err = capsys.readouterr().err
        assert err.startswith("spaq: error:") and err.strip().count("\n") == 0, err


def test_register_on_a_bare_app():
    app = typer.Typer()
    register(app)
    register_train(app)
    res = CliRunner().invoke(app, ["train", "localizer", "--help"])
    assert res.exit_code == 0 and "--csv" in res.stdout
    res = CliRunner().invoke(app, ["localize", "--help"])
    assert res.exit_code == 0 and "--frames" in res.stdout


def test_cli_train_localizer_csv(tmp_path):
    rng = np.random.default_rng(5)
    rows = ["input_file,class,azimuth_deg,elevation_deg"]
    for i, az in enumerate([30, 300, 90, 270]):
        g = np.array([1.0 + 0.5 * np.sin(np.radians(az)), 1.0 - 0.5 * np.sin(np.radians(az))])
        sf.write(tmp_path / f"{i}.wav", (0.1 * g[:, None] * rng.standard_normal(FS // 2)[None]).T, FS)
        rows.append(f"{i}.wav,{'x' if i % 2 else 'y'},{az},0")
    (tmp_path / "idx.csv").write_text("\n".join(rows) + "\n")
    cfg = tmp_path / "c.yaml"
    import yaml

    small = {k: (list(v) if isinstance(v, tuple) else v) for k, v in SMALL.items() if k not in ("n_classes", "class_names")}
    cfg.write_text(yaml.safe_dump({"localizer": {"epochs": 2, "batch_size": 4, "model": small}}))
    from spaq.cli import main

    out = tmp_path / "m.pt"
    assert main(["train", "localizer", str(cfg), "--csv", str(tmp_path / "idx.csv"), "--out", str(out),
                 "--integration", "concat", "--share-weights", "--loss", "AD"]) == 0
    assert main(["train", "localizer", "--csv", str(tmp_path / "idx.csv"), "--loss", "L1"]) == 2
    from spaq.train.localizer import load_checkpoint

    model, meta = load_checkpoint(out)
    assert model.cfg.integration == "CONCAT" and model.cfg.share_weights and meta["train"]["loss"] == "AD"
    assert meta["class_names"] == ["x", "y"]


def test_compare_localization_ambisonics_two_sources():
    from spaq.localization import compare_localization

    rng = np.random.default_rng(6)
    n = 2 * FS

    def gated():
        return rng.standard_normal(n) * (rng.random(40) > 0.5).repeat(n // 40)

    s1, s2 = gated(), gated()
    ref = sh_matrix(1, 40.0, 0.0)[:, None] * s1 + sh_matrix(1, -20.0, 0.0)[:, None] * s2
    deg = sh_matrix(1, 50.0, 0.0)[:, None] * s1 + sh_matrix(1, -20.0, 5.0)[:, None] * s2  # 10 and 5 deg off
    c = compare_localization(ref, deg, FS, n_sources=2)
    by_ref = {round(float(c.reference.azimuth_deg[i])): c.error_deg[i] for i in range(2)}
    assert abs(by_ref[40] - 10.0) < 1.0 and abs(by_ref[-20] - 5.0) < 1.0
    assert abs(c.mean_error_deg - 7.5) < 1.0
    d = c.to_dict()
    assert len(d["reference"]["sources"]) == 2 and len(d["pairs"]) == 2
    silent = compare_localization(ref, np.zeros_like(ref), FS, n_sources=2)
    assert np.all(np.isnan(silent.error_deg)) and "silent" in silent.note


def test_packaged_model_localizes_ku100_noise():
    """The shipped checkpoint loads offline (sha256 checked) and finds broadband noise rendered
    with the KU100 HRIRs at 48 kHz (resampled to the model's rate)."""
    from scipy.signal import oaconvolve

    from spaq.data.sources import pink_noise
    from spaq.localization import default_weights_path, load_localizer
    from spaq.spatial.hrtf import load_hrtf

    model, meta = load_localizer()
    assert meta["path"] == str(default_weights_path()) and model.cfg.n_classes == 3
    h = load_hrtf("ku100", 48000)
    rng = np.random.default_rng(11)
    for az, el in [(90.0, 0.0), (-90.0, 0.0), (30.0, 0.0), (-150.0, 0.0), (0.0, 45.0)]:
        k = int(h.nearest_index(az, el))
        s = 0.05 * pink_noise(2 * 48000, rng)
        y = oaconvolve(s[None], h.hrir[k], axes=-1)[:, : len(s)]
        r = localize(y, 48000)
        err = great_circle_deg(h.azimuth_deg[k], h.elevation_deg[k], r.azimuth_deg[0], r.elevation_deg[0])
        assert err < 20.0, (az, el, r.azimuth_deg, r.elevation_deg)
        assert r.confidence[0] > 0.8


def test_packaged_localizers_by_name():
    """--weights takes a packaged localizer's name (bast_ku100, bast_cues; with or without .pt, as the README
    writes it): the same model as its path; a name that is neither a file nor packaged is an error."""
    from spaq.localization import default_weights_path, load_localizer
    from spaq.weights import resolve

    assert load_localizer("bast_ku100.pt")[1]["path"] == str(default_weights_path())
    assert load_localizer("bast_ku100")[1]["path"] == str(default_weights_path())
    assert load_localizer("bast_cues")[1]["sha256"] == resolve("bast_cues").sha256
    with pytest.raises(SpaqError, match="does not exist"):
        load_localizer("bast_nothere.pt")


def test_localize_refuses_transposed_arrays_and_a_rate_a_file_contradicts(tmp_path):
    """(time, channels) arrays get the transposed hint ("48000 channels is neither binaural ..." before), and a
    sample_rate that is not a file's own rate is refused, as spaq.score and spaq.predict refuse it (it was ignored)."""
    import soundfile as sf

    import spaq
    from spaq.errors import SpaqInputError

    x = np.random.default_rng(0).standard_normal((2, 24000)) * 0.05
    with pytest.raises(SpaqInputError, match=r"is it transposed \(time, channels\)\?"):
        spaq.localize(x.T, sample_rate=48000)
    p = tmp_path / "b.wav"
    sf.write(p, x.T, 48000, subtype="FLOAT")
    with pytest.raises(SpaqInputError, match="sample_rate=16000 but .*b.wav is at 48000 Hz"):
        spaq.localize(str(p), sample_rate=16000)
    with pytest.raises(SpaqInputError, match=r"use --format 5\.0 .*\(format= in Python\)"):
        spaq.localize(np.zeros((5, 24000)) + x[:1], sample_rate=48000)


def test_low_band_coherence_tells_two_ears_from_two_unrelated_signals():
    """Two ears 15-25 cm apart are coherent below 250 Hz in any sound field; two independent signals are not.
    The estimate's floor is about 1 / segments (32 here: ~0.03); one source reads ~1 (a linear filter of
    one signal: the MSC of a noise-free LTI pair is 1 up to the window's leakage). Too short, or no power in
    the band: None."""
    from spaq.dsp import low_band_coherence
    from spaq.spatial.hrtf import load_hrtf
    from spaq.spatial.render import render_binaural

    rng = np.random.default_rng(3)
    indep = rng.standard_normal((2, 96000))
    assert low_band_coherence(indep, 48000) < 0.1
    src = rng.standard_normal(96000)
    h = load_hrtf("ku100", 48000)
    one = render_binaural(src, 120.0, 20.0, h)
    assert low_band_coherence(one, 48000) > 0.95
    diffuse = sum(render_binaural(rng.standard_normal(96000), a, 0.0, h) for a in (-150, -90, -30, 30, 90, 150))
    assert low_band_coherence(diffuse, 48000) > 0.4  # six uncorrelated sources around the head: still coherent
    assert low_band_coherence(torch.as_tensor(indep), 48000) == pytest.approx(low_band_coherence(indep, 48000))
    assert low_band_coherence(indep[:, :12000], 48000) is None  # 0.25 s: fewer than 16 segments
    assert low_band_coherence(np.zeros((2, 96000)), 48000) is None
    with pytest.raises(ValueError):
        low_band_coherence(indep[:1], 48000)


def test_localize_warns_that_two_independent_channels_are_not_binaural(tmp_path, capsys):
    """A stereo file of two unrelated signals was localised like any binaural signal, with no word. Now the
    first warning says so (CLI JSON too), with the coherence in the provenance; a binaural rendering gets
    no such warning."""
    from spaq.spatial.hrtf import load_hrtf
    from spaq.spatial.render import render_binaural

    rng = np.random.default_rng(4)
    res = localize(0.1 * rng.standard_normal((2, 48000)), sample_rate=48000)
    assert "does not look like a binaural signal" in res.warnings[0]
    assert res.provenance["low_band_coherence"] < 0.2
    good = localize(render_binaural(rng.standard_normal(48000), 45.0, 0.0, load_hrtf("ku100", 48000)), sample_rate=48000)
    assert not any("binaural signal" in w for w in good.warnings)
    assert good.provenance["low_band_coherence"] > 0.95
    f = tmp_path / "indep.wav"
    sf.write(f, 0.1 * rng.standard_normal((48000, 2)), 48000)
    from spaq.cli import main

    assert main(["localize", str(f), "--json"]) == 0
    assert "does not look like a binaural signal" in json.loads(capsys.readouterr().out)["warnings"][0]
