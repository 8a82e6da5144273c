"""The driver's rules and the cluster's send/collect, in-process: a scripted ``Dispatch`` and a stand-in
for the ``ray`` module, so no trial host, Ray runtime or node is started.

What runs here is the real driver (``runner._drive``, ``_Book``), the real store (a sweep folder
of Parquet), the real ``ClusterDispatch`` loop with its ``CorePool``, and the real executor's
core planning; only where a run would execute is scripted.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

import conc_lab
from conc_lab import events, schema
from conc_lab.config.document import load_config
from conc_lab.host.protocol import PROTOCOL_VERSION
from conc_lab.plan.matrix import Trial
from conc_lab.plan.runs import Run
from conc_lab.run import runner
from conc_lab.run.cluster import NO_NODE_TIMEOUT_S, ClusterDispatch, ClusterError
from conc_lab.run.dispatch import Dispatch, LocalDispatch
from conc_lab.run.executor import ExecutorSettings, RunResult, TrialExecutor, trial_row
from conc_lab.run.node_runner import NodePlace
from conc_lab.schema import SCHEMA_VERSION
from conc_lab.store.layout import sweep_dirs
from conc_lab.store.manifest import read_manifest
from conc_lab.store.writer import SweepWriter

pytestmark = pytest.mark.host  # the sweep's preparation (doctor, environment) runs child processes

CONFIG = """
name: rules
repeats: 3
warmup: 1
timeout_s: 5
affinity: compact
matrix:
  workload: [experiments.io:sleep]
  backend: [sequential, threading]
  workers: [1]
  tasks: [1]
  size: [1, 2]
"""


class ScriptedDispatch(Dispatch):
    """Runs nothing: each run's status comes from ``script(run)`` (default ok)."""

    def __init__(self, script=lambda run: schema.OK, interrupt_after: int | None = None):
        self.script, self.interrupt_after = script, interrupt_after
        self.executed: list[Run] = []
        self.closed = 0
        self.sweep_id = "s"  # the driver's, set before it runs

    def results(self, runs, skip):
        for run in runs:
            if self.interrupt_after is not None and len(self.executed) == self.interrupt_after:
                raise KeyboardInterrupt
            said = skip(run.trial)
            if said is not None:
                yield run, RunResult(self._row(run, said[0], said[1]), skipped=True)
                continue
            self.executed.append(run)
            status = self.script(run)
            if status == "noisy-then-ok":
                noisy = self._row(run, schema.REDONE, None)
                again = dict(noisy, started_at=noisy["started_at"] + 1)
                yield run, RunResult(self._row(run, schema.OK, None), redone=(noisy, again))
                continue
            yield run, RunResult(self._row(run, status, None if status == schema.OK else f"it {status}"))

    def _row(self, run: Run, status: str, error: str | None) -> dict:
        row = trial_row(run.trial, run.repeat, self.sweep_id, "rules", status, error)
        if status in (schema.OK, schema.REDONE):
            row.update(run_s=0.01, setup_s=0.0, correct=True, checksum="c")
        return row

    def close(self) -> None:
        self.closed += 1


def _drive(tmp_path, write_config, dispatch: Dispatch, fail_fast: bool = False):
    config = load_config(write_config(CONFIG))
    prepared = runner._prepare(config, tmp_path / "out", False, None, None, events.ignore)
    writer = SweepWriter(prepared.sweep_dir, prepared.manifest)
    dispatch.sweep_id = prepared.sweep_id
    book = runner._Book({})
    told = []
    interrupted, _late = runner._drive(prepared.plan, dispatch, writer, book, fail_fast, told.append)
    df = conc_lab.load(prepared.sweep_dir) if sweep_dirs(tmp_path / "out" / "rules") else None
    return book, interrupted, df, read_manifest(prepared.sweep_dir).state, told


def _is(trial: Trial, backend: str, size: int) -> bool:
    return trial.backend == backend and trial.size == size


