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

import pyarrow as pa

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
    ]
)

COLUMNS = SCHEMA.names

# Run statuses: every module spells them through these names, never as literals.
OK = "ok"
FAILED = "failed"  # raised, crashed, wrong signature, its host died
TIMEOUT = "timeout"  # ran past timeout_s; its host was killed and replaced
SKIPPED = "skipped"  # never ran: an earlier run hung, or the interpreter lacks what it needs
STATUSES = (OK, FAILED, TIMEOUT, SKIPPED)
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


def to_table(rows: list[dict]) -> pa.Table:
    """Rows (dicts keyed by column) to a table with exactly ``SCHEMA``; unknown keys are an error."""
    for row in rows:
        extra = set(row) - set(COLUMNS)
        if extra:
            raise ValueError(f"unknown result columns: {sorted(extra)}")
    return pa.Table.from_pylist(rows, schema=SCHEMA)
