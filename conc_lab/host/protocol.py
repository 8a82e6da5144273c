"""The runner ⇄ trial host contract: the one place both sides take their names from.

The parent (``conc_lab.run.trial_host``, ``conc_lab.run.executor``) and the child
(``python -m conc_lab.host``) speak JSON lines over the host's stdin and stdout::

    host   -> runner  {"op": "hello", "version": 2, "secret": "...", ...facts (HELLO_FACTS)...}
    runner -> host    {"op": "run", "id": 7, "trial": {...Trial.params(), "cores": [...]}}
    host   -> runner  {"id": 7, "secret": "...", "ok": true, "outcome": {...OUTCOME_FIELDS...}}
                      {"id": 7, "secret": "...", "ok": false, "error": "...", "traceback": "..."}
    runner -> host    {"op": "reference", ...}   (sequential, untimed)
    runner -> host    {"op": "exit", ...}        (the host exits)

Each run happens in a child forked for it alone, which holds neither pipe (``host.fork``).
A run's process can still reach them through /proc, so every reply carries its request's id
and the secret the host made at start (which no run's process keeps a copy of): a line it
forged into the reply pipe fails ``check_reply``, and a line it forged into the request pipe
is there when the run ends, where the runner never writes. Either way the run fails and the
host is retired; later runs keep their own results.

A task record crosses the pipe as a positional list (compact: a trial may have 10^4
tasks), in ``TASK_RECORD_FIELDS`` order; ``task_record`` turns one into the dict the
schema stores.

Standard library only, Python 3.8 syntax: the host imports this under any interpreter.

>>> task_record([3, 1, 0, 0, 4242, None, 0.5, 0.75])["pid"]
4242
>>> request(RUN, {"workload": "m:f"}) == {"op": "run", "trial": {"workload": "m:f"}}
True
>>> outcome(status=STATUS_OK, run_s=0.5)[RUN_S]
0.5
>>> outcome(runs=1)
Traceback (most recent call last):
...
KeyError: 'not outcome fields: runs'
"""

import os

#: Bumped whenever a message changes shape: a runner and a host of different conc_labs (a cluster
#: node with another install) refuse each other in one line instead of misreading each other.
PROTOCOL_VERSION = 2

# -- ops ----------------------------------------------------------------------------------
HELLO = "hello"  # the host's first line: who it is
RUN = "run"  # run a trial, timed
REFERENCE = "reference"  # run a trial sequentially and untimed, for its answer
EXIT = "exit"  # finish and exit

# -- backend names: the matrix's ``backend`` values, spelled here and nowhere else ------------
# (the host registers its backends under them; config, plan, run, analysis and present compare
# against them; tests/test_architecture.py fails on a backend name retyped as a literal elsewhere)
SEQUENTIAL = "sequential"  # the baseline: one task after another, one core
THREADING = "threading"
MULTIPROCESSING = "multiprocessing"
RAY = "ray"
ASYNCIO = "asyncio"
SUBINTERPRETERS = "subinterpreters"
#: Every backend, in the order a reader expects them: the baseline first.
BACKENDS = (SEQUENTIAL, THREADING, MULTIPROCESSING, RAY, ASYNCIO, SUBINTERPRETERS)
#: The start method of a multiprocessing trial that names none: what the host runs it with, and
#: what its rows store.
DEFAULT_START_METHOD = "fork"

# -- message keys ------------------------------------------------------------------------
OP = "op"
VERSION = "version"  # the hello's PROTOCOL_VERSION
SECRET = "secret"  # the host's per-start secret, in its hello and in every reply
ID = "id"  # a request's number, echoed by its reply
TRIAL = "trial"  # a request's trial: Trial.params() plus "cores"
CORES = "cores"  # list of cores, one per worker, or None: don't pin
#: In a run's trial: its process calls the workload once first, untimed (a warm process, see host.trial).
PRIME = "prime"
OK = "ok"  # a reply's flag: the host handled the request (the trial itself may have failed)
OUTCOME = "outcome"
ERROR = "error"
TRACEBACK = "traceback"

# -- outcome statuses (the same strings as conc_lab.schema's; a test keeps them equal) ----
STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_TIMEOUT = "timeout"
STATUS_SKIPPED = "skipped"

