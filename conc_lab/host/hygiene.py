"""The host's own state, checked after every trial: what a workload changed is restored or reported.

A trial host is reused across trials, so a workload that changes the process it runs in
would change every later trial's numbers: affinity set to one core (later "unpinned" rows
all ran on CPU 0), a raised nice value, another working directory or environment, a
patched ``time.perf_counter``, closed fds 0-2 (later spawn trials fail), a spinning thread
(later trials several times slower), or child processes still running.

``Guard`` takes the host's state once at start (``Guard()``), and around each trial
(``before()`` / ``after(token)``). ``after`` restores what can be restored and returns notes
that name what the trial left behind, and whether the host must be retired: a thread cannot
be stopped from outside, so a host with a leftover thread is replaced by a fresh one.
Children of the trial (including those that left the session: the host is a child
subreaper, so orphaned descendants are re-parented to it) are killed and reaped.

Backends that keep threads, processes or environment variables across trials on purpose
(a Ray connection) create them inside ``with infrastructure():``, which adopts them.

Standard library only, Python 3.8 syntax: this runs inside the trial host.
"""

import contextlib
import os
import signal
import sys
import threading
import time

from conc_lab.host import protocol

#: Clock and sleep functions a workload might replace; later trials' timings depend on them.
TIMERS = (
    "perf_counter",
    "perf_counter_ns",
    "monotonic",
    "monotonic_ns",
    "time",
    "time_ns",
    "process_time",
    "process_time_ns",
    "thread_time",
    "thread_time_ns",
    "sleep",
)
#: PR_SET_PDEATHSIG and PR_SET_CHILD_SUBREAPER from <linux/prctl.h>.
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36
#: How long reaping killed leftovers may take before the host stops waiting for them.
REAP_S = 2.0
#: How long a trial's own threads may take to finish after it before they count as left behind.
THREAD_GRACE_S = 0.1

_adopted = {"threads": set(), "pids": set(), "env": {}}
#: Packages whose threads and environment variables are a backend's, wherever they start them: a
#: Ray driver starts threads and sets RAY_* variables lazily, after the connection was adopted.
INFRASTRUCTURE = ("ray", "grpc")  # package, not the backend


def die_with_parent():
    """SIGKILL this process when the conc_lab process that started it (``protocol.PARENT_PID_ENV``)
    dies, however it dies (Linux, PR_SET_PDEATHSIG); at once where it died already."""
    parent = os.environ.get(protocol.PARENT_PID_ENV)
    if not parent or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(parent):  # it died before the call: no signal would come
        os._exit(1)


def become_subreaper():
    """Make orphaned descendants re-parent to this process (Linux); True if it worked.

    A workload's ``Popen(..., start_new_session=True)`` leaves the host's process group, so
    killing the group misses it; as a subreaper the host still sees it as a descendant.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


@contextlib.contextmanager
def infrastructure():
    """Adopt the threads, child processes and environment variables created inside as the host's own."""
    threads, pids, env = set(threading.enumerate()), set(descendants()), dict(os.environ)
    try:
        yield
    finally:
        _adopted["threads"].update(t for t in threading.enumerate() if t not in threads)
        _adopted["pids"].update(p for p in descendants() if p not in pids)
        _adopted["env"].update((k, v) for k, v in os.environ.items() if env.get(k) != v)


