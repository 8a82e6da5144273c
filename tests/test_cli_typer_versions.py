"""The CLI under the older typers that ``typer>=0.12`` lets a user have.

Found on a CUDA image that ships typer 0.27.2: ``import conc_lab.cli`` died with AttributeError
(``TyperOption.display_type_rich``, a method that came with typer 0.28), so every command, even
``--version``, was a traceback. Each version is installed from the package registry into a folder of
its own, put before the installed typer, and the real command is run: ``--version``, an option the
command does not have (one line, exit 2), and a one-trial sweep.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
ONE = """\
name: one
repeats: 1
warmup: 0
matrix:
  workload: [experiments.overhead:noop]
  backend: [sequential]
  tasks: [1]
  size: [1]
"""


def _install(version: str, where: Path) -> None:
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(where)]
    # typer bundles its own click since 0.26; before that it needs click beside it
    proc = subprocess.run([*pip, f"typer=={version}", "click>=8.1"], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"typer {version} could not be installed here: {proc.stderr.strip()[-200:]}")


@pytest.mark.parametrize("version", ["0.16.0", "0.27.2"])
def test_the_cli_runs_under_an_older_typer(version, tmp_path):
    _install(version, tmp_path / "site")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(REPO)]))
    cli = [sys.executable, "-m", "conc_lab.cli"]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*cli, *args], capture_output=True, text=True, env=env, cwd=tmp_path)

    probe = subprocess.run(
        [sys.executable, "-c", "import typer; print(typer.__version__)"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert probe.stdout.strip() == version  # the older typer is the one imported
    assert run("--version").stdout.startswith("conclab ")
    bad = run("sweep", "--bogus")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and "--bogus" in bad.stderr
    (tmp_path / "one.yaml").write_text(ONE)
    done = run("sweep", "-q", "one.yaml", "--out", "results")
    assert done.returncode == 0, done.stderr
    assert "1 run recorded (0 failed" in done.stdout + done.stderr
    # an empty path is refused under each typer too (0.28+ coerces values itself; older, click.Path)
    for args, name in ((["sweep", "one.yaml", "-o", ""], "--out"), (["summarize", "results", ""], "PATHS")):
        empty = run(*args)
        assert (empty.returncode, empty.stderr) == (2, f"error: {name}: an empty path\n"), empty.stderr
