"""Continual backprop (Dohare et al. 2024): how many units, which ones, and what they become."""

import torch
from conftest import mlp, normalized_mlp

from plasticity import make_method


def train_step(handle, net, x):
    loss = (net(x) - 1).pow(2).mean()
    handle.optimizer.zero_grad()
    loss.backward()
    handle.optimizer.step()


def test_replaces_the_rate_of_mature_units_over_many_updates():
    net = mlp()
    # maturity 0: every unit is mature from its first update on, replaced ones included
    handle = make_method("cbp", cbp_replacement_rate=0.01, cbp_maturity=0, cbp_decay=0.9).attach(
        net, lr=1e-3
    )
    replaced = {"0": 0.0, "2": 0.0}
    x = torch.randn(64, 8)
    for step in range(1, 101):
        train_step(handle, net, x)
        for report in handle.after_update(step, inputs=x):
            for layer, metrics in report.layers.items():
                replaced[layer] += metrics["replaced"]
    # 100 updates × 1% of 32 mature units, fractions carried over: 32 per layer (± rounding)
    assert all(abs(count - 32) <= 1 for count in replaced.values()), replaced
    assert handle.interventions_by_method["cbp"] > 0


def test_immature_units_are_protected():
    net = mlp()
    handle = make_method("cbp", cbp_replacement_rate=0.5, cbp_maturity=5).attach(net, lr=1e-3)
    x = torch.randn(16, 8)
    reports = []
    for step in range(1, 8):
        train_step(handle, net, x)
        reports.append(handle.after_update(step, inputs=x))
    assert [bool(r) for r in reports] == [False] * 5 + [True] * 2  # ages 1..5 are not > 5


def test_lowest_contribution_units_get_fresh_inputs_and_no_outputs():
    net = mlp((8, 32, 4))
    hidden, head = net[0], net[2]
    handle = make_method("cbp", cbp_replacement_rate=3 / 32, cbp_maturity=0, cbp_decay=0.0).attach(
        net, lr=1e-2
    )
    x = torch.randn(64, 8)
    train_step(handle, net, x)
    # the contribution utility of the paper, computed here from the weights after the update
    with torch.no_grad():
        features = torch.relu(hidden(x))
        utility = features.abs().mean(0) * head.weight.abs().mean(0)
        expected = set(torch.argsort(utility)[:3].tolist())
        head_bias = (
            head.bias + head.weight[:, sorted(expected)] @ features.mean(0)[sorted(expected)]
        )
        rows_before = hidden.weight.clone()
    (report,) = handle.after_update(1, inputs=x)
    assert report.layers["0"]["replaced"] == 3
    changed = (hidden.weight != rows_before).any(1).nonzero().flatten().tolist()
    assert set(changed) == expected  # fresh incoming weights for those units only
    units = sorted(expected)
    assert (hidden.bias[units] == 0).all() and (head.weight[:, units] == 0).all()
    # the head's bias absorbs the replaced units' mean contribution: outputs keep their mean
    torch.testing.assert_close(head.bias, head_bias)
    state = handle.optimizer.state
    for key in ("exp_avg", "exp_avg_sq"):
        assert (state[hidden.weight][key][units] == 0).all()
        assert (state[hidden.bias][key][units] == 0).all()
        assert (state[head.weight][key][:, units] == 0).all()
        kept = [u for u in range(32) if u not in expected]
        assert (state[head.weight][key][:, kept] != 0).any()


def test_state_resumes_from_a_checkpoint():
    net = mlp()
    settings = {"cbp_replacement_rate": 0.05, "cbp_maturity": 2}
    handle = make_method("cbp", **settings).attach(net, lr=1e-3)
    x = torch.randn(16, 8)
    for step in range(1, 4):
        train_step(handle, net, x)
        handle.after_update(step, inputs=x)
    again = make_method("cbp", **settings).attach(net, lr=1e-3)
    again.load_state_dict(handle.state_dict())
    torch.testing.assert_close(again.parts[0].units, handle.parts[0].units)


def test_utility_reads_the_units_after_their_normalization():
    net = normalized_mlp()
    handle = make_method("cbp", cbp_maturity=10**6, cbp_decay=0.0).attach(net, lr=1e-3)
    x = torch.randn(64, 8)
    handle.after_update(1, inputs=x)  # nothing mature: utilities only
    with torch.no_grad():
        features = torch.relu(net[1](net[0](x)))  # Linear, LayerNorm, ReLU
        expected = features.abs().mean(0) * net[3].weight.abs().mean(0)
    torch.testing.assert_close(handle.parts[0].units["0"]["utility"], expected)
