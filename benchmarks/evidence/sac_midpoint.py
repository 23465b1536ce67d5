"""SAC on a humanoid with one intervention at the midpoint: the FIRE paper's SAC protocol at
reduced scale (issue 24, item 6), its runs and their analysis.

The FIRE paper (arXiv 2602.08040) trains SimBa SAC on HumanoidBench for 1M environment steps
and applies each method once, at the midpoint, to the same checkpoint and replay buffer (its
``save/load`` runs: "to eliminate randomness before reinitialization"). Here, per seed:

1. a parent run trains SAC (``none``) to the midpoint and saves a checkpoint with its replay
   buffer (``--save-buffer``);
2. one branch per method starts from that checkpoint (``train.py --branch-from``) and trains
   to the end: ``none`` (no intervention: the parent continued), ``fire``, ``reset`` and
   ``shrink_perturb``, each applied once at the midpoint (``--fire-at`` etc., periods off).
   The branches of a seed share everything before the midpoint; a branch's scalars begin with
   its parent's rows, so its curve covers the whole run.

Measured on the evaluation returns (deterministic policy) of each branch, with ``before`` the
mean of the last three evaluations at or before the midpoint (the same for every branch of a
seed):

- **dip**: ``before`` minus the lowest evaluation in the ``--dip-window`` steps after the
  midpoint (positive: return lost);
- **recovery**: steps after the midpoint until an evaluation first reaches ``before``; a
  branch that never does counts as the whole second half (censored: the table says how many);
- **AUC after**: the mean evaluation return after the midpoint;
- **final**: the mean of the last three evaluations.

The family of comparisons is fixed here before any result is read (:func:`family`): each
method against ``none`` and FIRE against each other method, on the four measures. Welch's
95% interval of each difference is primary, with Holm-adjusted p-values over the family; the
branches of a seed share their parent, so the paired interval over seeds is given beside it
(Holm over the family too). Runs from several commits or a dirty tree are refused unless
``--allow-mixed-commits``.

Scales (``--scale``): ``reduced`` (the default, for a GPU) is ``humanoid_walk`` (HumanoidBench
``h1-walk-v0`` when ``humanoid_bench`` is installed, else the project's HumanoidBench-style H1,
``docs/environments.md``), 500k agent steps with an action repeat of 2 (1M simulator steps,
as the paper's 1M environment steps), the interventions at 250k, one update per agent step
(the paper: 2, so half its updates) and 5 seeds; ``tiny`` is a CPU
smoke run of the same pipeline (400 steps, the midpoint at 200, small networks, 2 seeds).

Run: ``python benchmarks/evidence/sac_midpoint.py [--scale tiny] [--jobs N] [-- train.py
flags]`` (flags after ``--`` go to every run, e.g. ``--cudagraphs``); runs already finished
are skipped and unfinished ones resumed, so the command can be run again after a stop.
``--analyse-only`` reads the runs without training. Writes ``<out>.{md,json,png}``; bad input
is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks._rl_grid import (  # noqa: E402
    ALLOW_MIXED,
    Refused,
    between,
    eval_curve,
    provenance,
    provenance_line,
    resume_or,
    split_extra,
    train,
    write_outputs,
)
from benchmarks._stats import (  # noqa: E402
    compare_by_seed,
    family_table,
    fmt,
    holm_family,
    mean_ci,
)

METHODS = ("none", "fire", "reset", "shrink_perturb")
AT_FLAG = {"fire": "--fire-at", "reset": "--reset-at", "shrink_perturb": "--shrink-perturb-at"}
"""The flag that applies a method once at a step (each method's period is turned off)."""
PERIODS_OFF = ["--fire-every", "0", "--reset-every", "0", "--shrink-perturb-every", "0"]
MEASURES = {
    "dip": "dip after the midpoint",
    "recovery": "steps to recover",
    "auc_after": "AUC after the midpoint",
    "final": "final return",
}


@dataclass(frozen=True)
class Scale:
    env: str
    total: int
    """agent steps of a whole run; the parent trains half of them"""
    seeds: int
    eval_every: int
    eval_episodes: int
    dip_window: int
    """steps after the midpoint in which the dip is looked for"""
    checkpoint_every: int
    """a branch's checkpoint period (with its replay buffer, so that a resume is exact)"""
    flags: tuple[str, ...]
    """further train.py settings of every run"""

    @property
    def midpoint(self) -> int:
        return self.total // 2


SCALES = {
    "reduced": Scale(
        env="humanoid_walk",
        total=500_000,
        seeds=5,
        eval_every=10_000,
        eval_episodes=5,
        dip_window=50_000,
        checkpoint_every=50_000,
        flags=("--action-repeat", "2", "--metrics-every", "10000"),
    ),
    "tiny": Scale(
        env="humanoid_walk",
        total=400,
        seeds=2,
        eval_every=50,
        eval_episodes=1,
        dip_window=100,
        checkpoint_every=400,
        flags=(
            "--learning-starts",
            "50",
            "--batch-size",
            "32",
            "--hidden-size",
            "32",
            "--buffer-size",
            "1000",
            "--metrics-every",
            "0",
            "--verbose",
            "0",
        ),  # fmt: skip
    ),
}


def family(methods: list[str]) -> list[str]:
    """The comparisons tested, from the method list alone: ``"a − b"`` for every method
    against ``none`` and FIRE against every other method but ``none``."""
    names = [f"{m} − none" for m in methods if "none" in methods and m != "none"]
    names += [f"fire − {m}" for m in methods if "fire" in methods and m not in ("none", "fire")]
    return names


def parent_dir(runs: Path, seed: int) -> Path:
    return runs / "parent" / f"seed_{seed}"


def branch_dir(runs: Path, method: str, seed: int) -> Path:
    return runs / method / f"seed_{seed}"


def commands(scale: Scale, runs: Path, methods: list[str], seeds: list[int], extra: list[str]):
    """The train.py argument lists still to run: the parents', then the branches'."""
    common = ["--eval-every", str(scale.eval_every), "--eval-episodes", str(scale.eval_episodes)]
    common += [*scale.flags, *extra]
    parents, branches = [], []
    for seed in seeds:
        parent = parent_dir(runs, seed)
        start = ["--agent", "sac", "--env", scale.env, "--seed", str(seed), "--method", "none"]
        start += ["--total-timesteps", str(scale.midpoint), "--save-buffer"]
        start += ["--checkpoint-every", str(scale.midpoint), "--keep-checkpoints", "0"]
        start += ["--runs-dir", str(parent.parent), "--run-name", parent.name, *common]
        parents.append(resume_or(parent, "sac", start))
        checkpoint = parent / "checkpoints" / f"step_{scale.midpoint}.pt"
        for method in methods:
            run_dir = branch_dir(runs, method, seed)
            start = ["--agent", "sac", "--branch-from", str(checkpoint), "--method", method]
            if method in AT_FLAG:
                start += [AT_FLAG[method], str(scale.midpoint)]
            start += [*PERIODS_OFF, "--total-timesteps", str(scale.total)]
            start += ["--checkpoint-every", str(scale.checkpoint_every), "--keep-checkpoints", "1"]
            start += ["--runs-dir", str(run_dir.parent), "--run-name", run_dir.name, *common]
            branches.append(resume_or(run_dir, "sac", start))
    return [c for c in parents if c], [c for c in branches if c]


def measures(curve: tuple[np.ndarray, np.ndarray], midpoint: int, total: int, window: int):
    """A branch's four measures (see the module docstring) and whether it recovered."""
    steps, values = curve
    before = float(np.mean(between(curve, -1, midpoint)[-3:]))
    after_steps, after = steps[steps > midpoint], values[steps > midpoint]
    reached = after_steps[after >= before]
    return {
        "before": before,
        "dip": before - float(np.min(between(curve, midpoint, midpoint + window))),
        "recovery": float(reached[0] - midpoint) if reached.size else float(total - midpoint),
        "recovered": bool(reached.size),
        "auc_after": float(np.mean(after)),
        "final": float(np.mean(values[-3:])),
    }


def read_branches(runs: Path, methods: list[str], scale: Scale) -> dict:
    """Every finished branch's measures and curve by method and seed; refuses a branch that
    did not start from its parent's checkpoint and replay buffer at the midpoint."""
    found: dict = {m: {} for m in methods}
    for method in methods:
        for run_dir in sorted((runs / method).glob("seed_*")):
            config = json.loads((run_dir / "config.json").read_text())
            record = config.get("branch", {})
            if record.get("step") != scale.midpoint or record.get("buffer") != "saved":
                raise Refused(
                    f"{run_dir} did not branch at step {scale.midpoint} with its parent's replay "
                    f"buffer (branch record {record}): delete it and run the grid again"
                )
            curve = eval_curve(run_dir)
            if not (curve[0] > scale.midpoint).any():
                continue  # not evaluated after the midpoint yet
            found[method][config["seed"]] = {
                "curve": [curve[0].tolist(), curve[1].tolist()],
                **measures(curve, scale.midpoint, scale.total, scale.dip_window),
            }
    return found


def analyse(runs: Path, methods: list[str], scale: Scale, allow_mixed: bool) -> dict:
    comparisons = family(methods)  # named before any result is read
    branches = read_branches(runs, methods, scale)
    if not any(branches.values()):
        raise Refused(f"{runs} holds no branch evaluated after the midpoint: run the grid first")
    configs = {
        f"{m}, seed {s}": branch_dir(runs, m, s) / "config.json"
        for m in methods
        for s in branches[m]
    }
    configs.update(
        {f"parent, seed {s}": parent_dir(runs, s) / "config.json" for s in branches["none"]}
    )
    code = provenance(configs, allow_mixed)
    values = {m: {key: {s: b[key] for s, b in branches[m].items()} for key in MEASURES}
              for m in methods}  # fmt: skip
    tests = {}
    for name in comparisons:
        a, b = name.split(" − ")
        for key in MEASURES:
            tests[f"{key}: {name}"] = compare_by_seed(values[a][key], values[b][key])
    holm_family(tests)
    return {
        "scale": asdict(scale),
        "midpoint": scale.midpoint,
        "family": comparisons,
        "summary": {
            m: {
                **{key: mean_ci(list(values[m][key].values())) for key in MEASURES},
                "before": mean_ci([b["before"] for b in branches[m].values()]),
                "recovered": sum(b["recovered"] for b in branches[m].values()),
                "runs": len(branches[m]),
            }
            for m in methods
        },
        "comparisons": tests,
        "provenance": code,
        "branches": branches,
    }


def markdown(result: dict, command: str) -> str:
    scale, mid = result["scale"], result["midpoint"]
    lines = [
        f"SAC on `{scale['env']}`, {scale['total']:,} steps, each method once at step {mid:,} "
        f"on the parent's checkpoint and replay buffer. Made by `{command}`. Mean ± 95% "
        f"t-interval half-width over seeds; dip: return before the midpoint minus the lowest "
        f"evaluation in the {scale['dip_window']:,} steps after it; recovery: steps until an "
        "evaluation reaches the return before the midpoint (censored at the second half's "
        "length for a branch that never does).",
        "",
        "| method | runs | return before | " + " | ".join(MEASURES.values()) + " | recovered |",
        "|---|---|---|" + "---|" * len(MEASURES) + "---|",
    ]
    for method, stats in result["summary"].items():
        cells = [fmt(stats[k], 1) for k in ("before", *MEASURES)]
        lines.append(
            f"| `{method}` | {stats['runs']} | " + " | ".join(cells)
            + f" | {stats['recovered']} of {stats['runs']} |"
        )  # fmt: skip
    comparisons, tests = result["family"], result["comparisons"]
    lines += [
        "",
        f"The family, named before the runs were read ({len(comparisons)} comparisons × "
        f"{len(MEASURES)} measures = {len(tests)} tests): differences of means with Welch's 95% "
        "interval, two-sided p and Holm-adjusted p over the family.",
        "",
        *family_table(tests, comparisons, MEASURES, paired=False),
        "",
        "Paired by seed (the branches of a seed share their parent): mean per-seed difference, "
        "paired 95% interval, p, Holm p.",
        "",
        *family_table(tests, comparisons, MEASURES, paired=True),
        "",
        provenance_line(result["provenance"]),
    ]
    return "\n".join(lines) + "\n"


def plot(result: dict, path: Path) -> None:
    """Evaluation return against steps per method (mean and 95% t-band over seeds on the
    steps every branch evaluated), the midpoint marked."""
    from benchmarks._supervised import band, pyplot, style

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for i, (method, per_seed) in enumerate(result["branches"].items()):
        if not per_seed:
            continue
        curves = [dict(zip(*b["curve"], strict=True)) for b in per_seed.values()]
        common = sorted(set.intersection(*(set(c) for c in curves)))
        band(ax, common, [[c[t] for t in common] for c in curves], method, style(i))
    ax.axvline(result["midpoint"], color="0.6", lw=0.8, ls="--")
    ax.set(
        xlabel="agent step",
        ylabel="evaluation return",
        title=f"SAC on {result['scale']['env']}: one intervention at the midpoint",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except Refused as err:
        print(f"sac_midpoint.py: {err}", file=sys.stderr)
        raise SystemExit(2) from None


def run(argv: list[str]) -> dict:
    own, extra = split_extra(argv)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", choices=SCALES, default="reduced")
    parser.add_argument("--seeds", type=int, help="number of seeds, from 1 (default: the scale's)")
    parser.add_argument("--methods", default=",".join(METHODS), help="branches' methods")
    parser.add_argument(
        "--runs", type=Path, default=Path("runs/sac_midpoint"), help="folder of the grid's runs"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/sac_midpoint"), help="output stem"
    )
    parser.add_argument("--jobs", type=int, default=1, help="train.py processes at once")
    parser.add_argument("--analyse-only", action="store_true", help="read the runs, train none")
    parser.add_argument(ALLOW_MIXED, action="store_true", help="analyse runs of several commits")
    args = parser.parse_args(own)
    scale = SCALES[args.scale]
    methods = args.methods.split(",")
    if "none" not in methods or not set(methods) <= set(METHODS):
        raise Refused(
            f"--methods {args.methods}: name some of {', '.join(METHODS)}, none among them "
            "(the comparisons are against it)"
        )
    seeds = list(range(1, 1 + (args.seeds if args.seeds is not None else scale.seeds)))
    if not seeds:
        raise Refused(f"--seeds {args.seeds}: run at least one seed")
    if not args.analyse_only:
        parents, branches = commands(scale, args.runs, methods, seeds, extra)
        train(parents, args.jobs, args.runs / "logs" / "parents")
        train(branches, args.jobs, args.runs / "logs" / "branches")
    result = analyse(args.runs, methods, scale, args.allow_mixed_commits)
    command = shlex.join(["python", "benchmarks/evidence/sac_midpoint.py", *argv])
    result["command"] = command
    write_outputs(args.out, result, markdown(result, command), lambda path: plot(result, path))
    return result


if __name__ == "__main__":
    main()
