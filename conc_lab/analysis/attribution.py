"""Why a backend is not faster: each trial run's worker-time split by cause.

From what every run records (task records with each task's worker, start and end; the
workers' CPU time; ``setup_s``; ``teardown_s`` where measured), a run's *capacity*, its
workers times its wall time (start-up + run + teardown), is split into:

* ``work_s``: time inside tasks on a CPU (the workers' CPU time, at most their busy time);
* ``serialisation_s``: time inside tasks *off* the CPU while the workers together used no
  more than one CPU's worth: the GIL's signature on threads (CPU ≈ wall however many workers
  were busy); and all of it for threads sharing a GIL on CPU-bound work (its sequential loop ran
  on the CPU ``CPU_BOUND`` of the time). It disappears on free-threaded builds and on processes;
* ``others_s``: time inside tasks off the CPU because other processes used the run's cores
  (from the host's ``foreign_cpu`` and ``steal_cpu``, where measured). It is a condition of the
  measurement, not of the backend: never the dominant cause, but named after it. On CPU-bound
  work, off-CPU time that is not the GIL counts here too (preempted: CPU-bound work does not wait);
* ``waiting_s``: the rest of the off-CPU time inside tasks (sleep, I/O, locks; and other
  processes, for runs recorded without the noise columns), on work that is not CPU-bound;
* ``imbalance_s``: workers idle after finishing their last task while another still ran
  (and workers that got no task at all);
* ``dispatch_s``: gaps before a worker's first task, between its tasks, and after the last
  task until the results were in: handing out work and moving results (IPC);
* ``startup_s`` and ``teardown_s``: the pool's start-up and joining, times the workers.

The parts add up to the capacity. Where other processes used at least ``NOT_ATTRIBUTABLE`` of the run's cores, no cause is
vouched for ("not attributable: others used 92% of its cores"): what the run could have had
is unknown (a start-up or teardown that took most of the wall time is named all the same).
Nor for runs shorter than ``TOO_SHORT_TICKS`` ticks of ``CPU_TICK_S``: CPU times (and other
processes' share) advance a scheduler tick at a time, so a run of a few ms reads 0 or a whole tick
of CPU, and its split into work, waiting and the GIL is an artefact ("runs of 4.15 ms are too short
for CPU-time accounting (resolution ~10 ms): no cause named"); a start-up or teardown that took
most of the wall time is named all the same, being measured by the wall clock alone.
Else the *dominant* cause is the largest non-work part when it
holds at least ``DOMINANT_SHARE`` of the capacity (less what other processes took), told as a short phrase such as
"GIL-bound: 2 workers, CPU 1.02× wall", "imbalance: worker 1 idle 31%" or
"start-up: 48 ms of 60 ms"; else "none dominant".
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from conc_lab import schema
from conc_lab.analysis.frames import SEQUENTIAL, join_key
from conc_lab.host import noise
from conc_lab.host.protocol import ASYNCIO, THREADING
from conc_lab.host.units import duration

#: The parts of a run's worker-time, in the order the report stacks them.
PARTS = [
    "work_s",
    "serialisation_s",
    "waiting_s",
    "others_s",
    "imbalance_s",
    "dispatch_s",
    "startup_s",
    "teardown_s",
]
#: Each non-work part's name as a cause.
CAUSES = {
    "serialisation_s": "serialisation",
    "waiting_s": "waiting",
    "imbalance_s": "imbalance",
    "dispatch_s": "dispatch/IPC",
    "startup_s": "start-up",
    "teardown_s": "teardown",
}
#: Share of a run's worker-time a cause must hold to be called dominant.
DOMINANT_SHARE = 0.10
#: Share of the run's cores other processes used past which no cause is named ("not attributable").
NOT_ATTRIBUTABLE = 0.5
#: Serialisation: workers' CPU at most this many walls (one CPU's worth, with slack for the
#: host's own thread) ...
GIL_CPU_MAX = 1.15
#: ... and at least this share of a wall (CPU-bound, not sleeping) while busy in tasks.
GIL_CPU_MIN = 0.4
#: A workload whose sequential loop spent this share of its task time on the CPU is CPU-bound.
CPU_BOUND = 0.9
#: How often CPU times advance: the workers' ``getrusage`` figures (and /proc/stat's, behind other
#: processes' share) move a scheduler tick at a time, 10 ms on the coarsest common Linux kernels
#: (HZ=100; steps of up to 4 ms were measured on a 2-core HZ=250 VM: a 1 ms spin read 0 or 3.8 ms).
#: ``time.get_clock_info("process_time").resolution`` says 1 ns: the unit, not how often it moves.
CPU_TICK_S = 0.010
#: Runs shorter than this many ticks name no cause: each worker's CPU time is off by up to a tick,
#: and at 5 ticks two workers' CPU over wall is still known within ±0.4 cores, enough to tell one
#: core's worth (the GIL, at most ``GIL_CPU_MAX``) from two.
TOO_SHORT_TICKS = 5
ATTRIBUTION_COLUMNS = ["workers_used", "wall_s", "capacity_s", *PARTS, "cause", "why"]


def _flat_records(df: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """Every task record as flat arrays: run position, worker, start, end."""
    run, worker, start, end = [], [], [], []
    for pos, recs in enumerate(df["task_records"].to_numpy(dtype=object)):
        if recs is None or isinstance(recs, float):
            continue
        for rec in recs:
            if rec.get("start_s") is None or rec.get("end_s") is None:
                continue
            run.append(pos)
            worker.append(rec.get("worker") or 0)
            start.append(rec["start_s"])
            end.append(rec["end_s"])
    return (
        np.asarray(run, dtype=np.int64),
        np.asarray(worker, dtype=np.int64),
        np.asarray(start, dtype=np.float64),
        np.asarray(end, dtype=np.float64),
    )


def _per_worker(run: np.ndarray, worker: np.ndarray, start: np.ndarray, end: np.ndarray) -> pd.DataFrame:
    """One row per (run, worker): busy time, first start, last end, and the gaps between its tasks."""
    lanes = pd.DataFrame({"run": run, "worker": worker, "start": start, "end": end, "dur": end - start})
    per = lanes.groupby(["run", "worker"], sort=True).agg(
        busy=("dur", "sum"), first=("start", "min"), last=("end", "max")
    )
    span = per["last"] - per["first"]
    per["busy"] = np.minimum(per["busy"], span)  # overlapping tasks on one worker (asyncio) count once
    per["gaps"] = span - per["busy"]
    return per.reset_index()


def _union(run: np.ndarray, start: np.ndarray, end: np.ndarray, n: int) -> np.ndarray:
    """Per run, the time at least one task was running (the union of its task intervals)."""
    out = np.zeros(n)
    if len(run) == 0:
        return out
    order = np.lexsort((start, run))
    r, s, e = run[order], start[order], end[order]
    reach = pd.Series(e).groupby(r).cummax().to_numpy()  # furthest end so far within the run
    new = np.r_[True, (r[1:] != r[:-1]) | (s[1:] > reach[:-1])]  # a task that starts a new stretch
    stretch = np.cumsum(new) - 1
    first = pd.Series(s).groupby(stretch).min().to_numpy()
    last = pd.Series(e).groupby(stretch).max().to_numpy()
    np.add.at(out, r[new], last - first)
    return out


def _column(df: pd.DataFrame, name: str, default: float = np.nan) -> np.ndarray:
    if name not in df.columns:
        return np.full(len(df), default)
    values = df[name].to_numpy(dtype=np.float64, na_value=np.nan)
    return values if np.isnan(default) else np.where(np.isfinite(values), values, default)


def _foreign(df: pd.DataFrame) -> np.ndarray:
    """Per run, the share of its cores others used beyond what tick counting resolves: the figure
    its noisy flag was decided on (``noise.foreign_beyond_resolution``), so *why* never says "others
    used 40%" of a run the flag called clean (one tick in a 25 ms window reads 40%).

    >>> df = pd.DataFrame({"foreign_cpu": [0.4, 0.9], "run_s": [0.025, 1.0], "cores": [[0], [0]]})
    >>> _foreign(df).round(2).tolist()
    [0.0, 0.88]
    """
    foreign = _column(df, "foreign_cpu", 0.0)
    window = sum(_column(df, c, 0.0) for c in ("setup_s", "run_s", "teardown_s"))
    ncores = (
        df["cores"].str.len().to_numpy(dtype=np.float64, na_value=np.nan) if "cores" in df.columns else 0.0
    )
    ncores = np.where(ncores > 0, ncores, os.cpu_count() or 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        resolved = noise.resolved_share(foreign, window, ncores)
    return np.where(window > 0, resolved, foreign)


def _sums(per: pd.DataFrame, n: int) -> dict[str, np.ndarray]:
    by_run = per.groupby("run")
    idx = by_run.size().index.to_numpy()
    sums = {c: np.zeros(n) for c in ("busy", "first", "gaps", "last", "active", "max_end")}
    for col in ("busy", "first", "gaps", "last"):
        sums[col][idx] = by_run[col].sum().to_numpy()
    sums["active"][idx] = by_run.size().to_numpy()
    sums["max_end"][idx] = by_run["last"].max().to_numpy()
    return sums


def _off_cpu(df: pd.DataFrame, busy: np.ndarray, union: np.ndarray) -> dict[str, np.ndarray]:
    """Time inside tasks off the CPU, split: other processes, serialisation (the GIL), other waiting."""
    run_s = _column(df, "run_s")
    cpu = _column(df, "cpu_user_s") + _column(df, "cpu_sys_s", 0.0)
    # the share of each core left to the run (noise columns, where the host measured them)
    avail = np.clip(1.0 - _foreign(df) - _column(df, "steal_cpu", 0.0), 0.05, 1.0)
    on_cpu = np.where(np.isfinite(cpu), np.minimum(cpu, busy), busy)
    off = busy - on_cpu
    others = np.minimum(off, (1.0 - avail) * busy)
    with np.errstate(divide="ignore", invalid="ignore"):
        # CPU used per stretch of time when any task ran, in cores' worth of what the others left
        cores_used = cpu / (avail * union)
    overlapped = busy > 1.2 * union
    # the GIL's signature: tasks overlapped, yet together they used about one CPU (and were not asleep)
    gil = overlapped & (cores_used <= GIL_CPU_MAX) & (cores_used >= GIL_CPU_MIN)
    # Work whose plain loop runs on the CPU throughout never waits for sleep, I/O or locks: its
    # threads off the CPU wait for the GIL, and anything else off the CPU was taken off it
    # (preempted), whatever this run's noise figures caught. So the same trial reads the same.
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = _cpu_bound(df, on_cpu / busy)
    gil |= bound & overlapped & _one_gil(df)
    preempted = bound & ~gil
    rest = off - others
    return {
        "work_s": on_cpu,
        "serialisation_s": np.where(gil, rest, 0.0),
        "waiting_s": np.where(gil | preempted, 0.0, rest),
        "others_s": others + np.where(preempted, rest, 0.0),
        "_cpu_walls": cpu / run_s,
        "_others_share": 1.0 - avail,
    }


def _cpu_bound(df: pd.DataFrame, on_cpu_share: np.ndarray) -> np.ndarray:
    """Per run, whether a sequential run of its workload (same workload, size, tasks, python) spent
    at least ``CPU_BOUND`` of its task time on the CPU: the quietest plain loop shows what the work is.

    Example::

        >>> df = pd.DataFrame({"workload": "w", "backend": ["sequential", "sequential", "threading"]})
        >>> _cpu_bound(df, np.array([0.97, 0.73, 0.5])).tolist()
        [True, True, True]
    """
    if "backend" not in df.columns or "workload" not in df.columns:
        return np.zeros(len(df), dtype=bool)
    key = join_key(df, [k for k in ("workload", "size", "tasks", "python") if k in df.columns])
    seq = (df["backend"].astype(object) == SEQUENTIAL).to_numpy() & np.isfinite(on_cpu_share)
    best = pd.Series(on_cpu_share[seq]).groupby(key.to_numpy()[seq]).max()
    return key.map(best).to_numpy(dtype=np.float64, na_value=np.nan) >= CPU_BOUND


def _one_gil(df: pd.DataFrame) -> np.ndarray:
    """Per run, whether its workers shared one GIL: threads (or asyncio's) of a GIL-enabled build."""
    backend = df["backend"].astype(object) if "backend" in df.columns else pd.Series("", index=df.index)
    gil = df["gil_enabled"].astype("boolean").fillna(True) if "gil_enabled" in df.columns else True
    return (backend.isin([THREADING, ASYNCIO]) & gil).to_numpy(dtype=bool)


def _run_parts(df: pd.DataFrame, per: pd.DataFrame, union: np.ndarray) -> pd.DataFrame:
    """Per run: the worker-time parts (see the module doc), from the per-worker rows."""
    sums = _sums(per, len(df))
    # asyncio's workers are tasks in flight on its one loop, not executors that could sit idle
    backend = df["backend"].astype(object).to_numpy() if "backend" in df.columns else np.full(len(df), "")
    executors = np.where(backend == ASYNCIO, sums["active"], _column(df, "workers"))
    most = np.maximum(executors, sums["active"])
    run_s = _column(df, "run_s")
    max_end = sums["max_end"]
    # idle after finishing (to the last task's end), and the whole of it for workers that got no task
    imbalance = (sums["active"] * max_end - sums["last"]) + (most - sums["active"]) * max_end
    collect = most * np.clip(run_s - max_end, 0, None)
    setup, teardown = _column(df, "setup_s", 0.0), _column(df, "teardown_s", 0.0)
    wall = setup + run_s + teardown
    parts = {"workers_used": most, "wall_s": wall, "capacity_s": most * wall}
    parts.update(_off_cpu(df, sums["busy"], union))
    parts.update(
        imbalance_s=imbalance,
        dispatch_s=sums["first"] + sums["gaps"] + collect,
        startup_s=most * setup,
        teardown_s=most * teardown,
        _max_end=max_end,
        _run_s=run_s,
    )
    return pd.DataFrame(parts, index=df.index)


def _taskless(per: pd.DataFrame, parts: pd.DataFrame) -> np.ndarray:
    """Per run, the lowest-numbered of its workers that got no task at all; -1 where each got one."""
    out = np.full(len(parts), -1)
    most = parts["workers_used"].to_numpy()
    got = per.groupby("run")["worker"].agg(set)
    for pos in np.flatnonzero(np.nan_to_num(most) > np.bincount(per["run"], minlength=len(parts))):
        out[pos] = min(set(range(int(most[pos]))) - got.get(pos, set()), default=-1)
    return out


def _idlest(per: pd.DataFrame, parts: pd.DataFrame, run_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per run: the worker idle longest after its last task, and that idle time's share of the run
    (NaN for a worker that got no task at all: idle throughout, the first such one named)."""
    n = len(parts)
    worker, share = np.full(n, -1), np.full(n, np.nan)
    if len(per):
        max_end = parts["_max_end"].to_numpy()[per["run"].to_numpy()]
        idle = max_end - per["last"].to_numpy()
        order = np.lexsort((-idle, per["run"].to_numpy()))  # per run, the idlest first
        first = order[np.r_[True, per["run"].to_numpy()[order][1:] != per["run"].to_numpy()[order][:-1]]]
        runs = per["run"].to_numpy()[first]
        worker[runs] = per["worker"].to_numpy()[first]
        with np.errstate(divide="ignore", invalid="ignore"):
            share[runs] = idle[first] / run_s[runs]
        taskless = _taskless(per, parts)
        worker, share = np.where(taskless >= 0, taskless, worker), np.where(taskless >= 0, np.nan, share)
    return worker, share


def _phrase(cause: str, row: dict) -> str:
    """The dominant cause as a short phrase with the number that shows it; other processes' share after it."""
    if cause == "noisy":
        return f"not attributable: others used {row['_others_share']:.0%} of its cores"
    if cause == "too short":
        return (
            f"runs of {duration(row['_run_s'])} are too short for CPU-time accounting "
            f"(resolution ~{duration(CPU_TICK_S)}): no cause named"
        )
    tail = (
        f" (others used {row['_others_share']:.0%} of its cores)"
        # others' share over a window (start-up + run + teardown) a few ticks long is whole ticks too
        # (0% or 100% of a core): not said
        if row["_others_share"] >= DOMINANT_SHARE and not row["wall_s"] < TOO_SHORT_TICKS * CPU_TICK_S
        else ""
    )
    return _cause_phrase(cause, row) + tail


def _cause_phrase(cause: str, row: dict) -> str:
    if cause == "serialisation":
        return f"GIL-bound: {int(row['workers_used'])} workers, CPU {row['_cpu_walls']:.2f}× wall"
    if cause == "imbalance":
        if not np.isfinite(row["_idle_share"]):  # a worker that got no task (see ``_idlest``)
            return f"imbalance: worker {int(row['_idlest'])} got no task"
        return f"imbalance: worker {int(row['_idlest'])} idle {row['_idle_share']:.0%}"
    if cause == "start-up":
        return f"start-up: {duration(row['startup_s'] / row['workers_used'])} of {duration(row['wall_s'])}"
    if cause == "teardown":
        return f"teardown: {duration(row['teardown_s'] / row['workers_used'])} of {duration(row['wall_s'])}"
    if cause == "none":
        busy = (row["work_s"] + row["serialisation_s"] + row["waiting_s"] + row["others_s"]) / row[
            "capacity_s"
        ]
        return f"none dominant: workers busy {busy:.0%}"
    share = row[next(k for k, v in CAUSES.items() if v == cause)] / (row["capacity_s"] - row["others_s"])
    if cause == "waiting":
        return f"waiting off-CPU (sleep, I/O, locks): {share:.0%} of worker time"
    return f"dispatch/IPC: {share:.0%} of worker time between tasks"


def attribute(df: pd.DataFrame) -> pd.DataFrame:
    """Each ``ok`` run's worker-time split by cause, with the dominant cause and its phrase.

    One row per row of ``df`` (same index): ``workers_used``, ``wall_s`` (start-up + run +
    teardown), ``capacity_s`` (workers x wall), the parts in ``PARTS`` (seconds of worker-time,
    adding up to the capacity), ``cause`` (the dominant part's name, or ``none``) and ``why``
    (the phrase). Runs that are not ``ok`` or have no task records get NaN parts and no phrase.

    Example::

        >>> recs = [{"worker": 0, "start_s": 0.0, "end_s": 1.0}, {"worker": 1, "start_s": 0.0, "end_s": 0.5}]
        >>> df = pd.DataFrame({"backend": ["multiprocessing"], "workers": [2], "status": ["ok"], "run_s": [1.0],
        ...                    "setup_s": [0.0], "cpu_user_s": [1.5], "cpu_sys_s": [0.0], "task_records": [recs]})
        >>> a = attribute(df).loc[0]
        >>> print(a.imbalance_s, a.work_s, a.capacity_s, "|", a.why)
        0.5 1.5 2.0 | imbalance: worker 1 idle 50%
    """
    out = pd.DataFrame(np.nan, index=df.index, columns=ATTRIBUTION_COLUMNS).astype(
        {"cause": object, "why": object}
    )
    if "task_records" not in df.columns or len(df) == 0:
        return out
    status = df["status"].astype(object).to_numpy() if "status" in df.columns else np.full(len(df), schema.OK)
    run, worker, start, end = _flat_records(df)
    per = _per_worker(run, worker, start, end)
    parts = _run_parts(df, per, _union(run, start, end, len(df)))
    parts["_idlest"], parts["_idle_share"] = _idlest(per, parts, _column(df, "run_s"))
    usable = (
        (status == schema.OK) & np.isin(np.arange(len(df)), run) & np.isfinite(parts["wall_s"].to_numpy())
    )
    cause = _causes(parts)
    records = parts.to_dict(orient="records")
    why = [_phrase(c, r) if ok else None for c, r, ok in zip(cause, records, usable, strict=True)]
    parts = parts.assign(cause=np.where(usable, cause, None), why=why)
    out.loc[usable] = parts.loc[usable, ATTRIBUTION_COLUMNS].to_numpy()
    return out.astype({c: np.float64 for c in ATTRIBUTION_COLUMNS if c not in ("cause", "why")})


def _causes(parts: pd.DataFrame) -> np.ndarray:
    """Per run, its dominant cause's name; "noisy" or "too short" where none can be vouched for."""
    # shares of what the run could have used: the time other processes took is not the backend's
    usable_s = (parts["capacity_s"] - parts["others_s"]).to_numpy()
    shares = parts[list(CAUSES)].to_numpy() / usable_s[:, None]
    top = np.nanargmax(np.where(np.isfinite(shares), shares, -1), axis=1)
    dominant = np.take_along_axis(shares, top[:, None], axis=1)[:, 0] >= DOMINANT_SHARE
    cause = np.where(dominant, np.array(list(CAUSES.values()), dtype=object)[top], "none")
    # starting or joining the workers took most of the wall time: the wall clock says so, not in doubt
    fixed = ((parts["startup_s"] + parts["teardown_s"]) / parts["capacity_s"]).to_numpy()
    sure = np.isin(cause, ["start-up", "teardown"]) & (fixed >= 0.5)
    # else, others had most of the cores: what the run could have had is unknown, so no cause is vouched for
    noisy = (parts["_others_share"].to_numpy() >= NOT_ATTRIBUTABLE) & ~sure
    cause = np.where(noisy, "noisy", cause)
    # a run of a few ticks: its CPU times (others' share too) are whole ticks, its split an artefact
    short = (parts["_run_s"].to_numpy() < TOO_SHORT_TICKS * CPU_TICK_S) & ~sure
    return np.where(short, "too short", cause)


def median_rows(att: pd.DataFrame, df: pd.DataFrame, codes: np.ndarray, ngroups: int) -> np.ndarray:
    """Per group of runs, the position of its median attributed run (by ``run_s``, the lower
    middle one: the run the report's timeline shows); -1 where no run could be attributed.

    Example::

        >>> att = pd.DataFrame({"why": ["a", None, "b", "c"]})
        >>> median_rows(att, pd.DataFrame({"run_s": [3.0, 1.0, 1.0, 2.0]}), np.array([0, 0, 0, 1]), 3).tolist()
        [2, 3, -1]
    """
    out = np.full(ngroups, -1, dtype=np.int64)
    rows = np.flatnonzero(att["why"].notna().to_numpy())
    if len(rows) == 0:
        return out
    run_s = df["run_s"].to_numpy(dtype=np.float64, na_value=np.nan)[rows]
    order = rows[np.lexsort((run_s, codes[rows]))]
    n = np.bincount(codes[order], minlength=ngroups)
    start = np.concatenate(([0], np.cumsum(n)[:-1]))
    got = n > 0
    out[got] = order[start[got] + (n[got] - 1) // 2]
    return out


def median_run_why(df: pd.DataFrame, codes: np.ndarray, ngroups: int) -> np.ndarray:
    """Per group of runs, the phrase of its median run (see ``median_rows``); None where there is none.

    Example::

        >>> recs = [{"worker": 0, "start_s": 0.0, "end_s": 1.0}, {"worker": 1, "start_s": 0.0, "end_s": 0.5}]
        >>> df = pd.DataFrame({"workers": 2, "status": "ok", "run_s": [1.0, 1.2], "setup_s": 0.0,
        ...                    "cpu_user_s": 1.5, "task_records": [recs, recs]})
        >>> median_run_why(df, np.array([0, 0]), 1).tolist()
        ['imbalance: worker 1 idle 50%']
    """
    why = np.full(ngroups, None, dtype=object)
    if "task_records" not in df.columns or len(df) == 0:
        return why
    att = attribute(df)
    pick = median_rows(att, df, codes, ngroups)
    why[pick >= 0] = att["why"].to_numpy(dtype=object)[pick[pick >= 0]]
    return why
