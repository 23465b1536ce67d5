"""Continual backprop: replace the least useful mature units, a few at a time.

Dohare et al., "Loss of plasticity in deep continual learning", Nature 632 (2024), arXiv
2306.13812; the authors' generate-and-test code is ``shibhansh/loss-of-plasticity``,
``lop/algos/gnt.py``. At every call, for each hidden unit ``i`` of a hidden layer:

- its age grows by one, and its contribution utility is a running average
  ``u_i ← η·u_i + (1 − η)·mean|h_i|·mean_k|w_ik|`` of its mean absolute activation times the
  mean magnitude of its outgoing weights (read bias-corrected, ``u_i / (1 − η^age_i)``);
- among the units older than the maturity threshold ``m``, a fraction ``ρ`` (the replacement
  rate; fractions carry over to the next call) with the lowest utility is replaced: fresh
  incoming weights (from the network's own initialization), zero bias, zero outgoing weights,
  age and utility 0, and the optimizer moments of those entries zeroed.

Where this differs from the authors' code, and why:

- the outgoing bias correction the authors' code intends (the next layer's bias absorbs the
  replaced unit's average contribution ``Σ w_out·mean h / (1 − η^age)``) is done; their
  snapshot zeroes the running mean before reading it, so it adds 0 (methods_more.md §1);
- optimizer moments of the replaced entries are zeroed whatever the optimizer (their RL runs
  use ``torch.optim.Adam``, which their code leaves alone); a per-tensor Adam ``step`` cannot
  be reset for some entries and is kept (their ``AdamGnT`` keeps one per entry);
- fractional counts carry over (their ``accumulate=True``); their RL runs draw a Bernoulli for
  counts below one instead: the same expected rate, without the randomness;
- conv layers and a conv flattened into a Linear are handled as ReDo handles them: a channel
  is a unit, its activation averaged over positions.

A unit's activation ``h`` is what the next layer reads from it, after whatever normalization
(``--layer-norm``) and nonlinearity lie between.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from plasticity._layers import Inputs, fresh_module, named_layers
from plasticity.interventions import (
    InterventionReport,
    Optimizers,
    outgoing_index,
    reinitialize_units_,
    trace_hidden_layers,
)


def unit_means(values: torch.Tensor) -> torch.Tensor:
    """The mean of ``(batch, units, *positions)`` values per unit."""
    return values.transpose(0, 1).reshape(values.shape[1], -1).mean(1)


def outgoing_magnitude(layer: nn.Module, consumer: nn.Module) -> torch.Tensor:
    """Per unit of ``layer``, the mean absolute weight by which ``consumer`` reads it."""
    units = torch.arange(layer.weight.shape[0], device=layer.weight.device)
    weights = consumer.weight.detach().abs().index_select(1, outgoing_index(layer, consumer, units))
    return weights.transpose(0, 1).reshape(units.numel(), -1).mean(1)


@torch.no_grad()
def absorb_mean_contribution_(
    layer: nn.Module, consumer: nn.Module, units: torch.Tensor, mean_activation: torch.Tensor
) -> None:
    """Add to ``consumer``'s bias what ``units`` of ``layer`` fed it on average, so zeroing their
    outgoing weights keeps the consumer's output unchanged on average."""
    if consumer.bias is None:
        return
    weights = consumer.weight.index_select(1, outgoing_index(layer, consumer, units))
    per_column = mean_activation.repeat_interleave(weights.shape[1] // units.numel())
    shape = (1, -1) + (1,) * (weights.ndim - 2)
    consumer.bias.add_((weights * per_column.view(shape)).sum(dim=tuple(range(1, weights.ndim))))


def continual_backprop_(
    module: nn.Module,
    inputs: Inputs,
    state: dict[str, dict],
    replacement_rate: float = 1e-4,
    decay: float = 0.99,
    maturity: int = 10_000,
    optimizer: Optimizers = None,
    heads: Iterable[str] | None = None,
    fresh: Callable[[], nn.Module] | None = None,
    exclude: Iterable[str] | None = None,
) -> InterventionReport:
    """One generate-and-test step of continual backprop on ``module`` (see the module doc).

    ``inputs``: a batch of the network's inputs (the last training batch), whose hidden
    features give the utilities. ``state``: per layer name, the running ``utility``,
    ``mean_activation`` and ``age`` of its units and the ``pending`` fraction of a
    replacement; filled on the first call and updated in place (tensors and floats only, so it
    checkpoints with ``weights_only=True``). Heads (the last layer by default) and ``exclude``
    patterns are never replaced; a layer nothing consumes is skipped. The report's layers give
    ``replaced``, ``eligible`` (mature units) and ``units``.
    """
    trace = trace_hidden_layers(module, inputs, heads, exclude)
    source_layers = None  # a fresh network is drawn only when a unit is replaced
    report = InterventionReport("cbp", reinitialized=False)
    with torch.no_grad():
        for name, layer in trace.candidates:
            consumers = [trace.layers[c] for c in trace.consumers.get(name, [])]
            if not consumers:
                continue
            features = trace.unit_outputs(name)
            units = features.shape[1]
            unit = state.setdefault(
                name,
                {key: features.new_zeros(units) for key in ("utility", "mean_activation", "age")}
                | {"pending": 0.0},
            )
            unit["age"] += 1
            magnitude = torch.stack([outgoing_magnitude(layer, c) for c in consumers]).mean(0)
            contribution = unit_means(features.abs()) * magnitude
            unit["utility"].mul_(decay).add_(contribution, alpha=1 - decay)
            unit["mean_activation"].mul_(decay).add_(unit_means(features), alpha=1 - decay)
            eligible = torch.nonzero(unit["age"] > maturity).flatten()
            unit["pending"] += replacement_rate * eligible.numel()
            count = min(int(unit["pending"]), eligible.numel())
            unit["pending"] -= count
            report.layers[name] = {
                "replaced": float(count),
                "eligible": float(eligible.numel()),
                "units": float(units),
            }
            if count == 0:
                continue
            # bias-corrected running averages, as Adam's moments (ages are >= 1 here)
            corrected = 1 - decay ** unit["age"][eligible]
            lowest = torch.topk(-unit["utility"][eligible] / corrected, count).indices
            replaced = eligible[lowest]
            mean_activation = unit["mean_activation"][replaced] / corrected[lowest]
            for consumer in consumers:
                absorb_mean_contribution_(layer, consumer, replaced, mean_activation)
            if source_layers is None:
                source_layers = dict(named_layers(fresh_module(module, fresh)))
            report.layers[name]["sfe"] = reinitialize_units_(
                layer, source_layers[name], replaced, consumers, optimizer
            )
            report.reinitialized = True
            for key in ("utility", "mean_activation", "age"):
                unit[key][replaced] = 0.0
    return report
