"""What a newcomer saw in the output of sweep, summarize, compare, report and advise, and tripped on.

Each test does what the user did (a real ``conclab`` command, a terminal of their width, a browser
window of theirs) and reads what they read.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from needs import need
from rich.console import Console
from test_cli_ux import table_rows, tmux_run

import conc_lab
from conc_lab.analysis.summary import summarize

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent


def conclab(*args: str, cwd: Path = REPO, extra_path: Path | None = None, **env: str):
    environ = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    environ["PYTHONPATH"] = os.pathsep.join(str(p) for p in (REPO, extra_path) if p)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "conc_lab.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environ,
        timeout=300,
    )


def _sweep(tmp_path: Path, text: str, name: str, extra_path: Path | None = None) -> Path:
    config = tmp_path / f"{name}.yaml"
    config.write_text(text)
    out = tmp_path / f"results-{name}"
    proc = conclab("sweep", str(config), "--out", str(out), "-q", extra_path=extra_path)
    assert proc.returncode == 0, proc.stderr
    return out


# --- 1. summarize at 80 columns with a size column --------------------------------------------

LONG_NAME = "def count_squares_of_integers(task, size):\n    return sum(i * i for i in range(size))\n"
SIZES = """\
name: sizes
repeats: 2
warmup: 0
timeout_s: 60
matrix:
  workload: [longname:count_squares_of_integers]
  backend: [sequential, threading, multiprocessing]
  workers: [1, 2]
  tasks: [2]
  size: [20000, 40000]
backend_options:
  multiprocessing: {start_method: [fork, forkserver]}
exclude:
  - {backend: sequential, workers: 2}
"""


@pytest.mark.terminal
def test_summary_at_80_columns_with_a_size_column_keeps_every_speedup_on_its_line(tmp_path):
    # was: "1.90" on the row's line, "(1.85–1.95)" alone on the next, for every row; the one
    # workload that every row shares took 32 columns of the 80
    (tmp_path / "longname.py").write_text(LONG_NAME)
    out = _sweep(tmp_path, SIZES, "sizes", extra_path=tmp_path)
    path = shlex.quote(os.pathsep.join([str(REPO), str(tmp_path)]))  # tmux_run runs it after `env …`
    screen = tmux_run(f"PYTHONPATH={path} python -m conc_lab.cli summarize {shlex.quote(str(out))}", 80)
    assert "__EXIT_0__" in screen, screen
    summary = summarize(conc_lab.load(out))
    rows = table_rows(screen)
    assert len(rows) == len(summary), screen  # one line a row: nothing folded onto a second line
    header = next(line for line in screen.splitlines() if "speedup (95% CI)" in line)
    assert re.search(r"\bsize\b", header), screen
    for line in rows:
        speedup = re.search(r"(\d+\.\d\d)( \((\d+\.\d+–\d+\.\d+|no CI)\))?", line)
        assert speedup, line
    assert "workload count_squares_of_integers" in screen, screen  # named once, above the table
    assert all(len(line) <= 80 for line in screen.splitlines()), screen


# --- 2. the overhead a run, one unit wherever the line breaks ---------------------------------


def test_the_overhead_a_run_is_never_split_where_a_terminal_line_breaks():
    from conc_lab.cli.common import say
    from conc_lab.cli.sweep import own_overhead

    # was "…; conc_lab's own overhead 60.4" at one line's end and "ms a run → …" at the next's
    line = (
        "30 runs recorded (0 failed, 0 wrong, 0 skipped) in 2.8 s; " + own_overhead(0.0604) + " → results/x"
    )
    for width in range(40, 121):
        buf = io.StringIO()
        say(line, to=Console(file=buf, width=width, force_terminal=True, color_system=None))
        shown = buf.getvalue()
        assert "\xa0" not in shown, shown  # spaces, as typed
        assert any("60.4 ms a run" in row for row in shown.splitlines()), (width, shown)
    buf = io.StringIO()
    say(line, to=Console(file=buf, width=40, force_terminal=False))  # a log: one line, plain spaces
    assert buf.getvalue() == line.replace("\xa0", " ") + "\n"


# --- 3. a speedup with no interval ------------------------------------------------------------

ONE_RUN = """\
name: onerun
repeats: 1
warmup: 0
timeout_s: 60
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, threading]
  workers: [1, 2]
  tasks: [2]
  size: [20000]
