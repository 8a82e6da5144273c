"""Figures for the core sweep (issue 2), measured with the real runner on this machine.

    python benchmarks/bench_core.py            # all four figures
    python benchmarks/bench_core.py overhead   # one of: speedup, overhead, expand, noise, startup, memory
    python benchmarks/bench_core.py redesign [OLD_TREE] [ROUNDS] [TRIALS] [WARMUP]  # not in "all": needs OLD_TREE

1. speedup:  CPU-bound pure Python (tasks=8): multiprocessing and threading at workers=2 over
             sequential; I/O-bound sleep: threading at workers=2.
2. overhead: 1,000 trials of a no-op workload, sequential, repeats=1: wall time and per trial.
3. expand:   `conclab expand --count` on a 1,000,000-point matrix: time and peak memory.
4. noise:    coefficient of variation of 10 repeats of a ~200 ms sequential trial, pinned vs not.
6. startup: whole commands as a user types them, each in a fresh process, interleaved over
             rounds: `conclab --version`, and a 1-trial sweep (one no-op run) with its default
             output (header, table) and with -q; medians and ranges, the load before and after.
             `startup OLD_TREE [ROUNDS]`: the same from this tree and an older checkout, interleaved.
8. memory:  peak RSS of the whole `conclab sweep -q` for 1,000 and 10,000 no-op trials (GNU time).
9. marginal: issue #21's figures in one run: the whole `python -m conc_lab.cli sweep -q` for 1, 1,000
             and 10,000 no-op trials, each in a fresh process, over interleaved rounds: medians, the
             marginal cost per trial from 1 to 1,000 and from 1,000 to 10,000, peak RSS (wait4), and
             `--version`. `marginal OLD_TREE [ROUNDS]` interleaves an older checkout too.
7. redesign: runner overhead per no-op trial, this tree against an older checkout of conc_lab
             (issue 11: before vs after the pipeline redesign), in one run: each round runs one
             sweep with each tree, in alternating order, each in a fresh process; medians over rounds.
             Make the old tree with ``git worktree add /tmp/old 75d9006``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout: this tree's conc_lab

import conc_lab  # noqa: E402
from conc_lab.analysis.summary import summarize  # noqa: E402
from conc_lab.config.document import parse_config  # noqa: E402


def _sweep(doc: dict, out: Path):
    cfg = parse_config(doc, path=str(ROOT / "configs" / "bench.yaml"))
    return conc_lab.sweep(cfg, out)


def speedup(out: Path) -> None:
    result = _sweep(
        {
            "name": "bench-speedup",
            "repeats": 5,
            "warmup": 1,
            "matrix": {
                "workload": [
                    {"workload": "experiments.cpu:sum_squares", "size": [300_000]},
                    {"workload": "experiments.io:sleep", "size": [100]},
                ],
                "backend": ["sequential", "threading", "multiprocessing"],
                "workers": [1, 2],
                "tasks": [8],
            },
            "backend_options": {"multiprocessing": {"start_method": ["fork"]}},
        },
        out,
    )
    s = summarize(conc_lab.load(result.sweep_dir))
    print("\n# 1. speedup over sequential (median of 5 runs, 95% CI), tasks=8")
    for _, r in s[s.workers == 2].iterrows():
        print(
            f"  {r.workload:30s} {r.backend:16s} workers=2  median {r.median_s * 1e3:8.1f} ms  "
            f"speedup {r.speedup:.2f} ({r.speedup_ci_low:.2f}-{r.speedup_ci_high:.2f})"
        )
    seq = s[s.backend == "sequential"]
    for _, r in seq.iterrows():
        print(f"  {r.workload:30s} sequential        median {r.median_s * 1e3:8.1f} ms")


def overhead(out: Path) -> None:
    doc = {
        "name": "bench-overhead",
        "repeats": 1,
        "warmup": 0,
        "matrix": {
            "workload": ["experiments.overhead:noop"],
            "backend": ["sequential"],
            "tasks": [1],
            "size": list(range(1000)),  # 1,000 distinct trials
        },
    }
    t0 = time.perf_counter()
    result = _sweep(doc, out)
    wall = time.perf_counter() - t0
    df = conc_lab.load(result.sweep_dir)
    assert len(df) == 1000 and (df.status == "ok").all()
    work = (df.run_s + df.setup_s).sum()
    print("\n# 2. runner overhead: 1,000 no-op trials, sequential, repeats=1 (Parquet writes included)")
    print(f"  total wall (conc_lab.sweep call, host start-up included): {wall:.3f} s")
    print(
        f"  per trial: {wall / 1000 * 1e3:.3f} ms wall, of which the trial itself {work / 1000 * 1e3:.4f} ms"
    )
    split = result.overhead()
    print(
        f"  conc_lab's own figure (the call's wall less the runs' windows, per run): {split.total_s * 1e3:.3f} ms"
        f" = start-up {split.startup_s * 1e3:.3f} + runner {split.runner_s * 1e3:.3f}"
        f" + trial host {split.host_s * 1e3:.3f} ms"
    )


def expand(out: Path) -> None:
    """Each variant runs in a fresh process so its peak RSS is its own."""
    million = (
        "name: million\nmatrix:\n"
        "  workload: [experiments.overhead:noop]\n"
        "  backend: [threading]\n"
        f"  tasks: {list(range(1, 1001))}\n"
        f"  size: {{sizes}}\n"
        "affinity: none\n"
    )
    variants = {
        "1,000 points": million.format(sizes=[1]),
        "1,000,000 points": million.format(sizes=list(range(1000))),
        # An exclude forces the walk over every combination (no arithmetic shortcut).
        "1,000,000 points + exclude (walked)": million.format(sizes=list(range(1000)))
        + "exclude:\n  - {tasks: 1, size: 0}\n",
    }
    print("\n# 3. conclab expand --count (whole command: start-up, config validation, count)")
    for label, text in variants.items():
        cfg = out / "expand.yaml"
        cfg.write_text(text)
        code = (
            "import resource, subprocess, sys, time; t = time.perf_counter(); "
            "n = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=True).stdout.strip(); "
            "print(n, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        )
        cmd = [
            sys.executable,
            "-c",
            code,
            sys.executable,
            "-m",
            "conc_lab.cli",
            "expand",
            "--count",
            str(cfg),
        ]
        n, wall, peak = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
        print(
            f"  {label:38s} {int(n):>9,} trials  {float(wall):5.2f} s  peak RSS {int(peak) / 1024:6.1f} MiB"
        )


def noise(out: Path) -> None:
    print("\n# 4. noise: CV of 10 repeats of a ~200 ms sequential trial")
    for aff in ("compact", "none"):
        result = _sweep(
            {
                "name": f"bench-noise-{aff}",
                "repeats": 10,
                "warmup": 1,
                "affinity": aff,
                "matrix": {
                    "workload": ["experiments.cpu:sum_squares"],
                    "backend": ["sequential"],
                    "tasks": [1],
                    "size": [3_600_000],
                },
            },
            out,
        )
        runs = conc_lab.load(result.sweep_dir).run_s
        print(
            f"  pinned={aff != 'none'!s:5s}  median {runs.median() * 1e3:7.1f} ms  "
            f"CV {runs.std() / runs.mean() * 100:.2f}%  min {runs.min() * 1e3:.1f}  max {runs.max() * 1e3:.1f}"
        )


#: One no-op sweep in a fresh process under the tree on PYTHONPATH; prints three figures as JSON:
#: the runner's own overhead estimate, the sweep call's wall per trial, and the trial time per trial.
_ONE_SWEEP = """
import json, sys, time
import conc_lab
try:  # imported before the clock starts: pandas takes seconds to import
    from conc_lab.run import runner
    from conc_lab.config.document import parse_config
