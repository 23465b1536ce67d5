"""Self-normalized resets (Farias & Jozefiak 2024): a silent unit's reset, the rejection test."""

import numpy as np
import torch
from conftest import mlp

from plasticity import make_method
from plasticity.snr import update_thresholds_


def test_a_unit_silent_for_its_threshold_is_reset_with_its_moments():
    net = mlp((8, 32, 4))
    hidden, head = net[0], net[2]
    with torch.no_grad():  # unit 5 never fires: all its pre-activations are negative
        hidden.weight[5] = 0.0
        hidden.bias[5] = -10.0
    batch = 16
    handle = make_method("snr", snr_tau_init=3 * batch).attach(net, lr=1e-3)
    x = torch.randn(batch, 8)
    silent = ~(torch.relu(hidden(x)) > 0).any(0)
    assert silent[5]
    for step in (1, 2):
        handle.optimizer.zero_grad()
        (net(x) - 1).pow(2).mean().backward()
        handle.optimizer.step()
        assert not handle.after_update(step, inputs=x)  # ages 16, 32 < τ = 48
    handle.optimizer.zero_grad()
    (net(x) - 1).pow(2).mean().backward()
    handle.optimizer.step()
    (report,) = handle.after_update(3, inputs=x)  # age 48 reaches τ
    reset = sorted(silent.nonzero().flatten().tolist())
    assert report.layers["0"]["reset"] == len(reset)
    assert hidden.bias[5] == 0 and hidden.weight[5].any() and not head.weight[:, 5].any()
    state = handle.optimizer.state
    assert not state[head.weight]["exp_avg"][:, reset].any()
    assert not state[hidden.weight]["exp_avg_sq"][reset].any()
    assert int(handle.parts[0].units["0"]["age"][5]) == 0


def test_thresholds_follow_the_rejection_test():
    batch = 10
    histogram = torch.zeros(3, 21)
    histogram[0, 0] = 9  # fires in 9 batches of 10 right away, once after 5 silent batches:
    histogram[0, 5] = 1  # 90% of its intervals are 0
    histogram[1, 12] = 4  # always 12 batches apart: 120 samples, above its τ of 100
    state = {
        "layer": {
            "histogram": histogram,
            "tau": torch.tensor([100, 100, 150]),
            "batch": batch,
            "age": torch.zeros(3, dtype=torch.long),
        }
    }
    update_thresholds_(state, percentile=0.9, expansion=2.0, tau_max=200)
    # an independent reading of the rule: p = the first interval whose CDF reaches 90%
    cdf = np.cumsum([9, 0, 0, 0, 0, 1]) / 10
    p0 = int(np.argmax(cdf >= 0.9)) * batch
    assert p0 == 0
    # unit 0: p < τ, τ = p clipped up to the batch size; unit 1: p ≥ τ, doubled; unit 2
    # (never fired): doubled, clipped to τ_max
    assert state["layer"]["tau"].tolist() == [batch, 200, 200]
    assert not state["layer"]["histogram"].any()


def test_thresholds_are_re_estimated_every_few_task_switches():
    handle = make_method("snr", snr_tau_every=2, snr_tau_init=64).attach(mlp(), lr=1e-3)
    x = torch.randn(16, 8)
    handle.after_update(1, inputs=x)
    units = handle.parts[0].units
    initial = {name: unit["tau"].clone() for name, unit in units.items()}
    handle.on_task_switch()
    assert all(torch.equal(initial[name], unit["tau"]) for name, unit in units.items())
    handle.on_task_switch()  # the second: re-estimated (units that fired: τ = the batch size)
    assert any(not torch.equal(initial[name], unit["tau"]) for name, unit in units.items())
