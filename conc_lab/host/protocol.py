"""The runner ⇄ trial host contract: the one place both sides take their names from.

The parent (``conc_lab.run.trial_host``, ``conc_lab.run.executor``) and the child
(``python -m conc_lab.host``) speak JSON lines over the host's stdin and stdout::

    host   -> runner  {"op": "hello", ...interpreter facts (HELLO_FACTS)...}
    runner -> host    {"op": "run", "trial": {...Trial.params(), "cores": [...]}}
    host   -> runner  {"ok": true, "outcome": {...OUTCOME_FIELDS...}}
                      {"ok": false, "error": "...", "traceback": "..."}
    runner -> host    {"op": "reference", "trial": {...}}   (sequential, untimed)
    runner -> host    {"op": "exit"}                        (the host exits)

A task record crosses the pipe as a positional list (compact: a trial may have 10^4
tasks), in ``TASK_RECORD_FIELDS`` order; ``task_record`` turns one into the dict the
schema stores.

Standard library only, Python 3.8 syntax: the host imports this under any interpreter.

>>> task_record([3, 1, 0, 0, 4242, None, 0.5, 0.75])["pid"]
4242
>>> request(RUN, {"workload": "m:f"}) == {"op": "run", "trial": {"workload": "m:f"}}
True
"""

import os

# -- ops ----------------------------------------------------------------------------------
HELLO = "hello"  # the host's first line: who it is
RUN = "run"  # run a trial, timed
REFERENCE = "reference"  # run a trial sequentially and untimed, for its answer
EXIT = "exit"  # finish and exit

# -- message keys ------------------------------------------------------------------------
OP = "op"
TRIAL = "trial"  # a request's trial: Trial.params() plus "cores"
CORES = "cores"  # list of cores, one per worker, or None: don't pin
OK = "ok"  # a reply's flag: the host handled the request (the trial itself may have failed)
OUTCOME = "outcome"
ERROR = "error"
TRACEBACK = "traceback"

# -- outcome statuses (the same strings as conc_lab.schema's; a test keeps them equal) ----
STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_TIMEOUT = "timeout"
STATUS_SKIPPED = "skipped"

# -- an outcome's fields -----------------------------------------------------------------
#: Measured fields an outcome carries that go into the row as they are.
MEASURED_FIELDS = (
    "run_s",
    "setup_s",
    "cpu_user_s",
    "cpu_sys_s",
    "peak_rss_bytes",
    "checksum",
    "observed",
    "own_gil",  # subinterpreters: whether each interpreter had its own GIL
    "teardown_s",  # joining / closing the workers after the last task
    "left_behind",  # what the trial left in the host (host.hygiene), as one line; None when nothing
    "foreign_cpu",  # noise around the run (host.noise): share of its cores others used
    "steal_cpu",  # ... and the hypervisor stole
    "involuntary_switches",  # the workers' task loops', summed
    "canary_before_s",  # the speed canary on the run's cores before the run (CPU seconds)
    "canary_after_s",  # ... and after it
)
STATUS = "status"
TASK_RECORDS = "task_records"  # positional lists, see TASK_RECORD_FIELDS
CHECKABLE = "checkable"  # false: the workload's answer is not compared with sequential
GIL_ENABLED = "gil_enabled"  # the GIL's state during the run (a free-threaded build may re-enable it)
LEFT_BEHIND = "left_behind"  # in an outcome (or a failed reply): what the trial left in the host
#: In a reply: the trial left the host in a state it cannot undo (a thread still running); the
#: host exits after answering, and the next request goes to a fresh one.
RETIRE = "retire"
OUTCOME_FIELDS = (STATUS, ERROR) + MEASURED_FIELDS + (CORES, TASK_RECORDS, CHECKABLE, GIL_ENABLED)

#: One task unit's record, in the order it crosses the pipe (the schema's TASK_TYPE fields).
TASK_RECORD_FIELDS = ("task", "worker", "core", "cpu", "pid", "node", "start_s", "end_s")

#: Interpreter facts of the hello line that go into every row the host's trials make.
HELLO_FACTS = ("hostname", "python_version", "python_impl", "gil_enabled", "free_threaded")

# -- environment variables the parent sets for the child ---------------------------------
PATH_ENV = "CONCLAB_PATH"  # os.pathsep-separated folders workloads import from
PARENT_FD_ENV = "CONCLAB_PARENT_FD"  # read end of the lifeline pipe (see host.__main__._watch_parent)
RAY_ADDRESS_ENV = "CONCLAB_RAY_ADDRESS"  # the Ray runtime ray trials join
RAY_NODE_ENV = "CONCLAB_RAY_NODE"  # the Ray node a cluster node's ray trials stay on
#: Comma-separated pids whose process trees are the sweep's own besides the host's: the Ray
#: runtime the runner started (host.noise leaves their CPU time out of the foreign share).
SWEEP_PIDS_ENV = "CONCLAB_SWEEP_PIDS"
#: Native libraries (BLAS, OpenMP) sized to one pinned core per worker, so they don't oversubscribe.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def request(op, trial=None):
    """A request message; ``trial`` for ``run`` and ``reference``."""
    message = {OP: op}
    if trial is not None:
        message[TRIAL] = trial
    return message


def task_record(values):
    """One positional task record as a dict keyed by ``TASK_RECORD_FIELDS``."""
    return dict(zip(TASK_RECORD_FIELDS, values))


def search_path(environ):
    """The workload folders the parent passed in ``PATH_ENV``."""
    return [p for p in environ.get(PATH_ENV, "").split(os.pathsep) if p]
