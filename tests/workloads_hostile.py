"""Workloads that change or abuse the process they run in, for tests/test_hostile_host.py.

Unlike tests/workloads_faulty.py, most of them *succeed*: their answer is right, and what
they do wrong is to leave something behind in the trial host (an affinity, a thread, a
child process, a closed fd) that would change a later, innocent trial. ``probe`` is that
innocent trial: its ``observe`` hook reports the state its host ran it in.
They live with the tests; a sweep reaches them as ``workloads_hostile:<name>`` with tests/
on its search path.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

#: Marks the processes a test started, so it can find (and count) survivors by their command line.
MARKER_ENV = "CONCLAB_TEST_MARKER"


def _work(task: int, size: int) -> int:
    total = 0
    for i in range(task * size, (task + 1) * size):
        total += i * i
    return total


def probe(task: int, size: int) -> int:
    """The innocent trial: does honest work; ``observe`` tells the host's state around it."""
    return _work(task, size)


def _observe_probe() -> dict:
    return {
        "affinity": sorted(os.sched_getaffinity(0)),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "cwd": os.getcwd(),
        "leaked_env": os.environ.get("CONCLAB_TEST_LEAK"),
        "perf_counter_is_builtin": type(time.perf_counter).__name__ == "builtin_function_or_method",
        "threads": sorted(t.name for t in threading.enumerate()),
        "pid": os.getpid(),
    }


probe.observe = _observe_probe


def probe_again(task: int, size: int) -> int:
    """``probe`` under another name, for a matrix that runs it before and after a guilty trial."""
    return _work(task, size)


probe_again.observe = _observe_probe


def sets_affinity(task: int, size: int) -> int:
    """Pins its whole process (the host, when it runs there) to CPU 0 and leaves it so."""
    os.sched_setaffinity(os.getpid(), {0})
    return _work(task, size)


def changes_state(task: int, size: int) -> int:
    """Raises its nice value, moves to /, sets an environment variable, patches time.perf_counter."""
    os.setpriority(os.PRIO_PROCESS, 0, 5)
    os.chdir("/")
    os.environ["CONCLAB_TEST_LEAK"] = "1"
    time.perf_counter = lambda: 0.0
    return _work(task, size)


def _spin():
    while True:
        pass


def leaves_spinning_thread(task: int, size: int) -> int:
    """Starts a daemon thread that spins for ever: every later trial in its process runs slower."""
    if not any(t.name == "hostile-spinner" for t in threading.enumerate()):
        threading.Thread(target=_spin, name="hostile-spinner", daemon=True).start()
    return _work(task, size)


def closes_stdio(task: int, size: int) -> int:
    """Closes fds 0, 1 and 2 of its process: later spawn/forkserver pools fail (fds_to_keep)."""
    for fd in (0, 1, 2):
        try:
            os.close(fd)
        except OSError:
            pass
    return _work(task, size)


def forks_sleeper(task: int, size: int) -> int:
    """os.fork()s a child that sleeps a minute (holding whatever fds it inherited), then returns."""
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
    return _work(task, size)


def forks_then_exits(task: int, size: int) -> int:
    """os.fork()s a sleeping child, then leaves its own process with os._exit(3)."""
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
    os._exit(3)


def leaves_session(task: int, size: int) -> int:
    """Starts a sleeper in a session of its own (out of the host's process group) and returns."""
    subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(300)", os.environ.get(MARKER_ENV, "hostile")],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return _work(task, size)


def leaves_nondaemon_thread(task: int, size: int) -> int:
    """Starts a non-daemon thread that waits for ever: its process cannot finish shutting down."""
    threading.Thread(target=threading.Event().wait, name="hostile-waiter").start()
    return _work(task, size)


def noisy_stderr(task: int, size: int) -> int:
    """Writes 1 MiB to stderr, then a marker line naming the task, then fails."""
    for _ in range(1024):
        sys.stderr.write("n" * 1023 + "\n")
    sys.stderr.write(f"LAST LINE OF TASK {task}\n")
    sys.stderr.flush()
    raise RuntimeError("noisy_stderr fails on purpose")


def returns_string_set(task: int, size: int) -> set:
    """A set of strings: its iteration order depends on the process's hash seed."""
    return {f"item-{task}-{i}" for i in range(200)}


def returns_mixed_keys(task: int, size: int) -> dict:
    """A dict whose keys are of mixed types: JSON with sorted keys cannot encode it."""
    return {task: "int key", "name": ["str key", {"a", "b"}]}


def returns_lambda(task: int, size: int):
    """A function object: no checksum can compare it."""
    return lambda: task


def returns_generator(task: int, size: int):
    """A generator: no checksum can compare it."""
    return (i for i in range(task))


#: "PIDS:CALLS": the pids of stopped busy-loop processes and the comma-separated numbers of the calls of
#: ``competed`` (0, 1, 2, ... in this host) during which it runs; see tests/test_noise.py.
COMPETITOR_ENV = "CONCLAB_TEST_COMPETITOR"
_competed_calls = [0]


def _competitor():
    pids, _, calls = os.environ[COMPETITOR_ENV].partition(":")
    return [int(p) for p in pids.split(",")], {int(c) for c in calls.split(",") if c}


def competed(task: int, size: int) -> int:
    """Honest work; its ``prepare`` lets a competing busy loop run during chosen calls."""
    return _work(task, size)


def _let_competitor_run():
    pids, calls = _competitor()
    call = _competed_calls[0]
    _competed_calls[0] += 1
    if call in calls:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)  # it is running before the trial's canary and counters start


def _stop_competitor():
    for pid in _competitor()[0]:
        os.kill(pid, signal.SIGSTOP)


competed.prepare = _let_competitor_run
competed.observe = _stop_competitor


def _trace(frame, event, arg):
    return _trace


def slowed_at_the_end(task: int, size: int) -> int:
    """Honest work, but as its last task ends every line of Python in its thread gets slower.

    No test can make the hypervisor run this machine slower; a trace function left installed
    slows the same reference loop in CPU time just as well, which is what the canary sees.
    """
    result = _work(task, size)
    if task == SLOWED_TASK:
        sys.settrace(_trace)
    return result


SLOWED_TASK = 1
