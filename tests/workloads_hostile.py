"""Workloads that change or abuse the process they run in, for tests/test_hostile_host.py.

Unlike tests/workloads_faulty.py, most of them *succeed*: their answer is right, and what
they do wrong is to leave something behind in the trial host (an affinity, a thread, a
child process, a closed fd) that would change a later, innocent trial. ``probe`` is that
innocent trial: its ``observe`` hook reports the state its host ran it in.
They live with the tests; a sweep reaches them as ``workloads_hostile:<name>`` with tests/
on its search path.
"""

from __future__ import annotations

import json
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
        "tasks": len(os.listdir("/proc/self/task")),  # threads of any kind, _thread's too
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


#: "PIDS:CALLS:COUNTER": the pids of stopped busy-loop processes, the comma-separated numbers of the
#: calls of ``competed`` (0, 1, 2, ... in this sweep) during which it runs, and the file that counts
#: the calls (each run is a process of its own); see tests/test_noise.py.
COMPETITOR_ENV = "CONCLAB_TEST_COMPETITOR"


def _competitor():
    pids, calls, counter = os.environ[COMPETITOR_ENV].split(":", 2)
    return [int(p) for p in pids.split(",")], {int(c) for c in calls.split(",") if c}, counter


def _next_call(counter: str) -> int:
    try:
        with open(counter) as f:
            call = int(f.read() or 0)
    except FileNotFoundError:
        call = 0
    with open(counter, "w") as f:
        f.write(str(call + 1))
    return call


def competed(task: int, size: int) -> int:
    """Honest work; its ``prepare`` lets a competing busy loop run during chosen calls."""
    return _work(task, size)


def _let_competitor_run():
    pids, calls, counter = _competitor()
    if _next_call(counter) in calls:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        time.sleep(0.05)  # it is running before the trial's canary and counters start


def _stop_competitor():
    for pid in _competitor()[0]:
        os.kill(pid, signal.SIGSTOP)


competed.prepare = _let_competitor_run
competed.observe = _stop_competitor


def competed_naps(task: int, size: int) -> int:
    """Sleeps 50 ms a task, off the CPU; its ``prepare`` lets the competing loops run as ``competed``'s does."""
    time.sleep(0.05)
    return task


competed_naps.prepare = _let_competitor_run
competed_naps.observe = _stop_competitor


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


# -- issue #25: what a reused host could not see or undo ----------------------------------------


def _host_pipes() -> list[str]:
    """Paths that open the pipes of the trial host's protocol: this process's own pipe fds (other
    than stderr) and, when the parent is the trial host, the parent's (through /proc)."""
    paths = []
    owners = [os.getpid()]
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            if b"conc_lab.host" in f.read():
                owners.append(os.getppid())
    except OSError:
        pass
    for pid in owners:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            path = f"/proc/{pid}/fd/{fd}"
            try:
                if fd != "2" and os.readlink(path).startswith("pipe:"):
                    paths.append(path)
            except OSError:
                pass
    return paths


def forges_reply(task: int, size: int) -> int:
    """Writes a forged reply line, the answer of a slow run, into every pipe of the host it can open."""
    forged = {
        "ok": True,
        "outcome": {"status": "ok", "run_s": 0.6, "setup_s": 0.0, "checksum": "forged", "task_records": []},
    }
    for path in _host_pipes():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            os.write(fd, (json.dumps(forged) + "\n").encode())
        except OSError:
            pass
        finally:
            os.close(fd)
    return _work(task, size)


def good(task: int, size: int) -> int:
    """Honest, quick work."""
    return _work(task, size)


def sleepy(task: int, size: int) -> int:
    """Sleeps 300 ms a task: its run takes at least that long by any honest clock."""
    time.sleep(0.3)
    return task


def _c_function(fn):
    """The address of the C function behind builtin ``fn`` (its PyMethodDef's ml_meth) and of that field."""
    import ctypes

    ptr = ctypes.sizeof(ctypes.c_void_p)
    # PyCFunctionObject: ob_refcnt, ob_type, then m_ml (PyMethodDef *): ml_name, ml_meth, ...
    method_def = ctypes.c_void_p.from_address(id(fn) + 2 * ptr).value
    field = ctypes.c_void_p.from_address(method_def + ptr)
    return field


def rewires_clock(task: int, size: int) -> int:
    """Rewires time.perf_counter in C (the same function object) to run thread CPU time instead."""
    if task == 0:
        _c_function(time.perf_counter).value = _c_function(time.thread_time).value
    return _work(task, size)


def starts_hidden_threads(task: int, size: int) -> int:
    """Starts spinning threads threading does not list, or lists as Ray's: _thread, a 'ray' class."""
    import _thread

    _thread.start_new_thread(_spin, ())
    RayLooking(target=_spin, daemon=True).start()
    return _work(task, size)


class RayLooking(threading.Thread):
    """A thread whose class claims to be Ray's (a reused host adopted such threads as infrastructure)."""


RayLooking.__module__ = "ray._private.fake"


def fakes_forkserver(task: int, size: int) -> int:
    """Forks a spinning child and claims it is multiprocessing's forkserver."""
    import multiprocessing.forkserver as forkserver

    pid = os.fork()
    if pid == 0:
        _spin_for(300)
        os._exit(0)
    forkserver._forkserver._forkserver_pid = pid
    _spinners.append(pid)
    return _work(task, size)


_spinners = []
fakes_forkserver.observe = lambda: {"spinner": _spinners[-1]}


def _spin_for(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def leaves_process_state(task: int, size: int) -> int:
    """Changes what a process keeps between calls and leaves it so (issue #25 item 8)."""
    signal.setitimer(signal.ITIMER_REAL, 0.05, 0.05)  # the next run in this process dies of SIGALRM
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # multiprocessing's workers "die"
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import resource

    resource.setrlimit(resource.RLIMIT_NOFILE, (12, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
    sys.setrecursionlimit(40)
    import gc

    gc.disable()
    os.umask(0o077)
    sys.stdout = open(os.devnull, "w")
    sys.excepthook = lambda *a: None
    return _work(task, size)


def _observe_process_state() -> dict:
    import gc
    import resource

    return {
        "itimer": signal.getitimer(signal.ITIMER_REAL),
        "sigchld": repr(signal.getsignal(signal.SIGCHLD)),
        "sigterm": repr(signal.getsignal(signal.SIGTERM)),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "recursion_limit": sys.getrecursionlimit(),
        "gc": gc.isenabled(),
        "excepthook_is_default": sys.excepthook is sys.__excepthook__,
        "tasks": len(os.listdir("/proc/self/task")),
        "pid": os.getpid(),
    }


def probe_state(task: int, size: int) -> int:
    """The innocent run after ``leaves_process_state``: deep recursion, files, a pause, a child process."""

    def depth(n):
        return 0 if n == 0 else 1 + depth(n - 1)

    files = [open(os.devnull) for _ in range(20)]
    for f in files:
        f.close()
    time.sleep(0.1)  # a timer left running would kill it here
    subprocess.run([sys.executable, "-c", "pass"], check=True)  # SIGCHLD ignored: no exit status
    return depth(100) + _work(task, size)


probe_state.observe = _observe_process_state
