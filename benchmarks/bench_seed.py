"""The seed post's exercise, answered: the table for configs/seed.yaml on this machine.

"Measure the delta between threads, between process & threading, relative to never using
either." Runs ``configs/seed.yaml`` (or reads a finished sweep with ``--reuse DIR``) and
prints, per program and size, the median time of sequential / threading / multiprocessing
(fork, spawn): starting the workers (setup_s) + running the work (run_s), with the speedup
over sequential; then the deltas the post asks for.

    python benchmarks/bench_seed.py                   # runs the sweep (~30 s) and prints Markdown
    python benchmarks/bench_seed.py --reuse results/seed/<sweep_id>
"""

from __future__ import annotations

import argparse
import tempfile

from _common import ROOT, medians, ms, sweep_frame

ORDER = [
    "sequential",
    "threading",
    "multiprocessing/fork",
    "multiprocessing/spawn",
    "multiprocessing/forkserver",
]


def table(df) -> str:
    m = medians(df, ["workload", "size"])
    m["total_s"] = m["run_s"] + m["setup_s"].fillna(0)
    variants = [v for v in ORDER if v in set(m["variant"])]
    lines = [
        "| program | size | " + " | ".join(variants) + " |",
        "|---|---:|" + "---:|" * len(variants),
    ]
    deltas = []
    for (workload, size), grp in m.groupby(["workload", "size"], sort=False):
        by = grp.set_index("variant")
        seq = by.loc["sequential", "total_s"]
        cells = []
        for v in variants:
            r = by.loc[v]
            speed = seq / r["total_s"]
            start = f"{ms(r['setup_s'])} start + " if v != "sequential" else ""
            cells.append(f"{ms(r['total_s'])} ({start}{ms(r['run_s'])} run) ×{speed:.2f}")
        name = workload.rsplit(":", 1)[-1]
        lines.append(f"| {name} | {size} | " + " | ".join(cells) + " |")
        thr = by.loc["threading", "total_s"]
        fork = (
            by.loc["multiprocessing/fork", "total_s"] if "multiprocessing/fork" in by.index else float("nan")
        )
        deltas.append(
            f"- {name}, size {size}: threads {_delta(thr - seq)} vs sequential; "
            f"processes (fork) {_delta(fork - seq)} vs sequential and {_delta(fork - thr)} vs threads"
        )
    runs = int(m["n"].median())
    head = f"Median of {runs} runs per cell: total (start of workers + run of the work) and speedup over sequential.\n"
    return head + "\n" + "\n".join(lines) + "\n\nThe post's deltas (total time):\n" + "\n".join(deltas) + "\n"


def _delta(seconds: float) -> str:
    sign = "+" if seconds >= 0 else "-"
    return f"{sign}{ms(abs(seconds))}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reuse", help="a finished sweep directory to tabulate instead of running one")
    ap.add_argument("--out", help="also write the Markdown table to this file")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="conclab-seed-") as tmp:
        df = sweep_frame(ROOT / "configs" / "seed.yaml", tmp, args.reuse)
    text = table(df)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
