"""How many torch CPU threads should a run use? Each agent's steady training speed at 1 and 2.

Every measurement is its own ``train.py`` process (torch fixes its thread pools once per
process), the thread counts alternate, and the figure is the summary's ``train_sps`` (env steps
per second from 100 steps after the first update; compilation and warm-up excluded). The
machine's load average is printed beside each run: on a 2-core machine the question is how
torch's threads fare when the cores are also busy with the env, the logger and anything else.

Run: ``python -m benchmarks.threads`` (``--repeats``, ``--threads 1 2 4``). Writes
``benchmarks/results/threads.json`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

CASES = {
    "SAC, Humanoid-v5, 256-256, batch 256": [
        "--agent", "sac", "--env", "Humanoid-v5", "--total-timesteps", "1500",
        "--learning-starts", "500",
    ],
    "DQN, CartPole-v1, CleanRL settings": [
        "--agent", "dqn", "--env", "CartPole-v1", "--total-timesteps", "20000",
    ],
    "PPO, CartPole-v1, CleanRL settings": [
        "--agent", "ppo", "--env", "CartPole-v1", "--total-timesteps", "20480",
    ],
    "DQN, MinAtar Breakout, 1 update/step": [
        "--agent", "dqn", "--env", "minatar_breakout", "--total-timesteps", "3000",
        "--learning-starts", "1000",
    ],
}  # fmt: skip


def train_sps(case: list[str], threads: int) -> float:
    """One run of ``case`` with ``threads`` torch threads; its steady steps/s."""
    with tempfile.TemporaryDirectory() as runs:
        command = [
            sys.executable, str(ROOT / "train.py"), *case, "--threads", str(threads),
            "--eval-episodes", "0", "--metrics-every", "0", "--checkpoint-every", "0",
            "--verbose", "0", "--runs-dir", runs, "--run-name", "timed",
        ]  # fmt: skip
        # the environment's own thread pools (OpenMP, MKL) follow --threads too
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        subprocess.run(command, check=True, capture_output=True, env=env)
        summary = json.loads((Path(runs) / "timed" / "summary.json").read_text())
    return summary["train_sps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    results = {}
    for name, case in CASES.items():
        runs: dict[int, list[float]] = {n: [] for n in args.threads}
        for repeat in range(args.repeats):
            for threads in args.threads:
                sps = train_sps(case, threads)
                runs[threads].append(sps)
                print(
                    f"{name} | {threads} thread(s) | run {repeat + 1} | {sps:.0f} steps/s | "
                    f"load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        results[name] = {str(n): values for n, values in runs.items()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "threads.json").write_text(json.dumps(results, indent=2))
    header = " | ".join(f"{n} thread{'s' if n > 1 else ''}" for n in args.threads)
    print(f"\n| run | {header} | 1 vs {args.threads[-1]} |")
    print("|---|" + "---|" * (len(args.threads) + 1))
    for name, runs in results.items():
        medians = [statistics.median(runs[str(n)]) for n in args.threads]
        cells = " | ".join(f"{m:.0f}" for m in medians)
        print(f"| {name} | {cells} | {medians[0] / medians[-1]:.2f}× |")


if __name__ == "__main__":
    main()
