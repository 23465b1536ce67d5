"""Convolutional torsos for image observations ``(C, H, W)``, shared by DQN and PPO.

- Frames of at least 36 pixels a side (Atari's 84×84): the Nature CNN of Mnih et al. 2015
  (Nature 518): 32 filters 8×8 stride 4, 64 4×4 stride 2, 64 3×3 stride 1, then 512 units.
- Smaller grids (MinAtar's 10×10): the network of the MinAtar paper (Young & Tian 2019,
  arXiv 1903.03176): 16 filters 3×3 stride 1, then 128 units. The Nature CNN's first kernel
  alone would not fit.

Each torso ends with its hidden fully connected layer and ReLU; the agent adds its heads.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

NATURE_MIN_SIZE = 36
"""the smallest side the Nature CNN's kernels and strides leave a feature map for"""


def image_torso(
    obs_shape: tuple[int, int, int], init: Callable[[nn.Module], nn.Module] = lambda layer: layer
) -> tuple[nn.Sequential, int]:
    """The torso for frames of ``obs_shape`` and its feature count; ``init`` initializes each
    layer (PPO: orthogonal; DQN: PyTorch's default)."""
    channels, height, width = obs_shape
    if min(height, width) >= NATURE_MIN_SIZE:
        convs = [
            init(nn.Conv2d(channels, 32, 8, stride=4)),
            nn.ReLU(),
            init(nn.Conv2d(32, 64, 4, stride=2)),
            nn.ReLU(),
            init(nn.Conv2d(64, 64, 3, stride=1)),
            nn.ReLU(),
        ]
        hidden = 512
    else:
        convs = [init(nn.Conv2d(channels, 16, 3, stride=1)), nn.ReLU()]
        hidden = 128
    convs = nn.Sequential(*convs, nn.Flatten())
    with torch.no_grad():
        flat = convs(torch.zeros(1, *obs_shape)).shape[1]  # 3136 for 84x84, 1024 for 10x10
    return nn.Sequential(*convs, init(nn.Linear(flat, hidden)), nn.ReLU()), hidden
