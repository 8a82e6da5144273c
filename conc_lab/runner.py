"""Running a sweep: order the trial runs, execute each in a trial host, record every outcome.

Two layers, so a cluster sweep can reuse the second on every node:

* ``sweep`` (the driver) plans the runs (repeats interleaved: A B C A B C ..., optionally
  shuffled with a recorded seed), skips what a resumed sweep already has, writes every
  row to the store as it finishes, reports progress, and handles Ctrl-C and fail-fast.
* ``TrialExecutor`` turns one (trial, repeat) into one schema row: it keeps a trial host
  per interpreter, pins workers to cores, checks the answer against the sequential one,
  and replaces a host that hung or died.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from conc_lab import calibration, doctor, environment, events, schema, store
from conc_lab.config import Config, ConfigError, load_config, workload_search_path
from conc_lab.events import EventHandler
from conc_lab.host import affinity, protocol
from conc_lab.interpreters import InterpreterError, resolve
from conc_lab.matrix import Trial, expand
from conc_lab.trial_host import HostDied, HostTimeout, TrialHost


@dataclass(frozen=True)
class SweepResult:
    """What a sweep did. ``ok`` is true when every recorded run succeeded with a correct answer.

    >>> r = SweepResult(Path("results/x/1"), "1", planned=2, recorded=2, failed=0, wrong=0,
    ...                 skipped=0, interrupted=False, wall_s=1.0, measured_s=0.9)
    >>> r.ok
    True
    """

    sweep_dir: Path
    sweep_id: str
    planned: int  # measured runs the plan holds (warm-ups not counted)
    recorded: int  # rows written by this invocation
    failed: int  # status failed or timeout
    wrong: int  # ok, but the answer differs from sequential
    skipped: int
    interrupted: bool
    wall_s: float
    measured_s: float  # time the trial hosts spent running trials (setup + run), warm-ups included

    @property
    def ok(self) -> bool:
        return not (self.failed or self.wrong or self.interrupted)

    @property
    def overhead_per_run_s(self) -> float:
        """The runner's own cost per run: wall time not spent inside a trial, per run executed."""
        runs = max(self.recorded, 1)
        return max(self.wall_s - self.measured_s, 0.0) / runs


class TrialExecutor:
    """Runs single trial runs in trial hosts and builds their rows.

    >>> with TrialExecutor("demo", "s1", affinity_mode="compact") as ex:  # doctest: +SKIP
    ...     row = ex.execute(Trial("experiments.cpu:sum_squares", "threading", 2, 8, 1000), repeat=0)
    """

    def __init__(
        self,
        sweep_name: str,
        sweep_id: str,
        affinity_mode: str | tuple[int, ...] = "compact",
        timeout_s: float = 120.0,
        search_path: list[str] | None = None,
        node_id: str | None = None,
        rewarm: bool = True,
    ):
        self.sweep_name, self.sweep_id = sweep_name, sweep_id
        # After a host is replaced, each trial runs once untimed before its next measured run.
        self.rewarm = rewarm
        self._ran: dict[tuple, set[str]] = {}  # host key -> trial ids its current host has run
        self._replaced: set[tuple] = set()  # host keys whose host was replaced at least once
        self.affinity_mode, self.timeout_s = affinity_mode, timeout_s
        self.search_path = search_path or [os.getcwd()]
        self.node_id = node_id
        self.hosts: dict[tuple, TrialHost] = {}  # see host_key
        self.references: dict[tuple, str | None] = {}
        self._facts: dict[str | None, dict] = {}
        self.measured_s = 0.0  # time spent inside trial hosts, for the overhead figure

    @staticmethod
    def host_key(trial: Trial) -> tuple:
        """Which host runs ``trial``: one per interpreter, and Ray trials in a host of their own.

        A host that has imported Ray holds ~150 MB more; forking multiprocessing workers from it
        would cost several times more than from the small host, and that is no number to report.
        """
        return (trial.python, trial.backend == "ray")

    def host(self, key: tuple) -> TrialHost:
        python = key[0]
        host = self.hosts.get(key)
        if host is None or host.proc.poll() is not None:
            # a matrix names "3.12" or "python3.12"; the host needs the executable it stands for
            host = self.hosts[key] = TrialHost(resolve(python), self.search_path)
            self._facts[python] = host.info  # kept for the row of a trial that kills its host
            if key in self._ran:
                self._replaced.add(key)
            self._ran[key] = set()
        return host

    def _drop_host(self, key: tuple) -> None:
        host = self.hosts.pop(key, None)
        if host is not None:
            host.close()

    def _call(self, trial: Trial, op: str, cores: list[int] | None) -> dict:
        """One request to the trial's host; a timeout or death becomes a failed outcome."""
        message = protocol.request(op, {**trial.params(), protocol.CORES: cores})
        try:
            host = self.host(self.host_key(trial))
        except (HostDied, HostTimeout, OSError, InterpreterError) as exc:
            self._drop_host(self.host_key(trial))
            return {
                protocol.STATUS: schema.FAILED,
                protocol.ERROR: f"cannot start trial host for {trial.python or 'python'}: {exc}",
            }
        started = time.perf_counter()
        try:
            reply = host.request(message, self.timeout_s)
        except HostTimeout as exc:
            self._drop_host(self.host_key(trial))
            return {protocol.STATUS: schema.TIMEOUT, protocol.ERROR: f"{exc}; trial host killed and replaced"}
        except HostDied as exc:
            self._drop_host(self.host_key(trial))
            return {protocol.STATUS: schema.FAILED, protocol.ERROR: str(exc)}
        finally:
            self.measured_s += time.perf_counter() - started
        if not reply.get(protocol.OK):
            return {
                protocol.STATUS: schema.FAILED,
                protocol.ERROR: reply.get(protocol.ERROR) or "trial host error",
            }
        return reply[protocol.OUTCOME]

    def cores_for(self, trial: Trial) -> list[int] | None:
        mode = self.affinity_mode
        return affinity.plan(list(mode) if isinstance(mode, tuple) else mode, trial.workers)

    def execute(self, trial: Trial, repeat: int) -> dict:
        """Run ``trial`` once and return its row (also for a failure or timeout)."""
        cores = self.cores_for(trial)
        started_at = int(time.time() * 1e6)
        outcome = self._call(trial, protocol.RUN, cores)
        if outcome.get(protocol.STATUS) == schema.OK and repeat >= 0 and self._cold(trial):
            # A fresh host runs a trial slower the first time (imports, caches, the interpreter
            # specialising its code): the warm-up round covered the sweep's first host, this
            # covers its replacements, so the run after a hang or crash is measured warm.
            # A first run that failed is the row itself: a hang is not waited for twice.
            self._ran[self.host_key(trial)].add(trial.trial_id)
            outcome = self._call(trial, protocol.RUN, cores)
        self._ran.setdefault(self.host_key(trial), set()).add(trial.trial_id)
        status, error = outcome.get(protocol.STATUS, schema.FAILED), outcome.get(protocol.ERROR)
        row = trial_row(trial, repeat, self.sweep_id, self.sweep_name, status, error, started_at)
        row["node_id"] = self.node_id
        for key in protocol.MEASURED_FIELDS:
            row[key] = outcome.get(key)
        row["pinned"] = cores is not None
        row["cores"] = cores or []
        row["task_records"] = [protocol.task_record(rec) for rec in outcome.get(protocol.TASK_RECORDS) or []]
        row.update(self.interpreter_facts(trial.python))
        if outcome.get(protocol.GIL_ENABLED) is not None:  # the state during the run, not at host start
            row["gil_enabled"] = outcome[protocol.GIL_ENABLED]
        if row["status"] == schema.OK and outcome.get(protocol.CHECKABLE, True):
            row["correct"] = self._check(trial, outcome["checksum"])
        return row

    def _cold(self, trial: Trial) -> bool:
        """True when the host that replaced a failed one has not yet run ``trial``."""
        key = self.host_key(trial)
        return self.rewarm and key in self._replaced and trial.trial_id not in self._ran.get(key, set())

    def interpreter_facts(self, python: str | None) -> dict:
        """What the latest host for ``python`` said of its interpreter (empty before one started)."""
        info = self._facts.get(python, {})
        return {key: info[key] for key in protocol.HELLO_FACTS if info.get(key) is not None}

    def _check(self, trial: Trial, checksum: str) -> bool | None:
        key = trial.reference_key
        if key not in self.references:
            if trial.backend == "sequential":
                self.references[key] = checksum
            else:
                ref = self._call(trial, protocol.REFERENCE, None)
                self.references[key] = ref.get("checksum") if ref.get(protocol.STATUS) == schema.OK else None
        reference = self.references[key]
        return None if reference is None else checksum == reference

    def close(self) -> None:
        for key in list(self.hosts):
            self._drop_host(key)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def plan_runs(trials: list[Trial], config: Config) -> Iterable[tuple[Trial, int]]:
    """(trial, repeat) in run order; repeat < 0 is a warm-up. Rounds interleave all trials."""
    for round_no in range(config.warmup + config.repeats):
        order = list(trials)
        if config.shuffle:
            random.Random(config.seed * 1_000_003 + round_no).shuffle(order)
        repeat = round_no - config.warmup
        for trial in order:
            yield trial, repeat


