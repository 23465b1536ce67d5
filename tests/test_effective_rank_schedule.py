"""The effective-rank ascent (er, er_l2) as its authors run it (arXiv 2509.22335, lop-jax):
which features it ranks, when it ascends and on which inputs, the RL step size, and the
coupled L2 added after the gradient clip. Each check recomputes the expected step itself."""

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import small_dqn_args as dqn_args
from conftest import small_ppo_args as ppo_args
from conftest import small_sac_args as sac_args
from conftest import small_sb3_sac
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from agents import dqn, ppo, sac
from agents.cli import parse_args
from plasticity import methods
from plasticity.methods import ER_LR_RL, make_method
from plasticity.metrics import effective_rank


def mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4)
    ).double()


def erank(features: torch.Tensor) -> torch.Tensor:
    """exp of the entropy of the normalized singular values, written out here."""
    sv = torch.linalg.svdvals(features)
    p = sv / sv.sum()
    return torch.exp(-(p * torch.log(p)).sum())


def expected_ascent(net: nn.Sequential, x: torch.Tensor, lr: float) -> list[torch.Tensor]:
    """The parameters of ``mlp()`` after one SGD ascent step on the mean effective rank of its
    two hidden ReLU outputs on ``x``."""
    net = copy.deepcopy(net)
    h1 = F.relu(net[0](x))
    h2 = F.relu(net[2](h1))
    params = list(net.parameters())
    grads = torch.autograd.grad((erank(h1) + erank(h2)) / 2, params[:4])  # the head: none
    return [(p + lr * g).detach() for p, g in zip(params[:4], grads, strict=True)] + [
        p.detach() for p in params[4:]
    ]


def assert_parameters(net: nn.Module, expected: list[torch.Tensor]) -> None:
    for p, e in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=1e-7, atol=1e-9)


def batches(n: int, size: int = 6) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(size, 8, generator=gen, dtype=torch.float64) for _ in range(n)]


def test_the_ascent_comes_after_exactly_er_every_updates_on_their_minibatches_concatenated():
    net = mlp()
    handle = make_method("er", er_every=3, er_lr=0.5).attach(net, lr=1e-3)
    x = batches(3)
    start = copy.deepcopy(net)
    assert handle.after_minibatch(x[0]) == [] and handle.after_minibatch(x[1]) == []
    assert_parameters(net, [p.detach() for p in start.parameters()])  # not yet
    reports = handle.after_minibatch(x[2])
    assert [r.method for r in reports] == ["er_ascent"]
    expected = expected_ascent(start, torch.cat(x), 0.5)
    assert_parameters(net, expected)
    # the last minibatch alone would have given another step
    alone = expected_ascent(start, x[2], 0.5)
    assert any(not torch.allclose(a, b) for a, b in zip(alone, expected, strict=True))
    # the count starts over, and after_update no longer counts once updates are reported
    reached = [p.detach().clone() for p in net.parameters()]
    for step in range(1, 10):
        assert handle.after_update(step, inputs=x[0]) == []
    assert handle.after_minibatch(x[0]) == [] and handle.after_minibatch(x[1]) == []
    assert_parameters(net, reached)


def test_a_loop_that_only_calls_after_update_has_each_call_counted_as_one_update():
    net = mlp()
    handle = make_method("er_l2", er_every=2, er_lr=0.5).attach(net, lr=1e-3)
    x = batches(2)
    start = copy.deepcopy(net)
    assert handle.after_update(7, inputs=x[0]) == []  # the step number plays no part
    assert len(handle.after_update(8, inputs=x[1])) == 1
    assert_parameters(net, expected_ascent(start, torch.cat(x), 0.5))


def test_the_steps_schedule_keeps_the_probe_batch_every_er_every_steps():
    net = mlp()
    handle = make_method("er", er_schedule="steps", er_every=10, er_lr=0.5).attach(net, lr=1e-3)
    x = batches(2)
    start = copy.deepcopy(net)
    assert handle.after_minibatch(x[0]) == []  # minibatches do not count
    assert handle.after_update(5, inputs=x[0]) == []
    assert len(handle.after_update(10, inputs=x[1])) == 1
    assert_parameters(net, expected_ascent(start, x[1], 0.5))


def test_the_epochs_schedule_ascends_at_each_epoch_start_and_needs_it_reported():
    net = mlp()
    handle = make_method("er", er_schedule="epochs", er_lr=0.5).attach(net, lr=1e-3)
    rollout = torch.cat(batches(4))
    start = copy.deepcopy(net)
    assert len(handle.before_epoch(rollout)) == 1
    assert_parameters(net, expected_ascent(start, rollout, 0.5))
    assert handle.after_minibatch(rollout[:6]) == [] and handle.after_update(1, rollout) == []
    unfed = make_method("er", er_schedule="epochs").attach(mlp(), lr=1e-3)
    with pytest.raises(ValueError, match="before_epoch"):
        unfed.after_update(1, inputs=rollout)


