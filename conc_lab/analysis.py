"""Compatibility: the names ``conc_lab.analysis`` had before it was split by job (#11).

New code imports from the module that does the job: ``conc_lab.stats`` (order statistics,
intervals, rank tests), ``conc_lab.summary`` (``summarize``, the per-interpreter pivot),
``conc_lab.compare``, ``conc_lab.scaling`` (fits) and ``conc_lab.render`` (text output).
"""

from __future__ import annotations

from conc_lab.compare import COMPARE_KEYS, compare, compare_verdict
from conc_lab.render import FORMATS, render
from conc_lab.scaling import amdahl_speedup, fit_amdahl
from conc_lab.stats import benjamini_hochberg, mann_whitney_p
from conc_lab.summary import (
    BACKEND_ORDER,
    BASELINE_KEYS,
    GROUP_KEYS,
    SEQUENTIAL,
    SUMMARY_COLUMNS,
    by_interpreter,
    interpreter_labels,
    summarize,
    tidy_dtypes,
)

__all__ = [
    "BACKEND_ORDER",
    "BASELINE_KEYS",
    "COMPARE_KEYS",
    "FORMATS",
    "GROUP_KEYS",
    "SEQUENTIAL",
    "SUMMARY_COLUMNS",
    "amdahl_speedup",
    "benjamini_hochberg",
    "by_interpreter",
    "compare",
    "compare_verdict",
    "fit_amdahl",
    "interpreter_labels",
    "mann_whitney_p",
    "render",
    "summarize",
    "tidy_dtypes",
]
