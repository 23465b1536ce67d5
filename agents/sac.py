"""Soft Actor-Critic for continuous actions, with plasticity methods on actor and critic.

Read top to bottom like CleanRL's ``sac_continuous_action.py`` (Haarnoja et al. 2018,
arXiv 1812.05905): twin Q, autotuned entropy, delayed policy updates. What this file adds:
each network carries a plasticity method (``--method``, ``--actor-method``,
``--critic-method``) through :func:`plasticity.make_method`, the critic's target is re-synced
after every intervention, task switches of cycling envs trigger ``on_task_switch``, and the run
folder gets metrics, checkpoints, evaluation and ``--resume``.

    python -m agents.sac --env humanoid_walk --method fire
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.checkpoints import load_optimizer
from agents.cli import OffPolicyArgs, UserError, run_agent
from agents.device import configure
from agents.environments import make_train_envs
from agents.lifecycle import Lifecycle, rng_kept
from agents.plastic import PlasticNetwork
from agents.replay import ReplayBuffer
from plasticity import clear_optimizer_state_
from plasticity.architecture import NONLINEARITIES, hidden_block, normalization, widening
from plasticity.metrics import gradient_norm
from plasticity.optim import fused_adam_available


@dataclass
class Args(OffPolicyArgs):
    env: str = "humanoid_walk"
    """environment with a Box action space (short name, cycle, or gymnasium id)"""
    total_timesteps: int = 1_000_000
    """total environment steps of the run"""
    actor_method: str | None = None
    """plasticity method of the actor (overrides --method)"""
    critic_method: str | None = None
    """plasticity method of the twin critic (overrides --method)"""
    buffer_size: int = 1_000_000
    """the replay memory buffer size"""
    gamma: float = 0.99
    """the discount factor gamma"""
    tau: float = 0.005
    """target smoothing coefficient"""
    batch_size: int = 256
    """the batch size of sample from the replay memory"""
    learning_starts: int = 5_000
    """env steps of uniformly random actions before learning starts"""
    policy_lr: float = 3e-4
    """the learning rate of the policy network optimizer"""
    q_lr: float = 1e-3
    """the learning rate of the Q network optimizer"""
    policy_frequency: int = 2
    """frequency of training policy (delayed; repeated to compensate)"""
    target_network_frequency: int = 1
    """frequency of target network updates (Polyak averaging)"""
    alpha: float = 0.2
    """entropy regularization coefficient (initial value when autotuned)"""
    updates_per_step: int = 1
    """gradient updates per env step, i.e. the replay ratio (SB3's gradient_steps; 8 to 32 in
    primacy-bias and ReDo studies); with --num-envs N, N times as many per vector step"""
    autotune: bool = True
    """automatic tuning of the entropy coefficient"""
    hidden_size: int = 256
    """units of each of the two hidden layers of actor and critics"""
    action_repeat: int = 1
    """repeat each action this many times (SimBa/FIRE use 2 on humanoids)"""
    reset_alpha_on_intervention: bool = True
    """reset the entropy coefficient to --alpha (and its Adam state) when the whole critic is
    reinitialized by FIRE, reset or shrink & perturb, as the FIRE paper's SAC does; ReDo's
    recycling of single units leaves it (--no-reset-alpha-on-intervention: never)"""


LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


class TwinQ(nn.Module):
    """Two Q networks ``concat(obs, act) → 256 → 256 → 1``, evaluated together."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: int,
        layer_norm: bool = False,
        activation: str = "relu",
    ):
        super().__init__()
        wide = hidden * widening(activation)
        self.qf1 = nn.Sequential(
            *hidden_block(nn.Linear(obs_dim + act_dim, hidden), activation, layer_norm),
            *hidden_block(nn.Linear(wide, hidden), activation, layer_norm),
            nn.Linear(wide, 1),
        )
        self.qf2 = copy.deepcopy(self.qf1)
        for layer in self.qf2:
            if isinstance(layer, nn.Linear):
                layer.reset_parameters()
        head = len(self.qf1) - 1
        self.heads = (f"qf1.{head}", f"qf2.{head}")

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        """Q-values of both networks, shape ``(2, batch)``."""
        x = torch.cat([obs, act], 1)
        return torch.stack([self.qf1(x).squeeze(-1), self.qf2(x).squeeze(-1)])


