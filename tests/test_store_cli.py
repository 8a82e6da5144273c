"""The store as a user meets it: the real `conclab` CLI in subprocesses, on real files.

Hostile text from workloads, malformed rows, and (below) locks, damage and merges.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import conc_lab
from conc_lab import schema, store

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "conc_lab.cli"]


def conclab(*args, timeout=300, **kw):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, **kw
    )


def one_line_error(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


HOSTILE = """
import os

def fsname(task, size):
    # a file name from non-UTF-8 bytes, as os.listdir gives it: it carries a lone surrogate
    if task == 1:
        raise ValueError("cannot read " + os.fsdecode(b"caf\\xe9.txt"))
    return task * size

def fine(task, size):
    return task * size

def slow(task, size):
    import time
    time.sleep(0.3)
    return task * size
"""


def hostile_config(tmp_path: Path, workloads=("fsname", "fine"), repeats=2, name="hostile") -> Path:
    (tmp_path / "hostile_wl.py").write_text(HOSTILE)
    config = tmp_path / f"{name}.yaml"
    config.write_text(
        textwrap.dedent(
            f"""\
            name: {name}
            repeats: {repeats}
            warmup: 0
            matrix:
              workload: [{", ".join("hostile_wl:" + w for w in workloads)}]
              backend: [sequential, threading]
              workers: [2]
              tasks: [4]
              size: [10]
            """
        )
    )
    return config


def test_an_error_with_a_lone_surrogate_is_stored_and_every_reader_still_works(tmp_path):
    config, out = hostile_config(tmp_path), tmp_path / "results"
    proc = conclab("sweep", str(config), "--out", str(out), "--quiet")
    assert proc.returncode == 1, proc.stderr  # the failures are failures, not a crash
    assert "Traceback" not in proc.stderr
    df = conc_lab.load(out / "hostile")
    assert len(df) == 8 and not df.duplicated(["trial_id", "repeat"]).any()
    failed = df[df["status"] == schema.FAILED]
    assert len(failed) == 4 and set(failed["workload"]) == {"hostile_wl:fsname"}
    assert all("cannot read caf\\udce9.txt" in e for e in failed["error"])  # escaped, still legible
    ok = df[df["workload"] == "hostile_wl:fine"]
    assert (ok["status"] == schema.OK).all() and len(ok) == 4  # the neighbours were not poisoned
    resumed = conclab("sweep", str(config), "--out", str(out), "--resume", "--quiet")
    assert "Traceback" not in resumed.stderr and resumed.returncode in (0, 1), resumed.stderr
    assert len(conc_lab.load(out / "hostile")) == 8
    summary = conclab("summarize", str(out / "hostile"))
    assert summary.returncode == 0 and "Traceback" not in summary.stderr, summary.stderr
    assert "fsname" in summary.stdout and "fine" in summary.stdout


def test_a_journal_left_with_a_surrogate_by_an_older_conclab_is_read_and_resumed(tmp_path):
    """A store stuck before the fix (rows only in the journal, one with a surrogate) reads again."""
    config, out = hostile_config(tmp_path, workloads=("fine",), repeats=1), tmp_path / "results"
    assert conclab("sweep", str(config), "--out", str(out), "--quiet").returncode == 0
    (sweep_dir,) = (out / "hostile").iterdir()
    rows = conc_lab.load(sweep_dir, env=False)
    part = next(sweep_dir.glob("part-*.parquet"))
    row = schema.empty_row() | {k: rows.iloc[0][k] for k in ("sweep_id", "trial_id", "workload", "backend")}
    row |= dict(sweep_name="hostile", workers=2, tasks=4, size=10, affinity="compact", repeat=0)
    row |= dict(status=schema.FAILED, error="cannot read caf\udce9.txt")
    part.unlink()
    # what json.dumps wrote before: a \udce9 escape, which json.loads turns back into a lone surrogate
    (sweep_dir / "journal-000000.jsonl").write_text(json.dumps(row) + "\n")
    df = conc_lab.load(out / "hostile")
    assert list(df["error"]) == ["cannot read caf\\udce9.txt"]
    resumed = conclab("sweep", str(config), "--out", str(out), "--resume", "--quiet")
    assert "Traceback" not in resumed.stderr, resumed.stderr
    assert len(conc_lab.load(out / "hostile")) == 2
    assert conclab("summarize", str(out / "hostile")).returncode == 0


def good_row(sweep_id="s1", repeat=0, **kw) -> dict:
    row = schema.empty_row()
    row.update(
        sweep_id=sweep_id,
        sweep_name="demo",
        trial_id="t0",
        workload="m:f",
        backend="threading",
        workers=2,
        tasks=4,
        size=10,
        affinity="compact",
        repeat=repeat,
        status=schema.OK,
        run_s=0.5,
        cores=[0, 1],
        task_records=[{"task": 0, "worker": 0, "core": 0, "cpu": 0, "pid": 1, "start_s": 0.0, "end_s": 0.1}],
    )
    row.update(kw)
    return row


@pytest.mark.parametrize(
    "bad, words",
    [
        ({"colour": "red"}, "unknown result columns: ['colour']"),
        ({"size": "auto"}, "column size: 'auto' (str) is not an integer"),
        ({"workers": 2.5}, "column workers: 2.5 (float) is not an integer"),
        ({"status": "fine"}, "column status: 'fine' is not one of ok, failed, timeout, skipped"),
        ({"run_s": "fast"}, "column run_s: 'fast' (str) is not a number"),
        ({"correct": 1}, "column correct: 1 (int) is not true/false"),
        ({"cores": [0, "x"]}, "column cores: 'x' (str) is not an integer"),
        ({"task_records": [{"task": 0, "color": 1}]}, "column task_records: unknown fields ['color']"),
        ({"trial_id": None}, "column trial_id: missing (null)"),
        ({"sweep_id": "other"}, "sweep_id 'other' in sweep"),
    ],
)
def test_a_malformed_row_is_refused_at_append_and_the_sweep_stays_readable(tmp_path, bad, words):
    sweep_dir = tmp_path / "demo" / "s1"
    writer = store.SweepWriter(sweep_dir, {"sweep_id": "s1"}, flush_rows=2)
    writer.append(good_row(repeat=0))
    with pytest.raises(schema.RowError, match="row refused") as err:
        writer.append(good_row(repeat=1) | bad)
    assert words in str(err.value) and "\n" not in str(err.value)
    writer.append(good_row(repeat=2))  # the writer goes on; the folder reads at every point
    assert sorted(store.load(sweep_dir)["repeat"]) == [0, 2]
    writer.close("complete")
    assert sorted(store.load(sweep_dir)["repeat"]) == [0, 2]
    assert store.completed_runs(sweep_dir) == {("t0", 0), ("t0", 2)}


def wait_for(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def recorded(sweep_root: Path) -> int:
    """Rows recorded so far by a sweep that may still be running (read as any reader would)."""
    if not any(sweep_root.glob(f"*/{store.MANIFEST}")):
        return 0
    return len(store.load(sweep_root, columns=["trial_id"]))


def test_resume_while_the_sweep_runs_is_refused_and_takes_over_once_its_owner_died(tmp_path):
    config = hostile_config(tmp_path, workloads=("slow",), repeats=20, name="owned")
    out = tmp_path / "results"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    first = subprocess.Popen(
        [*CLI, "sweep", str(config), "--out", str(out), "-q"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(lambda: recorded(out / "owned") >= 3)
        refused = conclab("sweep", str(config), "--out", str(out), "--resume", "-q")
        assert refused.returncode == 2
        line = one_line_error(refused)
        assert f"being written by another conclab (pid {first.pid}), still running" in line
        assert first.poll() is None  # the first sweep was not disturbed ...
        rows_before = recorded(out / "owned")
        wait_for(lambda: recorded(out / "owned") > rows_before)  # ... and goes on writing
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        first.stderr.close()
    (sweep_dir,) = (out / "owned").iterdir()
    assert store.read_manifest(sweep_dir)["state"] == "running"
    taken = conclab("sweep", str(config), "--out", str(out), "--resume", "-q")
    assert taken.returncode == 0, taken.stderr
    df = conc_lab.load(out / "owned")
    assert len(df) == 40 and not df.duplicated(["trial_id", "repeat"]).any()
    assert store.read_manifest(sweep_dir)["state"] == "complete"


def test_a_second_writer_of_one_sweep_folder_is_refused_until_the_first_closes(tmp_path):
    sweep_dir = tmp_path / "demo" / "s1"
    first = store.SweepWriter(sweep_dir, {"sweep_id": "s1"})
    with pytest.raises(store.SweepBusy, match=f"pid {os.getpid()}"):
        store.SweepWriter(sweep_dir, {"sweep_id": "s1"})
    assert store.is_live(sweep_dir)
    first.append(good_row())
    first.close("complete")
    assert not store.is_live(sweep_dir)
    second = store.SweepWriter(sweep_dir, {"sweep_id": "s1"})
    second.close("complete")
    assert len(store.load(sweep_dir)) == 1
