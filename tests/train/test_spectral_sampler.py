"""The spectral-domain scene sampler matches true binaural rendering (short HRIRs)."""
import numpy as np
import torch
from scipy.signal import oaconvolve

from spaq.models.bast import BASTConfig, BinauralLogMel
from spaq.spatial.hrtf import load_hrtf
from spaq.train.localizer import SpectralSceneSampler, SyntheticSpec

CFG = dict(n_mels=32, n_frames=24, patch=(8, 8), stride=(4, 4), dim=32, depth=1, heads=2, mlp_dim=64,
           sample_rate=16000, n_fft=512, hop=160, fmax=7000.0)


def test_sampler_matches_rendering_and_labels():
    for features in ("logmel", "logmel_ipd"):
        cfg = BASTConfig(**CFG, features=features)
        spec = SyntheticSpec(sources=("pink_noise",), noise_fraction=0.0)
        smp = SpectralSceneSampler(cfg, spec, n_bank=3, seed=0, log=lambda m: None)
        hrtf = load_hrtf("ku100", cfg.sample_rate)
        j = 1234
        rng = np.random.default_rng(9)
        s = 0.05 * rng.standard_normal(cfg.window_samples)
        S = torch.stft(torch.as_tensor(s, dtype=torch.float32), cfg.n_fft, cfg.hop, window=torch.hann_window(cfg.n_fft),
                       center=True, return_complex=True)
        smp.bank = (S.abs() ** 2)[None, :, : cfg.n_frames]
        smp.H, smp.dirs = smp.H[j: j + 1], smp.dirs[j: j + 1]
        f, d, c = smp.sample(2, torch.Generator().manual_seed(0))
        y = oaconvolve(s[None], hrtf.hrir[j], axes=-1)[:, : cfg.window_samples]
        true = BinauralLogMel(cfg)(torch.as_tensor(y, dtype=torch.float32)[None])[0]
        assert f.shape == (2,) + cfg.feature_shape()
        lm_t = true if features == "logmel" else true[:, 0]
        lm_a = f[0] if features == "logmel" else f[0][:, 0]
        ild_t = (lm_t[0] - lm_t[1])[:, 2:-2].mean(-1)
        ild_a = (lm_a[0] - lm_a[1])[:, 2:-2].mean(-1)
        assert (ild_t - ild_a).abs().max() < 0.1, (ild_t - ild_a).abs().max()
        assert ild_t.abs().max() > 0.5  # a real interaural difference was compared
        if features == "logmel_ipd":
            cos_t, cos_a = true[0, 1, :, 2:-2], f[0][0, 1, :, 2:-2]
            assert (cos_t - cos_a).abs().median() < 0.05
        v = np.array([np.cos(np.radians(hrtf.elevation_deg[j])) * np.cos(np.radians(hrtf.azimuth_deg[j])),
                      np.cos(np.radians(hrtf.elevation_deg[j])) * np.sin(np.radians(hrtf.azimuth_deg[j])),
                      np.sin(np.radians(hrtf.elevation_deg[j]))])
        assert np.allclose(d[0].numpy(), v, atol=1e-5) and int(c[0]) == 0
