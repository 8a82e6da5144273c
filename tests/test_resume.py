"""A sweep killed at any moment loses nothing it finished and resumes to exactly what is missing.

Everything here runs the real `conclab sweep` in a child process and kills it for real:
SIGKILL at random moments in a loop, SIGKILL at chosen points (during the warm-up round,
between a Parquet part's rename and its journal's unlink, between fsync and rename),
Ctrl-C (SIGINT to its process group, as a terminal sends it) and SIGTERM. After each,
`--resume` must complete the sweep with every run stored once: no lost rows, no duplicate
rows, no torn or stray files, and no trial host or worker left running.
The loop's figures (N kills, rows expected vs stored, duplicates) are measured by
benchmarks/bench_kill_resume.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conc_lab.config.document import load_config
from conc_lab.plan.matrix import count
from conc_lab.store.layout import MANIFEST
from conc_lab.store.load import load
from conc_lab.store.manifest import read_manifest

pytestmark = pytest.mark.host

REPO = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "conc_lab.cli"]
PYTHON_C = [sys.executable, "-c"]

CONFIG = """\
name: kr
repeats: 4
warmup: 1
timeout_s: 30
matrix:
  workload: [experiments.io:sleep]
  backend: [sequential, threading, multiprocessing]
  workers: [1, 2]
  tasks: [2]
  size: [5]
backend_options:
  multiprocessing: {start_method: [fork]}
"""


@pytest.fixture
def sweep_config(tmp_path):
    path = tmp_path / "kr.yaml"
    path.write_text(CONFIG)
    return path


def expected_rows(config: Path) -> int:
    cfg = load_config(config)
    return count(cfg) * cfg.repeats


def start(args: list[str], tag: str, program: list[str] = CLI) -> subprocess.Popen:
    """The real CLI in its own session (so a signal to its group reaches it alone, as from a terminal).

    ``tag`` goes into its environment, which its trial hosts and their workers inherit: that is
    how ``survivors`` finds every process the sweep started.
    """
    env = dict(os.environ, CONCLAB_TEST_TAG=tag, COLUMNS="400")  # wide: no message wrapped mid-path
    return subprocess.Popen(
        [*program, *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=ctrl_c_as_in_a_terminal,
    )


def ctrl_c_as_in_a_terminal() -> None:
    """In the child: SIGINT back to its default, as a terminal's foreground job has it. pytest run
    in the background of a non-interactive shell (`.ci/run &`) ignores SIGINT, its children inherit
    that, and Python then installs no KeyboardInterrupt handler: Ctrl-C would be tested as ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def survivors(tag: str, within_s: float = 5.0) -> list[int]:
    """Processes carrying ``tag`` still running after ``within_s`` (a SIGKILLed one takes a moment)."""
    needle = f"CONCLAB_TEST_TAG={tag}".encode()
    deadline = time.monotonic() + within_s
    while True:
        alive = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                if needle not in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                    continue
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z":
                alive.append(int(entry))
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def journal_rows(out: Path) -> int:
    """Rows saved so far in the journals under ``out`` (a resumed sweep starts a fresh journal)."""
    n = 0
    for journal in out.glob("kr/*/_journal-*.jsonl"):
        try:
            n += journal.read_bytes().count(b"\n")
        except OSError:  # sealed and removed meanwhile
            pass
    return n


def run_to_end(args: list[str], tag: str, program: list[str] = CLI) -> subprocess.CompletedProcess:
    proc = start(args, tag, program)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def resume_until_complete(config: Path, out: Path, tag: str) -> int:
    """Run `conclab sweep --resume` until it exits 0; returns how many runs that took."""
    for attempt in range(1, 4):
        done = run_to_end(["sweep", str(config), "--out", str(out), "--resume", "-q"], tag)
        assert done.returncode in (0, 130), done.stderr
        assert "Traceback" not in done.stderr
        if done.returncode == 0:
            return attempt
    raise AssertionError("the sweep did not complete after 3 resumes")


