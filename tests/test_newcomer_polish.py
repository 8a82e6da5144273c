"""What a newcomer saw in the output of sweep, summarize, compare, report and advise, and tripped on.

Each test does what the user did (a real ``conclab`` command, a terminal of their width, a browser
window of theirs) and reads what they read.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
