"""``python -m spaq.cli``: the ``spaq`` command."""
from .app import entry

entry()
