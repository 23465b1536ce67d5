"""AdamO against torch.optim.AdamW and against its update formula written out by hand."""

import copy
import io

import pytest
import torch
from conftest import mlp, with_singular_values
from torch import nn

from plasticity import AdamO, adamo_param_groups, deviation_from_isometry
from plasticity.isometry import isometry_grad, isometry_residual


def train(net, opt, steps, seed=1):
    gen = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x = torch.randn(16, net[0].in_features, generator=gen)
        opt.zero_grad()
        net(x).pow(2).mean().backward()
        opt.step()


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_iso_coef_zero_reproduces_adamw(weight_decay):
    a = mlp()
    b = copy.deepcopy(a)
    train(a, AdamO(a.parameters(), lr=1e-2, weight_decay=weight_decay, iso_coef=0.0), 100)
    train(b, torch.optim.AdamW(b.parameters(), lr=1e-2, weight_decay=weight_decay), 100)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-6)


def test_one_step_follows_the_decoupled_formula():
    lr, lam, s, (b1, b2), eps = 1e-2, 0.5, 1.5, (0.9, 0.999), 1e-8
    w0 = torch.randn(12, 5, dtype=torch.float64)
    w = nn.Parameter(w0.clone())
    opt = AdamO([w], lr=lr, betas=(b1, b2), eps=eps, iso_coef=lam, iso_scale=s, iso_every=1)
    for t in (1, 2):  # the second step only checks that stepping on works
        g = torch.randn_like(w0)
        w.grad = g.clone()
        prev = w.detach().clone()
        opt.step()
        if t == 1:
            m_hat, v_hat = g, g * g  # bias-corrected first-step moments
            w_iso = prev.clone().requires_grad_(True)
            (grad_r,) = torch.autograd.grad(isometry_residual(w_iso, s), w_iso)
            expected = prev - lr * m_hat / (v_hat.sqrt() + eps) - lr * lam * grad_r
            torch.testing.assert_close(w.detach(), expected)
    assert opt.state[w]["step"].item() == 2


def test_moments_see_only_the_task_gradient():
    w = nn.Parameter(torch.randn(10, 10))
    opt = AdamO([w], lr=1e-2, iso_coef=10.0)
    g = torch.randn(10, 10)
    w.grad = g.clone()
    opt.step()
    torch.testing.assert_close(opt.state[w]["exp_avg"], 0.1 * g)
    torch.testing.assert_close(opt.state[w]["exp_avg_sq"], 0.001 * g * g)


def test_vectors_never_get_the_isometry_step():
    bias = nn.Parameter(torch.randn(7))
    ref = nn.Parameter(bias.detach().clone())
    a = AdamO([bias], lr=1e-2, iso_coef=1.0)
    b = torch.optim.Adam([ref], lr=1e-2)
    for _ in range(5):
        bias.grad = torch.ones(7)
        ref.grad = torch.ones(7)
        a.step()
        b.step()
    torch.testing.assert_close(bias, ref)


def test_iso_every_amortizes_the_same_total_push():
    k, lr, lam = 4, 1e-3, 0.3
    start = torch.randn(16, 8)
    w = nn.Parameter(start.clone())
    plain = nn.Parameter(start.clone())
    opt = AdamO([w], lr=lr, iso_coef=lam, iso_every=k)
    ref = torch.optim.Adam([plain], lr=lr)
    grads = [torch.randn(16, 8) for _ in range(k)]
    for i, g in enumerate(grads):
        before = w.detach().clone()
        w.grad, plain.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
        if i < k - 1:  # no isometry step yet: identical to Adam
            torch.testing.assert_close(w, plain)
    expected = plain.detach() - k * lr * lam * isometry_grad(before)
    torch.testing.assert_close(w.detach(), expected)


