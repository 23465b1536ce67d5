"""Regularizers against their formulas, and networks that take several arguments."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import mlp
from torch import nn

from plasticity import (
    PlasticityMonitor,
    effective_rank_ascent_,
    l2_init_penalty,
    l2_penalty,
    make_method,
    parseval_penalty,
    redo_,
    spectral_penalty,
)
from plasticity.metrics import effective_rank
from plasticity.regularizers import differentiable_effective_rank, random_unit_vectors


def test_l2_init_penalty_hand_computed():
    net = mlp()
    initial = copy.deepcopy(net.state_dict())
    assert l2_init_penalty(net, initial).item() == 0.0
    with torch.no_grad():
        net[0].weight.add_(0.5)  # 32·8 entries moved by 0.5
        net[4].bias.sub_(1.0)  # 4 entries moved by 1
    assert l2_init_penalty(net, initial).item() == pytest.approx(32 * 8 * 0.25 + 4 * 1.0)
    with pytest.raises(ValueError, match="initial_state has no entry '0.weight'"):
        l2_init_penalty(net, {})


def test_l2_penalty_hand_computed():
    net = nn.Linear(2, 2)
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[1.0, -2.0], [0.0, 3.0]]))
        net.bias.copy_(torch.tensor([0.5, -1.0]))
    assert l2_penalty(net).item() == pytest.approx(1 + 4 + 9 + 0.25 + 1)  # biases included
    l2_penalty(net).backward()
    torch.testing.assert_close(net.weight.grad, 2 * net.weight.detach())


def test_parseval_uses_the_row_gram_on_hidden_layers():
    net = mlp((6, 10, 3, 2))  # layer '0' is tall (10×6), layer '2' wide (3×10)
    expected = sum(
        ((net[i].weight @ net[i].weight.T - 2.0 * torch.eye(net[i].weight.shape[0])) ** 2).sum()
        for i in (0, 2)
    )
    torch.testing.assert_close(parseval_penalty(net, scale=2.0), expected)


def test_spectral_penalty_tracks_the_largest_singular_value():
    net = mlp((6, 10, 12, 2))
    vectors: dict[str, torch.Tensor] = {}
    for _ in range(50):  # power iteration converges across calls
        penalty = spectral_penalty(net, vectors)
    sigmas = [torch.linalg.svdvals(net[i].weight.detach())[0] for i in (0, 2)]
    expected = sum((s**2 - 1.0) ** 2 for s in sigmas)
    torch.testing.assert_close(penalty.detach(), expected, rtol=1e-4, atol=1e-6)
    penalty.backward()
    assert net[0].weight.grad is not None and net[4].weight.grad is None  # head excluded


def test_spectral_penalty_keeps_its_estimates_when_the_network_changes_dtype():
    net = mlp((6, 10, 12, 2))
    vectors = random_unit_vectors(net)
    float64 = {name: v.double() for name, v in vectors.items()}
    net.double()
    penalty = spectral_penalty(net, vectors)
    assert all(v.dtype == torch.float64 for v in vectors.values())
    torch.testing.assert_close(penalty, spectral_penalty(net, float64), rtol=0, atol=0)


def test_differentiable_effective_rank_matches_the_metric():
    features = torch.randn(100, 12) @ torch.diag(torch.linspace(0.1, 3.0, 12))
    assert differentiable_effective_rank(features).item() == pytest.approx(
        effective_rank(features), rel=1e-5
    )


def test_effective_rank_ascent_raises_the_rank():
    net = mlp((8, 32, 32, 4))
    with torch.no_grad():  # collapse layer '2' toward rank 1
        net[2].weight.copy_(torch.randn(32, 1) @ torch.randn(1, 32) + 0.01 * torch.randn(32, 32))
    x = torch.randn(128, 8)
    before = effective_rank_ascent_(net, x, lr=0.5)
    for _ in range(20):
        after = effective_rank_ascent_(net, x, lr=0.5)
    assert after > before + 0.5


class TwinInputCritic(nn.Module):
    """A SAC-style critic: Q(obs, act) from concat(obs, act)."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(5 + 3, 16)
        self.fc2 = nn.Linear(16, 16)
        self.fc3 = nn.Linear(16, 1)

    def forward(self, obs, act):
        h = F.relu(self.fc1(torch.cat([obs, act], 1)))
        return self.fc3(F.relu(self.fc2(h)))


def test_networks_with_several_arguments_take_a_tuple_probe():
    critic = TwinInputCritic()
    probe = (torch.randn(64, 5), torch.randn(64, 3))
    metrics = PlasticityMonitor(critic).measure(probe)
    assert {"fc1/dormant_ratio", "fc2/effective_rank", "fc3/dfi"} <= set(metrics)
    with torch.no_grad():
        critic.fc1.weight[:4] = 0.0
        critic.fc1.bias[:4] = -1.0
    report = redo_(critic, probe, tau=0.0)
    assert report.layers["fc1"]["dormant"] >= 4
    assert not critic.fc2.weight[:, :4].any()
    handle = make_method("redo+isometry", redo_every=1).attach(critic, lr=1e-3)
    assert handle.after_update(1, inputs=probe)[0].method == "redo"
    with pytest.raises(ValueError, match="inputs of shape \\(64, 5\\) do not fit TwinInputCritic"):
        PlasticityMonitor(critic).measure(probe[0])