exclude:
  - {backend: sequential, workers: 2}
"""


def test_a_speedup_without_an_interval_says_so_in_words(tmp_path):
    out = _sweep(tmp_path, ONE_RUN, "onerun")
    proc = conclab("summarize", str(out), COLUMNS="80")
    assert proc.returncode == 0, proc.stderr
    # was "0.87 (-–-)"
    assert "-–-" not in proc.stdout, proc.stdout
    threads = [line for line in proc.stdout.splitlines() if " threading " in f" {line} "]
    assert len(threads) == 2 and all(re.search(r"\d\.\d\d \(no CI\)", t) for t in threads), proc.stdout
    assert 'its speedup has no interval ("no CI")' in " ".join(proc.stdout.split()), proc.stdout
    wide = conclab("summarize", str(out), "--wide", COLUMNS="200")
    assert "-–-" not in wide.stdout and "(no CI)" in wide.stdout, wide.stdout


# --- 4. the Python API's progress counts ------------------------------------------------------

WARM = """\
name: warm
repeats: 2
warmup: 1
timeout_s: 60
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, threading]
  workers: [1]
  tasks: [2]
  size: [20000]
"""


def test_the_python_apis_progress_names_the_measured_runs_apart_from_the_warm_ups(tmp_path, capsys):
    config = tmp_path / "warm.yaml"
    config.write_text(WARM)
    result = conc_lab.sweep(config, out=tmp_path / "results")
    said = capsys.readouterr().err
    # was "sweep: 2 trials, 6 runs → …" for a sweep that recorded 4: its warm-ups counted in
    assert result.recorded == 4
    header = re.search(r"^sweep: 2 trials, (\d+) measured runs \+ (\d+) warm-up → ", said, re.M)
    assert header and header.groups() == ("4", "2"), said
    counts = re.findall(r"^(\d+)/(\d+) runs", said, re.M)
    assert counts and all(int(total) == 4 + 2 for _, total in counts), said
    assert counts[-1][0] == counts[-1][1], said


# --- 5. the report in a 900 px window -----------------------------------------------------------

REPORT = """\
name: narrow
repeats: 2
warmup: 0
timeout_s: 60
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, threading, multiprocessing]
  workers: [1, 2]
  tasks: [2]
  size: [20000]
backend_options:
  multiprocessing: {start_method: [fork]}
exclude:
  - {backend: sequential, workers: 2}
