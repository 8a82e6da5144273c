"""What a config's workloads are, found out in a child process: ``python -m conc_lab.host.inspect``.

The runner never imports a workload. A module's import-time code (a ``sys.exit``, a ``chdir``, a
``print``, threads, signal handlers) would run in the runner and decide what it does next: exit 0
having run nothing, write the results elsewhere. The config check asks this child instead, one for
all the workloads of a config, and gets one ``Facts`` per workload back: whether it imports and
can be called as ``fn(task, size)``, and whether it is ``async def``.

The request is one JSON object on stdin, ``{"search_path": [...], "workloads": ["m:f", ...]}``;
the answer is one JSON line per workload, written as each is done, on the stdout the child was
given. Before importing anything the child points its own stdout at stderr, so whatever a
workload module prints cannot be read as an answer. A child that dies while importing leaves
the workloads it did not answer; the parent names the first of them.

Standard library only, Python 3.8 syntax: like the trial host, it runs under any interpreter.
"""

import difflib
import inspect
import json
import os
import sys
from dataclasses import asdict, dataclass, fields
from typing import Optional

from conc_lab.host import workload as host_workload


@dataclass(frozen=True)
class Facts:
    """What the child found about one workload: ``problem`` (None: it can run) and ``is_async``.

    >>> Facts.from_json('{"ref": "m:f", "problem": null, "is_async": true}').is_async
    True
    >>> Facts.from_json('{"ref": "m:f", "extra": 1}')
    Traceback (most recent call last):
    ...
    ValueError: not a workload's facts: {"ref": "m:f", "extra": 1}
    """

    ref: str
    problem: Optional[str] = None  # why it cannot run as fn(task, size); None: it can
    is_async: bool = False

    def to_json(self):
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, line):
        """The facts in one answer line; ``ValueError`` for anything else (a line a workload wrote)."""
        try:
            doc = json.loads(line)
        except ValueError:
            doc = None
        if (
            not isinstance(doc, dict)
            or set(doc) != {f.name for f in fields(cls)}
            or not isinstance(doc["ref"], str)
            or not isinstance(doc["problem"], (str, type(None)))
            or not isinstance(doc["is_async"], bool)
        ):
            raise ValueError("not a workload's facts: %s" % line.strip()[:200])
        return cls(**doc)


def facts(ref):
    """Import ``ref`` (``module:function``) here and say what it is.

    >>> facts("os.path:join").problem is None
    True
    >>> facts("os.path:jion").problem
    "module 'os.path' has no 'jion'; did you mean 'os.path:join'?"
    >>> facts("os:sep").problem
    "'os:sep' is not callable"
    """
    module_name, _, attr = ref.partition(":")
    try:
        fn = host_workload.import_function(ref)
    except ImportError as exc:
        return Facts(ref, "cannot import %r for %r: %s" % (module_name, ref, exc))
    except host_workload.MissingFunction as exc:
        return Facts(ref, "module %r has no %r%s" % (module_name, attr, _did_you_mean(ref, exc)))
    except host_workload.NotCallable:
        return Facts(ref, "%r is not callable" % ref)
    except BaseException as exc:  # noqa: BLE001 - SystemExit too: a module that exits on import is a bad config
        return Facts(ref, "importing %r raised %s: %s" % (module_name, type(exc).__name__, exc))
    return Facts(ref, signature_problem(ref, fn), inspect.iscoroutinefunction(fn))


def signature_problem(ref, fn):
    """Why ``fn`` cannot be called as ``fn(task, size)``, as every backend calls a workload; else None.

    ``async def`` functions, defaults, ``*args`` and ``**kwargs`` are fine; a builtin without
    a signature to read is given the benefit of the doubt (it fails at run time if wrong).

    >>> signature_problem("m:f", lambda n: n)
    'm:f takes (n), but a workload is called as m:f(task, size): too many positional arguments'
    >>> signature_problem("m:f", lambda *args, **kw: 0) is None
    True
    """
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(0, 0)
    except TypeError as exc:
        return "%s takes %s, but a workload is called as %s(task, size): %s" % (ref, signature, ref, exc)
    return None


def _did_you_mean(ref, missing):
    """``; did you mean 'module:close_name'?`` for a misspelled function, else nothing."""
    owner = missing.owner
    names = [n for n in dir(owner) if not n.startswith("_") and callable(getattr(owner, n, None))]
    hint = difflib.get_close_matches(missing.missing, names, n=1)
    if not hint:
        return ""
    prefix, _, _ = ref.rpartition(missing.missing)
    return "; did you mean %r?" % (prefix + hint[0])


def main():
    request = json.loads(sys.stdin.read())
    sys.stdin.close()  # a module that reads stdin at import sees it closed, not the request
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # what workload modules print goes to stderr, also from C code
    host_workload.search_first(request["search_path"])
    for ref in request["workloads"]:
        answers.write(facts(ref).to_json() + "\n")
        answers.flush()  # answered so far: if the next import kills this process, the parent knows which
    answers.close()
    os._exit(0)  # threads or atexit handlers a workload module left must not hold the answer back


if __name__ == "__main__":
    main()
