"""Workloads that change the trial host (or the runner) through its pid, for tests/test_hostile_round3.py.

A run's process is forked for it alone, but the host that forked it, and the runner above it,
are other processes of the same user: a workload reaches them with their pid (``os.getppid()``)
and changes what every later run's process inherits from them. ``probe_settings`` is the
innocent trial: its ``observe`` hook reports what its process inherited.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

try:
    import resource
except ImportError:  # pragma: no cover - not on Linux
    resource = None

#: What the workloads set: a timer slack of 200 ms makes a 50 ms sleep take up to 250 ms.
SLACK_NS = 200_000_000
NOFILE = 12


def _work(task: int, size: int) -> int:
    return sum(i * i for i in range(task * size, (task + 1) * size))


def _host() -> int:
    return os.getppid()


def _runner() -> int:
    with open(f"/proc/{_host()}/stat") as f:
        return int(f.read().rpartition(")")[2].split()[1])


def slacks_host(task: int, size: int) -> int:
    """Gives the host a timer slack of 200 ms (every sleep of a later run's process would oversleep)."""
    with open(f"/proc/{_host()}/timerslack_ns", "w") as f:
        f.write(str(SLACK_NS))
    return _work(task, size)


def idles_host(task: int, size: int) -> int:
    """Puts the host under SCHED_IDLE: later runs' processes would run only when nothing else wants a core."""
    os.sched_setscheduler(_host(), os.SCHED_IDLE, os.sched_param(0))
    return _work(task, size)


def limits_host(task: int, size: int) -> int:
    """Lowers the host's open-file limit to 12 (later runs' processes could not open a 13th file)."""
    resource.prlimit(_host(), resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
    return _work(task, size)


def probe_settings(task: int, size: int) -> int:
    """The innocent trial; ``observe`` reports the scheduling settings and limits its process inherited."""
    time.sleep(0.001)
    return _work(task, size)


def _observe_settings() -> dict:
    with open("/proc/self/timerslack_ns") as f:
        slack = int(f.read())
    return {
        "policy": os.sched_getscheduler(0),
        "nofile": list(resource.getrlimit(resource.RLIMIT_NOFILE)),
        "slack": slack,
        "affinity": sorted(os.sched_getaffinity(0)),
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
    }


probe_settings.observe = _observe_settings


def pins_runner_then_kills_host(task: int, size: int) -> int:
    """Pins the runner to CPU 0 and raises its nice value, then kills the host: the runner starts a
    fresh host, which would inherit both (and take them for its own clean state)."""
    runner = _runner()
    os.sched_setaffinity(runner, {0})
    os.setpriority(os.PRIO_PROCESS, runner, os.getpriority(os.PRIO_PROCESS, runner) + 5)
    os.kill(_host(), signal.SIGKILL)
    time.sleep(5)  # killed with the host
    return _work(task, size)


#: Marks the processes a test started, so it can find survivors by their command line.
MARKER_ENV = "CONCLAB_TEST_MARKER"


def _spinner(new_session: bool) -> None:
    marker = os.environ.get(MARKER_ENV, "conclab-test")
    code = "import sys, time\nend = time.time() + 30\nwhile time.time() < end: pass"
    subprocess.Popen([sys.executable, "-c", code, marker], start_new_session=new_session)


def kills_host_leaving_child(task: int, size: int) -> int:
    """Starts a spinning child (in its group), then kills the host: the child must not outlive it."""
    _spinner(new_session=False)
    time.sleep(0.2)
    os.kill(_host(), signal.SIGKILL)
    time.sleep(5)
    return _work(task, size)


def kills_host_leaving_session(task: int, size: int) -> int:
    """Starts a spinning child in a session of its own, then kills the host."""
    _spinner(new_session=True)
    time.sleep(0.2)
    os.kill(_host(), signal.SIGKILL)
    time.sleep(5)
    return _work(task, size)


def slows_its_clock(task: int, size: int) -> int:
    """Sleeps 0.3 s a task, but replaces conc_lab's clock with one at 1% speed on its first call."""
    from conc_lab.host import measure

    if not hasattr(measure, "_slowed"):
        real, start = measure.clock, measure.clock()
        measure.clock = lambda: start + (real() - start) * 0.01
        measure._slowed = True
    time.sleep(0.3)
    return task


def _secrets_in_own_memory() -> list[str]:
    """Every host secret as a reply line carries it ('"secret": "<32 hex>"') left in this process's
    memory, which the run's process was forked with: freed strings, the host's output buffer."""
    import re

    pattern, found = re.compile(rb'"secret": "([0-9a-f]{32})"'), []
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("rw"):
                continue
            low, high = (int(x, 16) for x in span.split("-"))
            try:
                mem.seek(low)
                data = mem.read(high - low)
            except (OSError, ValueError, OverflowError):
                continue
            found.extend(m.group(1).decode() for m in pattern.finditer(data))
    return found


def _reply_pipe_of(host: int) -> str:
    """The path that opens the host's reply pipe to the runner: its one write-only pipe but stderr."""
    for fd in os.listdir(f"/proc/{host}/fd"):
        path = f"/proc/{host}/fd/{fd}"
        try:
            if fd == "2" or not os.readlink(path).startswith("pipe:"):
                continue
            with open(f"/proc/{host}/fdinfo/{fd}") as f:
                flags = int(f.read().split("flags:")[1].split()[0], 8)
        except (OSError, IndexError, ValueError):
            continue
        if flags & 3 == os.O_WRONLY:
            return path
    raise OSError("no reply pipe found")


def forges_with_the_hosts_secret(task: int, size: int) -> int:
    """Sleeps 0.3 s a task; its reply goes straight to the runner, saying 1 ms, signed with the secret
    found in its own memory, and the host is killed before it can send the true one."""
    from conc_lab.host import wire

    if task == 0 and not hasattr(wire, "_forging"):
        wire._forging = True
        secrets = _secrets_in_own_memory() or ["0" * 32]
        host = os.getppid()

        def write_all(fd, data):
            reply = json.loads(data.partition(b"\n")[2])["reply"]
            reply["outcome"].pop("canary_readings", None)
            reply["outcome"].update(run_s=0.001, outside_s=0.002)
            reply["id"] = sys._getframe(2).f_locals["request"]["id"]  # in fork._run_and_reply
            reply["secret"] = secrets[-1]
            pipe = os.open(_reply_pipe_of(host), os.O_WRONLY)
            os.write(pipe, (json.dumps(reply) + "\n").encode())
            os.kill(host, signal.SIGKILL)

        wire.write_all = write_all
    time.sleep(0.3)
    return task


def _steal_and_rewrite(path: str) -> None:
    """Read the host's next line off its reply pipe before the runner does; put it back saying 1 ms."""
    os.setsid()
    reader, writer = os.open(path, os.O_RDONLY | os.O_NONBLOCK), os.open(path, os.O_WRONLY)
    buf, end = b"", time.monotonic() + 10
    while time.monotonic() < end and not buf.endswith(b"\n"):
        try:
            buf += os.read(reader, 1 << 16)
        except BlockingIOError:
            continue
    line = json.loads(buf)
    line["outcome"].update(run_s=0.001, outside_s=0.002)
    os.write(writer, (json.dumps(line) + "\n").encode())
    os._exit(0)


def steals_the_hosts_reply(task: int, size: int) -> int:
    """Sleeps 0.3 s a task; a process it leaves behind steals the host's true reply (secret and
    all) off the pipe to the runner, as the host sends it, and puts back one that says 1 ms."""
    if task == 0:
        try:
            path = _reply_pipe_of(os.getppid())
        except OSError:  # no pipe of the host's to open
            path = None
        if path is not None and os.fork() == 0:
            try:
                _steal_and_rewrite(path)
            finally:
                os._exit(0)
    time.sleep(0.3)
    return task


def _children(pid: int) -> set[int]:
    out = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out.update(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def _stop_newcomers(host: int, known: set[int]) -> None:
    os.setsid()
    known = known | {os.getpid()}
    end = time.monotonic() + 10
    while time.monotonic() < end:
        for pid in _children(host) - known:
            known.add(pid)
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
    os._exit(0)


def stops_the_next_run(task: int, size: int) -> int:
    """Leaves a process that watches the host for the next run's process, forked as this run ends,
    and stops it (it could as well renice, trace or rewrite it)."""
    host = os.getppid()
    if task == 0 and os.fork() == 0:
        try:
            _stop_newcomers(host, _children(host))
        finally:
            os._exit(0)
    return _work(task, size)


def kills_runner_leaving_session(task: int, size: int) -> int:
    """Starts a spinning child in a session of its own, then kills the runner (the sweep itself)."""
    _spinner(new_session=True)
    time.sleep(0.2)
    os.kill(_runner(), signal.SIGKILL)
    time.sleep(5)
    return _work(task, size)


def forks_without_exit(task: int, size: int) -> int:
    """The careless fork: its child is not ended with os._exit, so it returns into the run's own code
    (and, quicker than its parent, would reply in the run's place: with CPU times below zero)."""
    if task == 0 and os.fork() != 0:
        time.sleep(0.2)  # the parent: the child, returning at once, gets to the reply first
    return _work(task, size)


def rewinds_cpu_time(task: int, size: int) -> int:
    """Makes conc_lab's CPU clock of its thread run backwards: a CPU time below zero for its run."""
    from conc_lab.host import measure

    if not hasattr(measure, "_rewound"):
        measure._rewound, real = True, measure.cpu_times
        measure.cpu_times = lambda: tuple(-t for t in real())
    return _work(task, size)


#: The canary reading (seconds) that ``poisons_the_canary`` hands the host for every core.
POISON_S = 1e-7


def poisons_the_canary(task: int, size: int) -> int:
    """A short run whose reply tells the host its speed canary took 0.1 µs on every core: the host
    keeps such readings as the next short-spaced run's before-reading."""
    from conc_lab.host import wire

    if not hasattr(wire, "_poisoning"):
        wire._poisoning, write_all = True, wire.write_all

        def poisoned(fd, data):
            doc = json.loads(data.partition(b"\n")[2])
            out = doc["reply"].get("outcome") or {}
            if "canary_readings" in out:
                cores = [None, *range(os.cpu_count() or 1)]
                out["canary_readings"] = [[core, POISON_S] for core in cores]
                body = json.dumps(doc).encode()
                data = b"%d\n" % len(body) + body
            write_all(fd, data)

        wire.write_all = poisoned
    return task


def sleeps_60ms(task: int, size: int) -> int:
    """Innocent, and long enough (>= 50 ms) to get a canary after-reading of its own."""
    time.sleep(0.06)
    return task
