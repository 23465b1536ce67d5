"""Normalize-and-project (Lyle et al. 2024): norms held at their initial values after updates."""

import gymnasium as gym
import pytest
import torch
from conftest import normalized_mlp
from torch import nn

from agents import dqn, ppo, sac
from plasticity import make_method


def norms(net):
    weights = {
        name: float(m.weight.detach().norm())
        for name, m in net.named_modules()
        if isinstance(m, nn.Linear)
    }
    affine = {
        name: float(torch.cat([m.weight, m.bias]).detach().norm())
        for name, m in net.named_modules()
        if isinstance(m, nn.LayerNorm)
    }
    return weights, affine


def test_every_weight_norm_and_each_gain_offset_pair_stay_at_their_initial_norms():
    net = normalized_mlp()
    initial_weights, initial_affine = norms(net)
    assert all(value == pytest.approx(32**0.5) for value in initial_affine.values())  # √d
    biases = [m.bias.detach().clone() for m in net if isinstance(m, nn.Linear)]
    handle = make_method("nap").attach(net, lr=1e-2)
    x = torch.randn(64, 8)
    for step in range(1, 21):
        handle.optimizer.zero_grad()
        (net(x) - 3).pow(2).mean().backward()
        handle.optimizer.step()
        grown = norms(net)[0]
        handle.after_update(step, inputs=x)
        weights, affine = norms(net)
        for name, value in weights.items():
            assert value == pytest.approx(initial_weights[name], rel=1e-5)
        for name, value in affine.items():
            assert value == pytest.approx(initial_affine[name], rel=1e-5)
    assert grown != initial_weights  # the updates did move the norms: the projection acted
    after = [m.bias for m in net if isinstance(m, nn.Linear)]
    assert all(not torch.equal(a, b) for a, b in zip(after, biases, strict=True))  # not projected


def test_a_network_without_normalization_is_refused():
    with pytest.raises(ValueError, match="has no normalization layer: add them"):
        make_method("nap").attach(nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)), 1e-3)


def test_layer_norm_puts_a_normalization_before_each_hidden_nonlinearity():
    box = gym.spaces.Box(-1, 1, (5,))
    image = gym.spaces.Box(0, 255, (4, 10, 10), dtype="uint8")
    networks = [
        sac.TwinQ(5, 2, 16, layer_norm=True).qf1,
        dqn.QNetwork((5,), 3, layer_norm=True).network,
        dqn.QNetwork((4, 10, 10), 3, layer_norm=True).network,
        ppo.Critic(box, 16, layer_norm=True).trunk,
        ppo.Actor(image, gym.spaces.Discrete(3), 16, layer_norm=True).trunk,
    ]
    for network in networks:
        modules = list(network)
        activations = [i for i, m in enumerate(modules) if isinstance(m, (nn.ReLU, nn.Tanh))]
        assert activations
        assert all(isinstance(modules[i - 1], (nn.LayerNorm, nn.GroupNorm)) for i in activations)
    actor = sac.Actor(5, gym.spaces.Box(-1, 1, (2,)), 16, layer_norm=True)
    assert isinstance(actor.norm1[0], nn.LayerNorm) and isinstance(actor.norm2[0], nn.LayerNorm)
    # without the flag: the networks and their checkpoints as before
    assert sac.TwinQ(5, 2, 16).heads == ("qf1.4", "qf2.4")
    assert not any(isinstance(m, nn.LayerNorm) for m in sac.Actor(5, box, 16).modules())
