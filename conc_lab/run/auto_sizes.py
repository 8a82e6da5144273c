"""``size: auto`` for a sweep: calibrated once for every sweep of a config, or where the sweep runs.

``calibrate`` (``conclab calibrate``) measures every ``size: auto`` workload of a config and
writes the sizes beside its sweeps (``store.sizes``); ``shared_sizes`` is what a sweep then
reads, so the shards of a SLURM array measure one size per workload; ``calibrate_trials``
resolves a sweep's trials, telling each step as an event. The measuring itself is
``run.calibration``.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

from conc_lab import events
from conc_lab.config.checks import workload_search_path
from conc_lab.config.document import load_config
from conc_lab.config.errors import ConfigError
from conc_lab.config.model import AUTO, Config
from conc_lab.events import EventHandler
from conc_lab.host.units import duration
from conc_lab.plan import runs as plan
from conc_lab.plan.matrix import Trial
from conc_lab.run import calibration
from conc_lab.run.progress import ProgressLines
from conc_lab.store.layout import preflight
from conc_lab.store.sizes import SharedSizes, read_sizes, sizes_path, write_sizes


def calibrate(
    config: Config | str | os.PathLike,
    out: str | os.PathLike = "results",
    on_event: EventHandler | None = None,
) -> tuple[Path | None, dict[str, int]]:
    """Calibrate every ``size: auto`` workload of ``config`` once, for all its sweeps under ``out``.

    The sizes go to ``out/<name>/_sizes.json`` (``store.sizes``), which every sweep of this
    config there reads instead of calibrating: the shards of a SLURM array then measure one
    size per workload. Returns (that file, the sizes); (None, {}) when nothing is ``auto``.
    """
    emit = on_event or ProgressLines()
    if not isinstance(config, Config):
        config = load_config(config)
    trials = plan.select_trials(config)
    if not any(t.size == AUTO for t in trials):
        return None, {}
    preflight(out, config.name)
    search_path = workload_search_path(Path(config.path).parent if config.path else None)
    _, sizes = calibrate_trials(config, trials, search_path, {}, emit)
    shared = SharedSizes(config.fingerprint, sizes, time.time(), socket.gethostname())
    return write_sizes(out, config.name, shared), sizes


def shared_sizes(config: Config, out: str | os.PathLike, emit: EventHandler) -> dict[str, int]:
    """The sizes ``calibrate`` wrote for this config under ``out``; {} when none, or for another config."""
    if not any(AUTO in config.workload_sizes.get(w, config.axes["size"]) for w in config.axes["workload"]):
        return {}  # nothing to calibrate: a sizes file left from an older config is not read
    shared = read_sizes(out, config.name)
    if shared is None:
        return {}
    if shared.fingerprint != config.fingerprint:
        emit(
            events.Warned(
                f"{sizes_path(out, config.name)} holds sizes calibrated for another version of this config: "
                "size auto calibrates here (run conclab calibrate again, so that shards share one size)"
            )
        )
        return {}
    return dict(shared.sizes)


def calibrate_trials(
    config: Config, trials: list[Trial], search_path: list[str], known: dict[str, int], emit: EventHandler
) -> tuple[list[Trial], dict[str, int]]:
    """Trials with ``size: auto`` resolved (``known`` sizes reused: a resume's, or ``calibrate``'s), and the sizes."""
    settings = config.calibration

    def calibrated(found: calibration.Calibration) -> None:
        emit(events.Calibrated(found.workload, found.size, found.task_s))
        if found.stopped:
            emit(
                events.Warned(
                    f"size auto: {found.workload} got size {found.size} ({duration(found.task_s)} a task, "
                    f"under the {duration(settings.target_s)} target): {found.stopped}; "
                    "give it a size, or raise calibration.budget_s"
                )
            )

    try:
        return calibration.resolve_auto_sizes(
            trials,
            search_path,
            known,
            target_s=settings.target_s,
            on_calibrated=calibrated,
            budget_s=settings.budget_s,
            on_step=lambda w, size, task_s, elapsed_s: emit(events.Calibrating(w, size, task_s, elapsed_s)),
        )
    except calibration.CalibrationFailed as exc:
        raise ConfigError(config.path, "matrix.size", str(exc)) from None
