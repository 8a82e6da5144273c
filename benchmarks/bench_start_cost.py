"""Thread vs process start cost on this machine, per start method (and Ray task / actor).

Each experiments.overhead workload starts and joins ``size`` threads / processes one after
another inside one task, so one start+join costs run_s / size. Two instruments:

* conclab: a sweep on the sequential backend (the trial host is small, so fork is fast);
* direct: the same function timed with time.perf_counter in a fresh ``python -c`` process,
  pinned to core 0 as conclab's compact affinity pins its sequential worker (a thread
  started and joined on one core costs less than one woken on another).

Ray's task and actor are timed directly only, in a process of their own (loading Ray into
the trial host would slow every later fork there).

    python benchmarks/bench_start_cost.py           # about a minute
    python benchmarks/bench_start_cost.py --no-ray
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import ROOT, sweep_frame

# (workload, starts per task: about 50-100 ms of starting)
STARTS = [
    ("thread_start", 1000),
    ("process_start_fork", 50),
    ("process_start_forkserver", 20),
    ("process_start_spawn", 3),
]
RAY = [("ray_task", 100), ("ray_actor", 3)]


def conclab_per_start(repeats: int, reuse: str | None) -> dict[str, float]:
    (first, first_size), rest = STARTS[0], STARTS[1:]
    cfg = {
        "name": "start_cost",
        "repeats": repeats,
        "warmup": 1,
        "affinity": "compact",
        "matrix": {
            "workload": [f"experiments.overhead:{first}"],
            "backend": ["sequential"],
            "tasks": [1],
            "size": [first_size],
        },
        "include": [
            {"workload": f"experiments.overhead:{w}", "backend": "sequential", "tasks": 1, "size": s}
            for w, s in rest
        ],
    }
    with tempfile.TemporaryDirectory(prefix="conclab-start-") as tmp:
        path = Path(tmp) / "start_cost.yaml"
        path.write_text(json.dumps(cfg))
        df = sweep_frame(path, tmp, reuse)
    df = df.assign(per_start=df["run_s"] / (df["size"] * df["tasks"]))
    return {w.rsplit(":", 1)[-1]: float(v) for w, v in df.groupby("workload")["per_start"].median().items()}


_DIRECT = """
import json, os, statistics, sys, time
sys.path.insert(0, {root!r})
if {core} >= 0:
    os.sched_setaffinity(0, {{{core}}})  # as conclab pins its host: children inherit the core
from experiments import overhead
fn = getattr(overhead, {name!r})
fn(0, 1)  # warm: imports, a forkserver, a Ray runtime
values = []
for _ in range({repeats}):
    t0 = time.perf_counter(); fn(0, {size}); values.append((time.perf_counter() - t0) / {size})
print(json.dumps(statistics.median(values)))
"""


def direct_per_start(name: str, size: int, repeats: int, core: int = 0) -> float:
    code = _DIRECT.format(root=str(ROOT), name=name, size=size, repeats=repeats, core=core)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray task/actor rows")
    ap.add_argument("--reuse", help="a finished start_cost sweep directory instead of a new sweep")
    args = ap.parse_args()
    via = conclab_per_start(args.repeats, args.reuse)
    rows = [(name, size, via.get(name), direct_per_start(name, size, args.repeats)) for name, size in STARTS]
    if not args.no_ray:
        # Unpinned: Ray's own daemons would inherit a single core.
        rows += [(name, size, None, direct_per_start(name, size, 3, core=-1)) for name, size in RAY]
    thread = rows[0][3]
    print("| start + join of one | starts per task | conclab (median) | direct (median) | × a thread |")
    print("|---|---:|---:|---:|---:|")
    for name, size, c, d in rows:
        cell = f"{c * 1e3:.3f} ms" if c is not None else "–"
        print(f"| {name} | {size} | {cell} | {d * 1e3:.3f} ms | ×{d / thread:.0f} |")
    print(f"\n(medians of {args.repeats} runs; python {sys.version.split()[0]})")


if __name__ == "__main__":
    main()
