"""Checkpoint resolution (explicit path, env var, packaged, cache; download only when asked)
and sha256-checked fetching.

No network: downloads use ``file://`` URLs of local files, with the registry entry replaced
(``dataclasses.replace``) on a copy of ``weights.REGISTRY``.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from spaq import weights
from spaq.cli import main
from spaq.errors import WeightsNotFoundError

from conftest import QASTANET_DIR

REPO = Path(__file__).resolve().parents[1]
QASTANET_CKPT = QASTANET_DIR / "model_weights.pth.tar"  # conftest: $SPAQ_SHARED_DIR or ../shared
OFFICIAL_SHA = "88e542a89ecac6bbd11f9f6be4d6045b05f06da32d7fe70d9bc313ac6b682e49"
ENV = "SPAQ_QASTANET_CHECKPOINT"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Empty cache, no env override, offline: nothing here may reach the network."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SPAQ_CACHE_DIR", str(cache))
    monkeypatch.setenv("SPAQ_OFFLINE", "1")
    monkeypatch.delenv(ENV, raising=False)
    return cache


@pytest.fixture
def official_ckpt():
    if not QASTANET_CKPT.is_file():
        pytest.skip(f"official QASTAnet checkpoint not found at {QASTANET_CKPT.resolve()} (../shared is absent)")
    return QASTANET_CKPT


@pytest.fixture
def payload(tmp_path):
    """A local 'checkpoint' file (arbitrary bytes), its file:// URL and sha256."""
    src = tmp_path / "upstream" / "model.pth.tar"
    src.parent.mkdir()
    data = bytes(range(256)) * 4000 + b"spaq-test-payload"  # > 1 MiB: several read blocks
    src.write_bytes(data)
    return src, src.as_uri(), hashlib.sha256(data).hexdigest()


def _patch_registry(monkeypatch, **changes):
    reg = dict(weights.REGISTRY)
    reg["qastanet"] = dataclasses.replace(reg["qastanet"], **changes)
    monkeypatch.setattr(weights, "REGISTRY", reg)
    return reg["qastanet"]


def _one_line(e) -> str:
    msg = str(e.value)
    assert msg and "\n" not in msg
    return msg


# --------------------------------------------------------------------------- explicit / env


def test_registry_entry_is_the_official_checkpoint():
    spec = weights.REGISTRY["qastanet"]
    assert spec.sha256 == OFFICIAL_SHA
    assert spec.env_var == ENV
    assert spec.url.startswith("https://") and "f69873d61dc02fa89f4603b399a89038957d0988" in spec.url


def test_explicit_official_path_is_verified(official_ckpt):
    w = weights.resolve("qastanet", official_ckpt)
    assert w.source == "explicit"
    assert w.path == official_ckpt
    assert w.sha256 == OFFICIAL_SHA
    assert w.verified is True


def test_explicit_other_file_reports_its_sha_unverified(tmp_path):
    other = tmp_path / "retrained.pth.tar"
    other.write_bytes(b"not the official weights")
    w = weights.resolve("qastanet", str(other))
    assert w.source == "explicit"
    assert w.sha256 == hashlib.sha256(b"not the official weights").hexdigest()
    assert w.verified is False


def test_env_var_path(official_ckpt, monkeypatch):
    monkeypatch.setenv(ENV, str(official_ckpt))
    w = weights.resolve("qastanet")
    assert (w.source, w.sha256, w.verified) == ("env", OFFICIAL_SHA, True)


def test_explicit_path_wins_over_env_var(tmp_path, monkeypatch):
    a, b = tmp_path / "a.pth", tmp_path / "b.pth"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    monkeypatch.setenv(ENV, str(b))
    w = weights.resolve("qastanet", a)
    assert w.source == "explicit" and w.path == a and w.sha256 == hashlib.sha256(b"a").hexdigest()


def test_missing_explicit_path_raises(tmp_path):
    missing = tmp_path / "nope.pth.tar"
    with pytest.raises(WeightsNotFoundError) as e:
        weights.resolve("qastanet", missing)
    msg = _one_line(e)
    assert str(missing) in msg and "does not exist" in msg


