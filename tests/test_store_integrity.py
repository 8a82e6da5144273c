"""What the store guarantees when disks, clocks, kills and users work against it (#25, #23).

Real files throughout: sweeps written by the store's own writer or by the real `conclab sweep`,
damaged byte by byte, merges killed by SIGKILL at chosen points, the CLI in subprocesses.
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
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from conc_lab import schema
from conc_lab.store.check import check
from conc_lab.store.layout import LOCK, MANIFEST, StoreError, part_files, sweep_dirs
from conc_lab.store.load import load
from conc_lab.store.manifest import Manifest, SweepState, read_manifest
from conc_lab.store.reader import journal_entries, latest_sweep
from conc_lab.store.writer import SweepWriter

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "conc_lab.cli"]
ENV = dict(os.environ, PYTHONPATH=str(REPO))

pytestmark = pytest.mark.host  # the conclab CLI and killed merges in child processes


def conclab(*args, timeout=300):
    return subprocess.run(
        [*CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout, env=ENV, cwd=REPO
    )


def one_line_error(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def row(sweep_id: str, trial: int, repeat: int, **kw) -> dict:
    r = schema.empty_row()
    r.update(
        sweep_id=sweep_id,
        sweep_name="sh",
        trial_id=f"t{trial}",
        workload="m:f",
        backend="threading",
        workers=2,
        tasks=4,
        size=10,
        affinity="compact",
        repeat=repeat,
        status=schema.OK,
        run_s=0.25 + trial / 100 + repeat / 1000,
        started_at=1_764_086_400_000_000 + 1000 * trial + repeat,
        correct=repeat % 2 == 0,
        cores=[0, 1],
    )
    r.update(kw)
    return r


def shard(root: Path, k: int, n: int, trials: int = 3, repeats: int = 3, close=True, **manifest) -> Path:
    """A shard sweep K/N of config "sh" (fingerprint "fp"), as `conclab sweep --shard` leaves it."""
    sid = f"s{k}of{n}-{manifest.pop('tag', 'a')}"
    d = root / sid
    base = dict(sweep_id=sid, name="sh", fingerprint="fp", shard=f"{k}/{n}", started_at=time.time())
    w = SweepWriter(d, Manifest(**(base | manifest)), flush_rows=4)
    for t in range(k - 1, trials * n, n):
        for rep in range(repeats):
            w.append(row(sid, t, rep))
    if close:
        w.close(SweepState.COMPLETE)
    else:  # killed: what was appended is on disk, the lock goes with the process
        w._unlock()
    return d


# ---- checksums: no flipped bit becomes a number (#25 item 4)


def data_page_range(part: Path) -> tuple[int, int]:
    meta = pq.ParquetFile(part).metadata
    starts, ends = [], []
    for g in range(meta.num_row_groups):
        for c in range(meta.num_columns):
            col = meta.row_group(g).column(c)
            start = min(x for x in (col.dictionary_page_offset, col.data_page_offset) if x is not None)
            starts.append(start)
            ends.append(start + col.total_compressed_size)
    return min(starts), max(ends)


def flipped(part: Path, byte: int, bit: int) -> None:
    data = bytearray(part.read_bytes())
    data[byte] ^= 1 << bit
    part.write_bytes(bytes(data))


@pytest.mark.slow
def test_every_flipped_bit_in_a_parts_data_pages_is_a_store_error_naming_the_part(tmp_path):
    d = shard(tmp_path / "sh", 1, 1)
    (part, *_) = part_files(d)
    whole = part.read_bytes()
    start, end = data_page_range(part)
    for byte in range(start, end, max(1, (end - start) // 150)):
        flipped(part, byte, byte % 8)
        with pytest.raises(StoreError, match=f"{part.name}: damaged Parquet part"):
            load(d)
        part.write_bytes(whole)
    assert len(load(d)) == 9


def test_check_reads_every_byte_not_only_the_key_columns(tmp_path):
    root = tmp_path / "sh"
    d = shard(root, 1, 1)
    (part, *_) = part_files(d)
    start, end = data_page_range(part)
    flipped(part, end - 2, 0)  # in the last column's pages, far from trial_id and repeat
    proc = conclab("check", root)
    assert proc.returncode == 1 and f"{part}: damaged Parquet part" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def unsealed(root: Path) -> tuple[Path, Path]:
    """A killed sweep whose last rows are only in its journal: (sweep folder, journal)."""
    d = shard(root, 1, 1, trials=1, repeats=3, close=False)  # 4 rows a part: 3 stay in the journal
    (journal,) = d.glob("_journal-*.jsonl")
    assert journal.read_bytes().count(b"\n") == 3
    return d, journal


def test_a_journal_line_changed_on_disk_is_named_by_load_and_check_never_read(tmp_path):
    d, journal = unsealed(tmp_path / "sh")
    data = journal.read_bytes()
    at = data.index(b'"run_s":0.25') + len(b'"run_s":0.2')
    journal.write_bytes(data[:at] + b"9" + data[at + 1 :])  # run_s 0.25 -> 0.29: still a valid row
    with pytest.raises(StoreError, match=f"{journal.name}: corrupt line 1 .*no longer match its checksum"):
        load(d)
    proc = conclab("check", d)
    assert proc.returncode == 1 and f"{journal}: corrupt line 1" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_every_flipped_bit_in_a_journal_is_named_never_a_changed_or_lost_row(tmp_path):
    d, journal = unsealed(tmp_path / "sh")
    whole = journal.read_bytes()
    rows = [r for _, r in journal_entries(journal)]
    changed, silent = [], []
    for byte in range(len(whole)):
        for bit in range(8):
            data = bytearray(whole)
            data[byte] ^= 1 << bit
            entries = [e for _, e in journal_entries(journal, bytes(data))]
            changed += [(byte, bit) for e in entries if isinstance(e, dict) and e not in rows]
            if all(isinstance(e, dict) for e in entries) and len(entries) < len(rows):
                silent.append((byte, bit))
    assert changed == []
    # and none lost without a word: not even the last line's newline changed (a tear cuts, never changes)
    assert silent == [], silent[:5]


# ---- merge: killed anywhere, merged again, each run once (#25 item 3)

KILLED_MERGE = textwrap.dedent(
    """
    import os, signal, sys
    from conc_lab.store import merge
    point, root = sys.argv[1], sys.argv[2]
    die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
    if point == "before-manifest":  # the parts are written, the manifest that counts them is not
        merge.write_manifest = die
    if point == "before-remove":  # the merged sweep is in place, the shards not yet removed
        merge.remove_sweep = die
    if point == "mid-remove":  # one shard removed, the other not
        real = merge.remove_sweep
        def remove(d):
            real(d)
            die()
        merge.remove_sweep = remove
    merge.merge(root)
    """
)


def killed_merge(point: str, root: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_MERGE, point, str(root)], env=ENV, capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


# what a killed merge left is read with a warning naming the shards not counted: expected here
@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*is already in merged sweep:conc_lab.store.layout.StoreWarning")
@pytest.mark.parametrize("point", ["before-manifest", "before-remove", "mid-remove"])
@pytest.mark.parametrize("partial_first", [False, True])
def test_a_merge_killed_anywhere_then_merged_again_counts_each_run_once(tmp_path, point, partial_first):
    root = tmp_path / "sh"
    shard(root, 1, 2)
    if partial_first:  # the kill then falls in a merge that adds to a partial merged sweep
        assert conclab("merge", root).returncode == 3
    shard(root, 2, 2)
    killed_merge(point, root)
    assert len(load(root)) == 18 and not load(root).duplicated(["trial_id", "repeat"]).any()
    assert check(root).runs == 18
    merged = conclab("merge", root)
    assert merged.returncode == 0, merged.stderr
    assert "18 runs" in merged.stderr
    (only,) = sweep_dirs(root)  # one merged sweep, the shards gone, nothing left beside it
    assert read_manifest(only).state is SweepState.COMPLETE
    assert [p.name for p in root.iterdir()] == [only.name]
    assert len(load(root)) == 18 and len(pd.read_parquet(root)) == 18
    report = check(root)
    assert report.ok and report.runs == 18, report


@pytest.mark.slow
def test_merging_twice_makes_no_second_merged_sweep(tmp_path):
    out, root = tmp_path / "merged", tmp_path / "sh"
    shard(root, 1, 2), shard(root, 2, 2)
    for _ in range(2):
        assert conclab("merge", root, "--out", out).returncode == 0
    assert len(sweep_dirs(out / "sh")) == 1 and len(load(out)) == 18


# ---- snapshot reads (#25 item 6)

WRITER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[2])
    from test_store_integrity import row
    from conc_lab.store.manifest import Manifest
    from conc_lab.store.writer import SweepWriter
    w = SweepWriter(sys.argv[1], Manifest(sweep_id="live"), flush_rows=3)
    for i in range(100000):
        w.append(row("live", i, 0))
    """
)


