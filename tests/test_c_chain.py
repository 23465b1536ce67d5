"""C-CHAIN (Tang et al. 2025): the churn term, its adaptive coefficient, less churn."""

import copy

import torch
from conftest import mlp

from plasticity import make_method


def test_the_penalty_is_the_output_change_since_the_previous_update_on_the_reference():
    net = mlp()
    handle = make_method("c_chain", c_chain_coef=3.0).attach(net, lr=1e-2)
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randn(32, 8, generator=gen) for _ in range(4)]
    snapshot = None
    for step, x in enumerate(batches, start=1):
        main = (net(x) - 1).pow(2).mean()
        penalty = handle.penalty()  # no main loss: λ stays c_chain_coef
        if step >= 2:  # a reference (batch 1, 2, …) and the network one update earlier exist
            reference = batches[step - 2]
            expected = 3.0 * (net(reference) - snapshot(reference)).pow(2).mean()
            torch.testing.assert_close(penalty, expected)
            assert penalty.requires_grad and penalty > 0
        snapshot = copy.deepcopy(net)
        handle.optimizer.zero_grad()
        (main + penalty).backward()
        handle.optimizer.step()
        handle.after_update(step, inputs=x)


def test_the_coefficient_adapts_to_the_main_loss_over_its_window():
    net = mlp()
    settings = {"c_chain_coef": 7.0, "c_chain_target": 0.5, "c_chain_window": 3}
    handle = make_method("c_chain", c_chain_start=2, **settings).attach(net, lr=1e-2)
    part = handle.parts[0]
    x = torch.randn(32, 8)
    mains, churns, coefficients = [], [], []
    for step in range(1, 8):
        main = (net(x) - 1).pow(2).mean()
        penalty = handle.penalty(main)
        if step >= 2:  # from the second update on: a reference and an earlier network exist
            churn = float(part.coefficient.regularizer[(step - 2) % 3])
            mains.append(abs(float(main.detach())))
            churns.append(churn)
            coefficients.append(float(penalty.detach()) / churn)
        handle.optimizer.zero_grad()
        (main + penalty).backward()
        handle.optimizer.step()
        handle.after_update(step, inputs=x)
    # λ: the initial value for the first 2 updates recorded, then target·mean|L| / mean R over
    # the last (up to) 3 updates
    for k, coefficient in enumerate(coefficients):
        if k < 2:
            expected = 7.0
        else:
            window = slice(max(0, k - 2), k + 1)
            mean_main = sum(mains[window]) / len(mains[window])
            expected = 0.5 * mean_main / (sum(churns[window]) / len(churns[window]) + 1e-8)
        assert abs(coefficient - expected) <= 1e-3 * expected, (k, coefficient, expected)


def test_it_reduces_churn_on_data_it_is_not_trained_on():
    def mean_churn(method):
        torch.manual_seed(0)
        net = mlp()
        handle = make_method(method, c_chain_coef=100.0).attach(net, lr=1e-2)
        gen = torch.Generator().manual_seed(2)
        held_out = torch.randn(256, 8, generator=gen)
        changes = []
        for step in range(1, 101):
            x = torch.randn(32, 8, generator=gen)
            before = net(held_out).detach()
            main = (net(x) - x[:, :4].sin()).pow(2).mean()
            handle.optimizer.zero_grad()
            (main + handle.penalty()).backward()
            handle.optimizer.step()
            handle.after_update(step, inputs=x)
            changes.append(float((net(held_out).detach() - before).pow(2).mean()))
        return sum(changes[10:]) / len(changes[10:])

    assert mean_churn("c_chain") < 0.7 * mean_churn("none")
