"""Plasticity metrics, computed on a fixed probe batch without gradients.

Feature metrics take a matrix of features ``(batch, units)``; conv feature maps
``(batch, channels, *spatial)`` are averaged over space first. Singular values are computed in
float64 on the CPU, where small ones are reliable; keep probe batches small (hundreds).

Sources: dormant units, ReDo (Sokar et al. 2023, arXiv 2302.12902); effective rank
(Roy & Vetterli 2007); srank (Kumar et al. 2021, arXiv 2010.14498); deviation from isometry
(FIRE, arXiv 2602.08040); layer-Jacobian spectra (dynamical isometry, Pennington et al. 2017,
arXiv 1711.04735); K-FAC ε-rank ("Spectral Collapse Drives Loss of Plasticity", arXiv 2509.22335).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from plasticity._layers import Inputs, call_module, hidden_layers, named_layers
from plasticity.interventions import unit_scores
from plasticity.isometry import deviation_from_isometry, sliced_deviation

__all__ = [
    "PlasticityMonitor",
    "deviation_from_isometry",
    "dormant_ratio",
    "effective_rank",
    "grad_norm",
    "isometry_deviations",
    "kfac_eps_rank",
    "layer_jacobian_singular_values",
    "singular_values",
    "srank",
    "stable_rank",
    "unit_scores",
    "weight_norms",
]


def _feature_matrix(features: torch.Tensor) -> torch.Tensor:
    if features.ndim < 2:
        raise ValueError(
            f"features must be (batch, units) or (batch, channels, *spatial), "
            f"got shape {tuple(features.shape)}"
        )
    if features.ndim > 2:
        features = features.flatten(2).mean(2)
    return features


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """Singular values of a (batch, units) feature matrix, in float64 on the CPU, descending."""
    m = _feature_matrix(matrix.detach()).to("cpu", torch.float64)
    return torch.linalg.svdvals(m)


def dormant_ratio(activations: torch.Tensor, tau: float = 0.025) -> float:
    """Fraction of units whose ReDo score ``E|h_i| / mean_k E|h_k|`` is ``<= tau``.

    ``activations`` are post-activation outputs of one layer, ``(batch, units)`` or conv maps.
    """
    return float((unit_scores(activations) <= tau).float().mean())


def effective_rank(features: torch.Tensor) -> float:
    """Roy & Vetterli's effective rank ``exp(−Σ p_k log p_k)``, ``p_k = σ_k / Σσ``."""
    sv = singular_values(features)
    total = sv.sum()
    if total <= 0:
        return 0.0
    p = sv / total
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def srank(features: torch.Tensor, delta: float = 0.01) -> int:
    """Smallest ``k`` with ``Σ_{i≤k} σ_i / Σσ ≥ 1 − δ`` (Kumar et al. 2021, arXiv 2010.14498)."""
    if not 0.0 <= delta < 1.0:
        raise ValueError(f"delta must be in [0, 1), got {delta}")
    sv = singular_values(features)
    total = sv.sum()
    if total <= 0:
        return 0
    cumulative = torch.cumsum(sv, 0) / total
    return int(torch.searchsorted(cumulative, torch.tensor([1.0 - delta], dtype=sv.dtype))) + 1


def stable_rank(matrix: torch.Tensor) -> float:
    """``‖Φ‖_F² / ‖Φ‖₂²``: a smooth lower bound on the rank."""
    sv = singular_values(matrix)
    if sv.numel() == 0 or sv[0] <= 0:
        return 0.0
    return float((sv**2).sum() / sv[0] ** 2)


def weight_norms(module: nn.Module) -> dict[str, float]:
    """Frobenius norm of each Linear/Conv weight, by layer name."""
    return {name: float(layer.weight.detach().norm()) for name, layer in named_layers(module)}