# -- an outcome's fields: one constant each -------------------------------------------------
STATUS = "status"
RUN_S = "run_s"
SETUP_S = "setup_s"
TEARDOWN_S = "teardown_s"  # joining / closing the workers after the last task
CPU_USER_S = "cpu_user_s"
CPU_SYS_S = "cpu_sys_s"
PEAK_RSS_BYTES = "peak_rss_bytes"
CHECKSUM = "checksum"
OBSERVED = "observed"
OWN_GIL = "own_gil"  # subinterpreters: whether each interpreter had its own GIL
LEFT_BEHIND = (
    "left_behind"  # what the run tried to leave in its process (host.state), one line; None: nothing
)
FOREIGN_CPU = "foreign_cpu"  # noise around the run (host.noise): share of its cores others used
STEAL_CPU = "steal_cpu"  # ... and the hypervisor stole
INVOLUNTARY_SWITCHES = "involuntary_switches"  # the workers' task loops', summed
CPU_WAIT_S = "cpu_wait_s"  # seconds the workers' task loops were ready to run but waited for a CPU, summed
CANARY_BEFORE_S = "canary_before_s"  # the speed canary on the run's cores before the run (CPU seconds)
CANARY_AFTER_S = "canary_after_s"  # ... and after it (None: a short run, see noise.CANARY_MIN_RUN_S)
TASK_RECORDS = "task_records"  # positional lists, see TASK_RECORD_FIELDS
CHECKABLE = "checkable"  # false: the workload's answer is not compared with sequential
GIL_ENABLED = "gil_enabled"  # the GIL's state during the run (a free-threaded build may re-enable it)
#: Seconds the host timed the run from outside (fork to reply): no clock the workload can reach.
OUTSIDE_S = "outside_s"
#: Canary readings a run's process measured fresh ([core, seconds] pairs): child to host only.
CANARY_READINGS = "canary_readings"
#: Seconds a run's process timed itself, by the clock the workload can reach, from its first frame
#: (sent before any of the workload's code) to its reply: child to host only, where the host's own
#: time between the two frames is set beside it (``clock_problem``).
SPAN_S = "span_s"
#: The end of what a failed run's host wrote to stderr: added by the runner's side (run/hosts.py),
#: which reads the host's stderr; never sent by a host.
STDERR_TAIL = "stderr_tail"

#: Measured fields an outcome carries that go into the row as they are.
MEASURED_FIELDS = (
    RUN_S,
    SETUP_S,
    CPU_USER_S,
    CPU_SYS_S,
    PEAK_RSS_BYTES,
    CHECKSUM,
    OBSERVED,
    OWN_GIL,
    TEARDOWN_S,
    LEFT_BEHIND,
    FOREIGN_CPU,
    STEAL_CPU,
    INVOLUNTARY_SWITCHES,
    CPU_WAIT_S,
    CANARY_BEFORE_S,
    CANARY_AFTER_S,
    OUTSIDE_S,
)
#: Durations no honest clock makes negative, and that must fit in the outside time.
INSIDE_DURATIONS = (SETUP_S, RUN_S, TEARDOWN_S)
#: In a reply: the host is unusable after answering (a forged request reached it); it exits, and
#: the next request goes to a fresh one.
RETIRE = "retire"
OUTCOME_FIELDS = (
    (STATUS, ERROR)
    + MEASURED_FIELDS
    + (CORES, TASK_RECORDS, CHECKABLE, GIL_ENABLED, CANARY_READINGS, STDERR_TAIL)
)
_OUTCOME_SET = frozenset(OUTCOME_FIELDS)


def outcome(**fields):
    """An outcome dict; a key that is not one of ``OUTCOME_FIELDS`` is a KeyError, not a silent column."""
    unknown = set(fields) - _OUTCOME_SET
    if unknown:
        raise KeyError("not outcome fields: %s" % ", ".join(sorted(unknown)))
    return fields


def check_outcome(out):
    """``out`` itself; a KeyError when a backend added a key that is not an outcome field."""
    unknown = set(out) - _OUTCOME_SET
    if unknown:
        raise KeyError("not outcome fields: %s" % ", ".join(sorted(unknown)))
    return out


