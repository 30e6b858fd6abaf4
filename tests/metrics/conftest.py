import pytest


@pytest.fixture(scope="session")
def fe():
    """The exact-mode front-end the quality training recipe uses."""
    from spaq.train.quality import _metric

    return _metric().frontend
