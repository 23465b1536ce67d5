"""The FIRE paper's RL protocol at small scale (issue 24, item 1): DQN on MinAtar Space
Invaders, one stationary task, each method applied to the same mid-training state.

Each seed trains once with no method (``none``) for the whole run, saving checkpoints with
the replay buffer every quarter; every other method is a branch (``train.py --branch-from``)
of that seed's run, so that all methods of a seed start from the same networks, optimizer
moments, buffer and random state, as the FIRE paper does "to eliminate randomness before
reinitialization" (arXiv 2602.08040, section 5). Two protocols:

- ``midpoint``: one intervention at the midpoint (the paper's RL setting), from the midpoint
  checkpoint: FIRE (its DQN form: convolutions FIRE'd, linear layers back to their initial
  values, Adam's moments kept, only the rewritten tensors copied to the target), full reset
  (every layer redrawn, optimizer state reset: the crude-reset baseline), shrink & perturb in
  the FIRE paper's DQN form (convolutions ``0.2·θ + 0.8·θ₀``, linear layers back to ``θ₀``),
  plasticity injection of the head, continual backprop from the midpoint on, and FIRE +
  AdamO (AdamO from the midpoint on);
- ``periodic``: FIRE, reset and shrink & perturb every quarter (at 25%, 50% and 75% of the
  run), branched from the first quarter's checkpoint;
- ``every_layer``, the follow-up: FIRE on every layer at the midpoint (``--fire-linear
  fire``), read beside the midpoint's FIRE and reset.

``none`` is the parents themselves. Runs go under ``--runs-dir`` (default
``benchmarks/results/evidence/midpoint``) as ``<protocol>-<method>-s<seed>`` (the follow-up's
as ``midpoint-fire_every_layer-s<seed>``, beside the runs it is read with), two at a time by
default (``benchmarks/_rl_grid.py`` runs them: the parents first, each in a process of its own
writing ``<run>.out`` beside its folder, kept when it fails). The command is resumable: a
finished run is skipped, a stopped one resumed from its checkpoint (``train.py --resume``), a
folder without a checkpoint started again; ``--jobs 1`` runs them one after another in this
process. The analysis is ``python -m benchmarks.midpoint_rl``. Run it from a clean checkout of
one commit (every run records the commit it ran on, and the analysis refuses a grid that mixes
commits)::

    python -m benchmarks.evidence.midpoint_minatar --protocol midpoint --seeds 8
    python -m benchmarks.evidence.midpoint_minatar --protocol periodic --seeds 8
    python -m benchmarks.evidence.midpoint_minatar --dry-run   # the plan, nothing run

Flags it does not know go to every ``train.py`` (the tests shorten ``--learning-starts``).

Every run trains on one thread (``--threads 1``, and ``OMP_NUM_THREADS=1`` in its process); a
MinAtar DQN run does about 280 env steps/s with one update per step on this machine's cores.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks._midpoint import PROTOCOLS, intervention_steps
from benchmarks._rl_grid import ROOT, GridRun, describe, run_grid

GAME = "minatar_space_invaders"


def common_flags(total: int, eval_every: int) -> list[str]:
    """Every run (after ``--agent dqn``): MinAtar DQN's defaults (agents/dqn.py), evaluations
    every ``eval_every`` steps over 10 episodes (ε 0), metrics as often (logged before an
    intervention at the same step), checkpoints with the replay buffer every quarter."""
    return [
        "--env", GAME, "--total-timesteps", str(total),
        "--eval-every", str(eval_every), "--eval-episodes", "10",
        "--metrics-every", str(eval_every), "--save-buffer",
        "--checkpoint-every", str(total // 4), "--threads", "1",
    ]  # fmt: skip


# The paper's DQN shrink & perturb ("SR-DQN" in its code); it keeps Adam's moments and writes
# the blended tensors into the target network.
PAPER_SHRINK_PERTURB = [
    "--shrink", "0.2", "--perturb", "0.8", "--perturb-target", "initial",
    "--shrink-perturb-linear", "initial", "--clear-optimizer", "none", "--target-sync", "rewritten",
]  # fmt: skip


def once_at(flag_prefix: str, steps: list[int]) -> list[str]:
    """An intervention at ``steps`` only: no period, no task-switch trigger needed (one task)."""
    return [f"--{flag_prefix}-at", *map(str, steps), f"--{flag_prefix}-every", "0"]


def method_flags(method: str, steps: list[int]) -> list[str]:
    """The flags of ``method`` acting at ``steps`` (the continuous ones act from the branch)."""
    flags = {
        "fire": once_at("fire", steps),
        "reset": once_at("reset", steps),
        "shrink_perturb": once_at("shrink-perturb", steps) + PAPER_SHRINK_PERTURB,
        "injection": ["--injection-at", *map(str, steps)],
        "cbp": [],
        "fire+adamo": once_at("fire", steps),
        "fire_every_layer": once_at("fire", steps) + ["--fire-linear", "fire"],
    }
    return ["--method", method.removesuffix("_every_layer"), *flags[method]]


def plan(names: list[str], seeds: list[int], total: int, runs_dir: Path, common: list[str]):
    """The grid's runs (:class:`benchmarks._rl_grid.GridRun`, their flags after ``common``):
    parents first (every checkpoint kept), then each protocol's branches seed by seed, so a
    grid stopped part-way compares every method on the seeds it has."""
    runs = [
        GridRun(runs_dir, f"parent-none-s{seed}", "dqn",
                (*common, "--method", "none", "--seed", str(seed), "--keep-checkpoints", "0"))
        for seed in seeds
    ]  # fmt: skip
    for protocol in names:
        steps = intervention_steps(protocol, total)
        for seed in seeds:
            parent = f"parent-none-s{seed}"
            checkpoint = runs_dir / parent / "checkpoints" / f"step_{steps[0]}.pt"
            spec = PROTOCOLS[protocol]
            for method in spec.own_methods:
                argv = ("--branch-from", str(checkpoint), "--keep-checkpoints", "1")
                argv += tuple(method_flags(method, steps))
                runs.append(GridRun(runs_dir, f"{spec.runs}-{method}-s{seed}", "dqn",
                                    (*common, *argv), parent))  # fmt: skip
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=[*PROTOCOLS, "all"], default="all")
    parser.add_argument("--seeds", type=int, default=8, help="seeds 1..N (default 8)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    parser.add_argument(
        "--total-timesteps",
        type=int,
        default=100_000,
        help="steps of every run (default 100k; the tests use a few hundred)",
    )
    parser.add_argument("--eval-every", type=int, default=5_000)
    parser.add_argument(
        "--runs-dir", type=Path, default=ROOT / "benchmarks/results/evidence/midpoint"
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, run nothing")
    args, extra = parser.parse_known_args(argv)  # the rest goes to every train.py
    names = list(PROTOCOLS) if args.protocol == "all" else [args.protocol]
    total = args.total_timesteps
    common = common_flags(total, args.eval_every) + extra
    runs = plan(names, list(range(1, args.seeds + 1)), total, args.runs_dir, common)
    if args.dry_run:
        print("\n".join(describe(runs)))
        return 0
    return 1 if run_grid(runs, args.jobs) else 0


if __name__ == "__main__":
    sys.exit(main())