class Guard(object):
    """The host's state at start, and the check after each trial."""

    def __init__(self):
        self.affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
        self.nice = _nice()
        self.cwd = os.getcwd()
        self.env = dict(os.environ)
        self.timers = dict((name, getattr(time, name)) for name in TIMERS if hasattr(time, name))
        self.switch_interval = sys.getswitchinterval()
        self.trace, self.profile = sys.gettrace(), sys.getprofile()
        self.fds = {}  # fd -> (identity, a private duplicate to restore it from)
        for fd in (0, 1, 2):
            try:
                self.fds[fd] = (_identity(fd), os.dup(fd))
            except OSError:
                pass
        self.subreaper = become_subreaper()

    def before(self):
        """What exists before a trial: its threads and child processes (the token for ``after``)."""
        return set(threading.enumerate()), set(descendants())

    def after(self, token):
        """Restore the host after a trial; returns (notes on what it left behind, retire)."""
        notes = []
        for check in (self._affinity, self._nice, self._cwd, self._env, self._timers, self._fds):
            check(notes)
        children = self._children(token[1])
        if children:
            notes.append(children)
        threads = self._threads(token[0])
        if threads:
            notes.append(threads + "; host retired")
        retire = bool(threads) or any(note.endswith("host retired") for note in notes)
        return notes, retire

    def _affinity(self, notes):
        if self.affinity is None:
            return
        now = os.sched_getaffinity(0)
        if now != self.affinity:
            os.sched_setaffinity(0, self.affinity)
            notes.append("CPU affinity %s (restored to %s)" % (_cpus(now), _cpus(self.affinity)))

    def _nice(self, notes):
        now = _nice()
        if now == self.nice:
            return
        try:
            os.setpriority(os.PRIO_PROCESS, 0, self.nice)
            notes.append("nice %d (restored to %d)" % (now, self.nice))
        except OSError:  # lowering it back needs a privilege the host may lack
            notes.append("nice %d (cannot restore %d); host retired" % (now, self.nice))

    def _cwd(self, notes):
        try:
            now = os.getcwd()
        except OSError:  # the workload removed the directory it moved into
            now = "(a removed directory)"
        if now != self.cwd:
            try:
                os.chdir(self.cwd)
                notes.append("working directory %s (restored)" % _short(now))
            except OSError:
                notes.append("working directory %s (cannot restore); host retired" % _short(now))

    def _env(self, notes):
        expected = dict(self.env)
        expected.update(_adopted["env"])
        now = os.environ
        changed = sorted(
            k
            for k in set(now) | set(expected)
            if now.get(k) != expected.get(k)
            and not k.startswith(tuple(p.upper() + "_" for p in INFRASTRUCTURE))
        )
        if not changed:
            return
        for key in changed:
            if key in expected:
                os.environ[key] = expected[key]
            else:
                del os.environ[key]
        shown = ", ".join(changed[:5]) + (" and %d more" % (len(changed) - 5) if len(changed) > 5 else "")
        notes.append("environment variables %s changed (restored)" % _short(shown))

    def _timers(self, notes):
        import conc_lab.host.measure as measure

        for name, original in self.timers.items():
            if getattr(time, name, None) is not original:
                setattr(time, name, original)
                notes.append("time.%s replaced (restored)" % name)
        if measure.clock is not self.timers["perf_counter"]:
            measure.clock = self.timers["perf_counter"]
            notes.append("conc_lab's clock replaced (restored)")
        if sys.getswitchinterval() != self.switch_interval:
            notes.append("switch interval %g s (restored)" % sys.getswitchinterval())
            sys.setswitchinterval(self.switch_interval)
        # A trace or profile function slows every later line of Python the host runs.
        if sys.gettrace() is not self.trace:
            sys.settrace(self.trace)
            notes.append("a trace function (sys.settrace) (restored)")
        if sys.getprofile() is not self.profile:
            sys.setprofile(self.profile)
            notes.append("a profile function (sys.setprofile) (restored)")

    def _fds(self, notes):
        for fd, (identity, saved) in self.fds.items():
            try:
                now = _identity(fd)
            except OSError:
                now = None
            if now != identity:
                os.dup2(saved, fd)
                notes.append("fd %d %s (restored)" % (fd, "closed" if now is None else "replaced"))

    def _children(self, before):
        skip = multiprocessing_helpers() | _adopted["pids"]
        running = [p for p in descendants(skip=skip) if p not in before and state_of(p) not in ("Z", None)]
        for pid in running:
            kill_tree_member(pid)
        reap(running, skip)
        if not running:
            return None
        names = ", ".join("%d (%s)" % (p, command_of(p)) for p in running[:5])
        more = " and %d more" % (len(running) - 5) if len(running) > 5 else ""
        return "%d child process(es) still running: %s%s; killed" % (len(running), names, more)

    def _threads(self, before):
        new = [
            t
            for t in threading.enumerate()
            if t not in before and t not in _adopted["threads"] and not _infrastructure_thread(t)
        ]
        deadline = time.monotonic() + THREAD_GRACE_S
        for t in new:  # threads of the trial that are just finishing are not leftovers
            t.join(max(deadline - time.monotonic(), 0))
        left = [t for t in new if t.is_alive()]
        if not left:
            return None
        names = ", ".join("%r%s" % (t.name, " (daemon)" if t.daemon else "") for t in left[:5])
        more = " and %d more" % (len(left) - 5) if len(left) > 5 else ""
        return "%d thread(s) still running: %s%s" % (len(left), names, more)


def _infrastructure_thread(thread):
    """A thread a backend's package started (its class or target lives in INFRASTRUCTURE), or a
    native thread that merely called into Python (threading's _DummyThread: no Python start)."""
    if type(thread).__name__ == "_DummyThread":
        return True
    for obj in (type(thread), getattr(thread, "_target", None)):
        module = getattr(obj, "__module__", None) or ""
        if module.partition(".")[0] in INFRASTRUCTURE:
            return True
    return False


#: waitid's __WALL (<linux/wait.h>): children of any exit signal, clone() ones included (Linux >= 4.7).
_WALL = 0x40000000


def has_children():
    """Whether this process has a child, running or a zombie: one ``waitid`` that reaps nothing.

    False is the kernel's own answer (ECHILD), and it covers every descendant: an orphan is
    re-parented to its nearest subreaper ancestor before its parent becomes a zombie, and a zombie
    is still a child, so a process whose subtree is not empty always has a child. Where the call
    cannot say (another OS, a kernel without ``__WALL`` for waitid), True: walk ``/proc``.

    >>> import subprocess; p = subprocess.Popen(["sleep", "5"]); has_children(); p.kill(); _ = p.wait()
    True
    """
    try:
        os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT | _WALL)
    except ChildProcessError:
        return False
    except (AttributeError, OSError):
        return True
    return True


