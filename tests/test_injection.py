"""Plasticity injection (Nikishin et al. 2023): same outputs when it acts, then only h' trains."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from conftest import mlp

from plasticity import make_method


def train(handle, net, steps, x):
    for _ in range(steps):
        loss = (net(x) - 1).pow(2).mean()
        handle.optimizer.zero_grad()
        loss.backward()
        handle.optimizer.step()


def test_outputs_are_unchanged_when_it_acts_and_the_target_follows():
    net = mlp()
    target = copy.deepcopy(net)
    handle = make_method("injection", injection_at=[5]).attach(net, lr=1e-2, targets=[target])
    x = torch.randn(32, 8)
    train(handle, net, 3, x)
    before, target_before = net(x).detach(), target(x).detach()
    old_head = net[4].weight.detach().clone()
    assert not handle.after_update(4) and [r.method for r in handle.after_update(5)] == [
        "injection"
    ]
    assert not torch.equal(net[4].weight, old_head)  # a new head h' was drawn
    torch.testing.assert_close(net(x), before)
    torch.testing.assert_close(target(x), target_before)
    assert not handle.after_update(6)  # once


def test_after_injection_the_output_is_old_head_plus_new_minus_its_frozen_copy():
    net = mlp()
    handle = make_method("injection").attach(net, lr=1e-2)
    trainable = [p for p in net.parameters() if p.requires_grad]
    x = torch.randn(32, 8)
    train(handle, net, 5, x)
    head = net[4]
    old = (head.weight.detach().clone(), head.bias.detach().clone())
    handle.on_task_switch()  # injects: injection_on_task_switch is on by default
    new_at_injection = (head.weight.detach().clone(), head.bias.detach().clone())
    assert all(not handle.optimizer.state[p]["exp_avg"].any() for p in head.parameters())
    train(handle, net, 20, x)
    assert not torch.equal(head.weight, new_at_injection[0])  # h' trains
    features = net[:4](x)  # the torso, trained too
    expected = (
        F.linear(features, head.weight, head.bias)
        + F.linear(features, *old)
        - F.linear(features, *new_at_injection)
    )
    torch.testing.assert_close(net(x), expected)
    # the same trainable parameters as before: the old head and h'₀ are frozen
    assert [p for p in net.parameters() if p.requires_grad] == trainable
    assert sum(len(g["params"]) for g in handle.optimizer.param_groups) == len(trainable)


def test_two_heads_and_a_checkpoint_round_trip():
    class TwoHeads(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.torso, self.mean, self.log_std = (
                torch.nn.Linear(8, 16),
                torch.nn.Linear(16, 2),
                torch.nn.Linear(16, 2),
            )

        def forward(self, x):
            h = torch.relu(self.torso(x))
            return torch.cat([self.mean(h), self.log_std(h)], 1)

    net = TwoHeads()
    handle = make_method("injection", injection_every=2).attach(
        net, lr=1e-2, heads=["mean", "log_std"]
    )
    x = torch.randn(16, 8)
    for step in range(1, 5):  # injected at 2 and 4: the offsets add up
        train(handle, net, 2, x)
        before = net(x).detach()
        handle.after_update(step)
        torch.testing.assert_close(net(x), before)
    buffer = io.BytesIO()
    torch.save(handle.state_dict(), buffer)
    buffer.seek(0)
    resumed = TwoHeads()
    resumed.load_state_dict(net.state_dict())
    again = make_method("injection", injection_every=2).attach(
        resumed, lr=1e-2, heads=["mean", "log_std"]
    )
    again.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(resumed(x), net(x))


@pytest.mark.parametrize("other", ["fire", "reset", "shrink_perturb", "redo", "cbp"])
def test_combinations_that_would_rewrite_under_the_frozen_heads_are_refused(other):
    with pytest.raises(ValueError, match=f"combines injection with {other}"):
        make_method(f"injection+{other}")
    make_method("injection+adamo+l2")  # optimizers and penalties combine


def test_code_compiled_before_the_injection_computes_the_injected_function():
    net = mlp()
    handle = make_method("injection").attach(net, lr=1e-2)
    x = torch.randn(32, 8)
    forward = torch.compile(lambda inputs: net(inputs), backend="eager")  # dynamo's view
    before = forward(x).detach()
    handle.on_task_switch()
    torch.testing.assert_close(forward(x), before)  # the offset hook was there when traced
    train(handle, net, 3, x)
    torch.testing.assert_close(forward(x), net(x))