def isometry_deviations(module: nn.Module, scale: str = "muon") -> dict[str, float]:
    """DfI of each layer's weight, by layer name.

    ``scale="muon"``: per 2-D slice at FIRE's target scale ``sqrt(d_out/d_in)`` (conv taps
    also divided by ``kh·kw``), so a freshly FIRE'd network reads near 0; ``scale="none"``:
    :func:`deviation_from_isometry` of the flattened weight against ``I``.
    """
    if scale not in ("muon", "none"):
        raise ValueError(f"unknown scale {scale!r}; use 'muon' or 'none'")
    out = {}
    for name, layer in named_layers(module):
        weight = layer.weight.detach()
        if scale == "none":
            out[name] = float(deviation_from_isometry(weight))
        else:
            out[name] = sliced_deviation(weight)
    return out


def grad_norm(module: nn.Module) -> float:
    """Global L2 norm of the gradients currently in ``module``'s ``.grad`` (0 when none)."""
    grads = [p.grad.detach() for p in module.parameters() if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))


def layer_jacobian_singular_values(
    weight: torch.Tensor,
    pre_activations: torch.Tensor,
    activation: Callable[[torch.Tensor], torch.Tensor] = F.relu,
) -> torch.Tensor:
    """Singular values of ``∂h/∂x = D W`` per probe sample, ``D = diag(φ'(z))``.

    For a Linear layer ``z = Wx + b``, ``h = φ(z)``; ``pre_activations`` is ``z`` for the
    probe batch ``(batch, d_out)``. Dynamical isometry means these values sit near 1
    (arXiv 1711.04735). Returns ``(batch, min(d_out, d_in))`` in float64.
    """
    if weight.ndim != 2:
        raise ValueError(f"expected a Linear weight (d_out, d_in), got shape {tuple(weight.shape)}")
    if pre_activations.ndim != 2 or pre_activations.shape[1] != weight.shape[0]:
        raise ValueError(
            f"pre_activations must be (batch, {weight.shape[0]}), "
            f"got shape {tuple(pre_activations.shape)}"
        )
    z = pre_activations.detach().to("cpu", torch.float64).requires_grad_(True)
    with torch.enable_grad():
        slopes = torch.autograd.grad(activation(z).sum(), z)[0]
    jac = slopes[:, :, None] * weight.detach().to("cpu", torch.float64)[None]
    return torch.linalg.svdvals(jac)


def kfac_eps_rank(
    layer_inputs: torch.Tensor, preactivation_grads: torch.Tensor, eps: float = 1e-6
) -> int:
    """``#{(i, j): λ_i(A)·μ_j(G) > ε}`` for the K-FAC factors ``A = E[aaᵀ]``, ``G = E[ggᵀ]``.

    The eigenvalues of ``A ⊗ G`` are the products ``λ_i μ_j``, so two small eigendecompositions
    give the ε-rank of the layer's curvature block (arXiv 2509.22335).
    """
    a = layer_inputs.detach().to("cpu", torch.float64).flatten(1)
    g = preactivation_grads.detach().to("cpu", torch.float64).flatten(1)
    if a.shape[0] != g.shape[0]:
        raise ValueError(
            f"layer_inputs and preactivation_grads need the same batch size, "
            f"got {a.shape[0]} and {g.shape[0]}"
        )
    lam = torch.linalg.eigvalsh(a.T @ a / a.shape[0]).clamp_min(0)
    mu = torch.linalg.eigvalsh(g.T @ g / g.shape[0]).clamp_min(0)
    return int((lam[:, None] * mu[None, :] > eps).sum())


