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

Measured on the evaluation returns (deterministic policy) of each branch with the measures and
comparisons of ``benchmarks/_midpoint.py``, as the MinAtar midpoint grid
(``benchmarks/midpoint_rl.py``) is: dip (the mean evaluation in a window after the midpoint
minus the mean in a window up to it), recovery (steps until the earlier level is reached again;
censored at the second half's length, the share recovered kept), AUC after the midpoint, final
return; each method against ``none`` and FIRE against each other method, named before any
result is read; the paired interval over seeds primary (the branches of a seed share their
parent), Welch's beside it, Holm over each measure's family. The windows are the MinAtar grid's
(15k and 10k steps of 100k) scaled to the run: 15% and 10% of it. A branch that did not start
from its parent's checkpoint and replay buffer at the midpoint is refused, and so are runs from
several commits or a dirty tree unless ``--allow-mixed-commits``.

Scales (``--scale``): ``reduced`` (the default, for a GPU) is ``humanoid_walk`` (HumanoidBench
``h1-walk-v0`` when ``humanoid_bench`` is installed, else the project's HumanoidBench-style H1,
``docs/environments.md``), 500k agent steps with an action repeat of 2 (1M simulator steps,
as the paper's 1M environment steps), the interventions at 250k, one update per agent step
(the paper: 2, so half its updates) and 5 seeds; ``tiny`` is a CPU
smoke run of the same pipeline (200 steps, the midpoint at 100, small networks, 2 seeds; its
windows of 50 steps hold two evaluations each).

Run: ``python -m benchmarks.evidence.sac_midpoint [--scale tiny] [--jobs N] [-- train.py
flags]`` (flags after ``--`` go to every run, e.g. ``--cudagraphs``). ``benchmarks/_rl_grid.py``
runs the grid: the parents first, then their branches; ``--jobs 1`` (the default) one after
another in this process, more as that many train.py processes, each writing ``<run>.out``
beside its folder (kept when it fails). Runs already finished are skipped, stopped ones resumed
from their checkpoint and ones without a checkpoint started again, so the command can be run
again after a stop. ``--analyse-only`` reads the finished runs without training. Writes
``<out>.{md,json,png}``; bad input is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks import _midpoint
from benchmarks._rl_grid import (
    ALLOW_MIXED,
    GridRun,
    Refused,
    complete,
    eval_curve,
    finished_run,
    provenance,
    refusing,
    split_extra,
    write_outputs,
)
from experiments.runs import CONFIG_FILE, read_json

METHODS = ("none", "fire", "reset", "shrink_perturb")
AT_FLAG = {"fire": "--fire-at", "reset": "--reset-at", "shrink_perturb": "--shrink-perturb-at"}
"""The flag that applies a method once at a step (each method's period is turned off)."""
PERIODS_OFF = ("--fire-every", "0", "--reset-every", "0", "--shrink-perturb-every", "0")


@dataclass(frozen=True)
class Scale:
    env: str
    total: int
    """agent steps of a whole run; the parent trains half of them"""
    seeds: int
    eval_every: int
    eval_episodes: int
    windows: tuple[int, int]
    """the dip's windows: steps up to the midpoint and after it"""
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
        windows=(75_000, 50_000),
        checkpoint_every=50_000,
        flags=("--action-repeat", "2", "--metrics-every", "10000"),
    ),
    "tiny": Scale(
        env="humanoid_walk",
        total=200,
        seeds=2,
        eval_every=25,
        eval_episodes=1,
        windows=(50, 50),
        checkpoint_every=200,
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
        ),
    ),
}


def parent_name(seed: int) -> str:
    return f"parent/seed_{seed}"