# -- the size calibrator's lines (host.calibrate -> run.calibration) ----------------------------
CAL_STEP = "step"  # a timed step: the size tried
CAL_SECONDS = "seconds"  # one task's time at that size
CAL_ELAPSED = "elapsed"  # calibration time so far
CAL_SIZE = "size"  # the answer: the size chosen
CAL_STOPPED = "stopped"  # why growth stopped below the target
CAL_ERROR = ERROR  # the workload cannot be calibrated

#: One task unit's record, in the order it crosses the pipe (the schema's TASK_TYPE fields).
TASK_RECORD_FIELDS = ("task", "worker", "core", "cpu", "pid", "node", "start_s", "end_s")

#: Interpreter facts of the hello line that go into every row the host's trials make.
HELLO_FACTS = ("hostname", "python_version", "python_impl", "gil_enabled", "free_threaded")

# -- environment variables the parent sets for the child ---------------------------------
PATH_ENV = "CONCLAB_PATH"  # os.pathsep-separated folders workloads import from
PARENT_FD_ENV = "CONCLAB_PARENT_FD"  # read end of the lifeline pipe (see host.__main__._watch_parent)
#: The pid of the conc_lab process that started this child (``run.trial_host.child_env``): a child
#: that calls a workload outside a trial host (calibration, advise's probe) dies with it
#: (``hygiene.die_with_parent``), not left computing a call at a huge size after a kill -9.
PARENT_PID_ENV = "CONCLAB_PARENT_PID"
#: A mark unique to one trial host, in its environment and so in every process it and its runs start
#: (unless one clears its environment): what the runner kills with a host that died, whose orphans
#: left its process tree.
HOST_MARK_ENV = "CONCLAB_HOST_MARK"
RAY_ADDRESS_ENV = "CONCLAB_RAY_ADDRESS"  # the Ray runtime ray trials join
RAY_NODE_ENV = "CONCLAB_RAY_NODE"  # the Ray node a cluster node's ray trials stay on
#: Comma-separated pids whose process trees are the sweep's own besides the host's: the Ray
#: runtime the runner started (host.noise leaves their CPU time out of the foreign share).
SWEEP_PIDS_ENV = "CONCLAB_SWEEP_PIDS"
#: Set (to 1) for benchmarks/bench_trial_path.py only: the host runs every request in itself, under
#: the after-run guard, as it did before runs had processes of their own; the split with and without.
IN_PROCESS_ENV = "CONCLAB_HOST_IN_PROCESS"
#: Native libraries (BLAS, OpenMP) sized to one pinned core per worker, so they don't oversubscribe.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def request(op, trial=None, request_id=None):
    """A request message; ``trial`` for ``run`` and ``reference``; ``request_id`` its number."""
    message = {OP: op}
    if trial is not None:
        message[TRIAL] = trial
    if request_id is not None:
        message[ID] = request_id
    return message


def check_reply(reply, request_id, secret):
    """None when ``reply`` answers request ``request_id`` of the host with ``secret``, else why not.

    >>> check_reply({ID: 3, SECRET: "s", OK: True}, 3, "s") is None
    True
    >>> check_reply({ID: 2, SECRET: "s", OK: True}, 3, "s")
    'the trial host answered request 2 while request 3 was waiting (a forged or shifted reply)'
    >>> check_reply({OK: True, OUTCOME: {}}, 3, "s")
    "the trial host's reply line lacks its secret (a forged line: another process wrote into its pipe)"
    """
    if not isinstance(reply, dict) or reply.get(SECRET) != secret:
        return "the trial host's reply line lacks its secret (a forged line: another process wrote into its pipe)"
    if reply.get(ID) != request_id:
        return (
            "the trial host answered request %s while request %s was waiting (a forged or shifted reply)"
            % (
                reply.get(ID),
                request_id,
            )
        )
    return None


#: Slack for rounding when inside times are compared with the time taken around them.
TIME_SLACK_S = 1e-4


