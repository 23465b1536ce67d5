"""The report's statistics: rliable's interval estimates, performance profiles and IQM curves
(seeded, reproducible), task periods, interventions, metric curves and compute."""

from __future__ import annotations

import bisect
import math
from collections import Counter

import numpy as np

from experiments.report.load import RunData, label

METRICS = {
    "dormant_ratio": "dormant ratio (fraction of units)",
    "effective_rank": "effective rank (features)",
    "dfi": "DfI (deviation from isometry)",
    "weight_norm": "weight norm (L2, all layers)",
}


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
