"""Isometry of weight matrices: polar factors, deviation from isometry, the isometry penalty.

Notation follows PyTorch: a weight is ``(d_out, d_in)``; a conv kernel ``(C_out, C_in, *k)``.
The *Gram on the smaller side* is ``WᵀW`` when ``d_out >= d_in`` (tall) and ``WWᵀ`` otherwise,
so it is the small, full-rank one and equals ``I`` exactly when ``W`` is an isometry.

Sources:
- FIRE, Frobenius-Isometry REinitialization (arXiv 2602.08040): DfI (Eq. 2), SFE (Eq. 1), and
  the orthogonal Procrustes solution ``UVᵀ`` approximated by a cubic Newton–Schulz iteration.
- "Preserving Plasticity in Continual Learning via Dynamical Isometry" (arXiv 2606.09762): the
  penalty ``R(W) = ‖G − sI‖_F²`` and its closed-form gradient.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from plasticity._layers import hidden_layers


def as_matrix(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` viewed as a matrix ``(d_out, -1)``: conv kernels are flattened per output."""
    if weight.ndim < 2:
        raise ValueError(
            f"expected a weight matrix or kernel with at least 2 dims, got shape "
            f"{tuple(weight.shape)}; biases and vectors have no isometry"
        )
    return weight.reshape(weight.shape[0], -1)


def _small_gram(x: torch.Tensor) -> torch.Tensor:
    """Gram on the smaller side of the (batched) matrix ``x`` of shape ``(..., m, n)``."""
    if x.shape[-2] >= x.shape[-1]:
        return x.mT @ x
    return x @ x.mT


def newton_schulz(weight: torch.Tensor, steps: int = 10, eps: float = 1e-7) -> torch.Tensor:
    """Approximate orthogonal polar factor of ``weight`` by the cubic Newton–Schulz iteration.

    As in FIRE (arXiv 2602.08040) and its authors' code: each matrix (the last two dims; any
    leading dims are a batch) is transposed if wide, divided by its Frobenius norm, iterated
    ``X ← 1.5·X − 0.5·X(XᵀX)`` ``steps`` times in float32, and transposed back. Frobenius
    normalization puts every singular value in (0, 1]; the cubic map then pushes them toward 1.
    With the published 10 steps the iteration is *not* converged for small singular values;
    use :func:`polar` (or more steps) for the exact factor.

    Returns a tensor of the input's shape and dtype.
    """
    if weight.ndim < 2:
        raise ValueError(
            f"newton_schulz needs a matrix (or a batch of matrices), "
            f"got shape {tuple(weight.shape)}"
        )
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    x = weight.to(torch.float32) if weight.dtype != torch.float64 else weight
    wide = x.shape[-2] < x.shape[-1]
    if wide:
        x = x.mT
    norm = torch.linalg.matrix_norm(x, keepdim=True)
    x = x / (norm + eps)
    for _ in range(steps):
        # 1.5·X − 0.5·X(XᵀX); in the tall orientation the Gram is the small n×n side.
        x = (x @ (x.mT @ x)).mul_(-0.5).add_(x, alpha=1.5)
    if wide:
        x = x.mT
    return x.to(weight.dtype).contiguous()


def polar(weight: torch.Tensor) -> torch.Tensor:
    """Exact orthogonal polar factor ``UVᵀ`` of ``weight = UΣVᵀ`` (batched over leading dims).

    The closest semi-orthogonal matrix in Frobenius norm (orthogonal Procrustes), which FIRE's
    Newton–Schulz iteration approximates (arXiv 2602.08040, Sec. 3).
    """
    if weight.ndim < 2:
        raise ValueError(
            f"polar needs a matrix (or a batch of matrices), got shape {tuple(weight.shape)}"
        )
    x = weight.to(torch.float32) if weight.dtype != torch.float64 else weight
    u, _, vh = torch.linalg.svd(x, full_matrices=False)
    return (u @ vh).to(weight.dtype)


def _deviation(x: torch.Tensor) -> torch.Tensor:
    """``Σ ‖G − I‖_F²`` over the (batched) matrices ``x``, in float32, without gradient."""
    with torch.no_grad():
        gram = _small_gram(x.to(torch.float32))
        eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
        return ((gram - eye) ** 2).sum()


