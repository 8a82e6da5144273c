"""How often ``conclab advise`` is right (#24): the six known workloads of experiments/advise_cases.py.

Runs ``conc_lab.advise`` ``--times`` times (default 10) on each workload, with the default budget,
and prints per workload how often the verdict was right, how often it settled before the budget,
how often it said "can't tell" (too busy: no arm named, not counted as right), how often it
ended past its budget (by more than 5%), and the wall time per advise (median and slowest).
Right means:

* ``python_loop`` (pure Python)          → use processes (multiprocessing, any start method);
* ``hash_buffers`` (hashlib, GIL released) → use threads, said to be as fast as processes and cheaper;
* ``wait`` (sleeps)                       → use threads;
* ``tiny`` (microseconds, any size)       → don't bother: stay sequential;
* ``unequal`` (task 0 sixteen times the rest) → the verdict names the imbalance;
* ``wait_async`` (an async def of sleeps) → use asyncio.

The load average is printed before and after: a figure from a busy machine says so.

    python benchmarks/bench_advise.py                 # 6 x 10 advises, about 40 minutes on 2 cores
    python benchmarks/bench_advise.py --times 1 --budget 60 --only tiny wait
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from _common import ROOT  # noqa: F401 - puts the repository on sys.path

import conc_lab
from conc_lab.advice.verdict import CANT_TELL


def _right_python_loop(v) -> bool:
    return v.choice.startswith("multiprocessing")


def _right_hash(v) -> bool:
    """Threads, and where processes came within 10% the verdict says they are alike and threads cheaper."""
    alike = [a for a in v.arms if a.backend == "multiprocessing" and a.speedup >= 0.9 * v.arms[0].speedup]
    return v.choice == "threading" and (not alike or "cheaper" in v.headline)


CASES = {
    "python_loop": ("processes", _right_python_loop),
    "hash_buffers": ("threads ≈ processes, threads cheaper", _right_hash),
    "wait": ("threads", lambda v: v.choice == "threading"),
    "tiny": ("don't bother", lambda v: v.dont_bother),
    # the imbalance named in the verdict: an idle worker ("imbalance: worker 1 idle 52%") or, where no
    # worker was measured idle, the tasks themselves ("unequal tasks: task 0 takes 16x the median task")
    "unequal": ("names the imbalance", lambda v: v.imbalance is not None and v.imbalance in v.headline),
    "wait_async": ("asyncio", lambda v: v.choice == "asyncio"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--times", type=int, default=10, help="advises per workload (default 10)")
    ap.add_argument(
        "--budget", type=float, default=120.0, help="budget of each advise, seconds (default 120)"
    )
    ap.add_argument("--only", nargs="*", choices=sorted(CASES), help="only these workloads")
    ap.add_argument("--out", default=None, help="results root (default: a temporary folder)")
    args = ap.parse_args()
    out = args.out or tempfile.mkdtemp(prefix="bench_advise-")
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; results under {out}")
    rows = []
    for name in args.only or CASES:
        expected, right = CASES[name]
        walls, hits, settled, unsure, late = [], 0, 0, 0, 0
        for i in range(args.times):
            began = time.perf_counter()
            advice = conc_lab.advise(f"experiments.advise_cases:{name}", budget_s=args.budget, out=out)
            walls.append(time.perf_counter() - began)
            ok = right(advice.verdict)
            cant = advice.verdict.choice == CANT_TELL
            hits, settled, unsure = hits + ok, settled + advice.verdict.settled, unsure + cant
            late += walls[-1] > 1.05 * args.budget
            said = "right" if ok else "can't tell" if cant else "WRONG"
            print(f"  {name} #{i + 1}: {said} ({walls[-1]:.0f} s): {advice.verdict.headline}", flush=True)
        rows.append((name, expected, hits, settled, unsure, late, statistics.median(walls), max(walls)))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}; budget {args.budget:.0f} s")
    head = f"{'workload':<13} {'right answer':<38} {'right':>7} {'settled':>8} {'unsure':>7} {'late':>6}"
    print(f"{head} {'median s':>9} {'max s':>6}")
    for name, expected, hits, settled, unsure, late, med, top in rows:
        n = args.times
        print(
            f"{name:<13} {expected:<38} {hits:>3}/{n:<3} {settled:>4}/{n:<3} {unsure:>3}/{n:<3} {late:>2}/{n:<3}"
            f" {med:>9.0f} {top:>6.0f}"
        )


if __name__ == "__main__":
    main()
