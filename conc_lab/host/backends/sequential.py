"""The baseline: every task in a plain loop on the host's own thread, no concurrency library."""

from conc_lab.host import measure
from conc_lab.host.backends import Backend
from conc_lab.host.backends._worker import Collector, run_worker


class SequentialBackend(Backend):
    name = "sequential"

    def run(self, fn, trial):
        tasks = iter(range(trial["tasks"]))
        cores = trial["cores"]
        collector = Collector(trial["tasks"], 1)
        start = measure.clock()
        # The same loop the pooled backends run, so per-task bookkeeping costs the same everywhere.
        user, system = run_worker(
            0, cores[0] if cores else None, fn, trial["size"], lambda: next(tasks, None), collector.feed
        )
        collector.feed(("exit", 0, user, system, 0))
        return collector.outcome(0.0, start, cores)
