"""A fresh process per run: the clean host forks a child for each request; the child runs it and ends.

Whatever a run does to its process (threads, ``_thread`` threads, interval timers, signal
dispositions, rlimits, the garbage collector, the recursion limit, the umask, stdio and
hooks, clocks patched in Python or rewired in C) ends with it, so no later run can see it:
isolation by construction, not by a checklist. What it tried to leave is still *reported*
(``host.state``), so its row says so.

The host (the parent) never imports a workload. Per run it:

1. forks; the child points the host's protocol pipes at /dev/null, takes a process group of
   its own, dies with the host (PR_SET_PDEATHSIG), imports the workload, runs the request with
   the noise accounting around it (``trial``), and writes one framed reply, tagged with a nonce
   the parent made for this run, on a pipe made for this run alone;
2. the parent reads that one frame, times fork-to-reply itself (``outside_s``), reaps the
   child, kills what it left (its process group, and orphans re-parented to the host, which
   is a child subreaper), and fails a run whose own clock disagrees with the outside time.

A child that dies without a frame (``os._exit``, a signal) fails its run with its exit status;
the host lives on. Standard library only, Python 3.8 syntax.
"""

import gc
import json
import os
import signal
import sys
import time

from conc_lab.host import backends, codecache, hygiene, measure, noise, own, protocol, shm, state, trial, wire

_libc = []