def test_amortized_step_sums_the_rates_of_its_window():
    """Under an annealed rate the k-th step pushes by λ·Σ η_t·∇R, the rates the k every-step
    updates would have used, not k times the last one."""
    rates, lam = [4e-3, 3e-3, 2e-3, 1e-3], 0.3
    start = torch.randn(16, 8) / 4  # singular values near 1: the step bound does not bind
    w, plain = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    opt = AdamO([w], lr=rates[0], iso_coef=lam, iso_every=len(rates))
    ref = torch.optim.Adam([plain], lr=rates[0])
    for rate in rates:
        for o in (opt, ref):
            o.param_groups[0]["lr"] = rate
        before = w.detach().clone()
        g = torch.randn(16, 8)
        w.grad, plain.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    expected = plain.detach() - lam * sum(rates) * isometry_grad(before)
    torch.testing.assert_close(w.detach(), expected)


def test_amortized_step_accepts_a_device_tensor_rate():
    """PPO anneals its rate as a tensor filled in place: each step's value is summed, not the
    tensor that later changes."""
    lam, k = 0.3, 2
    start = torch.randn(8, 8)
    a, b = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    rate = torch.tensor(2e-3)
    by_tensor = AdamO([a], lr=rate, iso_coef=lam, iso_every=k)
    by_float = AdamO([b], lr=2e-3, iso_coef=lam, iso_every=k)
    for value in (2e-3, 1e-3):
        rate.fill_(value)
        by_float.param_groups[0]["lr"] = value
        g = torch.randn(8, 8)
        a.grad, b.grad = g.clone(), g.clone()
        by_tensor.step()
        by_float.step()
    torch.testing.assert_close(a.detach(), b.detach())


def test_each_parameter_counts_its_own_window():
    """A parameter without a gradient at a step does not count it: its isometry step comes
    after its own k-th step, not at the group's."""
    k, lr, lam = 3, 1e-3, 0.3
    start_a, start_b = torch.randn(8, 4), torch.randn(8, 4)
    a, b = nn.Parameter(start_a.clone()), nn.Parameter(start_b.clone())
    opt = AdamO([a, b], lr=lr, iso_coef=lam, iso_every=k)
    adam_b = nn.Parameter(start_b.clone())
    ref = torch.optim.Adam([adam_b], lr=lr)
    for step in range(k + 1):
        a.grad = torch.randn(8, 4)
        has_grad = step != 1  # b skips the group's second step
        b.grad = torch.randn(8, 4) if has_grad else None
        adam_b.grad = None if b.grad is None else b.grad.clone()
        before_b = b.detach().clone()
        opt.step()
        if has_grad:
            ref.step()
        if step == k - 1:  # the group's k-th step: a's window closes, b has had k − 1 steps
            torch.testing.assert_close(b.detach(), adam_b.detach())
    torch.testing.assert_close(b.detach(), adam_b.detach() - lam * k * lr * isometry_grad(before_b))


def test_iso_mask_keeps_marked_parameters_out_of_the_isometry_step():
    hidden, head = nn.Parameter(torch.randn(32, 16)), nn.Parameter(torch.randn(4, 32))
    opt = AdamO([hidden, head], lr=1e-2, iso_coef=1.0, iso_every=1)
    opt.param_groups[0]["iso_mask"] = [True, False]
    before = hidden.detach().clone(), head.detach().clone()
    hidden.grad, head.grad = torch.zeros_like(hidden), torch.zeros_like(head)
    opt.step()  # no task gradient: only the isometry step can move a weight
    assert not torch.equal(hidden, before[0]) and torch.equal(head, before[1])
    saved = copy.deepcopy(opt.state_dict())
    fresh = AdamO([hidden, head], lr=1e-2, iso_coef=1.0, iso_every=1)
    fresh.load_state_dict(saved)  # into one unmarked group, as Stable-Baselines3 loads
    assert fresh.param_groups[0]["iso_mask"] == [True, False]


def test_a_group_added_later_gets_its_own_fused_setting():
    net = mlp()
    opt = AdamO(net[0].parameters(), lr=1e-3)
    opt.add_param_group({"params": list(net[2].parameters())})
    assert [g["fused"] for g in opt.param_groups] == [True, True]
    opt.add_param_group({"params": [nn.Parameter(torch.randn(3, 3, dtype=torch.float64))]})
    assert opt.param_groups[-1]["fused"] is True  # fused per group: one dtype within it
    train(net, opt, 2)


