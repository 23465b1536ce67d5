"""Aggregate a sweep into a report: final returns with confidence intervals, curves, figures.

    python report.py runs/<sweep_name>

reads the run folders of a sweep (``sweep.json`` when there is one, each run's
``config.json``, ``summary.json`` and ``scalars.jsonl``; no Ray needed) and writes
``report.md``, ``report.json`` and PNG figures into that folder (``--out`` elsewhere):

- final evaluation return per env and method: mean, median, IQM (interquartile mean) with 95%
  stratified-bootstrap confidence intervals, performance profiles and the probability of
  improvement of each method over ``--baseline`` (default ``none``). The statistics are those
  of Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice" (arXiv
  2108.13264), computed by their library ``rliable``. rliable draws its bootstrap resamples
  from numpy's global random generator: each estimate here seeds it with ``--seed`` first, so
  any number in the report is reproduced by seeding numpy and calling rliable on that one
  score matrix;
- learning curves: evaluation return against env steps, IQM and 95% CI band per method;
- task cycles and perturbed envs: mean training return in each task period, and first against
  later visits of each task (does the k-th visit learn as fast as the first?); in a perturbation
  stream (``--permute-observations``, ``--permute-actions``, ``--redraw-friction``, read from
  the runs' ``config.json``) every period after the first is a new permutation (or friction),
  labelled ``permutation k``, and compared with the first period;
- plasticity metrics against env steps per method (dormant ratio, effective rank, DfI, weight
  norm) with the interventions marked;
- compute: wall time and steps/s of every run.

A partly finished sweep works: the statistics use the finished runs, and the report and
stderr name every run left out and why (not started, no summary yet, interrupted, a file that
cannot be read) and the data left out of the finished ones (lines of ``scalars.jsonl`` cut
short, NaN evaluations, a missing final return). Runs are grouped by env and method (and agent,
when the sweep has several).

Exit code 2, with one line on stderr and nothing written: a missing sweep folder, an unreadable
``sweep.json``, an ``--out`` folder that cannot be written. Exit code 2 after the report is
written: a run's ``config.json``, ``summary.json`` or ``scalars.jsonl`` could not be read (the
run is left out; the line says how to repair it).
"""

from __future__ import annotations

import bisect
import datetime
import json
import math
import sys
import tempfile
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tyro

METRICS = {
    "dormant_ratio": "dormant ratio (fraction of units)",
    "effective_rank": "effective rank (features)",
    "dfi": "DfI (deviation from isometry)",
    "weight_norm": "weight norm (L2, all layers)",
}


class ReportError(Exception):
    """Bad input to the report: one line on stderr, exit code 2."""


@dataclass
class ReportArgs:
    """Write report.md and figures for a sweep folder (runs/<sweep_name>)."""

    sweep_dir: tyro.conf.Positional[str]
    """the sweep folder: runs/<sweep_name>"""
    baseline: str = "none"
    """the method the others are compared with (probability of improvement)"""
    reps: int = 50_000
    """bootstrap resamples of the final-return CIs (rliable's default)"""
    profile_reps: int = 2_000
    """bootstrap resamples of the curves, performance profiles and probabilities of
    improvement (rliable's default for profiles)"""
    seed: int = 0
    """seed of numpy's generator before each bootstrap (the report is reproducible)"""
    out: str | None = None
    """folder for report.md and the figures (default: the sweep folder)"""


# --- reading runs ---------------------------------------------------------------------------


class UnreadableFile(Exception):
    """A file of the sweep that is not what train.py or sweep.py writes: why, in one line."""


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
            self._scalars = read_scalars(self.dir / "scalars.jsonl")
        return self._scalars


def is_finished(summary: dict | None) -> bool:
    """Whether a run with this summary finished (a summary without a status predates statuses)."""
    return summary is not None and summary.get("status", "finished") == "finished"


class Scalars(dict):
    """``{key: (steps, values)}`` of a ``scalars.jsonl``, and the numbers of its lines that
    are not rows (``unreadable_lines``), which were left out."""

    def __init__(self, columns: dict[str, tuple[np.ndarray, np.ndarray]], unreadable_lines):
        super().__init__(columns)
        self.unreadable_lines: list[int] = list(unreadable_lines)


def read_scalars(path: Path) -> Scalars:
    """``{key: (steps, values)}`` of a ``scalars.jsonl`` (``null`` is NaN; no file, no rows).

    A resumed run logs again from its checkpoint's step, so a row whose step is below the
    previous row's starts a new attempt: it replaces the earlier rows from that step on. A line
    that is not a row (cut short by a killed process) is left out and its number kept. A file
    that cannot be read at all raises :class:`UnreadableFile`.
    """
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        lines = []
    except OSError as err:
        raise UnreadableFile(f"{path.name} cannot be read ({err.strerror})") from None
    rows: list[dict] = []
    unreadable = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row = scalars_row(line)
        if row is None:
            unreadable.append(number)
            continue
        if rows and row["step"] < rows[-1]["step"]:
            rows = [r for r in rows if r["step"] < row["step"]]
        rows.append(row)
    columns: dict[str, tuple[list, list]] = {}
    for row in rows:
        for key, value in row.items():
            if key == "step":
                continue
            steps, values = columns.setdefault(key, ([], []))
            steps.append(int(row["step"]))
            values.append(math.nan if value is None else float(value))
    return Scalars(
        {k: (np.asarray(s, dtype=np.int64), np.asarray(v)) for k, (s, v) in columns.items()},
        unreadable,
    )


def scalars_row(line: bytes) -> dict | None:
    """A line of ``scalars.jsonl`` as a row (a numeric ``step``, numbers or nulls), or None."""
    try:
        row = json.loads(line)
    except ValueError:  # invalid JSON or UTF-8
        return None
    if not isinstance(row, dict) or not is_a(row.get("step"), float):
        return None
    if not all(value is None or is_a(value, float) for value in row.values()):
        return None
    return row


KINDS = {str: "a string", int: "an integer", float: "a number"}


def is_a(value, kind: type) -> bool:
    """Whether ``value`` is a JSON value of ``kind`` (an integer is a number, a bool is none)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) if kind is float else isinstance(value, kind)


def read_json(path: Path) -> dict | None:
    """A JSON object file, or None when absent; :class:`UnreadableFile` says what is wrong with
    one that is not a readable JSON object."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise UnreadableFile(f"{path.name} is not text (binary data)") from None
    except OSError as err:
        raise UnreadableFile(f"{path.name} cannot be read ({err.strerror})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UnreadableFile(
            f"{path.name} is not valid JSON ({err.msg}: line {err.lineno} column {err.colno})"
        ) from None
    if not isinstance(value, dict):
        raise UnreadableFile(f"{path.name} holds a JSON {type(value).__name__}, not an object")
    return value


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
        config = read_json(run_dir / "config.json") or {}
        check_fields(config, CONFIG_FIELDS, "config.json", required=True)
    resume = f"python train.py --agent {config['agent']} --resume {run_dir}"
    # train.py --resume writes the summary again (a finished run: its final evaluation)
    with advising(f"delete it and resume the run ({resume})"):
        summary = read_json(run_dir / "summary.json")
        if summary is not None:
            check_fields(summary, SUMMARY_FIELDS, "summary.json", required=False)
    with advising(RESTORE):
        scalars = read_scalars(run_dir / "scalars.jsonl") if is_finished(summary) else None
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


# --- statistics (rliable) -------------------------------------------------------------------


def seeded_estimates(score_dict: dict, func, reps: int, seed: int):
    """rliable's ``get_interval_estimates`` (95% percentile stratified bootstrap) with numpy's
    global generator, from which rliable draws its resamples, seeded with ``seed`` (its state
    is restored after). Returns ``(point_estimates, interval_estimates)``."""
    from rliable import library as rly

    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        return rly.get_interval_estimates(score_dict, func, reps=reps)
    finally:
        np.random.set_state(saved)


def iqm_and_mean(scores: np.ndarray) -> np.ndarray:
    """``[IQM, mean]`` of a ``(runs, tasks)`` score matrix (rliable's aggregates)."""
    from rliable import metrics

    return np.array([metrics.aggregate_iqm(scores), metrics.aggregate_mean(scores)])


def final_return_stats(
    scores: dict[str, np.ndarray], baseline: str, reps: int, profile_reps: int, seed: int
) -> dict[str, dict]:
    """Per method, from the final returns of its runs (1-D arrays): ``n``, ``scores``,
    ``mean``/``mean_ci``, ``median``, ``iqm``/``iqm_ci`` and, against ``baseline``,
    ``poi``/``poi_ci`` (probability of improvement). Each rliable call is seeded with ``seed``."""
    from rliable import metrics

    stats = {}
    for method, values in scores.items():
        entry: dict = {"n": int(values.size), "scores": values.tolist()}
        if values.size:
            matrix = values.reshape(-1, 1)
            point, interval = seeded_estimates({method: matrix}, iqm_and_mean, reps, seed)
            entry.update(
                iqm=float(point[method][0]),
                iqm_ci=[float(interval[method][0, 0]), float(interval[method][1, 0])],
                mean=float(point[method][1]),
                mean_ci=[float(interval[method][0, 1]), float(interval[method][1, 1])],
                median=float(np.median(values)),
            )
            base = scores.get(baseline)
            if method != baseline and base is not None and base.size:
                pair = [matrix, base.reshape(-1, 1)]
                key = f"{method} > {baseline}"
                point, interval = seeded_estimates(
                    {key: pair}, metrics.probability_of_improvement, profile_reps, seed
                )
                low, high = np.ravel(interval[key])
                entry["poi"] = float(np.ravel(point[key])[0])
                entry["poi_ci"] = [float(low), float(high)]
        stats[method] = entry
    return stats


def performance_profiles(scores: dict[str, np.ndarray], reps: int, seed: int):
    """rliable's performance profiles (fraction of runs above each threshold τ, with 95% CIs)
    over thresholds spanning the scores: ``(taus, profiles, cis)``."""
    from rliable import library as rly

    present = {m: v.reshape(-1, 1) for m, v in scores.items() if v.size}
    values = np.concatenate([v.ravel() for v in present.values()])
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-9:
        low, high = low - 1.0, high + 1.0
    taus = np.linspace(low, high, 101)
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        profiles, cis = rly.create_performance_profile(present, taus, reps=reps)
    finally:
        np.random.set_state(saved)
    return taus, profiles, cis


