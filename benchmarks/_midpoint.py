"""What an intervention during learning costs and what it buys, read from evaluation curves:
the FIRE paper's RL protocol (arXiv 2602.08040, section 5), where every method of a seed is a
branch of the same run at the same step. Shared by the analysis of the DQN MinAtar grid
(``benchmarks/midpoint_rl.py``) and the SAC grid (``benchmarks/evidence/sac_midpoint.py``).

From a run's evaluation returns, the steps ``T`` of its interventions and two windows
(``before``, ``after``, in steps), four measures (:func:`measures`):

- **dip**: the mean evaluation in the ``after`` steps after each intervention minus the mean
  in the ``before`` steps up to it (the branch point's step included, as the parent evaluated
  it before the branch acted; a later intervention's step left out, as the run evaluated it
  after acting: :func:`measures`), averaged over ``T``: what the intervention costs at once
  (``none`` measures the same windows, its natural drift);
- **recovery**: steps from each intervention until an evaluation first reaches the level of
  the ``before`` steps before it, averaged over ``T``; a run that never gets back before the
  next intervention (or the end) counts the whole interval, and the share that did is kept;
- **AUC after**: the mean evaluation after the first intervention (how much was learned
  while paying for it);
- **final**: the mean of the last three evaluations.

The comparisons are named from the methods alone, before any result is read
(:func:`family`): each method against ``none``, and FIRE (or the protocol's ``focus``)
against each other method. Every
method of a seed shares that seed's pre-intervention phase, so the primary interval is the
paired t-interval over seeds; Welch's interval of the two groups is given beside it. Each
measure is one family of comparisons, Holm–Bonferroni adjusted over the paired p-values
(``_stats.holm``): a claim holds at 5% for its family when its Holm p is at most 0.05.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks._rl_grid import between, provenance_lines
from benchmarks._stats import (
    curve_ci,
    fmt,
    fmt_p,
    holm,
    mean_ci,
    paired_difference,
    welch_difference,
)
from experiments.report.figures import colors, draw_band, pyplot, save

MEASURES = ("dip", "recovery", "auc_after", "final")
LABELS = {
    "dip": "dip",
    "recovery": "recovery (steps)",
    "auc_after": "AUC after",
    "final": "final",
}


@dataclass(frozen=True)
class Protocol:
    """One protocol of the DQN MinAtar grid: its ``name``, its ``methods`` besides ``none``,
    the prefix of its branch runs' names (``runs``: a follow-up may read another protocol's
    branches), where its interventions fall, in quarters of a run (its branches start from the
    parent's checkpoint at the first), and the method it compares with each other one
    (``focus``)."""

    name: str
    methods: tuple[str, ...]
    runs: str
    quarters: tuple[int, ...]
    focus: str = "fire"

    @property
    def own_methods(self) -> tuple[str, ...]:
        """The methods whose runs this protocol makes: all, or for a follow-up that reads
        another protocol's runs, its focus only."""
        return self.methods if self.runs == self.name else (self.focus,)


PROTOCOLS = {
    protocol.name: protocol
    for protocol in (
        Protocol(
            "midpoint",
            ("fire", "reset", "shrink_perturb", "injection", "cbp", "fire+adamo"),
            "midpoint",
            (2,),
        ),
        Protocol("periodic", ("fire", "reset", "shrink_perturb"), "periodic", (1, 2, 3)),
        Protocol(
            "every_layer",
            ("fire_every_layer", "fire", "reset"),
            "midpoint",
            (2,),
            focus="fire_every_layer",
        ),
    )
}
"""The DQN MinAtar grid's protocols (``benchmarks/evidence/midpoint_minatar.py`` runs them,
``benchmarks/midpoint_rl.py`` reads them). ``every_layer`` is the follow-up named after the
midpoint results: FIRE on every layer at the midpoint (``--fire-linear fire``, runs
``midpoint-fire_every_layer-s<seed>``) against ``none`` and the midpoint's FIRE (its DQN form)
and reset."""

Curve = tuple[np.ndarray, np.ndarray]
"""A run's evaluation steps (ascending) and returns."""


def intervention_steps(protocol: str, total: int) -> list[int]:
    """The steps of a :data:`PROTOCOLS` protocol's interventions in a run of ``total`` steps
    (the midpoint, or each quarter); its branches start from the parent's checkpoint at the
    first."""
    return [quarter * (total // 4) for quarter in PROTOCOLS[protocol].quarters]


def family(methods: tuple[str, ...], focus: str = "fire") -> dict[str, tuple[str, str]]:
    """The comparisons of a protocol, from its methods besides ``none`` alone: ``"a − b"`` →
    (a, b), every method against ``none``, then ``focus`` (when it ran) against each other
    one."""
    out = {f"{m} − none": (m, "none") for m in methods}
    if focus in methods:
        out.update({f"{focus} − {m}": (focus, m) for m in methods if m != focus})
    return out


def window_mean(curve: Curve, start: int, stop: int) -> float:
    """Mean evaluation at steps in ``(start, stop]`` (NaN when there is none)."""
    inside = between(curve, start, stop)
    return float(inside.mean()) if inside.size else math.nan


def recovery(curve: Curve, t: int, level: float, horizon: int) -> tuple[int, bool]:
    """Steps after ``t`` until an evaluation reaches ``level``, and whether one did by
    ``horizon`` (else the whole interval ``horizon − t``)."""
    steps, values = curve
    later = (steps > t) & (steps <= horizon) & (values >= level)
    if later.any():
        return int(steps[later][0] - t), True
    return horizon - t, False


def measures(curve: Curve, steps_at: list[int], total: int, before: int, after: int) -> dict:
    """The four measures of one run (see the module) for interventions at ``steps_at`` in a
    run of ``total`` steps, and ``recovered``: the share of its interventions recovered from.

    The first intervention is the branch point: the branch acts one step after the parent's
    evaluation at ``t``, which therefore counts as before. A later one acts inside the run,
    before that step's evaluation (an agent evaluates after the step's updates and
    interventions), so the evaluation at ``t`` is left out of its "before" window."""
    dips, times, recovered = [], [], 0
    for i, t in enumerate(steps_at):
        level = window_mean(curve, t - before, t if i == 0 else t - 1)
        dips.append(window_mean(curve, t, t + after) - level)
        horizon = steps_at[i + 1] if i + 1 < len(steps_at) else total
        time, back = recovery(curve, t, level, horizon)
        times.append(time)
        recovered += back
    values = curve[1]
    return {
        "dip": float(np.mean(dips)),
        "recovery": float(np.mean(times)),
        "recovered": recovered / len(steps_at),
        "auc_after": window_mean(curve, steps_at[0], total),
        "final": float(values[-3:].mean()) if values.size else math.nan,
    }


def analyse(
    groups: dict[str, dict[int, Curve]],
    steps_at: list[int],
    total: int,
    windows: tuple[int, int],
    eval_every: int,
    focus: str = "fire",
) -> dict:
    """One protocol: per group (``none`` and each method: seed → curve) the measures' means
    and the share recovered, the family's comparisons (paired, Welch beside, Holm per measure;
    ``focus`` against each other method) and the mean curves on the evaluation steps (every
    ``eval_every``). ``windows``: (before, after) of the dip."""
    values = {g: {s: measures(c, steps_at, total, *windows) for s, c in by_seed.items()}
              for g, by_seed in groups.items()}  # fmt: skip
    comparisons = family(tuple(g for g in groups if g != "none"), focus)
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
    grid = np.arange(eval_every, total + 1, eval_every)
    result["curves"] = {}
    for group, by_seed in groups.items():
        curves = [np.interp(grid, *curve, left=np.nan) for curve in by_seed.values()]
        if curves:
            mean, low, high = curve_ci(curves)
            result["curves"][group] = {"steps": grid, "mean": mean, "low": low, "high": high}
    return result


def intro(what: str, windows: tuple[int, int]) -> str:
    """The table's opening paragraph: ``what`` ran, then what the measures are."""
    before, after = windows
    return (
        f"{what}. Measures: dip = mean evaluation in the {after:,} steps after an intervention "
        f"minus the {before:,} steps up to it; recovery = steps until the earlier level is "
        "reached again; AUC after = mean evaluation after the first intervention; final = "
        "mean of the last three evaluations. Means with 95% t-intervals over seeds."
    )


def fmt_interval(stat: dict, digits: int = 1) -> str:
    """``mean [low, high]`` (the bare mean without an interval, ``–`` without a mean)."""
    if not math.isfinite(stat.get("low", math.nan)):
        return f"{stat['mean']:.{digits}f}" if math.isfinite(stat["mean"]) else "–"
    return f"{stat['mean']:.{digits}f} [{stat['low']:.{digits}f}, {stat['high']:.{digits}f}]"


def markdown(opening: str, result: dict) -> str:
    """The report of ``result`` (``command``, ``protocols``: :func:`analyse` by protocol,
    ``provenance``: :func:`benchmarks._rl_grid.provenance`) after its ``opening`` paragraph."""
    lines = [opening, "", f"Command: `{result['command']}`", ""]
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
    lines += provenance_lines(result["provenance"])
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path, xlabel: str) -> None:
    """One panel a protocol: each group's mean evaluation curve with its 95% band, the
    interventions marked."""
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
        ax.set_xlabel(xlabel)
        ax.set_ylabel("evaluation return")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)
