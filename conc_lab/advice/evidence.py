"""What the runs themselves say beside the summary's wall-clock ratios, which a loaded machine bends.

Under load (another process on a core, or five) a plain loop and its threads are slowed by
different amounts from one run to the next, and a pure-Python loop's threads once read 1.2×
"faster" than the loop they cannot beat. Two measures load moves far less:

* **CPU time over wall time**, each threading run against the plain-loop run paired with it in its
  round (``analysis.pairing``): how many cores the threads kept busy, relative to what the loop
  got at that moment. Threads that hold the GIL never keep more than one core busy, whatever the
  wall clock says (``threads_capacity``); such threads are not a candidate on CPU-bound work.
* **arm against arm, run against run**: in each round one arm's end-to-end time over another's
  (``paired_slower``). The load a round saw slows both alike, so two arms whose intervals against
  the plain loop overlap may still be told apart, and a cheap arm measurably slower than the best
  is not picked for being "as fast".
* **answers**: an arm whose answers differ from the plain loop's is never the choice, however fast
  (``wrong_answers``); where the plain loop's own answers differ from run to run, nothing can be
  checked, and the verdict says so.
* **the share of the runs the verdict hangs on that others crowded** (the plain loop's and the
  chosen arm's; ``host.noise.verdict``: "others used ..."): where that is half of them or more, an
  unsettled verdict is "can't tell", not a guess (``crowded_share``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from conc_lab.advice.arms import ArmResult, arm_label
from conc_lab.advice.verdict import UNEQUAL
from conc_lab.analysis.attribution import CPU_TICK_S, TOO_SHORT_TICKS
from conc_lab.analysis.pairing import noisy_runs, pair_runs
from conc_lab.analysis.stats import SortedGroups, ok_runs
from conc_lab.host.protocol import SEQUENTIAL, THREADING
from conc_lab.schema import FAILURES

#: A task shorter than this is never called unequal: at microseconds a task's time is the timer's and
#: the first call's (a 3× "unequal" task 6 of a function that doubles its argument).
MIN_UNEQUAL_S = 0.001
#: Rounds with both arms before ``paired_slower`` tells them apart.
MIN_PAIRED_ROUNDS = 3
#: Threads that kept at most this many times the cores the paired plain-loop run kept busy are
#: GIL-bound: one thread on the CPU at a time. Measured on this 2-core VM: threads with 2 workers on
#: pure Python 1.01×, processes 1.6-1.9×.
GIL_CAPACITY = 1.3


def _cpu_per_wall(df: pd.DataFrame) -> np.ndarray:
    """Per run, CPU seconds (user + system, every thread of the run) per second of its wall time."""
    if "cpu_user_s" not in df.columns or "run_s" not in df.columns:
        return np.full(len(df), np.nan)
    cpu = df["cpu_user_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    if "cpu_sys_s" in df.columns:
        cpu = cpu + np.nan_to_num(df["cpu_sys_s"].to_numpy(dtype=np.float64, na_value=np.nan))
    with np.errstate(divide="ignore", invalid="ignore"):
        return cpu / df["run_s"].to_numpy(dtype=np.float64, na_value=np.nan)


def threads_capacity(df: pd.DataFrame) -> float | None:
    """How many times the cores the plain loop kept busy the threads kept busy, at their most
    workers: the median over threading runs of (CPU/wall) over their paired loop run's; None
    where there are no such pairs, or none of runs long enough for CPU times to tell
    (``attribution.TOO_SHORT_TICKS`` ticks).

    Example::

        >>> at = pd.to_datetime([0, 1, 2, 3], unit="s", utc=True)
        >>> df = pd.DataFrame({"workload": "w", "tasks": 2, "size": 1, "repeat": [0, 0, 1, 1],
        ...     "backend": ["sequential", "threading"] * 2, "workers": [1, 2] * 2, "status": "ok",
        ...     "run_s": [1.0, 1.0, 1.0, 1.0], "cpu_user_s": [0.5, 0.55, 0.9, 0.95], "started_at": at})
        >>> round(threads_capacity(df), 2)
        1.08
        >>> print(threads_capacity(df.assign(run_s=0.003)))  # 3 ms runs: CPU times a tick apart
        None
    """
    df = df.reset_index(drop=True)
    if len(df) == 0 or "backend" not in df.columns:
        return None
    threads = (df["backend"].astype(object) == THREADING).to_numpy() & ok_runs(df)
    if "python" in df.columns:  # this Python's threads: another interpreter's may be free-threaded
        threads &= df["python"].isna().to_numpy()
    if not threads.any():
        return None
    workers = df["workers"].to_numpy(dtype=np.float64)
    most = threads & (workers == workers[threads].max())
    if workers[threads].max() < 2:
        return None
    pairs = pair_runs(df)
    # CPU times move a scheduler tick (up to 4 ms here) at a time: a few-ms run reads 0 or 4x its
    # wall time, so only runs long enough for the ticks to even out, on both sides, say anything.
    run = df["run_s"].to_numpy(dtype=np.float64, na_value=np.nan)
    long_enough = run >= TOO_SHORT_TICKS * CPU_TICK_S
    rows = np.flatnonzero(most & (pairs >= 0) & long_enough)
    rows = rows[long_enough[pairs[rows]]]
    per_wall = _cpu_per_wall(df)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = per_wall[rows] / per_wall[pairs[rows]]
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    return float(np.median(ratio)) if len(ratio) else None


def gil_bound(df: pd.DataFrame, waits: bool) -> bool:
    """Whether threads cannot speed this work up: CPU-bound work (not ``waits``) whose threads kept
    no more cores busy than the plain loop (``threads_capacity`` at most ``GIL_CAPACITY``)."""
    if waits:
        return False
    capacity = threads_capacity(df)
    return capacity is not None and capacity <= GIL_CAPACITY


def _crowded_rows(df: pd.DataFrame, rows: np.ndarray) -> float:
    """The share of ``rows`` (ok runs) flagged noisy because others took their cores."""
    if not rows.any():
        return 0.0
    others = df["noise_note"].astype(object).fillna("").astype(str).str.contains("others used").to_numpy()
    return float((noisy_runs(df) & others & rows).sum() / rows.sum())


def crowded_share(df: pd.DataFrame) -> Callable[[ArmResult | None], float]:
    """``crowded(choice)``: the larger share, of the plain loop's ok runs and of ``choice``'s (at its
    worker count), flagged noisy because other processes took their cores (``noise_note`` "others
    used ..."); 0 where none is known. Those are the runs the verdict hangs on: a busy machine
    slows two processes more than the one-core loop, and the verdict then reads 1.0x for a
    pure-Python loop. A speed canary that moved is left out, as are the other arms' runs: a spawn
    pool's half-second start-up is long enough for foreign ticks to show, a 2 ms run is not, and
    the answer for work that small (no start-up pays) does not hang on the load.

    >>> df = pd.DataFrame({"status": "ok", "run_s": 1.0, "backend": ["sequential"] * 3 + ["threading"],
    ...     "workers": [1, 1, 1, 2], "noisy": [True, True, False, True],
    ...     "noise_note": ["others used 60% of its cores", "speed canary moved +40%", None, "others used 90%"]})
    >>> crowded = crowded_share(df)
    >>> crowded(None)
    0.3333333333333333
    >>> crowded(ArmResult("threading", "threading", 2, 1.0, 0.9, 1.1, 1.0, 0.0, "", "", 1))
    1.0
    """
    if len(df) == 0 or "noise_note" not in df.columns or "backend" not in df.columns:
        return lambda choice: 0.0
    df = df.reset_index(drop=True)
    ok = ok_runs(df)
    loop = ok & (df["backend"].astype(object) == SEQUENTIAL).to_numpy()
    if "python" in df.columns:
        loop &= df["python"].isna().to_numpy()
    labels = np.array([arm_label(r) for r in df.to_dict("records")], dtype=object)
    workers = df["workers"].to_numpy() if "workers" in df.columns else np.ones(len(df))
    base = _crowded_rows(df, loop)

    def crowded(choice: ArmResult | None) -> float:
        if choice is None:
            return base
        return max(base, _crowded_rows(df, ok & (labels == choice.arm) & (workers == choice.workers)))

    return crowded


def _e2e(df: pd.DataFrame) -> np.ndarray:
    """Per run, start-up + run + teardown: what the verdict's end-to-end speedups compare."""
    total = np.zeros(len(df))
    for col in ("setup_s", "run_s", "teardown_s"):
        if col in df.columns:
            total = total + np.nan_to_num(df[col].to_numpy(dtype=np.float64, na_value=np.nan))
    return total


def paired_slower(df: pd.DataFrame) -> Callable[[ArmResult, ArmResult, float], bool]:
    """``slower(a, b, factor)``: whether arm ``a`` took over ``factor`` times arm ``b``'s end-to-end
    time, judged run against run: per round (its median run of each arm at its worker count), the
    exact 95% interval of the median ratio lies above ``factor``. False with fewer than
    ``MIN_PAIRED_ROUNDS`` rounds holding both.
    """
    ok = ok_runs(df) if len(df) else np.zeros(0, bool)
    runs = df[ok].reset_index(drop=True)
    if len(runs) == 0 or "repeat" not in runs.columns:
        return lambda a, b, factor: False
    rounds = runs["repeat"].astype(object)
    if "round" in runs.columns:
        rounds = runs["round"].astype(object).where(runs["round"].notna(), rounds)
    sweep = runs["sweep_id"].astype(object) if "sweep_id" in runs.columns else pd.Series("", index=runs.index)
    keyed = pd.DataFrame(
        {
            "arm": [arm_label(r) for r in runs.to_dict("records")],
            "workers": runs["workers"].to_numpy(),
            "key": list(zip(sweep, rounds)),
            "e2e": _e2e(runs),
        }
    )

    def per_round(arm: ArmResult) -> pd.Series:
        mine = keyed[(keyed["arm"] == arm.arm) & (keyed["workers"] == arm.workers)]
        return mine.groupby("key")["e2e"].median()

    def slower(a: ArmResult, b: ArmResult, factor: float) -> bool:
        ta, tb = per_round(a), per_round(b)
        both = ta.index.intersection(tb.index)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = (ta[both] / tb[both]).to_numpy(dtype=np.float64)
        ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
        if len(ratio) < MIN_PAIRED_ROUNDS:
            return False
        low, _ = SortedGroups(np.zeros(len(ratio), np.int64), ratio, 1).median_ci(0.95)
        return bool(low[0] > factor)

    return slower


def unequal_tasks(df: pd.DataFrame, ratio: float = UNEQUAL) -> str | None:
    """``unequal tasks: task 0 takes 16× the median task`` from the plain loop's task records, or None.

    Each task's time is its median over the sequential runs, so one slow moment is not an unequal task;
    it is told whatever the parallel runs' attribution could vouch for on a busy machine.

    >>> recs = [{"task": t, "start_s": 0.0, "end_s": 16.0 if t == 0 else 1.0} for t in range(8)]
    >>> unequal_tasks(pd.DataFrame({"backend": ["sequential"], "status": ["ok"], "task_records": [recs]}))
    'unequal tasks: task 0 takes 16× the median task'
    >>> tiny = [dict(r, end_s=r["end_s"] * 1e-5) for r in recs]  # 160 µs against 10 µs: the timer's
    >>> unequal_tasks(pd.DataFrame({"backend": ["sequential"], "status": ["ok"], "task_records": [tiny]}))
    """
    if "task_records" not in df.columns or len(df) == 0:
        return None
    rows = df[(df["backend"].astype(object) == SEQUENTIAL) & (df["status"].astype(object) == "ok")]
    times = [
        (int(r["task"]), float(r["end_s"]) - float(r["start_s"]))
        for recs in rows["task_records"]
        if recs is not None and not isinstance(recs, float)
        for r in recs
        if r.get("task") is not None and r.get("start_s") is not None and r.get("end_s") is not None
    ]
    if not times:
        return None
    per_task = pd.DataFrame(times, columns=["task", "s"]).groupby("task")["s"].median()
    typical = float(per_task.median())
    if len(per_task) < 2 or typical <= 0 or per_task.max() < max(ratio * typical, MIN_UNEQUAL_S):
        return None
    return (
        f"unequal tasks: task {int(per_task.idxmax())} takes {per_task.max() / typical:.0f}× the median task"
    )


def wrong_answers(df: pd.DataFrame, python_labels: dict | None = None) -> tuple[dict[str, str], str | None]:
    """The arms whose answers differ from the plain loop's ({arm: the note that says so}), and a note when
    the plain loop's own answers differ from run to run (random numbers, state kept between calls):
    then no arm can be checked, and none is left out for it.

    >>> df = pd.DataFrame({"backend": ["sequential", "threading", "threading"], "start_method": None,
    ...     "python": None, "status": "ok", "correct": [True, False, True]})
    >>> wrong_answers(df)
    ({'threading': "wrong answers: threading: they differ from the plain loop's in 1 of 2 runs; never the choice"}, None)
    """
    if "correct" not in df.columns or len(df) == 0:
        return {}, None
    runs = df[(df["status"].astype(object) == "ok") & df["correct"].notna()]
    checked = runs["correct"].astype(bool)
    base = (runs["backend"].astype(object) == SEQUENTIAL).to_numpy()
    if (~checked[base]).any():
        return {}, (
            "note: the plain loop's own answers differ from run to run (random numbers? state kept "
            "between calls?), so no backend's answers can be checked: this verdict is about speed alone"
        )
    others = runs[~base]
    if len(others) == 0:
        return {}, None
    wrong: dict[str, str] = {}
    for label, group in others.groupby(others.apply(lambda r: arm_label(r, python_labels), axis=1)):
        bad = int((~group["correct"].astype(bool)).sum())
        if bad:
            wrong[label] = (
                f"wrong answers: {label}: they differ from the plain loop's in {bad} of {len(group)} runs; never the choice"
            )
    return wrong, None


def failed_runs(df: pd.DataFrame, python_labels: dict | None = None) -> tuple[str, ...]:
    """A line per arm with failed runs, with the last line of its last error: an arm whose every run
    failed has no speedup, so it was in no line of the verdict (threading for a function that needs
    the main thread was simply missing).

    >>> df = pd.DataFrame({"backend": ["sequential", "threading", "threading"], "start_method": None,
    ...     "python": None, "status": ["ok", "failed", "failed"], "error": [None, "x", "Tb\\nKeyError: 3\\n"]})
    >>> failed_runs(df), failed_runs(df.assign(status=["ok", "ok", "timeout"], error=None))
    (('failed: threading: 2 of 2 runs (KeyError: 3)',), ('failed: threading: 1 of 2 runs (timeout)',))
    """
    if "status" not in df.columns or len(df) == 0:
        return ()
    labels = df.apply(lambda r: arm_label(r, python_labels), axis=1)
    failed = df["status"].astype(object).isin(FAILURES).to_numpy()
    out = []
    for label, group in df[failed].groupby(labels[failed], sort=False):
        last = group.iloc[-1]
        text = last.get("error") if isinstance(last.get("error"), str) else ""
        why = [x.strip() for x in text.splitlines() if x.strip()] or [
            str(last["status"])
        ]  # a timeout: no error
        out.append(f"failed: {label}: {len(group)} of {int((labels == label).sum())} runs ({why[-1]})")
    return tuple(out)


def blocked_loop(ref: str, is_async: bool, waits: bool, dont_bother: bool) -> str | None:
    """The note for an ``async def`` whose calls mostly wait, yet asyncio gains nothing: a call that
    does not await blocks the event loop, and its coroutines take turns (a ``time.sleep`` in an
    ``async def`` read as "no backend beats the plain loop", beside "waiting off-CPU: 99%").

    >>> blocked_loop("m:f", True, True, True)[:60]
    'note: m:f waits through most of a call, yet asyncio gains no'
    >>> blocked_loop("m:f", True, False, True) is None
    True
    """
    if not (is_async and waits and dont_bother):
        return None
    return (
        f"note: {ref} waits through most of a call, yet asyncio gains nothing: a call in it that is "
        "not awaited (time.sleep, requests, a blocking read) blocks its event loop, so its coroutines "
        "take turns; await asyncio.sleep or an async client instead"
    )
