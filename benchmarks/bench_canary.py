"""How steady the speed canary is (#15 item 1): before/after pairs around busy work, nothing else changed.

A clean run's canary should not move: each pair here times ``conc_lab.host.noise.canary`` on one
core, does 0.05-0.3 s of busy work (as a run), times it again, after a 0.05-0.2 s pause (as the
host waiting for its next request). Printed: how far the pairs moved, against the default limit
(``max_canary_change`` 0.25), beside the earlier canary (5 rounds of 3000 loops, no warm-up),
interleaved so both meet the same machine.

    python benchmarks/bench_canary.py            # 40 pairs each, ~30 s
    python benchmarks/bench_canary.py --pairs 100 --core 1
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time

from _common import ROOT  # noqa: F401 - puts the repository on sys.path

from conc_lab.host import affinity, noise


def earlier(cores) -> float:
    """The canary as it was before warm-up rounds: the fastest of 5 rounds of 3000 loops."""
    slowest = 0.0
    for core in cores:
        previous = affinity.pin(core)
        try:
            best = min(_round(3000) for _ in range(5))
        finally:
            affinity.restore(previous)
        slowest = max(slowest, best)
    return slowest


def _round(loops: int) -> float:
    start = time.thread_time()
    noise._reference_loop(loops)
    return time.thread_time() - start


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=40)
    ap.add_argument("--core", type=int, default=affinity.plan("compact", 1)[0])
    ap.add_argument("--limit", type=float, default=noise.MAX_CANARY_CHANGE)
    args = ap.parse_args()
    rng = random.Random(20261129)
    canaries = {"canary now": noise.canary, "earlier canary": earlier}
    moved = {name: [] for name in canaries}
    cost = {name: [] for name in canaries}
    for _ in range(args.pairs):
        for name, canary in canaries.items():
            time.sleep(rng.uniform(0.05, 0.2))
            start = time.perf_counter()
            before = canary([args.core])
            cost[name].append(time.perf_counter() - start)
            busy(rng.uniform(0.05, 0.3))
            moved[name].append(canary([args.core]) / before - 1)
    print(f"{'':16} {'median |change|':>16} {'p90':>7} {'max':>7} {'> limit':>9} {'cost/core':>10}")
    for name, changes in moved.items():
        a = sorted(abs(c) for c in changes)
        print(
            f"{name:16} {statistics.median(a):>16.1%} {a[int(0.9 * (len(a) - 1))]:>7.1%} {a[-1]:>7.1%} "
            f"{sum(c > args.limit for c in a):>4}/{len(a):<4} {statistics.median(cost[name]) * 1e3:>7.2f} ms"
        )
    print(
        f"\ncore {args.core}, limit {args.limit:.0%}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )


if __name__ == "__main__":
    main()
