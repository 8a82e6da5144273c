"""The trial host: runs trials in a child process the runner can kill and replace.

Imports nothing from the rest of conc_lab and no third-party package at import time
(a backend such as Ray is imported when a trial first uses it), and keeps to Python 3.8
syntax, so a host can be started under any interpreter the matrix names.
"""
