"""Named plasticity methods: registered parts attached to a network as one handle.

A method is what a user names on the command line (``--method fire+adamo``): one or more
*parts*, each a :class:`MethodPart` subclass registered by name with :func:`register`. A part
says what it is (:class:`PartKind`: a loss penalty, the optimizer, a scheduled intervention, a
rule applied after every update), which :class:`MethodConfig` fields are its settings and how
each is checked, when it acts and whether it rewrites the whole network. Attached to one
network the parts make a :class:`MethodHandle` that a training loop uses in three places::

    handle = make_method("fire+adamo", fire_every=100_000).attach(critic, lr=3e-4,
                                                                  targets=[critic_target])
    loss = td_loss + handle.penalty(td_loss)   # 1. regularizer term (0 when none)
    handle.optimizer.zero_grad(); loss.backward()
    handle.after_backward()                    # rules that read the gradients (DASH's)
    handle.optimizer.step()
    handle.after_update(step, inputs=obs)      # 2. scheduled interventions
    handle.on_task_switch(inputs=obs)          # 3. when the environment changed

A loop that takes several updates between two ``after_update`` calls (DQN every
``train_frequency`` steps, SAC at a replay ratio above one, PPO's epochs) also reports each
update with ``handle.after_minibatch(inputs=batch)`` and, in PPO, each epoch's start with
``handle.before_epoch(inputs=rollout)``: the effective-rank ascent counts updates and ranks
their minibatches, as its authors' code does. A loop that clips the gradient norm takes the
coupled L2 out of the loss (``penalty(loss, decay=False)``) and adds its gradient after the
clip (``add_decay_gradient()``), as the ER + L2 authors' optax chain does.

After an intervention that changes what the network computes (FIRE, reset, shrink & perturb)
the handle resets the optimizer state of the whole network (``clear_optimizer``; in place, so
captured CUDA graphs stay valid) and copies the network into its target networks. ReDo resets
the state of the entries it recycles and leaves targets alone: zeroed outgoing weights keep
the network's function, so a target jump would only disturb the bootstrap.

Adding a method is one class: subclass :class:`MethodPart` (or :class:`ScheduledIntervention`),
declare its fields in :class:`MethodConfig` and its checks in ``settings``, and decorate it with
:func:`register`; agents, ``train.py`` and the Stable-Baselines3 callback find it by name.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import numbers
import typing
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

from plasticity._layers import Inputs, hidden_layers, select_layers
from plasticity.churn import AdaptiveCoefficient, churn
from plasticity.continual_backprop import continual_backprop_
from plasticity.dash import accumulate_descent_, dash_, descent_buffers
from plasticity.injection import attach_offsets, inject_
from plasticity.interventions import (
    InterventionReport,
    Optimizers,
    clear_optimizer_state_,
    clone_state,
    fire_,
    full_reset_,
    network_parameters,
    redo_,
    shrink_perturb_,
    sync_changed_tensors,
    sync_targets,
)
from plasticity.isometry import isometry_penalty
from plasticity.kron import Kron
from plasticity.nap import joint_norm, normalization_layers, project_, projected_groups
from plasticity.optim import (
    AdamO,
    CombinedOptimizer,
    adamo_param_groups,
    fused_adam_available,
    trac_optimizer_class,
)
from plasticity.regularizers import (
    effective_rank_ascent_,
    l2_init_penalty,
    l2_penalty,
    parseval_penalty,
    random_unit_vectors,
    spectral_penalty,
)
from plasticity.schedule import At, Every
from plasticity.snr import self_normalized_reset_, update_thresholds_


@dataclass
class MethodConfig:
    """Settings of every plasticity method; each method reads only its own fields.

    Periods (``*_every``) count the ``step`` the training loop passes to ``after_update``
    (environment steps in this project's agents); 0 turns the periodic intervention off.
    ``er_every`` is the exception: it counts updates (see ``er_schedule``).
    Step lists (``*_at``) name single steps of the same counter, e.g. the midpoint of a run.
    :func:`make_method` checks every field (:meth:`validate`).
    """

    weight_decay: float = 0.0
    """decoupled (AdamW) weight decay of the network's optimizer, for every method"""
    iso_coef: float = 1e-3
    """isometry coefficient λ: AdamO's decoupled step (adamo) and the coupled penalty (isometry)"""
    iso_scale: float = 1.0
    """target Gram scale s in R(W) = ‖G − sI‖² (2 is a variant for ReLU)"""
    iso_every: int = 32
    """AdamO takes its isometry step every k-th update with k·lr·λ (1 = every update); the
    multiplier k is lowered where the step would overshoot (see plasticity.AdamO)"""
    fire_every: int = 100_000
    """FIRE period in steps (0 = off; FIRE then runs only at fire_at steps and task switches)"""
    fire_at: list[int] = field(default_factory=list)
    """steps at which FIRE runs once each, e.g. a run's midpoint as in the paper (empty = none)"""
    fire_on_task_switch: bool = True
    """apply FIRE when the environment switches task"""
    fire_ns_steps: int = 10
    """Newton–Schulz steps of FIRE (10 in the paper's SAC and DQN)"""
    fire_mode: Literal["newton_schulz", "polar"] = "newton_schulz"
    """FIRE orthogonalization: the paper's Newton–Schulz, or the exact SVD polar factor"""
    fire_scale: Literal["muon", "none"] = "muon"
    """FIRE scaling: sqrt(d_out/d_in) ('muon', the paper's SAC default) or 1"""
    fire_linear: Literal["fire", "initial", "fresh"] | None = None
    """what FIRE does to Linear layers: FIRE them like the convolutions ('fire', the paper's
    SAC), reset weights and biases to their initial values ('initial', the paper's DQN:
    convolutions FIRE'd, linear layers and head reset to the values the network had when the
    method was attached, kept in the handle's checkpoint), or to a fresh draw ('fresh').
    Unset: 'fire', except for our DQN on images, which follows its paper ('initial')"""
    reset_every: int = 200_000
    """full-reset period in steps (Nikishin et al. 2022 use 2e5 on DMC; 0 = off)"""
    reset_at: list[int] = field(default_factory=list)
    """steps at which the network is fully reset once each (empty = none)"""
    reset_on_task_switch: bool = True
    """fully reset the network when the environment switches task"""
    shrink_perturb_every: int = 100_000
    """shrink & perturb period in steps (0 = off)"""
    shrink_perturb_at: list[int] = field(default_factory=list)
    """steps at which shrink & perturb runs once each (empty = none)"""
    shrink_perturb_on_task_switch: bool = True
    """shrink & perturb when the environment switches task"""
    shrink: float = 0.8
    """shrink & perturb: factor on the current weights, in [0, 1]"""
    perturb: float = 0.2
    """shrink & perturb: factor on the target weights, in [0, 1]"""
    perturb_target: Literal["fresh", "initial"] = "fresh"
    """shrink & perturb toward a fresh random init or the network's own initial weights"""
    shrink_perturb_linear: Literal["shrink", "initial", "fresh"] = "shrink"
    """what shrink & perturb does to Linear layers: shrink and perturb them like the
    convolutions ('shrink'), or reset them to the network's initial values ('initial': the
    FIRE paper's DQN form with shrink=0.2, perturb=0.8, perturb_target='initial') or to a
    fresh draw ('fresh')"""
    clear_optimizer: Literal["network", "touched", "none"] | None = None
    """optimizer state FIRE, reset and shrink & perturb reset: all of the network's ('network':
    biases too, as the FIRE paper's SAC rebuilds its optimizers), only the rewritten tensors'
    ('touched'), or none ('none': Adam moments kept, as the FIRE paper's DQN). Unset:
    'network', except for our DQN on images, which follows its paper ('none')"""
    target_sync: Literal["network", "rewritten"] | None = None
    """what FIRE, reset and shrink & perturb copy into target networks: the whole network
    ('network') or only the tensors the intervention changed ('rewritten': the FIRE paper's
    DQN, whose target keeps its own conv biases after FIRE). Unset: 'network', except for our
    DQN on images with FIRE, which follows its paper ('rewritten')"""
    redo_every: int = 1000
    """ReDo check period in steps (needs a probe batch)"""
    redo_tau: float = 0.025
    """ReDo dormancy threshold τ >= 0 on the normalized activation score (0.1 at high replay
    ratio; scores average 1 per layer, so τ >= 1 recycles most units at every check)"""
    l2_init_coef: float = 1e-3
    """L2-init coefficient λ in λ‖θ − θ₀‖² (1e-2…1e-4 in Kumar et al. 2023)"""
    l2_coef: float = 5e-4
    """coupled L2 coefficient λ in λ‖θ‖² (l2, er_l2); λ = wd/2 equals torch.optim.Adam's
    weight_decay=wd: the ER + L2 authors' 1e-3"""
    parseval_coef: float = 1e-3
    """Parseval regularization coefficient λ"""
    parseval_scale: float = 1.0
    """Parseval target row norm² s (gain²: 2 for a √2-gain orthogonal init)"""
    spectral_coef: float = 1e-3
    """spectral regularization coefficient λ in λ·Σ(σ_max^k − 1)²"""
    spectral_exponent: int = 2
    """spectral regularization exponent k"""
    er_every: int = 100
    """er, er_l2: updates between effective-rank ascent steps, each ascent on those updates'
    minibatches concatenated (the authors' er_batch, 100 in their supervised runs); env steps
    between ascents on the probe batch under er_schedule 'steps'; unused under 'epochs'"""
    er_lr: float | None = None
    """er, er_l2: SGD step size of the effective-rank ascent. Unset: 1e-2, the authors'
    permuted MNIST (ER_LR_SUPERVISED); our RL agents and the SB3 callback set 1e-6, the
    authors' Slippery-Ant PPO with L2 (ER_LR_RL; they tried 1e-5 to 1e-7)"""
    er_schedule: Literal["updates", "epochs", "steps"] | None = None
    """er, er_l2: when the ascent runs. 'updates': every er_every updates, on their minibatches
    concatenated (the authors' supervised code; fed by after_minibatch, or by after_update in
    a loop that updates once per call); 'epochs': at the start of every PPO epoch, on the whole
    rollout (the authors' PPO; fed by before_epoch); 'steps': every er_every steps of
    after_update, on its probe batch (this project's schedule before issue 23). Unset:
    'updates', except in our PPO ('epochs') and the SB3 callback ('steps': it sees no
    minibatch)"""
    er_features: Literal["dense", "all"] = "dense"
    """er, er_l2: whose features are ranked: the hidden Linear layers' ('dense', as the
    authors' ConvNet ranks its fully connected features only) or the convolutions' too,
    spatially averaged ('all')"""
    injection_every: int = 0
    """injection period in steps (0 = off: injection then acts at injection_at steps and task
    switches)"""
    injection_at: list[int] = field(default_factory=list)
    """steps at which a new head is injected once each, e.g. a run's midpoint (empty = none)"""
    injection_on_task_switch: bool = True
    """inject a new head when the environment switches task"""
    snr_percentile: float = 0.99
    """snr: a unit's threshold is re-estimated as the inter-firing time below which this
    fraction of its firings fell (the authors' 0.99)"""
    snr_expansion: float = 2.0
    """snr: factor on a threshold that the re-estimate did not lower (the authors' 2)"""
    snr_tau_every: int = 16
    """snr: task switches between re-estimates of the thresholds (the authors' 16 tasks)"""
    snr_tau_init: int = 10_000
    """snr: initial threshold in samples (the FIRE paper's port: τ_max / 2)"""
    snr_tau_max: int = 20_000
    """snr: largest threshold in samples (the FIRE paper's port)"""
    c_chain_coef: float = 50.0
    """c_chain: the churn penalty's coefficient λ until it adapts (the authors' MinAtar DQN)"""
    c_chain_target: float = 0.01
    """c_chain: λ adapts to target·mean|loss| / mean churn (the authors' MinAtar DQN: 0.01)"""
    c_chain_window: int = 50_000
    """c_chain: updates over which those means are taken (the authors' MinAtar DQN)"""
    c_chain_start: int = 10_000
    """c_chain: updates before λ starts adapting (the authors' MinAtar DQN)"""
    muon_lr_scale: float = 10.0
    """muon: Muon's learning rate as a multiple of the network's (the FIRE paper's Muon
    baseline: 10); the other parameters train with Adam at the network's rate"""
    muon_momentum: float = 0.95
    """muon: Muon's momentum (torch's default, Nesterov)"""
    kron_lr_scale: float = 1.0
    """kron: PSGD-Kron's learning rate as a multiple of the network's (Plasticine: 1, the Adam
    rate; the reference advises about 1/3)"""
    kron_momentum: float = 0.9
    """kron: PSGD-Kron's momentum b1 (the reference's)"""
    kron_precond_lr: float = 0.1
    """kron: step size of the preconditioner's fit (the reference's)"""
    kron_max_triangular: int = 8192
    """kron: largest dimension given a triangular preconditioner factor, larger ones a diagonal
    (the reference's)"""
    dash_every: int = 0
    """DASH period in steps (0 = off: DASH then acts at dash_at steps and task switches)"""
    dash_at: list[int] = field(default_factory=list)
    """steps at which DASH shrinks the network once each (empty = none)"""
    dash_on_task_switch: bool = True
    """shrink with DASH after the first update on a new task (the authors: at each new chunk)"""
    dash_alpha: float = 0.3
    """DASH: weight α of each update's negative gradient in the running average G"""
    dash_lambda: float = 0.3
    """DASH: smallest shrink factor λ in clamp(cos(G, W), λ, 1)"""
    cbp_replacement_rate: float = 1e-4
    """cbp: fraction ρ of a layer's mature units replaced per update (the authors' RL: 1e-4)"""
    cbp_maturity: int = 10_000
    """cbp: updates a unit is protected after it is (re)drawn (the authors' RL: 1e4)"""
    cbp_decay: float = 0.99
    """cbp: decay η of the running contribution utility (the authors': 0.99)"""

    def validate(self) -> None:
        """Refuse a setting that cannot be right: one ``ValueError`` naming the field, its
        value and the valid range (checked before any training starts). Every field is
        checked, whichever parts the method has; its check is declared by the parts (or the
        handle) whose setting it is, a ``Literal`` field's by its type."""
        hints = typing.get_type_hints(MethodConfig)
        checks = setting_checks()
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            literal = next(
                (t for t in (hints[f.name], *typing.get_args(hints[f.name]))
                 if typing.get_origin(t) is Literal),
                None,
            )  # fmt: skip
            if literal is not None:  # Literal[...] or Literal[...] | None (unset)
                choices = typing.get_args(literal)
                if type(None) in typing.get_args(hints[f.name]):
                    choices = (*choices, None)
                ok, valid = value in choices, "one of " + ", ".join(map(repr, choices))
            else:
                check = checks[f.name]
                ok, valid = check.test(value), check.valid
            if not ok:
                raise ValueError(f"invalid method setting {f.name}={value!r}: it must be {valid}")


# --- checks of settings ---------------------------------------------------------------------


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass(frozen=True)
class Check:
    """How a setting is checked: ``test(value)``, and what a valid value is, for the error."""

    test: Callable[[object], bool]
    valid: str


NONNEGATIVE = Check(lambda v: _is_number(v) and v >= 0, "a finite number >= 0")
NONNEGATIVE_OR_UNSET = Check(
    lambda v: v is None or (_is_number(v) and v >= 0), "a finite number >= 0 (or unset)"
)
POSITIVE = Check(lambda v: _is_number(v) and v > 0, "a finite number > 0")
FRACTION = Check(lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
PERIOD = Check(lambda v: _is_int(v) and v >= 0, "0 (off) or a positive integer number of steps")
COUNT = Check(lambda v: _is_int(v) and v >= 1, "an integer >= 1")
STEPS = Check(
    lambda v: isinstance(v, (list, tuple)) and all(_is_int(s) and s > 0 for s in v),
    "a list of positive integer steps",
)
DECAY = Check(lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
AGE = Check(lambda v: _is_int(v) and v >= 0, "an integer number of updates >= 0")
AT_LEAST_ONE = Check(lambda v: _is_number(v) and v >= 1, "a finite number >= 1")
FLAG = Check(lambda v: isinstance(v, bool), "True or False")
CHOICE = Check(lambda v: True, "one of its Literal choices")
"""The check of a ``Literal`` field: :meth:`MethodConfig.validate` tests it against its type."""


# --- parts and their registry ---------------------------------------------------------------


class PartKind(enum.Enum):
    """What a method part is; agents and the SB3 callback ask this, never a part's name."""

    PENALTY = "a term of the loss"
    OPTIMIZER = "the network's optimizer"
    INTERVENTION = "an intervention at scheduled steps and task switches"
    PER_UPDATE = "a rule applied at every after_update call"


class MethodPart:
    """One registered part of a method, attached to one network through a :class:`MethodHandle`.

    Class attributes describe the part: ``name`` (what ``--method`` names), ``kind``,
    ``settings`` (its :class:`MethodConfig` fields and their checks), ``rewrites_network``
    (whether an intervention of it redraws the whole network: SAC's temperature reset follows
    those) and ``replaces_units``; :meth:`conflict` refuses combinations that make no sense.
    The hooks below do nothing by default; a part overrides those it needs. Part state
    that must survive a checkpoint goes in :meth:`state_dict` as tensors and plain Python
    values (checkpoints load with ``torch.load(weights_only=True)``).
    """

    name: ClassVar[str]
    kind: ClassVar[PartKind]
    settings: ClassVar[dict[str, Check]] = {}
    rewrites_network: ClassVar[bool] = False
    optimizer_class: ClassVar[type[torch.optim.Optimizer] | None] = None
    """an optimizer part's class; an optimizer built elsewhere must be one (None: none can)"""
    replaces_units: ClassVar[bool] = False
    """whether it replaces single units, zeroing their outgoing weights (ReDo, CBP, SNR)"""
    every_update: ClassVar[bool] = False
    """whether its ``after_update`` is a rule of every gradient step (CBP, SNR, NaP, C-CHAIN's
    reference batch), which a loop with several updates between its intervention points (PPO's
    minibatches) calls after each update; the others act at those points"""
    captured_whole: ClassVar[bool] = True
    """whether an update with this part may be captured whole as one CUDA graph
    (``--whole-graph``): every tensor its penalty and ``after_backward`` read between updates
    stays at one address and shape (``tests/test_whole_graph.py`` checks each part)"""
    decay: ClassVar[bool] = False
    """a penalty whose gradient a loop that clips gradients adds after the clip
    (:meth:`MethodHandle.add_decay_gradient`), as optax's ``add_decayed_weights`` after
    ``clip_by_global_norm`` does: the coupled L2 of ER + L2"""

    def __init__(self, handle: MethodHandle):
        self.handle = handle
        self.config = handle.config

    @classmethod
    def conflict(cls, others: list[type[MethodPart]]) -> str | None:
        """Why the part cannot be combined with the ``others`` of a method (None: it can), as
        the end of a sentence that begins with the method's name."""
        if cls.kind is PartKind.OPTIMIZER:
            optimizers = [other.name for other in others if other.kind is PartKind.OPTIMIZER]
            if optimizers:
                return f"combines the optimizers {cls.name} and {optimizers[0]}; keep one"
        return None

    def needs_initial_state(self) -> bool:
        """Whether the part reads the network's weights as they were at attach time."""
        return False

    def build_optimizer(self, lr: float, optimizer_kwargs: dict) -> torch.optim.Optimizer:
        """The network's optimizer (``OPTIMIZER`` parts only)."""
        raise NotImplementedError(f"method part {self.name!r} builds no optimizer")

    def penalty(self, loss: torch.Tensor | None) -> torch.Tensor | None:
        """The part's term of the loss (None: it has none); ``loss`` is the training loss it is
        added to (None when the loop does not pass it)."""
        return None

    def schedules(self, start: int) -> dict[str, Every | At]:
        """The part's schedules by checkpoint key, counting from ``start``."""
        return {}

    def after_backward(self) -> None:
        """Read this update's gradients, after ``backward()`` and before the optimizer step,
        inside the update (so that nothing outside an update reads a gradient: under CUDA
        graphs those live in the graph's memory). DASH's running average of the descent
        direction is such a rule."""

    def after_update(self, step: int, inputs: Inputs | Callable[[], Inputs] | None) -> list:
        """Act after the update at ``step``; the :class:`InterventionReport` of each action."""
        return []

    def on_task_switch(self, inputs: Inputs | None) -> list:
        """Act at a task switch; the :class:`InterventionReport` of each action."""
        return []

    def after_minibatch(self, inputs: Inputs) -> list:
        """Act after one update on the minibatch ``inputs``; the reports of each action."""
        return []

    def before_epoch(self, inputs: Inputs) -> list:
        """Act at the start of an epoch over ``inputs`` (PPO's rollout); the reports."""
        return []

    def state_dict(self) -> dict:
        """The part's own state, merged into the handle's (keys unique to the part)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore from the handle's state (:meth:`state_dict`'s keys, when present)."""


PARTS: dict[str, type[MethodPart]] = {}
"""Every registered part by name, in registration order (the order parts act in)."""

ALIASES = {"er_l2": ("er", "l2")}
"""Names that stand for a combination: ER + L2 is the effective-rank ascent plus coupled L2."""


def register(part: type[MethodPart]) -> type[MethodPart]:
    """Class decorator: make ``part`` a method by its ``name``. Its settings must be fields of
    :class:`MethodConfig`, checked as every other part checks them."""
    if part.name in PARTS or part.name in ALIASES or part.name == "none":
        raise ValueError(f"a method part named {part.name!r} exists already; pick another name")
    fields = {f.name for f in dataclasses.fields(MethodConfig)}
    checks = setting_checks()
    for setting, check in part.settings.items():
        if setting not in fields:
            raise ValueError(f"{part.__name__} setting {setting!r} is not a MethodConfig field")
        if checks.get(setting, check) is not check:
            raise ValueError(f"{part.__name__} checks {setting!r} unlike the other parts do")
    PARTS[part.name] = part
    return part


def is_announced(report: InterventionReport) -> bool:
    """Whether a report is worth a line on a console: weights rewritten by an intervention at
    a scheduled step or a task switch, not the running unit replacements of a per-update rule
    (CBP, SNR replace a few units every so many updates)."""
    part = PARTS.get(report.method)
    return report.reinitialized and (part is None or part.kind is not PartKind.PER_UPDATE)


def method_names() -> tuple[str, ...]:
    """Names accepted by :func:`make_method`; join several with ``+`` (``fire+adamo``)."""
    return ("none", *PARTS, *ALIASES)


def setting_checks() -> dict[str, Check]:
    """The check of every setting the handle and the registered parts declare."""
    checks = dict(MethodHandle.settings)
    for part in PARTS.values():
        checks.update(part.settings)
    return checks


class ScheduledIntervention(MethodPart):
    """An intervention every ``every`` steps, at the steps listed in ``at`` and at task switches
    when ``on_switch`` is set (each the name of a :class:`MethodConfig` field, or None)."""

    kind = PartKind.INTERVENTION
    every: ClassVar[str]
    at: ClassVar[str | None] = None
    on_switch: ClassVar[str | None] = None

    def intervene(self, inputs: Inputs | Callable[[], Inputs] | None) -> InterventionReport:
        raise NotImplementedError

    def schedules(self, start: int) -> dict[str, Every | At]:
        schedules: dict[str, Every | At] = {
            self.name: Every(getattr(self.config, self.every), start)
        }
        if self.at is not None:
            schedules[self.at] = At(getattr(self.config, self.at), start=start)
        return schedules

    def after_update(self, step, inputs):
        schedules = self.handle.schedules
        # every schedule is asked, so a step both periodic and listed is consumed by both
        due = [schedules[key].due(step) for key in (self.name, self.at) if key in schedules]
        return [self.intervene(inputs)] if any(due) else []

    def on_task_switch(self, inputs):
        if self.on_switch is not None and getattr(self.config, self.on_switch):
            return [self.intervene(inputs)]
        return []


class WholeNetworkIntervention(ScheduledIntervention):
    """An intervention that rewrites the whole network: the handle then resets the optimizer
    state ``clear_optimizer`` names and re-syncs the target networks."""

    rewrites_network = True
    settings = {"clear_optimizer": CHOICE, "target_sync": CHOICE}

    def rewrite(self, optimizer: Optimizers) -> InterventionReport:
        """Rewrite the network, resetting ``optimizer``'s state of what changed (if given)."""
        raise NotImplementedError

    def intervene(self, inputs) -> InterventionReport:
        handle = self.handle
        mode = self.config.clear_optimizer or "network"
        rewritten_only = self.config.target_sync == "rewritten" and handle.targets
        before = clone_state(handle.network) if rewritten_only else None
        report = self.rewrite(handle.optimizer if mode == "touched" else None)
        if mode == "network":  # every parameter of the network, biases too (FIRE's SAC)
            clear_optimizer_state_(
                handle.optimizer, network_parameters(handle.network, handle.exclude)
            )
        if rewritten_only:
            sync_changed_tensors(handle.network, before, handle.targets)
        else:
            sync_targets(handle.network, handle.targets)
        return report


# --- methods by name ------------------------------------------------------------------------


def parse_method(name: str) -> tuple[str, ...]:
    """Split ``"fire+adamo"`` into known, distinct parts (aliases such as ``er_l2`` expanded);
    ``ValueError`` otherwise, also for parts that do not combine (two optimizers)."""
    if not isinstance(name, str):
        raise ValueError(
            f"a method name must be a string such as 'fire' or 'fire+adamo', got {name!r}"
        )
    named = tuple(part.strip() for part in name.split("+"))
    known = method_names()
    unknown = [p for p in named if p not in known]
    if unknown:
        raise ValueError(
            f"unknown plasticity method {unknown[0]!r}; "
            f"choose from {', '.join(known)} (join several with '+', e.g. fire+adamo)"
        )
    if "none" in named and len(named) > 1:
        raise ValueError(f"method {name!r} combines 'none' with others; drop 'none'")
    parts = tuple(p for part in named for p in ALIASES.get(part, (part,)) if p != "none")
    if len(set(parts)) != len(parts):
        raise ValueError(f"method {name!r} names a part twice; name each once")
    classes = [PARTS[p] for p in parts]
    for part in classes:
        conflict = part.conflict([other for other in classes if other is not part])
        if conflict:
            raise ValueError(f"method {name!r} {conflict}")
    return parts


@dataclass
class Method:
    """A parsed method name and its settings; :meth:`attach` it to each network."""

    name: str
    parts: tuple[str, ...]
    config: MethodConfig = field(default_factory=MethodConfig)

    @property
    def part_classes(self) -> tuple[type[MethodPart], ...]:
        """The registered class of each part, in the order the parts act."""
        return tuple(part for name, part in PARTS.items() if name in self.parts)

    def attach(
        self,
        network: nn.Module,
        lr: float | None = None,
        targets: Iterable[nn.Module] = (),
        heads: Iterable[str] | None = None,
        fresh: Callable[[], nn.Module] | None = None,
        activation: Callable[[torch.Tensor], torch.Tensor] = F.relu,
        optimizer: torch.optim.Optimizer | None = None,
        exclude: Iterable[str] = (),
        start_step: int = 0,
        **optimizer_kwargs,
    ) -> MethodHandle:
        """Build the optimizer for ``network`` and return the handle a training loop calls.

        ``targets``: networks to re-sync after interventions (a critic's target critic).
        ``heads``: names of output layers (default: the last layer), kept out of the isometry
        step, the penalties and ReDo. ``fresh``: factory of a freshly initialized network of
        the same architecture (default: re-draw with ``reset_parameters``). ``activation``:
        the hidden nonlinearity (ReDo and ER read post-activation features).
        ``optimizer``: an optimizer built elsewhere (Stable-Baselines3's) that trains
        ``network``, possibly with other parameters too; the handle then builds none and
        ``lr``/``optimizer_kwargs`` are unused (``adamo`` needs it to be an :class:`AdamO`).
        ``exclude``: shell patterns of layers the interventions leave alone (a features
        extractor that belongs to another network). ``start_step``: the step the training
        loop starts from; periods that ended before it are not due (no catch-up).
        ``optimizer_kwargs`` (``eps``, ``betas``) go to the optimizer the handle builds.
        """
        return MethodHandle(
            self,
            network,
            lr,
            targets,
            heads,
            fresh,
            activation,
            optimizer_kwargs,
            optimizer=optimizer,
            exclude=exclude,
            start_step=start_step,
        )


def make_method(name: str, config: MethodConfig | None = None, **settings) -> Method:
    """A :class:`Method` from its name (``"fire"``, ``"fire+adamo"``, …) and settings.

    ``settings`` override fields of ``config`` (or of the defaults); unknown ones, and values
    out of range (:meth:`MethodConfig.validate`), raise ``ValueError``.
    """
    parts = parse_method(name)
    if config is None:
        config = MethodConfig()
    elif not isinstance(config, MethodConfig):
        raise ValueError(f"config must be a MethodConfig, got {type(config).__name__}")
    known = {f.name for f in dataclasses.fields(MethodConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(
            f"unknown method setting(s) {unknown}; valid settings are {', '.join(sorted(known))}"
        )
    config = dataclasses.replace(config, **settings)
    config.validate()
    return Method(name, parts, config)


class MethodHandle:
    """One method attached to one network: its optimizer, penalty and interventions.

    ``parts`` are the method's :class:`MethodPart` objects, in the order they act.
    ``interventions`` counts the reinitializations done so far (FIRE, reset, shrink & perturb,
    ReDo passes that recycled a unit; see ``InterventionReport.reinitialized``)."""

    settings: ClassVar[dict[str, Check]] = {"weight_decay": NONNEGATIVE}
    """the settings of every method: those of the optimizer the handle builds"""

    def __init__(
        self,
        method: Method,
        network: nn.Module,
        lr: float | None,
        targets: Iterable[nn.Module],
        heads: Iterable[str] | None,
        fresh: Callable[[], nn.Module] | None,
        activation: Callable[[torch.Tensor], torch.Tensor],
        optimizer_kwargs: dict,
        optimizer: torch.optim.Optimizer | None = None,
        exclude: Iterable[str] = (),
        start_step: int = 0,
    ):
        self.method = method
        self.config = method.config
        self.network = network
        self.targets = list(targets)
        self.heads = list(heads) if heads is not None else None
        self.fresh = fresh
        self.activation = activation
        self.exclude = tuple(exclude)
        self.interventions = 0
        self.interventions_by_method: Counter[str] = Counter()
        self.parts = tuple(part(self) for part in method.part_classes)
        self._gradient_readers = tuple(
            p for p in self.parts if type(p).after_backward is not MethodPart.after_backward
        )
        # the step the training loop reached: where schedules missing from an old checkpoint
        # resume from
        self.step = start_step
        self.schedules = self._schedules(start_step)
        self.initial_state = None
        if any(part.needs_initial_state() for part in self.parts):
            self.initial_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        builder = next((p for p in self.parts if p.kind is PartKind.OPTIMIZER), None)
        if optimizer is None:
            if lr is None:
                raise ValueError("attach needs lr= to build the optimizer (or an optimizer=)")
            if builder is None:
                optimizer = self.build_adam(list(network.parameters()), lr, optimizer_kwargs)
            else:
                optimizer = builder.build_optimizer(lr, optimizer_kwargs)
        elif builder is not None and builder.optimizer_class is None:
            raise ValueError(
                f"method {method.name!r} builds its own optimizer; attach it without optimizer="
            )
        elif builder is not None and not isinstance(optimizer, builder.optimizer_class):
            raise ValueError(
                f"method {method.name!r} needs an {builder.optimizer_class.__name__} optimizer, "
                f"got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer

    def __repr__(self) -> str:
        return f"MethodHandle({self.method.name!r}, optimizer={type(self.optimizer).__name__})"

    def _schedules(self, start: int) -> dict[str, Every | At]:
        """Every part's schedules by checkpoint key, counting from ``start``."""
        return {key: s for part in self.parts for key, s in part.schedules(start).items()}

    def build_adam(
        self,
        params: list[torch.Tensor],
        lr: float,
        optimizer_kwargs: dict,
        wrap: Callable[[type], type] = lambda adam: adam,
    ) -> torch.optim.Optimizer:
        """Adam over ``params`` (AdamW with ``weight_decay``): the optimizer of a method without
        an optimizer part, and what optimizer parts use for the parameters they leave out or
        ``wrap`` (a function of the optimizer class: TRAC's)."""
        weight_decay = self.config.weight_decay
        # torch defaults to the multi-tensor kernels on CUDA only; its one-kernel (fused)
        # update is faster still, on the CPU about 3x (benchmarks/sps.py)
        if "foreach" not in optimizer_kwargs and "fused" not in optimizer_kwargs:
            fused = fused_adam_available(params)
            optimizer_kwargs = {("fused" if fused else "foreach"): True, **optimizer_kwargs}
        if weight_decay > 0.0:
            return wrap(torch.optim.AdamW)(
                params, lr=lr, weight_decay=weight_decay, **optimizer_kwargs
            )
        return wrap(torch.optim.Adam)(params, lr=lr, **optimizer_kwargs)

    # --- 1. penalty -----------------------------------------------------------------------

    def penalty(self, loss: torch.Tensor | None = None, decay: bool = True) -> torch.Tensor:
        """The method's loss term for this network (a 0-dim tensor; zero when it has none).

        ``loss``: the training loss the term is added to, for penalties scaled to it (C-CHAIN's
        adaptive coefficient; without it, that keeps its initial value). ``decay=False``
        leaves out the coupled L2 (``l2``, ``er_l2``): for a loop that clips the gradient and
        then adds that term's gradient with :meth:`add_decay_gradient`."""
        total = next(self.network.parameters()).new_zeros(())
        for part in self.parts:
            term = part.penalty(loss) if decay or not part.decay else None
            if term is not None:
                total = total + term
        return total

    def add_decay_gradient(self) -> None:
        """Add the gradient of the coupled L2 (``2λθ``, the parts :meth:`penalty` leaves out
        with ``decay=False``) to the network's ``.grad``: after the loop clipped the task
        gradient, before the optimizer step. The ER + L2 authors' optax chain does this
        (``clip_by_global_norm``, then ``add_decayed_weights``, then Adam; arXiv 2509.22335),
        so the decay is never scaled down with a large task gradient. Nothing when the method
        has no such part."""
        terms = [part.penalty(None) for part in self.parts if part.decay]
        if terms:
            torch.stack(terms).sum().backward()

    # --- 2. scheduled interventions -------------------------------------------------------

    def start(self, step: int) -> None:
        """Let the schedules begin at ``step``: periods and steps before it are not due (a
        loop that starts updating late, or resumes, does not catch up). A step below the one
        reached means the loop counts from scratch again (SB3's ``learn()`` resets its count by
        default): the schedules start over from there."""
        if step < self.step:
            self.schedules = self._schedules(step)
        self.step = step
        for schedule in self.schedules.values():
            schedule.skip_to(step)

    def after_backward(self) -> None:
        """Let the parts read this update's gradients (:meth:`MethodPart.after_backward`):
        call it inside the update, after ``loss.backward()`` and any clipping, before
        ``optimizer.step()``."""
        for part in self._gradient_readers:
            part.after_backward()

    def after_update(
        self,
        step: int,
        inputs: Inputs | Callable[[], Inputs] | None = None,
        every_update: bool | None = None,
    ) -> list[InterventionReport]:
        """Run the interventions due at ``step``; returns their reports (empty when none ran).

        ``inputs`` is a probe batch (the network's arguments), needed by ``redo`` when it is
        due (and by ``er``, ``er_l2``: see :class:`EffectiveRankAscent`); or a function
        returning one, called only then. ``every_update``: which parts act: all (None, for a
        loop that calls this after every update), only the rules of every gradient step (True:
        ``MethodPart.every_update``) or only the others (False): a loop that takes several
        updates between its intervention points (PPO) calls it with True after each update
        and with False at those points.
        """
        self.step = max(self.step, step)
        parts = [p for p in self.parts if every_update in (None, p.every_update)]
        reports = [report for part in parts for report in part.after_update(step, inputs)]
        self._count(reports)
        return reports

    def on_task_switch(self, inputs: Inputs | None = None) -> list[InterventionReport]:
        """Run the interventions configured to act at a task switch; returns their reports."""
        reports = [report for part in self.parts for report in part.on_task_switch(inputs)]
        self._count(reports)
        return reports

    def after_minibatch(self, inputs: Inputs) -> list[InterventionReport]:
        """Report one update on the minibatch ``inputs`` (the network's arguments); returns the
        reports of what acted (the effective-rank ascent under ``er_schedule`` 'updates',
        every ``er_every`` calls). A loop that calls :meth:`after_update` after every single
        update need not call this: the ascent then counts those calls."""
        reports = [report for part in self.parts for report in part.after_minibatch(inputs)]
        self._count(reports)
        return reports

    def before_epoch(self, inputs: Inputs) -> list[InterventionReport]:
        """Report the start of an epoch over ``inputs`` (PPO: the rollout's observations, before
        its minibatch updates); returns the reports of what acted (the effective-rank ascent
        under ``er_schedule`` 'epochs', as its authors' PPO ascends once per epoch)."""
        reports = [report for part in self.parts for report in part.before_epoch(inputs)]
        self._count(reports)
        return reports

    def rewrote_network(self, reports: Iterable[InterventionReport]) -> bool:
        """Whether one of ``reports`` comes from a part that rewrites the whole network (what
        SAC's temperature reset follows; ReDo's recycling of single units does not count)."""
        rewriters = {part.name for part in self.parts if part.rewrites_network}
        return any(report.method in rewriters for report in reports)

    def _count(self, reports: list[InterventionReport]) -> None:
        for report in reports:
            self.interventions += int(report.reinitialized)
            self.interventions_by_method[report.method] += int(report.reinitialized)

    def probe(self, inputs: Inputs | Callable[[], Inputs] | None, part: str) -> Inputs:
        """The probe batch ``part`` needs: ``inputs``, or what calling it returns."""
        if callable(inputs):
            inputs = inputs()
        if inputs is None:
            raise ValueError(
                f"method {part!r} needs a probe batch: call after_update(step, inputs=...) "
                "with a batch of the network's inputs"
            )
        return inputs

    # --- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to resume: optimizer, schedule positions, method buffers; only
        tensors and plain Python values (loads with ``torch.load(weights_only=True)``)."""
        state = {
            "method": self.method.name,
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "schedules": {key: s.state_dict() for key, s in self.schedules.items()},
            "interventions": self.interventions,
            "interventions_by_method": dict(self.interventions_by_method),
            # every state has the key, as before the parts had their own state: code that
            # predates the registry reads it whatever the method
            "spectral_vectors": {},
            "initial_state": self.initial_state,
        }
        for part in self.parts:
            state.update(part.state_dict())
        return state

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; the method name must match.

        States saved by earlier versions load too: with the last period index per part
        (``last_period``) instead of schedule objects, or without the ``*_at`` schedules;
        a schedule the state lacks starts where the loaded ones had reached, so a resumed run
        does not catch up on listed steps it passed before.
        """
        if state.get("method") != self.method.name:
            raise ValueError(
                f"checkpoint was saved with method {state.get('method')!r}, "
                f"this run uses {self.method.name!r}; resume with the same --method"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        saved = state.get("schedules")
        if saved is None:  # before the schedule objects: the last period index per part
            periods = {p.name: p.every for p in PARTS.values() if hasattr(p, "every")}
            saved = {
                part: {"period": getattr(self.config, periods[part]), "last": index}
                for part, index in state["last_period"].items()
                if part in periods
            }
        for key, schedule_state in saved.items():
            if key in self.schedules:
                self.schedules[key].load_state_dict(schedule_state)
        # where the run was: saved since the *_at schedules, else the latest period start
        reached = [s["last"] * s["period"] for s in saved.values() if "period" in s]
        self.step = int(state.get("step", max(reached, default=self.step)))
        for schedule in self.schedules.values():  # a period enabled by the resume included
            schedule.skip_to(self.step)
        self.interventions = int(state["interventions"])
        self.interventions_by_method = Counter(state.get("interventions_by_method", {}))
        for part in self.parts:
            part.load_state_dict(state)
        if state["initial_state"] is not None:
            self.initial_state = state["initial_state"]


# --- the built-in parts ---------------------------------------------------------------------


@register
class AdamOPart(MethodPart):
    """AdamO: Adam with a decoupled isometry step on hidden weights (:class:`plasticity.AdamO`)."""

    name = "adamo"
    kind = PartKind.OPTIMIZER
    settings = {"iso_coef": NONNEGATIVE, "iso_scale": POSITIVE, "iso_every": COUNT}
    optimizer_class = AdamO

    def build_optimizer(self, lr, optimizer_kwargs):
        cfg, handle = self.config, self.handle
        groups = adamo_param_groups(
            handle.network,
            cfg.iso_coef,
            handle.heads,
            iso_scale=cfg.iso_scale,
            iso_every=cfg.iso_every,
        )
        return AdamO(groups, lr=lr, weight_decay=cfg.weight_decay, **optimizer_kwargs)


@register
class Isometry(MethodPart):
    """The coupled isometry penalty λ·Σ‖WᵀW − sI‖² on hidden weights."""

    name = "isometry"
    kind = PartKind.PENALTY
    settings = AdamOPart.settings

    def penalty(self, loss):
        cfg, handle = self.config, self.handle
        return cfg.iso_coef * isometry_penalty(handle.network, cfg.iso_scale, handle.heads)


@register
class Fire(WholeNetworkIntervention):
    """FIRE: each weight replaced by its nearest isometry (Newton–Schulz or polar factor)."""

    name = "fire"
    every, at, on_switch = "fire_every", "fire_at", "fire_on_task_switch"
    settings = {
        **WholeNetworkIntervention.settings,
        "fire_every": PERIOD,
        "fire_at": STEPS,
        "fire_on_task_switch": FLAG,
        "fire_ns_steps": COUNT,
        "fire_mode": CHOICE,
        "fire_scale": CHOICE,
        "fire_linear": CHOICE,
    }

    @property
    def linear(self) -> str:
        """What FIRE does to Linear layers (``fire_linear``, unset: 'fire')."""
        return self.config.fire_linear or "fire"

    def needs_initial_state(self):
        return self.linear == "initial"

    def rewrite(self, optimizer):
        cfg, handle = self.config, self.handle
        # the paper's DQN: convolutions FIRE'd, linear layers reset
        fired, linear = split_linear_layers(handle, split=self.linear != "fire")
        report = InterventionReport("fire")
        if fired or not linear:  # a network with no layer at all gets fire_'s error
            fire_report = fire_(
                handle.network,
                optimizer,
                cfg.fire_ns_steps,
                cfg.fire_scale,
                cfg.fire_mode,
                include=fired,
            )
            report.layers.update(fire_report.layers)
        if linear:
            report.layers.update(reset_layers(handle, optimizer, linear, self.linear).layers)
        return report


def split_linear_layers(handle: MethodHandle, split: bool) -> tuple[list[str], list[str]]:
    """The names of the handle's layers as ``(others, linear)``: with ``split``, Linear layers
    apart (the FIRE paper's DQN resets them while it FIREs or blends the convolutions);
    otherwise every layer in ``others``."""
    layers = select_layers(handle.network, exclude=handle.exclude)
    if not split:
        return [name for name, _ in layers], []
    linear = [name for name, layer in layers if isinstance(layer, nn.Linear)]
    return [name for name, layer in layers if not isinstance(layer, nn.Linear)], linear


def reset_layers(
    handle: MethodHandle, optimizer: Optimizers, layers: list[str], source: str
) -> InterventionReport:
    """Reset ``layers`` to the network's initial values (``source='initial'``) or a fresh
    draw (``'fresh'``)."""
    return full_reset_(
        handle.network,
        optimizer,
        handle.fresh,
        include=layers,
        initial_state=handle.initial_state if source == "initial" else None,
    )


@register
class Reset(WholeNetworkIntervention):
    """Full reset: every layer redrawn (Nikishin et al. 2022)."""

    name = "reset"
    every, at, on_switch = "reset_every", "reset_at", "reset_on_task_switch"
    settings = {
        **WholeNetworkIntervention.settings,
        "reset_every": PERIOD,
        "reset_at": STEPS,
        "reset_on_task_switch": FLAG,
    }

    def rewrite(self, optimizer):
        handle = self.handle
        return full_reset_(handle.network, optimizer, handle.fresh, exclude=handle.exclude)


@register
class ShrinkPerturb(WholeNetworkIntervention):
    """Shrink & perturb (Ash & Adams 2020): θ ← shrink·θ + perturb·θ_fresh (or θ₀)."""

    name = "shrink_perturb"
    every, at = "shrink_perturb_every", "shrink_perturb_at"
    on_switch = "shrink_perturb_on_task_switch"
    settings = {
        **WholeNetworkIntervention.settings,
        "shrink_perturb_every": PERIOD,
        "shrink_perturb_at": STEPS,
        "shrink_perturb_on_task_switch": FLAG,
        "shrink": FRACTION,
        "perturb": FRACTION,
        "perturb_target": CHOICE,
        "shrink_perturb_linear": CHOICE,
    }

    def needs_initial_state(self):
        cfg = self.config
        return "initial" in (cfg.perturb_target, cfg.shrink_perturb_linear)

    def rewrite(self, optimizer):
        cfg, handle = self.config, self.handle
        mode = cfg.shrink_perturb_linear
        blended, linear = split_linear_layers(handle, split=mode != "shrink")
        report = InterventionReport("shrink_perturb")
        if blended or not linear:  # a network with no layer at all gets shrink_perturb_'s error
            blend = shrink_perturb_(
                handle.network,
                cfg.shrink,
                cfg.perturb,
                cfg.perturb_target,
                optimizer,
                handle.initial_state,
                handle.fresh,
                include=blended,
            )
            report.layers.update(blend.layers)
        if linear:
            report.layers.update(reset_layers(handle, optimizer, linear, mode).layers)
        return report


@register
class ReDo(ScheduledIntervention):
    """ReDo (Sokar et al. 2023): dormant units recycled, their optimizer entries reset."""

    name = "redo"
    every = "redo_every"
    replaces_units = True
    settings = {"redo_every": PERIOD, "redo_tau": NONNEGATIVE}

    def intervene(self, inputs):
        handle = self.handle
        return redo_(
            handle.network,
            handle.probe(inputs, self.name),
            self.config.redo_tau,
            handle.optimizer,
            handle.heads,
            handle.activation,
            handle.fresh,
            exclude=handle.exclude,
        )


@register
class L2Init(MethodPart):
    """L2-init (Kumar et al. 2023): λ‖θ − θ₀‖² toward the weights at attach time."""

    name = "l2_init"
    kind = PartKind.PENALTY
    settings = {"l2_init_coef": NONNEGATIVE}

    def needs_initial_state(self):
        return True

    def penalty(self, loss):
        handle = self.handle
        return self.config.l2_init_coef * l2_init_penalty(handle.network, handle.initial_state)


@register
class L2(MethodPart):
    """Coupled L2: λ‖θ‖² in the loss (or its gradient added after the clip: ``decay``)."""

    name = "l2"
    kind = PartKind.PENALTY
    decay = True
    settings = {"l2_coef": NONNEGATIVE}

    def penalty(self, loss):
        return self.config.l2_coef * l2_penalty(self.handle.network)


@register
class Parseval(MethodPart):
    """Parseval regularization (Chung et al. 2024): λ‖WWᵀ − sI‖² on hidden weights."""

    name = "parseval"
    kind = PartKind.PENALTY
    settings = {"parseval_coef": NONNEGATIVE, "parseval_scale": POSITIVE}

    def penalty(self, loss):
        cfg, handle = self.config, self.handle
        return cfg.parseval_coef * parseval_penalty(
            handle.network, cfg.parseval_scale, handle.heads
        )


@register
class Spectral(MethodPart):
    """Spectral regularization (Lewandowski et al. 2024): λ·Σ(σ_max^k − 1)², with σ_max from
    power-iteration vectors kept between updates (and in checkpoints).

    The vectors are state the update owns: allocated once, when the method is attached, and
    refined in place by every penalty call (a checkpoint's are copied into them), so compiled
    updates and their CUDA graphs keep reading and writing the same memory. They are marked
    static addresses, as torch marks an optimizer's state: a CUDA graph may then mutate them
    (it skips graphs that mutate other inputs)."""

    name = "spectral"
    kind = PartKind.PENALTY
    settings = {"spectral_coef": NONNEGATIVE, "spectral_exponent": COUNT}

    def __init__(self, handle):
        super().__init__(handle)
        self.vectors = random_unit_vectors(handle.network, handle.heads)
        for vector in self.vectors.values():
            torch._dynamo.mark_static_address(vector)

    def penalty(self, loss):
        cfg, handle = self.config, self.handle
        return cfg.spectral_coef * spectral_penalty(
            handle.network, self.vectors, exponent=cfg.spectral_exponent, heads=handle.heads
        )

    def state_dict(self):
        return {"spectral_vectors": {k: v.detach().clone() for k, v in self.vectors.items()}}

    def load_state_dict(self, state):
        # the layout since the first checkpoints: one vector per layer name ({} when saved
        # before the first update, which keeps the vectors drawn at attach time)
        for name, saved in state.get("spectral_vectors", {}).items():
            vector = self.vectors.get(name)
            if vector is not None and vector.shape == saved.shape:
                with torch.no_grad():
                    vector.copy_(saved)


ER_LR_SUPERVISED = 1e-2
"""``er_lr`` when unset: the ER + L2 authors' permuted-MNIST ascent step (arXiv 2509.22335;
lop-jax ``permuted_mnist/config.py``)."""

ER_LR_RL = 1e-6
"""``er_lr`` of our RL agents and the SB3 callback: the ER + L2 authors' Slippery-Ant PPO with
L2 (lop-jax ``rlopt/scripts/hyperparams/nonstationary/hessian/l2_er_hessian.py``; their sweep
tried 1e-5 to 1e-7, and ER alone ran at 1e-7)."""


@register
class EffectiveRankAscent(ScheduledIntervention):
    """Effective-rank ascent (arXiv 2509.22335): an SGD step raising the mean effective rank of
    the hidden features (:func:`plasticity.effective_rank_ascent_`), a regularizer step, not a
    reinitialization. When, and on which inputs, follows ``er_schedule``, as its authors' code:

    - ``updates``: after every ``er_every`` updates, on those updates' minibatches
      concatenated (lop-jax's supervised loops, ``er_batch`` 100). The minibatches come from
      :meth:`MethodHandle.after_minibatch`; a loop that never calls it but calls
      ``after_update`` after every update counts those calls instead. The ones since the last
      ascent are kept (inputs only) and saved in checkpoints.
    - ``epochs``: at the start of every epoch, on the inputs of
      :meth:`MethodHandle.before_epoch` (lop-jax's PPO: once per epoch on the whole rollout).
    - ``steps``: every ``er_every`` steps of ``after_update``, on its probe batch.
    """

    name = "er"
    every = "er_every"
    settings = {
        "er_every": PERIOD,
        "er_lr": NONNEGATIVE_OR_UNSET,
        "er_schedule": CHOICE,
        "er_features": CHOICE,
    }

    def __init__(self, handle):
        super().__init__(handle)
        self.pending: list[tuple[torch.Tensor, ...]] = []
        """the inputs of each update since the last ascent (``updates``)"""
        self.fed = False
        """whether the loop reports its updates through after_minibatch / before_epoch"""

    @property
    def schedule(self) -> str:
        """``er_schedule`` (unset: 'updates')."""
        return self.config.er_schedule or "updates"

    def schedules(self, start):
        return super().schedules(start) if self.schedule == "steps" else {}

    def after_update(self, step, inputs):
        if self.schedule == "steps":
            return super().after_update(step, inputs)
        if self.schedule == "epochs" and not self.fed:
            raise ValueError(
                "er_schedule 'epochs' ascends at each epoch's start: call "
                "handle.before_epoch(inputs) there, or choose er_schedule 'updates'"
            )
        if self.fed:  # the loop reports its updates itself
            return []
        return self.count(self.handle.probe(inputs, self.name))

    def after_minibatch(self, inputs):
        self.fed = True
        return self.count(inputs) if self.schedule == "updates" else []

    def before_epoch(self, inputs):
        self.fed = True
        return [self.intervene(inputs)] if self.schedule == "epochs" else []

    def count(self, inputs: Inputs) -> list[InterventionReport]:
        """Keep one update's inputs; ascend on all kept ones when ``er_every`` are."""
        every = self.config.er_every
        if every == 0:
            return []
        args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        self.pending.append(tuple(a.detach() for a in args))
        if len(self.pending) < every:
            return []
        batch = tuple(torch.cat(parts) for parts in zip(*self.pending, strict=True))
        self.pending = []
        return [self.intervene(batch)]

    def intervene(self, inputs):
        cfg, handle = self.config, self.handle
        erank = effective_rank_ascent_(
            handle.network,
            handle.probe(inputs, self.name),
            ER_LR_SUPERVISED if cfg.er_lr is None else cfg.er_lr,
            handle.heads,
            handle.activation,
            cfg.er_features,
        )
        return InterventionReport(
            "er_ascent", {"features": {"mean_erank": erank}}, reinitialized=False
        )

    def state_dict(self):
        return {"er_pending": [list(args) for args in self.pending]}

    def load_state_dict(self, state):
        # states saved before the update count have none: the count starts afresh
        device = next(self.handle.network.parameters()).device
        self.pending = [tuple(a.to(device) for a in args) for args in state.get("er_pending", [])]


@register
class ContinualBackprop(MethodPart):
    """Continual backprop (Dohare et al., Nature 2024; arXiv 2306.13812): after every update
    the least useful mature units are replaced; see :mod:`plasticity.continual_backprop` for
    the rule and where it differs from the authors' code. It acts at each ``after_update``
    call, on the batch passed there: after every update in SAC (one update per env step by
    default) and after every minibatch step in PPO, as in the authors' code, and after each
    ``train_frequency`` env steps' update in DQN. Ages and the maturity count these calls,
    i.e. updates, whatever ``step`` the loop passes."""

    name = "cbp"
    kind = PartKind.PER_UPDATE
    every_update = True
    replaces_units = True
    settings = {"cbp_replacement_rate": FRACTION, "cbp_maturity": AGE, "cbp_decay": DECAY}

    def __init__(self, handle):
        super().__init__(handle)
        self.units: dict[str, dict] = {}

    def after_update(self, step, inputs):
        cfg, handle = self.config, self.handle
        report = continual_backprop_(
            handle.network,
            handle.probe(inputs, self.name),
            self.units,
            cfg.cbp_replacement_rate,
            cfg.cbp_decay,
            cfg.cbp_maturity,
            handle.optimizer,
            handle.heads,
            handle.fresh,
            handle.exclude,
        )
        return [report] if report.reinitialized else []  # logged only when units changed

    def state_dict(self):
        return {"cbp_units": self.units}

    def load_state_dict(self, state):
        self.units = state.get("cbp_units", {})


@register
class Injection(ScheduledIntervention):
    """Plasticity injection (Nikishin et al. 2023, arXiv 2305.15555): each Linear head ``h``
    becomes ``h + h' − h'₀`` with ``h'`` new and trained, ``h``, ``h'₀`` frozen; the outputs
    are unchanged when it acts (see :mod:`plasticity.injection`). The paper injects once, at a
    step (``injection_at``); task switches (on by default) and a period are offered as
    Plasticine's ports do. Unlike Plasticine's port, the old head is frozen and the new one is
    trained. Heads are the handle's (the last layer by default), each one Linear layer."""

    name = "injection"
    every, at, on_switch = "injection_every", "injection_at", "injection_on_task_switch"
    settings = {
        "injection_every": PERIOD,
        "injection_at": STEPS,
        "injection_on_task_switch": FLAG,
    }

    def __init__(self, handle):
        super().__init__(handle)
        self.offsets = attach_offsets(handle.network, handle.heads, handle.targets)

    @classmethod
    def conflict(cls, others):
        rewriters = [o.name for o in others if o.rewrites_network or o.replaces_units]
        if rewriters:
            return (
                f"combines injection with {rewriters[0]}, which would rewrite the network "
                "underneath the frozen old heads; use injection without it"
            )
        return None

    def intervene(self, inputs):
        handle = self.handle
        return inject_(handle.network, self.offsets, handle.optimizer, handle.fresh, handle.targets)

    def state_dict(self):
        return {"injection_offsets": self.offsets}

    @torch.no_grad()
    def load_state_dict(self, state):
        for name, saved in state.get("injection_offsets", {}).items():
            for key, value in saved.items():  # in place: the hooks read these tensors
                if value is not None:
                    self.offsets[name][key].copy_(value)


@register
class Dash(ScheduledIntervention):
    """DASH, direction-aware shrinking (Shin et al. 2024, arXiv 2410.23495): each weight row
    (conv kernel, bias vector) shrinks to ``clamp(cos(G, W), λ, 1)·W`` with ``G`` the running
    average of the negative gradients since the last shrink (see :mod:`plasticity.dash`).
    The authors shrink when a new chunk of data arrives, with ``G`` over all data so far:
    here at a task switch the average restarts and the shrink follows the first update on the
    new task (replay mixing old and new data); a period and listed steps are offered too.
    Optimizer state and targets are left alone, as the authors leave the optimizer."""

    name = "dash"
    every, at, on_switch = "dash_every", "dash_at", "dash_on_task_switch"
    settings = {
        "dash_every": PERIOD,
        "dash_at": STEPS,
        "dash_on_task_switch": FLAG,
        "dash_alpha": FRACTION,
        "dash_lambda": FRACTION,
    }

    def __init__(self, handle):
        super().__init__(handle)
        # G per weight and bias, allocated once and updated in place inside the updates (a
        # captured graph keeps reading the same tensors)
        self.descent = descent_buffers(handle.network, handle.exclude)
        for buffer in self.descent.values():
            torch._dynamo.mark_static_address(buffer)
        self.after_switch = False  # a shrink is due after the next update

    def after_backward(self):
        accumulate_descent_(
            self.descent, self.handle.network, self.config.dash_alpha, self.handle.exclude
        )

    def after_update(self, step, inputs):
        scheduled = super().after_update(step, inputs)
        if self.after_switch and not scheduled:
            scheduled = [self.intervene(inputs)]
        self.after_switch = False
        return scheduled

    def on_task_switch(self, inputs):
        if self.config.dash_on_task_switch:
            for buffer in self.descent.values():  # G over the new task's updates only
                buffer.zero_()
            self.after_switch = True
        return []

    def intervene(self, inputs):
        handle = self.handle
        return dash_(handle.network, self.descent, self.config.dash_lambda, handle.exclude)

    def state_dict(self):
        return {
            "dash_descent": {k: v.detach().clone() for k, v in self.descent.items()},
            "dash_after_switch": self.after_switch,
        }

    @torch.no_grad()
    def load_state_dict(self, state):
        # checkpoints before the buffers were allocated up front hold only the tensors that
        # had a gradient since the last shrink; the others are zero, as they were then
        saved = state.get("dash_descent", {})
        for key, buffer in self.descent.items():
            if key in saved:
                buffer.copy_(saved[key])
            else:
                buffer.zero_()
        self.after_switch = bool(state.get("dash_after_switch", False))


@register
class MuonPart(MethodPart):
    """Muon (Jordan et al. 2024; ``torch.optim.Muon``, torch >= 2.9) on the hidden Linear
    weights: momentum, then the update orthogonalized by five Newton–Schulz steps, scaled by
    √max(1, fan_out/fan_in); Adam (AdamW with ``weight_decay``) trains the rest, the heads,
    biases and conv kernels, as usual (torch's Muon takes matrices only; the FIRE paper's
    vision baseline flattens conv kernels instead). Muon's rate is ``muon_lr_scale`` times the
    network's, its decoupled weight decay ``weight_decay``."""

    name = "muon"
    kind = PartKind.OPTIMIZER
    settings = {"muon_lr_scale": POSITIVE, "muon_momentum": DECAY}

    def build_optimizer(self, lr, optimizer_kwargs):
        if not hasattr(torch.optim, "Muon"):
            raise ValueError(
                f"method 'muon' needs torch.optim.Muon (torch >= 2.9), this is torch "
                f"{torch.__version__}; upgrade torch or pick another method"
            )
        cfg, handle = self.config, self.handle
        hidden = hidden_layers(handle.network, handle.heads)
        matrices = [layer.weight for _, layer in hidden if isinstance(layer, nn.Linear)]
        if not matrices:
            raise ValueError(
                f"method 'muon' found no hidden Linear layer in {type(handle.network).__name__} "
                "for Muon to train; pick another method for this network"
            )
        taken = {id(p) for p in matrices}
        rest = [p for p in handle.network.parameters() if id(p) not in taken]
        optimizers = {
            "muon": torch.optim.Muon(
                matrices,
                lr=cfg.muon_lr_scale * lr,
                weight_decay=cfg.weight_decay,
                momentum=cfg.muon_momentum,
            )
        }
        if rest:
            optimizers["adam"] = handle.build_adam(rest, lr, optimizer_kwargs)
        return CombinedOptimizer(optimizers)


@register
class TracPart(MethodPart):
    """TRAC (Muppidi et al. 2024, arXiv 2405.16642): Adam (AdamW with ``weight_decay``) whose
    displacement from the starting weights is rescaled by TRAC's parameter-free factor, from
    the authors' ``trac-optimizer`` package at its defaults (see
    :func:`plasticity.optim.trac_optimizer_class`). The starting weights stay TRAC's reference
    for the whole run, across task switches and interventions, as in the paper."""

    name = "trac"
    kind = PartKind.OPTIMIZER

    def build_optimizer(self, lr, optimizer_kwargs):
        params = list(self.handle.network.parameters())
        return self.handle.build_adam(params, lr, optimizer_kwargs, wrap=trac_optimizer_class)


@register
class KronPart(MethodPart):
    """PSGD-Kron (Li, arXiv 1512.04202 and 1809.10232; :class:`plasticity.kron.Kron`): momentum
    SGD preconditioned by a Kronecker-factored whitening preconditioner fitted online, on every
    parameter of the network, biases included, as Plasticine uses it. Its rate is
    ``kron_lr_scale`` times the network's, its decoupled weight decay (matrices only)
    ``weight_decay``. Adam's ``eps`` and ``betas``, which the agents pass, do not apply: Kron
    has neither. An intervention that clears the optimizer state of a tensor restarts its
    preconditioner from the identity."""

    name = "kron"
    kind = PartKind.OPTIMIZER
    settings = {
        "kron_lr_scale": POSITIVE,
        "kron_momentum": DECAY,
        "kron_precond_lr": Check(lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
        "kron_max_triangular": COUNT,
    }
    optimizer_class = Kron

    def build_optimizer(self, lr, optimizer_kwargs):
        cfg = self.config
        return Kron(
            self.handle.network.parameters(),
            lr=cfg.kron_lr_scale * lr,
            b1=cfg.kron_momentum,
            weight_decay=cfg.weight_decay,
            precond_lr=cfg.kron_precond_lr,
            max_size_triangular=cfg.kron_max_triangular,
        )


@register
class NormalizeAndProject(MethodPart):
    """NaP, normalize-and-project (Lyle et al. 2024, arXiv 2407.01800): after every update each
    Linear and Conv weight is projected back to its norm at attach time, each normalization
    layer's gain and offset jointly to theirs (see :mod:`plasticity.nap`). The network must
    normalize before its nonlinearities (our agents: ``--layer-norm``). It acts at each
    ``after_update`` call: after every update in SAC at its default replay ratio and in PPO
    (every minibatch step), after the ``train_frequency`` steps' update in DQN. The paper's
    explicit learning-rate schedule is not part of it: an agent's schedule applies as is."""

    name = "nap"
    kind = PartKind.PER_UPDATE
    every_update = True

    def __init__(self, handle):
        super().__init__(handle)
        if not normalization_layers(handle.network):
            raise ValueError(
                f"method 'nap' projects the weights of a network that normalizes before its "
                f"nonlinearities, and {type(handle.network).__name__} has no normalization "
                "layer: add them (our agents: --layer-norm)"
            )
        self.groups = projected_groups(handle.network, handle.exclude)
        self.norms = {name: float(joint_norm(params)) for name, params in self.groups.items()}

    def after_update(self, step, inputs):
        project_(self.groups, self.norms)
        return []

    def state_dict(self):
        return {"nap_norms": self.norms}

    def load_state_dict(self, state):
        self.norms.update(state.get("nap_norms", {}))


@register
class SelfNormalizedResets(MethodPart):
    """Self-normalized resets (Farias & Jozefiak 2024, arXiv 2410.20098): a hidden unit is
    reset when it has not fired for as long as its own threshold, re-estimated from its
    inter-firing times every ``snr_tau_every`` task switches (see :mod:`plasticity.snr`).
    Ages count the samples of the batches passed to ``after_update``: every update's in SAC at
    its default replay ratio and in PPO (each minibatch), one batch per ``train_frequency``
    steps in DQN (the authors age units at every step). Without task switches the thresholds
    stay at ``snr_tau_init``."""

    name = "snr"
    kind = PartKind.PER_UPDATE
    every_update = True
    replaces_units = True
    settings = {
        "snr_percentile": FRACTION,
        "snr_expansion": AT_LEAST_ONE,
        "snr_tau_every": COUNT,
        "snr_tau_init": COUNT,
        "snr_tau_max": COUNT,
    }

    def __init__(self, handle):
        super().__init__(handle)
        self.units: dict[str, dict] = {}
        self.switches = 0

    def after_update(self, step, inputs):
        cfg, handle = self.config, self.handle
        report = self_normalized_reset_(
            handle.network,
            handle.probe(inputs, self.name),
            self.units,
            cfg.snr_tau_init,
            cfg.snr_tau_max,
            handle.optimizer,
            handle.heads,
            handle.fresh,
            handle.exclude,
        )
        return [report] if report.reinitialized else []  # logged only when units changed

    def on_task_switch(self, inputs):
        self.switches += 1
        if self.switches % self.config.snr_tau_every == 0:
            cfg = self.config
            update_thresholds_(self.units, cfg.snr_percentile, cfg.snr_expansion, cfg.snr_tau_max)
        return []

    def state_dict(self):
        return {"snr_units": self.units, "snr_switches": self.switches}

    def load_state_dict(self, state):
        self.units = state.get("snr_units", {})
        self.switches = int(state.get("snr_switches", 0))


@register
class ChurnReduction(MethodPart):
    """C-CHAIN (Tang et al., ICML 2025, arXiv 2506.00592): the loss gets ``λ·R``, ``R`` the
    mean squared change of the network's outputs since the previous update on a reference
    batch, ``λ`` adapted to the main loss (see :mod:`plasticity.churn`). The network one
    update earlier is the parameters at the previous ``penalty`` call; the reference batch is
    the one passed to the last ``after_update`` (the previous training batch: in SAC and DQN
    a replay sample apart from the current one, in PPO the previous minibatch of the same
    rollout, the last one of the previous rollout for an iteration's first update; the authors
    shuffle a new one per update). Without the main loss passed to ``penalty``, λ stays
    ``c_chain_coef``."""

    name = "c_chain"
    kind = PartKind.PENALTY
    every_update = True
    # the reference batch is reallocated when the batch size changes (PPO's minibatches)
    captured_whole = False
    settings = {
        "c_chain_coef": NONNEGATIVE,
        "c_chain_target": NONNEGATIVE,
        "c_chain_window": COUNT,
        "c_chain_start": AGE,
    }

    def __init__(self, handle):
        super().__init__(handle)
        cfg = self.config
        device = next(handle.network.parameters()).device
        self.coefficient = AdaptiveCoefficient(
            cfg.c_chain_coef, cfg.c_chain_target, cfg.c_chain_window, cfg.c_chain_start, device
        )
        self.previous: dict[str, torch.Tensor] | None = None
        self.reference: list[torch.Tensor] | None = None

    def penalty(self, loss):
        network = self.handle.network
        term = None
        if self.previous is not None and self.reference is not None:
            regularizer = churn(network, self.previous, self.reference)
            coefficient = (
                self.config.c_chain_coef
                if loss is None
                else self.coefficient.update(loss, regularizer)
            )
            term = coefficient * regularizer
        with torch.no_grad():  # these parameters are the next update's "one update earlier"
            if self.previous is None:
                self.previous = {k: p.detach().clone() for k, p in network.named_parameters()}
            else:
                for key, param in network.named_parameters():
                    self.previous[key].copy_(param)
        return term

    @torch.no_grad()
    def after_update(self, step, inputs):
        if inputs is None or callable(inputs):
            return []
        batch = list(inputs) if isinstance(inputs, (tuple, list)) else [inputs]
        # a copy in place: the training loop may reuse its batch tensors
        if self.reference is None or [t.shape for t in batch] != [t.shape for t in self.reference]:
            self.reference = [t.detach().clone() for t in batch]
        else:
            for kept, new in zip(self.reference, batch, strict=True):
                kept.copy_(new)
        return []

    def state_dict(self):
        return {"c_chain_coefficient": self.coefficient.state_dict()}

    def load_state_dict(self, state):
        if "c_chain_coefficient" in state:
            self.coefficient.load_state_dict(state["c_chain_coefficient"])


METHODS: tuple[str, ...] = method_names()
"""The built-in method names (see :func:`method_names` for those registered later too)."""
