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
from conc_lab.cli.common import app, example
from conc_lab.cli.selftest import selftest

# Commands whose modules keep to themselves (no app import): registered here, after check.
app.command(epilog=example("conclab selftest", "conclab selftest --repeats 40 -o results"))(selftest)
app.command(
    epilog=example(
        "conclab advise experiments.cpu:sum_squares", "conclab advise mywork.py:crunch --budget 60"
    )
)(advise)

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover - console entry point
    try:
        app()
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