def test_a_copied_optimizer_still_resolves_fused_for_new_groups():
    net = mlp()
    opt = copy.deepcopy(AdamO(net[0].parameters(), lr=1e-3))
    opt.add_param_group({"params": list(net[2].parameters())})
    assert opt.param_groups[-1]["fused"] is True


def test_iso_mask_of_the_wrong_length_is_a_clear_error():
    w = nn.Parameter(torch.randn(8, 8))
    opt = AdamO([w], iso_every=1)
    opt.param_groups[0]["iso_mask"] = [True, False]
    w.grad = torch.zeros_like(w)
    with pytest.raises(ValueError, match="iso_mask has 2 entries for a group of 1 parameters"):
        opt.step()


def test_isometry_step_alone_moves_weights_toward_isometry():
    w = nn.Parameter(torch.randn(32, 16) * 0.5)
    opt = AdamO([w], lr=1e-2, iso_coef=1.0, iso_every=1)
    start = float(deviation_from_isometry(w))
    for _ in range(200):
        w.grad = torch.zeros_like(w)  # no task gradient: only the isometry step acts
        opt.step()
    assert float(deviation_from_isometry(w)) < 1e-3 * start


def test_cleared_state_restarts_at_step_one():
    net = mlp()
    opt = AdamO(net.parameters(), lr=1e-2)
    train(net, opt, 5)
    opt.state.pop(net[0].weight)
    train(net, opt, 1)
    assert opt.state[net[0].weight]["step"].item() == 1
    assert opt.state[net[2].weight]["step"].item() == 6


def saved_and_loaded(state):
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer)


def test_checkpoint_round_trip_continues_identically():
    a = mlp()
    b = copy.deepcopy(a)
    opt_a = AdamO(adamo_param_groups(a), lr=1e-2)
    train(a, opt_a, 3)
    opt_b = AdamO(adamo_param_groups(b), lr=1e-2)
    b.load_state_dict(saved_and_loaded(a.state_dict()))
    opt_b.load_state_dict(saved_and_loaded(opt_a.state_dict()))
    train(a, opt_a, 3, seed=5)
    train(b, opt_b, 3, seed=5)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q)


def test_param_groups_exclude_heads_biases_and_zero_matrices():
    net = mlp((4, 8, 8, 8, 2))
    nn.init.zeros_(net[4].weight)
    iso, rest = adamo_param_groups(net, iso_coef=0.01, iso_every=2)
    assert [id(p) for p in iso["params"]] == [id(net[0].weight), id(net[2].weight)]
    assert iso["iso_coef"] == 0.01 and rest["iso_coef"] == 0.0 and rest["iso_every"] == 2
    assert len(rest["params"]) == len(list(net.parameters())) - 2
    (only,) = adamo_param_groups(net, heads=["0", "2", "4", "6"])
    assert only["iso_coef"] == 0.0


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"lr": -1.0}, "invalid learning rate -1.0: it must be a finite number >= 0"),
        ({"lr": NAN}, "invalid learning rate nan"),
        ({"lr": INF}, "invalid learning rate inf"),
        ({"betas": (1.0, 0.9)}, "invalid betas \\(1.0, 0.9\\): it must be two numbers in"),
        ({"betas": (0.9, NAN)}, "invalid betas"),
        ({"betas": (0.9,)}, "invalid betas"),
        ({"eps": NAN}, "invalid eps nan"),
        ({"iso_coef": -0.1}, "invalid iso_coef"),
        ({"iso_coef": NAN}, "invalid iso_coef"),
        ({"iso_scale": 0.0}, "invalid iso_scale 0.0: it must be a finite number > 0"),
        ({"iso_scale": INF}, "invalid iso_scale"),
        ({"iso_every": 0}, "invalid iso_every"),
        ({"iso_every": 2.0}, "invalid iso_every 2.0: it must be an integer >= 1"),
        ({"weight_decay": -1.0}, "invalid weight_decay"),
        ({"weight_decay": NAN}, "invalid weight_decay"),
    ],
)
def test_bad_hyperparameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AdamO(mlp().parameters(), **kwargs)


