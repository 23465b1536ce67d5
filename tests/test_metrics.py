"""Plasticity metrics against hand-computed values."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import mlp, with_singular_values
from torch import nn

from plasticity import PlasticityMonitor
from plasticity.metrics import (
    dormant_ratio,
    effective_rank,
    factor_eps_rank,
    ggn_eigenvalues,
    ggn_eps_ranks,
    grad_norm,
    gradient_norm,
    isometry_deviations,
    kfac_eps_rank,
    kfac_eps_ranks,
    kfac_factors,
    layer_jacobian_singular_values,
    softmax_fisher_loss,
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


def test_monitor_refuses_an_empty_or_non_finite_probe_naming_the_network():
    monitor = PlasticityMonitor(mlp(), name="critic")
    with pytest.raises(
        ValueError, match="PlasticityMonitor\\('critic'\\): the probe batch is empty"
    ):
        monitor.measure(torch.randn(0, 8))
    bad = torch.randn(16, 8)
    bad[3, 2] = float("nan")
    with pytest.raises(ValueError, match="'critic'\\): the probe batch contains NaN or Inf"):
        monitor.measure(bad)
    with torch.no_grad():
        monitor.module[2].weight[0, 0] = float("inf")  # a diverged network
    with pytest.raises(ValueError, match="layer '2' gives NaN or Inf features.*2.weight"):
        monitor.measure(torch.randn(16, 8))
    with pytest.raises(ValueError, match="PlasticityMonitor\\('Sequential'\\)"):
        PlasticityMonitor(mlp()).measure(torch.randn(0, 8))  # default name: the class


def test_effective_rank_of_non_finite_features_is_a_clear_error():
    with pytest.raises(ValueError, match="features contain NaN or Inf"):
        effective_rank(torch.full((4, 3), float("nan")))


def tiny_regression():
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    x, y = torch.randn(50, 3, dtype=torch.float64), torch.randn(50, 2, dtype=torch.float64)
    net = net.double()

    def loss_fn(module):
        return 0.5 * (module(x) - y).pow(2).sum(1).mean()

    return net, x, y, loss_fn


def test_kfac_factors_match_a_hand_computation():
    net, x, y, loss_fn = tiny_regression()
    factors = kfac_factors(net, loss_fn)
    ones = torch.ones(50, 1, dtype=torch.float64)
    with torch.no_grad():
        z = net[0](x)
        h = torch.tanh(z)
        g2 = net(x) - y  # per-sample ∂ℓ_i/∂s of ℓ_i = ½‖s − y‖², at the head
        g0 = (g2 @ net[2].weight) * (1 - h**2)  # back through the head and tanh
    for name, a, g in (("0", torch.cat([x, ones], 1), g0), ("2", torch.cat([h, ones], 1), g2)):
        torch.testing.assert_close(factors[name][0], a.T @ a / 50)
        torch.testing.assert_close(factors[name][1], g.T @ g / 50)
    assert all(p.grad is None for p in net.parameters())  # .grad left alone


def test_kfac_eps_rank_counts_the_kronecker_eigenvalues():
    net, _, _, loss_fn = tiny_regression()
    a, g = kfac_factors(net, loss_fn)["0"]
    products = torch.linalg.eigvalsh(torch.kron(a, g))  # the 16×16 curvature block, ascending
    eps = float(products[7] + products[8]) / 2  # half of them above
    ranks = kfac_eps_ranks(net, loss_fn, eps=eps)
    assert ranks["0/kfac_eps_rank"] == int((products > eps).sum()) == 8
    assert ranks["0/kfac_eps_rank_normalized"] == 8 / 16
    assert ranks["kfac_eps_rank_normalized"] == pytest.approx(
        (ranks["0/kfac_eps_rank_normalized"] + ranks["2/kfac_eps_rank_normalized"]) / 2
    )


def test_kfac_eps_rank_drops_when_features_collapse():
    torch.manual_seed(0)
    net = mlp((8, 32, 32, 4))
    x, y = torch.randn(256, 8), torch.randint(0, 4, (256,))

    def loss_fn(module):
        return F.cross_entropy(module(x), y)

    healthy = kfac_eps_ranks(net, loss_fn, eps=1e-9)
    with torch.no_grad():  # every unit of layer '0' reads the same input direction t = vᵀx
        net[0].weight.copy_(torch.randn(32, 1) @ torch.randn(1, 8))
        net[0].bias.zero_()
    collapsed = kfac_eps_ranks(net, loss_fn, eps=1e-9)
    # layer '2' sees relu(c_i·t) = c_i⁺·relu(t) + c_i⁻·relu(−t): with the bias column A has
    # rank 3 of 33, so at most 3·32 of the 33·32 products survive
    assert collapsed["2/kfac_eps_rank"] <= 3 * 32 < healthy["2/kfac_eps_rank"]
    assert collapsed["kfac_eps_rank_normalized"] < healthy["kfac_eps_rank_normalized"]


def test_kfac_factors_of_a_conv_unfold_its_patches():
    torch.manual_seed(0)
    conv = nn.Conv2d(1, 2, 2).double()  # 3×3 inputs → 2×2 positions, patches of 4 (+ bias)
    x = torch.randn(5, 1, 3, 3, dtype=torch.float64)
    target = torch.randn(5, 2, 2, 2, dtype=torch.float64)

    def loss_fn(module):
        return 0.5 * (module(x) - target).pow(2).sum((1, 2, 3)).mean()

    a, g = kfac_factors(conv, loss_fn)[""]
    patches = torch.stack(
        [x[b, 0, i : i + 2, j : j + 2].flatten() for b in range(5) for i in (0, 1) for j in (0, 1)]
    )
    rows = torch.cat([patches, torch.ones(20, 1, dtype=torch.float64)], 1)
    torch.testing.assert_close(a, rows.T @ rows / 20)  # averaged over samples and positions
    with torch.no_grad():
        per_position = (conv(x) - target).flatten(2)  # (5, 2, 4): per-sample gradients
    expected = torch.einsum("bcp,bdp->cd", per_position, per_position) / 5
    torch.testing.assert_close(g, expected)  # summed over positions, averaged over samples


def test_kfac_factors_read_pre_activations_under_in_place_relu():
    torch.manual_seed(0)
    inplace = nn.Sequential(nn.Linear(4, 6), nn.ReLU(inplace=True), nn.Linear(6, 2))
    plain = copy.deepcopy(inplace)
    plain[1] = nn.ReLU()
    x = torch.randn(30, 4)
    got = kfac_factors(inplace, lambda m: m(x).pow(2).mean())
    expected = kfac_factors(plain, lambda m: m(x).pow(2).mean())
    for name in ("0", "2"):
        for ours, theirs in zip(got[name], expected[name], strict=True):
            torch.testing.assert_close(ours, theirs)
    with pytest.raises(ValueError, match="loss_fn must return a scalar"):
        kfac_factors(plain, lambda m: m(x))
    with pytest.raises(ValueError, match="ran none of the chosen layers"):
        kfac_factors(plain, lambda m: torch.zeros(()))
    with pytest.raises(ValueError, match="conv '' has groups"):
        kfac_factors(nn.Conv2d(4, 4, 3, groups=2), lambda m: m(torch.randn(2, 4, 5, 5)).sum())


def explicit_ggn(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(1/N) Σ_n J_nᵀ (diag p_n − p_n p_nᵀ) J_n over a flat parameter vector, by hand."""
    from torch.func import functional_call

    names = [k for k, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    theta = torch.cat([p.detach().flatten() for p in net.parameters()])

    def logits(flat, sample):
        params, i = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            params[name] = flat[i : i + shape.numel()].view(shape)
            i += shape.numel()
        return functional_call(net, params, (sample[None],))[0]

    total = torch.zeros(theta.numel(), theta.numel(), dtype=torch.float64)
    for sample in x:
        jac = torch.autograd.functional.jacobian(lambda t, s=sample: logits(t, s), theta)
        p = logits(theta, sample).softmax(-1).detach()
        total += jac.T @ (torch.diag(p) - torch.outer(p, p)) @ jac / len(x)
    return total


def test_ggn_eigenvalues_match_an_explicit_gauss_newton():
    net = mlp((3, 4, 3)).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    ggn = explicit_ggn(net, x)
    got = ggn_eigenvalues(net, x)
    # 5 samples × (3 − 1) = 10 nonzero eigenvalues at most; the rest of the 31 are 0
    top = torch.linalg.eigvalsh(ggn)[-10:]
    torch.testing.assert_close(got.network[-10:], top, atol=1e-10, rtol=1e-8)
    assert got.network.numel() == 15 and float(got.network[:5].max()) < 1e-12
    assert (got.samples, got.per_sample_rank) == (5, 2)
    # each layer's eigenvalues are those of its diagonal block (weight then bias)
    blocks = {"0": slice(0, 16), "2": slice(16, 31)}
    for name, block in blocks.items():
        expected = torch.linalg.eigvalsh(ggn[block, block])
        ours = got.layers[name]
        k = min(ours.numel(), expected.numel())
        torch.testing.assert_close(ours[-k:], expected[-k:], atol=1e-10, rtol=1e-8)
    eps = float(top[4])  # 5 of the 10 strictly above it
    ranks = ggn_eps_ranks(net, x, eps=eps)
    assert ranks["ggn_eps_rank"] == 5 and ranks["ggn_eps_rank_normalized"] == 5 / 10
    assert all(p.grad is None for p in net.parameters())


def test_ggn_agrees_with_kfac_where_kfac_is_exact():
    # A single softmax layer at W = 0, b = 0: every sample has p uniform and the same output
    # Hessian H₀, so the GGN block E[ā āᵀ ⊗ H₀] is exactly A ⊗ G, the K-FAC product.
    layer = nn.Linear(6, 4)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
    x = torch.randn(40, 6)
    a, g = kfac_factors(layer, softmax_fisher_loss(x))[""]
    h0 = (torch.eye(4, dtype=torch.float64) - 0.25) / 4  # diag(p) − ppᵀ at p = 1/4
    torch.testing.assert_close(g, h0)
    exact = ggn_eigenvalues(layer, x).layers[""]
    products = torch.sort(torch.kron(torch.linalg.eigvalsh(a), torch.linalg.eigvalsh(g))).values
    assert exact.numel() == 7 * 4  # P = 28 < N·C: the P×P side
    torch.testing.assert_close(exact, products.clamp_min(0), atol=1e-10, rtol=1e-7)
    assert int((exact > 1e-12).sum()) == 7 * 3  # H₀ has rank 3 of 4
    eps = float(products[-7] + products[-6]) / 2
    assert ggn_eps_ranks(layer, x, eps=eps)["/ggn_eps_rank"] == factor_eps_rank(a, g, eps) == 6


def test_softmax_fisher_loss_gives_the_gauss_newton_g_factor():
    net = mlp((5, 7, 3)).double()
    x = torch.randn(20, 5, dtype=torch.float64)
    _, g = kfac_factors(net, softmax_fisher_loss(x))["2"]  # the head: its pre-activations are
    with torch.no_grad():  # the logits, so G = mean of diag(p) − ppᵀ
        p = net(x).softmax(-1)
    expected = (torch.diag_embed(p) - p[:, :, None] * p[:, None, :]).mean(0)
    torch.testing.assert_close(g, expected)


def test_softmax_fisher_loss_gives_the_gauss_newton_g_factor_of_a_hidden_layer():
    # layer '0''s pre-activations s reach the logits through J = W₂ diag(relu'(s)), so its
    # Gauss–Newton G factor is the mean of Jᵀ (diag p − ppᵀ) J
    net = mlp((5, 7, 3)).double()
    x = torch.randn(20, 5, dtype=torch.float64)
    _, g = kfac_factors(net, softmax_fisher_loss(x))["0"]
    with torch.no_grad():
        pre = net[0](x)
        p = net(x).softmax(-1)
    jac = net[2].weight[None] * (pre > 0).double()[:, None, :]  # (N, 3, 7)
    hess = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    expected = (jac.transpose(1, 2) @ hess @ jac).mean(0)
    torch.testing.assert_close(g, expected)


def test_ggn_eigenvalues_take_any_layer_name_and_leave_the_module_as_it_was():
    class Named(nn.Module):  # a layer called "network" and a BatchNorm in training mode
        def __init__(self):
            super().__init__()
            self.network = nn.Linear(4, 6)
            self.norm = nn.BatchNorm1d(6)
            self.head = nn.Linear(6, 3)

        def forward(self, x):
            return self.head(torch.relu(self.norm(self.network(x))))

    net = Named().double().train()
    x = torch.randn(8, 4, dtype=torch.float64)
    before = net.norm.running_mean.clone()
    spectrum = ggn_eigenvalues(net, x)  # evaluated per sample in eval mode, on a copy
    assert set(spectrum.layers) == {"network", "head"}
    assert spectrum.layers["network"].numel() == min(4 * 6 + 6, 8 * 3)
    ranks = ggn_eps_ranks(net, x, eps=1e-10)
    assert 0 < ranks["network/ggn_eps_rank"] <= 8 * 2 and "ggn_eps_rank" in ranks
    assert net.training and torch.equal(net.norm.running_mean, before)


def test_ggn_eps_rank_falls_when_a_layer_collapses():
    net = mlp((8, 16, 16, 4)).double()
    x = torch.randn(32, 8, dtype=torch.float64)
    healthy = ggn_eps_ranks(net, x, eps=1e-8)
    with torch.no_grad():  # layer '2' reads one direction of its input: rank-1 weight
        net[2].weight.copy_(torch.randn(16, 1) @ torch.randn(1, 16))
    collapsed = ggn_eps_ranks(net, x, eps=1e-8)
    assert collapsed["4/ggn_eps_rank"] < healthy["4/ggn_eps_rank"]
    assert collapsed["ggn_eps_rank_layer_mean"] < healthy["ggn_eps_rank_layer_mean"]
    with pytest.raises(ValueError, match="unknown loss"):
        ggn_eigenvalues(net, x, loss="hinge")


def test_the_monitor_reports_the_gradient_norm_an_update_returned_without_reading_grad():
    """Agents compute the gradient norm inside the update and pass it on: under CUDA graphs
    ``.grad`` lives in graph memory that a later replay overwrites."""
    net = mlp()
    x = torch.randn(64, 8)
    net(x).pow(2).mean().backward()
    expected = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert float(gradient_norm(net.parameters())) == pytest.approx(float(expected), rel=1e-6)
    for p in net.parameters():
        p.grad.fill_(math.nan)  # what a replayed graph may have left there
    metrics = PlasticityMonitor(net).measure(x, update_grad_norm=torch.tensor(2.5))
    assert metrics["grad_norm"] == 2.5
