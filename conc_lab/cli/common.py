"""The ``conclab`` Typer app and what every command shares: the consoles, errors, output.

A usage error (``--budget abc``, an unknown option, a missing argument) is one line in conc_lab's
own words, ``error: --budget: 'abc' is not a number``, exit 2, not typer's boxed panel (``_Group``).
Importing this module changes two things process-wide, both for how the command prints:
typer's ``--help`` stops labelling on/off flags ``<bool>``, and the store's warnings print as
one line. Nothing here imports pyarrow, pandas or any other heavy package: ``--version``,
``--help``, ``expand`` and ``doctor`` start without them (tests/test_cli_startup.py).
"""

from __future__ import annotations

import re
import sys
import typing
import warnings
from pathlib import Path, PurePath
from typing import NoReturn

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

import conc_lab

#: click's exceptions, as typer raises them: typer carries its own copy of click (typer._click),
#: whose classes are not the click package's.
_clicks = sys.modules[typer.BadParameter.__module__]


class _Group(typer.core.TyperGroup):
    """The ``conclab`` command group: a usage error (a value that does not parse, an option it does
    not have, an argument left out, an empty path) is said as conc_lab's own one line, not typer's
    boxed panel."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for command in self.commands.values():
            for param in command.params:
                if _takes_paths(param):
                    _refuse_empty(param)

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except _clicks.NoArgsIsHelpError:  # `conclab` alone: the help has been printed
            code = 2
        except _clicks.UsageError as exc:
            code = _said(usage_message(exc))
        except _clicks.ClickException as exc:
            code = _said(exc.format_message(), exc.exit_code)
        except typer.Abort:  # EOF at a prompt (typer.Exit, Ctrl-C included, is returned as a code)
            code = _said("aborted", 1)
        sys.exit(code if isinstance(code, int) else 0)  # else: a command's return value, not a code


def _takes_paths(param) -> bool:
    """Whether ``param`` takes a path or a list of them: typer 0.28+ says so in its own type
    descriptor (the annotation), older typer by giving it a click.Path."""
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is None:
        return getattr(getattr(param, "type", None), "name", None) == "path"
    annotation = descriptor.annotation
    kinds = typing.get_args(annotation) if typing.get_origin(annotation) is list else (annotation,)
    return any(isinstance(kind, type) and issubclass(kind, PurePath) for kind in kinds)


def _refuse_empty(param) -> None:
    """``param`` refuses ``''`` as typed, which would reach conc_lab as the working directory
    (``Path('')`` is ``.``): ``-o ''`` wrote a sweep there, ``summarize ''`` read every results
    folder under it."""
    process = param.process_value

    def checked(ctx, value):
        given = value if isinstance(value, (list, tuple)) else (value,)
        if any(isinstance(v, str) and not v for v in given):
            raise typer.BadParameter("an empty path", ctx=ctx, param=param)
        return process(ctx, value)

    param.process_value = checked


app = typer.Typer(
    cls=_Group,
    help="conc_lab: threads or processes (or Ray), and how much faster, for your work? "
    "Run a YAML experiment matrix as core-pinned trials and analyse the Parquet results.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# Both consoles take their width from the terminal, else from COLUMNS, else 80: a table piped
# into `head` or a file is as wide as the person's terminal, not 200 columns.
# No emoji codes: names the user typed ("mywork:sleepy") are printed, never read as ":sleepy:".
console = Console(stderr=True, emoji=False)
out_console = Console(emoji=False)

WIDE_HELP = "Every column of the summary table, however wide (default: what fits the terminal)."
PATHS_HELP = "Results: a sweep directory, a sweep name's folder or a results root."

# typer labels every on/off flag "<bool>" in --help, as if it took a value; a flag takes none. The
# method that does it came with typer 0.28; earlier typers (0.27 on a CUDA image) have none to mend.
_display_type_rich = getattr(typer.core.TyperOption, "display_type_rich", None)


def _no_flag_type(self, ctx):
    return None if self.is_flag else _display_type_rich(self, ctx)


if _display_type_rich is not None:
    typer.core.TyperOption.display_type_rich = _no_flag_type

_format_warning = warnings.formatwarning


def _warning_line(message, category, filename, lineno, line=None) -> str:
    # The store's warnings (a run stored twice, counted once) are for a person: one line, no source.
    if category.__name__ == "StoreWarning":
        return f"warning: {message}\n"
    return _format_warning(message, category, filename, lineno, line)


warnings.formatwarning = _warning_line


def _version(value: bool) -> None:
    if value:
        print(f"conclab {conc_lab.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    pass  # the options common to every command; the help text is app's


def example(*commands: str) -> str:
    """A command's ``--help`` epilog: how it is typically called, one command a line.

    >>> print(example("conclab expand configs/smoke.yaml", "conclab expand configs/cpu.yaml --count"))
    Examples:
    conclab expand configs/smoke.yaml
    conclab expand configs/cpu.yaml --count
    """
    # typer keeps single newlines in an epilog (and strips any indent, so none is given)
    return ("Example:" if len(commands) == 1 else "Examples:") + "".join(f"\n{c}" for c in commands)


def reflow(doc: str | None) -> str | None:
    r"""A command's docstring as its ``--help`` text: each paragraph one line, for rich to wrap.

    typer keeps the docstring's single newlines, so lines broken for the source's 100 columns
    came out ragged at 80 ("Exit code 0 when" alone on a line) and short at 120. A line that
    begins a list item ("- ", "* ") keeps its own line.

    >>> reflow("Summary line.\n\n    One paragraph\n    over two lines.\n    - an item\n    - another")
    'Summary line.\n\nOne paragraph over two lines.\n- an item\n- another'
    """
    if doc is None:
        return None
    import inspect

    paragraphs = []
    for paragraph in inspect.cleandoc(doc).split("\n\n"):
        lines = [line.strip() for line in paragraph.splitlines() if line.strip()]
        text = lines[0] if lines else ""
        for line in lines[1:]:
            text += ("\n" if line.startswith(("- ", "* ")) else " ") + line
        paragraphs.append(text)
    return "\n\n".join(paragraphs)


def die(message: str, code: int = 2, to: Console | None = None) -> NoReturn:
    """Print ``error: message`` (one line, on stderr) and exit ``code`` (2: bad input)."""
    raise typer.Exit(_said(message, code, to))


def _said(message: str, code: int = 2, to: Console | None = None) -> int:
    """``error: message`` said (one line, on stderr); ``code`` returned, for the caller to exit with."""
    # the message as Text: it holds what the user typed, and "[...]" in a path is not markup (a name
    # or path was mangled: "sub/[bold]y.py" said as "sub/y.py", or, holding "[/]", a traceback)
    say(Text.assemble(("error:", "bold red"), " ", message), to=to)
    return code


def usage_message(exc) -> str:
    """click's usage error ``exc`` as conc_lab's one line: the option or argument, what was given, what is wrong.

    ``--budget: 'abc' is not a number``; ``--bogus: no such option of conclab sweep; did you mean
    --repeats? (conclab sweep --help lists them)``; ``CONFIG: missing; conclab sweep needs it``.
    """
    where = exc.ctx.command_path if exc.ctx is not None else "conclab"
    if isinstance(exc, _clicks.NoSuchOption):
        guess = f"; did you mean {' or '.join(exc.possibilities)}?" if exc.possibilities else ""
        return f"{exc.option_name}: no such option of {where}{guess} ({where} --help lists them)"
    if isinstance(exc, _clicks.BadOptionUsage) and exc.option_name:
        # "Option '--repeats' requires an argument." / "Option '--ray' does not take a value."
        said = exc.message.removeprefix(f"Option {exc.option_name!r} ").rstrip(".")
        return f"{exc.option_name}: {'needs a value' if said.startswith('requires') else said}"
    param = getattr(exc, "param", None)
    if (
        param is None
    ):  # "No such command 'swep'. Did you mean 'sweep'?", "Got unexpected extra argument(s) (x)"
        text = exc.format_message().rstrip(".")
        return f"{where}: {text[:1].lower()}{text[1:]} ({where} --help)"
    name = param.opts[0] if param.param_type_name == "option" else param.name.upper()
    if isinstance(exc, _clicks.MissingParameter):
        return f"{name}: missing; {where} needs it ({where} --help)"
    return f"{name}: {_bad_value(exc)}"


#: pydantic's error types (typer checks values with it), as what is wrong with the value given.
_NOT_A = {"int_parsing": "a whole number", "int_from_float": "a whole number", "float_parsing": "a number"}
_BOUNDS = {"greater_than_equal": "at least", "greater_than": "more than", "less_than_equal": "at most"}
_BOUND_KEYS = {"greater_than_equal": "ge", "greater_than": "gt", "less_than_equal": "le"}


def _bad_value(exc) -> str:
    """What is wrong with the value of ``exc.param``: ``'abc' is not a number``, ``must be at least 1, got 0``."""
    errors = getattr(exc.__cause__, "errors", None)  # typer's values are checked by pydantic
    if not callable(errors) or not errors():  # as click says it: "'abc' is not a valid integer."
        text = exc.message.rstrip(".")
        return text[:1].lower() + text[1:]
    first = errors()[0]
    kind, value = first["type"], first.get("input")
    if kind in _NOT_A:
        return f"{value!r} is not {_NOT_A[kind]}"
    if kind in _BOUNDS:
        return f"must be {_BOUNDS[kind]} {(first.get('ctx') or {}).get(_BOUND_KEYS[kind])}, got {value}"
    text = str(first["msg"])
    return f"{value!r}: {text[:1].lower()}{text[1:]}"


def load(path: Path):
    """The config at ``path``, or exit 2 with its one-line problem."""
    from conc_lab.config.document import load_config
    from conc_lab.config.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as exc:
        die(str(exc))


#: Joins words that read as one unit (``60.4 ms a run``): ``say`` breaks a line anywhere else.
GLUE = "\xa0"


def together(words: str) -> str:
    """``words`` that ``say`` keeps on one line (it prints them with plain spaces)."""
    return words.replace(" ", GLUE)


def say(text: str | Text, markup: bool = False, to: Console | None = None) -> None:
    """A line for a person (on stderr unless ``to``), with no markup read into paths or values
    unless ``markup``. In a terminal it wraps between words, never inside ``together``'s, and a word
    wider than the terminal (a long path) starts a line of its own and is left whole, for the
    terminal to fold: the terminal itself breaks lines anywhere ("o / verhead"). Elsewhere (a log,
    a pipe) it stays one line, as scripts and greps expect."""
    to = to or console
    line = text.copy() if isinstance(text, Text) else Text.from_markup(text) if markup else Text(text)
    if not to.is_terminal:
        to.print(_unglued(line), highlight=False, soft_wrap=True)
        return
    for part in _broken(line, to.width):
        to.print(part, highlight=False, crop=False, no_wrap=True, overflow="ignore")


def _unglued(line: Text) -> Text:
    line.plain = line.plain.replace(GLUE, " ")  # as long as before: the styles stay where they were
    return line


def _broken(line: Text, width: int) -> list[Text]:
    """``line`` cut between words to lines of ``width``, as rich cuts them, but at plain spaces only:
    a rich line put "60.4" at one line's end and "ms a run" at the next's."""
    lines = []
    for part in line.split("\n", allow_blank=True):
        cuts, column = [], 0
        for word in re.finditer(r"[^ ]+ *", part.plain):
            if column and column + cell_len(word.group().rstrip(" ")) > width:
                cuts.append(word.start())
                column = 0
            column += cell_len(word.group())
        for piece in part.divide(cuts):
            piece.rstrip()
            lines.append(_unglued(piece))
    return lines


def emit(text: str) -> None:
    """Write ``text`` to stdout at once: a pipe (``| head``) sees it as it comes."""
    sys.stdout.write(text)
    sys.stdout.flush()


def width() -> int:
    """The width tables are fitted to: the terminal's, else COLUMNS, else 80."""
    return out_console.width
