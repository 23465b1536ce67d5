"""Deep Q-Network for discrete actions, with a plasticity method on the Q-network.

Read top to bottom like CleanRL's ``dqn.py`` and ``dqn_atari.py`` (Mnih et al. 2015, Nature
518): ε-greedy acting with a linearly decaying ε, a replay buffer, a target network copied every
``target_network_frequency`` steps. Atari frames (``uint8`` (4, 84, 84)) get the Nature CNN and
a Huber (smooth L1) TD loss as in Mnih et al. and the FIRE paper's DQN; vector observations get
CleanRL's 120-84 MLP and its MSE loss (``--td-loss`` picks either).

What this file adds: the Q-network ("q" in flags, logs, checkpoints and the summary) carries
one plasticity method, ``--q-method`` when given, else ``--method``. The method's handle
re-syncs the target network after every intervention that changes the function (FIRE, reset,
shrink & perturb), task switches of cycling envs trigger ``on_task_switch``, and the run folder
gets metrics, checkpoints, evaluation and ``--resume`` as in ``agents/sac.py``.

    python train.py --agent dqn --env CartPole-v1
    python train.py --agent dqn --env atari_breakout --method fire --learning-starts 80000 \
        --batch-size 32 --train-frequency 4 --target-network-frequency 1000 --end-e 0.01 \
        --exploration-fraction 0.1 --total-timesteps 10000000
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.cli import OffPolicyArgs, UserError, run_agent
from agents.device import configure
from agents.environments import make_train_envs
from agents.lifecycle import Lifecycle
from agents.networks import NATURE_MIN_SIZE, image_torso
from agents.plastic import PlasticNetwork
from agents.replay import ReplayBuffer
from plasticity.architecture import hidden_block, widening
from plasticity.metrics import gradient_norm
from plasticity.schedule import Every


@dataclass
class Args(OffPolicyArgs):
    env: str = "CartPole-v1"
    """environment with a Discrete action space (gymnasium id, atari_<game>, or a cycle)"""
    total_timesteps: int = 500_000
    """total environment steps of the run (dqn_atari.py: 10M)"""
    q_method: str | None = None
    """plasticity method of the Q-network (overrides --method)"""
    learning_rate: float | None = None
    """Adam learning rate (default 2.5e-4 vectors, 1e-4 images; FIRE paper: 6.25e-5)"""
    adam_eps: float = 1e-8
    """Adam epsilon (PyTorch's default, as CleanRL; the FIRE paper's Atari DQN uses 1.5e-4)"""
    buffer_size: int | None = None
    """replay memory size (default 10_000 vectors, 100_000 images: an image transition keeps
    obs and next_obs, 2 x 28 KB, so dqn_atari.py's 1e6 would take 56 GB of memory)"""
    gamma: float = 0.99
    """the discount factor gamma"""
    tau: float = 1.0
    """the target network update rate (1.0: hard copy)"""
    target_network_frequency: int | None = None
    """env steps between target network updates (default 500 vectors, 1000 images; FIRE
    paper: 2000)"""
    batch_size: int | None = None
    """the batch size of sample from the replay memory (default 128 vectors, 32 images)"""
    start_e: float = 1.0
    """the starting epsilon for exploration"""
    end_e: float | None = None
    """the ending epsilon for exploration (default 0.05 vectors, 0.01 images)"""
    exploration_fraction: float | None = None
    """the fraction of total_timesteps it takes from start_e to end_e (default 0.5 vectors,
    0.1 images)"""
    learning_starts: int | None = None
    """env steps before learning starts (default 10_000 vectors, 80_000 images; FIRE paper:
    20_000)"""
    train_frequency: int | None = None
    """env steps between gradient updates (default 10 vectors, 4 images, 1 MinAtar)"""
    updates_per_step: int = 1
    """gradient updates every train_frequency env steps: the replay ratio is
    updates_per_step / train_frequency (SB3's gradient_steps)"""
    td_loss: Literal["huber", "mse"] | None = None
    """TD loss (default mse vectors, as dqn.py: with huber and its CartPole settings the
    Q-values diverged, benchmarks/learning_dqn.md; huber images, as Mnih et al. 2015 and the
    FIRE paper)"""


# Settings left unset (None) in Args take CleanRL's values for the kind of observation:
# dqn.py's for vectors, dqn_atari.py's for images (but a smaller buffer).
VECTOR_DEFAULTS = {
    "learning_rate": 2.5e-4,
    "buffer_size": 10_000,
    "target_network_frequency": 500,
    "batch_size": 128,
    "end_e": 0.05,
    "exploration_fraction": 0.5,
    "learning_starts": 10_000,
    "train_frequency": 10,
    "td_loss": "mse",
}
IMAGE_DEFAULTS = {
    "learning_rate": 1e-4,
    "buffer_size": 100_000,
    "target_network_frequency": 1000,
    "batch_size": 32,
    "end_e": 0.01,
    "exploration_fraction": 0.1,
    "learning_starts": 80_000,
    "train_frequency": 4,
    "td_loss": "huber",
}


# MinAtar's grids: the settings of the MinAtar paper's DQN (Young & Tian 2019, arXiv
# 1903.03176; its examples/dqn.py) with Adam in place of centered RMSprop: batch 32, buffer
# 100k, target copied every 1000 steps, one update per step, learning from 5000 steps, ε from
# 1 to 0.1 (here over the first 10% of the run: 100k steps of a 1M run), Huber loss.
MINATAR_DEFAULTS = {
    "learning_rate": 2.5e-4,
    "buffer_size": 100_000,
    "target_network_frequency": 1000,
    "batch_size": 32,
    "end_e": 0.1,
    "exploration_fraction": 0.1,
    "learning_starts": 5_000,
    "train_frequency": 1,
    "td_loss": "huber",
}


# FIRE as the FIRE paper's DQN applies it (arXiv 2602.08040; its dqn_atari code): Newton–Schulz
# on the convolutions, the linear layers and the head back to the values they started the run
# with (biases too), Adam's moments kept, and only the tensors FIRE changed copied into the
# target network (whose conv biases stay its own). On images, unless set otherwise.
PAPER_FIRE = {"fire_linear": "initial", "clear_optimizer": "none", "target_sync": "rewritten"}


class QNetwork(nn.Module):
    """Q-values of all actions: a convolutional torso for ``(C, H, W)`` frames (the Nature CNN,
    or MinAtar's for small grids, see ``agents/networks.py``), CleanRL's 120-84 MLP otherwise.

    ``uint8`` inputs are scaled to [0, 1] inside, so the replay buffer can keep frames as bytes.
    """

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        n_actions: int,
        layer_norm: bool = False,
        activation: str = "relu",
    ):
        super().__init__()
        if len(obs_shape) == 3:
            torso, features = image_torso(obs_shape, layer_norm=layer_norm, activation=activation)
            self.network = nn.Sequential(*torso, nn.Linear(features, n_actions))
        else:
            wide = widening(activation)
            self.network = nn.Sequential(
                nn.Flatten(),
                *hidden_block(nn.Linear(int(np.prod(obs_shape)), 120), activation, layer_norm),
                *hidden_block(nn.Linear(120 * wide, 84), activation, layer_norm),
                nn.Linear(84 * wide, n_actions),
            )
        self.heads = (f"network.{len(self.network) - 1}",)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs.float()
        return self.network(x)


