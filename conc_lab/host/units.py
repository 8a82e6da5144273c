"""Durations as people read them: the one formatter for all of conc_lab.

It lives on the host side because the host's calibrator speaks in durations too, and the
host imports only the standard library (Python 3.8 syntax); the parent side imports it from
here, so a duration reads the same in a calibration error, a summary table and a report.
"""

import math

#: (upper bound in seconds, divisor, unit): each bound is where the value would round up to the
#: next unit's first step at 3 significant digits (0.9999 s is "1 s", never "1e+03 ms").
_STEPS = (
    (0.9995e-3, 1e-6, "µs"),
    (0.9995, 1e-3, "ms"),
    (999.5, 1.0, "s"),
    (5997.0, 60.0, "min"),
    (86400.0, 3600.0, "h"),
)


def duration(seconds):
    """``seconds`` with a unit chosen so the number is short; ``-`` for a missing value.

    >>> [duration(x) for x in (4.6e-7, 0.0123, 0.9999, 2.5, 75, 1800, 7200, 1.4e13)]
    ['0.46 µs', '12.3 ms', '1 s', '2.5 s', '75 s', '30 min', '2 h', '1.62e+08 days']
    >>> duration(0), duration(float("nan")), duration(None), duration(-0.002)
    ('0 s', '-', '-', '-2 ms')
    """
    if seconds is None or not math.isfinite(seconds):
        return "-"
    if seconds == 0:
        return "0 s"
    for bound, divisor, unit in _STEPS:
        if abs(seconds) < bound:
            return "%.3g %s" % (seconds / divisor, unit)
    return "%.3g days" % (seconds / 86400.0)
