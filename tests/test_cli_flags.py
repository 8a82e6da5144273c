"""``conclab sweep --repeats/--warmup`` and the examples in every command's ``--help``, via the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import conc_lab

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "conc_lab.cli"]
COMMANDS = (
    "sweep",
    "expand",
    "summarize",
    "compare",
    "report",
    "doctor",
    "merge",
    "check",
    "selftest",
    "advise",
    "calibrate",
)


def conclab(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, cwd=REPO, timeout=300, env=env)


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        "name: tiny\nrepeats: 5\nwarmup: 1\nlimits: {runs: 20}\n"
        "matrix:\n  workload: [experiments.cpu:sum_squares]\n  backend: [sequential]\n"
        "  tasks: [1]\n  size: [10, 20]\n"
    )
    return path


def manifest(sweep_dir: Path) -> dict:
    return json.loads(next(sweep_dir.glob("*manifest.json")).read_text())


@pytest.mark.slow
def test_repeats_and_warmup_override_the_file_and_are_recorded(tiny, tmp_path):
    out = tmp_path / "out"
    proc = conclab("sweep", str(tiny), "-o", str(out), "--repeats", "2", "--warmup", "0")
    assert proc.returncode == 0, proc.stderr
    assert "2 trials, 4 measured runs →" in proc.stderr  # no warm-up runs: the file's 1 is overridden
    df = conc_lab.load(out / "tiny")
    assert sorted(df.groupby("size")["repeat"].apply(sorted).tolist()) == [[0, 1], [0, 1]]
    (sweep_dir,) = (out / "tiny").iterdir()
    assert manifest(sweep_dir)["overrides"] == {"repeats": 2, "warmup": 0}


@pytest.mark.slow
def test_a_resume_accepts_the_same_overrides_and_names_different_ones(tiny, tmp_path):
    out = tmp_path / "out"
    assert conclab("sweep", str(tiny), "-o", str(out), "-q", "--repeats", "2").returncode == 0
    same = conclab("sweep", str(tiny), "-o", str(out), "-q", "--resume", "--repeats", "2")
    assert same.returncode == 0, same.stderr
    assert "is complete: nothing to run" in same.stderr
    plain = conclab("sweep", str(tiny), "-o", str(out), "-q", "--resume")
    assert plain.returncode == 2
    (line,) = plain.stderr.strip().splitlines()
    assert "it ran with --repeats 2, this resume gives none of --repeats, --warmup, --precision" in line
    other = conclab("sweep", str(tiny), "-o", str(out), "-q", "--resume", "--repeats", "3")
    assert other.returncode == 2 and "this resume gives --repeats 3" in other.stderr


@pytest.mark.slow
def test_overrides_are_checked_like_the_file(tiny, tmp_path):
    zero = conclab("sweep", str(tiny), "-o", str(tmp_path / "o"), "--repeats", "0")
    assert zero.returncode == 2 and "Traceback" not in zero.stderr and "--repeats" in zero.stderr
    many = conclab("sweep", str(tiny), "-o", str(tmp_path / "o"), "--repeats", "30")
    assert many.returncode == 2 and "Traceback" not in many.stderr
    (line,) = many.stderr.strip().splitlines()
    assert f"{tiny}: --repeats: 1 warm-up + 30 measured runs" in line and "limits.runs (20)" in line
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_precision_from_the_command_line_adds_rounds_and_a_resume_must_give_it(tmp_path):
    """``--precision`` is ``precision: {target: ...}`` for one sweep of a file that has none."""
    import shutil

    shutil.copy(REPO / "tests" / "workloads_jitter.py", tmp_path)  # found beside the config
    config = tmp_path / "jit.yaml"
    config.write_text(
        "name: jit\nrepeats: 2\nwarmup: 0\nmatrix:\n  workload:\n"
        "    - {workload: workloads_jitter:jittery, size: [3]}\n    - {workload: workloads_jitter:steady, size: [20]}\n"
        "  backend: [sequential, threading]\n  tasks: [1]\n"
    )
    out = tmp_path / "out"
    proc = conclab("sweep", str(config), "-o", str(out), "-q", "--precision", "0.25")
    assert proc.returncode == 0, proc.stderr
    df = conc_lab.load(out / "jit")
    df = df[df.status != "redone"]
    rows = df.groupby([df.workload.str.rsplit(":", n=1).str[-1], df.backend.astype(str)]).size().to_dict()
    # the scattered trial to 6 x repeats rounds (the default max_repeats), the steady one to the 5
    # pairs precision wants however narrow 2 are (analysis.precision.MIN_PAIRS): with 2 it stopped,
    # and 2 of 12 sweeps stopped the jittery one there too, its two pairs within ±25% by chance
    assert rows == {
        ("jittery", "sequential"): 12,
        ("jittery", "threading"): 12,
        ("steady", "sequential"): 5,
        ("steady", "threading"): 5,
    }, rows
    (sweep_dir,) = (out / "jit").iterdir()
    assert manifest(sweep_dir)["overrides"] == {"precision": 0.25}
    plain = conclab("sweep", str(config), "-o", str(out), "-q", "--resume")
    assert plain.returncode == 2 and "it ran with --precision 0.25" in plain.stderr, plain.stderr
    again = conclab("sweep", str(config), "-o", str(out), "-q", "--resume", "--precision", "0.25")
    assert again.returncode == 0 and "is complete: nothing to run" in again.stderr, again.stderr
    bad = conclab("sweep", str(config), "-o", str(tmp_path / "o2"), "--precision", "5")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    (line,) = bad.stderr.strip().splitlines()
    assert f"{config}: --precision: must be a share between 0 and 1" in line
    assert not (tmp_path / "o2").exists()


def test_an_interrupted_sweeps_resume_command_keeps_the_overrides():
    from conc_lab.cli.sweep import resume_command

    again = resume_command(Path("c.yaml"), Path("r"), shard=None, repeats=2, warmup=0, precision=0.1)
    assert again == "conclab sweep c.yaml --resume --out r --repeats 2 --warmup 0 --precision 0.1"


@pytest.mark.parametrize("command", COMMANDS)
def test_every_commands_help_ends_with_an_example(command):
    proc = conclab(command, "--help", env={**os.environ, "COLUMNS": "100"})
    assert proc.returncode == 0, proc.stderr
    after = proc.stdout.split("Example", 1)
    assert len(after) == 2, f"conclab {command} --help shows no example"
    assert f"conclab {command} " in after[1]
