"""Slow nodes named: a node whose runs are slower than the other nodes' on the same trials.

In a cluster sweep each trial runs on whichever node is free, so one slow machine (a throttled
CPU, a noisy neighbour) spreads its runs over every trial, and per-trial medians hide it. This
compares like with like: for each trial, a node's median ``run_s`` against the median of the
other nodes' medians of that trial; a node is slow when the median of those ratios, over at
least ``min_trials`` shared trials, is ``threshold`` or more.

>>> import pandas as pd
>>> df = pd.DataFrame({"trial_id": ["a", "a", "a", "b", "b", "b"], "status": "ok",
...                    "node_id": ["n1", "n2", "n3"] * 2, "hostname": "box",
...                    "run_s": [1.0, 1.02, 1.3, 2.0, 2.04, 2.5]})
>>> [(s.node, s.hostname, round(s.ratio, 2), s.trials) for s in slow_nodes(df)]
[('n3', 'box', 1.26, 2)]
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

#: A node this much slower than the others (median ratio over shared trials) is named.
THRESHOLD = 1.10


@dataclass(frozen=True)
class SlowNode:
    node: str  # Ray node id, else host name
    hostname: str | None
    ratio: float  # median over shared trials of (its median run_s / the other nodes' median)
    trials: int  # trials it ran that other nodes ran too

    def text(self) -> str:
        """One line for people; a Ray node id is shortened as the progress lines show it.

        >>> SlowNode("3f" * 28, "box", 1.254, 8).text()
        'node 3f3f3f3f (box) is slower than the other nodes on the same trials: x1.25 their run time (median over 8 trials)'
        """
        name = self.node[:8] if len(self.node) > 16 else self.node
        host = f" ({self.hostname})" if self.hostname and self.hostname != self.node else ""
        return (
            f"node {name}{host} is slower than the other nodes on the same trials: "
            f"x{self.ratio:.2f} their run time (median over {self.trials} trials)"
        )


def slow_nodes(df: pd.DataFrame, threshold: float = THRESHOLD, min_trials: int = 2) -> list[SlowNode]:
    """Nodes slower than the others on the same trials, slowest first (see the module docstring)."""
    needed = {"trial_id", "status", "run_s"}
    if df.empty or not needed <= set(df.columns) or not ({"node_id", "hostname"} & set(df.columns)):
        return []
    node = df["node_id"].astype(object) if "node_id" in df.columns else pd.Series(None, index=df.index)
    host = df["hostname"].astype(object) if "hostname" in df.columns else pd.Series(None, index=df.index)
    frame = pd.DataFrame({"trial": df["trial_id"].astype(str), "node": node.where(node.notna(), host)})
    frame["host"], frame["run_s"] = host, pd.to_numeric(df["run_s"], errors="coerce")
    frame = frame[
        (df["status"].astype(str) == "ok").to_numpy() & frame["node"].notna() & frame["run_s"].notna()
    ]
    per = frame.groupby(["trial", "node"])["run_s"].median().unstack()
    if per.shape[1] < 2:
        return []
    found = []
    for name in per.columns:
        others = per.drop(columns=name).median(axis=1)
        ratios = (per[name] / others).dropna()
        if len(ratios) >= min_trials and ratios.median() >= threshold:
            hosts = frame.loc[frame["node"] == name, "host"].dropna()
            found.append(
                SlowNode(
                    str(name), hosts.iloc[0] if len(hosts) else None, float(ratios.median()), len(ratios)
                )
            )
    return sorted(found, key=lambda s: -s.ratio)
