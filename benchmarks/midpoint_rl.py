"""What an intervention during learning costs and what it buys: the analysis of the FIRE
paper's RL protocol at small scale (``benchmarks/evidence/midpoint_minatar.py``).

Every seed's ``none`` run (``parent-none-s<seed>``) is the parent of that seed's branches
(``<protocol>-<method>-s<seed>``), which apply their method to the parent's checkpoint: at the
midpoint (``midpoint``) or at each quarter (``periodic``). From each run's evaluation returns
(every 5k steps, 10 episodes, ε 0) and the protocol's intervention steps ``T``, four measures:

- **dip**: the mean evaluation in the 10k steps after each intervention minus the mean in
  the 15k steps up to it (the intervention's step included, evaluated before it acts),
  averaged over ``T``: what the intervention costs at once (``none`` measures the same
  windows, its natural drift);
- **recovery**: steps from each intervention until an evaluation first reaches the level of
  the 15k steps before it, averaged over ``T``; a run that never gets back before the next
  intervention (or the end) counts the whole interval, and the table says how many did not;
- **AUC after**: the mean evaluation after the first intervention (how much was learned
  while paying for it);
- **final**: the mean of the last three evaluations.

The comparisons are named here, before any result is read (:func:`family`): each method
against ``none``, and FIRE against each other method. Every method of a seed shares that
seed's pre-intervention phase, so the primary interval is the paired t-interval over seeds;
Welch's interval of the two groups is given beside it. Each (protocol, measure) is one family
of comparisons, Holm–Bonferroni adjusted (``_stats.holm``): a claim holds at 5% for its
family when its Holm p is at most 0.05.

The grid's runs must come from one clean commit: the analysis refuses runs from several
commits or from a dirty tree (one line, exit code 2) unless ``--allow-mixed-commits`` is
given, and then lists each commit's runs. Resumed runs are listed with how their replay buffer
came back.

Run: ``python -m benchmarks.midpoint_rl benchmarks/results/evidence/midpoint --out
benchmarks/results/midpoint_minatar`` (writes ``.md``, ``.json`` and ``.png``).
"""

from __future__ import annotations

import argparse
import math
import re
import shlex
import sys
from pathlib import Path

import numpy as np

from benchmarks._stats import (
    curve_ci,
    fmt,
    fmt_p,
    holm,
    mean_ci,
    paired_difference,
    provenance_problem,
    run_provenance,
    runs_by_commit,
    welch_difference,
    write_result_json,
)
from experiments.report.figures import colors, draw_band, pyplot, save
from experiments.report.load import RunData, read_run
from experiments.report.markdown import jsonable
from experiments.runs import UnreadableFile, read_json

EVAL = "eval/episodic_return"
BEFORE, AFTER = 15_000, 10_000
"""The windows of the dip: evaluations in ``(t − BEFORE, t]`` against those in
``(t, t + AFTER]``."""
MEASURES = ("dip", "recovery", "auc_after", "final")
LABELS = {
    "dip": "dip",
    "recovery": "recovery (steps)",
    "auc_after": "AUC after",
    "final": "final",
}
PROTOCOLS = {
    "midpoint": ("fire", "reset", "shrink_perturb", "injection", "cbp", "fire+adamo"),
    "periodic": ("fire", "reset", "shrink_perturb"),
}
"""Each protocol's methods (besides ``none``), as ``midpoint_minatar.py`` runs them."""
RUN_NAME = re.compile(r"(?P<group>parent|midpoint|periodic)-(?P<method>.+)-s(?P<seed>\d+)$")
ALLOW_MIXED = "--allow-mixed-commits"


class Refused(Exception):
    """Bad input: one line on stderr, exit code 2."""