def check_complete_store(config: Path, out: Path) -> None:
    """Exactly the expected rows, each run once, in whole files of known kinds."""
    sweeps = [d for d in (out / "kr").iterdir() if (d / MANIFEST).exists()]
    assert len(sweeps) == 1, sweeps  # every resume continued the same sweep
    sweep_dir = sweeps[0]
    names = sorted(p.name for p in sweep_dir.iterdir())
    assert all(n == MANIFEST or n.startswith("part-") for n in names), names  # no journal, no .tmp
    for part in sweep_dir.glob("part-*.parquet"):
        pq.read_table(part)  # whole: a torn file would not parse
    df = load(sweep_dir)
    assert len(df) == expected_rows(config)
    assert not df.duplicated(["trial_id", "repeat"]).any()
    assert (df["status"] == "ok").all() and df["correct"].all()
    assert read_manifest(sweep_dir).state == "complete"


@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume_stores_every_run_once(sweep_config, tmp_path):
    out = tmp_path / "out"
    rng = random.Random(20240607)  # a fixed seed: a failure here can be replayed
    tag = uuid.uuid4().hex
    kills, stored, mid_sweep = 0, 0, 0
    for _ in range(8):
        proc = start(["sweep", str(sweep_config), "--out", str(out), "--resume"], tag)
        # Its "N trials, M measured runs -> dir" line (not under -q) comes once the store is open. Then the kill
        # lands in the warm-up round (rows == 0) or a moment after this start's n-th row is saved.
        for line in proc.stderr:
            if "measured runs" in line:
                break
        rows = rng.choice([0, rng.randint(1, 12)])
        if rows == 0:
            time.sleep(rng.uniform(0.0, 0.1))
        while journal_rows(out) < rows and proc.poll() is None:
            time.sleep(0.001)
        time.sleep(rng.uniform(0.0, 0.01))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.communicate()
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL
        assert survivors(tag) == []  # its trial hosts and workers died with it (the lifeline)
        loaded = load(out / "kr")  # a killed sweep's store reads cleanly ...
        assert not loaded.duplicated(["trial_id", "repeat"]).any()  # ... with no run twice
        assert len(loaded) >= stored  # ... and nothing stored before is lost
        stored = len(loaded)
        mid_sweep += 0 < stored < expected_rows(sweep_config)
    assert kills >= 3 and mid_sweep >= 1  # some kills landed with part of the runs stored
    resume_until_complete(sweep_config, out, tag)
    check_complete_store(sweep_config, out)


# Killing itself at a chosen point of a real sweep: the one thing patched is *when* the
# process dies, never what is written.
KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from conc_lab.run import runner
    from conc_lab.store.layout import MANIFEST
    from conc_lab.store.load import load
    from conc_lab.store.manifest import read_manifest
    from conc_lab.store import writer as store_writer
    point, config, out = sys.argv[1], sys.argv[2], sys.argv[3]
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    seen = {"warmup": 0, "measured": 0}

    def on_event(event):
        if type(event).__name__ != "RunFinished":
            return
        seen["measured" if event.measured else "warmup"] += 1
        if point == "warmup" and seen["warmup"] == 3:
            die()
        if point == "rows" and seen["measured"] == 7:
            die()

    if point == "after-rename":  # the part is in place, its journal not yet unlinked
        real_write_part = store_writer.write_part
        def write_part(*args, **kwargs):
            real_write_part(*args, **kwargs)
            die()
        store_writer.write_part = write_part
    if point == "before-rename":  # the temp file is written and fsynced, not yet renamed
        real_replace = os.replace
        def replace(src, dst):
            if str(dst).endswith(".parquet"):
                die()
            real_replace(src, dst)
        os.replace = replace
    runner.sweep(config, out, on_event=on_event)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["warmup", "rows", "after-rename", "before-rename"])
