"""Does an agent warm-started on one task learn a second one as well as a fresh agent?

The RL warm-start protocol of the plasticity-loss evidence (docs/results.md): one sweep of
agents trained on task A, then on task B (a two-task ``cycle:A,B`` with one switch, each method
acting at the switch), and one sweep of fresh agents trained on B alone for as long. For each
run, task B's evaluation returns over B's phase give two scores:

- **AUC**: the mean evaluation return over the phase (how fast B is learned);
- **end**: the mean of the phase's last three evaluations (how well it is learned).

The comparisons are named in this script before it reads a result (:func:`family`): every
method against the fresh agents, with Welch's t-interval (the groups share no runs); every
method against the warm-started ``none`` of the same seed, and the method pairs of
``--pairs``, with paired t-intervals (the methods of a seed share task A's phase when they act
only at the switch, so the pairing removes its seed-to-seed spread). Each is tested on both
scores; the table gives each difference with its 95% interval, its two-sided p-value and the
Holm-adjusted p-value over the whole family (``_stats.holm``): a claim holds for the family
at 5% when its Holm p is at most 0.05. A descriptive table follows: per group the IQM with
95% stratified-bootstrap CIs (rliable, as ``report.py``), the difference of means to the fresh
agents with a percentile-bootstrap CI and the probability of improvement; with 5 runs a group
these bootstrap intervals are too narrow (they only resample the values they have), so they
back no claim.

The runs of a grid should come from one clean commit: the script refuses, with one line and
exit code 2, runs from several commits or from a tree with uncommitted changes unless
``--allow-mixed-commits`` is given; the output then lists each commit's runs. Resumed runs
are listed with how their replay buffer came back (saved, refilled by the current policy, or
unknown for resumes recorded before the agents wrote it).

Run: ``python -m benchmarks.warm_start_rl runs/<warm sweep> runs/<fresh sweep>
--out benchmarks/results/<name>`` (writes ``<name>.md``, ``.json``, ``.png``); bad input is one
line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np

from benchmarks._stats import (
    fmt,
    fmt_p,
    holm,
    mean_ci,
    paired_difference,
    provenance_problem,
    run_provenance,
    runs_by_commit,
    welch_difference,
)
from experiments.report.figures import colors, pyplot, save, steps_axis, subplots
from experiments.report.load import ReportError, RunData, load_sweep
from experiments.report.markdown import fmt_ci, jsonable
from experiments.report.stats import final_return_stats
from experiments.runs import read_json

FRESH = "fresh (none)"
GRID = ("none", "fire", "reset", "shrink_perturb", "adamo", "redo", "fire+adamo")
"""The grid's methods (``benchmarks/evidence/warm_start_minatar.sh``), in its order."""
PAIRS = (
    "fire-reset",
    "fire-shrink_perturb",
    "reset-shrink_perturb",
    "fire-adamo",
    "fire+adamo-fire",
)
"""Methods compared with each other, seed by seed (``a-b``: a − b)."""
SCORES = ("auc", "end")
"""The two scores of a run on task B (see above); every comparison is tested on both."""
ALLOW_MIXED = "--allow-mixed-commits"
METRICS = {
    "dormant_ratio": "dormant ratio",
    "effective_rank": "effective rank",
    "dfi": "DfI",
    "kfac_eps_rank_normalized": "K-FAC ε-rank",
    "weight_norm": "weight norm",
}
"""The network's plasticity metrics tabulated (``<network>/<key>`` in ``scalars.jsonl``)."""


def logged_between(run: RunData, key: str, start: int, stop: int):
    """Steps and values of ``key`` logged at a step in ``(start, stop]``."""
    steps, values = run.scalars.get(key, (np.zeros(0, int), np.zeros(0)))
    inside = (steps > start) & (steps <= stop)
    return steps[inside], values[inside]


