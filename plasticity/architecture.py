"""Hidden-layer choices for plasticity, shared by this project's agents and its
Stable-Baselines3 policies (:mod:`plasticity.sb3`):

- a normalization before each hidden nonlinearity (Ba et al. 2016, arXiv 1607.06450):
  LayerNorm after a Linear layer, over a conv layer's whole output (channels and positions:
  ``GroupNorm`` with one group) after a conv; what ``nap`` needs;
- a nonlinearity by name (:data:`NONLINEARITIES`): ``relu``, ``tanh``, or one that doubles
  the width, the next layer's fan-in doubling with it (as in Plasticine): ``crelu``,
  ``[relu(x), relu(−x)]`` (Abbas et al. 2023, arXiv 2303.07507), or ``dff``, deep Fourier
  features ``[sin x, cos x]`` (Lewandowski et al. 2024, arXiv 2410.20634).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def normalization(layer: nn.Module, layer_norm: bool) -> list[nn.Module]:
    """What goes between ``layer`` and its nonlinearity: a normalization of its output with
    ``layer_norm`` (``--layer-norm``), else nothing (the network, and its checkpoints, as
    without it)."""
    if not layer_norm:
        return []
    if isinstance(layer, nn.Conv2d):
        return [nn.GroupNorm(1, layer.out_channels)]
    return [nn.LayerNorm(layer.out_features)]


class CReLU(nn.Module):
    """Concatenated ReLU ``[relu(x), relu(−x)]`` along the features (channels): twice as wide."""

    widening = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.relu(x), F.relu(-x)], 1)


class FourierFeatures(nn.Module):
    """Deep Fourier features ``[sin x, cos x]`` along the features (channels): twice as wide."""

    widening = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.sin(x), torch.cos(x)], 1)


NONLINEARITIES: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "crelu": CReLU,
    "dff": FourierFeatures,
}


def widening(activation: str) -> int:
    """How many outputs the nonlinearity ``activation`` makes of one unit."""
    return getattr(NONLINEARITIES[activation], "widening", 1)


def hidden_block(layer: nn.Module, activation: str, layer_norm: bool) -> list[nn.Module]:
    """``layer``, its normalization with ``layer_norm``, and its nonlinearity (its output is
    ``widening(activation)`` times as wide as ``layer``'s)."""
    return [layer, *normalization(layer, layer_norm), NONLINEARITIES[activation]()]
