"""The driver of a sweep: plan, dispatch, record, and Ctrl-C, into one ``SweepResult``.

The pipeline, one stage per module: ``config`` (YAML -> Config) -> ``plan`` (trials, run
order, shard, what a resume still needs) -> ``dispatch`` (local trial hosts, or
``cluster`` nodes; both through ``executor``) -> ``store`` (a row per measured run,
journalled as it finishes). This module wires them: it writes each row as it comes,
tells progress as ``events``, keeps a trial that hung or cannot run from running again,
and saves what ran when interrupted (``sweep(..., resume=True)`` runs the rest).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conc_lab import events, schema
from conc_lab.config.checks import workload_search_path
from conc_lab.config.document import load_config
from conc_lab.config.model import Config
from conc_lab.events import EventHandler
from conc_lab.host import affinity
from conc_lab.machine import doctor, environment
from conc_lab.plan import runs as plan
from conc_lab.plan.matrix import Trial, check_size
from conc_lab.plan.runs import Plan, Run
from conc_lab.run.auto_sizes import calibrate_trials, shared_sizes
from conc_lab.run.dispatch import Dispatch, LocalDispatch
from conc_lab.run.executor import ExecutorSettings, RunResult, TrialExecutor, unstorable
from conc_lab.run.progress import ProgressLines
from conc_lab.run.rounds import AddedRounds
from conc_lab.store.layout import new_sweep_id, preflight
from conc_lab.store.manifest import Manifest, SweepState
from conc_lab.store.writer import SweepWriter


@dataclass(frozen=True)
class Overhead:
    """What each run cost beyond its own measured window (setup + run + teardown), in seconds per run.

    ``startup_s``: all that is not the run loop (the interpreter and its imports where the command's
    whole time is known, the config, the plan, starting and closing trial hosts), shared out over the
    runs; ``runner_s``: the runner's own work per run (the row, its check, the journal, progress);
    ``host_s``: the trial host around each run (its fresh process, the guards, the pipes).
    """

    startup_s: float
    runner_s: float
    host_s: float

    @property
    def total_s(self) -> float:
        return self.startup_s + self.runner_s + self.host_s


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did. ``ok`` is true when every recorded run succeeded with a correct answer.

    >>> r = SweepResult(Path("results/x/1"), "1", planned=2, recorded=2, failed=0, wrong=0,
    ...                 skipped=0, interrupted=False, wall_s=1.2, measured_s=0.9, loop_s=1.0,
    ...                 inside_s=0.8, executed=2)
    >>> r.ok, round(r.overhead_per_run_s, 3)
    (True, 0.2)
    >>> split = r.overhead(whole_s=1.4)  # the command's whole time: its start-up counts too
    >>> [round(x, 3) for x in (split.startup_s, split.runner_s, split.host_s, split.total_s)]
    [0.2, 0.05, 0.05, 0.3]
    """

    sweep_dir: Path
    sweep_id: str
    planned: int  # measured runs the plan holds (warm-ups not counted)
    recorded: int  # rows written by this invocation
    failed: int  # status failed or timeout
    wrong: int  # ok, but the answer differs from sequential
    skipped: int
    interrupted: bool
    wall_s: float  # the whole sweep, from the call to its return: calibration and Ray start-up included
    measured_s: float  # time the trial hosts spent running trials (setup + run), warm-ups included
    ray_start_s: float = 0.0  # starting or joining Ray (or connecting to the cluster), part of wall_s
    redone: int = 0  # noisy runs that were run again (rows kept with status redone)
    noisy: int = 0  # recorded runs that are still noisy (after their redos, if any)
    loop_s: float | None = None  # running and recording the runs (no start-up, no teardown); None: wall_s
    # warm-up runs that failed, hung or were wrong, and that no recorded row carries (--fail-fast
    # stopping at one): a broken workload usually fails first in the warm-up round
    warmup_failed: int = 0
    inside_s: float = 0.0  # the runs' own windows (setup + run + teardown) within measured_s
    hosts_start_s: float = 0.0  # starting trial hosts, within loop_s: told as start-up
    executed: int = 0  # runs a trial host ran: measured, warm-up and redone ones
    # Ctrl-C or SIGTERM (a SLURM job's time limit) came once every run was stored: complete all the same
    stopped_late: bool = False

    @property
    def ok(self) -> bool:
        return not (self.failed or self.wrong or self.warmup_failed or self.interrupted)

    @property
    def overhead_per_run_s(self) -> float:
        """What each run cost beyond its measured window: the call's wall time less the runs' own
        windows (and Ray's start-up, told apart), per run the hosts ran."""
        return self.overhead().total_s

    def overhead(self, whole_s: float | None = None) -> Overhead:
        """Where ``overhead_per_run_s`` goes; ``whole_s``: the command's whole time (else the call's)."""
        runs = max(self.executed or self.recorded, 1)
        loop = self.wall_s if self.loop_s is None else self.loop_s
        whole = self.wall_s if whole_s is None else max(whole_s, self.wall_s)
        return Overhead(
            startup_s=max(whole - loop - self.ray_start_s + self.hosts_start_s, 0.0) / runs,
            runner_s=max(loop - self.measured_s - self.hosts_start_s, 0.0) / runs,
            host_s=max(self.measured_s - self.inside_s, 0.0) / runs,
        )


