"""Which layers of a network the plasticity functions act on.

A *layer* here is a module that owns a weight matrix or kernel: ``nn.Linear`` and the
``nn.Conv{1,2,3}d`` family. Layers are listed in registration order (the order of
``named_modules``). The *head* of a network is its output layer; by default that is the last
layer registered, and callers with several heads (an actor's mean and log-std) name them.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn

LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)

Inputs = torch.Tensor | Sequence[torch.Tensor]


def named_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """All Linear/Conv layers of ``module`` with their qualified names, in registration order."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, LAYER_TYPES)]


def head_names(module: nn.Module, heads: Iterable[str] | None = None) -> set[str]:
    """Names of the output layers: ``heads`` when given (checked), else the last layer."""
    layers = named_layers(module)
    if not layers:
        raise ValueError(
            f"{type(module).__name__} has no Linear or Conv layer; pass a network that has one"
        )
    names = {name for name, _ in layers}
    if heads is None:
        return {layers[-1][0]}
    heads = set(heads)
    unknown = heads - names
    if unknown:
        raise ValueError(
            f"heads {sorted(unknown)} are not layers of {type(module).__name__}; "
            f"its layers are {sorted(names)}"
        )
    return heads


def hidden_layers(
    module: nn.Module, heads: Iterable[str] | None = None
) -> list[tuple[str, nn.Module]]:
    """The layers that are not heads, in registration order."""
    excluded = head_names(module, heads)
    return [(name, m) for name, m in named_layers(module) if name not in excluded]


def select_layers(
    module: nn.Module, include: Iterable[str] | None = None, exclude: Iterable[str] | None = None
) -> list[tuple[str, nn.Module]]:
    """Layers whose name matches a pattern of ``include`` (all when None) and none of ``exclude``.

    Patterns are shell-style (``fnmatch``): ``"encoder.*"``, ``"fc?"``, an exact name.
    """
    include = list(include) if include is not None else None
    exclude = list(exclude or ())
    chosen = []
    for name, layer in named_layers(module):
        if include is not None and not any(fnmatch.fnmatchcase(name, p) for p in include):
            continue
        if any(fnmatch.fnmatchcase(name, p) for p in exclude):
            continue
        chosen.append((name, layer))
    return chosen


def reinitialized_copy(module: nn.Module, leave_out: Iterable[object] = ()) -> nn.Module:
    """A deep copy of ``module`` whose submodules were re-drawn with their ``reset_parameters``.

    This is the default source of fresh weights; networks with a custom initialization should
    give the interventions a ``fresh`` factory that builds the network anew instead.
    ``leave_out``: attributes the copy gets as None, such as a cache of the last forward's
    tensors (which a deep copy refuses).
    """
    clone = copy.deepcopy(module, memo={id(obj): None for obj in leave_out})
    for sub in clone.modules():
        if hasattr(sub, "reset_parameters") and callable(sub.reset_parameters):
            sub.reset_parameters()
    return clone


def fresh_module(module: nn.Module, fresh: Callable[[], nn.Module] | None) -> nn.Module:
    """A freshly initialized network shaped like ``module``: ``fresh()`` or a re-drawn copy."""
    if fresh is None:
        return reinitialized_copy(module)
    new = fresh()
    ours = {k: v.shape for k, v in module.state_dict().items()}
    theirs = {k: v.shape for k, v in new.state_dict().items()}
    if ours != theirs:
        raise ValueError(
            "the `fresh` factory builds a network whose parameters differ from the one being "
            "reinitialized; make it build the same architecture"
        )
    return new.to(next(module.parameters()).device)


def call_module(module: nn.Module, inputs: Inputs) -> torch.Tensor:
    """Run ``module`` on a probe batch: a tensor, or a tuple/list of positional tensors.

    A shape mismatch becomes one clear ``ValueError`` instead of a matmul error deep inside.
    """
    args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
    if not args or not all(isinstance(a, torch.Tensor) for a in args):
        raise ValueError("inputs must be a tensor or a tuple of tensors (the network's arguments)")
    try:
        return module(*args)
    except (RuntimeError, TypeError) as err:  # shape mismatch, or missing arguments
        shapes = ", ".join(str(tuple(a.shape)) for a in args)
        first_line = str(err).splitlines()[0]
        raise ValueError(
            f"inputs of shape {shapes} do not fit {type(module).__name__} ({first_line}); "
            "pass a probe batch shaped like the network's training inputs"
        ) from None
