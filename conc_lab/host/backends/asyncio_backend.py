"""The trial's tasks as coroutines on one event loop, at most ``workers`` of them in flight.

The loop runs on the host's own thread, pinned to the trial's first core: asyncio is one
thread, so one core is all it can use, and the row's ``cores`` says so. An ``async def
fn(task, size)`` workload is awaited; a plain function is only accepted with the option
``offload: thread`` (``backend_options: {asyncio: {offload: thread}}``), where each call
goes to ``loop.run_in_executor`` on a pool of ``workers`` threads, each pinned to its core,
as ``asyncio.to_thread`` would run it (to_thread is 3.9+; this also runs under 3.8).

``worker`` in a task record is 0 (the loop) for coroutines and the pool thread's index
for offloaded calls. ``setup_s`` is the loop's creation (and the pool's threads starting
and pinning); ``run_s`` ends when the last task's result is back on the loop. CPU time is
the whole host process's during the run: a coroutine may start threads of its own (the
loopback server), and that work is the trial's.

Standard library only, Python 3.8 syntax.
"""

import asyncio
import itertools
import json
import os
import resource
import threading
from concurrent.futures import ThreadPoolExecutor

from conc_lab.host import affinity, measure, protocol
from conc_lab.host.backends import Backend
from conc_lab.host.backends._worker import Collector, _short_traceback, is_async

OFFLOAD_NONE = "none"
OFFLOAD_THREAD = "thread"


def options(trial):
    """The trial's backend options (the canonical JSON of ``Trial.options``) as a dict."""
    raw = trial.get("options")
    return json.loads(raw) if isinstance(raw, str) else dict(raw or {})


class AsyncioBackend(Backend):
    name = protocol.ASYNCIO

    def run(self, fn, trial):
        offload = options(trial).get("offload", OFFLOAD_NONE)
        if not is_async(fn) and offload != OFFLOAD_THREAD:
            return protocol.outcome(
                status=protocol.STATUS_FAILED,
                error="%s is a plain function: asyncio awaits `async def` workloads; to run a plain "
                "one with asyncio.to_thread, set backend_options: {asyncio: {offload: thread}}"
                % trial["workload"],
            )
        cores = trial["cores"]
        core = cores[0] if cores else None
        previous = affinity.pin(core) if core is not None else None
        try:
            return _Run(fn, trial, core, offload=not is_async(fn)).go()
        finally:
            affinity.restore(previous)


class _Run(object):
    """One trial: a loop, optionally a pinned thread pool, the slots that pull tasks."""

    def __init__(self, fn, trial, core, offload):
        self.fn, self.size, self.tasks = fn, trial["size"], trial["tasks"]
        self.workers, self.cores, self.core = trial["workers"], trial["cores"], core
        self.offload = offload
        self.collector = Collector(self.tasks, self.workers if offload else 1)
        self.pending = iter(range(self.tasks))
        self.pid = os.getpid()
        self.local = threading.local()

    def go(self):
        setup_start = measure.clock()
        loop = asyncio.new_event_loop()
        pool = None
        try:
            if self.offload:
                pool = self._start_pool()
            else:
                self.collector.feed(("ready", 0))
            run_start = measure.clock()
            cpu0 = _process_cpu()
            loop.run_until_complete(self._main(loop, pool))
            cpu1 = _process_cpu()
            for i in range(self.collector.workers):
                self.collector.feed(("exit", i, 0.0, 0.0, 0))
            self.collector.user, self.collector.sys = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
            out = self.collector.outcome(run_start - setup_start, run_start, self.cores)
            out[protocol.CORES] = self._cores_used()
        finally:
            if pool is not None:
                # A failed trial leaves its other calls running in the pool: they finish their
                # current task (threads cannot be killed; a hung one is the runner's timeout).
                pool.shutdown(wait=True)
            loop.close()
        out[protocol.TEARDOWN_S] = self.collector.teardown_s()  # the pool joined and the loop closed
        return out

    def _cores_used(self):
        if self.cores is None:
            return None
        return list(self.cores[: self.workers]) if self.offload else [self.core]

    def _start_pool(self):
        """``workers`` threads, each pinned to its core, all started before the run begins."""
        counter = itertools.count()
        started = threading.Barrier(self.workers)

        def init():
            index = next(counter)
            self.local.index = index
            core = self.cores[index] if self.cores else None
            self.local.core = -1 if core is None else core
            if core is not None:
                affinity.pin(core)  # a pool thread lives only for this trial: nothing to restore

        def wait_for_all():
            started.wait()
            return self.local.index

        pool = ThreadPoolExecutor(max_workers=self.workers, initializer=init)
        for f in [pool.submit(wait_for_all) for _ in range(self.workers)]:
            self.collector.feed(("ready", f.result()))
        return pool

    async def _main(self, loop, pool):
        slots = [loop.create_task(self._slot(loop, pool)) for _ in range(self.workers)]
        try:
            await asyncio.gather(*slots)
        except asyncio.CancelledError:
            pass  # a slot failed and cancelled the others: the collector has the error

    async def _slot(self, loop, pool):
        """Pull tasks one at a time until none are left or one has failed."""
        while self.collector.error is None:
            task = next(self.pending, None)
            if task is None:
                return
            try:
                if pool is not None:
                    msg = await loop.run_in_executor(pool, self._call, task)
                else:
                    start = measure.clock()
                    result = await self.fn(task, self.size)
                    end = measure.clock()
                    cpu = affinity.current_cpu()
                    core = -1 if self.core is None else self.core
                    msg = ("done", task, result, [task, 0, core, cpu, self.pid, None, start, end])
            except asyncio.CancelledError:
                raise
            except BaseException:  # noqa: B036 - a workload's SystemExit is a failed task, not our exit
                msg = ("error", task, _short_traceback())
            self.collector.feed(msg)
            if msg[0] == "error":
                for other in asyncio.all_tasks(loop):
                    if other is not asyncio.current_task(loop):
                        other.cancel()
                return

    def _call(self, task):
        """One offloaded call, in a pool thread: the plain function, timed and recorded there."""
        start = measure.clock()
        result = self.fn(task, self.size)
        end = measure.clock()
        record = [task, self.local.index, self.local.core, affinity.current_cpu(), self.pid, None, start, end]
        return ("done", task, result, record)


def _process_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime
