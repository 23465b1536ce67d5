"""Self-normalized resets (Farias & Jozefiak 2024, arXiv 2410.20098).

A ReLU unit that has not fired for much longer than it usually goes between firings is
probably dead: reset it. Each hidden unit keeps its *age*, the number of samples since it last
fired (it fires when its activation, what the next layer reads from it, is positive for some
example of a batch, else its age grows by the batch size), and a histogram of its own
inter-firing times. A unit whose age
reaches its threshold τ is reset: fresh incoming weights from the network's initialization,
zero bias and outgoing weights, their optimizer moments zeroed (the authors' Adam variant),
age 0. Every few task switches each τ is re-estimated from the unit's histogram, a rejection
test: with ``p`` the inter-firing time below which the ``percentile`` of its firings fell,
``τ ← p`` if ``p < τ``, else ``τ ← expansion·τ``, clipped to [batch size, τ_max]; the
histogram is then cleared.

Defaults from the authors' JAX code (``ajozefiak/SelfNormalizedResets``: percentile 0.99,
expansion 2, τ re-estimated every 16 tasks) and, for the initial τ (a required argument
there) and τ_max, from the FIRE paper's port (10 000 and 20 000 samples). Histograms are kept
at batch resolution (ages move in whole batches), τ_max // batch bins a unit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from plasticity._layers import Inputs, fresh_module, named_layers
from plasticity.interventions import (
    InterventionReport,
    Optimizers,
    reinitialize_units_,
    trace_hidden_layers,
)


def fired_units(features: torch.Tensor) -> torch.Tensor:
    """Per unit of ``(batch, units, *positions)`` features: positive for some example."""
    return (features > 0).transpose(0, 1).reshape(features.shape[1], -1).any(1)


def self_normalized_reset_(
    module: nn.Module,
    inputs: Inputs,
    state: dict[str, dict],
    tau_init: int = 10_000,
    tau_max: int = 20_000,
    optimizer: Optimizers = None,
    heads: Iterable[str] | None = None,
    fresh: Callable[[], nn.Module] | None = None,
    exclude: Iterable[str] | None = None,
) -> InterventionReport:
    """Age every hidden unit of ``module`` by the batch ``inputs`` (a training batch) and reset
    those whose age reached their threshold. ``state``: per layer name, the units' ``age``,
    ``tau`` and inter-firing ``histogram`` and the ``batch`` size, filled on the first call and
    updated in place (tensors and ints). The report's layers give ``reset`` and ``units``."""
    trace = trace_hidden_layers(module, inputs, heads, exclude)
    source_layers = None
    report = InterventionReport("snr", reinitialized=False)
    with torch.no_grad():
        for name, layer in trace.candidates:
            consumers = [trace.layers[c] for c in trace.consumers.get(name, [])]
            if not consumers:
                continue
            features = trace.unit_outputs(name)
            units, batch = features.shape[1], features.shape[0]
            unit = state.setdefault(
                name,
                {
                    "age": features.new_zeros(units, dtype=torch.long),
                    "tau": torch.full((units,), tau_init, dtype=torch.long, device=features.device),
                    "histogram": features.new_zeros(units, tau_max // batch + 1),
                    "batch": batch,
                },
            )
            fired = fired_units(features)
            bins = unit["histogram"].shape[1]
            interval = (unit["age"] // unit["batch"]).clamp(max=bins - 1)
            firing = fired.nonzero().flatten()
            unit["histogram"][firing, interval[firing]] += 1
            unit["age"] = torch.where(fired, 0, unit["age"] + batch)
            reset = (unit["age"] >= unit["tau"]).nonzero().flatten()
            report.layers[name] = {"reset": float(reset.numel()), "units": float(units)}
            if reset.numel() == 0:
                continue
            if source_layers is None:
                source_layers = dict(named_layers(fresh_module(module, fresh)))
            report.layers[name]["sfe"] = reinitialize_units_(
                layer, source_layers[name], reset, consumers, optimizer
            )
            unit["age"][reset] = 0
            report.reinitialized = True
    return report


@torch.no_grad()
def update_thresholds_(
    state: dict[str, dict], percentile: float = 0.99, expansion: float = 2.0, tau_max: int = 20_000
) -> None:
    """Re-estimate every unit's threshold from its inter-firing histogram (the rejection test
    of the module doc), then clear the histograms."""
    for unit in state.values():
        histogram, batch = unit["histogram"], unit["batch"]
        total = histogram.sum(1)
        cdf = histogram.cumsum(1) / total.clamp_min(1)[:, None]
        first = (cdf >= percentile).float().argmax(1)  # the first bin reaching the percentile
        seen = (first * batch).to(unit["tau"].dtype)
        shorter = (total > 0) & (seen < unit["tau"])
        tau = torch.where(shorter, seen, (unit["tau"] * expansion).to(unit["tau"].dtype))
        unit["tau"] = tau.clamp(batch, tau_max)
        histogram.zero_()
