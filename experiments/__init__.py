"""Workloads for conc_lab: plain functions with a checkable answer.

The contract (all a workload needs to know; it never imports conc_lab)::

    def my_workload(task: int, size: int) -> result

* ``task`` is the index of the task unit (0 .. tasks-1); ``size`` is the matrix's ``size``.
* The backend splits a trial's ``tasks`` units over its workers and calls the function once
  per unit, in any worker, in any order. The result must be picklable and JSON-able
  (numbers, strings, lists, dicts): conc_lab hashes the ordered results and compares the
  hash with the sequential backend's, so the same (task, size) must give the same answer.
* A workload whose answer legitimately differs between backends (e.g. one that shows lost
  updates) sets ``my_workload.checkable = False``; its rows record ``correct`` as null.

Refer to a workload in a config as ``module:function``, e.g. ``experiments.cpu:sum_squares``.
"""
