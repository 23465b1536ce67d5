"""Convolutional torsos for image observations ``(C, H, W)``, shared by DQN and PPO.

- Frames of at least 36 pixels a side (Atari's 84×84): the Nature CNN of Mnih et al. 2015
  (Nature 518): 32 filters 8×8 stride 4, 64 4×4 stride 2, 64 3×3 stride 1, then 512 units.
- Smaller grids (MinAtar's 10×10): the network of the MinAtar paper (Young & Tian 2019,
  arXiv 1903.03176): 16 filters 3×3 stride 1, then 128 units. The Nature CNN's first kernel
  alone would not fit.

Each torso ends with its hidden fully connected layer and nonlinearity; the agent adds its
heads. Two architecture choices apply to every agent's networks:

- ``--layer-norm``: each hidden nonlinearity is preceded by a normalization (Ba et al. 2016,
  arXiv 1607.06450): LayerNorm after a Linear layer, over a conv layer's whole output
  (channels and positions: ``GroupNorm`` with one group) after a conv;
- ``--activation``: the hidden nonlinearity, ``relu``, or one that doubles the width, the next
  layer's fan-in doubling with it (as in Plasticine): ``crelu``, ``[relu(x), relu(−x)]``
  (Abbas et al. 2023, arXiv 2303.07507), or ``dff``, deep Fourier features ``[sin x, cos x]``
  (Lewandowski et al. 2024, arXiv 2410.20634). PPO's vector networks keep tanh unless set.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

NATURE_MIN_SIZE = 36
"""the smallest side the Nature CNN's kernels and strides leave a feature map for"""


def normalization(layer: nn.Module, layer_norm: bool) -> list[nn.Module]:
    """What goes between ``layer`` and its nonlinearity: a normalization of its output with
    ``--layer-norm``, else nothing (the network, and its checkpoints, as without the flag)."""
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
    """``layer``, its normalization with ``--layer-norm``, and its nonlinearity (its output is
    ``widening(activation)`` times as wide as ``layer``'s)."""
    return [layer, *normalization(layer, layer_norm), NONLINEARITIES[activation]()]


def image_torso(
    obs_shape: tuple[int, int, int],
    init: Callable[[nn.Module], nn.Module] = lambda layer: layer,
    layer_norm: bool = False,
    activation: str = "relu",
) -> tuple[nn.Sequential, int]:
    """The torso for frames of ``obs_shape`` and its feature count; ``init`` initializes each
    layer (PPO: orthogonal; DQN: PyTorch's default); ``layer_norm``, ``activation``: see the
    module doc."""
    channels, height, width = obs_shape
    wide = widening(activation)
    if min(height, width) >= NATURE_MIN_SIZE:
        layers = [
            init(nn.Conv2d(channels, 32, 8, stride=4)),
            init(nn.Conv2d(32 * wide, 64, 4, stride=2)),
            init(nn.Conv2d(64 * wide, 64, 3, stride=1)),
        ]
        hidden = 512
    else:
        layers = [init(nn.Conv2d(channels, 16, 3, stride=1))]
        hidden = 128
    blocks = [m for layer in layers for m in hidden_block(layer, activation, layer_norm)]
    convs = nn.Sequential(*blocks, nn.Flatten())
    with torch.no_grad():
        flat = convs(torch.zeros(1, *obs_shape)).shape[1]  # 3136 for 84x84, 1024 for 10x10
    fc = hidden_block(init(nn.Linear(flat, hidden)), activation, layer_norm)
    return nn.Sequential(*convs, *fc), hidden * wide
