"""Named plasticity methods: one object with an optimizer, a penalty and scheduled interventions.

A method is what a user names on the command line (``--method fire+adamo``). Attached to one
network it yields a :class:`MethodHandle` that a training loop uses in three places::

    handle = make_method("fire+adamo", fire_every=100_000).attach(critic, lr=3e-4,
                                                                  targets=[critic_target])
    loss = td_loss + handle.penalty()          # 1. regularizer term (0 when none)
    handle.optimizer.zero_grad(); loss.backward(); handle.optimizer.step()
    handle.after_update(step, inputs=obs)      # 2. scheduled interventions
    handle.on_task_switch(inputs=obs)          # 3. when the environment changed

After an intervention that changes what the network computes (FIRE, reset, shrink & perturb)
the handle resets the optimizer state of the whole network (``clear_optimizer``; in place, so
captured CUDA graphs stay valid) and copies the network into its target networks. ReDo resets
the state of the entries it recycles and leaves targets alone: zeroed outgoing weights keep
the network's function, so a target jump would only disturb the bootstrap.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from plasticity._layers import Inputs, select_layers
from plasticity.interventions import (
    InterventionReport,
    Optimizers,
    clear_optimizer_state_,
    fire_,
    full_reset_,
    network_parameters,
    redo_,
    shrink_perturb_,
    sync_targets,
)
from plasticity.isometry import isometry_penalty
from plasticity.optim import AdamO, adamo_param_groups, fused_adam_available
from plasticity.regularizers import (
    effective_rank_ascent_,
    l2_init_penalty,
    l2_penalty,
    parseval_penalty,
    spectral_penalty,
)
from plasticity.schedule import At, Every

METHODS: tuple[str, ...] = (
    "none",
    "adamo",
    "isometry",
    "fire",
    "reset",
    "shrink_perturb",
    "redo",
    "l2_init",
    "l2",
    "parseval",
    "spectral",
    "er",
    "er_l2",
)
"""Names accepted by :func:`make_method`; join several with ``+`` (``fire+adamo``)."""

ALIASES = {"er_l2": ("er", "l2")}
"""Names that stand for a combination: ER + L2 is the effective-rank ascent plus coupled L2."""

PERIODS = {
    "fire": "fire_every",
    "reset": "reset_every",
    "shrink_perturb": "shrink_perturb_every",
    "redo": "redo_every",
    "er": "er_every",
}
"""The periodic parts of a method and the :class:`MethodConfig` field of each one's period."""

AT_STEPS = {"fire": "fire_at", "reset": "reset_at", "shrink_perturb": "shrink_perturb_at"}
"""The one-off parts of a method and the :class:`MethodConfig` field listing their steps."""


