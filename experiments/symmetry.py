"""Symmetry diagnostics of RL runs: networks from checkpoints, frozen probe batches, RL losses.

The reinforcement-learning side of :mod:`plasticity.symmetry` (which imports neither agents nor
envs, so the command that rebuilds runs lives here):

- :func:`load_run`: a run's networks rebuilt from its ``config.json`` and one checkpoint;
- :func:`collect_transitions`: a frozen probe batch, from the checkpoint's replay buffer when it
  has one, else by running the run's policy in a fresh env with a fixed seed;
- :func:`probe_loss`: ``loss_fn(net) -> scalar`` for a network on that batch, with every target
  computed once from the reference run, so the loss along an interpolation path depends on the
  interpolated parameters only: SAC critic TD loss and actor loss, DQN TD loss, PPO value loss
  and clipped surrogate;
- :func:`interpolated_returns`: returns of the policy along the path (expensive, opt-in);
- :func:`main`: the command, which prints the identifiability gap and the unaligned and aligned
  barriers between two runs (or two checkpoints of one run) and plots them::

    python -m experiments.symmetry runs/A runs/B [--network critic] [--probe 512]
    python -m experiments.symmetry runs/A/checkpoints/step_100000.pt runs/A   # before/after

A path is a run folder (its latest checkpoint) or a checkpoint file ``<run>/checkpoints/
step_<N>.pt``. Network ``A`` is the reference: the probe batch comes from its policy and the
fixed targets from its target networks.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from agents.checkpoints import upgrade
from agents.cli import UserError, run_cli, user_errors
from agents.dqn import greedy_td_target
from agents.environments import env_spaces, evaluate, nonstationary_options
from agents.files import read_checkpoint
from agents.run import checkpoint_files
from agents.sac import soft_td_target
from plasticity import MethodConfig
from plasticity.symmetry import (
    ActivationMatching,
    Barrier,
    LayerRealization,
    WeightMatching,
    activation_matching,
    infer_wiring,
    interpolation_barrier,
    merge,
    realization_report,
    relative_barrier,
    weight_matching,
)

# the networks --network can name, per agent; the first is the default
NETWORKS = {"sac": ("critic", "actor"), "dqn": ("q",), "ppo": ("critic", "actor")}
NETWORK_ALIASES = {"dqn": {"critic": "q"}}
# the network that acts, for returns along the path
POLICY_NETWORK = {"sac": "actor", "dqn": "q", "ppo": "actor"}
# config.json fields the networks and losses are rebuilt from
REQUIRED_CONFIG = {
    "sac": ("env", "hidden_size", "gamma"),
    "dqn": ("env", "gamma", "td_loss", "end_e"),
    "ppo": ("env", "hidden_size", "gamma", "clip_coef", "normalize"),
}


# --- runs -----------------------------------------------------------------------------------


@dataclass
class RunCheckpoint:
    """A run's networks (CPU, eval mode) rebuilt from ``config.json`` and one checkpoint.

    ``args`` is the agent's ``Args`` as the run saved it; ``state`` the whole checkpoint
    (extras such as SAC's ``log_alpha`` or PPO's ``obs_rms``); ``networks`` maps names (SAC:
    ``actor``, ``critic``, ``critic_target``; DQN: ``q``, ``q_target``; PPO: ``actor``,
    ``critic``) to modules.
    """

    path: Path
    run_dir: Path
    agent: str
    args: object
    step: int
    state: dict
    networks: dict[str, nn.Module]

    @property
    def label(self) -> str:
        return f"{self.run_dir.name}@{self.step}"


def checkpoint_file(path: str | Path) -> tuple[Path, Path]:
    """``(run folder, checkpoint file)`` for a run folder (latest checkpoint) or a checkpoint."""
    path = Path(path)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(f"{path} is not a run folder (no config.json)")
        found = checkpoint_files(path)
        if not found:
            raise UserError(f"run {path} has no checkpoint (checkpoints/step_<N>.pt)")
        return path, found[-1]
    if path.is_file():
        run_dir = path.parent.parent
        if not (run_dir / "config.json").is_file():
            raise UserError(
                f"{path}: a checkpoint must lie in <run>/checkpoints/ next to the run's config.json"
            )
        return run_dir, path
    raise UserError(f"{path}: no such run folder or checkpoint file")


def _saved_args(run_dir: Path):
    """The agent name and its ``Args`` rebuilt from ``config.json``."""
    try:
        config = json.loads((run_dir / "config.json").read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{run_dir}/config.json is not valid JSON ({err})") from None
    agent = config.get("agent")
    if agent not in NETWORKS:
        raise UserError(f"{run_dir}/config.json: agent {agent!r} is not one of {list(NETWORKS)}")
    missing = [key for key in REQUIRED_CONFIG[agent] if config.get(key, ...) is ...]
    if missing:
        raise UserError(f"{run_dir}/config.json lacks {', '.join(missing)}; cannot rebuild the run")
    module = importlib.import_module(f"agents.{agent}")
    fields = {f.name for f in dataclasses.fields(module.Args)} - {"plasticity"}
    method_fields = {f.name for f in dataclasses.fields(MethodConfig)}
    plasticity = {k: v for k, v in config.get("plasticity", {}).items() if k in method_fields}
    values = {k: v for k, v in config.items() if k in fields}
    return agent, module, module.Args(**values, plasticity=MethodConfig(**plasticity))


def _build_networks(agent: str, module, args) -> dict[str, nn.Module]:
    obs_space, action_space = env_spaces(args)
    # the run's --layer-norm and --activation (unset: each agent's own nonlinearity)
    architecture = {"layer_norm": args.layer_norm, "activation": args.activation}
    relu_default = {**architecture, "activation": args.activation or "relu"}
    if agent == "sac":
        obs_dim = int(np.prod(obs_space.shape))
        act_dim = int(np.prod(action_space.shape))
        return {
            "actor": module.Actor(obs_dim, action_space, args.hidden_size, **relu_default),
            "critic": module.TwinQ(obs_dim, act_dim, args.hidden_size, **relu_default),
            "critic_target": module.TwinQ(obs_dim, act_dim, args.hidden_size, **relu_default),
        }
    if agent == "dqn":
        return {
            "q": module.QNetwork(obs_space.shape, int(action_space.n), **relu_default),
            "q_target": module.QNetwork(obs_space.shape, int(action_space.n), **relu_default),
        }
    return {
        "actor": module.Actor(obs_space, action_space, args.hidden_size, **architecture),
        "critic": module.Critic(obs_space, args.hidden_size, **architecture),
    }


def load_run(path: str | Path) -> RunCheckpoint:
    """Rebuild a run's networks from its ``config.json`` and a checkpoint, on the CPU.

    ``path``: a run folder (its latest checkpoint) or ``<run>/checkpoints/step_<N>.pt``. The
    networks are the agent module's own classes built for the run's env spaces; a checkpoint
    that does not fit them, or a config that lacks a field they need, is a :class:`UserError`.
    """
    run_dir, file = checkpoint_file(path)
    agent, module, args = _saved_args(run_dir)
    try:
        state = read_checkpoint(file)
    except UserError:
        raise
    except Exception as err:  # a truncated or foreign file: say which and stop
        raise UserError(f"checkpoint {file} cannot be read ({err})") from None
    if not isinstance(state, dict) or state.get("agent") != agent or "step" not in state:
        raise UserError(f"checkpoint {file} is not a {agent} checkpoint, unlike its run's config")
    networks = _build_networks(agent, module, args)
    state = upgrade(state, handle_names=())  # DQN's networks were q_network, target_network
    for name, network in networks.items():
        if name not in state:
            raise UserError(f"checkpoint {file} has no {name} network")
        try:
            network.load_state_dict(state[name])
        except RuntimeError as err:
            first = str(err).splitlines()[0]
            raise UserError(
                f"checkpoint {file}: {name} does not fit the network of its config ({first})"
            ) from None
        network.eval().requires_grad_(False)
    return RunCheckpoint(file, run_dir, agent, args, int(state["step"]), state, networks)


# --- probe batches --------------------------------------------------------------------------


@dataclass
class Transitions:
    """A frozen batch of transitions, as the agent's networks consume them."""

    obs: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    next_obs: torch.Tensor
    terminations: torch.Tensor

    def __len__(self) -> int:
        return len(self.obs)