def sweep(  # noqa: C901 -- being split (#11)
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

    ``on_event(event)`` is told each ``conc_lab.events`` event: ``Planned``, ``RunFinished``
    (every run, warm-ups included), ``Warned``, ``Calibrated``, ``RayStarted``. Ctrl-C stops after saving what ran;
    the result says ``interrupted`` and ``sweep(..., resume=True)`` runs what is missing.

    ``shard="3/10"`` runs only the third of ten deterministic slices of the trials (see
    ``cluster.shard_trials``; ``store.merge`` joins the shards). ``cluster=ADDRESS`` runs the
    trials on the nodes of that Ray cluster, one at a time per node (``cluster.run_on_cluster``);
    ``NodeJoined`` / ``NodeLost`` events then tell nodes joining and lost. ``ray_address`` is
    the Ray runtime ``ray`` trials join (else the config's ``ray.address``, ``RAY_ADDRESS``, or
    one started here); a ``RayStarted`` event tells which.

    >>> result = sweep("configs/smoke.yaml", out="/tmp/results")  # doctest: +SKIP
    >>> result.recorded, result.ok  # doctest: +SKIP
    (24, True)
    """
    emit = on_event or events.ignore
    if not isinstance(config, Config):
        config = load_config(config)
    store.preflight(out)
    trials = list(expand(config))
    if shard is not None:
        from conc_lab import cluster as cluster_mod

        shard = cluster_mod.parse_shard(shard) if isinstance(shard, str) else shard
        trials = cluster_mod.shard_trials(trials, shard)
    shard_label = f"{shard[0]}/{shard[1]}" if shard else None
    previous = _resumable(config, out, shard_label, emit) if resume else None
    done: set[tuple[str, int]] = set()
    known_sizes: dict[str, int] = {}  # size: auto, as calibrated by the sweep being resumed
    if previous is not None:
        sweep_dir, sweep_id = previous
        done = store.completed_runs(sweep_dir)
        known_sizes = store.read_manifest(sweep_dir).get("calibrated_sizes") or {}
    else:
        sweep_id = store.new_sweep_id()
        sweep_dir = Path(out) / config.name / sweep_id
    search_path = workload_search_path(Path(config.path).parent if config.path else None)
    try:
        trials, calibrated = calibration.resolve_auto_sizes(
            trials,
            search_path,
            known_sizes,
            on_calibrated=lambda w, size, s: emit(events.Calibrated(w, size, s)),
        )
    except calibration.CalibrationFailed as exc:
        raise ConfigError(config.path, "matrix.size", str(exc)) from None
    findings = doctor.diagnose()
    manifest = {
        "sweep_id": sweep_id,
        "name": config.name,
        "fingerprint": config.fingerprint,
        "config_path": config.path,
        "config_text": config.source_text,
        "started_at": time.time(),
        "environment": environment.capture(config.fingerprint, config.path or ""),
        "seed": config.seed,
        "shuffle": config.shuffle,
        "calibrated_sizes": calibrated,
        "doctor": [f.to_dict() for f in findings],
        "shard": shard_label,
        "cluster": cluster,
    }
    if resume and done:
        manifest["started_at"] = store.read_manifest(sweep_dir).get("started_at", manifest["started_at"])
    writer = store.SweepWriter(sweep_dir, manifest)

    # A resumed sweep runs what is missing, with warm-ups only for trials that miss something.
    finished = {t.trial_id for t in trials if all((t.trial_id, r) in done for r in range(config.repeats))}
    runs = [
        (t, r)
        for t, r in plan_runs(trials, config)
        if t.trial_id not in finished and (r < 0 or (t.trial_id, r) not in done)
    ]
    measured_total = sum(1 for _, r in runs if r >= 0)
    emit(events.Planned(len(runs), measured_total, str(sweep_dir), len(trials)))
    if config.affinity != "none" and not affinity.SUPPORTED:
        emit(events.Warned("this platform has no CPU affinity: trials run unpinned (pinned=false)"))
    spoilers = doctor.summary_line(findings)
    if spoilers:
        emit(events.Warned(spoilers))

    executor = TrialExecutor(
        config.name,
        sweep_id,
        config.affinity,
        config.timeout_s,
        search_path,
        rewarm=config.warmup > 0,
    )
    counts = {"recorded": 0, "failed": 0, "wrong": 0, "skipped": 0}
    given_up: dict[str, str] = {}  # trial_id -> why its later runs are skipped
    hung_warmups: dict[str, dict] = {}  # trial_id -> the row of a warm-up run that timed out
    interrupted = False
    started = time.perf_counter()
    ray_runtime = None
    cluster_stats: dict = {}  # measured_s summed over nodes, and how many nodes took part
    if cluster is None and any(t.backend == "ray" for t in trials):
        from conc_lab.ray_runtime import RayRuntime  # Ray is imported only for sweeps that use it

        ray_runtime = RayRuntime(ray_address or config.ray_address)
    if cluster is not None:
        from conc_lab import cluster as cluster_mod

        if ray_address or config.ray_address:
            emit(events.Warned("ray.address is not used: a cluster sweep's ray trials run on its nodes"))
        source = cluster_mod.run_on_cluster(
            cluster,
            runs,
            sweep_name=config.name,
            sweep_id=sweep_id,
            affinity_mode=config.affinity,
            timeout_s=config.timeout_s,
            search_path=search_path,
            skip=lambda t: t.trial_id in given_up,
            on_event=emit,
            stats=cluster_stats,
        )
    else:  # row None: the trial was given up before this run
        source = ((t, r, None if t.trial_id in given_up else executor.execute(t, r)) for t, r in runs)
    try:
        if ray_runtime is not None:
            ray_started = time.perf_counter()
            ray_runtime.open()
            # Ray's own start-up (seconds) is reported apart, not as the runner's per-run overhead.
            started += time.perf_counter() - ray_started
            emit(
                events.RayStarted(ray_runtime.address, ray_runtime.started, time.perf_counter() - ray_started)
            )
        for trial, repeat, row in source:
            if row is None:
                if repeat < 0:
                    continue
                hung = hung_warmups.pop(trial.trial_id, None)
                if hung is not None:  # its first measured row says so, or the hang would go unrecorded
                    row = dict(hung, repeat=repeat, error=f"in its warm-up run: {hung['error']}")
                else:
                    row = trial_row(trial, repeat, sweep_id, config.name, "skipped", given_up[trial.trial_id])
                    # the interpreter it was skipped under
                    row.update(executor.interpreter_facts(trial.python))
            else:
                if row["status"] == "timeout":
                    given_up[trial.trial_id] = "an earlier run of this trial timed out"
                    if repeat < 0:
                        hung_warmups[trial.trial_id] = row
                elif row["status"] == "skipped":  # this interpreter lacks what the workload needs
                    given_up[trial.trial_id] = row["error"]
            if repeat >= 0:
                with _interrupts_held():  # a Ctrl-C lands after the row is whole on disk, never inside
                    writer.append(row)
                    counts["recorded"] += 1
                    counts["failed"] += row["status"] in ("failed", "timeout")
                    counts["skipped"] += row["status"] == "skipped"
                    counts["wrong"] += row["correct"] is False
            emit(events.RunFinished(row, repeat >= 0))
            if fail_fast and (row["status"] in ("failed", "timeout") or row["correct"] is False):
                emit(events.Warned("stopping at the first failure (--fail-fast)"))
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        try:
            if cluster is not None:
                source.close()  # stops the node runners
            closing = time.perf_counter()
            executor.close()  # once per sweep (a Ray-connected host takes ~0.5 s): not a per-run cost
            started += time.perf_counter() - closing
            if ray_runtime is not None:
                closing = time.perf_counter()
                ray_runtime.close()
                started += time.perf_counter() - closing  # Ray's shutdown is not runner overhead either
        except KeyboardInterrupt:  # a second Ctrl-C may cut the clean-up short (hosts die with us) ...
            interrupted = True
        with _interrupts_held(reraise=False) as held:  # ... but never the saving
            complete = not interrupted and counts["recorded"] == measured_total
            writer.close("complete" if complete else ("interrupted" if interrupted else "stopped"))
        interrupted = interrupted or bool(held)
    return SweepResult(
        sweep_dir=sweep_dir,
        sweep_id=sweep_id,
        planned=measured_total,
        recorded=counts["recorded"],
        failed=counts["failed"],
        wrong=counts["wrong"],
        skipped=counts["skipped"],
        interrupted=interrupted,
        wall_s=time.perf_counter() - started,
        # Nodes run side by side: their trial time, shared out over them, is what the wall time covers.
        measured_s=executor.measured_s
        + cluster_stats.get("measured_s", 0.0) / max(cluster_stats.get("nodes", 0), 1),
    )


def _resumable(config: Config, out: str | os.PathLike, shard_label: str | None, emit: EventHandler):
    """(sweep_dir, sweep_id) of the sweep ``--resume`` continues, or None to start a new one.

    A sweep begun under another config is refused: mixing its rows with these would
    compare trials that were not run alike.
    """
    sweep_dir = store.latest_sweep(Path(out) / config.name, shard=shard_label)
    if sweep_dir is None:
        emit(events.Warned(f"nothing to resume under {Path(out) / config.name}; starting a new sweep"))
        return None
    manifest = store.read_manifest(sweep_dir)
    if manifest.get("fingerprint") != config.fingerprint:
        raise ConfigError(
            config.path,
            "(resume)",
            f"the config changed since sweep {manifest.get('sweep_id')} began "
            "(its fingerprint differs); run without --resume to start a new sweep",
        )
    return sweep_dir, manifest["sweep_id"]


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


def trial_row(
    trial: Trial,
    repeat: int,
    sweep_id: str,
    name: str,
    status: str,
    error: str | None,
    started_at: int | None = None,
) -> dict:
    """A row naming the run and its trial's parameters, with nothing measured yet.

    As it stands, the row of a run that never reached a trial host (skipped, or its cluster
    node lost); ``TrialExecutor.execute`` fills in what a host measured.
    """
    row = schema.empty_row()
    row.update(
        sweep_id=sweep_id,
        sweep_name=name,
        trial_id=trial.trial_id,
        **trial.params(),
        repeat=repeat,
        status=status,
        error=error,
        started_at=int(time.time() * 1e6) if started_at is None else started_at,
        pinned=False,
        cores=[],
        task_records=[],
    )
    return row
