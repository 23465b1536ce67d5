"""Stable-Baselines3 integration: AdamO through ``policy_kwargs`` and a plasticity callback.

Two lines give an SB3 agent AdamO and periodic FIRE::

    model = SAC("MlpPolicy", env, policy_kwargs=adamo_policy_kwargs(iso_coef=1e-3))
    model.learn(200_000, callback=PlasticityCallback("fire", fire_every=100_000))

SB3 builds each optimizer from a flat ``parameters()`` list, so AdamO alone cannot tell output
heads from hidden layers; :func:`use_adamo_groups` (called by :class:`PlasticityCallback` when
training starts, before any step) marks in every AdamO which parameters take the isometry
step: hidden weights yes, heads and biases no. The optimizer keeps SB3's one parameter group,
so saved models load with ``SAC.load`` and the like.

What a callback cannot do: penalties (the parts of kind ``PartKind.PENALTY``: ``isometry``,
``l2_init``, ``l2``, ``parseval``, ``spectral``, ``er_l2``) must enter the loss, which SB3
computes inside ``train()``; use AdamO, the decoupled form of the isometry penalty, instead.
Nor can it build an optimizer SB3 builds in its policy (``muon``, ``trac``); ``kron`` works
with a model built with ``policy_kwargs={"optimizer_class": Kron}``. ``nap`` needs a policy
that normalizes before its nonlinearities. A plasticity injection lives in forward hooks and
the callback's handles: ``model.save`` does not keep it. The effective-rank ascent (``er``)
cannot see SB3's minibatches or epochs either: it runs every ``er_every`` env steps on a probe
batch from the model's buffer (``er_schedule`` 'steps'), at our RL agents' ``er_lr`` 1e-6.

Our agents' ``--layer-norm`` and ``--activation`` (``relu``, ``crelu``, ``dff``) are policy
arguments of the classes :func:`architecture_policy` gives (SAC, DQN, PPO, A2C)::

    model = SAC(architecture_policy(SAC), env,
                policy_kwargs={"layer_norm": True, "activation": "crelu"})

On a CPU, pin torch's threads before building the model (``torch.set_num_threads(1)``, as
``train.py``'s ``--threads`` does by default): SB3's small networks on a few shared cores run
several times slower on torch's default of one thread per core (``examples/sb3_sac_fire.py``:
311 s with two threads, 59 s with one, on a 2-core machine).

This is the only module of the project that imports ``stable_baselines3`` (an optional extra).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from torch import nn

try:
    from stable_baselines3 import A2C, DQN, PPO, SAC, TD3
    from stable_baselines3.common.base_class import BaseAlgorithm
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
    from stable_baselines3.dqn.policies import DQNPolicy
    from stable_baselines3.sac.policies import SACPolicy
except ImportError as err:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "plasticity.sb3 needs stable-baselines3: pip install 'stable-baselines3>=2.3'"
    ) from err

from plasticity._layers import named_layers, reinitialized_copy
from plasticity.architecture import NONLINEARITIES, hidden_block, widening
from plasticity.interventions import InterventionReport
from plasticity.methods import (
    ER_LR_RL,
    MethodHandle,
    MethodPart,
    PartKind,
    is_announced,
    make_method,
)
from plasticity.metrics import PlasticityMonitor
from plasticity.optim import AdamO, isometry_parameters
from plasticity.schedule import Every
from plasticity.tasks import task_period


def adamo_policy_kwargs(iso_coef: float = 1e-3, **optimizer_kwargs) -> dict:
    """``policy_kwargs`` that make every optimizer of an SB3 policy :class:`AdamO`.

    ``optimizer_kwargs`` (``iso_scale``, ``iso_every``, ``weight_decay``, ``eps``) go to AdamO.
    Pair with :class:`PlasticityCallback` (or call :func:`use_adamo_groups` once) so that heads
    and biases are kept out of the isometry step.
    """
    return {
        "optimizer_class": AdamO,
        "optimizer_kwargs": {"iso_coef": iso_coef, **optimizer_kwargs},
    }


# --- policies with a normalization and a nonlinearity of choice ----------------------------


def hidden_mlp(in_features: int, net_arch: list[int], layer_norm: bool, activation: str):
    """Linear layers of ``net_arch`` units, each followed by its normalization (``layer_norm``)
    and nonlinearity (:func:`plasticity.architecture.hidden_block`), the fan-in of each layer
    widened with the one before (CReLU, DFF); returns the ``nn.Sequential`` and its output
    width."""
    layers, width = [], in_features
    for units in net_arch:
        layers += hidden_block(nn.Linear(width, units), activation, layer_norm)
        width = units * widening(activation)
    return nn.Sequential(*layers), width


class _Architecture:
    """What the policies below share: the ``layer_norm`` and ``activation`` arguments (saved
    with the policy, so ``Algorithm.load`` rebuilds it) and the hidden MLPs they make."""

    default_activation: str

    def __init__(self, *args, layer_norm: bool = False, activation: str | None = None, **kwargs):
        activation = activation or self.default_activation
        if activation not in NONLINEARITIES:
            raise ValueError(
                f"unknown activation {activation!r}; choose from {', '.join(NONLINEARITIES)}"
            )
        given = kwargs.pop("activation_fn", None)
        if given not in (None, NONLINEARITIES[activation]):
            raise ValueError(
                f"{type(self).__name__} takes its nonlinearity as activation={activation!r}; "
                f"leave out activation_fn={given.__name__}"
            )
        self.layer_norm, self.activation = layer_norm, activation
        # the class SB3 keeps: what the callback reads the hidden units with
        super().__init__(*args, activation_fn=NONLINEARITIES[activation], **kwargs)

    def _get_constructor_parameters(self) -> dict:
        return {
            **super()._get_constructor_parameters(),
            "layer_norm": self.layer_norm,
            "activation": self.activation,
        }

    def hidden(self, in_features: int, net_arch: list[int]) -> tuple[nn.Sequential, int]:
        return hidden_mlp(in_features, net_arch, self.layer_norm, self.activation)


class SACArchitecturePolicy(_Architecture, SACPolicy):
    """SAC's ``MlpPolicy`` with ``layer_norm`` and ``activation`` (``relu``, ``crelu``,
    ``dff``, ``tanh``; default ``relu``) in the actor's and every critic's hidden layers, as
    our agents' ``--layer-norm`` and ``--activation``. gSDE (``use_sde``) is not offered."""

    default_activation = "relu"

    def make_actor(self, features_extractor=None):
        actor = super().make_actor(features_extractor)
        if actor.use_sde:
            raise ValueError(f"{type(self).__name__} does not offer use_sde; leave it False")
        actor.latent_pi, width = self.hidden(actor.features_dim, actor.net_arch)
        actions = actor.mu.out_features
        actor.mu, actor.log_std = nn.Linear(width, actions), nn.Linear(width, actions)
        return actor.to(self.device)

    def make_critic(self, features_extractor=None):
        critic = super().make_critic(features_extractor)
        in_features = critic.q_networks[0][0].in_features  # features and actions
        for index in range(critic.n_critics):
            mlp, width = self.hidden(in_features, self.critic_kwargs["net_arch"])
            q_network = nn.Sequential(*mlp, nn.Linear(width, 1))
            critic.add_module(f"qf{index}", q_network)  # replaces SB3's
            critic.q_networks[index] = q_network
        return critic.to(self.device)


