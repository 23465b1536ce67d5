"""Calibration of the H1 tasks against the numbers in ``shared/reference/humanoid_h1.md``:
holding the qpos0 joint targets the robot falls after about 96 steps (stand return about 67,
walk/run about 12); random actions fall after about 33 steps.

balance_simple against HumanoidBench's own ``h1-balance_simple-v0`` (its code at commit
791405f run with mujoco 3.17, the same seeds, policies and episode loop as ``episode`` below):
holding qpos0 ends after 76, 68, 72, 68, 71 steps (returns 55.0, 46.6, 50.8, 46.8, 49.6;
median 71 steps, 49.6); random actions end after 21, 23, 15, 17, 21 steps (returns 11.8,
12.0, 11.1, 9.0, 8.7; median 21 steps, 11.1).

Run: ``python -m benchmarks.h1_calibration`` (a few seconds). Writes
``benchmarks/results/h1_calibration.md`` and prints the same table.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from envs import make_env
from envs.humanoid import QPOS0, TASKS

RESULTS = Path(__file__).parent / "results"
SEEDS = range(5)


def hold_qpos0(env):
    base = env.unwrapped
    action = (QPOS0[7:] - base.ctrl_low) / (base.ctrl_high - base.ctrl_low) * 2 - 1
    return lambda rng: action


def random_actions(env):
    return lambda rng: rng.uniform(-1, 1, env.action_space.shape)


def episode(env, policy, seed: int) -> tuple[int, float]:
    """(steps until the episode ends, return) from ``reset(seed)``."""
    env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    steps, total, done = 0, 0.0, False
    while not done:
        _, reward, terminated, truncated, _ = env.step(policy(rng))
        steps, total, done = steps + 1, total + reward, terminated or truncated
    return steps, total


def main() -> None:
    lines = [
        "# H1 calibration (built-in HumanoidBench-style tasks)",
        "",
        (
            f"Seeds {SEEDS.start}-{SEEDS.stop - 1}; reset noise and random actions both use the "
            "seed. Reference: hold qpos0 falls after ~96 steps, stand ~67, walk/run ~12; random "
            "falls after ~33. balance_simple, HumanoidBench's own env on the same seeds: hold "
            "qpos0 median 71 steps, return 49.6; random median 21 steps, return 11.1."
        ),
        "",
        "| task | policy | steps per seed | return per seed | median steps | median return |",
        "|---|---|---|---|---:|---:|",
    ]
    for task in TASKS:
        env = make_env(f"humanoid_{task}")
        env_id = env.spec.id
        for label, make_policy in (("hold qpos0", hold_qpos0), ("random", random_actions)):
            runs = [episode(env, make_policy(env), seed) for seed in SEEDS]
            steps = [s for s, _ in runs]
            returns = [r for _, r in runs]
            lines.append(
                f"| {task} | {label} | {steps} | {[round(r, 1) for r in returns]} "
                f"| {statistics.median(steps)} | {statistics.median(returns):.1f} |"
            )
        env.close()
    lines += ["", f"Implementation: `{env_id.replace(task, '{task}')}`."]
    text = "\n".join(lines) + "\n"
    print(text)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "h1_calibration.md").write_text(text)


if __name__ == "__main__":
    main()