def test_a_timed_out_trial_runs_no_more_and_its_later_runs_are_recorded_skipped(tmp_path, write_config):
    def script(run):
        return (
            schema.TIMEOUT if _is(run.trial, "threading", 2) and run.repeat == 0 and not run.warmup else "ok"
        )

    dispatch = ScriptedDispatch(script)
    book, interrupted, df, state, _ = _drive(tmp_path, write_config, dispatch)
    assert not interrupted and state == "complete" and dispatch.closed == 1
    hung = df[(df.backend == "threading") & (df["size"] == 2)].sort_values("repeat")
    assert hung["status"].tolist() == ["timeout", "skipped", "skipped"]
    assert hung["error"].iloc[1] == "an earlier run of this trial timed out"
    assert sum(_is(r.trial, "threading", 2) for r in dispatch.executed) == 2  # its warm-up, repeat 0
    assert (book.recorded, book.failed, book.skipped) == (12, 1, 2)


def test_a_hung_warm_up_is_recorded_on_the_trials_first_measured_row(tmp_path, write_config):
    def script(run):
        return schema.TIMEOUT if _is(run.trial, "sequential", 1) and run.warmup else schema.OK

    book, _, df, _, _ = _drive(tmp_path, write_config, ScriptedDispatch(script))
    rows = df[(df.backend == "sequential") & (df["size"] == 1)].sort_values("repeat")
    assert rows["status"].tolist() == ["timeout", "skipped", "skipped"]
    assert rows["error"].iloc[0].startswith("in its warm-up run: it timeout")
    assert book.warmup_failed == 0 and book.failed == 1  # counted once, on the recorded row


def test_redone_rows_are_kept_beside_the_run_and_not_counted_as_it(tmp_path, write_config):
    def script(run):
        return "noisy-then-ok" if _is(run.trial, "sequential", 2) and run.repeat == 1 else schema.OK

    book, _, df, _, _ = _drive(tmp_path, write_config, ScriptedDispatch(script))
    assert (book.recorded, book.redone) == (12, 2)
    assert (df["status"] == "redone").sum() == 2 and (df["status"] == "ok").sum() == 12


def test_fail_fast_stops_at_the_first_failure_and_an_interrupt_saves_what_ran(tmp_path, write_config):
    def script(run):
        return schema.FAILED if run.repeat == 1 and not run.warmup else schema.OK

    book, interrupted, df, state, told = _drive(tmp_path / "a", write_config, ScriptedDispatch(script), True)
    assert not interrupted and state == "stopped" and book.recorded == 5 and book.failed == 1
    assert any(isinstance(e, events.Warned) and "--fail-fast" in e.text for e in told)

    dispatch = ScriptedDispatch(interrupt_after=7)  # 4 warm-ups, then 3 measured runs
    book, interrupted, df, state, _ = _drive(tmp_path / "b", write_config, dispatch)
    assert interrupted and state == "interrupted" and dispatch.closed == 1
    assert book.recorded == len(df) == 3


# -- one settings object for both paths ------------------------------------------------------------


def test_one_settings_object_reaches_the_local_and_the_cluster_path(tmp_path, write_config):
    config = load_config(write_config(CONFIG))
    prepared = runner._prepare(config, tmp_path, False, None, None, events.ignore)
    settings = prepared.settings
    assert settings == ExecutorSettings.for_sweep(config, prepared.sweep_id, prepared.search_path)
    assert settings.rewarm and settings.timeout_s == 5 and settings.noise_limits == config.noise
    local = runner._dispatch(config, prepared, None, None)
    assert isinstance(local, LocalDispatch) and local.executor.settings is settings
    cluster = runner._dispatch(config, prepared, "127.0.0.1:1", None)
    assert isinstance(cluster, ClusterDispatch) and cluster.settings is settings
    ray = FakeRay({"n1": "m"})
    cluster.attach(ray, FakeRunnerClass(ray), events.ignore)
    list(cluster.results([Run(prepared.plan.trials[0], 0)], lambda trial: None))
    (runner_made,) = ray.runners
    assert runner_made.settings is settings  # what each NodeRunner builds its executor from
    local.close()
    cluster.close()
    with pytest.raises(TypeError):  # the old argument lists, which had drifted, are gone
        TrialExecutor("rules", "s", "compact")


