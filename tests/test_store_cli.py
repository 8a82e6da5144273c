"""The store as a user meets it: the real `conclab` CLI in subprocesses, on real files.

Hostile text from workloads, malformed rows, and (below) locks, damage and merges.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

import conc_lab
from conc_lab import schema
from conc_lab.store.layout import MANIFEST, StoreError, StoreWarning, SweepBusy, file_seq, sweep_dirs
from conc_lab.store.load import load
from conc_lab.store.lock import is_live
from conc_lab.store.manifest import Manifest, read_manifest, write_manifest
from conc_lab.store.merge import PARTIAL_EXIT
from conc_lab.store.reader import completed_runs
from conc_lab.store.writer import SweepWriter

pytestmark = pytest.mark.host

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


@pytest.mark.slow
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
    # the failures stay recorded, not re-run: the resume runs nothing, and exits as the sweep did
    assert "Traceback" not in resumed.stderr and resumed.returncode == 1, resumed.stderr
    assert "nothing to run (" in resumed.stderr and "runs failed)" in resumed.stderr, resumed.stderr
    assert len(conc_lab.load(out / "hostile")) == 8
    summary = conclab("summarize", str(out / "hostile"), "-f", "csv")
    assert summary.returncode == 0 and "Traceback" not in summary.stderr, summary.stderr
    assert "hostile_wl:fsname" in summary.stdout and "hostile_wl:fine" in summary.stdout


def unrecord_parts(sweep_dir: Path) -> None:
    """The manifest as a conc_lab from before parts were recorded wrote it (no ``parts``)."""
    write_manifest(sweep_dir, read_manifest(sweep_dir).replace(parts=None))


@pytest.mark.slow
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
    unrecord_parts(sweep_dir)  # as a conclab from before left it: a journal, and no parts recorded
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
    writer = SweepWriter(sweep_dir, Manifest(sweep_id="s1"), flush_rows=2)
    writer.append(good_row(repeat=0))
    with pytest.raises(schema.RowError, match="row refused") as err:
        writer.append(good_row(repeat=1) | bad)
    assert words in str(err.value) and "\n" not in str(err.value)
    writer.append(good_row(repeat=2))  # the writer goes on; the folder reads at every point
    assert sorted(load(sweep_dir)["repeat"]) == [0, 2]
    writer.close("complete")
    assert sorted(load(sweep_dir)["repeat"]) == [0, 2]
    assert completed_runs(sweep_dir) == {("t0", 0), ("t0", 2)}


def wait_for(predicate, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


def recorded(sweep_root: Path) -> int:
    """Rows recorded so far by a sweep that may still be running (read as any reader would)."""
    if not any(sweep_root.glob(f"*/{MANIFEST}")):
        return 0
    return len(load(sweep_root, columns=["trial_id"]))


@pytest.mark.slow
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
    assert read_manifest(sweep_dir).state == "running"
    taken = conclab("sweep", str(config), "--out", str(out), "--resume", "-q")
    assert taken.returncode == 0, taken.stderr
    df = conc_lab.load(out / "owned")
    assert len(df) == 40 and not df.duplicated(["trial_id", "repeat"]).any()
    assert read_manifest(sweep_dir).state == "complete"


def test_a_second_writer_of_one_sweep_folder_is_refused_until_the_first_closes(tmp_path):
    sweep_dir = tmp_path / "demo" / "s1"
    first = SweepWriter(sweep_dir, Manifest(sweep_id="s1"))
    with pytest.raises(SweepBusy, match=f"pid {os.getpid()}"):
        SweepWriter(sweep_dir, Manifest(sweep_id="s1"))
    assert is_live(sweep_dir)
    first.append(good_row())
    first.close("complete")
    assert not is_live(sweep_dir)
    second = SweepWriter(sweep_dir, Manifest(sweep_id="s1"))
    second.close("complete")
    assert len(load(sweep_dir)) == 1


# ---- damaged stores (#14 item 10): one line naming the file, never a traceback, never a run twice


@pytest.fixture(scope="module")
def shard_store(tmp_path_factory) -> Path:
    """One real sweep, run as shard 1/1 so that merge applies to it too: 2 trials x 2 repeats."""
    tmp = tmp_path_factory.mktemp("damage")
    config, out = hostile_config(tmp, workloads=("fine",), name="dmg"), tmp / "results"
    proc = conclab("sweep", str(config), "--out", str(out), "--shard", "1/1", "-q")
    assert proc.returncode == 0, proc.stderr
    return out / "dmg"


def _journal_line(sweep_dir: Path, **change) -> str:
    row = good_row(sweep_id=read_manifest(sweep_dir).sweep_id, repeat=7, trial_id="t-new")
    return json.dumps(row | change)


def _damage(sweep_dir: Path, kind: str) -> tuple[Path, str]:
    """Damage a copy of a sweep as ``kind`` says: (the file a user should be told about, words)."""
    part = next(sweep_dir.glob("part-*.parquet"))
    manifest = sweep_dir / MANIFEST
    journal = sweep_dir / "_journal-000009.jsonl"
    if kind == "truncated part":
        part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
        return part, "damaged Parquet part"
    if kind.startswith("journal"):
        line = {
            "journal garbage": '{"garbage":1}',
            "journal null": "null",
            "journal wrong type": _journal_line(sweep_dir, workers="two"),
        }[kind]
        journal.write_text(_journal_line(sweep_dir) + "\n" + line + "\n")
        return journal, "corrupt line 2"
    if kind == "manifest list":
        manifest.write_text("[1, 2]")
        return manifest, "damaged manifest"
    if kind == "manifest deleted":
        manifest.unlink()
        return sweep_dir, f"result files without a {MANIFEST}"
    assert kind == "copied part"
    shutil.copy(part, sweep_dir / "part-000007.parquet")
    return sweep_dir / "part-000007.parquet", "stored twice"


DAMAGE = ["truncated part", "journal garbage", "journal null", "journal wrong type", "manifest list"]


# Each command ends at once after its one error line: where Arrow held a Python bytes, that exit could
# abort in Arrow's threads (store.reader._arrow_bytes says how); the exit code is exactly 2, every time.
@pytest.mark.slow
@pytest.mark.parametrize("kind", [*DAMAGE, "manifest deleted"])
def test_a_damaged_store_is_named_in_one_line_by_every_command(shard_store, tmp_path, kind):
    root = tmp_path / "results" / "dmg"
    shutil.copytree(shard_store, root)
    (sweep_dir,) = root.iterdir()
    config = hostile_config(tmp_path, workloads=("fine",), name="dmg")
    named, words = _damage(sweep_dir, kind)
    checked = conclab("check", str(root))
    assert checked.returncode == 1 and "Traceback" not in checked.stderr
    assert f"{named}" in checked.stderr and words in checked.stderr, checked.stderr
    for args in (
        ["summarize", str(root)],
        ["merge", str(root)],
        ["sweep", str(config), "--out", str(tmp_path / "results"), "--shard", "1/1", "--resume", "-q"],
    ):
        proc = conclab(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        line = one_line_error(proc)
        assert str(named) in line and words in line, (args, line)
    with pytest.raises(StoreError, match=words):
        conc_lab.load(root)
    assert sorted(p.name for p in root.iterdir()) == [sweep_dir.name]  # nothing new started


@pytest.mark.slow
def test_a_copied_part_counts_once_everywhere_and_check_names_it(shard_store, tmp_path):
    root = tmp_path / "results" / "dmg"
    shutil.copytree(shard_store, root)
    (sweep_dir,) = root.iterdir()
    named, words = _damage(sweep_dir, "copied part")
    checked = conclab("check", str(root))
    assert checked.returncode == 1 and f"{named}: 4 runs stored twice" in checked.stderr, checked.stderr
    with pytest.warns(StoreWarning, match="4 runs are stored twice"):
        df = conc_lab.load(root)
    assert len(df) == 4 and not df.duplicated(["sweep_id", "trial_id", "repeat"]).any()
    summary = conclab("summarize", str(root), "-f", "csv")
    assert summary.returncode == 0 and "Traceback" not in summary.stderr, summary.stderr
    assert "warning:" in summary.stderr and "stored twice" in summary.stderr
    merged = conclab("merge", str(root))
    assert merged.returncode == 0 and "4 runs" in merged.stderr, merged.stderr
    assert len(conc_lab.load(root)) == 4
    assert conclab("check", str(root)).returncode == 0


def test_check_passes_a_whole_store(shard_store):
    proc = conclab("check", str(shard_store))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "1 sweep, 4 runs: ok"


# ---- merging shards (#13 items 1, 2, 7; #12 item 4)

SHARDED = """
name: sh
repeats: 2
warmup: 0
matrix:
  workload: [hostile_wl:slow]
  backend: [sequential, threading]
  workers: [2]
  tasks: [2, 3]
  size: [10]