def test_missing_env_path_raises(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path / "gone.pth"))
    with pytest.raises(WeightsNotFoundError) as e:
        weights.resolve("qastanet")
    assert "gone.pth" in _one_line(e) and "env" in str(e.value)


def test_unknown_name():
    with pytest.raises(WeightsNotFoundError) as e:
        weights.resolve("no-such-model")
    assert "no-such-model" in _one_line(e) and "qastanet" in str(e.value)


# --------------------------------------------------------------------------- offline / cache


@pytest.mark.parametrize("how", ["env", "argument"])
def test_offline_empty_cache_says_how_to_get_them(how, monkeypatch):
    if how == "argument":
        monkeypatch.delenv("SPAQ_OFFLINE")
    with pytest.raises(WeightsNotFoundError) as e:
        weights.resolve("qastanet", offline=True if how == "argument" else None)
    msg = _one_line(e)
    assert "spaq weights fetch qastanet" in msg
    assert ENV in msg
    assert "--checkpoint" in msg


def test_cache_dir_follows_env(_isolated):
    assert weights.cache_dir() == _isolated


def test_fetch_file_url_lands_in_cache_and_resolves(payload, monkeypatch, _isolated):
    src, url, sha = payload
    spec = _patch_registry(monkeypatch, sha256=sha, url=None)
    dest = weights.fetch("qastanet", url=url)
    assert dest == _isolated / spec.filename
    assert dest.read_bytes() == src.read_bytes()
    assert sorted(p.name for p in _isolated.iterdir()) == [spec.filename]  # no .part left
    w = weights.resolve("qastanet")  # offline: found in the cache
    assert (w.path, w.source, w.sha256, w.verified) == (dest, "cache", sha, True)


def test_official_copy_fetched_from_file_url(official_ckpt, tmp_path, monkeypatch, _isolated):
    # a local copy of the real checkpoint, served as file://; the registry sha is its own
    copy = tmp_path / "mirror" / "model_weights.pth.tar"
    copy.parent.mkdir()
    copy.write_bytes(official_ckpt.read_bytes())
    _patch_registry(monkeypatch, sha256=weights.sha256_file(copy))
    dest = weights.fetch("qastanet", url=copy.as_uri())
    w = weights.resolve("qastanet")
    assert w.source == "cache" and w.path == dest and w.sha256 == OFFICIAL_SHA and w.verified


def test_resolve_never_downloads_unless_asked(payload, monkeypatch, _isolated):
    src, url, sha = payload
    spec = _patch_registry(monkeypatch, sha256=sha, url=url)
    monkeypatch.delenv("SPAQ_OFFLINE")
    # online, a reachable URL, an empty cache: still no download without download=True
    with pytest.raises(WeightsNotFoundError) as e:
        weights.resolve("qastanet")
    msg = _one_line(e)
    assert "spaq weights fetch qastanet" in msg and "--url file:///" in msg and ENV in msg and "--checkpoint" in msg
    assert not (_isolated / spec.filename).exists()
    w = weights.resolve("qastanet", download=True)  # asked explicitly
    assert w.source == "download" and w.verified and w.path == _isolated / spec.filename
    assert weights.sha256_file(w.path) == sha
    # the second time it comes from the cache, even with downloads forbidden
    w2 = weights.resolve("qastanet", offline=True)
    assert w2.source == "cache" and w2.path == w.path


def test_fetched_file_gets_umask_permissions(payload, monkeypatch, _isolated):
    import os
    import stat

    _, url, sha = payload
    _patch_registry(monkeypatch, sha256=sha, url=None)
    old = os.umask(0o022)
    try:
        dest = weights.fetch("qastanet", url=url)
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644  # 0o666 & ~0o022, not mkstemp's 0o600


