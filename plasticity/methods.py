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
the handle copies the network into its target networks; the touched optimizer state is cleared
by the intervention itself. ReDo leaves targets alone: zeroed outgoing weights keep the
network's function, so a target jump would only disturb the bootstrap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from plasticity._layers import Inputs
from plasticity.interventions import (
    InterventionReport,
    fire_,
    full_reset_,
    redo_,
    shrink_perturb_,
    sync_targets,
)
from plasticity.isometry import isometry_penalty
from plasticity.optim import AdamO, adamo_param_groups, fused_adam_available
from plasticity.regularizers import (
    effective_rank_ascent_,
    l2_init_penalty,
    parseval_penalty,
    spectral_penalty,
)
from plasticity.schedule import Every

METHODS: tuple[str, ...] = (
    "none",
    "adamo",
    "isometry",
    "fire",
    "reset",
    "shrink_perturb",
    "redo",
    "l2_init",
    "parseval",
    "spectral",
    "er_l2",
)
"""Names accepted by :func:`make_method`; join several with ``+`` (``fire+adamo``)."""

PERIODS = {
    "fire": "fire_every",
    "reset": "reset_every",
    "shrink_perturb": "shrink_perturb_every",
    "redo": "redo_every",
    "er_l2": "er_every",
}
"""The periodic parts of a method and the :class:`MethodConfig` field of each one's period."""


@dataclass
class MethodConfig:
    """Settings of every plasticity method; each method reads only its own fields.

    Periods (``*_every``) count the ``step`` the training loop passes to ``after_update``
    (environment steps in this project's agents); 0 turns the periodic intervention off.
    """

    weight_decay: float = 0.0
    """decoupled (AdamW) weight decay of the network's optimizer, for every method"""
    iso_coef: float = 1e-3
    """isometry coefficient λ: AdamO's decoupled step (adamo) and the coupled penalty (isometry)"""
    iso_scale: float = 1.0
    """target Gram scale s in R(W) = ‖G − sI‖² (2 is a variant for ReLU)"""
    iso_every: int = 32
    """AdamO takes its isometry step every k-th update with k·lr·λ (1 = every update)"""
    fire_every: int = 100_000
    """FIRE period in steps (0 = only at task switches)"""
    fire_on_task_switch: bool = True
    """apply FIRE when the environment switches task"""
    fire_ns_steps: int = 10
    """Newton–Schulz steps of FIRE (10 in the paper's SAC and DQN)"""
    fire_mode: Literal["newton_schulz", "polar"] = "newton_schulz"
    """FIRE orthogonalization: the paper's Newton–Schulz, or the exact SVD polar factor"""
    fire_scale: Literal["muon", "none"] = "muon"
    """FIRE scaling: sqrt(d_out/d_in) ('muon', the paper's SAC default) or 1"""
    reset_every: int = 200_000
    """full-reset period in steps (Nikishin et al. 2022 use 2e5 on DMC; 0 = only at switches)"""
    reset_on_task_switch: bool = True
    """fully reset the network when the environment switches task"""
    shrink_perturb_every: int = 100_000
    """shrink & perturb period in steps (0 = only at task switches)"""
    shrink_perturb_on_task_switch: bool = True
    """shrink & perturb when the environment switches task"""
    shrink: float = 0.8
    """shrink & perturb: factor on the current weights"""
    perturb: float = 0.2
    """shrink & perturb: factor on the target weights"""
    perturb_target: Literal["fresh", "initial"] = "fresh"
    """shrink & perturb toward a fresh random init or the network's own initial weights"""
    redo_every: int = 1000
    """ReDo check period in steps (needs a probe batch)"""
    redo_tau: float = 0.025
    """ReDo dormancy threshold τ on the normalized activation score (0.1 at high replay ratio)"""
    l2_init_coef: float = 1e-3
    """L2-init coefficient λ in λ‖θ − θ₀‖² (1e-2…1e-4 in Kumar et al. 2023)"""
    parseval_coef: float = 1e-3
    """Parseval regularization coefficient λ"""
    parseval_scale: float = 1.0
    """Parseval target row norm² s (gain²: 2 for a √2-gain orthogonal init)"""
    spectral_coef: float = 1e-3
    """spectral regularization coefficient λ in λ·Σ(σ_max^k − 1)²"""
    spectral_exponent: int = 2
    """spectral regularization exponent k"""
    er_every: int = 100
    """ER+L2: steps between effective-rank ascent steps (needs a probe batch); the supervised
    protocol ascends about every 100 samples, i.e. every update: at 100 updates it only delays
    collapse (benchmarks/continual_supervised.py)"""
    er_lr: float = 1e-2
    """ER+L2: SGD step size of the effective-rank ascent (the authors use 4e-6 in PPO)"""
    er_weight_decay: float = 1e-3
    """ER+L2: weight decay used when weight_decay is 0"""


