"""What a bad config is: ``ConfigError``, one line naming the file, the key and the problem.

The helpers here quote what a user wrote into that line, cut short and on one line, whatever it
held (a newline, a control character, an alias bomb's billion values).
"""

from __future__ import annotations

import os
import reprlib
from typing import Any


class ConfigError(ValueError):
    """A bad config: ``str(err)`` is the one line a user sees (file: key: problem).

    >>> str(ConfigError("c.yaml", "matrix.workers[1]", "must be a positive integer, got -2"))
    'c.yaml: matrix.workers[1]: must be a positive integer, got -2'
    """

    def __init__(self, path: str | os.PathLike | None, key: str, problem: str):
        # A key or message may quote what the user wrote, newlines included: it stays one line.
        self.path = one_line(str(path or "<config>"))
        self.key, self.problem = one_line(clip(key)), one_line(clip(problem, 2000))
        super().__init__(f"{self.path}: {self.key}: {self.problem}")


def one_line(text: str) -> str:
    """``text`` with control characters escaped (\\n, \\t, \\x00), so it prints as one line.

    >>> one_line("a\\nb")
    'a\\\\nb'
    """
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxdict, _REPR.maxlist, _REPR.maxtuple, _REPR.maxset = 3, 4, 6, 6, 6
_REPR.maxstring = _REPR.maxother = _REPR.maxlong = 80


def show(value: Any) -> str:
    """``repr(value)``, cut short: a value quoted in an error may be huge (an alias bomb), the line is not.

    >>> show(list(range(10**6)))
    '[0, 1, 2, 3, 4, 5, ...]'
    """
    return _REPR.repr(value)


def clip(text: str, limit: int = 200) -> str:
    """``text``, at most ``limit`` characters.

    >>> clip("abcdef", 5)
    'ab...'
    """
    return text if len(text) <= limit else text[: limit - 3] + "..."


def kind(value: Any) -> str:
    """What ``value`` is, in a user's words.

    >>> kind([]), kind(3)
    ('a list', 'int')
    """
    return {dict: "a mapping", list: "a list", str: "a string", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )
