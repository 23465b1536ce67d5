"""Reading a sweep for the report: ``sweep.json`` and each run's folder (through
:mod:`experiments.runs`), the runs left out and why, the order and labels of the methods."""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from experiments.runs import (
    CONFIG_FILE,
    KINDS,
    SCALARS_FILE,
    SUMMARY_FILE,
    Scalars,
    UnreadableFile,
    is_a,
    is_finished,
    read_json,
    read_scalars,
)


class ReportError(Exception):
    """Bad input to the report: one line on stderr, exit code 2."""


PERTURBATIONS = {
    "permute_observations": "permutation",
    "permute_actions": "permutation",
    "redraw_friction": "friction",
}
"""The ``train.py`` flags that make every task period a new perturbation, and its name."""


@dataclass
class RunData:
    """One run folder: its settings, summary and logged scalars."""

    name: str
    dir: Path
    agent: str
    env: str
    method: str
    seed: int
    summary: dict | None
    perturbation: str | None = None
    """what each task period after the first draws anew (``permutation``, ``friction``), None
    when the periods cycle through unchanged tasks (see :data:`PERTURBATIONS`)"""
    _scalars: Scalars | None = field(default=None, repr=False)

    @property
    def finished(self) -> bool:
        """Whether the run finished (:func:`is_finished`)."""
        return is_finished(self.summary)

    @property
    def final_return(self) -> float:
        """The final evaluation return (NaN when there was none)."""
        value = (self.summary or {}).get("final_eval_return")
        return math.nan if value is None else float(value)

    @property
    def scalars(self) -> Scalars:
        """``scalars.jsonl`` as ``{key: (steps, values)}``, read on first use."""
        if self._scalars is None:
            self._scalars = read_scalars(self.dir / SCALARS_FILE)
        return self._scalars


CONFIG_FIELDS = {"agent": str, "env": str, "method": str, "seed": int}
"""What the report reads from a run's ``config.json`` (all required)."""


SUMMARY_FIELDS = {
    "status": str,
    "final_eval_return": float,
    "total_timesteps": int,
    "wall_time_s": float,
    "train_sps": float,
    "sps": float,
}
"""What the report reads from a run's ``summary.json`` (each may be absent or null)."""


def check_fields(data: dict, fields: dict[str, type], file: str, required: bool) -> None:
    """Raise :class:`UnreadableFile` when a field of ``data`` (read from ``file``) has the wrong
    type, or is absent while ``required``."""
    for key, kind in fields.items():
        if key not in data:
            if required:
                raise UnreadableFile(f"{file} has no {key!r}")
            continue
        value = data[key]
        if not is_a(value, kind) and (required or value is not None):
            raise UnreadableFile(f"{file}: {key} is {value!r}, not {KINDS[kind]}")


RESTORE = "restore it, or move the run folder out of the sweep"
RESUME = "run the sweep again to resume it"


@contextmanager
def advising(advice: str):
    """Add what to do to the message of an :class:`UnreadableFile` raised inside."""
    try:
        yield
    except UnreadableFile as err:
        raise UnreadableFile(f"{err}: {advice}") from None


def read_run(run_dir: Path) -> RunData:
    """A run folder's settings and summary, and the scalars of a finished run, read now so
    that a run whose files cannot be read raises :class:`UnreadableFile` (what is wrong and
    what to do), and is skipped."""
    with advising(RESTORE):
        config = read_json(run_dir / CONFIG_FILE) or {}
        check_fields(config, CONFIG_FIELDS, "config.json", required=True)
    resume = f"python train.py --agent {config['agent']} --resume {run_dir}"
    # train.py --resume writes the summary again (a finished run: its final evaluation)
    with advising(f"delete it and resume the run ({resume})"):
        summary = read_json(run_dir / SUMMARY_FILE)
        if summary is not None:
            check_fields(summary, SUMMARY_FIELDS, "summary.json", required=False)
    with advising(RESTORE):
        scalars = read_scalars(run_dir / SCALARS_FILE) if is_finished(summary) else None
    kinds = {word for flag, word in PERTURBATIONS.items() if config.get(flag)}
    return RunData(
        name=run_dir.name,
        dir=run_dir,
        **{key: config[key] for key in CONFIG_FIELDS},
        summary=summary,
        perturbation=kinds.pop() if len(kinds) == 1 else "perturbation" if kinds else None,
        _scalars=scalars,
    )


def load_sweep(sweep_dir: Path) -> tuple[dict | None, list[RunData], list[dict]]:
    """The sweep record (or None), its readable runs (folders with a ``config.json``) and the
    skipped runs: :func:`skipped_run` of each run that has not finished or cannot be read."""
    if not sweep_dir.is_dir():
        raise ReportError(f"{sweep_dir} is not a folder: pass a sweep folder, runs/<sweep_name>")
    record = read_record(sweep_dir / "sweep.json")
    run_dirs = sorted(p for p in sweep_dir.iterdir() if (p / "config.json").exists())
    runs, unreadable = [], {}
    for run_dir in run_dirs:
        try:
            runs.append(read_run(run_dir))
        except UnreadableFile as err:
            unreadable[run_dir.name] = str(err)
    expected = (record or {}).get("runs", {})
    if not run_dirs and not expected:
        raise ReportError(f"{sweep_dir} holds no runs (no */config.json, no sweep.json)")
    by_name = {run.name: run for run in runs}
    names = dict.fromkeys([*expected, *(run_dir.name for run_dir in run_dirs)])
    skipped = (
        skipped_run(name, by_name.get(name), unreadable.get(name), expected.get(name, {}))
        for name in names
    )
    return record, runs, [entry for entry in skipped if entry is not None]


def read_record(path: Path) -> dict | None:
    """``sweep.json`` (None when absent); one that cannot be read stops the report."""
    try:
        record = read_json(path)
        runs = (record or {}).get("runs", {})
        if not isinstance(runs, dict) or not all(isinstance(e, dict) for e in runs.values()):
            raise UnreadableFile(f"{path.name}: its runs are not objects by run name")
    except UnreadableFile as err:
        raise ReportError(
            f"{path.parent}: {err}: restore it, or move it aside to report the run folders alone"
        ) from None
    return record


def skipped_run(name: str, run: RunData | None, problem: str | None, entry: dict) -> dict | None:
    """``{name, state, reason, error}`` of a run the statistics leave out; None for a finished
    run. ``run``: its folder (None when it has no readable one); ``problem``: why its files
    cannot be read; ``entry``: its record in ``sweep.json`` (its state and error)."""
    recorded = entry.get("state")
    if problem is not None:
        state, reason = "unreadable", problem
    elif run is None and recorded == "finished":
        state = "unfinished"
        reason = "its folder or config.json is gone, though sweep.json says it finished"
    elif run is None:
        state, reason = recorded or "pending", "no run folder yet: run the sweep to start it"
    elif run.finished:
        return None
    else:
        summary = run.summary or {}
        status = summary.get("status", "unfinished")
        state = recorded if recorded not in (None, "finished") else status
        step = summary.get("total_timesteps")
        if run.summary is None:
            reason = "no summary.json: still running, or stopped before its end; " + RESUME
        elif status == "interrupted":
            reason = f"stopped at step {step} (its summary.json says interrupted): {RESUME}"
        else:
            reason = f"its summary.json says {status!r} at step {step}: see its train.log"
    return {"name": name, "state": state, "reason": reason, "error": entry.get("error")}


def method_order(record: dict | None, runs: list[RunData], baseline: str) -> list[str]:
    """Method labels in the sweep's grid order (the baseline first when the grid has no order)."""
    seen = list(dict.fromkeys(label(run, runs) for run in runs))
    grid = (record or {}).get("grid", {}).get("method")
    if grid and len({run.agent for run in runs}) == 1:
        return [m for m in grid if m in seen] + [m for m in seen if m not in grid]
    return sorted(seen, key=lambda m: (m != baseline, seen.index(m)))


def label(run: RunData, runs: list[RunData]) -> str:
    """The group label of a run: its method, prefixed by its agent when agents differ."""
    if len({r.agent for r in runs}) > 1:
        return f"{run.agent}:{run.method}"
    return run.method
