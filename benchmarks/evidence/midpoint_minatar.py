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
  run), branched from the first quarter's checkpoint.

``none`` is the parents themselves. Runs go under ``--runs-dir`` (default
``benchmarks/results/evidence/midpoint``) as ``<protocol>-<method>-s<seed>``, two at a time by
default. The command is resumable: a finished run is skipped, a stopped one resumed from its
checkpoint (``train.py --resume``), a folder without a checkpoint started again. The analysis
is ``python -m benchmarks.midpoint_rl``. Run it from a clean checkout of one commit (every run
records the commit it ran on, and the analysis refuses a grid that mixes commits)::

    python -m benchmarks.evidence.midpoint_minatar --protocol midpoint --seeds 8
    python -m benchmarks.evidence.midpoint_minatar --protocol periodic --seeds 8
    python -m benchmarks.evidence.midpoint_minatar --dry-run   # the plan, nothing run

Flags it does not know go to every ``train.py`` (the tests shorten ``--learning-starts``).

Every run is one process on one thread (``OMP_NUM_THREADS=1``); a MinAtar DQN run does about
280 env steps/s with one update per step on this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GAME = "minatar_space_invaders"


def common_flags(total: int, eval_every: int) -> list[str]:
    """Every run: MinAtar DQN's defaults (agents/dqn.py), evaluations every ``eval_every``
    steps over 10 episodes (ε 0), metrics as often (logged before an intervention at the same
    step), checkpoints with the replay buffer every quarter."""
    return [
        "--agent", "dqn", "--env", GAME, "--total-timesteps", str(total),
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
MIDPOINT_METHODS = ["fire", "reset", "shrink_perturb", "injection", "cbp", "fire+adamo"]
PERIODIC_METHODS = ["fire", "reset", "shrink_perturb"]


def protocols(total: int) -> dict[str, tuple[int, list[int], list[str]]]:
    """Each protocol's (branch step, intervention steps, methods)."""
    quarter = total // 4
    return {
        "midpoint": (2 * quarter, [2 * quarter], MIDPOINT_METHODS),
        "periodic": (quarter, [quarter, 2 * quarter, 3 * quarter], PERIODIC_METHODS),
    }


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
    }
    return ["--method", method, *flags[method]]


@dataclass(frozen=True)
class PlannedRun:
    name: str
    argv: list[str]
    parent: str | None = None  # a run that must finish (its branch checkpoint) first


def plan(names: list[str], seeds: list[int], total: int) -> list[PlannedRun]:
    """Parents first (every checkpoint kept), then each protocol's branches seed by seed, so
    a grid stopped part-way compares every method on the seeds it has."""
    runs = [
        PlannedRun(f"parent-none-s{seed}",
                   ["--method", "none", "--seed", str(seed), "--keep-checkpoints", "0"])
        for seed in seeds
    ]  # fmt: skip
    for protocol in names:
        branch_step, steps, methods = protocols(total)[protocol]
        for seed in seeds:
            parent = f"parent-none-s{seed}"
            for method in methods:
                checkpoint = f"{parent}/checkpoints/step_{branch_step}.pt"
                runs.append(
                    PlannedRun(
                        f"{protocol}-{method}-s{seed}",
                        [
                            "--branch-from",
                            checkpoint,
                            "--keep-checkpoints",
                            "1",
                            *method_flags(method, steps),
                        ],
                        parent,
                    )
                )
    return runs


def status(run_dir: Path) -> str:
    """``finished``, ``resumable`` (a checkpoint to continue from) or ``new``."""
    try:
        if json.loads((run_dir / "summary.json").read_text()).get("status") == "finished":
            return "finished"
    except (OSError, ValueError):
        pass
    if any((run_dir / "checkpoints").glob("step_*.pt")):
        return "resumable"
    return "new"


def command(run: PlannedRun, runs_dir: Path, common: list[str]) -> list[str]:
    run_dir = runs_dir / run.name
    if status(run_dir) == "resumable":
        return [sys.executable, "train.py", "--agent", "dqn", "--resume", str(run_dir)]
    argv = [a if not a.endswith(".pt") else str(runs_dir / a) for a in run.argv]
    return [sys.executable, "train.py", *common, *argv,
            "--runs-dir", str(runs_dir), "--run-name", run.name]  # fmt: skip


def execute(run: PlannedRun, runs_dir: Path, common: list[str]) -> int:
    run_dir = runs_dir / run.name
    if status(run_dir) == "new" and run_dir.exists():
        shutil.rmtree(run_dir)  # nothing to continue from: start it again
    cmd = command(run, runs_dir, common)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.time()
    runs_dir.mkdir(parents=True, exist_ok=True)
    with open(runs_dir / f"{run.name}.out", "w") as out:
        code = subprocess.call(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    print(f"{run.name}: exit {code} after {time.time() - start:.0f} s", flush=True)
    if code == 0:
        (runs_dir / f"{run.name}.out").unlink()
    return code


def run_grid(runs: list[PlannedRun], runs_dir: Path, common: list[str], jobs: int) -> int:
    """Run the plan ``jobs`` at a time, the parents before any branch. Returns the failures."""
    todo = [r for r in runs if status(runs_dir / r.name) != "finished"]
    failed: set[str] = set()

    def wave(wave_runs: list[PlannedRun]) -> None:
        codes = pool.map(lambda r: execute(r, runs_dir, common), wave_runs)
        failed.update(run.name for run, code in zip(wave_runs, codes, strict=True) if code)

    with ThreadPoolExecutor(jobs) as pool:
        wave([r for r in todo if r.parent is None])
        wave([r for r in todo if r.parent is not None and r.parent not in failed])
    return len(failed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--protocol", choices=["midpoint", "periodic", "all"], default="all")
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
    names = ["midpoint", "periodic"] if args.protocol == "all" else [args.protocol]
    total = args.total_timesteps
    runs = plan(names, list(range(1, args.seeds + 1)), total)
    common = common_flags(total, args.eval_every) + extra
    if args.dry_run:
        for run in runs:
            line = " ".join(command(run, args.runs_dir, common))
            print(f"{status(args.runs_dir / run.name):9s} {line}")
        return 0
    failures = run_grid(runs, args.runs_dir, common, args.jobs)
    if failures:
        print(f"{failures} runs failed: see their .out files in {args.runs_dir}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
