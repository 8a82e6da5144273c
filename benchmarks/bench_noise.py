"""Noise caught per run (#15 item 1): how many runs beside a competing process are flagged, and how many clean ones.

A real competitor: busy loops pinned to the trial's core, each in a session of its own
(where the kernel shares a CPU between sessions first, one loop would only get its
session's share), stopped with SIGSTOP except during chosen runs, which the workload's
``prepare`` hook lets them into (tests/workloads_hostile.py: ``competed``). The sweep is a
real ``conc_lab.sweep`` of ``--runs`` sequential runs pinned to that core; every other run
is competed. Reported: competed runs flagged / all competed, clean runs flagged / all
clean, the foreign-CPU share and canary change of each run, and the machine's load.

    python benchmarks/bench_noise.py                 # 20 runs, 12 competitors
    python benchmarks/bench_noise.py --runs 40 --max-foreign-cpu 0.1
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile

from _common import ROOT

TESTS = ROOT / "tests"


def start_competitors(core: int, count: int) -> list[int]:
    code = (
        "import os, time\n"
        "if os.fork():\n    os._exit(0)\n"
        f"os.sched_setaffinity(0, {{{core}}})\n"
        "print(os.getpid(), flush=True)\n"
        "end = time.time() + 600\n"
        "while time.time() < end:\n    pass\n"
    )
    pids = []
    for _ in range(count):
        proc = subprocess.Popen(
            [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        pids.append(int(proc.stdout.readline()))
        proc.stdout.close()
        proc.wait()
        os.kill(pids[-1], signal.SIGSTOP)
    return pids


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--competitors", type=int, default=12)
    ap.add_argument("--max-foreign-cpu", type=float, default=0.5)
    ap.add_argument("--max-canary-change", type=float, default=0.25)
    ap.add_argument("--size", type=int, default=300_000)
    args = ap.parse_args()

    sys.path.insert(0, str(TESTS))
    import conc_lab
    from conc_lab import events
    from conc_lab.config.document import parse_config
    from conc_lab.host import affinity

    core = affinity.plan("compact", 1)[0]
    competed = set(range(1, args.runs, 2))
    pids = start_competitors(core, args.competitors)
    # Each run is a process of its own: the workload counts its calls in a file (tests/workloads_hostile.py).
    counter = os.path.join(tempfile.mkdtemp(), "competed-calls")
    os.environ["CONCLAB_TEST_COMPETITOR"] = (
        f"{','.join(map(str, pids))}:{','.join(map(str, sorted(competed)))}:{counter}"
    )
    doc = {
        "name": "bench_noise",
        "repeats": args.runs,
        "warmup": 0,
        "timeout_s": 120,
        "affinity": "compact",
        "noise": {"max_foreign_cpu": args.max_foreign_cpu, "max_canary_change": args.max_canary_change},
        "matrix": {
            "workload": ["workloads_hostile:competed"],
            "backend": ["sequential"],
            "workers": [1],
            "tasks": [2],
            "size": [args.size],
        },
    }
    rows = []
    try:
        cfg = parse_config(doc, path=str(TESTS / "bench_noise.yaml"))
        with tempfile.TemporaryDirectory() as out:
            conc_lab.sweep(
                cfg, out, on_event=lambda e: rows.append(e.row) if isinstance(e, events.RunFinished) else None
            )
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGKILL)

    print(f"{'run':>4} {'competed':>8} {'run_s':>8} {'foreign':>8} {'canary':>8} {'switches':>8}  noisy")
    for r in rows:
        before, after = r["canary_before_s"], r["canary_after_s"]
        change = f"{after / before - 1:>+8.0%}" if before and after else f"{'-':>8}"
        print(
            f"{r['repeat']:>4} {('yes' if r['repeat'] in competed else ''):>8} {r['run_s'] or 0:>8.3f} "
            f"{r['foreign_cpu'] or 0:>8.2f} {change} {r['involuntary_switches'] or 0:>8}  "
            f"{r['noise_note'] or r['error'] or ''}"
        )
    hit = sum(1 for r in rows if r["repeat"] in competed and r["noisy"])
    false = sum(1 for r in rows if r["repeat"] not in competed and r["noisy"])
    print(
        f"\ncompeted runs flagged: {hit}/{len(competed)}; clean runs flagged: {false}/{args.runs - len(competed)} "
        f"(max_foreign_cpu {args.max_foreign_cpu}, max_canary_change {args.max_canary_change}, "
        f"{args.competitors} competitors on core {core})"
    )
    print("load:", open("/proc/loadavg").read().strip())


if __name__ == "__main__":
    main()
