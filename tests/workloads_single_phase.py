"""A workload whose module a subinterpreter cannot import (tests/test_models.py).

``_testsinglephase`` is CPython's own test extension with single-phase init (3.12+): the
main interpreter loads it, an isolated subinterpreter refuses it, as it would any extension
not ported to multi-phase init.
"""

try:
    import _testsinglephase  # noqa: F401
except ModuleNotFoundError:  # before 3.12 (pytest collects this file under conc_lab's own Python)
    pass


def work(task: int, size: int) -> int:
    return task * size