@pytest.mark.slow
def test_load_during_seals_never_sees_fewer_rows_than_before(tmp_path):
    d = tmp_path / "live" / "live"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(d), str(Path(__file__).parent)], env=ENV)
    try:
        deadline = time.monotonic() + 60
        while not (d / MANIFEST).exists():
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.01)
        seen, reads = 0, 0
        end = time.monotonic() + 10
        while time.monotonic() < end:
            n = len(load(d, columns=["trial_id"]))
            assert n >= seen, f"read {n} rows after {seen}"
            seen, reads = n, reads + 1
        assert seen > 0 and reads >= 3
    finally:
        proc.kill()
        proc.wait()


# ---- no following symlinks where the store writes (#25 item 5)


def test_a_lock_that_is_a_symlink_is_refused_and_its_target_untouched(tmp_path):
    root = tmp_path / "sh"
    d = shard(root, 1, 1, close=False)
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    (d / LOCK).unlink(missing_ok=True)
    (d / LOCK).symlink_to(victim)
    with pytest.raises(StoreError, match="is a symbolic link"):
        SweepWriter(d, read_manifest(d))
    merged = conclab("merge", root)
    assert merged.returncode == 2 and ".lock: is a symbolic link" in one_line_error(merged)
    assert victim.read_text() == "keep me\n"