def linear_schedule(start_e: float, end_e: float, duration: float, t: int) -> float:
    """ε decays linearly from ``start_e`` to ``end_e`` over ``duration`` steps, then stays."""
    slope = (end_e - start_e) / max(duration, 1.0)
    return max(slope * t + start_e, end_e)


def greedy_td_target(target_network, gamma, rew, next_obs, term) -> torch.Tensor:
    """DQN's TD target: ``r + γ(1 − done) max_a Q'(s', a)`` from the target network ``Q'``."""
    return rew + gamma * target_network(next_obs).max(1).values * (1 - term)


POSITIVE_SETTINGS = (
    "buffer_size",
    "batch_size",
    "target_network_frequency",
    "train_frequency",
    "updates_per_step",
)


def check(args: Args) -> None:
    args.check(
        positive=POSITIVE_SETTINGS,
        non_negative=("learning_starts", "refill_steps"),
        rates=("learning_rate", "adam_eps"),
        fractions=("gamma", "tau", "start_e", "end_e", "exploration_fraction"),
    )


def resolved_args(args: Args, envs: gym.vector.VectorEnv) -> Args:
    """The run's settings on ``envs``: those left unset take the defaults of its kind of
    observation (FIRE those of the FIRE paper's DQN on images), before the run folder records
    them; checked. A UserError, the envs closed, for an env DQN cannot train on."""
    action_space, obs_space = envs.single_action_space, envs.single_observation_space
    if not isinstance(action_space, gym.spaces.Discrete):
        envs.close()
        raise UserError(
            f"DQN needs discrete actions, {args.env} has {action_space}; "
            "use --agent sac or --agent ppo"
        )
    if not isinstance(obs_space, gym.spaces.Box):
        envs.close()
        raise UserError(f"DQN needs array (Box) observations, {args.env} has {obs_space}")
    image = len(obs_space.shape) == 3
    if image:
        small = min(obs_space.shape[1:]) < NATURE_MIN_SIZE
        defaults = MINATAR_DEFAULTS if small else IMAGE_DEFAULTS
    else:
        defaults = VECTOR_DEFAULTS
    args = args.with_defaults(defaults)
    if image and "fire" in args.method_parts("q"):
        args = args.with_defaults(**PAPER_FIRE)
    check(args)
    return args