@dataclass(frozen=True)
class _Prepared:
    """Everything decided before the first run: the plan, where it goes, the manifest."""

    plan: Plan
    sweep_dir: Path
    sweep_id: str
    manifest: Manifest
    search_path: list[str]
    findings: list
    settings: ExecutorSettings  # how each run executes, the same on this machine and on every node


def sweep(
    config: Config | str | os.PathLike,
    out: str | os.PathLike = "results",
    *,
    resume: bool = False,
    fail_fast: bool = False,
    on_event: EventHandler | None = None,
    shard: str | tuple[int, int] | None = None,
    cluster: str | None = None,
    ray_address: str | None = None,
) -> SweepResult:
    """Run every trial of a matrix and store one row per measured run under ``out/<name>/<sweep_id>``.

    ``on_event(event)`` is told each ``conc_lab.events`` event (without one, ``run.progress``
    prints plain progress lines to stderr; pass ``events.ignore`` for silence): ``Planned``, ``RunFinished``
    (every run, warm-ups included), ``Warned``, ``Calibrating`` (each step of ``size: auto``),
    ``Calibrated``, ``RayStarted``. Ctrl-C stops after saving what ran; the result says
    ``interrupted`` and ``sweep(..., resume=True)`` runs what is missing.

    ``shard="3/10"`` runs only the third of ten deterministic slices of the trials (see
    ``plan.shard_trials``; ``store.merge`` joins the shards). ``cluster=ADDRESS`` runs the
    trials on the nodes of that Ray cluster, one at a time per node (``cluster.ClusterDispatch``);
    ``NodeJoined`` / ``NodeLost`` events then tell nodes joining and lost. ``ray_address`` is
    the Ray runtime ``ray`` trials join (else the config's ``ray.address``, ``RAY_ADDRESS``, or
    one started here); a ``RayStarted`` event tells which. Without Ray installed, ray trials
    are recorded as skipped, with the reason.

    >>> result = sweep("configs/smoke.yaml", out="/tmp/results")  # doctest: +SKIP
    >>> result.recorded, result.ok  # doctest: +SKIP
    (24, True)
    """
    began = time.perf_counter()
    emit = on_event or ProgressLines()  # from Python: plain lines, so a notebook sees it move
    if not isinstance(config, Config):
        config = load_config(config)
    auto = isinstance(shard, str) and shard.strip().lower() == "auto"
    shard = plan.parse_shard(shard) if isinstance(shard, str) else shard
    check_size(config, shards=shard[1] if shard else 1)  # what cannot finish: refused before any write
    plan.check_split(config, out, shard, auto)
    if not resume:  # a resume of a merged shard says it has nothing to run
        plan.check_not_merged(config, out, shard)
    preflight(out, config.name)
    if cluster is not None:  # before planning, calibrating or naming a sweep folder
        _check_cluster(cluster)
    prepared = _prepare(config, out, resume, shard, cluster, emit)
    dispatch = _dispatch(config, prepared, cluster, ray_address)
    unavailable, interrupted = _open(dispatch, prepared.plan.trials, emit)
    # Told once the dispatch is open: a cluster or Ray that fails to start leaves no folder to name.
    emit(
        events.Planned(
            prepared.plan.total, prepared.plan.measured, str(prepared.sweep_dir), len(prepared.plan.trials)
        )
    )
    _warn_before_running(config, prepared.findings, cluster, ray_address, emit)
    writer = SweepWriter(prepared.sweep_dir, prepared.manifest)
    book = _Book(unavailable)
    rounds = _added_rounds(prepared, book, emit, cluster)
    loop_began = time.perf_counter()
    ending = _drive(prepared.plan, dispatch, writer, book, fail_fast, emit, interrupted, rounds)
    return _result(prepared, book, dispatch, ending, began, loop_began)


