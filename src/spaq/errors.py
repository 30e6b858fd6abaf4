"""Errors a user can cause. The CLI prints them as one line and exits with status 2."""


class SpaqError(Exception):
    """Any error caused by input, configuration or environment (not a bug)."""


class SpaqInputError(SpaqError):
    """Bad audio input: missing, unreadable, invalid content or incompatible pair."""


class WeightsNotFoundError(SpaqError):
    """A checkpoint is needed but not available offline."""


class Interrupted(Exception):
    """A command stopped by a signal (Ctrl-C, SIGTERM) once its progress was saved: the CLI prints
    ``spaq: interrupted: <message>`` (one line, the message says how to go on) and exits with status
    128 + ``signum`` (130 for Ctrl-C, 143 for SIGTERM). Not a :class:`SpaqError`: nothing was wrong."""

    def __init__(self, message: str, signum: int = 2):
        super().__init__(message)
        self.signum = int(signum)
