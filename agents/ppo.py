"""Proximal Policy Optimization, with plasticity methods on actor and critic.

Read top to bottom like CleanRL's ``ppo.py`` / ``ppo_continuous_action.py`` /
``ppo_atari.py`` (Schulman et al. 2017, arXiv 1707.06347): vectorized rollouts, GAE, clipped
surrogate and clipped value loss, annealed learning rate. What this file changes:

- actor and critic are two networks (CleanRL: one ``Agent`` with two heads), so each carries
  its own plasticity method (``--method``, ``--actor-method``, ``--critic-method``) and
  optimizer. Their losses are summed and backpropagated once, and the gradient norm is
  clipped over both together, as in CleanRL.
- the vector env autoresets at the *next* step (gymnasium 1.x default). The step that follows
  an episode's end only resets that copy: its action is ignored and its reward is 0. Such
  steps are stored with ``valid = False`` and left out of every loss. Because the observation
  returned at the end of an episode is the real final observation, ``V(final obs)`` is
  already in the rollout, and truncated episodes are bootstrapped from it. Terminated ones are
  not. CleanRL treats truncation like termination.
- interventions (``after_update``, ``on_task_switch``) run between iterations, after the
  update epochs and never in the middle of a rollout, so stored log-probabilities stay those
  of the policy that acted.
- ER + L2 as its authors' PPO runs it (arXiv 2509.22335, lop-jax ``rlopt``): the
  effective-rank ascent once per epoch on the rollout's observations, before that epoch's
  minibatches (``er_schedule`` 'epochs', at ``er_lr`` 1e-6), and the coupled L2's gradient
  added after the gradient-norm clip, not clipped with the task gradient.

    python train.py --agent ppo --env CartPole-v1 --method fire
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical, Normal

from agents.cli import CommonArgs, UserError, run_agent
from agents.device import configure
from agents.environments import env_spaces, make_train_envs
from agents.lifecycle import Lifecycle
from agents.networks import NATURE_MIN_SIZE, image_torso
from agents.plastic import PlasticNetwork
from plasticity.architecture import hidden_block, widening
from plasticity.metrics import gradient_norm


@dataclass
class Args(CommonArgs):
    env: str = "CartPole-v1"
    """environment with Discrete or Box actions (short name, cycle, or gymnasium id)"""
    total_timesteps: int = 500_000
    """total environment steps (ppo_continuous_action: 1M, ppo_atari: 10M)"""
    actor_method: str | None = None
    """plasticity method of the policy network (overrides --method)"""
    critic_method: str | None = None
    """plasticity method of the value network (overrides --method)"""
    learning_rate: float | None = None
    """learning rate of actor and critic optimizers (default 2.5e-4 discrete, 3e-4 continuous)"""
    num_envs: int | None = None
    """number of parallel environments (default 4 discrete, 8 Atari, 1 continuous)"""
    num_steps: int | None = None
    """steps per environment per rollout (default 128 discrete, 2048 continuous)"""
    anneal_lr: bool = True
    """anneal the learning rates linearly to 0 over the run"""
    gamma: float = 0.99
    """the discount factor gamma"""
    gae_lambda: float = 0.95
    """the lambda of generalized advantage estimation"""
    num_minibatches: int | None = None
    """minibatches per epoch (default 4 discrete, 32 continuous)"""
    update_epochs: int | None = None
    """epochs over each rollout (default 4 discrete, 10 continuous)"""
    norm_adv: bool = True
    """normalize advantages per minibatch"""
    clip_coef: float | None = None
    """the surrogate clipping coefficient (default 0.2, 0.1 Atari)"""
    clip_vloss: bool = True
    """use the clipped value loss of the PPO paper's code"""
    ent_coef: float | None = None
    """coefficient of the entropy bonus (default 0.01 discrete, 0.0 continuous)"""
    vf_coef: float = 0.5
    """coefficient of the value loss"""
    max_grad_norm: float = 0.5
    """the maximum norm of the joint actor and critic gradient (clipped, as CleanRL)"""
    target_kl: float | None = None
    """stop the epochs of an iteration early when approx-KL exceeds this"""
    normalize: bool | None = None
    """normalize observations (clip ±10) and rewards (clip ±10) with running statistics, for
    vector observations only (default True continuous, as ppo_continuous_action; else False)"""
    hidden_size: int = 64
    """units of the two tanh hidden layers of the MLPs (image observations use the Nature CNN)"""


# Settings left unset (None) in Args take CleanRL's values for the kind of env: ppo.py's for
# discrete actions, ppo_atari.py's for frames, ppo_continuous_action.py's for Box actions.
DISCRETE_DEFAULTS = {
    "learning_rate": 2.5e-4,
    "num_envs": 4,
    "num_steps": 128,
    "num_minibatches": 4,
    "update_epochs": 4,
    "clip_coef": 0.2,
    "ent_coef": 0.01,
    "normalize": False,
}
ATARI_DEFAULTS = {**DISCRETE_DEFAULTS, "num_envs": 8, "clip_coef": 0.1}
# MinAtar: ppo.py's discrete settings with 8 envs (MinAtar has no reference PPO; its own
# actor-critic uses the same torso)
MINATAR_DEFAULTS = {**DISCRETE_DEFAULTS, "num_envs": 8}
CONTINUOUS_DEFAULTS = {
    "learning_rate": 3e-4,
    "num_envs": 1,
    "num_steps": 2048,
    "num_minibatches": 32,
    "update_epochs": 10,
    "clip_coef": 0.2,
    "ent_coef": 0.0,
    "normalize": True,
}


def layer_init(layer: nn.Module, std: float = np.sqrt(2), bias_const: float = 0.0) -> nn.Module:
    """CleanRL's initialization: orthogonal weights with gain ``std``, constant bias."""
    torch.nn.init.orthogonal_(layer.weight, std)
    torch.nn.init.constant_(layer.bias, bias_const)
    return layer


def is_image(space: gym.Space) -> bool:
    return space.dtype == np.uint8 and len(space.shape) == 3


def make_trunk(
    obs_space: gym.Space, hidden: int, layer_norm: bool = False, activation: str | None = None
) -> tuple[nn.Sequential, int]:
    """A convolutional torso (ReLU; Nature CNN, or MinAtar's for small grids) for uint8
    images (C, H, W), else a two-layer tanh MLP; ``layer_norm`` and ``activation`` (unset:
    those) as ``agents/networks.py`` describes."""
    if is_image(obs_space):
        return image_torso(obs_space.shape, layer_init, layer_norm, activation or "relu")
    activation = activation or "tanh"
    obs_dim, wide = int(np.prod(obs_space.shape)), widening(activation)
    trunk = nn.Sequential(
        *hidden_block(layer_init(nn.Linear(obs_dim, hidden)), activation, layer_norm),
        *hidden_block(layer_init(nn.Linear(hidden * wide, hidden)), activation, layer_norm),
    )
    return trunk, hidden * wide


def hidden_activation(obs_space: gym.Space, activation: str | None = None):
    """The hidden nonlinearity of the trunk, per unit (for ReDo and the plasticity metrics):
    tanh, or ReLU (also how CReLU and DFF units are read: metrics only, as the methods that
    replace units refuse those)."""
    return (
        torch.tanh
        if (activation or ("relu" if is_image(obs_space) else "tanh")) == "tanh"
        else F.relu
    )


def preprocess(obs: torch.Tensor, image: bool) -> torch.Tensor:
    return obs.float() / 255.0 if image else obs.float().flatten(1)