def test_a_groups_own_settings_are_checked_too():
    net = mlp()
    with pytest.raises(ValueError, match="invalid iso_coef nan"):
        AdamO(adamo_param_groups(net, iso_coef=float("nan")))
    opt = AdamO(net[0].parameters())
    with pytest.raises(ValueError, match="invalid learning rate -0.1"):
        opt.add_param_group({"params": list(net[2].parameters()), "lr": -0.1})


def largest_singular_value(w: torch.Tensor) -> float:
    if not torch.isfinite(w).all():
        return float("inf")
    return float(torch.linalg.svdvals(w.detach().double())[0])


@pytest.mark.parametrize("fused", [True, False])
def test_amortized_step_converges_where_the_every_step_form_does(fused):
    """σ ← σ − 4kηλσ(σ² − s) overshoots for σ_max = 20, λ = 0.1, η = 1e-3 and k = 32
    (4kηλ(3σ² − s) ≈ 15 > 2): the plain k-fold step diverges, the every-step form converges."""
    start = with_singular_values(64, 32, [20.0] + [1.0] * 31).float()
    final = {}
    for k in (1, 32):
        w = nn.Parameter(start.clone())
        opt = AdamO([w], lr=1e-3, iso_coef=0.1, iso_every=k, fused=fused)
        for _ in range(32 * 100):
            w.grad = torch.zeros_like(w)  # no task gradient: only the isometry step acts
            opt.step()
        final[k] = largest_singular_value(w)
    assert final[1] == pytest.approx(1.0, abs=0.05)
    assert final[32] == pytest.approx(1.0, abs=0.05)  # diverged (inf) before the bound
    assert float(deviation_from_isometry(w)) < 0.1


def test_the_step_bound_leaves_a_well_conditioned_matrix_alone():
    """Near isometry the bound does not bind: k steps' push in one, bit for bit as without it."""
    w = nn.Parameter(with_singular_values(16, 8, [1.2, 1.1, 1.0, 0.9, 0.9, 0.8, 0.8, 0.7]))
    before = w.detach().clone()
    opt = AdamO([w], lr=1e-3, iso_coef=1e-3, iso_every=4)
    for _ in range(4):
        w.grad = torch.zeros_like(w)
        opt.step()
    assert torch.equal(w.detach(), before.add(isometry_grad(before), alpha=-1e-3 * 1e-3 * 4))


def test_unknown_head_name_is_a_clear_error():
    with pytest.raises(ValueError, match="not layers of Sequential"):
        adamo_param_groups(mlp(), heads=["fc_out"])


def test_fused_and_foreach_paths_give_the_same_steps():
    a = mlp()
    b = copy.deepcopy(a)
    settings = dict(lr=1e-2, weight_decay=0.1, iso_coef=0.1, iso_every=2)
    opt_a = AdamO(adamo_param_groups(a, **settings), fused=True)
    opt_b = AdamO(adamo_param_groups(b, **settings), fused=False)
    assert all(g["fused"] for g in opt_a.param_groups)
    assert not any(g["fused"] for g in opt_b.param_groups)
    train(a, opt_a, 4)
    train(b, opt_b, 4)
    for opt, net in ((opt_a, a), (opt_b, b)):  # an intervention clears one tensor's state
        opt.state.pop(net[0].weight)
    train(a, opt_a, 3, seed=2)
    train(b, opt_b, 3, seed=2)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(p, q, atol=1e-6, rtol=1e-5)
    assert opt_a.state[a[0].weight]["step"].item() == 3


def test_fused_is_refused_for_mixed_dtypes_and_auto_falls_back():
    params = [nn.Parameter(torch.randn(3, 3)), nn.Parameter(torch.randn(3, dtype=torch.float64))]
    with pytest.raises(ValueError, match="fused=True needs floating-point parameters"):
        AdamO(params, fused=True)
    assert not AdamO(params).param_groups[0]["fused"]
    assert AdamO([params[0]]).param_groups[0]["fused"]
