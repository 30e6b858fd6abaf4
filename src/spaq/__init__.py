"""spaq: SPatial Audio Quality.

    >>> import spaq
    >>> report = spaq.score("ref.wav", "deg.wav")          # binaural or ambisonics ACN/SN3D
    >>> report.results["cues"].values["ild_median_abs_db"]
"""
__version__ = "0.1.0"

import os as _os
import sys as _sys

# torch's OpenMP threads spin while they wait (OMP_WAIT_POLICY=ACTIVE behaviour): beside other
# busy processes that steals their cores and stalls every parallel region (10 s 3OA qastanet
# call: 0.38 s idle, 2.5-9 s beside two busy processes). OpenMP reads this once, when torch is
# loaded, so it only helps if torch is not imported yet; the user's own setting wins.
# See spaq.threads for the per-call thread cap.
if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .api import ScoreReport, clear_metric_cache, predict, score  # noqa: E402
from .errors import SpaqError, SpaqInputError  # noqa: E402
from .metrics import MetricResult, list_metrics, load_metric  # noqa: E402


def localize(*args, **kwargs):
    """Directions of arrival; see :func:`spaq.localization.localize`."""
    from .localization import localize as _localize

    return _localize(*args, **kwargs)


__all__ = ["score", "predict", "clear_metric_cache", "ScoreReport", "MetricResult", "load_metric", "list_metrics", "localize", "SpaqError",
           "SpaqInputError", "__version__"]
