"""``python -m conc_lab.cli``: the same command as the ``conclab`` console script.

``python -m`` puts the working directory first on ``sys.path``; the console script does not. A
user's ``yaml.py``, ``typer.py`` or ``pandas.py`` there would be imported by the runner in place of
the real package, so the entry is dropped before anything else is imported. Workloads never come
from this path: they are imported by children, from ``config.checks.workload_search_path``.
"""

import os
import sys

if sys.path and os.path.realpath(sys.path[0] or os.curdir) == os.path.realpath(os.getcwd()):
    del sys.path[0]

from conc_lab.cli import main as _main  # noqa: E402 - after sys.path is fixed

_main.main()
