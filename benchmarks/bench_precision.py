"""Precision (#20): the issue's "done when" figures, from real sweeps.

1. ``configs/smoke.yaml`` swept ``--sweeps`` times back to back; in each sweep:
   every ``cpu:sum_squares`` threading speedup lies within 0.85–1.15 or is flagged on its own
   row (a note of doubt: ``DOUBT``); ``io:sleep`` threading with 2 workers is within 1.90–2.05; sum_squares
   multiprocessing/fork with 2 workers is ≥ 1.5. Printed: each sweep's figures, in how many
   sweeps each holds, and the sweeps' wall time (the smoke's goal: under ~40 s).
2. A/A: ``compare`` of each two back-to-back sweeps, calling no change under the A/A floor that
   ``conclab selftest`` measures first (``--no-selftest``: none): in how many pairs no trial is
   called changed.
3. The median 95% interval width of the speedups (as a share of the speedup) of a
   ``configs/cpu.yaml``-shaped sweep (``--cpu-repeats``, 5 as the issue asks), before (the
   unpaired estimate: the same rows without start times, which cannot be paired) and after (paired),
   with the spread of the per-pair ratios behind it and how many pairs the goal would need.
4. With ``--competitor``: a busy loop pinned to core 0 burns one core throughout; then no
   sum_squares threading row may show an interval that excludes 1.0 unless it is flagged.

The machine's load is printed before and after: figures from a busy machine are labelled so.

    python benchmarks/bench_precision.py                     # 10 smoke sweeps + the cpu.yaml sweep
    python benchmarks/bench_precision.py --sweeps 21 --skip-cpu   # 20 A/A pairs
    python benchmarks/bench_precision.py --sweeps 10 --competitor --skip-cpu
    python benchmarks/bench_precision.py --sweeps 0 --cpu-precision 0.05   # 5. the cpu sweep, then with precision:

5. With ``--cpu-precision X``: the cpu.yaml-shaped sweep again with ``precision: {target: X,
   max_repeats: --cpu-max-repeats}``: how many speedups came within ±X, the median width, the
   pairs they took, and the wall time beside the plain sweep's.
6. With ``--smoke-precision X``: the smoke once as ``conclab sweep configs/smoke.yaml --precision X``
   runs it, with the same figures.

    python benchmarks/bench_precision.py --sweeps 0 --no-selftest --skip-cpu --smoke-precision 0.1
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _common import ROOT

SUM = "experiments.cpu:sum_squares"
SLEEP = "experiments.io:sleep"
#: The notes that flag a row's number as doubtful ("flagged on its own row"); "unpaired" and
#: "within A/A floor" say how it was measured or what it means, not that it is in doubt.
DOUBT = {"unstable", "baseline unstable", "noisy", "baseline noisy", "failures", "incorrect", "no runs"}
#: The smoke sweep's wall-time goal (#20 item 4: "the smoke stays under ~40 s").
SMOKE_GOAL_S = 40.0


def _flagged(notes: pd.Series) -> pd.Series:
    """Per row, whether its notes flag its number as doubtful (``DOUBT``)."""
    return notes.astype(str).map(lambda text: bool(DOUBT & {n.strip() for n in text.split(",")}))


def _sweep(config, out: Path, walls: list[float] | None = None) -> pd.DataFrame:
    import conc_lab
    from conc_lab import events

    result = conc_lab.sweep(config, out=str(out), on_event=events.ignore)
    if result.wrong:
        raise SystemExit(f"{result.sweep_dir}: {result.wrong} runs gave a wrong answer: no figures")
    failed = f", {result.failed} FAILED (their rows hold no figure)" if result.failed else ""
    noisy = f", {result.noisy} noisy" if result.noisy else ""
    print(
        f"  sweep {result.sweep_dir.name}: {result.recorded} runs in {result.wall_s:.1f} s{noisy}{failed}",
        file=sys.stderr,
    )
    if walls is not None:
        walls.append(result.wall_s)
    return conc_lab.load(str(result.sweep_dir))


def _rows(s: pd.DataFrame, workload: str, backend: str, workers: int | None = None, sm: str | None = None):
    pick = (s["workload"] == workload) & (s["backend"] == backend)
    if workers is not None:
        pick &= s["workers"] == workers
    if sm is not None:
        pick &= s["start_method"].astype(object) == sm
    return s[pick]


def smoke_checks(s: pd.DataFrame, competitor: bool) -> dict[str, bool | str]:
    """The three (or, under load, the one) done-when checks of one smoke summary."""
    thr = _rows(s, SUM, "threading")
    flagged = _flagged(thr["notes"])
    inside = thr["speedup"].between(0.85, 1.15)
    sleep2 = _rows(s, SLEEP, "threading", 2)
    fork2 = _rows(s, SUM, "multiprocessing", 2, "fork")
    out: dict[str, bool | str] = {
        "sum threading in 0.85–1.15 or flagged": bool((inside | flagged).all()),
        # a row that is missing (a failed trial) holds nothing
        "sleep threading 2 in 1.90–2.05": len(sleep2) > 0
        and bool(sleep2["speedup"].between(1.90, 2.05).all()),
        "sum fork 2 ≥ 1.5": len(fork2) > 0 and bool((fork2["speedup"] >= 1.5).all()),
    }
    if competitor:
        excludes = (thr["speedup_ci_low"] > 1) | (thr["speedup_ci_high"] < 1)
        out = {"sum threading: interval excludes 1 only if flagged": bool((~excludes | flagged).all())}
    shown = [
        f"{r.workers}w {r.speedup:.2f} ({r.speedup_ci_low:.2f}–{r.speedup_ci_high:.2f}) {r.notes}"
        for r in thr.itertuples()
    ]
    out["_detail"] = (
        f"threading {'; '.join(shown)} | sleep/2 {', '.join(f'{x:.3f}' for x in sleep2['speedup'])}"
        f" | fork/2 {', '.join(f'{x:.2f}' for x in fork2['speedup'])}"
    )
    return out


def aa_pairs(frames: list[pd.DataFrame], floor: float) -> list[int]:
    """Per two back-to-back sweeps, how many trials compare calls changed."""
    from conc_lab.analysis.compare import compare

    called = []
    for a, b in zip(frames, frames[1:]):
        result = compare(a, b, min_effect=floor)
        called.append(int(result["change"].isin(["faster", "slower"]).sum()))
    return called


def interval_widths(df: pd.DataFrame) -> tuple[float, float]:
    """Median relative 95% interval width of the non-sequential speedups: (unpaired, paired)."""
    from conc_lab.analysis.summary import summarize

    widths = []
    for frame in (df.drop(columns=["started_at"]), df):  # without start times nothing pairs
        s = summarize(frame)
        s = s[s["backend"] != "sequential"]
        widths.append(float(np.nanmedian((s["speedup_ci_high"] - s["speedup_ci_low"]) / s["speedup"])))
    return widths[0], widths[1]


def pairs_needed(df: pd.DataFrame, goal: float = 0.10, tries: int = 400) -> str:
    """Why the widths are what they are: the spread of the per-pair ratios (sd of their logs, median
    over the non-sequential trials), and how many pairs the exact interval of the median needs to be
    ``goal`` wide at that spread (simulated: lognormal ratios, the summary's own interval)."""
    from conc_lab.analysis.pairing import pair_runs
    from conc_lab.analysis.stats import SortedGroups

    df = df.reset_index(drop=True)
    pairs = pair_runs(df)
    has = pairs >= 0
    run = df["run_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    logs = pd.Series(np.log(run[pairs[has]] / run[has]), index=df.index[has])
    keys = ["workload", "backend", "start_method", "workers"]
    sd = float(logs.groupby([df.loc[has, k].astype(object) for k in keys], dropna=False).std().median())
    rng = np.random.default_rng(0)
    widths = {}
    for n in (5, 10, 20, 30, 40):
        x = np.exp(rng.normal(0.0, sd, size=(tries, n)))
        low, high = SortedGroups(np.repeat(np.arange(tries), n), x.ravel(), tries).median_ci(0.95)
        widths[n] = float(np.median(high - low))
    enough = next((n for n, w in widths.items() if w <= goal), None)
    shown = ", ".join(f"{n} pairs {100 * w:.0f}%" for n, w in widths.items())
    return (
        f"per-pair ratios spread by {100 * sd:.1f}% (sd of log ratio, median over trials); at that spread the "
        f"interval's width is {shown}: the goal needs {enough or 'more than 40'} pairs"
    )


def cpu_with_precision(args, out: Path) -> str:
    """The cpu.yaml-shaped sweep with ``precision: {target, max_repeats}`` (and ``noise: {redo: 2}``, as
    the default with precision:): how wide its speedups came out, how many rounds they took, and its wall time."""
    from conc_lab.config.document import load_config
    from conc_lab.config.model import Precision

    cfg = load_config(args.cpu_config)
    cfg = dataclasses.replace(
        cfg,
        repeats=args.cpu_repeats,
        precision=Precision(args.cpu_precision, args.cpu_max_repeats),
        noise=dataclasses.replace(cfg.noise, redo=2),
    )
    return with_precision(cfg, out)


def smoke_with_precision(args, out: Path) -> str:
    """The smoke as ``conclab sweep configs/smoke.yaml --precision X`` runs it."""
    from conc_lab.config.document import load_config, override

    return with_precision(override(load_config(args.smoke), precision=args.smoke_precision), out)


def with_precision(cfg, out: Path) -> str:
    """Sweep ``cfg`` (which has a ``precision``): how many speedups came within its target, how wide
    they came out, how many rounds they took, and the sweep's wall time."""
    from conc_lab.analysis.precision import half_widths
    from conc_lab.analysis.summary import summarize

    walls: list[float] = []
    df = _sweep(cfg, out, walls)
    s = summarize(df)
    s = s[s["backend"] != "sequential"]
    target = cfg.precision.target
    within = int((half_widths(s) <= target).sum())
    widths = (s["speedup_ci_high"] - s["speedup_ci_low"]) / s["speedup"]
    return (
        f"{cfg.name} with precision: {{target: {target}, max_repeats: {cfg.precision.max_repeats}}} "
        f"(repeats {cfg.repeats} at least): {within} of {len(s)} speedups within "
        f"±{100 * target:.0f}%, median width {100 * float(np.nanmedian(widths)):.1f}% of the "
        f"speedup; pairs per speedup median {int(np.median(s['n']))}, most {int(s['n'].max())}; "
        f"{len(df)} runs in {walls[0]:.0f} s"
    )


def _selftest(out: Path) -> str:
    """``conclab selftest`` under ``out``: the floor ``compare`` then calls no change under."""
    import conc_lab
    from conc_lab.analysis.selftest import FLOOR_FIELD, aa_spread
    from conc_lab.run.selftest import record_floor, run_arms

    arms = run_arms(out)
    spread = aa_spread(conc_lab.load(arms.sweep_dir))
    record_floor(arms.sweep_dir, FLOOR_FIELD, spread.floor)
    return f"A/A self-test: {spread.line()} ({spread.pairs} pairs)"


def _competitor() -> int:
    code = "import os\nos.sched_setaffinity(0, {0})\nwhile True:\n    pass\n"
    return subprocess.Popen([sys.executable, "-c", code], start_new_session=True).pid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweeps", type=int, default=10, help="back-to-back smoke sweeps (A/A pairs: one fewer)")
    ap.add_argument("--smoke", default=str(ROOT / "configs" / "smoke.yaml"))
    ap.add_argument("--cpu-config", default=str(ROOT / "configs" / "cpu.yaml"))
    ap.add_argument("--cpu-repeats", type=int, default=5)
    ap.add_argument("--skip-cpu", action="store_true", help="leave out the cpu.yaml interval widths")
    ap.add_argument(
        "--cpu-precision", type=float, default=None, help="also sweep cpu.yaml with precision: {target: X}"
    )
    ap.add_argument("--cpu-max-repeats", type=int, default=30)
    ap.add_argument(
        "--smoke-precision", type=float, default=None, help="also sweep the smoke with --precision X, once"
    )
    ap.add_argument("--competitor", action="store_true", help="burn core 0 throughout (the under-load check)")
    ap.add_argument("--out", default=None, help="results root (default: a temporary folder)")
    ap.add_argument(
        "--no-selftest", action="store_true", help="no A/A self-test first (compare then uses none)"
    )
    args = ap.parse_args()

    from conc_lab.analysis.selftest import machine_floor
    from conc_lab.analysis.summary import summarize
    from conc_lab.config.document import load_config

    out = Path(args.out or tempfile.mkdtemp(prefix="bench_precision-"))
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} CPUs", flush=True)
    rival = _competitor() if args.competitor else None
    try:
        if not args.no_selftest:
            print(_selftest(out), flush=True)
        frames, holds, walls = [], {}, []
        for i in range(args.sweeps):
            df = _sweep(args.smoke, out, walls)
            frames.append(df)
            checks = smoke_checks(summarize(df), args.competitor)
            detail = checks.pop("_detail")
            for name, ok in checks.items():
                holds[name] = holds.get(name, 0) + bool(ok)
            print(f"sweep {i + 1}: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in checks.items()))
            print(f"  {detail}")
        for name, n in holds.items():
            print(f"{name}: {n} of {args.sweeps} sweeps (goal: {args.sweeps} of {args.sweeps})")
        if walls:
            print(
                f"smoke sweep wall time: median {np.median(walls):.1f} s, slowest {max(walls):.1f} s "
                f"(goal: under ~{SMOKE_GOAL_S:.0f} s)"
            )
        if len(frames) > 1:
            floor = machine_floor(out) or 0.0
            called = aa_pairs(frames, floor)
            quiet = sum(c == 0 for c in called)
            print(
                f"A/A compare of back-to-back sweeps (floor ±{100 * floor:.1f}%): no trial called changed in "
                f"{quiet} of {len(called)} pairs (called per pair: {called}; goal: 19 of 20, --sweeps 21)"
            )
        else:
            print("A/A compare: needs at least 2 sweeps")
        if not args.skip_cpu:
            cfg = dataclasses.replace(load_config(args.cpu_config), repeats=args.cpu_repeats)
            cpu = _sweep(cfg, out)
            before, after = interval_widths(cpu)
            print(pairs_needed(cpu))
            print(
                f"median 95% interval width of the speedups ({Path(args.cpu_config).name}, repeats "
                f"{args.cpu_repeats}): before (unpaired) {100 * before:.1f}%, after (paired) {100 * after:.1f}%"
                f" of the speedup (goal: ≤ 10%, ±5%, on a quiet machine: {'yes' if after <= 0.10 else 'NO'})"
            )
        if args.cpu_precision:
            print(cpu_with_precision(args, out))
        if args.smoke_precision:
            print(smoke_with_precision(args, out))
    finally:
        if rival is not None:
            os.kill(rival, signal.SIGKILL)
    print(f"load after: {os.getloadavg()[0]:.2f} (1 min); results under {out}")


if __name__ == "__main__":
    main()
