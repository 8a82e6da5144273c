"""`conclab advise` as a new user meets it, round two: real CLI in subprocesses, a module of the
user's own on the path (the first things they type are a module name and a function name)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
from needs import need

from conc_lab.advice import verdict as verdicts

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
USER_MODULE = """\
import time


def smile(task, size):
    time.sleep(size / 1e6)
    return task


def tiny(task, size):
    return task + 1


def main_thread_only(task, size):
    import threading

    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("needs the main thread")
    return sum(range(size))
"""


def _tmux_advise(tmp_path: Path, args: str, width: int, timeout: float = 120, until: str = "__EXIT_") -> str:
    """``advise args`` typed into a fresh tmux terminal ``width`` columns wide; the screen as shown
    once ``until`` shows (then the terminal is closed, whatever still runs in it)."""
    need(None if shutil.which("tmux") else "tmux is not installed (Debian: apt-get install tmux)")
    (tmp_path / "userwork.py").write_text(USER_MODULE)
    tmux = ["tmux", "-L", f"conclab-test-{uuid.uuid4().hex[:8]}", "-f", "/dev/null"]
    path = os.pathsep.join([str(REPO), str(tmp_path)])
    env = f"PATH={shlex.quote(os.environ['PATH'])} PYTHONPATH={shlex.quote(path)}"
    script = f"cd {shlex.quote(str(tmp_path))}; env {env} {sys.executable} -m conc_lab.cli advise {args}"
    script += "; echo __EXIT_$?__; sleep 600"
    subprocess.run(
        [*tmux, "new-session", "-d", "-x", str(width), "-y", "50", "-s", "t", script],
        check=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            capture = [*tmux, "capture-pane", "-p", "-S", "-", "-t", "t"]
            screen = subprocess.run(capture, capture_output=True, text=True).stdout
            if until in screen or time.monotonic() > deadline:
                return screen
            time.sleep(0.1)
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True)


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


def test_a_long_error_in_a_terminal_is_wrapped_between_words(tmp_path):
    # seen at 80 columns: "error: mywork:flaky: the plain loop failed: ValueError: task 1 is bad
    # (runs kep" / "t in results/advise-mywork.flaky/…": the terminal folded the one line mid-word
    (tmp_path / "userwork_sig.py").write_text("def picky(x):\n    return x\n")
    screen = _tmux_advise(tmp_path, "userwork_sig:picky", 80)
    assert "__EXIT_2__" in screen, screen
    lines = screen[: screen.index("__EXIT_")].rstrip().splitlines()
    assert len(lines) >= 2 and lines[0].startswith("error: "), screen  # longer than 80: wrapped
    assert all(len(line) < 80 for line in lines), screen  # a line the terminal folded fills the width
    flat = " ".join(line.strip() for line in lines)
    assert "takes (x), but a workload is called as userwork_sig:picky(task, size)" in flat, screen


def test_a_speedup_far_below_one_is_not_printed_as_zero(tmp_path):
    # seen for a function of microseconds: "multiprocessing (spawn) 0.00× (0.00–0.01) with 2 workers:
    # start-up: 53.1 ms of 65.7 ms": zero times as fast, and an interval that says nothing
    proc = _advise(tmp_path, "userwork:tiny", "--budget", "10")
    assert proc.returncode == 0, proc.stderr
    figures = re.findall(r"(\d+\.\d+)×", proc.stdout)
    figures += [f for pair in re.findall(r"\((\d+\.\d+)–(\d+\.\d+)\)", proc.stdout) for f in pair]
    small = [f for f in figures if float(f) < 0.1]
    assert small, proc.stdout  # a process pool's start-up is many times these runs
    # two significant digits however small: 0.0046×, never 0.00× or 0.01× for 0.0046
    assert all(len(re.sub(r"^0\.0*", "", f)) >= 2 for f in small), (small, proc.stdout)


def test_the_size_it_ran_is_said(tmp_path):
    # seen: "break-even: multiprocessing (spawn) pays 52.6 ms to start: it wins at size ≥ 5.4e+05
    # (extrapolated; one size measured, …)", and the size measured (calibrated) named nowhere
    proc = _advise(tmp_path, "userwork:smile", "--size", "2000", "--budget", "8")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"(?m)^size: 2,000 \(given: one call took .+; \d+ tasks? a run\)$", proc.stdout), (
        proc.stdout
    )
    proc = _advise(tmp_path, "userwork:smile", "--size", "2000", "--budget", "4", "-f", "json")
    assert proc.returncode == 0, proc.stderr
    said = json.loads(proc.stdout)
    assert said["size"] == 2000 and said["tasks"] >= 1, said


def test_a_wrong_signature_names_the_function_once_per_clause(tmp_path):
    # seen: "error: mywork:wrong_sig: mywork:wrong_sig takes (x), but a workload is called as
    # mywork:wrong_sig(task, size): …": the name twice before a word of what is wrong
    (tmp_path / "userwork_sig.py").write_text("def picky(x):\n    return x\n")
    proc = _advise(tmp_path, "userwork_sig:picky")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: userwork_sig:picky takes (x), but a workload is called as userwork_sig:picky(task, size): "
        "too many positional arguments"
    ]


def test_piped_into_a_log_each_line_stays_one_line(tmp_path):
    # seen in `conclab advise … | tee log` (80 columns assumed): "1 round in 2 s (no time left in the
    # budget for another round) → " / "results/advise-…": the folder where the runs are on a line of
    # its own, and every verdict line folded, where `grep` finds half of it
    (tmp_path / "userwork.py").write_text(USER_MODULE)
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(tmp_path)])
    proc = subprocess.run(
        [sys.executable, "-m", "conc_lab.cli", "advise", "userwork:tiny", "--budget", "4"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert re.search(r"; best: \w+", lines[0]), proc.stdout  # the headline whole, on its first line
    assert any(re.match(r"\d+ rounds? in \d+ s .* → results/advise-userwork\.tiny/\S+$", x) for x in lines), (
        lines
    )
    assert not any(x.endswith(" ") or x.startswith("    ") for x in lines), proc.stdout  # nothing folded


@pytest.mark.inprocess
def test_dont_bother_never_calls_an_arm_best_below_one_it_set_aside():
    # seen on a loaded machine, pure-Python work: "don't bother …; best: multiprocessing (fork) 1.03×
    # (0.61–1.26)", and the line under it "threading 1.08× (0.87–1.25) with 1 worker": a "best" below
    # another arm's figure, and nothing saying threads were set aside (GIL-bound: the load's gain)
    rows = [
        ("sequential", None, 1, 1.0, 1.0, 1.0, "", 0.0),
        ("threading", None, 1, 1.08, 0.87, 1.25, "none dominant: workers busy 99%", 0.0002),
        ("threading", None, 2, 0.95, 0.80, 1.10, "GIL-bound: 2 workers, CPU 0.97× wall", 0.0003),
        ("multiprocessing", "fork", 1, 1.03, 0.61, 1.26, "none dominant: workers busy 98%", 0.004),
        ("multiprocessing", "spawn", 2, 0.93, 0.65, 1.34, "start-up: 125 ms of 728 ms", 0.125),
    ]
    summary = pd.DataFrame(
        [
            {
                "backend": b,
                "start_method": m,
                "workers": w,
                "n": 5,
                "e2e_speedup": x,
                "e2e_speedup_ci_low": lo,
                "e2e_speedup_ci_high": hi,
                "speedup": x,
                "why": why,
                "setup_s": setup,
                "break_even": "",
                "e2e_s": 0.4,
                "python": None,
            }
            for b, m, w, x, lo, hi, why, setup in rows
        ]
    )
    v = verdicts.decide(summary, rounds=5, gil=True)
    assert v.dont_bother and "best: multiprocessing (fork) 1.03×" in v.headline, v.headline
    assert "  threading 1.08× (0.87–1.25) with 1 worker: none dominant: workers busy 99%" in v.lines()
    # the faster figure is named in the headline with why it does not count
    assert "threading 1.08× with 1 worker not counted (GIL-bound: 2 workers, CPU 0.97× wall)" in v.headline


def test_the_status_line_names_the_function_as_typed(tmp_path):
    # seen while it warmed up: "⠙ advise wt3work😪 5 backends × workers 1, 2, 4, 8, size …" for
    # wt3work:sleepy, the name the user typed turned into an emoji on the line they watch
    screen = _tmux_advise(tmp_path, "userwork:smile --size 3000000", 80, timeout=60, until="advise userwork")
    assert "advise userwork:smile: " in screen, screen


def test_a_size_whose_warm_up_cannot_fit_the_budget_is_refused_at_once(tmp_path):
    # seen: `advise mywork:sleepy --size 3000000 --budget 20` (3 s a call) sat on "warming up" for
    # over two minutes of a 20 s budget, nothing saying why, until Ctrl-C
    began = time.monotonic()
    proc = _advise(tmp_path, "userwork:smile", "--size", "1500000", "--budget", "5", timeout=45)
    took = time.monotonic() - began
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --size 1,500,000: "), proc.stderr
    assert "5 s budget" in lines[0] and "--budget" in lines[0].split("budget", 1)[1], proc.stderr
    assert took < 20, took  # one call timed, nothing more


def test_a_backend_whose_runs_all_failed_is_said_to_have_failed(tmp_path):
    # seen for a function that needs the main thread: a verdict on fork, forkserver and spawn, and
    # threading nowhere (not an arm, not left out): every one of its runs had failed, unsaid
    proc = _advise(tmp_path, "userwork:main_thread_only", "--size", "1000", "--budget", "6")
    assert proc.returncode == 0, proc.stderr
    assert re.search(
        r"(?m)^failed: threading: (\d+) of \1 runs \(RuntimeError: needs the main thread\)$", proc.stdout
    ), proc.stdout


@pytest.mark.inprocess
def test_what_an_async_def_leaves_out_says_why_in_words():
    # seen: "left out: threading, multiprocessing: an async def needs an event loop (sequential,
    # asyncio)": the two names in parentheses unexplained (they are what does give it one)
    from conc_lab.advice import plan as planning
    from conc_lab.advice.target import resolve

    probe = planning.Probe(size=1000, task_s=0.05, cpu_share=0.01)
    p = planning.plan(resolve("experiments.advise_cases:wait_async"), cores=2, interpreters=[], probe=probe)
    said = [x for x in p.left_out if x.startswith("threading, multiprocessing: ")]
    assert said == [
        "threading, multiprocessing: an async def runs on an event loop, which only the plain loop "
        "(sequential) and asyncio give it"
    ], p.left_out
