"""Errors a user can cause. The CLI prints them as one line and exits with status 2."""


class SpaqError(Exception):
    """Any error caused by input, configuration or environment (not a bug)."""


class SpaqInputError(SpaqError):
    """Bad audio input: missing, unreadable, invalid content or incompatible pair."""


class WeightsNotFoundError(SpaqError):
    """A checkpoint is needed but not available offline."""
