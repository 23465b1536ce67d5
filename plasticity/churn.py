"""C-CHAIN: continual churn approximated reduction (Tang et al., ICML 2025, arXiv 2506.00592).

Churn is how much one update changes a network's outputs on data it was not trained on in
that update. C-CHAIN adds ``λ·R`` to the loss, ``R`` the mean squared difference between the
network's outputs and those of the network one update earlier, on a reference batch apart
from the training batch; ``λ`` adapts so that the penalty keeps a fixed size relative to the
main loss: ``λ = target·mean|L| / (mean R + 1e-8)``, both means over the last ``window``
updates, once ``start`` updates have passed (``λ`` keeps its initial value before).

The authors' code (``bluecontra/C-CHAIN``): MinAtar Double DQN, MSE over all actions'
Q-values, λ 50 at first, adapted from update 10 000 over a 50 000-update window toward 0.01,
a reference batch of 32 extra replay samples (those are the defaults here); PPO on DMC uses
the MSE of the actor's mean (λ 100, target 0.05, window 100 iterations); PPO on Procgen a
cross-entropy of the policies, which the MSE of logits here stands in for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from plasticity._layers import Inputs, call_module


def _outputs(result) -> list[torch.Tensor]:
    return list(result) if isinstance(result, (tuple, list)) else [result]


def churn(module: nn.Module, previous: dict[str, torch.Tensor], inputs: Inputs) -> torch.Tensor:
    """Mean squared difference of ``module``'s outputs on ``inputs`` from those it gives with
    the ``previous`` parameters (by name; no gradient through those), summed over outputs."""
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    with torch.no_grad():
        before = _outputs(functional_call(module, previous, args))
    now = _outputs(call_module(module, inputs))
    return sum(F.mse_loss(a, b) for a, b in zip(now, before, strict=True))


class AdaptiveCoefficient:
    """C-CHAIN's λ from the last ``window`` pairs of ``|L|`` and ``R``, kept in tensors and
    updated in place (no host synchronization, no Python state changing per step, so it runs
    inside compiled code)."""

    def __init__(self, initial: float, target: float, window: int, start: int, device):
        self.initial, self.target, self.start = initial, target, start
        self.main = torch.zeros(window, device=device)
        self.regularizer = torch.zeros(window, device=device)
        self.count = torch.zeros((), dtype=torch.long, device=device)

    @torch.no_grad()
    def update(self, main: torch.Tensor, regularizer: torch.Tensor) -> torch.Tensor:
        """Record one update's ``|L|`` and ``R``; the coefficient for it."""
        slot = self.count % self.main.numel()
        self.main.index_fill_(0, slot.view(1), main.detach().abs().float())
        self.regularizer.index_fill_(0, slot.view(1), regularizer.detach().float())
        self.count.add_(1)
        seen = (torch.arange(self.main.numel(), device=self.count.device) < self.count).float()
        mean_main = (self.main * seen).sum() / seen.sum()
        mean_regularizer = (self.regularizer * seen).sum() / seen.sum()
        adapted = self.target * mean_main / (mean_regularizer + 1e-8)
        return torch.where(self.count > self.start, adapted, torch.full_like(adapted, self.initial))

    def state_dict(self) -> dict:
        return {"main": self.main, "regularizer": self.regularizer, "count": self.count}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            getattr(self, key).copy_(value)