# -- the cluster's send and collect, against a stand-in for Ray --------------------------------------


class Ref:
    def __init__(self, value, steps: int = 1, fails: bool = False):
        self.value, self.steps, self.fails = value, steps, fails


class FakeRay:
    """The part of the ``ray`` module the dispatch uses. Each ``wait`` is one tick of a clock: a
    call sent with ``steps=k`` is done after k waits. Checks, as runs are sent, that no two runs in
    flight on one machine were pinned to the same core."""

    class exceptions:
        class RayActorError(Exception):
            pass

    util = SimpleNamespace(
        scheduling_strategies=SimpleNamespace(NodeAffinitySchedulingStrategy=lambda node_id, soft: node_id)
    )

    def __init__(self, machines: dict[str, str]):
        self.machines = machines  # node id -> machine
        self.alive = dict.fromkeys(machines, True)
        self.runners: list[FakeRunner] = []
        self.in_flight: dict[Ref, tuple[str, set[int]]] = {}
        self.overlapping = 0
        self.doomed: set[str] = set()  # nodes whose next call dies with them
        self.said: dict[str, object] = {}  # node id -> what its runner's where() answers, if not the usual

    def nodes(self):
        return [{"NodeID": n, "Alive": a, "NodeManagerHostname": n} for n, a in self.alive.items()]

    def wait(self, refs, num_returns, timeout):
        for ref in refs:
            ref.steps -= 1
        done = [r for r in refs if r.steps <= 0][:num_returns]
        for ref in done:
            self.in_flight.pop(ref, None)
        return done, [r for r in refs if r not in done]

    def get(self, ref):
        if ref.fails:
            raise self.exceptions.RayActorError("The actor died unexpectedly")
        return ref.value

    def kill(self, actor, no_restart=True):
        actor.killed = True

    def sent(self, ref: Ref, machine: str, cores: list[int]) -> None:
        for other_machine, other in self.in_flight.values():
            if other_machine == machine:
                self.overlapping += 1
                assert not other & set(cores), (
                    f"two runs in flight on {machine} share cores {other & set(cores)}"
                )
        self.in_flight[ref] = (machine, set(cores))


class FakeRunner:
    """A node runner: plans each run's pinning with the real executor, inside the cores it is given."""

    def __init__(self, ray: FakeRay, node: str, settings: ExecutorSettings):
        self.ray, self.node, self.settings = ray, node, settings
        self.executor = TrialExecutor(settings, node_id=node)  # starts no host until a run executes
        self.killed = False
        said = ray.said.get(node, NodePlace(ray.machines[node], [0, 1]))
        self.where = SimpleNamespace(remote=lambda: Ref(said))
        self.execute = SimpleNamespace(remote=self._execute)
        self.close = SimpleNamespace(remote=lambda: Ref(None))

    def _execute(self, params, repeat, warmup, cores):
        trial = Trial(**params)
        planned = self.executor.cores_for(trial, cores)
        row = trial_row(trial, repeat, "s", "cpu", schema.OK, None)
        row.update(node_id=self.node, cores=planned, pinned=True)
        fails = self.node in self.ray.doomed
        ref = Ref((RunResult(row), 0.1), steps=1 + (trial.size * 7) % 5, fails=fails)
        self.ray.sent(ref, self.ray.machines[self.node], planned)
        return ref


class FakeRunnerClass:
    def __init__(self, ray: FakeRay):
        self.ray = ray

    def options(self, scheduling_strategy):
        return SimpleNamespace(remote=lambda settings: self._make(scheduling_strategy, settings))

    def _make(self, node, settings):
        made = FakeRunner(self.ray, node, settings)
        self.ray.runners.append(made)
        return made


