"""The store against a hostile HPC user: parts deleted, odd paths given to check, paths near PATH_MAX.

Each test runs the real `conclab` CLI on a real small sweep (experiments.overhead:noop, 2 repeats).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
from test_store_integrity import one_line_error

from conc_lab.store.layout import MANIFEST, StoreWarning
from conc_lab.store.load import load

pytestmark = pytest.mark.host  # the conclab CLI in child processes

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "conc_lab.cli"]


def conclab(*args, timeout=300):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO
    )


def tiny_config(folder: Path, name: str = "tiny") -> Path:
    config = folder / f"{name[:20]}.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            name: {name}
            repeats: 2
            warmup: 0
            matrix:
              workload: [experiments.overhead:noop]
              backend: [sequential, threading]
              workers: [1]
              tasks: [2]
              size: [1]
            """
        )
    )
    return config


@pytest.fixture(scope="module")
def swept(tmp_path_factory) -> tuple[Path, Path]:
    """(config, results folder) of one complete real sweep: 2 trials x 2 repeats."""
    tmp = tmp_path_factory.mktemp("swept")
    config = tiny_config(tmp)
    proc = conclab("sweep", config, "--out", tmp / "results", "-q")
    assert proc.returncode == 0, proc.stderr
    return config, tmp / "results"


@pytest.fixture
def store(swept, tmp_path) -> tuple[Path, Path]:
    """A copy of the swept results to damage: (config, sweep folder)."""
    config, results = swept
    shutil.copytree(results, tmp_path / "results")
    (sweep_dir,) = (tmp_path / "results" / "tiny").iterdir()
    return config, sweep_dir


# ---- a deleted part


def test_a_deleted_part_of_a_complete_sweep_is_named_by_check_and_load(store):
    config, sweep_dir = store
    assert conclab("check", sweep_dir.parent.parent).returncode == 0
    (part,) = sweep_dir.glob("part-*.parquet")
    part.unlink()
    proc = conclab("check", sweep_dir.parent.parent)
    assert proc.returncode == 1, proc.stderr
    assert f"{part}: missing: its 4 runs" in proc.stderr.replace("\n", "")
    assert "0 runs: 1 problem" in proc.stderr
    with pytest.warns(StoreWarning, match=rf"{part.name}: missing: its 4 runs"):
        assert len(load(sweep_dir)) == 0
    # --resume runs the lost runs again; the sweep is whole then
    proc = conclab("sweep", config, "--out", sweep_dir.parent.parent, "--resume", "-q")
    assert proc.returncode == 0, proc.stderr
    assert conclab("check", sweep_dir).returncode == 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load(sweep_dir)) == 4


def test_a_sweep_from_before_parts_were_recorded_loads_and_check_says_it_cannot_tell(store):
    _, sweep_dir = store
    doc = json.loads((sweep_dir / MANIFEST).read_text())
    doc.pop("parts", None)
    (sweep_dir / MANIFEST).write_text(json.dumps(doc))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load(sweep_dir)) == 4
    proc = conclab("check", sweep_dir)
    assert proc.returncode == 0, proc.stderr
    assert "does not record its parts: a deleted part cannot be found" in proc.stderr.replace("\n", "")


def test_merge_refuses_a_shard_whose_part_was_deleted(tmp_path):
    config, results = tiny_config(tmp_path), tmp_path / "results"
    for k in ("1/2", "2/2"):
        proc = conclab("sweep", config, "--out", results, "--shard", k, "-q")
        assert proc.returncode == 0, proc.stderr
    (part, *_) = sorted((results / "tiny").glob("*/part-*.parquet"))
    part.unlink()
    proc = conclab("merge", results / "tiny")
    assert proc.returncode == 2
    assert f"{part}: missing: its 2 runs" in one_line_error(proc)
    assert len(list((results / "tiny").iterdir())) == 2  # both shards left as they were


# ---- check on what is not a results folder


def test_check_on_a_file_says_it_is_not_a_results_folder(swept):
    config, results = swept
    (part,) = results.glob("tiny/*/part-*.parquet")
    for path in (config, part):
        proc = conclab("check", path)
        assert proc.returncode == 2, proc.stderr
        assert one_line_error(proc) == f"error: {path}: a file, not a results folder or a sweep folder"


def test_check_on_a_folder_without_sweeps_says_no_sweep_is_there(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    proc = conclab("check", tmp_path / "empty")
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc)
    assert line == f"error: {tmp_path / 'empty'}: no sweep there (no {MANIFEST} in it or below it)"


# ---- paths near PATH_MAX, names too long


def deep_folder(root: Path, length: int) -> Path:
    """A folder path of exactly ``length`` bytes under ``root`` (made, but its last folder)."""
    path = str(root)
    while len(path) < length - 201:
        path += "/" + "d" * 200
    path += "/" + "e" * (length - len(path) - 1)
    Path(path).parent.mkdir(parents=True)
    return Path(path)


def test_a_results_path_too_long_for_the_sweeps_files_is_refused_before_anything_runs(tmp_path):
    limit = os.pathconf(tmp_path, "PC_PATH_MAX") - 1  # the longest path the system opens (4095)
    out = deep_folder(tmp_path, limit - 40)  # room for its sweep folder, not for its parts
    proc = conclab("sweep", tiny_config(tmp_path), "--out", out)
    assert proc.returncode == 2, proc.stderr
    line = one_line_error(proc)
    assert line.startswith(f"error: {out}: too long a results path") and f"limit of {limit} bytes" in line
    assert not out.exists()  # nothing written: no manifest or journal left behind


def test_a_sweep_name_too_long_is_named_as_too_long(tmp_path):
    for name, problem in [
        ("a" * 101, "name: too long (101 characters; at most 100)"),
        ("tiny\n", "name: must be letters, digits, '_', '.', '-' only: '\\n' is not"),
        ("-tiny", "name: must start with a letter or a digit, got '-tiny'"),
    ]:
        config = tiny_config(tmp_path)
        config.write_text(config.read_text().replace("name: tiny", f"name: {json.dumps(name)}"))
        proc = conclab("sweep", config, "--out", tmp_path / "results")
        assert proc.returncode == 2, proc.stderr
        assert problem in one_line_error(proc)
        assert not (tmp_path / "results").exists()
