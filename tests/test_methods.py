"""Named methods: registry, optimizers, penalties, schedules, targets, checkpoints."""

import copy

import pytest
import torch
from conftest import ConvNet, mlp, normalized_mlp, state_is_zero

from plasticity import METHODS, AdamO, MethodConfig, fire_, l2_penalty, make_method


def run(handle, net, steps, start=1, stride=1, target=None):
    """Train ``net`` on a regression toward a fixed random map and call the hooks."""
    gen = torch.Generator().manual_seed(3)
    reports = []
    for i in range(steps):
        x = torch.randn(32, 8, generator=gen)
        loss = (net(x) - x[:, :4]).pow(2).mean() + handle.penalty()
        handle.optimizer.zero_grad()
        loss.backward()
        handle.optimizer.step()
        reports += handle.after_update(start + i * stride, inputs=x)
    return reports


@pytest.mark.parametrize("name", [*METHODS, "fire+adamo", "redo+parseval+adamo"])
def test_every_method_attaches_and_trains(name):
    net = normalized_mlp() if name == "nap" else mlp()  # nap projects a normalized network
    target = copy.deepcopy(net)
    handle = make_method(
        name, fire_every=10, reset_every=10, shrink_perturb_every=10, redo_every=10, er_every=10
    ).attach(net, lr=1e-3, targets=[target])
    reports = run(handle, net, 20)
    assert all(torch.isfinite(p).all() for p in net.parameters())
    penalty = handle.penalty()
    assert penalty.ndim == 0
    if name in ("isometry", "l2_init", "l2", "parseval", "spectral", "er_l2"):
        assert penalty.item() > 0 and penalty.requires_grad
    if name == "none":
        assert penalty.item() == 0 and not reports
    if name in ("fire", "reset", "shrink_perturb", "redo", "er", "er_l2"):
        assert len(reports) == 2  # at steps 10 and 20
    handle.on_task_switch(inputs=torch.randn(8, 8))


def test_optimizer_follows_the_method():
    net = mlp()
    adam = make_method("none").attach(net, 1e-3).optimizer
    assert type(adam) is torch.optim.Adam and adam.param_groups[0]["fused"]  # one-kernel update
    kept = make_method("none").attach(net, 1e-3, foreach=True).optimizer.param_groups[0]
    assert kept["foreach"] and not kept["fused"]  # an explicit kernel choice is respected
    assert isinstance(make_method("fire+adamo").attach(net, 1e-3).optimizer, AdamO)
    er = make_method("er_l2", l2_coef=0.01).attach(net, 1e-3)  # its L2 is in the loss
    assert (
        type(er.optimizer) is torch.optim.Adam and er.optimizer.param_groups[0]["weight_decay"] == 0
    )
    torch.testing.assert_close(er.penalty(), 0.01 * sum((p**2).sum() for p in net.parameters()))
    adamo = make_method("adamo", iso_coef=0.01, iso_every=2).attach(net, 1e-3, eps=1e-5).optimizer
    groups = adamo.param_groups
    assert (
        groups[0]["iso_coef"] == 0.01 and groups[0]["iso_every"] == 2 and groups[1]["iso_coef"] == 0
    )
    assert groups[0]["eps"] == 1e-5
    assert [p.shape for p in groups[0]["params"]] == [(32, 8), (32, 32)]  # head excluded


def test_fire_runs_on_schedule_even_when_steps_skip():
    net = mlp()
    handle = make_method("fire", fire_every=100).attach(net, 1e-3)
    reports = run(handle, net, 60, start=4, stride=4)  # steps 4, 8, …, 240
    assert len(reports) == 2 and handle.interventions == 2  # crossed 100 and 200 once each


def test_fire_resyncs_targets_and_resets_the_whole_networks_optimizer_state():
    net = mlp()
    target = copy.deepcopy(net)
    handle = make_method("fire", fire_every=5).attach(net, 1e-3, targets=[target])
    run(handle, net, 4)
    pointers = {
        k: v.data_ptr() for p in net.parameters() for k, v in handle.optimizer.state[p].items()
    }
    run(handle, net, 1, start=5)  # FIRE after the 5th update
    for p, q in zip(net.parameters(), target.parameters(), strict=True):
        assert torch.equal(p, q)
    # the default clear_optimizer="network": biases too, as FIRE's SAC rebuilds its optimizer;
    # in place, so the tensors a captured CUDA graph reads are the same ones
    assert all(state_is_zero(handle.optimizer, p) for p in net.parameters())
    after = {
        k: v.data_ptr() for p in net.parameters() for k, v in handle.optimizer.state[p].items()
    }
    assert after == pointers


