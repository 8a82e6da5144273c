"""A pool of ``workers`` subinterpreters (PEP 554/734), one per pinned OS thread, each with its own GIL.

Where the API comes from, per interpreter on the ``python`` axis: the standard library's
``concurrent.interpreters`` (3.14+), else the PyPI backport ``interpreters-pep-734``
(``interpreters_backport.interpreters``, 3.13) when it is installed in that interpreter.
Without either the trial is ``skipped`` with the reason, as for a missing package.

Worker ``i`` is a host thread pinned to ``cores[i]`` that creates its interpreter (set-up),
imports the workload *inside* it (so a module that cannot be loaded in a subinterpreter,
an extension without multi-phase init, fails the trial with that reason), then runs one
``exec`` per task unit. The task runs in the subinterpreter, timed and recorded there with
the same bookkeeping as every backend, and its message crosses back pickled (bytes, which
every version of the API shares) through a cross-interpreter queue. The host thread reads
it with ``get_nowait`` once ``exec`` has returned: the backport's blocking ``get`` polls
every 10 ms, which would be measured as work.

Whether each interpreter got its own GIL (``_interpreters.get_config(id).gil == "own"``)
is recorded in the outcome's ``own_gil``: true only if every worker's had one.

Standard library only, Python 3.8 syntax.
"""

import os
import platform
import sys

from conc_lab.host import affinity, measure, protocol
from conc_lab.host.backends import Backend
from conc_lab.host.backends._worker import WorkerSetupFailed, run_thread_pool

#: (module with create(), queue module a subinterpreter must import before a queue is shared with it)
_SOURCES = (
    ("concurrent.interpreters", "concurrent.interpreters._queues"),
    ("interpreters_backport.interpreters", "interpreters_backport.interpreters.queues"),
)

#: Run inside each new interpreter: its sys.path, the queue module, the workload, one step function.
_SETUP = """
import sys
sys.path[:] = %(path)r + [p for p in sys.path if p not in %(path)r]  # workload.search_first
import pickle
from time import perf_counter as _clock  # measure.clock, without measure's imports (json, socket, ...)
import %(queues)s
from conc_lab.host import affinity as _affinity
from conc_lab.host.workload import import_function

_fn = import_function(%(ref)r)

def _conclab_step(task):
    start = _clock()
    try:
        result = _fn(task, %(size)r)
    except BaseException:
        import traceback
        msg = ("error", task, traceback.format_exc()[-4000:])
    else:
        end = _clock()
        msg = ("done", task, result, [task, %(index)d, %(core)d, _affinity.current_cpu(), %(pid)d, None, start, end])
    try:
        data = pickle.dumps(msg)
    except Exception as exc:
        data = pickle.dumps(("error", task, "its result cannot cross back to the host: %%r" %% (exc,)))
    _out.put(data)
"""


def find_api():
    """(interpreters module, name of its queue module), or raise ImportError saying why not."""
    problems = []
    for name, queues in _SOURCES:
        try:
            module = __import__(name, fromlist=["create"])
        except ImportError as exc:
            absent = type(exc).__name__ == "ModuleNotFoundError" and exc.name in (
                name,
                name.partition(".")[0],
            )
            if not absent:  # there, but broken here (e.g. the backport's pure-Python wheel on 3.12)
                problems.append("%s does not import here (%s: %s)" % (name, type(exc).__name__, exc))
            continue
        if hasattr(module, "create") and hasattr(module, "create_queue"):
            return module, queues
        problems.append("%s has no create() and create_queue()" % name)
    raise ImportError(
        "needs concurrent.interpreters (Python 3.14+) or the PyPI backport interpreters-pep-734, which "
        "%s %s (%s) lacks%s"
        % (
            platform.python_implementation(),
            platform.python_version(),
            sys.executable,
            "".join("; " + p for p in problems),
        )
    )


def own_gil(interp):
    """Whether ``interp`` has a GIL of its own (PEP 684), or None where the runtime cannot say."""
    try:
        import _interpreters

        return getattr(_interpreters.get_config(interp.id), "gil", None) == "own"
    except Exception:
        return None


class SubinterpreterBackend(Backend):
    name = protocol.SUBINTERPRETERS

    def run(self, fn, trial):
        try:
            api, queues = find_api()
        except ImportError as exc:
            return protocol.outcome(status=protocol.STATUS_SKIPPED, error=str(exc))
        return _Pool(api, queues, trial).run()


class _Pool(object):
    """One trial's interpreters, each on a host thread of ``_worker.run_thread_pool``."""

    def __init__(self, api, queues, trial):
        self.api, self.queues, self.trial = api, queues, trial
        self.gils = [None] * trial["workers"]

    def run(self):
        out = run_thread_pool(self.trial, self._worker, "conclab-subinterp")
        known = [g for g in self.gils if g is not None]
        out[protocol.OWN_GIL] = all(known) if known and len(known) == self.trial["workers"] else None
        return out

    def _worker(self, index, core, next_task, emit):
        previous = affinity.pin(core) if core is not None else None  # the OS thread its interpreter runs on
        interp = None
        try:
            interp = self.api.create()
            self.gils[index] = own_gil(interp)
            out = self._setup(interp, index, core)
            emit(("ready", index))
            user0, sys0 = measure.cpu_times()
            self._loop(interp, out, next_task, emit)
            user1, sys1 = measure.cpu_times()
            return user1 - user0, sys1 - sys0
        finally:
            if interp is not None:
                try:
                    interp.close()
                except Exception:
                    pass
            affinity.restore(previous)

    def _setup(self, interp, index, core):
        """Import the workload inside ``interp``; return the queue its results come back on."""
        code = _SETUP % {
            "path": list(sys.path),
            "queues": self.queues,
            "ref": self.trial["workload"],
            "size": self.trial["size"],
            "index": index,
            "core": -1 if core is None else core,
            "pid": os.getpid(),
        }
        try:
            interp.exec(code)
        except Exception as exc:
            raise WorkerSetupFailed(
                "cannot import %s in a subinterpreter: %s" % (self.trial["workload"], _excinfo(exc))
            ) from None
        out = self.api.create_queue()
        interp.prepare_main(_out=out)
        return out

    def _loop(self, interp, out, next_task, emit):
        import pickle

        while True:
            task = next_task()
            if task is None:
                return
            interp.exec("_conclab_step(%d)" % task)
            msg = pickle.loads(out.get_nowait())
            emit(msg)
            if msg[0] == "error":
                return


def _excinfo(exc):
    """The subinterpreter's own exception line (``ExecutionFailed.excinfo``), else ``exc`` itself."""
    info = getattr(exc, "excinfo", None)
    if info is not None:
        kind = getattr(info.type, "__name__", info.type)
        return "%s: %s" % (kind, info.msg)
    return "%s: %s" % (type(exc).__name__, exc)