except ImportError:  # a tree from before the stage folders (#22), e.g. c9b95cd
    from conc_lab import runner
    from conc_lab.config import parse_config
import pandas, pyarrow.dataset  # likewise: a newer tree imports them only when a sweep first needs them
n, out, cfg_path, warmup = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
doc = {"name": "bench-redesign", "repeats": 1, "warmup": warmup, "affinity": "compact",
       "matrix": {"workload": ["experiments.overhead:noop"], "backend": ["sequential"], "tasks": [1],
                  "size": list(range(n))}}
cfg = parse_config(doc, path=cfg_path)
t0 = time.perf_counter()
result = runner.sweep(cfg, out)
wall = time.perf_counter() - t0
df = conc_lab.load(result.sweep_dir)
assert len(df) == n and (df.status == "ok").all()
split = result.overhead() if hasattr(result, "overhead") else None  # trees before #21 print no split
print(json.dumps({"own": result.overhead_per_run_s, "call": wall / n, "work": float((df.run_s + df.setup_s).sum()) / n,
                  "runner": split.runner_s if split else None, "host": split.host_s if split else None}))
"""


def redesign(
    out: Path, old_tree: str = "/tmp/old", rounds: str = "7", trials: str = "300", warmup: str = "0"
) -> None:
    import json
    import os
    import statistics

    trees = {"before (old tree)": str(Path(old_tree).resolve()), "after (this tree)": str(ROOT)}
    for tree in trees.values():
        if not (Path(tree) / "conc_lab" / "__init__.py").exists():
            raise SystemExit(f"{tree}: no conc_lab checkout there (git worktree add {old_tree} 75d9006)")
    figures: dict[str, list[dict]] = {label: [] for label in trees}
    for round_no in range(int(rounds)):
        order = list(trees.items()) if round_no % 2 == 0 else list(trees.items())[::-1]
        for label, tree in order:
            env = dict(os.environ, PYTHONPATH=tree)
            cmd = [
                sys.executable,
                "-c",
                _ONE_SWEEP,
                trials,
                str(out / f"r{round_no}"),
                str(ROOT / "bench.yaml"),
                warmup,
            ]
            # run from the tree itself, so its experiments package is the one imported
            proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=True)
            figures[label].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(
        f"\n# 5. runner overhead per no-op trial, before vs after ({rounds} rounds x {trials} trials, warmup {warmup},"
    )
    print("#    alternating order, a fresh process per sweep; median over rounds, min-max in brackets)")
    for label, runs in figures.items():
        parts = []
        keys = [("own", "its own overhead figure"), ("call", "sweep call per trial")]
        if runs[0].get("runner") is not None:  # the split: the runner's own work, the trial host's
            keys += [("runner", "of which runner"), ("host", "trial host")]
        for key, what in keys:
            values = [r[key] * 1e3 for r in runs]
            parts.append(f"{what} {statistics.median(values):.3f} ms [{min(values):.3f}-{max(values):.3f}]")
        print(f"  {label:18s} " + ";  ".join(parts))


def startup(out: Path, old_tree: str | None = None, rounds: int = 9) -> None:
    """Whole commands, each in a fresh process, interleaved over rounds; with ``old_tree`` (a
    checkout of an earlier commit) the same commands from both trees, as ``python -m conc_lab.cli``
    with each tree on PYTHONPATH, in alternating order within each round."""
    import os
    import shutil
    import statistics

    config = out / "one.yaml"
    config.write_text(
        "name: one\nrepeats: 1\nwarmup: 0\nmatrix:\n  workload: [experiments.overhead:noop]\n"
        "  backend: [sequential]\n  workers: [1]\n  tasks: [1]\n  size: [1]\n"
    )
    conclab = shutil.which("conclab") or sys.exit("bench_core.py startup: needs the conclab command")
    trees = {"": (str(ROOT), [conclab])}
    if old_tree is not None:
        trees = {
            "this tree: ": (str(ROOT), [sys.executable, "-m", "conc_lab.cli"]),
            "old tree:  ": (str(Path(old_tree).resolve()), [sys.executable, "-m", "conc_lab.cli"]),
        }
    args = {
        "conclab --version": ["--version"],
        "conclab sweep one.yaml (1 trial)": ["sweep", str(config), "--out", str(out / "r")],
        "conclab sweep one.yaml -q": ["sweep", str(config), "--out", str(out / "r"), "-q"],
    }
    commands = {
        (tag + label): (tree, prefix + rest)
        for tag, (tree, prefix) in trees.items()
        for label, rest in args.items()
    }
    times: dict[str, list[float]] = {label: [] for label in commands}
    load = os.getloadavg()[0]
    for r in range(rounds):
        order = list(commands) if r % 2 == 0 else list(reversed(commands))  # alternate: no drift favours one
        for label in order:
            tree, cmd = commands[label]
            env = dict(os.environ, PYTHONPATH=tree)
            began = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True, cwd=tree, env=env)
            times[label].append(time.perf_counter() - began)
    print(
        f"\n# 6. whole commands, {rounds} rounds interleaved (load {load:.2f} before, {os.getloadavg()[0]:.2f} after)"
    )
    for label, ts in times.items():
        print(f"  {label:45s} median {statistics.median(ts):.3f} s  ({min(ts):.3f}-{max(ts):.3f})")


def memory(out: Path, sizes: tuple[int, ...] = (1_000, 10_000)) -> None:
    """Peak RSS of the whole ``conclab sweep -q`` for 1,000 and 10,000 no-op trials (repeats 1, no
    warm-up), from GNU time's %M: the runner's memory must stay flat as the trials grow (#21)."""
    import os
    import shutil

    conclab = shutil.which("conclab") or sys.exit("bench_core.py memory: needs the conclab command")
    gnu_time = shutil.which("time") or "/usr/bin/time"
    print(f"\n# 8. peak RSS of the whole command (load {os.getloadavg()[0]:.2f} before)")
    for n in sizes:
        config = out / f"mem{n}.yaml"
        config.write_text(
            f"name: mem{n}\nrepeats: 1\nwarmup: 0\nmatrix:\n  workload: [experiments.overhead:noop]\n"
            f"  backend: [sequential]\n  tasks: [1]\n  size: {list(range(n))}\n"
        )
        began = time.perf_counter()
        proc = subprocess.run(
            [gnu_time, "-f", "%M", conclab, "sweep", str(config), "--out", str(out / "r"), "-q"],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        took = time.perf_counter() - began
        peak_kib = int(proc.stderr.strip().splitlines()[-1])
        print(f"  {n:>6,} no-op trials: peak RSS {peak_kib / 1024:.0f} MiB, {took:.1f} s")
    print(f"  (load {os.getloadavg()[0]:.2f} after)")


def _timed(cmd: list[str], tree: str) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB, the command and the children it waited for) of one command."""
    import os

    env = dict(os.environ, PYTHONPATH=tree)
    began = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - began
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"bench_core.py marginal: {' '.join(cmd)} failed: {proc.stderr.read().decode()[-500:]}")
    proc.returncode = 0  # reaped above; keeps Popen from waiting again
    return took, usage.ru_maxrss


def marginal(out: Path, old_tree: str | None = None, rounds: int = 3, sizes=(1, 1_000, 10_000)) -> None:
    """Issue #21's "done when" figures: whole commands, each tree and size once a round, alternating."""
    import os
    import statistics

    trees = {"this tree": str(ROOT)}
    if old_tree is not None:
        trees["old tree"] = str(Path(old_tree).resolve())
    for n in sizes:
        (out / f"noop{n}.yaml").write_text(
            f"name: noop{n}\nrepeats: 1\nwarmup: 0\nmatrix:\n  workload: [experiments.overhead:noop]\n"
            f"  backend: [sequential]\n  tasks: [1]\n  size: {list(range(n))}\n"
        )
    cli = [sys.executable, "-m", "conc_lab.cli"]
    runs = [(t, n) for t in trees for n in (*sizes, "--version")]
    took: dict[tuple, list] = {key: [] for key in runs}
    load = os.getloadavg()[0]
    for r in range(rounds):
        for tree, n in runs if r % 2 == 0 else runs[::-1]:
            args = ["--version"] if n == "--version" else ["sweep", "-q", str(out / f"noop{n}.yaml")]
            args += [] if n == "--version" else ["--out", str(out / f"r{r}")]
            took[(tree, n)].append(_timed(cli + args, trees[tree]))
    print(
        f"\n# 9. whole commands, {rounds} rounds interleaved, {os.cpu_count()} CPUs, {sys.version.split()[0]}"
        f" (load {load:.2f} before, {os.getloadavg()[0]:.2f} after); medians"
    )
    for tree in trees:
        wall = {n: statistics.median(t for t, _ in took[(tree, n)]) for n in (*sizes, "--version")}
        rss = {n: max(m for _, m in took[(tree, n)]) / 1024 for n in sizes}
        print(
            f"  {tree}: --version {wall['--version']:.3f} s; "
            + "; ".join(f"{n:,} trials {wall[n]:.2f} s (peak RSS {rss[n]:.0f} MiB)" for n in sizes)
        )
        for a, b in zip(sizes, sizes[1:]):
            per = (wall[b] - wall[a]) / (b - a) * 1e3
            print(
                f"    marginal {a:,} -> {b:,} trials: {per:.3f} ms a trial; RSS growth {rss[b] - rss[a]:+.0f} MiB"
            )


FIGURES = {
    "speedup": speedup,
    "overhead": overhead,
    "expand": expand,
    "noise": noise,
    "startup": startup,
    "memory": memory,
    "marginal": marginal,
}

if __name__ == "__main__":
    chosen = sys.argv[1:] or list(FIGURES)
    takes_args = chosen[0] in ("redesign", "startup", "marginal")
    unknown = [a for a in (chosen[:1] if takes_args else chosen) if a not in (*FIGURES, "redesign")]
    if unknown:
        print(__doc__)  # --help, or a figure that does not exist: say which there are
        sys.exit(0 if unknown[0] in ("-h", "--help") else f"bench_core.py: no figure {unknown[0]!r}")
    with tempfile.TemporaryDirectory() as tmp:
        if chosen[0] == "redesign":
            redesign(Path(tmp), *chosen[1:])
        elif chosen[0] == "startup" and chosen[1:]:  # startup OLD_TREE [ROUNDS]
            startup(Path(tmp), chosen[1], *map(int, chosen[2:3]))
        elif chosen[0] == "marginal":  # marginal [OLD_TREE [ROUNDS [SIZES,...]]]
            sizes = tuple(int(n) for n in chosen[3].split(",")) if chosen[3:] else (1, 1_000, 10_000)
            marginal(Path(tmp), *(chosen[1:2] or [None]), *map(int, chosen[2:3]), sizes=sizes)
        else:
            for name in chosen:
                FIGURES[name](Path(tmp))
