"""Hearing thresholds (ISO 389-7 free field) and the band power floors derived from them."""
from __future__ import annotations

import numpy as np

__all__ = ["iso389_7_db", "band_power_floor"]

_ISO_F = np.array([0.0, 20, 25, 31.5, 40, 50, 63, 80, 100, 125, 160, 200, 250, 315, 400, 500, 630,
                   750, 800, 1000, 1250, 1500, 1600, 2000, 2500, 3000, 3150, 4000, 5000, 6000, 6300,
                   8000, 9000, 10000, 11200, 12500, 14000, 16000, 18000, 20000])
_ISO_DB = np.array([78.5, 78.5, 68.7, 59.5, 51.1, 44.0, 37.5, 31.5, 26.5, 22.1, 17.9, 14.4, 11.4, 8.6,
                    6.2, 4.4, 3.0, 2.4, 2.2, 2.4, 3.5, 2.4, 1.7, -1.3, -4.2, -5.8, -6.0, -5.4, -1.5,
                    4.3, 6.0, 12.6, 13.9, 13.9, 13.0, 12.3, 18.4, 40.2, 73.2, 73.2])


def iso389_7_db(f_hz):
    """Free-field hearing threshold (dB SPL) by linear interpolation of the ISO 389-7 table."""
    return np.interp(np.asarray(f_hz, dtype=np.float64), _ISO_F, _ISO_DB)


def band_power_floor(f_hz, full_scale_db_spl: float = 100.0):
    """Band power floor (digital power units) at the hearing threshold, assuming digital
    full scale power 1.0 plays at ``full_scale_db_spl`` (QASTAnet's 1e-10 = 100 dB)."""
    return 10.0 ** (-full_scale_db_spl / 10.0) * 10.0 ** (iso389_7_db(f_hz) / 10.0)