def deviation_from_isometry(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """DfI ``‖G − I‖_F²`` of ``weight / scale``, ``G`` the Gram on the smaller side (FIRE Eq. 2).

    Conv kernels are flattened to ``(C_out, C_in·k…)``. ``scale`` is a target gain: a matrix
    ``scale·Q`` with ``Q`` semi-orthogonal has zero deviation at that scale. Returns a 0-dim
    float32 tensor (no gradient).
    """
    return _deviation(as_matrix(weight) / scale)


def fire_slices(weight: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The 2-D slices FIRE orthogonalizes and their "muon" target scale (arXiv 2602.08040).

    Linear ``(out, in)``: the matrix itself, scale ``sqrt(out/in)``. Conv ``(out, in, *k)``:
    one matrix per spatial tap, as a batch ``(taps, out, in)`` (a permuted view of the
    kernel), scale ``sqrt(out/in) / prod(k)``.
    """
    as_matrix(weight)  # validates the number of dims
    d_out, d_in = weight.shape[0], weight.shape[1]
    if weight.ndim == 2:
        return weight, math.sqrt(d_out / d_in)
    taps = math.prod(weight.shape[2:])
    slices = weight.reshape(d_out, d_in, taps).permute(2, 0, 1)
    return slices, math.sqrt(d_out / d_in) / taps


def sliced_deviation(weight: torch.Tensor, scale: float | None = None) -> float:
    """DfI in FIRE's sense: summed over :func:`fire_slices`, each divided by its target scale.

    Zero for a weight that FIRE with the exact polar factor produced; ``scale`` overrides the
    muon scale (``1.0`` for FIRE's ``scale="none"``).
    """
    slices, muon_scale = fire_slices(weight)
    return float(_deviation(slices / (muon_scale if scale is None else scale)))


def squared_frobenius_error(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """SFE ``‖W − W̃‖_F²``: how far a reinitialization moved a weight (FIRE Eq. 1)."""
    return ((after.to(torch.float32) - before.to(torch.float32)) ** 2).sum()


def isometry_residual(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """``R(W) = ‖G − sI‖_F²`` (differentiable), Gram on the smaller side (arXiv 2606.09762)."""
    m = as_matrix(weight)
    gram = _small_gram(m)
    eye = torch.eye(gram.shape[-1], dtype=gram.dtype, device=gram.device)
    return ((gram - scale * eye) ** 2).sum()


def isometry_grad_and_gram(
    weight: torch.Tensor, scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``∇R(W)`` of :func:`isometry_grad` and the Gram on the smaller side it was built from."""
    m = as_matrix(weight)
    if m.shape[0] >= m.shape[1]:
        gram = m.T @ m
        grad = torch.addmm(m, m, gram, beta=-scale)  # W(WᵀW) − sW
    else:
        gram = m @ m.T
        grad = torch.addmm(m, gram, m, beta=-scale)  # (WWᵀ)W − sW
    return (4.0 * grad).reshape(weight.shape), gram


def isometry_grad(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Closed-form ``∇R(W)``: tall ``4W(WᵀW − sI)``, wide ``4(WWᵀ − sI)W`` (no autograd).

    Two dense matmuls, ``O(d_out·d_in·min(d_out, d_in))``; returned in the weight's shape.
    """
    return isometry_grad_and_gram(weight, scale)[0]


def gram_eigenvalue_bound(gram: torch.Tensor) -> torch.Tensor:
    """An upper bound on the largest eigenvalue of a Gram matrix (``σ_max²`` of its ``W``).

    The smaller of its Frobenius norm and its largest absolute row sum (Gershgorin), both
    ``O(d²)`` and both exact for ``sI``, so the bound is tight near isometry. A 0-dim tensor on
    the Gram's device (no host sync).
    """
    return torch.minimum(torch.linalg.matrix_norm(gram), gram.abs().sum(-1).max())


def isometry_penalty(
    module: nn.Module, scale: float = 1.0, heads: Iterable[str] | None = None
) -> torch.Tensor:
    """Coupled isometry regularizer: ``Σ R(W)`` over the hidden layers' weights of ``module``.

    Heads (the last layer unless named) and biases are skipped, as in arXiv 2606.09762;
    multiply by a coefficient and add it to the loss. The decoupled alternative is
    :class:`plasticity.AdamO`.
    """
    terms = [isometry_residual(layer.weight, scale) for _, layer in hidden_layers(module, heads)]
    if not terms:
        return next(module.parameters()).new_zeros(())
    return torch.stack(terms).sum()