def _check_cluster(cluster: str) -> None:
    """``ClusterError`` for a cluster that cannot be joined: no token file where one is needed, or
    nothing listening at the address."""
    from conc_lab.run.cluster import ClusterError, missing_token, unreachable

    why = missing_token(cluster)  # before Ray is imported: it would write a token of its own
    if why is not None:
        raise ClusterError(why)
    why = unreachable(cluster)
    if why is not None:
        raise ClusterError(f"--cluster {cluster}: {why}")


def _result(
    prepared: _Prepared, book: _Book, dispatch: Dispatch, ending: tuple[bool, bool], began: float, loop: float
) -> SweepResult:
    ended = time.perf_counter()
    return SweepResult(
        sweep_dir=prepared.sweep_dir,
        sweep_id=prepared.sweep_id,
        planned=prepared.plan.measured,
        recorded=book.recorded,
        failed=book.failed,
        wrong=book.wrong,
        skipped=book.skipped,
        redone=book.redone,
        noisy=book.noisy,
        warmup_failed=book.warmup_failed,
        interrupted=ending[0],
        stopped_late=ending[1],
        wall_s=ended - began,
        measured_s=dispatch.measured_s,
        inside_s=dispatch.inside_s,
        hosts_start_s=dispatch.starting_s,
        executed=book.executed,
        ray_start_s=dispatch.setup_s,
        # hosts and Ray shutting down, once per sweep, are not a per-run cost
        loop_s=ended - loop - dispatch.teardown_s,
    )


def _prepare(
    config: Config,
    out: str | os.PathLike,
    resume: bool,
    shard: tuple[int, int] | None,
    cluster: str | None,
    emit: EventHandler,
) -> _Prepared:
    """Plan the sweep: its trials (sizes calibrated), what a resume still needs, its manifest."""
    label = plan.shard_label(shard)
    state = plan.resume_state(config, out, label) if resume else None
    if resume and state is None:
        emit(events.Warned(f"nothing to resume under {Path(out) / config.name}; starting a new sweep"))
    if state is not None and state.config is not None and state.config != config:
        config = state.config  # begun under an older default (plan.OLD_DEFAULTS): it goes on as it began
        began = f"sweep {state.sweep_id} began when shuffle defaulted to false"
        emit(events.Warned(f"{began}: it resumes in matrix order"))
    sweep_id = state.sweep_id if state else new_sweep_id()
    sweep_dir = state.sweep_dir if state else Path(out) / config.name / sweep_id
    search_path = workload_search_path(Path(config.path).parent if config.path else None)
    known = dict(state.calibrated_sizes) if state else shared_sizes(config, out, emit)
    trials, calibrated = calibrate_trials(config, plan.select_trials(config, shard), search_path, known, emit)
    findings = doctor.diagnose()
    resumed = state is not None and state.done and state.started_at is not None
    manifest = Manifest(
        sweep_id=sweep_id,
        name=config.name,
        fingerprint=config.fingerprint,
        config_path=config.path,
        config_text=config.source_text,
        overrides=config.overrides,  # sweep --repeats / --warmup, in place of the file's
        started_at=state.started_at if resumed else time.time(),
        environment=environment.capture(config.fingerprint, config.path or ""),
        seed=config.seed,
        shuffle=config.shuffle,
        calibrated_sizes=calibrated,
        # as the sweep began, as started_at is: a resume (one with nothing left to run too) put its
        # own there, and the report said the load it met was the one the sweep's runs had met
        doctor=state.doctor if resumed and state.doctor else tuple(f.to_dict() for f in findings),
        shard=label,
        cluster=cluster,
    )
    done = state.done if state else frozenset()
    settings = ExecutorSettings.for_sweep(config, sweep_id, search_path)
    return _Prepared(
        Plan(config, trials, done), sweep_dir, sweep_id, manifest, search_path, findings, settings
    )


