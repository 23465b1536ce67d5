"""``report.md`` and ``report.json`` from the report's data, and the lines about what was left
out."""

from __future__ import annotations

import math

import numpy as np

from experiments.report.figures import MOST_MARKED


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