def family(methods: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """The comparisons of one protocol, from its methods alone: ``"a − b"`` → (a, b)."""
    out = {f"{m} − none": (m, "none") for m in methods}
    out.update({f"fire − {m}": ("fire", m) for m in methods if m != "fire"})
    return out


def evaluations(run: RunData) -> tuple[np.ndarray, np.ndarray]:
    steps, values = run.scalars.get(EVAL, (np.zeros(0, int), np.zeros(0)))
    return np.asarray(steps), np.asarray(values, dtype=float)


def window_mean(steps, values, start: int, stop: int) -> float:
    """Mean evaluation at steps in ``(start, stop]`` (NaN when there is none)."""
    inside = (steps > start) & (steps <= stop)
    return float(values[inside].mean()) if inside.any() else math.nan


def recovery(steps, values, t: int, level: float, horizon: int) -> tuple[int, bool]:
    """Steps after ``t`` until an evaluation reaches ``level``, and whether one did by
    ``horizon`` (else the whole interval ``horizon − t``)."""
    later = (steps > t) & (steps <= horizon) & (values >= level)
    if later.any():
        return int(steps[later][0] - t), True
    return horizon - t, False


def measures(run: RunData, steps_at: list[int], total: int) -> dict[str, float]:
    """The four measures of one run for interventions at ``steps_at`` (see the module)."""
    steps, values = evaluations(run)
    dips, times, recovered = [], [], 0
    for i, t in enumerate(steps_at):
        level = window_mean(steps, values, t - BEFORE, t)
        dips.append(window_mean(steps, values, t, t + AFTER) - level)
        horizon = steps_at[i + 1] if i + 1 < len(steps_at) else total
        time, back = recovery(steps, values, t, level, horizon)
        times.append(time)
        recovered += back
    return {
        "dip": float(np.mean(dips)),
        "recovery": float(np.mean(times)),
        "recovered": recovered / len(steps_at),
        "auc_after": window_mean(steps, values, steps_at[0], total),
        "final": float(values[-3:].mean()) if values.size else math.nan,
    }


def load(folder: Path) -> dict[tuple[str, str], dict[int, RunData]]:
    """The finished runs of the folder by (group, method) and seed; other folders are named
    on stderr and left out."""
    runs: dict[tuple[str, str], dict[int, RunData]] = {}
    for run_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        match = RUN_NAME.match(run_dir.name)
        if not match:
            continue
        try:
            run = read_run(run_dir)
        except UnreadableFile as err:
            print(f"left out {run_dir.name}: {err}", file=sys.stderr)
            continue
        if not run.finished:
            print(f"left out {run_dir.name}: not finished", file=sys.stderr)
            continue
        key = (match["group"], match["method"])
        runs.setdefault(key, {})[int(match["seed"])] = run
    return runs


def intervention_steps(protocol: str, total: int) -> list[int]:
    quarter = total // 4
    return [2 * quarter] if protocol == "midpoint" else [quarter, 2 * quarter, 3 * quarter]


def analyse_protocol(protocol: str, runs: dict, total: int) -> dict | None:
    """Per-method measures, the family's comparisons and the mean curves of one protocol;
    None when it has no finished branch."""
    methods = PROTOCOLS[protocol]
    groups = {"none": runs.get(("parent", "none"), {})}
    groups.update({m: runs.get((protocol, m), {}) for m in methods})
    if not any(groups[m] for m in methods):
        return None
    steps_at = intervention_steps(protocol, total)
    values = {g: {s: measures(r, steps_at, total) for s, r in by_seed.items()}
              for g, by_seed in groups.items()}  # fmt: skip
    comparisons = family(methods)
    result: dict = {"interventions": steps_at, "seeds": {}, "groups": {}, "comparisons": {}}
    for group, by_seed in values.items():
        result["seeds"][group] = sorted(by_seed)
        result["groups"][group] = {
            **{m: mean_ci([v[m] for v in by_seed.values()]) for m in MEASURES},
            "recovered": float(np.mean([v["recovered"] for v in by_seed.values()]))
            if by_seed else math.nan,
        }  # fmt: skip
    for measure in MEASURES:
        tests = {}
        for name, (a, b) in comparisons.items():
            common = sorted(set(values[a]) & set(values[b]))
            paired = paired_difference(
                [values[a][s][measure] for s in common], [values[b][s][measure] for s in common]
            )
            welch = welch_difference(
                [v[measure] for v in values[a].values()], [v[measure] for v in values[b].values()]
            )
            tests[name] = {"paired": {**paired, "seeds": common}, "welch": welch}
        adjusted = holm({name: t["paired"]["p"] for name, t in tests.items()})
        for name, test in tests.items():
            test["holm_p"] = adjusted[name]
        result["comparisons"][measure] = tests
    grid = np.arange(5_000, total + 1, 5_000)
    result["curves"] = {}
    for group, by_seed in groups.items():
        curves = [np.interp(grid, *evaluations(r), left=np.nan) for r in by_seed.values()]
        if curves:
            mean, low, high = curve_ci(curves)
            result["curves"][group] = {"steps": grid, "mean": mean, "low": low, "high": high}
    return result


def main(argv: list[str] | None = None) -> dict:
    try:
        return analyse(argv)
    except Refused as err:
        print(f"midpoint_rl.py: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def analyse(argv: list[str] | None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="the grid's folder of runs")
    parser.add_argument("--out", type=Path, required=True, help="output path without suffix")
    parser.add_argument(
        ALLOW_MIXED,
        action="store_true",
        help="analyse runs from several commits or a dirty tree (the output lists the commits)",
    )
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        raise Refused(f"{args.runs} is not a folder: pass the grid's folder of runs")
    runs = load(args.runs)
    parents = runs.get(("parent", "none"), {})
    if not parents:
        raise Refused(f"{args.runs} holds no finished parent-none-s<seed> run: run the grid first")
    provenance = {
        run.name: run_provenance(read_json(run.dir / "config.json") or {})
        for by_seed in runs.values()
        for run in by_seed.values()
    }
    problem = provenance_problem(provenance)
    if problem and not args.allow_mixed_commits:
        raise Refused(
            f"{problem}: rerun them on one clean commit, or pass {ALLOW_MIXED} to analyse them "
            "anyway (the output then lists each commit's runs)"
        )
    total = int(next(iter(parents.values())).summary["total_timesteps"])
    result = {
        "command": shlex.join(["python", "-m", "benchmarks.midpoint_rl", *argv]),
        "env": next(iter(parents.values())).env,
        "total_timesteps": total,
        "windows": {"before": BEFORE, "after": AFTER},
        "protocols": {},
        "provenance": {
            "problem": problem,
            "runs_by_commit": runs_by_commit(provenance),
            "resumed": {name: p["resumes"] for name, p in provenance.items() if p["resumes"]},
        },
    }
    for protocol in PROTOCOLS:
        analysed = analyse_protocol(protocol, runs, total)
        if analysed is not None:
            result["protocols"][protocol] = analysed
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_result_json(args.out.with_suffix(".json"), jsonable(result))
    plot(result, args.out.with_suffix(".png"))
    args.out.with_suffix(".md").write_text(markdown(result))
    print(args.out.with_suffix(".md").read_text())
    return result


def fmt_interval(stat: dict, digits: int = 1) -> str:
    if not math.isfinite(stat.get("low", math.nan)):
        return f"{stat['mean']:.{digits}f}" if math.isfinite(stat["mean"]) else "–"
    return f"{stat['mean']:.{digits}f} [{stat['low']:.{digits}f}, {stat['high']:.{digits}f}]"


def markdown(result: dict) -> str:
    lines = [
        f"DQN on `{result['env']}`, {result['total_timesteps']:,} steps; each method a branch "
        "of its seed's `none` run (`benchmarks/evidence/midpoint_minatar.py`). Measures: "
        f"dip = mean evaluation in the {AFTER:,} steps after an intervention minus the "
        f"{BEFORE:,} steps up to it; recovery = steps until the earlier level is reached "
        "again; AUC after = mean evaluation after the first intervention; final = mean of "
        "the last three evaluations. Means with 95% t-intervals over seeds.",
        "",
        f"Command: `{result['command']}`",
        "",
    ]
    for protocol, data in result["protocols"].items():
        steps = ", ".join(f"{t:,}" for t in data["interventions"])
        lines += [f"## {protocol}: interventions at {steps}", ""]
        header = "| method | seeds | " + " | ".join(LABELS[m] for m in MEASURES) + " | recovered |"
        lines += [header, "|---" * (len(MEASURES) + 3) + "|"]
        for group, stats in data["groups"].items():
            cells = [fmt(stats[m], 0 if m == "recovery" else 1) for m in MEASURES]
            recovered = stats["recovered"]
            share = f"{recovered:.0%}" if math.isfinite(recovered) else "–"
            seeds = len(data["seeds"][group])
            lines.append(f"| {group} | {seeds} | " + " | ".join(cells) + f" | {share} |")
        lines += [
            "",
            "Paired differences over shared seeds (95% t-interval), Welch's interval of the "
            "groups beside it, and Holm-adjusted p over each measure's family of "
            f"{len(next(iter(data['comparisons'].values())))} comparisons:",
            "",
        ]
        for measure in MEASURES:
            digits = 0 if measure == "recovery" else 1
            lines += [
                f"**{LABELS[measure]}**",
                "",
                "| comparison | paired difference | p | Holm p | Welch interval |",
                "|---|---|---|---|---|",
            ]
            for name, test in data["comparisons"][measure].items():
                lines.append(
                    f"| {name} | {fmt_interval(test['paired'], digits)} | "
                    f"{fmt_p(test['paired']['p'])} | {fmt_p(test['holm_p'])} | "
                    f"{fmt_interval(test['welch'], digits)} |"
                )
            lines.append("")
    provenance = result["provenance"]
    lines += ["## Provenance", ""]
    for commit, names in provenance["runs_by_commit"].items():
        lines.append(f"- `{commit}`: {len(names)} runs")
    if provenance["problem"]:
        lines.append(f"- **{provenance['problem']}** (analysed with {ALLOW_MIXED})")
    for name, resumes in provenance["resumed"].items():
        how = "; ".join(f"at {r['step']:,}, buffer {r['buffer']}" for r in resumes)
        lines.append(f"- {name} resumed: {how}")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    plt = pyplot()
    protocols = result["protocols"]
    fig, axes = plt.subplots(1, max(len(protocols), 1), figsize=(6 * max(len(protocols), 1), 4))
    axes = np.atleast_1d(axes)
    for ax, (protocol, data) in zip(axes, protocols.items(), strict=False):
        palette = colors(list(data["curves"]))
        for group, curve in data["curves"].items():
            draw_band(
                ax, curve["steps"], curve["mean"], curve["low"], curve["high"],
                palette[group], group, 1.5, 0.12,
            )  # fmt: skip
        for t in data["interventions"]:
            ax.axvline(t, color="grey", lw=0.8, ls=":")
        ax.set_title(f"{result['env']}: {protocol}")
        ax.set_xlabel("env steps")
        ax.set_ylabel("evaluation return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)


if __name__ == "__main__":
    main()
