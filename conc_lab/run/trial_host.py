"""The parent's handle on one trial host process: start it, ask it, kill it when it hangs or dies.

Also the one builder of a child process's environment (``child_env``), which the trial
host and the ``size: auto`` calibrator (``calibration``) both start with. The messages
and environment names are ``conc_lab.host.protocol``'s.

The host runs in its own process group (session), so one ``killpg`` takes its worker
processes and forkserver with it. Replies are read with ``select`` and a deadline: a hung
trial (a thread cannot be killed) costs its timeout and a fresh host, never the sweep.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable

from conc_lab.host import PACKAGE_ROOT, hygiene, protocol, shm

THREAD_ENV = protocol.THREAD_ENV


def child_env(search_path: Iterable[str] | None = None, base: dict | None = None) -> dict:
    """The environment of a child that runs conc_lab.host code: the package on its path,
    the workload folders in ``PATH_ENV``, unbuffered output, one native thread per worker.

    >>> env = child_env(["/w"], base={"PYTHONPATH": "/x"})
    >>> env["PYTHONPATH"] == os.pathsep.join([PACKAGE_ROOT, "/x"]), env[protocol.PATH_ENV]
    (True, '/w')
    """
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join([PACKAGE_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    env[protocol.PATH_ENV] = os.pathsep.join(search_path or [os.getcwd()])
    env["PYTHONUNBUFFERED"] = "1"
    env[protocol.PARENT_PID_ENV] = str(os.getpid())
    for var in protocol.THREAD_ENV:
        env.setdefault(var, "1")
    return env


#: How much of a trial's stderr is kept: the end, where a traceback is.
STDERR_TAIL_BYTES = 64 * 1024
#: How often a wait for a reply also checks that the host process still lives: a child it
#: forked may hold the reply pipe open, so EOF alone cannot tell that the host died.
_LIVENESS_S = 0.2


def _check_times(reply: dict, envelope: float) -> None:
    """Fail the reply's outcome when its own durations do not fit in ``envelope`` (timed here)."""
    outcome = reply.get(protocol.OUTCOME)
    if not reply.get(protocol.OK) or not isinstance(outcome, dict):
        return
    outside = outcome.get(protocol.OUTSIDE_S)
    problem = protocol.time_problem(outcome, envelope, "the runner timed around the request")
    if problem is None and isinstance(outside, (int, float)) and outside > envelope + protocol.TIME_SLACK_S:
        problem = (
            f"the host's outside time {outside:.3g} s is longer than the {envelope:.3g} s the runner timed"
        )
    if problem is not None:
        protocol.fail_times(outcome, problem)


class StderrTail:
    """The end of what a process writes to ``stream`` (its stderr pipe), read without blocking
    whenever its parent waits on it: ``tail``, the last STDERR_TAIL_BYTES, where a traceback is."""

    def __init__(self, stream):
        self.stream = stream
        self.tail = b""

    def fileno(self) -> int | None:
        """The pipe's descriptor, or None once the process closed its end (and so did this)."""
        return None if self.stream is None or self.stream.closed else self.stream.fileno()

    def drain(self, timeout: float) -> None:
        """Read what the process wrote (without blocking), keeping the last STDERR_TAIL_BYTES."""
        err = self.fileno()
        if err is None:
            return
        while select.select([err], [], [], timeout)[0]:
            chunk = os.read(err, 1 << 16)
            if not chunk:
                self.stream.close()
                return
            self.tail = (self.tail + chunk)[-STDERR_TAIL_BYTES:]
            timeout = 0

    def text(self) -> str | None:
        """The tail as text (undecodable bytes replaced), or None when empty."""
        text = self.tail.decode("utf-8", errors="replace").strip()
        return text or None


def _spawn(python: str, env: dict) -> tuple[subprocess.Popen, int, socket.socket]:
    """``python -m conc_lab.host`` started in a session of its own: (its process, its lifeline, its channel).

    The host watches the lifeline's read end and kills its process group when this process dies
    (see host.__main__._watch_parent): no orphaned trial outlives a killed sweep. The write end,
    returned, is held open until the host is closed.

    Requests and replies travel on a socket pair (the host's stdin and stdout), not on pipes: a
    pipe's end can be opened again through /proc/PID/fd by any process of the user, and a process
    a run left behind read the host's true reply off it and put back one that said 1 ms; a
    socket cannot be opened that way.
    """
    watch_fd, lifeline = os.pipe()
    env[protocol.PARENT_FD_ENV] = str(watch_fd)
    env[protocol.HOST_MARK_ENV] = os.urandom(8).hex()
    ours, theirs = socket.socketpair()
    try:
        proc = subprocess.Popen(
            [python, "-m", "conc_lab.host"],
            stdin=theirs.fileno(),
            stdout=theirs.fileno(),
            stderr=subprocess.PIPE,  # read as replies are awaited; only a bounded tail is kept
            env=env,
            start_new_session=True,
            pass_fds=(watch_fd,),
        )
    except BaseException:
        os.close(lifeline)
        ours.close()
        raise
    finally:
        os.close(watch_fd)
        theirs.close()
    return proc, lifeline, ours


def _kill_session(proc: subprocess.Popen, mark: str | None = None) -> int | None:
    """Kill ``proc``'s whole process group, and what left it; returns its exit code.

    ``mark``: the host's HOST_MARK_ENV. Processes that still carry it are killed too: a run that
    killed the host (``os.kill(os.getppid(), SIGKILL)``) orphaned its children to init, where no
    walk of the host's tree finds them, and they would spin beside every later run.
    """
    if proc.poll() is None:
        # Descendants that started sessions of their own are outside the group: find them first.
        strays = hygiene.descendants(proc.pid)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in strays:
            hygiene.kill_tree_member(pid)
    code = proc.wait()
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # workers it left behind in its group
    except (ProcessLookupError, PermissionError):
        pass
    for _ in range(_MARK_ROUNDS) if mark else ():
        marked = hygiene.carrying(protocol.HOST_MARK_ENV, mark)
        if not marked:
            break
        for pid in marked:  # again until none is left: one may have forked as the walk read it
            hygiene.kill_tree_member(pid)
    return code


