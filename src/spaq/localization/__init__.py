"""Sound-source localisation: :func:`localize` (directions in one stream),
:func:`compare_localization` (reference vs degraded), :func:`plot_localization`.

Inference only: the binaural model comes from :mod:`spaq.models.bast` and
:mod:`spaq.models.checkpoint`, its weights from :mod:`spaq.weights` (entry ``bast_ku100``);
nothing here imports :mod:`spaq.train`.
"""
from .localize import (WEIGHTS_ENV, WEIGHTS_NAME, LocalizationComparison, LocalizationResult,
                       binaural_window_directions, compare_localization, default_weights_path, load_localizer,
                       localize)
from .plots import plot_localization

__all__ = ["LocalizationResult", "LocalizationComparison", "localize", "compare_localization", "load_localizer",
           "default_weights_path", "binaural_window_directions", "plot_localization", "WEIGHTS_NAME", "WEIGHTS_ENV"]
