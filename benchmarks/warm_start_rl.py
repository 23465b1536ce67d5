"""Does an agent warm-started on one task learn a second one as well as a fresh agent?

The RL warm-start protocol of the plasticity-loss evidence (README "Results"): one sweep of
agents trained on task A, then on task B (a two-task ``cycle:A,B`` with one switch, each method
acting at the switch), and one sweep of fresh agents trained on B alone for as long. For each
run, task B's evaluation returns over B's phase give two scores:

- **AUC**: the mean evaluation return over the phase (how fast B is learned);
- **end**: the mean of the phase's last three evaluations (how well it is learned).

Per group (each method of the warm sweep, and the fresh agents): the IQM and mean with 95%
stratified-bootstrap CIs (rliable, as ``report.py``), the difference of means to the fresh
agents with a 95% percentile-bootstrap CI (runs resampled within each group), and the
probability that a warm-started run beats a fresh one (rliable). A difference whose CI excludes
0 is what the evidence asks for. With 5 runs a group a percentile bootstrap can only resample
the values it has and gives narrow intervals, so a second table gives t-intervals: Welch's for
the difference to the fresh agents, and a paired one for each method against the warm-started
``none`` of the same seed (all methods of a seed share task A's phase when they act only at the
switch, so the pairing removes its seed-to-seed spread).

Run: ``python benchmarks/warm_start_rl.py runs/<warm sweep> runs/<fresh sweep>
--out benchmarks/results/<name>`` (writes ``<name>.md``, ``.json``, ``.png``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # report.py, from a checkout
import report  # noqa: E402
from benchmarks._stats import fmt, mean_ci  # noqa: E402

FRESH = "fresh (none)"
METRICS = {
    "dormant_ratio": "dormant ratio",
    "effective_rank": "effective rank",
    "dfi": "DfI",
    "kfac_eps_rank_normalized": "K-FAC ε-rank",
    "weight_norm": "weight norm",
}
"""The network's plasticity metrics tabulated (``<network>/<key>`` in ``scalars.jsonl``)."""


def logged_between(run: report.RunData, key: str, start: int, stop: int):
    """Steps and values of ``key`` logged at a step in ``(start, stop]``."""
    steps, values = run.scalars.get(key, (np.zeros(0, int), np.zeros(0)))
    inside = (steps > start) & (steps <= stop)
    return steps[inside], values[inside]


def phase_curve(run: report.RunData, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation returns at steps in ``(start, start + length]``, with steps from the phase's
    start."""
    steps, values = logged_between(run, "eval/episodic_return", start, start + length)
    return steps - start, values


def scores(curve: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """(AUC, end) of one run's phase curve."""
    _, values = curve
    return float(np.mean(values)), float(np.mean(values[-3:]))


def last_logged(run: report.RunData, key: str, start: int, stop: int) -> float:
    """The last value of ``key`` logged at a step in ``(start, stop]`` (NaN if none)."""
    _, values = logged_between(run, key, start, stop)
    return float(values[-1]) if values.size else float("nan")


def metric_table(groups: dict, network: str, switch: int, length: int) -> dict:
    """Per group and metric: mean and t-interval over runs of the value at the end of task B,
    and for the warm-started groups also at the end of task A (just before the switch)."""
    out: dict = {}
    for group, runs in groups.items():
        b_start = 0 if group == FRESH else switch
        entry = {}
        for key in METRICS:
            name = f"{network}/{key}"
            entry[f"{key}_end_b"] = mean_ci(
                [last_logged(r, name, b_start, b_start + length) for r in runs]
            )
            if group != FRESH:
                entry[f"{key}_end_a"] = mean_ci([last_logged(r, name, 0, switch) for r in runs])
        out[group] = entry
    return out


def bootstrap_difference(a: np.ndarray, b: np.ndarray, reps: int, seed: int) -> list[float]:
    """95% percentile-bootstrap CI of ``mean(a) − mean(b)``, runs resampled within each group."""
    rng = np.random.default_rng(seed)
    diffs = rng.choice(a, (reps, a.size)).mean(1) - rng.choice(b, (reps, b.size)).mean(1)
    return [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))]


