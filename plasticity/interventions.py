"""In-place interventions on a network: FIRE, full reset, shrink & perturb, ReDo.

Every intervention takes the optimizer(s) that train the network and resets the optimizer
state of exactly the entries it rewrote (whole tensors, or ReDo's rows and columns), because
Adam moments that describe the old weights would steer the new ones. State is reset in place
(zeroed, never dropped), so a CUDA graph captured over the optimizer step stays valid; to reset
a whole network's state, as the FIRE paper's SAC does, call :func:`clear_optimizer_state_` with
:func:`network_parameters`. Every intervention
returns an :class:`InterventionReport` with, per layer, the squared Frobenius error (SFE: how
far the weights moved) and the deviation from isometry (DfI) before and after. Target networks
are not known here: re-sync them with :func:`sync_targets` (the method handles in
:mod:`plasticity.methods` do it for you).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from plasticity._layers import (
    Inputs,
    call_module,
    fresh_module,
    hidden_layers,
    named_layers,
    select_layers,
)
from plasticity.isometry import (
    fire_slices,
    newton_schulz,
    polar,
    sliced_deviation,
    squared_frobenius_error,
)

Optimizers = torch.optim.Optimizer | Iterable[torch.optim.Optimizer] | None


@dataclass
class InterventionReport:
    """What an intervention did: ``layers[name]`` maps metric names to floats.

    Layer metrics: ``sfe`` (‖W_after − W_before‖_F²), ``dfi_before``/``dfi_after`` (deviation
    from isometry of the weight at its target scale, summed over conv taps), and for ReDo
    ``dormant`` (units found dormant) and ``units``.
    """

    method: str
    layers: dict[str, dict[str, float]] = field(default_factory=dict)
    reinitialized: bool = True
    """whether weights were reinitialized, what counts as an intervention: False for a pass of
    ReDo or continual backprop that replaced no unit, and for an effective-rank ascent step (a
    regularizer step, not a reinitialization)"""

    def summary(self) -> str:
        """A few words for a console line: the layers touched and, summed over them, the
        deviation from isometry after (FIRE, resets) or the dormant units recycled (ReDo)."""
        totals: dict[str, float] = {}
        for metrics in self.layers.values():
            for key, value in metrics.items():
                totals[key] = totals.get(key, 0.0) + value
        words = [_plural(len(self.layers), "layer")]
        if "dfi_after" in totals:
            words.append(f"DfI after {totals['dfi_after']:.4g}")
        if "dormant" in totals:
            words.append(f"{totals['dormant']:.0f} of {_plural(totals['units'], 'unit')} dormant")
        return ", ".join(words)

    def console_line(self, step: int, network: str) -> str:
        """``step 10,000: fire on critic (3 layers, DfI after 0.04)``: the line consoles print."""
        return f"step {step:,}: {self.method} on {network} ({self.summary()})"

    def scalars(self, prefix: str = "") -> dict[str, float]:
        """Flat ``{"<prefix><method>/<layer>/<metric>": value}`` plus totals, for loggers."""
        flat = {}
        totals: dict[str, float] = {}
        for layer, metrics in self.layers.items():
            for key, value in metrics.items():
                flat[f"{prefix}{self.method}/{layer}/{key}"] = value
                totals[key] = totals.get(key, 0.0) + value
        for key, value in totals.items():
            flat[f"{prefix}{self.method}/total_{key}"] = value
        return flat


def _plural(count: float, noun: str) -> str:
    return f"{count:.0f} {noun}{'' if count == 1 else 's'}"


# --- optimizer state ------------------------------------------------------------------------


def _optimizer_list(optimizer: Optimizers) -> list[torch.optim.Optimizer]:
    if optimizer is None:
        return []
    if isinstance(optimizer, torch.optim.Optimizer):
        return [optimizer]
    optimizers = list(optimizer)
    for opt in optimizers:
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(
                "optimizer must be a torch.optim.Optimizer or a list of them, "
                f"got {type(opt).__name__}"
            )
    return optimizers


@torch.no_grad()
def clear_optimizer_state_(optimizer: Optimizers, params: Iterable[torch.Tensor]) -> int:
    """Reset the optimizer state (Adam moments and step, momentum, …) of ``params``, in place.

    Every state tensor is zeroed where it lives (Adam's ``exp_avg``, ``exp_avg_sq``,
    ``max_exp_avg_sq`` and its ``step``, a tensor on the device for fused or capturable Adam;
    SGD's ``momentum_buffer``) and a step kept as a Python number is set to 0, instead of
    dropping the entries: a CUDA graph captured over ``optimizer.step()`` keeps reading the
    same tensors, and sees the reset. For Adam, AdamW and :class:`plasticity.AdamO` a zeroed
    state is exactly a fresh one, so the following updates equal those of a new optimizer
    (``tests/test_interventions.py`` checks it bit for bit); so it is for SGD without
    dampening. Parameters without state yet are left alone. Returns how many parameters had
    their state reset.
    """
    cleared = 0
    params = list(params)
    for opt in _optimizer_list(optimizer):
        for p in params:
            state = opt.state.get(p)
            if not state:
                continue
            for key, value in state.items():
                if isinstance(value, torch.Tensor):
                    value.zero_()
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    state[key] = type(value)(0)
            cleared += 1
    return cleared


def network_parameters(
    module: nn.Module, exclude: Iterable[str] | None = None
) -> list[nn.Parameter]:
    """All parameters of ``module`` but those of the modules matching a pattern of ``exclude``.

    What a whole-network intervention owns: weights, biases, normalization and free parameters
    (a log-std), minus a features extractor that belongs to another network. A parameter is
    excluded when the name of the module holding it, or its own name, matches a shell pattern.
    """
    patterns = list(exclude or ())
    return [
        p
        for name, p in module.named_parameters()
        if not any(
            fnmatch.fnmatchcase(name.rpartition(".")[0], pattern)
            or fnmatch.fnmatchcase(name, pattern)
            for pattern in patterns
        )
    ]


def zero_optimizer_entries_(
    optimizer: Optimizers, param: torch.Tensor, index: torch.Tensor, dim: int
) -> None:
    """Zero the state entries of ``param`` at positions ``index`` along ``dim`` (ReDo).

    Every state tensor shaped like the parameter (Adam's ``exp_avg``/``exp_avg_sq``, SGD's
    momentum) is zeroed there. A per-tensor ``step`` cannot be reset for a subset of entries;
    it is kept, as in the ReDo authors' optax code.
    """
    for opt in _optimizer_list(optimizer):
        for value in opt.state.get(param, {}).values():
            if isinstance(value, torch.Tensor) and value.shape == param.shape:
                value.index_fill_(dim, index, 0.0)


# --- target networks ------------------------------------------------------------------------


@torch.no_grad()
def sync_targets(network: nn.Module, targets: Iterable[nn.Module]) -> None:
    """Hard-copy ``network``'s parameters and buffers into each target network."""
    state = network.state_dict()
    for target in targets:
        target.load_state_dict(state)


def clone_state(network: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``network``'s parameters and buffers, to see later what an intervention
    changed (:func:`sync_changed_tensors`)."""
    return {name: tensor.detach().clone() for name, tensor in network.state_dict().items()}


@torch.no_grad()
def sync_changed_tensors(
    network: nn.Module, before: dict[str, torch.Tensor], targets: Iterable[nn.Module]
) -> list[str]:
    """Copy into each target network only the tensors of ``network`` that differ from
    ``before`` (its :func:`clone_state` from before an intervention); the others keep the
    target's own values, as the FIRE paper's DQN (arXiv 2602.08040) writes just the weights it
    rewrote into its target. Returns the copied tensors' names."""
    state = network.state_dict()
    changed = [name for name, tensor in state.items() if not torch.equal(tensor, before[name])]
    for target in targets:
        target_state = target.state_dict()
        for name in changed:
            target_state[name].copy_(state[name])
    return changed


# --- FIRE -----------------------------------------------------------------------------------


@torch.no_grad()
def fire_(
    module: nn.Module,
    optimizer: Optimizers = None,
    ns_steps: int = 10,
    scale: str = "muon",
    mode: str = "newton_schulz",
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> InterventionReport:
    """FIRE: replace each weight by (an approximation of) its nearest isometry, in place.

    Frobenius-Isometry REinitialization (arXiv 2602.08040) solves
    ``min ‖W − W̃‖_F² s.t. W̃ᵀW̃ = I``, whose answer is the orthogonal polar factor. Per 2-D
    slice (a Linear weight; each spatial tap ``W[:, :, i, j]`` of a conv kernel):

    - ``mode="newton_schulz"`` (default, the authors' code): ``ns_steps`` cubic Newton–Schulz
      steps on the Frobenius-normalized slice (:func:`plasticity.newton_schulz`); not fully
      converged at 10 steps, by design of the paper.
    - ``mode="polar"``: the exact polar factor by SVD (:func:`plasticity.polar`).

    ``scale="muon"`` multiplies by ``sqrt(d_out/d_in)`` (conv taps also divided by ``kh·kw``);
    ``scale="none"`` keeps unit singular values. Biases, normalization layers and any
    parameter that is not a Linear/Conv weight are untouched; heads are included (as in the
    paper's SAC) unless ``exclude`` names them. ``include``/``exclude`` are shell patterns on
    layer names. The optimizer state of every rewritten weight is reset (in place).
    """
    if mode not in ("newton_schulz", "polar"):
        raise ValueError(f"unknown FIRE mode {mode!r}; use 'newton_schulz' or 'polar'")
    if scale not in ("muon", "none"):
        raise ValueError(f"unknown FIRE scale {scale!r}; use 'muon' or 'none'")
    report = InterventionReport("fire")
    touched = []
    for name, layer in select_layers(module, include, exclude):
        weight = layer.weight
        slices, muon_scale = fire_slices(weight)
        target_scale = muon_scale if scale == "muon" else 1.0
        dfi_before = sliced_deviation(weight, target_scale)
        ortho = newton_schulz(slices, ns_steps) if mode == "newton_schulz" else polar(slices)
        new_slices = ortho * target_scale
        if weight.ndim > 2:
            new_weight = new_slices.permute(1, 2, 0).reshape(weight.shape)
        else:
            new_weight = new_slices
        report.layers[name] = {
            "sfe": float(squared_frobenius_error(weight, new_weight)),
            "dfi_before": dfi_before,
            "dfi_after": sliced_deviation(new_weight, target_scale),
        }
        weight.copy_(new_weight)
        touched.append(weight)
    if not touched:
        raise ValueError("fire_ matched no Linear or Conv layer; check include/exclude")
    clear_optimizer_state_(optimizer, touched)
    return report


# --- resets ---------------------------------------------------------------------------------


def _layer_parameters(layers: list[tuple[str, nn.Module]]) -> list[tuple[str, nn.Parameter]]:
    return [
        (f"{name}.{pname}" if name else pname, p)
        for name, layer in layers
        for pname, p in layer.named_parameters(recurse=False)
    ]


@torch.no_grad()
def _blend_(
    method: str,
    module: nn.Module,
    target: dict[str, torch.Tensor],
    keep: float,
    take: float,
    optimizer: Optimizers,
    include: Iterable[str] | None,
    exclude: Iterable[str] | None,
) -> InterventionReport:
    """``θ ← keep·θ + take·target[name]`` on the chosen layers' parameters; reset their state."""
    layers = select_layers(module, include, exclude)
    if not layers:
        raise ValueError(f"{method} matched no Linear or Conv layer; check include/exclude")
    report = InterventionReport(method)
    touched = []
    for name, layer in layers:
        before = layer.weight.clone()
        dfi_before = sliced_deviation(before)
        for pname, p in layer.named_parameters(recurse=False):
            source = target[f"{name}.{pname}" if name else pname]
            if keep == 0.0:  # a reset: copy, so that NaN/Inf weights (0·NaN = NaN) are gone too
                p.copy_(source.to(p.device, p.dtype)).mul_(take)
            else:
                p.mul_(keep).add_(source.to(p.device, p.dtype), alpha=take)
            touched.append(p)
        report.layers[name] = {
            "sfe": float(squared_frobenius_error(before, layer.weight)),
            "dfi_before": dfi_before,
            "dfi_after": sliced_deviation(layer.weight),
        }
    clear_optimizer_state_(optimizer, touched)
    return report


def _reset_source(
    module: nn.Module,
    initial_state: dict[str, torch.Tensor] | None,
    fresh: Callable[[], nn.Module] | None,
    caller: str,
) -> dict[str, torch.Tensor]:
    """The values a reset moves toward: ``initial_state`` (checked) or a fresh draw."""
    if initial_state is None:
        return dict(fresh_module(module, fresh).named_parameters())
    missing = {name for name, _ in module.named_parameters()} - set(initial_state)
    if missing:
        raise ValueError(
            f"{caller}: initial_state lacks {sorted(missing)}; save it with network.state_dict()"
        )
    return initial_state


def full_reset_(
    module: nn.Module,
    optimizer: Optimizers = None,
    fresh: Callable[[], nn.Module] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
    initial_state: dict[str, torch.Tensor] | None = None,
) -> InterventionReport:
    """Re-draw the weights and biases of the chosen layers from a fresh initialization.

    The "reset" baseline of Nikishin et al. 2022 (primacy bias, arXiv 2205.07802) when applied
    to every layer. ``fresh`` builds a newly initialized network of the same architecture (use
    it when the network has a custom init); by default each layer's ``reset_parameters`` draws
    the new values. With ``initial_state`` (the network's ``state_dict`` saved at
    construction) the layers go back to their own initial values instead: what the FIRE
    paper's DQN does to its linear layers while its convolutions get FIRE (arXiv 2602.08040;
    the authors' code restores the initial Q-network saved with the run). The optimizer state
    of the reset tensors is reset. Normalization layers and free parameters are untouched.
    """
    target = _reset_source(module, initial_state, fresh, "full_reset_")
    return _blend_("reset", module, target, 0.0, 1.0, optimizer, include, exclude)


def shrink_perturb_(
    module: nn.Module,
    shrink: float = 0.8,
    perturb: float = 0.2,
    target: str = "fresh",
    optimizer: Optimizers = None,
    initial_state: dict[str, torch.Tensor] | None = None,
    fresh: Callable[[], nn.Module] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> InterventionReport:
    """Shrink & perturb (Ash & Adams 2020, arXiv 1910.08475): ``θ ← shrink·θ + perturb·θ_t``.

    ``target="fresh"``: ``θ_t`` is a new random initialization (``fresh()`` or re-drawn layers);
    ``target="initial"``: ``θ_t`` is the network's own initial weights, given as
    ``initial_state`` (a ``state_dict`` saved at construction; the FIRE paper's S&P uses
    ``shrink=0.2, perturb=0.8`` toward them). Weights and biases of the chosen layers move;
    their optimizer state is reset.
    """
    if target == "fresh":
        source = _reset_source(module, None, fresh, "shrink_perturb_")
    elif target == "initial":
        if initial_state is None:
            raise ValueError(
                "shrink_perturb_ with target='initial' needs initial_state "
                "(the network's state_dict saved at construction)"
            )
        source = _reset_source(module, initial_state, fresh, "shrink_perturb_")
    else:
        raise ValueError(f"unknown shrink & perturb target {target!r}; use 'fresh' or 'initial'")
    return _blend_("shrink_perturb", module, source, shrink, perturb, optimizer, include, exclude)


# --- ReDo -----------------------------------------------------------------------------------


def unit_scores(activations: torch.Tensor) -> torch.Tensor:
    """ReDo's per-unit score ``s_i = E|h_i| / mean_k E|h_k|`` (Sokar et al. 2023, arXiv 2302.12902).

    ``activations``: ``(batch, units)`` or ``(batch, channels, *spatial)``; conv channels are
    averaged over batch and space.
    """
    if activations.ndim < 2:
        raise ValueError(
            f"activations must be (batch, units, ...), got shape {tuple(activations.shape)}"
        )
    mean_abs = activations.detach().abs().transpose(0, 1).reshape(activations.shape[1], -1).mean(1)
    return mean_abs / (mean_abs.mean() + 1e-9)


def _producers(
    inputs_by_layer: dict[str, torch.Tensor], output_nodes: dict[object, str]
) -> dict[str, set[str]]:
    """For each layer, the layers whose outputs reach its input (walking the autograd graph)."""
    producers: dict[str, set[str]] = {}
    for consumer, x in inputs_by_layer.items():
        found: set[str] = set()
        stack = [x.grad_fn] if x.grad_fn is not None else []
        seen = set()
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            if node in output_nodes:
                found.add(output_nodes[node])
                continue
            stack.extend(next_node for next_node, _ in node.next_functions)
        producers[consumer] = found
    return producers


def outgoing_index(producer: nn.Module, consumer: nn.Module, units: torch.Tensor) -> torch.Tensor:
    """Input positions of ``consumer`` fed by the given output ``units`` of ``producer``.

    Same width: the units themselves. A conv feeding a Linear through a flatten: each channel
    owns a contiguous block of ``in_features / channels`` inputs (channel-major flattening).
    """
    produced = producer.weight.shape[0]
    consumed = consumer.weight.shape[1]
    if consumed == produced:
        return units
    if consumed % produced == 0 and isinstance(consumer, nn.Linear):
        block = consumed // produced
        offsets = torch.arange(block, device=units.device)
        return (units[:, None] * block + offsets[None, :]).reshape(-1)
    raise ValueError(
        f"redo_ cannot map the {produced} outputs of one layer onto the {consumed} inputs of the "
        "next (concatenation or reshaping between them); exclude that layer with `exclude`"
    )


@torch.no_grad()
def reinitialize_units_(
    layer: nn.Module,
    source: nn.Module,
    units: torch.Tensor,
    consumers: Iterable[nn.Module],
    optimizer: Optimizers = None,
) -> float:
    """Give ``units`` of ``layer`` the incoming weights of the same units of ``source`` (a fresh
    layer), a zero bias and zero outgoing weights in each of ``consumers``, and zero the
    optimizer entries of all of those. Returns the squared Frobenius change of the weight."""
    before = layer.weight.clone()
    layer.weight.index_copy_(0, units, source.weight.index_select(0, units))
    zero_optimizer_entries_(optimizer, layer.weight, units, 0)
    if layer.bias is not None:
        layer.bias.index_fill_(0, units, 0.0)
        zero_optimizer_entries_(optimizer, layer.bias, units, 0)
    for consumer in consumers:
        columns = outgoing_index(layer, consumer, units)
        consumer.weight.index_fill_(1, columns, 0.0)
        zero_optimizer_entries_(optimizer, consumer.weight, columns, 1)
    return float(squared_frobenius_error(before, layer.weight))


@dataclass
class LayerTrace:
    """One forward pass of a network through its layers (:func:`trace_hidden_layers`)."""

    candidates: list[tuple[str, nn.Module]]  # hidden layers not excluded, in order
    layers: dict[str, nn.Module]  # every layer by name
    pre_activations: dict[str, torch.Tensor]  # each layer's output, detached
    inputs: dict[str, torch.Tensor]  # each layer's input (its producers' units), detached
    consumers: dict[str, list[str]]  # the layers each layer's outputs feed

    def unit_outputs(self, name: str) -> torch.Tensor:
        """What the units of layer ``name`` hand on, ``(batch, units, positions)``: the input
        of the first layer that reads them, after whatever normalization and nonlinearity lie
        between (a conv's channels, flattened into a Linear, keep their positions)."""
        units = self.layers[name].weight.shape[0]
        read = self.inputs[self.consumers[name][0]]
        return read.reshape(read.shape[0], units, -1)


def trace_hidden_layers(
    module: nn.Module,
    inputs: Inputs,
    heads: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> LayerTrace:
    """Run ``module`` on ``inputs`` recording each layer's output and, from the autograd graph,
    which layers consume it; the candidates are the hidden layers (not ``heads``, not
    ``exclude``), those unit-level interventions (ReDo, continual backprop) act on."""
    candidates = hidden_layers(module, heads)
    if exclude:
        skip = {n for n, _ in select_layers(module, include=exclude)}
        candidates = [(n, m) for n, m in candidates if n not in skip]
    layers = dict(named_layers(module))
    pre_activations: dict[str, torch.Tensor] = {}
    layer_inputs: dict[str, torch.Tensor] = {}
    output_nodes: dict[object, str] = {}

    def record(name: str):
        def hook(_mod, args, output):
            pre_activations[name] = output.detach()
            layer_inputs[name] = args[0]
            if output.grad_fn is not None:
                output_nodes[output.grad_fn] = name

        return hook

    handles = [layer.register_forward_hook(record(name)) for name, layer in layers.items()]
    try:
        with torch.enable_grad():
            call_module(module, inputs)
    finally:
        for h in handles:
            h.remove()
    consumers: dict[str, list[str]] = {}
    for consumer, sources in _producers(layer_inputs, output_nodes).items():
        for source in sources:
            consumers.setdefault(source, []).append(consumer)
    inputs = {name: x.detach() for name, x in layer_inputs.items()}
    return LayerTrace(candidates, layers, pre_activations, inputs, consumers)


def redo_(
    module: nn.Module,
    inputs: Inputs,
    tau: float = 0.025,
    optimizer: Optimizers = None,
    heads: Iterable[str] | None = None,
    activation: Callable[[torch.Tensor], torch.Tensor] = F.relu,
    fresh: Callable[[], nn.Module] | None = None,
    exclude: Iterable[str] | None = None,
) -> InterventionReport:
    """ReDo: recycle the τ-dormant units of each hidden layer (Sokar et al. 2023, arXiv 2302.12902).

    Runs ``module`` on the probe batch ``inputs`` (a tensor or a tuple of the network's
    arguments); a unit of a hidden layer is dormant when its score
    (:func:`unit_scores` of ``activation(pre-activation)``) is ``<= tau``. For each dormant
    unit: its incoming weights are re-drawn from a fresh initialization (``fresh()`` or
    ``reset_parameters``), its bias zeroed, its outgoing weights in every consuming layer
    zeroed, and the Adam moments of all those entries zeroed. Output layers (``heads``; the last
    layer by default) are never recycled. Consumers are found from the autograd graph of the
    forward pass, so any wiring of layers works, as long as a consumer's inputs map onto the
    producer's units (same width, or a conv flattened into a Linear).
    """
    trace = trace_hidden_layers(module, inputs, heads, exclude)
    source_net = fresh_module(module, fresh)
    source_layers = dict(named_layers(source_net))
    report = InterventionReport("redo")
    with torch.no_grad():
        for name, layer in trace.candidates:
            if name not in trace.pre_activations:
                continue
            scores = unit_scores(activation(trace.pre_activations[name]))
            dormant = torch.nonzero(scores <= tau).flatten()
            report.layers[name] = {
                "dormant": float(dormant.numel()),
                "units": float(scores.numel()),
            }
            if dormant.numel() == 0:
                continue
            consumers = [trace.layers[c] for c in trace.consumers.get(name, [])]
            sfe = reinitialize_units_(layer, source_layers[name], dormant, consumers, optimizer)
            report.layers[name]["sfe"] = sfe
    report.reinitialized = any(metrics["dormant"] > 0 for metrics in report.layers.values())
    return report