"""


def sharded_config(tmp_path: Path) -> Path:
    (tmp_path / "hostile_wl.py").write_text(HOSTILE)
    config = tmp_path / "sh.yaml"
    config.write_text(SHARDED)
    return config


def shard_sweep(config: Path, out: Path, shard: str, *extra: str) -> subprocess.CompletedProcess:
    proc = conclab("sweep", str(config), "--out", str(out), "--shard", shard, "-q", *extra)
    assert proc.returncode == 0, proc.stderr
    return proc


def kill_mid_sweep(config: Path, out: Path, shard: str) -> None:
    """Start a shard and SIGKILL it once it has recorded a run, as scancel -s KILL would."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    before = shard_rows(out / "sh", shard)  # an earlier run of the shard may be there
    proc = subprocess.Popen(
        [*CLI, "sweep", str(config), "--out", str(out), "--shard", shard, "-q"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: shard_rows(out / "sh", shard) > before)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)


def shard_rows(root: Path, shard: str) -> int:
    dirs = [m.parent for m in root.glob(f"*/{MANIFEST}") if read_manifest(m.parent).shard == shard]
    return sum(len(load(d, columns=["trial_id"])) for d in dirs)


def each_run_once(df, runs: int) -> None:
    assert len(df) == runs and not df.duplicated(["trial_id", "repeat"]).any()