class DQNArchitecturePolicy(_Architecture, DQNPolicy):
    """DQN's ``MlpPolicy`` with ``layer_norm`` and ``activation`` (default ``relu``) in the
    Q-network's hidden layers (its target's alike)."""

    default_activation = "relu"

    def make_q_net(self):
        q_net = super().make_q_net()
        mlp, width = self.hidden(q_net.features_dim, q_net.net_arch)
        q_net.q_net = nn.Sequential(*mlp, nn.Linear(width, int(q_net.action_space.n)))
        return q_net.to(self.device)


class ActorCriticArchitecturePolicy(_Architecture, ActorCriticPolicy):
    """PPO's and A2C's ``MlpPolicy`` with ``layer_norm`` and ``activation`` (default ``tanh``,
    SB3's) in the policy and value branches (``net_arch`` a list, or a dict of ``pi`` and
    ``vf``); SB3's orthogonal init applies to their Linear layers as usual."""

    default_activation = "tanh"

    def _build_mlp_extractor(self) -> None:
        super()._build_mlp_extractor()
        arch = self.net_arch
        policy_arch, value_arch = (
            (arch.get("pi", []), arch.get("vf", [])) if isinstance(arch, dict) else (arch, arch)
        )
        extractor = self.mlp_extractor
        extractor.policy_net, extractor.latent_dim_pi = self.hidden(self.features_dim, policy_arch)
        extractor.value_net, extractor.latent_dim_vf = self.hidden(self.features_dim, value_arch)
        extractor.to(self.device)


