"""A workload named ``module:function``: finding it, and saying what an interpreter lacks for it.

The one place both sides look a workload up: the config check (in conc_lab's interpreter,
before anything runs) and the trial host and its workers (in whatever interpreter hosts
the trial). Standard library only, Python 3.8 syntax.
"""

import importlib
import sys


class MissingFunction(AttributeError):
    """The module imported, but ``owner`` has no attribute ``missing``."""

    def __init__(self, message, owner, missing):
        super(MissingFunction, self).__init__(message)
        self.owner = owner
        self.missing = missing


class NotCallable(TypeError):
    """The name was found, but is not a function (or other callable)."""


def search_first(paths):
    """Put ``paths`` at the front of ``sys.path``, in their order, even those already on it.

    Order decides which of two same-named modules is the workload: the sweep's folder before
    its config's project root before that root's parent, whatever ``sys.path`` held before
    (``python -m`` puts the working directory first, which must not push it behind the parent).

    >>> saved = sys.path[:]
    >>> sys.path[:] = ["/b", "/a", "/c"]
    >>> search_first(["/a", "/b"]); sys.path
    ['/a', '/b', '/c']
    >>> sys.path[:] = saved
    """
    paths = list(paths)
    sys.path[:] = paths + [p for p in sys.path if p not in paths]


def import_function(ref):
    """Import ``module:function`` (``function`` may be dotted: ``Class.method``) and return it.

    An error importing the module propagates as it is; a missing attribute raises
    ``MissingFunction``, a found one that cannot be called ``NotCallable``.

    >>> import_function("os.path:join")("a", "b") == "a" + __import__("os").sep + "b"
    True
    >>> import_function("os:nope")
    Traceback (most recent call last):
    ...
    conc_lab.host.workload.MissingFunction: module 'os' has no attribute 'nope'
    """
    module_name, _, attr = ref.partition(":")
    obj = importlib.import_module(module_name)
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise MissingFunction("module %r has no attribute %r" % (module_name, attr), obj, part) from None
    if not callable(obj):
        raise NotCallable("%r is not callable" % ref)
    return obj


def lacks(module):
    """Why a trial is skipped in this interpreter: it lacks ``module`` (a package, or a newer stdlib).

    >>> lacks("numpy").startswith("needs numpy, which ")
    True
    """
    import platform  # only when something is lacking: workers and subinterpreters import this module

    return "needs %s, which %s %s (%s) lacks" % (
        module,
        platform.python_implementation(),
        platform.python_version(),
        sys.executable,
    )