def conv_net(hidden_linear: bool = True) -> nn.Sequential:
    torch.manual_seed(0)
    conv = [nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten()]
    if not hidden_linear:
        return nn.Sequential(*conv, nn.Linear(64, 3))
    return nn.Sequential(*conv, nn.Linear(64, 6), nn.ReLU(), nn.Linear(6, 3))


def test_dense_features_are_ranked_by_default_and_convolutions_only_when_asked():
    x = torch.randn(40, 2, 6, 6)
    net = conv_net()
    conv_maps = F.relu(net[0](x))
    dense = F.relu(net[3](conv_maps.flatten(1)))
    for features, expected in [
        ("dense", effective_rank(dense)),
        ("all", (effective_rank(conv_maps.mean((2, 3))) + effective_rank(dense)) / 2),
    ]:
        settings = {"er_schedule": "epochs", "er_lr": 0.0}
        if features == "all":
            settings["er_features"] = "all"
        handle = make_method("er", **settings).attach(net, lr=1e-3)
        (report,) = handle.before_epoch(x)
        assert report.layers["features"]["mean_erank"] == pytest.approx(expected, rel=1e-4)
    convolutional = make_method("er", er_schedule="epochs").attach(conv_net(False), lr=1e-3)
    with pytest.raises(ValueError, match="no hidden Linear layer.*er_features='all'"):
        convolutional.before_epoch(x)


def test_the_coupled_l2_can_be_added_after_the_clip():
    net = mlp()
    handle = make_method("er_l2", l2_coef=0.05).attach(net, lr=1e-3)
    assert handle.penalty(decay=False).item() == 0 and handle.penalty().item() > 0
    loss = 1e3 * net(batches(1)[0]).pow(2).mean() + handle.penalty(decay=False)
    loss.backward()
    nn.utils.clip_grad_norm_(net.parameters(), 0.5)
    clipped = [p.grad.clone() for p in net.parameters()]
    handle.add_decay_gradient()
    for p, g in zip(net.parameters(), clipped, strict=True):
        torch.testing.assert_close(p.grad, g + 2 * 0.05 * p.detach())
    other = make_method("parseval").attach(net, lr=1e-3)  # no decay part: nothing moves
    assert other.penalty(decay=False).item() == other.penalty().item() > 0
    before = [p.grad.clone() for p in net.parameters()]
    other.add_decay_gradient()
    assert all(torch.equal(p.grad, b) for p, b in zip(net.parameters(), before, strict=True))


def test_ppo_adds_the_coupled_l2_after_its_gradient_clip(tmp_path, monkeypatch):
    """A clip that zeroes the gradient leaves only what is added after it: 2λθ."""

    def zeroing_clip(parameters, max_norm, *args, **kwargs):
        for p in parameters:
            if p.grad is not None:
                p.grad.zero_()
        return torch.zeros(())

    checked = []

    def check_gradients(optimizer, args, kwargs):
        for group in optimizer.param_groups:
            for p in group["params"]:
                checked.append(torch.allclose(p.grad, 2 * 0.05 * p.detach(), atol=1e-7))

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", zeroing_clip)
    args = ppo_args(tmp_path, method="l2", checkpoint_every=0, metrics_every=0)
    args.plasticity.l2_coef = 0.05
    hook = register_optimizer_step_pre_hook(check_gradients)
    try:
        ppo.main(args)
    finally:
        hook.remove()
    assert checked and all(checked)


def spy_on_ascents(monkeypatch) -> list[tuple[nn.Module, tuple[int, ...], float]]:
    """Each ascent's network, input batch sizes and step size."""
    calls = []
    real = methods.effective_rank_ascent_

    def spy(module, inputs, lr, *args, **kwargs):
        sizes = tuple(a.shape[0] for a in (inputs if isinstance(inputs, tuple) else (inputs,)))
        calls.append((module, sizes, lr))
        return real(module, inputs, lr, *args, **kwargs)

    monkeypatch.setattr(methods, "effective_rank_ascent_", spy)
    return calls


