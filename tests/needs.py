"""``need``: skip a test for lack of something on this machine, but fail it in CI; and ``free_port``.

``.ci/run`` installs everything the suite needs (chromium, tmux, SLURM and munge, the dev extra with
``ray[default]``, duckdb and polars; the subinterpreter backport from PyPI). A test that would skip
there for lack of one of them hides a broken install step, so with ``CI`` set it fails instead,
saying what was missing. On a developer's machine it skips with the same reason.
"""

from __future__ import annotations

import os
import socket

import pytest


def in_ci() -> bool:
    """True in a CI run (``.ci/run`` is started with ``CI=true``)."""
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def need(reason: str | None) -> None:
    """Skip (or, in CI, fail) with ``reason`` unless it is None: ``need(why_not())``."""
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI installs this, yet it is missing: {reason}", pytrace=False)
    pytest.skip(reason)


#: Ports handed out already: the kernel may give a port just closed again (the README's SLURM job
#: once got one port for two Ray components), so each is handed out once.
_GIVEN: set[int] = set()


def free_port() -> int:
    """A free TCP port on 127.0.0.1, from the kernel's ephemeral range (never inside Ray's worker-port
    range, 10002-19999), not one this process handed out before."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _GIVEN:
            _GIVEN.add(port)
            return port
