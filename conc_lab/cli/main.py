"""The ``conclab`` command assembled: each command lives in a module of its own and registers on ``app``.

Importing the command modules registers them, in the order ``--help`` lists them. None imports
pandas, pyarrow, matplotlib or Ray at module level: a command imports what it needs when it runs.
"""

import sys

# The order of these imports is the order --help lists the commands.
# isort: off
from conc_lab.cli import sweep  # noqa: F401 - each import registers its commands on app
from conc_lab.cli import expand  # noqa: F401
from conc_lab.cli import results  # noqa: F401 - summarize, compare, report
from conc_lab.cli import doctor  # noqa: F401
from conc_lab.cli import storage  # noqa: F401 - merge, check
from conc_lab.cli import slurm  # noqa: F401
from conc_lab.cli import calibrate  # noqa: F401

# isort: on
from conc_lab.cli.advise import advise
from conc_lab.cli.common import app, example, reflow
from conc_lab.cli.selftest import selftest

# Commands whose modules keep to themselves (no app import): registered here, after check.
app.command(epilog=example("conclab selftest", "conclab selftest --repeats 40 -o results"))(selftest)
app.command(
    epilog=example(
        "conclab advise experiments.cpu:sum_squares", "conclab advise mywork.py:crunch --budget 60"
    )
)(advise)

# Each command's docstring, reflowed into paragraphs for --help to wrap at the terminal's width.
for _command in app.registered_commands:
    _command.help = reflow(_command.help or _command.callback.__doc__)

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - console entry point
    """Run the command, then end the process once Python's own clean-up (atexit) has run.

    The interpreter's final teardown is skipped: pyarrow's C++ thread pools, torn down there,
    sometimes abort the process ("terminate called without an active exception", exit -6)
    after a command that read Parquet had already printed its answer and chosen its exit code
    (seen in CI on ``conclab check`` of a healthy store). Nothing of conc_lab's lives there:
    stores are written and closed before a command returns.
    """
    code: int | str | None = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code
    except BrokenPipeError:
        code = 1
    _end(code)


def _end(code: int | str | None) -> None:  # pragma: no cover - ends the process
    import atexit
    import os

    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()  # what Python would run at exit: logging, multiprocessing, Ray's own
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            code = code or 1  # a closed pipe: as BrokenPipeError above
    os._exit(code or 0)


if __name__ == "__main__":  # pragma: no cover
    main()