def _warn_before_running(
    config: Config, findings: list, cluster: str | None, ray_address: str | None, emit: EventHandler
) -> None:
    if config.affinity != "none" and not affinity.SUPPORTED:
        emit(events.Warned("this platform has no CPU affinity: trials run unpinned (pinned=false)"))
    spoilers = doctor.summary_line(findings)
    if spoilers:
        emit(events.Warned(spoilers))
    if cluster is not None and (ray_address or config.ray_address):
        emit(events.Warned("ray.address is not used: a cluster sweep's ray trials run on its nodes"))


def _dispatch(config: Config, prepared: _Prepared, cluster: str | None, ray_address: str | None) -> Dispatch:
    """Where the runs execute: on this machine, or on the nodes of ``cluster``; both with the one
    ``prepared.settings``."""
    if cluster is not None:
        from conc_lab.run.cluster import ClusterDispatch  # Ray is imported only for sweeps that use it

        return ClusterDispatch(cluster, prepared.settings)
    return LocalDispatch(TrialExecutor(prepared.settings), ray_address or config.ray_address)


def _open(
    dispatch: Dispatch, trials: list[Trial], emit: EventHandler
) -> tuple[dict[str, tuple[str, str]], bool]:
    """Open ``dispatch``: ({trial_id: (status, why) it cannot run}, whether Ctrl-C came meanwhile).

    Before the sweep folder exists, so a cluster that cannot be reached leaves nothing behind.
    """
    try:
        return dispatch.open(trials, emit), False
    except KeyboardInterrupt:  # the sweep folder is still made, marked interrupted: --resume works
        dispatch.close()
        return {}, True
    except BaseException:
        dispatch.close()
        raise


class _Book:
    """The per-run bookkeeping: counts, and trials given up (hung once, or unable to run here)."""

    def __init__(self, unrunnable: dict[str, tuple[str, str]]):
        self.given_up = {
            tid: why for tid, (_, why) in unrunnable.items()
        }  # trial_id -> why its runs are skipped
        self.status = {tid: status for tid, (status, _) in unrunnable.items()}  # where not schema.SKIPPED
        self.hung_warmups: dict[str, dict] = {}  # trial_id -> the row of a warm-up run that timed out
        self.recorded = self.failed = self.wrong = self.skipped = self.redone = self.noisy = 0
        self.warmup_failed = 0  # failed warm-ups not (yet) carried by a recorded row
        self.executed = 0  # runs a trial host ran (warm-ups and redone ones too): the overhead's divisor

    def skips(self, trial: Trial) -> tuple[str, str] | None:
        """None to run ``trial``; else (status, why) for the row of a run not executed."""
        tid = trial.trial_id
        if tid not in self.given_up:
            return None
        return self.status.get(tid, schema.SKIPPED), self.given_up[tid]

    def settle(self, run: Run, result: RunResult) -> RunResult | None:
        """What to report for ``run`` (None: a skipped warm-up, nothing to tell); notes give-ups."""
        tid = run.trial.trial_id
        if result.skipped:  # given up before this run
            if run.warmup:
                return None
            hung = self.hung_warmups.pop(tid, None)
            if hung is not None:  # its first measured row says so, or the hang would go unrecorded
                self.warmup_failed -= 1  # counted there
                return RunResult(dict(hung, repeat=run.repeat, error=f"in its warm-up run: {hung['error']}"))
            return result
        row = result.row
        if row["status"] == schema.TIMEOUT:
            self.given_up[tid] = "an earlier run of this trial timed out"
            if run.warmup:
                self.hung_warmups[tid] = row
        elif row["status"] == schema.SKIPPED:  # this interpreter lacks what the workload needs
            self.given_up[tid] = row["error"]
        return result

    def count(self, row: dict) -> None:
        self.recorded += 1
        self.failed += row["status"] in schema.FAILURES
        self.skipped += row["status"] == schema.SKIPPED
        self.wrong += row["correct"] is False
        self.noisy += bool(row.get("noisy"))

    @staticmethod
    def is_failure(row: dict) -> bool:
        return row["status"] in schema.FAILURES or row["correct"] is False


def _added_rounds(
    prepared: _Prepared, book: _Book, emit: EventHandler, cluster: str | None
) -> AddedRounds | None:
    """The rounds ``precision:`` adds, told which trials the driver gave up; None without one."""
    if prepared.plan.config.precision is None:
        return None
    if cluster is not None:  # the nodes take their runs ahead: no round could wait for the last one's rows
        emit(events.Warned("precision: rounds are not added on a cluster (--cluster): repeats rounds run"))
        return None
    # the driver's own dict: a trial given up mid-sweep asks for no round
    plan = prepared.plan
    rounds = AddedRounds(plan.config, plan.trials, prepared.sweep_dir, emit, book.given_up, plan.done)
    if not rounds.serves:  # "every speedup within ±5%" would be true of none
        emit(
            events.Warned(
                "precision: no trial here has a sequential baseline, so there is no speedup to narrow"
            )
        )
        return None
    return rounds


