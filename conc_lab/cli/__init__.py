"""The ``conclab`` command: parses arguments, calls the library, renders. Nothing else lives here.

The console script is ``conc_lab.cli.main:main``; ``python -m conc_lab.cli`` runs the same. ``app``
is imported on first use (PEP 562), so ``python -m conc_lab.cli`` can take the working
directory off ``sys.path`` (``__main__``) before typer, rich or YAML are imported.
"""

__all__ = ["app"]


def __getattr__(name):
    if name == "app":
        from conc_lab.cli.main import app

        return app
    raise AttributeError(f"module 'conc_lab.cli' has no attribute {name!r}")
