"""plasticity.symmetry: permutations keep the function, matchers recover known permutations,
barriers equal a plain loop over α; experiments.symmetry: RL losses and the command on tiny
runs."""

import copy
import itertools
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import mlp
from torch import nn

from agents import dqn, ppo, sac
from plasticity.symmetry import (
    Wiring,
    activation_matching,
    identifiability_chance,
    identifiable_units,
    infer_wiring,
    input_subspace,
    interpolation_barrier,
    merge,
    pearson,
    permute_,
    realization_costs,
    realization_report,
    relative_barrier,
    subspace_coherence,
    swap_costs,
    unit_activations,
    weight_matching,
)


def cnn() -> nn.Sequential:
    """Two convs flattened into a Linear (16 channels × 3 × 3 positions), then a head."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 3 * 3, 32),
        nn.ReLU(),
        nn.Linear(32, 5),
    )


ROOT = Path(__file__).resolve().parents[1]
BOX = gym.spaces.Box(-2.0, 2.0, (2,))

# name -> (network factory, probe factory); each probe is a tuple of the network's arguments
NETWORKS = {
    "mlp": (mlp, lambda: (torch.randn(256, 8),)),
    "cnn": (cnn, lambda: (torch.randn(64, 3, 9, 9),)),
    "twin_critic": (
        lambda: sac.TwinQ(5, 2, 32),
        lambda: (torch.randn(256, 5), torch.randn(256, 2)),
    ),
    "sac_actor": (lambda: sac.Actor(5, BOX, 32), lambda: (torch.randn(256, 5),)),
    "ppo_critic": (
        lambda: ppo.Critic(gym.spaces.Box(-1, 1, (6,)), 16),
        lambda: (torch.randn(256, 6),),
    ),
    "dqn_mlp": (lambda: dqn.QNetwork((4,), 2), lambda: (torch.randn(256, 4),)),
}


def outputs(net, probe) -> torch.Tensor:
    out = net(*probe)
    return torch.cat(out, -1) if isinstance(out, tuple) else out


def random_perms(net, seed=1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    layers = dict(net.named_modules())
    return {
        name: torch.randperm(layers[name].weight.shape[0], generator=generator)
        for name in infer_wiring(net).readers
    }


def state(net) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


# --- wiring and permute_ --------------------------------------------------------------------


def test_wiring_of_the_agents_networks():
    assert infer_wiring(sac.TwinQ(5, 2, 8)).readers == {
        "qf1.0": ("qf1.2",),
        "qf1.2": ("qf1.4",),
        "qf2.0": ("qf2.2",),
        "qf2.2": ("qf2.4",),
    }  # two members, matched separately; the heads are never permuted
    assert infer_wiring(sac.Actor(5, BOX, 8)).readers == {
        "fc1": ("fc2",),
        "fc2": ("fc_mean", "fc_logstd"),
    }
    image = gym.spaces.Box(0, 255, (4, 84, 84), dtype="uint8")
    assert infer_wiring(ppo.Actor(image, gym.spaces.Discrete(3))).readers == {
        "trunk.0": ("trunk.2",),
        "trunk.2": ("trunk.4",),
        "trunk.4": ("trunk.7",),  # the flatten into the first Linear
        "trunk.7": ("head",),
    }


@pytest.mark.parametrize("kind", sorted(NETWORKS))
def test_permuting_hidden_units_keeps_the_function(kind):
    make, make_probe = NETWORKS[kind]
    net, probe = make(), make_probe()
    before = state(net)
    expected = outputs(net, probe)
    permute_(net, random_perms(net))
    changed = [k for k in before if not torch.equal(before[k], net.state_dict()[k])]
    assert changed  # the weights did move
    torch.testing.assert_close(outputs(net, probe), expected, rtol=1e-5, atol=1e-5)


def test_permuting_a_conv_moves_its_block_of_flattened_inputs():
    net = cnn()
    perm = torch.tensor([1, 0, *range(2, 16)])  # swap channels 0 and 1 of the second conv
    reader_before = net[5].weight.detach().clone()
    permute_(net, {"2": perm})
    # each channel owns 3 × 3 = 9 consecutive inputs of the Linear
    torch.testing.assert_close(net[5].weight[:, :9], reader_before[:, 9:18])
    torch.testing.assert_close(net[5].weight[:, 9:18], reader_before[:, :9])
    torch.testing.assert_close(net[5].weight[:, 18:], reader_before[:, 18:])


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="LayerNorm"):
        infer_wiring(nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2)))
    with pytest.raises(ValueError, match="not a permutation"):
        permute_(mlp(), {"0": torch.zeros(32, dtype=torch.long)})
    with pytest.raises(ValueError, match="not a permutable layer"):
        permute_(mlp(), {"4": torch.arange(4)})
    with pytest.raises(ValueError, match="same architecture"):
        weight_matching(mlp(), mlp((8, 16, 32, 4)))
    with pytest.raises(ValueError, match="rise from 0 to 1"):
        interpolation_barrier(mlp(), mlp(), lambda n: n(torch.randn(4, 8)).sum(), alphas=[0.2, 1])


# --- matching -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(NETWORKS))
@pytest.mark.parametrize("matcher", ["activation", "weight"])
def test_matchers_recover_a_known_permutation(kind, matcher):
    make, make_probe = NETWORKS[kind]
    net_a, probe = make(), make_probe()
    perms = random_perms(net_a)
    net_b = permute_(copy.deepcopy(net_a), perms)
    before_a, before_b = state(net_a), state(net_b)
    if matcher == "activation":
        result = activation_matching(net_a, net_b, probe)
    else:
        result = weight_matching(net_a, net_b)
    assert_same_state(state(net_a), before_a)  # the matchers never modify their inputs
    assert_same_state(state(net_b), before_b)
    # B's unit i is A's unit perm[i], so B aligns by the inverse. Units that are dead on the
    # probe (ReLU at init) carry no activation to match by: only weights tell them apart.
    activations = unit_activations(net_a, probe)
    for name, perm in perms.items():
        live = activations[name].std(0) > 0 if matcher == "activation" else slice(None)
        assert torch.equal(result.perms[name][live], torch.argsort(perm)[live]), name
    permute_(net_b, result.perms)
    if matcher == "weight":
        assert_same_state(state(net_b), before_a)
    torch.testing.assert_close(outputs(net_b, probe), outputs(net_a, probe))


def test_identifiability_report_holds_correlations():
    net_a = nn.Sequential(
        nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 4)
    )
    probe = torch.randn(512, 8)
    net_b = permute_(copy.deepcopy(net_a), random_perms(net_a))
    report = activation_matching(net_a, net_b, probe, n_random=50)
    assert report.optimal_mean == pytest.approx(1.0, abs=1e-9)  # each unit finds its copy
    assert report.identity_mean < 0.5 and report.gap > 0.5  # the identity does not
    assert abs(report.random_mean) < 0.3
    for layer in report.layers.values():
        torch.testing.assert_close(layer.matched, torch.ones_like(layer.matched))
    same = activation_matching(net_a, copy.deepcopy(net_a), probe)
    assert same.identity_mean == pytest.approx(1.0) and same.gap == pytest.approx(0.0, abs=1e-9)


def test_dead_and_constant_units_correlate_zero():
    z = torch.randn(100, 3)
    z[:, 1] = 0.0  # a dead ReLU
    z[:, 2] = 0.7  # a constant unit
    corr = pearson(z, z)
    assert torch.isfinite(corr).all()
    assert corr[0, 0] == pytest.approx(1.0)
    assert (corr[1:, :] == 0).all() and (corr[:, 1:] == 0).all()


# --- barriers and merging -------------------------------------------------------------------


def regression_data():
    x = torch.randn(256, 8)
    y = torch.sin(x @ torch.randn(8, 4))
    return x, y


def trained_mlp(seed: int, x, y, steps: int = 300) -> nn.Sequential:
    torch.manual_seed(seed)
    net = mlp()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(steps):
        loss = F.mse_loss(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net


@pytest.fixture(scope="module")
def two_trained():
    torch.manual_seed(0)
    x, y = regression_data()
    return trained_mlp(1, x, y), trained_mlp(2, x, y), x, y


@pytest.mark.parametrize("align", [None, "activation", "weight"])
def test_barrier_equals_a_plain_loop_over_alpha(two_trained, align):
    net_a, net_b, x, y = two_trained
    before_a, before_b = state(net_a), state(net_b)

    def loss_fn(net):
        return F.mse_loss(net(x), y)

    barrier = interpolation_barrier(net_a, net_b, loss_fn, alphas=11, align=align, probe=x)
    assert_same_state(state(net_a), before_a)
    assert_same_state(state(net_b), before_b)
    assert (barrier.perms is None) == (align is None)
    aligned_b = permute_(copy.deepcopy(net_b), barrier.perms) if barrier.perms else net_b
    loop = []
    for alpha in torch.linspace(0, 1, 11).tolist():
        net = copy.deepcopy(net_a)
        with torch.no_grad():
            for p, pa, pb in zip(
                net.parameters(), net_a.parameters(), aligned_b.parameters(), strict=True
            ):
                p.copy_((1 - alpha) * pa + alpha * pb)
        loop.append(float(loss_fn(net).detach()))
    loop = torch.tensor(loop, dtype=torch.float64)
    torch.testing.assert_close(barrier.losses, loop, rtol=1e-5, atol=1e-6)
    alphas = torch.linspace(0, 1, 11, dtype=torch.float64)
    linear = (1 - alphas) * loop[0] + alphas * loop[-1]
    assert barrier.peak == pytest.approx(float((loop - linear).max()), rel=1e-4)
    assert barrier.midpoint == pytest.approx(float(loop[5] - (loop[0] + loop[-1]) / 2), rel=1e-4)
    assert barrier.loss_a == pytest.approx(float(loss_fn(net_a).detach()), rel=1e-5)


def test_two_seeds_have_a_barrier_that_alignment_lowers(two_trained):
    net_a, net_b, x, y = two_trained

    def loss_fn(net):
        return F.mse_loss(net(x), y)

    unaligned = interpolation_barrier(net_a, net_b, loss_fn)
    aligned = interpolation_barrier(net_a, net_b, loss_fn, align="activation", probe=x)
    assert unaligned.peak > 0.05
    assert aligned.peak < unaligned.peak
    weights = weight_matching(net_a, net_b)
    assert weights.distance < weights.identity_distance
    theta_a = torch.cat([p.detach().flatten() for p in net_a.parameters()])
    aligned_b = permute_(copy.deepcopy(net_b), weights.perms)
    theta_b = torch.cat([p.detach().flatten() for p in aligned_b.parameters()])
    assert weights.distance == pytest.approx(float((theta_a - theta_b).norm()), rel=1e-5)


@pytest.mark.parametrize("align", ["activation", "weight"])
def test_aligned_barrier_to_a_permuted_copy_vanishes(two_trained, align):
    net_a, _, x, y = two_trained
    net_b = permute_(copy.deepcopy(net_a), random_perms(net_a, seed=5))

    def loss_fn(net):
        return F.mse_loss(net(x), y)

    unaligned = interpolation_barrier(net_a, net_b, loss_fn)
    aligned = interpolation_barrier(net_a, net_b, loss_fn, align=align, probe=x)
    assert unaligned.peak > 0.05 and unaligned.midpoint > 0.05
    assert abs(aligned.peak) < 1e-5 and abs(aligned.midpoint) < 1e-5


def test_barrier_of_a_cnn_with_an_alpha_list():
    net_a, net_b = cnn(), cnn()
    x = torch.randn(16, 3, 9, 9)

    def loss_fn(net):
        return net(x).square().mean()

    barrier = interpolation_barrier(net_a, net_b, loss_fn, alphas=[0.0, 0.3, 1.0], chunk_size=2)
    assert barrier.losses.shape == (3,)
    half = merge(net_a, net_b, alpha=0.5)  # the midpoint is evaluated even off the grid
    expected = float(loss_fn(half).detach()) - (barrier.loss_a + barrier.loss_b) / 2
    assert barrier.midpoint == pytest.approx(expected, rel=1e-4)


def test_unaligned_barrier_needs_no_permutable_wiring():
    def normed():
        return nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.ReLU(), nn.Linear(8, 2))

    net_a, net_b, x = normed(), normed(), torch.randn(32, 4)

    def loss_fn(net):
        return net(x).square().mean()

    barrier = interpolation_barrier(net_a, net_b, loss_fn, alphas=5)
    assert barrier.perms is None and barrier.losses.shape == (5,)
    with pytest.raises(ValueError, match="LayerNorm"):
        interpolation_barrier(net_a, net_b, loss_fn, align="weight")


def test_merge_interpolates_the_aligned_networks(two_trained):
    net_a, _, x, _ = two_trained
    perms = random_perms(net_a, seed=7)
    net_b = permute_(copy.deepcopy(net_a), perms)
    before_b = state(net_b)
    inverse = {name: torch.argsort(p) for name, p in perms.items()}
    merged = merge(net_a, net_b, inverse, alpha=0.3)
    assert_same_state(state(net_b), before_b)
    assert merged is not net_a
    torch.testing.assert_close(merged(x), net_a(x), rtol=1e-5, atol=1e-5)
    unaligned = merge(net_a, net_b, alpha=0.5)
    assert not torch.allclose(unaligned(x), net_a(x), atol=1e-2)


def test_repair_restores_the_interpolated_unit_statistics(two_trained):
    net_a, net_b, x, _ = two_trained
    perms = activation_matching(net_a, net_b, x).perms
    aligned_b = permute_(copy.deepcopy(net_b), perms)
    merged = merge(net_a, net_b, perms, alpha=0.25, repair=True, probe=x)

    def pre_activations(net):
        return [net[0](x), net[2](F.relu(net[0](x)))]

    for z_m, z_a, z_b in zip(
        pre_activations(merged), pre_activations(net_a), pre_activations(aligned_b), strict=True
    ):
        goal_mean = 0.75 * z_a.mean(0) + 0.25 * z_b.mean(0)
        goal_std = 0.75 * z_a.std(0, correction=0) + 0.25 * z_b.std(0, correction=0)
        torch.testing.assert_close(z_m.mean(0), goal_mean, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(z_m.std(0, correction=0), goal_std, rtol=1e-4, atol=1e-4)
    plain = merge(net_a, net_b, perms, alpha=0.25)
    assert plain[0].weight.std() != merged[0].weight.std()


# --- experiments.symmetry and the command -------------------------------------------------


def tiny_run(agent: str, root, name: str, **overrides) -> None:
    common = dict(
        eval_every=0,
        eval_episodes=0,
        metrics_every=0,
        runs_dir=str(root),
        run_name=name,
        device="cpu",
    )
    if agent == "dqn":
        settings = dict(
            env="CartPole-v1",
            total_timesteps=300,
            learning_starts=100,
            buffer_size=1000,
            batch_size=32,
            train_frequency=2,
            target_network_frequency=50,
            checkpoint_every=150,
        )
        dqn.main(dqn.Args(**{**common, **settings, **overrides}))
    elif agent == "sac":
        settings = dict(
            env="Pendulum-v1",
            total_timesteps=200,
            learning_starts=100,
            batch_size=32,
            hidden_size=32,
            buffer_size=1000,
        )
        sac.main(sac.Args(**{**common, **settings, **overrides}))
    else:
        settings = dict(env="CartPole-v1", total_timesteps=128, num_envs=2, num_steps=64)
        ppo.main(ppo.Args(**{**common, **settings, **overrides}))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    tiny_run("dqn", root, "dqn1", seed=1)
    tiny_run("dqn", root, "dqn2", seed=2)
    tiny_run("sac", root, "sac1", seed=1, save_buffer=True)
    tiny_run("sac", root, "sac_wide", seed=2, hidden_size=48)
    tiny_run("ppo", root, "ppo1", seed=1)
    return root


@pytest.mark.parametrize(
    "run_name, network",
    [("dqn1", "q"), ("sac1", "critic"), ("sac1", "actor"), ("ppo1", "critic"), ("ppo1", "actor")],
)
def test_probe_losses_are_pure_functions_of_the_parameters(runs, run_name, network):
    from experiments.symmetry import collect_transitions, load_run, probe_loss

    run = load_run(runs / run_name)
    batch = collect_transitions(run, 32, seed=3)
    loss = probe_loss(run, network, batch, seed=3)
    net = run.networks[network]
    direct = float(loss.fn(net))
    assert math.isfinite(direct) and float(loss.fn(net)) == direct  # frozen: no fresh draws
    # the same loss batched over a path (vmap): flat between a network and itself
    flat = interpolation_barrier(net, net, loss.fn, alphas=3)
    torch.testing.assert_close(flat.losses, torch.full((3,), direct, dtype=torch.float64))
    again = collect_transitions(run, 32, seed=3)
    assert torch.equal(again.obs, batch.obs) and torch.equal(again.actions, batch.actions)


def test_probe_batch_comes_from_a_saved_buffer(runs):
    from experiments.symmetry import collect_transitions, load_run

    run = load_run(runs / "sac1")
    buffer = run.state["buffer"]
    batch = collect_transitions(run, 16)
    rows = (batch.obs[:, None, :] == buffer["obs"][None, :, :]).all(-1).any(-1)
    assert rows.all() and len(batch) == 16


def test_loader_reads_either_spelling_of_dqn_keys(runs, tmp_path):
    import shutil

    from experiments.symmetry import load_run

    renamed = tmp_path / "renamed"
    shutil.copytree(runs / "dqn1", renamed)
    file = renamed / "checkpoints" / "step_300.pt"
    state = torch.load(file, weights_only=False)  # as written before one name per network
    state["q_network"], state["target_network"] = state.pop("q"), state.pop("q_target")
    torch.save(state, file)
    old, new = load_run(renamed), load_run(runs / "dqn1")
    assert new.step == old.step == 300
    assert_same_state(new.networks["q"].state_dict(), old.networks["q"].state_dict())
    assert_same_state(new.networks["q_target"].state_dict(), old.networks["q_target"].state_dict())


def test_interpolated_returns_of_a_run_with_itself(runs):
    from experiments.symmetry import interpolated_returns, load_run

    run = load_run(runs / "dqn1")
    returns = interpolated_returns(run, run, alphas=(0.0, 1.0), episodes=1)
    assert len(returns) == 2 and returns[0] == returns[1] > 0


def test_the_library_names_the_command_instead_of_importing_agents():
    result = subprocess.run(
        [sys.executable, "-m", "plasticity.symmetry", "runs/A", "runs/B"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: the symmetry command is python -m experiments.symmetry (same arguments); "
        "plasticity.symmetry is the library"
    ]


def test_command_compares_two_tiny_runs(runs, tmp_path):
    plot = tmp_path / "plot.png"
    before_after = str(runs / "dqn1" / "checkpoints" / "step_150.pt")
    result = subprocess.run(
        [sys.executable, "-m", "experiments.symmetry", before_after, str(runs / "dqn2")]
        + ["--probe", "64", "--plot", str(plot)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert "(dqn, step 150)" in out and "(dqn, step 300)" in out
    gap = re.search(r"^all\s+204" + r"\s+(\S+)" * 7 + "$", out, re.M)
    assert gap, out
    optimal, identity, _random, difference, identified, matched, chance = map(float, gap.groups())
    assert difference == pytest.approx(optimal - identity, abs=2e-3)
    assert 0 <= identified <= 1 and 0 <= matched <= 1 and 0 <= chance <= 1
    assert re.search(r"^network\.1\s+4\s+\d+\s+\S+\s+\S+$", out, re.M), out  # input subspace
    for label in ("unaligned", "activation-aligned", "weight-aligned"):
        numbers = re.search(rf"^{label}" + r"\s+(\S+)" * 5 + "$", out, re.M)
        assert numbers, label
        assert all(math.isfinite(float(x)) for x in numbers.groups())
        loss_a, loss_b, _peak, _midpoint, relative = map(float, numbers.groups())
        best = min(loss_a, loss_b)  # the path's worst point is at least the worse end
        assert relative >= 100 * (max(loss_a, loss_b) - best) / best * (1 - 1e-3)
    assert plot.stat().st_size > 10_000


@pytest.mark.parametrize(
    "argv, message",
    [
        (["nowhere", "dqn2"], "no such run folder"),
        (["dqn1", "dqn2", "--network", "actor"], "--network actor: a dqn run has q"),
        (["sac1", "dqn2"], "compare one agent"),
        (["sac1", "sac_wide"], "differ in shape"),
        (["dqn1", "dqn2", "--probe", "zero"], "invalid int value"),
    ],
)
def test_command_errors_are_one_line(runs, capsys, argv, message):
    from experiments.symmetry import main

    paths = [
        str(runs / arg) if not arg.startswith("-") and i < 2 else arg for i, arg in enumerate(argv)
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(paths)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_symmetry_study_runs_at_a_tiny_scale(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.symmetry_study", "intervention", "--out", str(tmp_path)]
        + ["--steps", "300", "--intervene-at", "200", "--learning-starts", "100", "--hidden", "16"]
        + ["--probe", "64", "--alphas", "5", "--episodes", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    study = json.loads((tmp_path / "symmetry_study.json").read_text())
    assert study["runs_identical_until_the_intervention"]
    assert len(study["rows"]) == 3 + 4 + 2
    fire = study["rows"][0]
    assert fire["pair"] == "before vs just after fire" and len(fire["unaligned"]["curve"]) == 5
    assert (tmp_path / "symmetry_study.png").stat().st_size > 10_000
    assert 0 <= fire["identified"] <= 1 and fire["unaligned"]["relative"] >= 0


def test_seeds_study_runs_at_a_tiny_scale(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.symmetry_study", "seeds", "--out", str(tmp_path)]
        + ["--scale", "0.1", "--pairs", "1", "--methods", "fire", "--probe", "64"]
        + ["--alphas", "5", "--episodes", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    study = json.loads((tmp_path / "symmetry_seeds.json").read_text())
    rows = study["rows"]
    # SAC at 50, 100, 150, 200 steps (FIRE at 125); DQN at 250, 500, 750, 1000 (FIRE at 600)
    assert [(r["agent"], r["step"], r["after_intervention"]) for r in rows] == [
        ("sac", 50, False), ("sac", 100, False), ("sac", 150, True), ("sac", 200, True),
        ("dqn", 250, False), ("dqn", 500, False), ("dqn", 750, True), ("dqn", 1000, True),
    ]  # fmt: skip
    hidden = {"dqn": {"network.1", "network.3"}, "sac": {"qf1.0", "qf1.2", "qf2.0", "qf2.2"}}
    for row in rows:
        assert row["seeds"] == [1, 2] and row["identified_chance"] < row["identified_matched"]
        assert set(row["subspace_a"]) == hidden[row["agent"]]
    table = (tmp_path / "symmetry_seeds.md").read_text()
    assert table.count("\n| sac | fire |") == 4 and "| dqn | fire | 750 (after) | 1 |" in table


def test_command_without_matplotlib_still_prints_the_numbers(runs, tmp_path, capsys, monkeypatch):
    from experiments.symmetry import main

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    plot = tmp_path / "plot.png"
    main([str(runs / "dqn1"), str(runs / "dqn2"), "--probe", "32", "--plot", str(plot)])
    out, err = capsys.readouterr()
    assert "weight-aligned" in out and "no plot" in err and not plot.exists()


# --- identifiability, realization and swap costs (arXiv 2606.04754) --------------------------


def identified_by_loop(similarity: torch.Tensor, partner: torch.Tensor) -> list[bool]:
    """Mutual strict best match, one pair at a time."""
    s = similarity.tolist()
    n = len(s)
    out = []
    for i, j in enumerate(partner.tolist()):
        row_others = [s[i][m] for m in range(n) if m != j]
        column_others = [s[m][j] for m in range(n) if m != i]
        out.append(all(s[i][j] > v for v in row_others + column_others))
    return out


def test_identifiable_units_equal_a_loop_over_pairs():
    generator = torch.Generator().manual_seed(3)
    similarity = torch.randn(9, 9, generator=generator, dtype=torch.float64)
    similarity[4, :] = 0.0  # a dead unit of A: ties everywhere
    similarity[:, 6] = 0.0  # a dead unit of B
    similarity[1, 2] = similarity[1].max() + 1  # A's unit 1 clearly prefers B's unit 2
    for partner in (torch.arange(9), torch.randperm(9, generator=generator), similarity.argmax(1)):
        expected = identified_by_loop(similarity, partner)
        assert identifiable_units(similarity, partner).tolist() == expected
    assert not identifiable_units(similarity, similarity.argmax(1))[4]


def test_identifiability_chance_is_the_mean_over_every_order_of_b():
    similarity = torch.randn(5, 5, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    rates = [
        float(identifiable_units(similarity[:, list(order)], torch.arange(5)).double().mean())
        for order in itertools.permutations(range(5))
    ]
    assert identifiability_chance(similarity) == pytest.approx(sum(rates) / len(rates))


def tanh_mlp(width: int = 32) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(6, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(), nn.Linear(width, 3)
    )


def test_a_permuted_copy_is_identified_unit_by_unit():
    net_a, probe = tanh_mlp(), torch.randn(512, 6)
    perms = random_perms(net_a, seed=2)
    net_b = permute_(copy.deepcopy(net_a), perms)
    report = activation_matching(net_a, net_b, probe)
    assert report.identified_matched_rate == 1.0  # every unit has one counterpart
    for name, layer in report.layers.items():
        assert layer.identified_matched.all()
        # same index: only the units the permutation left in place
        assert torch.equal(layer.identified, perms[name] == torch.arange(len(perms[name])))
        assert layer.chance_rate == pytest.approx(1 / len(perms[name]))
    same = activation_matching(net_a, copy.deepcopy(net_a), probe)
    assert same.identified_rate == 1.0


def test_independent_random_networks_are_identified_at_chance():
    probe = torch.randn(512, 6)
    rates, chances, matched = [], [], []
    for seed in range(8):
        torch.manual_seed(seed)
        report = activation_matching(tanh_mlp(), tanh_mlp(), probe)
        rates.append(report.identified_rate)
        chances.append(report.chance_rate)
        matched.append(report.identified_matched_rate)
    mean_rate, mean_chance = sum(rates) / 8, sum(chances) / 8
    assert 0 < mean_chance < 0.05
    assert abs(mean_rate - mean_chance) < 0.02
    assert sum(matched) / 8 > 5 * mean_chance  # matching finds counterparts the order hides


def test_input_subspace_equals_the_covariance_eigenvectors():
    generator = torch.Generator().manual_seed(5)
    rotation = torch.linalg.qr(torch.randn(6, 6, generator=generator, dtype=torch.float64))[0]
    scales = torch.tensor([5.0, 3.0, 2.0, 0.5, 0.2, 0.1], dtype=torch.float64)
    x = (torch.randn(2000, 6, generator=generator, dtype=torch.float64) * scales) @ rotation.T
    x = x + 3.0  # an offset: the subspace is of the centred inputs
    values, vectors = np.linalg.eigh(np.cov(x.numpy(), rowvar=False))
    values, vectors = values[::-1], vectors[:, ::-1]
    shares = np.cumsum(values) / values.sum()
    for variance in (0.5, 0.9, 0.99, 1.0):
        k = int(np.argmax(shares >= variance - 1e-12)) + 1
        space = input_subspace(x, variance)
        assert space.dimension == k and space.full_dimension == 6
        assert space.explained == pytest.approx(shares[k - 1])
        projector = vectors[:, :k] @ vectors[:, :k].T
        np.testing.assert_allclose(space.basis @ space.basis.T, projector, atol=1e-9)
        assert space.coherence == pytest.approx(float(np.diag(projector).max()))
    axis = torch.zeros(100, 4, dtype=torch.float64)
    axis[:, 1] = torch.randn(100, dtype=torch.float64)
    assert subspace_coherence(input_subspace(axis).basis) == pytest.approx(1.0)
    spread = torch.full((4, 1), 0.5, dtype=torch.float64)  # (1, 1, 1, 1)/2: k/n = 1/4
    assert subspace_coherence(spread) == pytest.approx(0.25)
    constant = input_subspace(torch.ones(10, 3))
    assert constant.dimension == 0 and constant.full_dimension == 3 and constant.explained == 1


def test_a_standard_layer_has_swap_cost_zero():
    layer, x = nn.Linear(8, 12), torch.randn(300, 8) @ torch.randn(8, 8)
    basis = input_subspace(x, 0.9).basis
    costs = realization_costs(layer.weight, basis)
    own = (layer.weight.detach().double() @ basis).square().sum(1)  # ‖Uᵀw_j‖²
    torch.testing.assert_close(costs, own.expand(12, 12))
    torch.testing.assert_close(swap_costs(costs), torch.zeros(12, 12, dtype=torch.float64))


def minimum_norm_cost(basis, trainable_row, fixed_row, target) -> float:
    """min ‖w‖² over the trainable entries w s.t. Uᵀ(d ⊙ w) + Uᵀf = a, by its KKT system."""
    u = basis.numpy()
    free = np.flatnonzero(trainable_row.numpy())
    constraint = u[free].T  # (k, free entries)
    k, m = constraint.shape
    kkt = np.block([[2 * np.eye(m), constraint.T], [constraint, np.zeros((k, k))]])
    rhs = np.concatenate([np.zeros(m), target.numpy() - u.T @ fixed_row.numpy()])
    w = np.linalg.solve(kkt, rhs)[:m]
    np.testing.assert_allclose(constraint @ w + u.T @ fixed_row.numpy(), target.numpy())
    return float(w @ w)


def test_fixed_entry_costs_equal_a_minimum_norm_solve():
    generator = torch.Generator().manual_seed(6)
    units, inputs = 5, 12
    trainable = torch.ones(units, inputs)
    for row in range(units):  # W-asymmetric: 4 entries of each row fixed at random values
        trainable[row, torch.randperm(inputs, generator=generator)[:4]] = 0
    fixed_values = torch.randn(units, inputs, generator=generator)
    layer = nn.Linear(inputs, units)
    with torch.no_grad():  # the effective weight: fixed entries at their values
        layer.weight.copy_(torch.where(trainable.bool(), layer.weight, fixed_values))
    x = torch.randn(400, 3, generator=generator) @ torch.randn(3, inputs, generator=generator)
    basis = input_subspace(x, 0.95).basis
    assert basis.shape[1] == 3
    costs = realization_costs(layer.weight, basis, trainable)
    weight = layer.weight.detach().double()
    fixed = (1 - trainable.double()) * weight
    for i, j in itertools.product(range(units), repeat=2):
        target = basis.T @ weight[j]  # a_j
        expected = minimum_norm_cost(basis, trainable[i], fixed[i], target)
        assert float(costs[i, j]) == pytest.approx(expected, rel=1e-8)
    swaps = swap_costs(costs)
    for i, j in itertools.product(range(units), repeat=2):
        expected = costs[i, j] + costs[j, i] - costs[i, i] - costs[j, j]
        assert float(swaps[i, j]) == pytest.approx(float(expected))
    off_diagonal = swaps[~torch.eye(units, dtype=torch.bool)]
    assert (off_diagonal > 1e-3).all()  # the fixed entries break the symmetry
    # syre: every entry trainable, fixed noise added: the cost is ‖a − Uᵀn_i‖²
    noise = torch.randn(units, inputs, generator=generator, dtype=torch.float64)
    syre = realization_costs(layer.weight, basis, fixed=noise)
    expected = ((weight @ basis)[None, :, :] - (noise @ basis)[:, None, :]).square().sum(-1)
    torch.testing.assert_close(syre, expected)


def test_realization_report_reads_each_hidden_layers_inputs():
    net, x = mlp(), torch.randn(256, 8)
    report = realization_report(net, x, variance=0.8)
    assert list(report) == ["0", "2"]
    hidden = F.relu(net[0](x)).detach()
    expected = input_subspace(hidden, 0.8)
    assert report["2"].subspace.dimension == expected.dimension
    torch.testing.assert_close(report["2"].subspace.basis, expected.basis)
    assert report["0"].subspace.full_dimension == 8
    torch.testing.assert_close(report["2"].swaps, torch.zeros(32, 32, dtype=torch.float64))
    critic = sac.TwinQ(5, 2, 16)  # its first layers read (obs, action) concatenated
    obs, act = torch.randn(128, 5), torch.randn(128, 2)
    first = realization_report(critic, (obs, act))["qf1.0"]
    assert first.subspace.full_dimension == 7 and first.costs.shape == (16, 16)
    with pytest.raises(ValueError, match="not a Linear layer"):
        realization_report(cnn(), torch.randn(4, 3, 9, 9), layers=["0"])
    with torch.no_grad():
        net[0].bias.fill_(-100.0)  # every first-layer unit dead: the second layer reads zeros
    dead = realization_report(net, x)["2"]
    assert dead.subspace.dimension == 0 and not dead.costs.any() and not dead.swaps.any()


# --- relative barriers, running statistics, REPAIR without a bias ---------------------------


def test_relative_barrier_follows_the_papers_formula():
    accuracy = [0.9, 0.6, 0.5, 0.8]
    worst_drop = (min(accuracy) - max(accuracy[0], accuracy[-1])) / max(accuracy[0], accuracy[-1])
    assert relative_barrier(accuracy, higher_is_better=True) == pytest.approx(100 * worst_drop)
    returns = [-120.0, -700.0, -180.0]  # negative returns: percent of |best end|
    assert relative_barrier(returns, higher_is_better=True) == pytest.approx(-100 * 580 / 120)
    losses = [1.0, 3.0, 2.0]
    assert relative_barrier(losses) == pytest.approx(200.0)
    assert math.isnan(relative_barrier([0.0, 1.0, 2.0]))


def test_barrier_reports_the_relative_loss_barrier(two_trained):
    net_a, net_b, x, y = two_trained
    barrier = interpolation_barrier(net_a, net_b, lambda net: F.mse_loss(net(x), y), alphas=11)
    losses = barrier.losses.tolist()
    best_end = min(losses[0], losses[-1])
    assert barrier.relative == pytest.approx(100 * (max(losses) - best_end) / best_end)
    assert barrier.relative > 0


@pytest.mark.parametrize("affine", [False, True])
def test_networks_with_running_statistics_are_refused_in_one_line(affine):
    def normed():
        return nn.Sequential(
            nn.Linear(4, 8), nn.BatchNorm1d(8, affine=affine), nn.ReLU(), nn.Linear(8, 2)
        )

    net_a, net_b, x = normed().eval(), normed().eval(), torch.randn(32, 4)
    calls = [
        lambda: infer_wiring(net_a),
        lambda: permute_(net_a, {"0": torch.arange(8)}),
        lambda: permute_(net_a, {"0": torch.arange(8)}, Wiring({"0": ("3",)})),  # explicit
        lambda: activation_matching(net_a, net_b, x),
        lambda: interpolation_barrier(net_a, net_b, lambda n: n(x).square().mean()),
        lambda: merge(net_a, net_b),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="running statistics") as error:
            call()
        assert "\n" not in str(error.value)


def test_repair_refuses_a_hidden_layer_without_bias():
    net_a = nn.Sequential(nn.Linear(4, 8, bias=False), nn.ReLU(), nn.Linear(8, 2))
    net_b, x = copy.deepcopy(net_a), torch.randn(32, 4)
    with pytest.raises(ValueError, match="layer 0 has no bias"):
        merge(net_a, net_b, repair=True, probe=x)
    merged = merge(net_a, net_b, alpha=0.5)  # without REPAIR a bias is not needed
    torch.testing.assert_close(merged(x), net_a(x))


def test_command_prints_the_relative_return_barrier(runs, capsys):
    from experiments.symmetry import main

    main([str(runs / "dqn1"), str(runs / "dqn2"), "--probe", "32", "--returns", "1"])
    out = capsys.readouterr().out
    for label in ("unaligned", "activation-aligned"):
        # returns at α = 0, ½, 1, then the relative barrier (the loss table has five numbers)
        (numbers,) = re.findall(rf"^{label}" + r"\s+(\S+)" * 4 + "$", out, re.M)
        returns = [float(x) for x in numbers[:3]]
        best = max(returns[0], returns[2])
        expected = 100 * (min(returns) - best) / abs(best)
        assert float(numbers[3]) == pytest.approx(expected, rel=1e-3, abs=1e-3)