@pytest.mark.parametrize("name", ["fire", "reset", "shrink_perturb"])
def test_clear_optimizer_touched_and_none(name):
    for mode in ("touched", "none"):
        net = mlp()
        handle = make_method(name, clear_optimizer=mode).attach(net, 1e-3)
        run(handle, net, 3)
        before = copy.deepcopy(handle.optimizer.state_dict()["state"])
        handle.on_task_switch()
        rewritten = [net[0].weight, net[2].weight, net[4].weight]
        if name != "fire":  # resets and S&P rewrite biases too
            rewritten += [net[0].bias, net[2].bias, net[4].bias]
        for i, p in enumerate(net.parameters()):
            reset = mode == "touched" and any(p is q for q in rewritten)
            assert state_is_zero(handle.optimizer, p) == reset
            if not reset:
                torch.testing.assert_close(handle.optimizer.state_dict()["state"][i], before[i])


def test_redo_does_not_jump_the_target():
    net = mlp()
    target = copy.deepcopy(net)
    handle = make_method("redo", redo_every=5).attach(net, 1e-3, targets=[target])
    before = copy.deepcopy(target.state_dict())
    run(handle, net, 5)
    for key, value in target.state_dict().items():
        assert torch.equal(value, before[key])


def test_only_reinitializations_count_as_interventions():
    # tau=0: only dead units are dormant, and units with a bias of 1 are all alive: ReDo
    # reports, recycles nothing
    alive = mlp()
    for layer in (alive[0], alive[2]):
        torch.nn.init.constant_(layer.bias, 1.0)
    idle = make_method("redo", redo_every=5, redo_tau=0.0).attach(alive, 1e-3)
    reports = run(idle, idle.network, 5)
    assert [r.method for r in reports] == ["redo"] and idle.interventions == 0
    # tau=0.99: the units below their layer's mean score are recycled
    busy = make_method("redo", redo_every=5, redo_tau=0.99).attach(mlp(), 1e-3)
    run(busy, busy.network, 5)
    assert busy.interventions == 1
    for name in ("er", "er_l2"):
        ascent = make_method(name, er_every=5).attach(mlp(), 1e-3)
        assert [r.method for r in run(ascent, ascent.network, 5)] == ["er_ascent"]
        assert ascent.interventions == 0


def test_task_switch_triggers_fire_reset_and_shrink_perturb_only():
    for name, acts in [("fire", True), ("reset", True), ("shrink_perturb", True), ("redo", False)]:
        net = mlp()
        old = net[0].weight.detach().clone()
        reports = make_method(name).attach(net, 1e-3).on_task_switch(inputs=torch.randn(4, 8))
        assert bool(reports) == acts
        assert (not torch.equal(net[0].weight, old)) == acts
    net = mlp()
    off = make_method("fire", fire_on_task_switch=False).attach(net, 1e-3)
    assert off.on_task_switch() == []


def test_probe_batch_is_required_where_needed():
    handle = make_method("redo", redo_every=1).attach(mlp(), 1e-3)
    with pytest.raises(ValueError, match="needs a probe batch"):
        handle.after_update(1)


@pytest.mark.parametrize(
    "name, message",
    [
        ("fir", "unknown plasticity method 'fir'; choose from none, adamo"),
        ("fire+fire", "names a part twice"),
        ("none+fire", "combines 'none'"),
        ("fire+", "unknown plasticity method ''"),
        ("er_l2+er", "names a part twice"),  # er_l2 is er + l2
        (None, "a method name must be a string"),
    ],
)
def test_bad_method_names(name, message):
    with pytest.raises(ValueError, match=message):
        make_method(name)


def test_unknown_setting_lists_valid_ones():
    with pytest.raises(ValueError, match="unknown method setting.*fire_evry.*fire_every"):
        make_method("fire", fire_evry=10)


def test_config_object_and_overrides():
    method = make_method("fire", config=MethodConfig(fire_every=7, fire_ns_steps=5), fire_every=9)
    assert method.config.fire_every == 9 and method.config.fire_ns_steps == 5


def test_handle_checkpoint_resumes_the_schedule():
    net = mlp()
    handle = make_method("fire+l2_init", fire_every=10).attach(net, 1e-3)
    run(handle, net, 15)
    state = copy.deepcopy(handle.state_dict())
    net2 = copy.deepcopy(net)
    resumed = make_method("fire+l2_init", fire_every=10).attach(net2, 1e-3)
    resumed.load_state_dict(state)
    assert resumed.interventions == 1
    assert len(run(resumed, net2, 4, start=16)) == 0  # 16..19: the next FIRE is at 20
    assert len(run(resumed, net2, 1, start=20)) == 1
    torch.testing.assert_close(resumed.penalty(), resumed.penalty())
    with pytest.raises(ValueError, match="same --method"):
        make_method("fire", fire_every=10).attach(mlp(), 1e-3).load_state_dict(state)


