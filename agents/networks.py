"""Convolutional torsos for image observations ``(C, H, W)``, shared by DQN and PPO.

- Frames of at least 36 pixels a side (Atari's 84×84): the Nature CNN of Mnih et al. 2015
  (Nature 518): 32 filters 8×8 stride 4, 64 4×4 stride 2, 64 3×3 stride 1, then 512 units.
- Smaller grids (MinAtar's 10×10): the network of the MinAtar paper (Young & Tian 2019,
  arXiv 1903.03176): 16 filters 3×3 stride 1, then 128 units. The Nature CNN's first kernel
  alone would not fit.

Each torso ends with its hidden fully connected layer and nonlinearity; the agent adds its
heads. Two architecture choices apply to every agent's networks (the blocks are
:mod:`plasticity.architecture`'s, re-exported here):

- ``--layer-norm``: each hidden nonlinearity is preceded by a normalization;
- ``--activation``: the hidden nonlinearity, ``relu``, ``crelu`` or ``dff`` (the last two
  double the width). PPO's vector networks keep tanh unless set.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from plasticity.architecture import (
    NONLINEARITIES,
    CReLU,
    FourierFeatures,
    hidden_block,
    normalization,
    widening,
)

__all__ = [
    "NATURE_MIN_SIZE",
    "NONLINEARITIES",
    "CReLU",
    "FourierFeatures",
    "hidden_block",
    "image_torso",
    "normalization",
    "widening",
]

NATURE_MIN_SIZE = 36
"""the smallest side the Nature CNN's kernels and strides leave a feature map for"""


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
