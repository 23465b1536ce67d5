"""AdamO: Adam with a decoupled isometry step, and the helpers that build its parameter groups.

Reference: "Preserving Plasticity in Continual Learning via Dynamical Isometry"
(Rosseau, Müller, Nowé; arXiv 2606.09762). AdamO is to the isometry penalty what AdamW
(arXiv 1711.05101) is to weight decay: the penalty's gradient never enters Adam's moments and
is not divided by ``√v̂``.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterable, Iterator, Mapping

import torch
from torch import nn

from plasticity._layers import hidden_layers
from plasticity.isometry import gram_eigenvalue_bound, isometry_grad_and_gram


class AdamO(torch.optim.Optimizer):
    r"""Adam(W) plus a decoupled isometry step on every parameter with at least two dims.

    With the task gradient ``g`` only::

        m ← β₁m + (1−β₁)g,   v ← β₂v + (1−β₂)g²,   m̂, v̂ bias-corrected
        θ ← θ(1 − η·wd) − η·m̂/(√v̂ + ε) − η·λ·∇R(θ_prev)

    where ``R(W) = ‖G − sI‖_F²`` (``G`` the Gram on the smaller side, conv kernels flattened to
    ``(C_out, −1)``), ``∇R`` is its closed form (two matmuls, no autograd) evaluated at the
    weights before this step, ``λ = iso_coef`` and ``s = iso_scale``. The isometry step follows
    the learning rate (and so any scheduler). With ``iso_coef=0`` this is exactly
    ``torch.optim.AdamW`` (``torch.optim.Adam`` when also ``weight_decay=0``).

    Amortization: with ``iso_every=k`` each parameter takes its isometry step after every
    ``k``-th step it takes, with the sum of those ``k`` steps' learning rates (``k·η·λ`` at a
    constant rate), the same total push at a ``k``-th of the cost (the per-step push ``η·λ``
    is tiny, about 1e-7 at the paper's settings, so its timing within ``k`` steps does not
    matter); a parameter without a gradient at a step does not count that step. The step
    costs ``O(d_out·d_in·min(d_out, d_in))`` per matrix, independent of the
    batch, which for wide layers exceeds the whole forward/backward pass (a Nature CNN's
    3136→512 layer at batch 32: about twice the update). The default ``k = 32`` keeps the
    added cost under 10% for SAC- and Atari-sized networks (``benchmarks/plasticity_ops.py``);
    ``iso_every=1`` is the paper's every-step form. Where ``k`` times the step would
    overshoot (large singular values, large ``η·λ``), that matrix's summed rate is lowered
    toward one step's (see :meth:`_isometry_updates`), so the amortized form is never less stable
    than the every-step one.

    ``iso_coef``, ``iso_scale`` and ``iso_every`` may differ per parameter group; build groups
    that exclude output heads and biases with :func:`adamo_param_groups`. Parameters with fewer
    than two dims never get the isometry step, whatever their group says. A group may also
    carry ``iso_mask``, one bool per parameter: only those marked True take the isometry step.
    It keeps heads out within one group, for code that loads a saved state into a one-group
    optimizer (Stable-Baselines3, see :func:`plasticity.sb3.use_adamo_groups`).

    ``fused`` picks torch's one-kernel Adam(W) update (``torch.optim.AdamW(fused=True)``) for
    the Adam part: about 3× faster than the multi-tensor loop on the CPU, and free of host
    syncs on CUDA. ``None`` (default) uses it when every parameter is a floating-point tensor
    on the CPU or a CUDA device, all of one device and dtype; otherwise the multi-tensor
    (``foreach``) path runs, with the same arithmetic.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        iso_coef: float = 1e-3,
        iso_scale: float = 1.0,
        iso_every: int = 32,
        fused: bool | None = None,
    ):
        settings = {
            "lr": lr,
            "betas": betas,
            "eps": eps,
            "weight_decay": weight_decay,
            "iso_coef": iso_coef,
            "iso_scale": iso_scale,
            "iso_every": iso_every,
        }
        _check_settings(settings)
        # fused is kept in the groups, where torch's load_state_dict looks to move steps
        super().__init__(params, {**settings, "fused": fused})
        self._resolve_fused(self.param_groups)
        self._constructed = True

    def __setstate__(self, state: dict) -> None:  # copies and unpickled optimizers
        super().__setstate__(state)
        self._constructed = True

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        _check_settings(self.param_groups[-1])  # a group's own settings, as its defaults
        if getattr(self, "_constructed", False):  # added later: fused or not by itself
            self._resolve_fused(self.param_groups[-1:])

    @staticmethod
    def _resolve_fused(groups: list[dict]) -> None:
        """Turn ``fused=None`` into True where the one-kernel update can run on ``groups``."""
        can_fuse = fused_adam_available([p for g in groups for p in g["params"]])
        for group in groups:
            if group["fused"] and not can_fuse:
                raise ValueError(
                    "fused=True needs floating-point parameters on the CPU or CUDA, all of one "
                    "device and dtype; pass fused=None to fall back to the multi-tensor update"
                )
            if group["fused"] is None:
                group["fused"] = can_fuse

    # Inside a compiled update (torch.compile, CUDA graphs) this step runs eagerly beside the
    # graph: its isometry schedule is a host counter and the multi-tensor path groups tensors
    # by their step on the host, neither of which a graph can hold. An update captured whole
    # (torch.cuda.graph) holds the fused Adam part only: DeferredIsometry takes the isometry
    # step on the host around each replay.
    @torch.compiler.disable
    @torch.no_grad()
    def step(self, closure=None):
        """One update. ``closure`` (optional) re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            self._step_group(group)
        return loss

    @staticmethod
    def _isometry_params(group: dict) -> list[torch.Tensor]:
        """The parameters of ``group`` that take this step's isometry step: those its
        ``iso_mask`` marks (all, without one) that have a gradient."""
        iso_mask = group.get("iso_mask") or [True] * len(group["params"])
        if len(iso_mask) != len(group["params"]):
            raise ValueError(
                f"iso_mask has {len(iso_mask)} entries for a group of {len(group['params'])} "
                "parameters: give one bool per parameter"
            )
        return [
            p
            for p, takes_iso in zip(group["params"], iso_mask, strict=True)
            if takes_iso and p.grad is not None
        ]

    def _step_group(self, group: dict) -> None:
        params, grads, exp_avgs, exp_avg_sqs, steps = [], [], [], [], []
        iso_params = self._isometry_params(group)
        for p in group["params"]:
            if p.grad is None:
                continue
            if p.grad.is_sparse:
                raise RuntimeError("AdamO does not support sparse gradients; use dense ones")
            state = self.state[p]
            if len(state) == 0:
                # A missing state means new, or cleared by an intervention: start Adam afresh.
                # The fused kernel reads the step on the device; the foreach path on the host.
                state["step"] = torch.zeros(
                    (), dtype=torch.float32, device=p.device if group["fused"] else "cpu"
                )
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            params.append(p)
            grads.append(p.grad)
            exp_avgs.append(state["exp_avg"])
            exp_avg_sqs.append(state["exp_avg_sq"])
            steps.append(state["step"])
        if not params:
            return

        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        torch._foreach_add_(steps, 1.0)

        # The isometry gradient is taken at θ_{t-1}, before any part of this step moves θ.
        deferred = getattr(self, "isometry_deferred", False)
        iso_updates = [] if deferred else self._isometry_updates(group, iso_params, self.state)

        if group["fused"]:
            torch._fused_adamw_(
                params,
                grads,
                exp_avgs,
                exp_avg_sqs,
                [],
                steps,
                amsgrad=False,
                lr=lr,
                beta1=beta1,
                beta2=beta2,
                weight_decay=group["weight_decay"],
                eps=eps,
                maximize=False,
            )
        else:
            self._foreach_adamw(group, params, grads, exp_avgs, exp_avg_sqs, steps)

        for p, update in iso_updates:
            p.add_(update, alpha=-group["iso_coef"])

    @staticmethod
    def _foreach_adamw(group, params, grads, exp_avgs, exp_avg_sqs, steps) -> None:
        """The Adam(W) update with multi-tensor kernels, for devices without the fused one."""
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        if group["weight_decay"] != 0.0:
            torch._foreach_mul_(params, 1.0 - lr * group["weight_decay"])
        torch._foreach_lerp_(exp_avgs, grads, 1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1.0 - beta2)

        # Tensors cleared by an intervention restart at step 1 while others are far along, so
        # bias corrections are per tensor (as in torch.optim.Adam); tensors at the same step
        # share one foreach update.
        by_step: dict[float, list[int]] = {}
        for i, step_t in enumerate(steps):
            by_step.setdefault(step_t.item(), []).append(i)
        for step, idx in by_step.items():
            bias_correction1 = 1.0 - beta1**step
            bias_correction2_sqrt = math.sqrt(1.0 - beta2**step)
            denoms = torch._foreach_sqrt([exp_avg_sqs[i] for i in idx])
            torch._foreach_div_(denoms, bias_correction2_sqrt)
            torch._foreach_add_(denoms, eps)
            torch._foreach_addcdiv_(
                [params[i] for i in idx], [exp_avgs[i] for i in idx], denoms, -lr / bias_correction1
            )

    @staticmethod
    def _isometry_updates(
        group: dict, params: list[torch.Tensor], state: dict
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The isometry steps due now, each ``(parameter, L·∇R)``; the caller steps by ``−λ``
        times it.

        Each parameter counts its own window: the steps it took (had a gradient) since its last
        isometry step, and ``L``, the sum of the learning rates of those steps, both on the host
        (a rate that is a device tensor, as PPO's annealed one, is summed on the device). After
        ``k = iso_every`` such steps the step ``L·λ·∇R`` gives the push of ``k`` every-step
        updates at the rates they had (``k·η·λ·∇R`` at a constant rate ``η``).

        Along each singular value σ of ``W`` that is ``σ ← σ − 4Lλ·σ(σ² − s)``. That map moves
        σ monotonically toward ``√s`` while ``4Lλ(3σ² − s) ≤ 1``; a large σ with a large ``k``
        overshoots instead, and the iteration diverges where the every-step form converges
        (σ_max = 20, λ = 0.1, η = 1e-3: ``k = 32`` diverges, ``k = 1`` converges). So ``L`` is
        lowered, per matrix, to ``1 / (4λ(3B − s))`` where that is smaller, with ``B ≥ σ_max²``
        the ``O(d²)`` bound of :func:`plasticity.isometry.gram_eigenvalue_bound` on the Gram the
        step computes anyway; never below the last step's rate, so no matrix moves less than
        with ``iso_every=1``. At the defaults (ηλ = 1e-6, k = 32) it binds only above
        ``B ≈ 2600`` (σ_max ≈ 51). No host sync: the bound stays a device tensor.
        """
        if group["iso_coef"] == 0.0:
            return []
        lr, every, scale = group["lr"], group["iso_every"], group["iso_scale"]
        updates = []
        for p in params:
            if p.ndim < 2:
                continue
            window = state[p]
            window["iso_steps"] = window.get("iso_steps", 0) + 1
            window["iso_lr_sum"] = window.get("iso_lr_sum", 0.0) + lr
            if window["iso_steps"] < every:
                continue
            rate_sum = window["iso_lr_sum"]
            window["iso_steps"], window["iso_lr_sum"] = 0, 0.0
            grad, gram = isometry_grad_and_gram(p, scale)
            if every > 1:
                curvature = 4.0 * group["iso_coef"] * (3.0 * gram_eigenvalue_bound(gram) - scale)
                safe = torch.where(curvature > 0, 1.0 / curvature, rate_sum)
                # exactly the window's sum where the bound does not bind
                grad.mul_(safe.clamp(max=rate_sum).clamp(min=lr))
            else:
                grad.mul_(rate_sum)
            updates.append((p, grad))
        return updates