def test_handle_state_from_before_the_schedule_objects_still_loads():
    """Checkpoints written before plasticity.schedule kept the last period index per part."""
    handle = make_method("fire", fire_every=10).attach(mlp(), 1e-3)
    state = handle.state_dict()
    del state["schedules"]
    state["last_period"] = {"fire": 1}  # FIRE ran at step 10
    handle.load_state_dict(state)
    assert [step for step in (15, 19, 20) if handle.after_update(step)] == [20]


def test_handle_wraps_an_optimizer_built_elsewhere():
    net = mlp()
    other = torch.nn.Linear(3, 3)
    optimizer = torch.optim.Adam([*net.parameters(), *other.parameters()], lr=1e-3)
    handle = make_method("fire", fire_every=5).attach(net, optimizer=optimizer, start_step=12)
    assert handle.optimizer is optimizer
    net(torch.randn(4, 8)).sum().backward()
    other(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    assert not handle.after_update(14)  # 5 and 10 lie before the start: no catch-up
    assert handle.after_update(15)
    assert all(state_is_zero(optimizer, p) for p in net.parameters())
    assert not state_is_zero(optimizer, other.weight)  # not this handle's network
    with pytest.raises(ValueError, match="needs an AdamO optimizer"):
        make_method("adamo").attach(net, optimizer=optimizer)
    with pytest.raises(ValueError, match="needs lr="):
        make_method("fire").attach(net)


@pytest.mark.parametrize(
    "setting, value, valid",
    [
        ("fire_every", -5, "0 \\(off\\) or a positive integer"),
        ("fire_every", 2.5, "0 \\(off\\) or a positive integer"),
        ("redo_tau", -1.0, "a finite number >= 0"),
        ("redo_tau", float("nan"), "a finite number >= 0"),
        ("shrink", 2.0, "a number in \\[0, 1\\]"),
        ("fire_mode", "svd", "one of 'newton_schulz', 'polar'"),
        ("fire_linear", "reset", "one of 'fire', 'initial', 'fresh'"),
        ("clear_optimizer", "all", "one of 'network', 'touched', 'none'"),
        ("iso_coef", float("inf"), "a finite number >= 0"),
        ("iso_scale", 0.0, "a finite number > 0"),
        ("iso_every", 0, "an integer >= 1"),
        ("fire_ns_steps", 0, "an integer >= 1"),
        ("l2_coef", -1e-3, "a finite number >= 0"),
        ("fire_at", [100, -5], "a list of positive integer steps"),
        ("reset_at", [0], "a list of positive integer steps"),
        ("fire_on_task_switch", "yes", "True or False"),
    ],
)
def test_settings_out_of_range_are_refused_up_front(setting, value, valid):
    with pytest.raises(
        ValueError, match=f"invalid method setting {setting}=.*: it must be {valid}"
    ):
        make_method("fire", **{setting: value})


def test_every_setting_is_validated_and_the_defaults_pass():
    MethodConfig().validate()  # a field without a check would raise KeyError here
    with pytest.raises(ValueError, match="config must be a MethodConfig"):
        make_method("fire", config={"fire_every": 10})


def test_fire_at_runs_once_at_each_listed_step_besides_the_period():
    net = mlp()
    handle = make_method("fire", fire_every=100, fire_at=[30, 55]).attach(net, 1e-3)
    steps = [s for s in range(4, 241, 4) if run(handle, net, 1, start=s)]
    assert steps == [32, 56, 100, 200] and handle.interventions == 4
    once = make_method("fire", fire_every=0, fire_at=[100]).attach(net, 1e-3, start_step=120)
    assert not run(once, net, 10, start=121)  # 100 lies before the start: no catch-up
    shrink = make_method("shrink_perturb", shrink_perturb_every=0, shrink_perturb_at=[3])
    assert len(run(shrink.attach(net, 1e-3), net, 5)) == 1
    reset = make_method("reset", reset_every=0, reset_at=[2, 4]).attach(net, 1e-3)
    assert [r.method for r in run(reset, net, 5)] == ["reset", "reset"]


def test_fire_at_parses_from_the_command_line():
    import tyro

    config = tyro.cli(MethodConfig, args=["--fire-at", "500000", "750000", "--fire-every", "0"])
    assert config.fire_at == [500000, 750000] and config.fire_every == 0
    assert tyro.cli(MethodConfig, args=[]).fire_at == []
    make_method("fire", config=config)  # and validates


def test_handle_checkpoint_keeps_the_position_of_fire_at():
    net = mlp()
    handle = make_method("fire", fire_every=0, fire_at=[10, 30]).attach(net, 1e-3)
    run(handle, net, 15)  # FIRE at 10
    state = copy.deepcopy(handle.state_dict())
    assert state["schedules"]["fire_at"] == {"steps": [10, 30], "reached": 15}
    resumed = make_method("fire", fire_every=0, fire_at=[10, 30]).attach(copy.deepcopy(net), 1e-3)
    resumed.load_state_dict(state)
    assert [s for s in range(16, 40) if resumed.after_update(s)] == [30]


def test_handle_state_without_at_schedules_does_not_catch_up():
    """A checkpoint saved before fire_at existed, resumed with --fire-at listing a passed step."""
    old = make_method("fire", fire_every=10).attach(mlp(), 1e-3)
    run(old, old.network, 25)  # FIREs at 10 and 20
    state = copy.deepcopy(old.state_dict())
    del state["schedules"]["fire_at"], state["step"]
    resumed = make_method("fire", fire_every=10, fire_at=[15, 35]).attach(mlp(), 1e-3)
    resumed.load_state_dict(state)
    # 15 was passed before the checkpoint (it reached period 20): only 30 (period) and 35 fire
    assert [s for s in range(26, 40) if resumed.after_update(s)] == [30, 35]


class _Frames(ConvNet):
    """ConvNet with ReLU conv layers and Linear layers with biases: DQN-shaped."""


def test_fire_linear_initial_is_the_papers_dqn_split():
    net = _Frames()
    initial = copy.deepcopy(net.state_dict())
    handle = make_method("fire", fire_linear="initial", clear_optimizer="none").attach(net, 1e-3)
    x = torch.randn(8, 2, 11, 11)
    for _ in range(3):
        handle.optimizer.zero_grad()
        net(x).pow(2).mean().backward()
        handle.optimizer.step()
    trained = copy.deepcopy(net)
    moments = copy.deepcopy(handle.optimizer.state_dict()["state"])
    report = handle.on_task_switch()[0]
    expected = copy.deepcopy(trained)
    fire_(expected, include=["conv1", "conv2"])
    for name in ("conv1", "conv2"):  # FIRE on the convolutions, biases kept
        torch.testing.assert_close(getattr(net, name).weight, getattr(expected, name).weight)
        torch.testing.assert_close(getattr(net, name).bias, getattr(trained, name).bias)
    for name in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):  # linear layers and head
        torch.testing.assert_close(net.state_dict()[name], initial[name])
    torch.testing.assert_close(net.norm.weight, trained.norm.weight)  # not a Linear/Conv
    assert set(report.layers) == {"conv1", "conv2", "fc1", "fc2"}
    # clear_optimizer="none" keeps Adam's moments, as the paper's DQN did
    torch.testing.assert_close(handle.optimizer.state_dict()["state"], moments)


