"""Isometry primitives against independent references (SVD, hand-computed Grams, autograd)."""

import pytest
import torch
from conftest import mlp, reference_newton_schulz, svd_polar, with_singular_values

from plasticity import deviation_from_isometry, isometry_penalty, newton_schulz, polar
from plasticity.isometry import isometry_grad, isometry_residual


@pytest.mark.parametrize("shape", [(64, 16), (16, 64), (32, 32)])
def test_newton_schulz_follows_the_fire_recipe(shape):
    w = torch.randn(shape)
    got = newton_schulz(w, steps=10)
    assert got.shape == w.shape and got.dtype == w.dtype
    torch.testing.assert_close(got.double(), reference_newton_schulz(w, 10), atol=1e-5, rtol=1e-4)


def test_newton_schulz_converges_to_the_polar_factor():
    w = with_singular_values(40, 20, torch.linspace(1.0, 3.0, 20)).float()
    got = newton_schulz(w, steps=40)
    torch.testing.assert_close(got.double(), svd_polar(w), atol=1e-5, rtol=0)


def test_newton_schulz_with_ten_steps_leaves_small_singular_values_below_one():
    # The published behaviour: Frobenius normalization + 10 cubic steps is not converged.
    w = with_singular_values(32, 32, [10.0] * 16 + [0.01] * 16).float()
    sv = torch.linalg.svdvals(newton_schulz(w, steps=10).double())
    assert sv.max() == pytest.approx(1.0, abs=1e-4)
    assert sv.min() < 0.5
    assert (sv <= 1.0 + 1e-5).all()


def test_newton_schulz_is_batched_over_leading_dims():
    w = torch.randn(3, 5, 24, 12)
    got = newton_schulz(w)
    for i in range(3):
        for j in range(5):
            torch.testing.assert_close(got[i, j], newton_schulz(w[i, j]), atol=1e-6, rtol=1e-5)


def test_polar_matches_svd_and_is_the_polar_decomposition():
    w = torch.randn(30, 10, dtype=torch.float64)
    q = polar(w)
    torch.testing.assert_close(q, svd_polar(w))
    torch.testing.assert_close(q.T @ q, torch.eye(10, dtype=torch.float64))
    p = q.T @ w  # W = QP with P symmetric positive semi-definite
    torch.testing.assert_close(p, p.T)
    assert torch.linalg.eigvalsh(p).min() > -1e-10


def test_deviation_from_isometry_hand_computed():
    w = torch.tensor([[2.0, 0.0], [0.0, 1.0], [0.0, 0.0]])  # tall: WᵀW = diag(4, 1)
    assert float(deviation_from_isometry(w)) == pytest.approx(9.0)
    assert float(deviation_from_isometry(w.T)) == pytest.approx(9.0)  # wide: WWᵀ, same
    assert float(deviation_from_isometry(w, scale=2.0)) == pytest.approx(0.0**2 + 0.75**2)
    q = torch.linalg.qr(torch.randn(50, 20))[0]
    assert float(deviation_from_isometry(q)) == pytest.approx(0.0, abs=1e-8)


def test_deviation_from_isometry_flattens_conv_kernels():
    kernel = torch.randn(8, 3, 5, 5)
    m = kernel.reshape(8, 75)
    expected = ((m @ m.T - torch.eye(8)) ** 2).sum()
    assert float(deviation_from_isometry(kernel)) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("shape", [(20, 7), (7, 20), (6, 3, 3, 3)])
@pytest.mark.parametrize("scale", [1.0, 2.0])
def test_closed_form_isometry_gradient_matches_autograd(shape, scale):
    w = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    (auto,) = torch.autograd.grad(isometry_residual(w, scale), w)
    torch.testing.assert_close(isometry_grad(w.detach(), scale), auto)


def test_isometry_penalty_sums_hidden_weights_only():
    net = mlp((6, 10, 12, 3))
    expected = sum(isometry_residual(net[i].weight) for i in (0, 2))  # head '4' and biases out
    torch.testing.assert_close(isometry_penalty(net), expected)
    with_head = expected + isometry_residual(net[4].weight)
    torch.testing.assert_close(isometry_penalty(net, heads=[]), with_head)


@pytest.mark.parametrize("fn", [newton_schulz, polar, deviation_from_isometry, isometry_grad])
def test_vectors_are_rejected_with_a_clear_message(fn):
    with pytest.raises(ValueError, match="shape \\(5,\\)"):
        fn(torch.randn(5))
