"""Ray figures: the ray backend's per-task cost against raw Ray, its speedup, and cluster makespan.

1. Per-task overhead: 1,000 trivial calls (experiments.overhead:noop) through the ray backend
   (2 pinned actors; run_s, actor start-up excluded) against 1,000 plain ``ray.remote`` tasks,
   gathered with one ``ray.get``, in the same process on the same runtime, alternating, median
   of ``--rounds``. Target: ratio <= 1.3.
2. CPU-bound speedup, tasks=8 workers=2 (experiments.cpu:sum_squares): a conclab sweep of
   sequential, multiprocessing/fork and ray; speedup = median sequential run_s / median run_s.
3. Cluster makespan: 40 trials that each sleep 0.5 s (threading, workers 1..40, one task each,
   unpinned) as a cluster sweep on a local Ray cluster of 1 node, then of 2 nodes;
   makespan = the sweep's wall time, node start-up included. Target: ratio <= 0.6 (limit 0.5).

    python benchmarks/bench_ray.py                 # about 2 minutes on 2 cores
    python benchmarks/bench_ray.py --skip-cluster
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _common import ROOT, ms, sweep_frame

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only, before Ray loads


def overhead(rounds: int, calls: int) -> tuple[float, float, float]:
    """Per-call seconds: (raw ray.remote task, raw sync actor call, ray backend task); medians."""
    import ray

    from conc_lab.host import affinity, backends
    from conc_lab.host.backends._worker import resolve

    @ray.remote
    def trivial(i):
        return i

    @ray.remote(num_cpus=0)
    class Echo:
        def call(self, i):
            return i

    backend = backends.get("ray")
    ref = "experiments.overhead:noop"
    fn = resolve(ref)
    trial = {"workload": ref, "backend": "ray", "workers": 2, "tasks": calls, "size": 0}
    trial["cores"] = affinity.plan("compact", 2)
    echo = Echo.remote()
    ray.get([trivial.remote(i) for i in range(200)] + [echo.call.remote(0)])  # warm the worker pool
    backend.run(fn, dict(trial, tasks=200))
    raw, actor, ours = [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        ray.get([trivial.remote(i) for i in range(calls)])
        raw.append((time.perf_counter() - t) / calls)
        out = backend.run(fn, trial)
        assert out["status"] == "ok", out["error"]
        assert sorted(r[0] for r in out["task_records"]) == list(range(calls))
        ours.append(out["run_s"] / calls)
        t = time.perf_counter()
        for i in range(calls // 4):  # one synchronous round trip at a time
            ray.get(echo.call.remote(i))
        actor.append((time.perf_counter() - t) / (calls // 4))
    backend.close()
    return statistics.median(raw), statistics.median(actor), statistics.median(ours)


CPU = """
name: bench_ray_cpu
repeats: {repeats}
warmup: 1
timeout_s: 300
matrix:
  workload: [experiments.cpu:sum_squares]
  backend: [sequential, multiprocessing, ray]
  workers: [2]
  tasks: [8]
  size: [{size}]
backend_options:
  multiprocessing: {{start_method: [fork]}}
affinity: compact
"""

NAPS = """
name: bench_ray_naps
repeats: 1
warmup: 0
timeout_s: 120
matrix:
  workload: [{{workload: experiments.io:sleep, size: [500]}}]
  backend: [threading]
  workers: {workers}
  tasks: [1]
affinity: none
"""


def cluster_makespan(out: Path) -> tuple[float, float, int, int]:
    from ray.cluster_utils import Cluster

    import conc_lab
    from conc_lab.run import runner

    config = out / "naps.yaml"
    config.write_text(textwrap.dedent(NAPS.format(workers=list(range(1, 41)))))
    cluster = Cluster(
        initialize_head=True, connect=False, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    try:
        cluster.wait_for_nodes()
        one = runner.sweep(config, out / "one", cluster=cluster.address)
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        two = runner.sweep(config, out / "two", cluster=cluster.address)
    finally:
        cluster.shutdown()
    for result in (one, two):
        if not result.ok or result.recorded != 40:
            raise SystemExit(f"cluster sweep {result.sweep_dir} failed: {result}")
    n1 = conc_lab.load(one.sweep_dir)["node_id"].nunique()
    n2 = conc_lab.load(two.sweep_dir)["node_id"].nunique()
    return one.wall_s, two.wall_s, n1, n2


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5, help="measured runs per trial in the CPU sweep")
    parser.add_argument("--size", type=int, default=1_000_000, help="sum_squares size: ~50-100 ms per task")
    parser.add_argument("--skip-cluster", action="store_true")
    args = parser.parse_args()
    os.chdir(ROOT)

    from conc_lab.run.ray_runtime import RayRuntime

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        tmp = Path(tmp)
        with RayRuntime() as runtime:
            print(f"ray runtime {runtime.address} (started here: {runtime.started})", file=sys.stderr)
            raw, actor, ours = overhead(args.rounds, args.calls)
            print(f"\n1. per-task cost, {args.calls} trivial calls, median of {args.rounds} rounds")
            print(f"   raw ray.remote task:        {ms(raw)} per call")
            print(f"   raw actor call (sync):      {ms(actor)} per call")
            print(f"   ray backend (2 actors):     {ms(ours)} per task")
            print(f"   ratio backend / raw task:   {ours / raw:.2f}  (target <= 1.3)")

            config = tmp / "cpu.yaml"
            config.write_text(textwrap.dedent(CPU.format(repeats=args.repeats, size=args.size)))
            from conc_lab.run import runner

            result = runner.sweep(config, tmp / "cpu", ray_address=runtime.address)
            df = sweep_frame(config, tmp, reuse=str(result.sweep_dir))
        df = df.assign(
            variant=[f"{b}/{s}" if isinstance(s, str) else b for b, s in zip(df.backend, df.start_method)]
        )
        med = df.groupby("variant")[["run_s", "setup_s"]].median()
        seq = med.loc["sequential", "run_s"]
        print(f"\n2. CPU-bound sum_squares size={args.size}, tasks=8, workers=2, median of {args.repeats}")
        for variant in ("sequential", "multiprocessing/fork", "ray"):
            run_s, setup_s = med.loc[variant, "run_s"], med.loc[variant, "setup_s"]
            print(f"   {variant:22s} run {ms(run_s):>9s}  setup {ms(setup_s):>9s}  speedup {seq / run_s:.2f}")

        if not args.skip_cluster:
            one, two, n1, n2 = cluster_makespan(tmp)
            print("\n3. cluster sweep, 40 trials x 0.5 s sleep, makespan (sweep wall time)")
            print(f"   1 node:  {one:.1f} s  (rows from {n1} node)")
            print(f"   2 nodes: {two:.1f} s  (rows from {n2} nodes)")
            print(f"   ratio 2/1: {two / one:.2f}  (target <= 0.6, limit 0.5)")


if __name__ == "__main__":
    main()
