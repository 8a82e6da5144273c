"""Interpreters side by side: what ran each ``python`` value (``summary.by_interpreter`` uses it)."""

from __future__ import annotations

import pandas as pd

from conc_lab.analysis.frames import key_columns


def interpreter_labels(df: pd.DataFrame) -> dict:
    """Each ``python`` value of ``df`` -> what ran it: ``3.12.1``, ``3.13.5t`` (free-threaded),
    ``3.13.5t+GIL`` (free-threaded build that ran with the GIL on), from the rows' own facts.

    Example::

        >>> interpreter_labels(pd.DataFrame({"python": ["3.12", None], "python_version": ["3.12.1", "3.11.7"],
        ...                                  "free_threaded": [False, False], "gil_enabled": [True, True]}))
        {None: '3.11.7', '3.12': '3.12.1'}
    """
    if "python_version" not in df.columns or len(df) == 0:
        return {}
    facts = key_columns(df, ["python"]).astype(object)
    facts = facts.where(facts.notna(), None)
    for col in ("python_version", "free_threaded", "gil_enabled"):
        facts[col] = df[col].astype(object).to_numpy() if col in df.columns else None
    facts = facts[facts["python_version"].notna()]
    labels: dict = {}
    for python, rows in facts.groupby("python", dropna=False, sort=False):
        python = None if python is None or python != python else python
        row = rows.iloc[0]
        label = str(row["python_version"])
        if row["free_threaded"] is True:
            label += "t" + ("+GIL" if rows["gil_enabled"].eq(True).any() else "")
        labels[python] = label
    clash = pd.Series(labels).duplicated(keep=False)
    for python in clash[clash].index:  # e.g. "python3.11" and the default both ran 3.11.7
        labels[python] += f" ({python or 'default'})"
    return dict(sorted(labels.items(), key=lambda kv: _version_order(kv[1])))


def _version_order(label: str) -> tuple:
    nums = label.split(" ")[0].rstrip("t+GIL").split(".")
    return (tuple(int(n) if n.isdigit() else 0 for n in nums), label)
