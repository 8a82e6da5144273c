"""A pool of ``workers`` threads in the host process, each pinned to its own core."""

import queue
import threading

from conc_lab.host import measure
from conc_lab.host.backends import Backend
from conc_lab.host.backends._worker import Collector, run_worker


class ThreadingBackend(Backend):
    name = "threading"

    def run(self, fn, trial):
        workers, size, cores = trial["workers"], trial["size"], trial["cores"]
        tasks_q, out_q = queue.SimpleQueue(), queue.SimpleQueue()

        def thread_main(index):
            user, system = run_worker(
                index, cores[index] if cores else None, fn, size, tasks_q.get, out_q.put
            )
            out_q.put(("exit", index, user, system, 0))

        collector = Collector(trial["tasks"], workers)
        setup_start = measure.clock()
        threads = [
            threading.Thread(target=thread_main, args=(i,), name="conclab-worker-%d" % i, daemon=True)
            for i in range(workers)
        ]
        for t in threads:
            t.start()
        while collector.ready < workers:
            collector.feed(out_q.get())
        run_start = measure.clock()
        setup_s = run_start - setup_start
        for task in range(trial["tasks"]):
            tasks_q.put(task)
        for _ in range(workers):
            tasks_q.put(None)
        while not collector.finished:
            collector.feed(out_q.get())
        if collector.error is not None:
            _drain(tasks_q)  # let the other threads stop after their current task
            for _ in range(workers):
                tasks_q.put(None)
        # Threads cannot be killed; joining them keeps a failed trial's leftovers off the next timing.
        # A thread that never returns is the runner's to handle: it kills the whole host on timeout.
        outcome = collector.outcome(setup_s, run_start, cores)
        for t in threads:
            t.join()
        outcome["teardown_s"] = collector.teardown_s()
        return outcome


def _drain(q):
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass
