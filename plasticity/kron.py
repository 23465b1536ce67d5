"""PSGD-Kron: momentum SGD preconditioned by a learned Kronecker-factored matrix.

Preconditioned SGD (Li, arXiv 1512.04202) fits a preconditioner ``P`` online, from pairs of a
perturbation ``v`` and the gradient change ``h`` it causes, to the criterion
``E[hᵀPh] + E[vᵀP⁻¹v]``, whose minimum has ``P·E[hhᵀ]·P = E[vvᵀ]``. Its *gradient whitening*
form, the one PSGD-Kron uses, takes ``v ~ N(0, I)`` and ``h`` the (momentum) gradient itself,
so ``P → E[ggᵀ]^(-1/2)``: on a quadratic whose gradients are taken at random points this is the
inverse Hessian, Newton's preconditioner. The Kronecker form (Li, "Preconditioner on matrix
Lie group for SGD", arXiv 1809.10232) keeps one factor ``Qᵢ`` per dimension of a parameter,
``P = ⊗ᵢ QᵢᵀQᵢ`` (for a matrix ``G``: ``PG = Q₁ᵀQ₁·G·Q₂ᵀQ₂``), each fitted on the group of
upper-triangular matrices by a step normalized by its curvature::

    A = G ×ᵢ Qᵢ (every dim),   B = V ×ᵢ Qᵢ⁻ᵀ (every dim)
    Qᵢ ← Qᵢ − μ / ‖AᵢAᵢᵀ + BᵢBᵢᵀ‖₂ · triu(AᵢAᵢᵀ − BᵢBᵢᵀ)·Qᵢ

with ``Aᵢ`` the mode-``i`` unfolding of ``A`` and ``‖·‖₂`` a cheap lower bound of the spectral
norm. A dimension larger than ``max_size_triangular``, of size 1, or of a tensor with fewer
than ``min_ndim_triangular`` dims (biases, gains) gets a diagonal factor instead, whose step is
normalized by its largest entry. Tensors of more than two dims (conv kernels) are fitted as the
matrix ``(out, fan_in)``.

The optimizer itself follows the defaults and the step of the reference PyTorch
implementation, ``kron_torch`` (E. Rosen, PyPI ``kron-torch``; not a dependency: CC BY 4.0,
needs triton): bias-corrected momentum ``b1``; the preconditioner fitted to that momentum with
``precond_lr`` 0.1 from ``Qᵢ = precond_init_scale^(1/ndim)·I``, on a schedule that fits it at
every step for the first 500 steps and then every ``1/p`` steps with
``p = max(0.03, exp(−0.001·(n − 500)))``; the preconditioned update's RMS clipped to 1.1;
decoupled weight decay on tensors of two or more dims; ``lr`` 3e-4 (the reference advises a
rate about 3× below Adam's and a weight decay 3–10× above). Where this module differs:

- the schedule counts each tensor's own steps, not the optimizer's: a tensor whose state an
  intervention cleared (``plasticity.clear_optimizer_state_`` zeroes its step) starts over from
  the initial factors with frequent fitting, so a cleared state is exactly a fresh one;
- the factors are rebalanced (the same product, equal largest entries, against drifting
  apart in float32) at every 100th fit of a tensor, where the reference draws about 1 in 100;
- conv kernels are always fitted as ``(out, fan_in)`` matrices, as Muon flattens them; the
  reference picks between that and ``(out·…, last)`` by a signed size difference;
- the random probes ``V`` come from the optimizer's own generator, seeded from ``seed``
  (default: torch's initial seed, so an agent's ``--seed``) and saved in ``state_dict``, so
  a resumed run continues bit for bit.
"""

from __future__ import annotations

import math

import torch

DAMPING = math.sqrt(torch.finfo(torch.float32).eps)
"""relative size of the probe added to the fitted gradient (Li's damping): it keeps ``P``
bounded along directions where the gradient is zero (a dead unit's row)"""
BALANCE_EVERY = 100
"""fits of a tensor's preconditioner between rebalancings of its factors"""
MAX_UPDATE_RMS = 1.1
"""the preconditioned update is scaled down to this RMS when larger (the reference's clip)"""


def precond_update_probability(step: int) -> float:
    """The reference's schedule: 1 for the first 500 steps, then ``exp(−0.001·(n − 500))``,
    never below 0.03 (a fit every 34 steps from about step 4000 on). ``step``: the steps the
    tensor took before this one."""
    return min(1.0, max(0.03, math.exp(-0.001 * (step - 500))))


