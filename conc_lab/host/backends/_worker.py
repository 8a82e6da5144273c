"""The one worker loop every backend runs, and the collector that turns its messages into an outcome.

Sequential, threading and multiprocessing workers all run ``run_worker``: pin, signal
ready, pull task indices until ``None``, call the workload, emit a record per task. Using
one loop everywhere keeps the per-task bookkeeping identical, so backends differ only in
what they are meant to differ in: where the loop runs.

Messages (plain tuples, picklable): ``("ready", worker)``, ``("done", task, result, record)``,
``("error", task, text)``, ``("switches", worker, involuntary_context_switches)``,
``("left", worker, text)`` (what a worker process left running), and
``("exit", worker, user_s, sys_s, peak_rss_bytes)``.
A record is ``[task, worker, core, cpu, pid, node, start, end]`` with absolute clock times;
the collector makes them relative to the run's start.

Standard library only, Python 3.8 syntax.
"""

import os
import sys
import threading

from conc_lab.host import affinity, measure, protocol
from conc_lab.host.workload import import_function, search_first


def is_async(fn):
    """True for an ``async def`` workload (awaited by asyncio, run on a loop by sequential).

    Read from the code flags rather than ``inspect``, which the host does not otherwise import.

    >>> async def f(task, size): return task
    >>> is_async(f), is_async(print)
    (True, False)
    """
    return bool(getattr(getattr(fn, "__code__", None), "co_flags", 0) & _CO_COROUTINE)


_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE, the same on every CPython 3.x


def run_worker(index, core, fn, size, next_task, emit, node=None):
    """Pin to ``core`` (None: don't), then run tasks from ``next_task()`` until it returns None.

    Returns the (user, system) CPU seconds this worker spent in the loop. The affinity the
    thread had before is restored, so a reused thread (the host's own) is not left pinned.
    """
    previous = affinity.pin(core) if core is not None else None
    try:
        pid = os.getpid()
        core_no = -1 if core is None else core
        user0, sys0 = measure.cpu_times()
        switches0, wait0 = measure.involuntary_switches(), measure.cpu_wait_s()
        emit(("ready", index))
        while True:
            task = next_task()
            if task is None:
                break
            start = measure.clock()
            try:
                result = fn(task, size)
            except BaseException:  # noqa: B036 - a workload's SystemExit is a failed task, not our exit
                emit(("error", task, _short_traceback()))
                break  # the trial has failed; its other workers are stopped by the backend
            end = measure.clock()
            record = [task, index, core_no, affinity.current_cpu(), pid, node, start, end]
            try:
                emit(("done", task, result, record))
            except Exception as exc:  # a result a process pipe cannot carry (a lambda, a generator)
                emit(("error", task, _unsendable(result, exc)))
                break
        user1, sys1 = measure.cpu_times()
        wait1 = measure.cpu_wait_s()
        waited = None if wait0 is None or wait1 is None else wait1 - wait0
        emit(("switches", index, measure.involuntary_switches() - switches0, waited))
        return user1 - user0, sys1 - sys0
    finally:
        affinity.restore(previous)


class Collector(object):
    """Accumulates worker messages into the outcome dict the host sends back."""

    def __init__(self, tasks, workers):
        self.tasks = tasks
        self.workers = workers
        self.results = [None] * tasks
        self.records = []
        self.done = 0
        self.ready = 0
        self.exited = 0
        self.user = 0.0
        self.sys = 0.0
        self.rss = 0
        self.error = None
        self.run_end = None
        self.stopped = None
        self.switches = 0
        self.waited = 0.0  # None once a worker could not tell
        self.left = []

    def feed(self, msg):
        kind = msg[0]
        if kind == "done":
            _, task, result, record = msg
            self.results[task] = result
            self.records.append(record)
            self.done += 1
            if self.done == self.tasks:
                self.run_end = measure.clock()
        elif kind == "ready":
            self.ready += 1
        elif kind == "exit":
            self.exited += 1
            self.user += msg[2]
            self.sys += msg[3]
            self.rss += msg[4]
        elif kind == "error":
            if self.error is None:
                self.error = "task %s raised:\n%s" % (msg[1], msg[2])
        elif kind == "switches":
            self.switches += msg[2]
            self.waited = None if self.waited is None or msg[3] is None else self.waited + msg[3]
        elif kind == "left":
            self.left.append(msg[2])
        else:
            raise ValueError("unknown worker message %r" % (kind,))

    @property
    def finished(self):
        return self.error is not None or (self.done == self.tasks and self.exited == self.workers)

    def outcome(self, setup_s, run_start, cores):
        self.stopped = measure.clock()
        checksum = None
        if self.error is None:
            try:
                checksum = measure.checksum(self.results)
            except measure.NotJSONable as exc:
                self.error = str(exc)
        return protocol.outcome(
            status=protocol.STATUS_OK if self.error is None else protocol.STATUS_FAILED,
            error=self.error,
            setup_s=setup_s,
            run_s=(self.run_end - run_start) if self.run_end is not None else None,
            cpu_user_s=self.user,
            cpu_sys_s=self.sys,
            peak_rss_bytes=self.rss,
            cores=cores,
            task_records=[r[:6] + [r[6] - run_start, r[7] - run_start] for r in self.records],
            checksum=checksum,
            involuntary_switches=self.switches,
            cpu_wait_s=self.waited,
            left_behind=list(self.left),
        )

    def teardown_s(self):
        """Seconds from the last task's end (or the trial's failure) until now, when the workers are gone.

        The backend calls it once its workers are joined: with ``setup_s`` and ``run_s`` it makes
        the end-to-end time a program using that backend pays.
        """
        since = self.run_end if self.run_end is not None else self.stopped
        return None if since is None else max(measure.clock() - since, 0.0)


