"""Where a short multiprocessing/fork run's time goes beyond two bare ``Process`` starts (#20: the
harness's sha256/fork cell, a ~24 ms cell that conc_lab reads 1.5-2.5 ms slower).

    python benchmarks/bench_pool_start.py [RUNS]     # 15 runs by default

1. bare start: from ``Process.start()`` to the target's first line, forked from a bare process
   (what the harness forks from) and from one that loaded what a trial host loads and the workload
   (what conc_lab's run process forks from); with the page faults the child took until then.
2. conc_lab's fork backend, run here as a run's process runs it (``ProcessBackend.run``, two workers
   of ``experiments.cpu:sha256_blocks``, 32 MiB each, pinned): each worker's timeline from the start
   of set-up (its first line in ``process_main``, each phase of its way to ready, its first task),
   and ``setup_s``, ``run_s``, ``teardown_s``. Medians over the runs; times are ``perf_counter``,
   which is system-wide here, so a worker's marks compare with the parent's.

Run it on a quiet machine (the load is printed).
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: One child process per setting: "bare" imports nothing beyond multiprocessing; "host" loads what the
#: trial host loads (conc_lab.host.__main__) and primes the workload, as a run's process has.
_BOOT = """
import os, resource, statistics, sys, time, multiprocessing
if sys.argv[1] == "host":
    sys.path.insert(0, sys.argv[3])
    import conc_lab.host.__main__
    from experiments.cpu import sha256_blocks
    sha256_blocks(0, 1)
def target(t0, w):
    os.write(w, b"%f %d" % (time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_minflt))
ctx = multiprocessing.get_context("fork")
lat, faults = [], []
for _ in range(int(sys.argv[2])):
    r, w = os.pipe()
    t0 = time.perf_counter()
    p = ctx.Process(target=target, args=(t0, w))
    p.start()
    took, n = os.read(r, 100).split()
    p.join()
    os.close(r)
    os.close(w)
    lat.append(float(took))
    faults.append(int(n))
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(statistics.median(lat) * 1e3, statistics.median(faults), rss)
"""

#: Worker phases, in order, wrapped in the worker to mark when each ends (module, attribute).
PHASES = [
    ("workload", "search_first"),
    ("workload", "import_function"),
    ("measure", "reset_peak_rss"),
    ("affinity", "pin"),
]


def bare_start(runs: int) -> None:
    print("# 1. Process.start() to the target's first line (fork), median of", runs)
    for kind in ("bare", "host"):
        out = subprocess.run(
            [sys.executable, "-c", _BOOT, kind, str(runs), str(ROOT)],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout.split()
        ms, faults, rss = float(out[0]), float(out[1]), float(out[2])
        print(
            f"  from a {kind:4s} process ({rss:4.1f} MiB): {ms:.3f} ms, {faults:.0f} page faults in the child"
        )


def _mark_phases(log: Path) -> None:
    """Wrap the worker's phases so each worker appends its marks to ``log`` as it goes."""
    from conc_lab.host import affinity, measure, workload
    from conc_lab.host.backends import _worker, processes

    modules = {"workload": workload, "measure": measure, "affinity": affinity}
    marks: dict = {}
    for module_name, name in PHASES:
        for owner in (modules[module_name], _worker):  # _worker imported some by name
            original = getattr(owner, name, None)
            if original is None or getattr(original, "_marked", False):
                continue

            def marked(*args, _original=original, _label=name, **kwargs):
                try:
                    return _original(*args, **kwargs)
                finally:
                    marks[_label] = time.perf_counter()

            marked._marked = True
            setattr(owner, name, marked)

    original_main = processes.process_main

    @functools.wraps(original_main)
    def process_main(index, core, ref, size, tasks_q, conn, path, *rest):
        marks.clear()
        marks["first line"] = time.perf_counter()
        real_send = conn.send

        class Conn:  # the worker's result pipe, marking its ready and its first task's result
            def send(self, msg):
                if msg[0] == "ready":
                    marks["ready sent"] = time.perf_counter()
                elif msg[0] == "done" and "first result sent" not in marks:
                    marks["first result sent"] = time.perf_counter()
                return real_send(msg)

            def close(self):
                conn.close()

        class Tasks:  # the task queue, marking when the first task arrived
            def get(self):
                task = tasks_q.get()
                marks.setdefault("first task in hand", time.perf_counter())
                return task

        try:
            return original_main(index, core, ref, size, Tasks(), Conn(), path, *rest)
        finally:
            with open(log, "a") as f:
                f.write(json.dumps({"worker": index, **marks}) + "\n")

    processes.process_main = process_main


