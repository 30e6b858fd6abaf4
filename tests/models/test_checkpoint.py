"""spaq.models.checkpoint: one self-describing format, strict weights_only loading, one-line errors;
inference free of training code."""
import hashlib
import os
import stat
import subprocess
import sys

import pytest
import torch

from spaq import weights
from spaq.errors import SpaqError
from spaq.models import checkpoint
from spaq.models.bast import BAST, BASTConfig

SMALL = dict(n_mels=32, n_frames=24, patch=(8, 8), stride=(4, 4), dim=32, depth=1, heads=2, mlp_dim=64,
             sample_rate=16000, n_fft=512, hop=160, fmax=7000.0, n_classes=2, class_names=("a", "b"))

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def small():
    torch.manual_seed(0)
    return BAST(BASTConfig(**SMALL)).eval()


def _msg(e) -> str:
    m = str(e.value)
    assert m and "\n" not in m
    return m


def test_round_trip_is_exact_and_self_describing(tmp_path, small):
    p = tmp_path / "m.pt"
    prov = {"seed": 3, "history": [{"epoch": 1, "train_loss": 0.5}], "data": "synthetic"}
    sha = checkpoint.save(p, small, train=prov, extra={"class_names": ["a", "b"]})
    assert sha == hashlib.sha256(p.read_bytes()).hexdigest()
    raw = torch.load(p, weights_only=True)
    assert raw["format"] == checkpoint.FORMAT == "spaq-checkpoint/1" and raw["architecture"] == "bast"
    assert raw["versions"]["torch"] == torch.__version__.split("+")[0] and raw["versions"]["spaq"]
    model, meta = checkpoint.load(p)
    assert isinstance(model, BAST) and not model.training
    assert model.cfg == small.cfg
    a, b = small.state_dict(), model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(3, *small.cfg.feature_shape())
    with torch.no_grad():
        assert torch.equal(small(x).direction, model(x).direction)  # same weights, same ops
    assert meta["train"] == prov and meta["class_names"] == ["a", "b"] and meta["sample_rate"] == 16000
    assert meta["sha256"] == sha and meta["path"] == str(p) and "state_dict" not in meta


def test_the_same_checkpoint_saved_twice_has_the_same_bytes(tmp_path, small):
    """The zip archive inside is named ``archive/``, not after the temporary file the atomic
    write goes through, so a training run that reproduces the weights reproduces the sha256."""
    a = checkpoint.save(tmp_path / "one.pt", small, train={"seed": 1})
    b = checkpoint.save(tmp_path / "sub" / "two.pt", small, train={"seed": 1})
    assert a == b
    import zipfile

    assert all(n.startswith("archive/") for n in zipfile.ZipFile(tmp_path / "one.pt").namelist())


def test_shipped_bast_file_loads_with_its_older_tag():
    spec = weights.REGISTRY["bast_ku100"]
    w = weights.resolve("bast_ku100")
    assert torch.load(w.path, weights_only=True)["format"] == "spaq-bast-localizer/1"  # file unchanged
    model, meta = checkpoint.load(w.path, architecture="bast")
    assert meta["architecture"] == "bast" and meta["sha256"] == spec.sha256
    assert model.cfg.n_classes == 3 and model.cfg.sample_rate == meta["sample_rate"] == 32000


def test_bad_files_are_one_line_errors(tmp_path, small):
    p = tmp_path / "x.pt"
    with pytest.raises(SpaqError) as e:
        checkpoint.load(p)
    assert "checkpoint not found" in _msg(e)
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(SpaqError) as e:
        checkpoint.load(p)
    assert "not a loadable checkpoint" in _msg(e)
    torch.save({"format": "qastanet/1", "state_dict": {}}, p)
    with pytest.raises(SpaqError) as e:
        checkpoint.load(p, architecture="bast")
    assert "not a spaq BAST localizer checkpoint" in _msg(e) and "qastanet/1" in str(e.value)
    checkpoint.save(p, small)
    ck = torch.load(p, weights_only=True)
    torch.save({**ck, "architecture": "nosuch"}, p)
    with pytest.raises(SpaqError) as e:  # right format, other architecture
        checkpoint.load(p, architecture="bast")
    assert "not a spaq BAST localizer checkpoint" in _msg(e) and "'nosuch'" in str(e.value)
    with pytest.raises(SpaqError) as e:  # and no architecture expected: still unknown
        checkpoint.load(p)
    assert "unknown architecture 'nosuch'" in _msg(e)
    torch.save({k: v for k, v in ck.items() if k != "state_dict"}, p)
    with pytest.raises(SpaqError) as e:
        checkpoint.load(p)
    assert "missing state_dict" in _msg(e)
    sd = dict(ck["state_dict"])
    sd.pop(next(iter(sd)))
    torch.save({**ck, "state_dict": sd}, p)
    with pytest.raises(SpaqError) as e:  # strict: a missing key
        checkpoint.load(p)
    assert "does not match the BAST architecture" in _msg(e)
    torch.save({**ck, "state_dict": {**ck["state_dict"], "extra.weight": torch.zeros(1)}}, p)
    with pytest.raises(SpaqError) as e:  # strict: an unexpected key
        checkpoint.load(p)
    assert "does not match the BAST architecture" in _msg(e)
    torch.save({**ck, "sample_rate": 48000}, p)
    with pytest.raises(SpaqError) as e:
        checkpoint.load(p)
    assert "sample_rate 48000" in _msg(e)
    with pytest.raises(SpaqError) as e:
        checkpoint.load(p, architecture="resnet")
    assert "unknown architecture 'resnet'" in _msg(e)


class _Payload:  # not an allowed type for weights_only loading
    pass


def test_pickled_objects_are_refused(tmp_path, small):
    p = tmp_path / "evil.pt"
    checkpoint.save(p, small)
    ck = torch.load(p, weights_only=True)
    ck["train"] = {"obj": _Payload()}
    torch.save(ck, p)
    with pytest.raises(SpaqError) as e:
        checkpoint.load(p)
    assert "not a loadable checkpoint" in _msg(e)


def test_save_is_atomic_with_umask_permissions(tmp_path, small, monkeypatch):
    p = tmp_path / "sub" / "m.pt"
    old = os.umask(0o022)
    try:
        checkpoint.save(p, small)
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644
    before = p.read_bytes()

    def broken(obj, f):  # torch.save gets the open temporary file
        f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.torch, "save", broken)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(p, small)
    assert p.read_bytes() == before and sorted(x.name for x in p.parent.iterdir()) == ["m.pt"]


def test_unregistered_architecture_cannot_be_saved(tmp_path):
    with pytest.raises(SpaqError) as e:
        checkpoint.save(tmp_path / "l.pt", torch.nn.Linear(2, 2))
    assert "not a registered architecture" in _msg(e) and not (tmp_path / "l.pt").exists()


def test_inference_imports_no_training_code():
    code = ("import sys, numpy as np, spaq\n"
            "from spaq.metrics.localization import Localization\n"
            "r = spaq.localize(0.1 * np.random.default_rng(0).standard_normal((2, 32000)), 32000, method='bast')\n"
            "assert r.method == 'bast' and r.provenance['sha256']\n"
            "bad = sorted(m for m in sys.modules if m.startswith('spaq.train'))\n"
            "assert not bad, bad\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
