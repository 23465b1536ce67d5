"""Normalize-and-project (Lyle et al., NeurIPS 2024, arXiv 2407.01800).

NaP keeps a network's effective learning rate from decaying as its parameter norms grow:
normalization layers before each nonlinearity make every layer's output invariant to the
scale of its weights, and after each update every weight is projected back to the norm it had
at initialization, ``W ← W·‖W₀‖/‖W‖``. The affine scale and offset of a normalization layer
are projected jointly, ``(γ, β) ← (γ, β)·‖(γ₀, β₀)‖/‖(γ, β)‖``. Biases are not projected, nor
is the optimizer state touched. The normalization layers belong to the network (our agents:
``--layer-norm``); this module does the projection.

Which layers are projected follows Plasticine's port (every Linear and Conv weight, output
layers included); its port projects normalization gains alone, to √2 (methods_more.md §5),
which is not the paper's joint projection: here the gain and offset keep their initial joint
norm (√d for a fresh LayerNorm of width d).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

import torch
from torch import nn

from plasticity._layers import select_layers

NORMALIZATIONS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm)


def normalization_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The normalization layers of ``module`` (LayerNorm, GroupNorm, BatchNorm) by name."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, NORMALIZATIONS)]


def projected_groups(
    module: nn.Module, exclude: Iterable[str] | None = None
) -> dict[str, list[torch.Tensor]]:
    """What NaP projects, by layer name: each Linear and Conv weight alone, and the affine
    gain and offset of each normalization layer together (layers matching ``exclude`` left)."""
    patterns = list(exclude or ())
    groups = {name: [layer.weight] for name, layer in select_layers(module, exclude=patterns)}
    for name, norm in normalization_layers(module):
        affine = [p for p in (norm.weight, norm.bias) if p is not None]
        if affine and not any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
            groups[name] = affine
    return groups


def joint_norm(params: list[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum(p.detach().pow(2).sum() for p in params))


@torch.no_grad()
def project_(groups: dict[str, list[torch.Tensor]], norms: dict[str, float]) -> None:
    """Rescale each group of :func:`projected_groups` to its norm in ``norms`` (by name)."""
    for name, params in groups.items():
        scale = norms[name] / joint_norm(params).clamp_min(1e-12)
        for p in params:
            p.mul_(scale)