class Actor(nn.Module):
    """Tanh-squashed Gaussian policy with state-dependent log-std."""

    heads = ("fc_mean", "fc_logstd")

    def __init__(
        self,
        obs_dim: int,
        action_space: gym.spaces.Box,
        hidden: int,
        layer_norm: bool = False,
        activation: str = "relu",
    ):
        super().__init__()
        act_dim = int(np.prod(action_space.shape))
        wide = hidden * widening(activation)
        self.fc1 = nn.Linear(obs_dim, hidden)
        self.fc2 = nn.Linear(wide, hidden)
        # identities without --layer-norm: no parameters, the same checkpoints as before
        self.norm1 = nn.Sequential(*normalization(self.fc1, layer_norm))
        self.norm2 = nn.Sequential(*normalization(self.fc2, layer_norm))
        self.act1, self.act2 = NONLINEARITIES[activation](), NONLINEARITIES[activation]()
        self.fc_mean = nn.Linear(wide, act_dim)
        self.fc_logstd = nn.Linear(wide, act_dim)
        high, low = np.asarray(action_space.high), np.asarray(action_space.low)
        self.register_buffer("action_scale", torch.tensor((high - low) / 2, dtype=torch.float32))
        self.register_buffer("action_bias", torch.tensor((high + low) / 2, dtype=torch.float32))

    def forward(self, obs: torch.Tensor):
        h = self.act2(self.norm2(self.fc2(self.act1(self.norm1(self.fc1(obs))))))
        log_std = torch.tanh(self.fc_logstd(h))
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)
        return self.fc_mean(h), log_std

    def get_action(self, obs: torch.Tensor):
        """A sampled action, its log-probability, and the deterministic (mean) action."""
        mean, log_std = self(obs)
        std = log_std.exp()
        x_t = mean + std * torch.randn_like(mean)  # reparameterization trick
        y_t = torch.tanh(x_t)
        action = y_t * self.action_scale + self.action_bias
        log_prob = (-0.5 * ((x_t - mean) / std) ** 2 - log_std - 0.5 * np.log(2 * np.pi)).sum(1)
        # Enforcing the action bound (tanh change of variables)
        log_prob = log_prob - torch.log(self.action_scale * (1 - y_t.pow(2)) + 1e-6).sum(1)
        return action, log_prob, torch.tanh(mean) * self.action_scale + self.action_bias


def soft_td_target(actor, critic_target, alpha, gamma, rew, next_obs, term) -> torch.Tensor:
    """SAC's entropy-regularized TD target: ``r + γ(1 − done)(min_i Q'_i(s', a') − α log π(a'|s'))``
    with ``a' ~ π(·|s')`` and the target critic ``Q'`` (the twin minimum)."""
    next_actions, next_log_pi, _ = actor.get_action(next_obs)
    min_next_q = critic_target(next_obs, next_actions).min(0).values
    return rew + (1 - term) * gamma * (min_next_q - alpha * next_log_pi)


