"""Version 4 of the quality features (issue 19): the diffuse part of each signal's band power is
judged as a texture (over a 1 s moving average, weighted by 1 - the reference's interaural
coherence); direct sound is compared frame by frame as before."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spaq.metrics.functional.quality import (TEXTURE_FRAMES, moving_average, pool_features, quality_maps,
                                             texture_power)

FS = 48000


def _features(fe, ref, deg, chunk_frames=None):
    r = torch.from_numpy(np.ascontiguousarray(ref))[None]
    d = torch.from_numpy(np.ascontiguousarray(deg))[None]
    with torch.no_grad():
        return {k: float(v[0]) for k, v in pool_features(quality_maps(r, d, fe, None, chunk_frames=chunk_frames)).items()}


@pytest.mark.parametrize("n", [1, 4, 5, 25])
def test_moving_average_is_the_centred_mean_of_the_frames_the_window_holds(n):
    x = torch.from_numpy(np.random.default_rng(0).random((2, 3, 17)))
    got = moving_average(x, n).numpy()
    want = np.empty_like(got)
    for i in range(17):
        lo, hi = max(0, i - n // 2), min(17, i - n // 2 + n)
        want[..., i] = x.numpy()[..., lo:hi].mean(-1)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    # a constant is its own average; n = 1 is the identity
    assert torch.allclose(moving_average(torch.ones(1, 9, dtype=torch.float64), n), torch.ones(1, 9, dtype=torch.float64))
    if n == 1:
        np.testing.assert_allclose(got, x.numpy(), rtol=1e-12)


def test_texture_power_keeps_direct_sound_and_smooths_diffuse_sound():
    p = torch.from_numpy(np.random.default_rng(1).random((1, 2, 4, 40)) + 0.1)
    one, zero = torch.ones(1, 4, 40, dtype=torch.float64), torch.zeros(1, 4, 40, dtype=torch.float64)
    assert torch.equal(texture_power(p, one), p)
    assert torch.allclose(texture_power(p, zero), moving_average(p, TEXTURE_FRAMES))
    half = texture_power(p, 0.5 * one)
    assert torch.allclose(half, 0.5 * p + 0.5 * moving_average(p, TEXTURE_FRAMES))


def test_frame_wise_level_jitter_of_diffuse_sound_costs_less_than_of_direct_sound(fe):
    """The same +-4 dB level jitter per 80 ms (decorrelated resynthesis does this to a diffuse part)
    on a diffuse reference (independent noise at the ears) counts far less than on a diotic one:
    the texture's mean level is kept. Diotic input is not smoothed at all."""
    rng = np.random.default_rng(3)
    n = 2 * FS
    jit = np.repeat(10 ** (rng.choice([-4.0, 4.0], n // 3840 + 1) / 20), 3840)[:n]
    diffuse = np.stack([rng.standard_normal(n), rng.standard_normal(n)]) * 0.05
    diotic = np.stack([diffuse[0]] * 2)
    f_diff = _features(fe, diffuse, diffuse * jit)
    f_diot = _features(fe, diotic, diotic * jit)
    lvl = lambda f: f["added_db"] + f["missing_db"]  # noqa: E731
    assert lvl(f_diot) > 0.5
    # without the texture step both cost the same (the ear-averaged level jitters alike); the
    # coherence of 40 ms frames of independent noise is not 0, so part of the jitter still counts
    assert lvl(f_diff) < 0.6 * lvl(f_diot)
    # identity stays exactly zero
    f_id = _features(fe, diffuse, diffuse)
    assert f_id["added_db"] == 0.0 and f_id["missing_db"] == 0.0


def test_texture_is_chunk_invariant(fe):
    """quality_maps computes long signals in chunks; the smoothing runs on the whole signal's band
    powers, so chunked and whole-signal level features agree to ~1e-4 relative (the texture weights,
    the reference's interaural coherence, differ by the front-end's chunking: ~1e-3 for the
    coherence-based incoherence term, which the texture does not touch)."""
    rng = np.random.default_rng(5)
    n = 14 * FS  # 350 frames: more than one chunk of 250 with 25 frames of context
    ref = np.stack([rng.standard_normal(n), rng.standard_normal(n)]) * 0.05
    deg = ref * np.repeat(10 ** (rng.uniform(-3, 3, n // 4800 + 1) / 20), 4800)[:n]
    a = _features(fe, ref, deg, chunk_frames=None)
    b = _features(fe, ref, deg, chunk_frames=250)
    for k in ("added_db", "missing_db"):
        assert b[k] == pytest.approx(a[k], rel=1e-3)
    assert a["added_db"] > 0.01 and a["missing_db"] > 0.01