def _die_with_parent():
    """SIGKILL this process when the host dies (Linux), however the host dies; and become a child
    subreaper, so what its workers orphan (a session of its own) is its child, for its report."""
    if not _libc:
        return
    try:
        _libc[0].prctl(hygiene.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        _libc[0].prctl(hygiene.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class Runs(object):
    """The host's side of forked runs; ``current`` is the pid of the run in progress, if any."""

    def __init__(self, proto_fds):
        self.proto_fds = proto_fds
        self.snapshot = None  # the clean host (taken at the first run), inherited by every child
        self.canary = {}  # core -> (seconds, when): recent canary readings, see noise.Canary
        self.current = None  # the pid of the run in progress
        self.idle = None  # (pid, request fd, reply fd) of the child waiting for the next request
        self.ended = None  # (pid, reaped) of the run replied to, until settled
        self.last = None  # (backend, workload) of the latest run: what the next process inherits
        #: Whether the last run was short (noise.CANARY_MIN_RUN_S): only then does the next run reuse
        #: a recent canary reading as its before-reading; after a long one it measures its own, as the
        #: canary's share of a long run is small and a reading from up to a period ago drifts.
        self.last_short = False
        #: The host's secret, which every reply carries: a run's process zeroes its copy first thing.
        self.secret = wire.new_secret()
        self.own = own.Settings()  # the host's, which a run can change through its pid
        if sys.platform.startswith("linux") and not _libc:
            import ctypes  # once, in the host: the child only calls through it

            try:
                _libc.append(ctypes.CDLL(None, use_errno=True))
            except OSError:
                pass

    def run(self, request):
        """The reply (without id and secret) to ``request``, run in a child forked for it.

        The child was forked in advance (``settle``, after the previous reply), so the fork is off
        the path the runner waits on; the host times the run from handing it the request.
        """
        params = request[protocol.TRIAL]
        self.settle()  # normally done already, between the last reply and this request
        if _needs_tracker(params) and _start_tracker():  # once per host: the waiting child lacks it
            self._stop_idle()
            self.idle = self._fork()
        backend = params["backend"] if request[protocol.OP] == protocol.RUN else protocol.SEQUENTIAL
        self.last = (backend, params["workload"])
        pid, request_fd, reply_fd = self.idle
        self.idle, self.current = None, pid
        nonce = os.urandom(8).hex()
        started = time.perf_counter()
        try:
            wire.write_all(request_fd, json.dumps({"nonce": nonce, "request": request}).encode())
        except OSError:
            pass  # it died already: wire.collect says how
        os.close(request_fd)
        try:
            reply, status, readings, first_at = wire.collect(reply_fd, pid, nonce)
        finally:
            os.close(reply_fd)
        now = time.perf_counter()
        self.ended = (pid, status is not None)
        noise.remember(self.canary, readings)
        return self._finish(reply, status, now - started, None if first_at is None else now - first_at)

    def settle(self):
        """After a reply: fork the next run's process to wait, reap the run's, and kill what it left.

        What the run left is killed first (``_kill_leftovers``), then the fork: it overlaps the
        ended process's exit (its memory torn down), which the reap waits for. All is done before
        the next request is handed on, so nothing of a run's process, or of what it left, runs
        beside the next run, nor reaches the next run's process as it waits (a leftover stopped it).
        """
        helpers = tuple(hygiene.multiprocessing_helpers())  # spared: the resource tracker, the forkserver
        if self.ended is not None:
            _kill_leftovers(*self.ended, spared=helpers)
        if self.idle is None:
            if self.last is not None:
                _prepare(*self.last)
            self.idle = self._fork()
        if self.ended is not None:
            pid, reaped = self.ended
            self.ended = None
            if not reaped:
                try:
                    os.waitpid(pid, 0)  # it exits right after its reply
                except ChildProcessError:
                    pass
            _clean_up(pid, waiting=(self.idle[0],) + helpers)  # and the next run's process, forked above
            self.current = None

    def _fork(self):
        """A child that waits for its request (one JSON document, up to EOF): (pid, request fd, reply fd)."""
        if self.snapshot is None:  # once the host is set up (its lifeline variable popped)
            self.snapshot = state.snapshot()
        if hasattr(gc, "freeze"):
            # What the host holds moves out of the collector's sight: a child would otherwise touch
            # (and so copy) every page of it when it first collects.
            gc.freeze()
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(request_w)
            os.close(reply_r)
            _child(self, request_r, reply_w)
        os.close(request_r)
        os.close(reply_w)
        try:
            os.setpgid(pid, pid)  # also here: the clean-up must not race the child's own call
        except OSError:
            pass
        return pid, request_w, reply_r

    def close(self):
        """Stop the waiting child and the resource tracker (the host is exiting)."""
        self._stop_idle()
        _stop_tracker()

    def _stop_idle(self):
        """End the child waiting for a request: it reads EOF and exits without running anything."""
        if self.idle is not None:
            pid, request_fd, reply_fd = self.idle
            self.idle = None
            os.close(request_fd)  # EOF: it exits without running anything
            os.close(reply_fd)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass

    def _finish(self, reply, status, outside, span=None):
        if reply is None:
            reply = {
                protocol.OK: True,
                protocol.OUTCOME: protocol.outcome(
                    status=protocol.STATUS_FAILED,
                    error="the run's process %s before it replied" % _exit_text(status),
                ),
            }
        out = reply.get(protocol.OUTCOME) if reply.get(protocol.OK) else reply
        restored, retire = self.own.restore()
        notes = lines_of(out.get(protocol.LEFT_BEHIND)) + restored
        out[protocol.LEFT_BEHIND] = "; ".join(notes) or None
        if retire:  # a fresh host from the runner has the settings this one cannot get back
            reply[protocol.RETIRE] = True
        if reply.get(protocol.OK):
            out.pop(
                protocol.CANARY_READINGS, None
            )  # the workload wrote this copy: the early frame's are kept
            inside = sum(out.get(k) or 0.0 for k in protocol.INSIDE_DURATIONS)
            self.last_short = inside < noise.CANARY_MIN_RUN_S
            out[protocol.OUTSIDE_S] = outside
            spans = (out.pop(protocol.SPAN_S, None), span)
            timing_failure(out, outside, "the host timed from outside (fork to reply)", spans)
        return reply


def _needs_tracker(params):
    """Whether a run of ``params`` spawns workers (spawn, forkserver), which need a resource tracker."""
    method = params.get("start_method") or protocol.DEFAULT_START_METHOD
    return params.get("backend") == protocol.MULTIPROCESSING and method != "fork"


def _start_tracker():
    """Start multiprocessing's resource tracker here in the host, once; True when it started now.

    A program that spawns workers starts one tracker (a whole interpreter) with its first, and
    keeps it. Left to each run's fresh process, every run would start its own, booting beside
    its spawned workers on the same cores: 27 ms more per spawned worker than plain
    ``multiprocessing`` in a program that already has one (``bench_harness.py``). Each run's
    process inherits the host's instead, as a program's later pools use the first one's.
    """
    from multiprocessing import resource_tracker

    tracker = resource_tracker._resource_tracker
    if getattr(tracker, "_pid", None) is not None:
        return False
    try:
        tracker.ensure_running()
    except Exception:  # noqa: BLE001 - each run then starts its own, as before
        return False
    return True


def _stop_tracker():
    """End the host's resource tracker and wait for it: it unlinks what spawned workers registered
    and left (closed, not unlinked) as it ends. Left to end on its own when the host exits, it
    could still be at that when the runner kills the host's process group, and the segments
    stayed in /dev/shm for good.
    """
    module = sys.modules.get("multiprocessing.resource_tracker")
    try:
        module._resource_tracker._stop()  # closes its pipe: it cleans up, exits, is reaped
    except Exception:  # noqa: BLE001 - none running, or reaped already: nothing to wait for
        pass


def _prepare(backend, workload):
    """The backend's module and the workload's code, prepared in the host (imported, compiled,
    re-stat'ed) before the fork, so the next run's process inherits them."""
    try:
        backends.get(backend)
        codecache.prepare(workload)
    except Exception:  # noqa: BLE001 - the run's process imports them itself, and says what failed
        pass


def _kill_leftovers(pid, reaped, spared):
    """SIGKILL the ended run ``pid``'s process group and every process it left, without waiting.

    Its process may still be exiting: what it started is then its child, or already the host's
    (re-parented), so its tree is read first and the host's children after, and nothing moving
    from one to the other is missed. Costs a /proc read or two when it left nothing. (``reaped``:
    its process is gone already, and its pid may be another's: its tree is the host's now.)
    """
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    left = ([] if reaped else hygiene.descendants(pid)) + hygiene.children_of(os.getpid())
    for p in left:
        if p != pid and p not in spared and hygiene.state_of(p) not in ("Z", None):
            hygiene.kill_tree_member(p)


def _clean_up(pid, waiting):
    """Kill what the run ``pid`` left: its process group, then orphans that came to the host, other
    than ``waiting`` (before the next run starts; its own report named its children already)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    others = [p for p in hygiene.children_of(os.getpid()) if p not in waiting]
    if not others:  # the common case: nothing came to the host, nothing to kill or reap
        return
    strays = [p for p in others if hygiene.state_of(p) not in ("Z", None)]
    if strays:
        strays = strays + [d for p in strays for d in hygiene.descendants(p)]
        for p in strays:
            hygiene.kill_tree_member(p)
    hygiene.reap(strays, waiting)


def timing_failure(out, outside, what, span=None):
    """Fail ``out`` when its inside durations are negative, not finite, or longer than ``outside``,
    or, with ``span`` (the run's own time between its two frames, the host's), when its clock fell
    behind the host's there (rewired in C: every duration fits, and all are too short).

    The durations are then dropped: no clock the workload could rewire becomes a number.
    True when it failed the run.

    >>> out = {"status": "ok", "run_s": -3806.0, "setup_s": 0.0}
    >>> timing_failure(out, 0.6, "the host timed"), out["status"], out["run_s"]
    (True, 'failed', None)
    >>> out["error"]
    'run_s is -3.81e+03 s: a run cannot take negative time (its clock was rewired?)'
    >>> out = {"status": "ok", "run_s": 0.0005, "setup_s": 0.0, "teardown_s": 0.0}
    >>> timing_failure(out, 0.62, "the host timed", (0.0006, 0.61)), out["status"], out["run_s"]
    (True, 'failed', None)
    """
    problem = protocol.time_problem(out, outside, what)
    if (
        problem is None
        and span is not None
        and None not in span
        and out.get(protocol.STATUS) == protocol.STATUS_OK
    ):
        problem = protocol.clock_problem(*span)
    if problem is None:
        return False
    protocol.fail_times(out, problem)
    return True


#: The clock every run is timed with, as the host loaded it: a workload that patches ``time`` in
#: Python for its own ends (freezegun) does not reach it; one that rewires it in C does, and is told.
_CLOCK = measure.clock


def _child(runs, request_fd, writer):
    """The forked child: wait for a request, run it, write one framed reply on ``writer``, and end."""
    code = 0
    try:
        runs.secret[:] = b"0" * len(runs.secret)
        # /dev/null over the host's pipes, not closed: a closed number would be reused, and the host's
        # at-fork hook (host.__main__) points those numbers at /dev/null in every process forked later.
        null = os.open(os.devnull, os.O_RDWR)
        for fd in runs.proto_fds:
            os.dup2(null, fd)
        os.close(null)
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
        _die_with_parent()
        message = wire.read_all(request_fd)
        os.close(request_fd)
        if not message:
            os._exit(0)  # the host is exiting
        message = json.loads(message)
        nonce, request = message["nonce"], message["request"]
        # What the host was forked from may have changed after its last restore (a leftover of the last
        # run, still alive as this process was forked, changing the host's settings through its pid).
        runs.own.restore()
        codecache.install()
        _run_and_reply(runs, request, writer, nonce, os.getpid())
    except BaseException:  # noqa: B036 - nothing may escape into the host's loop in the child
        code = 70
        try:
            import traceback

            traceback.print_exc()  # into the stderr tail the runner keeps for a failed run
        except BaseException:  # noqa: B036
            pass
    finally:
        try:
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)


def _run_and_reply(runs, request, writer, nonce, pid):
    in_shm = shm.names()  # before any of the workload's code: what it leaves there is told by the difference
    first_sent = None
    try:
        # The sweep's processes besides this one's tree: the host, alone. Not the runner: it only
        # waits while a run runs, so what its process takes then (threads of the notebook or app
        # that called conc_lab.sweep) is taken from the run.
        alone = (os.getppid(),)
        cache = runs.canary if runs.last_short else {}
        early = None
        if request[protocol.OP] == protocol.RUN:
            # Before any of the workload's code: what the host keeps for later runs is sent now,
            # in a frame of its own, which nothing the workload does can change.
            early = trial.canary_before(request, cache)
            wire.write_frame(writer, {"nonce": nonce, wire.CANARY_FRAME: early[0].fresh})
            first_sent = _CLOCK()  # the span the host times too: from this frame to the reply
        reply = {protocol.OK: True, protocol.OUTCOME: trial.handle(request, {}, cache, alone, early)}
    except BaseException:  # noqa: B036 - a workload's sys.exit at import fails the run, not the host
        reply = failure_reply()
    out = reply.get(protocol.OUTCOME) if reply.get(protocol.OK) else reply
    notes = lines_of(out.get(protocol.LEFT_BEHIND))
    left = state.left(runs.snapshot, threads_expected=1) + _children_note()
    if left:
        notes.append("left in its process, which ended with it: " + "; ".join(left))
    notes.extend(shm.left(in_shm))  # which outlives the process, unless removed
    out[protocol.LEFT_BEHIND] = "; ".join(notes) or None
    if os.getpid() != pid:
        # A copy of the run's process that the workload forked and never ended (no os._exit) ran on
        # through the run's code to here: only the run's own process replies (the copy, quicker, once
        # replied first, with CPU times below zero).
        os._exit(0)
    if first_sent is not None and reply.get(protocol.OK):
        out[protocol.SPAN_S] = _CLOCK() - first_sent
    wire.write_frame(writer, {"nonce": nonce, "reply": reply})


def lines_of(value):
    """A left-behind value (None, one line, or a backend's list of lines) as a list of lines."""
    if not value:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value if v]


def failure_reply():
    """The reply for a run that raised before the backend could record it (the exception being handled)."""
    import traceback

    exc = sys.exc_info()[1]
    return {
        protocol.OK: False,
        protocol.ERROR: "%s: %s" % (type(exc).__name__, exc),
        protocol.TRACEBACK: traceback.format_exc(),
    }


def _children_note():
    """The child's own child processes still running as it replies (not multiprocessing's helpers)."""
    if not hygiene.has_children():  # the common case, from one syscall instead of a /proc walk
        return []
    me = os.getpid()
    helpers = hygiene.multiprocessing_helpers()
    running = [
        p for p in hygiene.children_of(me) if p not in helpers and hygiene.state_of(p) not in ("Z", None)
    ]
    if not running:
        return []
    names = ", ".join("%d (%s)" % (p, hygiene.command_of(p)) for p in running[:5])
    more = " and %d more" % (len(running) - 5) if len(running) > 5 else ""
    return ["%d child process(es) still running: %s%s; killed" % (len(running), names, more)]


def _exit_text(status):
    if status is None:
        return "ended"
    if os.WIFSIGNALED(status):
        try:
            return "was killed by %s" % signal.Signals(os.WTERMSIG(status)).name
        except ValueError:
            return "was killed by signal %d" % os.WTERMSIG(status)
    return "exited with code %d" % os.WEXITSTATUS(status)