class DeferredIsometry:
    """The isometry steps of ``optimizers`` (:class:`AdamO`) taken on the host, around an
    update that runs without its Python code (a replayed CUDA graph).

    Inside :meth:`outside`, ``AdamO.step`` takes its Adam part only; :meth:`around` an update
    computes each due isometry step before it (at the weights before the update, as the step
    does) and applies it after, counting each parameter's window on the host as the step does.
    For an update whose parameters get gradients every call, the arithmetic is the step's:
    ``tests/test_whole_graph.py`` checks it bit for bit.
    """

    def __init__(self, optimizers: Iterable[AdamO]):
        self.optimizers: list[AdamO] = list(optimizers)

    def add(self, optimizer: AdamO) -> None:
        if optimizer not in self.optimizers:
            self.optimizers.append(optimizer)

    @contextlib.contextmanager
    def outside(self) -> Iterator[None]:
        """``AdamO.step`` leaves the isometry step out while inside."""
        for optimizer in self.optimizers:
            optimizer.isometry_deferred = True
        try:
            yield
        finally:
            for optimizer in self.optimizers:
                optimizer.isometry_deferred = False

    @contextlib.contextmanager
    def around(self) -> Iterator[None]:
        """The due isometry steps computed on entry and applied on exit."""
        with torch.no_grad():
            pending = [
                (p, update, group["iso_coef"])
                for optimizer in self.optimizers
                for group in optimizer.param_groups
                for p, update in optimizer._isometry_updates(
                    group, optimizer._isometry_params(group), optimizer.state
                )
            ]
        yield
        with torch.no_grad():
            for p, update, coef in pending:
                p.add_(update, alpha=-coef)


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError, RuntimeError):  # not a number, or a tensor of several
        return False