class Actor(nn.Module):
    """The policy: Categorical over logits, or Gaussian with a state-independent log-std."""

    heads = ("head",)

    def __init__(
        self,
        obs_space: gym.Space,
        action_space: gym.Space,
        hidden: int = 64,
        layer_norm: bool = False,
        activation: str | None = None,
    ):
        super().__init__()
        self.image = is_image(obs_space)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        self.trunk, features = make_trunk(obs_space, hidden, layer_norm, activation)
        out = int(action_space.n) if self.discrete else int(np.prod(action_space.shape))
        self.head = layer_init(nn.Linear(features, out), std=0.01)
        if not self.discrete:
            self.logstd = nn.Parameter(torch.zeros(1, out))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Logits (discrete) or the mean action (continuous)."""
        return self.head(self.trunk(preprocess(obs, self.image)))

    def distribution(self, obs: torch.Tensor):
        out = self(obs)  # argument validation off: it costs ~10% of a CartPole run
        if self.discrete:
            return Categorical(logits=out, validate_args=False)
        return Normal(out, self.logstd.expand_as(out).exp(), validate_args=False)

    def log_prob_entropy(self, dist, action: torch.Tensor):
        if self.discrete:
            return dist.log_prob(action), dist.entropy()
        return dist.log_prob(action).sum(-1), dist.entropy().sum(-1)

    def act(self, obs: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        out = self(obs)
        if deterministic:
            return out.argmax(-1) if self.discrete else out
        return self.distribution(obs).sample()


class Critic(nn.Module):
    """The state-value function V(s)."""

    heads = ("head",)

    def __init__(
        self,
        obs_space: gym.Space,
        hidden: int = 64,
        layer_norm: bool = False,
        activation: str | None = None,
    ):
        super().__init__()
        self.image = is_image(obs_space)
        self.trunk, features = make_trunk(obs_space, hidden, layer_norm, activation)
        self.head = layer_init(nn.Linear(features, 1), std=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(preprocess(obs, self.image))).squeeze(-1)


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    terminations: torch.Tensor,
    dones: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns of a rollout, shape ``(T, num_envs)``.

    ``values`` has ``T + 1`` rows: ``values[t + 1]`` is V of the observation that step ``t``
    returned (for ``t = T - 1`` the observation after the rollout). ``terminations[t]`` stops
    the bootstrap of step ``t``; ``dones[t]`` (terminated or truncated) stops the advantage
    chain, so a truncated step still bootstraps from V(final obs). Entries of reset-only steps
    are meaningless and must be masked out by the caller.
    """
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    for t in reversed(range(rewards.shape[0])):
        delta = rewards[t] + gamma * (1.0 - terminations[t]) * values[t + 1] - values[t]
        last = delta + gamma * gae_lambda * (1.0 - dones[t]) * last
        advantages[t] = last
    return advantages, advantages + values[:-1]


def valid_steps(valid: torch.Tensor, *rollout: torch.Tensor) -> list[torch.Tensor]:
    """The ``(T, num_envs, ...)`` rollout tensors flattened to a batch of the valid steps."""
    keep = valid.flatten()
    return [x.flatten(0, 1)[keep] for x in rollout]


