"""Version 14 of the quality features (issue 19): ``noisiness``, the envelope fluctuation a degraded band
adds to the reference's. Noise 10-20 dB below a tone raises the band's level by less than the level JND
(``added_db`` does not see it) but makes its steady envelope fluctuate, which is how it is heard."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from spaq.auditory.frontend import AuditoryFrontEnd
from spaq.metrics.functional.quality import pool_features, quality_maps
from spaq.models.quality import LATER_FEATURES, TIMBRAL_FEATURES, QualityMapping

FS = 48000


@pytest.fixture(scope="module")
def fe():
    return AuditoryFrontEnd(band_group=1, decimate=True, fast_spectrum_dtype=torch.float32)


def _pooled(fe, ref, deg):
    r = torch.from_numpy(np.ascontiguousarray(ref))[None]
    d = torch.from_numpy(np.ascontiguousarray(deg))[None]
    with torch.no_grad():
        return {k: float(v[0]) for k, v in pool_features(quality_maps(r, d, fe, None)).items()}


def _tones(n=FS, f0=220.0, partials=6, level=0.05):
    t = np.arange(n) / FS
    x = sum(np.sin(2 * np.pi * f0 * k * t + k) / k for k in range(1, partials + 1)) * level
    return np.stack([x, 0.8 * x])


def _noise_like(x, snr_db, seed=0, f0=220.0, partials=6, half_bw_hz=15.0):
    """Gaussian noise in +-``half_bw_hz`` around each partial of ``_tones`` (where a codec's quantisation
    noise of a tonal signal sits), ``snr_db`` below ``x`` per channel; ``partials=0``: below 1.5 kHz."""
    rng = np.random.default_rng(seed)
    spec = np.fft.rfft(rng.standard_normal(x.shape), axis=-1)
    f = np.fft.rfftfreq(x.shape[-1], 1 / FS)
    keep = (np.min(np.abs(f[:, None] - f0 * np.arange(1, partials + 1)[None]), axis=1) <= half_bw_hz if partials
            else f < 1500.0)
    n = np.fft.irfft(spec * keep, n=x.shape[-1], axis=-1)
    rms = lambda a: np.sqrt(np.mean(a ** 2, axis=-1, keepdims=True))  # noqa: E731
    return n / rms(n) * rms(x) * 10 ** (-snr_db / 20)


def test_identity_and_a_gain_add_no_noisiness(fe):
    x = _tones()
    assert _pooled(fe, x, x)["noisiness"] == 0.0
    # a level change scales the band power, not its fluctuation relative to its mean (var / mean^2 is
    # scale-free, and the gain match brings the degraded signal back): only float32 rounding (~1e-6) is left
    assert _pooled(fe, x, 0.5 * x)["noisiness"] == pytest.approx(0.0, abs=1e-4)


def test_noise_under_a_tone_grows_with_its_level_where_added_db_does_not_see_it(fe):
    x = _tones()
    got = {snr: _pooled(fe, x, x + _noise_like(x, snr)) for snr in (30, 20, 10)}
    nz = [got[s]["noisiness"] for s in (30, 20, 10)]
    assert nz[0] < nz[1] < nz[2]
    # at 20 dB the noise raises each band's level by ~0.04 dB: under the 1.5 dB JND, added_db ~ 0,
    # while the envelope of a steady partial now fluctuates (var/mean^2 ~ 2 x 0.01 for one partial per band)
    assert got[20]["added_db"] < 0.05
    assert nz[1] > 0.005


def test_noise_added_to_noise_adds_little(fe):
    """A band that already fluctuates as noise (var/mean^2 ~ 1) cannot fluctuate more: the same noise
    that makes a tone noisy barely changes a noise reference."""
    tone = _tones()
    n = _noise_like(tone, 0.0, seed=3, partials=0)  # noise as loud as the tone, below 1.5 kHz
    on_noise = _pooled(fe, n, n + _noise_like(n, 10, seed=1, partials=0))["noisiness"]
    on_tone = _pooled(fe, tone, tone + _noise_like(tone, 10, seed=1, partials=0))["noisiness"]
    assert on_noise < 0.1 * on_tone


def test_parameters_without_a_noisiness_weight_give_it_none():
    """Parameters written before version 14 (the predictor's teacher quality_v5, versions 1-13) have no
    noisiness weight: it is read as 0, so their scores do not change."""
    assert "noisiness" in TIMBRAL_FEATURES and "noisiness" in LATER_FEATURES
    p = {"timbral_weights": {"added_db": 1.0, "missing_db": 1.0, "incoherence": 0.0},
         "spatial_weights": {"d_ild_db": 0.1, "d_ic": 0.1, "d_ipd": 0.1, "d_directiveness": 0.0, "d_direction": 0.0,
                             "d_ic_mean": 1.0, "d_ild_mean": 0.1},
         "exponent": 1.5}
    m = QualityMapping.from_params(p)
    f = {k: torch.tensor([0.2], dtype=torch.float64) for k in TIMBRAL_FEATURES}
    f0 = {**f, "noisiness": torch.tensor([0.0], dtype=torch.float64)}
    assert m(f)["score"].item() == m(f0)["score"].item()
    m2 = QualityMapping.from_params({**p, "timbral_weights": {**p["timbral_weights"], "noisiness": 2.0}})
    assert m2(f)["score"].item() < m2(f0)["score"].item()
