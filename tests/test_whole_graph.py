"""``--whole-graph``: updates captured whole as one CUDA graph, checked on the CPU.

On the CPU a :class:`agents.capture.WholeGraph` runs every call eagerly and compares the
operators it dispatches (with their non-tensor arguments and the addresses of the tensors the
call did not make) with its captured call's: what a CUDA graph would replay. These tests check
that the check fails where a replay would be wrong, that AdamO's isometry step taken on the
host around an update is the step's own arithmetic, and that every method part of every agent
either passes the check, says it cannot be captured, or falls back with a notice.
"""

import contextlib
import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import mlp, small_dqn_args, small_ppo_args, small_sac_args

from agents import device, dqn, ppo, sac
from agents.capture import HostRead, OpStream, ReplayMismatch, WholeGraph
from agents.cli import UserError
from agents.device import configure
from agents.files import read_checkpoint
from plasticity import AdamO, MethodConfig, clear_optimizer_state_
from plasticity.methods import PARTS, method_names
from plasticity.optim import DeferredIsometry

CPU = torch.device("cpu")


def whole(fn, warmup=2):
    return WholeGraph(fn, CPU, fallback=lambda f: f, warmup=warmup)


def batches(count, seed=3):
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(16, 8, generator=generator), torch.randn(16, 4, generator=generator))
        for _ in range(count)
    ]


