"""A pool of ``workers`` processes made with the trial's start method (fork, spawn, forkserver).

Hand-rolled rather than ``multiprocessing.Pool`` for three reasons: each worker must know
its index to pin itself to its own core; start-up must be measured until every worker is
pinned and has imported the workload (Pool returns before spawned workers are ready);
and a worker that dies (os._exit, a segfault) must fail the trial at once, where Pool
would hang or silently replace it.
"""

import multiprocessing
import sys
import threading
from multiprocessing.connection import wait

from conc_lab.host import measure, protocol
from conc_lab.host.backends import Backend
from conc_lab.host.backends._worker import Collector, process_main


class ProcessBackend(Backend):
    name = protocol.MULTIPROCESSING

    def run(self, fn, trial):
        workers, cores = trial["workers"], trial["cores"]
        method = trial.get("start_method") or protocol.DEFAULT_START_METHOD
        ctx = multiprocessing.get_context(method)
        tasks_q = ctx.SimpleQueue()
        collector = Collector(trial["tasks"], workers)
        setup_start = measure.clock()
        procs, conns = [], {}
        try:
            for i in range(workers):
                reader, writer = ctx.Pipe(duplex=False)
                p = ctx.Process(
                    target=process_main,
                    args=(
                        i,
                        cores[i] if cores else None,
                        trial["workload"],
                        trial["size"],
                        tasks_q,
                        writer,
                        sys.path,
                    ),
                    name="conclab-worker-%d" % i,
                    daemon=True,
                )
                p.start()
                writer.close()
                procs.append(p)
                conns[reader] = p
            alive = dict(conns)
            _pump(collector, alive, lambda: collector.ready >= workers)
            run_start = measure.clock()
            setup_s = run_start - setup_start
            if collector.error is None:
                _start_feeding(tasks_q, trial["tasks"], workers)
                _pump(collector, alive, lambda: collector.finished)
            outcome = collector.outcome(setup_s, run_start, cores)
        finally:
            outcome_left = _join(procs, kill=collector.error is not None)
            for c in conns:
                c.close()
            _close_queue(tasks_q)
        outcome[protocol.TEARDOWN_S] = collector.teardown_s()
        outcome[protocol.LEFT_BEHIND].extend(outcome_left)
        return outcome


#: How long a worker that has sent its last message may take to exit before it is killed.
JOIN_GRACE_S = 5.0


def _join(procs, kill):
    """Join the workers (killing them first when the trial failed); what had to be killed, as notes."""
    notes = []
    for p in procs:
        if kill and p.is_alive():
            p.kill()
        p.join(None if kill else JOIN_GRACE_S)
        if p.exitcode is None:  # stuck in its interpreter's shutdown (an atexit hook, a native thread)
            p.kill()
            p.join()
            notes.append(
                "worker %s did not exit within %g s of its last task; killed" % (p.name, JOIN_GRACE_S)
            )
    return notes


def _close_queue(q):
    close = getattr(q, "close", None)
    if close is not None:
        close()
    else:  # Python 3.8's SimpleQueue has no close(): its pipe ends would leak until collected
        q._reader.close()
        q._writer.close()


#: Up to this many queue items (tasks, then a stop per worker) go straight into the task pipe: at
#: ~20 bytes an item they fit in its 64 KiB buffer, so the put cannot block however busy the workers.
DIRECT_FEED_MAX = 1000


def _start_feeding(tasks_q, tasks, workers):
    """Hand out the tasks: directly when they fit in the pipe, else from a thread.

    Starting a thread took 0.4-0.7 ms between the workers' ready and their first task here, all of
    it inside ``run_s``. A feeder thread is kept for many tasks: a full task pipe would otherwise
    block this thread while the workers block on their full result pipes, which only it reads.
    """
    if tasks + workers <= DIRECT_FEED_MAX:
        _feed(tasks_q, tasks, workers)
        return
    threading.Thread(target=_feed, args=(tasks_q, tasks, workers), daemon=True).start()


def _feed(tasks_q, tasks, workers):
    for task in range(tasks):
        tasks_q.put(task)
    for _ in range(workers):
        tasks_q.put(None)


def _pump(collector, alive, done):
    """Feed worker messages to the collector until ``done()``; a worker that dies fails the trial.

    ``alive`` maps each worker's pipe to its process. A pipe at EOF is only dropped from the
    wait set: joining its process there would stall on the interpreter's shutdown (10-30 ms
    for a spawned worker) while other workers' results wait unread, inflating ``run_s``.
    """
    readers = [c for c in alive if not c.closed]
    while not done() and collector.error is None:
        if not alive:
            progress = "%d of %d tasks done" % (collector.done, collector.tasks)
            collector.error = "every worker exited with %s (a workload calling os._exit?)" % progress
            return
        sentinels = {p.sentinel: c for c, p in alive.items()}
        for ready in wait(readers + list(sentinels)):
            if ready in sentinels:
                conn = sentinels[ready]
                proc = alive.pop(conn)
                if conn in readers:  # it has exited: read what it sent before it went
                    _drain(collector, conn)
                    readers.remove(conn)
                proc.join()
                if proc.exitcode != 0 and collector.error is None:
                    collector.error = "worker %s died (%s)" % (proc.name, _describe_exit(proc.exitcode))
            elif ready in readers and not _drain(collector, ready):
                readers.remove(ready)


def _drain(collector, conn):
    """Feed every message waiting on ``conn``; False once it is at EOF."""
    try:
        while conn.poll():
            collector.feed(conn.recv())
    except (EOFError, OSError):
        return False
    return True


def _describe_exit(code):
    if code is None:
        return "still running"
    if code < 0:
        import signal

        try:
            return "killed by %s" % signal.Signals(-code).name
        except ValueError:
            return "killed by signal %d" % -code
    return "exit code %d" % code
