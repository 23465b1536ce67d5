"""Plasticity metrics, computed on a fixed probe batch without gradients.

Feature metrics take a matrix of features ``(batch, units)``; conv feature maps
``(batch, channels, *spatial)`` are averaged over space first. Singular values are computed in
float64 on the CPU, where small ones are reliable; keep probe batches small (hundreds).

Sources: dormant units, ReDo (Sokar et al. 2023, arXiv 2302.12902); effective rank
(Roy & Vetterli 2007); srank (Kumar et al. 2021, arXiv 2010.14498); deviation from isometry
(FIRE, arXiv 2602.08040); layer-Jacobian spectra (dynamical isometry, Pennington et al. 2017,
arXiv 1711.04735); K-FAC ε-rank ("Spectral Collapse Drives Loss of Plasticity", arXiv 2509.22335);
the exact Gauss–Newton matrix (Schraudolph 2002; Martens 2020, arXiv 1412.1193) as its check.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from plasticity._layers import Inputs, call_module, hidden_layers, named_layers, select_layers
from plasticity.interventions import unit_scores
from plasticity.isometry import deviation_from_isometry, sliced_deviation

__all__ = [
    "GGNSpectrum",
    "PlasticityMonitor",
    "deviation_from_isometry",
    "dormant_ratio",
    "effective_rank",
    "grad_norm",
    "factor_eps_rank",
    "ggn_eigenvalues",
    "ggn_eps_ranks",
    "isometry_deviations",
    "kfac_eps_rank",
    "kfac_eps_ranks",
    "kfac_factors",
    "layer_jacobian_singular_values",
    "singular_values",
    "softmax_fisher_loss",
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
    """Singular values of a (batch, units) feature matrix, in float64 on the CPU, descending.

    NaN or Inf features have no singular values: ``ValueError`` (LAPACK would fail to converge).
    """
    m = _feature_matrix(matrix.detach()).to("cpu", torch.float64)
    if not bool(torch.isfinite(m).all()):
        raise ValueError("features contain NaN or Inf; their singular values are undefined")
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
    return float(gradient_norm(module.parameters()))


def gradient_norm(parameters: Iterable[torch.Tensor]) -> torch.Tensor:
    """Global L2 norm of the parameters' ``.grad`` as a 0-dim tensor (0 when none), with no
    host sync: an update function computes it and returns it, so that nothing reads ``.grad``
    after a CUDA graph that owns it was replayed again."""
    grads = [p.grad.detach() for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


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


def _eps_rank(lam: torch.Tensor, mu: torch.Tensor, eps: float) -> int:
    """``#{(i, j): λ_i·μ_j > ε}`` for non-negative eigenvalues, without forming the products."""
    mu = mu.sort().values
    # for each λ_i > 0, the μ_j above ε/λ_i
    lam = lam[lam > 0]
    above = mu.numel() - torch.searchsorted(mu, eps / lam, right=True)
    return int(above.sum())


def kfac_eps_rank(
    layer_inputs: torch.Tensor, preactivation_grads: torch.Tensor, eps: float = 1e-6
) -> int:
    """``#{(i, j): λ_i(A)·μ_j(G) > ε}`` for the K-FAC factors ``A = E[aaᵀ]``, ``G = E[ggᵀ]``.

    The eigenvalues of ``A ⊗ G`` are the products ``λ_i μ_j``, so two small eigendecompositions
    give the ε-rank of the layer's curvature block (arXiv 2509.22335). ``layer_inputs`` and
    ``preactivation_grads`` are per-sample rows (append a column of ones to the inputs for a
    bias); :func:`kfac_factors` gathers them from a network.
    """
    a = layer_inputs.detach().to("cpu", torch.float64).flatten(1)
    g = preactivation_grads.detach().to("cpu", torch.float64).flatten(1)
    if a.shape[0] != g.shape[0]:
        raise ValueError(
            f"layer_inputs and preactivation_grads need the same batch size, "
            f"got {a.shape[0]} and {g.shape[0]}"
        )
    return factor_eps_rank(a.T @ a / a.shape[0], g.T @ g / g.shape[0], eps)