def test_fetch_failure_is_remembered_in_process(tmp_path, monkeypatch, _isolated):
    _patch_registry(monkeypatch, sha256="0" * 64)
    url = (tmp_path / "later.pth").as_uri()
    with pytest.raises(WeightsNotFoundError) as e:
        weights.fetch("qastanet", url=url)
    assert "not retried" not in _one_line(e)
    (tmp_path / "later.pth").write_bytes(b"x")  # would now be readable: the process does not try again
    opened = []
    monkeypatch.setattr(weights.urllib.request, "urlopen", lambda *a, **k: opened.append(a) or 1 / 0)
    with pytest.raises(WeightsNotFoundError) as e:
        weights.fetch("qastanet", url=url)
    assert "not retried in this process" in _one_line(e) and opened == []


def test_fetch_timeout_is_short_and_says_so(monkeypatch, _isolated):
    import socket

    _patch_registry(monkeypatch, sha256="0" * 64)
    seen = {}

    def hang(url, timeout):
        seen["timeout"] = timeout
        raise socket.timeout("timed out")

    monkeypatch.setattr(weights.urllib.request, "urlopen", hang)
    with pytest.raises(WeightsNotFoundError) as e:
        weights.fetch("qastanet", url="https://example.invalid/timeout-test/model_weights.pth.tar")
    msg = _one_line(e)
    assert seen["timeout"] == weights.FETCH_TIMEOUT_S <= 30
    assert f"no answer within {weights.FETCH_TIMEOUT_S:g} s" in msg and "--url file:///" in msg
    assert list(_isolated.iterdir()) == []


def test_bast_entry_is_the_packaged_localizer():
    from spaq.localization import default_weights_path

    spec = weights.REGISTRY["bast_ku100"]
    assert spec.env_var == "SPAQ_LOCALIZER_WEIGHTS" and spec.url is None
    w = weights.resolve("bast_ku100")
    assert (w.source, w.verified) == ("packaged", True) and w.path == default_weights_path()
    assert w.sha256 == spec.sha256 == hashlib.sha256(default_weights_path().read_bytes()).hexdigest()
    import json

    assert json.loads(default_weights_path().with_suffix(".json").read_text())["sha256"] == spec.sha256  # model card
    with pytest.raises(WeightsNotFoundError) as e:
        weights.fetch("bast_ku100")
    assert "ship inside spaq" in _one_line(e)


def test_version_lists_the_localizer(capsys):
    import json

    assert main(["version", "--json"]) == 0
    c = json.loads(capsys.readouterr().out)["checkpoints"]["bast_ku100"]
    assert c["official"] is True and c["sha256"] == weights.REGISTRY["bast_ku100"].sha256


def test_fetch_wrong_sha_leaves_nothing(payload, monkeypatch, _isolated):
    _, url, sha = payload
    _patch_registry(monkeypatch, sha256="0" * 64)
    with pytest.raises(WeightsNotFoundError) as e:
        weights.fetch("qastanet", url=url)
    msg = _one_line(e)
    assert "sha256" in msg and sha[:12] in msg
    assert list(_isolated.iterdir()) == []  # neither the target nor a .part file
    with pytest.raises(WeightsNotFoundError):
        weights.resolve("qastanet")


def test_fetch_unreachable_url_leaves_nothing(tmp_path, monkeypatch, _isolated):
    _patch_registry(monkeypatch, sha256="0" * 64)
    url = (tmp_path / "does-not-exist.pth").as_uri()
    with pytest.raises(WeightsNotFoundError) as e:
        weights.fetch("qastanet", url=url)
    assert "cannot download" in _one_line(e) and url in str(e.value)
    assert list(_isolated.iterdir()) == []


def test_corrupt_cached_file_is_not_used(payload, monkeypatch, _isolated):
    src, url, sha = payload
    spec = _patch_registry(monkeypatch, sha256=sha, url=url)
    _isolated.mkdir()
    cached = _isolated / spec.filename
    cached.write_bytes(src.read_bytes()[:-1] + b"X")  # one byte off
    with pytest.raises(WeightsNotFoundError) as e:  # offline: the bad file is not accepted
        weights.resolve("qastanet")
    assert "spaq weights fetch" in _one_line(e)
    # online and asked to download: it is replaced by a good download
    monkeypatch.delenv("SPAQ_OFFLINE")
    w = weights.resolve("qastanet", download=True)
    assert w.source == "download" and w.path == cached and weights.sha256_file(cached) == sha
    assert sorted(p.name for p in _isolated.iterdir()) == [spec.filename]


