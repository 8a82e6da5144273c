"""Co-located Ray nodes: 20 pinned CPU trials of ~0.5 s on 1 node, then on 2 nodes of one machine.

Both nodes are started with ``ray start`` on this machine (tests/ray_start_cluster.py: the
README's lines, private ports and temp dir), so they share its kernel and its cores, as pods
or several ``ray start`` on one host do. Figures:

* makespan (the sweep's wall time) on 1 node and on 2, and their ratio. Target <= 0.6;
* that every run was pinned, and the cores of each run, with when it ran;
* overlapping runs that shared a core: must be 0 (before #13 item 5 both nodes pinned to core 0);
* each sweep's connecting time and run loop, and the median run_s (it should be ~0.5 s: if not,
  the script says which --size would be).

    python benchmarks/bench_colocated.py [--trials 20] [--size N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

CONFIG = """\
name: colocated
repeats: 1
warmup: 0
timeout_s: 120
affinity: compact
matrix:
  workload: [{{workload: experiments.cpu:sum_squares, size: {sizes}}}]
  backend: [sequential]
  tasks: [1]
"""


def calibrate(target_s: float) -> int:
    """A sum_squares size that takes about ``target_s`` here (one pinned run, best of 3)."""
    from experiments.cpu import sum_squares

    size = 200_000
    while True:
        best = min(_timed(sum_squares, size) for _ in range(3))
        if best > 0.05:
            return int(size * target_s / best)
        size *= 4


def _timed(fn, size: int) -> float:
    started = time.perf_counter()
    fn(0, size)
    return time.perf_counter() - started


def overlapping_shared(df) -> tuple[int, int]:
    """(pairs of runs that overlapped in time, of those the pairs that shared a core)."""
    spans = [
        (r.started_at.timestamp(), r.started_at.timestamp() + r.run_s + (r.setup_s or 0), set(r.cores))
        for r in df.itertuples()
    ]
    overlap = shared = 0
    for i, a in enumerate(spans):
        for b in spans[i + 1 :]:
            if a[0] < b[1] and b[0] < a[1]:
                overlap += 1
                shared += bool(a[2] & b[2])
    return overlap, shared


def report(label: str, result, df) -> None:
    t0 = df["started_at"].min().timestamp()
    print(
        f"\n{label}: makespan {result.wall_s:.2f} s (connecting {result.ray_start_s:.2f} s, runs "
        f"{result.loop_s:.2f} s), {len(df)} runs, nodes {df['node_id'].nunique()}, "
        f"pinned {bool(df['pinned'].all())}, median run_s {df['run_s'].median():.2f} s"
    )
    for r in df.sort_values("started_at").itertuples():
        print(
            f"   node {r.node_id[:8]}  cores {list(r.cores)}  start +{r.started_at.timestamp() - t0:6.2f} s  "
            f"run {r.run_s:.2f} s  cpu {sorted({t['cpu'] for t in r.task_records})}"
        )
    overlap, shared = overlapping_shared(df)
    print(f"   runs overlapping in time: {overlap} pairs; of them sharing a core: {shared}")


def sweep_on_fresh_cluster(runner, config: Path, out: Path, nodes: int):
    from ray_start_cluster import RayStartCluster

    cluster = RayStartCluster()
    os.environ["HOME"] = cluster.env["HOME"]
    try:
        cluster.start(nodes=nodes)
        return runner.sweep(config, out, cluster=cluster.address)
    finally:
        cluster.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--size", type=int, default=None, help="sum_squares size (default: ~0.5 s here)")
    args = parser.parse_args()

    import conc_lab
    from conc_lab.run import runner

    size = args.size or calibrate(0.5)
    # Both sweeps run in this one process, as from the Python API: Ray is imported once, before
    # either, so that neither pays it (before, only the 1-node sweep did, which flattered the ratio).
    started = time.perf_counter()
    import ray  # noqa: F401

    print(f"import ray: {time.perf_counter() - started:.2f} s, once per process, in neither sweep")
    print(f"uptime: {os.popen('uptime').read().strip()}")
    print(f"{args.trials} trials, sequential, sum_squares size {size} (~0.5 s), affinity compact")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "colocated.yaml"
        config.write_text(textwrap.dedent(CONFIG.format(sizes=list(range(size, size + args.trials)))))
        # Each sweep on a cluster of its own, started just before it, so both start from the same
        # state (before, the 2-node sweep ran second on the 1-node sweep's cluster: seen here, its
        # runners took ~2.4 s to be ready against ~0.8 s for the first sweep's).
        one = sweep_on_fresh_cluster(runner, config, Path(tmp) / "one", nodes=1)
        two = sweep_on_fresh_cluster(runner, config, Path(tmp) / "two", nodes=2)
        frames = {}
        for label, result in (("1 node", one), ("2 nodes", two)):
            if not result.ok or result.recorded != args.trials:
                raise SystemExit(f"sweep {result.sweep_dir} failed: {result}")
            frames[label] = conc_lab.load(result.sweep_dir)
            report(label, result, frames[label])
    print(f"\nmakespan ratio 2 nodes / 1 node: {two.wall_s / one.wall_s:.2f}  (target <= 0.6)")
    median = frames["1 node"]["run_s"].median()
    if not 0.4 <= median <= 0.6:  # the figure is for ~0.5 s trials: say when these were not
        print(f"NOTE: median run_s {median:.2f} s, not ~0.5 s: give --size {int(size * 0.5 / median)}")
    print(f"uptime: {os.popen('uptime').read().strip()}")


if __name__ == "__main__":
    main()
