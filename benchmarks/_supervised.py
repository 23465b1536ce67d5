"""What the supervised benchmarks share: one training update through a method handle, the
accuracy, the digits data and network, and the figures' set-up (Agg back end, colours, bands).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks._plots import pyplot
from benchmarks._stats import curve_ci
from plasticity import METHODS
from plasticity.methods import MethodHandle

BOUNDARY_ONLY = {"fire_every": 0, "reset_every": 0, "shrink_perturb_every": 0}
"""Method settings that leave FIRE, resets and S&P to the boundaries (``on_task_switch``);
ReDo and the effective-rank ascent keep their own update-count schedules."""


def update(
    net: nn.Module,
    handle: MethodHandle,
    inputs: torch.Tensor,
    labels: torch.Tensor,
    step: int,
    clip: float = 0.0,
) -> torch.Tensor:
    """One update of ``net`` on a minibatch through its method handle: cross-entropy plus the
    method's penalty, the gradient norm clipped at ``clip`` (0: not clipped), the handle's
    optimizer, then the interventions due at ``step`` with the minibatch as their probe.
    Returns the loss the update descended."""
    loss = F.cross_entropy(net(inputs), labels)
    loss = loss + handle.penalty(loss)  # the loss: penalties scaled to it (C-CHAIN)
    handle.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip > 0:
        nn.utils.clip_grad_norm_(net.parameters(), clip)
    handle.after_backward()
    handle.optimizer.step()
    handle.after_update(step, inputs=inputs)
    return loss


def accuracy(net: nn.Module, inputs: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        return float((net(inputs).argmax(1) == labels).float().mean())


def digits(seed: int, test_fraction: float) -> tuple[np.ndarray, ...]:
    """scikit-learn's bundled digits (1,797 8×8 images, no download) split into a stratified
    train and test part by ``seed``, standardized with the train part's statistics:
    ``x_train, y_train, x_test, y_test`` (float32 inputs, integer labels)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x, y = data.data.astype(np.float32), data.target
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=test_fraction, stratify=y, random_state=seed
    )
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6  # constant border pixels: std 0
    return (x_train - mean) / std, y_train, (x_test - mean) / std, y_test


def digits_mlp(width: int) -> nn.Sequential:
    """The digits benchmarks' 64-width-width-10 ReLU MLP."""
    return nn.Sequential(
        nn.Linear(64, width),
        nn.ReLU(),
        nn.Linear(width, width),
        nn.ReLU(),
        nn.Linear(width, 10),
    )


def style(i: int) -> dict:
    """Colour and line style of the i-th method: 20 colours, then the lighter shades."""
    colors = pyplot().get_cmap("tab20").colors
    return {"color": colors[(2 * i) % 20 + (i // 10) % 2], "ls": ("-", "--", ":")[i % 3]}


def band(ax, x, curves, label: str, line_style: dict) -> None:
    """The mean of ``curves`` (one per seed) and its pointwise 95% t-interval."""
    mean, low, high = curve_ci(curves)
    ax.plot(x, mean, label=label, **line_style)
    if len(curves) > 1:
        ax.fill_between(x, low, high, color=line_style["color"], alpha=0.15, lw=0)


@dataclass
class Setup:
    """The task stream and the learner."""

    tasks: int = 30
    """number of labellings to learn one after the other"""
    samples: int = 1024
    """inputs in the fixed set (memorized anew at every task)"""
    input_dim: int = 64
    """dimension of the Gaussian inputs"""
    classes: int = 10
    """number of random classes"""
    width: int = 256
    """units per hidden layer (3 hidden layers)"""
    steps_per_task: int = 1500
    """Adam updates per task"""
    batch_size: int = 128
    """minibatch size"""
    lr: float = 1e-3
    """learning rate of every method's optimizer"""
    seed: int = 0
    """first seed (of the inputs, the labels, the network and the minibatches)"""
    seeds: int = 1
    """number of seeds: seed, seed + 1, …"""
    speed_at: int = 100
    """learning speed: accuracy on the task's data after this many of its updates"""
    methods: list[str] = field(default_factory=lambda: [*METHODS, "fire+adamo"])
    """methods to compare"""
    layer_norm: list[str] = field(default_factory=lambda: ["nap"])
    """methods whose network has a LayerNorm before each nonlinearity (nap needs one)"""
    settings: dict = field(default_factory=dict)
    """extra method settings (``MethodConfig`` fields) for every method"""
    curvature: list[str] = field(default_factory=list)
    """methods whose curvature ε-rank is measured at the start of every task"""
    kfac_probe: int = 256
    """samples of the K-FAC (empirical Fisher, new labels) probe"""
    ggn_probe: int = 32
    """samples of the exact Gauss–Newton probe (and of the K-FAC Gauss–Newton beside it)"""
    ggn_every: int = 2
    """exact Gauss–Newton at every k-th task start (1 s each at the default sizes), and the last"""
    eps: float = 1e-6
    """ε of the ε-ranks"""


def make_network(setup: Setup, layer_norm: bool = False) -> nn.Sequential:
    """The random-label learner: three ReLU hidden layers of ``setup.width`` units (a LayerNorm
    before each ReLU with ``layer_norm``)."""
    w = setup.width
    sizes = [setup.input_dim, w, w, w]
    hidden = [
        module
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True)
        for module in (
            nn.Linear(fan_in, fan_out),
            *([nn.LayerNorm(fan_out)] if layer_norm else []),
            nn.ReLU(),
        )
    ]
    return nn.Sequential(*hidden, nn.Linear(w, setup.classes))