#: How many walks of /proc for a dead host's marked processes, at most (a forking one may need two).
_MARK_ROUNDS = 5


def _exit_text(code: int | None) -> str:
    """How the host ended, from its exit code (negative: the signal that killed it)."""
    if code is not None and code < 0:
        try:
            return f"trial host killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"trial host killed by signal {-code}"
    return f"trial host exited with code {code}"


class HostDied(RuntimeError):
    """The host exited or was killed while a request was in flight."""


class HostTimeout(RuntimeError):
    """The host did not answer in time; it has been killed."""


class TrialHost:
    """A live trial host. ``request`` sends one JSON request and waits for the reply.

    >>> with TrialHost() as host:
    ...     host.info["python_impl"]
    'CPython'
    """

    def __init__(
        self,
        python: str | None = None,
        search_path: list[str] | None = None,
        start_timeout: float = 60,
        shm_watch: shm.Watch | None = None,
    ):
        """``shm_watch``: /dev/shm as the runner last listed it; a kill first notes in ``shm_held``
        what the host's processes hold there that appeared since (the run's, to be removed)."""
        self.python = python or sys.executable
        self._shm_watch, self.shm_held = shm_watch, set()
        env = child_env(search_path)
        self.proc, self._lifeline, self._channel = _spawn(self.python, env)
        self._mark = env[protocol.HOST_MARK_ENV]
        self.stderr = StderrTail(self.proc.stderr)  # what the host wrote since the request began
        self._buf = b""
        self._secret = None
        self._next_id = 0
        self.started = time.perf_counter()
        try:
            self.info = self._read(start_timeout)
            problem = protocol.version_problem(self.info)
            if problem:
                raise HostDied(problem)
        except BaseException:
            self.close()
            raise
        self._secret = self.info.pop(protocol.SECRET, None)
        self.start_s = time.perf_counter() - self.started

    def request(self, message: dict, timeout: float | None) -> dict:
        """Send ``message``; return the reply, or raise HostTimeout / HostDied (host killed either way).

        A reply that says ``retire`` (the trial left something in the host that cannot be undone)
        is returned once the host has exited, so the next request goes to a fresh one. A reply
        that is not the answer to this request (another id, no secret: a line some other process
        wrote into the pipe) kills the host and raises HostDied: no forged line becomes a row.
        An outcome whose own durations do not fit in the time taken here around the request
        is failed, with the reason.
        """
        self.stderr.drain(0)  # what leftovers wrote between requests is not this trial's
        self.stderr.tail = b""
        self._next_id += 1
        request_id = self._next_id
        message = dict(message, **{protocol.ID: request_id})
        started = time.perf_counter()
        try:
            self._channel.sendall(json.dumps(message).encode() + b"\n")
        except OSError:
            raise HostDied(self._death_note()) from None
        reply = self._read(timeout)
        envelope = time.perf_counter() - started
        problem = protocol.check_reply(reply, request_id, self._secret)
        if problem:
            self.kill()
            raise HostDied(problem + "; trial host retired")
        _check_times(reply, envelope)
        if reply.get(protocol.RETIRE):
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
            self.kill()
        return reply

    def _read(self, timeout: float | None) -> dict:
        """The next JSON line from the host (a reply, or the hello)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self._channel.fileno()
        while True:
            while b"\n" not in self._buf:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    self.kill()
                    raise HostTimeout(f"no answer within {timeout:g} s")
                ready = self._wait(fd, _LIVENESS_S if left is None else min(left, _LIVENESS_S))
                if not ready:
                    if self.proc.poll() is not None and not self._wait(fd, 0):
                        raise HostDied(self._death_note())  # dead, though a forked child holds the pipe
                    continue
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise HostDied(self._death_note())
                self._buf += chunk
            line, _, self._buf = self._buf.partition(b"\n")
            try:
                return json.loads(line)
            except ValueError:
                if not hasattr(self, "info"):  # printed before the host took stdout (a sitecustomize)
                    continue
                self.kill()
                raise HostDied(f"trial host sent a line that is not JSON: {line[:200]!r}") from None

    def _wait(self, fd: int, timeout: float) -> bool:
        """Wait until ``fd`` is readable (True) or ``timeout`` passes, keeping the stderr tail meanwhile."""
        err = self.stderr.fileno()
        ready, _, _ = select.select([fd] + ([err] if err is not None else []), [], [], timeout)
        if err in ready:
            self.stderr.drain(0)
        return fd in ready

    def _death_note(self) -> str:
        code = self.kill()
        self.stderr.drain(0.05)
        tail = (self.stderr.text() or "")[-2000:]
        return _exit_text(code) + (f"; its stderr ended with: {tail}" if tail else "")

    def kill(self) -> int | None:
        """Kill the host's whole process group, and what left it; returns the host's exit code."""
        if self._shm_watch is not None and self.proc.poll() is None:
            self.shm_held = self._shm_watch.held(self.proc.pid)  # while its processes still hold it
        return _kill_session(self.proc, self._mark)

    def close(self):
        """Ask the host to exit; kill it if it does not within a second."""
        if self.proc.poll() is None:
            try:
                bye = protocol.request(protocol.EXIT, request_id=0)
                self._channel.sendall(json.dumps(bye).encode() + b"\n")
                self.proc.wait(1)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        self.proc.stderr.close()
        self._channel.close()
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
