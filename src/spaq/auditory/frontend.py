"""The auditory front-end shared by every spaq metric (QASTAnet, cues, quality).

``AuditoryFrontEnd`` holds the gammatone filterbank, the envelope low-pass, the hearing
threshold floors and the directiveness tables as buffers, so that one object serves the
official QASTAnet checkpoint (whose buffers overwrite the built-in ones) and spaq's own
training-free metrics, on CPU or GPU.
"""
from __future__ import annotations

import torch
from torch import nn

from .binaural_cues import binaural_frame_features
from .directiveness import directiveness, erb_grouping_matrix, smoothing_coefficients
from .envelope import analytic_signal, first_order_lowpass_fir, lowpass_envelope
from .gammatone import GammatoneFilterbank
from .thresholds import band_power_floor

__all__ = ["AuditoryFrontEnd"]


class AuditoryFrontEnd(nn.Module):
    """Gammatone (315-12500 Hz, 1 ERB) -> |.| -> analytic envelope -> 150 Hz low-pass ->
    40 ms frames -> power / ILD / coherence; plus first-order ambisonic directiveness.

    All methods take ``float32`` or ``float64`` tensors at ``sample_rate``.
    """

    def __init__(self, sample_rate: int = 48000, frame_ms: float = 40.0, env_lowpass_hz: float = 150.0,
                 mso_rolloff_hz: float = 1300.0, full_scale_db_spl: float = 100.0):
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.frame_len = int(frame_ms / 1000 * sample_rate)
        self.mso_rolloff_hz = mso_rolloff_hz
        self.gammatone = GammatoneFilterbank(sample_rate)
        fc = self.gammatone.center_frequencies_hz.numpy()
        self.register_buffer("lowpass_fir", torch.from_numpy(first_order_lowpass_fir(env_lowpass_hz, sample_rate)))
        self.register_buffer("power_floor", torch.from_numpy(band_power_floor(fc, full_scale_db_spl)))
        n_fft = self.frame_len
        self.register_buffer("dir_window", torch.sqrt(torch.hann_window(n_fft)))
        self.register_buffer("dir_alpha", torch.from_numpy(smoothing_coefficients(n_fft, n_fft, sample_rate)))
        self.register_buffer("dir_grouping", torch.from_numpy(erb_grouping_matrix(fc, n_fft, sample_rate)))

    @property
    def center_frequencies_hz(self) -> torch.Tensor:
        return self.gammatone.center_frequencies_hz

    @property
    def n_bands(self) -> int:
        return self.gammatone.n_bands

    def n_frames(self, n_samples: int) -> int:
        return n_samples // self.frame_len

    def band_signals(self, x: torch.Tensor):
        """``(..., T)`` -> (complex band signals ``(..., F, T)``, low-passed analytic envelopes ``(..., F, T)``)."""
        band = self.gammatone(x)
        env = lowpass_envelope(analytic_signal(torch.abs(band)), self.lowpass_fir)
        return band, env

    def binaural(self, x: torch.Tensor) -> dict:
        """Binaural cues of ``(..., 2, T)`` (left, right): dict of ``(..., F, nf)`` tensors
        ``power``, ``ild``, ``coherence`` (complex), ``below_floor``; see
        :func:`spaq.auditory.binaural_cues.binaural_frame_features`."""
        band, env = self.band_signals(x)
        fine = self.center_frequencies_hz < self.mso_rolloff_hz
        return binaural_frame_features(band, env, self.frame_len, self.power_floor, fine)

    def directiveness(self, hoa: torch.Tensor) -> torch.Tensor:
        """``(..., C>=4, T)`` ACN/SN3D -> ``(..., F, nf)`` first-order directiveness per ERB band."""
        return directiveness(hoa, self.dir_window.to(hoa.dtype), self.dir_alpha, self.dir_grouping)

    def load_official_buffers(self, sd: dict) -> None:
        """Take the front-end buffers of an official QASTAnet ``state_dict`` (gammatone FIRs,
        low-pass FIR, thresholds, directiveness tables). Shapes are checked."""
        def take(key, shape):
            t = sd[key]
            if tuple(t.shape) != tuple(shape):
                raise ValueError(f"checkpoint entry {key} has shape {tuple(t.shape)}, expected {tuple(shape)}")
            return t.clone()

        nb = self.n_bands
        self.gammatone.fir_real = take("gammatone_real", (nb, sd["gammatone_real"].shape[1]))
        self.gammatone.fir_imag = take("gammatone_imag", self.gammatone.fir_real.shape)
        self.gammatone.center_frequencies_hz = take("center_frequencies_hz", (nb,)).to(torch.float64)
        self.power_floor = take("limit_threshold", (nb,)).to(torch.float64)
        self.dir_alpha = take("directiveness.alpha_dif", self.dir_alpha.shape)
        self.dir_grouping = take("directiveness.freq_2_erb_m", self.dir_grouping.shape)
        self.dir_window = take("directiveness.stft.window", self.dir_window.shape)
        # the official low-pass FIR is the same first-order Butterworth truncated at 512 taps;
        # spaq keeps its longer truncation (closer to the official IIR mode)
        lp = sd["lowpass"].to(torch.float64)
        if not torch.allclose(lp, self.lowpass_fir[: lp.shape[0]], atol=1e-9):
            raise ValueError("checkpoint low-pass filter is not the 150 Hz first-order Butterworth spaq expects")