def _run(call, fresh: bool, *marks: list) -> tuple[float, dict]:
    """``call()``'s (start, outcome), here or (``fresh``) in a process forked for it, as the trial
    host runs each run; the parent-side ``marks`` lists the child fills come back with it."""
    if not fresh:
        return call()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.write(w, json.dumps([call(), *marks], default=repr).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 1 << 16):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    (began, outcome), *filled = json.loads(data)
    for mine, theirs in zip(marks, filled):
        mine[:] = [tuple(x) for x in theirs]
    return began, outcome


def _timed(owner, name: str, into: list) -> None:
    """Wrap ``owner.name`` to append (began, returned) to ``into`` on each call."""
    real = getattr(owner, name)

    def timed(*args):
        began = time.perf_counter()
        real(*args)
        into.append((began, time.perf_counter()))

    setattr(owner, name, timed)


def fork_backend(runs: int) -> None:
    sys.path.insert(0, str(ROOT))
    import multiprocessing.process

    import conc_lab.host.__main__  # noqa: F401 - what the host loads, as a run's process has it
    from conc_lab.host import affinity
    from conc_lab.host.backends import processes
    from experiments.cpu import sha256_blocks

    sha256_blocks(0, 1)  # the run's process is primed
    log = Path(tempfile.mkdtemp()) / "marks.jsonl"
    _mark_phases(log)
    starts: list = []  # the parent's side: when each Process.start() began and returned
    fed: list = []  # and when it handed out the tasks
    _timed(multiprocessing.process.BaseProcess, "start", starts)
    _timed(processes, "_start_feeding", fed)
    trial = {
        "workers": 2,
        "cores": affinity.plan("compact", 2),
        "tasks": 2,
        "size": 32,
        "workload": "experiments.cpu:sha256_blocks",
        "start_method": "fork",
    }

    def one_run():
        began = time.perf_counter()
        return began, processes.ProcessBackend().run(sha256_blocks, trial)

    for fresh in (False, True):
        rows = []
        for _ in range(runs):
            log.write_text("")
            starts.clear()
            start, outcome = _run(one_run, fresh, starts, fed)
            rows.append(_row(start, outcome, starts, fed.pop(), log))
        where = "each in a process forked for it, as the host runs it" if fresh else "all in this process"
        print(f"\n# 2. conc_lab's fork backend, 2 workers x 32 MiB of sha256, {where}")
        print(f"#    from set-up's start, median of {runs}")
        keys = sorted(
            {k for r in rows for k in r if k.startswith(("worker", "parent"))},
            key=lambda k: statistics.median(r[k] for r in rows),
        )
        for key in keys + ["setup_s", "run_s", "teardown_s"]:
            print(f"  {key:40s} {statistics.median(r[key] for r in rows) * 1e3:7.3f} ms")


def _row(start: float, outcome: dict, starts: list, fed: tuple, log: Path) -> dict:
    row = {k: outcome[k] for k in ("setup_s", "run_s", "teardown_s")}
    row["parent: tasks fed from"], row["parent: tasks fed until"] = (t - start for t in fed)
    for i, (began, returned) in enumerate(starts):
        row[f"parent: worker {i}'s start() called"] = began - start
        row[f"parent: worker {i}'s start() returned"] = returned - start
    for line in log.read_text().splitlines():
        marks = json.loads(line)
        worker = marks.pop("worker")
        row.update({f"worker {worker}: {k}": v - start for k, v in marks.items()})
    return row


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    print(f"# load {os.getloadavg()[0]:.2f}")
    bare_start(n)
    fork_backend(n)
    print(f"# load {os.getloadavg()[0]:.2f} after")