def test_sigkill_at_a_chosen_point_then_resume(sweep_config, tmp_path, point):
    out = tmp_path / "out"
    tag = uuid.uuid4().hex
    killed = run_to_end([KILLER, point, str(sweep_config), str(out)], tag, PYTHON_C)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert survivors(tag) == []
    (sweep_dir,) = (out / "kr").iterdir()
    files = {p.name for p in sweep_dir.iterdir()}
    df = load(sweep_dir)  # what a user sees of the killed sweep
    assert not df.duplicated(["trial_id", "repeat"]).any()
    if point == "warmup":
        assert len(df) == 0 and read_manifest(sweep_dir).state == "running"
    elif point == "rows":
        assert len(df) == 7
    elif point == "after-rename":  # the same rows twice on disk, read once
        assert "_journal-000000.jsonl" in files and any(f.startswith("part-000000.") for f in files)
        assert len(df) == expected_rows(sweep_config)
    else:  # the part never appeared; its rows are still in the journal
        assert not any(f.startswith("part-") for f in files) and any(f.endswith(".tmp") for f in files)
        assert len(df) == expected_rows(sweep_config)
    resume_until_complete(sweep_config, out, tag)
    check_complete_store(sweep_config, out)


@pytest.mark.slow
def test_a_torn_last_journal_line_is_dropped_by_load_and_rerun_by_resume(sweep_config, tmp_path):
    out = tmp_path / "out"
    tag = uuid.uuid4().hex
    killed = run_to_end([KILLER, "rows", str(sweep_config), str(out)], tag, PYTHON_C)
    assert killed.returncode == -signal.SIGKILL
    (journal,) = out.glob("kr/*/_journal-*.jsonl")
    rows = journal.read_text().splitlines()
    half = json.dumps(dict(json.loads(rows[-1].split(" ", 1)[1]), repeat=3))[:80]  # after its checksum
    with journal.open("a") as f:
        f.write(half)  # what a write cut short by the kill leaves: a line with no end
    df = load(out / "kr")
    assert len(df) == len(rows) == 7
    resume_until_complete(sweep_config, out, tag)
    check_complete_store(sweep_config, out)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def wait_for_a_forked_worker(tag: str, proc: subprocess.Popen) -> None:
    """Until a multiprocessing worker runs: a tagged conc_lab.host process two forks below the host.

    Each run has a process of its own, forked by the host; a multiprocessing run's workers are
    forked by that one. So a worker is a host-command process whose parent's parent is the host.
    """
    deadline = time.monotonic() + 60
    while True:
        tagged = {p: _ppid(p) for p in survivors(tag, within_s=0) if "conc_lab.host" in _cmdline(p)}
        if any(tagged.get(parent) in tagged for parent in tagged.values()):
            return
        assert proc.poll() is None, "the sweep ended before a multiprocessing worker was seen"
        assert time.monotonic() < deadline
        time.sleep(0.005)


@pytest.mark.parametrize(
    "signals",
    [[signal.SIGINT], [signal.SIGTERM], [signal.SIGINT, signal.SIGINT]],
    ids=["ctrl-c", "sigterm", "ctrl-c-twice"],
)
@pytest.mark.slow
def test_ctrl_c_or_sigterm_during_a_multiprocessing_trial_saves_and_says_how_to_resume(tmp_path, signals):
    config = tmp_path / "kr.yaml"
    # Long multiprocessing trials, so the signal lands while worker processes are running.
    config.write_text(
        CONFIG.replace(
            "backend: [sequential, threading, multiprocessing]", "backend: [sequential, multiprocessing]"
        )
        .replace("workers: [1, 2]", "workers: [2]")
        .replace("size: [5]", "size: [150]")
        .replace("repeats: 4", "repeats: 8")  # a sweep of seconds: the signal lands mid-sweep
    )
    out = tmp_path / "out"
    tag = uuid.uuid4().hex
    proc = start(["sweep", str(config), "--out", str(out), "-q"], tag)
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size for p in out.glob("kr/*/_journal-*.jsonl")):  # a run is saved
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    wait_for_a_forked_worker(tag, proc)
    for sig in signals:  # an impatient second Ctrl-C lands while the sweep is cleaning up
        os.killpg(proc.pid, sig)  # the whole foreground group, as a terminal's Ctrl-C does
        time.sleep(0.05)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert f"Resume with: conclab sweep {config} --resume" in " ".join(err.split())
    assert survivors(tag) == []  # no host, no worker, no forkserver left behind
    (sweep_dir,) = (out / "kr").iterdir()
    assert read_manifest(sweep_dir).state == "interrupted"
    assert not list(sweep_dir.glob("_journal-*")) and list(sweep_dir.glob("part-*.parquet"))  # sealed
    saved = len(load(sweep_dir))
    assert 1 <= saved < expected_rows(config)
    done = run_to_end(["sweep", str(config), "--out", str(out), "--resume", "-q"], tag)
    assert done.returncode == 0, done.stderr
    df = load(sweep_dir)
    assert len(df) == expected_rows(config) and not df.duplicated(["trial_id", "repeat"]).any()