def eval_matrix(runs: list[RunData], key: str = "eval/episodic_return"):
    """``(steps, matrix)``: the steps every run logged ``key`` at, and the ``(runs, 1, steps)``
    values there (the last value where a step repeats)."""
    series = []
    for run in runs:
        steps, values = run.scalars.get(key, (np.zeros(0, np.int64), np.zeros(0)))
        series.append(dict(zip(steps.tolist(), values.tolist(), strict=True)))
    common = sorted(set.intersection(*(set(s) for s in series))) if series else []
    matrix = np.array([[[s[step] for step in common]] for s in series]).reshape(
        len(series), 1, len(common)
    )
    return np.asarray(common), matrix


def iqm_curve(runs: list[RunData], reps: int, seed: int):
    """Evaluation return against steps of a group: ``(steps, iqm, low, high)`` with rliable's
    IQM and 95% stratified-bootstrap CI at each step, over the runs whose evaluation there is
    finite: a NaN or null evaluation leaves out that run's point (see
    :func:`nonfinite_evaluations`), a step where no run has one is left out."""
    from rliable import metrics

    steps, matrix = eval_matrix(runs)
    values = matrix[:, 0, :]
    finite = np.isfinite(values)
    kept = np.flatnonzero(finite.any(axis=0))
    curve = np.zeros((3, kept.size))
    for i, t in enumerate(kept):
        scores = values[finite[:, t], t].reshape(-1, 1)
        point, interval = seeded_estimates(
            {"iqm": scores}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps, seed
        )
        curve[:, i] = point["iqm"][0], interval["iqm"][0, 0], interval["iqm"][1, 0]
    return steps[kept], curve[0], curve[1], curve[2]


def nonfinite_evaluations(runs: list[RunData], key: str = "eval/episodic_return") -> dict:
    """``{run name: steps}`` of the evaluations without a finite return (NaN or null), which
    the learning curves leave out."""
    found = {}
    for run in runs:
        steps, values = run.scalars.get(key, (np.zeros(0, np.int64), np.zeros(0)))
        if not np.isfinite(values).all():
            found[run.name] = steps[~np.isfinite(values)].tolist()
    return found


# --- task periods and interventions ---------------------------------------------------------


def switch_steps(run: RunData) -> list[int]:
    """Steps at which the run's task changed (``charts/task_period`` rows, else
    ``charts/task_id`` rows: one per switch)."""
    for key in ("charts/task_period", "charts/task_id"):
        if key in run.scalars:
            return sorted(set(run.scalars[key][0].tolist()))
    return []


def task_periods(run: RunData) -> list[dict]:
    """Mean training episode return of each task period: ``{period, start, task, mean,
    episodes}`` (period 1 is the first). Episodes come from ``charts/episodic_return/<task>``;
    an episode that ends at a switch's step belongs to the period before it."""
    switches = switch_steps(run)
    if not switches:
        return []
    starts = [0, *switches]
    returns: list[list[float]] = [[] for _ in starts]
    tasks: list[Counter] = [Counter() for _ in starts]
    prefix = "charts/episodic_return/"
    for key, (steps, values) in run.scalars.items():
        if not key.startswith(prefix):
            continue
        for step, value in zip(steps.tolist(), values.tolist(), strict=True):
            period = bisect.bisect_left(switches, step)
            if math.isfinite(value):
                returns[period].append(value)
            tasks[period][key[len(prefix) :]] += 1
    return [
        {
            "period": i + 1,
            "start": int(starts[i]),
            "task": tasks[i].most_common(1)[0][0] if tasks[i] else "?",
            "mean": float(np.mean(returns[i])) if returns[i] else math.nan,
            "episodes": len(returns[i]),
        }
        for i in range(len(starts))
    ]


def period_table(runs: list[RunData]) -> dict:
    """A group's periods: ``means`` (mean over runs of each period's mean return), ``low``/
    ``high`` (range over runs), ``tasks`` (task of each period, from the run with the most),
    ``perturbation`` (see :class:`RunData`), ``labels`` (:func:`period_labels`) and
    ``visits``: per task, the mean over runs of the first visit and of the later visits."""
    per_run = [task_periods(run) for run in runs]
    per_run = [p for p in per_run if p]
    if not per_run:
        return {}
    count = max(len(p) for p in per_run)
    grid = np.full((len(per_run), count), np.nan)
    for i, periods in enumerate(per_run):
        for p in periods:
            grid[i, p["period"] - 1] = p["mean"]
    tasks = [p["task"] for p in max(per_run, key=len)]
    with np.errstate(all="ignore"), _quiet_nan_warnings():
        means = np.nanmean(grid, axis=0)
        low, high = np.nanmin(grid, axis=0), np.nanmax(grid, axis=0)
    visits = {}
    for task in dict.fromkeys(tasks):
        first, later = [], []
        for periods in per_run:
            values = [p["mean"] for p in periods if p["task"] == task and math.isfinite(p["mean"])]
            if values:
                first.append(values[0])
            if len(values) > 1:
                later.append(float(np.mean(values[1:])))
        visits[task] = {
            "first": float(np.mean(first)) if first else math.nan,
            "later": float(np.mean(later)) if later else math.nan,
            "later_visits": max(sum(p["task"] == task for p in ps) - 1 for ps in per_run),
        }
    perturbation = runs[0].perturbation
    return {
        "means": means.tolist(),
        "low": low.tolist(),
        "high": high.tolist(),
        "tasks": tasks,
        "perturbation": perturbation,
        "labels": period_labels(tasks, perturbation),
        "visits": visits,
    }


