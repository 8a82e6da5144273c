"""How the verdict says its numbers: speedups, intervals, worker counts, durations, and JSON without NaN.

Kept apart from ``verdict`` so that the rules of the verdict and the words it is told in can each
grow without the other's module passing its size.
"""

from __future__ import annotations

import math
import re

import numpy as np

from conc_lab.analysis.breakeven import NOT_SEEN, where_it_wins
from conc_lab.analysis.stats import MIN_RUNS_FOR_INTERVAL, too_few_for_interval


def ratio(value: float, digits: int = 2) -> str:
    """``value`` to ``digits`` decimals, but two significant digits below 0.1: a process pool's
    start-up over a run of microseconds read "0.00× (0.00–0.01)", as if nothing ran at all.

    >>> ratio(1.234), ratio(0.0046), ratio(0.05), ratio(0.0)
    ('1.23', '0.0046', '0.050', '0.00')
    """
    if 0 < value < 0.1:
        digits = max(digits, 1 - math.floor(math.log10(value)))
    return f"{value:.{digits}f}"


def x_text(value: float, digits: int = 2) -> str:
    return "?×" if not math.isfinite(value) else f"{ratio(value, digits)}×"


def span(low: float, high: float) -> str:
    if not (math.isfinite(low) and math.isfinite(high)):
        return "no interval"
    return f"{ratio(low)}–{ratio(high)}"


def interval(low: float, high: float, runs: int) -> str:
    """An arm's interval as the verdict shows it; with one run there is none to show.

    A single run's "interval" is that run twice (``1.54–1.54``): it claims a precision no run gave.

    >>> interval(1.5, 1.6, 5), interval(1.54, 1.54, 1), interval(float("nan"), 1.0, 3)
    ('1.50–1.60', '1 run: too few for an interval', 'no interval')
    """
    if runs < MIN_RUNS_FOR_INTERVAL:
        return too_few_for_interval(runs)
    return span(low, high)


def where_it_wins_here(break_even: str, low: float, high: float, runs: int, full: bool = False) -> str:
    """Where an arm that pays to start wins, as a clause ("it wins only at size ≥ …"), told as its own
    interval tells it: with too few runs, or an interval holding 1×, it is not said to win anywhere
    (it once read "it wins not at the sizes measured" beside a 1.34× whose interval held 1).
    ``full`` keeps the break-even's own caveat ("(extrapolated; one size measured, …)").

    >>> where_it_wins_here(NOT_SEEN, 0.9, 1.6, 5), where_it_wins_here(NOT_SEEN, 0.2, 0.4, 5)
    ('it is not told apart from the plain loop at the sizes measured', 'it is slower than the plain loop at the sizes measured')
    >>> where_it_wins_here("size ≥ 12 (extrapolated)", 1.2, 1.3, 1)
    'it is not told apart from the plain loop yet (1 run: too few for an interval)'
    >>> where_it_wins_here("size ≥ 12 (extrapolated)", 1.2, 1.3, 5, full=True)
    'it wins at size ≥ 12 (extrapolated)'
    """
    if runs < MIN_RUNS_FOR_INTERVAL:
        return f"it is not told apart from the plain loop yet ({interval(low, high, runs)})"
    if break_even == NOT_SEEN or break_even.startswith("not "):
        if math.isfinite(high) and high < 1:
            return "it is slower than the plain loop at the sizes measured"
        return "it is not told apart from the plain loop at the sizes measured"
    if full and break_even.startswith("size"):
        return f"it wins at {break_even}"
    return f"it {where_it_wins(break_even)}"


def bracketed(text: str) -> str:
    """`` (text)``, its own closing parenthetical made a clause: a why inside the headline's
    parentheses read "(GIL-bound: 2 workers, CPU 0.55× wall (others used 47% of its cores))".

    >>> bracketed("GIL-bound: 2 workers, CPU 0.55× wall (others used 47% of its cores)")
    ' (GIL-bound: 2 workers, CPU 0.55× wall; others used 47% of its cores)'
    >>> bracketed("GIL-bound: 2 workers, CPU 1.00× wall"), bracketed("")
    (' (GIL-bound: 2 workers, CPU 1.00× wall)', '')
    """
    if not text:
        return ""
    inner = re.fullmatch(r"(.*[^(]) \(([^()]*)\)", text)
    return f" ({inner.group(1)}; {inner.group(2)})" if inner else f" ({text})"


def n_workers(n: int) -> str:
    return f"{n} worker" + ("s" if n != 1 else "")


def seconds(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    return f"{s * 1e6:.0f} µs" if s < 1e-3 else f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


#: The attribution's start-up phrase, "start-up: 686 µs of 1.22 ms", up to its "(others used …)" tail.
_START_UP = re.compile(r"^start-up: .+? of .+?(?= \(others used |$)")


def start_up_why(why: str, setup_s: float, e2e_s: float) -> str:
    """An arm's why with the start-up figure the rest of the verdict names: the arm's median start-up.

    The summary's why is its median run's (by run time): that run's own start-up, which under load
    can be twice the median of every run's, the figure the headline and the break-even line name. Two
    figures for one start-up read as a contradiction, so the why names the medians, and says so.

    >>> start_up_why("start-up: 115 ms of 149 ms (others used 47% of its cores)", 0.0566, 0.0712)
    'start-up: 56.6 ms of 71.2 ms end to end, medians (others used 47% of its cores)'
    >>> start_up_why("GIL-bound: 2 workers, CPU 1.00× wall", 0.001, 0.5)
    'GIL-bound: 2 workers, CPU 1.00× wall'
    """
    if not (math.isfinite(setup_s) and math.isfinite(e2e_s)):
        return why
    return _START_UP.sub(
        f"start-up: {seconds(setup_s)} of {seconds(e2e_s)} end to end, medians", why, count=1
    )


def _plain(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return str(value)


def clean(doc):
    """NaN and infinities as null: JSON has none."""
    if isinstance(doc, dict):
        return {k: clean(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [clean(v) for v in doc]
    if isinstance(doc, float) and not math.isfinite(doc):
        return None
    return _plain(doc) if isinstance(doc, (np.integer, np.floating)) else doc


def caveat_once(break_evens: tuple[str, ...] | list[str]) -> list[str]:
    """Break-even lines whose sizes all carry one caveat, it said once under them: two lines each
    ending "(extrapolated; one size measured, run ∝ size assumed)" crowded the screen with it twice.

    >>> caveat_once(["a: it wins at size ≥ 1 (extrapolated)", "b: it wins at size ≥ 2 (extrapolated)"])
    ['a: it wins at size ≥ 1', 'b: it wins at size ≥ 2', 'both sizes (extrapolated)']
    >>> caveat_once(["a: it wins at size ≥ 1 (extrapolated)", "b: it wins at size ≥ 2"])
    ['a: it wins at size ≥ 1 (extrapolated)', 'b: it wins at size ≥ 2']
    """
    found = [re.fullmatch(r"(.* size ≥ [\d,.]+) (\([^()]+\))", line) for line in break_evens]
    if len(found) < 2 or not all(found) or len({m.group(2) for m in found}) > 1:
        return list(break_evens)
    which = "both" if len(found) == 2 else f"all {len(found)}"
    return [m.group(1) for m in found] + [f"{which} sizes {found[0].group(2)}"]
