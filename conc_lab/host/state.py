"""What a trial tried to leave in its process: the clean host's state, and the difference after a run.

Each run happens in a process forked from the clean host for it alone (``host.fork``), so
nothing it changes survives it: threads (``threading`` or ``_thread``), interval timers,
signal dispositions, rlimits, the garbage collector, the recursion limit, the umask,
replaced stdio and hooks, patched clocks, the working directory, the environment. This
module only *reports* what the run left, so its row says so (``left_behind``): a workload
that leaves an interval timer running has a bug a user wants to hear of, even though the
next run can no longer die of it.

``snapshot()`` is taken once, in the clean host; the forked child inherits it and compares
after its run (``left(snapshot)``). Every check is one cheap call (no /proc walk): about
0.1 ms in all.

Standard library only, Python 3.8 syntax: this runs inside the trial host.

>>> snap = snapshot()
>>> left(snap, threads_expected=len(_tasks()))
[]
>>> import gc; gc.disable(); left(snap, threads_expected=len(_tasks())); gc.enable()
['gc disabled']
"""

import gc
import os
import signal
import sys
import threading
import time

from conc_lab.host.hygiene import TIMERS  # the clocks a workload might replace: one list

try:
    import resource
except ImportError:  # pragma: no cover - not on Linux
    resource = None

SIGNALS = ("SIGCHLD", "SIGINT", "SIGTERM", "SIGALRM", "SIGPIPE", "SIGHUP", "SIGUSR1", "SIGUSR2")
RLIMITS = ("RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_AS", "RLIMIT_CPU", "RLIMIT_STACK", "RLIMIT_FSIZE")
ITIMERS = ("ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF")
HOOKS = (
    (sys, "stdin"),
    (sys, "stdout"),
    (sys, "stderr"),
    (sys, "excepthook"),
    (sys, "unraisablehook"),
    (sys, "displayhook"),
    (threading, "excepthook"),
)


#: How long threads beyond the expected count get to finish exiting before they are reported.
THREAD_EXIT_S = 0.01


def _umask():
    mask = os.umask(0o22)
    os.umask(mask)
    return mask


def _readers():
    """(name, getter) for every value compared; each getter is one cheap call."""
    out = [
        ("CPU affinity", lambda: os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None),
        ("nice", lambda: os.getpriority(os.PRIO_PROCESS, 0)),
        ("working directory", _cwd),
        ("umask", _umask),
        ("gc", gc.isenabled),
        ("gc thresholds", gc.get_threshold),
        ("recursion limit", sys.getrecursionlimit),
        ("switch interval", sys.getswitchinterval),
        ("trace function", sys.gettrace),
        ("profile function", sys.getprofile),
    ]
    for name in TIMERS:
        if hasattr(time, name):
            out.append(("time." + name, _attr(time, name)))
    for owner, name in HOOKS:
        if hasattr(owner, name):
            out.append(("%s.%s" % (owner.__name__, name), _attr(owner, name)))
    for name in SIGNALS:
        if hasattr(signal, name):
            out.append((name, _handler(getattr(signal, name))))
    for name in ITIMERS if hasattr(signal, "getitimer") else ():
        out.append((name, _itimer(getattr(signal, name))))
    for name in RLIMITS if resource is not None else ():
        if hasattr(resource, name):
            out.append((name, _rlimit(getattr(resource, name))))
    for fd in (0, 1, 2):
        out.append(("fd %d" % fd, _fd(fd)))
    return out


def _attr(owner, name):
    return lambda: getattr(owner, name, None)


def _handler(signum):
    return lambda: signal.getsignal(signum)


def _itimer(which):
    return lambda: signal.getitimer(which)


def _rlimit(which):
    return lambda: resource.getrlimit(which)


def _fd(fd):
    def read():
        try:
            st = os.fstat(fd)
        except OSError:
            return None
        return st.st_dev, st.st_ino, st.st_rdev

    return read


def _cwd():
    try:
        return os.getcwd()
    except OSError:
        return "(a removed directory)"


