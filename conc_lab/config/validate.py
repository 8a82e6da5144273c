"""The checks one value of a matrix file gets: each fails with the file, the key and the problem.

``Validator`` checks scalars (integers, seconds, known keys) and the values of each matrix axis;
``conc_lab.config.sections`` builds the settings sections on it, ``conc_lab.config.document``
the whole document.
"""

from __future__ import annotations

import difflib
import re
from typing import Any, NoReturn

from conc_lab.config.errors import ConfigError, clip, kind, show
from conc_lab.config.model import AUTO, INT32_MAX, INT64_MAX, WORKERS_PER_CPU, Limits, Size
from conc_lab.host.protocol import BACKENDS

_WORKLOAD_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class Validator:
    """Checks values of one matrix file (``path``) against its ``limits``, failing with a ``ConfigError``.

    >>> Validator("c.yaml").integer(0, "repeats", minimum=1)
    Traceback (most recent call last):
    ...
    conc_lab.config.errors.ConfigError: c.yaml: repeats: must be a positive integer, got 0
    """

    def __init__(self, path: str | None):
        self.path = path
        self.limits = Limits()

    def task_count(self, tasks: int, key: str) -> None:
        """One trial's tasks within ``limits.tasks`` (the host holds a result and a record per task)."""
        if tasks > self.limits.tasks:
            self.fail(
                key,
                f"{tasks:,} tasks in one trial is more than limits.tasks ({self.limits.tasks:,}); "
                "the host holds every task's result in memory; use fewer or raise limits.tasks",
            )

    def fail(self, key: str, problem: str) -> NoReturn:
        raise ConfigError(self.path, key, problem)

    def known_keys(self, mapping: dict, known: tuple | set, prefix: str):
        for key in mapping:
            if not isinstance(key, str) or key not in known:
                hint = difflib.get_close_matches(str(key), list(known), n=1)
                suggestion = (
                    f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(sorted(known))}"
                )
                # quoted when it would not show: an empty key, or one with spaces around it
                shown = show(key) if not isinstance(key, str) or not key or key.strip() != key else clip(key)
                self.fail(f"{prefix}{shown}", f"unknown key{suggestion}")

    def integer(self, value: Any, key: str, minimum: int, maximum: int = INT32_MAX) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(key, f"must be an integer, got {kind(value)} {show(value)}")
        if value < minimum:
            what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
            self.fail(key, f"must be {what}, got {value}")
        if value > maximum:  # the store keeps it in a fixed-width column: refuse now, not at the first write
            self.fail(key, f"must be at most {maximum}, got {value}")
        return value

    def number(self, value: Any, key: str, maximum: float) -> float:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            self.fail(key, f"must be a positive number of seconds, got {show(value)}")
        if not value <= maximum:  # inf too: select() and Event.wait() overflow on a huge timeout
            self.fail(
                key,
                f"must be at most {maximum:,.0f} seconds ({maximum / 86400:.0f} days), got {show(value)}",
            )
        return float(value)

    def axis_values(self, axis: str, raw: Any, key: str, sizes: dict | None = None) -> list:
        """The values of one axis (a scalar is a one-value axis), each checked, none listed twice.

        ``sizes`` collects per-workload size axes (``{workload: ..., size: [...]}`` entries);
        None where such entries are not allowed (exclude, include).
        """
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            self.fail(key, "is empty: an empty axis makes an empty matrix")
        check = getattr(self, f"_{axis}_value")
        out: list = []
        seen: set = set()  # checked values are hashable: a set keeps a long axis linear
        for i, value in enumerate(values):
            k = f"{key}[{i}]" if isinstance(raw, list) else key
            value = check(value, k, sizes)
            if value in seen:
                self.fail(k, f"{show(value)} is listed twice")
            seen.add(value)
            out.append(value)
        return out

    def _workload_value(self, value: Any, key: str, sizes: dict | None) -> str:
        if isinstance(value, dict) and sizes is not None:
            # {workload: module:function, size: [...]}: sizes that suit this workload alone
            self.known_keys(value, ("workload", "size"), f"{key}.")
            if "workload" not in value:
                self.fail(f"{key}.workload", "is required")
            if "size" in value and isinstance(value["workload"], str):
                sizes[value["workload"]] = tuple(self.axis_values("size", value["size"], f"{key}.size"))
            value = value["workload"]
        if not isinstance(value, str) or not _WORKLOAD_RE.match(value):
            self.fail(key, f"must be 'module:function' or {{workload: ..., size: [...]}}, got {show(value)}")
        return value

    def _backend_value(self, value: Any, key: str, sizes: dict | None) -> str:
        if not isinstance(value, str) or value not in BACKENDS:
            hint = difflib.get_close_matches(str(value), BACKENDS, n=1)
            more = f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(BACKENDS)}"
            self.fail(key, f"unknown backend {show(value)}{more}")
        return value

    def _workers_value(self, value: Any, key: str, sizes: dict | None) -> int:
        return self.integer(value, key, minimum=1)

    def worker_count(self, workers: int, key: str) -> None:
        """Workers within ``limits.workers``: each is a thread or a forked process, started at once."""
        if workers > self.limits.workers:
            self.fail(
                key,
                f"{workers:,} workers is more than limits.workers ({self.limits.workers:,}: "
                f"{WORKERS_PER_CPU} per CPU here unless raised); use fewer or raise limits.workers",
            )

    def _tasks_value(self, value: Any, key: str, sizes: dict | None) -> int:
        self.integer(value, key, minimum=1)
        self.task_count(value, key)
        return value

    def _tasks_per_worker_value(self, value: Any, key: str, sizes: dict | None) -> int:
        return self.integer(value, key, minimum=1)

    def _size_value(self, value: Any, key: str, sizes: dict | None) -> Size:
        # "auto": calibrated before the sweep runs (conc_lab.run.calibration)
        if value != AUTO and (
            not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= INT64_MAX
        ):
            self.fail(key, f"must be an integer >= 0 or 'auto', got {kind(value)} {show(value)}")
        return value

    def _python_value(self, value: Any, key: str, sizes: dict | None) -> str | None:
        if value is not None and (not isinstance(value, str) or not value):
            self.fail(key, f"must be an interpreter name or path, got {show(value)}")
        return value
