"""A pool of ``workers`` threads in the host process, each pinned to its own core."""

from conc_lab.host import protocol
from conc_lab.host.backends import Backend
from conc_lab.host.backends._worker import run_thread_pool, run_worker


class ThreadingBackend(Backend):
    name = protocol.THREADING

    def run(self, fn, trial):
        size = trial["size"]

        def body(index, core, next_task, emit):
            return run_worker(index, core, fn, size, next_task, emit)

        return run_thread_pool(trial, body, "conclab-worker")
