"""A hostile user's values, through the real ``conclab`` command: one line, exit 2, nothing written.

"Bad input gets a clear error and loses nothing": a value that does not parse (``--budget abc``),
an option the command does not have, an argument left out, and values that parse but cannot be
meant (``--budget inf``, ``--limit -1``, more shards than trials) are each said in one line on
stderr, ``error: OPTION: problem``, naming what was typed: never typer's boxed panel, never a
traceback, and nothing is left on disk.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_ux import tmux_run

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
_SCRIPT = Path(sys.executable).with_name("conclab")  # the console script, as a user runs it
CONCLAB = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "conc_lab.cli"]
HUGE = "99999999999999999999"
FUNCTION = "experiments.cpu:sum_squares"

TWO_TRIALS = """\
name: tiny
repeats: 2
warmup: 0
timeout_s: 30
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, threading]
  workers: [1]
  tasks: [2]
  size: [1000]
"""


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    # this checkout first: the console script imports conc_lab from PYTHONPATH before its install
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def refused(tmp_path: Path, *args: str) -> str:
    """Run ``conclab ARGS`` in ``tmp_path`` (holding tiny.yaml); assert it is refused as bad
    input should be, and return its one line."""
    (tmp_path / "tiny.yaml").write_text(TWO_TRIALS)
    before = _listing(tmp_path)
    proc = subprocess.run(
        [*CONCLAB, *args], capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=120
    )
    said = proc.stderr
    assert "Traceback" not in said and "╭" not in said, said
    assert proc.returncode == 2, (proc.returncode, said)
    lines = said.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), said
    assert _listing(tmp_path) == before, "bad input wrote something"
    return lines[0]


# (args, what the line must name): the option or argument, and the value given
USAGE = [
    (["advise", FUNCTION, "--budget", "abc"], ["--budget", "'abc'", "not a number"]),
    (["advise", FUNCTION, "--budget", ""], ["--budget", "''", "not a number"]),
    (["advise", FUNCTION, "--size", "1e3"], ["--size", "'1e3'", "not a whole number"]),
    (["sweep", "tiny.yaml", "--repeats", "2.5"], ["--repeats", "'2.5'"]),
    (["sweep", "tiny.yaml", "--repeats", "0"], ["--repeats", "at least 1", "got 0"]),
    (["sweep", "tiny.yaml", "--warmup", "-1"], ["--warmup", "at least 0", "got -1"]),
    (["sweep", "tiny.yaml", "--precision", "abc"], ["--precision", "'abc'"]),
    (["expand", "tiny.yaml", "--limit", "nan"], ["--limit", "'nan'"]),
    (["summarize", "results", "--workers", "abc"], ["--workers", "'abc'"]),
    (["compare", "a", "b", "--alpha", "five"], ["--alpha", "'five'"]),
    (["slurm", "tiny.yaml", "-n", "abc"], ["--shards", "'abc'"]),
    (["slurm", "tiny.yaml", "-n", "2", "--mem", "lots"], ["--mem", "'lots'", "8G"]),
    (["selftest", "--repeats", "x"], ["--repeats", "'x'"]),
    (["sweep", "tiny.yaml", "--repaets", "3"], ["--repaets", "no such option", "--repeats"]),
    (["--bogus"], ["--bogus", "no such option"]),
    (["swep", "tiny.yaml"], ["no such command", "'swep'", "'sweep'"]),
    (["sweep"], ["CONFIG", "missing"]),
    (["compare", "results"], ["B", "missing"]),
    (["slurm", "tiny.yaml"], ["--shards", "missing"]),
    (["sweep", "tiny.yaml", "--repeats"], ["--repeats", "needs a value"]),
    (["advise", FUNCTION, "--ray=yes"], ["--ray", "does not take a value"]),
    (["doctor", "extra"], ["extra"]),
]


@pytest.mark.parametrize("args,names", USAGE, ids=[" ".join(a) or "none" for a, _ in USAGE])
def test_a_value_typer_cannot_parse_is_one_line_naming_the_option_and_the_value(tmp_path, args, names):
    line = refused(tmp_path, *args)
    for name in names:
        assert name in line, line


# values that parse, but that no one means: each was a traceback, a run for ever, or files written
SENSELESS = [
    (["advise", FUNCTION, "--budget", "inf"], ["--budget", "at most", "inf"]),  # OverflowError from select()
    (["advise", FUNCTION, "--budget", "1e12"], ["--budget", "at most"]),  # "timestamp out of range"
    (["advise", FUNCTION, "--size", HUGE], ["--size", HUGE]),  # ran silently for ever
    (["expand", "tiny.yaml", "--limit", "-1"], ["--limit", "-1"]),  # taken as 0
    (["slurm", "tiny.yaml", "-n", "3"], ["--shards", "3 shards of 2 trials"]),  # an array of failing tasks
    (["slurm", "tiny.yaml", "-n", HUGE], ["--shards", HUGE]),
    (["selftest", "--workload", "nope:nope"], ["--workload", "nope"]),  # 40 failed runs stored
    (["selftest", "--repeats", HUGE], ["--repeats", "limits.runs"]),  # ran for ever
    (["selftest", "--size", HUGE], ["--size", HUGE]),  # ran for ever
    (["sweep", "tiny.yaml", "--ray-address", ""], ["--ray-address", "empty"]),  # ignored: the sweep ran
    (["sweep", "tiny.yaml", "--cluster", ""], ["--cluster", "empty"]),
]


@pytest.mark.parametrize("args,names", SENSELESS, ids=[" ".join(a) for a, _ in SENSELESS])
def test_a_value_that_parses_but_cannot_be_meant_is_one_line_and_nothing_is_written(tmp_path, args, names):
    line = refused(tmp_path, *args)
    for name in names:
        assert name in line, line


# an empty path, which click reads as "." (a sweep was written to the working directory, `summarize
# ''` read every results folder under it): each command's path options and arguments
EMPTY = [
    (["sweep", "tiny.yaml", "-o", ""], "--out"),
    (["sweep", "tiny.yaml", "--out="], "--out"),
    (["sweep", ""], "CONFIG"),
    (["expand", ""], "CONFIG"),
    (["calibrate", "tiny.yaml", "-o", ""], "--out"),
    (["summarize", ""], "PATHS"),
    (["summarize", "results", ""], "PATHS"),
    (["compare", "", "results"], "A"),
    (["report", "results", "-o", ""], "--out"),
    (["advise", FUNCTION, "-o", ""], "--out"),
    (["selftest", "-o", ""], "--out"),
    (["slurm", "tiny.yaml", "-n", "1", "-o", ""], "--out"),
    (["merge", ""], "RESULTS"),
    (["merge", "results", "--out", ""], "--out"),
    (["check", ""], "PATHS"),
]


@pytest.mark.parametrize("args,name", EMPTY, ids=[shlex.join(a) for a, _ in EMPTY])
def test_an_empty_path_is_one_line_not_the_working_directory(tmp_path, args, name):
    assert refused(tmp_path, *args) == f"error: {name}: an empty path"


def test_a_limit_past_sys_maxsize_lists_every_trial_not_a_traceback(tmp_path):
    (tmp_path / "tiny.yaml").write_text(TWO_TRIALS)
    proc = subprocess.run(
        [*CONCLAB, "expand", "tiny.yaml", "--limit", HUGE],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_env(),
        timeout=120,
    )
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stdout.rstrip().endswith("2 trials"), proc.stdout


@pytest.mark.terminal
def test_in_an_80_column_terminal_a_bad_value_is_one_error_line_not_a_box():
    command = shlex.join([*CONCLAB, "advise", FUNCTION, "--budget", "abc"])
    screen = tmux_run(command, 80, timeout=60)
    shown = [line.rstrip() for line in screen.splitlines() if line.strip()]
    assert shown == ["error: --budget: 'abc' is not a number", "__EXIT_2__"], screen
