"""spaq: SPatial Audio Quality.

    >>> import spaq
    >>> report = spaq.score("ref.wav", "deg.wav")          # binaural or ambisonics ACN/SN3D
    >>> report.results["cues"].values["ild_median_abs_db"]
"""
__version__ = "0.1.0"

from .api import ScoreReport, clear_metric_cache, score  # noqa: E402
from .errors import SpaqError, SpaqInputError  # noqa: E402
from .metrics import MetricResult, list_metrics, load_metric  # noqa: E402


def localize(*args, **kwargs):
    """Directions of arrival; see :func:`spaq.localization.localize`."""
    from .localization import localize as _localize

    return _localize(*args, **kwargs)


__all__ = ["score", "clear_metric_cache", "ScoreReport", "MetricResult", "load_metric", "list_metrics", "localize", "SpaqError",
           "SpaqInputError", "__version__"]
