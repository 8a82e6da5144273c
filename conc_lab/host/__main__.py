"""The trial host: a clean process that runs each of the runner's requests in a child forked for it.

The protocol (ops, fields, environment names) is ``conc_lab.host.protocol``: one JSON
object per line. The host answers each request on its original stdout, which it keeps for
itself; file descriptor 1 is pointed at /dev/null so a workload's prints cannot corrupt
the protocol. At start the host sends its hello line, with the protocol's version and a
secret that every later reply carries.

Each run happens in a child forked for it alone (``host.fork``): the host itself never
imports a workload, so nothing a run does reaches a later one. Ray runs are the exception:
a Ray connection cannot cross a fork, so a host that runs Ray trials (one of its own, see
the executor) runs them in itself, guarded by ``host.hygiene``. The runner kills the host's
whole process group (and the run's) on a timeout or crash and starts a fresh one, so
nothing here needs to defend against a hung workload.

Standard library only, Python 3.8 syntax: the host may run under another interpreter.
"""

import hashlib  # noqa: F401 - loaded once here, so no run's process (forked from this one) loads
import json
import os
import queue  # noqa: F401 - them per run; the modules a spawned worker imports load them where used
import select
import signal
import sys
import time

from conc_lab.host import affinity, backends, fork, hygiene, measure, noise, protocol, trial
from conc_lab.host.workload import search_first


def in_process(request):
    """Whether ``request`` runs in the host itself: a Ray trial, or any trial once Ray is loaded
    (or every one, for the benchmark that measures what the fresh process costs)."""
    ray_loaded = "ray" in sys.modules  # package, not the backend
    if request[protocol.TRIAL].get("backend") == protocol.RAY or ray_loaded:
        return True
    return os.environ.get(protocol.IN_PROCESS_ENV) == "1"


class InProcess(object):
    """Runs in the host itself (Ray), with the after-run guard that restores or retires the host."""

    def __init__(self, canary):
        self.guard = hygiene.Guard()
        self.workloads = {}
        self.canary = canary

    def run(self, request):
        token = self.guard.before()
        started = time.perf_counter()
        try:
            ref = request[protocol.TRIAL]["workload"]
            if ref not in self.workloads:
                # What importing the workload's module starts (a Ray connection's threads) is the
                # host's from now on, not a leftover of this run.
                with hygiene.infrastructure():
                    self.workloads[ref] = trial.load_workload(ref)
            reply = {protocol.OK: True, protocol.OUTCOME: trial.handle(request, self.workloads, self.canary)}
        except Exception:  # a trial that fails to start is a recorded failure, not a dead host
            reply = fork.failure_reply()
        outside = time.perf_counter() - started
        notes, retire = self.guard.after(token)
        out = reply.get(protocol.OUTCOME) if reply.get(protocol.OK) else reply
        left = fork.lines_of(out.get(protocol.LEFT_BEHIND)) + notes
        out[protocol.LEFT_BEHIND] = "; ".join(left) or None
        if reply.get(protocol.OK):
            noise.remember(self.canary, out.pop(protocol.CANARY_READINGS, None))
            out[protocol.OUTSIDE_S] = outside
            fork.timing_failure(out, outside, "the host timed around it")
        reply[protocol.RETIRE] = retire
        return reply


def main():
    # The protocol keeps stdin/stdout for itself: a workload that prints, or reads stdin,
    # sees /dev/null instead of eating or corrupting the runner's requests and replies.
    proto_in = _Lines(os.dup(0))
    proto_out = os.dup(1)  # written with os.write alone: no file object's buffer keeps a line
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdin = open(os.devnull)
    _hide_protocol_from_forks(proto_in.fd, proto_out)
    # User code resolves relative imports (experiments.*) against the directory the sweep runs from.
    search_first(protocol.search_path(os.environ))
    hygiene.become_subreaper()  # what a run's process orphans comes to the host, which kills it
    runs = fork.Runs((proto_in.fd, proto_out))
    _watch_parent(runs)

    def send(obj):
        _send_signed(proto_out, obj, runs.secret)

    send(_hello())
    ray_runs = None
    while True:
        request = _parse(proto_in.readline())
        if request is None:
            break
        if request[protocol.OP] == protocol.EXIT:
            break
        if in_process(request):
            ray_runs = ray_runs or InProcess(runs.canary)
            reply = ray_runs.run(request)
        else:
            reply = runs.run(request)
        if proto_in.pending():
            # The runner sends one request and waits: a line that came in meanwhile was written
            # by some other process (the run's own, through /proc). The stream is no longer the
            # runner's alone: this run fails, and the host answers and exits.
            reply = {protocol.OK: False, protocol.RETIRE: True, protocol.ERROR: FORGED_REQUEST}
        reply[protocol.ID] = request.get(protocol.ID)
        send(reply)
        if reply.get(protocol.RETIRE):
            os._exit(0)  # a leftover thread may be spinning or non-daemon: no orderly shutdown
        # While the runner records the reply: reap the run's process, kill what it left, and fork
        # the next run's process, so none of that is on the path the runner waits on.
        runs.settle()
    runs.close()
    backends.close_all()