@pytest.mark.slow
def test_a_killed_shard_makes_merge_partial_and_merging_again_completes_the_same_sweep(tmp_path):
    config, out = sharded_config(tmp_path), tmp_path / "results"
    root = out / "sh"
    shard_sweep(config, out, "1/3")
    kill_mid_sweep(config, out, "3/3")  # 2/3 is not run at all yet
    merged = conclab("merge", str(root))
    assert merged.returncode == PARTIAL_EXIT == 3, merged.stderr
    assert "Traceback" not in merged.stderr
    assert "merged 1 of 3 shards (1/3)" in merged.stderr
    assert "shard 3/3 is not complete (killed while running" in merged.stderr
    assert "--shard 3/3 --resume" in merged.stderr and "shards missing: 2/3;" in merged.stderr
    (partial,) = [d for d in root.iterdir() if read_manifest(d).merged_from]
    assert read_manifest(partial).state == "partial"
    with_killed = conc_lab.load(root)  # the killed shard's runs are still there, counted once
    assert not with_killed.duplicated(["trial_id", "repeat"]).any()
    shard_sweep(config, out, "2/3")
    shard_sweep(config, out, "3/3", "--resume")
    # Shard 1/3 ran two hours before the rest (its array task was requeued): the note says so.
    # Shards minutes apart ran in one sitting and get none (tests/test_cluster.py).
    manifest = read_manifest(partial)
    earlier = tuple(
        replace(src, started_at=src.started_at - 7200, finished_at=src.finished_at - 7200)
        for src in manifest.merged_from
    )
    write_manifest(partial, replace(manifest, merged_from=earlier))
    merged = conclab("merge", str(root))
    assert merged.returncode == 0, merged.stderr
    assert "merged 3 shards (1/3, 2/3, 3/3), 8 runs" in merged.stderr
    assert "note: shards ran at different times" in merged.stderr
    (final,) = root.iterdir()
    assert final == partial  # the same sweep, completed
    manifest = read_manifest(final)
    assert manifest.state == "complete" and [s.shard for s in manifest.merged_from] == [
        "1/3",
        "2/3",
        "3/3",
    ]
    df = conc_lab.load(root)
    each_run_once(df, 8)
    assert any("shards ran at different times" in note for note in df.attrs["notes"])
    summary = conclab("summarize", str(root), "-f", "csv")
    assert summary.returncode == 0 and "note: sweep" in summary.stderr and "different load" in summary.stderr
    assert conclab("check", str(root)).returncode == 0


