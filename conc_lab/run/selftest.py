"""The A/A self-test's runs: one trial as two identical arms, interleaved in a fresh order each round.

``run_arms`` executes them in one trial host, as a sweep would (warm-up first, noise measured),
and records every run under ``<out>/selftest/<sweep_id>`` like any sweep: the arm is the row's
``options`` (``analysis.selftest.ARM_OPTIONS``), its round and slot as the plan records them.
``conc_lab.analysis.selftest.aa_spread`` turns the rows into the floor; ``conclab selftest`` does
both and writes the floor into the sweep's manifest.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conc_lab import schema
from conc_lab.config.checks import check_workload, workload_search_path
from conc_lab.host import PACKAGE_ROOT
from conc_lab.host.protocol import SEQUENTIAL
from conc_lab.machine import environment
from conc_lab.plan.matrix import Trial
from conc_lab.run.executor import ExecutorSettings, TrialExecutor
from conc_lab.store.layout import new_sweep_id, preflight
from conc_lab.store.manifest import Manifest, SweepState, read_manifest, write_manifest
from conc_lab.store.writer import SweepWriter

#: The arms: the ``options`` each arm's rows carry (as ``analysis.selftest.ARM_OPTIONS``).
ARMS = (("a", '{"arm": "a"}'), ("b", '{"arm": "b"}'))
NAME = "selftest"
#: The default trial: pure-Python work of ~20 ms, long enough for the clock, short enough for 40 runs.
WORKLOAD = "experiments.cpu:sum_squares"
SIZE = 100_000


@dataclass(frozen=True)
class ArmsRun:
    """Where the self-test's runs were recorded, and how many of them failed."""

    sweep_dir: Path
    runs: int
    failed: int
    wall_s: float


def run_arms(
    out: str | os.PathLike = "results",
    *,
    workload: str = WORKLOAD,
    size: int = SIZE,
    repeats: int = 20,
    seed: int | None = None,
    on_run: Callable[[int, int], None] | None = None,
) -> ArmsRun:
    """Run ``workload`` at ``size`` as two arms, ``repeats`` rounds, each in a random order.

    Raises ValueError, before anything is written, when ``workload`` cannot be imported and called.

    ``on_run(done, total)`` is told after each run.
    """
    began = time.perf_counter()
    search_path = tuple(_search_path())
    problem = check_workload(workload, list(search_path))
    if problem:  # before anything is written: else a sweep of failed runs was left behind
        raise ValueError(f"workload {workload!r}: {problem}")
    preflight(out, NAME)  # before any run: a folder it cannot write, a path too long for its files
    sweep_id = new_sweep_id()
    sweep_dir = Path(out) / NAME / sweep_id
    settings = ExecutorSettings(
        NAME, sweep_id, affinity_mode="compact", timeout_s=120.0, search_path=search_path
    )
    trial = Trial(workload, SEQUENTIAL, workers=1, tasks=1, size=size)
    seed = random.randrange(2**31) if seed is None else seed
    manifest = Manifest(
        sweep_id=sweep_id,
        name=NAME,
        started_at=time.time(),
        environment=environment.capture("", ""),
        seed=seed,
        shuffle=True,
        selftest={"workload": workload, "size": size, "repeats": repeats},
    )
    writer = SweepWriter(sweep_dir, manifest)
    rng, failed, done = random.Random(seed), 0, 0
    state = SweepState.STOPPED
    try:
        with TrialExecutor(settings) as executor:
            executor.execute(trial, 0, warmup=True)
            for round_no in range(repeats):
                for slot, (arm, options) in enumerate(rng.sample(ARMS, 2)):
                    row = executor.execute(trial, round_no).row
                    # the same trial measured twice; the arm tells the two apart in the store
                    row.update(trial_id=f"{trial.trial_id}-{arm}", options=options, round=round_no, slot=slot)
                    writer.append(row)
                    failed += row["status"] != schema.OK
                    done += 1
                    if on_run is not None:
                        on_run(done, 2 * repeats)
        state = SweepState.COMPLETE
    finally:
        writer.close(state)
    return ArmsRun(sweep_dir, done, failed, time.perf_counter() - began)


def workload_problem(workload: str) -> str | None:
    """None if the self-test can import and call ``workload``, else what is wrong (run_arms refuses it)."""
    return check_workload(workload, _search_path())


def _search_path() -> list[str]:
    return workload_search_path(Path(PACKAGE_ROOT) / "configs")


def record_floor(sweep_dir: str | os.PathLike, field: str, floor: float) -> None:
    """Write the floor an A/A test measured into its sweep's manifest."""
    write_manifest(Path(sweep_dir), read_manifest(sweep_dir).replace(**{field: floor}))