class PlasticityMonitor:
    """Collects plasticity metrics of one network on a probe batch via forward hooks.

    ``measure(inputs)`` runs the network once without gradients and returns flat scalars:

    - per hidden layer ``<layer>/dormant_ratio``, ``<layer>/effective_rank``, ``<layer>/srank``,
      ``<layer>/stable_rank`` of its post-activation features; with ``jacobian=True`` also
      ``<layer>/jacobian_sv_{mean,min,max,dev}`` (``dev`` = RMS of ``σ − 1``) for Linear layers;
    - per layer (heads too) ``<layer>/dfi`` (at FIRE's scale) and ``<layer>/weight_norm``;
    - network totals: ``dormant_ratio`` over all hidden units, ``effective_rank``/``srank``/
      ``stable_rank`` of the last hidden layer's features (the representation the heads read),
      ``dfi`` (sum over hidden layers: at FIRE's scale a narrow head such as 256 → 1 is
      compared against a tiny target norm and would swamp the sum; its own ``<head>/dfi`` is
      still reported), ``weight_norm`` (global), and ``grad_norm`` of the current ``.grad``.

    ``activation`` maps a hidden layer's output (pre-activation) to its features; networks
    whose hidden layers are followed by something other than ReLU should pass it.
    """

    def __init__(
        self,
        module: nn.Module,
        heads: Iterable[str] | None = None,
        activation: Callable[[torch.Tensor], torch.Tensor] = F.relu,
        tau: float = 0.025,
        delta: float = 0.01,
        jacobian: bool = False,
    ):
        self.module = module
        self.hidden = hidden_layers(module, heads)
        self.activation = activation
        self.tau = tau
        self.delta = delta
        self.jacobian = jacobian

    @torch.no_grad()
    def measure(self, inputs: Inputs) -> dict[str, float]:
        """Metrics of ``self.module`` on the probe batch ``inputs`` (tensor or argument tuple)."""
        outputs: dict[str, torch.Tensor] = {}

        def record(name: str):
            def hook(_mod, _args, output):
                outputs[name] = output.detach()

            return hook

        handles = [layer.register_forward_hook(record(name)) for name, layer in self.hidden]
        try:
            call_module(self.module, inputs)
        finally:
            for h in handles:
                h.remove()

        metrics: dict[str, float] = {}
        dormant_units = total_units = 0
        last_layer = None
        for name, layer in self.hidden:
            if name not in outputs:  # a layer the forward pass did not use
                continue
            features = self.activation(outputs[name])
            scores = unit_scores(features)
            dormant_units += int((scores <= self.tau).sum())
            total_units += scores.numel()
            metrics[f"{name}/dormant_ratio"] = float((scores <= self.tau).float().mean())
            metrics[f"{name}/effective_rank"] = effective_rank(features)
            metrics[f"{name}/srank"] = float(srank(features, self.delta))
            metrics[f"{name}/stable_rank"] = stable_rank(features)
            if self.jacobian and isinstance(layer, nn.Linear) and outputs[name].ndim == 2:
                sv = layer_jacobian_singular_values(layer.weight, outputs[name], self.activation)
                metrics[f"{name}/jacobian_sv_mean"] = float(sv.mean())
                metrics[f"{name}/jacobian_sv_min"] = float(sv.min())
                metrics[f"{name}/jacobian_sv_max"] = float(sv.max())
                metrics[f"{name}/jacobian_sv_dev"] = float(((sv - 1) ** 2).mean().sqrt())
            last_layer = name
        for name, value in isometry_deviations(self.module).items():
            metrics[f"{name}/dfi"] = value
        for name, value in weight_norms(self.module).items():
            metrics[f"{name}/weight_norm"] = value

        if total_units:
            metrics["dormant_ratio"] = dormant_units / total_units
        if last_layer is not None:  # the representation the heads read
            for key in ("effective_rank", "srank", "stable_rank"):
                metrics[key] = metrics[f"{last_layer}/{key}"]
        metrics["dfi"] = sum(metrics[f"{name}/dfi"] for name, _ in self.hidden)
        metrics["weight_norm"] = float(
            torch.linalg.vector_norm(
                torch.tensor([v for k, v in metrics.items() if k.endswith("/weight_norm")])
            )
        )
        metrics["grad_norm"] = grad_norm(self.module)
        return metrics