def _make_env(run: RunCheckpoint, seed: int):
    from envs import make_env
    from envs.nonstationary import TaskCycle

    args = run.args
    extra = {"action_repeat": args.action_repeat} if run.agent == "sac" else {}
    with user_errors("--env"):
        env = make_env(
            args.env,
            seed=seed,
            switch_every=args.switch_every,
            **nonstationary_options(args),
            **extra,
        )
    if isinstance(env.unwrapped, TaskCycle) and "task_cycle" in run.state:
        env.unwrapped.hold_task(run.state["task_cycle"]["period"])  # the run's current task
    return env


def _normalizer(run: RunCheckpoint) -> Callable[[np.ndarray], np.ndarray]:
    """PPO's frozen observation normalization (``--normalize``); identity otherwise."""
    if run.agent != "ppo" or not run.args.normalize:
        return lambda obs: obs
    mean, var, _count = run.state["obs_rms"]
    return lambda obs: np.clip((obs - mean) / np.sqrt(var + 1e-8), -10, 10)


def _behaviour(run: RunCheckpoint, action_space, seed: int) -> Callable:
    """``obs -> (stored action, env action)``: the run's exploring policy.

    SAC and PPO sample from the actor; DQN is ε-greedy at its final ε.
    """
    if run.agent == "dqn":
        q, rng, start = run.networks["q"], np.random.default_rng(seed), int(action_space.start)

        def act(obs):
            if rng.random() < run.args.end_e:
                action = int(rng.integers(action_space.n))
            else:
                action = int(q(torch.as_tensor(obs)[None]).argmax(1))
            return action, action + start

        return act
    actor = run.networks["actor"]
    if run.agent == "sac":

        def act(obs):
            action = actor.get_action(torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1))[0]
            return action[0].numpy(), action[0].numpy()

        return act

    def act(obs):
        action = actor.distribution(torch.as_tensor(obs)[None]).sample()[0]
        if actor.discrete:
            return int(action), int(action)
        low, high = action_space.low, action_space.high
        return action.numpy(), np.clip(action.numpy(), low, high)

    return act