def phase_curve(run: RunData, start: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation returns at steps in ``(start, start + length]``, with steps from the phase's
    start."""
    steps, values = logged_between(run, "eval/episodic_return", start, start + length)
    return steps - start, values


def scores(curve: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """(AUC, end) of one run's phase curve."""
    _, values = curve
    return float(np.mean(values)), float(np.mean(values[-3:]))


def last_logged(run: RunData, key: str, start: int, stop: int) -> float:
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


def family(methods: list[str], pairs: list[str]) -> dict[str, tuple[str, str, str]]:
    """The comparisons tested, named from the settings alone (before any result is read):
    ``"a − b"`` → (test, a, b). Every method against the fresh agents (``welch``), every method
    but ``none`` against ``none``, and each pair (``paired`` by seed); a pair that repeats a
    comparison against ``none`` is one comparison."""
    out = {f"{m} − fresh": ("welch", m, FRESH) for m in methods}
    out.update({f"{m} − none": ("paired", m, "none") for m in methods if m != "none"})
    for pair in pairs:
        a, b = pair.split("-")
        out[f"{a} − {b}"] = ("paired", a, b)
    return out


def compare(test: str, a: str, b: str, values: dict[str, np.ndarray], seeds: dict) -> dict:
    """One comparison of one score: Welch's difference of ``a`` and ``b``, or their paired
    difference over the seeds both have (those seeds under ``seeds``)."""
    if test == "welch":
        return welch_difference(values[a], values[b])
    mine = dict(zip(seeds[a], values[a], strict=True))
    theirs = dict(zip(seeds[b], values[b], strict=True))
    common = sorted(set(mine) & set(theirs))
    diff = paired_difference([mine[s] for s in common], [theirs[s] for s in common])
    return {**diff, "seeds": common}


def group_stats(values: dict[str, np.ndarray], reps: int, seed: int) -> dict[str, dict]:
    """Descriptive statistics per group: IQM/mean with stratified-bootstrap CIs, and against
    the fresh agents the difference of means with a percentile-bootstrap CI and the
    probability of improvement."""
    stats = final_return_stats(values, FRESH, reps, reps, seed)
    for group, entry in stats.items():
        if group != FRESH and values[group].size and values[FRESH].size:
            entry["diff"] = float(values[group].mean() - values[FRESH].mean())
            entry["diff_ci"] = bootstrap_difference(values[group], values[FRESH], reps, seed)
    return stats


class Refused(Exception):
    """Bad input: one line on stderr, exit code 2."""


def main(argv: list[str] | None = None) -> dict:
    try:
        return analyse(argv)
    except (Refused, ReportError) as err:
        print(f"warm_start_rl.py: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def analyse(argv: list[str] | None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("warm", type=Path, help="sweep folder of the warm-started runs")
    parser.add_argument("fresh", type=Path, help="sweep folder of the fresh runs on task B")
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix")
    parser.add_argument("--reps", type=int, default=20_000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--network", default="q", help="whose metrics to tabulate (DQN's: q)")
    parser.add_argument(
        "--methods",
        default=",".join(GRID),
        help="the grid's methods, in order: each is compared with the fresh agents and none",
    )
    parser.add_argument(
        "--pairs",
        default=",".join(PAIRS),
        help="method pairs a-b also compared seed by seed",
    )
    parser.add_argument(
        ALLOW_MIXED,
        action="store_true",
        help="analyse runs from several commits or a dirty tree (the output lists the commits)",
    )
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    methods = args.methods.split(",")
    pairs = args.pairs.split(",") if args.pairs else []
    for pair in pairs:
        parts = pair.split("-")
        if len(parts) != 2 or not set(parts) <= set(methods):
            raise Refused(
                f"--pairs {pair}: a pair is two methods of --methods joined by '-' "
                f"(--methods is {args.methods})"
            )
    comparisons = family(methods, pairs)  # named before any result is read

    record, warm_runs, missing_warm = load_sweep(args.warm)
    _, fresh_runs, missing_fresh = load_sweep(args.fresh)
    warm_runs = [run for run in warm_runs if run.finished]
    fresh_runs = [run for run in fresh_runs if run.finished]
    if not warm_runs or not fresh_runs:
        empty = args.warm if not warm_runs else args.fresh
        raise Refused(f"{empty} holds no finished run: pass the folder of a finished sweep")
    unnamed = sorted({run.method for run in warm_runs} - set(methods))
    if unnamed:
        raise Refused(
            f"the warm sweep has runs of {', '.join(unnamed)}, which --methods does not name: "
            "add them to --methods (the comparisons are fixed before the results are read)"
        )
    groups = {method: [r for r in warm_runs if r.method == method] for method in methods}
    groups[FRESH] = fresh_runs
    provenance = {
        f"{group}, seed {run.seed}": run_provenance(read_json(run.dir / "config.json"))
        for group, runs in groups.items()
        for run in runs
    }
    problem = provenance_problem(provenance)
    if problem and not args.allow_mixed_commits:
        raise Refused(
            f"{problem}: rerun them on one clean commit, or pass {ALLOW_MIXED} to analyse them "
            "anyway (the output then lists each commit's runs)"
        )

    config = read_json(warm_runs[0].dir / "config.json")
    switch = int(config["switch_every"])
    length = int(config["total_timesteps"]) - switch
    curves = {
        group: [phase_curve(run, 0 if group == FRESH else switch, length) for run in runs]
        for group, runs in groups.items()
    }
    values = {
        score: {g: np.array([scores(c)[i] for c in cs]) for g, cs in curves.items()}
        for i, score in enumerate(SCORES)
    }
    seeds = {group: [run.seed for run in runs] for group, runs in groups.items()}
    tests = {
        (name, score): compare(*comparisons[name], values[score], seeds)
        for name in comparisons
        for score in SCORES
    }
    adjusted = holm({f"{score}: {name}": t["p"] for (name, score), t in tests.items()})
    first_task = {
        method: np.array([scores(phase_curve(run, 0, switch))[1] for run in runs])
        for method, runs in groups.items()
        if method != FRESH
    }
    result = {
        "command": shlex.join(["python", "-m", "benchmarks.warm_start_rl", *argv]),
        "warm": str(args.warm),
        "fresh": str(args.fresh),
        "switch": switch,
        "phase": length,
        "env": config["env"],
        "missing": [m["name"] for m in missing_warm + missing_fresh],
        "family": [f"{score}: {name}" for name in comparisons for score in SCORES],
        "comparisons": {
            name: {
                "test": comparisons[name][0],
                **{
                    score: {**tests[name, score], "holm_p": adjusted[f"{score}: {name}"]}
                    for score in SCORES
                },
            }
            for name in comparisons
        },
        **{score: group_stats(values[score], args.reps, args.seed) for score in SCORES},
        "first_task_end": {m: v.tolist() for m, v in first_task.items()},
        "network": args.network,
        "metrics": metric_table(groups, args.network, switch, length),
        "provenance": {
            "problem": problem,
            "runs_by_commit": runs_by_commit(provenance),
            "dirty": sorted(name for name, p in provenance.items() if p["dirty"]),
            "resumed": {name: p["resumes"] for name, p in provenance.items() if p["resumes"]},
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(jsonable(result), indent=2))
    plot(curves, [*methods, FRESH], length, args.out.with_suffix(".png"))
    args.out.with_suffix(".md").write_text(markdown(result, [*methods, FRESH]))
    print(args.out.with_suffix(".md").read_text())
    return result


def markdown(result: dict, groups: list[str]) -> str:
    n_tests = len(result["family"])
    lines = [
        f"Task B of `{result['env']}` after a switch at {result['switch']:,} steps, against "
        f"fresh agents on B; B's phase: {result['phase']:,} steps. Made by `{result['command']}`.",
        "",
        f"The family of comparisons, named in `warm_start_rl.py` before the results were read "
        f"({len(result['comparisons'])} comparisons × 2 scores = {n_tests} tests): differences "
        "of mean scores with 95% t-intervals, Welch's against the fresh agents (no runs shared), "
        "paired by seed otherwise; two-sided p, and Holm-adjusted p over the family (a claim "
        "holds for the family at 5% when its Holm p ≤ 0.05).",
        "",
        "| comparison | test | AUC: difference [95% CI] | p | Holm p "
        "| end: difference [95% CI] | p | Holm p | runs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, entry in result["comparisons"].items():
        cells = []
        for score in SCORES:
            t = entry[score]
            cells += [fmt_ci(t["mean"], [t["low"], t["high"]]), fmt_p(t["p"]),
                      fmt_p(t["holm_p"])]  # fmt: skip
        auc = entry["auc"]
        runs = f"{auc['n_a']} vs {auc['n_b']}" if entry["test"] == "welch" else f"{auc['n']} pairs"
        lines.append(f"| {name} | {entry['test']} | " + " | ".join(cells) + f" | {runs} |")
    lines += [
        "",
        "Descriptive (rliable's IQM with 95% stratified-bootstrap CIs; differences of means "
        "with percentile-bootstrap CIs; probability of improvement): at 5 runs a group these "
        "bootstrap intervals are too narrow and back no claim.",
        "",
        "| group | runs | AUC: IQM [95% CI] | AUC: mean − fresh [bootstrap CI] | end: IQM [95% CI] "
        "| end: mean − fresh [bootstrap CI] | P(end > fresh) |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in groups:
        auc, end = result["auc"][group], result["end"][group]
        if not auc.get("n"):
            continue

        def diff(entry):
            if "diff" not in entry:
                return "—"
            return fmt_ci(entry["diff"], entry["diff_ci"])

        poi = fmt_ci(end["poi"], end["poi_ci"], 2) if "poi" in end else "—"
        lines.append(
            f"| {group} | {auc['n']} | {fmt_ci(auc['iqm'], auc['iqm_ci'])} | {diff(auc)} "
            f"| {fmt_ci(end['iqm'], end['iqm_ci'])} | {diff(end)} | {poi} |"
        )
    lines += metrics_markdown(result, groups)
    lines += provenance_markdown(result["provenance"])
    if result["missing"]:
        lines += ["", f"Missing (unfinished) runs: {', '.join(result['missing'])}."]
    return "\n".join(lines) + "\n"


def short(commit: str) -> str:
    """A commit's first 10 hex digits, ``+dirty`` kept."""
    sha, plus, suffix = commit.partition("+")
    return sha[:10] + plus + suffix


def provenance_markdown(provenance: dict) -> list[str]:
    """Which commits the runs came from (each commit's runs when there are several) and the
    resumed runs with how their replay buffer came back."""
    by_commit = provenance["runs_by_commit"]
    if provenance["problem"] is None:
        lines = ["", f"Every run ran on commit `{next(iter(by_commit))}` with a clean tree."]
    else:
        lines = [
            "",
            f"Code: {provenance['problem']}; analysed with {ALLOW_MIXED}. Runs by commit "
            "(`+dirty`: the tree had uncommitted changes):",
            "",
            "| commit | runs |",
            "|---|---|",
        ]
        for commit, names in by_commit.items():
            lines.append(f"| `{short(commit)}` | {'; '.join(names)} |")
    if provenance["resumed"]:
        lines += [
            "",
            "Resumed runs (a refilled buffer holds transitions of the policy at the resume, not "
            "the ones the run had collected):",
            "",
            "| run | resumed at step | commit | replay buffer |",
            "|---|---|---|---|",
        ]
        for name, resumes in provenance["resumed"].items():
            for r in resumes:
                step = f"{r['step']:,}" if isinstance(r["step"], int) else "?"
                lines.append(f"| {name} | {step} | `{short(r['commit'])}` | {r['buffer']} |")
    return lines


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
    plt = pyplot()
    palette = colors(groups)
    fig, (ax,) = subplots(plt, 1, width=6.0, height=3.8)
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
    steps_axis(ax)
    ax.set_xlabel("env steps on task B (since the switch, or since the start for fresh agents)")
    ax.set_ylabel("evaluation return on task B")
    ax.set_xlim(0, length)
    ax.legend(loc="lower right")
    save(fig, path)


if __name__ == "__main__":
    main()
