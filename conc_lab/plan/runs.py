"""The plan of a sweep, as plain data: which trials, in which order, and what a resume still needs.

Nothing here runs a trial. ``select_trials`` expands the matrix and takes a shard of it;
``Plan`` orders the runs (rounds interleave every trial: A B C A B C ..., each round
in a fresh seeded permutation, recorded per run; warm-up rounds first) and leaves out what a
resumed sweep already recorded; ``resume_state`` reads what that is from the store.
Runs are generated, never listed: a plan of 10^6 trials x 100 repeats costs the trials'
memory, not the runs'.

>>> from conc_lab.config.document import parse_config
>>> cfg = parse_config({"name": "p", "repeats": 2, "warmup": 1, "shuffle": False,
...     "matrix": {"workload": ["experiments.io:sleep"], "backend": ["sequential", "threading"]}})
>>> plan = Plan(cfg, select_trials(cfg))
>>> [(r.trial.backend, r.repeat, r.warmup) for r in plan.runs()]  # doctest: +NORMALIZE_WHITESPACE
[('sequential', 0, True), ('threading', 0, True), ('sequential', 0, False), ('threading', 0, False),
 ('sequential', 1, False), ('threading', 1, False)]
>>> plan.total, plan.measured
(6, 4)
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from conc_lab.config.errors import ConfigError
from conc_lab.config.model import Config
from conc_lab.host.protocol import SEQUENTIAL
from conc_lab.plan.matrix import Trial, expand
from conc_lab.store.manifest import read_manifest
from conc_lab.store.reader import completed_runs, latest_sweep, merged_holding


@dataclass(frozen=True)
class Run:
    """One execution of a trial: measured repeat ``repeat``, or its warm-up round ``repeat``.

    A warm-up run executes like any other but makes no row in the store.
    """

    trial: Trial
    repeat: int
    warmup: bool = False
    # Where the run sits in the order, recorded in its row; not part of which run it is.
    round: int = field(default=0, compare=False)  # the interleaved round (as repeat, warm-ups apart)
    slot: int = field(default=0, compare=False)  # position in the round's permutation


# -- shards ---------------------------------------------------------------------------------


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> tuple[int, int]:
    """``"3/10"`` -> (3, 10): the third of ten slices, counted from 1.

    ``"auto"`` is this SLURM array task's slice, from ``SLURM_ARRAY_TASK_ID`` and the array's
    ``SLURM_ARRAY_TASK_MIN`` with ``SLURM_ARRAY_TASK_COUNT`` (or ``_MAX`` and ``_STEP``), so an
    array job script needs no arithmetic: ``--array=0-3`` and ``--array=1-4`` both give 1/4 .. 4/4.

    >>> parse_shard("3/10")
    (3, 10)
    >>> parse_shard("auto", {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"})
    (3, 4)
    """
    if str(text).strip().lower() == "auto":
        return _slurm_array_shard(os.environ if environ is None else environ)
    k, sep, n = str(text).partition("/")
    try:
        k_i, n_i = int(k), int(n)
    except ValueError:
        k_i = n_i = 0
    if not sep or n_i < 1 or not 1 <= k_i <= n_i:
        raise ValueError(f"--shard: must be K/N with 1 <= K <= N or auto, e.g. 3/10, got {text!r}")
    return k_i, n_i


def _slurm_array_shard(environ: Mapping[str, str]) -> tuple[int, int]:
    """(K, N) of this SLURM array task; ValueError naming the variable when it cannot tell."""
    get = environ.get
    if get("SLURM_ARRAY_TASK_ID") is None:
        raise ValueError("--shard auto: not a SLURM array task (SLURM_ARRAY_TASK_ID is unset); give K/N")
    try:
        task, low = int(get("SLURM_ARRAY_TASK_ID")), int(get("SLURM_ARRAY_TASK_MIN", ""))
        step = int(get("SLURM_ARRAY_TASK_STEP") or 1)
        high = int(get("SLURM_ARRAY_TASK_MAX") or low + (int(get("SLURM_ARRAY_TASK_COUNT", "")) - 1) * step)
        count = int(get("SLURM_ARRAY_TASK_COUNT") or (high - low) // step + 1)
    except ValueError:
        raise ValueError(
            "--shard auto: SLURM_ARRAY_TASK_ID, _MIN and _COUNT (or _MAX) must be set, as integers; give K/N"
        ) from None
    if count == 1:  # e.g. one task resubmitted with --array=2: slice 1 of 1 would be the whole sweep
        raise ValueError(
            f"--shard auto: this array has one task (index {task}), which would run the whole sweep; "
            "to rerun one slice give it, e.g. --shard 2/4 --resume"
        )
    k, off = divmod(task - low, step)
    # An index list like --array=1,5,7 has no stride that maps every index to a slice.
    if off or not 0 <= k < count or (high - low) // step + 1 != count:
        raise ValueError(
            f"--shard auto: array index {task} is not one of {count} evenly spaced indices from {low} "
            "(use --array=1-N, or give K/N)"
        )
    return k + 1, count


def shard_trials(trials: Iterable[Trial], shard: tuple[int, int]) -> list[Trial]:
    """The K-th of N slices of ``trials``: every N-th trial in matrix order, starting at the K-th.

    Deterministic (matrix order is), disjoint and complete over K = 1..N, and striding
    spreads every backend and size over all shards so they take similar times.

    >>> [t for t in shard_trials(list("abcdefg"), (2, 3))]
    ['b', 'e']
    """
    k, n = shard
    return [t for i, t in enumerate(trials) if i % n == k - 1]


def shard_label(shard: tuple[int, int] | None) -> str | None:
    """``(3, 10)`` -> ``"3/10"``, as the manifest and ``--resume`` name a shard."""
    return f"{shard[0]}/{shard[1]}" if shard else None


def select_trials(config: Config, shard: str | tuple[int, int] | None = None) -> list[Trial]:
    """The trials this sweep runs: the matrix, or the given shard of it, in matrix order."""
    if shard is None:
        return list(expand(config))
    k, n = parse_shard(shard) if isinstance(shard, str) else shard
    trials = list(expand(config))
    problem = too_many_shards(n, len(trials))
    if problem:
        raise ConfigError(config.path, "--shard", f"{k}/{n}: {problem}")
    return shard_trials(trials, (k, n))


def too_many_shards(n: int, trials: int) -> str | None:
    """What is wrong with splitting ``trials`` trials into ``n`` shards, else None: an empty shard
    is a mistyped N, and merge would wait for it forever (``sweep --shard``, ``slurm --shards``).

    >>> too_many_shards(3, 2)
    '3 shards of 2 trials; give N at most 2, one trial a shard or more'
    """
    if n > trials:
        return f"{n} shards of {trials} trials; give N at most {trials}, one trial a shard or more"
    return None


def check_split(
    config: Config, out: str | os.PathLike, shard: tuple[int, int] | None, auto: bool = False
) -> None:
    """``ConfigError`` when ``out`` holds unmerged shards of this config split another way than
    ``shard`` (``auto``: taken from ``--shard auto``): merge refuses to mix splits, so this shard
    could never be merged with them.

    The usual way here: failed tasks of ``--array=1-4`` resubmitted as ``--array=2-3`` with
    ``--shard auto``, which makes them 1/2 and 2/2: half the sweep each, not slices 2 and 3.
    """
    if shard is None:
        return
    from conc_lab.store.layout import StoreError, sweep_dirs

    root = Path(out) / config.name
    others: dict[int, list[str]] = {}
    try:
        for d in sweep_dirs(root) if root.is_dir() else ():
            m = read_manifest(d)
            if m.shard and m.fingerprint == config.fingerprint and m.split_n != shard[1]:
                others.setdefault(m.split_n, []).append(m.shard)
    except StoreError:
        return  # the sweep and merge name what is wrong there
    if not others:
        return
    n = max(others, key=lambda k: len(others[k]))
    labels = sorted(set(others[n]), key=lambda s: int(s.split("/")[0]))
    from_auto = f" (from --shard auto: this array has {shard[1]} tasks)" if auto else ""
    raise ConfigError(
        config.path,
        "--shard",
        f"{shard[0]}/{shard[1]}{from_auto} "
        f"splits the sweep {shard[1]} ways, but {root} holds shards {', '.join(labels)} of this config, "
        f"split {n} ways, which merge cannot mix with it; run a slice of those again with --shard K/{n} "
        f"(e.g. --shard {_first_missing(labels, n)}/{n}, with --resume if it began; in an array script "
        f"resubmitted with --array=K, give K/{n}, not auto), or move those shards out first",
    )


def check_not_merged(config: Config, out: str | os.PathLike, shard: tuple[int, int] | None) -> None:
    """``ConfigError`` when a merged sweep under ``out`` already holds this shard of this config.

    Run again (the whole array resubmitted to measure anew), the shard's runs would be recorded
    beside the merged ones, never counted by ``load`` and refused by ``merge``: every run wasted,
    the merge job failed. Refused before anything runs, saying how to measure again.
    """
    if shard is None:
        return
    from conc_lab.store.layout import StoreError

    label = f"{shard[0]}/{shard[1]}"
    try:
        merged = merged_holding(Path(out) / config.name, label)
        if merged is None or read_manifest(merged).fingerprint != config.fingerprint:
            return
    except StoreError:
        return  # the sweep names what is wrong there
    raise ConfigError(
        config.path,
        "--shard",
        f"{label}: shard {label} of {config.name} is measured already, in merged sweep {merged}; to "
        f"measure again, move that sweep out of {out} first (mv {merged} SOMEWHERE) or give another --out",
    )


def _first_missing(labels: list[str], n: int) -> int:
    have = {int(s.split("/")[0]) for s in labels}
    return next((k for k in range(1, n + 1) if k not in have), 1)


# -- resume ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResumeState:
    """What a resumed sweep continues from: its folder, id, recorded runs and calibrated sizes."""

    sweep_dir: Path
    sweep_id: str
    done: frozenset[tuple[str, int]] = frozenset()  # (trial_id, repeat) already recorded
    calibrated_sizes: dict[str, int] = field(default_factory=dict)
    started_at: float | None = None
    config: Config | None = None  # the config as the sweep began (``config_as_begun``)
    doctor: tuple = ()  # the machine check's findings as the sweep began (the manifest's ``doctor``)


class AlreadyMerged(Exception):
    """``--resume`` of a shard that a merge already took in: nothing to run (``merged``: where it went)."""

    def __init__(self, merged: Path, message: str):
        super().__init__(message)
        self.merged = merged


def resume_state(config: Config, out: str | os.PathLike, shard: str | None = None) -> ResumeState | None:
    """The state of the latest sweep of ``config`` under ``out`` (of that shard), or None if none.

    A sweep begun under another config is refused: mixing its rows with these would
    compare trials that were not run alike.
    """
    sweep_dir = latest_sweep(Path(out) / config.name, shard=shard)
    if sweep_dir is None and shard is not None:
        merged = merged_holding(Path(out) / config.name, shard)
        if merged is not None:  # resumed after its merge: measured already, never again
            raise AlreadyMerged(merged, f"shard {shard} of {config.name} is already in merged sweep {merged}")
    if sweep_dir is None:
        return None
    manifest = read_manifest(sweep_dir)
    begun = config_as_begun(config, manifest.fingerprint)
    if begun is None:
        raise ConfigError(
            config.path,
            "(resume)",
            f"the config changed since sweep {manifest.sweep_id} began "
            f"(its fingerprint differs{_overrides_hint(dict(manifest.overrides), config.overrides)}); "
            "run without --resume to start a new sweep",
        )
    return ResumeState(
        sweep_dir=sweep_dir,
        sweep_id=manifest.sweep_id,
        done=frozenset(completed_runs(sweep_dir)),
        calibrated_sizes=dict(manifest.calibrated_sizes),
        started_at=manifest.started_at,
        config=begun,
        doctor=tuple(manifest.doctor),
    )


#: Defaults that changed after sweeps were recorded under them: (setting, the default it had). A
#: sweep whose file left the setting out began under the old default, and resumes under it.
OLD_DEFAULTS = (("shuffle", False),)  # rounds in matrix order, until randomized rounds (#20)


def config_as_begun(config: Config, fingerprint: str | None) -> Config | None:
    """``config`` as the sweep with ``fingerprint`` began it, or None if that sweep ran another config.

    The same config, or the same file under an old default (``OLD_DEFAULTS``): a sweep begun
    before shuffle became the default resumes in matrix order, as it began.

    >>> from conc_lab.config.document import parse_config
    >>> cfg = parse_config({"name": "d", "matrix": {"workload": ["experiments.io:sleep"], "backend": ["threading"]}})
    >>> before = dataclasses.replace(cfg, shuffle=False).fingerprint  # as a conc_lab before #20 wrote it
    >>> config_as_begun(cfg, before).shuffle, config_as_begun(cfg, cfg.fingerprint).shuffle
    (False, True)
    >>> config_as_begun(cfg, "0" * 16) is None
    True
    """
    if fingerprint == config.fingerprint:
        return config
    for key, old in OLD_DEFAULTS:
        if key in config.defaulted:
            then = dataclasses.replace(config, **{key: old})
            if then.fingerprint == fingerprint:
                return then
    return None


def _overrides_hint(then: object, now: dict[str, int | float]) -> str:
    """What the two command lines gave in place of the file, where they differ.

    >>> _overrides_hint({"repeats": 3}, {})
    ': it ran with --repeats 3, this resume gives none of --repeats, --warmup, --precision'
    >>> _overrides_hint(None, {})
    ''
    """
    then = then if isinstance(then, dict) else {}

    def flags(given: dict) -> str:
        return (
            " ".join(f"--{k} {v}" for k, v in sorted(given.items()))
            or "none of --repeats, --warmup, --precision"
        )

    return "" if then == now else f": it ran with {flags(then)}, this resume gives {flags(now)}"


# -- run order ------------------------------------------------------------------------------


#: ``more(round)``: the trial ids a round past ``repeats`` runs (``precision:``), or None: no more rounds.
More = Callable[[int], "set[str] | None"]


def run_order(trials: list[Trial], config: Config, more: More | None = None) -> Iterator[Run]:
    """Every run in order: ``config.warmup`` warm-up rounds, then ``config.repeats`` measured ones,
    then, with ``config.precision``, rounds of the trials ``more(round)`` names, until it names none.

    Each round runs every trial once, in a fresh permutation (``config.shuffle``, the default)
    seeded by ``config.seed`` and the round, so a sweep's order can be replayed and no trial
    systematically follows the same one (the baseline after the previous round's ``ray`` trials,
    say: RMIT, Abedi & Brecht 2017). Each run carries its round and slot; the rows record them.
    With ``pairing: adjacent`` a measured round runs each trial's sequential baseline right
    before it (A B A C ...): see ``adjacent_round``.
    """
    serves = baseline_of(trials) if config.pairing == "adjacent" else {}
    most = config.precision.max_repeats if config.precision and more else config.repeats
    for round_no in range(config.warmup + most):
        order = trials
        if config.shuffle:
            order = list(trials)
            random.Random(config.seed * 1_000_003 + round_no).shuffle(order)
        warmup = round_no < config.warmup
        repeat = round_no if warmup else round_no - config.warmup
        if repeat >= config.repeats and not warmup:  # a round added for precision: asked when it begins
            keep = more(repeat)
            if not keep:
                return
            order = [t for t in order if t.trial_id in keep]
        if serves and not warmup:
            yield from adjacent_round(order, serves, repeat)
            continue
        for slot, trial in enumerate(order):
            yield Run(trial, repeat, warmup, round=repeat, slot=slot)


def baseline_of(trials: list[Trial]) -> dict[str, Trial]:
    """trial_id -> the sequential trial its speedup is measured against (same workload, tasks,
    size, python and affinity), for the trials that have one in ``trials``."""
    key = lambda t: (t.workload, t.tasks, t.size, t.python, t.affinity)  # noqa: E731
    seq = {key(t): t for t in trials if t.backend == SEQUENTIAL}
    return {t.trial_id: seq[key(t)] for t in trials if t.backend != SEQUENTIAL and key(t) in seq}


def adjacent_runs(trials: list[Trial], serves: dict[str, Trial]) -> Counter:
    """trial_id -> runs a measured round of ``pairing: adjacent`` gives it: a baseline one per trial
    it serves (at least one), every other trial one."""
    count = Counter(b.trial_id for b in serves.values())
    return Counter({t.trial_id: max(count[t.trial_id], 1) for t in trials})


def adjacent_round(order: list[Trial], serves: dict[str, Trial], round_no: int) -> Iterator[Run]:
    """One measured round of ``pairing: adjacent``: each trial of ``order`` with a baseline runs right
    after a run of it; a baseline serving none runs alone, where the permutation puts it.

    The baseline's runs in round ``r`` are its repeats ``r*k .. r*k+k-1`` (``k``: the trials it
    serves), so every run still has a (trial, repeat) of its own; ``round`` is ``r`` for all.

    >>> from conc_lab.plan.matrix import Trial
    >>> a, b, c = (Trial("m:f", backend, 1, 1, 1) for backend in ("sequential", "threading", "ray"))
    >>> serves = baseline_of([a, b, c])
    >>> [(r.trial.backend, r.repeat, r.slot) for r in adjacent_round([c, a, b], serves, 1)]
    [('sequential', 2, 0), ('ray', 1, 1), ('sequential', 3, 2), ('threading', 1, 3)]
    """
    served = Counter(b.trial_id for b in serves.values())
    used: Counter = Counter()
    slot = 0
    for trial in order:
        base = serves.get(trial.trial_id)
        if trial.trial_id in served:
            continue  # it runs before each trial it serves
        if base is not None:
            repeat = round_no * served[base.trial_id] + used[base.trial_id]
            used[base.trial_id] += 1
            yield Run(base, repeat, round=round_no, slot=slot)
            slot += 1
        yield Run(trial, round_no, round=round_no, slot=slot)
        slot += 1


@dataclass(frozen=True)
class Plan:
    """The runs a sweep still has to do: ``trials`` in ``run_order``, less the runs in ``done``.

    A resumed sweep runs what is missing, with warm-ups only for trials that miss something.
    """

    config: Config
    trials: list[Trial]
    done: frozenset[tuple[str, int]] = frozenset()

    @cached_property
    def _per_round(self) -> Counter:
        """trial_id -> measured runs per round: 1, or more for a baseline under ``pairing: adjacent``."""
        if self.config.pairing != "adjacent":
            return Counter({t.trial_id: 1 for t in self.trials})
        return adjacent_runs(self.trials, baseline_of(self.trials))

    @cached_property
    def _missing(self) -> dict[str, int]:
        """trial_id -> measured runs it still needs (only trials that need any)."""
        wanted = {t.trial_id: self.config.repeats * self._per_round[t.trial_id] for t in self.trials}
        have = Counter(tid for tid, repeat in self.done if 0 <= repeat < wanted.get(tid, 0))
        missing = ((tid, n - have[tid]) for tid, n in wanted.items())
        return {tid: n for tid, n in missing if n > 0}

    def runs(self, more: More | None = None) -> Iterator[Run]:
        """The runs to execute, in order (generated as they are asked for); ``more``: see ``run_order``."""
        if not self.done:
            yield from run_order(self.trials, self.config, more)
            return
        missing, done, planned = self._missing, self.done, self.config.repeats
        for run in run_order(self.trials, self.config, more):
            tid = run.trial.trial_id
            if run.warmup:
                if tid in missing:
                    yield run
            elif (tid, run.repeat) not in done and (tid in missing or run.round >= planned):
                yield run

    @property
    def measured(self) -> int:
        """Runs that will make a row."""
        return sum(self._missing.values())

    @property
    def total(self) -> int:
        """Runs that will execute, warm-ups included."""
        return self.measured + len(self._missing) * self.config.warmup
