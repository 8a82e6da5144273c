"""Two sweeps of one ``size: auto`` config, made comparable although each picked its own size.

``size: auto`` calibrates a size per workload on the machine at hand, so two sweeps of the same
config (before and after, machine A and B) rarely agree on it, and ``compare`` would match
nothing: every trial "only in a" and "only in b". Where a workload ran at exactly one size on
each side and the sizes differ, b's run times are scaled to a's size (time per unit of work, the
quantity the calibrator itself assumes is linear in size) and b's trials take a's size, so they
match. Each workload so aligned gets a line saying so; nothing else is touched.
"""

from __future__ import annotations

import pandas as pd

#: The time columns of a run that grow with its work, scaled together with ``run_s``.
_TIMES = ("run_s",)


def align_sizes(
    a: pd.DataFrame, b: pd.DataFrame, calibrated: set[str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """``(a, b', notes)``: b with each single-size workload's times scaled to a's single size.

    ``calibrated``: the workloads whose size both sweeps calibrated (``size: auto``; the manifests'
    ``calibrated_sizes``); only those are scaled. Two fixed sizes differ on purpose: those trials
    do not match (None: every single-size workload, as for frames without manifests).

    Example::

        >>> a = pd.DataFrame({"workload": ["w", "w"], "size": [100, 100], "run_s": [1.0, 1.2]})
        >>> b = pd.DataFrame({"workload": ["w"], "size": [200], "run_s": [1.0]})
        >>> _, b2, notes = align_sizes(a, b)
        >>> int(b2.loc[0, "size"]), float(b2.loc[0, "run_s"]), notes
        (100, 0.5, ["w: a ran size 100, b size 200; b's times are scaled to size 100 (time per unit of work)"])
        >>> int(align_sizes(a, b, calibrated=set())[1].loc[0, "size"])  # fixed sizes: never scaled
        200
    """
    if "size" not in a.columns or "size" not in b.columns or "workload" not in a.columns:
        return a, b, []
    sizes_a = a.groupby(a["workload"].astype(str))["size"].unique()
    sizes_b = b.groupby(b["workload"].astype(str))["size"].unique()
    notes = []
    b = b.copy()
    for workload in sizes_a.index.intersection(sizes_b.index):
        if not _single(sizes_a, sizes_b, workload) or (calibrated is not None and workload not in calibrated):
            continue
        sa, sb = sizes_a[workload][0], sizes_b[workload][0]
        if sa == sb or not sa or not sb:
            continue
        rows = (b["workload"].astype(str) == workload).to_numpy()
        for col in _TIMES:
            if col in b.columns:
                b.loc[rows, col] = b.loc[rows, col] * (float(sa) / float(sb))
        b.loc[rows, "size"] = sa
        notes.append(
            f"{workload}: a ran size {int(sa)}, b size {int(sb)}; b's times are scaled to size {int(sa)} "
            "(time per unit of work)"
        )
    return a, b, notes


def _single(sizes_a: pd.Series, sizes_b: pd.Series, workload: str) -> bool:
    """One known size on each side (a list of sizes is a deliberate axis, never rescaled)."""
    one_a, one_b = sizes_a[workload], sizes_b[workload]
    return len(one_a) == 1 and len(one_b) == 1 and pd.notna(one_a[0]) and pd.notna(one_b[0])
