"""An independent check of conc_lab's end-to-end speedups (#15 item 5), standard library only.

No conc_lab runner, no trial host: plain ``threading.Thread`` and ``multiprocessing.Process``
(fork, spawn), each timed from the first ``start()`` to the last ``join()``, against the same
work in a plain loop. Two workers, each given half of:

* ``sum_squares``: sum of i*i for i < 10^7 (pure Python, holds the GIL);
* ``sha256``: 64 MiB hashed (32 MiB per worker, C that releases the GIL);
* ``sleep``: 8 sleeps of 50 ms (4 per worker).

Rounds are interleaved (every cell once, in a fresh seeded order, then again), each side's
speedup is paired as conc_lab's own is (the median of per-round ratios), and a round in which other processes
used >= 0.15 CPUs (``/proc/stat`` busy time minus this script's own, children included) is
discarded and said so. In the same run conc_lab sweeps the same halves (``tasks: 2``,
``size`` the half) in blocks between the harness's rounds, and its end-to-end speedup is
taken from ``setup_s + run_s`` (``+ teardown_s`` where that column exists and is filled,
which the output says). Each cell prints both speedups and whether they agree within 5%.

What both sides measure is the same span: from starting the first worker to the last one
joined, results back, each worker pinned as conc_lab's ``affinity: compact`` pins it
(``--unpinned`` to leave the harness's free). The sweeps run in a child process, so this
one stays a small stdlib process whose forks cost what the trial host's do: with conc_lab
and pandas imported here (115 MiB instead of 13) forking two empty workers took 35-49 ms
instead of 10-19 (load ~9), enough to move the sleep/fork cell by 10%. What stays
different by design: conc_lab's workers report ready before the first task is handed out
(its ``setup_s``), the harness's start working at once; conc_lab's results travel back
through a pipe (small here: an int, a hex digest); a spawned worker imports this script
here (its top level imports only what the work needs), conc_lab's worker loop (~13 ms of
imports, ``python -X importtime``) and the workload there.

    python benchmarks/bench_harness.py                 # ~3 min on 2 cores; Markdown table on stdout
    python benchmarks/bench_harness.py --blocks 2 --rounds 2   # quicker, noisier
    python benchmarks/bench_harness.py --speed-state   # also #20 item 3: slow-state runs redone, or normalized

``--speed-state`` answers #20 item 3 (which of redoing a run measured in a slow state, or
normalizing it by the speed canary, agrees better with this harness): it prints, for conc_lab's
runs as measured, with slow-state runs left out (as a redo replaces them) and with every run
normalized by its canary, how many cells lie within 5% of the harness.
"""

from __future__ import annotations

# What the work and its timing need. A spawned worker imports this file again (as __mp_main__):
# there it imports only these, as a lean program's workers would, not the harness's own tools
# (statistics, subprocess, tempfile, ...: 15-20 ms a worker, which made spawn read 7-11% slow here).
import hashlib
import multiprocessing
import os
import threading
import time

if __name__ == "__main__":
    import argparse
    import json
    import random
    import statistics
    import subprocess
    import sys
    import tempfile
    import textwrap
    from pathlib import Path

    ROOT = Path(__file__).resolve().parent.parent
N_SQUARES = 10**7
SHA_MIB = 64
SLEEPS, SLEEP_S = 8, 0.05
WORKERS = 2
MAX_FOREIGN_CPUS = 0.15
TOLERANCE = 0.05

# --- the work, written here (not imported from experiments/) so the check is independent ----


def squares(lo: int, hi: int) -> int:
    total = 0
    for i in range(lo, hi):
        total += i * i
    return total


_BLOCK: list = []


def _mib() -> bytes:
    if not _BLOCK:
        import random

        rng = random.Random(20240521)
        _BLOCK.append(rng.getrandbits(8 << 20).to_bytes(1 << 20, "little"))
    return _BLOCK[0]


def sha(part: int, mib: int) -> str:
    digest = hashlib.sha256(part.to_bytes(8, "little"))
    block = _mib()
    for _ in range(mib):
        digest.update(block)
    return digest.hexdigest()


def sleeps(n: int) -> int:
    for _ in range(n):
        time.sleep(SLEEP_S)
    return n


