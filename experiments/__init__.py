"""Workloads for conc_lab: plain functions with a checkable answer.

The contract (all a workload needs to know; it never imports conc_lab)::

    def my_workload(task: int, size: int) -> result

* ``task`` is the index of the task unit (0 .. tasks-1); ``size`` is the matrix's ``size``.
* The backend splits a trial's ``tasks`` units over its workers and calls the function once
  per unit, in any worker, in any order. The result must be picklable and JSON-able
  (numbers, strings, lists, dicts): conc_lab hashes the ordered results and compares the
  hash with the sequential backend's, so the same (task, size) must give the same answer.
* A workload whose answer legitimately differs between backends sets
  ``my_workload.checkable = False``; its rows record ``correct`` as null.
* Optional hooks for effects only the parent can see (``experiments.memory``): the trial
  host calls ``my_workload.prepare()`` in the parent before the workers run and
  ``my_workload.observe()`` after they have all finished, both untimed; what ``observe``
  returns (JSON-able) is stored in the row's ``observed`` column. The answers stay
  checkable; the effect (lost updates, a write the parent never sees) is the observation.
* ``size: auto`` in a config grows ``size`` until one call takes 50 ms, so ``size`` should
  scale the work (a workload that ignores it cannot be calibrated).

Modules: ``seed`` (the blog post's programs, corrected), ``cpu`` (pure Python, and C that
releases the GIL), ``io`` (sleep, fsync, loopback socket), ``memory`` (shared state,
payload transfer), ``overhead`` (thread/process/Ray start, round trips).

Refer to a workload in a config as ``module:function``, e.g. ``experiments.cpu:sum_squares``.
"""
