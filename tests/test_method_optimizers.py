"""Optimizers as methods: which parameters each trains, its update, its checkpoint."""

import io

import pytest
import torch
from conftest import mlp

from plasticity import make_method
from plasticity.optim import CombinedOptimizer


def step(handle, net, x):
    handle.optimizer.zero_grad()
    (net(x) - 1).pow(2).mean().backward()
    handle.optimizer.step()


def test_muon_trains_hidden_matrices_and_adam_the_rest():
    net = mlp()
    handle = make_method("muon", muon_lr_scale=10.0).attach(net, lr=1e-3)
    optimizer = handle.optimizer
    assert isinstance(optimizer, CombinedOptimizer)
    muon, adam = optimizer.optimizers["muon"], optimizer.optimizers["adam"]
    assert [p for g in muon.param_groups for p in g["params"]] == [net[0].weight, net[2].weight]
    assert {id(p) for g in adam.param_groups for p in g["params"]} == {
        id(p) for p in (net[0].bias, net[2].bias, net[4].weight, net[4].bias)
    }
    assert muon.param_groups[0]["lr"] == pytest.approx(1e-2)
    before = [p.detach().clone() for p in net.parameters()]
    step(handle, net, torch.randn(32, 8))
    # Muon's first update is the gradient orthogonalized: the singular values of
    # ΔW / (lr·√max(1, out/in)) are near 1 (Newton–Schulz's quintic leaves them in about
    # [0.7, 1.2]) along the gradient's strong directions, where its σ is over a fifth of its top
    for index, weight in ((0, net[0].weight), (2, net[2].weight)):
        scale = 1e-2 * max(1.0, weight.shape[0] / weight.shape[1]) ** 0.5
        singular = torch.linalg.svdvals((weight - before[index]).detach() / scale)
        gradient = torch.linalg.svdvals(weight.grad)
        strong = int((gradient > 0.2 * gradient[0]).sum())
        assert singular[:strong].min() > 0.5 and singular.max() < 1.3, singular
    # Adam's first step moves each entry with a gradient by lr (dead units' inputs stay)
    head_delta = (net[4].weight - before[4]).detach()
    moved = net[4].weight.grad != 0
    assert moved.sum() > 100
    torch.testing.assert_close(head_delta[moved].abs(), torch.full_like(head_delta[moved], 1e-3))
    assert not head_delta[~moved].any()


def test_muon_state_survives_a_checkpoint_and_interventions_reset_it():
    net = mlp()
    handle = make_method("muon+fire", fire_every=2).attach(net, lr=1e-3)
    x = torch.randn(32, 8)
    step(handle, net, x)
    buffer = io.BytesIO()
    torch.save(handle.state_dict(), buffer)
    buffer.seek(0)
    again = make_method("muon+fire", fire_every=2).attach(mlp(), lr=1e-3)
    again.load_state_dict(torch.load(buffer, weights_only=True))
    momentum = again.optimizer.optimizers["muon"].state_dict()["state"][0]["momentum_buffer"]
    torch.testing.assert_close(momentum, handle.optimizer.state[net[0].weight]["momentum_buffer"])
    step(handle, net, x)
    assert handle.after_update(2)  # FIRE resets the whole network's state, Muon's included
    assert not handle.optimizer.state[net[0].weight]["momentum_buffer"].any()
    assert not handle.optimizer.state[net[4].weight]["exp_avg"].any()


def test_two_optimizers_are_refused():
    with pytest.raises(ValueError, match="combines the optimizers muon and adamo; keep one"):
        make_method("muon+adamo")


def test_trac_starts_at_its_reference_and_its_state_resumes_exactly():
    pytest.importorskip("trac_optimizer")
    net = mlp()
    start = [p.detach().clone() for p in net.parameters()]
    handle = make_method("trac").attach(net, lr=1e-2)
    x = torch.randn(32, 8)
    step(handle, net, x)
    # S starts at about s_prev = 1e-8: the first step barely leaves θ_ref (Adam's: lr per entry)
    moved = max(
        float((p.detach() - p0).abs().max()) for p, p0 in zip(net.parameters(), start, strict=True)
    )
    assert moved < 1e-6
    for _ in range(200):
        step(handle, net, x)
    moved = max(
        float((p.detach() - p0).abs().max()) for p, p0 in zip(net.parameters(), start, strict=True)
    )
    assert moved > 1e-3  # S grew while the gradients kept agreeing with the displacement
    buffer = io.BytesIO()
    torch.save(handle.state_dict(), buffer)
    buffer.seek(0)
    copy = mlp()
    copy.load_state_dict(net.state_dict())
    again = make_method("trac").attach(copy, lr=1e-2)
    again.load_state_dict(torch.load(buffer, weights_only=True))
    for _ in range(3):
        step(handle, net, x)
        step(again, copy, x)
    for p, q in zip(net.parameters(), copy.parameters(), strict=True):
        torch.testing.assert_close(p, q)
