"""Trial host recovery after a hung trial: the timeout, the kill, the fresh host, the next trial.

For each local backend, in real trial hosts (tests/workloads_faulty.py): a good trial on a
warm host (the baseline), then a trial whose task 1 sleeps for an hour, then the good trial
again. Reported, as medians over ``--rounds``:

* overshoot: wall time of the hung trial beyond the timeout (noticing it, killing the host's
  process group, reaping it);
* restart: the next good trial's wall time minus a warm one's (starting a fresh host);
* recovery: overshoot + restart, the price of one hung trial beyond its timeout;
* next run_s / warm run_s: whether the trial after the hang is measured as if nothing happened;
* cold host: in ``--rounds`` fresh hosts, a trial's first run_s over its next runs' median,
  the penalty the untimed run in a replacement host is there to keep out of the numbers.
  A fresh host is cold (imports, caches, the interpreter specialising its code), so the
  runner runs each trial once untimed in a replacement host before measuring it; with
  ``--no-rewarm`` that run is skipped and the ratio shows what it prevents. The untimed run
  counts in "restart".

    python benchmarks/bench_recovery.py                 # about a minute
    python benchmarks/bench_recovery.py --rounds 10 --timeout 1 --no-rewarm
"""

from __future__ import annotations

import argparse
import statistics
import time

from _common import ROOT, ms

BACKENDS = [
    ("sequential", None, 1),
    ("threading", None, 2),
    ("multiprocessing", "fork", 2),
    ("multiprocessing", "forkserver", 2),
    ("multiprocessing", "spawn", 2),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=2.0, help="trial timeout in seconds")
    ap.add_argument(
        "--no-rewarm",
        action="store_true",
        help="measure the next trial cold (no untimed run in the new host)",
    )
    args = ap.parse_args()

    from conc_lab.plan.matrix import Trial
    from conc_lab.run.executor import ExecutorSettings, TrialExecutor

    how = "cold (--no-rewarm)" if args.no_rewarm else "after one untimed run in the new host"
    print(f"timeout {args.timeout:g} s, {args.rounds} rounds, next trial measured {how}; medians")
    header = f"{'backend':28} {'overshoot':>10} {'restart':>10} {'recovery':>10} {'next/warm run_s':>16}"
    print(header)
    for backend, method, workers in BACKENDS:

        def trial(fn: str, backend=backend, workers=workers, method=method) -> Trial:
            return Trial(f"workloads_faulty:{fn}", backend, workers, tasks=4, size=50000, start_method=method)

        overshoot, restart, ratio = [], [], []
        search = [str(ROOT / "tests")]
        with TrialExecutor(
            ExecutorSettings(
                "recovery", "b", timeout_s=args.timeout, search_path=search, rewarm=not args.no_rewarm
            )
        ) as ex:
            for _ in range(args.rounds):
                warm_walls, warm_runs = [], []
                for repeat in range(3):  # the baseline: a warm host, a good trial
                    t0 = time.perf_counter()
                    row = ex.execute(trial("good"), repeat).row
                    warm_walls.append(time.perf_counter() - t0)
                    warm_runs.append(row["run_s"])
                    assert row["status"] == "ok", row["error"]
                t0 = time.perf_counter()
                hung = ex.execute(trial("hangs"), 0).row
                overshoot.append(time.perf_counter() - t0 - args.timeout)
                assert hung["status"] == "timeout", hung["error"]
                t0 = time.perf_counter()
                after = ex.execute(trial("good"), 0).row
                restart.append(time.perf_counter() - t0 - statistics.median(warm_walls))
                assert after["status"] == "ok" and after["correct"], after["error"]
                ratio.append(after["run_s"] / statistics.median(warm_runs))
        over, rest = statistics.median(overshoot), statistics.median(restart)
        label = f"{backend}/{method}" if method else backend
        print(
            f"{label:28} {ms(over):>10} {ms(rest):>10} {ms(over + rest):>10} {statistics.median(ratio):>16.2f}"
        )
    cold_host(max(args.rounds, 12))


def cold_host(rounds: int) -> None:
    """A trial's first run in a fresh host against its later runs there, per backend."""
    from conc_lab.host.affinity import plan
    from conc_lab.plan.matrix import Trial
    from conc_lab.run.trial_host import TrialHost

    print(
        f"\ncold host: first run_s / median of runs 2-4, in {rounds} fresh hosts (control: run 3 / runs 2 and 4)"
    )
    for backend, method, workers in BACKENDS:
        first, control = [], []
        t = Trial("workloads_faulty:good", backend, workers, tasks=4, size=50000, start_method=method)
        message = {"op": "run", "trial": {**t.params(), "cores": plan("compact", workers)}}
        for _ in range(rounds):
            with TrialHost(None, [str(ROOT / "tests")]) as host:
                r = [host.request(message, 60)["outcome"]["run_s"] for _ in range(4)]
            first.append(r[0] / statistics.median(r[1:]))
            control.append(r[2] / statistics.median([r[1], r[3]]))
        label = f"{backend}/{method}" if method else backend
        print(
            f"{label:28} first/warm {statistics.median(first):5.2f}   control {statistics.median(control):5.2f}"
        )


if __name__ == "__main__":
    main()
