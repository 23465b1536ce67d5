"""Plasticity injection (Nikishin et al., NeurIPS 2023, arXiv 2305.15555).

At an injection each output head ``h`` becomes ``h(x) + h'(x) − h'₀(x)``: ``h`` frozen, ``h'``
a freshly initialized head that trains from then on, ``h'₀`` a frozen copy of it. The
network computes the same function at that moment, keeps its number of trainable parameters,
and its torso goes on learning through all three terms.

For a Linear head the two frozen terms are one frozen affine map, ``(W − W'₀)x + (b − b'₀)``,
so :func:`inject_` writes ``h'`` into the head's own parameters (in place: optimizers, compiled
code and checkpoints of the network keep the same tensors) and adds it to a frozen *offset*,
which a forward hook installed at attach time (:func:`attach_offsets`, zero until then) adds
to the head's output; a second injection adds to the same offset. The head's optimizer state
is zeroed, as a new head's would be; the rest of the network keeps its state (the paper's
appendix found resetting it harmful). Target networks are injected the same way: their head
moves by the same step and reads the same offset, so their outputs do not jump either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from plasticity._layers import fresh_module, head_names, named_layers
from plasticity.interventions import InterventionReport, clear_optimizer_state_


class FrozenOffset:
    """A forward hook adding the frozen affine map ``x ↦ weight·x + bias`` to a Linear's output."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        self.weight, self.bias = weight, bias

    def __call__(self, _layer: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
        return output + F.linear(args[0], self.weight, self.bias)


def _linear_heads(module: nn.Module, heads: Iterable[str] | None) -> dict[str, nn.Linear]:
    layers = dict(named_layers(module))
    chosen = {name: layers[name] for name in sorted(head_names(module, heads))}
    for name, layer in chosen.items():
        if not isinstance(layer, nn.Linear):
            raise ValueError(
                f"plasticity injection needs Linear heads, {name!r} is a "
                f"{type(layer).__name__}; name the network's Linear output layers as heads"
            )
    return chosen


def attach_offsets(
    module: nn.Module, heads: Iterable[str] | None = None, targets: Iterable[nn.Module] = ()
) -> dict[str, dict[str, torch.Tensor | None]]:
    """Give each Linear head of ``module`` (the last layer by default), and the same layer of
    each target network, a :class:`FrozenOffset` hook reading one zero offset: the
    injection's state (head name → ``weight`` and ``bias``), which :func:`inject_` updates
    in place. The hooks are there from the start, so code compiled before an injection (which
    does not see hooks added later) computes the injected function too."""
    offsets = {}
    for name, head in _linear_heads(module, heads).items():
        offsets[name] = {
            "weight": torch.zeros_like(head.weight, requires_grad=False),
            "bias": None if head.bias is None else torch.zeros_like(head.bias, requires_grad=False),
        }
        for network in (module, *targets):
            layer = dict(named_layers(network))[name]
            layer.register_forward_hook(FrozenOffset(**offsets[name]))
    return offsets


@torch.no_grad()
def inject_(
    module: nn.Module,
    offsets: dict[str, dict[str, torch.Tensor | None]],
    optimizer: torch.optim.Optimizer | None = None,
    fresh: Callable[[], nn.Module] | None = None,
    targets: Iterable[nn.Module] = (),
) -> InterventionReport:
    """Inject a new head into each head of ``offsets`` (:func:`attach_offsets`): the head's
    parameters become a fresh draw ``h'`` (``fresh()`` or ``reset_parameters``), the offset
    absorbs ``h − h'`` so that the outputs do not change, ``optimizer``'s state of the head
    is zeroed, and each of ``targets`` moves its head by the same step."""
    layers = dict(named_layers(module))
    source = dict(named_layers(fresh_module(module, fresh)))
    target_layers = [dict(named_layers(target)) for target in targets]
    report = InterventionReport("injection")
    for name, offset in offsets.items():
        head = layers[name]
        for key in ("weight", "bias"):
            param = getattr(head, key)
            if param is None:
                continue
            step = getattr(source[name], key) - param
            offset[key].sub_(step)  # old − new: the function is unchanged
            param.add_(step)
            for target in target_layers:
                getattr(target[name], key).add_(step)
            if key == "weight":
                report.layers[name] = {"sfe": float(step.pow(2).sum())}
        clear_optimizer_state_(optimizer, [p for p in (head.weight, head.bias) if p is not None])
    return report
