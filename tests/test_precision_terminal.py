"""``precision:`` from the user's side: the real CLI in tmux at 80 and 120 columns says each round it
adds and how the rounds ended, in whole words (#20)."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
from test_cli_ux import tmux_run

pytestmark = pytest.mark.terminal

TESTS = Path(__file__).resolve().parent

CONFIG = """\
name: prec
repeats: 5
warmup: 0
precision: {target: 0.25, max_repeats: 7}
matrix:
  workload:
    - {workload: workloads_jitter:jittery, size: [3]}
    - {workload: workloads_jitter:steady, size: [20]}
  backend: [sequential, threading]
  workers: [1]
  tasks: [1]
"""


@pytest.mark.parametrize("width", [80, 120])
def test_the_sweep_says_each_added_round_and_how_precise_it_ended(tmp_path, width):
    shutil.copy(TESTS / "workloads_jitter.py", tmp_path)  # found beside the config, as a user's module is
    (tmp_path / "prec.yaml").write_text(CONFIG)
    out = tmp_path / "results"
    screen = tmux_run(
        f"python -m conc_lab.cli sweep {shlex.quote(str(tmp_path / 'prec.yaml'))} --out {out}", width
    )
    words = " ".join(screen.split())  # rich wraps at spaces: the words, in order, whatever the width
    assert "__EXIT_0__" in screen, screen
    assert "round 6: 1 speedup still wider than ±25% (widest ±" in words, screen
    assert "round 7: 1 speedup still wider than ±25%" in words, screen
    assert (
        "precision: 1 speedup still wider than ±25% after 7 rounds (precision.max_repeats); the widest ±"
        in words
    )
    assert "round 8" not in words
    assert max(len(line) for line in screen.splitlines()) <= width