class Kron(torch.optim.Optimizer):
    """PSGD-Kron (see the module doc): ``P·m̂`` with a Kronecker-factored ``P`` fitted online.

    ``precond_update_probability``: a constant fraction of steps at which the preconditioner
    is fitted, or None for :func:`precond_update_probability`'s schedule.
    ``momentum_into_precond_update``: fit it to the debiased momentum (True, the reference's
    default) or to the raw gradient. ``lr`` may be a tensor (annealed in place).

    The step runs eagerly under ``torch.compile``: its per-tensor counters are Python numbers
    that would otherwise recompile a compiled update at every step.
    """

    def __init__(
        self,
        params,
        lr: float = 3e-4,
        b1: float = 0.9,
        weight_decay: float = 0.0,
        precond_update_probability: float | None = None,
        max_size_triangular: int = 8192,
        min_ndim_triangular: int = 2,
        momentum_into_precond_update: bool = True,
        precond_lr: float = 0.1,
        precond_init_scale: float = 1.0,
        seed: int | None = None,
    ):
        checks = {
            "lr": (lr, float(lr) >= 0, ">= 0"),
            "b1": (b1, 0 <= b1 < 1, "in [0, 1)"),
            "weight_decay": (weight_decay, weight_decay >= 0, ">= 0"),
            "precond_update_probability": (
                precond_update_probability,
                precond_update_probability is None or 0 < precond_update_probability <= 1,
                "None (the schedule) or in (0, 1]",
            ),
            "max_size_triangular": (max_size_triangular, max_size_triangular >= 1, ">= 1"),
            "min_ndim_triangular": (min_ndim_triangular, min_ndim_triangular >= 1, ">= 1"),
            "precond_lr": (precond_lr, 0 < precond_lr <= 1, "in (0, 1]"),
            "precond_init_scale": (precond_init_scale, precond_init_scale > 0, "> 0"),
        }
        for name, (value, ok, valid) in checks.items():
            if not ok:
                raise ValueError(f"invalid Kron setting {name}={value!r}: it must be {valid}")
        defaults = {
            "lr": lr,
            "b1": b1,
            "weight_decay": weight_decay,
            "precond_update_probability": precond_update_probability,
            "max_size_triangular": max_size_triangular,
            "min_ndim_triangular": min_ndim_triangular,
            "momentum_into_precond_update": momentum_into_precond_update,
            "precond_lr": precond_lr,
            "precond_init_scale": precond_init_scale,
        }
        super().__init__(params, defaults)
        self.seed = torch.initial_seed() if seed is None else seed
        self._generators: dict[str, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        """The generator of the probes on ``device`` (one per device, seeded alike)."""
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    @torch.compiler.disable
    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._step_tensor(param, group)
        return loss

    def _step_tensor(self, param: torch.Tensor, group: dict) -> None:
        if param.grad.is_sparse:
            raise ValueError("Kron takes dense gradients only; use another optimizer")
        state = self.state[param]
        shape = fitted_shape(param)
        if not state:
            state["step"] = 0
            state["since_fit"] = 0
            state["fits"] = 0
            # the parameter's shape: interventions zero the entries of the units they reset
            state["momentum"] = torch.zeros_like(param, memory_format=torch.contiguous_format)
            state["preconditioner"] = [
                torch.empty((size, size) if triangular else (size,), **_like(param))
                for size, triangular in zip(shape, triangular_dims(param, group), strict=True)
            ]
        if state["step"] == 0:  # new, or cleared by an intervention: the initial factors
            scale = group["precond_init_scale"] ** (1 / len(shape))
            for factor in state["preconditioner"]:
                if factor.dim() == 2:
                    torch.eye(factor.shape[0], out=factor).mul_(scale)
                else:
                    factor.fill_(scale)
        b1 = group["b1"]
        momentum = state["momentum"]
        momentum.mul_(b1).add_(param.grad, alpha=1 - b1)
        state["step"] += 1
        debiased = (momentum / (1 - b1 ** state["step"])).reshape(shape)
        if self._fit_due(state, group):
            fitted = debiased if group["momentum_into_precond_update"] else param.grad
            self._fit(state, fitted.reshape(shape), group["precond_lr"])
        update = precondition(state["preconditioner"], debiased)
        update.mul_(torch.clamp(MAX_UPDATE_RMS / update.square().mean().sqrt().add(1e-12), max=1))
        update = update.reshape_as(param)
        if group["weight_decay"] != 0 and param.dim() >= 2:
            update.add_(param, alpha=group["weight_decay"])
        param.sub_(update * group["lr"])

    @staticmethod
    def _fit_due(state: dict, group: dict) -> bool:
        """Whether the preconditioner is fitted at this step: every ``1/p``-th step."""
        probability = group["precond_update_probability"]
        if probability is None:
            probability = precond_update_probability(state["step"] - 1)
        state["since_fit"] += 1
        if state["since_fit"] < 1 / probability:
            return False
        state["since_fit"] = 0
        return True

    def _fit(self, state: dict, target: torch.Tensor, precond_lr: float) -> None:
        """One normalized step of every factor toward ``P·E[hhᵀ]·P = I`` (module doc)."""
        factors = state["preconditioner"]
        probe = torch.randn(
            target.shape,
            generator=self._generator(target.device),
            dtype=target.dtype,
            device=target.device,
        )
        damped = target + DAMPING * target.abs().mean() * probe
        a, b = damped, probe
        for dim, factor in enumerate(factors):
            a = along(a, dim, factor)
            b = inverse_transpose_along(b, dim, factor)
        tiny = torch.finfo(target.dtype).tiny
        for dim, factor in enumerate(factors):
            full = factor.dim() == 2
            gram_a, gram_b = mode_gram(a, dim, full), mode_gram(b, dim, full)
            difference, total = gram_a - gram_b, gram_a + gram_b
            if factor.dim() == 1:
                factor.sub_(precond_lr * difference * factor / total.max().clamp(min=tiny))
            else:
                curvature = spectral_norm_lower_bound(total).clamp(min=tiny)
                factor.sub_(precond_lr * (torch.triu(difference) @ factor) / curvature)
        state["fits"] += 1
        if len(factors) > 1 and state["fits"] % BALANCE_EVERY == 0:
            balance_(factors)

    def state_dict(self) -> dict:
        """torch's optimizer state, plus the probe generators' states (``probe_generators``)."""
        state = super().state_dict()
        state["probe_generators"] = {key: g.get_state() for key, g in self._generators.items()}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        generators = state_dict.pop("probe_generators", {})
        super().load_state_dict(state_dict)
        for key, generator_state in generators.items():
            self._generator(torch.device(key)).set_state(generator_state)


def _like(param: torch.Tensor) -> dict:
    return {"dtype": param.dtype, "device": param.device}


def fitted_shape(param: torch.Tensor) -> tuple[int, ...]:
    """The shape the preconditioner sees: a conv kernel as ``(out, fan_in)``, a scalar as
    ``(1,)``, any other tensor as it is."""
    if param.dim() > 2:
        return (param.shape[0], param[0].numel())
    return tuple(param.shape) or (1,)


def triangular_dims(param: torch.Tensor, group: dict) -> list[bool]:
    """Which dims of :func:`fitted_shape` get a triangular factor (the others: diagonal)."""
    wide = param.dim() >= group["min_ndim_triangular"]
    return [wide and 1 < size <= group["max_size_triangular"] for size in fitted_shape(param)]


def along(x: torch.Tensor, dim: int, factor: torch.Tensor) -> torch.Tensor:
    """``x`` with ``factor`` applied along ``dim``: ``Q·x`` on mode ``dim`` (a diagonal
    factor scales it)."""
    if factor.dim() == 1:
        return x * factor.view(-1, *([1] * (x.dim() - dim - 1)))
    return torch.movedim(torch.tensordot(factor, x, dims=([1], [dim])), 0, dim)


def inverse_transpose_along(x: torch.Tensor, dim: int, factor: torch.Tensor) -> torch.Tensor:
    """``x`` with ``Q⁻ᵀ`` applied along ``dim``, by a triangular solve (``Qᵀ`` is lower)."""
    if factor.dim() == 1:
        return x / factor.view(-1, *([1] * (x.dim() - dim - 1)))
    moved = torch.movedim(x, dim, 0)
    unfolded = moved.reshape(moved.shape[0], -1)
    solved = torch.linalg.solve_triangular(factor.mT, unfolded, upper=False)
    return torch.movedim(solved.reshape(moved.shape), 0, dim)


def precondition(factors: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``P·x`` with ``P = ⊗ᵢ QᵢᵀQᵢ``: each factor, then its transpose, along its dim."""
    for dim, factor in enumerate(factors):
        x = along(along(x, dim, factor), dim, factor.mT if factor.dim() == 2 else factor)
    return x


def mode_gram(x: torch.Tensor, dim: int, full: bool) -> torch.Tensor:
    """``XᵢXᵢᵀ`` of the mode-``dim`` unfolding ``Xᵢ`` of ``x``, or only its diagonal."""
    unfolded = torch.movedim(x, dim, 0).reshape(x.shape[dim], -1)
    return unfolded @ unfolded.mT if full else unfolded.square().sum(1)


def spectral_norm_lower_bound(matrix: torch.Tensor) -> torch.Tensor:
    """A lower bound of the spectral norm of a symmetric PSD ``matrix``, within a small factor
    of it: ``‖M·u‖`` with ``u`` the unit direction of ``M`` times its largest column (one power
    iteration from that column); 0 for a zero matrix. Computed on ``M`` scaled to a largest
    entry of 1, so that no product overflows."""
    tiny = torch.finfo(matrix.dtype).tiny
    largest = matrix.abs().max().clamp(min=tiny)
    scaled = matrix / largest
    column = scaled[:, scaled.square().sum(0).argmax()]
    direction = scaled @ column
    return (scaled @ (direction / direction.norm().clamp(min=tiny))).norm() * largest


@torch.no_grad()
def balance_(factors: list[torch.Tensor]) -> None:
    """Rescale the factors to equal largest entries, their product (``P``) unchanged."""
    norms = torch.stack([factor.abs().max() for factor in factors])
    target = norms.log().mean().exp()
    for factor, norm in zip(factors, norms, strict=True):
        factor.mul_(target / norm)