def half(cell: str, part: int):
    """Worker ``part``'s half of ``cell``'s work (the sequential loop runs both halves)."""
    if cell == "sum_squares":
        step = N_SQUARES // WORKERS
        return squares(part * step, (part + 1) * step)
    if cell == "sha256":
        return sha(part, SHA_MIB // WORKERS)
    return sleeps(SLEEPS // WORKERS)


#: Where each worker runs, as conc_lab's ``affinity: compact`` puts them: worker i on the i-th core this
#: process may use, the plain loop on the first. Unpinned (``--unpinned``), a worker can move off a core
#: that another process took, which conc_lab's pinned workers cannot: under load the two then differ
#: by design, not by error.
CORES: list = []


def pinned_half(cell: str, part: int, cores: list):
    """``half``, pinned first (in a thread: only that thread) to worker ``part``'s core.

    ``cores`` is passed, not read from ``CORES``: a spawned worker imports this module afresh.
    """
    if cores:
        os.sched_setaffinity(0, {cores[part % len(cores)]})
    return half(cell, part)


CELLS = ("sum_squares", "sha256", "sleep")
VARIANTS = ("sequential", "threading", "fork", "spawn")

# --- timing --------------------------------------------------------------------------------


def run_once(cell: str, variant: str) -> float:
    """Seconds from the first start to the last join (or for the plain loop)."""
    if variant == "sequential":
        previous = os.sched_getaffinity(0) if CORES else None
        t0 = time.perf_counter()
        for part in range(WORKERS):
            pinned_half(cell, 0, CORES) if part == 0 else half(cell, part)
        elapsed = time.perf_counter() - t0
        if previous is not None:
            os.sched_setaffinity(0, previous)
        return elapsed
    if variant == "threading":
        workers = [threading.Thread(target=pinned_half, args=(cell, p, CORES)) for p in range(WORKERS)]
    else:
        ctx = multiprocessing.get_context(variant)
        workers = [ctx.Process(target=pinned_half, args=(cell, p, CORES)) for p in range(WORKERS)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - t0
    if variant != "threading" and any(w.exitcode != 0 for w in workers):
        raise SystemExit(f"{variant} worker failed on {cell}")
    return elapsed


def busy_s() -> float:
    """Seconds of CPU the whole machine spent busy (user+nice+system+irq+softirq+steal), /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7]) / os.sysconf("SC_CLK_TCK")


def own_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def harness_round(samples: dict, discarded: list, round_no: int, max_foreign: float) -> None:
    """Every cell on every variant once; the round is kept only if the machine stayed quiet."""
    wall0, busy0, own0 = time.perf_counter(), busy_s(), own_s()
    order = [(c, v) for c in CELLS for v in VARIANTS]
    random.Random(round_no).shuffle(order)  # in a fresh order each round, as conc_lab's rounds are
    got = {(c, v): run_once(c, v) for c, v in order}
    wall = time.perf_counter() - wall0
    foreign = max(0.0, (busy_s() - busy0) - (own_s() - own0)) / wall
    if foreign >= max_foreign:
        discarded.append((round_no, foreign))
        return
    for key, value in got.items():
        samples.setdefault(key, {})[round_no] = value


# --- conc_lab on the same halves -------------------------------------------------------------


def config(repeats: int) -> dict:
    """The cells as a conc_lab matrix (JSON is YAML): two tasks of a half each; sleep as 8 tasks of 50 ms."""
    ms = int(SLEEP_S * 1000)
    sleep = "experiments.io:sleep"
    return {
        "name": "harness",
        "description": "The independent harness's cells, run by conc_lab (benchmarks/bench_harness.py).",
        "repeats": repeats,
        "warmup": 1,
        "matrix": {
            "workload": [
                {"workload": "experiments.cpu:sum_squares", "size": [N_SQUARES // WORKERS]},
                {"workload": "experiments.cpu:sha256_blocks", "size": [SHA_MIB // WORKERS]},
            ],
            "backend": ["sequential", "threading", "multiprocessing"],
            "workers": [WORKERS],
            "tasks": [WORKERS],
        },
        "include": [
            {"workload": sleep, "backend": "sequential", "workers": 1, "tasks": SLEEPS, "size": ms},
            {"workload": sleep, "backend": "threading", "workers": WORKERS, "tasks": SLEEPS, "size": ms},
        ]
        + [
            {"workload": sleep, "backend": "multiprocessing", "start_method": sm, "workers": WORKERS}
            | {"tasks": SLEEPS, "size": ms}
            for sm in ("fork", "spawn")
        ],
        "backend_options": {"multiprocessing": {"start_method": ["fork", "spawn"]}},
    }


_CELL_OF = {
    "experiments.cpu:sum_squares": "sum_squares",
    "experiments.cpu:sha256_blocks": "sha256",
    "experiments.io:sleep": "sleep",
}


#: conc_lab runs in a child process: importing it (pandas, pyarrow) here would make this process
#: ~9x bigger, and every fork the harness timed afterwards would pay for that (module doc).
_SWEEP = """
import sys, conc_lab
result = conc_lab.sweep(sys.argv[1], out=sys.argv[2])
print(result.sweep_dir)
"""


def conclab_block(out: Path, repeats: int) -> str:
    """One conc_lab sweep of the cells, in a child process; returns its sweep folder."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "harness.yaml"
    path.write_text(json.dumps(config(repeats), indent=1))
    # workloads import from the repository, as `conclab sweep` run there does
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT)] + [os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, "-c", _SWEEP, str(path), str(out / "results")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"conc_lab's sweep failed:\n{done.stderr[-3000:]}")
    return done.stdout.strip().splitlines()[-1]


def conclab_rows(sweep_dir: str):
    """The rows of one conc_lab sweep, checked: a failed or wrong run is no figure."""
    sys.path.insert(0, str(ROOT))
    import conc_lab

    df = conc_lab.load(sweep_dir)
    bad = df[(df["status"] != "ok") | (df["correct"] == False)]  # noqa: E712 - null: not checkable
    if len(bad):
        raise SystemExit(
            f"conc_lab: {len(bad)} runs failed or were wrong:\n{bad[['workload', 'backend', 'error']]}"
        )
    return df


#: A run whose speed canary (the slower of its before and after readings) is this much above the
#: fastest canary of its sweep was measured in a slow state (#20 item 3, ``--speed-state``).
SLOW_STATE = 0.25


def speed_state(df, how: str):
    """``df``'s runs as #20 item 3 would take them: ``as measured``; ``slow state redone`` (runs in a
    slow state left out, as a redo replaces them); ``normalized by the canary`` (each run's time
    times its sweep's fastest canary over its own)."""
    if how == "as measured":
        return df
    canary = df[["canary_before_s", "canary_after_s"]].max(axis=1)
    fastest = df.groupby("sweep_id", observed=True)["canary_before_s"].transform("min")
    ratio = (canary / fastest).fillna(1.0)
    if how == "slow state redone":
        return df[ratio <= 1 + SLOW_STATE]
    scaled = {c: df[c] / ratio for c in ("setup_s", "run_s", "teardown_s") if c in df.columns}
    return df.assign(**scaled)


SPEED_STATES = ("as measured", "slow state redone", "normalized by the canary")


def conclab_samples(frames, how: str = "as measured") -> tuple[dict, str]:
    import pandas as pd

    df = speed_state(pd.concat(frames, ignore_index=True), how)
    parts = ["setup_s", "run_s"]
    if "teardown_s" in df.columns and df["teardown_s"].notna().all():
        parts.append("teardown_s")
    df = df.assign(
        e2e=df[parts].fillna(0).sum(axis=1),
        variant=[
            sm if b == "multiprocessing" else b
            for b, sm in zip(df["backend"], df["start_method"].astype(object))
        ],
        cell=df["workload"].map(_CELL_OF),
    )
    samples = {
        (c, v): dict(zip(zip(g["sweep_id"], g["repeat"]), g["e2e"]))
        for (c, v), g in df.groupby(["cell", "variant"], observed=True)
    }
    return samples, " + ".join(parts)


# --- report --------------------------------------------------------------------------------


def speedups(samples: dict) -> dict:
    """(speedup, median time) per cell: each side's speedup paired as conc_lab's is, the median of
    per-round ratios (the plain loop and the model in the same harness round, or the same conc_lab
    sweep and repeat), so a speed state that holds for a round moves both sides of its ratio alike.
    ``samples``: (cell, variant) -> {round: seconds}."""
    out = {}
    for cell in CELLS:
        seq = samples[(cell, "sequential")]
        for v in VARIANTS:
            mine = samples[(cell, v)]
            ratios = [seq[r] / mine[r] for r in mine if r in seq]
            out[(cell, v)] = (statistics.median(ratios), statistics.median(mine.values()))
    return out


def speed_state_line(h: dict, frames) -> str:
    """#20 item 3: how many cells agree within 5% with the harness, per way of taking slow-state runs."""
    said = []
    for how in SPEED_STATES:
        samples, _ = conclab_samples(frames, how)
        if any(not v for v in samples.values()) or len(samples) < len(CELLS) * len(VARIANTS):
            said.append(f"{how}: a cell lost every run")
            continue
        c = speedups(samples)
        hits = sum(abs(c[k][0] / h[k][0] - 1) <= TOLERANCE for k in h if k[1] != "sequential")
        kept = sum(len(v) for v in samples.values())
        said.append(f"{how}: {hits} of {len(CELLS) * (len(VARIANTS) - 1)} cells within 5% ({kept} runs)")
    return (
        "\nSpeed state (#20 item 3; slow: canary > "
        + f"{1 + SLOW_STATE:.2f}× its sweep's fastest): "
        + "; ".join(said)
    )


def table(h: dict, c: dict, n_h: int, n_c: int, parts: str) -> str:
    lines = [
        f"| work | model | harness: start→last join | harness speedup | conc_lab: {parts} | conc_lab speedup | gap | within 5% |",
        "|---|---|---:|---:|---:|---:|---:|:---:|",
    ]
    for cell in CELLS:
        for v in VARIANTS[1:]:
            hs, ht = h[(cell, v)]
            cs, ct = c[(cell, v)]
            gap = cs / hs - 1
            lines.append(
                f"| {cell} | {v} | {ht * 1e3:.0f} ms | {hs:.2f}× | {ct * 1e3:.0f} ms | {cs:.2f}× | "
                f"{gap:+.1%} | {'yes' if abs(gap) <= TOLERANCE else '**no**'} |"
            )
    lines.append("")
    lines.append(
        f"Medians of {n_h} kept harness rounds and {n_c} conc_lab runs per cell; sequential (the plain loop) "
        "is each side's own baseline, each speedup the median of its per-round ratios."
    )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=3, help="harness rounds + conc_lab sweep, alternated")
    ap.add_argument("--rounds", type=int, default=3, help="harness rounds (and conc_lab repeats) per block")
    ap.add_argument(
        "--max-foreign-cpus",
        type=float,
        default=MAX_FOREIGN_CPUS,
        help="discard a harness round in which other processes used this many CPUs (default %(default)s)",
    )
    ap.add_argument(
        "--unpinned", action="store_true", help="do not pin the harness's workers (conc_lab pins)"
    )
    ap.add_argument(
        "--speed-state",
        action="store_true",
        help="also: how many cells agree within 5%% with runs in a slow state redone, or normalized by the canary",
    )
    args = ap.parse_args()
    if not args.unpinned and hasattr(os, "sched_setaffinity"):
        CORES[:] = sorted(os.sched_getaffinity(0))
    h_samples: dict = {}
    discarded: list = []
    sweeps = []
    with tempfile.TemporaryDirectory(prefix="conclab-harness-") as tmp:
        for block in range(args.blocks):
            for r in range(args.rounds):
                harness_round(h_samples, discarded, block * args.rounds + r, args.max_foreign_cpus)
            sweeps.append(conclab_block(Path(tmp) / f"b{block}", args.rounds))
            print(f"block {block + 1}/{args.blocks} done", file=sys.stderr)
        if not h_samples:
            raise SystemExit(f"every harness round was discarded as noisy: {discarded}")
        frames = [conclab_rows(d) for d in sweeps]
        c_samples, parts = conclab_samples(frames)
    n_h = len(h_samples[(CELLS[0], VARIANTS[0])])
    n_c = min(len(v) for v in c_samples.values())
    print(table(speedups(h_samples), speedups(c_samples), n_h, n_c, parts))
    if args.speed_state:
        print(speed_state_line(speedups(h_samples), frames))
    if discarded:
        shown = ", ".join(f"round {r} ({cpus:.2f} CPUs)" for r, cpus in discarded)
        print(f"\nDiscarded as noisy (other processes used >= {args.max_foreign_cpus} CPUs): {shown}.")
    if "teardown_s" not in parts:
        print(
            textwrap.fill(
                "conc_lab's end-to-end time here is setup_s + run_s: no teardown_s column (or not filled) "
                "in this conc_lab, so joining the workers is not in it, while the harness's time is.",
                100,
            )
        )
    load = os.getloadavg()
    print(f"\nload average during/after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
