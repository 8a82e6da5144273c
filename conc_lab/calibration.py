"""Resolving ``size: auto``: one calibrated size per workload, chosen before any trial runs.

A matrix may say ``size: auto`` (or list ``auto`` beside numbers). Before the sweep runs,
each workload with an ``auto`` trial is calibrated once, in a fresh process of the sweep's
interpreter (``python -m conc_lab.host.calibrate``): its size grows until one task takes at
least the target time (default 50 ms), as pyperf calibrates its loops. Every ``auto``
trial of that workload (every backend, worker count and interpreter) then gets the *same*
size, so speedups compare like with like. The chosen sizes are kept in the sweep's
manifest (``calibrated_sizes``) and in each row's ``size``; a resumed sweep reuses them,
so its trial ids do not change.

>>> from conc_lab.matrix import Trial
>>> trials, sizes = resolve_auto_sizes([Trial("experiments.io:sleep", "sequential", 1, 1, 64)])
>>> trials[0].size, sizes
(64, {})
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Callable, Iterable

from conc_lab.config import AUTO  # the one spelling of size: auto
from conc_lab.host.calibrate import DEFAULT_TARGET_S
from conc_lab.trial_host import child_env

#: Wall-clock limit for calibrating one workload (the calibrator gives up by itself well before).
TIMEOUT_S = 300.0


class CalibrationFailed(RuntimeError):
    """A workload could not be calibrated; ``str()`` says which and why, in one line."""

    def __init__(self, workload: str, reason: str):
        self.workload, self.reason = workload, reason
        super().__init__(f"size auto: cannot calibrate {workload}: {reason}")


def calibrate_workload(
    workload: str,
    target_s: float = DEFAULT_TARGET_S,
    search_path: Iterable[str] | None = None,
    python: str | None = None,
) -> tuple[int, float]:
    """(size, seconds of one task at that size) for ``module:function``, measured in a fresh process.

    >>> size, seconds = calibrate_workload("experiments.cpu:sum_squares", 0.01)  # doctest: +SKIP
    """
    env = child_env(list(search_path) if search_path is not None else None)  # as the trial host's
    cmd = [python or sys.executable, "-m", "conc_lab.host.calibrate", workload, repr(float(target_s))]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise CalibrationFailed(workload, f"no answer within {TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise CalibrationFailed(workload, f"cannot start {cmd[0]}: {exc}") from None
    lines = proc.stdout.strip().splitlines()
    try:
        answer = json.loads(lines[-1])
    except (IndexError, ValueError):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise CalibrationFailed(workload, f"calibrator exited {proc.returncode}: {tail}") from None
    if "error" in answer:
        raise CalibrationFailed(workload, answer["error"])
    return int(answer["size"]), float(answer["seconds"])


def resolve_auto_sizes(
    trials: Iterable,
    search_path: Iterable[str] | None = None,
    known: dict[str, int] | None = None,
    target_s: float = DEFAULT_TARGET_S,
    on_calibrated: Callable[[str, int, float], None] | None = None,
) -> tuple[list, dict[str, int]]:
    """Trials with every ``auto`` size replaced, and the sizes chosen ({workload: size}).

    ``known`` sizes (from a resumed sweep's manifest) are reused, not measured again. A
    trial that becomes identical to another (``[auto, 1024]`` resolving to 1024) is kept once.
    """
    trials = list(trials)
    sizes = dict(known or {})
    search_path = list(search_path) if search_path is not None else None
    for workload in dict.fromkeys(t.workload for t in trials if t.size == AUTO):
        if workload not in sizes:
            size, seconds = calibrate_workload(workload, target_s, search_path)
            sizes[workload] = size
            if on_calibrated:
                on_calibrated(workload, size, seconds)
    out, seen = [], set()
    for t in trials:
        if t.size == AUTO:
            t = dataclasses.replace(t, size=sizes[t.workload])
        if t.trial_id not in seen:
            seen.add(t.trial_id)
            out.append(t)
    used = {w: s for w, s in sizes.items() if any(t.workload == w and t.size == AUTO for t in trials)}
    return out, used
