"""DASH (Shin et al. 2024): shrink factors from the formula, the schedule around task switches."""

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import mlp

from plasticity import make_method
from plasticity.dash import shrink_factors


def test_shrink_factor_per_row_on_a_hand_made_pair():
    net = torch.nn.Sequential(torch.nn.Linear(2, 3))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
        net[0].bias.copy_(torch.tensor([1.0, 0.0, 0.0]))
    handle = make_method("dash", dash_alpha=1.0, dash_lambda=0.3).attach(net, lr=0.0)
    # α = 1: G is minus the last gradient
    net[0].weight.grad = torch.tensor([[-2.0, 0.0], [-1.0, -1.0], [1.0, 1.0]])
    net[0].bias.grad = torch.tensor([-1.0, -1.0, 0.0])
    handle.on_task_switch()
    handle.after_backward()  # as an update does, between backward() and the optimizer step
    (report,) = handle.after_update(1)
    # rows: G aligned with W (cos 1), at 45° (cos 1/√2), opposite (cos -1: clamped to λ)
    expected_rows = torch.tensor([1.0, 1 / math.sqrt(2), 0.3])
    torch.testing.assert_close(
        net[0].weight, torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]) * expected_rows[:, None]
    )
    bias_factor = 1 / math.sqrt(2)  # cos((1, 1, 0), (1, 0, 0)): one factor for the vector
    torch.testing.assert_close(net[0].bias, torch.tensor([bias_factor, 0.0, 0.0]))
    assert report.method == "dash" and report.reinitialized


def test_conv_factors_are_per_output_and_input_kernel():
    weight, descent = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2)
    factors = shrink_factors(weight, descent, 0.1)
    assert factors.shape == (4, 3, 1, 1)
    for o in range(4):
        for i in range(3):
            cosine = F.cosine_similarity(descent[o, i].flatten(), weight[o, i].flatten(), dim=0)
            assert factors[o, i, 0, 0] == pytest.approx(float(cosine.clamp(0.1, 1.0)), abs=1e-6)


def test_descent_averages_over_updates_and_restarts_at_each_shrink():
    net = mlp()
    handle = make_method("dash", dash_every=3, dash_alpha=0.5).attach(net, lr=1e-3)
    x = torch.randn(16, 8)
    grads = []
    for step in range(1, 4):
        handle.optimizer.zero_grad()
        net(x).pow(2).mean().backward()
        grads.append(net[0].weight.grad.clone())
        handle.after_backward()
        handle.optimizer.step()
        if step < 3:
            assert not handle.after_update(step)
            expected = sum(-0.5 * 0.5 ** (len(grads) - 1 - k) * g for k, g in enumerate(grads))
            torch.testing.assert_close(handle.parts[0].descent["0.weight"], expected)
    buffers = dict(handle.parts[0].descent)
    assert [r.method for r in handle.after_update(3)] == ["dash"]
    descent = handle.parts[0].descent
    assert all(descent[k] is buffers[k] and not descent[k].any() for k in buffers)  # in place


def test_the_average_is_read_inside_the_update_not_after_it():
    """G folds each update's own gradients at after_backward: gradients that change after the
    optimizer step (another loss's backward, as SAC's actor loss reaches the critic) do not
    enter it, and after_update reads no gradient at all."""
    net = mlp()
    handle = make_method("dash", dash_every=0, dash_alpha=1.0).attach(net, lr=1e-3)
    handle.optimizer.zero_grad()
    net(torch.randn(16, 8)).pow(2).mean().backward()
    own = net[0].weight.grad.clone()
    handle.after_backward()
    handle.optimizer.step()
    net[0].weight.grad.fill_(float("nan"))  # what a replayed graph could leave there
    assert handle.after_update(1) == []
    torch.testing.assert_close(handle.parts[0].descent["0.weight"], -own)


def test_a_checkpoint_without_some_buffers_loads_them_as_zero():
    handle = make_method("dash").attach(mlp(), lr=1e-3)
    handle.parts[0].descent["0.weight"].fill_(1.0)
    handle.parts[0].load_state_dict({"dash_descent": {}})  # saved before any gradient
    assert not any(buffer.any() for buffer in handle.parts[0].descent.values())


def test_a_task_switch_shrinks_after_the_next_update_only():
    handle = make_method("dash").attach(mlp(), lr=1e-3)
    net = handle.network
    net(torch.randn(4, 8)).sum().backward()
    assert handle.on_task_switch() == []
    assert handle.after_update(1) and not handle.after_update(2)