class Temperature:
    """SAC's entropy temperature α = exp(log α), learned by its own Adam when autotuned; both
    are checkpointed (``log_alpha``, ``a_optimizer``)."""

    def __init__(self, alpha: float, lr: float, device: torch.device):
        self.initial = float(np.log(alpha))
        self.log_alpha = torch.full((), self.initial, device=device, requires_grad=True)
        fused = fused_adam_available([self.log_alpha])
        self.optimizer = torch.optim.Adam([self.log_alpha], lr=lr, fused=fused)

    def reset(self) -> None:
        """α back to its initial value, its Adam state cleared."""
        with torch.no_grad():
            self.log_alpha.fill_(self.initial)
        clear_optimizer_state_(self.optimizer, [self.log_alpha])

    def state_dict(self) -> dict:
        return {"log_alpha": self.log_alpha.detach(), "a_optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, checkpoint: dict) -> None:
        with torch.no_grad():
            self.log_alpha.copy_(checkpoint["log_alpha"])
        load_optimizer(self.optimizer, checkpoint["a_optimizer"])


POSITIVE_SETTINGS = (
    "buffer_size",
    "batch_size",
    "updates_per_step",
    "policy_frequency",
    "target_network_frequency",
    "hidden_size",
    "action_repeat",
)
RATES = ("policy_lr", "q_lr", "alpha")


def check(args: Args) -> None:
    args.check(
        positive=POSITIVE_SETTINGS,
        non_negative=("learning_starts", "refill_steps"),
        rates=RATES,
        fractions=("gamma", "tau"),
    )


def resolved_args(args: Args, envs: gym.vector.VectorEnv) -> Args:
    """The run's settings on ``envs``, the method's RL defaults filled in; a UserError for an
    env without continuous actions."""
    if not isinstance(envs.single_action_space, gym.spaces.Box):
        raise UserError(
            f"SAC needs continuous (Box) actions, {args.env} has {envs.single_action_space}; "
            "use --agent dqn or --agent ppo"
        )
    return args.with_defaults()


def main(args: Args) -> dict:
    check(args)
    device, compiled = configure(args)

    envs = make_train_envs(args, action_repeat=args.action_repeat)
    args = resolved_args(args, envs)
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    act_dim = int(np.prod(envs.single_action_space.shape))

    architecture = {"layer_norm": args.layer_norm, "activation": args.activation or "relu"}
    actor = Actor(obs_dim, envs.single_action_space, args.hidden_size, **architecture).to(device)
    critic = TwinQ(obs_dim, act_dim, args.hidden_size, **architecture).to(device)
    critic_target = copy.deepcopy(critic)
    # interventions rewrite parameters in place, so these lists stay valid for the whole run
    critic_params, target_params = list(critic.parameters()), list(critic_target.parameters())
    actor_plasticity = PlasticNetwork(args, "actor", actor, args.policy_lr, heads=Actor.heads)
    critic_plasticity = PlasticNetwork(
        args,
        "critic",
        critic,
        args.q_lr,
        heads=critic.heads,
        targets={"critic_target": critic_target},
        batch_inputs=lambda batch: (batch.obs, batch.actions),
    )

    target_entropy = -float(act_dim)
    temperature = Temperature(args.alpha, args.q_lr, device)
    log_alpha, a_optimizer = temperature.log_alpha, temperature.optimizer
    rb = ReplayBuffer(
        args.buffer_size,
        (obs_dim,),
        torch.float32,
        (act_dim,),
        torch.float32,
        device,
        max_rows=args.num_envs,
    )

    def policy(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            obs_t = torch.as_tensor(obs, dtype=torch.float32, device=device).reshape(1, -1)
            return actor.get_action(obs_t)[2][0].cpu().numpy()

    def reset_temperature_after(reports) -> None:
        """The FIRE paper's SAC: α back to its initial value, and its Adam state cleared, when
        the whole critic was reinitialized (not after ReDo's recycling of single units)."""
        if critic_plasticity.rewrote_network(reports):
            temperature.reset()

    if args.reset_alpha_on_intervention:
        critic_plasticity.follow_interventions(reset_temperature_after)

    @torch.no_grad()
    def td_target(rew, next_obs, term):
        return soft_td_target(
            actor, critic_target, log_alpha.exp(), args.gamma, rew, next_obs, term
        )

    def update_critic(obs, act, rew, next_obs, term):
        """One critic update: both TD losses (summed) against the entropy-regularized target,
        plus the method's penalty. Returns the loss, mean Q1, whether the loss was NaN/Inf and
        the critic's gradient norm: every value the loop reads, so that it never reads a tensor
        a CUDA graph owns (``.grad``) or mutates one inside the graph (the divergence flag)."""
        next_q = td_target(rew, next_obs, term)
        qf_values = critic(obs, act)
        qf_loss = F.mse_loss(qf_values[0], next_q) + F.mse_loss(qf_values[1], next_q)
        qf_loss = qf_loss + critic_plasticity.penalty(qf_loss)
        critic_plasticity.optimizer.zero_grad(set_to_none=True)
        qf_loss.backward()
        critic_plasticity.after_backward()
        critic_plasticity.optimizer.step()
        grad_norm = gradient_norm(critic.parameters())
        return qf_loss.detach(), qf_values[0].detach().mean(), ~torch.isfinite(qf_loss), grad_norm

    def update_actor(obs):
        """One actor update on E[α log π(a|s) − min Q(s, a)], a ~ π, plus the method's
        penalty, then (autotuned) one temperature update. Returns the actor loss, whether it
        was NaN/Inf and the actor's gradient norm."""
        alpha = log_alpha.detach().exp()
        pi, log_pi, _ = actor.get_action(obs)
        min_q = critic(obs, pi).min(0).values
        policy_loss = (alpha * log_pi - min_q).mean()
        actor_loss = policy_loss + actor_plasticity.penalty(policy_loss)
        actor_plasticity.optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        actor_plasticity.after_backward()
        actor_plasticity.optimizer.step()
        grad_norm = gradient_norm(actor.parameters())
        if args.autotune:
            alpha_loss = (-log_alpha.exp() * (log_pi.detach() + target_entropy)).mean()
            a_optimizer.zero_grad(set_to_none=True)
            alpha_loss.backward()
            a_optimizer.step()
        return actor_loss.detach(), ~torch.isfinite(actor_loss), grad_norm

    def critic_curvature(batch) -> dict[str, float]:
        """The critic's K-FAC ε-ranks under its TD loss on this batch (targets held fixed)."""
        with rng_kept(device):  # the target's action noise: the training's stream stays as is
            target = td_target(batch.rewards, batch.next_obs, batch.terminations)
        return critic_plasticity.curvature(
            lambda net: sum(F.mse_loss(q, target) for q in net(batch.obs, batch.actions))
        )

    def update_target():
        with torch.no_grad():
            torch._foreach_lerp_(target_params, critic_params, args.tau)

    @torch.no_grad()
    def act(obs):
        return actor.get_action(obs)[0]

    update_critic, update_actor, act = (
        compiled(update_critic),
        compiled(update_actor),
        compiled(act),
    )

    life = Lifecycle(
        args,
        "sac",
        envs,
        policy,
        [actor_plasticity, critic_plasticity],
        buffer=rb,
        extras=[temperature],
        action_repeat=args.action_repeat,
    )
    global_step = life.start_step
    obs, _ = envs.reset(seed=args.seed + global_step)  # resumed: new episodes
    done = np.zeros(args.num_envs, dtype=bool)
    actor_loss = actor_grad_norm = critic_grad_norm = torch.zeros((), device=device)
    while life.running(global_step):
        # ALGO LOGIC: put action logic here
        if global_step < args.learning_starts:
            actions = np.array([envs.single_action_space.sample() for _ in range(args.num_envs)])
        else:
            actions = act(torch.as_tensor(obs, dtype=torch.float32, device=device)).cpu().numpy()

        next_obs, rewards, terminations, truncations, infos = envs.step(actions)
        # next-step autoreset: a copy that ended last step only reset now; store nothing for it
        rb.add(obs, next_obs, actions, rewards, terminations, valid=~done)
        done = np.logical_or(terminations, truncations)
        obs = next_obs
        global_step += args.num_envs

        if life.episodes(global_step, infos):  # a task switch began
            life.switch_task(global_step, critic_curvature)

        # ALGO LOGIC: training. --updates-per-step updates per env step (replay ratio), so
        # updates_per_step × num_envs per vector step; the delays count updates, as CleanRL's
        # count its one update per step
        if life.learning(global_step):
            first_update = (global_step - args.num_envs) * args.updates_per_step
            for update in range(first_update + 1, global_step * args.updates_per_step + 1):
                batch = rb.sample(args.batch_size)
                qf_loss, qf1_mean, diverged, critic_grad_norm = update_critic(*batch)
                life.note_nonfinite(diverged)
                # each update's minibatch, for the methods that count updates (er)
                critic_plasticity.after_minibatch((batch.obs, batch.actions))
                if update % args.policy_frequency == 0:  # TD3 delayed update support
                    # the actor loss needs dQ/da only: skip the critic's weight gradients
                    critic.requires_grad_(False)
                    for _ in range(args.policy_frequency):
                        actor_loss, diverged, actor_grad_norm = update_actor(batch.obs)
                        life.note_nonfinite(diverged)
                        actor_plasticity.after_minibatch(batch.obs)
                    critic.requires_grad_(True)
                if update % args.target_network_frequency == 0:
                    update_target()

            if life.metrics_due(global_step):  # before this step's interventions, logged after
                scalars = {
                    "losses/qf_loss": qf_loss.item() / 2,
                    "losses/qf1_values": qf1_mean.item(),
                    "losses/actor_loss": actor_loss.item(),
                    "losses/alpha": log_alpha.exp().item(),
                    "charts/SPS": life.sps(global_step),
                    **actor_plasticity.measure(batch.obs, actor_grad_norm),
                    **critic_plasticity.measure((batch.obs, batch.actions), critic_grad_norm),
                    **critic_curvature(batch),
                }
                life.log_metrics(global_step, scalars)

            if life.intervening(global_step):
                actor_plasticity.after_update(global_step, inputs=batch.obs)
                critic_plasticity.after_update(global_step, (batch.obs, batch.actions))

        life.after_step(global_step)

    envs.close()
    return life.finish(global_step)


if __name__ == "__main__":
    run_agent(main, Args, "sac")
