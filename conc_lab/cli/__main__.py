"""``python -m conc_lab.cli``: the same command as the ``conclab`` console script."""

from conc_lab.cli import main as _main

_main.main()
