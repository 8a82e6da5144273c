"""The numbers a sweep prints, read by a newcomer through the real ``conclab`` command.

Each figure says what it is and reads as a person writes it: the overhead per run in the
project's one duration format (3 significant figures, ``host.units.duration``) and named as
conc_lab's own; break-even sizes as plain integers (``12,000``, never ``1.2e+04``); and the
threads-against-processes ratio names the two configurations it sets side by side.
"""

from __future__ import annotations

import csv
import io
import re

import pytest
from test_cli_ux import conclab

pytestmark = pytest.mark.host

#: ``size`` microseconds of sleep a task: the GIL released, so threads and processes both halve the
#: time at 2 workers, and a process pool's start-up (milliseconds) breaks even at thousands of units
NAP = "import time\n\n\ndef nap(task, size):\n    time.sleep(size / 1e6)\n    return task\n"

CONFIG = """\
name: naps
repeats: 3
warmup: 0
timeout_s: 60
matrix:
  workload: [napwork:nap]
  backend: [sequential, threading, multiprocessing]
  workers: [1, 2]
  tasks: [4]
  size: [2000, 100000]
exclude:
  - {backend: multiprocessing, workers: 1}
backend_options:
  multiprocessing: {start_method: [fork]}
"""

#: a duration as ``host.units.duration`` writes it: at most 3 significant figures and a unit
DURATION = r"(\d+(?:\.\d+)?) (µs|ms|s)"


@pytest.fixture(scope="module")
def naps(tmp_path_factory):
    root = tmp_path_factory.mktemp("naps")
    (root / "napwork.py").write_text(NAP)
    (root / "naps.yaml").write_text(CONFIG)
    proc = conclab("sweep", str(root / "naps.yaml"), "--out", str(root / "r"), "-v")
    assert proc.returncode == 0, proc.stderr
    return root / "r", proc


def _figures(number: str) -> int:
    """Significant figures written: ``0.0123`` 3, ``347`` 3, ``346.81`` 5."""
    return len(number.replace(".", "").lstrip("0"))


def test_the_last_line_says_whose_overhead_it_is_in_three_figures_as_v_does(naps):
    # was: "...; overhead 346.81 ms per run → DIR": five figures, and whose overhead, of what?
    _, proc = naps
    split_line, final = proc.stderr.strip().splitlines()[-2:]
    said = re.search(rf"\); conc_lab's own overhead {DURATION} a run → ", final)
    assert said, final
    assert _figures(said.group(1)) <= 3, final
    # -v tells the same figure, in the same words, and where it goes, each part as a duration
    assert split_line.startswith(f"conc_lab's own overhead {said.group(1)} {said.group(2)} a run ("), (
        split_line
    )
    parts = dict(
        (name, value)
        for name, value, _ in re.findall(rf"(start-up|runner|trial host) {DURATION}", split_line)
    )
    assert set(parts) == {"start-up", "runner", "trial host"}, split_line
    assert all(_figures(v) <= 3 for v in parts.values()), split_line


def test_break_even_sizes_read_as_plain_numbers(naps):
    # was: "size ≥ 1.2e+04" in summarize's csv, markdown and --wide, the report and advise
    out, _ = naps
    proc = conclab("summarize", str(out), "-f", "csv")
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    told = [r["break_even"] for r in rows if r["break_even"].startswith("size")]
    assert told, [(r["backend"], r["break_even"]) for r in rows]  # the process pool's, at least
    assert all(re.fullmatch(r"size ≥ \d{1,3}(,\d{3})*( \(.*\))?", t) for t in told), told
    assert not any("e+" in r["break_even"] for r in rows), [r["break_even"] for r in rows]


def test_threads_against_processes_names_the_two_configurations(naps):
    # was: "nap size 100000: fastest ...; threads take 2.01x the time of processes": which threads?
    _, proc = naps
    flat = " ".join(proc.stdout.split())
    said = re.findall(
        r"threads \((\d) workers?, \d+\.\d\dx\) take \d+\.\d\dx the time of processes \((\w+), (\d) workers?, \d+\.\d\dx\)",
        flat,
    )
    # one line per size; sleeping threads are fastest at 2 workers; the processes ran fork at 2
    assert said == [("2", "fork", "2")] * 2, flat


def test_threads_against_processes_names_the_processes_the_table_calls_fastest():
    # Seen in a smoke sweep under load: "fastest multiprocessing/fork, 2 workers (1.95x)", then "threads
    # (1 worker) take 1.90x the time of processes (spawn, 2 workers)": spawn had the least median
    # (38.5 ms against fork's 40.6), fork the highest speedup (paired against the plain loop).
    import pandas as pd

    from conc_lab.present.tables import workload_lines

    summary = pd.DataFrame(
        {
            "workload": ["cpu:sum_squares"] * 4,
            "backend": ["sequential", "threading", "multiprocessing", "multiprocessing"],
            "start_method": [None, None, "fork", "spawn"],
            "workers": [1, 1, 2, 2],
            "median_s": [0.0715, 0.0731, 0.0406, 0.0385],
            "speedup": pd.array([1.0, 0.99, 1.95, 1.94], dtype="Float64"),
        }
    )
    (line,) = workload_lines(summary)
    assert "fastest multiprocessing/fork, 2 workers (1.95x)" in line, line
    # the two speedups the ratio is read from are shown beside it (a newcomer divided the medians)
    assert line.endswith(
        "threads (1 worker, 0.99x) take 1.97x the time of processes (fork, 2 workers, 1.95x)"
    ), line
