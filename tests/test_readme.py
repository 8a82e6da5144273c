"""Every command and Python snippet in the README, taken from the README itself (#26 item 2b).

All ``conclab`` lines: the command exists and knows every option the line uses (its ``--help``).
Every file a command names (configs, benchmarks) exists. The smoke-sized ones run as written, in a
scratch folder holding the repository's configs: the Python snippet (which runs the smoke sweep),
then ``summarize``, ``compare`` and ``report`` on its folder, ``expand``, ``doctor``, ``--help``.
Commands that need other machines or hours (Ray clusters, SLURM, the big matrices, the test suite)
are checked, not run.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
CLI = [sys.executable, "-m", "conc_lab.cli"]


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks in ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", README, re.S | re.M)


def commands(prefix: str) -> list[str]:
    """Every line of a bash block that starts with ``prefix``, its trailing ``# comment`` dropped."""
    found = []
    for block in blocks("bash"):
        for line in block.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line.strip())
            if line.startswith(prefix):
                found.append(line)
    return found


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in [env.get("PYTHONPATH")] if p])
    return env


@functools.cache
def help_text(command: str) -> str:
    proc = subprocess.run([*CLI, command, "--help"], capture_output=True, text=True, env=_env(), cwd=REPO)
    assert proc.returncode == 0, (
        f"README names `conclab {command}`, which does not exist: {proc.stderr[-500:]}"
    )
    return proc.stdout


def test_the_readme_has_what_this_test_reads():
    assert len(commands("conclab ")) >= 15 and blocks("python")


@pytest.mark.parametrize("line", commands("conclab "))
def test_every_conclab_line_names_a_command_and_options_that_exist(line):
    words = shlex.split(line.replace("${SLURM_ARRAY_TASK_ID}", "1"))
    if words[1].startswith("-"):  # conclab --help, --version
        return
    text = help_text(words[1])
    for word in words[2:]:
        if word.startswith("--"):
            assert word.split("=")[0] in text, f"`{line}`: conclab {words[1]} has no option {word}"
        elif word.startswith("configs/"):
            assert (REPO / word).exists(), f"`{line}`: no {word}"


@pytest.mark.parametrize("line", commands("python benchmarks/"))
def test_every_benchmark_the_readme_runs_exists(line):
    assert (REPO / shlex.split(line)[1]).exists(), line


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A folder holding the repository's configs, where README commands run as a user types them."""
    root = tmp_path_factory.mktemp("readme")
    (root / "configs").symlink_to(REPO / "configs")
    return root


def _run(argv: list[str], cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=_env(), timeout=timeout)


@pytest.mark.slow
def test_the_python_snippet_then_the_folder_commands_run_as_written(scratch):
    snippet = next(b for b in blocks("python") if 'conc_lab.sweep("configs/smoke.yaml")' in b)
    proc = _run([sys.executable, "-c", snippet], scratch, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "speedup" in proc.stdout and "amdahl_f" in proc.stdout  # it prints something to read
    assert "no sequential runs" not in proc.stderr  # was: the snippet's summary had no baseline
    assert (scratch / "report" / "index.html").exists()
    assert "sweep:" in proc.stderr and " runs, " in proc.stderr  # progress while it ran
    printed = proc.stdout.splitlines()
    top = next(i for i, line in enumerate(printed) if "median_s" in line)
    end = next(i for i, line in enumerate(printed) if "amdahl_f" in line)
    rows = [line.split()[1:-2] for line in printed[top + 1 : end]]  # less the index, median and speedup
    # was: three rows "experiments.cpu:sum_squares  multiprocessing  2" with three different
    # speedups (fork, spawn, forkserver), the start method not among the columns printed
    assert rows and len(set(map(tuple, rows))) == len(rows), proc.stdout
    assert "..." not in printed[top], proc.stdout  # every column asked for, none elided by pandas
    ran = []
    for line in commands("conclab "):
        words = shlex.split(line)
        if words[1] in ("summarize", "compare", "report") and "results/smoke" in line:
            out = _run([*CLI, *words[1:]], scratch)
            assert out.returncode == 0, f"`{line}`: {out.stderr[-2000:]}"
            ran.append(words[1])
    assert sorted(ran) == ["compare", "report", "summarize"]


@pytest.mark.parametrize(
    "line", [c for c in commands("conclab ") if c.split()[1] in ("expand", "doctor", "--help")]
)
def test_quick_commands_run_as_written(line, scratch):
    proc = _run([*CLI, *shlex.split(line)[1:]], scratch, timeout=300)
    assert proc.returncode == 0, f"`{line}`: {proc.stderr[-2000:]}"


def test_every_parquet_column_is_named_in_the_readme_s_column_table():
    # was: own_gil, stored since the subinterpreters backend, missing from the table a reader of the
    # Parquet files looks columns up in
    from conc_lab.schema import COLUMNS

    table = [line for line in README.splitlines() if line.startswith("| `")]
    named = set(re.findall(r"`([a-z_]+)`", "\n".join(table)))
    assert [c for c in COLUMNS if c not in named] == []