def _trained_frames(method: str, **settings):
    """A DQN-shaped network after three Adam steps, its method attached with a target network;
    returns (network, target, its initial state, the handle)."""
    net = _Frames()
    initial = copy.deepcopy(net.state_dict())
    target = copy.deepcopy(net)
    handle = make_method(method, **settings).attach(net, 1e-3, targets=[target])
    x = torch.randn(8, 2, 11, 11)
    for _ in range(3):
        handle.optimizer.zero_grad()
        net(x).pow(2).mean().backward()
        handle.optimizer.step()
    return net, target, initial, handle


def test_shrink_perturb_linear_initial_is_the_fire_papers_dqn_form():
    """The FIRE paper's SR-DQN: convolutions (weights and biases) 0.2·θ + 0.8·θ₀, Linear
    layers back to θ₀."""
    net, _, initial, handle = _trained_frames(
        "shrink_perturb",
        shrink=0.2,
        perturb=0.8,
        perturb_target="initial",
        shrink_perturb_linear="initial",
    )
    trained = copy.deepcopy(net.state_dict())
    report = handle.on_task_switch()[0]
    state = net.state_dict()
    for name in ("conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"):
        torch.testing.assert_close(state[name], 0.2 * trained[name] + 0.8 * initial[name])
    for name in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
        torch.testing.assert_close(state[name], initial[name])
    assert set(report.layers) == {"conv1", "conv2", "fc1", "fc2"}


