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
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import conc_lab
from conc_lab.host import protocol

#: The folder holding the ``conc_lab`` package: put on a child's path, so any interpreter can
#: run ``python -m conc_lab.host`` from source without conc_lab installed in it.
PACKAGE_ROOT = str(Path(conc_lab.__file__).resolve().parent.parent)
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
    for var in protocol.THREAD_ENV:
        env.setdefault(var, "1")
    return env


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
        self, python: str | None = None, search_path: list[str] | None = None, start_timeout: float = 60
    ):
        self.python = python or sys.executable
        env = child_env(search_path)
        self._stderr = tempfile.TemporaryFile()
        # The host watches the read end and kills its process group when this process dies
        # (see host.__main__._watch_parent): no orphaned trial outlives a killed sweep.
        watch_fd, self._lifeline = os.pipe()
        env[protocol.PARENT_FD_ENV] = str(watch_fd)
        try:
            self.proc = subprocess.Popen(
                [self.python, "-m", "conc_lab.host"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=env,
                start_new_session=True,
                pass_fds=(watch_fd,),
            )
        except BaseException:
            os.close(self._lifeline)
            self._stderr.close()
            raise
        finally:
            os.close(watch_fd)
        self._buf = b""
        self.started = time.perf_counter()
        try:
            self.info = self._read(start_timeout)
        except BaseException:
            self.close()
            raise
        self.start_s = time.perf_counter() - self.started

    def request(self, message: dict, timeout: float | None) -> dict:
        """Send ``message``; return the reply, or raise HostTimeout / HostDied (host killed either way)."""
        try:
            self.proc.stdin.write(json.dumps(message).encode() + b"\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise HostDied(self._death_note()) from None
        return self._read(timeout)

    def _read(self, timeout: float | None) -> dict:
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            while b"\n" not in self._buf:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    self.kill()
                    raise HostTimeout(f"no answer within {timeout:g} s")
                ready, _, _ = select.select([fd], [], [], left)
                if not ready:
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

    def _death_note(self) -> str:
        code = self.kill()
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].decode(errors="replace").strip()
        if code is not None and code < 0:
            try:
                what = f"trial host killed by {signal.Signals(-code).name}"
            except ValueError:
                what = f"trial host killed by signal {-code}"
        else:
            what = f"trial host exited with code {code}"
        return what + (f"; its stderr ended with: {tail}" if tail else "")

    def kill(self) -> int | None:
        """Kill the host's whole process group; returns its exit code."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        code = self.proc.wait()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # workers it left behind in its group
        except (ProcessLookupError, PermissionError):
            pass
        return code

    def close(self):
        """Ask the host to exit; kill it if it does not within a second."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps(protocol.request(protocol.EXIT)).encode() + b"\n")
                self.proc.stdin.flush()
                self.proc.wait(1)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()
        for f in (self.proc.stdin, self.proc.stdout, self._stderr):
            f.close()
        if self._lifeline is not None:
            os.close(self._lifeline)
            self._lifeline = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
