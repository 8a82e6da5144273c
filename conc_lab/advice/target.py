"""What ``advise`` is asked about: a function, named so that a child process can import it.

Three spellings reach the same ``Target``: ``module:function`` (imported from the working
directory, as a sweep's workloads are), ``path/to/file.py:function``, and, from Python, the
function object itself. A function a child process cannot import (defined in ``__main__``,
a notebook cell, or inside another function) is refused in one line that says how to fix it.
"""

from __future__ import annotations

import inspect
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conc_lab.config.checks import InspectError, check_workload, inspect_workloads, workload_search_path
from conc_lab.host.inspect import Facts

_IDENT = re.compile(r"^[A-Za-z_]\w*$")


class AdviseError(ValueError):
    """Advice cannot start: ``str()`` is the one line a person sees (what, and the fix)."""


@dataclass(frozen=True)
class Target:
    """A checked function: ``ref`` is its ``module:function``; ``search_dir`` a folder it needs on the path.

    >>> Target("mywork:count_words", None, False).name
    'count_words'
    """

    ref: str
    search_dir: str | None  # the folder a path/to/file.py lives in, when it is not importable from cwd
    is_async: bool

    @property
    def name(self) -> str:
        return self.ref.rpartition(":")[2].rpartition(".")[2]


def resolve(what: Any) -> Target:
    """The ``Target`` for ``what`` (a ``module:function`` text, ``file.py:function``, or a function).

    >>> resolve("experiments.io:sleep").ref
    'experiments.io:sleep'
    >>> resolve("experiments.io:slep")
    Traceback (most recent call last):
    ...
    conc_lab.advice.target.AdviseError: experiments.io:slep: module 'experiments.io' has no 'slep'; did you mean 'experiments.io:sleep'?
    """
    if callable(what) and not isinstance(what, str):
        ref, search_dir = _ref_of_function(what)
    elif isinstance(what, (str, os.PathLike)):
        ref, search_dir = _ref_of_text(os.fspath(what))
    else:
        raise AdviseError(f"advise: expected a function or 'module:function', got {type(what).__name__}")
    facts = _facts(ref, search_dir)
    if facts.problem:
        problem = facts.problem.replace(f" for {ref!r}", "")
        named = what if isinstance(what, str) else ref
        if problem.startswith(f"{ref} "):  # "m:f takes (x), …": named once, not "m:f: m:f takes (x)"
            raise AdviseError(named + problem[len(ref) :])
        raise AdviseError(f"{named}: {problem}{_no_module_hint(ref, problem)}")
    return Target(ref, search_dir, facts.is_async)


def _no_module_hint(ref: str, problem: str) -> str:
    """Where the module was looked for and how to make one, when the module named is itself missing
    (not a package it imports): the README's own ``conclab advise mywork:count_words``, run as
    written, ended at "No module named 'mywork'" with no way on.

    >>> _no_module_hint("mywork:f", "cannot import 'mywork': No module named 'mywork'").split(",")[0]
    ' (there is no mywork.py in the folder advise imports from'
    >>> _no_module_hint("mywork:f", "cannot import 'mywork': No module named 'numpy'")
    ''
    """
    module, _, function = ref.partition(":")
    top = module.split(".")[0]
    if not problem.startswith("cannot import") or f"No module named '{top}'" not in problem:
        return ""
    file = module.replace(".", "/") + ".py"
    return (
        f" (there is no {file} in the folder advise imports from, {os.getcwd()}, nor on the path: "
        f"write def {function}(task, size) in {file} there, or give its file as "
        f"path/to/{file}:{function}; or try a shipped one: conclab advise experiments.cpu:sum_squares)"
    )


def _ref_of_text(text: str) -> tuple[str, str | None]:
    """``module:function`` as it is; ``path/to/file.py:function`` as a module the children can import."""
    where, sep, attr = text.rpartition(":")
    if not sep or not where or not attr:
        raise AdviseError(f"{text}: name the function as module:function or path/to/file.py:function")
    if not where.endswith(".py"):
        return text, None
    path = Path(where)
    if not path.is_file():
        raise AdviseError(f"{where}: no such file")
    path = path.resolve()
    try:  # under the working directory, with names Python can import: a dotted module name
        parts = path.with_suffix("").relative_to(Path.cwd().resolve()).parts
        if all(_IDENT.match(p) for p in parts):
            return f"{'.'.join(parts)}:{attr}", None
    except ValueError:
        pass
    if not _IDENT.match(path.stem):
        raise AdviseError(f"{where}: {path.stem!r} cannot be imported as a module name; rename the file")
    return f"{path.stem}:{attr}", str(path.parent)


def _ref_of_function(fn: Any) -> tuple[str, str | None]:
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    name = getattr(fn, "__name__", repr(fn))
    if module in (None, "__main__", "__mp_main__") or module.startswith("ipykernel") or not qualname:
        raise AdviseError(
            f"{name} is defined in __main__ (a script or a notebook cell), which a child process cannot "
            f"import: put it in a module (mywork.py) and pass mywork.{name}, or 'mywork:{name}'"
        )
    if "<locals>" in qualname or "<lambda>" in qualname:
        raise AdviseError(
            f"{name} is defined inside another function, which a child process cannot import: "
            "define it at the top level of a module"
        )
    ref = f"{module}:{qualname}"
    if check_workload(ref) is None:
        return ref, None
    file = getattr(inspect.getmodule(fn), "__file__", None)  # loaded from a path: import it from there
    if file and "." not in module:
        return ref, str(Path(file).resolve().parent)
    return ref, None


def _facts(ref: str, search_dir: str | None) -> Facts:
    """What a child process importing ``ref`` found: its module's import-time code never runs here."""
    try:
        return inspect_workloads([ref], [search_dir, *workload_search_path()] if search_dir else None)[ref]
    except InspectError as exc:  # the import ended or hung the child
        return Facts(ref, str(exc))
