"""`conclab advise` as a new user meets it, round two: real CLI in subprocesses, a module of the
user's own on the path (the first things they type are a module name and a function name)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
USER_MODULE = """\
import time


def smile(task, size):
    time.sleep(size / 1e6)
    return task
"""


def _advise(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m conc_lab.cli advise *args`` from ``tmp_path``, where the user's module is."""
    (tmp_path / "userwork.py").write_text(USER_MODULE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path)]), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "conc_lab.cli", "advise", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=timeout,
    )


def test_a_name_that_is_an_emoji_code_is_printed_as_typed(tmp_path):
    # seen: `advise mywork:sleepy` with no `sleepy` there printed "error: mywork😪 module 'mywork'
    # has no 'sleepy'": ":sleepy:" read as an emoji code, the name the user typed gone from the line
    proc = _advise(tmp_path, "userwork:sleepy")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: userwork:sleepy: module 'userwork' has no 'sleepy'"]


def test_an_error_with_brackets_is_printed_as_typed(tmp_path):
    # the same line read as markup: a path with "[...]" in it must reach the user whole
    proc = _advise(tmp_path, "no[bold]such/file.py:smile")
    assert proc.returncode == 2, proc.stderr
    assert "no[bold]such/file.py" in proc.stderr, proc.stderr