def _append(writer: SweepWriter, row: dict) -> None:
    """Write ``row``; one the store refuses (a measured value it cannot hold) as a failed run instead.

    The store checks each row before it writes anything, so nothing of the refused one is on disk:
    a workload that made its own CPU time negative once ended the whole sweep with a traceback.
    """
    try:
        writer.append(row)
    except schema.RowError as exc:
        writer.append(unstorable(row, str(exc)))


def _drive(
    the_plan: Plan,
    dispatch: Dispatch,
    writer: SweepWriter,
    book: _Book,
    fail_fast: bool,
    emit: EventHandler,
    interrupted: bool = False,
    rounds: AddedRounds | None = None,
) -> tuple[bool, bool]:
    """Run the plan through ``dispatch``, writing each measured row: (interrupted before every run
    was stored, stopped once every run was stored: complete all the same)."""
    ended = False  # every run the plan (and ``rounds``) asked for was run
    on_purpose = False  # ended by an event handler's StopSweep, not a Ctrl-C
    try:
        if not interrupted:
            for run, result in dispatch.results(the_plan.runs(rounds), book.skips):
                book.executed += 0 if result.skipped else 1 + len(result.redone)
                result = book.settle(run, result)
                if result is None:
                    continue
                row = result.row
                if not run.warmup:
                    with _interrupts_held():  # a Ctrl-C lands after the row is whole on disk, never inside
                        for replaced in result.redone:
                            replaced.update(round=run.round, slot=run.slot)
                            _append(writer, replaced)  # kept, never counted as the run's result
                            book.redone += 1
                        row.update(round=run.round, slot=run.slot)  # the order, recorded (#20)
                        _append(writer, row)
                        book.count(row)
                else:
                    book.warmup_failed += book.is_failure(row)
                emit(events.RunFinished(row, not run.warmup))
                if fail_fast and book.is_failure(row):
                    emit(events.Warned("stopping at the first failure (--fail-fast)"))
                    break
            else:
                ended = True
    except KeyboardInterrupt as exc:
        interrupted, on_purpose = True, isinstance(exc, events.StopSweep)
    finally:
        # Every run the plan asks for is stored: complete, whatever stop came after the last (a
        # scheduler's time limit as the hosts close).
        complete = book.recorded >= the_plan.measured and (ended or rounds is None)
        stopped = _close(writer, dispatch, complete, interrupted, on_purpose)
    if rounds is not None and complete and not stopped:
        rounds.finish()
    return stopped and not complete, stopped and complete


def _close(
    writer: SweepWriter, dispatch: Dispatch, complete: bool, interrupted: bool, on_purpose: bool
) -> bool:
    """Save the sweep's state, then close the hosts (their teardown, Ray's, may outlast the KillWait
    after which a scheduler that stopped the sweep kills it); True when a stop came before or meanwhile."""
    with _interrupts_held(reraise=False) as held:  # never cut the saving short
        writer.close(
            SweepState.COMPLETE
            if complete
            else (SweepState.INTERRUPTED if interrupted and not on_purpose else SweepState.STOPPED)
        )
    try:
        dispatch.close()
    except KeyboardInterrupt:  # a second Ctrl-C may cut the clean-up short (hosts die with us)
        held.append(signal.SIGINT)
    return interrupted or bool(held)


@contextlib.contextmanager
def _interrupts_held(reraise: bool = True) -> Iterator[list[int]]:
    """Hold Ctrl-C and SIGTERM for the duration; then raise KeyboardInterrupt if one came.

    The held signals are listed in the yielded list. Python runs signal handlers in the main
    thread only, so elsewhere this holds nothing (and nothing there needs holding).
    """
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    wanted = [s for s in (signal.SIGINT, signal.SIGTERM) if callable(signal.getsignal(s))]
    previous = {s: signal.signal(s, lambda signum, frame: held.append(signum)) for s in wanted}
    try:
        yield held
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if held and reraise:
        raise KeyboardInterrupt
