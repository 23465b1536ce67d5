"""Permutation symmetry of hidden units: neuron matching, interpolation barriers, merging.

Permuting the hidden units of an MLP or CNN (the rows of a layer's weight and bias, and the
matching input axis of the layers that read them) leaves the function unchanged. Two trained
networks may therefore compute alike with their units in different orders. This module finds
the order that lines them up and measures how far apart the two networks really are:

- :func:`infer_wiring` / :class:`Wiring`: which layer reads which hidden layer's units;
- :func:`permute_`: apply unit permutations in place (the function is unchanged);
- :func:`activation_matching`: permutations from activation correlations on a probe batch, with
  the identifiability report (matched, identity and random-permutation correlations; the rate
  of units identified with one unit of the other network, :func:`identifiable_units`);
- :func:`weight_matching`: data-free permutations by coordinate descent (Git Re-Basin);
- :func:`realization_report`: effective symmetry within one network: each layer's input
  subspace (:func:`input_subspace`, :func:`subspace_coherence`) and, on it, what it costs a
  neuron to realize another's function (:func:`realization_costs`) or to swap roles with it
  (:func:`swap_costs`);
- :func:`interpolation_barrier`: the loss along the straight line between two networks,
  unaligned or after matching, evaluated for all points at once with ``torch.func.vmap``, with
  the loss barrier and the relative barrier (:func:`relative_barrier`);
- :func:`merge`: the network at ``(1 − α)θ_A + α·π(θ_B)``, optionally with REPAIR.

Every matcher aligns **B onto A**: ``permute_(net_b, result.perms)`` makes B's unit ``i`` the
one that corresponds to A's unit ``i``. Matchers, barriers and merges never modify their inputs.

Supported networks: Linear and Conv layers (no groups) joined by elementwise activations,
``nn.Flatten`` between the last conv and the first linear, any number of heads (output layers,
never permuted). Layers are read in registration order: each hidden layer feeds the next layer,
and a head is followed by the heads that read the same features (an actor's mean and log-std)
or by the start of another chain (the second critic of a twin Q). Normalization layers are
refused (BatchNorm's running statistics everywhere, even unaligned). Other wirings can be
described with an explicit :class:`Wiring`.

Sources: permutation symmetry and loss barriers (Entezari et al. 2022, arXiv 2110.06296);
activation and weight matching (Git Re-Basin, Ainsworth et al. 2023, arXiv 2209.04836; Li et al.
2015, arXiv 1511.07543); the identifiability report, realization and swap costs, subspace
coherence and the relative barrier (Bürgin, Herbst et al. 2026, arXiv 2606.04754, and its code
``Vuenc/neuron-identifiability``); REPAIR (Jordan et al. 2023, arXiv 2211.08403).

The reinforcement-learning side (rebuild a run's networks from its checkpoint, a frozen probe
batch, TD and actor losses) and the command live in :mod:`experiments.symmetry`, because this
library imports neither ``agents`` nor ``envs``::

    python -m experiments.symmetry runs/A runs/B --network critic --probe 512
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from plasticity._layers import Inputs, call_module, head_names, named_layers

__all__ = [
    "ActivationMatching",
    "Barrier",
    "InputSubspace",
    "LayerRealization",
    "UnitCorrelations",
    "WeightMatching",
    "Wiring",
    "activation_matching",
    "identifiability_chance",
    "identifiable_units",
    "infer_wiring",
    "input_subspace",
    "interpolation_barrier",
    "layer_inputs",
    "merge",
    "pearson",
    "permute_",
    "realization_costs",
    "realization_report",
    "relative_barrier",
    "subspace_coherence",
    "swap_costs",
    "unit_activations",
    "weight_matching",
]

Perms = Mapping[str, torch.Tensor]

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


# --- wiring ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Wiring:
    """Which layers read the units of each permutable (hidden) layer.

    ``readers[name]`` lists the layers whose input is the activated output of layer ``name``.
    Permuting ``name``'s units permutes its weight rows and bias, and the input axis of each
    reader (for a conv flattened into a Linear: the block of inputs each channel owns). Heads
    are never permuted, so they have no entry. Each layer reads at most one permutable layer.
    """

    readers: dict[str, tuple[str, ...]]

    def __post_init__(self):
        seen: dict[str, str] = {}
        for name, readers in self.readers.items():
            for reader in readers:
                if reader in seen:
                    raise ValueError(
                        f"layer {reader} reads both {seen[reader]} and {name}; concatenated "
                        "inputs are not supported"
                    )
                seen[reader] = name

    @cached_property
    def sources(self) -> dict[str, str]:
        """For each layer that reads a permutable layer: that layer."""
        return {reader: name for name, readers in self.readers.items() for reader in readers}


def infer_wiring(net: nn.Module, heads: Sequence[str] | None = None) -> Wiring:
    """The :class:`Wiring` of ``net`` from the registration order of its layers.

    ``heads`` are the output layers (default: ``net.heads`` when the network names them, as the
    agents' networks do, else the last layer). A hidden layer feeds the next layer; when that is
    a head, also the heads right after it. Shapes are checked, so a misread network fails here
    with a ``ValueError`` instead of being permuted wrongly.
    """
    layers = named_layers(net)
    heads = head_names(net, heads if heads is not None else getattr(net, "heads", None))
    _refuse_running_statistics(net, "permuting the units would leave in their old order")
    for name, module in net.named_modules():
        own_params = any(True for _ in module.parameters(recurse=False))
        if module is not net and own_params and not isinstance(module, (*_CONV_TYPES, nn.Linear)):
            raise ValueError(
                f"{name} is a {type(module).__name__}: only Linear/Conv layers joined by "
                "elementwise activations can be permuted"
            )
        if getattr(module, "groups", 1) != 1:
            raise ValueError(f"{name} is a grouped convolution, which cannot be permuted")
    readers: dict[str, tuple[str, ...]] = {}
    for i, (name, layer) in enumerate(layers):
        if name in heads:
            continue
        found: list[str] = []
        for later, later_layer in layers[i + 1 :]:
            if later not in heads and found:
                break  # a hidden layer after heads starts another chain
            _check_fits(name, layer, later, later_layer)
            found.append(later)
            if later not in heads:
                break
        if not found:
            raise ValueError(f"layer {name} feeds no later layer; name it as a head")
        readers[name] = tuple(found)
    return Wiring(readers)


def _refuse_running_statistics(net: nn.Module, consequence: str) -> None:
    """One-line ``ValueError`` for a module with running statistics (BatchNorm, or InstanceNorm
    that tracks them): per-unit buffers that the functions here do not handle."""
    for name, module in net.named_modules():
        if getattr(module, "running_mean", None) is not None:
            raise ValueError(
                f"{name or 'the network'} is a {type(module).__name__} with running statistics, "
                f"which {consequence}; build it with track_running_stats=False or without it"
            )


def _check_fits(name: str, layer: nn.Module, reader: str, reader_layer: nn.Module) -> None:
    units, inputs = layer.weight.shape[0], reader_layer.weight.shape[1]
    flattened = isinstance(layer, _CONV_TYPES) and isinstance(reader_layer, nn.Linear)
    if inputs == units or (flattened and inputs % units == 0):
        return
    raise ValueError(
        f"layer {reader} ({inputs} inputs) cannot read the {units} units of {name}: the "
        "registration order does not follow the data flow; pass heads=, or an explicit Wiring"
    )


def _layers_of(net: nn.Module, wiring: Wiring) -> dict[str, nn.Module]:
    _refuse_running_statistics(net, "permuting the units would leave in their old order")
    layers = dict(named_layers(net))
    missing = (set(wiring.readers) | set(wiring.sources)) - set(layers)
    if missing:
        raise ValueError(f"the wiring names layers that {type(net).__name__} lacks: {missing}")
    return layers


def _key(layer: str, param: str) -> str:
    return f"{layer}.{param}" if layer else param


# --- permutations ---------------------------------------------------------------------------


def _perms_of(perms) -> dict[str, torch.Tensor]:
    """A permutation dict from a dict or from a matcher's result (its ``.perms``)."""
    return dict(getattr(perms, "perms", perms))


def _check_perms(perms: Perms, wiring: Wiring, layers: dict[str, nn.Module]) -> None:
    for name, perm in perms.items():
        if name not in wiring.readers:
            raise ValueError(
                f"{name} is not a permutable layer; permutable: {sorted(wiring.readers)}"
            )
        units = layers[name].weight.shape[0]
        expected = torch.arange(units)
        if perm.shape != (units,) or not torch.equal(perm.detach().cpu().sort().values, expected):
            raise ValueError(f"perms[{name!r}] is not a permutation of the {units} units")


def _input_permuted(weight: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``weight`` with its input axis permuted by unit; a flattened conv's blocks move whole."""
    return weight.unflatten(1, (len(perm), -1)).index_select(1, perm).flatten(1, 2)


def _permuted(params: dict[str, torch.Tensor], wiring: Wiring, perms: Perms) -> dict:
    """New tensors for the parameters that ``perms`` moves; the others as they are."""
    out = dict(params)
    for name, perm in perms.items():
        perm = perm.to(params[_key(name, "weight")].device)
        for param in ("weight", "bias"):
            if _key(name, param) in out:
                out[_key(name, param)] = out[_key(name, param)].index_select(0, perm)
        for reader in wiring.readers[name]:
            key = _key(reader, "weight")
            out[key] = _input_permuted(out[key], perm)
    return out


def _detached(net: nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach() for name, p in net.named_parameters()}


@torch.no_grad()
def permute_(net: nn.Module, perms, wiring: Wiring | None = None) -> nn.Module:
    """Permute hidden units of ``net`` in place; the function it computes is unchanged.

    ``perms[name]`` (or a matcher's result) is a permutation of layer ``name``'s units: the new
    unit ``i`` is the old unit ``perms[name][i]``. Layers left out keep their order. Optimizer
    state is not permuted: permute a network before building its optimizer. Returns ``net``.
    """
    wiring = wiring or infer_wiring(net)
    perms = _perms_of(perms)
    _check_perms(perms, wiring, _layers_of(net, wiring))
    params, current = dict(net.named_parameters()), _detached(net)
    for name, value in _permuted(current, wiring, perms).items():
        if value is not current[name]:
            params[name].copy_(value)
    return net


def _random_perms(net: nn.Module, wiring: Wiring, generator: torch.Generator) -> dict:
    layers = dict(named_layers(net))
    return {
        name: torch.randperm(layers[name].weight.shape[0], generator=generator)
        for name in wiring.readers
    }


def _check_same_shapes(net_a: nn.Module, net_b: nn.Module) -> None:
    shapes_a = {k: tuple(v.shape) for k, v in net_a.named_parameters()}
    shapes_b = {k: tuple(v.shape) for k, v in net_b.named_parameters()}
    if shapes_a != shapes_b:
        diff = sorted(
            k for k in shapes_a.keys() | shapes_b.keys() if shapes_a.get(k) != shapes_b.get(k)
        )
        raise ValueError(
            f"the two networks differ in {diff[:3]}: both must have the same architecture"
        )


def _assignment(similarity: torch.Tensor) -> torch.Tensor:
    """The permutation ``p`` maximizing ``Σ_i similarity[i, p[i]]`` (Jonker–Volgenant)."""
    rows, cols = linear_sum_assignment(similarity.cpu().numpy(), maximize=True)
    assert (rows == range(len(rows))).all()
    return torch.as_tensor(cols, dtype=torch.long)


# --- activation matching --------------------------------------------------------------------


def identifiable_units(similarity: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """Which units of A are identified with their ``partner`` in B.

    ``similarity[i, j]`` compares A's unit ``i`` with B's unit ``j`` (higher: more alike). A's
    unit ``i`` is identified with B's unit ``partner[i]`` when each is the other's strict best
    match: ``partner[i]`` is more like ``i`` than any other unit of B is, and ``i`` more like
    ``partner[i]`` than any other unit of A is. A tie (a unit dead on the probe correlates 0
    with everything) identifies nothing.
    """
    # a row and a column of -inf, so that every row and column has a second best
    padded = F.pad(similarity, (0, 1, 0, 1), value=-math.inf)
    units = torch.arange(len(partner))
    paired = similarity[units, partner]
    by_row, by_column = padded.topk(2, dim=1), padded.topk(2, dim=0)
    row_best_is_partner = by_row.indices[units, 0] == partner
    other_in_b = torch.where(row_best_is_partner, by_row.values[units, 1], by_row.values[units, 0])
    column_best_is_unit = by_column.indices[0, partner] == units
    other_in_a = torch.where(
        column_best_is_unit, by_column.values[1, partner], by_column.values[0, partner]
    )
    return (paired > other_in_b) & (paired > other_in_a)


def identifiability_chance(similarity: torch.Tensor) -> float:
    """The identification rate expected when B's units are in a uniformly random order.

    A unit of A can be identified only with its mutual strict best match in B, which a random
    order puts at the unit's own index with probability ``1/n``: the rate is (units of A that
    have such a match) ``/ n²``.
    """
    n = len(similarity)
    return float(identifiable_units(similarity, similarity.argmax(1)).sum()) / n**2


@dataclass
class UnitCorrelations:
    """Pearson correlations between one layer's units in A and in B on the probe batch.

    ``correlations[i, j]`` correlates A's unit ``i`` with B's unit ``j``; ``matched[i]`` is
    A's unit ``i`` with B's unit ``perm[i]`` (the optimal match), ``identity[i]`` with B's unit
    ``i``. A unit that is constant on the probe (a dead ReLU) correlates 0 with everything.
    """

    perm: torch.Tensor
    correlations: torch.Tensor
    random: float
    """mean correlation under uniformly random permutations (the chance level)"""

    @property
    def matched(self) -> torch.Tensor:
        return self.correlations[torch.arange(len(self.perm)), self.perm]

    @property
    def identity(self) -> torch.Tensor:
        return self.correlations.diagonal()

    @property
    def optimal_mean(self) -> float:
        return float(self.matched.mean())

    @property
    def identity_mean(self) -> float:
        return float(self.identity.mean())

    @property
    def gap(self) -> float:
        """Identifiability gap: optimal minus identity mean. ≈ 0: units kept their identity."""
        return self.optimal_mean - self.identity_mean

    @property
    def identified(self) -> torch.Tensor:
        """Units of A identified with B's unit of the same index (:func:`identifiable_units`):
        neuron identifiability across runs in the sense of arXiv 2606.04754."""
        return identifiable_units(self.correlations, torch.arange(len(self.perm)))

    @property
    def identified_matched(self) -> torch.Tensor:
        """Units of A identified with the B unit the optimal permutation pairs them with: the
        units that have one unambiguous counterpart in B, wherever B put it."""
        return identifiable_units(self.correlations, self.perm)

    @property
    def identified_rate(self) -> float:
        return float(self.identified.double().mean())

    @property
    def identified_matched_rate(self) -> float:
        return float(self.identified_matched.double().mean())

    @property
    def chance_rate(self) -> float:
        """The identification rate of B's units in a random order
        (:func:`identifiability_chance`)."""
        return identifiability_chance(self.correlations)


@dataclass
class ActivationMatching:
    """Result of :func:`activation_matching`: ``perms`` (B onto A) and per-layer correlations.

    The network-level means weight every unit of every permuted layer equally.
    """

    perms: dict[str, torch.Tensor]
    layers: dict[str, UnitCorrelations]

    @property
    def matched(self) -> torch.Tensor:
        """Every unit's matched correlation, layer after layer."""
        return torch.cat([c.matched for c in self.layers.values()])

    @property
    def optimal_mean(self) -> float:
        return float(self.matched.mean())

    @property
    def identity_mean(self) -> float:
        return float(torch.cat([c.identity for c in self.layers.values()]).mean())

    @property
    def gap(self) -> float:
        """Identifiability gap of the whole network: optimal minus identity mean."""
        return self.optimal_mean - self.identity_mean

    def _unit_weighted(self, rate: Callable[[UnitCorrelations], float]) -> float:
        units = [len(c.perm) for c in self.layers.values()]
        total = sum(rate(c) * n for c, n in zip(self.layers.values(), units, strict=True))
        return total / sum(units)

    @property
    def random_mean(self) -> float:
        return self._unit_weighted(lambda c: c.random)

    @property
    def identified_rate(self) -> float:
        """Fraction of units identified with B's unit of the same index (arXiv 2606.04754)."""
        return self._unit_weighted(lambda c: c.identified_rate)

    @property
    def identified_matched_rate(self) -> float:
        """Fraction of units with one unambiguous counterpart in B under the optimal matching."""
        return self._unit_weighted(lambda c: c.identified_matched_rate)

    @property
    def chance_rate(self) -> float:
        """The identification rate of B's units in a random order, over all units."""
        return self._unit_weighted(lambda c: c.chance_rate)


def _unit_samples(x: torch.Tensor, reader: nn.Module, units: int) -> torch.Tensor:
    """A reader's input as ``(samples, units)``: conv positions count as samples."""
    if isinstance(reader, nn.Linear):
        x = x.reshape(-1, x.shape[-1]).unflatten(1, (units, -1))
    else:
        x = x.flatten(2)
    return x.transpose(1, 2).reshape(-1, units)


@torch.no_grad()
def unit_activations(
    net: nn.Module, probe: Inputs, wiring: Wiring | None = None
) -> dict[str, torch.Tensor]:
    """The activated output of each permutable layer on ``probe``, ``(samples, units)``.

    Read as the input of the layer's first reader, so any elementwise activation (a module or a
    function call in ``forward``) is included; conv feature maps give one sample per position.
    """
    wiring = wiring or infer_wiring(net)
    layers = _layers_of(net, wiring)
    seen: dict[str, torch.Tensor] = {}

    def record(name: str):
        def hook(_module, args):
            if name in seen:
                raise ValueError(f"{wiring.readers[name][0]} runs twice in one forward pass")
            seen[name] = args[0].detach()

        return hook

    handles = [
        layers[readers[0]].register_forward_pre_hook(record(name))
        for name, readers in wiring.readers.items()
    ]
    try:
        call_module(net, probe)
    finally:
        for handle in handles:
            handle.remove()
    return {
        name: _unit_samples(seen[name], layers[readers[0]], layers[name].weight.shape[0])
        for name, readers in wiring.readers.items()
    }


def pearson(za: torch.Tensor, zb: torch.Tensor) -> torch.Tensor:
    """Correlations ``C[i, j]`` of column ``i`` of ``za`` with column ``j`` of ``zb`` (float64).

    A constant column (zero spread, up to rounding) correlates 0 with everything.
    """
    za, zb = za.double(), zb.double()
    # spread below rounding level of the values themselves: constant
    floor_a = 1e-9 * za.abs().amax(0) * math.sqrt(len(za))
    floor_b = 1e-9 * zb.abs().amax(0) * math.sqrt(len(zb))
    za, zb = za - za.mean(0), zb - zb.mean(0)
    norm_a, norm_b = za.norm(dim=0), zb.norm(dim=0)
    live_a, live_b = norm_a > floor_a, norm_b > floor_b
    live = torch.outer(live_a, live_b)
    denominator = torch.where(live, torch.outer(norm_a, norm_b), torch.ones((), dtype=za.dtype))
    return torch.where(live, (za.T @ zb) / denominator, torch.zeros((), dtype=za.dtype))


def activation_matching(
    net_a: nn.Module,
    net_b: nn.Module,
    probe: Inputs,
    wiring: Wiring | None = None,
    n_random: int = 100,
    seed: int = 0,
) -> ActivationMatching:
    """Match B's hidden units to A's by the correlation of their activations on ``probe``.

    For each permutable layer, independently: Pearson correlations ``C[i, j]`` between A's unit
    ``i`` and B's unit ``j`` over the probe samples (conv positions included), then the
    assignment maximizing ``Σ_i C[i, p[i]]`` (``scipy.optimize.linear_sum_assignment``); ties,
    such as units dead on the probe in both networks, keep their index. Layers can be matched
    independently because permuting one layer does not change the activations of the others,
    only their order (Li et al. 2015, arXiv 1511.07543; Git Re-Basin,
    arXiv 2209.04836).

    The report (:class:`ActivationMatching`) gives, per layer and for the whole network, the
    matched correlations and their mean under the optimal permutation, under the identity and
    under ``n_random`` random permutations: the identifiability measure of arXiv 2606.04754's
    code. A small gap between optimal and identity means B's units kept A's identities.

    Per unit, the report also says which units are identified (:func:`identifiable_units`): the
    paper calls neurons identifiable across runs when neuron ``i`` of A and neuron ``i`` of B
    realize the same function, and its code measures this through the objectives above, for
    whole layers. Our per-unit reading: A's unit ``i`` is identified with B's unit ``i`` when
    the two are each other's strict best match by correlation (``identified``; its rate
    against ``chance``, the rate for B's units in a random order). ``identified_matched``
    applies the same test to the optimal pairing: the units that have one unambiguous
    counterpart in B at any index (for standard networks, whose units no architecture pins
    to an index, the question that can have a nonzero answer across seeds).
    """
    wiring = wiring or infer_wiring(net_a)
    _check_same_shapes(net_a, net_b)
    acts_a = unit_activations(net_a, probe, wiring)
    acts_b = unit_activations(net_b, probe, wiring)
    generator = torch.Generator().manual_seed(seed)
    perms, layers = {}, {}
    for name in wiring.readers:
        corr = pearson(acts_a[name], acts_b[name])
        # Ties go to the identity: a unit dead on the probe correlates 0 with every unit, so
        # nothing says where it belongs, and moving it would pair weights of unrelated units.
        perm = _assignment(corr + 1e-9 * torch.eye(len(corr), dtype=corr.dtype))
        units = torch.arange(len(perm))
        random = math.nan  # no draws asked for
        if n_random > 0:
            draws = [torch.randperm(len(perm), generator=generator) for _ in range(n_random)]
            random = float(corr[units, torch.stack(draws)].mean())
        perms[name] = perm
        layers[name] = UnitCorrelations(perm=perm, correlations=corr, random=random)
    return ActivationMatching(perms, layers)


# --- weight matching ------------------------------------------------------------------------


@dataclass
class WeightMatching:
    """Result of :func:`weight_matching`: ``perms`` (B onto A) and how close they bring B.

    ``objective`` is ``Σ ⟨θ_A, π(θ_B)⟩`` over all parameters at the returned permutations,
    ``identity_objective`` the same without permuting; ``distance`` and ``identity_distance``
    are the matching ``‖θ_A − π(θ_B)‖₂`` (maximizing the one minimizes the other).
    """

    perms: dict[str, torch.Tensor]
    objective: float
    identity_objective: float
    distance: float
    identity_distance: float


def _unit_rows(weight: torch.Tensor, units: int) -> torch.Tensor:
    """A reader's weight as one row per input unit (a flattened conv's block in one row)."""
    return weight.unflatten(1, (units, -1)).transpose(0, 1).reshape(units, -1)


def _similarity(
    name: str,
    a: dict[str, torch.Tensor],
    b: dict[str, torch.Tensor],
    perms: dict[str, torch.Tensor],
    wiring: Wiring,
    outgoing: bool = True,
) -> torch.Tensor:
    """``S[i, j]``: the inner product gained by placing B's unit ``j`` at A's unit ``i``, with
    every other permutation held fixed: the unit's incoming weights and bias, and (unless
    ``outgoing=False``) its outgoing weights in each reader."""
    w_a, w_b = a[_key(name, "weight")], b[_key(name, "weight")]
    units = w_a.shape[0]
    if name in wiring.sources:  # the layer's own inputs come from a permuted layer
        w_b = _input_permuted(w_b, perms[wiring.sources[name]])
    sim = w_a.reshape(units, -1) @ w_b.reshape(units, -1).T
    if _key(name, "bias") in a:
        sim += torch.outer(a[_key(name, "bias")], b[_key(name, "bias")])
    for reader in wiring.readers[name] if outgoing else ():
        r_a, r_b = a[_key(reader, "weight")], b[_key(reader, "weight")]
        if reader in perms:
            r_b = r_b.index_select(0, perms[reader])
        sim += _unit_rows(r_a, units) @ _unit_rows(r_b, units).T
    return sim


def _inner(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return float(sum((a[k] * b[k]).sum() for k in a))


def weight_matching(
    net_a: nn.Module,
    net_b: nn.Module,
    wiring: Wiring | None = None,
    restarts: int = 5,
    max_iter: int = 100,
    seed: int = 0,
) -> WeightMatching:
    """Match B's hidden units to A's without data, by their weights (Git Re-Basin).

    Maximizes ``Σ_l ⟨W_l^A, P_l W_l^B P_{l−1}ᵀ⟩`` (biases included) over the permutations,
    i.e. minimizes ``‖θ_A − π(θ_B)‖``, by coordinate descent (Ainsworth et al. 2023, arXiv
    2209.04836, Algorithm 1): visit the layers in random order and solve one linear assignment
    per layer with the others fixed, until a sweep improves nothing or ``max_iter`` sweeps.

    The first restart starts from one pass through the layers in order, matching each layer's
    incoming weights and bias given the permutation already chosen for its inputs; the others
    start from random permutations; the best objective wins, the identity included. (Started
    from the identity, the descent can lock a wide layer into a wrong permutation before its
    inputs are matched and stay there, even when B is an exact permutation of A.) Computed in
    float64 on the CPU.
    """
    wiring = wiring or infer_wiring(net_a)
    _check_same_shapes(net_a, net_b)
    layers = _layers_of(net_a, wiring)
    a = {k: v.to("cpu", torch.float64) for k, v in _detached(net_a).items()}
    b = {k: v.to("cpu", torch.float64) for k, v in _detached(net_b).items()}
    generator = torch.Generator().manual_seed(seed)
    names = list(wiring.readers)
    identity = {n: torch.arange(layers[n].weight.shape[0]) for n in names}
    best = (_inner(a, b), identity)  # never return worse than leaving B as it is
    for restart in range(max(restarts, 1)):
        if restart == 0:
            perms = dict(identity)
            for name in names:  # in registration order: inputs before the layers reading them
                perms[name] = _assignment(_similarity(name, a, b, perms, wiring, outgoing=False))
        else:
            perms = _random_perms(net_a, wiring, generator)
        for _ in range(max_iter):
            improved = False
            for index in torch.randperm(len(names), generator=generator).tolist():
                name = names[index]
                sim = _similarity(name, a, b, perms, wiring)
                new = _assignment(sim)
                rows = torch.arange(len(new))
                old_value, new_value = (
                    float(sim[rows, perms[name]].sum()),
                    float(sim[rows, new].sum()),
                )
                if new_value > old_value + 1e-12 * max(1.0, abs(old_value)):
                    perms[name], improved = new, True
            if not improved:
                break
        objective = _inner(a, _permuted(b, wiring, perms))
        if objective > best[0]:
            best = (objective, perms)
    objective, perms = best
    norms, unmoved = _inner(a, a) + _inner(b, b), _inner(a, b)
    return WeightMatching(
        perms=perms,
        objective=objective,
        identity_objective=unmoved,
        distance=math.sqrt(max(norms - 2 * objective, 0.0)),
        identity_distance=math.sqrt(max(norms - 2 * unmoved, 0.0)),
    )


# --- effective symmetry: realization and swap costs ----------------------------------------


@dataclass
class InputSubspace:
    """The principal subspace of a layer's centred inputs that covers a fraction of their
    variance: ``basis`` is ``(inputs, k)`` with orthonormal columns, ``explained`` the fraction
    of the variance it covers (at least the fraction asked for)."""

    basis: torch.Tensor
    explained: float

    @property
    def dimension(self) -> int:
        return self.basis.shape[1]

    @property
    def full_dimension(self) -> int:
        return self.basis.shape[0]

    @property
    def coherence(self) -> float:
        return subspace_coherence(self.basis)


def input_subspace(inputs: torch.Tensor, variance: float = 0.9) -> InputSubspace:
    """The smallest principal subspace of ``inputs`` ``(samples, features)``, centred, whose
    components explain at least ``variance`` of the total (PCA by SVD, in float64), as
    arXiv 2606.04754's code estimates a layer's input support (90% by default).

    Inputs that do not vary at all (a layer behind units all dead on the probe) have the
    0-dimensional subspace, which explains all of their (zero) variance.
    """
    if not 0 < variance <= 1:
        raise ValueError(f"variance must be a fraction in (0, 1], got {variance}")
    centred = inputs.double() - inputs.double().mean(0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    power = singular.square()
    if power.sum() == 0:
        return InputSubspace(basis=vh[:0].T, explained=1.0)
    cumulative = power.cumsum(0) / power.sum()
    # the first k whose share reaches the fraction; rounding can leave the total just below 1
    k = min(int(torch.searchsorted(cumulative, variance)), len(cumulative) - 1) + 1
    return InputSubspace(basis=vh[:k].T, explained=float(cumulative[k - 1]))


def subspace_coherence(basis: torch.Tensor) -> float:
    """``ν(U) = max_r ‖U_{r,:}‖²`` of an orthonormal basis ``(n, k)``, between ``k/n``
    (spread over all coordinates) and 1 (contains a coordinate axis) (arXiv 2606.04754)."""
    return float(basis.square().sum(1).max())


def realization_costs(
    weight: torch.Tensor,
    basis: torch.Tensor,
    trainable: torch.Tensor | None = None,
    fixed: torch.Tensor | None = None,
) -> torch.Tensor:
    """``C[i, j]``: the norm cost for neuron ``i`` to realize neuron ``j``'s function on the
    input subspace ``basis`` (arXiv 2606.04754, the closed form of its code's
    ``measure_realization_cost.py``).

    ``weight`` is the layer's effective weight ``(units, inputs)``; ``trainable`` marks its
    trainable entries (default: all), ``fixed`` is the part of the effective weight that
    training cannot change (default: ``weight`` where not trainable, a W-asymmetric layer's
    fixed entries; a syre layer passes its fixed noise). On the subspace ``U``, neuron ``j``
    computes from ``a_j = Uᵀ w_j``; neuron ``i`` reaches a given ``a`` at least at the cost
    ``min ‖d_i ⊙ w‖² s.t. Uᵀ(d_i ⊙ w) + v_i = a``, which is the squared Mahalanobis distance
    ``(a − v_i)ᵀ S_i⁺ (a − v_i)`` with centre ``v_i = Uᵀ f_i`` and ``S_i = Uᵀ diag(d_i) U``.
    Biases are free and not counted. For a standard layer ``C[i, j] = ‖a_j‖²`` for every ``i``.
    Computed in float64.
    """
    weight, basis = weight.detach().double(), basis.double()
    if trainable is None:
        trainable = torch.ones_like(weight)
    trainable = trainable.double()
    if trainable.shape != weight.shape or not ((trainable == 0) | (trainable == 1)).all():
        raise ValueError("trainable must be a 0/1 mask shaped like the weight")
    fixed = (1 - trainable) * weight if fixed is None else fixed.detach().double()
    coefficients = weight @ basis  # a_j, one row per neuron
    centres = fixed @ basis  # v_i
    grams = torch.einsum("dk,id,dl->ikl", basis, trainable, basis)  # S_i
    inverses = torch.linalg.pinv(grams, hermitian=True)
    offsets = coefficients[None, :, :] - centres[:, None, :]  # [i, j] = a_j − v_i
    return torch.einsum("ijk,ikl,ijl->ij", offsets, inverses, offsets)


def swap_costs(costs: torch.Tensor) -> torch.Tensor:
    """``T[i, j] = C[i, j] + C[j, i] − C[i, i] − C[j, j]``: the extra norm neurons ``i`` and ``j``
    pay to exchange their roles (arXiv 2606.04754), from :func:`realization_costs`. 0 for every
    pair of a standard layer: its neurons are exactly exchangeable."""
    own = costs.diagonal()
    return costs + costs.T - own[:, None] - own[None, :]


@dataclass
class LayerRealization:
    """:func:`realization_report` of one layer: its input subspace and, on it, the
    realization costs ``costs[i, j]`` (neuron ``i`` realizing neuron ``j``) and swap costs."""

    subspace: InputSubspace
    costs: torch.Tensor
    swaps: torch.Tensor


@torch.no_grad()
def layer_inputs(net: nn.Module, probe: Inputs, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """What each named Linear layer reads on ``probe``, ``(samples, inputs)``."""
    layers = dict(named_layers(net))
    for name in names:
        if not isinstance(layers.get(name), nn.Linear):
            raise ValueError(f"{name} is not a Linear layer of {type(net).__name__}")
    seen: dict[str, torch.Tensor] = {}

    def record(name: str):
        def hook(_module, args):
            seen[name] = args[0].detach().reshape(-1, args[0].shape[-1])

        return hook

    handles = [layers[name].register_forward_pre_hook(record(name)) for name in names]
    try:
        call_module(net, probe)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def realization_report(
    net: nn.Module,
    probe: Inputs,
    variance: float = 0.9,
    layers: Sequence[str] | None = None,
    trainable: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, LayerRealization]:
    """Effective symmetry of each hidden Linear layer on ``probe`` (arXiv 2606.04754).

    For each layer: the principal subspace of its inputs on the probe covering ``variance``
    (dimension, explained fraction, coherence), and on it the :func:`realization_costs` and
    :func:`swap_costs` of its neurons. ``layers``: the layers to measure (default: the hidden
    Linear layers of :func:`infer_wiring`; convolutions are left out, the costs being defined
    for fully connected neurons). ``trainable[name]``: the layer's trainable-entry mask, for a
    layer with fixed entries; a standard layer's swap costs are 0 whatever its inputs.
    """
    modules = dict(named_layers(net))
    if layers is None:
        layers = [n for n in infer_wiring(net).readers if isinstance(modules[n], nn.Linear)]
    trainable = trainable or {}
    inputs = layer_inputs(net, probe, layers)
    report = {}
    for name in layers:
        if name not in inputs:
            raise ValueError(f"layer {name} did not run on the probe")
        subspace = input_subspace(inputs[name], variance)
        costs = realization_costs(modules[name].weight, subspace.basis, trainable.get(name))
        report[name] = LayerRealization(subspace, costs, swap_costs(costs))
    return report


# --- interpolation --------------------------------------------------------------------------


@dataclass
class Barrier:
    """The loss along ``θ_α = (1 − α)θ_A + αθ_B`` (B aligned first when ``perms`` is set).

    ``peak = max_α [L(θ_α) − ((1 − α)L_A + αL_B)]`` (Entezari et al. 2022, arXiv 2110.06296):
    how far the path rises above the straight line between the end losses; ≈ 0 means the two
    networks are linearly mode connected. ``midpoint = L(θ_½) − (L_A + L_B)/2``.
    """

    alphas: torch.Tensor
    losses: torch.Tensor
    peak: float
    midpoint: float
    perms: dict[str, torch.Tensor] | None

    @property
    def loss_a(self) -> float:
        return float(self.losses[0])

    @property
    def loss_b(self) -> float:
        return float(self.losses[-1])

    @property
    def linear(self) -> torch.Tensor:
        """The straight line ``(1 − α)L_A + αL_B`` the barrier is measured against."""
        return (1 - self.alphas) * self.losses[0] + self.alphas * self.losses[-1]

    @property
    def relative(self) -> float:
        """The loss's :func:`relative_barrier`, in percent of the better end's loss."""
        return relative_barrier(self.losses)


def relative_barrier(curve, higher_is_better: bool = False) -> float:
    """The change from the better end of a path to its worst point, in percent of the end.

    ``curve``: the metric at ``α`` from 0 to 1, ends included. For a score (accuracy, return;
    ``higher_is_better=True``) ``100 · (min_α s − max(s_0, s_1)) / |max(s_0, s_1)|`` ≤ 0, the
    relative accuracy drop of arXiv 2606.04754's code (``compute_barrier``); for a loss its
    mirror image ``100 · (max_α L − min(L_0, L_1)) / |min(L_0, L_1)|`` ≥ 0. Unlike the loss
    barrier it compares with the better end rather than the straight line, so two ends of
    unequal quality alone make it nonzero. ``nan`` when the better end is 0 (the code returns 0).
    """
    curve = torch.as_tensor(curve, dtype=torch.float64)
    ends = curve[[0, -1]]
    best, worst = (ends.max(), curve.min()) if higher_is_better else (ends.min(), curve.max())
    if best == 0:
        return math.nan
    return float(100 * (worst - best) / best.abs())


class _LossOf(nn.Module):
    """``loss_fn(net)`` as a module, so ``functional_call`` can swap the net's parameters."""

    def __init__(self, net: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor]):
        super().__init__()
        self.net = net
        self.loss_fn = loss_fn

    def forward(self) -> torch.Tensor:
        loss = self.loss_fn(self.net)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise ValueError("loss_fn(net) must return a scalar tensor")
        return loss


def _alignment(align, net_a, net_b, probe, wiring) -> dict[str, torch.Tensor]:
    if align == "weight":
        return weight_matching(net_a, net_b, wiring).perms
    if align == "activation":
        if probe is None:
            raise ValueError("align='activation' needs a probe batch (probe=)")
        return activation_matching(net_a, net_b, probe, wiring).perms
    if isinstance(align, str):
        raise ValueError(f"unknown align {align!r}; use 'activation', 'weight' or permutations")
    return _perms_of(align)


def _alpha_grid(alphas: int | Sequence[float]) -> torch.Tensor:
    if isinstance(alphas, int):
        if alphas < 2:
            raise ValueError(f"alphas must be at least 2 points, got {alphas}")
        return torch.linspace(0, 1, alphas, dtype=torch.float64)
    grid = torch.as_tensor(list(alphas), dtype=torch.float64)
    if len(grid) < 2 or grid[0] != 0 or grid[-1] != 1 or (grid.diff() <= 0).any():
        raise ValueError("alphas must rise from 0 to 1 (both included)")
    return grid


def _interpolated(a: dict, b: dict, alphas: torch.Tensor) -> dict[str, torch.Tensor]:
    """Parameters at each α, stacked on a leading axis: ``(1 − α)a + αb``."""
    out = {}
    for name, value in a.items():
        w = alphas.to(value.dtype).to(value.device).reshape(-1, *([1] * value.ndim))
        out[name] = (1 - w) * value + w * b[name]
    return out


@torch.no_grad()
def interpolation_barrier(
    net_a: nn.Module,
    net_b: nn.Module,
    loss_fn: Callable[[nn.Module], torch.Tensor],
    alphas: int | Sequence[float] = 21,
    align=None,
    probe: Inputs | None = None,
    wiring: Wiring | None = None,
    chunk_size: int | None = None,
) -> Barrier:
    """The loss barrier between two networks of one architecture.

    ``loss_fn(net)`` runs the network on a fixed batch and returns a scalar; it is called once
    for all points of the path, with ``torch.func.functional_call`` swapping in the stacked
    parameters under ``torch.func.vmap`` (``chunk_size`` bounds the points per batch). So it
    must be a pure function of the parameters: no random draws (fix the noise beforehand), no
    ``.item()``. ``alphas``: a number of evenly spaced points on ``[0, 1]`` (21 by default) or a
    rising sequence from 0 to 1.

    ``align``: ``None`` (unaligned, the default), ``"activation"`` (needs ``probe``),
    ``"weight"``, or permutations (a dict or a matcher's result) that align B onto A.
    Unaligned, any two networks with the same parameters work, LayerNorm included. Only
    parameters are interpolated: buffers stay A's at every point, so a network with running
    statistics (BatchNorm) is refused, its statistics being A's and not the path's.
    """
    grid = _alpha_grid(alphas)
    _check_same_shapes(net_a, net_b)
    _refuse_running_statistics(net_a, "would stay A's at every point of the path")
    theta_a, theta_b = _detached(net_a), _detached(net_b)
    perms = None
    if align is not None and align is not False:  # unaligned: any network, no wiring needed
        wiring = wiring or infer_wiring(net_a)
        perms = _alignment(align, net_a, net_b, probe, wiring)
        _check_perms(perms, wiring, _layers_of(net_b, wiring))
        theta_b = _permuted(theta_b, wiring, perms)
    has_half = bool((grid == 0.5).any())
    points = grid if has_half else torch.cat([grid, grid.new_tensor([0.5])])
    stacked = {f"net.{k}": v for k, v in _interpolated(theta_a, theta_b, points).items()}
    module = _LossOf(net_a, loss_fn)

    def loss_at(params):
        return torch.func.functional_call(module, params, ())

    losses = torch.func.vmap(loss_at, chunk_size=chunk_size)(stacked).double().cpu()
    half = losses[(points == 0.5).nonzero()[0, 0]]
    losses = losses[: len(grid)]
    linear = (1 - grid) * losses[0] + grid * losses[-1]
    return Barrier(
        alphas=grid,
        losses=losses,
        peak=float((losses - linear).max()),
        midpoint=float(half - (losses[0] + losses[-1]) / 2),
        perms=perms,
    )


# --- merging --------------------------------------------------------------------------------


def _preactivation_stats(
    net: nn.Module, probe: Inputs, names: Sequence[str]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-unit mean and standard deviation of each named layer's output (before activation)."""
    layers = dict(named_layers(net))
    stats = {}

    def record(name: str):
        def hook(_module, _args, output):
            units = output.detach().transpose(0, 1).reshape(output.shape[1], -1)
            stats[name] = (units.mean(1), units.std(1, correction=0))

        return hook

    handles = [layers[name].register_forward_hook(record(name)) for name in names]
    try:
        with torch.no_grad():
            call_module(net, probe)
    finally:
        for handle in handles:
            handle.remove()
    return stats


@torch.no_grad()
def _repair_(merged, net_a, net_b, alpha, probe, wiring) -> None:
    """REPAIR (Jordan et al. 2023, arXiv 2211.08403): give each hidden unit of the merged
    network the interpolated mean and std of its pre-activation in the two endpoints.

    Layers are corrected one by one in order, each measured after the ones before it were
    corrected, and the correction is folded into the layer's weight rows and bias.
    """
    names = list(wiring.readers)
    stats_a = _preactivation_stats(net_a, probe, names)
    stats_b = _preactivation_stats(net_b, probe, names)
    layers = dict(named_layers(merged))
    for name in names:
        mean, std = _preactivation_stats(merged, probe, [name])[name]
        goal_mean = (1 - alpha) * stats_a[name][0] + alpha * stats_b[name][0]
        goal_std = (1 - alpha) * stats_a[name][1] + alpha * stats_b[name][1]
        # a unit constant on the probe cannot be rescaled; it is only shifted
        scale = torch.where(std > 1e-8, goal_std / std.clamp_min(1e-8), torch.ones_like(std))
        layer = layers[name]
        layer.weight.mul_(scale.reshape(-1, *([1] * (layer.weight.ndim - 1))))
        layer.bias.copy_((layer.bias - mean) * scale + goal_mean)


def merge(
    net_a: nn.Module,
    net_b: nn.Module,
    perms=None,
    alpha: float = 0.5,
    repair: bool = False,
    probe: Inputs | None = None,
    wiring: Wiring | None = None,
) -> nn.Module:
    """A new network computing with ``(1 − α)θ_A + α·π(θ_B)``; inputs are not modified.

    ``perms`` (a dict or a matcher's result; ``None``: no alignment) align B onto A. Only
    parameters are interpolated; a network with running statistics (BatchNorm) is refused, as
    they would stay A's. With ``repair=True`` the merged hidden units get REPAIR's per-unit
    rescaling (arXiv 2211.08403) toward the interpolated pre-activation statistics of A and
    π(B) on ``probe``, which counters the variance collapse of averaged units; heads are left as
    merged. REPAIR moves each unit's mean through its layer's bias, so every hidden layer must
    have one (a ``ValueError`` says which does not).
    """
    _check_same_shapes(net_a, net_b)
    _refuse_running_statistics(net_a, "would stay A's in the merged network")
    aligned_b = net_b
    if perms is not None or repair:
        wiring = wiring or infer_wiring(net_a)
    if repair:
        if probe is None:
            raise ValueError("merge(repair=True) needs a probe batch (probe=)")
        layers = dict(named_layers(net_a))
        for name in wiring.readers:
            if layers[name].bias is None:
                raise ValueError(
                    f"layer {name} has no bias, through which REPAIR shifts its units' means; "
                    "build it with bias=True or merge with repair=False"
                )
    if perms is not None:
        aligned_b = permute_(copy.deepcopy(net_b), perms, wiring)
    merged = copy.deepcopy(net_a)
    theta = _interpolated(_detached(net_a), _detached(aligned_b), torch.tensor([alpha]))
    with torch.no_grad():
        for name, param in merged.named_parameters():
            param.copy_(theta[name][0])
    if repair:
        _repair_(merged, net_a, aligned_b, alpha, probe, wiring)
    return merged


if __name__ == "__main__":
    # The command rebuilds RL networks from run folders, which needs agents and envs; this
    # library imports neither, so the command is experiments.symmetry. Running it from here
    # would make the library depend on them again.
    import sys

    print(
        "error: the symmetry command is python -m experiments.symmetry (same arguments); "
        "plasticity.symmetry is the library",
        file=sys.stderr,
    )
    sys.exit(2)