def main(args: Args) -> dict:
    check(args)
    device, compiled = configure(args)

    envs = make_train_envs(args)
    args = resolved_args(args, envs)
    action_space, obs_space = envs.single_action_space, envs.single_observation_space
    loss_fn = F.smooth_l1_loss if args.td_loss == "huber" else F.mse_loss
    n_actions, action_start = int(action_space.n), int(action_space.start)

    q_network = QNetwork(obs_space.shape, n_actions, args.layer_norm, args.activation or "relu").to(
        device
    )
    target_network = copy.deepcopy(q_network)
    q_plasticity = PlasticNetwork(
        args,
        "q",
        q_network,
        args.learning_rate,
        heads=q_network.heads,
        targets={"q_target": target_network},
        eps=args.adam_eps,
    )
    obs_dtype = torch.uint8 if obs_space.dtype == np.uint8 else torch.float32
    rb = ReplayBuffer(
        args.buffer_size, obs_space.shape, obs_dtype, (), torch.long, device, args.num_envs
    )

    def policy(obs: np.ndarray) -> int:
        with torch.no_grad():
            obs_t = torch.as_tensor(np.asarray(obs), device=device)[None]
            return int(q_network(obs_t).argmax(1).item()) + action_start

    @torch.no_grad()
    def td_target(rew, next_obs, term):
        return greedy_td_target(target_network, args.gamma, rew, next_obs, term)

    def update(obs, act, rew, next_obs, term):
        """One update: the TD loss of the taken actions against the target network's greedy
        value, plus the method's penalty. Returns the loss, the mean Q, whether the loss was
        NaN/Inf and the gradient norm: every value the loop reads (see agents/sac.py)."""
        q_taken = q_network(obs).gather(1, act[:, None]).squeeze(1)
        td_loss = loss_fn(q_taken, td_target(rew, next_obs, term))
        loss = td_loss + q_plasticity.penalty(td_loss)
        q_plasticity.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        q_plasticity.after_backward()
        q_plasticity.optimizer.step()
        grad_norm = gradient_norm(q_network.parameters())
        return loss.detach(), q_taken.detach().mean(), ~torch.isfinite(loss), grad_norm

    @torch.no_grad()
    def act(obs):
        return q_network(obs).argmax(1)

    def q_curvature(batch) -> dict[str, float]:
        """The Q-network's K-FAC ε-ranks under its TD loss on this batch (targets fixed)."""
        target = td_target(batch.rewards, batch.next_obs, batch.terminations)
        actions = batch.actions[:, None]
        return q_plasticity.curvature(
            lambda net: loss_fn(net(batch.obs).gather(1, actions).squeeze(1), target)
        )

    update, act = compiled(update), compiled(act)

    life = Lifecycle(args, "dqn", envs, policy, [q_plasticity], buffer=rb)
    global_step = life.start_step
    updates_due = Every(args.train_frequency, start=global_step)
    target_due = Every(args.target_network_frequency, start=global_step)
    obs, _ = envs.reset(seed=args.seed + global_step)  # resumed: new episodes
    done = np.zeros(args.num_envs, dtype=bool)
    loss = q_mean = grad_norm = None
    while life.running(global_step):
        # ALGO LOGIC: put action logic here
        epsilon = linear_schedule(
            args.start_e, args.end_e, args.exploration_fraction * args.total_timesteps, global_step
        )
        explore = np.random.random(args.num_envs) < epsilon
        actions = np.random.randint(n_actions, size=args.num_envs)
        if not explore.all():  # the forward pass only when some copy acts greedily
            greedy = act(torch.as_tensor(obs, device=device)).cpu().numpy()
            actions = np.where(explore, actions, greedy)

        next_obs, rewards, terminations, truncations, infos = envs.step(actions + action_start)
        # next-step autoreset: a copy that ended last step only reset now; store nothing for it
        rb.add(obs, next_obs, actions, rewards, terminations, valid=~done)
        done = np.logical_or(terminations, truncations)
        obs = next_obs
        global_step += args.num_envs

        if life.episodes(global_step, infos):  # a task switch began
            life.switch_task(global_step, q_curvature)

        # ALGO LOGIC: training: --updates-per-step updates every train_frequency env steps
        # (also with num_envs > 1), a replay ratio of updates_per_step / train_frequency
        updates = updates_due.crossings(global_step) * args.updates_per_step
        update_target = target_due.due(global_step)
        if life.learning(global_step):
            for _ in range(updates):
                batch = rb.sample(args.batch_size)
                loss, q_mean, diverged, grad_norm = update(*batch)
                life.note_nonfinite(diverged)
                # each update's minibatch, for the methods that count updates (er)
                q_plasticity.after_minibatch(batch.obs)
            if life.metrics_due(global_step):  # before this step's interventions
                scalars = {"charts/epsilon": epsilon, "charts/SPS": life.sps(global_step)}
                if loss is not None:
                    scalars["losses/td_loss"] = loss.item()
                    scalars["losses/q_values"] = q_mean.item()
                else:
                    batch = rb.sample(args.batch_size)
                scalars.update(q_plasticity.measure(batch.obs, grad_norm))
                scalars.update(q_curvature(batch))
                life.log_metrics(global_step, scalars)  # written after the interventions

            if updates and life.intervening(global_step):
                q_plasticity.after_update(global_step, inputs=batch.obs)

            # update target network
            if update_target:
                with torch.no_grad():
                    torch._foreach_lerp_(
                        list(target_network.parameters()), list(q_network.parameters()), args.tau
                    )

        life.after_step(global_step)

    envs.close()
    return life.finish(global_step)


if __name__ == "__main__":
    run_agent(main, Args, "dqn")
