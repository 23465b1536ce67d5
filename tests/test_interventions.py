"""FIRE, resets and ReDo: results against references, and the optimizer state they clear."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import ConvNet, mlp, reference_newton_schulz, state_is_zero, svd_polar
from torch import nn

from plasticity import (
    AdamO,
    clear_optimizer_state_,
    fire_,
    full_reset_,
    network_parameters,
    redo_,
    shrink_perturb_,
    sync_targets,
)


def adam_with_state(net: nn.Module) -> torch.optim.Optimizer:
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    out = net(torch.randn(8, net[0].in_features))
    out.pow(2).mean().backward()
    opt.step()
    return opt


def test_fire_linear_is_muon_scaled_newton_schulz():
    net = mlp((6, 20, 9, 3))
    old = [net[i].weight.detach().clone() for i in (0, 2, 4)]
    biases = [net[i].bias.detach().clone() for i in (0, 2, 4)]
    fire_(net)
    for i, w0, b0 in zip((0, 2, 4), old, biases, strict=True):
        d_out, d_in = w0.shape
        expected = math.sqrt(d_out / d_in) * reference_newton_schulz(w0, 10)
        torch.testing.assert_close(net[i].weight.double(), expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(net[i].bias, b0)  # biases untouched


def test_fire_polar_mode_is_exact_and_reports_zero_deviation():
    net = mlp((6, 20, 9, 3))
    w0 = net[0].weight.detach().clone()
    report = fire_(net, mode="polar", scale="none")
    torch.testing.assert_close(net[0].weight.double(), svd_polar(w0), atol=1e-5, rtol=0)
    for metrics in report.layers.values():
        assert metrics["dfi_after"] == pytest.approx(0.0, abs=1e-4)
        assert metrics["dfi_before"] > metrics["dfi_after"]


def test_fire_conv_orthogonalizes_each_spatial_tap():
    net = ConvNet()
    kernel = net.conv1.weight.detach().clone()  # (6, 2, 3, 3)
    norm_state = copy.deepcopy(net.norm.state_dict())
    fire_(net)
    scale = math.sqrt(6 / 2) / 9
    for i in range(3):
        for j in range(3):
            expected = scale * reference_newton_schulz(kernel[:, :, i, j], 10)
            torch.testing.assert_close(
                net.conv1.weight[:, :, i, j].double(), expected, atol=1e-6, rtol=1e-4
            )
    for key, value in net.norm.state_dict().items():
        torch.testing.assert_close(value, norm_state[key])  # normalization layers untouched


def test_fire_report_measures_the_move():
    net = mlp()
    before = {name: net[int(name)].weight.detach().clone() for name in ("0", "2", "4")}
    report = fire_(net)
    assert set(report.layers) == {"0", "2", "4"}
    for name, metrics in report.layers.items():
        sfe = float(((net[int(name)].weight.detach() - before[name]) ** 2).sum())
        assert metrics["sfe"] == pytest.approx(sfe, rel=1e-5)
        assert metrics["dfi_after"] < metrics["dfi_before"]
    flat = report.scalars("critic/")
    assert flat["critic/fire/0/sfe"] == report.layers["0"]["sfe"]
    assert flat["critic/fire/total_sfe"] == pytest.approx(
        sum(m["sfe"] for m in report.layers.values())
    )


def test_fire_resets_the_optimizer_state_of_touched_weights_only():
    net = mlp()
    opt = adam_with_state(net)
    fire_(net, opt, include=["0", "2"])
    assert state_is_zero(opt, net[0].weight) and state_is_zero(opt, net[2].weight)
    assert not state_is_zero(opt, net[4].weight)  # not selected
    assert not state_is_zero(opt, net[0].bias)  # biases are not rewritten
    adam_with_state(net)  # and training goes on


def test_fire_include_exclude_and_errors():
    net = mlp()
    head = net[4].weight.detach().clone()
    fire_(net, exclude=["4"])
    torch.testing.assert_close(net[4].weight, head)
    with pytest.raises(ValueError, match="matched no Linear or Conv layer"):
        fire_(net, include=["nope*"])
    with pytest.raises(ValueError, match="unknown FIRE mode"):
        fire_(net, mode="svd")


def test_full_reset_takes_fresh_weights_and_clears_state():
    net = mlp()
    opt = adam_with_state(net)
    torch.manual_seed(42)
    fresh = mlp()
    full_reset_(net, opt, fresh=lambda: copy.deepcopy(fresh))
    for p, q in zip(net.parameters(), fresh.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    assert all(state_is_zero(opt, p) for p in net.parameters())


def test_full_reset_to_the_initial_weights():
    net = mlp()
    initial = copy.deepcopy(net.state_dict())
    opt = adam_with_state(net)
    full_reset_(net, opt, include=["2", "4"], initial_state=initial)
    for name, p in net.named_parameters():
        assert torch.equal(p, initial[name]) == (not name.startswith("0."))
    assert state_is_zero(opt, net[2].bias) and not state_is_zero(opt, net[0].weight)
    with pytest.raises(ValueError, match="full_reset_: initial_state lacks"):
        full_reset_(net, initial_state={})


def test_full_reset_recovers_a_diverged_network():
    net = mlp()
    with torch.no_grad():
        net[0].weight[0, 0] = float("nan")
        net[2].bias[0] = float("inf")
    full_reset_(net)
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_full_reset_default_redraws_from_reset_parameters():
    net = mlp()
    old = net[0].weight.detach().clone()
    report = full_reset_(net, include=["0"])
    assert not torch.equal(net[0].weight, old)
    bound = 1 / math.sqrt(net[0].in_features)  # nn.Linear's default init range
    assert net[0].weight.abs().max() <= bound
    assert set(report.layers) == {"0"}


def test_full_reset_rejects_a_factory_of_another_architecture():
    with pytest.raises(ValueError, match="same architecture"):
        full_reset_(mlp(), fresh=lambda: mlp((8, 16, 4)))


def test_shrink_perturb_toward_initial_weights():
    net = mlp()
    initial = copy.deepcopy(net.state_dict())
    adam_with_state(net)
    current = copy.deepcopy(net.state_dict())
    opt = adam_with_state(net)
    current = copy.deepcopy(net.state_dict())
    shrink_perturb_(net, 0.2, 0.8, target="initial", optimizer=opt, initial_state=initial)
    for name, p in net.named_parameters():
        torch.testing.assert_close(p, 0.2 * current[name] + 0.8 * initial[name])
    assert all(state_is_zero(opt, p) for p in net.parameters())


def test_shrink_perturb_toward_a_fresh_draw():
    net = mlp()
    current = copy.deepcopy(net.state_dict())
    fresh = mlp()
    shrink_perturb_(net, fresh=lambda: copy.deepcopy(fresh))
    for name, p in net.named_parameters():
        torch.testing.assert_close(p, 0.8 * current[name] + 0.2 * fresh.state_dict()[name])
    with pytest.raises(ValueError, match="needs initial_state"):
        shrink_perturb_(net, target="initial")
    with pytest.raises(ValueError, match="unknown shrink & perturb target"):
        shrink_perturb_(net, target="zeros")


def kill_units(layer: nn.Linear, units: list[int]) -> None:
    """Make units of a Linear+ReLU layer output 0 on every input."""
    with torch.no_grad():
        layer.weight[units] = 0.0
        layer.bias[units] = -1.0


def reference_dormant(h: torch.Tensor, tau: float) -> set[int]:
    """ReDo's rule written out: s_i = E|h_i| / mean_k E|h_k| <= tau."""
    mean_abs = h.abs().mean(0)
    return set(torch.nonzero(mean_abs / mean_abs.mean() <= tau).flatten().tolist())


def test_redo_recycles_dead_units_and_keeps_the_function():
    net = mlp((8, 32, 32, 4))
    kill_units(net[0], [1, 5])
    kill_units(net[2], [7])
    opt = adam_with_state(net)
    x = torch.randn(128, 8)
    with torch.no_grad():
        out_before = net(x)
        h1 = F.relu(net[0](x))
        # τ = 0: only exactly dead units, whose zeroed outgoing weights carried nothing
        dormant1 = reference_dormant(h1, 0.0)
        dormant2 = reference_dormant(F.relu(net[2](h1)), 0.0)
    assert {1, 5} <= dormant1 and 7 in dormant2
    fresh = mlp((8, 32, 32, 4))
    moments_before = opt.state[net[2].weight]["exp_avg"].clone()

    report = redo_(net, x, tau=0.0, optimizer=opt, fresh=lambda: copy.deepcopy(fresh))

    assert report.layers["0"]["dormant"] == len(dormant1)
    assert report.layers["2"]["dormant"] == len(dormant2)
    assert "4" not in report.layers  # the head is never recycled
    d1, d2 = sorted(dormant1), sorted(dormant2)
    torch.testing.assert_close(net[0].weight[d1], fresh[0].weight[d1])
    torch.testing.assert_close(net[2].weight[d2], fresh[2].weight[d2])
    assert not net[0].bias[d1].any() and not net[2].bias[d2].any()
    kept_rows = sorted(set(range(32)) - dormant2)  # recycled rows get fresh incoming weights
    assert not net[2].weight[kept_rows][:, d1].any()  # outgoing weights of layer-0 units
    assert not net[4].weight[:, d2].any()  # outgoing weights of layer-2 units
    for p, idx, dim in ((net[0].weight, d1, 0), (net[4].weight, d2, 1)):
        for key in ("exp_avg", "exp_avg_sq"):
            assert not opt.state[p][key].index_select(dim, torch.tensor(idx)).any()
    untouched_cols = sorted(set(range(32)) - dormant1)
    torch.testing.assert_close(
        opt.state[net[2].weight]["exp_avg"][kept_rows][:, untouched_cols],
        moments_before[kept_rows][:, untouched_cols],
    )
    # recycled units are alive again, yet the network computes the same function
    torch.testing.assert_close(net(x), out_before)
    assert (F.relu(net[0](x))[:, d1].abs().mean(0) > 0).all()


