"""What the summary table's notes mean: the mark each becomes where spelled-out notes do not fit
(``notes: ~ unstable, N noisy`` under the table), and the words, with a next step, for those that
need them. The HTML report says them too.
"""

from __future__ import annotations

import pandas as pd

from conc_lab.analysis.stats import too_few_for_interval
from conc_lab.analysis.summary import TOO_FEW_RUNS
from conc_lab.host.protocol import SEQUENTIAL
from conc_lab.present.render import NO_INTERVAL

#: The mark each note becomes when spelled-out notes do not fit.
NOTE_MARKS = {
    "failures": "F",
    "incorrect": "X",
    "no runs": "0",
    "unstable": "~",
    "baseline unstable": "u",
    "noisy": "N",
    "baseline noisy": "n",
    "within A/A floor": "=",
    "unpaired": "/",
    "superlinear": "^",
    "no baseline": "?",
    "baseline from other nodes": "b",
    TOO_FEW_RUNS: "1",
}


#: What a note means, for the legend under the terminal table (the HTML report says it too).
NOTE_MEANINGS = {
    "unstable": "spread too wide to trust (CV > 10% or interval wider than 20% of the median); "
    "next: more rounds where a speedup is still wide (sweep --precision 0.1), or a quieter "
    "machine (conclab doctor)",
    # the 80-column table has no room for n: this is where a reader learns one run stands behind a row
    TOO_FEW_RUNS: f"the row, or the baseline it is measured against (the plain loop's runs on its node), "
    f"rests on {too_few_for_interval(1)} (or on 1 pair of runs, where paired), so its speedup has no "
    f'interval ("{NO_INTERVAL}") and is never called superlinear; '
    "next: more repeats (repeats: in the config)",
}
#: ... where every speedup's interval is already within ±``ANSWERED`` of it: the times spread,
#: the paired speedups do not, and more rounds would not change the answer.
ANSWERED = 0.1
ANSWERED_MEANING = (
    "the run times spread (CV > 10% or interval wider than 20% of the median), yet every speedup's "
    "interval is within ±10% of it; steadier times: a quieter machine (conclab doctor)"
)


def spent_meaning(rounds: int) -> str:
    """What ``unstable`` means once ``precision:`` ran out of rounds: the next step is never the
    same command again, which would stop at the same limit with the same doubts."""
    return (
        "spread too wide to trust (CV > 10% or interval wider than 20% of the median), and "
        f"--precision already ran {rounds} rounds, its limit (precision.max_repeats): the same "
        "command again stops there too; next: a quieter machine (conclab doctor), longer runs (a "
        "larger size), a looser --precision, or a higher precision.max_repeats in the config"
    )


def note_meanings(summary: pd.DataFrame, rounds_spent: int | None = None) -> list[str]:
    """A line for each note that needs words (and a next step), when any row carries it.

    ``rounds_spent``: the rounds after which a sweep's ``precision:`` stopped at its max_repeats
    with speedups still wide; ``unstable`` then asks for something other than more rounds.

    >>> s = pd.DataFrame({"backend": ["sequential", "threading"], "notes": ["unstable", "baseline unstable"],
    ...     "speedup": [1.0, 2.0], "speedup_ci_low": [1.0, 1.9], "speedup_ci_high": [1.0, 2.1]})
    >>> note_meanings(s)[0].startswith("unstable (~): the run times spread")
    True
    >>> note_meanings(s.assign(speedup_ci_low=1.5))[0].startswith("unstable (~): spread too wide")
    True
    """
    seen = ",".join(summary["notes"].fillna("").astype(str)) if "notes" in summary.columns else ""
    meanings = dict(NOTE_MEANINGS)
    if "unstable" in seen and _answered(summary):
        meanings["unstable"] = ANSWERED_MEANING
    elif rounds_spent is not None:
        meanings["unstable"] = spent_meaning(rounds_spent)
    return [f"{name} ({NOTE_MARKS[name]}): {meaning}" for name, meaning in meanings.items() if name in seen]


def _answered(summary: pd.DataFrame) -> bool:
    """Whether every speedup (the baselines' aside) has an interval within ±``ANSWERED`` of it."""
    from conc_lab.analysis.precision import half_widths

    if not {"speedup", "speedup_ci_low", "speedup_ci_high", "backend"} <= set(summary.columns):
        return False
    rows = summary[summary["backend"].astype(str) != SEQUENTIAL]
    return len(rows) > 0 and bool((half_widths(rows) <= ANSWERED).all())