def factor_eps_rank(a: torch.Tensor, g: torch.Tensor, eps: float = 1e-6) -> int:
    """ε-rank of ``A ⊗ G`` from the two (symmetric PSD) factors: ``#{λ_i(A)·μ_j(G) > ε}``."""
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")
    lam = torch.linalg.eigvalsh(a.detach().to("cpu", torch.float64)).clamp_min(0)
    mu = torch.linalg.eigvalsh(g.detach().to("cpu", torch.float64)).clamp_min(0)
    return _eps_rank(lam, mu, eps)


@dataclass
class _FactorSums:
    """Running sums of one layer's K-FAC statistics over the calls of a forward pass."""

    layer: nn.Module
    a: torch.Tensor | None = None  # Σ ā āᵀ over samples (and conv positions)
    g: torch.Tensor | None = None  # Σ g gᵀ of per-sample pre-activation gradients
    rows: int = 0  # samples (times positions for a conv) in ``a``
    samples: int = 0  # samples in ``g``


def _layer_rows(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as rows ``ā`` (conv: one unfolded patch per output position), with a
    column of ones when the layer has a bias, in float64."""
    if isinstance(layer, nn.Conv2d):
        patches = F.unfold(
            x,
            layer.kernel_size,
            dilation=layer.dilation,
            padding=layer.padding,
            stride=layer.stride,
        )  # (batch, C_in·kh·kw, positions)
        rows = patches.transpose(1, 2).reshape(-1, patches.shape[1])
    else:
        rows = x.reshape(-1, x.shape[-1])
    rows = rows.detach().to("cpu", torch.float64)
    if layer.bias is not None:
        rows = torch.cat([rows, rows.new_ones(rows.shape[0], 1)], 1)
    return rows


def kfac_factors(
    module: nn.Module,
    loss_fn: Callable[[nn.Module], torch.Tensor],
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer K-FAC factors ``(A, G)`` of ``module`` under the loss ``loss_fn(module)``.

    ``A = E[ā āᵀ]`` over the inputs of the layer (``ā`` with a trailing 1 when it has a bias)
    and ``G = E[g gᵀ]`` over the per-sample gradients of the loss with respect to the layer's
    outputs (pre-activations), so that ``A ⊗ G`` approximates the layer's block of the
    (empirical) Fisher / Gauss–Newton matrix (K-FAC, Martens & Grosse 2015, arXiv 1503.05671).
    ``loss_fn`` runs ``module`` on the caller's probe batch and returns the *mean* loss over its
    ``N`` samples (as training losses are); the per-sample gradients are ``N·∂L/∂s``. For a
    layer called several times (twin inputs), all calls that the loss depends on count.

    Layers: ``nn.Linear`` (inputs of any leading shape, each row a sample) and ``nn.Conv2d``
    (KFC, Grosse & Martens 2016, arXiv 1602.01407: ``A`` averages the unfolded input patches
    over samples and positions, ``G`` sums ``g gᵀ`` over positions and averages over samples).
    ``include``/``exclude`` are shell patterns on layer names. Gradients are taken with
    ``torch.autograd.grad``: the parameters' ``.grad`` are left as they were. Factors are
    float64 on the CPU; costs one forward and backward of ``loss_fn`` plus ``O(N·d²)`` per
    factor of dimension ``d``.
    """
    chosen = [
        (name, layer)
        for name, layer in select_layers(module, include, exclude)
        if isinstance(layer, (nn.Linear, nn.Conv2d))
    ]
    if not chosen:
        raise ValueError("kfac_factors matched no Linear or Conv2d layer; check include/exclude")
    for name, layer in chosen:
        if isinstance(layer, nn.Conv2d) and (
            layer.groups != 1 or isinstance(layer.padding, str) or layer.padding_mode != "zeros"
        ):
            raise ValueError(
                f"kfac_factors: conv {name!r} has groups, string padding or a non-zero padding "
                "mode, whose patches it does not unfold; exclude it"
            )
    sums = {name: _FactorSums(layer) for name, layer in chosen}
    outputs: list[tuple[str, torch.Tensor]] = []

    def record(name: str):
        def hook(layer, args, output):
            if not output.requires_grad:  # a call the loss cannot depend on (no_grad targets)
                return
            rows = _layer_rows(layer, args[0])
            acc = sums[name]
            acc.a = rows.T @ rows if acc.a is None else acc.a + rows.T @ rows
            acc.rows += rows.shape[0]
            outputs.append((name, output))
            # the network goes on with a copy, so that an in-place activation (ReLU(inplace=True))
            # cannot turn the recorded pre-activation into a post-activation
            return output.clone()

        return hook

    handles = [layer.register_forward_hook(record(name)) for name, layer in chosen]
    try:
        with torch.enable_grad():
            loss = loss_fn(module)
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise ValueError("loss_fn must return a scalar tensor (the mean loss)")
            if not outputs:
                raise ValueError(
                    "loss_fn ran none of the chosen layers with gradients enabled; "
                    "it must call the module on the probe batch"
                )
            grads = torch.autograd.grad(
                loss, [out for _, out in outputs], allow_unused=True, materialize_grads=True
            )
    finally:
        for h in handles:
            h.remove()
    for (name, output), grad in zip(outputs, grads, strict=True):
        acc = sums[name]
        batch = output.shape[0] if isinstance(acc.layer, nn.Conv2d) else output[..., 0].numel()
        g = grad.detach().to("cpu", torch.float64) * batch  # per-sample gradients
        if isinstance(acc.layer, nn.Conv2d):  # Σ over positions of g gᵀ, per sample
            g = g.flatten(2)  # (batch, C_out, positions)
            gg = torch.einsum("bcp,bdp->cd", g, g)
        else:
            g = g.reshape(-1, g.shape[-1])
            gg = g.T @ g
        acc.g = gg if acc.g is None else acc.g + gg
        acc.samples += batch
    return {name: (acc.a / acc.rows, acc.g / acc.samples) for name, acc in sums.items() if acc.rows}


def kfac_eps_ranks(
    module: nn.Module,
    loss_fn: Callable[[nn.Module], torch.Tensor],
    eps: float = 1e-6,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> dict[str, float]:
    """K-FAC ε-rank of each layer's curvature block, ``rank_ε(A ⊗ G)``, as flat scalars.

    "Spectral Collapse Drives Loss of Plasticity" (arXiv 2509.22335) reads loss of plasticity
    as a collapse of the curvature spectrum at a task's start; through K-FAC it shows as a
    falling ε-rank of ``A ⊗ G``, whose eigenvalues are the products ``λ_i(A)·μ_j(G)``. Returns
    ``<layer>/kfac_eps_rank`` (the count) and ``<layer>/kfac_eps_rank_normalized`` (the count
    over ``dim A · dim G``, in [0, 1]) per layer, and ``kfac_eps_rank_normalized``, their mean.
    Factors come from :func:`kfac_factors` (same ``loss_fn`` contract: the mean loss of the
    probe batch, e.g. a critic's TD loss). Two float64 eigendecompositions per layer on the
    CPU: a whole 70-256-256-1 critic at batch 256 takes about 0.1 s on one CPU thread, at
    width 512 about 0.4 s; a Nature CNN's 3136→512 layer (a 3137-dim ``A``) takes seconds,
    ``exclude`` it on a frequent schedule.
    """
    factors = kfac_factors(module, loss_fn, include, exclude)
    out: dict[str, float] = {}
    for name, (a, g) in factors.items():
        rank = factor_eps_rank(a, g, eps)
        out[f"{name}/kfac_eps_rank"] = float(rank)
        out[f"{name}/kfac_eps_rank_normalized"] = rank / (a.shape[0] * g.shape[0])
    normalized = [v for k, v in out.items() if k.endswith("/kfac_eps_rank_normalized")]
    out["kfac_eps_rank_normalized"] = sum(normalized) / len(normalized)
    return out


def softmax_fisher_loss(inputs: torch.Tensor) -> Callable[[nn.Module], torch.Tensor]:
    """A ``loss_fn`` for :func:`kfac_factors` whose ``G`` factors are those of the Gauss–Newton.

    :func:`kfac_factors` averages outer products of per-sample gradients: under a loss with the
    observed labels that is the *empirical* Fisher. For softmax cross-entropy the Gauss–Newton
    matrix ``E[Jᵀ H J]``, ``H = diag(p) − ppᵀ``, equals the Fisher with labels drawn from the
    model, and ``Σ_c p_c (p − e_c)(p − e_c)ᵀ = H`` turns that expectation into a finite sum:
    each probe sample is repeated once per class ``c`` with label ``c`` and weight
    ``sqrt(C·p_c)`` (held fixed), so that each layer's ``G`` comes out as
    ``E_n[J_nᵀ H_n J_n]`` over its pre-activations, exactly, with no sampling, and ``A`` as the
    plain average over the probe (every sample counts ``C`` times). No labels are needed: the
    Gauss–Newton of cross-entropy does not depend on them. The module must map ``inputs`` to
    logits ``(N, C)``; the loss runs it on ``N·C`` rows.
    """

    def loss_fn(module: nn.Module) -> torch.Tensor:
        with torch.no_grad():
            classes = module(inputs[:1]).shape[-1]
        logits = module(inputs.repeat_interleave(classes, 0))  # row n·C + c: sample n, label c
        labels = torch.arange(classes, device=logits.device).repeat(inputs.shape[0])
        weights = (classes * logits.detach().softmax(-1)[torch.arange(len(labels)), labels]).sqrt()
        return (weights * F.cross_entropy(logits, labels, reduction="none")).mean()

    return loss_fn


def _output_hessian_root(logits: torch.Tensor, loss: str) -> tuple[torch.Tensor, int]:
    """``S`` with ``S Sᵀ = H``, the Hessian of the per-sample loss in the outputs ``(N, C, C)``,
    and the rank of ``H`` per sample."""
    n, c = logits.shape
    if loss == "cross_entropy":  # H = diag(p) − ppᵀ = S Sᵀ with S = diag(√p) − p √pᵀ (Σp = 1)
        p = logits.softmax(-1)
        root = torch.diag_embed(p.sqrt()) - p[:, :, None] * p.sqrt()[:, None, :]
        return root, c - 1
    if loss == "mse":  # ½‖f − y‖²: H = I
        return torch.eye(c, dtype=logits.dtype).expand(n, c, c), c
    raise ValueError(f"unknown loss {loss!r}; use 'cross_entropy' or 'mse'")


class GGNSpectrum(NamedTuple):
    """Eigenvalues of the exact Gauss–Newton matrix on a probe batch (:func:`ggn_eigenvalues`)."""

    layers: dict[str, torch.Tensor]
    """each chosen layer's diagonal block (weight and bias), ascending, clamped at 0"""
    network: torch.Tensor
    """the whole GGN over the chosen layers, cross-layer terms included"""
    samples: int
    """``N``, the probe's size"""
    per_sample_rank: int
    """``r``, the rank of one sample's output Hessian (``C − 1`` cross-entropy, ``C`` MSE)"""


def ggn_eigenvalues(
    module: nn.Module,
    inputs: torch.Tensor,
    loss: str = "cross_entropy",
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> GGNSpectrum:
    """Eigenvalues of the exact Gauss–Newton matrix of the mean loss over a probe batch.

    ``GGN = (1/N) Σ_n J_nᵀ H_n J_n`` with ``J_n`` the Jacobian of the outputs (logits) of
    sample ``n`` in the parameters and ``H_n`` the Hessian of its loss in those outputs:
    ``diag(p) − ppᵀ`` for softmax cross-entropy (``loss="cross_entropy"``, no labels needed),
    ``I`` for ``½‖f − y‖²`` (``"mse"``). Jacobians come from ``torch.func`` (``vmap`` of
    ``jacrev`` over the samples) on a float64 copy of the network; with ``H = S Sᵀ`` and
    ``M = Sᵀ J / √N`` the GGN is ``MᵀM``, whose nonzero eigenvalues are those of the smaller
    of ``MᵀM`` and ``M Mᵀ`` (``N·C`` square), so no ``P×P`` matrix is ever formed unless it
    is the smaller one.

    Returns a :class:`GGNSpectrum`: ascending and clamped at 0, the eigenvalues of each chosen
    Linear/Conv layer's diagonal block (its weight and bias; keys: layer names) and of the
    whole GGN over all chosen layers, cross-layer terms included. A layer lists
    ``min(P, N·C)`` eigenvalues (``P`` its parameters), the network ``N·C``; at most ``N·r``
    are nonzero, ``r`` the rank of ``H_n`` (``C − 1`` for cross-entropy, ``C`` for MSE), and
    the GGN's eigenvalues not listed are 0. The check on K-FAC (:func:`kfac_eps_ranks`) where
    the network is small: memory ``8·N·C·P`` bytes for the largest layer of ``P`` parameters
    (a 256×256 layer at ``N = 64``, ``C = 10``: 0.34 GB); the 64-256-256-256-10 MLP of
    ``benchmarks/continual_supervised.py`` takes about 1.3 s on one CPU thread at ``N = 32``.
    ``inputs`` is one tensor ``(N, ...)``. The copy runs in eval mode (BatchNorm's running
    statistics, no dropout): per-sample Jacobians need each sample's output to depend on that
    sample only; ``module`` itself is not changed.
    """
    from torch.func import functional_call, jacrev, vmap

    chosen = select_layers(module, include, exclude)
    if not chosen:
        raise ValueError("ggn_eigenvalues matched no Linear or Conv layer; check include/exclude")
    net = copy.deepcopy(module).to("cpu", torch.float64).eval()
    x = inputs.detach().to("cpu", torch.float64)
    params = {k: v.detach() for k, v in net.named_parameters()}
    buffers = {k: v.detach() for k, v in net.named_buffers()}
    with torch.no_grad():
        logits = net(x)
    if logits.ndim != 2 or logits.shape[0] != x.shape[0]:
        raise ValueError(f"the network must return (batch, outputs), got {tuple(logits.shape)}")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("the network's outputs on the probe are NaN or Inf")
    n, c = logits.shape
    root, per_sample_rank = _output_hessian_root(logits, loss)

    layers: dict[str, torch.Tensor] = {}
    gram = torch.zeros(n * c, n * c, dtype=torch.float64)  # M Mᵀ of the whole network
    for name, _layer in chosen:
        prefix = f"{name}." if name else ""
        names = [k for k in params if k.startswith(prefix) and "." not in k[len(prefix) :]]

        def outputs(sub, sample, names=names):
            merged = {**params, **dict(zip(names, sub, strict=True))}
            return functional_call(net, (merged, buffers), (sample.unsqueeze(0),)).squeeze(0)

        jac = vmap(jacrev(outputs), in_dims=(None, 0))(tuple(params[k] for k in names), x)
        j = torch.cat([part.reshape(n, c, -1) for part in jac], -1)  # (N, C, P_layer)
        m = torch.einsum("nck,ncp->nkp", root, j).reshape(n * c, -1) / math.sqrt(n)
        block = m @ m.T
        gram += block
        small = m.T @ m if m.shape[1] < m.shape[0] else block
        layers[name] = torch.linalg.eigvalsh(small).clamp_min(0)
    network = torch.linalg.eigvalsh(gram).clamp_min(0)
    return GGNSpectrum(layers, network, n, per_sample_rank)


def ggn_eps_ranks(
    module: nn.Module,
    inputs: torch.Tensor,
    eps: float = 1e-6,
    loss: str = "cross_entropy",
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> dict[str, float]:
    """ε-rank (eigenvalues above ``eps``) of the exact Gauss–Newton matrix on a probe batch.

    From :func:`ggn_eigenvalues`: ``<layer>/ggn_eps_rank`` and ``ggn_eps_rank`` (whole
    network) count eigenvalues above ``eps``; the ``_normalized`` keys divide by the most a
    batch of ``N`` samples can have, ``min(P, N·r)`` (``r = C − 1`` for cross-entropy), and
    ``ggn_eps_rank_layer_mean`` averages the layers' normalized ranks, like
    ``kfac_eps_rank_normalized`` does. Unlike K-FAC's ``A ⊗ G`` the exact matrix has at most
    ``N·r`` nonzero eigenvalues, so counts are comparable between networks only at one ``N``.
    """
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps}")
    spectrum = ggn_eigenvalues(module, inputs, loss, include, exclude)
    most = spectrum.samples * spectrum.per_sample_rank
    sizes = {
        name: sum(p.numel() for p in layer.parameters(recurse=False))
        for name, layer in select_layers(module, include, exclude)
    }
    out: dict[str, float] = {}
    blocks = [(f"{name}/", sizes[name], spectrum.layers[name]) for name in sizes]
    for key, size, values in [*blocks, ("", sum(sizes.values()), spectrum.network)]:
        count = int((values > eps).sum())
        out[f"{key}ggn_eps_rank"] = float(count)
        out[f"{key}ggn_eps_rank_normalized"] = count / max(1, min(size, most))
    layers = [out[f"{name}/ggn_eps_rank_normalized"] for name in sizes]
    out["ggn_eps_rank_layer_mean"] = sum(layers) / len(layers)
    return out


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
    whose hidden layers are followed by something other than ReLU should pass it. ``name``
    (default: the module's class) names the network in errors.

    ``measure`` refuses, with a ``ValueError`` naming the network, a probe batch it cannot
    measure instead of returning numbers that look valid: an empty batch (ranks of no samples
    would read 0, like a collapsed network) and non-finite values (NaN/Inf in the probe, or
    in the weights of a diverged network: singular values are undefined).
    """

    def __init__(
        self,
        module: nn.Module,
        heads: Iterable[str] | None = None,
        activation: Callable[[torch.Tensor], torch.Tensor] = F.relu,
        tau: float = 0.025,
        delta: float = 0.01,
        jacobian: bool = False,
        name: str | None = None,
    ):
        self.module = module
        self.hidden = hidden_layers(module, heads)
        self.activation = activation
        self.tau = tau
        self.delta = delta
        self.jacobian = jacobian
        self.name = name or type(module).__name__

    def _check_probe(self, inputs: Inputs) -> None:
        args = tuple(inputs) if isinstance(inputs, (tuple, list)) else (inputs,)
        for arg in args:
            if not isinstance(arg, torch.Tensor):
                continue  # call_module reports what is not a tensor
            if arg.ndim == 0 or arg.shape[0] == 0:
                raise ValueError(
                    f"PlasticityMonitor({self.name!r}): the probe batch is empty (shape "
                    f"{tuple(arg.shape)}); pass at least one sample, a few hundred for ranks"
                )
            if arg.is_floating_point() and not bool(torch.isfinite(arg).all()):
                raise ValueError(
                    f"PlasticityMonitor({self.name!r}): the probe batch contains NaN or Inf; "
                    "measure on finite inputs"
                )

    @torch.no_grad()
    def measure(
        self, inputs: Inputs, update_grad_norm: torch.Tensor | float | None = None
    ) -> dict[str, float]:
        """Metrics of ``self.module`` on the probe batch ``inputs`` (tensor or argument tuple).

        ``update_grad_norm``: the gradient norm the last update returned (see
        :func:`gradient_norm`), reported as ``grad_norm``; None reads the module's current
        ``.grad``, which a compiled update replayed as a CUDA graph may since have overwritten.
        """
        self._check_probe(inputs)
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
        for name, output in outputs.items():
            if not bool(torch.isfinite(output).all()):
                bad = [n for n, p in self.module.named_parameters() if not torch.isfinite(p).all()]
                cause = (
                    f"NaN/Inf weights in {bad[:3]} (the training diverged)"
                    if bad
                    else ("features overflowed")
                )
                raise ValueError(
                    f"PlasticityMonitor({self.name!r}): layer {name!r} gives NaN or Inf features "
                    f"on the probe batch: {cause}; fix the training or reset the network"
                )

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
        metrics["grad_norm"] = (
            grad_norm(self.module) if update_grad_norm is None else float(update_grad_norm)
        )
        return metrics