ARCHITECTURE_POLICIES = {
    SAC: SACArchitecturePolicy,
    DQN: DQNArchitecturePolicy,
    PPO: ActorCriticArchitecturePolicy,
    A2C: ActorCriticArchitecturePolicy,
}


def architecture_policy(algorithm: type[BaseAlgorithm]) -> type[BasePolicy]:
    """The policy class with ``layer_norm`` and ``activation`` for an SB3 algorithm class::

    SAC(architecture_policy(SAC), env, policy_kwargs={"layer_norm": True,
                                                      "activation": "crelu"})
    """
    for base, policy in ARCHITECTURE_POLICIES.items():
        if issubclass(algorithm, base):
            return policy
    raise TypeError(f"{algorithm.__name__} has no architecture policy; use SAC, DQN, PPO or A2C")


# --- which networks an algorithm has --------------------------------------------------------


class _PolicyPart(nn.Module):
    """The actor or the critic half of an on-policy ``ActorCriticPolicy``, as one module.

    It registers the policy's own submodules (no copies): the MLP extractor's branch and the
    head, so interventions on it act on the policy in place; a features extractor (shared or
    not) is left alone. Its forward maps observations to action logits/means or values.
    """

    def __init__(self, policy: nn.Module, part: str):
        super().__init__()
        self.policy_ref = [policy]  # a list keeps the whole policy out of this module's children
        self.part = part
        extractor = policy.mlp_extractor
        if part == "actor":
            self.latent = extractor.policy_net
            self.head = policy.action_net
        else:
            self.latent = extractor.value_net
            self.head = policy.value_net

    def fresh_copy(self) -> nn.Module:
        """The same layers newly drawn as SB3 draws them: orthogonal with gain √2 for the
        branch and 0.01 (actor) or 1 (critic) for the head, when the policy uses
        ``ortho_init``; else each layer's default. The policy itself is not copied."""
        policy = self.policy_ref[0]
        fresh = nn.Module()
        fresh.latent, fresh.head = copy.deepcopy(self.latent), copy.deepcopy(self.head)
        if policy.ortho_init:
            head_gain = 0.01 if self.part == "actor" else 1.0
            fresh.latent.apply(partial(policy.init_weights, gain=float(np.sqrt(2))))
            fresh.head.apply(partial(policy.init_weights, gain=head_gain))
        else:
            for _, layer in named_layers(fresh):
                layer.reset_parameters()
        return fresh

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        policy = self.policy_ref[0]
        extractor = (
            policy.pi_features_extractor if self.part == "actor" else policy.vf_features_extractor
        )
        features = BasePolicy.extract_features(policy, obs, extractor)
        return self.head(self.latent(features))


@dataclass
class Network:
    """One network of an SB3 algorithm and what an intervention on it must also handle."""

    name: str
    module: nn.Module
    owner: object  # the object whose ``optimizer`` attribute trains ``module``
    targets: tuple[nn.Module, ...]
    heads: tuple[str, ...]
    probe: str  # "obs" or "obs_actions": the arguments of the module's forward
    exclude: tuple[str, ...] = ()  # layers interventions leave alone (another network's)
    fresh: Callable[[], nn.Module] | None = None  # new weights as SB3 draws them (None: default)


def _last_layer(module: nn.Module, prefix: str) -> str:
    return f"{prefix}.{named_layers(module)[-1][0]}" if prefix else named_layers(module)[-1][0]


def _twin_critic(policy: nn.Module) -> Network:
    """SAC's and TD3's critic: Q-networks ``qf0``, ``qf1``, … of ``(obs, actions)``."""
    critic = policy.critic
    heads = tuple(_last_layer(q, f"qf{i}") for i, q in enumerate(critic.q_networks))
    # a features extractor shared with the actor is the actor's (SB3 leaves it out of the
    # critic's optimizer): critic interventions leave it alone
    exclude = ("features_extractor.*",) if policy.share_features_extractor else ()
    return Network("critic", critic, critic, (policy.critic_target,), heads, "obs_actions", exclude)