def test_redo_maps_conv_channels_onto_flattened_linear_inputs():
    net = ConvNet()
    with torch.no_grad():
        net.conv2.weight[2] = 0.0
        net.conv2.bias[2] = -1.0
    x = torch.randn(16, 2, 11, 11)
    out_before = net(x).detach()
    report = redo_(net, x, tau=0.0, exclude=["fc1"])
    assert report.layers["conv2"]["dormant"] == 1 and "fc1" not in report.layers
    # channel 2 of conv2 is flattened into inputs 18..26 of fc1 (channel-major, 3×3 each)
    assert torch.equal(net.fc1.weight[:, 18:27], torch.zeros(16, 9))
    assert net.fc1.weight[:, :18].abs().sum() > 0 and net.fc1.weight[:, 27:].abs().sum() > 0
    torch.testing.assert_close(net(x), out_before)


def test_redo_with_a_bad_probe_batch_is_a_clear_error():
    with pytest.raises(ValueError, match="inputs of shape \\(4, 3\\) do not fit Sequential"):
        redo_(mlp((8, 16, 2)), torch.randn(4, 3))


def test_clear_state_and_sync_targets():
    net = mlp()
    opt = adam_with_state(net)
    assert clear_optimizer_state_([opt], [net[0].weight, net[0].bias]) == 2
    assert clear_optimizer_state_(opt, [torch.nn.Parameter(torch.ones(2))]) == 0  # no state
    target = mlp()
    sync_targets(net, [target])
    for p, q in zip(net.parameters(), target.parameters(), strict=True):
        assert torch.equal(p, q)
    with pytest.raises(TypeError, match="torch.optim.Optimizer"):
        clear_optimizer_state_(["adam"], [net[0].weight])


def make_optimizer(kind: str, params):
    if kind == "adamo_fused":
        return AdamO(params, lr=1e-2, iso_coef=0.1, iso_every=2, fused=True)
    if kind == "adamo_foreach":
        return AdamO(params, lr=1e-2, iso_coef=0.1, iso_every=2, fused=False)
    if kind == "sgd":
        return torch.optim.SGD(params, lr=1e-2, momentum=0.9)
    return torch.optim.Adam(params, lr=1e-2, amsgrad=True, **{kind: True})


def train_steps(net: nn.Module, opt: torch.optim.Optimizer, steps: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        opt.zero_grad()
        net(torch.randn(16, 8, generator=gen)).pow(2).mean().backward()
        opt.step()


@pytest.mark.parametrize("kind", ["fused", "foreach", "adamo_fused", "adamo_foreach", "sgd"])
def test_in_place_reset_equals_a_fresh_state_bit_for_bit(kind):
    """Zeroing the state where it lives continues exactly as dropping it (a new optimizer's
    state for those parameters) would, and keeps every state tensor's storage."""
    net = mlp()
    opt = make_optimizer(kind, net.parameters())
    train_steps(net, opt, 5, seed=1)
    dropped_net = copy.deepcopy(net)
    dropped = make_optimizer(kind, dropped_net.parameters())
    dropped.load_state_dict(copy.deepcopy(opt.state_dict()))  # not sharing its tensors
    reset = [net[0].weight, net[0].bias, net[4].weight]
    for p in (dropped_net[0].weight, dropped_net[0].bias, dropped_net[4].weight):
        del dropped.state[p]  # the old behaviour: the optimizer rebuilds a fresh state

    def storages(params):  # AdamO's isometry window counts are host numbers, not storages
        return {
            id(v): v.data_ptr()
            for p in params
            for v in opt.state[p].values()
            if isinstance(v, torch.Tensor)
        }

    pointers = storages(reset)

    assert clear_optimizer_state_(opt, reset) == 3

    assert all(state_is_zero(opt, p) for p in reset)
    assert storages(reset) == pointers  # the same tensors: a captured CUDA graph still reads them
    train_steps(net, opt, 6, seed=2)
    train_steps(dropped_net, dropped, 6, seed=2)
    for p, q in zip(net.parameters(), dropped_net.parameters(), strict=True):
        assert torch.equal(p, q)


def test_network_parameters_leave_out_excluded_modules():
    net = ConvNet()
    names = {id(p): n for n, p in net.named_parameters()}
    kept = [names[id(p)] for p in network_parameters(net, exclude=["conv*", "fc2.bias"])]
    assert kept == ["fc1.weight", "fc1.bias", "norm.weight", "norm.bias", "fc2.weight"]
    assert len(network_parameters(net)) == len(list(net.parameters()))
