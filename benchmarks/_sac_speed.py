"""Steady-state env steps/s of our SAC and of Stable-Baselines3's SAC (``benchmarks.sps`` and
``benchmarks.gpu_check`` time both)."""

from __future__ import annotations

import tempfile
import time

import torch


def ours(
    env: str,
    learning_starts: int,
    steps: int,
    device: str,
    variant: str,
    k: int,
    method: str = "none",
    plasticity=None,
) -> float:
    """Steady steps/s of our SAC; ``variant``: eager, compile, cudagraphs or whole_graph
    (``--whole-graph``; on the CPU its check, not a speed path); ``method`` with
    its ``plasticity`` settings (a ``MethodConfig``; default: the defaults)."""
    from agents import sac
    from plasticity import MethodConfig

    with tempfile.TemporaryDirectory() as runs:
        args = sac.Args(
            env=env,
            total_timesteps=learning_starts + steps,
            learning_starts=learning_starts,
            updates_per_step=k,
            eval_every=0,
            eval_episodes=0,
            metrics_every=0,
            checkpoint_every=0,
            runs_dir=runs,
            device=device,
            threads=torch.get_num_threads(),
            compile=variant == "compile",
            cudagraphs=variant == "cudagraphs",
            whole_graph=variant == "whole_graph",
            matmul_precision=torch.get_float32_matmul_precision(),
            method=method,
            plasticity=plasticity or MethodConfig(),
            verbose=0,
        )
        return sac.main(args)["train_sps"]


def sb3_sac(env: str, learning_starts: int, steps: int, device: str, k: int) -> float:
    """Steady steps/s of stable_baselines3.SAC with the same settings, ``k`` gradient steps per
    env step, timed from 100 steps after ``learning_starts``."""
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
        gradient_steps=k,
        policy_kwargs={"net_arch": [256, 256]},
        device=device,
        seed=1,
    )
    clock = Clock()
    model.learn(learning_starts + steps, callback=clock)
    end = time.perf_counter()
    return (model.num_timesteps - clock.start[0]) / (end - clock.start[1])