def sb3_networks(model: BaseAlgorithm) -> dict[str, Network]:
    """The networks of a SAC, TD3, DQN, PPO or A2C model, by name."""
    policy = model.policy
    if isinstance(model, SAC):
        # "mu" and "log_std" layers; with use_sde, mu is a Sequential and log_std a parameter
        heads = tuple(
            name
            for name, _ in named_layers(policy.actor)
            if name.split(".")[0] in ("mu", "log_std")
        )
        # the action distribution caches the last forward's tensors, which a copy refuses
        fresh = partial(reinitialized_copy, policy.actor, leave_out=[policy.actor.action_dist])
        actor = Network("actor", policy.actor, policy.actor, (), heads, "obs", fresh=fresh)
        return {"actor": actor, "critic": _twin_critic(policy)}
    if isinstance(model, TD3):
        actor = Network(
            "actor",
            policy.actor,
            policy.actor,
            (policy.actor_target,),
            (_last_layer(policy.actor.mu, "mu"),),
            "obs",
        )
        return {"actor": actor, "critic": _twin_critic(policy)}
    if isinstance(model, DQN):
        q_net = policy.q_net
        return {
            "q_net": Network(
                "q_net", q_net, policy, (policy.q_net_target,), (_last_layer(q_net, ""),), "obs"
            )
        }
    if isinstance(model, (PPO, A2C)):
        parts = {part: _PolicyPart(policy, part) for part in ("actor", "critic")}
        return {
            name: Network(name, part, policy, (), ("head",), "obs", fresh=part.fresh_copy)
            for name, part in parts.items()
        }
    raise TypeError(f"{type(model).__name__} is not supported; use SAC, TD3, DQN, PPO or A2C")


def _adamo_optimizers(model: BaseAlgorithm) -> list[tuple[object, nn.Module, tuple[str, ...]]]:
    """(owner, module trained by ``owner.optimizer``, its heads) for every optimizer."""
    networks = sb3_networks(model)
    if isinstance(model, (PPO, A2C)):  # one optimizer for the whole policy
        policy = model.policy
        return [(policy, policy, ("action_net", "value_net"))]
    return [(n.owner, n.module, n.heads) for n in networks.values()]


def use_adamo_groups(model: BaseAlgorithm) -> int:
    """Keep the heads and biases of each AdamO of ``model`` out of the isometry step.

    SB3 builds its optimizers from a flat ``parameters()``. This marks, within that one
    parameter group, the parameters that take the isometry step (AdamO's ``iso_mask``). The
    optimizer keeps its parameters and its one group, so SB3's learning-rate schedule and
    ``model.save`` / ``Algorithm.load`` work as before, the mask saved with the optimizer.
    Call before training starts (the callback does); optimizers that are not AdamO, or are
    marked already (as after a load), are left alone. Returns how many were marked.
    """
    marked = 0
    for owner, module, heads in _adamo_optimizers(model):
        optimizer = owner.optimizer
        if not isinstance(optimizer, AdamO) or any("iso_mask" in g for g in optimizer.param_groups):
            continue
        takes_isometry = {id(p) for p in isometry_parameters(module, heads)}
        for group in optimizer.param_groups:
            group["iso_mask"] = [id(p) in takes_isometry for p in group["params"]]
        marked += 1
    return marked


def _optimizer_refusal(part: type[MethodPart]) -> str:
    """Why the models' optimizers cannot carry the optimizer part ``part``, and what to do."""
    wanted = part.optimizer_class
    if wanted is None:
        return (
            f"method {part.name!r} builds its own optimizer, which a callback cannot give an "
            "SB3 model; use it with this project's agents (train.py)"
        )
    helper = (
        "adamo_policy_kwargs()" if wanted is AdamO else f"{{'optimizer_class': {wanted.__name__}}}"
    )
    return (
        f"method {part.name!r} needs {wanted.__name__} optimizers: build the model with "
        f"policy_kwargs={helper}"
    )


# --- the callback ---------------------------------------------------------------------------


