"""The trial host's own settings, which a run's process can change through the host's pid.

A run's process is forked for it alone, so what it does to itself ends with it. The host is
another process of the same user, though: with ``os.getppid()`` a workload changes the host's
CPU affinity (``sched_setaffinity``), nice value (``setpriority``), scheduling policy
(``sched_setscheduler``: SCHED_IDLE runs later runs only when nothing else wants a core),
resource limits (``prlimit``: an open-file limit of 12) and timer slack
(``/proc/PID/timerslack_ns``: a 200 ms slack made a 50 ms sleep take 230-440 ms), and every
later run's process would inherit them. ``Settings`` takes them at the host's start;
``restore`` puts back what changed, and says so on the row of the run that changed it. The
runner (the host's parent) keeps one too, checked after every run: each fresh host it starts
(after a run killed the last one) would take the runner's settings for its clean state.

Standard library only, Python 3.8 syntax: this runs inside the trial host.
"""

import os
import sys

try:
    import resource
except ImportError:  # pragma: no cover - not on Linux
    resource = None

#: PR_SET_TIMERSLACK / PR_GET_TIMERSLACK from <linux/prctl.h>.
_PR_SET_TIMERSLACK, _PR_GET_TIMERSLACK = 29, 30


def _prctl():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


class Settings(object):
    """This process's settings as at its start; ``restore`` returns (notes, whether to retire it).

    ``whose`` names the process in the notes: the host's, or the runner's (which starts every
    fresh host, and so hands its settings on to it). ``limits``: resource limits too (not the
    runner's: Ray's start in it raises its open-file limit, which no run did).
    """

    def __init__(self, whose="the host's", limits=True):
        self.whose = whose
        self._prctl = _prctl()
        self.items = [item for item in self._items(limits) if item[1]() is not None]
        self.start = [get() for _name, get, _set in self.items]

    def _items(self, limits):
        """(name, get, set) for each setting; a getter that returns None marks one this OS lacks."""
        items = [("CPU affinity", _affinity, lambda v: os.sched_setaffinity(0, v))]
        items.append(("nice value", lambda: os.getpriority(os.PRIO_PROCESS, 0), _set_nice))
        if hasattr(os, "sched_getscheduler"):
            items.append(("scheduling policy", _policy, _set_policy))
        if self._prctl is not None:
            items.append(("timer slack", self._get_slack, self._set_slack))
        names = {}  # one name per limit: RLIMIT_OFILE is RLIMIT_NOFILE under another name
        for name in (
            sorted(n for n in dir(resource) if n.startswith("RLIMIT_")) if resource and limits else ()
        ):
            names.setdefault(getattr(resource, name), name)
        for which, name in sorted(names.items()):
            items.append((name, _rlimit_getter(which), _rlimit_setter(which)))
        return items

    def restore(self):
        """What a run changed in this process through its pid, put back: (notes, retire)."""
        notes, retire = [], False
        for (name, get, put), start in zip(self.items, self.start):
            if get() == start:
                continue
            try:
                put(start)
                notes.append("%s %s (restored)" % (self.whose, name))
            except (OSError, ValueError):  # raising a limit or lowering nice back may need a privilege
                notes.append("%s %s (cannot restore)" % (self.whose, name))
                retire = True
        return notes, retire

    def _get_slack(self):
        return self._prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0)

    def _set_slack(self, value):
        if self._prctl(_PR_SET_TIMERSLACK, value, 0, 0, 0) != 0:
            raise OSError("prctl(PR_SET_TIMERSLACK) failed")


def _affinity():
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None


def _set_nice(value):
    os.setpriority(os.PRIO_PROCESS, 0, value)


def _policy():
    return os.sched_getscheduler(0), os.sched_getparam(0).sched_priority


def _set_policy(value):
    os.sched_setscheduler(0, value[0], os.sched_param(value[1]))


def _rlimit_getter(which):
    return lambda: resource.getrlimit(which)


def _rlimit_setter(which):
    return lambda value: resource.setrlimit(which, value)
