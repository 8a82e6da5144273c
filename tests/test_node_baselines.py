"""Per-node baselines as a cluster user meets them: a Ray cluster sweep (rows carry their node id)
or a SLURM array over two hosts (rows told apart by hostname), summarized through the real
``conclab summarize`` at 80 columns and through ``conc_lab.summarize``.

Each node's speedups are measured against that node's own sequential runs. Where a node's baseline
is one run (``repeats: 1``, or a split that leaves one sequential run on a node) a speedup has no
interval: it must say so where the reader looks (the 80-column table hides the ``n`` column), never
show a zero-width one, and never be called superlinear.

The runs are real (a real sweep of ``experiments.cpu:sum_squares``); they are stored again, as a
cluster sweep stores them, with the node each is given here, through the project's own writer
(``SweepWriter``: real Parquet parts and manifest, read back by ``conc_lab.load``).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.cells import cell_len

import conc_lab
from conc_lab import events
from conc_lab.config.document import parse_config
from conc_lab.store.manifest import SweepState, read_manifest
from conc_lab.store.reader import read_sweep
from conc_lab.store.writer import SweepWriter

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
NODE_A, NODE_B = "a1" * 28, "b2" * 28  # Ray node ids: 56 hex digits, shown by their first 8


def _real_rows(out: Path, repeats: int) -> tuple[list[dict], Path]:
    """The rows of a real sweep: the plain loop and threads at 1 and 2 workers, ``repeats`` rounds."""
    cfg = parse_config(
        {
            "name": "cpu",
            "repeats": repeats,
            "warmup": 0,
            "timeout_s": 60,
            "matrix": {
                "workload": ["experiments.cpu:sum_squares"],
                "backend": ["sequential", "threading"],
                "workers": [1, 2],
                "tasks": [2],
                "size": [20000],
            },
        }
    )
    sweep_dir = conc_lab.sweep(cfg, out=out / "single", on_event=events.ignore).sweep_dir
    rows = read_sweep(sweep_dir).table.to_pylist()
    # as the executor gives them to the writer: a start time in µs since the epoch
    return [
        {k: (round(v.timestamp() * 1e6) if hasattr(v, "timestamp") else v) for k, v in r.items()}
        for r in rows
    ], (sweep_dir)


def _store_on_nodes(out: Path, repeats: int, node_of) -> Path:
    """A real sweep's runs stored again as one sweep whose runs ran on the nodes ``node_of(row)`` names
    (a dict of the columns to set: ``node_id`` or ``hostname``); the folder a user summarizes."""
    rows, sweep_dir = _real_rows(out, repeats)
    manifest = read_manifest(sweep_dir)
    writer = SweepWriter(out / "results" / "cpu" / manifest.sweep_id, manifest.replace(parts={}))
    for row in rows:
        writer.append({**row, **node_of(row)})
    writer.close(SweepState.COMPLETE)
    return out / "results" / "cpu"


@pytest.fixture(scope="module")
def ray_split(tmp_path_factory) -> Path:
    """A 2-node Ray cluster sweep, 3 rounds: node b2… ran the plain loop once (round 0; node a1… ran
    it in rounds 1 and 2) and every run of threads at 2 workers; node a1… every run at 1 worker."""

    def node_of(row: dict) -> dict:
        if row["backend"] == "sequential":
            return {"node_id": NODE_B if row["repeat"] == 0 else NODE_A}
        return {"node_id": NODE_B if row["workers"] == 2 else NODE_A}

    return _store_on_nodes(tmp_path_factory.mktemp("ray"), 3, node_of)


@pytest.fixture(scope="module")
def slurm_hosts(tmp_path_factory) -> Path:
    """A SLURM array over two hosts, one run of every trial on each (``repeats: 1`` per node)."""
    return _store_on_nodes(
        tmp_path_factory.mktemp("slurm"), 2, lambda row: {"hostname": ("node-a", "node-b")[row["repeat"]]}
    )


def _summarize_cli(results: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="80")
    proc = subprocess.run(
        [sys.executable, "-m", "conc_lab.cli", "summarize", str(results)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=results.parent,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _row(screen: str, backend: str, workers: str, node: str) -> str:
    """The table's line for ``backend`` at ``workers`` on ``node`` (columns: workload, backend, workers, node, ...)."""
    (line,) = [line for line in screen.splitlines() if line.split()[1:4] == [backend, workers, node]]
    return line


