"""DASH: direction-aware shrinking (Shin et al., NeurIPS 2024, arXiv 2410.23495).

When new data arrives, each weight vector is shrunk by how well it agrees with the direction
the loss wants to move it: with ``G`` a running average of the negative gradient,
``s = clamp(cos(G, W), λ, 1)`` and ``W ← s·W``: per output row of a Linear weight, per
(output, input) kernel of a convolution, and one factor for a whole bias vector. Weights
that the data no longer supports (small or negative cosine) shrink toward ``λ·W``, restoring
the plasticity that large, memorizing weights take away. Normalization layers are left alone
and so is the optimizer state, as in the authors' code (``baekrok/DASH-Direction-Aware-
SHrinking``, ``utils/train_utils.py``: α = λ = 0.3).

The authors average the gradient over all data seen so far, in one pass with the weights
fixed, just before shrinking. An RL agent has no such pass: here ``G ← (1 − α)·G + α·(−∇)``
folds in the gradient of each training update since the last shrink (the weights move along
the way; a replay batch mixes old and new data, as the authors' pass does), and restarts from
zero after each shrink.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from plasticity._layers import select_layers
from plasticity.interventions import InterventionReport
from plasticity.isometry import squared_frobenius_error


def _shrunk_parameters(module: nn.Module, exclude: Iterable[str] | None):
    """(layer name, parameter name, parameter) of every Linear and Conv weight and bias."""
    for name, layer in select_layers(module, exclude=exclude):
        for kind, param in (("weight", layer.weight), ("bias", layer.bias)):
            if param is not None:
                yield name, kind, param


def descent_buffers(
    module: nn.Module, exclude: Iterable[str] | None = None
) -> dict[str, torch.Tensor]:
    """Zero running averages ``G`` for every weight and bias DASH shrinks, by parameter name,
    to be updated in place by :func:`accumulate_descent_`."""
    return {
        f"{name}.{kind}": torch.zeros_like(param)
        for name, kind, param in _shrunk_parameters(module, exclude)
    }


@torch.no_grad()
def accumulate_descent_(
    average: dict[str, torch.Tensor],
    module: nn.Module,
    alpha: float = 0.3,
    exclude: Iterable[str] | None = None,
) -> None:
    """Fold the gradients now in ``module``'s ``.grad`` into ``average`` (by parameter name;
    missing entries are created, those of :func:`descent_buffers` updated in place):
    ``G ← (1 − α)·G + α·(−∇)``; parameters without a gradient are skipped."""
    for name, kind, param in _shrunk_parameters(module, exclude):
        if param.grad is None:
            continue
        key = f"{name}.{kind}"
        if key not in average:
            average[key] = torch.zeros_like(param)
        average[key].mul_(1 - alpha).sub_(param.grad, alpha=alpha)


def shrink_factors(weight: torch.Tensor, descent: torch.Tensor, lam: float) -> torch.Tensor:
    """DASH's factors ``clamp(cos(G, W), λ, 1)``: one per output row of a matrix, per (output,
    input) kernel of a conv weight, one for a vector (a bias); shaped to multiply ``weight``."""
    if weight.ndim == 1:
        cosine = F.cosine_similarity(descent.flatten(), weight.flatten(), dim=0)
        return cosine.clamp(lam, 1.0)
    slices = weight.shape[:2] if weight.ndim > 2 else weight.shape[:1]
    cosine = F.cosine_similarity(descent.reshape(*slices, -1), weight.reshape(*slices, -1), dim=-1)
    return cosine.clamp(lam, 1.0).reshape(*slices, *([1] * (weight.ndim - len(slices))))


@torch.no_grad()
def dash_(
    module: nn.Module,
    average: dict[str, torch.Tensor],
    lam: float = 0.3,
    exclude: Iterable[str] | None = None,
) -> InterventionReport:
    """Shrink every Linear and Conv weight and bias of ``module`` by :func:`shrink_factors`
    against the averaged descent direction ``average`` (:func:`accumulate_descent_`), then
    zero ``average`` in place. A parameter with no gradient averaged yet has cosine 0: shrunk
    by λ."""
    report = InterventionReport("dash")
    for name, kind, param in _shrunk_parameters(module, exclude):
        descent = average.get(f"{name}.{kind}", torch.zeros_like(param))
        factors = shrink_factors(param, descent, lam)
        before = param.clone()
        param.mul_(factors)
        metrics = report.layers.setdefault(name, {})
        metrics[f"{kind}_mean_factor"] = float(factors.mean())
        if kind == "weight":
            metrics["sfe"] = float(squared_frobenius_error(before, param))
    for buffer in average.values():
        buffer.zero_()
    return report
