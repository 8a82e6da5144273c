"""The trial host: runs trials in a child process the runner can kill and replace.

Imports nothing from the rest of conc_lab and no third-party package at import time
(a backend such as Ray is imported when a trial first uses it), and keeps to Python 3.8
syntax, so a host can be started under any interpreter the matrix names.
"""

import os as _os

#: The folder holding the ``conc_lab`` package: put on a child's path, so any interpreter can
#: run ``python -m conc_lab.host`` from source without conc_lab installed in it. This file is
#: ``<PACKAGE_ROOT>/conc_lab/host/__init__.py``: three levels up.
PACKAGE_ROOT = _os.path.dirname(_os.path.dirname(_os.path.dirname(_os.path.realpath(__file__))))
