"""Resolving ``size: auto``: one calibrated size per workload, chosen before any trial runs.

A matrix may say ``size: auto`` (or list ``auto`` beside numbers). Before the sweep runs,
each workload with an ``auto`` trial is calibrated once, in a fresh process of the sweep's
interpreter (``python -m conc_lab.host.calibrate``): its size grows until one task takes at
least the target time (default 50 ms), as pyperf calibrates its loops. Each step is reported as it
is measured, and calibration stops within its budget (default 60 s a workload): a workload whose
time grows much faster than its size gets the largest size reached, with the reason. Every ``auto``
trial of that workload (every backend, worker count and interpreter) then gets the *same*
size, so speedups compare like with like. The chosen sizes are kept in the sweep's
manifest (``calibrated_sizes``) and in each row's ``size``; a resumed sweep reuses them,
so its trial ids do not change.

>>> from conc_lab.plan.matrix import Trial
>>> trials, sizes = resolve_auto_sizes([Trial("experiments.io:sleep", "sequential", 1, 1, 64)])
>>> trials[0].size, sizes
(64, {})
"""

from __future__ import annotations

import dataclasses
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator

from conc_lab.config.model import AUTO  # the one spelling of size: auto
from conc_lab.host import protocol
from conc_lab.host.calibrate import DEFAULT_BUDGET_S, DEFAULT_TARGET_S
from conc_lab.run.trial_host import child_env

#: Seconds the calibrator may take past its budget (it stops itself before; this is for a step that
#: runs far past its forecast), and for its first call (imports) when the budget is tiny.
GRACE_S = 5.0

#: What a calibration tells as it goes: (workload, size, seconds of one task, seconds elapsed).
StepHandler = Callable[[str, int, float, float], None]


class CalibrationFailed(RuntimeError):
    """A workload could not be calibrated; ``str()`` says which and why, in one line."""

    def __init__(self, workload: str, reason: str):
        self.workload, self.reason = workload, reason
        super().__init__(f"size auto: cannot calibrate {workload}: {reason}")


@dataclasses.dataclass(frozen=True)
class Calibration:
    """The size chosen for one workload; ``stopped`` says why it is below the target, if it is."""

    workload: str
    size: int
    task_s: float
    stopped: str | None = None


def calibrate_workload(
    workload: str,
    target_s: float = DEFAULT_TARGET_S,
    search_path: Iterable[str] | None = None,
    python: str | None = None,
    budget_s: float = DEFAULT_BUDGET_S,
    on_step: StepHandler | None = None,
) -> Calibration:
    """The calibrated size of ``module:function``, measured in a fresh process within ``budget_s``.

    >>> calibrate_workload("experiments.cpu:sum_squares", 0.01).size > 1  # doctest: +SKIP
    True
    """
    env = child_env(list(search_path) if search_path is not None else None)  # as the trial host's
    cmd = [python or sys.executable, "-m", "conc_lab.host.calibrate", workload]
    cmd += [repr(float(target_s)), repr(float(budget_s))]
    deadline = time.monotonic() + budget_s + GRACE_S
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: a chatty workload cannot block on it
        try:  # its own session: killing it at the budget takes whatever the workload started with it
            proc = subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=stderr, env=env, start_new_session=True
            )
        except OSError as exc:
            raise CalibrationFailed(workload, f"cannot start {cmd[0]}: {exc}") from None
        last: dict | None = None
        try:
            for doc in _lines(proc, deadline):
                if protocol.CAL_ERROR in doc or protocol.CAL_SIZE in doc:
                    return _answer(workload, doc)
                last = doc
                if on_step:
                    on_step(
                        workload,
                        int(doc[protocol.CAL_STEP]),
                        float(doc[protocol.CAL_SECONDS]),
                        float(doc[protocol.CAL_ELAPSED]),
                    )
        finally:
            _reap(proc)
        if time.monotonic() < deadline:  # it ended without an answer
            stderr.seek(0)
            tail = (stderr.read().decode(errors="replace").strip().splitlines() or ["no output"])[-1]
            raise CalibrationFailed(
                workload,
                f"its process ended (code {proc.returncode}) before it answered: the function called "
                f"os._exit, or crashed? {tail}",
            )
    return _out_of_time(workload, last, budget_s)


def _lines(proc: subprocess.Popen, deadline: float) -> Iterator[dict]:
    """The calibrator's JSON lines as they come, until it closes its output or the deadline passes."""
    buf = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            if not sel.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                return
            buf += chunk
            *done, buf = buf.split(b"\n")
            for line in done:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue  # not a line of ours


def _reap(proc: subprocess.Popen) -> None:
    """Kill the calibrator's session if it still runs (we started it), and collect its exit."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait()


def _answer(workload: str, doc: dict) -> Calibration:
    if protocol.CAL_ERROR in doc:
        raise CalibrationFailed(workload, doc[protocol.CAL_ERROR])
    size, seconds = int(doc[protocol.CAL_SIZE]), float(doc[protocol.CAL_SECONDS])
    return Calibration(workload, size, seconds, doc.get(protocol.CAL_STOPPED))


def _out_of_time(workload: str, last: dict | None, budget_s: float) -> Calibration:
    """Killed at the budget: the largest size measured, and why it is not larger."""
    if last is None:
        raise CalibrationFailed(
            workload, f"its first call at size 1 did not finish within the {budget_s:.3g} s budget"
        )
    size, seconds = int(last[protocol.CAL_STEP]), float(last[protocol.CAL_SECONDS])
    why = f"size {size * 2} was still running when the {budget_s:.3g} s budget ran out"
    return Calibration(workload, size, seconds, why)


def resolve_auto_sizes(
    trials: Iterable,
    search_path: Iterable[str] | None = None,
    known: dict[str, int] | None = None,
    target_s: float = DEFAULT_TARGET_S,
    on_calibrated: Callable[[Calibration], None] | None = None,
    budget_s: float = DEFAULT_BUDGET_S,
    on_step: StepHandler | None = None,
) -> tuple[list, dict[str, int]]:
    """Trials with every ``auto`` size replaced, and the sizes chosen ({workload: size}).

    ``known`` sizes (from a resumed sweep's manifest) are reused, not measured again. A
    trial that becomes identical to another (``[auto, 1024]`` resolving to 1024) is kept once.
    Each workload gets ``budget_s`` seconds of calibration.
    """
    trials = list(trials)
    sizes = dict(known or {})
    search_path = list(search_path) if search_path is not None else None
    for workload in dict.fromkeys(t.workload for t in trials if t.size == AUTO):
        if workload not in sizes:
            found = calibrate_workload(workload, target_s, search_path, budget_s=budget_s, on_step=on_step)
            sizes[workload] = found.size
            if on_calibrated:
                on_calibrated(found)
    out, seen = [], set()
    for t in trials:
        if t.size == AUTO:
            t = dataclasses.replace(t, size=sizes[t.workload])
        if t.trial_id not in seen:
            seen.add(t.trial_id)
            out.append(t)
    used = {w: s for w, s in sizes.items() if any(t.workload == w and t.size == AUTO for t in trials)}
    return out, used
