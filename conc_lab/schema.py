"""The Parquet schema of a trial run: the one place that names result columns.

One row is one run of one trial (a repeat). The environment that is the same for the
whole sweep (CPU model, conc_lab version, config hash, ...) lives in the sweep's
manifest and in each Parquet file's metadata; ``store.load`` joins it back as columns
(``ENV_COLUMNS``). Columns that can differ between trials of one sweep (the node, the
interpreter) are row columns.

Bump ``SCHEMA_VERSION`` on any incompatible change; ``store.load`` refuses files whose
version it does not know.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pyarrow.json as pa_json

SCHEMA_VERSION = 1

#: One struct per task unit of a trial: who ran it, where, and when.
TASK_TYPE = pa.struct(
    [
        ("task", pa.int32()),  # task index, 0 .. tasks-1
        ("worker", pa.int32()),  # worker index, 0 .. workers-1
        ("core", pa.int32()),  # core the worker was pinned to, -1 when not pinned
        ("cpu", pa.int32()),  # CPU the task was last seen running on (/proc), -1 if unknown
        ("pid", pa.int64()),
        ("node", pa.string()),  # Ray node id for the ray backend, else null
        ("start_s", pa.float64()),  # seconds since the run started (monotonic clock)
        ("end_s", pa.float64()),
    ]
)

#: Trial parameters: each matrix axis is its own typed column.
PARAM_FIELDS = [
    pa.field("workload", pa.string(), nullable=False),
    pa.field("backend", pa.string(), nullable=False),
    pa.field("workers", pa.int32(), nullable=False),
    pa.field("tasks", pa.int32(), nullable=False),
    # ``size`` is also DataFrame.size (the cell count): read it as df["size"]; kept, as every config says size.
    pa.field("size", pa.int64(), nullable=False),
    pa.field("start_method", pa.string()),  # multiprocessing only
    pa.field("python", pa.string()),  # interpreter asked for; null = the one conc_lab runs under
    pa.field("affinity", pa.string(), nullable=False),  # compact | spread | none | explicit
    pa.field("options", pa.string()),  # other backend options as canonical JSON
]

SCHEMA = pa.schema(
    [
        pa.field("sweep_id", pa.string(), nullable=False),
        pa.field("sweep_name", pa.string(), nullable=False),
        pa.field("trial_id", pa.string(), nullable=False),
        *PARAM_FIELDS,
        pa.field("repeat", pa.int32(), nullable=False),
        pa.field("status", pa.string(), nullable=False),  # ok | failed | timeout | skipped
        pa.field("error", pa.string()),
        pa.field("started_at", pa.timestamp("us", tz="UTC")),
        pa.field("run_s", pa.float64()),  # wall time of the work itself
        pa.field("setup_s", pa.float64()),  # pool / worker start-up, apart from run_s
        pa.field("cpu_user_s", pa.float64()),  # summed over the trial's workers, run phase
        pa.field("cpu_sys_s", pa.float64()),
        pa.field("peak_rss_bytes", pa.int64()),  # host peak during the run + each worker process's peak
        pa.field("pinned", pa.bool_()),
        pa.field("cores", pa.list_(pa.int32())),  # cores the workers were pinned to
        pa.field("task_records", pa.list_(TASK_TYPE)),
        pa.field("checksum", pa.string()),  # sha256 of the ordered task results
        pa.field("correct", pa.bool_()),  # checksum == sequential reference; null if not checkable
        # What the parent process saw after the run (JSON of the workload's fn.observe() hook, e.g.
        # experiments.memory: lost updates, a worker's write seen or not); null for workloads without one.
        pa.field("observed", pa.string()),
        pa.field("hostname", pa.string()),
        pa.field("node_id", pa.string()),  # Ray node id in cluster sweeps, else null
        pa.field("python_version", pa.string()),
        pa.field("python_impl", pa.string()),
        pa.field("gil_enabled", pa.bool_()),  # sys._is_gil_enabled() where it exists, else true for CPython
        pa.field("free_threaded", pa.bool_()),  # built with Py_GIL_DISABLED
        # subinterpreters backend: every worker's interpreter had a GIL of its own (PEP 684); else null
        pa.field("own_gil", pa.bool_()),
        # Joining / closing the workers after the last task; setup_s + run_s + teardown_s is what a
        # program using the backend pays end to end.
        pa.field("teardown_s", pa.float64()),
        # What the run left in its trial host (an affinity, a thread, a child process, ...): restored,
        # killed, or the host retired so that no later run measures it; null when nothing.
        pa.field("left_behind", pa.string()),
        pa.field("stderr_tail", pa.string()),  # the last 64 KiB the trial wrote to stderr, failed runs only
        # Noise during the run (host/noise.py): shares of the run's cores (all cores when unpinned)
        # that processes outside the sweep used, and that the hypervisor stole.
        pa.field("foreign_cpu", pa.float64()),
        pa.field("steal_cpu", pa.float64()),
        pa.field("involuntary_switches", pa.int64()),  # summed over the workers' task loops
        pa.field("cpu_wait_s", pa.float64()),  # ... and their wait for a CPU (schedstat's run_delay)
        pa.field("canary_before_s", pa.float64()),  # a fixed reference loop on the run's cores, before
        pa.field("canary_after_s", pa.float64()),  # ... and after the run
        pa.field("noisy", pa.bool_()),  # foreign CPU or the canary passed the config's noise limits
        pa.field("noise_note", pa.string()),  # why it is noisy, e.g. "others used 45% of its cores"
        # The run order (plan/runs.py): the interleaved round the run belonged to (its repeat, except
        # for the extra baseline runs of pairing: adjacent) and its position in that round's seeded
        # permutation; null in sweeps recorded before the order was.
        pa.field("round", pa.int32()),
        pa.field("slot", pa.int32()),
        # Seconds the trial host timed the run from outside (fork to reply): a clock the workload
        # cannot reach, which setup_s + run_s + teardown_s must fit in; null in sweeps recorded before.
        pa.field("outside_s", pa.float64()),
    ]
)

COLUMNS = SCHEMA.names
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# ``to_table`` reads timestamps (microseconds, as ``check_row`` takes them) as integers first.
_JSON_SCHEMA = pa.schema([f.with_type(pa.int64()) if pa.types.is_timestamp(f.type) else f for f in SCHEMA])
_JSON_PARSE = pa_json.ParseOptions(explicit_schema=_JSON_SCHEMA, unexpected_field_behavior="error")

# Run statuses: every module spells them through these names, never as literals.
OK = "ok"
FAILED = "failed"  # raised, crashed, wrong signature, its host died
TIMEOUT = "timeout"  # ran past timeout_s; its host was killed and replaced
SKIPPED = "skipped"  # never ran: an earlier run hung, or the interpreter lacks what it needs
REDONE = "redone"  # noisy, so run again (config noise.redo); kept, never counted as the run's result
STATUSES = (OK, FAILED, TIMEOUT, SKIPPED, REDONE)
#: Statuses that make a sweep's exit code 1.
FAILURES = (FAILED, TIMEOUT)

#: The trial-parameter columns, in order; ``matrix.Trial`` has a field for each.
PARAM_NAMES = [f.name for f in PARAM_FIELDS]

#: String columns worth storing as categoricals in a DataFrame: few distinct values, many rows.
CATEGORICAL_COLUMNS = [
    "sweep_id",
    "sweep_name",
    "workload",
    "backend",
    "start_method",
    "python",
    "affinity",
    "options",
    "status",
    "hostname",
    "node_id",
    "python_version",
    "python_impl",
]

#: True/false columns that may be null (``correct``: not checkable): pandas' nullable boolean in ``load``.
BOOLEAN_COLUMNS = [f.name for f in SCHEMA if pa.types.is_boolean(f.type)]

#: Sweep-level environment columns that ``load`` adds from each sweep's manifest.
ENV_COLUMNS = [
    "cpu_model",
    "logical_cores",
    "platform",
    "conclab_version",
    "config_hash",
    "config_path",
]


def empty_row() -> dict:
    """A row with every column present and null: rows are built from the schema, not the reverse."""
    return dict.fromkeys(COLUMNS)


class RowError(ValueError):
    """A row that does not fit the schema: an unknown column, a wrong type, a bad status."""


def safe_text(text: str) -> str:
    r"""``text`` as Parquet can store it: lone surrogates escaped, everything else kept.

    Workload text (error messages, observed values) may carry surrogates, e.g. a file name
    from ``os.fsdecode`` of non-UTF-8 bytes; Arrow refuses those, so they become ``\udcXX``.

    >>> safe_text("caf\udce9.txt")
    'caf\\udce9.txt'
    >>> safe_text("café")
    'café'
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _value_check(kind: pa.DataType):
    """A function that returns a value of Arrow type ``kind`` as stored, or raises TypeError."""
    if pa.types.is_string(kind):
        return lambda v: safe_text(v) if isinstance(v, str) else _wrong(v, "text")
    if pa.types.is_boolean(kind):
        return lambda v: v if isinstance(v, bool) else _wrong(v, "true/false")
    if pa.types.is_integer(kind):
        limit = 1 << (kind.bit_width - 1)
        return lambda v: v if type(v) is int and -limit <= v < limit else _wrong(v, f"an integer ({kind})")
    if pa.types.is_floating(kind):
        return lambda v: (
            v if isinstance(v, (int, float)) and not isinstance(v, bool) else _wrong(v, "a number")
        )
    if pa.types.is_timestamp(kind):
        return lambda v: v if type(v) is int or isinstance(v, datetime) else _wrong(v, "microseconds (int)")
    if pa.types.is_list(kind):
        item = _nullable_check(kind.value_type)
        return lambda v: [item(x) for x in v] if isinstance(v, (list, tuple)) else _wrong(v, "a list")
    if pa.types.is_struct(kind):
        fields = {f.name: _nullable_check(f.type) for f in kind}
        return lambda v: _struct(v, fields)
    raise NotImplementedError(kind)  # pragma: no cover - a new column type needs a check here