_READERS = _readers()


def snapshot():
    """The state of this (clean) process: every value ``left`` compares, and the environment."""
    values = []
    for _name, read in _READERS:
        try:
            values.append(read())
        except (OSError, ValueError):
            values.append(None)
    return values, dict(os.environ), _raw_environ()


def _raw_environ():
    """A copy of os.environ's own bytes mapping (CPython's ``_data``), or None where there is none.

    Comparing it is one dict comparison; the decoded environment is compared only when it differs.
    """
    data = getattr(os.environ, "_data", None)
    return dict(data) if isinstance(data, dict) else None


def left(snap, threads_expected=1):
    """What differs from ``snap`` now, as short notes (empty: nothing); threads beyond the expected count.

    ``threads_expected``: threads a clean process of this kind has (a forked child: only its main one).
    """
    values, env, raw = snap
    notes = []
    for (name, read), before in zip(_READERS, values):
        try:
            now = read()
        except (OSError, ValueError):
            now = None
        if now is before or now == before:
            continue
        notes.append(_describe(name, now))
    same = raw is not None and getattr(os.environ, "_data", None) == raw
    changed = [] if same else sorted(k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k))
    if changed:
        shown = ", ".join(changed[:5]) + (" and %d more" % (len(changed) - 5) if len(changed) > 5 else "")
        notes.append("environment variables %s changed" % _short(shown))
    threads = _threads(threads_expected)
    if threads:
        notes.append(threads)
    return notes


def _describe(name, now):
    if name == "gc":
        return "gc disabled" if not now else "gc enabled"
    if name == "CPU affinity" and now is not None:
        return "CPU affinity %s" % _cpus(now)
    if name == "working directory":
        return "working directory %s" % _short(str(now))
    if name == "umask":
        return "umask %03o" % now
    if name.startswith("SIG"):
        return "%s %s" % (name, _disposition(now))
    if name.startswith("ITIMER"):
        return "an interval timer (%s every %g s)" % (name, now[1] or now[0])
    if name.startswith("RLIMIT"):
        return "%s %s" % (name, now[0])
    if name in ("trace function", "profile function"):
        return "a %s (sys.set%s)" % (name, name.split()[0])
    if name.startswith(("time.", "sys.", "threading.")):
        return "%s replaced" % name
    if name.startswith("fd "):
        return "%s %s" % (name, "closed" if now is None else "replaced")
    return "%s %s" % (name, now)


def _disposition(handler):
    if handler == signal.SIG_IGN:
        return "ignored"
    if handler == signal.SIG_DFL:
        return "set to default"
    return "handled by %s" % getattr(handler, "__qualname__", "a handler")


def _tasks():
    try:
        return os.listdir("/proc/self/task")
    except OSError:
        return [None] * threading.active_count()


def _threads(expected):
    """Threads still running beyond ``expected``: named ones from ``threading``, the rest counted."""
    tasks = len(_tasks())
    deadline = time.monotonic() + THREAD_EXIT_S
    while tasks > expected and time.monotonic() < deadline:
        # A joined thread's OS task may take a moment longer to leave /proc/self/task.
        time.sleep(0.0005)
        tasks = len(_tasks())
    if tasks <= expected:
        return None
    main = threading.main_thread()
    named = [t for t in threading.enumerate() if t is not main and t.is_alive()]
    names = ", ".join("%r%s" % (t.name, " (daemon)" if t.daemon else "") for t in named[:5])
    unnamed = tasks - expected - len(named)
    parts = [names] if names else []
    if unnamed > 0:
        parts.append("%d started without threading (_thread or native)" % unnamed)
    return "%d thread(s) still running: %s" % (tasks - expected, "; ".join(parts))


def _cpus(cpus):
    cpus = sorted(cpus)
    return "{%s}" % ",".join(map(str, cpus[:16])) + ("..." if len(cpus) > 16 else "")


def _short(text, limit=120):
    return text if len(text) <= limit else text[: limit - 3] + "..."
