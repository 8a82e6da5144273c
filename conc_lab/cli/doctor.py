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
    affinity, timer, the GIL, a hypervisor and Ray. `conclab sweep` stores the same findings.
    Then lists the Python interpreters found (PATH, pyenv, common places) and which can host
    trials, with the value to name each by in `matrix.python`.
    """
    import json

    from rich.table import Table
    from rich.text import Text

    from conc_lab.machine import doctor as checks

    findings = checks.diagnose() + checks.interpreters()
    if as_json:
        out_console.print_json(json.dumps([f.to_dict() for f in findings]))
    else:
        colour = {"ok": "green", "info": "blue", "warn": "yellow", "bad": "bold red"}
        table = Table("check", "status", "seen", "advice", show_lines=False)
        for f in findings:
            # details hold paths and YAML snippets: text, not rich markup
            table.add_row(f.name, f"[{colour[f.status]}]{f.status}[/]", Text(f.detail), Text(f.advice))
        out_console.print(table)
    if strict and any(f.spoils for f in findings):
        raise typer.Exit(1)