def _send_signed(fd, obj, secret):
    """Write ``obj`` on ``fd`` as one line with the host's ``secret`` added.

    The secret lives in ``secret`` (a bytearray a run's process zeroes) alone: the line is put
    together in a buffer zeroed once written, never in a str or a file object's buffer. A freed
    copy would stay in the host's memory, which every run's process is forked with: a run found
    the secret there, and signed a forged reply with it.
    """
    head = json.dumps(obj, default=repr).encode()[:-1]  # without its closing brace
    field = (
        b', "%s": "' % protocol.SECRET.encode() if len(head) > 1 else b'"%s": "' % protocol.SECRET.encode()
    )
    at = len(head) + len(field)
    line = bytearray(at + len(secret) + 3)
    line[: len(head)], line[len(head) : at] = head, field
    line[at : at + len(secret)] = secret
    line[at + len(secret) :] = b'"}\n'
    try:
        view = memoryview(line)
        while view:
            view = view[os.write(fd, view) :]
        view.release()
    finally:
        line[:] = bytes(len(line))


FORGED_REQUEST = "a line was written into the trial host's request pipe during this run (a forged request)"


def _hello():
    hello = measure.interpreter()
    hello.update({protocol.OP: protocol.HELLO, protocol.VERSION: protocol.PROTOCOL_VERSION})
    hello["affinity"] = affinity.SUPPORTED
    return hello


def _parse(line):
    """The request on ``line``; None at EOF. A line that is not a request is a forged one: exit."""
    if not line:
        return None
    try:
        request = json.loads(line)
    except ValueError:
        request = None
    if not isinstance(request, dict) or protocol.OP not in request:
        sys.stderr.write("trial host: %s\n" % FORGED_REQUEST)
        os._exit(3)
    return request


class _Lines(object):
    """Lines read from a pipe by hand, so the host can tell whether more has come in (``pending``)."""

    def __init__(self, fd):
        self.fd = fd
        self.buf = b""

    def readline(self):
        while b"\n" not in self.buf:
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                return None
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode("utf-8", "replace")

    def pending(self):
        return bool(self.buf) or bool(select.select([self.fd], [], [], 0)[0])


def _hide_protocol_from_forks(*fds):
    """In any process forked from the host, point the protocol pipes at /dev/null.

    A workload that ``os.fork()``s leaves a child holding the reply pipe: the runner would
    then never see EOF when the host dies, and a crash would wait out the whole timeout.
    (multiprocessing's fork workers are forked too; they never use these pipes.)
    """

    def in_child():
        null = os.open(os.devnull, os.O_RDWR)
        for fd in fds:
            os.dup2(null, fd)
        os.close(null)

    if hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=in_child)


#: How many walks of its tree the host makes, at most, for what to kill as the runner dies.
_LAST_WALKS = 20


def _kill_tree(current):
    """Kill every process below this one: the run in progress (``current``, a process group of its
    own) and what it started in sessions of their own, which die with no process group of the host's
    (they would spin on beside the --resume that follows the runner's death).

    The run's group is stopped first: a stopped process neither forks nor dies, so it hands no child
    on to this one while the tree is read, and this host's main thread, which waits for it, is not
    woken to end the process (the reply it then sends finds the runner gone) halfway through.
    """
    if current is not None:
        try:
            os.killpg(current, signal.SIGSTOP)
        except OSError:
            pass
    for _ in range(_LAST_WALKS):  # again until none is left: one may have forked as it was read
        left = [p for p in hygiene.descendants() if hygiene.state_of(p) not in ("Z", None)]
        if not left:
            break
        for pid in left:
            hygiene.kill_tree_member(pid)


def _watch_parent(runs):
    """Kill this host's whole process group when the runner dies, even by SIGKILL.

    The runner holds the write end of a pipe whose read end is PARENT_FD_ENV; the kernel
    closes it when the runner dies, however it dies. Without this, a host busy with a hung
    or long trial would outlive a killed sweep and spoil the timings of the resumed one.
    A thread blocked in ``os.read`` holds no GIL, so it costs the trials nothing.
    """
    fd = os.environ.pop(protocol.PARENT_FD_ENV, None)
    if not fd:
        return
    import threading

    fd = int(fd)
    runs.proto_fds += (fd,)  # a run's process has no business with the lifeline either

    def watch():
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        _kill_tree(runs.current)
        if os.getpgid(0) == os.getpid():  # our own session (TrialHost): take the workers along
            os.killpg(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="conclab-parent-watch", daemon=True).start()


if __name__ == "__main__":
    main()