def any_size(*minibatch: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``minibatch`` with its first dimension marked dynamic for ``torch.compile``: the sizes
    vary with the reset-only steps left out of a rollout, so the compiled update is traced
    for any size at once instead of again at the first rollout with an episode end (under
    ``--cudagraphs`` each new size is still recorded as a graph of its own)."""
    for tensor in minibatch:
        torch._dynamo.maybe_mark_dynamic(tensor, 0)
    return minibatch


class SavedNormalization:
    """The running statistics of ``--normalize`` (observations, returns; ``None`` without it)
    in checkpoints, as ``obs_rms`` and ``return_rms``: tensors and floats, which
    ``weights_only`` loading reads (older checkpoints hold NumPy arrays)."""

    def __init__(self, obs_rms, return_rms):
        self.statistics = {"obs_rms": obs_rms, "return_rms": return_rms}
        self.normalize = obs_rms is not None

    def state_dict(self) -> dict:
        if not self.normalize:
            return {}
        state = {}
        for key, rms in self.statistics.items():
            mean, var = (torch.as_tensor(np.asarray(x)) for x in (rms.mean, rms.var))
            state[key] = (mean, var, float(rms.count))
        return state

    def load_state_dict(self, checkpoint: dict) -> None:
        if self.normalize != ("obs_rms" in checkpoint):
            raise ValueError(
                f"that run was trained {'without' if self.normalize else 'with'} --normalize; "
                "continue it the same way"
            )
        if not self.normalize:
            return
        for key, rms in self.statistics.items():
            mean, var, count = checkpoint[key]
            rms.mean = torch.as_tensor(mean).cpu().numpy().astype(np.float64)
            rms.var = torch.as_tensor(var).cpu().numpy().astype(np.float64)
            rms.count = float(count)


def check(args: Args) -> None:
    args.check(
        positive=("num_steps", "num_minibatches", "update_epochs", "hidden_size"),
        rates=("learning_rate", "clip_coef", "max_grad_norm", "target_kl"),
        weights=("ent_coef", "vf_coef"),
        fractions=("gamma", "gae_lambda"),
    )


def resolved_args(args: Args, obs_space: gym.Space, action_space: gym.Space) -> Args:
    """The run's settings on an env of these spaces: those left unset take the defaults of its
    kind, before the run folder records them; checked, and a UserError for an env or a rollout
    PPO cannot train on."""
    if not isinstance(action_space, (gym.spaces.Discrete, gym.spaces.Box)):
        raise UserError(f"PPO needs Discrete or Box actions, {args.env} has {action_space}")
    if isinstance(action_space, gym.spaces.Box):
        defaults = CONTINUOUS_DEFAULTS
    else:
        defaults = DISCRETE_DEFAULTS
        if is_image(obs_space):
            small = min(obs_space.shape[1:]) < NATURE_MIN_SIZE
            defaults = MINATAR_DEFAULTS if small else ATARI_DEFAULTS
    # the effective-rank ascent once per epoch on the rollout, as its authors' PPO
    args = args.with_defaults(defaults, er_schedule="epochs")
    check(args)
    batch_size = args.num_envs * args.num_steps
    if batch_size < args.num_minibatches:
        raise UserError(
            f"num_envs × num_steps = {batch_size} is smaller than --num-minibatches "
            f"{args.num_minibatches}; raise --num-steps"
        )
    if args.total_timesteps < batch_size:
        raise UserError(
            f"--total-timesteps {args.total_timesteps} is less than one rollout "
            f"(num_envs × num_steps = {batch_size}); raise it or lower --num-steps"
        )
    if args.normalize and is_image(obs_space):
        raise UserError("--normalize is for vector observations; drop it for image envs")
    return args


def main(args: Args) -> dict:
    check(args)
    device, compiled = configure(args)
    obs_space, action_space = env_spaces(args)
    args = resolved_args(args, obs_space, action_space)
    batch_size = args.num_envs * args.num_steps
    num_iterations = args.total_timesteps // batch_size

    envs = make_train_envs(args)
    discrete = isinstance(action_space, gym.spaces.Discrete)
    if args.normalize:
        envs = obs_norm = gym.wrappers.vector.NormalizeObservation(envs)
        envs = gym.wrappers.vector.TransformObservation(envs, lambda o: np.clip(o, -10, 10))
        envs = reward_norm = gym.wrappers.vector.NormalizeReward(envs, gamma=args.gamma)
        envs = gym.wrappers.vector.TransformReward(envs, lambda r: np.clip(r, -10, 10))
        obs_rms, return_rms = obs_norm.obs_rms, reward_norm.return_rms
    else:
        obs_rms = return_rms = None

    architecture = {"layer_norm": args.layer_norm, "activation": args.activation}

    def new_actor() -> Actor:
        return Actor(obs_space, action_space, args.hidden_size, **architecture).to(device)

    def new_critic() -> Critic:
        return Critic(obs_space, args.hidden_size, **architecture).to(device)

    actor, critic = new_actor(), new_critic()
    activation = hidden_activation(obs_space, args.activation)
    settings = {"activation": activation, "eps": 1e-5}
    actor_plasticity = PlasticNetwork(
        args, "actor", actor, args.learning_rate, heads=Actor.heads, fresh=new_actor, **settings
    )
    critic_plasticity = PlasticNetwork(
        args, "critic", critic, args.learning_rate, heads=Critic.heads, fresh=new_critic, **settings
    )
    handles = (actor_plasticity, critic_plasticity)
    # gradient norm clipped jointly; interventions rewrite parameters in place, so it stays valid
    parameters = [*actor.parameters(), *critic.parameters()]

    low = torch.as_tensor(getattr(action_space, "low", 0), dtype=torch.float32, device=device)
    high = torch.as_tensor(getattr(action_space, "high", 0), dtype=torch.float32, device=device)

    def policy(obs: np.ndarray) -> np.ndarray:
        """The deterministic policy for evaluation: argmax of the logits, or the mean action."""
        if obs_rms is not None:  # the training statistics, frozen
            obs = np.clip((obs - obs_rms.mean) / np.sqrt(obs_rms.var + 1e-8), -10, 10)
        with torch.no_grad():
            action = actor.act(torch.as_tensor(obs, device=device)[None], deterministic=True)[0]
            if not discrete:
                action = action.clamp(low, high)
            return action.cpu().numpy()

    def ppo_losses(obs, actions, old_logprobs, advantages, returns, old_values):
        """Clipped surrogate, (clipped) value loss and entropy of a minibatch, with the
        diagnostics: old and new approximate KL, clip fraction."""
        dist = actor.distribution(obs)
        newlogprob, entropy = actor.log_prob_entropy(dist, actions)
        newvalue = critic(obs)
        logratio = newlogprob - old_logprobs
        ratio = logratio.exp()

        with torch.no_grad():
            # calculate approx_kl http://joschu.net/blog/kl-approx.html
            old_approx_kl = (-logratio).mean()
            approx_kl = ((ratio - 1) - logratio).mean()
            clipfrac = ((ratio - 1.0).abs() > args.clip_coef).float().mean()

        if args.norm_adv:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

        # Policy loss
        pg_loss1 = -advantages * ratio
        pg_loss2 = -advantages * torch.clamp(ratio, 1 - args.clip_coef, 1 + args.clip_coef)
        pg_loss = torch.max(pg_loss1, pg_loss2).mean()

        # Value loss
        v_loss_unclipped = (newvalue - returns) ** 2
        if args.clip_vloss:
            v_clipped = old_values + torch.clamp(
                newvalue - old_values, -args.clip_coef, args.clip_coef
            )
            v_loss_clipped = (v_clipped - returns) ** 2
            v_loss = 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()
        else:
            v_loss = 0.5 * v_loss_unclipped.mean()
        return pg_loss, v_loss, entropy.mean(), old_approx_kl, approx_kl, clipfrac

    def update(obs, actions, old_logprobs, advantages, returns, old_values):
        """One minibatch update of actor and critic: their losses (with the methods'
        penalties) backpropagated once, the joint gradient norm clipped, the coupled L2's
        gradient added after the clip (as the ER + L2 authors' optax chain), both optimizers
        stepped. Returns the losses and diagnostics, detached, whether the loss was NaN/Inf and
        each network's (clipped) gradient norm: every value the loop reads (see
        agents/sac.py)."""
        pg_loss, v_loss, entropy_loss, old_approx_kl, approx_kl, clipfrac = ppo_losses(
            obs, actions, old_logprobs, advantages, returns, old_values
        )
        actor_loss = pg_loss - args.ent_coef * entropy_loss
        actor_loss = actor_loss + actor_plasticity.penalty(actor_loss, decay=False)
        critic_loss = args.vf_coef * v_loss
        critic_loss = critic_loss + critic_plasticity.penalty(critic_loss, decay=False)
        for handle in handles:
            handle.optimizer.zero_grad(set_to_none=True)
        (actor_loss + critic_loss).backward()
        nn.utils.clip_grad_norm_(parameters, args.max_grad_norm)
        for handle in handles:
            handle.add_decay_gradient()
            handle.after_backward()
            handle.optimizer.step()
        losses = (pg_loss, v_loss, entropy_loss, old_approx_kl, approx_kl, clipfrac)
        return (
            *(x.detach() for x in losses),
            ~torch.isfinite(actor_loss + critic_loss),
            gradient_norm(actor.parameters()),
            gradient_norm(critic.parameters()),
        )

    def critic_curvature(obs, returns) -> dict[str, float]:
        """The critic's K-FAC ε-ranks under its value loss on a minibatch."""
        return critic_plasticity.curvature(lambda net: 0.5 * ((net(obs) - returns) ** 2).mean())

    @torch.no_grad()
    def act(obs):
        """A sampled action, its log-probability and the value of ``obs``."""
        dist = actor.distribution(obs)
        action = dist.sample()
        return action, actor.log_prob_entropy(dist, action)[0], critic(obs)

    update, act = compiled(update), compiled(act)

    # ALGO Logic: storage setup. Row t holds the observation acted on at step t; row T of
    # ``obs``/``values`` holds the observation after the rollout, for bootstrapping.
    T, N = args.num_steps, args.num_envs
    obs_dtype = torch.uint8 if is_image(obs_space) else torch.float32
    obs = torch.zeros((T + 1, N, *obs_space.shape), dtype=obs_dtype, device=device)
    act_shape = () if discrete else action_space.shape
    act_dtype = torch.long if discrete else torch.float32
    actions = torch.zeros((T, N, *act_shape), dtype=act_dtype, device=device)
    logprobs = torch.zeros((T, N), device=device)
    rewards = torch.zeros((T, N), device=device)
    terminations = torch.zeros((T, N), device=device)
    dones = torch.zeros((T, N), device=device)
    valid = torch.zeros((T, N), dtype=torch.bool, device=device)
    values = torch.zeros((T + 1, N), device=device)

    life = Lifecycle(
        args,
        "ppo",
        envs,
        policy,
        list(handles),
        extras=[SavedNormalization(obs_rms, return_rms)],
        total_steps=num_iterations * batch_size,
    )
    global_step = life.start_step
    next_obs_np, _ = envs.reset(seed=args.seed + global_step)  # resumed: new episodes
    next_obs = torch.as_tensor(next_obs_np, device=device)
    prev_done = torch.zeros(N, dtype=torch.bool, device=device)
    # each group's rate as a tensor, annealed in place: a compiled update reads it as an input
    # instead of specializing on (and recompiling for) every new Python float; each group is
    # annealed from its own rate (Muon's hidden matrices train at a multiple of the network's)
    groups = [group for handle in handles for group in handle.optimizer.param_groups]
    initial_rates = [float(group["lr"]) for group in groups]
    for group in groups:
        group["lr"] = torch.tensor(float(group["lr"]), device=group["params"][0].device)
    iteration = global_step // batch_size
    while life.running(global_step):
        iteration += 1
        # Annealing the rate if instructed to do so.
        if args.anneal_lr:
            frac = 1.0 - (iteration - 1.0) / num_iterations
            for group, rate in zip(groups, initial_rates, strict=True):
                group["lr"].fill_(frac * rate)

        switched = False
        for step in range(T):
            obs[step] = next_obs
            valid[step] = ~prev_done  # a copy that ended last step only resets at this one
            # ALGO LOGIC: action logic
            action, logprobs[step], values[step] = act(next_obs)
            actions[step] = action
            env_action = action if discrete else action.clamp(low, high)

            next_obs_np, reward, terminated, truncated, infos = envs.step(env_action.cpu().numpy())
            next_obs = torch.as_tensor(next_obs_np, device=device)
            rewards[step] = torch.as_tensor(reward, dtype=torch.float32, device=device)
            terminations[step] = torch.as_tensor(terminated, dtype=torch.float32, device=device)
            prev_done = torch.as_tensor(terminated | truncated, device=device)
            dones[step] = prev_done.float()
            global_step += N
            switched |= life.episodes(global_step, infos)
        obs[T] = next_obs
        with torch.no_grad():
            values[T] = critic(next_obs)
            advantages, returns = compute_gae(
                rewards, values, terminations, dones, args.gamma, args.gae_lambda
            )

        # flatten the batch; reset-only steps are left out
        b_obs, b_actions, b_logprobs, b_advantages, b_returns, b_values = valid_steps(
            valid, obs[:T], actions, logprobs, advantages, returns, values[:T]
        )

        # Optimizing the policy and value networks
        life.training(global_step)
        n = b_obs.shape[0]
        clipfracs = []
        for _epoch in range(args.update_epochs):
            for handle in handles:  # the effective-rank ascent's epoch schedule
                handle.before_epoch(inputs=b_obs)
            for mb_inds in torch.randperm(n, device=device).tensor_split(args.num_minibatches):
                mb_obs = b_obs[mb_inds]
                *losses, diverged, actor_grad_norm, critic_grad_norm = update(
                    *any_size(
                        mb_obs,
                        b_actions[mb_inds],
                        b_logprobs[mb_inds],
                        b_advantages[mb_inds],
                        b_returns[mb_inds],
                        b_values[mb_inds],
                    )
                )
                pg_loss, v_loss, entropy_loss, old_approx_kl, approx_kl, clipfrac = losses
                life.note_nonfinite(diverged)
                clipfracs.append(clipfrac)
                # the rules of every gradient step (CBP, SNR, NaP, C-CHAIN's reference batch), as
                # their authors' PPO: called with the iteration's env step, their own counters
                # count these calls (CBP's ages) or the minibatch's samples (SNR's); and the
                # minibatches the effective-rank ascent keeps
                for handle in handles:
                    handle.after_minibatch(inputs=mb_obs)
                    handle.after_update(global_step, mb_obs, every_update=True)

            if args.target_kl is not None and approx_kl > args.target_kl:
                break

        measuring = life.metrics_due(global_step)
        if measuring:  # before this iteration's interventions
            metrics = {
                **actor_plasticity.measure(mb_obs, actor_grad_norm),
                **critic_plasticity.measure(mb_obs, critic_grad_norm),
                **critic_curvature(mb_obs, b_returns[mb_inds]),
            }

        # interventions between iterations: scheduled ones, then those of a task switch
        if switched and life.intervening(global_step):  # the critic's curvature as it begins
            life.log(global_step, critic_curvature(mb_obs, b_returns[mb_inds]))
        for handle in handles:
            if life.intervening(global_step):
                handle.after_update(global_step, mb_obs, every_update=False)
                if switched:
                    handle.on_task_switch(inputs=mb_obs)

        life.raise_if_diverged(global_step)
        y_pred, y_true = b_values.cpu().numpy(), b_returns.cpu().numpy()
        var_y = np.var(y_true)
        explained_var = np.nan if var_y == 0 else 1 - np.var(y_true - y_pred) / var_y
        scalars = {
            "charts/learning_rate": float(actor_plasticity.optimizer.param_groups[0]["lr"]),
            "losses/value_loss": v_loss.item(),
            "losses/policy_loss": pg_loss.item(),
            "losses/entropy": entropy_loss.item(),
            "losses/old_approx_kl": old_approx_kl.item(),
            "losses/approx_kl": approx_kl.item(),
            "losses/clipfrac": torch.stack(clipfracs).mean().item(),
            "losses/explained_variance": explained_var,
            "charts/SPS": life.sps(global_step),
        }
        # the losses every iteration, the plasticity metrics on their cadence
        if measuring:
            scalars.update(metrics)
        life.log_metrics(global_step, scalars)
        life.after_step(global_step)

    envs.close()
    return life.finish(global_step)


if __name__ == "__main__":
    run_agent(main, Args, "ppo")