def period_labels(tasks: list[str], perturbation: str | None) -> list[str]:
    """What each period trains on: its task; in a perturbation stream, where every period after
    the first (which is unperturbed) draws a new perturbation, ``<perturbation> k`` for period
    ``k`` (``permutation 2``; ``<task>, permutation 2`` when the stream cycles through several
    tasks)."""
    if perturbation is None:
        return list(tasks)
    several = len(set(tasks)) > 1
    return [tasks[0]] + [
        f"{task}, {perturbation} {k}" if several else f"{perturbation} {k}"
        for k, task in enumerate(tasks[1:], start=2)
    ]


class _quiet_nan_warnings:
    """Silence numpy's 'mean of empty slice' warnings (a period without episodes is NaN)."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc):
        return self._ctx.__exit__(*exc)


def networks(run: RunData) -> list[str]:
    """Networks whose plasticity metrics the run logged (``q``; ``actor``, ``critic``)."""
    return sorted(
        key.split("/")[0]
        for key in run.scalars
        if key.count("/") == 1 and key.endswith("/dormant_ratio")
    )


def intervention_steps(run: RunData, net: str) -> list[int]:
    """Steps of the interventions (FIRE, reset, …) on ``net``: where ``interventions/<net>``
    (a cumulative count) rises, else the steps of ``<net>/<method>/total_*`` report rows."""
    key = f"interventions/{net}"
    if key in run.scalars:
        steps, counts = run.scalars[key]
        previous, out = 0.0, []
        for step, count in zip(steps.tolist(), counts.tolist(), strict=True):
            if math.isfinite(count) and count > previous:
                out.append(step)
                previous = count
        return out
    found = set()
    for name, (steps, _) in run.scalars.items():
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == net and parts[2].startswith("total_"):
            found.update(steps.tolist())
    return sorted(found)


def metric_curve(runs: list[RunData], key: str):
    """Mean over runs of a metric at the steps all runs logged it, with its range."""
    steps, matrix = eval_matrix(runs, key)
    if steps.size == 0:
        return steps, np.zeros(0), np.zeros(0), np.zeros(0)
    values = matrix[:, 0, :]
    with np.errstate(all="ignore"), _quiet_nan_warnings():
        return steps, np.nanmean(values, 0), np.nanmin(values, 0), np.nanmax(values, 0)


# --- figures --------------------------------------------------------------------------------


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "font.size": 10,
            "axes.titlesize": 11,
            "axes.labelsize": 10,
            "legend.fontsize": 9,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "figure.dpi": 110,
        }
    )
    return plt


def colors(methods: list[str]) -> dict[str, tuple]:
    """A fixed colour per method (tab10 in grid order)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return {method: cmap(i % 10) for i, method in enumerate(methods)}