"""

WIDTH_PROBE = """<script>
window.addEventListener("load", function () {
  var box = document.getElementById("summary").parentNode;
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({view: window.innerWidth, page: document.documentElement.scrollWidth,
    box: box.getBoundingClientRect().right, boxScrolls: box.scrollWidth > box.clientWidth,
    boxOverflow: getComputedStyle(box).overflowX});
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.browser
def test_the_report_fits_a_900_px_window_its_summary_scrolling_in_its_own_box(tmp_path):
    from test_report import _chromium, chromium

    need(None if chromium() else "no chromium on PATH (Debian: apt-get install chromium)")
    out = _sweep(tmp_path, REPORT, "narrow")
    proc = conclab("report", str(out), "-o", str(tmp_path / "report"))
    assert proc.returncode == 0, proc.stderr
    page = tmp_path / "probe.html"
    page.write_text(
        (tmp_path / "report" / "index.html").read_text().replace("</body>", WIDTH_PROBE + "</body>")
    )
    proc = _chromium(page, tmp_path, "--window-size=900,1000", "--dump-dom")
    match = re.search(r'<pre id="probe"[^>]*>([^<]*)</pre>', proc.stdout)
    assert match, f"the page did not load in chromium (rc {proc.returncode}): {proc.stderr[-2000:]}"
    seen = json.loads(match.group(1).replace("&quot;", '"'))
    # was: the page 1082 px wide in a 900 px window, the whole page scrolling sideways
    assert seen["page"] <= seen["view"] and seen["box"] <= seen["view"], seen
    if seen["boxScrolls"]:  # the table wider than the window: reachable, in its own box
        assert seen["boxOverflow"] == "auto", seen


# --- 6. compare of two sweeps that share no trial ---------------------------------------------


def test_compare_of_two_sizes_says_the_sizes_differ(tmp_path):
    a = _sweep(tmp_path, ONE_RUN, "a")
    b = _sweep(tmp_path, ONE_RUN.replace("size: [20000]", "size: [30000]"), "b")
    proc = conclab("compare", str(a), str(b), COLUMNS="200")
    # was "(a holds sum_squares; b holds sum_squares)": the same name twice, and no word of why
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    assert "share no trial" in proc.stderr, proc.stderr
    assert "(a: size 20000; b: size 30000)" in proc.stderr, proc.stderr
    assert "sum_squares" not in proc.stderr, proc.stderr  # the workload is the same on both sides


# --- 7. advise says each thing once ---------------------------------------------------------


def _repeats(advice: str) -> list[str]:
    """What the advice says twice: a break-even caveat, or a break-even line the headline holds."""
    said = " ".join(advice.split())
    twice = ["the size caveat"] * (said.count("run ∝ size assumed") > 1)
    headline = advice.splitlines()[0]
    for method, figure, clause in re.findall(
        r"^break-even: \S+ \((\w+)\) pays (.+?) to start: (.+)$", advice, re.M
    ):
        if f"{method} pays {figure} to start, so {clause}" in headline:
            twice.append(f"{method}'s start-up")
    return twice


@pytest.mark.slow
def test_advise_at_80_columns_says_each_thing_once(tmp_path):
    proc = conclab(
        "advise", "experiments.cpu:sum_squares", "--budget", "15", "--out", str(tmp_path / "r"), COLUMNS="80"
    )
    assert proc.returncode == 0, proc.stderr
    # was, at 80 columns, "(extrapolated; one size measured, run ∝ size assumed)" closing both of two
    # break-even lines in a row; or "spawn pays 73.4 ms to start, so it is not told apart from the plain
    # loop yet (1 run: too few for an interval)" in the headline, and in the break-even line under it
    assert _repeats(proc.stdout) == [], proc.stdout


def test_an_advices_lines_say_a_break_even_once():
    """The two repetitions above, on the lines of a verdict that has both (a real advice has one or
    the other, or neither, as the machine's load and the budget fall)."""
    from conc_lab.advice.verdict import Verdict

    pays = "multiprocessing ({}) pays {} ms to start: it wins at size ≥ {} (extrapolated; one size measured, run ∝ size assumed)"
    verdict = Verdict(
        headline="use threading: 1.90× (1.85–1.95) with 2 workers; spawn pays 73.4 ms to start, so it is "
        "not told apart from the plain loop yet (1 run: too few for an interval)",
        choice="threading",
        dont_bother=False,
        settled=False,
        tentative_why=None,
        arms=(),
        break_even=(
            "multiprocessing (spawn) pays 73.4 ms to start: it is not told apart from the plain loop yet "
            "(1 run: too few for an interval)",
            pays.format("forkserver", "45.4", "360,000"),
            pays.format("fork", "12.1", "90,000"),
        ),
    )
    advice = "\n".join(verdict.lines())
    assert _repeats(advice) == [], advice
    assert (
        "break-even: multiprocessing (forkserver) pays 45.4 ms to start: it wins at size ≥ 360,000\n"
        in advice
    )
    assert advice.endswith("break-even: both sizes (extrapolated; one size measured, run ∝ size assumed)"), (
        advice
    )