def descendants(root=None, skip=()):
    """Pids of every live or zombie descendant of ``root`` (this process), but not ``skip`` and theirs."""
    found = []
    todo = [root or os.getpid()]
    while todo:
        pid = todo.pop()
        for child in children_of(pid):
            if child not in found and child not in skip:
                found.append(child)
                todo.append(child)
    return found


def carrying(variable, value):
    """Pids of the processes whose environment (as they started) holds ``variable=value``, this one aside.

    A walk of every /proc/PID/environ (the other users' cannot be read, and are not ours to kill):
    for what left a process tree whose root died, so no parent or subreaper leads to it any more.
    """
    entry = ("%s=%s" % (variable, value)).encode()
    me, found = os.getpid(), []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        try:
            environ = read_proc("/proc/%s/environ" % name)
        except OSError:
            continue
        if entry in environ.split(b"\0"):
            found.append(int(name))
    return found


def read_proc(path, until=None):
    """The bytes of a /proc file: a raw ``os.read`` (no file object: this runs several times a run).

    ``until``: stop reading once the text read so far holds it (the lines wanted came first).
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
            if until is not None and until in chunk:
                break
        return b"".join(chunks)
    finally:
        os.close(fd)


def children_of(pid):
    """Children of ``pid`` from /proc/PID/task/*/children; where the kernel lacks it, a /proc scan."""
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return []
    out = []
    for tid in tids:
        try:
            out.extend(int(c) for c in read_proc("/proc/%d/task/%s/children" % (pid, tid)).split())
        except FileNotFoundError:
            if not os.path.exists("/proc/%d/task/%s" % (pid, tid)):
                continue  # the thread ended meanwhile
            return _scan_children(pid)
        except OSError:
            continue
    return out


def _scan_children(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and stat_fields(int(entry))[1:2] == [str(pid)]:
            out.append(int(entry))
    return out


def stat_fields(pid):
    """Fields of /proc/PID/stat after "pid (comm)": state, ppid, pgrp, ...; [] if it is gone."""
    try:
        stat = read_proc("/proc/%d/stat" % pid)
    except OSError:
        return []
    return stat[stat.rindex(b")") + 2 :].decode().split()


def state_of(pid):
    fields = stat_fields(pid)
    return fields[0] if fields else None


def command_of(pid):
    """The command line of ``pid``, shortened for a note; "?" when it is gone."""
    return _short(_cmdline(pid) or "?", 60)


def _cmdline(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().replace(b"\0", b" ").strip().decode(errors="replace")
    except OSError:
        return ""


def kill_tree_member(pid):
    """SIGKILL ``pid`` and, when it leads a process group of its own (a session it started), the group."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


def reap(killed, skip):
    """Collect the exit status of zombie children, until the killed processes are gone.

    Killed grandchildren are re-parented to this subreaper as they die, so the loop reaps
    until none of ``killed`` is left (bounded by ``REAP_S``): no zombie stays behind.
    """
    deadline = time.monotonic() + REAP_S
    me = os.getpid()
    while True:
        for pid in children_of(me):
            if pid not in skip and state_of(pid) == "Z":
                try:
                    os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:  # reaped meanwhile by whoever started it
                    pass
        killed = [p for p in killed if state_of(p) is not None]
        if not killed or time.monotonic() > deadline:
            return
        time.sleep(0.002)


def multiprocessing_helpers():
    """Pids of the forkserver and resource tracker multiprocessing keeps for the host's later trials."""
    pids = set()
    for module, attr, field in (
        ("multiprocessing.forkserver", "_forkserver", "_forkserver_pid"),
        ("multiprocessing.resource_tracker", "_resource_tracker", "_pid"),
        ("multiprocessing.semaphore_tracker", "_semaphore_tracker", "_pid"),
    ):
        mod = sys.modules.get(module)
        pid = getattr(getattr(mod, attr, None), field, None)
        # Only what really is one: a workload can set the attribute to the pid of a spinner of its own.
        if pid and "multiprocessing" in _cmdline(pid):  # package, not the backend
            pids.add(pid)
    return pids


def _identity(fd):
    st = os.fstat(fd)
    return st.st_dev, st.st_ino, st.st_rdev


def _nice():
    try:
        return os.getpriority(os.PRIO_PROCESS, 0)
    except (AttributeError, OSError):
        return None


def _cpus(cpus):
    cpus = sorted(cpus)
    return "{%s}" % ",".join(map(str, cpus[:16])) + ("..." if len(cpus) > 16 else "")


def _short(text, limit=120):
    return text if len(text) <= limit else text[: limit - 3] + "..."
