"""Training speed of our DQN (``agents/dqn.py``) and Stable-Baselines3's ``DQN`` on CartPole-v1.

Both get CleanRL ``dqn.py``'s hyperparameters (120-84 MLP, lr 2.5e-4, buffer 10k, batch 128,
learning starts 10k, one update every 10 env steps, hard target copy every 500, ε 1 → 0.05 over
half the run), one environment and one torch thread. The timed window is the steady state
after learning starts: env steps ``--skip`` to ``--skip + --steps`` (ε is already at its end
value there, so every step runs a forward pass). Differences that remain: SB3 clips the
gradient norm at 10 and uses the Huber loss; ours uses MSE on vector observations and also
writes TensorBoard/JSONL scalars. Each side runs ``--repeats`` times, alternating.

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.sps_dqn`` and copy the printed lines into
``benchmarks/learning_dqn.md``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import gymnasium as gym
import torch

from experiments.runs import run_rows

HPARAMS = {
    "learning_rate": 2.5e-4,
    "buffer_size": 10_000,
    "batch_size": 128,
    "learning_starts": 10_000,
    "train_frequency": 10,
    "target_network_frequency": 500,
    "gamma": 0.99,
    "tau": 1.0,
    "start_e": 1.0,
    "end_e": 0.05,
    "exploration_fraction": 0.5,
}


def ours(skip: int, steps: int, seed: int) -> float:
    """Steady-state steps/s of agents.dqn between env steps ``skip`` and ``skip + steps``."""
    from agents import dqn

    with tempfile.TemporaryDirectory() as runs_dir:
        summary = dqn.main(
            dqn.Args(
                env="CartPole-v1",
                total_timesteps=skip + steps,
                seed=seed,
                device="cpu",
                eval_every=0,
                eval_episodes=0,
                checkpoint_every=0,
                metrics_every=skip,  # logs the cumulative SPS at `skip` and `skip + steps`
                runs_dir=runs_dir,
                exp_name=f"sps{seed}",
                **HPARAMS,
            )
        )
        sps = {
            row["step"]: row["charts/SPS"]
            for row in run_rows(summary["run_dir"])
            if "charts/SPS" in row
        }
    elapsed = (skip + steps) / sps[skip + steps] - skip / sps[skip]  # the logger's clock
    return steps / elapsed


def sb3(skip: int, steps: int, seed: int) -> float:
    """Steady-state steps/s of stable_baselines3.DQN over the same window."""
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import BaseCallback

    class Clock(BaseCallback):
        def __init__(self):
            super().__init__()
            self.times: dict[int, float] = {}

        def _on_step(self) -> bool:
            if self.num_timesteps in (skip, skip + steps):
                self.times[self.num_timesteps] = time.perf_counter()
            return True

    model = DQN(
        "MlpPolicy",
        gym.make("CartPole-v1"),
        learning_rate=HPARAMS["learning_rate"],
        buffer_size=HPARAMS["buffer_size"],
        learning_starts=HPARAMS["learning_starts"],
        batch_size=HPARAMS["batch_size"],
        tau=HPARAMS["tau"],
        gamma=HPARAMS["gamma"],
        train_freq=HPARAMS["train_frequency"],
        gradient_steps=1,
        target_update_interval=HPARAMS["target_network_frequency"],
        exploration_fraction=HPARAMS["exploration_fraction"],
        exploration_initial_eps=HPARAMS["start_e"],
        exploration_final_eps=HPARAMS["end_e"],
        policy_kwargs={"net_arch": [120, 84]},
        seed=seed,
        device="cpu",
    )
    clock = Clock()
    model.learn(skip + steps, callback=clock)
    return steps / (clock.times[skip + steps] - clock.times[skip])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", type=int, default=20_000, help="env steps before the window")
    parser.add_argument("--steps", type=int, default=20_000, help="env steps timed")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side")
    cli = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, list[float]] = {"ours (agents/dqn.py)": [], "SB3 2.9.2 DQN": []}
    for repeat in range(cli.repeats):
        results["ours (agents/dqn.py)"].append(ours(cli.skip, cli.steps, seed=1 + repeat))
        results["SB3 2.9.2 DQN"].append(sb3(cli.skip, cli.steps, seed=1 + repeat))
    print(f"CartPole-v1, env steps {cli.skip:,}-{cli.skip + cli.steps:,}, 1 torch thread")
    for name, values in results.items():
        listed = ", ".join(f"{v:,.0f}" for v in values)
        print(f"{name}: median {statistics.median(values):,.0f} steps/s (runs: {listed})")


if __name__ == "__main__":
    main()
