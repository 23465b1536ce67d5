"""``python report.py runs/<sweep_name>``: build the report of a sweep and write it."""

from __future__ import annotations

import datetime
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tyro

import experiments.report
from experiments.report.figures import (
    plot_curves,
    plot_final_returns,
    plot_metrics,
    plot_periods,
    plot_profiles,
    writable_folder,
    writing,
)
from experiments.report.load import ReportError, label, load_sweep, method_order
from experiments.report.markdown import jsonable, left_out, markdown, skipped_line
from experiments.report.stats import (
    METRICS,
    compute_rows,
    final_return_stats,
    intervention_steps,
    iqm_curve,
    metric_curve,
    networks,
    nonfinite_evaluations,
    performance_profiles,
    period_table,
    switch_steps,
)


@dataclass
class ReportArgs:
    """Write report.md and figures for a sweep folder (runs/<sweep_name>)."""

    sweep_dir: tyro.conf.Positional[str]
    """the sweep folder: runs/<sweep_name>"""
    baseline: str | None = None
    """the method the others are compared with (probability of improvement); default ``none``
    when the sweep ran it, else no comparison"""
    reps: int = 50_000
    """bootstrap resamples of the final-return CIs (rliable's default)"""
    profile_reps: int = 2_000
    """bootstrap resamples of the curves, performance profiles and probabilities of
    improvement (rliable's default for profiles)"""
    seed: int = 0
    """seed of numpy's generator before each bootstrap (the report is reproducible)"""
    out: str | None = None
    """folder for report.md and the figures (default: the sweep folder)"""


def build(args: ReportArgs) -> dict:
    """Read the sweep, compute every statistic and draw the figures; returns the report's data
    (what ``report.json`` holds) with the figure names."""
    sweep_dir = Path(args.sweep_dir)
    record, runs, missing = load_sweep(sweep_dir)
    out = writable_folder(Path(args.out) if args.out else sweep_dir)
    finished = [run for run in runs if run.finished]
    baseline = "none" if args.baseline is None else args.baseline
    methods = method_order(record, finished or runs, baseline)
    if args.baseline is not None and finished and args.baseline not in methods:
        raise ReportError(
            f"--baseline {args.baseline}: no finished run of that method in {sweep_dir}; "
            f"name one of {', '.join(methods)}"
        )
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
        "baseline": baseline,
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
            scores[env], baseline, args.reps, args.profile_reps, args.seed
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


def main(argv: list[str]) -> dict:
    """The command line: build the report, write report.md and report.json; returns the data."""
    args = tyro.cli(
        ReportArgs,
        args=argv,
        prog="report.py",
        description=experiments.report.__doc__.split("\n\n")[0],
    )
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
