"""Co-located Ray nodes: 20 pinned CPU trials of ~0.5 s on 1 node, then on 2 nodes of one machine.

Both nodes are started with ``ray start`` on this machine (tests/ray_start_cluster.py: the
README's lines, private ports and temp dir), so they share its kernel and its cores, as pods
or several ``ray start`` on one host do. Figures:

* makespan (the sweep's wall time) on 1 node and on 2, and their ratio. Target <= 0.6;
* that every run was pinned, and the cores of each run, with when it ran;
* overlapping runs that shared a core: must be 0 (before #13 item 5 both nodes pinned to core 0).

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
    fn(size)
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
        f"\n{label}: makespan {result.wall_s:.2f} s, {len(df)} runs, nodes {df['node_id'].nunique()}, "
        f"pinned {bool(df['pinned'].all())}"
    )
    for r in df.sort_values("started_at").itertuples():
        print(
            f"   node {r.node_id[:8]}  cores {list(r.cores)}  start +{r.started_at.timestamp() - t0:6.2f} s  "
            f"run {r.run_s:.2f} s  cpu {sorted({t['cpu'] for t in r.task_records})}"
        )
    overlap, shared = overlapping_shared(df)
    print(f"   runs overlapping in time: {overlap} pairs; of them sharing a core: {shared}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--size", type=int, default=None, help="sum_squares size (default: ~0.5 s here)")
    args = parser.parse_args()

    from ray_start_cluster import RayStartCluster

    import conc_lab
    from conc_lab import runner

    size = args.size or calibrate(0.5)
    print(f"uptime: {os.popen('uptime').read().strip()}")
    print(f"{args.trials} trials, sequential, sum_squares size {size} (~0.5 s), affinity compact")
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "colocated.yaml"
        config.write_text(textwrap.dedent(CONFIG.format(sizes=list(range(size, size + args.trials)))))
        cluster = RayStartCluster()
        os.environ.update({k: v for k, v in cluster.env.items() if k in ("HOME",)})
        try:
            cluster.start(nodes=1)
            one = runner.sweep(config, Path(tmp) / "one", cluster=cluster.address)
            cluster.add_node()
            cluster.wait_nodes(2)
            two = runner.sweep(config, Path(tmp) / "two", cluster=cluster.address)
        finally:
            cluster.stop()
        frames = {}
        for label, result in (("1 node", one), ("2 nodes", two)):
            if not result.ok or result.recorded != args.trials:
                raise SystemExit(f"sweep {result.sweep_dir} failed: {result}")
            frames[label] = conc_lab.load(result.sweep_dir)
            report(label, result, frames[label])
    print(f"\nmakespan ratio 2 nodes / 1 node: {two.wall_s / one.wall_s:.2f}  (target <= 0.6)")
    print(f"uptime: {os.popen('uptime').read().strip()}")


if __name__ == "__main__":
    main()
