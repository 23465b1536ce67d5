"""Plasticity metrics against hand-computed values."""

import math

import pytest
import torch
from conftest import mlp, with_singular_values

from plasticity import PlasticityMonitor
from plasticity.metrics import (
    dormant_ratio,
    effective_rank,
    grad_norm,
    isometry_deviations,
    kfac_eps_rank,
    layer_jacobian_singular_values,
    srank,
    stable_rank,
)


def test_effective_rank_hand_computed():
    assert effective_rank(with_singular_values(50, 10, [3.0, 3.0])) == pytest.approx(2.0)
    p = torch.tensor([3.0, 1.0]) / 4  # σ = (3, 1): exp(−Σ p log p)
    expected = math.exp(-float((p * p.log()).sum()))
    assert effective_rank(with_singular_values(50, 10, [3.0, 1.0])) == pytest.approx(expected)


def test_srank_hand_computed():
    features = with_singular_values(40, 8, [10.0, 5.0, 1.0])  # cumulative 10/16, 15/16, 1
    assert srank(features, delta=0.01) == 3
    assert srank(features, delta=0.1) == 2
    assert srank(features, delta=0.5) == 1


def test_stable_rank_hand_computed():
    assert stable_rank(with_singular_values(30, 6, [2.0, 1.0])) == pytest.approx(1.25)


def test_dormant_ratio_hand_computed():
    h = torch.tensor([[1.0, 2.0, 0.0, 3.0], [1.0, 2.0, 0.0, 1.0]])  # E|h| = 1, 2, 0, 2
    assert dormant_ratio(h, tau=0.0) == 0.25
    assert dormant_ratio(h, tau=0.85) == 0.5  # scores 0.8, 1.6, 0, 1.6
    conv = torch.zeros(5, 3, 4, 4)
    conv[:, 0] = 1.0
    assert dormant_ratio(conv, tau=0.0) == pytest.approx(2 / 3)


def test_conv_features_are_averaged_over_space():
    maps = torch.randn(20, 6, 5, 5)
    assert effective_rank(maps) == pytest.approx(effective_rank(maps.mean((2, 3))))


def test_layer_jacobian_of_relu_identity_layer():
    w = torch.eye(4)
    z = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, -1.0, 2.0, -2.0]])
    sv = layer_jacobian_singular_values(w, z)
    torch.testing.assert_close(sv[0], torch.ones(4, dtype=torch.float64))
    torch.testing.assert_close(sv[1], torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="pre_activations must be"):
        layer_jacobian_singular_values(w, torch.randn(3, 5))


def test_kfac_eps_rank_is_the_product_of_factor_ranks():
    a = torch.randn(200, 2) @ torch.randn(2, 6)  # A has rank 2
    g = torch.randn(200, 3) @ torch.randn(3, 5)  # G has rank 3
    assert kfac_eps_rank(a, g, eps=1e-6) == 6
    with pytest.raises(ValueError, match="same batch size"):
        kfac_eps_rank(a, g[:10])


def test_isometry_deviation_is_zero_after_exact_fire():
    from plasticity import fire_

    net = mlp()
    fire_(net, mode="polar")
    for value in isometry_deviations(net).values():
        assert value == pytest.approx(0.0, abs=1e-4)


def test_monitor_reports_per_layer_and_network_metrics():
    net = mlp((8, 32, 32, 4))
    with torch.no_grad():
        net[2].weight[:8] = 0.0
        net[2].bias[:8] = -1.0  # 8 of 32 units in layer '2' are dead
    net(torch.randn(4, 8)).sum().backward()
    metrics = PlasticityMonitor(net, jacobian=True).measure(torch.randn(256, 8))
    assert metrics["2/dormant_ratio"] >= 0.25
    assert metrics["dormant_ratio"] == pytest.approx(
        (metrics["0/dormant_ratio"] + metrics["2/dormant_ratio"]) / 2
    )
    assert metrics["effective_rank"] == metrics["2/effective_rank"] <= 24
    assert set(metrics) >= {"0/dfi", "2/dfi", "4/dfi", "4/weight_norm", "grad_norm", "srank"}
    assert metrics["dfi"] == pytest.approx(metrics["0/dfi"] + metrics["2/dfi"])  # heads left out
    assert "4/dormant_ratio" not in metrics  # heads have no features of their own
    assert metrics["grad_norm"] == pytest.approx(grad_norm(net))
    assert 0.0 <= metrics["2/jacobian_sv_min"] <= metrics["2/jacobian_sv_max"]
    assert all(math.isfinite(v) for v in metrics.values())


def test_monitor_rejects_a_wrong_probe_shape():
    with pytest.raises(ValueError, match="do not fit Sequential"):
        PlasticityMonitor(mlp()).measure(torch.randn(16, 3))