def _nullable_check(kind: pa.DataType):
    check = _value_check(kind)
    return lambda v: None if v is None else check(v)


def _struct(value, fields: dict) -> dict:
    if not isinstance(value, dict):
        _wrong(value, "a record")
    extra = value.keys() - fields.keys()
    if extra:
        raise TypeError(f"unknown fields {sorted(map(str, extra))}")
    return {name: check(value.get(name)) for name, check in fields.items()}


def _wrong(value, wanted: str):
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."  # never an unbounded repr in an error
    raise TypeError(f"{shown} ({type(value).__name__}) is not {wanted}")


_CHECKS = {f.name: (_value_check(f.type), f.nullable) for f in SCHEMA}
#: Columns that hold seconds something took: never negative, never NaN or infinite (issue #25).
DURATIONS = (
    "run_s",
    "setup_s",
    "teardown_s",
    "cpu_user_s",
    "cpu_sys_s",
    "canary_before_s",
    "canary_after_s",
    "outside_s",
    "cpu_wait_s",
)


def check_row(row: dict) -> dict:
    """The row as stored (text made safe), or ``RowError`` naming the column and the problem.

    Every row is checked before it is journaled, so a row that cannot be stored is refused
    alone, at once, and never spoils the batch it would have been sealed with.

    >>> row = empty_row() | dict(sweep_id="s", sweep_name="n", trial_id="t", workload="m:f",
    ...     backend="threading", workers=2, tasks=4, size=10, affinity="none", repeat=0, status="ok")
    >>> check_row(row)["workers"]
    2
    >>> check_row(row | {"size": "auto"})
    Traceback (most recent call last):
    ...
    conc_lab.schema.RowError: column size: 'auto' (str) is not an integer (int64)
    >>> check_row(row | {"status": "fine"})
    Traceback (most recent call last):
    ...
    conc_lab.schema.RowError: column status: 'fine' is not one of ok, failed, timeout, skipped, redone
    """
    if not isinstance(row, dict):
        raise RowError(f"a row is a dict of columns, not {type(row).__name__}")
    extra = row.keys() - _CHECKS.keys()
    if extra:
        raise RowError(f"unknown result columns: {sorted(map(str, extra))}")
    out = {}
    for name, (check, nullable) in _CHECKS.items():
        value = row.get(name)
        if value is None:
            if not nullable:
                raise RowError(f"column {name}: missing (null)")
            out[name] = None
            continue
        try:
            out[name] = check(value)
        except TypeError as exc:
            raise RowError(f"column {name}: {exc}") from None
    if out["status"] not in STATUSES:
        raise RowError(f"column status: {out['status']!r} is not one of {', '.join(STATUSES)}")
    for name in DURATIONS:
        value = out[name]
        if value is not None and not 0 <= value < math.inf:  # NaN fails both
            raise RowError(f"column {name}: {value!r} is not a duration (negative or not finite)")
    return out


