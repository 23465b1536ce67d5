"""Training speed of our PPO against Stable-Baselines3's PPO on CartPole-v1, one CPU thread each.

Both use the hyperparameters of CleanRL's ``ppo.py`` (``agents.ppo.DISCRETE_DEFAULTS``): 4 envs ×
128 steps, 4 minibatches of 128, 4 epochs, lr 2.5e-4 annealed linearly, γ 0.99, GAE λ 0.95,
clip 0.2 (value clip 0.2 too), entropy 0.01, value 0.5, grad-norm 0.5, Adam eps 1e-5,
separate 64-64 tanh actor and critic. No evaluation, no plasticity metrics, no intermediate
checkpoints. Runs alternate (ours, SB3, ours, …) so machine noise hits both alike; the table
gives the median env steps per second, and the ratio ours/SB3 of each repeat.

- ours, loop: ``summary["sps"]``, the training loop only.
- ours, wall: the whole ``agents.ppo.main`` (env creation, run folder, final checkpoint).
- SB3, wall: ``model.learn`` (the model and its ``DummyVecEnv`` are built before the clock).

Run from the repository root: ``python -m benchmarks.sps_ppo [--steps 50000] [--repeats 3]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402

from agents import ppo  # noqa: E402


def ours(steps: int, seed: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as runs_dir:
        args = ppo.Args(
            env="CartPole-v1",
            total_timesteps=steps,
            seed=seed,
            eval_every=0,
            eval_episodes=0,
            metrics_every=0,
            checkpoint_every=0,
            runs_dir=runs_dir,
            device="cpu",
        )
        start = time.perf_counter()
        summary = ppo.main(args)
        wall = summary["total_timesteps"] / (time.perf_counter() - start)
    return summary["sps"], wall


def sb3(steps: int, seed: int) -> float:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    # the settings our PPO takes for discrete vector envs (its unset fields resolve to them)
    defaults = dataclasses.replace(ppo.Args(), **ppo.DISCRETE_DEFAULTS)
    env = make_vec_env("CartPole-v1", n_envs=defaults.num_envs, seed=seed)
    batch = defaults.num_envs * defaults.num_steps
    model = PPO(
        "MlpPolicy",
        env,
        learning_rate=lambda remaining: remaining * defaults.learning_rate,
        n_steps=defaults.num_steps,
        batch_size=batch // defaults.num_minibatches,
        n_epochs=defaults.update_epochs,
        gamma=defaults.gamma,
        gae_lambda=defaults.gae_lambda,
        clip_range=defaults.clip_coef,
        clip_range_vf=defaults.clip_coef,
        ent_coef=defaults.ent_coef,
        vf_coef=defaults.vf_coef,
        max_grad_norm=defaults.max_grad_norm,
        policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]}},
        seed=seed,
        device="cpu",
        verbose=0,
    )
    start = time.perf_counter()
    model.learn(steps)
    return model.num_timesteps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    results: dict[str, list[float]] = {"ours, loop": [], "ours, wall": [], "SB3 2.9.2, wall": []}
    for repeat in range(opts.repeats):
        loop, wall = ours(opts.steps, seed=repeat + 1)
        results["ours, loop"].append(loop)
        results["ours, wall"].append(wall)
        results["SB3 2.9.2, wall"].append(sb3(opts.steps, seed=repeat + 1))
        print(f"repeat {repeat + 1}: " + ", ".join(f"{k} {v[-1]:.0f}" for k, v in results.items()))
    print(f"\nCartPole-v1, {opts.steps} steps, median of {opts.repeats} (env steps/s, 1 thread)\n")
    print("| PPO | steps/s | runs |")
    print("|---|---|---|")
    for name, values in results.items():
        runs = ", ".join(f"{v:.0f}" for v in values)
        print(f"| {name} | {statistics.median(values):.0f} | {runs} |")
    ratios = [a / b for a, b in zip(results["ours, wall"], results["SB3 2.9.2, wall"], strict=True)]
    print(
        f"\nours (wall) / SB3 per repeat: {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"median {statistics.median(ratios):.2f}"
    )


if __name__ == "__main__":
    main()
