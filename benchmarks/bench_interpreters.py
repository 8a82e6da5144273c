"""The interpreter axis, measured: trial host start-up per interpreter, and the seed matrix under each.

1. Start-up: for every interpreter that can host trials (one per version and build, pyenv's
   preferred), the median of N starts of a bare ``python -E -s -c pass`` and of a trial host
   (``TrialHost``: process start, ``python -m conc_lab.host`` from source, hello received).
   The difference is what conc_lab's host adds; it is paid once per interpreter per sweep.
2. The seed config (``configs/seed.yaml``: the post's calc_square/calc_quad, 2 workers,
   size 1 and size auto) with its ``python`` axis set to all of those interpreters; prints the
   threading and multiprocessing speedup over each interpreter's own sequential run, per version.

    python benchmarks/bench_interpreters.py                 # both (~3-4 min on 2 cores)
    python benchmarks/bench_interpreters.py --startup-only
    python benchmarks/bench_interpreters.py --reuse results/bench/seed/<sweep_id>
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

import yaml
from _common import ROOT, ms, sweep_frame

from conc_lab.analysis import summary as analysis
from conc_lab.machine import interpreters
from conc_lab.run.trial_host import TrialHost


def pick() -> list[interpreters.Interpreter]:
    """One interpreter per (minor version, build), pyenv's before others, oldest first."""
    root = interpreters.pyenv_root()
    chosen: dict[tuple, interpreters.Interpreter] = {}
    for info in interpreters.find_interpreters():
        if not info.can_host:
            continue
        key = (info.implementation, info.version_info[:2], info.free_threaded)
        in_pyenv = root is not None and info.path.startswith(str(root))
        if key not in chosen or (in_pyenv and not chosen[key].path.startswith(str(root or "-"))):
            chosen[key] = info
    return sorted(chosen.values(), key=lambda i: (i.version_info, i.free_threaded))


def startup(found: list[interpreters.Interpreter], n: int) -> str:
    lines = [
        "| Python | build | bare interpreter start | trial host start (to hello) | host adds |",
        "|---|---|---:|---:|---:|",
    ]
    for info in found:
        bare, host = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            subprocess.run([info.path, "-E", "-s", "-c", "pass"], check=True)
            bare.append(time.perf_counter() - t0)
            with TrialHost(info.path, [str(ROOT)]) as h:
                host.append(h.start_s)
        b, s = statistics.median(bare), statistics.median(host)
        build = "free-threaded" if info.free_threaded else "default"
        lines.append(f"| {info.label} | {build} | {ms(b)} | {ms(s)} | {ms(s - b)} |")
    return "\n".join(lines)


def seed_config(found: list[interpreters.Interpreter], out: str) -> str:
    """configs/seed.yaml with its python axis set to ``found`` (by path), written next to the results."""
    doc = yaml.safe_load((ROOT / "configs" / "seed.yaml").read_text())
    doc["matrix"]["python"] = [info.path for info in found]
    path = os.path.join(out, "seed-all-interpreters.yaml")
    os.makedirs(out, exist_ok=True)
    with open(path, "w") as f:
        f.write("# written by benchmarks/bench_interpreters.py: configs/seed.yaml across every interpreter\n")
        yaml.safe_dump(doc, f, sort_keys=False)
    return path


def speedups(df) -> str:
    summary = analysis.summarize(df)
    wide = analysis.by_interpreter(df, summary)
    labels = [c for c in analysis.interpreter_labels(df).values() if c in wide.columns]
    wide = wide.assign(
        variant=[
            b if not isinstance(m, str) or m == "-" else f"{b}/{m}"
            for b, m in zip(wide["backend"], wide.get("start_method", [None] * len(wide)), strict=True)
        ]
    )
    base = summary[summary["backend"] == "sequential"].copy()
    base["label"] = base["python"].map(analysis.interpreter_labels(df))
    lines = []
    for (workload, size), grp in wide.groupby(["workload", "size"], sort=False):
        seq = base[(base["workload"] == workload) & (base["size"] == size)].set_index("label")["median_s"]
        lines += [
            "",
            f"**{workload.rsplit(':', 1)[-1]}, size {size}** (2 workers, 2 tasks): speedup over sequential",
            "",
            "| backend | " + " | ".join(labels) + " |",
            "|---|" + "---:|" * len(labels),
            "| sequential run time | "
            + " | ".join(ms(seq[lab]) if lab in seq else "-" for lab in labels)
            + " |",
        ]
        for _, row in grp.iterrows():
            cells = [f"{row[lab]:.2f}" if row[lab] == row[lab] else "-" for lab in labels]
            lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--startup-only", action="store_true")
    parser.add_argument("--starts", type=int, default=15, help="starts per interpreter (median taken)")
    parser.add_argument("--reuse", help="a finished sweep directory to read instead of running")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench"))
    args = parser.parse_args()
    os.chdir(ROOT)  # workloads (experiments.*) import from the project root

    found = pick()
    print("Interpreters:", ", ".join(f"{i.label} ({i.path})" for i in found))
    print(f"\n## Trial host start-up (median of {args.starts})\n")
    print(startup(found, args.starts))
    if args.startup_only:
        return
    config = None if args.reuse else seed_config(found, args.out)
    df = sweep_frame(config, args.out, reuse=args.reuse)
    sizes = sorted(int(x) for x in df["size"].unique())
    print(
        f"\n## configs/seed.yaml under every interpreter (sizes {sizes}; speedup = own sequential / backend)"
    )
    print(speedups(df))


if __name__ == "__main__":
    main()
