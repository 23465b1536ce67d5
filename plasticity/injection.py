"""Plasticity injection (Nikishin et al., NeurIPS 2023, arXiv 2305.15555).

At an injection each output head ``h`` becomes ``h(x) + h'(x) − h'₀(x)``: ``h`` frozen, ``h'``
a freshly initialized head that trains from then on, ``h'₀`` a frozen copy of it. The
network computes the same function at that moment, keeps its number of trainable parameters,
and its torso goes on learning through all three terms.

For a Linear head the two frozen terms are one frozen affine map, ``(W − W'₀)x + (b − b'₀)``,
so :func:`inject_` writes ``h'`` into the head's own parameters (in place: optimizers, compiled
code and checkpoints of the network keep the same tensors) and adds the frozen *offset* with a
forward hook; a second injection adds to the same offset. The head's optimizer state is zeroed,
as a new head's would be; the rest of the network keeps its state (the paper's appendix found
resetting it harmful). Target networks are injected the same way: their head moves by the same
step and reads the same offset, so their outputs do not jump either.
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


def install_offsets(
    module: nn.Module, offsets: dict[str, dict[str, torch.Tensor | None]], hooks: dict
) -> None:
    """Make each head of ``module`` named in ``offsets`` add its frozen offset to its output,
    unless ``hooks`` (head name → installed :class:`FrozenOffset`) has it already: the hooks
    read the offset tensors themselves, so updating those in place updates every hook."""
    layers = dict(named_layers(module))
    for name, offset in offsets.items():
        if name not in hooks:
            hooks[name] = FrozenOffset(offset["weight"], offset["bias"])
            layers[name].register_forward_hook(hooks[name])


@torch.no_grad()
def inject_(
    module: nn.Module,
    offsets: dict[str, dict[str, torch.Tensor | None]],
    hooks: dict,
    heads: Iterable[str] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    fresh: Callable[[], nn.Module] | None = None,
    targets: Iterable[tuple[nn.Module, dict]] = (),
) -> InterventionReport:
    """Inject a new head into each Linear head of ``module`` (the last layer by default).

    ``offsets`` (head name → frozen ``weight`` and ``bias``, tensors: the injection's state to
    checkpoint) and ``hooks`` (head name → installed hook) are filled and updated in place;
    ``targets`` pairs each target network with its own ``hooks``. The new heads are drawn from
    ``fresh()`` (or ``reset_parameters``); ``optimizer``'s state of the heads is zeroed.
    """
    chosen = _linear_heads(module, heads)
    source = dict(named_layers(fresh_module(module, fresh)))
    report = InterventionReport("injection")
    for name, head in chosen.items():
        new = source[name]
        step = {"weight": new.weight - head.weight}
        step["bias"] = None if head.bias is None else new.bias - head.bias
        offset = offsets.setdefault(
            name,
            {
                "weight": torch.zeros_like(head.weight),
                "bias": None if head.bias is None else torch.zeros_like(head.bias),
            },
        )
        for key, param in (("weight", head.weight), ("bias", head.bias)):
            if param is not None:
                offset[key].sub_(step[key])  # old − new: the function is unchanged
                param.add_(step[key])
        clear_optimizer_state_(optimizer, [p for p in (head.weight, head.bias) if p is not None])
        report.layers[name] = {"sfe": float(step["weight"].pow(2).sum())}
        for target, _ in targets:
            target_head = dict(named_layers(target))[name]
            target_head.weight.add_(step["weight"])
            if target_head.bias is not None:
                target_head.bias.add_(step["bias"])
    install_offsets(module, offsets, hooks)
    for target, target_hooks in targets:
        install_offsets(target, offsets, target_hooks)
    return report
