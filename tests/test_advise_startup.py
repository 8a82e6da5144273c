"""`conclab advise` names one start-up figure per backend, wherever it says one (the real CLI, a real
sweep of work so small that start-up decides it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
FIGURE = r"(\d[\d.,]* (?:ns|µs|ms|s|min|h))"
PATTERNS = (
    re.compile(
        rf"\((?P<arm>[^()]+(?:\([^()]+\))?) takes {FIGURE}\)"
    ),  # the headline's "(threading takes 479 µs)"
    re.compile(rf"^  (?P<arm>.+?) \S+× \(.*?\) with \d+ workers?: start-up: {FIGURE}"),  # an arm's line
    re.compile(rf"^break-even: (?P<arm>.+?) pays {FIGURE} to start"),
    re.compile(
        rf"(?:^|; )(?P<method>fork|forkserver|spawn) pays {FIGURE} to start, so"
    ),  # the headline's contrast
)


def _start_up_figures(text: str) -> dict[str, list[str]]:
    """Every start-up figure the output names, per backend as its evidence line names it."""
    found = defaultdict(list)
    for line in text.splitlines():
        for pattern in PATTERNS:
            for m in pattern.finditer(line):
                groups = m.groupdict()
                arm = groups.get("arm") or f"multiprocessing ({groups['method']})"
                found[arm].append(m.group(m.lastindex))
    return dict(found)


def test_advise_names_one_start_up_figure_per_backend(tmp_path):
    # seen: "don't bother: … too small for any backend to pay its start-up (threading takes 479 µs)",
    # then "threading 0.37× (0.34–0.79) with 1 worker: start-up: 686 µs of 1.22 ms", and
    # "multiprocessing (spawn) … start-up: 115 ms of 149 ms" over "break-even: multiprocessing (spawn)
    # pays 56.6 ms to start": one the median run's, the other the median of every run's start-up
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "400"}  # one logical line per line
    proc = subprocess.run(
        [sys.executable, "-m", "conc_lab.cli", "advise", "experiments.advise_cases:tiny", "--budget", "20"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    figures = _start_up_figures(proc.stdout)
    assert any(len(f) >= 2 for f in figures.values()), proc.stdout  # a backend named in two places
    differing = {arm: f for arm, f in figures.items() if len(set(f)) > 1}
    assert not differing, f"two start-up figures for one backend: {differing}\n{proc.stdout}"
    # and the arm's line says what its figure is
    assert re.search(r"start-up: \S+ \S+ of \S+ \S+ end to end, medians", proc.stdout), proc.stdout