def test_corrupt_official_cache_not_used(_isolated):
    # with the real registry entry: garbage under the cache name is ignored
    _isolated.mkdir()
    (_isolated / weights.REGISTRY["qastanet"].filename).write_bytes(b"\0" * 1000)
    with pytest.raises(WeightsNotFoundError):
        weights.resolve("qastanet")


# --------------------------------------------------------------------------- CLI


def test_cli_weights_fetch_and_path(payload, monkeypatch, capsys, _isolated):
    _, url, sha = payload
    spec = _patch_registry(monkeypatch, sha256=sha, url=None)
    assert main(["weights", "path", "qastanet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("spaq: error:") and len(err.strip().splitlines()) == 1 and "spaq weights fetch" in err
    assert main(["weights", "fetch", "qastanet", "--url", url]) == 0
    assert capsys.readouterr().out.strip() == str(_isolated / spec.filename)
    assert main(["weights", "path", "qastanet"]) == 0
    assert capsys.readouterr().out.strip() == str(_isolated / spec.filename)


def test_cli_weights_fetch_unknown_name(capsys):
    assert main(["weights", "fetch", "bogus"]) == 2
    cap = capsys.readouterr()
    assert cap.err.startswith("spaq: error: unknown weights 'bogus'") and len(cap.err.strip().splitlines()) == 1


def test_cli_weights_fetch_bad_sha(payload, monkeypatch, capsys, _isolated):
    _, url, _ = payload
    _patch_registry(monkeypatch, sha256="f" * 64)
    assert main(["weights", "fetch", "qastanet", "--url", url]) == 2
    cap = capsys.readouterr()
    assert cap.err.startswith("spaq: error:") and "sha256" in cap.err and "Traceback" not in cap.err + cap.out
    assert list(_isolated.iterdir()) == []


def test_cached_array_writes_reads_and_rechecks(tmp_path, monkeypatch):
    import numpy as np

    from spaq.cache import cached_array

    monkeypatch.setenv("SPAQ_CACHE_DIR", str(tmp_path))
    calls = []

    def make():
        calls.append(1)
        return np.arange(6, dtype=np.int32).reshape(2, 3)

    a = cached_array("sub/table_v1", make)
    assert (tmp_path / "sub" / "table_v1.npy").is_file() and len(calls) == 1
    b = cached_array("sub/table_v1", make)
    assert len(calls) == 1 and np.array_equal(a, b)  # read back, not recomputed
    c = cached_array("sub/table_v1", make, check=lambda t: t.shape == (3, 2))  # rejected -> recomputed
    assert len(calls) == 2 and c.shape == (2, 3)
    (tmp_path / "sub" / "table_v1.npy").write_bytes(b"not a npy file")
    assert np.array_equal(cached_array("sub/table_v1", make), a) and len(calls) == 3
    assert not [p for p in (tmp_path / "sub").iterdir() if p.name != "table_v1.npy"]  # no temp files left
    # an unwritable cache only costs time (its folder is a file here)
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(b"")
    monkeypatch.setenv("SPAQ_CACHE_DIR", str(blocker))
    assert np.array_equal(cached_array("elsewhere/t", make), a) and len(calls) == 4
    assert not (blocker / "elsewhere" / "t.npy").exists()


def test_cached_array_file_gets_umask_permissions(tmp_path, monkeypatch):
    import os
    import stat

    import numpy as np

    from spaq.cache import cached_array

    monkeypatch.setenv("SPAQ_CACHE_DIR", str(tmp_path))
    old = os.umask(0o022)
    try:
        cached_array("perm/t", lambda: np.zeros(3))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "perm" / "t.npy").stat().st_mode) == 0o644
