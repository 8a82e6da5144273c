"""The VM's speed states (#20 item 3): how fast each core runs a fixed loop, alone and beside the
other, and how well a run's speed canary accounts for the state it ran in.

1. ``loops``: a fixed pure-Python loop in a fresh process pinned to core 0, then core 1, then both
   at once, ``--rounds`` times with a pause between. Prints each core's times alone (a core in a
   fast burst reads well under its median) and the ratio of the two run together to the two run
   alone (about 1: the cores do not slow each other, as SMT siblings would).
2. ``rows RESULTS``: from the sweeps under RESULTS (e.g. ``bench_precision.py --out``'s smoke
   sweeps), per backend and worker count, the spread (sd of the log) of ``run_s`` raw, and divided
   by the run's canary (the geometric mean of its before and after readings), over the runs whose
   two readings agree within 15%: where the canary tracks the state a run saw, dividing by it
   should remove the state from the time.

    python benchmarks/bench_speed_states.py loops --rounds 30      # ~40 s
    python benchmarks/bench_speed_states.py rows /tmp/bench_precision-XXXX
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from multiprocessing import Process, Queue

from _common import ROOT  # noqa: F401 - puts the repository on sys.path

LOOPS = 300_000


def _loop(core: int, out: Queue) -> None:
    os.sched_setaffinity(0, {core})
    began = time.thread_time()
    total = 0
    for i in range(LOOPS):
        total += i * i
    out.put((core, time.thread_time() - began))


def _together(cores: list[int]) -> dict[int, float]:
    out: Queue = Queue()
    procs = [Process(target=_loop, args=(c, out)) for c in cores]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return dict(out.get() for _ in cores)


def loops(rounds: int) -> None:
    alone: dict[int, list[float]] = {0: [], 1: []}
    ratios = []
    print(f"load {os.getloadavg()[0]:.2f} before")
    for _ in range(rounds):
        a, b = _together([0])[0], _together([1])[1]
        both = _together([0, 1])
        alone[0].append(a)
        alone[1].append(b)
        ratios.append((both[0] + both[1]) / (a + b))
        time.sleep(0.5)
    for core, ts in alone.items():
        med = statistics.median(ts)
        fast = sum(t < 0.8 * med for t in ts)
        ms = sorted(round(t * 1e3, 1) for t in ts)
        print(f"core {core} alone: median {med * 1e3:.1f} ms, {fast}/{rounds} under 0.8x it; all: {ms}")
    print(
        f"both at once / each alone: median {statistics.median(ratios):.2f} "
        f"({min(ratios):.2f}-{max(ratios):.2f}); load {os.getloadavg()[0]:.2f} after"
    )


def rows(results: str) -> None:
    import numpy as np

    import conc_lab

    df = conc_lab.load(results)
    df = df[(df.status == "ok") & df.canary_before_s.notna() & df.canary_after_s.notna()]
    before, after = df.canary_before_s, df.canary_after_s
    agree = np.maximum(before, after) / np.minimum(before, after) < 1.15
    canary = np.sqrt(before * after)
    kind = [
        f"{w.rsplit(':', 1)[-1]} {z} {b}{'/' + m if isinstance(m, str) else ''} x{n}"
        for w, z, b, m, n in zip(df.workload, df["size"], df.backend, df.start_method, df.workers)
    ]
    df = df.assign(kind=kind, agree=agree, log_raw=np.log(df.run_s), log_norm=np.log(df.run_s / canary))
    print(f"{len(df)} runs from {results}; sd of log run_s over the runs whose canary readings agree")
    for kind, g in df.groupby("kind"):
        a = g[g.agree]
        print(
            f"  {kind:42s} {len(a):3d}/{len(g):3d} agree  raw {a.log_raw.std():.3f}  "
            f"divided by the canary {a.log_norm.std():.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    sub.add_parser("loops").add_argument("--rounds", type=int, default=30)
    sub.add_parser("rows").add_argument("results")
    args = ap.parse_args()
    loops(args.rounds) if args.what == "loops" else rows(args.results)


if __name__ == "__main__":
    main()
