"""What a new user reads from `conclab advise` in a terminal 80 columns wide (found by new-user tests).

One real advice, on a function in a temp module, shared by the tests: a call that waits while
holding the GIL (a ``ctypes.PyDLL`` call keeps it), so whatever the load, threads take turns
(about 1×) and processes wait side by side; and a budget that leaves room for one measured round,
so every arm has a single run. Each test reads what the screen says about it.
"""

from __future__ import annotations

import re
import shlex
import sys

import pytest
from test_cli_ux import tmux_run

pytestmark = [pytest.mark.terminal, pytest.mark.slow]

GIL_SLEEP = """
import ctypes

_libc = ctypes.PyDLL(None)  # a PyDLL call keeps the GIL: threads take turns, processes do not


def work(task, size):
    _libc.usleep(size * 1000)
    return task
"""


@pytest.fixture(scope="module")
def screen(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("advise-screen")
    (folder / "gilwait.py").write_text(GIL_SLEEP)
    command = shlex.join(
        [sys.executable, "-m", "conc_lab.cli", "advise", f"{folder / 'gilwait.py'}:work"]
        + ["--size", "20", "--budget", "8", "--out", str(folder / "results")]
    )
    shown = tmux_run(command, 80)
    assert "__EXIT_0__" in shown, shown
    return shown.split("__EXIT_0__")[0]


def _said(screen: str) -> str:
    """The screen as one line: what it says, wherever the terminal broke its lines."""
    return " ".join(screen.split())


def test_one_run_is_said_to_be_too_few_for_an_interval_not_shown_as_a_zero_width_one(screen):
    said = _said(screen)
    assert "1 round in" in said, screen  # the budget left room for one measured round
    # was "threading 0.99× (0.99–0.99) with 1 worker": one run, shown as an interval
    assert not re.search(r"\((\d+\.\d\d)–\1\)", said), screen
    assert "(1 run: too few for an interval)" in said, screen


def test_where_an_arm_wins_is_told_as_its_interval_allows_never_wins_not_at(screen):
    said = _said(screen)
    # was "break-even: multiprocessing (spawn) pays 69.2 ms to start: it wins not at the sizes
    # measured", and from one run alone "it wins at size ≥ 20"
    assert "wins not at" not in said, screen
    breaks = re.findall(r"break-even: (.+?) pays \S+ \S+ to start: (.+?)(?= break-even:| left out:|$)", said)
    assert breaks, screen  # spawn and forkserver pay tens of ms to start
    for arm, where in breaks:
        assert where.startswith("it is not told apart from the plain loop yet (1 run"), (arm, where)
    assert not re.search(r"to start, so it (wins|does not win)", said), screen


def test_the_headlines_threads_figure_says_which_it_is_beside_the_evidence_line(screen):
    said = _said(screen)
    # was "threads 0.92× (…)" in the headline beside "threading 0.99× (…) with 1 worker": two
    # figures for threads, neither saying which; then "threads 0.92× with 2 workers, their most":
    # still two figures for one backend. Now the headline's is the evidence line's, their best count
    head = re.search(r"; threads (\S+×) with (\d+) workers?", said)
    line = re.search(r" threading (\S+×) \(.+?\) with (\d+) workers?", said)
    assert head and line, screen
    assert head.groups() == line.groups(), screen
    assert "their most" not in said, screen


def test_at_80_columns_an_evidence_line_that_wraps_keeps_its_indent(screen):
    lines = screen.splitlines()
    first = next(i for i, line in enumerate(lines) if re.match(r"  \S", line))  # the first arm
    last = next(i for i, line in enumerate(lines) if re.match(r"\d+ rounds? in ", line))
    labels = ("size: ", "break-even: ", "left out: ", "note: ", "forecast at ")
    wrapped = 0
    for line in lines[first:last]:
        assert len(line) <= 80, line
        item = re.match(r"  \S", line) or line.startswith(labels)
        # was "others used 71% of its cores" at column 0, under "  multiprocessing (fork) 3.99× …"
        assert item or line.startswith("    "), (line, screen)
        wrapped += not item
    assert wrapped, screen  # at 80 columns some evidence line did wrap


def test_at_80_columns_the_rerun_command_is_one_line_to_copy(tmp_path):
    (tmp_path / "gilwait.py").write_text(GIL_SLEEP)
    command = shlex.join(
        [sys.executable, "-m", "conc_lab.cli", "advise", "gilwait:work"]
        + ["--size", "20", "--budget", "8", "--out", "results"]
    )
    shown = tmux_run(f"sh -c {shlex.quote(f'cd {shlex.quote(str(tmp_path))} && {command}')}", 80, joined=True)
    assert "__EXIT_0__" in shown, shown
    lines = shown.split("__EXIT_0__")[0].splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("to run it longer:"))
    # was: "to run it longer: conclab sweep results/advise-gilwait.work/advise.yaml" / "--resume
    # --out results": a newline inside the command, which a copy from the terminal keeps
    rerun = lines[at].split(":", 1)[1].strip() or lines[at + 1].strip()
    assert shlex.split(rerun) == [
        "conclab",
        "sweep",
        "results/advise-gilwait.work/advise.yaml",
        "--resume",
        "--out",
        "results",
    ], shown


def test_a_budget_stop_says_no_round_fits_never_that_the_budget_ran_out_seconds_early(screen):
    said = _said(screen)
    took = re.search(r"(\d+) rounds? in (\d+) s \(([^)]*)\)", said)
    assert took, screen
    # was: "1 round in 3 s (budget spent)" and "(the 8 s budget ran out)" from an 8 s budget: the
    # loop stops when another round would not end in the budget, long before the budget is spent
    assert "budget spent" not in said and "budget ran out" not in said, screen
    if int(took.group(2)) < 8:
        assert took.group(3) in ("no time left in the budget for another round", "settled"), screen
