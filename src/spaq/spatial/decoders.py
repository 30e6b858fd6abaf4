"""Ambisonics -> binaural decoders of the default HRTF, cached in memory and on disk.

One place for the decoder every metric uses, so the ear cues mean the same thing for
binaural and ambisonic input: MagLS from the default HRTF set (Neumann KU100), keyed by the
SOFA file's sha256, the order and the sample rate, written atomically into the spaq cache.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

__all__ = ["hrtf_decoder", "DEFAULT_DECODER"]

DEFAULT_DECODER = "MagLS from the default HRTF (KU100)"


@lru_cache(maxsize=8)
def _decoder_cached(order: int, sample_rate: int) -> np.ndarray:
    from ..cache import cached_array
    from .hrtf import default_hrtf_path, file_sha256

    def make():
        from .ambisonics import binaural_decoder
        from .hrtf import load_hrtf

        return binaural_decoder(load_hrtf("default", sample_rate=sample_rate), order, method="magls")

    key = f"decoders/magls_causal_{file_sha256(default_hrtf_path())[:16]}_o{order}_{sample_rate}"
    return cached_array(key, make, check=lambda d: d.ndim == 3 and d.shape[:2] == (2, (order + 1) ** 2))


def hrtf_decoder(order: int, sample_rate: int = 48000) -> torch.Tensor:
    """Ambisonics -> binaural MagLS decoder ``(2, (order+1)^2, taps)`` (float64) from the default HRTF."""
    return torch.from_numpy(_decoder_cached(int(order), int(sample_rate)))