class WorkerSetupFailed(Exception):
    """A worker could not start (its reason is the whole message: no traceback needed)."""


def run_thread_pool(trial, body, name):
    """Run a trial on ``trial["workers"]`` host threads: the loop the thread backends share.

    ``body(index, core, next_task, emit)`` is one worker: it pins itself, emits ``("ready",
    index)``, runs tasks from ``next_task()`` until None, and returns its (user, system) CPU
    seconds. A worker that raises, before it is ready too (a core it cannot pin to), fails the
    trial at once: the pool never waits for a ready that cannot come.
    """
    import queue  # here: the host has it loaded for its runs; a spawned worker (process_main) never needs it

    workers, cores = trial["workers"], trial["cores"]
    tasks_q, out_q = queue.SimpleQueue(), queue.SimpleQueue()
    collector = Collector(trial["tasks"], workers)

    def thread_main(index):
        try:
            user, system = body(index, cores[index] if cores else None, tasks_q.get, out_q.put)
            out_q.put(("exit", index, user, system, 0))
        except BaseException:  # noqa: B036 - anything here fails the trial, never the host
            out_q.put(("error", -1, "worker %d: %s" % (index, _failure_text())))

    setup_start = measure.clock()
    threads = [
        threading.Thread(target=thread_main, args=(i,), name="%s-%d" % (name, i), daemon=True)
        for i in range(workers)
    ]
    for t in threads:
        t.start()
    while collector.ready < workers and collector.error is None:
        collector.feed(out_q.get())
    run_start = measure.clock()
    if collector.error is None:
        for task in range(trial["tasks"]):
            tasks_q.put(task)
    for _ in range(workers):
        tasks_q.put(None)
    while not collector.finished:
        collector.feed(out_q.get())
    if collector.error is not None:
        _drain(tasks_q)  # the other workers stop after their current task
        for _ in range(workers):
            tasks_q.put(None)
    # Threads cannot be killed; joining them keeps a failed trial's leftovers off the next timing.
    # A thread that never returns is the runner's to handle: it kills the whole host on timeout.
    outcome = collector.outcome(run_start - setup_start, run_start, cores)
    for t in threads:
        t.join()
    outcome[protocol.TEARDOWN_S] = collector.teardown_s()
    return outcome


def _drain(q):
    import queue

    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


def _failure_text():
    exc = sys.exc_info()[1]
    return str(exc) if isinstance(exc, WorkerSetupFailed) else _short_traceback()


def _unsendable(result, exc):
    try:
        measure.check_jsonable(result)
    except measure.NotJSONable as why:
        return str(why)
    return "result could not be sent to the host: %s: %s" % (type(exc).__name__, exc)


def _short_traceback(limit=4000):
    import traceback  # only on failure: it pulls in textwrap, enum, re (15-30 ms in every spawned worker)

    text = traceback.format_exc()
    return text if len(text) <= limit else "...\n" + text[-limit:]


def process_main(index, core, ref, size, tasks_q, conn, path):
    """Entry point of a multiprocessing worker (module-level so spawn and forkserver can import it)."""
    search_first(path)
    try:
        fn = import_function(ref)
        measure.reset_peak_rss()
        user, system = run_worker(index, core, fn, size, tasks_q.get, conn.send)
        left = _left_threads()
        if left:
            conn.send(("left", index, "worker %d left %s running; ended with os._exit" % (index, left)))
        conn.send(("exit", index, user, system, measure.peak_rss_bytes()))
    except BaseException:  # noqa: B036 - report anything, including a bad import, before dying
        try:
            conn.send(("error", -1, _short_traceback()))
        except Exception:
            pass
    finally:
        conn.close()
    if _left_threads():
        # A non-daemon thread would keep the worker in interpreter shutdown for ever (the pool's
        # join, then the trial, would hang until its timeout): its results are in, so leave now.
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(0)


def _left_threads():
    """Names of the non-daemon threads, other than the main one, still alive in this process."""
    main = threading.main_thread()
    return ", ".join(
        repr(t.name) for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive()
    )
