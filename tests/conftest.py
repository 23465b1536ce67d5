from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from plasticity import MethodConfig

if TYPE_CHECKING:  # the agents are imported on first use: the library's tests need none
    from agents import dqn, ppo, sac

# Small networks on a 2-core machine: two threads contend with each other (and with anything
# else running) and make the suite several times slower than one thread does.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def mlp(sizes=(8, 32, 32, 4)) -> nn.Sequential:
    """A ReLU MLP whose layers are named '0', '2', '4', …; the last one is the head."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def normalized_mlp() -> nn.Sequential:
    """:func:`mlp` with a LayerNorm before each ReLU (what nap needs); the head is '6'."""
    return nn.Sequential(
        nn.Linear(8, 32),
        nn.LayerNorm(32),
        nn.ReLU(),
        nn.Linear(32, 32),
        nn.LayerNorm(32),
        nn.ReLU(),
        nn.Linear(32, 4),
    )


def random_orthogonal(n: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64))
    return q


def with_singular_values(rows: int, cols: int, values) -> torch.Tensor:
    """A float64 (rows, cols) matrix with the given singular values (padded with zeros)."""
    s = torch.zeros(min(rows, cols), dtype=torch.float64)
    s[: len(values)] = torch.as_tensor(values, dtype=torch.float64)
    u = random_orthogonal(rows)[:, : len(s)]
    v = random_orthogonal(cols)[:, : len(s)]
    return u @ torch.diag(s) @ v.T


def state_is_zero(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> bool:
    """Whether ``param`` has optimizer state and all of it is zero (reset in place)."""
    state = optimizer.state.get(param)
    return bool(state) and all(
        not (value.any() if isinstance(value, torch.Tensor) else value) for value in state.values()
    )


# --- short agent runs, crafted checkpoints -----------------------------------


def small_dqn_args(tmp_path, **overrides) -> dqn.Args:
    """A 300-step DQN run on CartPole with FIRE, reset and ReDo due often; no evaluation."""
    from agents import dqn

    settings = {
        "env": "CartPole-v1",
        "total_timesteps": 300,
        "learning_starts": 100,
        "buffer_size": 1_000,
        "batch_size": 32,
        "train_frequency": 2,
        "target_network_frequency": 50,
        "exploration_fraction": 0.5,
        "eval_every": 0,
        "eval_episodes": 1,
        "metrics_every": 100,
        "checkpoint_every": 0,
        "runs_dir": str(tmp_path),
        "device": "cpu",
        "plasticity": MethodConfig(fire_every=100, reset_every=100, redo_every=50, redo_tau=0.1),
    }
    settings.update(overrides)
    return dqn.Args(**settings)


def small_sac_args(tmp_path, **overrides) -> sac.Args:
    """A 300-step SAC run on Pendulum with a 32-unit network, checkpointed every 150 steps."""
    from agents import sac

    settings = dict(
        env="Pendulum-v1",
        total_timesteps=300,
        learning_starts=100,
        batch_size=32,
        hidden_size=32,
        buffer_size=1000,
        eval_every=0,
        eval_episodes=1,
        metrics_every=100,
        checkpoint_every=150,
        runs_dir=str(tmp_path / "runs"),
        device="cpu",
    )
    settings.update(overrides)
    return sac.Args(**settings)


def small_ppo_args(tmp_path, env="CartPole-v1", **kw) -> ppo.Args:
    """Two iterations of 2 envs × 32 steps; interventions due every iteration."""
    from agents import ppo

    settings = {
        "env": env,
        "total_timesteps": 128,
        "num_envs": 2,
        "num_steps": 32,
        "num_minibatches": 2,
        "update_epochs": 2,
        "eval_every": 64,
        "eval_episodes": 1,
        "metrics_every": 64,
        "checkpoint_every": 64,
        "runs_dir": str(tmp_path),
        # redo_tau=10: every unit counts as dormant, so each ReDo pass recycles (and counts)
        "plasticity": MethodConfig(
            fire_every=64, redo_every=64, redo_tau=10.0, shrink_perturb_every=64
        ),
    }
    return ppo.Args(**{**settings, **kw})


class Planted:
    """What a crafted checkpoint can hold: unpickling it calls ``open(target, "w")``."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return (open, (self.target, "w"))


# --- references and networks of the library's tests -----------------------------------------


def svd_polar(w: torch.Tensor) -> torch.Tensor:
    u, _, vh = torch.linalg.svd(w.double(), full_matrices=False)
    return u @ vh


def reference_newton_schulz(w: torch.Tensor, steps: int) -> torch.Tensor:
    """The FIRE recipe written out for one matrix, in float64."""
    x = w.double()
    wide = x.shape[0] < x.shape[1]
    if wide:
        x = x.T
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        x = 1.5 * x - 0.5 * x @ x.T @ x
    return x.T if wide else x


class ConvNet(nn.Module):
    """A small Nature-CNN-shaped network for (2, 11, 11) inputs: conv, conv, flatten, MLP."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 6, 3, stride=2)  # → (6, 5, 5)
        self.conv2 = nn.Conv2d(6, 4, 3)  # → (4, 3, 3)
        self.fc1 = nn.Linear(4 * 3 * 3, 16)
        self.norm = nn.LayerNorm(16)
        self.fc2 = nn.Linear(16, 5)

    def forward(self, x):
        h = F.relu(self.conv1(x))
        h = F.relu(self.conv2(h)).flatten(1)
        return self.fc2(F.relu(self.norm(self.fc1(h))))


def small_sb3_sac(**policy_kwargs):
    """A small Stable-Baselines3 SAC on Pendulum (skips the test without SB3)."""
    pytest.importorskip("stable_baselines3")
    from stable_baselines3 import SAC

    from envs import make_env

    return SAC(
        "MlpPolicy",
        make_env("Pendulum-v1"),
        learning_starts=50,
        batch_size=32,
        policy_kwargs={"net_arch": [32, 32], **policy_kwargs},
        seed=0,
        device="cpu",
    )
