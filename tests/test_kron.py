"""PSGD-Kron: the preconditioner it fits, its speed on an ill-conditioned regression, its
schedule, its checkpoint and its part in the method registry."""

import io
import math

import pytest
import torch
from conftest import mlp, random_orthogonal
from torch import nn

from plasticity import Kron, clear_optimizer_state_, make_method
from plasticity.kron import precond_update_probability, spectral_norm_lower_bound


def spd(size: int, condition: float) -> torch.Tensor:
    """A symmetric positive definite matrix with eigenvalues log-spaced over ``condition``."""
    q = random_orthogonal(size).float()
    return q @ torch.diag(torch.logspace(0, math.log10(condition), size)) @ q.T


def fitted_matrix(optimizer: Kron, param: torch.Tensor) -> torch.Tensor:
    """The preconditioner ``P = Q₂ᵀQ₂ ⊗ Q₁ᵀQ₁`` of a matrix, acting on its column-major vec."""
    left, right = optimizer.state[param]["preconditioner"]
    return torch.kron(right.T @ right, left.T @ left)


def test_fed_a_quadratics_gradients_the_preconditioner_approaches_the_inverse_hessian():
    # f(W) = ½⟨W, H₁WH₂⟩ has the Hessian H₂ ⊗ H₁; its gradient H₁WH₂ at points W ~ N(0, I) has
    # the covariance (H₂ ⊗ H₁)², whose whitening E[ggᵀ]^(-1/2) is the inverse Hessian
    left, right = spd(6, 10.0), spd(4, 5.0)
    inverse_hessian = torch.kron(torch.linalg.inv(right), torch.linalg.inv(left))
    weight = nn.Parameter(torch.zeros(6, 4))
    optimizer = Kron([weight], lr=0.0, b1=0.0, precond_update_probability=1.0, precond_lr=0.03)
    errors = []
    for _ in range(1500):
        with torch.no_grad():
            weight.copy_(torch.randn(6, 4))
        optimizer.zero_grad()
        (0.5 * (weight * (left @ weight @ right)).sum()).backward()
        optimizer.step()
        error = fitted_matrix(optimizer, weight) - inverse_hessian
        errors.append(float(error.norm() / inverse_hessian.norm()))
    assert errors[0] > 0.5  # P starts near the identity, far from H⁻¹
    assert max(errors[-200:]) < 0.15, errors[-200:]
    # the factors stay upper triangular (the Lie group the fit moves on)
    for factor in optimizer.state[weight]["preconditioner"]:
        assert torch.equal(factor, torch.triu(factor))


def regression_loss(make_optimizer, steps: int = 500) -> float:
    """Full-batch MSE after minibatch training of a linear model on inputs whose scales span
    two decades (a Hessian with condition number 1e4); the initial loss is about 170."""
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(1024, 16, generator=generator) * torch.logspace(-1, 1, 16)
    targets = inputs @ torch.randn(16, 4, generator=generator)
    model = nn.Linear(16, 4, bias=False)
    optimizer = make_optimizer(model.parameters())
    for _ in range(steps):
        batch = torch.randint(0, 1024, (64,), generator=generator)
        optimizer.zero_grad()
        (model(inputs[batch]) - targets[batch]).pow(2).mean().backward()
        optimizer.step()
    with torch.no_grad():
        return float((model(inputs) - targets).pow(2).mean())


def test_kron_fits_an_ill_conditioned_regression_that_sgd_cannot_at_any_rate():
    kron = regression_loss(lambda params: Kron(params, lr=1e-2))
    assert kron < 0.05
    assert regression_loss(lambda params: torch.optim.SGD(params, lr=1e-2)) > 10 * kron
    for lr in (3e-3, 2e-2, 3e-2, 5e-2):  # slower still, or diverging
        loss = regression_loss(lambda params, lr=lr: torch.optim.SGD(params, lr=lr))
        assert not loss < 0.1, (lr, loss)


def test_the_fit_follows_the_reference_schedule():
    assert precond_update_probability(0) == precond_update_probability(500) == 1.0
    assert precond_update_probability(1500) == pytest.approx(math.exp(-1.0))
    assert precond_update_probability(10_000) == 0.03
    weight = nn.Parameter(torch.randn(3, 3))
    optimizer = Kron([weight])
    fits = []
    for _ in range(1600):
        weight.grad = torch.randn(3, 3)
        optimizer.step()
        fits.append(optimizer.state[weight]["fits"])
    assert fits[500] == 501  # every step at first
    # then every ⌈1/p⌉-th step: from step 1500 on, 1/p ≈ e ≈ 2.7 to 3, every third
    assert fits[1599] - fits[1499] == pytest.approx(100 / 3, abs=1)