@torch.no_grad()
def collect_transitions(run: RunCheckpoint, n: int, seed: int = 0) -> Transitions:
    """``n`` transitions to probe ``run``'s networks with, fixed by ``seed``.

    From the checkpoint's replay buffer when it has one (``--save-buffer``): ``n`` distinct
    random rows. Otherwise by acting with the run's exploring policy in a fresh env seeded with
    ``seed`` (a task cycle held at the run's current task). PPO's observations and rewards are
    normalized with the run's frozen statistics, as its networks saw them.
    """
    if n < 1:
        raise UserError(f"--probe must be a positive number of transitions, got {n}")
    if "buffer" in run.state:
        buffer = run.state["buffer"]
        rows = torch.randperm(buffer["size"], generator=torch.Generator().manual_seed(seed))[:n]
        keys = ("obs", "actions", "rewards", "next_obs", "terminations")
        return Transitions(*(buffer[key][rows] for key in keys))
    env = _make_env(run, seed)
    normalize = _normalizer(run)
    rows = []
    with torch.random.fork_rng():  # the policy's draws must not move the caller's generator
        torch.manual_seed(seed)
        act = _behaviour(run, env.action_space, seed)
        obs, _ = env.reset(seed=seed)
        while len(rows) < n:
            obs = normalize(obs)
            action, env_action = act(obs)
            next_obs, reward, terminated, truncated, _ = env.step(env_action)
            rows.append((obs, action, float(reward), normalize(next_obs), float(terminated)))
            obs = env.reset()[0] if terminated or truncated else next_obs
    env.close()
    obs, actions, rewards, next_obs, terminations = (
        np.stack(col) for col in zip(*rows, strict=True)
    )
    if run.agent == "ppo" and run.args.normalize:
        var = run.state["return_rms"][1]
        rewards = np.clip(rewards / np.sqrt(var + 1e-8), -10, 10)

    def tensor(values: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(values if values.dtype == np.uint8 else values.astype(np.float32))

    if run.agent == "sac":  # SAC's networks read flat observations
        obs, next_obs = obs.reshape(n, -1), next_obs.reshape(n, -1)
    action_tensor = torch.as_tensor(actions)
    if action_tensor.is_floating_point():
        action_tensor = action_tensor.float()
    return Transitions(
        tensor(obs), action_tensor, tensor(rewards), tensor(next_obs), tensor(terminations)
    )


def network_inputs(run: RunCheckpoint, network: str, batch: Transitions) -> tuple:
    """The probe inputs of ``network``: SAC's critic reads (obs, action), the others obs."""
    if run.agent == "sac" and network == "critic":
        return (batch.obs, batch.actions)
    return (batch.obs,)


# --- losses ---------------------------------------------------------------------------------


@dataclass
class ProbeLoss:
    """``fn(net) -> scalar`` on a frozen batch, and what it is, in words."""

    fn: Callable[[nn.Module], torch.Tensor]
    description: str


def _sac_alpha(run: RunCheckpoint) -> float:
    log_alpha = run.state.get("log_alpha")
    return float(torch.as_tensor(log_alpha).exp()) if log_alpha is not None else run.args.alpha


def _ppo_log_prob(actor: nn.Module, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """log π(a|s) of PPO's actor, written out so that it runs under ``vmap``."""
    out = actor(obs)
    if actor.discrete:
        return F.log_softmax(out, -1).gather(-1, actions.long()[:, None]).squeeze(-1)
    log_std = actor.logstd.expand_as(out)
    z = (actions - out) / log_std.exp()
    return (-0.5 * z.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)


@torch.no_grad()
def probe_loss(
    reference: RunCheckpoint, network: str, batch: Transitions, seed: int = 0
) -> ProbeLoss:
    """The training loss of ``network`` on ``batch``, with targets fixed by ``reference``.

    - SAC ``critic``: mean of both critics' MSE against ``r + γ(1 − d)(min Q_target(s', a') −
      α log π(a'|s'))``, with ``a'`` drawn once from the reference actor (seeded) and the
      reference run's α and target critic.
    - SAC ``actor``: ``E[α log π(ã|s) − min Q(s, ã)]``, ``ã`` reparameterized with noise drawn
      once, ``Q`` the reference critic.
    - DQN ``q``: the run's TD loss (MSE or Huber) against ``r + γ(1 − d) max_a Q_target(s', a)``.
    - PPO ``critic``: ``½ MSE`` against the TD(0) target ``r + γ(1 − d) V_ref(s')`` (PPO trains
      on GAE returns of whole rollouts; a probe batch has no rollouts).
    - PPO ``actor``: the clipped surrogate with advantages ``r + γ(1 − d)V(s') − V(s)`` of the
      reference critic (normalized with ``--norm-adv``) and old log-probabilities of the
      reference actor.
    """
    if network not in NETWORKS[reference.agent]:
        raise ValueError(f"a {reference.agent} run has no {network!r} network to probe")
    nets, args, b = reference.networks, reference.args, batch
    generator = torch.Generator().manual_seed(seed)
    not_done = 1 - b.terminations
    if reference.agent == "sac":
        alpha = _sac_alpha(reference)
        if network == "critic":
            with torch.random.fork_rng():
                torch.manual_seed(seed)  # the next actions' noise, fixed
                target = soft_td_target(
                    nets["actor"], nets["critic_target"], alpha, args.gamma, b.rewards,
                    b.next_obs, b.terminations,
                )  # fmt: skip

            def critic_loss(critic):
                q = critic(b.obs, b.actions)
                return 0.5 * (F.mse_loss(q[0], target) + F.mse_loss(q[1], target))

            return ProbeLoss(
                critic_loss,
                "critic TD loss (mean of the twin MSEs), targets fixed by A's target critic, "
                "actor and alpha",
            )
        critic = nets["critic"]
        noise = torch.randn(len(b), b.actions.shape[1], generator=generator)

        def actor_loss(actor):
            mean, log_std = actor(b.obs)
            squashed = torch.tanh(mean + log_std.exp() * noise)
            action = squashed * actor.action_scale + actor.action_bias
            log_pi = (-0.5 * noise.square() - log_std - 0.5 * math.log(2 * math.pi)).sum(1)
            log_pi = log_pi - torch.log(actor.action_scale * (1 - squashed.square()) + 1e-6).sum(1)
            return (alpha * log_pi - critic(b.obs, action).min(0).values).mean()

        return ProbeLoss(actor_loss, "actor loss E[α log π − min Q], fixed noise, A's critic")
    if reference.agent == "dqn":
        target = greedy_td_target(
            nets["q_target"], args.gamma, b.rewards, b.next_obs, b.terminations
        )
        td = F.smooth_l1_loss if args.td_loss == "huber" else F.mse_loss
        actions = b.actions.long()[:, None]

        def td_loss(q):
            return td(q(b.obs).gather(1, actions).squeeze(1), target)

        return ProbeLoss(td_loss, f"TD loss ({args.td_loss}), targets fixed by A's target network")
    target = b.rewards + not_done * args.gamma * nets["critic"](b.next_obs)
    if network == "critic":

        def value_loss(critic):
            return 0.5 * F.mse_loss(critic(b.obs), target)

        return ProbeLoss(value_loss, "value loss ½MSE against TD(0) targets fixed by A's critic")
    advantages = target - nets["critic"](b.obs)
    if args.norm_adv:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    old_log_prob = _ppo_log_prob(nets["actor"], b.obs, b.actions)
    clip = args.clip_coef

    def surrogate(actor):
        ratio = (_ppo_log_prob(actor, b.obs, b.actions) - old_log_prob).exp()
        clipped = ratio.clamp(1 - clip, 1 + clip)
        return torch.max(-advantages * ratio, -advantages * clipped).mean()

    return ProbeLoss(surrogate, "clipped surrogate, advantages and old log-probs fixed by A")


# --- returns along the path -----------------------------------------------------------------


def policy_returns(run: RunCheckpoint, policy: nn.Module, episodes: int = 3) -> list[float]:
    """Returns of the deterministic policy of ``policy`` (a SAC/PPO actor or a DQN Q-network
    shaped like ``run``'s) over ``episodes`` evaluation episodes of the run's env."""
    agent, normalize = run.agent, _normalizer(run)
    _, action_space = env_spaces(run.args)
    low, high = getattr(action_space, "low", None), getattr(action_space, "high", None)

    @torch.no_grad()
    def act(obs):
        obs = normalize(np.asarray(obs))
        if agent == "sac":
            obs_t = torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1)
            return policy.get_action(obs_t)[2][0].numpy()
        if agent == "dqn":
            return int(policy(torch.as_tensor(obs)[None]).argmax(1)) + int(action_space.start)
        action = policy.act(torch.as_tensor(obs)[None], deterministic=True)[0]
        return int(action) if policy.discrete else np.clip(action.numpy(), low, high)

    args = dataclasses.replace(run.args, eval_episodes=episodes, capture_video=False)
    period = run.state.get("task_cycle", {}).get("period", 0)
    extra = {"action_repeat": run.args.action_repeat} if agent == "sac" else {}
    return evaluate(args, run.run_dir.name, act, "symmetry", period, **extra)


def interpolated_returns(
    run_a: RunCheckpoint,
    run_b: RunCheckpoint,
    perms=None,
    alphas=(0.0, 0.5, 1.0),
    episodes: int = 3,
) -> list[float]:
    """Mean return of the policy merged at each α (``merge`` of the two runs' policy networks,
    B aligned by ``perms``), evaluated in ``run_a``'s env. Each point costs ``episodes`` whole
    episodes: keep ``alphas`` few."""
    name = POLICY_NETWORK[run_a.agent]
    net_a, net_b = run_a.networks[name], run_b.networks[name]
    return [
        float(np.mean(policy_returns(run_a, merge(net_a, net_b, perms, alpha), episodes)))
        for alpha in alphas
    ]


# --- the command ----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit code 2, like the agents
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = _Parser(
        prog="python -m experiments.symmetry",
        description="Compare one network of two runs (or two checkpoints of one run): neuron "
        "identifiability and the loss barrier along the straight line between them, unaligned "
        "and after matching B's units onto A's.",
    )
    parser.add_argument("a", help="run folder (latest checkpoint) or <run>/checkpoints/step_N.pt")
    parser.add_argument("b", help="the other run folder or checkpoint (same agent and network)")
    parser.add_argument(
        "--network", help="critic (default) or actor for SAC and PPO; q (or critic) for DQN"
    )
    parser.add_argument("--probe", type=int, default=512, help="transitions in the probe batch")
    parser.add_argument("--seed", type=int, default=0, help="seed of the probe batch")
    parser.add_argument("--alphas", type=int, default=21, help="points on the path, ends included")
    parser.add_argument("--plot", help="where to write the figure (default: in A's run folder)")
    parser.add_argument(
        "--returns",
        type=int,
        default=0,
        metavar="EPISODES",
        help="also evaluate the policy network merged at α = 0, ½, 1, unaligned and aligned, "
        "with this many episodes per point (slow; 0: off)",
    )
    return parser.parse_args(argv)


def _network_name(agent: str, requested: str | None) -> str:
    if requested is None:
        return NETWORKS[agent][0]
    name = NETWORK_ALIASES.get(agent, {}).get(requested, requested)
    if name not in NETWORKS[agent]:
        raise UserError(f"--network {requested}: a {agent} run has {', '.join(NETWORKS[agent])}")
    return name


def _report(
    matching: ActivationMatching,
    weights: WeightMatching,
    barriers: dict[str, Barrier],
    realization: dict[str, LayerRealization],
) -> str:
    lines = [
        "identifiability: Pearson correlation of A's units with B's on the probe, and the "
        "fraction of units identified",
        f"{'layer':<14}{'units':>6}{'optimal':>9}{'identity':>9}{'random':>8}{'gap':>8}"
        f"{'ident.':>8}{'matched':>8}{'chance':>8}",
    ]
    rows = [(name, layer, len(layer.perm), layer.random) for name, layer in matching.layers.items()]
    rows.append(("all", matching, len(matching.matched), matching.random_mean))
    for name, result, units, random in rows:
        lines.append(
            f"{name:<14}{units:>6}{result.optimal_mean:>9.3f}{result.identity_mean:>9.3f}"
            f"{random:>8.3f}{result.gap:>8.3f}{result.identified_rate:>8.3f}"
            f"{result.identified_matched_rate:>8.3f}{result.chance_rate:>8.3f}"
        )
    lines += [
        "gap = optimal - identity: near 0 when B's units kept A's identities",
        "ident. = units whose same-index unit in B is their mutual best match; matched = the "
        "same under the optimal pairing; chance = ident. for B's units in a random order",
        "",
        "input subspace of A's layers at 90% of the variance on the probe",
        f"{'layer':<14}{'inputs':>7}{'dim':>5}{'explained':>10}{'coherence':>10}",
    ]
    for name, layer in realization.items():
        space = layer.subspace
        lines.append(
            f"{name:<14}{space.full_dimension:>7}{space.dimension:>5}{space.explained:>10.3f}"
            f"{space.coherence:>10.3f}"
        )
    lines += [
        "(standard layers: every swap cost is 0, arXiv 2606.04754; a low dimension leaves few "
        "distinct functions for the units)",
        "",
        f"barrier along (1-a)·A + a·B, {len(next(iter(barriers.values())).alphas)} points",
        f"{'':<20}{'L_A':>11}{'L_B':>11}{'peak':>11}{'midpoint':>11}{'relative %':>11}",
    ]
    for label, barrier in barriers.items():
        lines.append(
            f"{label:<20}{barrier.loss_a:>11.4g}{barrier.loss_b:>11.4g}"
            f"{barrier.peak:>11.4g}{barrier.midpoint:>11.4g}{barrier.relative:>11.4g}"
        )
    lines += [
        "peak = max_a [L(a) - ((1-a)L_A + a·L_B)], midpoint = L(1/2) - (L_A + L_B)/2,",
        "relative = 100 (max_a L(a) - min(L_A, L_B)) / min(L_A, L_B)",
        f"weight distance |A - B| {weights.identity_distance:.4g}, after weight matching "
        f"{weights.distance:.4g}",
    ]
    return "\n".join(lines)


def plot_comparison(
    path: Path, barriers: dict[str, Barrier], matching: ActivationMatching, title: str, loss: str
) -> None:
    """Loss curves along the path (left) and the matched-correlation histogram (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, barrier in barriers.items():
        left.plot(
            barrier.alphas, barrier.losses, marker=".", label=f"{label} (peak {barrier.peak:.3g})"
        )
    first = next(iter(barriers.values()))
    left.plot(first.alphas, first.linear, ls="--", color="gray", label="(1-α)L_A + αL_B")
    left.set(xlabel="α (0: A, 1: B)", ylabel="loss on the probe batch", title=loss)
    left.title.set_fontsize(8)
    left.legend(fontsize=8)
    bins = np.linspace(-1, 1, 41)
    identity = torch.cat([layer.identity for layer in matching.layers.values()])
    right.hist(matching.matched.numpy(), bins=bins, alpha=0.7, label="optimal permutation")
    right.hist(identity.numpy(), bins=bins, alpha=0.5, label="identity")
    right.set(xlabel="Pearson correlation of matched units", ylabel="units")
    right.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def compare(options: argparse.Namespace) -> None:
    """The command: load, probe, match, measure, print, plot."""
    if options.alphas < 2:
        raise UserError(f"--alphas must be at least 2, got {options.alphas}")
    run_a, run_b = load_run(options.a), load_run(options.b)
    if run_a.agent != run_b.agent:
        raise UserError(f"A is a {run_a.agent} run and B a {run_b.agent} run: compare one agent")
    name = _network_name(run_a.agent, options.network)
    net_a, net_b = run_a.networks[name], run_b.networks[name]
    shapes_a = {k: v.shape for k, v in net_a.state_dict().items()}
    if shapes_a != {k: v.shape for k, v in net_b.state_dict().items()}:
        raise UserError(
            f"the {name} networks of A and B differ in shape (other env or --hidden-size?)"
        )
    wiring = infer_wiring(net_a)
    batch = collect_transitions(run_a, options.probe, options.seed)
    loss = probe_loss(run_a, name, batch, options.seed)
    probe = network_inputs(run_a, name, batch)
    matching = activation_matching(net_a, net_b, probe, wiring, seed=options.seed)
    weights = weight_matching(net_a, net_b, wiring, seed=options.seed)
    barriers = {
        label: interpolation_barrier(net_a, net_b, loss.fn, options.alphas, align, wiring=wiring)
        for label, align in (
            ("unaligned", None),
            ("activation-aligned", matching),
            ("weight-aligned", weights),
        )
    }
    source = "the checkpoint's replay buffer" if "buffer" in run_a.state else "A's policy"
    print(f"A  {run_a.path}  ({run_a.agent}, step {run_a.step})")
    print(f"B  {run_b.path}  ({run_b.agent}, step {run_b.step})")
    units = sum(len(layer.matched) for layer in matching.layers.values())
    print(f"network {name}: {len(wiring.readers)} permuted layers, {units} hidden units")
    print(f"probe: {len(batch)} transitions from {source} (seed {options.seed})")
    print(f"loss: {loss.description}")
    print()
    print(_report(matching, weights, barriers, realization_report(net_a, probe)))
    if options.returns:
        policy = POLICY_NETWORK[run_a.agent]
        aligned = activation_matching(run_a.networks[policy], run_b.networks[policy], (batch.obs,))
        print(
            f"\nmean return of the merged {policy} at a = 0, 1/2, 1 ({options.returns} episodes) "
            "and the relative return barrier 100 (min return - best end) / |best end|"
        )
        for label, perms in (("unaligned", None), ("activation-aligned", aligned)):
            returns = interpolated_returns(run_a, run_b, perms, (0.0, 0.5, 1.0), options.returns)
            relative = relative_barrier(returns, higher_is_better=True)
            print(f"{label:<20}" + "".join(f"{r:>11.4g}" for r in [*returns, relative]))
    plot = (
        Path(options.plot)
        if options.plot
        else (
            run_a.run_dir / f"symmetry_{name}_{run_a.step}_vs_{run_b.run_dir.name}_{run_b.step}.png"
        )
    )
    title = f"{name}: A = {run_a.label}, B = {run_b.label}"
    try:
        plot_comparison(plot, barriers, matching, title, loss.description)
    except ImportError:  # matplotlib is an extra; the numbers above are the main output
        print("no plot: install matplotlib (pip install 'plasticity-rl[bench]')", file=sys.stderr)
        return
    print(f"\nplot: {plot}")


def main(argv: list[str] | None = None) -> None:
    """``python -m experiments.symmetry A B [...]``."""
    options = parse_args(argv)
    run_cli(lambda: compare(options))


if __name__ == "__main__":
    main()