@pytest.mark.slow
def test_merge_out_uses_the_sweep_layout_keeps_the_shards_and_completes_later(tmp_path):
    config, out, elsewhere = sharded_config(tmp_path), tmp_path / "results", tmp_path / "merged"
    shard_sweep(config, out, "1/2")
    first = conclab("merge", str(out / "sh"), "--out", str(elsewhere))
    assert first.returncode == PARTIAL_EXIT and "shards missing: 2/2" in first.stderr, first.stderr
    (partial,) = (elsewhere / "sh").iterdir()  # OUT/<name>/<sweep_id>, as sweep --out writes
    shard_sweep(config, out, "2/2")
    second = conclab("merge", str(out / "sh"), "--out", str(elsewhere))
    assert second.returncode == 0 and "merged 2 shards (1/2, 2/2), 8 runs" in second.stderr, second.stderr
    assert [p.name for p in (elsewhere / "sh").iterdir()] == [partial.name]
    assert read_manifest(partial).state == "complete"
    each_run_once(conc_lab.load(elsewhere), 8)
    assert len(sweep_dirs(out / "sh")) == 2  # the shards are kept


@pytest.mark.slow
def test_load_never_counts_a_shard_run_twice(tmp_path):
    import pandas as pd

    config, out = sharded_config(tmp_path), tmp_path / "results"
    shard_sweep(config, out, "1/2")
    kill_mid_sweep(config, out, "1/2")  # run again, killed: two runs of 1/2 side by side
    shard_sweep(config, out, "2/2")
    with pytest.warns(StoreWarning, match="shard 1/2 was run twice"):
        df = load(out / "sh")
    each_run_once(df, 8)
    checked = conclab("check", str(out / "sh"))
    assert checked.returncode == 1 and "shard 1/2 was run twice" in checked.stderr, checked.stderr
    refused = conclab("merge", str(out / "sh"))
    assert refused.returncode == 2 and "shard 1/2 is there twice" in one_line_error(refused)
    shard_sweep(config, out, "1/2")  # run a third time, to the end: the earlier runs step aside
    each_run_once(load(out / "sh"), 8)
    assert len(pd.read_parquet(out / "sh")) == 8  # plain readers count what load counts (#23 item 5)
    checked = conclab("check", str(out / "sh"))
    assert checked.returncode == 0 and checked.stderr.count("an earlier run of a shard") == 2, checked.stderr
    merged = conclab("merge", str(out / "sh"))
    assert merged.returncode == 0 and "8 runs" in merged.stderr, merged.stderr


# ---- plain Parquet readers, column types, stores written before (#12 items 5, 10)


@pytest.fixture(scope="module")
def plain_store(tmp_path_factory) -> Path:
    """A finished real sweep with failures (null `correct`) beside ok runs: 8 rows."""
    tmp = tmp_path_factory.mktemp("plain")
    config, out = hostile_config(tmp, name="plain"), tmp / "results"
    proc = conclab("sweep", str(config), "--out", str(out), "-q")
    assert proc.returncode == 1, proc.stderr  # the fsname trials fail, on purpose
    return out / "plain"