def subplots(plt, count: int, width: float = 4.6, height: float = 3.3):
    """A row of ``count`` axes (wrapped at three)."""
    cols = min(count, 3)
    rows = math.ceil(count / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def steps_axis(ax) -> None:
    """Label an env-steps x axis in thousands (k) or millions (M)."""
    from matplotlib.ticker import FuncFormatter

    def fmt(x, _):
        if abs(x) >= 1e6:
            return f"{x / 1e6:g}M"
        if abs(x) >= 1e3:
            return f"{x / 1e3:g}k"
        return f"{x:g}"

    ax.xaxis.set_major_formatter(FuncFormatter(fmt))
    ax.set_xlabel("env steps")


def save(fig, path: Path) -> str:
    """Write a figure and close it; returns its file name."""
    if fig.get_layout_engine() is None:  # figures with sub-figures lay themselves out
        fig.tight_layout()
    import matplotlib.pyplot as plt

    try:
        with writing(path):
            fig.savefig(path, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path.name


def draw_band(ax, steps, center, low, high, color, label: str, lw: float, alpha: float) -> None:
    """A line with its band shaded; a lone point (a metric logged once) as a marker with its
    band as an error bar, since a line and a band of one point draw nothing."""
    if len(steps) == 1:
        below, above = center - low, high - center
        ax.errorbar(steps, center, yerr=[below, above], fmt="o", color=color, label=label)
        return
    ax.plot(steps, center, color=color, label=label, lw=lw)
    ax.fill_between(steps, low, high, color=color, alpha=alpha)


def plot_final_returns(stats: dict, methods: list[str], out: Path) -> str:
    """IQM of the final return with its 95% CI per method, each run as a dot, one panel per
    env."""
    plt = pyplot()
    palette = colors(methods)
    fig, axes = subplots(plt, len(stats), height=1.3 + 0.5 * len(methods))
    rng = np.random.default_rng(0)
    for ax, (env, per_method) in zip(axes, stats.items(), strict=True):
        for row, method in enumerate(methods):
            entry = per_method.get(method, {})
            if not entry.get("n"):
                continue
            y = len(methods) - 1 - row
            low, high = entry["iqm_ci"]
            ax.hlines(y, low, high, color=palette[method], lw=6, alpha=0.35)
            ax.plot(entry["iqm"], y, "o", color=palette[method], ms=7)
            jitter = rng.uniform(-0.15, 0.15, len(entry["scores"]))
            ax.plot(entry["scores"], y + jitter, ".", color="k", ms=4, alpha=0.6)
        ax.set_yticks(range(len(methods)), list(reversed(methods)))
        ax.set_xlabel("final evaluation return")
        ax.set_title(f"{env}: IQM and 95% CI")
        ax.grid(axis="y", visible=False)
    return save(fig, out / "final_return.png")


def plot_profiles(profiles: dict, methods: list[str], out: Path) -> str:
    """Performance profiles (fraction of runs whose final return exceeds τ), one panel per env."""
    plt = pyplot()
    palette = colors(methods)
    fig, axes = subplots(plt, len(profiles))
    for ax, (env, (taus, curves, cis)) in zip(axes, profiles.items(), strict=True):
        for method in methods:
            if method not in curves:
                continue
            ax.plot(taus, curves[method], color=palette[method], label=method, lw=2)
            ax.fill_between(taus, cis[method][0], cis[method][1], color=palette[method], alpha=0.2)
        ax.set_xlabel("final evaluation return τ")
        ax.set_ylabel("fraction of runs with return > τ")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{env}: performance profile")
        ax.legend(frameon=False)
    return save(fig, out / "performance_profiles.png")


def plot_curves(curves: dict, switches: dict, methods: list[str], out: Path) -> str:
    """Evaluation return against env steps: IQM and 95% CI band per method, one panel per env;
    dotted lines at the task switches."""
    plt = pyplot()
    palette = colors(methods)
    fig, axes = subplots(plt, len(curves))
    for ax, (env, per_method) in zip(axes, curves.items(), strict=True):
        for step in switches.get(env, []):
            ax.axvline(step, color="0.6", ls=":", lw=1)
        for method in methods:
            if method not in per_method or per_method[method][0].size == 0:
                continue
            draw_band(ax, *per_method[method], palette[method], method, lw=2, alpha=0.2)
        steps_axis(ax)
        ax.set_ylabel("evaluation return (IQM, 95% CI)")
        ax.set_title(env + (" (dotted: task switches)" if switches.get(env) else ""))
        ax.legend(frameon=False)
    return save(fig, out / "learning_curves.png")


def plot_periods(tables: dict, methods: list[str], out: Path) -> str:
    """Mean training return per task period (mean over runs, range shaded), one panel per env."""
    plt = pyplot()
    palette = colors(methods)
    fig, axes = subplots(plt, len(tables))
    for ax, (env, per_method) in zip(axes, tables.items(), strict=True):
        for method in methods:
            table = per_method.get(method)
            if not table:
                continue
            x = np.arange(1, len(table["means"]) + 1)
            ax.plot(x, table["means"], "o-", color=palette[method], label=method, lw=2)
            ax.fill_between(x, table["low"], table["high"], color=palette[method], alpha=0.15)
        ax.set_xlabel(period_axis(per_method))
        ax.set_ylabel("mean training episode return")
        ax.set_title(f"{env}: return per task period")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(frameon=False)
    return save(fig, out / "task_periods.png")


def period_axis(per_method: dict) -> str:
    """The x label of an env's periods: task visits, or new perturbations in a stream."""
    perturbation = next(t["perturbation"] for t in per_method.values() if t)
    if perturbation is None:
        return "task period (k-th task visit)"
    return f"period (a new {perturbation} in each after the first)"


MOST_MARKED = 20
"""Methods with more intervention steps than this get no vertical lines in metric figures."""


def plot_metrics(net: str, per_env: dict, methods: list[str], out: Path) -> str:
    """Plasticity metrics of ``net`` against env steps (rows: envs; columns: metrics); mean over
    runs with the range shaded; interventions as thin vertical lines in the method's colour."""
    plt = pyplot()
    palette = colors(methods)
    envs = list(per_env)
    fig = plt.figure(figsize=(4.2 * len(METRICS), 3.4 * len(envs)), layout="constrained")
    # one sub-figure per env, titled once: env names are too long for every axis
    rows = np.atleast_1d(fig.subfigures(len(envs), 1))
    for row, env in zip(rows, envs, strict=True):
        row.suptitle(f"{env}: {net} network")
        axes = row.subplots(1, len(METRICS), squeeze=False)[0]
        for col, (metric, title) in enumerate(METRICS.items()):
            ax = axes[col]
            positive = True
            for method in methods:
                entry = per_env[env].get(method)
                if not entry:
                    continue
                # periodic recyclers (ReDo every 1000 updates) would cover the axes in lines
                marked = entry["interventions"]
                for step in marked if len(marked) <= MOST_MARKED else []:
                    ax.axvline(step, color=palette[method], lw=0.8, alpha=0.35, ls="--")
                steps, mean, low, high = entry["curves"][metric]
                if steps.size == 0:
                    continue
                positive &= bool(np.all(low > 0))
                draw_band(ax, steps, mean, low, high, palette[method], method, lw=1.8, alpha=0.15)
            if metric == "dfi" and positive and ax.has_data():
                ax.set_yscale("log")
            steps_axis(ax)
            ax.set_ylabel(title)
            if col == 0:
                ax.legend(frameon=False)
    return save(fig, out / f"metrics_{net}.png")


# --- the report -----------------------------------------------------------------------------


def fmt(value, digits: int = 1) -> str:
    """A number for a table (``—`` for none/NaN)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}f}"


def fmt_ci(value, ci, digits: int = 1) -> str:
    """``value [low, high]``."""
    if value is None:
        return "—"
    return f"{fmt(value, digits)} [{fmt(ci[0], digits)}, {fmt(ci[1], digits)}]"


def fmt_duration(seconds) -> str:
    """``h:mm:ss`` (``—`` for unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def compute_rows(finished: list[RunData], record: dict | None) -> list[dict]:
    """Wall time and steps/s of each finished run: the summary's ``wall_time_s`` (else the
    sweep's measured time over all attempts) and ``train_sps`` (else ``sps``)."""
    entries = (record or {}).get("runs", {})
    rows = []
    for run in finished:
        summary = run.summary
        wall = summary.get("wall_time_s", entries.get(run.name, {}).get("sweep_wall_s"))
        rows.append(
            {
                "run": run.name,
                "env": run.env,
                "method": label(run, finished),
                "seed": run.seed,
                "steps": summary.get("total_timesteps"),
                "wall_time_s": wall,
                "sps": summary.get("train_sps", summary.get("sps")),
            }
        )
    return rows


def build(args: ReportArgs) -> dict:
    """Read the sweep, compute every statistic and draw the figures; returns the report's data
    (what ``report.json`` holds) with the figure names."""
    sweep_dir = Path(args.sweep_dir)
    record, runs, missing = load_sweep(sweep_dir)
    out = writable_folder(Path(args.out) if args.out else sweep_dir)
    finished = [run for run in runs if run.finished]
    methods = method_order(record, finished or runs, args.baseline)
    envs = list(dict.fromkeys(run.env for run in finished))
    groups = {
        env: {m: [r for r in finished if r.env == env and label(r, finished) == m] for m in methods}
        for env in envs
    }
    report: dict = {
        "sweep": sweep_dir.name,
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": ((record or {}).get("commands") or [{}])[-1].get("command"),
        # the grid's runs and any other run folder: each is readable or skipped
        "runs_expected": len({*(r.name for r in runs), *(e["name"] for e in missing)}),
        "runs_finished": len(finished),
        "missing": missing,
        "unreadable_scalars_lines": {
            run.name: run.scalars.unreadable_lines
            for run in finished
            if run.scalars.unreadable_lines
        },
        "methods": methods,
        "baseline": args.baseline,
        "reps": args.reps,
        "profile_reps": args.profile_reps,
        "seed": args.seed,
        "final_return": {},
        "no_final_return": [],
        "nonfinite_evaluations": {},
        "figures": {},
    }
    if not finished:
        return report

    scores = {}
    for env in envs:
        scores[env] = {}
        for method in methods:
            values = np.array([r.final_return for r in groups[env][method]], dtype=float)
            bad = [r.name for r in groups[env][method] if not math.isfinite(r.final_return)]
            report["no_final_return"].extend(bad)
            scores[env][method] = values[np.isfinite(values)]
        report["final_return"][env] = final_return_stats(
            scores[env], args.baseline, args.reps, args.profile_reps, args.seed
        )
    figures = report["figures"]
    figures["final_return"] = plot_final_returns(report["final_return"], methods, out)
    profiles = {
        env: performance_profiles(scores[env], args.profile_reps, args.seed)
        for env in envs
        if any(v.size for v in scores[env].values())
    }
    if profiles:
        figures["profiles"] = plot_profiles(profiles, methods, out)

    curves, switches = {}, {}
    for env in envs:
        curves[env] = {
            m: iqm_curve(groups[env][m], args.profile_reps, args.seed)
            for m in methods
            if groups[env][m]
        }
        per_run = [switch_steps(r) for m in methods for r in groups[env][m]]
        per_run = [s for s in per_run if s]
        if per_run:  # switches happen at episode ends: the median run's k-th switch
            count = min(len(s) for s in per_run)
            switches[env] = [int(np.median([s[k] for s in per_run])) for k in range(count)]
    report["curves"] = {
        env: {
            m: {"steps": c[0].tolist(), "iqm": c[1].tolist(), "ci": [c[2].tolist(), c[3].tolist()]}
            for m, c in per.items()
        }
        for env, per in curves.items()
    }
    report["nonfinite_evaluations"] = nonfinite_evaluations(finished)
    if any(c[0].size for per in curves.values() for c in per.values()):
        figures["curves"] = plot_curves(curves, switches, methods, out)

    periods = {
        env: {m: period_table(groups[env][m]) for m in methods if groups[env][m]} for env in envs
    }
    periods = {env: t for env, t in periods.items() if any(t.values())}
    report["task_periods"] = periods
    if periods:
        figures["task_periods"] = plot_periods(periods, methods, out)

    nets = list(dict.fromkeys(n for r in finished for n in networks(r)))
    for net in nets:
        per_env = {}
        for env in envs:
            per_env[env] = {}
            for method in methods:
                group = [r for r in groups[env][method] if net in networks(r)]
                if group:
                    per_env[env][method] = {
                        "curves": {k: metric_curve(group, f"{net}/{k}") for k in METRICS},
                        "interventions": sorted(
                            {s for r in group for s in intervention_steps(r, net)}
                        ),
                    }
        figures[f"metrics_{net}"] = plot_metrics(net, per_env, methods, out)
    report["compute"] = compute_rows(finished, record)
    return report


def writable_folder(out: Path) -> Path:
    """``out``, made if needed, after checking that a file can be written in it (before any
    statistic is computed)."""
    with writing(out):
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    return out


@contextmanager
def writing(path: Path):
    """Report a failed write of ``path`` (a read-only folder, a file in the way, a full disk)
    as one line."""
    try:
        yield
    except OSError as err:
        raise ReportError(
            f"cannot write {path} ({err.strerror}): pass --out with a folder you can write to "
            "and that has free space"
        ) from None


def markdown(report: dict) -> str:
    """``report.md`` from the report's data."""
    lines = [f"# Sweep report: {report['sweep']}", ""]
    lines.append(
        f"{report['runs_finished']} of {report['runs_expected']} runs finished "
        f"(report written {report['created']})."
    )
    if report["command"]:
        lines += ["", f"Sweep command: `{report['command']}`"]
    lines += [
        "",
        "Statistics follow Agarwal et al. 2021, *Deep RL at the edge of the statistical "
        "precipice* (arXiv 2108.13264), computed with `rliable`: IQM is the interquartile mean "
        "of the runs' final evaluation returns (the mean of the middle 50%); brackets are 95% "
        f"percentile stratified-bootstrap confidence intervals ({report['reps']} resamples; "
        f"{report['profile_reps']} for curves, profiles and probabilities); "
        f"P(X > {report['baseline']}) is the probability that a run of X ends with a higher "
        f"return than a run of `{report['baseline']}`. numpy seeded with {report['seed']}.",
    ]
    if report["missing"]:
        lines += [
            "",
            "## Missing runs",
            "",
            "| run | state | why | error (sweep.json) |",
            "|---|---|---|---|",
        ]
        for entry in report["missing"]:
            cells = [entry["name"], entry["state"], entry["reason"], entry.get("error") or ""]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines += ["", "The statistics below use the finished runs only."]
    if not report["runs_finished"]:
        lines += ["", "No run has finished yet: nothing to aggregate."]
        return "\n".join(lines) + "\n"
    notes = left_out(report)
    if notes:
        lines += ["", "Left out of the statistics:", ""] + [f"- {note}" for note in notes]

    figures = report["figures"]
    lines += ["", "## Final evaluation return"]
    baseline = report["baseline"]
    for env, per_method in report["final_return"].items():
        lines += [
            "",
            f"### {env}",
            "",
            "| method | runs | mean [95% CI] | median | IQM [95% CI] | "
            f"P(X > {baseline}) [95% CI] |",
            "|---|---|---|---|---|---|",
        ]
        for method in report["methods"]:
            e = per_method.get(method, {"n": 0})
            if not e["n"]:
                lines.append(f"| {method} | 0 | — | — | — | — |")
                continue
            poi = fmt_ci(e["poi"], e["poi_ci"], 2) if "poi" in e else "—"
            lines.append(
                f"| {method} | {e['n']} | {fmt_ci(e['mean'], e['mean_ci'])} | "
                f"{fmt(e['median'])} | {fmt_ci(e['iqm'], e['iqm_ci'])} | {poi} |"
            )
    lines += ["", f"![final return: IQM and 95% CI per method]({figures['final_return']})"]
    if "profiles" in figures:
        lines += [
            "",
            "Performance profiles: the fraction of runs whose final return exceeds τ, with 95% "
            "CI bands; a curve above another is better at every threshold.",
            "",
            f"![performance profiles]({figures['profiles']})",
        ]
    if "curves" in figures:
        lines += [
            "",
            "## Learning curves",
            "",
            "Evaluation return (deterministic policy) against env steps: IQM over runs with its "
            "95% stratified-bootstrap CI.",
            "",
            f"![learning curves]({figures['curves']})",
        ]
        dropped = sum(len(steps) for steps in report["nonfinite_evaluations"].values())
        if dropped:
            lines += [
                "",
                f"{dropped} evaluation{'s' if dropped > 1 else ''} without a finite return (NaN "
                "or null) left out: each IQM uses the runs with a finite return at that step.",
            ]
    if report.get("task_periods"):
        lines += [
            "",
            "## Task periods",
            "",
            "Mean return of the training episodes in each task period (mean over runs).",
        ]
        for env, per_method in report["task_periods"].items():
            count = max(len(t["means"]) for t in per_method.values() if t)
            longest = next(t for t in per_method.values() if t and len(t["means"]) == count)
            header = " | ".join(f"{k + 1}: {label}" for k, label in enumerate(longest["labels"]))
            lines += ["", f"### {env}", "", f"| method | {header} |", "|---" * (count + 1) + "|"]
            for method in report["methods"]:
                t = per_method.get(method)
                if t:
                    cells = [fmt(v) for v in t["means"]] + ["—"] * (count - len(t["means"]))
                    lines.append(f"| {method} | " + " | ".join(cells) + " |")
            perturbation = longest["perturbation"]
            if perturbation is None:
                question = "Does the k-th visit of a task learn as fast as the first?"
                first, later = "first visit", "later visits (mean)"
            else:
                question = (
                    f"Every period after the first draws a new {perturbation}: a new task, not a "
                    "later visit of one seen before. Does each learn as fast as the first?"
                )
                first, later = "first period", f"later periods, new {perturbation}s (mean)"
            lines += [
                "",
                question,
                "",
                f"| method | task | {first} | {later} | later − first |",
                "|---|---|---|---|---|",
            ]
            for method in report["methods"]:
                t = per_method.get(method)
                for task, v in (t or {}).get("visits", {}).items():
                    change = v["later"] - v["first"]
                    lines.append(
                        f"| {method} | {task} | {fmt(v['first'])} | {fmt(v['later'])} "
                        f"({v['later_visits']}) | {fmt(change)} |"
                    )
        lines += ["", f"![return per task period]({figures['task_periods']})"]
    metric_figures = [name for key, name in figures.items() if key.startswith("metrics_")]
    if metric_figures:
        lines += [
            "",
            "## Plasticity metrics",
            "",
            "Per network, against env steps: mean over runs, the range over runs shaded (a bar "
            "on a metric logged once); dashed vertical lines mark each method's interventions "
            f"(FIRE, reset, …), for methods with at most {MOST_MARKED} intervention steps.",
        ]
        for name in metric_figures:
            lines += ["", f"![plasticity metrics]({name})"]
    rows = report["compute"]
    lines += [
        "",
        "## Compute",
        "",
        "| run | env | method | seed | env steps | wall time | steps/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['run']} | {r['env']} | {r['method']} | {r['seed']} | {r['steps']} | "
            f"{fmt_duration(r['wall_time_s'])} | {fmt(r['sps'], 0)} |"
        )
    walls = [r["wall_time_s"] for r in rows if r["wall_time_s"] is not None]
    if walls:
        lines += [
            "",
            f"Total wall time of the runs: {fmt_duration(sum(walls))} ({len(walls)} runs).",
        ]
    return "\n".join(lines) + "\n"


def jsonable(value):
    """``value`` with NaN as None, numpy arrays and numbers as lists and floats."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def skipped_line(entry: dict) -> str:
    """A skipped run (:func:`skipped_run`) as one line."""
    error = f"; sweep.json: {entry['error']}" if entry.get("error") else ""
    return f"skipped {entry['name']} ({entry['state']}): {entry['reason']}{error}"


def left_out(report: dict) -> list[str]:
    """One line for each finished run whose data the statistics leave out in part: lines of
    scalars.jsonl that are not rows, a missing final return, NaN evaluations."""
    notes = [
        f"{name}: scalars.jsonl line{'s' if len(numbers) > 1 else ''} "
        f"{', '.join(map(str, numbers))} not a row (cut short by a kill?)"
        for name, numbers in report["unreadable_scalars_lines"].items()
    ]
    notes += [
        f"{name}: no final evaluation return, left out of the final returns"
        for name in report["no_final_return"]
    ]
    notes += [
        f"{name}: evaluation at step{'s' if len(steps) > 1 else ''} "
        f"{', '.join(map(str, steps))} NaN or null, left out of the learning curves"
        for name, steps in report["nonfinite_evaluations"].items()
    ]
    return notes


def main(argv: list[str]) -> dict:
    """The command line: build the report, write report.md and report.json; returns the data."""
    args = tyro.cli(ReportArgs, args=argv, prog="report.py", description=__doc__.split("\n\n")[0])
    for name in ("reps", "profile_reps"):
        if getattr(args, name) < 1:
            raise ReportError(f"--{name.replace('_', '-')} must be a positive integer")
    report = build(args)
    out = Path(args.out) if args.out else Path(args.sweep_dir)
    for path, text in (
        (out / "report.md", markdown(report)),
        (out / "report.json", json.dumps(jsonable(report), indent=2)),
    ):
        with writing(path):
            path.write_text(text)
    for line in [*map(skipped_line, report["missing"]), *left_out(report)]:
        print(line, file=sys.stderr)
    print(
        f"{out / 'report.md'}: {report['runs_finished']} of {report['runs_expected']} runs "
        f"finished, {len(report['figures'])} figures"
    )
    return report


def cli(argv: list[str]) -> int:
    """Run :func:`main`; returns the exit code: 2 after one line on stderr for bad input, and 2
    when a run's files could not be read (the report is written without it), else 0."""
    try:
        report = main(argv)
    except ReportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except ImportError as err:
        print(f'error: {err.name} is missing: pip install -e ".[sweep]"', file=sys.stderr)
        return 2
    return 2 if any(entry["state"] == "unreadable" for entry in report["missing"]) else 0


if __name__ == "__main__":
    sys.exit(cli(sys.argv[1:]))
