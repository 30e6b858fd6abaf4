"""Training the localiser from a labelled index (audio files and precomputed log-mels)."""
import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from spaq.errors import SpaqError, SpaqInputError
from spaq.models.bast import BAST, BASTConfig
from spaq.spatial.angles import great_circle_deg
from spaq.train.localizer import (LocalizerTrainConfig, load_checkpoint, load_input_features, predict, read_index,
                                  save_checkpoint, train_from_csv, waveforms_to_features)

SMALL = dict(n_mels=32, n_frames=24, patch=(8, 8), stride=(4, 4), dim=32, depth=1, heads=2, mlp_dim=64,
             sample_rate=16000, n_fft=512, hop=160, fmax=7000.0, dropout=0.0)
FS = 16000
DIRS = [(90.0, 0.0), (-90.0, 0.0), (0.0, 0.0), (180.0, 0.0)]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def toy_binaural(az, rng, n=FS // 2, tone=False):
    """A crude binaural scene: interaural level and time difference from the azimuth,
    a front/back spectral tilt (enough for a model to learn four directions)."""
    s = np.sin(2 * np.pi * 700 * np.arange(n) / FS) if tone else rng.standard_normal(n)
    a = np.radians(az)
    gl, gr = 1.0 + 0.8 * np.sin(a), 1.0 - 0.8 * np.sin(a)
    d = int(round(8 * np.sin(a)))
    left, right = gl * np.roll(s, max(-d, 0)), gr * np.roll(s, max(d, 0))
    if np.cos(a) < -0.5:  # behind: low-pass both ears
        k = np.ones(6) / 6
        left, right = np.convolve(left, k, "same"), np.convolve(right, k, "same")
    return 0.1 * np.stack([left, right])


def build_index(tmp_path, n_per_dir=3, npy_every=4):
    rng = np.random.default_rng(0)
    cfg = BASTConfig(**SMALL)
    rows = []
    k = 0
    for az, el in DIRS:
        for i in range(n_per_dir):
            tone = i % 2 == 1
            x = toy_binaural(az, rng, tone=tone)
            cls = "tone" if tone else "noise"
            if k % npy_every == 3:
                name = f"f{k}.npy"
                np.save(tmp_path / name, waveforms_to_features(x[None], cfg)[0].numpy())
            else:
                name = f"f{k}.wav"
                sf.write(tmp_path / name, x.T, FS)
            # azimuths given as 0..360 for some rows
            rows.append((name, cls, az % 360 if k % 2 else az, el))
            k += 1
    idx = tmp_path / "index.csv"
    with open(idx, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["input_file", "class", "azimuth_deg", "elevation_deg"])
        w.writerows(rows)
    return idx


def test_csv_training_fits_and_checkpoint_roundtrip(tmp_path):
    idx = build_index(tmp_path)
    tc = LocalizerTrainConfig(model=SMALL, epochs=30, batch_size=8, lr=3e-3, val_fraction=0.2, seed=1)
    out = tmp_path / "loc.pt"
    summary = train_from_csv(idx, out, tc, log=lambda m: None)
    hist = summary["history"]
    assert hist[-1]["train_loss"] < 0.5 * hist[0]["train_loss"]
    assert summary["classes"] == ["noise", "tone"]
    assert len(summary["validation_files"]) == 2  # 20 % of 12 files, split by file
    model, meta = load_checkpoint(out)
    assert meta["class_names"] == ["noise", "tone"] and meta["sha256"] == summary["sha256"]
    # the model fits its training directions
    rows = read_index(idx)
    cfg = model.cfg
    errs = []
    for r in rows:
        if r.path.name in summary["validation_files"]:
            continue
        f = load_input_features(r.path, cfg)
        d, p = predict(model, f[None, :, :, :cfg.n_frames])
        az = np.degrees(np.arctan2(d[0, 1], d[0, 0]))
        el = np.degrees(np.arcsin(np.clip(d[0, 2], -1, 1)))
        errs.append(great_circle_deg(r.azimuth_deg, r.elevation_deg, az, el))
    assert np.median(errs) < 25.0, errs


def test_index_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("input_file,class,azimuth_deg\nx.wav,a,10\n")
    with pytest.raises(SpaqInputError, match="elevation_deg"):
        read_index(bad)
    bad.write_text("input_file,class,azimuth_deg,elevation_deg\nx.wav,a,10,95\n")
    with pytest.raises(SpaqInputError, match="elevation 95"):
        read_index(bad)
    sf.write(tmp_path / "mono.wav", np.zeros(FS), FS)
    with pytest.raises(SpaqInputError, match="2 channels"):
        load_input_features(tmp_path / "mono.wav", BASTConfig(**SMALL))
    np.save(tmp_path / "bad.npy", np.zeros((2, 40, 30)))
    with pytest.raises(SpaqInputError, match=r"\[2, 32, T\]"):
        load_input_features(tmp_path / "bad.npy", BASTConfig(**SMALL))


def test_checkpoint_of_other_architecture_is_refused(tmp_path):
    p = tmp_path / "other.pt"
    torch.save({"format": "qastanet/1", "state_dict": {}}, p)
    with pytest.raises(SpaqError, match="not a spaq BAST localizer checkpoint"):
        load_checkpoint(p)
    m = BAST(BASTConfig(**SMALL))
    save_checkpoint(p, m, {})
    ck = torch.load(p, weights_only=True)
    ck["config"]["dim"] = 48
    torch.save(ck, p)
    with pytest.raises(SpaqError, match="does not match the BAST architecture"):
        load_checkpoint(p)
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(SpaqError, match="not a loadable checkpoint"):
        load_checkpoint(p)
