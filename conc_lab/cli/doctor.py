"""``conclab doctor``: what on this machine could spoil a measurement, and which interpreters can host trials."""

from __future__ import annotations

import typer

from conc_lab.cli.common import app, example, out_console


@app.command(epilog=example("conclab doctor", "conclab doctor --strict --json > doctor.json"))
def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON."),
    strict: bool = typer.Option(False, "--strict", help="Exit 1 when any finding can spoil measurements."),
):
    """What on this machine could spoil a measurement, each with a plain recommendation.

    Checks SMT siblings, CPU governor and turbo, load, isolated CPUs, cgroup CPU quota,
    affinity, timer, the GIL, a hypervisor and Ray, and names the processes using the CPUs now
    (by pid: what to stop). `conclab sweep` stores the same findings (all but the processes).
    Then lists the Python interpreters found (PATH, pyenv, common places) and which can host
    trials, with the value to name each by in `matrix.python`.
    """
    import json

    from rich.table import Table
    from rich.text import Text

    from conc_lab.machine import doctor as checks
    from conc_lab.machine.processes import busy_now

    # the load average says that other work competes, a minute late; busy_now says which, by pid
    machine = checks.diagnose()
    at = next((i + 1 for i, f in enumerate(machine) if f.name == "load"), len(machine))
    findings = [*machine[:at], busy_now(), *machine[at:], *checks.interpreters()]
    if as_json:
        out_console.print_json(json.dumps([f.to_dict() for f in findings]))
    else:
        colour = {"ok": "green", "info": "blue", "warn": "yellow", "bad": "bold red"}
        if out_console.width < _TABLE_WIDTH:
            _blocks(findings, colour)
        else:
            table = Table("check", "status", "seen", "advice", show_lines=False)
            for f in findings:
                # details hold paths and YAML snippets: text, not rich markup; folded, never cut with "…"
                table.add_row(
                    f.name,
                    f"[{colour[f.status]}]{f.status}[/]",
                    Text(f.detail, overflow="fold"),
                    Text(f.advice, overflow="fold"),
                )
            out_console.print(table)
        _print_closing(findings, colour)
    if strict and any(f.spoils for f in findings):
        raise typer.Exit(1)


def _print_closing(findings: list, colour: dict) -> None:
    """The verdict after every finding, led by the worst status as a finding is, and wrapped under its
    own text (never at column 0, where a folded line read as a finding of its own)."""
    import textwrap

    from rich.text import Text

    status = _worst_spoiling(findings)
    closing = textwrap.fill(
        f"{status:<5} {_closing(findings)}",
        width=max(out_console.width, 40),
        subsequent_indent="      ",
        break_long_words=False,
    )
    head, _, rest = closing.partition(" ")
    out_console.print(Text.assemble("\n", (head, colour[status]), " ", rest), soft_wrap=True)


def _worst_spoiling(findings: list) -> str:
    """The worst status among the findings that can spoil a measurement; ``ok`` when none can."""
    from conc_lab.machine.doctor import worst

    return worst([f for f in findings if f.spoils]) if any(f.spoils for f in findings) else "ok"


def _closing(findings: list) -> str:
    """The last line: which findings can spoil a measurement, or that none can, so the verdict is
    not left somewhere in the middle of a page of checks and interpreters."""
    spoiling = [f"{f.name} ({f.status})" for f in findings if f.spoils]
    if not spoiling:
        return "nothing here should spoil a measurement"
    return f"can spoil a measurement here: {', '.join(spoiling)}; what to do is each one's advice above"


#: Narrower than this, four columns leave the values a user must copy (paths, YAML) a few letters
#: wide: each finding becomes a block of whole lines instead.
_TABLE_WIDTH = 120


def _blocks(findings: list, colour: dict) -> None:
    """Each finding as ``status  check`` then its seen and advice lines, wrapped between words with
    their continuation indented under the label's text, so a wrapped line never starts at column 0
    (where it read as a finding of its own); a path or a word longer than the line is kept whole."""
    import textwrap

    from rich.text import Text

    for f in findings:
        out_console.print(Text.assemble((f"{f.status:<5} ", colour[f.status]), (f.name, "bold")))
        for label, value in (("seen", f.detail), ("advice", f.advice)):
            if value:
                text = textwrap.fill(
                    f"  {label}: {value}",
                    width=max(out_console.width, 40),
                    subsequent_indent="    ",
                    break_long_words=False,
                    break_on_hyphens=False,
                )
                out_console.print(Text(text), soft_wrap=True)
