"""Training speed of our SAC against Stable-Baselines3's SAC, side by side in one run.

Same hyperparameters for both: 256-256 ReLU networks, batch 256, replay 1e6, one gradient
step per env step (ours updates the policy every 2 steps twice, the same number of updates),
autotuned entropy, no evaluation or logging in the timed window. The figure is steady-state
env steps/s from 100 updates after ``learning_starts`` on (random-action warm-up and the
compilation of ``--compile`` excluded). ``--matmul-precision`` applies to both agents.

Run: ``python benchmarks/sps.py`` (``--env``, ``--steps``, ``--threads``, ``--compile``,
``--matmul-precision``). Needs the
``humanoid`` extra for Humanoid-v5 and stable-baselines3. Appends to
``benchmarks/results/sps.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results"


def ours(env: str, learning_starts: int, steps: int, device: str, compile: bool) -> float:
    from agents import sac

    with tempfile.TemporaryDirectory() as runs:
        args = sac.Args(
            env=env,
            total_timesteps=learning_starts + steps,
            learning_starts=learning_starts,
            eval_every=0,
            eval_episodes=0,
            metrics_every=0,
            checkpoint_every=0,
            runs_dir=runs,
            device=device,
            compile=compile,
            matmul_precision=torch.get_float32_matmul_precision(),
        )
        return sac.main(args)["train_sps"]


def sb3_sac(env: str, learning_starts: int, steps: int, device: str) -> float:
    from stable_baselines3 import SAC
    from stable_baselines3.common.callbacks import BaseCallback

    from envs import make_env

    class Clock(BaseCallback):
        start: tuple[int, float] | None = None

        def _on_step(self) -> bool:
            if self.start is None and self.num_timesteps > learning_starts + 100:
                self.start = (self.num_timesteps, time.perf_counter())
            return True

    model = SAC(
        "MlpPolicy",
        make_env(env, seed=1),
        learning_rate=3e-4,
        buffer_size=1_000_000,
        learning_starts=learning_starts,
        batch_size=256,
        train_freq=1,
        gradient_steps=1,
        policy_kwargs={"net_arch": [256, 256]},
        device=device,
        seed=1,
    )
    clock = Clock()
    model.learn(learning_starts + steps, callback=clock)
    end = time.perf_counter()
    return (model.num_timesteps - clock.start[0]) / (end - clock.start[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Humanoid-v5")
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=1500, help="timed steps after warm-up")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each")
    parser.add_argument("--compile", action="store_true", help="ours with torch.compile")
    parser.add_argument(
        "--matmul-precision",
        default="highest",
        choices=["highest", "high", "medium"],
        help="float32 matmul precision of both agents",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision(args.matmul_precision)

    ours_runs, sb3_runs = [], []
    for _ in range(args.repeats):  # alternate, so a change of machine load hits both alike
        ours_runs.append(
            ours(args.env, args.learning_starts, args.steps, args.device, args.compile)
        )
        sb3_runs.append(sb3_sac(args.env, args.learning_starts, args.steps, args.device))
        print(f"ours {ours_runs[-1]:6.1f}  SB3 {sb3_runs[-1]:6.1f} steps/s", flush=True)
    ours_sps, sb3_sps = statistics.median(ours_runs), statistics.median(sb3_runs)
    print(
        f"median: ours SAC {ours_sps:.1f}, SB3 SAC {sb3_sps:.1f} steps/s; "
        f"ratio {ours_sps / sb3_sps:.2f}"
    )

    import stable_baselines3

    RESULTS.mkdir(exist_ok=True)
    record = {
        "env": args.env,
        "device": args.device,
        "threads": args.threads,
        "compile": args.compile,
        "matmul_precision": args.matmul_precision,
        "timed_steps": args.steps,
        "ours_sps": ours_sps,
        "sb3_sps": sb3_sps,
        "ours_runs": ours_runs,
        "sb3_runs": sb3_runs,
        "ratio": ours_sps / sb3_sps,
        "torch": torch.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    with open(RESULTS / "sps.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
