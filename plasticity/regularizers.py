"""Regularizers that preserve plasticity, as differentiable loss terms or small update steps.

Each penalty returns a 0-dim tensor to multiply by a coefficient and add to the loss. The
isometry penalty itself lives in :mod:`plasticity.isometry`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from plasticity._layers import Inputs, call_module, hidden_layers


def _zero(module: nn.Module) -> torch.Tensor:
    return next(module.parameters()).new_zeros(())


def l2_init_penalty(module: nn.Module, initial_state: dict[str, torch.Tensor]) -> torch.Tensor:
    """``Σ ‖θ − θ₀‖²`` over all parameters: L2 toward the initial weights.

    Regenerative regularization, "L2 Init" (Kumar et al. 2023, arXiv 2308.11958);
    ``initial_state`` is the network's ``state_dict`` saved right after construction.
    """
    terms = []
    for name, p in module.named_parameters():
        if name not in initial_state:
            raise ValueError(
                f"initial_state has no entry {name!r}; save it with network.state_dict()"
            )
        terms.append(((p - initial_state[name].to(p.device, p.dtype)) ** 2).sum())
    return torch.stack(terms).sum() if terms else _zero(module)


def l2_penalty(module: nn.Module) -> torch.Tensor:
    """``Σ ‖θ‖²`` over all parameters, biases included: coupled L2 toward 0.

    The L2 half of ER + L2 ("Spectral Collapse Drives Loss of Plasticity", arXiv 2509.22335),
    whose authors put it in the loss through ``torch.optim.Adam(weight_decay=wd)``: its
    gradient ``2λθ`` goes through Adam's moments like the task gradient, so ``λ = wd/2``
    reproduces that. Unlike decoupled weight decay (AdamW's ``η·wd·θ`` per step, about 1e-6
    at wd 1e-3 and lr 1e-3), it is scaled up by Adam wherever the task gradient is small.
    """
    terms = [p.pow(2).sum() for p in module.parameters()]
    return torch.stack(terms).sum() if terms else _zero(module)


def parseval_penalty(
    module: nn.Module, scale: float = 1.0, heads: Iterable[str] | None = None
) -> torch.Tensor:
    """``Σ ‖WWᵀ − sI‖_F²`` over hidden layers (rows of conv kernels flattened).

    Parseval regularization (Chung et al. 2024, arXiv 2412.07224): keeps each layer's rows
    orthogonal with squared norm ``s`` (``s = gain²``, e.g. 2 for a √2-gain orthogonal init).
    Unlike the isometry penalty it always uses the row Gram ``WWᵀ``. Heads are skipped.
    """
    terms = []
    for _, layer in hidden_layers(module, heads):
        w = layer.weight.reshape(layer.weight.shape[0], -1)
        eye = torch.eye(w.shape[0], dtype=w.dtype, device=w.device)
        terms.append(((w @ w.T - scale * eye) ** 2).sum())
    return torch.stack(terms).sum() if terms else _zero(module)


def random_unit_vectors(
    module: nn.Module, heads: Iterable[str] | None = None
) -> dict[str, torch.Tensor]:
    """A random unit vector per hidden layer, as long as the layer's (flattened) input: the
    starting estimates :func:`spectral_penalty` refines, allocated once by whoever keeps them."""
    return {name: _random_unit(layer.weight) for name, layer in hidden_layers(module, heads)}


def _random_unit(weight: torch.Tensor) -> torch.Tensor:
    columns = weight[0].numel()
    return F.normalize(torch.randn(columns, dtype=weight.dtype, device=weight.device), dim=0)


def spectral_penalty(
    module: nn.Module,
    vectors: dict[str, torch.Tensor],
    power_iterations: int = 1,
    exponent: int = 2,
    heads: Iterable[str] | None = None,
) -> torch.Tensor:
    """``Σ (σ_max(W)^k − 1)²`` over hidden layers, ``σ_max`` by power iteration.

    Spectral regularization (Lewandowski et al., ICLR 2025, arXiv 2406.06811) keeps each
    layer's largest singular value near 1. ``vectors`` holds one right singular vector estimate
    per layer (pass the same dict every call: start with ``{}`` or
    :func:`random_unit_vectors`), so one power iteration per step suffices, as in spectral
    normalization (arXiv 1802.05957). An estimate already in ``vectors`` is refined in place
    (``copy_``): the same tensor across calls, so a compiled or CUDA-graphed update that calls
    this reads and writes memory it was given, never an output of its own previous replay. A
    missing estimate, or one whose length no longer fits its layer, is drawn afresh; one on
    another device or dtype than its layer is moved there. The estimate is detached; the
    gradient flows through ``σ = ‖W v‖``.
    """
    terms = []
    for name, layer in hidden_layers(module, heads):
        w = layer.weight.reshape(layer.weight.shape[0], -1)
        v = vectors.get(name)
        if v is None or v.shape != w.shape[1:]:
            v = vectors[name] = _random_unit(w)
        elif v.device != w.device or v.dtype != w.dtype:  # the network moved since
            v = vectors[name] = v.to(w.device, w.dtype)
        with torch.no_grad():
            wd = w.detach()
            estimate = v
            for _ in range(power_iterations):
                estimate = F.normalize(wd.T @ (wd @ estimate), dim=0)
            if estimate is not v:
                v.copy_(estimate)
        # σ through the new estimate, not through v: autograd keeps it for the backward pass,
        # and v is overwritten at the next call
        sigma = torch.linalg.vector_norm(w @ estimate)
        terms.append((sigma**exponent - 1.0) ** 2)
    return torch.stack(terms).sum() if terms else _zero(module)


def differentiable_effective_rank(features: torch.Tensor) -> torch.Tensor:
    """Effective rank ``exp(−Σ p log p)``, ``p = σ/Σσ``, with gradients (float32/64 as given)."""
    if features.ndim > 2:
        features = features.flatten(2).mean(2)
    sv = torch.linalg.svdvals(features)
    p = sv / (sv.sum() + 1e-12)
    return torch.exp(-(p * torch.log(p + 1e-12)).sum())


def effective_rank_ascent_(
    module: nn.Module,
    inputs: Inputs,
    lr: float,
    heads: Iterable[str] | None = None,
    activation: Callable[[torch.Tensor], torch.Tensor] = F.relu,
    features: Literal["dense", "all"] = "dense",
) -> float:
    """One SGD ascent step on ``mean_l erank(Φ_l)`` over the hidden layers' features, in place.

    The effective-rank half of ER + L2 ("Spectral Collapse Drives Loss of Plasticity",
    arXiv 2509.22335): keeping feature rank high keeps the K-FAC input factor, and so the
    curvature, from collapsing; the L2 half is :func:`l2_penalty`. ``Φ_l`` is the activation of
    a hidden layer's output on ``inputs``. ``features``: which layers count, the hidden Linear
    layers (``"dense"``: the authors' ConvNet ranks its fully connected features only) or the
    convolutions too, their maps averaged over space (``"all"``). The step uses plain SGD and
    leaves the training optimizer's state alone. Returns the mean effective rank before the
    step.
    """
    layers = [
        layer
        for _, layer in hidden_layers(module, heads)
        if features == "all" or isinstance(layer, nn.Linear)
    ]
    if not layers:
        kind = "hidden layer" if features == "all" else "hidden Linear layer"
        raise ValueError(
            f"{type(module).__name__} has no {kind} whose features the effective-rank ascent "
            "could rank"
            + ("; set er_features='all' to rank its convolutions" if features == "dense" else "")
        )
    ranked: list[torch.Tensor] = []
    hooks = [
        layer.register_forward_hook(lambda _m, _a, out: ranked.append(activation(out)))
        for layer in layers
    ]
    try:
        with torch.enable_grad():
            call_module(module, inputs)
            objective = torch.stack([differentiable_effective_rank(f) for f in ranked]).mean()
            params = [p for p in module.parameters() if p.requires_grad]
            grads = torch.autograd.grad(objective, params, allow_unused=True)
    finally:
        for h in hooks:
            h.remove()
    with torch.no_grad():
        for p, g in zip(params, grads, strict=True):
            if g is not None:
                p.add_(g, alpha=lr)
    return float(objective.detach())