def parse_method(name: str) -> tuple[str, ...]:
    """Split ``"fire+adamo"`` into known, distinct method names; ``ValueError`` otherwise."""
    parts = tuple(part.strip() for part in name.split("+"))
    unknown = [p for p in parts if p not in METHODS]
    if unknown or not parts:
        raise ValueError(
            f"unknown plasticity method {unknown[0] if unknown else name!r}; "
            f"choose from {', '.join(METHODS)} (join several with '+', e.g. fire+adamo)"
        )
    if len(set(parts)) != len(parts):
        raise ValueError(f"method {name!r} names a part twice; name each once")
    if "none" in parts and len(parts) > 1:
        raise ValueError(f"method {name!r} combines 'none' with others; drop 'none'")
    return tuple(p for p in parts if p != "none")


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

    ``settings`` override fields of ``config`` (or of the defaults); unknown ones raise
    ``ValueError`` listing the valid fields.
    """
    parts = parse_method(name)
    config = config or MethodConfig()
    known = {f.name for f in dataclasses.fields(MethodConfig)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise ValueError(
            f"unknown method setting(s) {unknown}; valid settings are {', '.join(sorted(known))}"
        )
    return Method(name, parts, dataclasses.replace(config, **settings))


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
        self.schedules = {
            part: Every(getattr(self.config, setting), start=start_step)
            for part, setting in PERIODS.items()
            if part in self.parts
        }
        self._spectral_vectors: dict[str, torch.Tensor] = {}
        self.initial_state = None
        if "l2_init" in self.parts or (
            "shrink_perturb" in self.parts and self.config.perturb_target == "initial"
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

    def _build_optimizer(self, lr: float, optimizer_kwargs: dict) -> torch.optim.Optimizer:
        cfg = self.config
        weight_decay = cfg.weight_decay
        if "er_l2" in self.parts and weight_decay == 0.0:
            weight_decay = cfg.er_weight_decay
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
        schedule = self.schedules.get(part)
        return schedule is not None and schedule.due(step)

    def start(self, step: int) -> None:
        """Let the schedules begin at ``step``: periods that ended before it are not due."""
        for schedule in self.schedules.values():
            schedule.skip_to(step)

    def after_update(
        self, step: int, inputs: Inputs | Callable[[], Inputs] | None = None
    ) -> list[InterventionReport]:
        """Run the interventions due at ``step``; returns their reports (empty when none ran).

        ``inputs`` is a probe batch (the network's arguments), needed by ``redo`` and
        ``er_l2`` when they are due; or a function returning one, called only then.
        """
        cfg = self.config
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
        if self._due("er_l2", step):
            erank = effective_rank_ascent_(
                self.network, self._probe(inputs, "er_l2"), cfg.er_lr, self.heads, self.activation
            )
            reports.append(InterventionReport("er_ascent", {"features": {"mean_erank": erank}}))
        self.interventions += sum(r.reinitialized for r in reports)
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
        self.interventions += sum(r.reinitialized for r in reports)
        return reports

    def _probe(self, inputs: Inputs | Callable[[], Inputs] | None, part: str) -> Inputs:
        if callable(inputs):
            inputs = inputs()
        if inputs is None:
            raise ValueError(
                f"method {part!r} needs a probe batch: call after_update(step, inputs=...) "
                "with a batch of the network's inputs"
            )
        return inputs

    def _fire(self) -> InterventionReport:
        cfg = self.config
        report = fire_(
            self.network,
            self.optimizer,
            cfg.fire_ns_steps,
            cfg.fire_scale,
            cfg.fire_mode,
            exclude=self.exclude,
        )
        sync_targets(self.network, self.targets)
        return report

    def _reset(self) -> InterventionReport:
        report = full_reset_(self.network, self.optimizer, self.fresh, exclude=self.exclude)
        sync_targets(self.network, self.targets)
        return report

    def _shrink_perturb(self) -> InterventionReport:
        cfg = self.config
        report = shrink_perturb_(
            self.network,
            cfg.shrink,
            cfg.perturb,
            cfg.perturb_target,
            self.optimizer,
            self.initial_state,
            self.fresh,
            exclude=self.exclude,
        )
        sync_targets(self.network, self.targets)
        return report

    # --- checkpoints ----------------------------------------------------------------------

    def state_dict(self) -> dict:
        """Everything needed to resume: optimizer, schedule position, method buffers."""
        return {
            "method": self.method.name,
            "optimizer": self.optimizer.state_dict(),
            "schedules": {part: s.state_dict() for part, s in self.schedules.items()},
            "interventions": self.interventions,
            "spectral_vectors": dict(self._spectral_vectors),
            "initial_state": self.initial_state,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore from :meth:`state_dict`; the method name must match."""
        if state.get("method") != self.method.name:
            raise ValueError(
                f"checkpoint was saved with method {state.get('method')!r}, "
                f"this run uses {self.method.name!r}; resume with the same --method"
            )
        self.optimizer.load_state_dict(state["optimizer"])
        if "schedules" in state:
            for part, schedule_state in state["schedules"].items():
                if part in self.schedules:
                    self.schedules[part].load_state_dict(schedule_state)
        else:  # checkpoints from before the schedule objects: the last period index per part
            for part, index in state["last_period"].items():
                if part in self.schedules:
                    self.schedules[part].last = index
        self.interventions = int(state["interventions"])
        self._spectral_vectors = dict(state["spectral_vectors"])
        if state["initial_state"] is not None:
            self.initial_state = state["initial_state"]
