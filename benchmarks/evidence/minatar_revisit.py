"""DQN on MinAtar games visited in turn, each more than once: is a game learned slower when it
comes back, and does FIRE at each switch keep more of the earlier visit than a reset?
(issue 24, item 3.)

One run cycles through the games of ``--games`` (Breakout, Space Invaders) for ``--visits``
periods of ``switch_every`` steps (breakout → space_invaders → breakout → space_invaders),
with the replay buffer kept across switches (MinAtar's 100k buffer equals a period, so on
re-entering a game it holds the other game's last visit only: what is kept of the earlier
visit of a game is in the network). Methods: ``none``; ``fire`` and ``reset`` at every switch
(``on_task_switch``; their periods off). ε held at 0.1 on every visit, as in the warm-start
grid, so that visits explore alike; Breakout's 4 channels are padded to Space Invaders' 6.

Per run and visit, on the evaluation returns (ε 0) logged inside the visit, steps in
``(start, end]``:

- **entry**: the first evaluation of the visit (``eval_every`` steps after re-entering): what
  the agent still plays of the game, before much relearning;
- **AUC**: the mean evaluation return over the visit (how fast it is (re)learned);
- **end**: the mean of the visit's last three evaluations (how well).

The family, fixed by :func:`family` from the settings before any result is read: under
``none``, each later visit of a game against its first visit (does the game come back slower?
paired by seed, within runs); at each later visit of a game, ``fire − reset``, ``fire − none``
and ``reset − none`` (the methods of a seed share the first period, as they act only at
switches). Each on the three measures; Welch's interval and the paired one, each with Holm
over the family (for the within-run comparisons the paired interval is the one to read).
Runs from several commits or a dirty tree are refused unless ``--allow-mixed-commits``.

Scales: ``reduced`` (the full grid, about 3.5 hours on two cores): 100k steps a visit, 4
visits, 5 seeds, evaluation every 5k steps over 10 episodes; ``small`` (about an hour on an
idle machine; the grid committed ran it with ``--seeds 3``): 50k steps a visit, 3 visits
(Breakout's second visit is the one compared), 5 seeds, the same evaluation; ``tiny``: a CPU
smoke run of the pipeline (200 steps a visit, 2 seeds, small buffer). Run: ``python -m
benchmarks.evidence.minatar_revisit [--scale tiny] [--jobs N] [-- train.py flags]``.
``benchmarks/_rl_grid.py`` runs the grid: ``--jobs 1`` (the default) one run after another in
this process, more as that many train.py processes, each writing ``<run>.out`` beside its
folder (kept when it fails); finished runs are skipped, stopped ones resumed from their
checkpoint, ones without a checkpoint started again. ``--analyse-only`` reads the finished
runs. Writes ``<out>.{md,json,png}``; bad input is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks._rl_grid import (
    ALLOW_MIXED,
    GridRun,
    Refused,
    between,
    complete,
    eval_curve,
    finished_run,
    provenance,
    provenance_lines,
    refusing,
    split_extra,
    write_outputs,
)
from benchmarks._stats import compare_by_seed, family_table, fmt, holm_family, mean_ci

METHODS = ("none", "fire", "reset")
GAMES = ("minatar_breakout", "minatar_space_invaders")
MEASURES = {"entry": "entry return", "auc": "AUC of the visit", "end": "end of the visit"}
BETWEEN = (("fire", "reset"), ("fire", "none"), ("reset", "none"))


@dataclass(frozen=True)
class Scale:
    switch_every: int
    visits: int
    seeds: int
    eval_every: int
    eval_episodes: int
    flags: tuple[str, ...]

    @property
    def total(self) -> int:
        return self.switch_every * self.visits


# ε held at 0.1; interventions only at the switches
COMMON = ("--start-e", "0.1", "--end-e", "0.1", "--pad-spaces")
COMMON += ("--fire-every", "0", "--reset-every", "0", "--shrink-perturb-every", "0")
SCALES = {
    "reduced": Scale(
        switch_every=100_000,
        visits=4,
        seeds=5,
        eval_every=5_000,
        eval_episodes=10,
        flags=(*COMMON, "--metrics-every", "10000", "--checkpoint-every", "50000"),
    ),
    # one sitting on two cores (about an hour): Breakout, Space Invaders, Breakout again
    "small": Scale(
        switch_every=50_000,
        visits=3,
        seeds=5,
        eval_every=5_000,
        eval_episodes=10,
        flags=(*COMMON, "--metrics-every", "10000", "--checkpoint-every", "25000"),
    ),
    "tiny": Scale(
        switch_every=200,
        visits=4,
        seeds=2,
        eval_every=100,
        eval_episodes=1,
        flags=(
            *COMMON,
            "--learning-starts",
            "100",
            "--buffer-size",
            "500",
            "--target-network-frequency",
            "100",
            "--metrics-every",
            "0",
            "--verbose",
            "0",
        ),  # fmt: skip
    ),
}


def visit_games(games: list[str], visits: int) -> list[str]:
    """The game of each visit, in order (the cycle repeats ``games``)."""
    return [games[v % len(games)] for v in range(visits)]


def family(methods: list[str], games: list[str], visits: int) -> list[str]:
    """The comparisons tested, from the settings alone. Visits are numbered from 1 over the
    run; ``"none: v3 − v1"`` compares ``none``'s third visit (a later visit of v1's game) with
    its first, ``"v3: fire − reset"`` two methods at visit 3."""
    order = visit_games(games, visits)
    first = {game: order.index(game) + 1 for game in games}
    later = [v + 1 for v, game in enumerate(order) if v + 1 != first[game]]
    names = [f"none: v{v} − v{first[order[v - 1]]}" for v in later if "none" in methods]
    names += [f"v{v}: {a} − {b}" for v in later for a, b in BETWEEN if {a, b} <= set(methods)]
    return names


def plan(scale: Scale, runs: Path, methods, games, seeds, extra) -> list[GridRun]:
    """The grid's runs (:class:`benchmarks._rl_grid.GridRun`): a cycle per method and seed."""
    grid = []
    for seed in seeds:
        for method in methods:
            argv = ("--env", "cycle:" + ",".join(games), "--method", method, "--seed", str(seed))
            argv += ("--total-timesteps", str(scale.total))
            argv += ("--switch-every", str(scale.switch_every))
            argv += ("--eval-every", str(scale.eval_every))
            argv += ("--eval-episodes", str(scale.eval_episodes), *scale.flags, *extra)
            grid.append(GridRun(runs, f"{method}/seed_{seed}", "dqn", argv))
    return grid


