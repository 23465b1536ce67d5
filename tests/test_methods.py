"""Named methods: registry, optimizers, penalties, schedules, targets, checkpoints."""

import copy

import pytest
import torch
from conftest import mlp

from plasticity import METHODS, AdamO, MethodConfig, make_method


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
    net = mlp()
    target = copy.deepcopy(net)
    handle = make_method(
        name, fire_every=10, reset_every=10, shrink_perturb_every=10, redo_every=10, er_every=10
    ).attach(net, lr=1e-3, targets=[target])
    reports = run(handle, net, 20)
    assert all(torch.isfinite(p).all() for p in net.parameters())
    penalty = handle.penalty()
    assert penalty.ndim == 0
    if name in ("isometry", "l2_init", "parseval", "spectral"):
        assert penalty.item() > 0 and penalty.requires_grad
    if name == "none":
        assert penalty.item() == 0 and not reports
    if name in ("fire", "reset", "shrink_perturb", "redo", "er_l2"):
        assert len(reports) == 2  # at steps 10 and 20
    handle.on_task_switch(inputs=torch.randn(8, 8))


def test_optimizer_follows_the_method():
    net = mlp()
    adam = make_method("none").attach(net, 1e-3).optimizer
    assert type(adam) is torch.optim.Adam and adam.param_groups[0]["fused"]  # one-kernel update
    kept = make_method("none").attach(net, 1e-3, foreach=True).optimizer.param_groups[0]
    assert kept["foreach"] and not kept["fused"]  # an explicit kernel choice is respected
    assert isinstance(make_method("fire+adamo").attach(net, 1e-3).optimizer, AdamO)
    er = make_method("er_l2").attach(net, 1e-3).optimizer
    assert type(er) is torch.optim.AdamW and er.param_groups[0]["weight_decay"] == 1e-3
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


def test_fire_resyncs_targets_and_clears_optimizer_state():
    net = mlp()
    target = copy.deepcopy(net)
    handle = make_method("fire", fire_every=5).attach(net, 1e-3, targets=[target])
    run(handle, net, 5)  # FIRE after the 5th update
    for p, q in zip(net.parameters(), target.parameters(), strict=True):
        assert torch.equal(p, q)
    for layer in (net[0], net[2], net[4]):
        assert layer.weight not in handle.optimizer.state
        assert layer.bias in handle.optimizer.state


def test_redo_does_not_jump_the_target():
    net = mlp()
    target = copy.deepcopy(net)
    handle = make_method("redo", redo_every=5).attach(net, 1e-3, targets=[target])
    before = copy.deepcopy(target.state_dict())
    run(handle, net, 5)
    for key, value in target.state_dict().items():
        assert torch.equal(value, before[key])


def test_only_reinitializations_count_as_interventions():
    # tau=-1: no unit is dormant, the ReDo pass reports but recycles nothing
    idle = make_method("redo", redo_every=5, redo_tau=-1.0).attach(mlp(), 1e-3)
    reports = run(idle, idle.network, 5)
    assert [r.method for r in reports] == ["redo"] and idle.interventions == 0
    # tau=10: every unit scores below it and is recycled
    busy = make_method("redo", redo_every=5, redo_tau=10.0).attach(mlp(), 1e-3)
    run(busy, busy.network, 5)
    assert busy.interventions == 1
    ascent = make_method("er_l2", er_every=5).attach(mlp(), 1e-3)
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
    assert all(p not in optimizer.state for p in (net[0].weight, net[2].weight))
    assert other.weight in optimizer.state  # not this handle's network
    with pytest.raises(ValueError, match="needs an AdamO optimizer"):
        make_method("adamo").attach(net, optimizer=optimizer)
    with pytest.raises(ValueError, match="needs lr="):
        make_method("fire").attach(net)