def welch_interval(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> list[float]:
    """Welch's t-interval of ``mean(a) − mean(b)`` (unequal variances, Welch–Satterthwaite
    degrees of freedom); NaN bounds when a group has fewer than two values, zero width when
    neither group varies (as ``_stats.mean_ci``)."""
    from scipy import stats

    if a.size < 2 or b.size < 2:
        return [float("nan"), float("nan")]
    diff = float(a.mean() - b.mean())
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if va + vb == 0:
        return [diff, diff]
    dof = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(stats.t.ppf(0.5 + level / 2, dof) * np.sqrt(va + vb))
    return [diff - half, diff + half]


def paired(values: dict[str, np.ndarray], seeds: dict[str, list[int]], a: str, b: str) -> dict:
    """The mean over the seeds both groups have of ``a − b``, its paired 95% t-interval
    (``_stats.mean_ci``) and those seeds."""
    mine = dict(zip(seeds[a], values[a], strict=True))
    theirs = dict(zip(seeds[b], values[b], strict=True))
    common = sorted(set(mine) & set(theirs))
    return {**mean_ci([mine[s] - theirs[s] for s in common]), "seeds": common}


def paired_against(values: dict[str, np.ndarray], seeds: dict[str, list[int]], baseline: str):
    """``group − baseline`` paired by seed (:func:`paired`) for every group but the baseline
    and the fresh agents."""
    if baseline not in values:
        return {}
    return {
        group: paired(values, seeds, group, baseline)
        for group in values
        if group not in (baseline, FRESH)
    }


def group_stats(values: dict[str, np.ndarray], reps: int, seed: int) -> dict[str, dict]:
    """IQM/mean with CIs per group, and against the fresh agents: the difference of means
    with its CI and the probability of improvement."""
    stats = report.final_return_stats(values, FRESH, reps, reps, seed)
    for group, entry in stats.items():
        if group != FRESH and values[group].size and values[FRESH].size:
            entry["diff"] = float(values[group].mean() - values[FRESH].mean())
            entry["diff_ci"] = bootstrap_difference(values[group], values[FRESH], reps, seed)
            entry["diff_welch_ci"] = welch_interval(values[group], values[FRESH])
    return stats


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warm", type=Path, help="sweep folder of the warm-started runs")
    parser.add_argument("fresh", type=Path, help="sweep folder of the fresh runs on task B")
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix")
    parser.add_argument("--reps", type=int, default=20_000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--network", default="q", help="whose metrics to tabulate (DQN's: q)")
    parser.add_argument(
        "--pairs",
        default="fire-reset,fire-shrink_perturb,reset-shrink_perturb,fire-adamo,fire+adamo-fire",
        help="method pairs a-b compared seed by seed (those present)",
    )
    args = parser.parse_args(argv)

    record, warm_runs, missing_warm = report.load_sweep(args.warm)
    _, fresh_runs, missing_fresh = report.load_sweep(args.fresh)
    warm_runs = [run for run in warm_runs if run.finished]
    fresh_runs = [run for run in fresh_runs if run.finished]
    config = report.read_json(warm_runs[0].dir / "config.json")
    switch = int(config["switch_every"])
    length = int(config["total_timesteps"]) - switch
    methods = report.method_order(record, warm_runs, "none")  # the grid's order
    groups = {method: [r for r in warm_runs if r.method == method] for method in methods}
    groups[FRESH] = fresh_runs
    curves = {
        group: [phase_curve(run, 0 if group == FRESH else switch, length) for run in runs]
        for group, runs in groups.items()
    }
    auc = {g: np.array([scores(c)[0] for c in cs]) for g, cs in curves.items()}
    end = {g: np.array([scores(c)[1] for c in cs]) for g, cs in curves.items()}
    seeds = {group: [run.seed for run in runs] for group, runs in groups.items()}
    first_task = {
        method: np.array([scores(phase_curve(run, 0, switch))[1] for run in runs])
        for method, runs in groups.items()
        if method != FRESH
    }
    result = {
        "warm": str(args.warm),
        "fresh": str(args.fresh),
        "switch": switch,
        "phase": length,
        "env": config["env"],
        "missing": [m["name"] for m in missing_warm + missing_fresh],
        "auc": group_stats(auc, args.reps, args.seed),
        "end": group_stats(end, args.reps, args.seed),
        "paired_none": {
            "auc": paired_against(auc, seeds, "none"),
            "end": paired_against(end, seeds, "none"),
        },
        "pairs": {
            pair: {
                "auc": paired(auc, seeds, *pair.split("-")),
                "end": paired(end, seeds, *pair.split("-")),
            }
            for pair in args.pairs.split(",")
            if all(part in groups and groups[part] for part in pair.split("-"))
        },
        "first_task_end": {m: v.tolist() for m, v in first_task.items()},
        "network": args.network,
        "metrics": metric_table(groups, args.network, switch, length),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report.jsonable(result), indent=2))
    plot(curves, [*methods, FRESH], length, args.out.with_suffix(".png"))
    args.out.with_suffix(".md").write_text(markdown(result, [*methods, FRESH]))
    print(args.out.with_suffix(".md").read_text())
    return result


def markdown(result: dict, groups: list[str]) -> str:
    lines = [
        f"Task B of `{result['env']}` after a switch at {result['switch']:,} steps, against "
        f"fresh agents on B; B's phase: {result['phase']:,} steps.",
        "",
        "| group | runs | AUC: IQM [95% CI] | AUC: mean − fresh [95% CI] | end: IQM [95% CI] "
        "| end: mean − fresh [95% CI] | P(end > fresh) |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in groups:
        auc, end = result["auc"][group], result["end"][group]
        if not auc.get("n"):
            continue

        def diff(entry):
            if "diff" not in entry:
                return "—"
            return report.fmt_ci(entry["diff"], entry["diff_ci"])

        poi = report.fmt_ci(end["poi"], end["poi_ci"], 2) if "poi" in end else "—"
        lines.append(
            f"| {group} | {auc['n']} | {report.fmt_ci(auc['iqm'], auc['iqm_ci'])} | {diff(auc)} "
            f"| {report.fmt_ci(end['iqm'], end['iqm_ci'])} | {diff(end)} | {poi} |"
        )
    lines += [
        "",
        "The same differences with t-intervals: Welch's against the fresh agents, and paired by "
        "seed against the warm-started `none`.",
        "",
        "| group | AUC: mean − fresh [Welch 95% CI] | end: mean − fresh [Welch 95% CI] "
        "| AUC: − none, paired [95% CI] | end: − none, paired [95% CI] | pairs |",
        "|---|---|---|---|---|---|",
    ]
    paired = result["paired_none"]
    for group in groups:
        auc, end = result["auc"][group], result["end"][group]
        if group == FRESH or not auc.get("n"):
            continue

        def welch(entry):
            return report.fmt_ci(entry["diff"], entry["diff_welch_ci"]) if "diff" in entry else "—"

        def pair(entry):
            return report.fmt_ci(entry["mean"], [entry["low"], entry["high"]])

        if group in paired["auc"]:
            pa, pe = paired["auc"][group], paired["end"][group]
            cells = f"{pair(pa)} | {pair(pe)} | {pa['n']}"
        else:
            cells = "— | — | —"
        lines.append(f"| {group} | {welch(auc)} | {welch(end)} | {cells} |")
    if result["pairs"]:
        lines += [
            "",
            "Methods against each other, paired by seed (those acting only at the switch share "
            "task A's phase):",
            "",
            "| pair | AUC: difference [95% CI] | end: difference [95% CI] | pairs |",
            "|---|---|---|---|",
        ]
        for name, entry in result["pairs"].items():
            auc, end = entry["auc"], entry["end"]
            lines.append(
                f"| {name} | {report.fmt_ci(auc['mean'], [auc['low'], auc['high']])} "
                f"| {report.fmt_ci(end['mean'], [end['low'], end['high']])} | {auc['n']} |"
            )
    lines += metrics_markdown(result, groups)
    if result["missing"]:
        lines += ["", f"Missing (unfinished) runs: {', '.join(result['missing'])}."]
    return "\n".join(lines) + "\n"


def metrics_markdown(result: dict, groups: list[str]) -> list[str]:
    """The plasticity metrics table: dormant ratio at the end of A and of B, the others at
    the end of B; mean ± 95% t-interval half-width over runs."""

    def cell(stat: dict) -> str:
        if not np.isfinite(stat["mean"]):
            return "—"
        digits = 3 if abs(stat["mean"]) < 1 else 1
        if abs(stat["mean"]) >= 1e4:  # DfI: three significant digits
            half = f" ± {stat['half']:.2g}" if np.isfinite(stat["half"]) else ""
            return f"{stat['mean']:.3g}{half}"
        return fmt(stat, digits)

    names = list(METRICS)
    header = ["group", "dormant ratio, end of A", *(f"{METRICS[k]}, end of B" for k in names)]
    lines = [
        "",
        f"Plasticity metrics of the `{result['network']}` network (mean ± 95% t-interval "
        "half-width over runs; A's column for the warm-started agents only):",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for group in groups:
        entry = result["metrics"].get(group)
        if not entry or not result["auc"][group].get("n"):
            continue
        end_a = cell(entry["dormant_ratio_end_a"]) if "dormant_ratio_end_a" in entry else "—"
        cells = [end_a, *(cell(entry[f"{k}_end_b"]) for k in names)]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    return lines


def plot(curves: dict, groups: list[str], length: int, path: Path) -> None:
    """Task B's evaluation return against steps into B, mean and bootstrap band per group."""
    plt = report.pyplot()
    palette = report.colors(groups)
    fig, (ax,) = report.subplots(plt, 1, width=6.0, height=3.8)
    rng = np.random.default_rng(0)
    for group in groups:
        runs = curves[group]
        if not runs:
            continue
        common = sorted(set.intersection(*(set(steps.tolist()) for steps, _ in runs)))
        matrix = np.array(
            [[dict(zip(s.tolist(), v, strict=True))[t] for t in common] for s, v in runs]
        )
        means = rng.choice(len(matrix), (2000, len(matrix)))
        band = np.percentile(matrix[means].mean(1), [2.5, 97.5], axis=0)
        style = "--" if group == FRESH else "-"
        ax.plot(
            common, matrix.mean(0), style, color=palette[group], label=f"{group} (n={len(runs)})"
        )
        ax.fill_between(common, band[0], band[1], color=palette[group], alpha=0.15)
    report.steps_axis(ax)
    ax.set_xlabel("env steps on task B (since the switch, or since the start for fresh agents)")
    ax.set_ylabel("evaluation return on task B")
    ax.set_xlim(0, length)
    ax.legend(loc="lower right")
    report.save(fig, path)


if __name__ == "__main__":
    main()
