"""``conclab calibrate CONFIG``: ``size: auto`` calibrated once, for every sweep of the config (each shard too)."""

from __future__ import annotations

from pathlib import Path

import typer

from conc_lab.cli.common import app, die, example, load, say


@app.command(
    epilog=example(
        "conclab calibrate configs/cpu.yaml --out results",
        "sbatch --wrap 'conclab calibrate configs/cpu.yaml'   # on a node like the array's",
    )
)
def calibrate(
    config: Path = typer.Argument(..., help="The experiment matrix whose size: auto workloads to calibrate."),
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Results folder its sweeps write to."),
):
    """Calibrate the config's size: auto workloads once; every sweep of it under --out uses these sizes.

    The sizes go to OUT/<name>/_sizes.json. Shards of a sweep (conclab sweep --shard K/N, a
    SLURM array) then measure one size per workload instead of each calibrating its own, which
    merge would refuse. A config changed since is calibrated again where it runs, with a warning.
    """
    from conc_lab.config.errors import ConfigError
    from conc_lab.run import auto_sizes
    from conc_lab.store.layout import StoreError

    cfg = load(config)
    try:
        path, sizes = auto_sizes.calibrate(cfg, out)
    except (ConfigError, StoreError) as exc:
        die(str(exc))
    if path is None:
        say(f"nothing to calibrate: {config} has no size: auto")
        return
    chosen = ", ".join(f"{workload} {size}" for workload, size in sizes.items())
    say(f"size auto: {chosen}; wrote {path}: every sweep of {cfg.name} under {out} uses these sizes")
