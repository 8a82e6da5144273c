"""Where a no-op run's time goes, with and without a fresh process per run (issues #21, #25).

    python benchmarks/bench_trial_path.py            # both parts, 1,000 trials
    python benchmarks/bench_trial_path.py split 2000 # the host's split only, 2,000 requests
    python benchmarks/bench_trial_path.py command 1000

1. split: no-op requests (experiments.overhead:noop, sequential, pinned) sent straight to one
   trial host, each timed by the runner (request to reply) and by the host (``outside_s``, fork
   to reply); medians. "in process" is the host running each request in itself under the
   after-run guard (``CONCLAB_HOST_IN_PROCESS=1``, as before runs had processes of their own).
   Also a bare fork + exit + wait from a process the host's size, and the run's own parts.
2. command: the whole ``conclab sweep -q`` command for 1 and for N no-op trials (N sizes of one
   trial, repeats 1, no warm-up), fresh process per run and in process; marginal = (t_N - t_1)
   / (N - 1). Interleaved, best of 3 each, so a busy moment does not land on one variant.

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


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "all"
    args = sys.argv[2:]
    if what in ("all", "split"):
        split(*args)
    if what in ("all", "command"):
        command(*args)