def test_plain_parquet_readers_read_a_results_folder_as_load_does(plain_store):
    import pandas as pd
    import pyarrow.dataset as ds

    n = len(conc_lab.load(plain_store))
    assert n == 8
    assert len(pd.read_parquet(plain_store)) == n
    assert len(pd.read_parquet(plain_store.parent)) == n  # results/ itself
    assert ds.dataset(plain_store, format="parquet").count_rows() == n


def test_duckdb_and_polars_read_a_results_folder_as_load_does(plain_store):
    import duckdb  # both in the dev extra
    import polars as pl

    n = len(conc_lab.load(plain_store))
    assert duckdb.sql(f"select count(*) from read_parquet('{plain_store}/**/*.parquet')").fetchall() == [(n,)]
    # polars reads a folder only when every file in it is Parquet (it skips no hidden names): the glob
    assert pl.scan_parquet(f"{plain_store}/**/*.parquet").select(pl.len()).collect().item() == n


def test_correct_is_a_nullable_boolean_so_filtering_on_it_works(plain_store):
    df = conc_lab.load(plain_store)
    assert str(df["correct"].dtype) == "boolean"
    assert df["correct"].isna().sum() == 4  # the failed runs: nothing to check
    right = df[df.correct]  # raised on an object column with nulls
    assert len(right) == 4 and (right["status"] == schema.OK).all()
    assert len(df[~df.correct.fillna(True)]) == 0
    assert df["size"].tolist() == [10] * 8  # `size` stays; df.size is pandas' cell count


@pytest.mark.slow
def test_a_store_written_before_the_rename_loads_checks_and_resumes(plain_store, tmp_path):
    """manifest.json and journal-*.jsonl, as conc_lab wrote them until now."""
    root = tmp_path / "results" / "plain"
    shutil.copytree(plain_store, root)
    (sweep_dir,) = root.iterdir()
    unrecord_parts(sweep_dir)
    (sweep_dir / MANIFEST).rename(sweep_dir / "manifest.json")
    part = sorted(sweep_dir.glob("part-*.parquet"))[-1]
    rows = conc_lab.load(sweep_dir, env=False).tail(2)
    part.unlink()
    kept = len(conc_lab.load(root))
    lines = [json.dumps({k: _plain(v) for k, v in r.items()}) for r in rows.to_dict("records")]
    (sweep_dir / f"journal-{file_seq(part):06d}.jsonl").write_text("\n".join(lines) + "\n")
    assert len(conc_lab.load(root)) == kept + 2
    assert conclab("check", str(root)).returncode == 0
    config = hostile_config(tmp_path, name="plain")
    resumed = conclab("sweep", str(config), "--out", str(tmp_path / "results"), "--resume", "-q")
    assert "Traceback" not in resumed.stderr and resumed.returncode in (0, 1), resumed.stderr
    names = sorted(p.name for p in sweep_dir.iterdir())
    assert MANIFEST in names and "manifest.json" not in names and not any("journal" in n for n in names)
    df = conc_lab.load(root)
    assert len(df) == 8 and not df.duplicated(["trial_id", "repeat"]).any()


def _plain(value):
    """A loaded cell back as the JSON a journal holds."""
    import numpy as np
    import pandas as pd

    if isinstance(value, pd.Timestamp):
        return int(value.value // 1000)
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def test_a_sweep_folder_copied_whole_is_counted_once(plain_store, tmp_path):
    root = tmp_path / "results" / "plain"
    (sweep_dir,) = plain_store.iterdir()
    shutil.copytree(sweep_dir, root / sweep_dir.name)
    shutil.copytree(sweep_dir, root / "copy")
    with pytest.warns(StoreWarning, match="a copy of sweep"):
        assert len(conc_lab.load(root)) == 8
    assert conclab("check", str(root)).returncode == 1