def test_ppo_ascends_once_per_epoch_on_the_rollout_at_the_rl_step(tmp_path, monkeypatch):
    calls = spy_on_ascents(monkeypatch)
    summary = ppo.main(ppo_args(tmp_path, critic_method="er", checkpoint_every=0))
    # 2 iterations × 2 epochs; each on the rollout's valid steps (at most 2 envs × 32), more
    # than a minibatch (about half of them)
    assert len(calls) == 4
    sizes = [size for _, (size,), _ in calls]
    assert sizes[0] == sizes[1] and sizes[2] == sizes[3] and all(32 < s <= 64 for s in sizes)
    assert all(lr == ER_LR_RL for *_, lr in calls)
    config = json.loads(Path(summary["run_dir"], "config.json").read_text())
    assert config["plasticity"]["er_schedule"] == "epochs"
    assert config["plasticity"]["er_lr"] == ER_LR_RL


def test_dqn_ascends_every_er_every_updates_on_their_minibatches(tmp_path, monkeypatch):
    calls = spy_on_ascents(monkeypatch)
    args = dqn_args(tmp_path, method="er", updates_per_step=3)
    args.plasticity.er_every = 10
    dqn.main(args)
    # updates from step 100 to 300, 3 every 2nd step: 300 updates, an ascent per 10
    assert len(calls) == 30
    assert all(sizes == (10 * 32,) and lr == ER_LR_RL for _, sizes, lr in calls)


def test_sac_counts_each_networks_updates_with_their_inputs(tmp_path, monkeypatch):
    calls = spy_on_ascents(monkeypatch)
    args = sac_args(tmp_path, method="er", checkpoint_every=0, policy_frequency=2)
    args.plasticity.er_every = 20
    summary = sac.main(args)
    assert summary["status"] == "finished"
    actor = [sizes for module, sizes, _ in calls if isinstance(module, sac.Actor)]
    critic = [sizes for module, sizes, _ in calls if not isinstance(module, sac.Actor)]
    # 200 critic updates (obs, action) and 200 actor updates (2 every 2nd step)
    assert critic == [(20 * 32, 20 * 32)] * 10 and actor == [(20 * 32,)] * 10


def test_an_er_run_saved_before_the_update_schedule_resumes_as_it_ran(tmp_path):
    first = ppo.main(ppo_args(tmp_path, method="er"))
    run_dir = Path(first["run_dir"])
    config_file = run_dir / "config.json"
    config = json.loads(config_file.read_text())
    for added in ("er_schedule", "er_features"):  # as a run saved before these settings
        del config["plasticity"][added]
    config_file.write_text(json.dumps(config))
    for checkpoint in (run_dir / "checkpoints").glob("*.pt"):
        state = torch.load(checkpoint, weights_only=True)
        for handle_state in state["plasticity"].values():
            handle_state.pop("er_pending")
        torch.save(state, checkpoint)
    args = parse_args(ppo.Args, "ppo", ["--resume", str(run_dir), "--total-timesteps", "256"])
    assert (args.plasticity.er_schedule, args.plasticity.er_features) == ("steps", "all")
    assert ppo.main(args)["total_timesteps"] == 256


def test_an_old_handle_state_loads_into_the_update_schedule():
    x = batches(4)
    old = make_method("er", er_schedule="steps", er_every=2).attach(mlp(), lr=1e-3)
    old.after_update(2, inputs=x[0])
    state = old.state_dict()
    del state["er_pending"]  # the layout before the update count
    again = make_method("er", er_every=2).attach(mlp(), lr=1e-3)
    again.load_state_dict(state)
    assert again.step == 2
    assert again.after_minibatch(x[1]) == [] and len(again.after_minibatch(x[2])) == 1


def test_kept_minibatches_survive_a_checkpoint():
    x = batches(3)
    net = mlp()
    handle = make_method("er", er_every=3, er_lr=0.5).attach(net, lr=1e-3)
    handle.after_minibatch(x[0])
    handle.after_minibatch(x[1])
    resumed_net = copy.deepcopy(net)
    resumed = make_method("er", er_every=3, er_lr=0.5).attach(resumed_net, lr=1e-3)
    resumed.load_state_dict(handle.state_dict())
    assert len(resumed.after_minibatch(x[2])) == 1
    assert_parameters(resumed_net, expected_ascent(net, torch.cat(x), 0.5))


def test_the_sb3_callback_ascends_every_er_every_env_steps_and_refuses_other_schedules(
    monkeypatch,
):

    from plasticity.sb3 import PlasticityCallback

    calls = spy_on_ascents(monkeypatch)
    callback = PlasticityCallback("er", networks=("actor",), er_every=50)
    small_sb3_sac().learn(200, callback=callback)
    assert len(calls) == 4 and all(lr == ER_LR_RL for *_, lr in calls)  # steps 50 … 200
    with pytest.raises(ValueError, match="er_schedule='steps'"):
        PlasticityCallback("er", er_schedule="updates")