def _too_few(screen: str, row: str) -> bool:
    """Whether ``row``'s notes (the last column) say it rests on too few runs: spelled out, or by
    the mark the legend under the table gives it (``notes: / unpaired, 1 too few runs``)."""
    (header,) = [line for line in screen.splitlines() if line.startswith("workload ")]
    notes = row[header.index("notes") :].strip() if "notes" in header else ""
    legend = [line for line in screen.splitlines() if line.startswith("notes: ")]
    if not legend:
        return "too few runs" in notes
    marks = dict(item.split(" ", 1)[::-1] for item in legend[0].removeprefix("notes: ").split(", "))
    return marks.get("too few runs", "too few runs") in notes


def _words(screen: str) -> str:
    """The screen's text as one line: what a reader reads, wherever the terminal wrapped it."""
    return " ".join(screen.split())


def _no_zero_width_interval(screen: str) -> None:
    zero = re.findall(r"(\d+\.\d+) \((\d+\.\d+)–\2\)", screen)
    assert not zero, f"zero-width intervals {zero} in:\n{screen}"


def test_a_node_whose_baseline_is_one_run_is_marked_at_80_columns(ray_split):
    screen = _summarize_cli(ray_split)
    assert all(cell_len(line) <= 80 for line in screen.splitlines()), screen
    _no_zero_width_interval(screen)
    # threads at 2 workers on node b2…: 3 runs of its own, against node b2…'s 1 sequential run
    row = _row(screen, "threading", "2", "b2b2b2b2")
    assert "(no CI)" in row, screen  # a speedup, and no interval (it read "(-–-)")
    assert _too_few(screen, row), screen
    assert _too_few(screen, _row(screen, "sequential", "1", "b2b2b2b2")), screen  # the baseline itself
    # node a1…: threads at 1 worker against 2 sequential runs, paired: an interval, not marked
    row = _row(screen, "threading", "1", "a1a1a1a1")
    # (or, where its two ends round to one number, how far they lie from it: "1.00 (±0.3%)")
    assert re.search(r"\(\d+\.\d\d–\d+\.\d\d\)|\(±(<0\.1|\d+\.\d)%\)", row), screen
    assert not _too_few(screen, row), screen
    # what the mark means is said in words under the table, with what to do
    said = _words(screen)
    assert "rests on 1 run: too few for an interval" in said, screen
    assert "next: more repeats" in said.split("too few runs (")[1], screen
    assert "superlinear" not in said.split("too few runs (")[0], screen  # no row claims it


def test_the_python_api_gives_no_interval_and_notes_it(ray_split):
    summary = conc_lab.summarize(ray_split)
    node = summary["node"].astype(str)
    threads = summary["backend"].astype(str) == "threading"
    lone = summary[threads & (node == NODE_B)].iloc[0]
    assert math.isfinite(lone.speedup), lone
    assert math.isnan(lone.speedup_ci_low) and math.isnan(lone.speedup_ci_high), lone
    assert "too few runs" in lone.notes and not lone.superlinear, lone
    # the baseline itself, one run: its own median has no interval either, and it says so
    base = summary[(summary["backend"].astype(str) == "sequential") & (node == NODE_B)].iloc[0]
    assert base.n == 1 and "too few runs" in base.notes, base
    paired = summary[threads & (node == NODE_A)].iloc[0]
    assert paired.speedup_ci_low < paired.speedup_ci_high and "too few runs" not in paired.notes, paired


def test_one_run_per_host_on_a_slurm_array_says_so_and_claims_nothing(slurm_hosts):
    screen = _summarize_cli(slurm_hosts)
    assert all(cell_len(line) <= 80 for line in screen.splitlines()), screen
    _no_zero_width_interval(screen)
    for host in ("node-a", "node-b"):
        assert _too_few(screen, _row(screen, "sequential", "1", host)), screen
        for workers in ("1", "2"):
            assert _too_few(screen, _row(screen, "threading", workers, host)), screen
    said = _words(screen)
    assert "rests on 1 run: too few for an interval" in said, screen
    assert "superlinear" not in said.split("too few runs (")[0], screen
    # the line naming the fastest says its doubt beside a number no interval stands behind
    for line in screen.splitlines():
        if "fastest threading" in line:
            assert "too few runs" in line, screen

    summary = conc_lab.summarize(slurm_hosts)
    measured = summary[summary["backend"].astype(str) == "threading"]
    assert measured["speedup_ci_low"].isna().all() and measured["speedup_ci_high"].isna().all(), measured
    assert not measured["superlinear"].any(), measured
    assert measured["notes"].str.contains("too few runs").all(), measured