_SETTINGS = {
    "lr": ("learning rate", lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
    "betas": (
        "betas",
        lambda v: len(v) == 2 and all(_finite(b) and 0 <= b < 1 for b in v),
        "two numbers in [0, 1)",
    ),
    "eps": ("eps", lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
    "weight_decay": ("weight_decay", lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
    "iso_coef": ("iso_coef", lambda v: _finite(v) and v >= 0, "a finite number >= 0"),
    "iso_scale": ("iso_scale", lambda v: _finite(v) and v > 0, "a finite number > 0"),
    "iso_every": (
        "iso_every",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
        "an integer >= 1",
    ),
}


def _check_settings(settings: dict) -> None:
    """One ``ValueError`` for the first of AdamO's settings that is out of range (NaN too)."""
    for key, (label, check, valid) in _SETTINGS.items():
        if key in settings:
            value = settings[key]
            try:
                ok = bool(check(value))
            except TypeError:  # betas that are not a pair of numbers
                ok = False
            if not ok:
                raise ValueError(f"invalid {label} {value!r}: it must be {valid}")


def fused_adam_available(params: list[torch.Tensor]) -> bool:
    """Whether torch's fused Adam(W) kernel can update all of ``params`` in one call."""
    kinds = {(p.device, p.dtype) for p in params}
    if len(kinds) != 1:
        return False
    device, dtype = kinds.pop()
    return device.type in ("cpu", "cuda") and dtype.is_floating_point


def _is_zero(t: torch.Tensor) -> bool:
    return not bool(t.detach().any())


def isometry_parameters(
    module: nn.Module, heads: Iterable[str] | None = None
) -> list[nn.Parameter]:
    """The weights that get the isometry step: hidden Linear/Conv weights, minus zero ones.

    Heads (the last layer unless named) and biases are left out, and so are zero-initialized
    matrices: ``W = 0`` is a stationary point of ``R``, so the step would do nothing there.
    """
    return [layer.weight for _, layer in hidden_layers(module, heads) if not _is_zero(layer.weight)]


def adamo_param_groups(
    module: nn.Module, iso_coef: float = 1e-3, heads: Iterable[str] | None = None, **group_settings
) -> list[dict]:
    """Two parameter groups for :class:`AdamO`: hidden weights with ``iso_coef``, the rest with 0.

    ``group_settings`` (``iso_scale``, ``iso_every``, ``lr``, …) go to both groups. Example::

        opt = AdamO(adamo_param_groups(critic, iso_coef=1e-3), lr=3e-4)
    """
    iso = isometry_parameters(module, heads)
    iso_ids = {id(p) for p in iso}
    rest = [p for p in module.parameters() if id(p) not in iso_ids]
    groups = [
        {"params": iso, "iso_coef": iso_coef, **group_settings},
        {"params": rest, "iso_coef": 0.0, **group_settings},
    ]
    return [g for g in groups if g["params"]]


class JoinedState(Mapping):
    """The state of several optimizers, read as one mapping from parameter to state. A lookup
    never adds an entry (an optimizer's ``state`` is a defaultdict that would)."""

    def __init__(self, states: list[dict]):
        self.states = states

    def __getitem__(self, param: torch.Tensor) -> dict:
        for state in self.states:
            if param in state:
                return state[param]
        raise KeyError(param)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return (param for state in self.states for param in state)

    def __len__(self) -> int:
        return sum(len(state) for state in self.states)


class CombinedOptimizer(torch.optim.Optimizer):
    """Optimizers over disjoint parameters, used as one: Muon for hidden matrices and Adam for
    the rest, say.

    ``param_groups`` lists the groups of every optimizer (the same dicts, so a learning-rate
    schedule reaches them) and ``state`` looks a parameter up in each optimizer's state (the
    same dicts, so resetting state in place, as the interventions do, reaches them).
    ``state_dict`` keeps each optimizer's state dict under its name.
    """

    def __init__(self, optimizers: dict[str, torch.optim.Optimizer]):
        params = [p for opt in optimizers.values() for g in opt.param_groups for p in g["params"]]
        if len({id(p) for p in params}) != len(params):
            raise ValueError("the combined optimizers share a parameter; give each its own")
        super().__init__(params, {})
        self.optimizers = optimizers
        self.param_groups = [g for opt in optimizers.values() for g in opt.param_groups]
        self.state = JoinedState([opt.state for opt in optimizers.values()])

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise ValueError("CombinedOptimizer.step takes no closure; compute the loss first")
        for opt in self.optimizers.values():
            opt.step()

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state_dict: dict) -> None:
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state_dict[name])


@functools.cache
def trac_optimizer_class(base: type[torch.optim.Optimizer]) -> type[torch.optim.Optimizer]:
    """TRAC (Muppidi, Zhang, Wang; NeurIPS 2024, arXiv 2405.16642) around ``base``, from the
    authors' ``trac-optimizer`` package (MIT).

    TRAC scales the base optimizer's accumulated displacement from the starting point θ_ref by
    a learned, parameter-free factor: θ = θ_ref + S·Δ, with S a sum of erfi terms over six
    decay rates (the package's defaults) that stays near 0 (s_prev = 1e-8) until the gradients
    keep agreeing with the displacement. Two changes to the package's behaviour: its per-step
    log line goes to ``os.devnull``, and its state, which keys θ_ref by parameter tensors, is
    saved by parameter index so that a checkpoint loads (with ``weights_only=True`` too).
    """
    try:
        from trac_optimizer import start_trac
    except ImportError as err:
        raise ValueError(
            "method 'trac' needs the trac-optimizer package: pip install trac-optimizer "
            "(or pip install 'plasticity-rl[methods]')"
        ) from err

    class Trac(start_trac(os.devnull, base)):
        def _params(self) -> list[torch.Tensor]:
            return [p for group in self.param_groups for p in group["params"]]

        def state_dict(self) -> dict:
            state = super().state_dict()
            trac = state["state"].get("_trac")
            if trac is not None:
                index = {id(p): i for i, p in enumerate(self._params())}
                state["state"]["_trac"] = {
                    (index[id(k)] if isinstance(k, torch.Tensor) else k): v for k, v in trac.items()
                }
            return state

        def load_state_dict(self, state_dict: dict) -> None:
            super().load_state_dict(state_dict)
            trac = self.state.get("_trac")
            if trac is not None:
                params = self._params()
                self.state["_trac"] = {
                    (params[k] if isinstance(k, int) else k): v for k, v in trac.items()
                }

    Trac.__name__ = Trac.__qualname__ = f"Trac{base.__name__}"
    return Trac