class PlasticityCallback(BaseCallback):
    """Apply a plasticity method's interventions to an SB3 model, correctly.

    ``method``: ``fire``, ``reset``, ``shrink_perturb``, ``redo``, ``adamo``, ``cbp``,
    ``injection``, ``dash``, ``snr`` (any registered part that is no penalty) or a ``+``
    combination (``fire+adamo``); ``settings`` are :class:`MethodConfig` fields, the same names
    as for our agents (``fire_every``, ``fire_on_task_switch``, ``reset_every``, ``redo_tau``,
    …, with the same defaults: FIRE every 100k steps and at each task switch). The callback
    attaches the method to each network through :class:`plasticity.MethodHandle`, around the
    optimizer SB3 built, so the handle alone decides when to intervene, clears the touched
    optimizer state and re-syncs SB3's target networks; the callback only translates SB3's
    hooks:

    - off-policy algorithms (SAC, TD3, DQN): after every env step (``_on_step``), at the
      model's ``num_timesteps``, as our SAC and DQN agents do;
    - on-policy algorithms (PPO, A2C): when a rollout starts (``_on_rollout_start``), i.e.
      after the previous rollout's update epochs, as our PPO agent does: never inside a
      rollout, so every stored log-probability and value belongs to the policy that collected
      the rollout, and the next rollout is collected by the network that will be trained on it.

    A task switch of a cycling env of :mod:`envs` (``task_period`` in the infos) runs the
    switch interventions at the same points. ``networks``: which ones (default all: SAC/TD3/
    PPO/A2C ``actor`` and ``critic``, DQN ``q_net``). ``metrics_every``: env steps between
    plasticity metrics logged through SB3's logger (None: never).
    """

    def __init__(
        self,
        method: str,
        on_task_switch: bool = True,
        networks: Iterable[str] | None = None,
        metrics_every: int | None = None,
        probe_size: int = 256,
        verbose: int = 0,
        **settings,
    ):
        super().__init__(verbose)
        if settings.get("er_schedule", "steps") != "steps":
            raise ValueError(
                f"er_schedule {settings['er_schedule']!r} needs SB3's minibatches, which a "
                "callback cannot see; use er_schedule='steps' (every er_every env steps)"
            )
        self.method = make_method(method, **{"er_schedule": "steps", "er_lr": ER_LR_RL, **settings})
        parts = self.method.part_classes
        penalties = [part.name for part in parts if part.kind is PartKind.PENALTY]
        if penalties:
            raise ValueError(
                f"{', '.join(penalties)} must enter the loss, which a callback cannot reach; "
                "use AdamO (policy_kwargs=adamo_policy_kwargs()) for the isometry penalty"
            )
        self.switch_interventions = on_task_switch
        self.network_names = None if networks is None else tuple(networks)
        self.metrics_every = metrics_every or 0
        self.probe_size = probe_size
        self.handles: dict[str, MethodHandle] = {}
        self._model = None
        self._networks: dict[str, Network] = {}
        self._pending_switch = False
        self._rollout_probe: torch.Tensor | None = None

    @property
    def interventions(self) -> int:
        """Reinitializations so far, over all networks."""
        return sum(handle.interventions for handle in self.handles.values())

    def _init_callback(self) -> None:
        if self.handles and self._model is self.model:  # a later learn() of the same model
            return
        self._model = self.model
        available = sb3_networks(self.model)
        names = self.network_names or tuple(available)
        unknown = [n for n in names if n not in available]
        if unknown:
            raise ValueError(
                f"{type(self.model).__name__} has no network {unknown[0]!r}; "
                f"choose from {', '.join(available)}"
            )
        optimizers = [owner.optimizer for owner, _, _ in _adamo_optimizers(self.model)]
        for part in self.method.part_classes:
            if part.kind is PartKind.OPTIMIZER and not any(
                isinstance(o, part.optimizer_class or ()) for o in optimizers
            ):
                raise ValueError(_optimizer_refusal(part))
        # the policy's hidden activation (ReLU for SAC/TD3/DQN, Tanh for PPO/A2C by default)
        activation_fn = getattr(self.model.policy, "activation_fn", nn.ReLU)
        if getattr(activation_fn, "widening", 1) > 1:  # CReLU, DFF: two outputs per unit
            replacing = [part.name for part in self.method.part_classes if part.replaces_units]
            if replacing:
                raise ValueError(
                    f"{replacing[0]} replaces single units, and the policy's "
                    f"{activation_fn.__name__} gives each unit two outputs; use it with "
                    "activation='relu'"
                )
            activation_fn = nn.ReLU  # their units read as ReLU's (metrics only), as our agents'
        self.activation = activation_fn()
        self._networks = {name: available[name] for name in names}
        self.handles = {
            name: self.method.attach(
                network.module,
                targets=network.targets,
                heads=network.heads,
                fresh=network.fresh,
                activation=self.activation,
                optimizer=network.owner.optimizer,
                exclude=network.exclude,
            )
            for name, network in self._networks.items()
        }
        self.monitors = {
            name: PlasticityMonitor(n.module, heads=n.heads, activation=self.activation)
            for name, n in self._networks.items()
        }
        self._metrics = Every(self.metrics_every)
        self._last_period: int | None = None

    def _on_training_start(self) -> None:
        use_adamo_groups(self.model)
        # The schedules start from the model's step count: a model that trained before
        # (a loaded one, learn(reset_num_timesteps=False)) gets no catch-up interventions.
        for handle in self.handles.values():
            handle.start(self.model.num_timesteps)
        self._metrics.skip_to(self.model.num_timesteps)

    @property
    def _on_policy(self) -> bool:
        return getattr(self.model, "replay_buffer", None) is None

    def _probe(self, network: Network):
        """A batch of the network's inputs from the replay or rollout buffer (None if empty)."""
        model = self.model
        if not self._on_policy:
            buffer = model.replay_buffer
            if buffer.size() == 0:
                return None
            data = buffer.sample(self.probe_size)
            obs, actions = data.observations, data.actions
        elif self._rollout_probe is not None:
            obs, actions = self._rollout_probe, None
        else:
            obs, actions = self._rollout_observations(), None
            if obs is None:
                return None
        return (obs, actions) if network.probe == "obs_actions" else obs

    def _rollout_observations(self) -> torch.Tensor | None:
        """Up to ``probe_size`` observations of the rollout being collected (None if empty)."""
        rollout = self.model.rollout_buffer
        if not rollout.full and rollout.pos == 0:
            return None
        n = rollout.buffer_size if rollout.full else rollout.pos
        observations = rollout.observations[:n].reshape(-1, *rollout.obs_shape)
        return torch.as_tensor(observations[: self.probe_size], device=self.model.device).float()

    def _log_reports(self, name: str, reports: list[InterventionReport]) -> None:
        for report in reports:
            for key, value in report.scalars(f"plasticity/{name}/").items():
                self.logger.record(key, value, exclude=("stdout",))
            if self.verbose and is_announced(report):
                print(report.console_line(self.model.num_timesteps, name))
        if reports:
            self.logger.record("plasticity/interventions", self.interventions)

    def _intervene(self, task_switch: bool) -> None:
        """The scheduled interventions due now, then those of a task switch."""
        if not self._has_data():
            return  # nothing collected yet: a due schedule fires at the next call
        step = self.model.num_timesteps
        for name, network in self._networks.items():
            handle = self.handles[name]
            # the probe is drawn only for an intervention that needs one (ReDo, ER): sampling
            # at every step would cost a batch and shift numpy's random stream, SB3's too
            # the gradients of SB3's last update are still in .grad: rules that read them
            # (DASH's average) read them here, outside SB3's train()
            handle.after_backward()
            self._log_reports(name, handle.after_update(step, inputs=partial(self._probe, network)))
            if task_switch:
                self._log_reports(name, handle.on_task_switch(inputs=self._probe(network)))

    def _has_data(self) -> bool:
        if not self._on_policy:
            return self.model.replay_buffer.size() > 0
        rollout = self.model.rollout_buffer
        return self._rollout_probe is not None or rollout.full or rollout.pos > 0

    def _task_switched(self) -> bool:
        """Whether the infos of this step report a task period beyond the last one seen."""
        period = task_period(self.locals.get("infos") or [])
        if period is None:
            return False
        # the first period seen is where this callback starts (not a switch: an env resumed
        # at period k reports k from its first step on)
        previous = self._last_period
        self._last_period = max(period, previous or 0)
        switched = previous is not None and self._last_period > previous
        if switched:
            self.logger.record("plasticity/task_period", self._last_period)
        return switched and self.switch_interventions

    def _on_step(self) -> bool:
        switched = self._task_switched()
        if self._on_policy:
            self._pending_switch |= switched
        else:
            self._intervene(switched)
        if self._metrics.due(self.num_timesteps):
            self._log_metrics()
        return True

    def _on_rollout_end(self) -> None:
        if self._on_policy:  # the buffer is cleared before the next rollout starts
            self._rollout_probe = self._rollout_observations()

    def _on_rollout_start(self) -> None:
        if self._on_policy and self._rollout_probe is not None:
            self._intervene(self._pending_switch)
            self._pending_switch = False
            self._rollout_probe = None

    def _log_metrics(self) -> None:
        for name, network in self._networks.items():
            probe = self._probe(network)
            if probe is None:
                continue
            metrics = self.monitors[name].measure(probe)
            for key, value in metrics.items():
                if np.isfinite(value):
                    exclude = ("stdout",) if "/" in key else None
                    self.logger.record(f"plasticity/{name}/{key}", value, exclude=exclude)
