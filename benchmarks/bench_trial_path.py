"""Where a no-op run's time goes, with and without a fresh process per run (issues #21, #25).

    python benchmarks/bench_trial_path.py            # both parts, 1,000 trials
    python benchmarks/bench_trial_path.py split 2000 # the host's split only, 2,000 requests
    python benchmarks/bench_trial_path.py command 1000
    python benchmarks/bench_trial_path.py parts 1000  # where the host's and the run's process's time goes
    python benchmarks/bench_trial_path.py floor       # fork + exit + wait, and one page fault, here
    python benchmarks/bench_trial_path.py stripped    # the run's process with less and less to do

1. split: no-op requests (experiments.overhead:noop, sequential, pinned) sent straight to one
   trial host, each timed by the runner (request to reply) and by the host (``outside_s``, fork
   to reply); medians. "in process" is the host running each request in itself under the
   after-run guard (``CONCLAB_HOST_IN_PROCESS=1``, as before runs had processes of their own).
   Also a bare fork + exit + wait from a process the host's size, and the run's own parts.
2. command: the whole ``conclab sweep -q`` command for 1 and for N no-op trials (N sizes of one
   trial, repeats 1, no warm-up), fresh process per run and in process; marginal = (t_N - t_1)
   / (N - 1). Interleaved, best of 3 each, so a busy moment does not land on one variant.

3. parts: this process plays the trial host (``host.fork.Runs``, the code the host runs) for N no-op
   requests, with a gap of 0.5 ms after each reply for the runner's own work; every phase of the
   host and of each run's process is wrapped and timed (wall medians; the wrapping itself costs a
   few microseconds a call), and the CPU time and page faults per run of both come from rusage.

4. stripped: this process plays the trial host (``host.fork.Runs``) as in ``parts``, and each run's
   process does (a) all of ``trial.handle`` and the after-run report, (b) only import the workload
   and call it, (c) that without the report, (d) nothing: request to reply, medians over
   interleaved blocks. What the guards cost cold in a fresh process, and the floor under them.

Run it on a quiet machine (load in the first line it prints).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from conc_lab.host import protocol  # noqa: E402
from conc_lab.run.trial_host import TrialHost  # noqa: E402

NOOP = {"workload": "experiments.overhead:noop", "backend": "sequential", "workers": 1, "tasks": 1, "size": 0}


def _requests(n: int, in_process: bool) -> tuple[float, float | None]:
    """Median ms per request (runner side) and median outside_s in ms (host side)."""
    saved = os.environ.get(protocol.IN_PROCESS_ENV)
    os.environ[protocol.IN_PROCESS_ENV] = "1" if in_process else "0"
    try:
        with TrialHost(search_path=[str(ROOT)]) as host:
            trial = {**NOOP, protocol.CORES: [0]}
            for _ in range(20):  # warm: imports, the canary's first readings
                host.request(protocol.request(protocol.RUN, trial), 60)
            took, outside = [], []
            for _ in range(n):
                start = time.perf_counter()
                out = host.request(protocol.request(protocol.RUN, trial), 60)[protocol.OUTCOME]
                took.append(time.perf_counter() - start)
                outside.append(out.get(protocol.OUTSIDE_S))
    finally:
        if saved is None:
            os.environ.pop(protocol.IN_PROCESS_ENV, None)
        else:
            os.environ[protocol.IN_PROCESS_ENV] = saved
    return statistics.median(took) * 1e3, statistics.median(outside) * 1e3


def _bare_fork(n: int) -> float:
    import conc_lab.host.__main__  # noqa: F401 - a process the host's size
    import conc_lab.host.fork  # noqa: F401

    start = time.perf_counter()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    return (time.perf_counter() - start) / n * 1e3


def split(n: str = "1000") -> None:
    n = int(n)
    print(f"# load {os.getloadavg()[0]:.2f}; {n} no-op requests to one trial host, medians")
    for label, in_process in (("fresh process per run", False), ("in process (no fork)", True)):
        per, outside = _requests(n, in_process)
        print(f"  {label:24s} request to reply {per:7.3f} ms   host's own time (outside_s) {outside:7.3f} ms")
    print(f"  bare fork + exit + wait of a host-sized process: {_bare_fork(min(n, 300)):.3f} ms")


def _command(trials: int, in_process: bool, out: Path) -> float:
    cfg = out / f"noop{trials}.yaml"
    doc = {
        "name": f"noop{trials}",
        "repeats": 1,
        "warmup": 0,
        "affinity": "compact",
        "matrix": {
            "workload": [NOOP["workload"]],
            "backend": ["sequential"],
            "tasks": [1],
            "size": list(range(trials)),
        },
    }
    cfg.write_text(json.dumps(doc))  # JSON is YAML
    env = dict(os.environ, PYTHONPATH=str(ROOT), **{protocol.IN_PROCESS_ENV: "1" if in_process else "0"})
    cmd = [sys.executable, "-m", "conc_lab.cli", "sweep", "-q", str(cfg), "--out", str(out / "results")]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, cwd=str(ROOT), check=True, capture_output=True)
    return time.perf_counter() - start


def command(n: str = "1000") -> None:
    n = int(n)
    print(f"# load {os.getloadavg()[0]:.2f}; whole `conclab sweep -q`, 1 and {n} no-op trials, best of 3")
    best: dict[tuple, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(3):
            for in_process in (False, True):
                for trials in (1, n):
                    took = _command(trials, in_process, Path(tmp))
                    key = (in_process, trials)
                    best[key] = min(best.get(key, took), took)
    for in_process, label in ((False, "fresh process per run"), (True, "in process (no fork)")):
        one, many = best[(in_process, 1)], best[(in_process, n)]
        marginal = (many - one) / (n - 1) * 1e3
        print(
            f"  {label:24s} 1 trial {one:6.2f} s   {n} trials {many:7.2f} s   marginal {marginal:6.3f} ms/trial"
        )


#: (module, attribute) of each phase ``parts`` times; "Runs.x" is a method of host.fork.Runs.
PHASES = {
    "host": ["Runs._fork", "fork._clean_up", "wire.collect", "Runs._finish"],
    "run's process": [
        "codecache.install",
        "trial.load_workload",
        "noise.Sample",
        "noise.Canary.before",
        "SequentialBackend.run",
        "noise.Canary.after",
        "measure.reset_peak_rss",
        "measure.peak_rss_bytes",
        "state.left",
        "fork._children_note",
        "wire.write_all",
    ],
}


def _wrap(spans: dict, label: str) -> None:
    import functools

    from conc_lab.host import codecache, fork, measure, noise, state, trial, wire  # noqa: F401
    from conc_lab.host.backends.sequential import SequentialBackend  # noqa: F401

    names = label.split(".")
    owner = {"Runs": fork.Runs, "SequentialBackend": SequentialBackend}.get(names[0]) or locals()[names[0]]
    for name in names[1:-1]:
        owner = getattr(owner, name)
    original = getattr(owner, names[-1])

    @functools.wraps(original)
    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spans.setdefault(label, []).append(time.perf_counter() - start)

    setattr(owner, names[-1], timed)


def parts(n: str = "1000") -> None:
    import resource

    import conc_lab.host.__main__  # noqa: F401 - the modules the real host loads (hashlib: 3 ms a run without)
    from conc_lab.host import fork, hygiene
    from conc_lab.host.workload import search_first

    n = int(n)
    search_first([str(ROOT)])
    hygiene.become_subreaper()
    spans: dict = {}
    for labels in PHASES.values():
        for label in labels:
            _wrap(spans, label)
    log = Path(tempfile.mkdtemp()) / "run-spans.jsonl"
    reply_and_end = fork._run_and_reply

    def run_and_reply(runs, request, writer, nonce, *rest):  # in the run's process: its spans go to the log
        spans.pop("wire.write_all", None)
        spans["request in hand (wake-up)"] = [time.perf_counter() - request["sent"]]
        reply_and_end(runs, request, writer, nonce, *rest)
        spans["request to reply written"] = [time.perf_counter() - request["sent"]]
        with open(log, "a") as f:
            f.write(json.dumps({k: v[-1] for k, v in spans.items()}) + "\n")

    fork._run_and_reply = run_and_reply
    pipe = os.pipe()
    runs = fork.Runs(pipe)
    trial = {**NOOP, protocol.CORES: [0]}
    for i in range(n + 20):
        if i == 20:  # warm
            spans.clear()
            log.unlink(missing_ok=True)
            host0, runs0 = (
                resource.getrusage(resource.RUSAGE_SELF),
                resource.getrusage(resource.RUSAGE_CHILDREN),
            )
        request = dict(protocol.request(protocol.RUN, trial), sent=time.perf_counter())
        out = runs.run(request)[protocol.OUTCOME]
        spans.setdefault("request to reply (Runs.run)", []).append(time.perf_counter() - request["sent"])
        assert out[protocol.STATUS] == "ok", out
        start = time.perf_counter()
        runs.settle()
        spans.setdefault("after the reply (Runs.settle)", []).append(time.perf_counter() - start)
        time.sleep(0.0005)
    host1, runs1 = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    runs.close()
    child: dict = {}
    for line in log.read_text().splitlines():
        for k, v in json.loads(line).items():
            child.setdefault(k, []).append(v)
    print(f"# load {os.getloadavg()[0]:.2f}; {n} no-op runs, this process as the trial host; per run:")
    for who, (a, b) in (("host", (host0, host1)), ("run's process", (runs0, runs1))):
        user, system = (b.ru_utime - a.ru_utime) / n * 1e3, (b.ru_stime - a.ru_stime) / n * 1e3
        faults = (b.ru_minflt - a.ru_minflt) / n
        print(
            f"  {who:14s} CPU {user + system:6.3f} ms (user {user:.3f}, system {system:.3f}), page faults {faults:4.0f}"
        )
        first = ["request to reply (Runs.run)", "after the reply (Runs.settle)"]
        for label in (
            first if who == "host" else ["request in hand (wake-up)", "request to reply written"]
        ) + PHASES[who]:
            got = (spans if who == "host" else child).get(label)
            if got:
                print(f"    {label:30s} median {statistics.median(got) * 1e3:7.3f} ms")


def _fault_cost_us(pages: int = 4096, cow: bool = True) -> float:
    """µs per page fault: a write to each page of an anonymous mapping, in a child after a fork
    (``cow``: pages the parent had touched, so each write copies one) or fresh in this process."""
    import mmap

    size = pages * mmap.PAGESIZE
    area = mmap.mmap(-1, size)
    if hasattr(area, "madvise") and hasattr(mmap, "MADV_NOHUGEPAGE"):
        area.madvise(mmap.MADV_NOHUGEPAGE)  # 4 KiB pages, as a Python heap's are
    if not cow:
        start = time.perf_counter()
        for i in range(0, size, mmap.PAGESIZE):
            area[i] = 1
        return (time.perf_counter() - start) / pages * 1e6
    for i in range(0, size, mmap.PAGESIZE):
        area[i] = 1
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        start = time.perf_counter()
        for i in range(0, size, mmap.PAGESIZE):
            area[i] = 2
        os.write(w, repr(time.perf_counter() - start).encode())
        os._exit(0)
    os.close(w)
    took = float(os.read(r, 64))
    os.waitpid(pid, 0)
    loop = time.perf_counter()
    for i in range(0, size, mmap.PAGESIZE):  # the same loop without faults (pages already private)
        area[i] = 3
    loop = time.perf_counter() - loop
    return (took - loop) / pages * 1e6


def floor() -> None:
    """What a fresh process per run costs at least on this machine: fork + exit + wait of a bare
    interpreter and of one the host's size, and the price of one page fault, which a run's process
    and the host pay for every page they write after the fork (counted by ``parts``)."""
    bare = subprocess.run(
        [sys.executable, "-S", "-I", "-c", _BARE_FORK],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    cow = statistics.median(_fault_cost_us() for _ in range(5))
    zero = statistics.median(_fault_cost_us(cow=False) for _ in range(5))
    print(f"# load {os.getloadavg()[0]:.2f}; the floor of a fresh process per run here")
    print(f"  fork + exit + wait, bare interpreter (python -S -I): {float(bare):.3f} ms")
    print(f"  fork + exit + wait, a process the host's size:       {_bare_fork(300):.3f} ms")
    print(f"  one page fault: copy-on-write {cow:.2f} µs, zero-filled {zero:.2f} µs")
    _cycles()


#: The whole cycle a run costs with nothing of conc_lab's in it, in a fresh interpreter each: the
#: runner sends a request, a host hands it to a child forked in advance, which times a no-op and
#: replies (marshal, no JSON); the host forks the next child, reaps this one, and answers.
_CYCLE = """
import marshal, os, sys, time
for name in sys.argv[2:]:
    if not name.startswith("-"):
        __import__(name)
