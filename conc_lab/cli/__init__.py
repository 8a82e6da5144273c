"""The ``conclab`` command: parses arguments, calls the library, renders. Nothing else lives here.

The console script is ``conc_lab.cli:app``; ``python -m conc_lab.cli`` runs the same.
"""

from conc_lab.cli.main import app

__all__ = ["app"]