def _mixed_runs(n: int = 12) -> list[Run]:
    return [Run(Trial("experiments.io:sleep", "threading", 1 + i % 2, 2, i), 0) for i in range(n)]


def test_three_nodes_on_two_cores_never_pin_two_running_trials_to_one_core():
    ray = FakeRay({"a": "m", "b": "m", "c": "m"})
    dispatch = ClusterDispatch("fake:1", ExecutorSettings("cpu", "s"))
    dispatch.attach(ray, FakeRunnerClass(ray), events.ignore)
    done = list(dispatch.results(_mixed_runs(24), lambda trial: None))
    assert sorted(run.trial.size for run, _ in done) == list(range(24))  # each run once
    assert ray.overlapping > 0  # runs did overlap in time, on disjoint cores
    assert {result.row["node_id"] for _, result in done} == {"a", "b", "c"}
    two = [result.row["cores"] for run, result in done if run.trial.workers == 2]
    assert all(sorted(c) == [0, 1] for c in two)


def test_a_lost_node_sends_its_run_to_another_and_a_skipped_run_is_not_sent():
    ray = FakeRay({"a": "m1", "b": "m2"})
    ray.doomed.add("b")
    told = []
    dispatch = ClusterDispatch("fake:1", ExecutorSettings("cpu", "s"))
    dispatch.attach(ray, FakeRunnerClass(ray), told.append)
    ray.alive["b"] = True  # Ray still lists it alive: held back, not dropped at once
    runs = _mixed_runs(6)

    def skip(trial):
        return (schema.SKIPPED, "given up") if trial.size == 5 else None

    done = {run.trial.size: result for run, result in dispatch.results(runs, skip)}
    assert sorted(done) == list(range(6))
    assert done[5].skipped and done[5].row["error"] == "given up"
    assert {r.row["node_id"] for s, r in done.items() if s != 5} == {"a"}
    lost = [e for e in told if isinstance(e, events.NodeLost)]
    assert [e.node_id for e in lost] == ["b"] and "b" in dispatch.nodes.suspect


def test_a_node_with_another_conc_lab_is_refused_in_one_line_and_gets_no_run():
    ray = FakeRay({"a": "m1", "old": "m2", "newer": "m3"})
    ray.said["old"] = ("boot:m2", [0, 1])  # a runner from before nodes said their versions
    ray.said["newer"] = NodePlace("boot:m3", [0, 1], protocol=PROTOCOL_VERSION + 1)
    told = []
    dispatch = ClusterDispatch("fake:1", ExecutorSettings("cpu", "s"))
    dispatch.attach(ray, FakeRunnerClass(ray), told.append)
    done = list(dispatch.results(_mixed_runs(6), lambda trial: None))
    assert {result.row["node_id"] for _, result in done} == {"a"} and len(done) == 6
    lost = {e.node_id: e.error for e in told if isinstance(e, events.NodeLost)}
    assert set(lost) == {"old", "newer"}
    assert "older than this driver's" in lost["old"]
    assert f"trial protocol {PROTOCOL_VERSION + 1}" in lost["newer"]
    assert all(why.endswith("install the same conc_lab on every node") for why in lost.values())
    assert {"old", "newer"} <= dispatch.nodes.dropped  # never tried again


def test_a_cluster_whose_every_node_is_refused_says_why_at_once():
    ray = FakeRay({"old": "m1"})
    ray.said["old"] = NodePlace("boot:m1", [0, 1], schema=SCHEMA_VERSION + 1)
    dispatch = ClusterDispatch("fake:1", ExecutorSettings("cpu", "s"))
    dispatch.attach(ray, FakeRunnerClass(ray), events.ignore)
    began = time.monotonic()
    with pytest.raises(
        ClusterError,
        match=f"no node can run this sweep: node old old: refused: .* row schema {SCHEMA_VERSION + 1}",
    ):
        list(dispatch.results(_mixed_runs(2), lambda trial: None))
    assert time.monotonic() - began < NO_NODE_TIMEOUT_S / 2  # not the wait for a node to join