def visit_measures(curve, switch_every: int, visits: int) -> list[dict[str, float]]:
    """Each visit's three measures (see the module docstring); NaN where a visit has no
    evaluation."""
    found = []
    for v in range(visits):
        values = between(curve, v * switch_every, (v + 1) * switch_every)
        empty = not values.size
        found.append(
            {
                "entry": float("nan") if empty else float(values[0]),
                "auc": float("nan") if empty else float(np.mean(values)),
                "end": float("nan") if empty else float(np.mean(values[-3:])),
            }
        )
    return found


def analyse(runs: Path, methods, games, scale: Scale, allow_mixed: bool) -> dict:
    comparisons = family(methods, games, scale.visits)  # named before any result is read
    per_run: dict = {m: {} for m in methods}
    run_dirs = {}
    for method in methods:
        for folder in sorted((runs / method).glob("seed_*")):
            run = finished_run(folder, f"{method}/{folder.name}")
            if run is None:
                continue
            curve = eval_curve(run)
            per_run[method][run.seed] = {
                "curve": [curve[0].tolist(), curve[1].tolist()],
                "visits": visit_measures(curve, scale.switch_every, scale.visits),
            }
            run_dirs[f"{method}/{folder.name}"] = folder
    if not run_dirs:
        raise Refused(f"{runs} holds no finished run of {', '.join(methods)}: run the grid first")
    code = provenance(run_dirs, allow_mixed)

    def values(method: str, visit: int, key: str) -> dict[int, float]:
        return {s: r["visits"][visit - 1][key] for s, r in per_run[method].items()}

    tests = {}
    for name in comparisons:
        if name.startswith("none: "):
            later, first = (int(v[1:]) for v in name.removeprefix("none: ").split(" − "))
            sides = (("none", later), ("none", first))
        else:
            visit, pair = name.split(": ")
            a, b = pair.split(" − ")
            sides = ((a, int(visit[1:])), (b, int(visit[1:])))
        for key in MEASURES:
            tests[f"{key}: {name}"] = compare_by_seed(
                values(*sides[0], key), values(*sides[1], key)
            )
    holm_family(tests)
    order = visit_games(games, scale.visits)
    return {
        "scale": asdict(scale),
        "games": order,
        "family": comparisons,
        "summary": {
            m: [
                {key: mean_ci(list(values(m, v, key).values())) for key in MEASURES}
                for v in range(1, scale.visits + 1)
            ]
            for m in methods
        },
        "comparisons": tests,
        "provenance": code,
        "runs": per_run,
    }


