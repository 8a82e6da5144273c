"""The instrument's own A/A noise floor: how far apart two identical arms read on this machine.

Comparing a thing with itself is how a comparison method's false-alarm rate is measured (A/A
tests). ``conclab selftest`` runs one trial as two arms, ``a`` and ``b``, interleaved in a fresh
random order each round, and records them like any sweep (the arm in ``options``). Here:

* ``aa_spread`` pairs the two arms' runs round by round, as ``pairing`` pairs a backend with
  its baseline, and takes the paired ratio's median with its exact 95% interval: the speedup a
  summary would print for a change that does nothing. The floor ``X`` is how far that interval
  reaches from 1, so "two identical arms differ by up to ±X%";
* ``machine_floor`` is the latest floor recorded under a results folder, which ``summarize``
  and ``compare`` take as the smallest effect they will call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from conc_lab.analysis.stats import SortedGroups, ok_runs

#: The ``options`` value of each arm's rows, and the sweep name a self-test records under.
ARM_OPTIONS = {"a": '{"arm": "a"}', "b": '{"arm": "b"}'}
SELFTEST_NAME = "selftest"
#: The manifest field that holds a self-test's floor (a fraction: 0.03 is ±3%).
FLOOR_FIELD = "aa_floor"


@dataclass(frozen=True)
class Spread:
    """What an A/A test measured: the paired ratio b/a, its interval, and the floor it implies."""

    pairs: int
    ratio: float
    low: float
    high: float
    median_run_s: float

    @property
    def floor(self) -> float:
        """How far from 1 two identical arms read (a fraction), at the interval's level."""
        return float(max(abs(self.ratio - 1), 1 - self.low, self.high - 1, 0.0))

    def line(self) -> str:
        """The one line ``conclab selftest`` prints.

        >>> Spread(20, 1.01, 0.98, 1.03, 0.02).line()
        'on this machine, two identical arms differ by up to ±3.0% (95%)'
        """
        return f"on this machine, two identical arms differ by up to ±{100 * self.floor:.1f}% (95%)"


def aa_spread(df: pd.DataFrame, level: float = 0.95) -> Spread:
    """The A/A ratio b/a over the rounds where both arms ran ok (see the module doc).

    Example::

        >>> df = pd.DataFrame({"options": list(ARM_OPTIONS.values()) * 3, "repeat": [0, 0, 1, 1, 2, 2],
        ...                    "run_s": [1.0, 1.0, 2.0, 2.0, 1.0, 1.02], "status": "ok"})
        >>> s = aa_spread(df)
        >>> s.pairs, round(s.ratio, 3), round(s.floor, 3)
        (3, 1.0, 0.02)
    """
    ok = df[ok_runs(df)]
    rnd = ok["round"] if "round" in ok.columns else ok["repeat"]
    arms = {
        name: ok.assign(_r=rnd)[ok["options"].astype(object) == opt].groupby("_r")["run_s"].median()
        for name, opt in ARM_OPTIONS.items()
    }
    both = pd.concat(arms, axis=1, join="inner")
    ratio = (both["b"] / both["a"]).to_numpy(dtype=np.float64)
    ratio = ratio[np.isfinite(ratio) & (ratio > 0)]
    if len(ratio) == 0:
        raise ValueError("an A/A test needs rounds in which both arms ran ok; none did")
    srt = SortedGroups(np.zeros(len(ratio), np.int64), ratio, 1)
    low, high = srt.median_ci(level)
    med = float(np.median(ok["run_s"].to_numpy(dtype=np.float64)))
    return Spread(len(ratio), float(srt.quantile(0.5)[0]), float(low[0]), float(high[0]), med)


def machine_floor(*paths: str | os.PathLike) -> float | None:
    """The largest floor among the latest self-tests found at or above ``paths`` (a results root holds
    them in its ``selftest`` folder); None where there is none.

    Several paths (``compare`` across machines) take the largest: no side's floor is undercut.
    """
    # lazily: analysis works on frames without the store
    from conc_lab.store.layout import StoreError
    from conc_lab.store.manifest import read_manifest
    from conc_lab.store.reader import latest_sweep

    floors = []
    for path in paths:
        here = Path(path).resolve()
        for folder in (here / SELFTEST_NAME, *(p / SELFTEST_NAME for p in here.parents)):
            try:
                latest = latest_sweep(folder) if folder.is_dir() else None
                floor = getattr(read_manifest(latest), FLOOR_FIELD) if latest is not None else None
            except (OSError, ValueError, StoreError):
                continue
            if isinstance(floor, (int, float)) and floor >= 0:
                floors.append(float(floor))
                break
    return max(floors, default=None)


def floor_of(data: object) -> float:
    """The A/A floor for ``data``: ``machine_floor`` of a path, 0 for a DataFrame (nothing to find).

    >>> floor_of(pd.DataFrame())
    0.0
    """
    if isinstance(data, (str, os.PathLike)):
        return machine_floor(data) or 0.0
    return 0.0
