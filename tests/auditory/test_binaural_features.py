"""Direction-carrying binaural features: shapes, ILD sign and IPD of a lateral source, content invariance."""
import numpy as np
import pytest
import torch

from spaq.auditory.binaural_features import FEATURES, binaural_features, feature_frontend

FS = 48000
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _lateral(seed=0, delay=10, gain=0.5, n=FS // 2):
    s = np.random.default_rng(seed).standard_normal(n + 100)
    return np.stack([s[100:100 + n], gain * s[100 - delay:100 - delay + n]])  # left leads and is louder


def test_shapes_and_batch():
    fe = feature_frontend(FS)
    x = torch.from_numpy(np.stack([_lateral(0), _lateral(1)]))  # (2 items, 2 ears, T)
    f, lev = binaural_features(x, fe)
    nf = x.shape[-1] // fe.frame_len
    assert f.shape == (2, len(FEATURES), fe.n_bands, nf) and lev.shape == (2, 2, fe.n_bands, nf)
    assert torch.all(torch.isfinite(f)) and torch.all((f[:, 3] >= 0) & (f[:, 3] <= 1))
    f0, _ = binaural_features(x[0], sample_rate=FS)
    assert torch.allclose(f0, f[0], atol=1e-4)
    with pytest.raises(ValueError):
        binaural_features(x[0, :1], fe)


def test_lateral_source_ild_and_ipd():
    fe = feature_frontend(FS)
    delay, gain = 10, 0.5
    f, _ = binaural_features(_lateral(delay=delay, gain=gain), fe)
    m = f.mean(-1).double().numpy()
    fc = fe.center_frequencies_hz.numpy()
    assert np.allclose(m[0], 20 * np.log10(1 / gain), atol=0.2)  # louder left: positive ILD everywhere
    ipd = np.degrees(np.arctan2(m[2], m[1]))
    low = fc < 1000
    assert np.allclose(ipd[low], 360 * fc[low] * delay / FS, atol=3.0)  # fine structure: left leads
    assert np.all(ipd[fc > 1500] > 0)  # envelope IPD: left leads too
    assert np.all(m[3] > 0.9)
    fr, _ = binaural_features(_lateral(delay=delay, gain=gain)[::-1].copy(), fe)
    assert np.allclose(fr.mean(-1)[0].numpy(), -m[0], atol=0.2)


def test_content_invariance_one_hrtf_direction():
    from scipy.signal import oaconvolve

    from spaq.data.sources import make_source
    from spaq.spatial.hrtf import load_hrtf

    h = load_hrtf("ku100", FS)
    rng = np.random.default_rng(3)
    k, k_other = int(h.nearest_index(50.0, 10.0)), int(h.nearest_index(-50.0, 10.0))
    means = []
    for kind, kk in (("pink_noise", k), ("noise_bursts", k), ("pink_noise", k_other)):
        s, _ = make_source(kind, 1.0, FS, rng, level_dbfs=-30)
        y = oaconvolve(s[None], h.hrir[kk], axes=-1)[:, :FS]
        f, lev = binaural_features(y, sample_rate=FS)
        w = (lev.max(0).values > lev.max() - 40).double()
        means.append(((f.double() * w).sum(-1) / w.sum(-1).clamp(min=1)).numpy())
    same = np.abs(means[0][0] - means[1][0]).mean()
    other = np.abs(means[0][0] - means[2][0]).mean()
    assert same < 1.0 and other > 5 * same  # ILD: two contents at one direction agree, the mirror direction not
    ipd_same = np.abs(np.angle(np.exp(1j * (np.arctan2(means[0][2], means[0][1]) - np.arctan2(means[1][2], means[1][1])))))
    assert np.degrees(np.median(ipd_same)) < 10


def test_one_pass_framed_at_two_lengths_equals_two_passes():
    """``frame_lens``: one pass of the bands framed at several lengths gives exactly what a front-end of
    each frame length gives, when the decimation factors divide both (``divisor_ms``); the front-end's own
    length alone is the default call, bit for bit; a length the decimation does not divide is refused."""
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((2, FS // 2)) * 0.03)
    fe = feature_frontend(FS, frame_ms=20.0, exact=False, coarse=True)
    a = binaural_features(x, fe)
    (b,) = binaural_features(x, fe, frame_lens=[fe.frame_len])
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    both = feature_frontend(FS, frame_ms=20.0, exact=False, coarse=True, divisor_ms=10.0)
    assert all(480 % d == 0 for d in both.decimation) and any(480 % d for d in fe.decimation)
    f20, f10 = binaural_features(x, both, frame_lens=[960, 480])
    own10 = binaural_features(x, feature_frontend(FS, frame_ms=10.0, exact=False, coarse=True))
    assert f10[0].shape[-1] == 2 * f20[0].shape[-1] == 50
    assert torch.equal(f10[0], own10[0]) and torch.equal(f10[1], own10[1])
    # the same band powers, framed twice as long: each 20 ms level is the mean power of its two 10 ms frames
    # (exact in real arithmetic; the powers are float32 sums of 8-16 samples and the levels float32 dB, so
    # the relative error is a few float32 epsilons, 1e-6 at most: rtol 1e-4 leaves two orders of margin)
    p10 = 10 ** (f10[1].double() / 10)
    p20 = 10 ** (f20[1].double() / 10)
    torch.testing.assert_close(p20, 0.5 * (p10[..., 0::2] + p10[..., 1::2]), rtol=1e-4, atol=0)
    with pytest.raises(ValueError, match="not a multiple"):
        binaural_features(x, fe, frame_lens=[480])


def test_band_cues_lazily_give_the_same_features():
    """``BandCues``: the first bands first (a gate), then the rest, equals one eager pass bit for bit; the low
    bands alone are those bands of the full result (only the spectral shape, relative to the bands computed,
    differs); a frame length dropped midway (``keep_lens``) gives None, the kept one is unchanged."""
    from spaq.auditory.binaural_features import BandCues

    x = torch.from_numpy(np.random.default_rng(4).standard_normal((2, FS // 2)) * 0.03)
    fe = feature_frontend(FS, frame_ms=20.0, exact=False, coarse=True, divisor_ms=10.0)
    f20, f10 = binaural_features(x, fe, frame_lens=[960, 480])
    cues = BandCues(x, fe, frame_lens=[960, 480])
    (lo, lo_lev), _ = cues.result(8)
    assert cues.n_done >= 8 and lo.shape[-2] == 8
    assert torch.equal(lo[:4], f20[0][:4, :8]) and torch.equal(lo_lev, f20[1][:, :8])  # ILD, IPD, coherence, levels
    assert not torch.equal(lo[4:], f20[0][4:, :8])  # the shape is relative to the 8 bands' mean
    g20, g10 = cues.result()
    assert all(torch.equal(a, b) for a, b in zip(g20 + g10, f20 + f10))
    lazy = BandCues(x, fe, frame_lens=[960, 480])
    lazy.result(8)
    h20, h10 = lazy.keep_lens([0]).result()
    assert h10 is None and torch.equal(h20[0], f20[0]) and torch.equal(h20[1], f20[1])


@pytest.mark.parametrize("kw", [dict(), dict(frame_ms=20.0, exact=False, coarse=True, divisor_ms=10.0)])
def test_two_streams_give_the_same_features_bit_for_bit(kw, monkeypatch):
    """With two threads allowed, ``BandCues`` computes the plan's items on two threads, costliest first (not in the
    plan's order): every value equals the one-thread pass, and the second thread did take items. Lazily too (the
    low bands first, as the localiser's gate asks)."""
    import threading

    from spaq.auditory import binaural_features as bf

    rng = np.random.default_rng(11)
    x = torch.from_numpy(np.stack([rng.standard_normal(FS), rng.standard_normal(FS)]) * 0.03)
    x[1] = 0.6 * x[1] + 0.4 * torch.roll(x[0], 9)
    fe = feature_frontend(FS, **kw)
    lens = [fe.frame_len] if "divisor_ms" not in kw else [960, 480]
    one = binaural_features(x, fe, frame_lens=lens)  # the fixture's one thread: in order, in this thread
    names = []
    item = bf.BandCues._cross_of
    monkeypatch.setattr(bf.BandCues, "_cross_of",
                        lambda self, *a: names.append(threading.current_thread().name) or item(self, *a))
    torch.set_num_threads(2)
    two = binaural_features(x, fe, frame_lens=lens)
    lazy = bf.BandCues(x, fe, frame_lens=lens)
    lazy.upto(8)
    three = lazy.result()
    assert len(set(names)) == 2 and threading.main_thread().name in names
    for a, b, c in zip(one, two, three):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])