if "--empty-hook" in sys.argv:
    import threading
    threading._after_fork.__code__ = (lambda: None).__code__
n = int(sys.argv[1])
req_r, req_w = os.pipe()
rep_r, rep_w = os.pipe()
if os.fork() == 0:
    import gc
    os.close(req_w)  # so the runner's exit is EOF here
    os.close(rep_r)
    gc.freeze()
    def ahead():
        a, b = os.pipe()
        c, d = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(b)  # so the host's exit is EOF here
            os.close(c)
            msg = os.read(a, 65536)
            if msg:
                t = time.perf_counter()
                took = time.perf_counter() - t
                os.write(d, marshal.dumps((marshal.loads(msg), took)))
            os._exit(0)
        os.close(a)
        os.close(d)
        return pid, b, c
    idle = ahead()
    while True:
        msg = os.read(req_r, 65536)
        if not msg:
            os._exit(0)
        pid, b, c = idle
        os.write(b, msg)
        os.close(b)
        reply = os.read(c, 65536)
        os.close(c)
        os.write(rep_w, reply)
        idle = ahead()
        os.waitpid(pid, 0)
start = time.perf_counter()
for i in range(n):
    os.write(req_w, marshal.dumps(i))
    marshal.loads(os.read(rep_r, 65536))
print((time.perf_counter() - start) / n * 1e3)
os.close(req_w)
os.wait()
"""


def _cycles(n: int = 2000, rounds: int = 3) -> None:
    """The cycle above, bare, with ``threading`` imported, and with its after-fork hook emptied,
    interleaved over ``rounds``: the floor under a whole run, before any guard or import."""
    variants = {
        "bare interpreter": [],
        "threading imported": ["threading"],
        "threading, its after-fork hook emptied": ["threading", "--empty-hook"],
    }
    took: dict = {k: [] for k in variants}
    for _ in range(rounds):
        for label, extra in variants.items():
            args = [sys.executable, "-c", _CYCLE, str(n), *extra]
            out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
            took[label].append(float(out))
    print("  a whole run's cycle with no conc_lab work (runner -> host -> child forked ahead -> reply;")
    print(f"  {n} runs, median of {rounds} interleaved rounds, load {os.getloadavg()[0]:.2f}):")
    for label, values in took.items():
        print(f"    {label:40s} {statistics.median(values):.3f} ms a run")


def stripped(n: str = "50", blocks: str = "12") -> None:
    import conc_lab.host.__main__  # noqa: F401 - the modules the real host loads
    from conc_lab.host import fork, hygiene, state
    from conc_lab.host import trial as trial_mod
    from conc_lab.host.workload import search_first

    search_first([str(ROOT)])
    hygiene.become_subreaper()

    def call_only(request, workloads, cache=None, alone=None):
        fn = trial_mod.load_workload(request[protocol.TRIAL]["workload"])
        start = time.perf_counter()
        fn(0, 0)
        return {"status": "ok", "run_s": time.perf_counter() - start, "setup_s": 0.0, "teardown_s": 0.0}

    def nothing(request, workloads, cache=None, alone=None):
        return {"status": "ok", "run_s": 0.0, "setup_s": 0.0, "teardown_s": 0.0}

    no_report = lambda *args, **kwargs: []  # noqa: E731
    variants = {
        "all of trial.handle, the report": (trial_mod.handle, state.left),
        "import and call, the report": (call_only, state.left),
        "import and call": (call_only, no_report),
        "nothing": (nothing, no_report),
    }
    runs, took = fork.Runs(os.pipe()), {k: [] for k in variants}
    trial = {**NOOP, protocol.CORES: [0]}
    for _ in range(int(blocks)):
        for label, (handle, left) in variants.items():
            trial_mod.handle, state.left = handle, left
            for i in range(int(n) + 10):
                start = time.perf_counter()
                assert runs.run(protocol.request(protocol.RUN, trial))[protocol.OK]
                if i >= 10:  # the first after a switch: the host's own code warms again
                    took[label].append(time.perf_counter() - start)
                runs.settle()
                time.sleep(0.0005)
    runs.close()
    print(f"# load {os.getloadavg()[0]:.2f}; a no-op run's request to reply, the run's process doing:")
    for label, values in took.items():
        print(f"  {label:34s} median {statistics.median(values) * 1e3:6.3f} ms")


_BARE_FORK = """
import os, time
took = []
for _ in range(300):
    t = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    took.append(time.perf_counter() - t)
print(sorted(took)[150] * 1e3)
"""


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    args = sys.argv[2:]
    if what in ("all", "split"):
        split(*args)
    if what in ("all", "command"):
        command(*args)
    if what == "parts":
        parts(*args)
    if what in ("all", "floor"):
        floor()
    if what == "stripped":
        stripped(*args)