def to_table(rows: list[dict], checked: bool = False) -> pa.Table:
    """Rows (dicts keyed by column) to a table with exactly ``SCHEMA``; a bad row is ``RowError``.

    ``checked``: the rows already passed ``check_row`` (the writer checks each on append).
    """
    if not checked:
        rows = [check_row(row) for row in rows]
    if not rows:
        return SCHEMA.empty_table()
    # Through Arrow's JSON reader, not ``pa.Table.from_pylist``: converting Python lists asks
    # pandas whether they are array-like, which imports it (0.15-0.4 s) into every sweep's first
    # seal; the reader is C++ alone. Checked rows are plain JSON values (text made safe, floats
    # as ``repr``, which Arrow reads back to the same double; NaN and Infinity too).
    dumps = json.JSONEncoder(separators=(",", ":"), default=_microseconds).encode
    lines = "".join(dumps(row) + "\n" for row in rows).encode()
    # One block holding every line: a block must hold the longest row whole, and the buffer is here.
    read = pa_json.ReadOptions(use_threads=False, block_size=len(lines) + 1)
    table = pa_json.read_json(pa.BufferReader(lines), read, _JSON_PARSE)
    columns = [c.cast(f.type) if c.type != f.type else c for c, f in zip(table.columns, SCHEMA)]
    return pa.Table.from_arrays(columns, schema=SCHEMA)  # the reader drops "not null"


def _microseconds(value: object) -> int:
    """A ``datetime`` as microseconds since the epoch (naive ones taken as UTC, as Arrow does)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{type(value).__name__} is not a column value")
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return (value - _EPOCH) // timedelta(microseconds=1)
