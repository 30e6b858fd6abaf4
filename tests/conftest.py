import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPAQ_SHARED_DIR", REPO.parent / "shared"))
QASTANET_DIR = SHARED / "qastanet"
QASTANET_CKPT = QASTANET_DIR / "model_weights.pth.tar"

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread (small models: thread synchronisation dominates)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def qastanet_checkpoint():
    if not QASTANET_CKPT.is_file():
        pytest.skip(f"official QASTAnet checkpoint not found at {QASTANET_CKPT} (../shared is absent)")
    return QASTANET_CKPT


@pytest.fixture(scope="session")
def qastanet_metric(qastanet_checkpoint):
    """The qastanet metric in its default (fast) mode."""
    from spaq.metrics.qastanet import Qastanet

    return Qastanet(checkpoint=qastanet_checkpoint)


@pytest.fixture(scope="session")
def qastanet_exact_metric(qastanet_checkpoint):
    """The qastanet metric in exact mode (float64, every band at full rate)."""
    from spaq.metrics.qastanet import Qastanet

    return Qastanet(checkpoint=qastanet_checkpoint, fast=False)


def plane_wave_scene(order: int, seconds: float, fs: int = 48000, seed: int = 0, dirs=((30.0, 10.0), (-110.0, 0.0))):
    """Deterministic ambisonic scene ``(n_ch, T)`` float64: band-limited noise bursts and a
    harmonic tone as plane waves, W RMS -26 dBFS."""
    import scipy.signal as sps

    from spaq.spatial.sh import sh_matrix

    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    t = np.arange(n) / fs
    tone = sum(k ** -1.0 * np.sin(2 * np.pi * 220 * k * t + rng.uniform(0, 6)) for k in range(1, 30))
    b, a = sps.butter(2, [200, 12000], btype="bandpass", fs=fs)
    noise = sps.lfilter(b, a, rng.standard_normal(n)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    sig = np.stack([tone / tone.std(), noise / noise.std()])[: len(dirs)]
    y = sh_matrix(order, [d[0] for d in dirs], [d[1] for d in dirs])
    x = y @ sig
    return x * 10 ** (-26 / 20) / np.sqrt(np.mean(x[0] ** 2))


def binaural_noise(seconds: float, fs: int = 48000, seed: int = 0, itd: int = 12, ild_db: float = 4.0):
    """Binaural-like ``(2, T)``: correlated band-limited noise with an ITD (samples) and ILD (dB)."""
    import scipy.signal as sps

    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    b, a = sps.butter(2, [150, 14000], btype="bandpass", fs=fs)
    s = sps.lfilter(b, a, rng.standard_normal(n + itd))
    left = s[itd:] * 10 ** (ild_db / 40)
    right = s[:n] * 10 ** (-ild_db / 40)
    x = np.stack([left, right])
    return x * 10 ** (-26 / 20) / np.sqrt(np.mean(x ** 2))


@pytest.fixture(scope="session")
def fe():
    """The exact-mode front-end the quality training recipe uses."""
    from spaq.train.quality import _metric

    return _metric().frontend


def interrupted_batch(monkeypatch, first_id: str, run) -> None:
    """Run ``run()`` (a ``score_batch`` call) with every item but ``first_id`` interrupted by a
    KeyboardInterrupt, as a user's Ctrl-C after the first item leaves it for a resume; scoring is
    restored afterwards."""
    from spaq import batch as batch_mod

    real = batch_mod._score_one

    def only_first(task):
        if task["id"] != first_id:
            raise KeyboardInterrupt
        return real(task)

    with monkeypatch.context() as m:
        m.setattr(batch_mod, "_score_one", only_first)
        with pytest.raises(KeyboardInterrupt):
            run()
