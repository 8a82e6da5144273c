"""The trial host: a child process that runs one trial at a time for the runner.

The protocol (ops, fields, environment names) is ``conc_lab.host.protocol``: one JSON
object per line. The host answers each request on its original stdout, which it keeps for
itself; file descriptor 1 is pointed at /dev/null so a workload's prints cannot corrupt
the protocol. At start the host sends its hello line. The runner kills the
host's whole process group on a timeout or crash and starts a fresh one, so nothing here
needs to defend against a hung workload.

Standard library only, Python 3.8 syntax: the host may run under another interpreter.
"""

import importlib.util
import json
import os
import sys

from conc_lab.host import affinity, backends, hygiene, measure, noise, protocol
from conc_lab.host.workload import import_function, lacks, search_first


def handle(request, workloads):
    trial = request[protocol.TRIAL]
    ref = trial["workload"]
    fn = workloads.get(ref)
    if fn is None:
        # What importing the workload's module starts (a thread, a variable) is the host's from now on,
        # not a leftover of this trial: it would otherwise retire every host that imports it.
        with hygiene.infrastructure():
            fn = workloads[ref] = load_workload(ref)
    if not callable(fn):  # what this interpreter lacks: the trial is skipped here, not failed
        return {protocol.STATUS: protocol.STATUS_SKIPPED, protocol.ERROR: fn}
    if request[protocol.OP] == protocol.REFERENCE:
        trial = dict(trial, backend="sequential", cores=None)
    backend = backends.get(trial["backend"])
    measure.reset_peak_rss()
    # Optional hooks, run here in the parent and untimed, as the seed post's main does
    # `result = None`, starts and joins its workers, then reads `result` (experiments.memory).
    prepare, observe = getattr(fn, "prepare", None), getattr(fn, "observe", None)
    if prepare is not None:
        prepare()
    if request[protocol.OP] == protocol.REFERENCE:  # untimed: no noise to measure
        outcome = backend.run(fn, trial)
    else:
        outcome = _measured(backend, fn, trial)
    if observe is not None and outcome.get(protocol.STATUS) == protocol.STATUS_OK:
        outcome["observed"] = json.dumps(observe(), sort_keys=True, default=repr)
    outcome["peak_rss_bytes"] = (outcome.get("peak_rss_bytes") or 0) + measure.peak_rss_bytes()
    outcome[protocol.CHECKABLE] = getattr(fn, "checkable", True)
    outcome[protocol.GIL_ENABLED] = measure.gil_enabled()  # a free-threaded build may have turned it back on
    return outcome


def _measured(backend, fn, trial):
    """``backend.run`` with the noise around it: foreign CPU, steal, and the speed canary."""
    cores = trial.get("cores")
    canary_before = noise.canary(cores)
    with_ray = trial["backend"] == "ray"  # else what Ray still runs is foreign to this trial
    before = noise.Sample(cores, with_ray)
    outcome = backend.run(fn, trial)
    outcome.update(noise.Sample(cores, with_ray).since(before))
    outcome["canary_before_s"], outcome["canary_after_s"] = canary_before, noise.canary(cores)
    return outcome


def load_workload(ref):
    """The workload's function, or a string naming the module this interpreter lacks for it.

    A workload that needs a package says so by importing it at the top of its module, or,
    if it imports lazily, with ``fn.requires = ("numpy",)``. The config check already
    imported the workload under conc_lab's own interpreter, so a module missing *here* is
    this interpreter's lack (a package not installed in it, a stdlib module newer than it),
    not a bug; only a module of the workload's own package missing is left to fail.
    """
    try:
        fn = import_function(ref)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        own = ref.partition(":")[0].partition(".")[0]
        if type(exc).__name__ != "ModuleNotFoundError" or not missing or missing.partition(".")[0] == own:
            raise
        return lacks(missing)
    for name in getattr(fn, "requires", ()):
        try:
            found = importlib.util.find_spec(name.partition(".")[0]) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return lacks(name)
    return fn


def main():
    # The protocol keeps stdin/stdout for itself: a workload that prints, or reads stdin,
    # sees /dev/null instead of eating or corrupting the runner's requests and replies.
    proto_in = os.fdopen(os.dup(0), "r")
    proto_out = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    os.close(devnull)
    sys.stdin = open(os.devnull)
    _hide_protocol_from_forks(proto_in.fileno(), proto_out.fileno())
    _watch_parent()
    # User code resolves relative imports (experiments.*) against the directory the sweep runs from.
    extra = protocol.search_path(os.environ)
    search_first(extra)

    def send(obj):
        proto_out.write(json.dumps(obj, default=repr) + "\n")

    hello = measure.interpreter()
    hello[protocol.OP] = protocol.HELLO
    hello["affinity"] = affinity.SUPPORTED
    send(hello)
    workloads = {}
    guard = hygiene.Guard()
    for line in proto_in:
        request = json.loads(line)
        if request[protocol.OP] == protocol.EXIT:
            break
        token = guard.before()
        try:
            reply = {protocol.OK: True, protocol.OUTCOME: handle(request, workloads)}
        except Exception as exc:  # a trial that fails to start is a recorded failure, not a dead host
            import traceback

            reply = {
                protocol.OK: False,
                protocol.ERROR: "%s: %s" % (type(exc).__name__, exc),
                protocol.TRACEBACK: traceback.format_exc(),
            }
        # What the trial left in this process is restored, or the host retires after answering.
        notes, retire = guard.after(token)
        outcome = reply.get(protocol.OUTCOME) or reply
        left = list(outcome.get(protocol.LEFT_BEHIND) or []) + notes
        outcome[protocol.LEFT_BEHIND] = "; ".join(left) or None
        reply[protocol.RETIRE] = retire
        send(reply)
        if retire:
            proto_out.flush()
            os._exit(0)  # a leftover thread may be spinning or non-daemon: no orderly shutdown
    backends.close_all()


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


def _watch_parent():
    """Kill this host's whole process group when the runner dies, even by SIGKILL.

    The runner holds the write end of a pipe whose read end is PARENT_FD_ENV; the kernel
    closes it when the runner dies, however it dies. Without this, a host busy with a hung
    or long trial would outlive a killed sweep and spoil the timings of the resumed one.
    A thread blocked in ``os.read`` holds no GIL, so it costs the trials nothing.
    """
    fd = os.environ.pop(protocol.PARENT_FD_ENV, None)
    if not fd:
        return
    import signal
    import threading

    fd = int(fd)

    def watch():
        try:
            while os.read(fd, 1):
                pass
        except OSError:
            pass
        if os.getpgid(0) == os.getpid():  # our own session (TrialHost): take the workers along
            os.killpg(os.getpid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, name="conclab-parent-watch", daemon=True).start()


if __name__ == "__main__":
    main()
