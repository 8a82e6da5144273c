"""conc_lab: threads or processes (or Ray), and how much faster, for *your* work?

The public API, all importable from the top level::

    import conc_lab
    result = conc_lab.sweep("configs/smoke.yaml")        # run a matrix, write Parquet
    df = conc_lab.load("results/smoke")                    # every trial run, as a DataFrame
    config = conc_lab.parse_config({"name": "mine", "matrix": {...}})  # a config from a dict, no file

Attributes are imported lazily (PEP 562): the trial host imports ``conc_lab.host`` under
interpreters that have none of conc_lab's dependencies, and a small host forks fast.
This file must therefore stay importable by Python 3.8 and import nothing heavy.
"""

__version__ = "0.1.0"

_LAZY = {
    "load": "conc_lab.analysis.selection",
    "sweep": "conc_lab.run.runner",
    "SweepResult": "conc_lab.run.runner",
    "load_config": "conc_lab.config.document",
    "parse_config": "conc_lab.config.document",
    "Config": "conc_lab.config.model",
    "ConfigError": "conc_lab.config.errors",
    "expand": "conc_lab.plan.matrix",
    "Trial": "conc_lab.plan.matrix",
    "summarize": "conc_lab.analysis.summary",
    "compare": "conc_lab.analysis.compare",
    "fit_amdahl": "conc_lab.analysis.scaling",
    "fit_scaling": "conc_lab.analysis.scaling",
    "predict_scaling": "conc_lab.analysis.scaling",
    "write_report": "conc_lab.present.report",
    "advise": "conc_lab.advice",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module 'conc_lab' has no attribute %r" % name)
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__():
    # the lazy names too, so dir(conc_lab) and a notebook's tab completion show the API
    return sorted(set(globals()) | set(__all__))