def markdown(result: dict, command: str) -> str:
    scale, order = result["scale"], result["games"]
    visits = ", ".join(f"v{i + 1} {g.removeprefix('minatar_')}" for i, g in enumerate(order))
    lines = [
        f"DQN cycling MinAtar games, {scale['switch_every']:,} steps a visit ({visits}), the "
        f"replay buffer kept. Made by `{command}`. Evaluation returns, mean ± 95% t-interval "
        "half-width over seeds; entry: the visit's first evaluation; AUC: the visit's mean; "
        "end: its last three.",
        "",
        "| method | " + " | ".join(f"v{i + 1} {label}" for i in range(len(order))
                                   for label in ("entry", "AUC", "end")) + " |",
        "|---|" + "---|" * (3 * len(order)),
    ]  # fmt: skip
    for method, per_visit in result["summary"].items():
        cells = [fmt(stats[key], 1) for stats in per_visit for key in MEASURES]
        lines.append(f"| `{method}` | " + " | ".join(cells) + " |")
    comparisons, tests = result["family"], result["comparisons"]
    lines += [
        "",
        f"The family, named before the runs were read ({len(comparisons)} comparisons × "
        f"{len(MEASURES)} measures = {len(tests)} tests; `none: v3 − v1`: none's third visit "
        "against its first, of the same game). Welch's 95% interval, p and Holm p:",
        "",
        *family_table(tests, comparisons, MEASURES, paired=False),
        "",
        "Paired by seed (the right reading for the within-run `none:` rows; a seed's methods "
        "share its first visit):",
        "",
        *family_table(tests, comparisons, MEASURES, paired=True),
        "",
        *provenance_lines(result["provenance"]),
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """Evaluation return over the run per method (mean and 95% t-band over seeds), the
    switches marked and each visit's game named."""
    from benchmarks._supervised import band, pyplot, style

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, (method, per_seed) in enumerate(result["runs"].items()):
        if not per_seed:
            continue
        curves = [dict(zip(*r["curve"], strict=True)) for r in per_seed.values()]
        common = sorted(set.intersection(*(set(c) for c in curves)))
        band(ax, common, [[c[t] for t in common] for c in curves], method, style(i))
    every = result["scale"]["switch_every"]
    for v, game in enumerate(result["games"]):
        ax.axvline(v * every, color="0.8", lw=0.8)
        where = ((v + 0.5) * every, 1.0)
        ax.annotate(game.removeprefix("minatar_"), where, xycoords=("data", "axes fraction"),
                    ha="center", va="bottom", fontsize=8)  # fmt: skip
    ax.set(xlabel="env step", ylabel="evaluation return")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    return refusing("minatar_revisit", lambda: run(sys.argv[1:] if argv is None else argv))


def run(argv: list[str]) -> dict:
    own, extra = split_extra(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="reduced")
    parser.add_argument("--seeds", type=int, help="number of seeds, from 1 (default: the scale's)")
    parser.add_argument("--methods", default=",".join(METHODS), help="methods, comma-separated")
    parser.add_argument("--games", default=",".join(GAMES), help="the cycle's games, in order")
    parser.add_argument(
        "--runs", type=Path, default=Path("runs/minatar_revisit"), help="folder of the runs"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/minatar_revisit"), help="output stem"
    )
    parser.add_argument("--jobs", type=int, default=1, help="train.py processes at once")
    parser.add_argument("--analyse-only", action="store_true", help="read the runs, train none")
    parser.add_argument(ALLOW_MIXED, action="store_true", help="analyse runs of several commits")
    args = parser.parse_args(own)
    scale = SCALES[args.scale]
    methods, games = args.methods.split(","), args.games.split(",")
    if not set(methods) <= set(METHODS):
        raise Refused(f"--methods {args.methods}: name some of {', '.join(METHODS)}")
    if scale.visits <= len(games):
        raise Refused(
            f"--games {args.games}: {scale.visits} visits of {len(games)} games revisit none; "
            f"name at most {scale.visits - 1}"
        )
    seeds = list(range(1, 1 + (args.seeds if args.seeds is not None else scale.seeds)))
    if not seeds:
        raise Refused(f"--seeds {args.seeds}: run at least one seed")
    if not args.analyse_only:
        complete(plan(scale, args.runs, methods, games, seeds, extra), args.jobs)
    result = analyse(args.runs, methods, games, scale, args.allow_mixed_commits)
    command = shlex.join(["python", "-m", "benchmarks.evidence.minatar_revisit", *argv])
    result["command"] = command
    write_outputs(args.out, result, markdown(result, command), lambda path: plot(result, path))
    return result


if __name__ == "__main__":
    main()