def plan(scale: Scale, runs: Path, methods: list[str], seeds: list[int], extra: list[str]):
    """The grid's runs (:class:`benchmarks._rl_grid.GridRun`): each seed's parent to the
    midpoint, with its replay buffer, then one branch per method from its checkpoint."""
    common = ("--eval-every", str(scale.eval_every), "--eval-episodes", str(scale.eval_episodes))
    common += (*scale.flags, *extra)
    mid = str(scale.midpoint)
    grid = []
    for seed in seeds:
        start = ("--env", scale.env, "--seed", str(seed), "--method", "none")
        start += ("--total-timesteps", mid, "--save-buffer", "--checkpoint-every", mid)
        start += ("--keep-checkpoints", "0", *common)
        grid.append(GridRun(runs, parent_name(seed), "sac", start))
    for seed in seeds:
        checkpoint = runs / parent_name(seed) / "checkpoints" / f"step_{mid}.pt"
        for method in methods:
            start = ("--branch-from", str(checkpoint), "--method", method)
            start += (AT_FLAG[method], mid) if method in AT_FLAG else ()
            start += (*PERIODS_OFF, "--total-timesteps", str(scale.total))
            start += ("--checkpoint-every", str(scale.checkpoint_every), "--keep-checkpoints", "1")
            start += common
            grid.append(GridRun(runs, f"{method}/seed_{seed}", "sac", start, parent_name(seed)))
    return grid


def read_branches(runs: Path, methods: list[str], scale: Scale) -> dict:
    """The finished branches by method and seed (others named on stderr); refuses a branch
    that did not start from its parent's checkpoint and replay buffer at the midpoint."""
    found: dict = {m: {} for m in methods}
    for method in methods:
        for run_dir in sorted((runs / method).glob("seed_*")):
            run = finished_run(run_dir, f"{method}/{run_dir.name}")
            if run is None:
                continue
            record = (read_json(run_dir / CONFIG_FILE) or {}).get("branch", {})
            if record.get("step") != scale.midpoint or record.get("buffer") != "saved":
                raise Refused(
                    f"{run_dir} did not branch at step {scale.midpoint} with its parent's replay "
                    f"buffer (branch record {record}): delete it and run the grid again"
                )
            found[method][run.seed] = run
    return found


def analyse(runs: Path, methods: list[str], scale: Scale, allow_mixed: bool) -> dict:
    """The measures and comparisons of the grid's finished branches
    (:func:`benchmarks._midpoint.analyse`, the one protocol ``midpoint``)."""
    branches = read_branches(runs, methods, scale)
    if not any(branches.values()):
        raise Refused(f"{runs} holds no finished branch: run the grid first")
    seeds = sorted({seed for by_seed in branches.values() for seed in by_seed})
    run_dirs = {parent_name(s): runs / parent_name(s) for s in seeds}
    run_dirs.update({f"{m}/seed_{s}": r.dir for m, by_seed in branches.items()
                     for s, r in by_seed.items()})  # fmt: skip
    code = provenance(run_dirs, allow_mixed)
    groups = {m: {s: eval_curve(r) for s, r in branches[m].items()} for m in methods}
    groups = {"none": groups.pop("none"), **groups}
    data = _midpoint.analyse(groups, [scale.midpoint], scale.total, scale.windows, scale.eval_every)
    return {
        "scale": asdict(scale),
        "env": next(r for by_seed in branches.values() for r in by_seed.values()).env,
        "total_timesteps": scale.total,
        "windows": dict(zip(("before", "after"), scale.windows, strict=True)),
        "protocols": {"midpoint": data},
        "provenance": code,
    }


def markdown(result: dict) -> str:
    what = (
        f"SAC on `{result['env']}`, {result['total_timesteps']:,} agent steps; each method a "
        f"branch of its seed's parent at step {result['scale']['total'] // 2:,}, on the "
        "parent's checkpoint and replay buffer (`benchmarks/evidence/sac_midpoint.py`)"
    )
    windows = (result["windows"]["before"], result["windows"]["after"])
    return _midpoint.markdown(_midpoint.intro(what, windows), result)


def main(argv: list[str] | None = None) -> dict:
    return refusing("sac_midpoint", lambda: run(sys.argv[1:] if argv is None else argv))


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
        complete(plan(scale, args.runs, methods, seeds, extra), args.jobs)
    command = shlex.join(["python", "-m", "benchmarks.evidence.sac_midpoint", *argv])
    result = {"command": command, **analyse(args.runs, methods, scale, args.allow_mixed_commits)}
    write_outputs(
        args.out, result, markdown(result), lambda path: _midpoint.plot(result, path, "agent steps")
    )
    return result


if __name__ == "__main__":
    main()