@pytest.mark.slow
def test_resume_with_a_changed_config_is_refused_and_writes_nothing(sweep_config, tmp_path):
    out = tmp_path / "out"
    tag = uuid.uuid4().hex
    killed = run_to_end([KILLER, "rows", str(sweep_config), str(out)], tag, PYTHON_C)
    assert killed.returncode == -signal.SIGKILL
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    sweep_config.write_text(CONFIG.replace("size: [5]", "size: [6]"))
    refused = run_to_end(["sweep", str(sweep_config), "--out", str(out), "--resume", "-q"], tag)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in refused.stderr
    assert f"{sweep_config}: (resume): the config changed since sweep" in lines[0]
    assert "run without --resume" in lines[0]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


@pytest.mark.parametrize("damage", ["foreign file", "corrupt journal line"])
def test_resume_refuses_a_store_it_cannot_trust_in_one_line(sweep_config, tmp_path, damage):
    out = tmp_path / "out"
    tag = uuid.uuid4().hex
    killed = run_to_end([KILLER, "rows", str(sweep_config), str(out)], tag, PYTHON_C)
    assert killed.returncode == -signal.SIGKILL
    (sweep_dir,) = (out / "kr").iterdir()
    if damage == "foreign file":
        (sweep_dir / "notes.txt").write_text("mine")
        words = "notes.txt: not a conc_lab file"
    else:
        (journal,) = sweep_dir.glob("_journal-*.jsonl")
        lines = journal.read_text().splitlines(keepends=True)
        lines[2] = lines[2][: len(lines[2]) // 2] + "\n"  # a line torn in the middle: not a kill's doing
        journal.write_text("".join(lines))
        words = "corrupt line 3"
    before = {p: p.stat().st_mtime_ns for p in sweep_dir.iterdir()}
    refused = run_to_end(["sweep", str(sweep_config), "--out", str(out), "--resume", "-q"], tag)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert words in line and "Traceback" not in refused.stderr
    assert {p: p.stat().st_mtime_ns for p in sweep_dir.iterdir()} == before  # not "repaired" silently


@pytest.mark.slow
def test_a_sweep_begun_when_shuffle_defaulted_to_false_resumes_in_the_order_it_began(sweep_config, tmp_path):
    """A sweep a conc_lab from before randomized rounds recorded (its file says nothing of shuffle,
    which then meant matrix order, and its fingerprint says shuffle false) resumes: not "the config changed"."""
    out = tmp_path / "out"
    tag = uuid.uuid4().hex
    sweep_config.write_text(CONFIG + "shuffle: false\n")  # the old default: its fingerprint, its order
    killed = run_to_end([KILLER, "rows", str(sweep_config), str(out)], tag, PYTHON_C)
    assert killed.returncode == -signal.SIGKILL
    sweep_config.write_text(CONFIG)  # the file as its user wrote it
    resumed = run_to_end(["sweep", str(sweep_config), "--out", str(out), "--resume"], tag)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumes in matrix order" in resumed.stderr
    check_complete_store(sweep_config, out)
    df = load(out / "kr")
    assert (df.groupby("trial_id", observed=True)["slot"].nunique() == 1).all()  # every round in matrix order
    # A file that asks for shuffled rounds is another config: refused as before.
    sweep_config.write_text(CONFIG + "shuffle: true\n")
    refused = run_to_end(["sweep", str(sweep_config), "--out", str(out), "--resume", "-q"], tag)
    assert refused.returncode == 2 and "the config changed since sweep" in refused.stderr


def test_resuming_a_complete_sweep_with_failures_still_exits_1_and_says_so(tmp_path):
    """A CI or SLURM step that resumes a finished sweep must not read success where runs failed."""
    from test_cli_ux import conclab

    config = tmp_path / "fails.yaml"
    config.write_text(
        "name: fails\nrepeats: 2\nwarmup: 0\n"
        "matrix: {workload: [tests.workloads_faulty:raises, tests.workloads_faulty:good], "
        "backend: [sequential], tasks: [4], size: [10]}\n"
    )
    first = conclab("sweep", str(config), "--out", str(tmp_path / "r"), "-q")
    assert first.returncode == 1, first.stderr
    again = conclab("sweep", str(config), "--out", str(tmp_path / "r"), "-q", "--resume")
    assert again.returncode == 1, again.stderr
    assert "is complete: nothing to run (2 of 4 runs failed)" in again.stderr, again.stderr
    good = tmp_path / "good.yaml"
    good.write_text(
        config.read_text().replace("tests.workloads_faulty:raises, ", "").replace("fails", "good")
    )
    assert conclab("sweep", str(good), "--out", str(tmp_path / "g"), "-q").returncode == 0
    resumed = conclab("sweep", str(good), "--out", str(tmp_path / "g"), "-q", "--resume")
    assert resumed.returncode == 0 and "nothing to run →" in resumed.stderr, resumed.stderr


def test_resuming_a_shard_after_its_merge_runs_nothing_and_merging_again_still_works(tmp_path):
    """'Resume every shard, then merge' (what `conclab slurm` writes) run again after the merge:
    it re-measured each whole shard, then merge refused the folder (a hostile-user test)."""
    from test_cli_ux import conclab

    config = tmp_path / "sh.yaml"
    config.write_text(
        "name: sh\nrepeats: 2\nwarmup: 0\n"
        "matrix: {workload: [experiments.overhead:noop], backend: [sequential], tasks: [1], size: [1, 2, 3, 4]}\n"
    )
    out = tmp_path / "r"
    for k in (1, 2):
        assert conclab("sweep", str(config), "--out", str(out), "--shard", f"{k}/2", "-q").returncode == 0
    assert conclab("merge", str(out / "sh")).returncode == 0
    folders = sorted(p.name for p in (out / "sh").iterdir())
    for k in (1, 2):
        again = conclab("sweep", str(config), "--out", str(out), "--shard", f"{k}/2", "-q", "--resume")
        assert again.returncode == 0, again.stderr
        assert (
            f"shard {k}/2 of sh is already in merged sweep" in again.stderr
            and "nothing to run" in again.stderr
        )
    assert sorted(p.name for p in (out / "sh").iterdir()) == folders  # no new sweep measured
    assert conclab("merge", str(out / "sh")).returncode == 0
    assert len(load(out / "sh")) == 8


@pytest.mark.parametrize("where", ["closing the hosts", "after the last row"])
def test_a_stop_once_every_run_is_stored_leaves_the_sweep_complete(tmp_path, monkeypatch, where):
    # was: a Ctrl-C or SIGTERM (a SLURM job's time limit) after the last run was stored, while the
    # hosts closed, marked the sweep interrupted: a merge left the shard out, a resume had nothing to run
    from conc_lab import events
    from conc_lab.run import dispatch, runner

    config = tmp_path / "kr.yaml"
    config.write_text(CONFIG.replace(", multiprocessing]", "]").split("backend_options")[0])
    runs = expected_rows(config)
    seen = []

    def on_event(event):
        seen.append(event)
        if where == "after the last row" and isinstance(event, events.RunFinished):
            if sum(isinstance(e, events.RunFinished) and e.measured for e in seen) == runs:
                raise KeyboardInterrupt  # what the SIGTERM handler raises

    close = dispatch.LocalDispatch.close

    def stopped_close(self):
        close(self)
        raise KeyboardInterrupt  # the hosts are closed; the stop came as they closed

    if where == "closing the hosts":
        monkeypatch.setattr(dispatch.LocalDispatch, "close", stopped_close)
    result = runner.sweep(config, tmp_path / "out", on_event=on_event)
    assert read_manifest(result.sweep_dir).state == "complete"  # merge takes it; nothing to resume
    assert (result.interrupted, result.stopped_late, result.recorded) == (False, True, runs)
    assert len(load(result.sweep_dir)) == runs


def test_a_resume_s_last_line_says_its_runs_are_more_and_the_sweep_s_total(sweep_config, tmp_path):
    """Resumed, the table holds every run of the sweep, and the last line under it counted only this
    invocation's: "66 runs are noisy" above "62 runs recorded (…, 55 noisy)" on the smoke."""
    out = tmp_path / "out"
    tag = uuid.uuid4().hex
    killed = run_to_end([KILLER, "rows", str(sweep_config), str(out)], tag, PYTHON_C)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (sweep_dir,) = (out / "kr").iterdir()
    saved, whole = len(load(sweep_dir)), expected_rows(sweep_config)
    done = run_to_end(["sweep", str(sweep_config), "--out", str(out), "--resume"], tag)
    assert done.returncode == 0, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{whole - saved} more runs recorded ("), last
    assert f"; {whole} in the sweep → {sweep_dir}" in last, last


def test_a_resume_keeps_the_machine_check_made_as_the_sweep_began(sweep_config, tmp_path):
    """The manifest's ``doctor`` is what the machine check found as the sweep began (the report
    says so); a resume put its own there, even one with nothing left to run: the smoke, run under
    a load of 6.33 and resumed once complete at 2.47, was reported as begun at 2.47."""
    out = tmp_path / "out"
    tag = uuid.uuid4().hex
    killed = run_to_end([KILLER, "rows", str(sweep_config), str(out)], tag, PYTHON_C)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (sweep_dir,) = (out / "kr").iterdir()
    path = sweep_dir / MANIFEST
    manifest = json.loads(path.read_text())
    began = [dict(f) for f in manifest["doctor"] if f["name"] != "load"]
    began.append(
        {"name": "load", "status": "bad", "detail": "load average 9.87 over 1 min", "advice": "stop it"}
    )
    path.write_text(json.dumps({**manifest, "doctor": began}))  # as a busy machine's check would read
    for _ in range(2):  # the runs left, then nothing left to run
        done = run_to_end(["sweep", str(sweep_config), "--out", str(out), "--resume", "-q"], tag)
        assert done.returncode == 0, done.stderr
        assert [dict(f) for f in read_manifest(sweep_dir).doctor] == began
    assert "complete: nothing to run" in done.stderr
    # nor did the resume that ran nothing end the sweep again (its record ran 18:58-19:08)
    ended = read_manifest(sweep_dir).finished_at
    again = run_to_end(["sweep", str(sweep_config), "--out", str(out), "--resume", "-q"], tag)
    assert again.returncode == 0 and read_manifest(sweep_dir).finished_at == ended, again.stderr
    report = run_to_end(["report", str(sweep_dir), "-o", str(tmp_path / "report")], tag)
    assert report.returncode == 0, report.stderr
    assert "load average 9.87 over 1 min" in (tmp_path / "report" / "index.html").read_text()