def adamo_update(network, optimizer):
    def update(inputs, targets):
        loss = F.mse_loss(network(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss.detach()

    return update


# --- the check fails where a replay would be wrong ----------------------------------------


def test_a_changing_python_value_inside_an_update_is_refused():
    weight = torch.zeros(4, 8)
    rate = [0.1]

    def update(inputs, targets):
        weight.add_(targets.T @ inputs, alpha=-rate[0])
        rate[0] *= 0.5  # a host schedule: a graph would keep the captured 0.1 forever
        return weight.sum()

    graphed = whole(update)
    with pytest.raises(
        ReplayMismatch, match=r"add_.Tensor\), argument 2: -0.025 at capture, now -0.0125"
    ):
        for batch in batches(5):
            graphed(*batch)


def test_a_tensor_replaced_between_calls_is_refused():
    kept = {"scale": torch.ones(4)}

    def update(inputs, targets):
        return (targets * kept["scale"]).sum()

    graphed = whole(update)
    for batch in batches(3):
        graphed(*batch)
    kept["scale"] = torch.full((4,), 2.0)  # a new tensor: a graph reads the old memory
    with pytest.raises(ReplayMismatch, match="kept at 0x[0-9a-f]+ at capture, now a cpu"):
        graphed(*batches(1)[0])


def test_a_host_branch_inside_an_update_is_refused():
    calls = [0]

    def update(inputs, targets):
        calls[0] += 1
        out = inputs.sum()
        if calls[0] % 4 == 0:  # a host counter's schedule, as AdamO's isometry step has
            out = out * 2
        return out

    graphed = whole(update)
    with pytest.raises(ReplayMismatch, match="this call ran 1 more operator"):
        for batch in batches(6):
            graphed(*batch)


def test_reading_a_value_on_the_host_is_refused():
    def update(inputs, targets):
        loss = (inputs.sum() - targets.sum()) ** 2
        return loss * 2 if loss > 1 else loss  # bool(tensor): a host sync, no capture

    graphed = whole(update)
    with pytest.raises(HostRead, match=r"_local_scalar_dense.*a Python if on a tensor"):
        for batch in batches(3):
            graphed(*batch)


def test_a_copy_to_the_host_is_refused():
    def update(inputs, targets):
        return torch.tensor(inputs.sum(0).tolist())  # no operator on the CPU, a sync on CUDA

    graphed = whole(update)
    with pytest.raises(HostRead, match=r"calls Tensor.tolist\(\)"):
        for batch in batches(3):
            graphed(*batch)
    assert torch.Tensor.tolist is not None and torch.ones(2).tolist() == [1.0, 1.0]


def test_a_mismatch_is_one_line_for_the_user():
    assert issubclass(ReplayMismatch, UserError)  # reported as one line, exit 2
    assert issubclass(HostRead, UserError)


def test_the_stream_names_inputs_by_address_and_results_by_their_operator():
    kept = torch.ones(3)
    with OpStream() as stream:
        made = kept * 2
        (made + kept).sum()
    (_, mul_args), (_, add_args), _ = stream.ops
    assert mul_args[0][-1] == ("at", kept.data_ptr())
    assert add_args[0][-1] == ("op", 0) and add_args[1][-1] == ("at", kept.data_ptr())


# --- AdamO's isometry step on the host ------------------------------------------------------


def test_adamo_isometry_around_an_update_is_the_step_bit_for_bit():
    """Window counts, the summed rate, the step at θ_{t-1}: the same numbers as AdamO.step,
    across a state reset in the middle (what FIRE does to the optimizer)."""
    torch.manual_seed(0)
    net = mlp()
    twin = copy.deepcopy(net)
    settings = dict(lr=1e-2, iso_coef=0.05, iso_every=3)
    reference, deferred_opt = (
        AdamO(net.parameters(), **settings),
        AdamO(twin.parameters(), **settings),
    )
    step, deferred_step = adamo_update(net, reference), adamo_update(twin, deferred_opt)
    deferral = DeferredIsometry([deferred_opt])
    for i, batch in enumerate(batches(20)):
        if i == 11:
            clear_optimizer_state_(reference, list(net.parameters())[:2])
            clear_optimizer_state_(deferred_opt, list(twin.parameters())[:2])
        step(*batch)
        if i == 0:  # the first step makes the state: as a warm-up call does
            deferred_step(*batch)
            continue
        with deferral.around(), deferral.outside():
            deferred_step(*batch)
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)
    assert any(s.get("iso_steps", 0) for s in deferred_opt.state.values())


def test_adamo_under_whole_graph_passes_the_check_and_matches_eager():
    torch.manual_seed(0)
    net = mlp()
    twin = copy.deepcopy(net)
    eager = adamo_update(net, AdamO(net.parameters(), lr=1e-2, iso_coef=0.05, iso_every=2))
    graphed = whole(
        adamo_update(twin, AdamO(twin.parameters(), lr=1e-2, iso_coef=0.05, iso_every=2))
    )
    for batch in batches(9):
        assert torch.equal(eager(*batch), graphed(*batch))
    for p, q in zip(net.parameters(), twin.parameters(), strict=True):
        assert torch.equal(p, q)


def test_adamo_without_the_deferral_would_replay_a_frozen_schedule():
    """The same update with AdamO's isometry step inside it fails the check: the reason the
    step is taken on the host."""
    torch.manual_seed(0)
    net = mlp()
    graphed = whole(adamo_update(net, AdamO(net.parameters(), lr=1e-2, iso_every=2)))
    # as if AdamO stepped whole inside the graph, its schedule counted there
    graphed.deferred.outside = graphed.deferred.around = contextlib.nullcontext
    with pytest.raises(ReplayMismatch):
        for batch in batches(8):
            graphed(*batch)


# --- the agents ------------------------------------------------------------------------------


def final_networks(summary) -> dict:
    run_dir = summary["run_dir"]
    state = read_checkpoint(f"{run_dir}/checkpoints/step_{summary['total_timesteps']}.pt")
    return {name: state[name] for name in ("actor", "critic", "q") if name in state}


def assert_same_networks(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name, params in a.items():
        for key, value in params.items():
            assert torch.equal(value, b[name][key]), f"{name}.{key}"


FIRE_AT = {"sac": 160, "dqn": 200, "ppo": 192}
AGENT_RUNS = {
    "sac": (
        sac,
        lambda tmp, **kw: small_sac_args(
            tmp, **{"total_timesteps": 220, "checkpoint_every": 220, "verbose": 0, **kw}
        ),
    ),
    "dqn": (
        dqn,
        lambda tmp, **kw: small_dqn_args(tmp, **{"checkpoint_every": 300, "verbose": 0, **kw}),
    ),
    "ppo": (
        ppo,
        lambda tmp, **kw: small_ppo_args(
            tmp, **{"env": "Pendulum-v1", "total_timesteps": 448, "verbose": 0, **kw}
        ),
    ),
}


@pytest.fixture
def wrapped(monkeypatch) -> list[WholeGraph]:
    """Every WholeGraph the agents make during a test."""
    made = []

    def recording(*args, **kwargs):
        made.append(WholeGraph(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(device, "WholeGraph", recording)
    return made


def replays(wrapped: list[WholeGraph]) -> dict[str, int]:
    return {graph.fn.__name__: graph.replays for graph in wrapped}


@pytest.mark.parametrize("agent", sorted(AGENT_RUNS))
def test_whole_graph_run_equals_the_eager_run(agent, tmp_path, wrapped):
    """FIRE + AdamO (isometry step every 2 updates: inside any window of a capture) with FIRE
    during the run: the checked run ends at the eager run's parameters, bit for bit."""
    module, make_args = AGENT_RUNS[agent]
    config = MethodConfig(fire_every=0, fire_at=[FIRE_AT[agent]], iso_every=2, iso_coef=0.01)
    summaries = [
        module.main(
            make_args(
                tmp_path / mode, method="fire+adamo", plasticity=config, whole_graph=mode == "whole"
            )
        )
        for mode in ("eager", "whole")
    ]
    assert summaries[1]["interventions"] == summaries[0]["interventions"]
    assert_same_networks(*map(final_networks, summaries))
    assert min(replays(wrapped).values()) >= 20, replays(wrapped)  # checked calls, not warm-ups


def part_names() -> list[str]:
    return [name for name in method_names() if name != "none"]


@pytest.mark.parametrize("agent", ["dqn", "ppo"])
def test_every_method_part_is_captured_or_says_why_not(agent, tmp_path, capsys, wrapped):
    """Each part's penalty, after_backward and optimizer under the check (DQN: one update
    function; PPO: two networks, minibatch sizes that vary, an annealed rate); a part that
    cannot be captured says so, and an optimizer that cannot be is named in a notice."""
    module, make_args = AGENT_RUNS[agent]
    for name in part_names():
        settings = {"layer_norm": True} if name == "nap" else {}
        wrapped.clear()
        module.main(
            make_args(
                tmp_path / name, method=name, whole_graph=True, total_timesteps=256, **settings
            )
        )
        notice = capsys.readouterr().err
        part = PARTS.get(name)
        if part is not None and not part.captured_whole:
            assert f"--whole-graph: {name} keeps tensors" in notice
            assert not wrapped
        elif name in ("muon", "trac", "kron"):
            assert "which cannot be captured; it runs eagerly, unchecked" in notice
        else:
            assert "--whole-graph" not in notice, name
            assert replays(wrapped)["update"] >= 8, (name, replays(wrapped))


def test_sac_update_functions_pass_the_check_with_penalties_and_dash(tmp_path, wrapped):
    """SAC's three functions (the actor's with the critic frozen) with state-keeping parts."""
    sac.main(
        small_sac_args(
            tmp_path,
            method="spectral+dash+l2_init",
            total_timesteps=200,
            whole_graph=True,
            verbose=0,
        )
    )
    assert min(replays(wrapped).values()) >= 20, replays(wrapped)


def test_whole_graph_with_compile_is_one_clear_line(tmp_path):
    args = small_sac_args(tmp_path, whole_graph=True, compile=True)
    with pytest.raises(UserError, match="leave out --compile and --cudagraphs"):
        configure(args)


def test_a_part_that_cannot_be_captured_leaves_the_updates_as_they_were(tmp_path, capsys):
    args = small_sac_args(tmp_path, method="c_chain", whole_graph=True)
    _, compiled = configure(args)

    def update(x):
        return x

    assert compiled(update) is update  # eager on the CPU, unchecked
    assert "c_chain keeps tensors an update reads at changing addresses" in capsys.readouterr().err