def test_shrink_perturb_linear_shrink_blends_every_layer_alike():
    net, _, initial, handle = _trained_frames(
        "shrink_perturb", shrink=0.5, perturb=0.5, perturb_target="initial"
    )
    trained = copy.deepcopy(net.state_dict())
    handle.on_task_switch()
    for name in ("conv1.weight", "fc1.weight", "fc2.bias"):
        torch.testing.assert_close(
            net.state_dict()[name], 0.5 * trained[name] + 0.5 * initial[name]
        )


def test_target_sync_rewritten_copies_only_what_fire_changed():
    """The FIRE paper's DQN writes the FIRE'd conv weights and the reset linear layers into
    the target; the target's conv biases stay its own."""
    net, target, _, handle = _trained_frames(
        "fire", fire_linear="initial", clear_optimizer="none", target_sync="rewritten"
    )
    stale = copy.deepcopy(target.state_dict())  # the target lags: synced at attach only
    handle.on_task_switch()
    online, synced = net.state_dict(), target.state_dict()
    for name in ("conv1.weight", "conv2.weight", "fc1.weight", "fc1.bias", "fc2.weight"):
        torch.testing.assert_close(synced[name], online[name])
    for name in ("conv1.bias", "conv2.bias"):
        torch.testing.assert_close(synced[name], stale[name])
        assert not torch.equal(synced[name], online[name])  # trained, so they differ


def test_target_sync_network_copies_the_whole_network():
    net, target, _, handle = _trained_frames("fire", fire_linear="initial")
    handle.on_task_switch()
    for name, tensor in net.state_dict().items():
        torch.testing.assert_close(target.state_dict()[name], tensor)


def test_fire_linear_fresh_draws_new_linear_layers():
    net = mlp()
    torch.manual_seed(5)
    fresh = mlp()
    handle = make_method("fire", fire_linear="fresh").attach(
        net, 1e-3, fresh=lambda: copy.deepcopy(fresh)
    )
    handle.on_task_switch()
    for p, q in zip(net.parameters(), fresh.parameters(), strict=True):
        torch.testing.assert_close(p, q)  # an MLP has only Linear layers: all re-drawn


def test_l2_is_a_coupled_penalty_toward_zero():
    net = mlp()
    handle = make_method("l2", l2_coef=0.1).attach(net, 1e-3)
    torch.testing.assert_close(handle.penalty(), 0.1 * l2_penalty(net))
    # with no task loss, Adam normalizes the L2 gradient: every weight moves by about lr
    before = copy.deepcopy(net)
    handle.optimizer.zero_grad()
    handle.penalty().backward()
    handle.optimizer.step()
    for p, q in zip(net.parameters(), before.parameters(), strict=True):
        away = q.abs() > 2e-3  # weights a step of lr cannot carry across zero
        torch.testing.assert_close(
            (p - q).abs()[away], torch.full_like(p, 1e-3)[away], rtol=1e-3, atol=0
        )
        assert (p.abs() < q.abs())[away].all()  # toward zero


def test_a_period_enabled_at_a_resume_does_not_fire_at_once():
    saved = make_method("fire", fire_every=0).attach(mlp(), 1e-3)
    saved.after_update(50_000)  # the run reached step 50000 with FIRE off
    resumed = make_method("fire", fire_every=1000).attach(mlp(), 1e-3)
    resumed.load_state_dict(saved.state_dict())
    assert [s for s in (50_001, 50_999, 51_000) if resumed.after_update(s)] == [51_000]


def test_start_skips_ahead_and_a_lower_start_begins_the_schedules_again():
    handle = make_method("fire", fire_every=100).attach(mlp(), 1e-3)
    handle.start(250)  # updates begin late: 100 and 200 are not made up
    assert [s for s in (260, 300) if handle.after_update(s)] == [300]
    handle.start(0)  # the loop counts from 0 again (SB3's learn(reset_num_timesteps=True))
    assert [s for s in (50, 100, 150) if handle.after_update(s)] == [100]


def test_interventions_are_counted_per_method_and_checkpointed():
    net = mlp()
    handle = make_method("fire+reset", fire_every=10, reset_every=20).attach(net, 1e-3)
    run(handle, net, 40)
    assert handle.interventions_by_method == {"fire": 4, "reset": 2}
    assert handle.interventions == 6
    resumed = make_method("fire+reset", fire_every=10, reset_every=20).attach(mlp(), 1e-3)
    resumed.load_state_dict(copy.deepcopy(handle.state_dict()))
    assert resumed.interventions_by_method == {"fire": 4, "reset": 2}