def test_a_journal_that_is_a_symlink_is_refused(tmp_path):
    d = tmp_path / "sh" / "s1"
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me\n")
    w = SweepWriter(d, Manifest(sweep_id="s1"), flush_rows=100)
    w.append(row("s1", 0, 0))
    (d / "_journal-000001.jsonl").symlink_to(victim)  # where the writer opens its next journal
    with pytest.raises(StoreError, match="_journal-000001.jsonl: is a symbolic link"):
        w.seal()
    assert victim.read_text() == "keep me\n"


# ---- merge bounds (#25 item 11) and sizes (#23 item 2)


def test_merge_on_a_read_only_store_is_one_line_exit_2(tmp_path):
    root = tmp_path / "sh"
    shard(root, 1, 2), shard(root, 2, 2)
    if os.geteuid() != 0:
        for p in [root, *root.iterdir()]:
            p.chmod(0o555)
        proc = conclab("merge", root)
    else:  # root writes through permissions: a read-only bind mount, in a mount namespace of its own
        if shutil.which("unshare") is None:
            pytest.skip("needs unshare to make a read-only folder as root")
        script = f"mount --bind -o ro {root} {root} && exec {' '.join(CLI)} merge {root}"
        proc = subprocess.run(
            ["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=ENV, cwd=REPO
        )
    assert proc.returncode == 2, proc.stderr
    assert "cannot write the merged sweep" in one_line_error(proc)
    assert len(sweep_dirs(root)) == 2


def test_shards_that_calibrated_different_sizes_are_not_merged(tmp_path):
    root = tmp_path / "sh"
    shard(root, 1, 2, calibrated_sizes={"m:f": 2, "m:g": 4096})
    shard(root, 2, 2, calibrated_sizes={"m:f": 1, "m:g": 4096})
    proc = conclab("merge", root)
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert "shards calibrated different sizes for m:f (1/2: 2, 2/2: 1)" in line
    assert len(sweep_dirs(root)) == 2


def test_shards_that_agree_on_sizes_merge_and_keep_them(tmp_path):
    root = tmp_path / "sh"
    shard(root, 1, 2, calibrated_sizes={"m:f": 2})
    shard(root, 2, 2, calibrated_sizes={"m:f": 2, "m:g": 8})
    assert conclab("merge", root).returncode == 0
    (merged,) = sweep_dirs(root)
    assert dict(read_manifest(merged).calibrated_sizes) == {"m:f": 2, "m:g": 8}


# ---- shards run twice: plain readers count what load counts (#23 item 5)


def test_a_shard_run_again_is_counted_once_by_plain_parquet_readers_too(tmp_path):
    root = tmp_path / "sh"
    shard(root, 1, 2, tag="first", started_at=time.time() - 60)
    shard(root, 1, 2, tag="again", close=False)  # killed: both stay visible, load keeps the complete one
    shard(root, 2, 2)
    shard(root, 1, 2, tag="third")  # completes: the earlier runs of 1/2 step aside
    assert len(load(root)) == 18 == len(pd.read_parquet(root))
    report = check(root)
    assert report.ok and report.runs == 18
    assert sum("an earlier run of a shard" in note for note in report.notes) == 2
    merged = conclab("merge", root)
    assert merged.returncode == 0 and "18 runs" in merged.stderr, merged.stderr


@pytest.mark.filterwarnings("ignore:.*shard 1/2 was run twice")
def test_while_a_shard_runs_again_plain_readers_count_what_load_counts(tmp_path):
    def counts(root: Path) -> tuple[int, int]:
        return len(load(root)), len(pd.read_parquet(root))

    root = tmp_path / "complete-first" / "sh"
    shard(root, 1, 2, tag="first", started_at=time.time() - 60)
    shard(root, 2, 2)
    assert counts(root) == (18, 18)
    again = shard(root, 1, 2, tag="again", close=False)  # running again (here killed): 8 rows sealed
    assert len(load(again)) == 9  # its own rows, read as its own folder
    assert counts(root) == (18, 18)  # load keeps the complete run until this one completes; so do they
    assert check(root).runs == 18
    SweepWriter(again, read_manifest(again)).close(SweepState.COMPLETE)  # resumed: it had every row
    assert counts(root) == (18, 18) and not list(root.rglob("_part-*"))
    assert {d.name for d in sweep_dirs(root)} == {"s1of2-again", "s2of2-a"}

    root = tmp_path / "killed-first" / "sh"
    shard(root, 1, 2, tag="first", started_at=time.time() - 60, close=False)  # killed, never resumed
    shard(root, 2, 2)
    shard(root, 1, 2, tag="again", close=False)  # begun anew, killed too: load keeps the latest
    assert counts(root) == (
        18,
        17,
    )  # the same runs, but its last row, still in its journal (sealed rows only)
    assert check(root).runs == 18


# ---- manifests of the wrong shape (#25 item 10)

WRONG = {
    "sweep_id": [None, 3, "", "../x", ["a"]],
    "name": [3, "../../x", "a/b", ".."],
    "state": [1, "done", ["complete"]],
    "shard": [2, "1/0", "3/2", "x", "1/100000000000"],
    "split": ["2", 0, True],
    "fingerprint": [1, {}],
    "started_at": ["now", [], True],
    "finished_at": ["later"],
    "schema_version": ["1", 1.5],
    "environment": [[], "x", {"cpu_model": {"a": 1}}],
    "calibrated_sizes": [[], {"m:f": "2"}, {"m:f": -1}],
    "overrides": [[], {"repeats": "3"}, {"repeats": 0.5}, {"precision": 5}, {"precision": True}],
    "doctor": [{}, [1]],
    "parts": [[], {"../x.parquet": 2}, {"part-000001.parquet": "2"}, {"part-000001.parquet": -1}],
    "merged_from": [
        {},
        [1],
        [{"shard": "1/2"}],
        [{"sweep_id": "a", "shard": 3}],
        [{"sweep_id": "../a", "shard": "1/2"}],
    ],
}
CASES = [(key, value) for key, values in WRONG.items() for value in values]


@pytest.mark.parametrize("key, value", CASES, ids=[f"{k}={v!r}" for k, v in CASES])
def test_a_manifest_of_the_wrong_shape_is_one_store_error_naming_file_and_key(tmp_path, key, value):
    from conc_lab.store.merge import merge

    root = tmp_path / "sh"
    d = shard(root, 1, 2)
    path = d / MANIFEST
    doc = json.loads(path.read_text())
    if value is None:
        del doc[key]
    else:
        doc[key] = value
    path.write_text(json.dumps(doc))
    for call in (
        lambda: read_manifest(d),
        lambda: load(root),
        lambda: merge(root),
        lambda: latest_sweep(root, "1/2"),
    ):
        with pytest.raises(StoreError) as err:
            call()
        assert str(err.value).startswith(f"{path}: damaged manifest ({key}") and "\n" not in str(err.value)
    report = check(root)
    assert any(p.startswith(f"{path}: damaged manifest ({key}") for p in report.problems)


def test_a_manifest_name_cannot_make_merge_write_outside_out(tmp_path):
    root, out = tmp_path / "in" / "sh", tmp_path / "a" / "b" / "out"
    shard(root, 1, 1)
    path = next(root.iterdir()) / MANIFEST
    path.write_text(json.dumps(json.loads(path.read_text()) | {"name": "../../x"}))
    proc = conclab("merge", root, "--out", out)
    assert proc.returncode == 2 and "damaged manifest (name: '../../x'" in one_line_error(proc)
    assert not (tmp_path / "a" / "x").exists() and not out.exists()


def test_old_manifests_still_load(tmp_path):
    d = shard(tmp_path / "sh", 1, 1)
    path = d / MANIFEST
    doc = json.loads(path.read_text())
    old = {
        k: doc[k]
        for k in ("sweep_id", "name", "state", "shard", "fingerprint", "started_at", "schema_version")
    }
    path.write_text(json.dumps(old | {"a_key_from_elsewhere": [1, 2]}))
    assert read_manifest(d).extra == {"a_key_from_elsewhere": [1, 2]}
    assert len(load(d)) == 9


# ---- minor (#25 item 12)


def test_a_symlinked_sweep_folder_is_reported_not_skipped(tmp_path):
    elsewhere = shard(tmp_path / "elsewhere", 1, 1)
    root = tmp_path / "results" / "sh"
    shard(root, 1, 2)
    (root / elsewhere.name).symlink_to(elsewhere)
    with pytest.raises(StoreError, match=f"{root / elsewhere.name}: a sweep folder that is a symbolic link"):
        load(root)
    report = check(root)
    assert any("symbolic link" in p for p in report.problems)
    assert len(load(elsewhere)) == 9  # by its own path it reads


def test_a_sweep_killed_while_the_clock_was_behind_is_the_one_resumed(tmp_path):
    root = tmp_path / "sh"
    shard(root, 1, 2, tag="done")
    killed = shard(root, 1, 2, tag="killed", close=False, started_at=time.time() - 86400)
    assert latest_sweep(root, "1/2") == killed


def test_check_on_a_missing_folder_says_it_is_missing(tmp_path):
    proc = conclab("check", tmp_path / "nope")
    assert proc.returncode == 2
    line = one_line_error(proc)
    assert line == f"error: {tmp_path / 'nope'}: no such file or folder"


def test_a_shard_count_above_the_trial_count_is_refused_before_anything_runs(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(
        "name: c\nrepeats: 1\nwarmup: 0\nmatrix: {workload: [experiments.io:sleep], backend: [sequential], "
        "tasks: [1], size: [1]}\n"
    )
    proc = conclab("sweep", config, "--out", tmp_path / "r", "--shard", "1/100000000000", "-q")
    assert proc.returncode == 2
    assert "--shard: 1/100000000000: 100000000000 shards of 1 trials" in one_line_error(proc)
    assert not (tmp_path / "r").exists()
