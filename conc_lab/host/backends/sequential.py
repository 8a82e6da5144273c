"""The baseline: every task in a plain loop on the host's own thread, no concurrency library.

An ``async def`` workload is awaited one task at a time on one event loop per trial (what
``asyncio.run`` would do), so its answer is the reference the asyncio backend is checked
against. The loop is made before the timing starts, as a program calling ``asyncio.run`` has one.
"""

from conc_lab.host import measure, protocol
from conc_lab.host.backends import Backend
from conc_lab.host.backends._worker import Collector, is_async, run_worker


class SequentialBackend(Backend):
    name = protocol.SEQUENTIAL

    def run(self, fn, trial):
        if not is_async(fn):
            return self._run(fn, trial)
        import asyncio  # only for async workloads: the host stays small (and cheap to fork) without it

        loop = asyncio.new_event_loop()
        try:
            return self._run(lambda task, size: loop.run_until_complete(fn(task, size)), trial)
        finally:
            loop.close()

    def _run(self, fn, trial):
        tasks = iter(range(trial["tasks"]))
        cores = trial["cores"]
        collector = Collector(trial["tasks"], 1)
        marks = {}

        def feed(msg):
            # The run starts once the thread is pinned, as it does for the pooled backends:
            # the migration to the core is set-up, not work (under load it took milliseconds).
            if msg[0] == "ready":
                marks["run_start"] = measure.clock()
            collector.feed(msg)

        start = measure.clock()
        # The same loop the pooled backends run, so per-task bookkeeping costs the same everywhere.
        user, system = run_worker(
            0, cores[0] if cores else None, fn, trial["size"], lambda: next(tasks, None), feed
        )
        collector.feed(("exit", 0, user, system, 0))
        run_start = marks.get("run_start", start)
        outcome = collector.outcome(run_start - start, run_start, cores)
        # Nothing to join; what is left is the loop's return and unpinning, as in every backend.
        outcome[protocol.TEARDOWN_S] = collector.teardown_s()
        return outcome
