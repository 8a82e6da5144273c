"""Hostile workloads, round 4: work hidden in the answer, and shared memory left in /dev/shm.

* An answer that looks like plain data but computes itself when read (a dict subclass whose
  ``items()`` does the work, an int whose ``__int__`` does) had conc_lab do the work after the
  timed window, when it checksummed the answers: an ok row of almost nothing, the work untimed.
  Now no workload code runs when an answer is read: every value is read through its builtin
  type's own methods, and a container subclass that overrides how it is read is refused.
* A run that leaves a shared-memory segment (or any file) in /dev/shm left it there for good,
  unmentioned. Now its row names it, and it is removed.

Each test runs real sweeps of tests/workloads_hostile4.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import workloads_hostile4 as w4
from test_hostile_host import observed
from test_hostile_host import sweep as hostile_sweep

from conc_lab import schema
from conc_lab.host import measure

pytestmark = [
    pytest.mark.host,
    pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="needs Linux /dev/shm"),
]


def sweep(tmp_path, workloads, **extra):
    """test_hostile_host's sweep (in order, one repeat, one host) of workloads_hostile4's workloads."""
    return hostile_sweep(tmp_path, [w if ":" in w else f"workloads_hostile4:{w}" for w in workloads], **extra)


# -- 1. work hidden in the answer --------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sequential", "threading"])
def test_an_answer_that_computes_itself_when_read_does_no_work_outside_the_window(tmp_path, backend):
    rows = sweep(
        tmp_path,
        [
            "returns_lazy_dict",
            "returns_lazy_list",
            "returns_lazy_mapping",
            "returns_lazy_int",
            "returns_lazy_bytes",
        ],
        backend=backend,
        workers=2 if backend == "threading" else 1,
    )
    by = {r["workload"].split(":")[1]: r for r in rows}
    # Before: each was an ok, correct row of a few microseconds, while 0.3 s of work per run ran
    # when conc_lab checksummed the answers, after the window (late_s 0.3 in every row).
    for name, how in (("returns_lazy_dict", "items()"), ("returns_lazy_list", "__iter__()")):
        row = by[name]
        assert row["status"] == schema.FAILED, (name, row["status"], row["observed"])
        assert "workloads_hostile4.Lazy" in row["error"] and how in row["error"], row["error"]
        assert "\n" not in row["error"]
    assert by["returns_lazy_mapping"]["status"] == schema.FAILED
    assert "result is not JSON-able: workloads_hostile4.LazyMapping" in by["returns_lazy_mapping"]["error"]
    # Scalars hold their value: it is read as the builtin's (0, b""), never through the subclass.
    for name in ("returns_lazy_int", "returns_lazy_bytes"):
        row = by[name]
        assert row["status"] == schema.OK and row["correct"] is True, row["error"]
        assert observed(row) == {"late_s": 0.0}, (name, row["observed"])


def test_no_workload_code_runs_when_an_answer_is_checksummed():
    late = w4._late[0]
    assert measure.checksum([w4.LazyInt(3), w4.LazyBytes(3)]) == measure.checksum([0, b""])
    for lazy, method in ((w4.LazyDict(3), "items()"), (w4.LazyList(3), "__iter__()")):
        with pytest.raises(measure.NotJSONable, match=r"workloads_hostile4\.Lazy\w+ overrides " + method):
            measure.checksum([[lazy]])
    assert w4._late[0] == late


def test_honest_subclasses_of_builtins_are_still_checked_by_their_value(tmp_path):
    import collections

    answer = w4.returns_subclassed_plain_data(1, 5)
    plain = [2, [1, 5], {"a": 1}, {"a": 2, "b": 1}, {"b": 2}]
    assert measure.checksum(answer) == measure.checksum(plain)
    assert measure.checksum([collections.OrderedDict(a=1)]) == measure.checksum([{"a": 1}])
    (row,) = sweep(tmp_path, ["returns_subclassed_plain_data"], backend="threading", workers=2)
    assert row["status"] == schema.OK and row["correct"] is True, row["error"]


# -- 2. shared memory left in /dev/shm ---------------------------------------------------------------


@pytest.fixture
def marker(monkeypatch):
    """A marker the workloads name their segments with; what carries it is removed afterwards."""
    mark = f"conclab-test-{os.getpid()}-{os.urandom(4).hex()}"
    monkeypatch.setenv(w4.MARKER_ENV, mark)
    yield mark
    for name in _marked(mark):  # only what this test made
        os.unlink(f"/dev/shm/{name}")


def _marked(mark: str) -> list[str]:
    return sorted(n for n in os.listdir("/dev/shm") if n.startswith(mark))


def test_what_a_run_leaves_in_dev_shm_is_named_and_removed(tmp_path, marker):
    guilty, probe = sweep(tmp_path, ["leaks_shared_memory", "workloads_hostile:probe"])
    # Before: both segments stayed in /dev/shm after the sweep (4 kB each here; a leak of a real
    # payload keeps its memory until reboot), and the row said nothing of them.
    assert guilty["status"] == probe["status"] == schema.OK
    assert _marked(marker) == []
    note = guilty["left_behind"] or ""
    for task in (0, 1):
        assert f"{marker}-shm-{task}" in note, note
    assert "/dev/shm" in note and "removed" in note, note
    assert probe["left_behind"] is None


def test_a_file_a_run_wrote_and_closed_in_dev_shm_is_named_and_kept(tmp_path, marker):
    # Nothing holds it by the end of the run, so it cannot be told from a file another program wrote
    # there meanwhile (the next test): named on the row, hedged, and not removed.
    guilty, probe = sweep(tmp_path, ["leaks_shm_file", "workloads_hostile:probe"])
    assert guilty["status"] == probe["status"] == schema.OK
    assert _marked(marker) == [f"{marker}-raw-0", f"{marker}-raw-1"]
    note = guilty["left_behind"] or ""
    assert f"{marker}-raw-0 (100 bytes; held by no process, so perhaps another program's: kept)" in note, note
    assert "removed" not in note and probe["left_behind"] is None


def test_a_file_another_program_writes_in_dev_shm_during_a_run_is_not_removed(tmp_path, monkeypatch, marker):
    # Was: a new entry nobody held at the run's end was taken for the run's and removed: two sweeps at
    # once (or this suite beside another) deleted each other's files; an innocent row was blamed.
    import threading

    started, go = tmp_path / "started", tmp_path / "go"
    monkeypatch.setenv(w4.STARTED_ENV, str(started))
    monkeypatch.setenv(w4.GO_ENV, str(go))
    theirs = Path(f"/dev/shm/{marker}-theirs")

    def another_program():
        deadline = time.monotonic() + 20
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        theirs.write_bytes(b"y" * 64)  # written and closed: held by no process
        go.touch()

    helper = threading.Thread(target=another_program)
    helper.start()
    (row,) = sweep(tmp_path, ["waits_while_another_program_makes_a_semaphore"], tasks=1)
    helper.join()
    assert row["status"] == schema.OK, row["error"]
    assert theirs.read_bytes() == b"y" * 64, "another program's file was removed by a run"
    assert "perhaps another program's: kept" in row["left_behind"], row["left_behind"]


# Was: in 2 of 3 runs of the whole developer loop the segments were still there 10 s after the
# sweep: the host's resource tracker, left to end after the host, was killed with the host's
# process group before it unlinked them. The host now ends it, and waits, before it exits.
def test_segments_leaked_by_spawned_workers_are_named_and_gone_when_the_host_ends(tmp_path, marker):
    guilty, honest = sweep(
        tmp_path,
        ["leaks_closed_shared_memory", "experiments.memory:payload_shared_memory"],
        backend="multiprocessing",
        workers=2,
        backend_options={"multiprocessing": {"start_method": ["spawn"]}},
    )
    # The workers closed their segments and ended: nothing holds them as the run ends, so they are
    # named and kept (they cannot be told from another program's). They are registered with
    # multiprocessing's resource tracker, which the host keeps for all its runs and which unlinks
    # them as the host ends, before the sweep does.
    assert guilty["status"] == honest["status"] == schema.OK, (guilty["error"], honest["error"])
    for task in (0, 1):
        assert f"{marker}-worker-{task} (4096 bytes; held by no process" in guilty["left_behind"], guilty
    assert honest["left_behind"] is None  # it unlinks its own segment
    assert _marked(marker) == []


def test_a_semaphore_another_program_makes_during_a_run_is_neither_removed_nor_blamed_on_it(
    tmp_path, monkeypatch
):
    # Was: the run's process matched /dev/shm entries to their holders by path, and sem_open maps a
    # semaphore under a temporary name before linking it to its own, so a named semaphore another
    # program (here this test's process, as another sweep's spawned pool) made during the run looked
    # held by nobody and was removed: that program's spawned worker then failed in SemLock._rebuild
    # with FileNotFoundError (seen in `conclab sweep configs/smoke.yaml` beside these tests).
    import multiprocessing
    import threading

    started, go = tmp_path / "started", tmp_path / "go"
    monkeypatch.setenv(w4.STARTED_ENV, str(started))
    monkeypatch.setenv(w4.GO_ENV, str(go))
    made = []

    def another_program():
        deadline = time.monotonic() + 20
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.005)
        made.append(multiprocessing.get_context("spawn").Lock())  # /dev/shm/sem.mp-…, kept open here
        go.touch()

    helper = threading.Thread(target=another_program)
    helper.start()
    (row,) = sweep(tmp_path, ["waits_while_another_program_makes_a_semaphore"], tasks=1)
    helper.join()
    path = "/dev/shm/sem." + made[0]._semlock.name.lstrip("/")
    assert row["status"] == schema.OK, row["error"]
    assert os.path.exists(path), "another program's semaphore was removed by a run"
    assert "sem." not in (row["left_behind"] or ""), row["left_behind"]  # and not told as the run's
    assert made[0].acquire(timeout=1)
    made[0].release()


@pytest.mark.flaky(reruns=2)  # once in CI (1 of 1 runs) the segment stayed; not seen here in 20 runs
def test_what_a_run_that_timed_out_left_in_dev_shm_is_named_and_removed(tmp_path, marker):
    # Was: a run killed at its timeout never reached its own /dev/shm check, and the resource tracker
    # that would have unlinked its segment died with it: the segment stayed for good, unmentioned
    # (two sem.mp-* a timed-out spawn run, found by tests/test_faults.py's hangs cases).
    hung, probe = sweep(
        tmp_path, ["leaks_shared_memory_then_hangs", "workloads_hostile:probe"], timeout_s=3, tasks=1
    )
    assert hung["status"] == schema.TIMEOUT and probe["status"] == schema.OK
    assert _marked(marker) == [], (hung["left_behind"], hung["error"])
    # Named and removed by the runner, unless the run's tracker unlinked it first: killed after the
    # run's process, it sees its end and cleans up (the order the kills land in, on a loaded machine)
    note = hung["left_behind"] or ""
    assert note == "" or f"left in /dev/shm: {marker}-hung-0 (4096 bytes); removed" in note, hung
    assert probe["left_behind"] is None