@dataclass
class MethodConfig:
    """Settings of every plasticity method; each method reads only its own fields.

    Periods (``*_every``) count the ``step`` the training loop passes to ``after_update``
    (environment steps in this project's agents); 0 turns the periodic intervention off.
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
    clear_optimizer: Literal["network", "touched", "none"] | None = None
    """optimizer state FIRE, reset and shrink & perturb reset: all of the network's ('network':
    biases too, as the FIRE paper's SAC rebuilds its optimizers), only the rewritten tensors'
    ('touched'), or none ('none': Adam moments kept, as the FIRE paper's DQN). Unset:
    'network', except for our DQN on images, which follows its paper ('none')"""
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
    """er, er_l2: steps between effective-rank ascent steps (needs a probe batch)"""
    er_lr: float = 1e-2
    """er, er_l2: SGD step size of the effective-rank ascent (the authors use 4e-6 in PPO)"""

    def validate(self) -> None:
        """Refuse a setting that cannot be right: one ``ValueError`` naming the field, its
        value and the valid range (checked before any training starts)."""
        hints = typing.get_type_hints(MethodConfig)
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
                check, valid = _CHECKS[f.name]
                ok = check(value)
            if not ok:
                raise ValueError(f"invalid method setting {f.name}={value!r}: it must be {valid}")


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


_NONNEGATIVE = (lambda v: _is_number(v) and v >= 0, "a finite number >= 0")
_POSITIVE = (lambda v: _is_number(v) and v > 0, "a finite number > 0")
_FRACTION = (lambda v: _is_number(v) and 0 <= v <= 1, "a number in [0, 1]")
_PERIOD = (lambda v: _is_int(v) and v >= 0, "0 (off) or a positive integer number of steps")
_COUNT = (lambda v: _is_int(v) and v >= 1, "an integer >= 1")
_STEPS = (
    lambda v: isinstance(v, (list, tuple)) and all(_is_int(s) and s > 0 for s in v),
    "a list of positive integer steps",
)
_FLAG = (lambda v: isinstance(v, bool), "True or False")
_CHECKS = {
    "weight_decay": _NONNEGATIVE,
    "iso_coef": _NONNEGATIVE,
    "iso_scale": _POSITIVE,
    "iso_every": _COUNT,
    "fire_every": _PERIOD,
    "fire_at": _STEPS,
    "fire_on_task_switch": _FLAG,
    "fire_ns_steps": _COUNT,
    "reset_every": _PERIOD,
    "reset_at": _STEPS,
    "reset_on_task_switch": _FLAG,
    "shrink_perturb_every": _PERIOD,
    "shrink_perturb_at": _STEPS,
    "shrink_perturb_on_task_switch": _FLAG,
    "shrink": _FRACTION,
    "perturb": _FRACTION,
    "redo_every": _PERIOD,
    "redo_tau": _NONNEGATIVE,
    "l2_init_coef": _NONNEGATIVE,
    "l2_coef": _NONNEGATIVE,
    "parseval_coef": _NONNEGATIVE,
    "parseval_scale": _POSITIVE,
    "spectral_coef": _NONNEGATIVE,
    "spectral_exponent": _COUNT,
    "er_every": _PERIOD,
    "er_lr": _NONNEGATIVE,
}
"""How :meth:`MethodConfig.validate` checks each field that is not a ``Literal``."""


def parse_method(name: str) -> tuple[str, ...]:
    """Split ``"fire+adamo"`` into known, distinct parts (aliases such as ``er_l2`` expanded);
    ``ValueError`` otherwise."""
    if not isinstance(name, str):
        raise ValueError(
            f"a method name must be a string such as 'fire' or 'fire+adamo', got {name!r}"
        )
    named = tuple(part.strip() for part in name.split("+"))
    unknown = [p for p in named if p not in METHODS]
    if unknown:
        raise ValueError(
            f"unknown plasticity method {unknown[0]!r}; "
            f"choose from {', '.join(METHODS)} (join several with '+', e.g. fire+adamo)"
        )
    if "none" in named and len(named) > 1:
        raise ValueError(f"method {name!r} combines 'none' with others; drop 'none'")
    parts = tuple(p for part in named for p in ALIASES.get(part, (part,)) if p != "none")
    if len(set(parts)) != len(parts):
        raise ValueError(f"method {name!r} names a part twice; name each once")
    return parts


@dataclass
class Method:
    """A parsed method name and its settings; :meth:`attach` it to each network."""

    name: str
    parts: tuple[str, ...]
    config: MethodConfig = field(default_factory=MethodConfig)

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

    ``interventions`` counts the reinitializations done so far (FIRE, reset, shrink & perturb,
    ReDo passes that recycled a unit; see ``InterventionReport.reinitialized``)."""

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
        self.parts = method.parts
        self.config = method.config
        self.network = network
        self.targets = list(targets)
        self.heads = list(heads) if heads is not None else None
        self.fresh = fresh
        self.activation = activation
        self.exclude = tuple(exclude)
        self.interventions = 0
        self.interventions_by_method: Counter[str] = Counter()
        # the step the training loop reached: where schedules missing from an old checkpoint
        # resume from
        self.step = start_step
        self.schedules = self._schedules(start_step)
        self._spectral_vectors: dict[str, torch.Tensor] = {}
        self.initial_state = None
        cfg = self.config
        if (
            "l2_init" in self.parts
            or ("shrink_perturb" in self.parts and cfg.perturb_target == "initial")
            or ("fire" in self.parts and self.fire_linear == "initial")
        ):
            self.initial_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        if optimizer is None:
            if lr is None:
                raise ValueError("attach needs lr= to build the optimizer (or an optimizer=)")
            optimizer = self._build_optimizer(lr, optimizer_kwargs)
        elif "adamo" in self.parts and not isinstance(optimizer, AdamO):
            raise ValueError(
                f"method {method.name!r} needs an AdamO optimizer, got {type(optimizer).__name__}"
            )
        self.optimizer = optimizer

    def __repr__(self) -> str:
        return f"MethodHandle({self.method.name!r}, optimizer={type(self.optimizer).__name__})"

    def _schedules(self, start: int) -> dict[str, Every | At]:
        """Each periodic part's :class:`Every` and listed steps' :class:`At`, from ``start``."""
        schedules: dict[str, Every | At] = {
            part: Every(getattr(self.config, setting), start=start)
            for part, setting in PERIODS.items()
            if part in self.parts
        }
        for part, setting in AT_STEPS.items():
            if part in self.parts:
                schedules[setting] = At(getattr(self.config, setting), start=start)
        return schedules

    def _build_optimizer(self, lr: float, optimizer_kwargs: dict) -> torch.optim.Optimizer:
        cfg = self.config
        weight_decay = cfg.weight_decay
        if "adamo" in self.parts:
            groups = adamo_param_groups(
                self.network,
                cfg.iso_coef,
                self.heads,
                iso_scale=cfg.iso_scale,
                iso_every=cfg.iso_every,
            )
            return AdamO(groups, lr=lr, weight_decay=weight_decay, **optimizer_kwargs)
        # torch defaults to the multi-tensor kernels on CUDA only; its one-kernel (fused)
        # update is faster still, on the CPU about 3x (benchmarks/sps.py)
        if "foreach" not in optimizer_kwargs and "fused" not in optimizer_kwargs:
            fused = fused_adam_available(list(self.network.parameters()))
            optimizer_kwargs = {("fused" if fused else "foreach"): True, **optimizer_kwargs}
        if weight_decay > 0.0:
            return torch.optim.AdamW(
                self.network.parameters(), lr=lr, weight_decay=weight_decay, **optimizer_kwargs
            )
        return torch.optim.Adam(self.network.parameters(), lr=lr, **optimizer_kwargs)

    # --- 1. penalty -----------------------------------------------------------------------

    def penalty(self) -> torch.Tensor:
        """The method's loss term for this network (a 0-dim tensor; zero when it has none)."""
        cfg = self.config
        total = next(self.network.parameters()).new_zeros(())
        if "isometry" in self.parts:
            total = total + cfg.iso_coef * isometry_penalty(self.network, cfg.iso_scale, self.heads)
        if "l2_init" in self.parts:
            total = total + cfg.l2_init_coef * l2_init_penalty(self.network, self.initial_state)
        if "l2" in self.parts:
            total = total + cfg.l2_coef * l2_penalty(self.network)
        if "parseval" in self.parts:
            total = total + cfg.parseval_coef * parseval_penalty(
                self.network, cfg.parseval_scale, self.heads
            )
        if "spectral" in self.parts:
            total = total + cfg.spectral_coef * spectral_penalty(
                self.network,
                self._spectral_vectors,
                exponent=cfg.spectral_exponent,
                heads=self.heads,
            )
        return total

    # --- 2. scheduled interventions -------------------------------------------------------

    def _due(self, part: str, step: int) -> bool:
        """Whether ``part``'s period or one of its listed steps came due (both consumed)."""
        due = [s.due(step) for key in (part, AT_STEPS.get(part)) if (s := self.schedules.get(key))]
        return any(due)

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

    def after_update(
        self, step: int, inputs: Inputs | Callable[[], Inputs] | None = None
    ) -> list[InterventionReport]:
        """Run the interventions due at ``step``; returns their reports (empty when none ran).

        ``inputs`` is a probe batch (the network's arguments), needed by ``redo``, ``er`` and
        ``er_l2`` when they are due; or a function returning one, called only then.
        """
        cfg = self.config
        self.step = max(self.step, step)
        reports = []
        if self._due("fire", step):
            reports.append(self._fire())
        if self._due("reset", step):
            reports.append(self._reset())
        if self._due("shrink_perturb", step):
            reports.append(self._shrink_perturb())
        if self._due("redo", step):
            reports.append(
                redo_(
                    self.network,
                    self._probe(inputs, "redo"),
                    cfg.redo_tau,
                    self.optimizer,
                    self.heads,
                    self.activation,
                    self.fresh,
                    exclude=self.exclude,
                )
            )
        if self._due("er", step):
            erank = effective_rank_ascent_(
                self.network, self._probe(inputs, "er"), cfg.er_lr, self.heads, self.activation
            )
            reports.append(InterventionReport("er_ascent", {"features": {"mean_erank": erank}}))
        self._count(reports)
        return reports

    def on_task_switch(self, inputs: Inputs | None = None) -> list[InterventionReport]:
        """Run the interventions configured to act at a task switch; returns their reports."""
        cfg = self.config
        reports = []
        if "fire" in self.parts and cfg.fire_on_task_switch:
            reports.append(self._fire())
        if "reset" in self.parts and cfg.reset_on_task_switch:
            reports.append(self._reset())
        if "shrink_perturb" in self.parts and cfg.shrink_perturb_on_task_switch:
            reports.append(self._shrink_perturb())
        self._count(reports)
        return reports

    def _count(self, reports: list[InterventionReport]) -> None:
        for report in reports:
            self.interventions += int(report.reinitialized)
            self.interventions_by_method[report.method] += int(report.reinitialized)

    def _probe(self, inputs: Inputs | Callable[[], Inputs] | None, part: str) -> Inputs:
        if callable(inputs):
            inputs = inputs()
        if inputs is None:
            raise ValueError(
                f"method {part!r} needs a probe batch: call after_update(step, inputs=...) "
                "with a batch of the network's inputs"
            )
        return inputs

    @property
    def fire_linear(self) -> str:
        return self.config.fire_linear or "fire"

    def _whole_network(
        self, intervene: Callable[[Optimizers], InterventionReport]
    ) -> InterventionReport:
        """Run an intervention that rewrites the network, then reset the optimizer state that
        ``clear_optimizer`` names and re-sync the targets."""
        mode = self.config.clear_optimizer or "network"
        report = intervene(self.optimizer if mode == "touched" else None)
        if mode == "network":  # every parameter of the network, biases too (FIRE's SAC)
            clear_optimizer_state_(self.optimizer, network_parameters(self.network, self.exclude))
        sync_targets(self.network, self.targets)
        return report

    def _fire(self) -> InterventionReport:
        return self._whole_network(self._fire_layers)

    def _fire_layers(self, optimizer: Optimizers) -> InterventionReport:
        cfg = self.config
        layers = select_layers(self.network, exclude=self.exclude)
        if self.fire_linear == "fire":
            fired, linear = [name for name, _ in layers], []
        else:  # the paper's DQN: convolutions FIRE'd, linear layers reset
            linear = [name for name, layer in layers if isinstance(layer, nn.Linear)]
            fired = [name for name, layer in layers if not isinstance(layer, nn.Linear)]
        report = InterventionReport("fire")
        if fired or not linear:  # a network with no layer at all gets fire_'s error
            fire_report = fire_(
                self.network,
                optimizer,
                cfg.fire_ns_steps,
                cfg.fire_scale,
                cfg.fire_mode,
                include=fired,
            )
            report.layers.update(fire_report.layers)
        if linear:
            reset = full_reset_(
                self.network,
                optimizer,
                self.fresh,
                include=linear,
                initial_state=self.initial_state if self.fire_linear == "initial" else None,
            )
            report.layers.update(reset.layers)
        return report

    def _reset(self) -> InterventionReport:
        return self._whole_network(
            lambda optimizer: full_reset_(self.network, optimizer, self.fresh, exclude=self.exclude)
        )

    def _shrink_perturb(self) -> InterventionReport:
        cfg = self.config
        return self._whole_network(
            lambda optimizer: shrink_perturb_(
                self.network,
                cfg.shrink,
                cfg.perturb,
                cfg.perturb_target,
                optimizer,
                self.initial_state,
                self.fresh,
                exclude=self.exclude,
            )
        )

    # --- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to resume: optimizer, schedule positions, method buffers."""
        return {
            "method": self.method.name,
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "schedules": {part: s.state_dict() for part, s in self.schedules.items()},
            "interventions": self.interventions,
            "interventions_by_method": dict(self.interventions_by_method),
            "spectral_vectors": dict(self._spectral_vectors),
            "initial_state": self.initial_state,
        }

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
            saved = {
                part: {"period": getattr(self.config, PERIODS[part]), "last": index}
                for part, index in state["last_period"].items()
                if part in PERIODS
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
        self._spectral_vectors = dict(state["spectral_vectors"])
        if state["initial_state"] is not None:
            self.initial_state = state["initial_state"]