def test_a_cleared_state_continues_as_a_fresh_optimizer():
    net, twin = mlp(), mlp()
    twin.load_state_dict(net.state_dict())
    x = torch.randn(32, 8)
    used = Kron(net.parameters(), lr=1e-3, seed=3)
    for _ in range(5):
        used.zero_grad()
        net(x).pow(2).mean().backward()
        used.step()
    twin.load_state_dict(net.state_dict())
    clear_optimizer_state_(used, net.parameters())  # what FIRE and reset do
    fresh = Kron(twin.parameters(), lr=1e-3, seed=3)
    probes = {"probe_generators": used.state_dict()["probe_generators"]}  # the same next probes
    fresh.load_state_dict({**fresh.state_dict(), **probes})
    for model, optimizer in ((net, used), (twin, fresh)):
        for _ in range(3):
            optimizer.zero_grad()
            model(x).pow(2).mean().backward()
            optimizer.step()
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


def train(handle, net, x, steps):
    for _ in range(steps):
        handle.optimizer.zero_grad()
        (net(x) - 1).pow(2).mean().backward()
        handle.optimizer.step()


def test_its_state_round_trips_through_a_checkpoint_bit_for_bit():
    net = mlp()
    handle = make_method("kron").attach(net, lr=1e-3)
    x = torch.randn(32, 8)
    train(handle, net, x, 7)  # momentum, fitted factors, counters, a used probe generator
    buffer = io.BytesIO()
    torch.save(handle.state_dict(), buffer)
    buffer.seek(0)
    copy = mlp()
    copy.load_state_dict(net.state_dict())
    again = make_method("kron").attach(copy, lr=1e-3)
    again.load_state_dict(torch.load(buffer, weights_only=True))
    train(handle, net, x, 5)
    train(again, copy, x, 5)
    for p, q in zip(net.parameters(), copy.parameters(), strict=True):
        assert torch.equal(p, q)


def test_the_kron_part_trains_every_parameter_and_combines_with_penalties_and_interventions():
    net = mlp()
    handle = make_method("kron+l2_init+fire", kron_lr_scale=0.5, fire_every=2).attach(
        net, lr=1e-3, eps=1e-5
    )
    optimizer = handle.optimizer
    assert isinstance(optimizer, Kron)
    assert [p for g in optimizer.param_groups for p in g["params"]] == list(net.parameters())
    assert optimizer.param_groups[0]["lr"] == pytest.approx(5e-4)
    x = torch.randn(32, 8)
    before = [p.detach().clone() for p in net.parameters()]
    optimizer.zero_grad()
    ((net(x) - 1).pow(2).mean() + handle.penalty()).backward()
    optimizer.step()
    assert all(not torch.equal(p, b) for p, b in zip(net.parameters(), before, strict=True))
    # hidden matrices get triangular factors, vectors diagonal ones
    assert [f.shape for f in optimizer.state[net[0].weight]["preconditioner"]] == [(32, 32), (8, 8)]
    assert [f.shape for f in optimizer.state[net[0].bias]["preconditioner"]] == [(32,)]
    assert handle.after_update(2)  # FIRE clears the state: the next step restarts the factors
    assert optimizer.state[net[0].weight]["step"] == 0
    with pytest.raises(ValueError, match="combines the optimizers kron and muon; keep one"):
        make_method("kron+muon")
    with pytest.raises(ValueError, match="invalid method setting kron_precond_lr=2"):
        make_method("kron", kron_precond_lr=2)


def test_a_conv_kernel_is_fitted_as_its_out_by_fan_in_matrix():
    conv = nn.Conv2d(3, 5, 3)
    optimizer = Kron(conv.parameters(), lr=1e-2)
    before = conv.weight.detach().clone()
    conv(torch.randn(4, 3, 8, 8)).square().mean().backward()
    optimizer.step()
    state = optimizer.state[conv.weight]
    assert [f.shape for f in state["preconditioner"]] == [(5, 5), (27, 27)]
    assert state["momentum"].shape == conv.weight.shape  # unit resets zero its entries
    # the first update: RMS at most 1.1 (clipped), times lr
    assert 0 < float((conv.weight.detach() - before).square().mean().sqrt()) <= 1.1e-2 + 1e-9


def test_the_spectral_norm_bound_is_a_close_lower_bound():
    for size in (1, 5, 40):
        a = torch.randn(size, 2 * size)
        matrix = a @ a.T
        exact = torch.linalg.matrix_norm(matrix, ord=2)
        bound = spectral_norm_lower_bound(matrix)
        assert exact / 2 <= bound <= exact * (1 + 1e-5)
    assert spectral_norm_lower_bound(torch.zeros(3, 3)) == 0