def time_problem(out, outside, what):
    """Why ``out``'s own durations cannot be true (negative, not finite, longer than ``outside``), or None.

    ``outside``: seconds timed around the run by a process the workload cannot reach; ``what``
    says who timed it, for the message.

    >>> time_problem({RUN_S: 0.2, SETUP_S: 0.01}, 0.5, "the host timed") is None
    True
    >>> time_problem({RUN_S: 0.6}, 0.5, "the host timed")
    'setup_s + run_s + teardown_s is 0.6 s, longer than the 0.5 s the host timed (its clock was rewired?)'
    """
    total = 0.0
    for key in INSIDE_DURATIONS:
        value = out.get(key)
        if value is None:
            continue
        if not isinstance(value, (int, float)) or value != value or value in (float("inf"), float("-inf")):
            return "%s is %r: not a finite number of seconds (its clock was rewired?)" % (key, value)
        if value < 0:
            return "%s is %.3g s: a run cannot take negative time (its clock was rewired?)" % (key, value)
        total += value
    if outside is not None and total > outside + TIME_SLACK_S:
        return (
            "setup_s + run_s + teardown_s is %.3g s, longer than the %.3g s %s (its clock was rewired?)"
            % (
                total,
                outside,
                what,
            )
        )
    return None


def fail_times(out, problem):
    """Fail outcome ``out`` for ``problem`` (a ``time_problem`` or ``clock_problem``), dropping its
    inside durations: no clock the workload could rewire becomes a number.

    >>> fail_times({"status": "ok", "run_s": -1.0}, "run_s is -1 s")
    {'status': 'failed', 'run_s': None, 'error': 'run_s is -1 s', 'setup_s': None, 'teardown_s': None}
    """
    out[STATUS], out[ERROR] = STATUS_FAILED, problem
    for key in INSIDE_DURATIONS:
        out[key] = None
    return out


#: A run's own clock may fall behind the host's by this share of the span, plus CLOCK_SLACK_S, before
#: the run is failed: the host wakes for the reply a little late (a few ms; 100 ms under heavy load).
CLOCK_SLACK_SHARE = 0.25
CLOCK_SLACK_S = 0.1


def clock_problem(inside, outside):
    """Why a run's clock cannot be true, when it timed ``inside`` seconds between its first frame and
    its reply where the host timed ``outside``: it ran slow (rewired in C, where no Python-level
    check sees it), or it is not a number; None when the two agree.

    >>> clock_problem(0.6001, 0.6012) is None
    True
    >>> clock_problem(0.0005, 0.6012)
    "the run's clock read 0.0005 s between its first frame and its reply, where the host timed 0.601 s (its clock was rewired?)"
    """
    if not isinstance(inside, (int, float)) or inside != inside or inside in (float("inf"), float("-inf")):
        return "the run's clock gave %r for its own span: not a finite number (its clock was rewired?)" % (
            inside,
        )
    if inside >= outside * (1 - CLOCK_SLACK_SHARE) - CLOCK_SLACK_S:
        return None
    return (
        "the run's clock read %.3g s between its first frame and its reply, where the host timed %.3g s"
        " (its clock was rewired?)" % (inside, outside)
    )


def version_problem(hello):
    """None when a host's ``hello`` speaks this PROTOCOL_VERSION, else one line saying what differs.

    >>> version_problem({OP: HELLO, VERSION: PROTOCOL_VERSION}) is None
    True
    >>> version_problem({OP: HELLO, "executable": "/usr/bin/python3"})
    'the trial host (/usr/bin/python3) speaks protocol 1, this runner 2: install the same conc_lab on both'
    """
    theirs = hello.get(VERSION, 1) if isinstance(hello, dict) else None
    if theirs == PROTOCOL_VERSION:
        return None
    where = hello.get("executable", "?") if isinstance(hello, dict) else "?"
    return "the trial host (%s) speaks protocol %s, this runner %s: install the same conc_lab on both" % (
        where,
        theirs,
        PROTOCOL_VERSION,
    )


def task_record(values):
    """One positional task record as a dict keyed by ``TASK_RECORD_FIELDS``."""
    return dict(zip(TASK_RECORD_FIELDS, values))


def search_path(environ):
    """The workload folders the parent passed in ``PATH_ENV``."""
    return [p for p in environ.get(PATH_ENV, "").split(os.pathsep) if p]
