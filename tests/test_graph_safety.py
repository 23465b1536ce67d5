"""What keeps the compiled and CUDA-graphed updates correct, guarded on the CPU.

A CUDA graph replays fixed kernels on fixed memory: everything an update reads must be an
input it is given or state it owns at a fixed address, and everything the loop reads after it
must be a value it returns. These tests check that by construction, without a GPU: the
spectral penalty's power-iteration state, the metrics' independence from ``.grad``, and that no
changing Python value makes Dynamo compile an update again after its warm-up.
"""

import copy
import io
import json
from collections import Counter
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import mlp, small_dqn_args, small_ppo_args, small_sac_args
from torch._dynamo.utils import counters
from torch.optim.optimizer import register_optimizer_step_post_hook

from agents import device, dqn, ppo, sac
from plasticity import make_method


def spectral_handle(network, seed=1, lr=1e-2):
    torch.manual_seed(seed)  # the vectors are drawn at attach time
    return make_method("spectral", spectral_coef=0.1).attach(network, lr=lr)


def training_step(network, handle):
    """A whole update as the agents write one: loss, penalty, backward, optimizer step."""

    def update(inputs, targets):
        loss = F.mse_loss(network(inputs), targets)
        loss = loss + handle.penalty(loss)
        handle.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        handle.optimizer.step()
        return loss.detach()

    return update


def vectors(handle) -> dict[str, torch.Tensor]:
    (part,) = handle.parts
    return part.vectors


def data():
    generator = torch.Generator().manual_seed(2)
    return torch.randn(64, 8, generator=generator), torch.randn(64, 4, generator=generator)


def test_spectral_vectors_are_allocated_once_and_converge_in_place():
    network = mlp((8, 24, 16, 4))
    handle = spectral_handle(network, lr=1e-4)  # slow weights: the estimate can settle
    owned = {name: v.data_ptr() for name, v in vectors(handle).items()}
    assert sorted(owned) == ["0", "2"]  # the hidden layers, the head left out
    step = training_step(network, handle)
    for _ in range(60):
        step(*data())
    for name, vector in vectors(handle).items():
        assert vector.data_ptr() == owned[name]  # refined in place, never replaced
        weight = network.get_submodule(name).weight.detach()
        sigma_max = float(torch.linalg.svdvals(weight)[0])
        assert float(torch.linalg.vector_norm(weight @ vector)) == pytest.approx(sigma_max, 1e-3)


def test_spectral_under_torch_compile_matches_eager_and_compiles_once():
    network = mlp()
    handles = [spectral_handle(network), spectral_handle(copy.deepcopy(network))]
    eager = training_step(network, handles[0])
    compiled = torch.compile(training_step(handles[1].network, handles[1]))
    owned = {name: v.data_ptr() for name, v in vectors(handles[1]).items()}
    torch._dynamo.reset()
    counters.clear()
    for update in range(20):
        losses = eager(*data()), compiled(*data())
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
        if update == 2:  # after the optimizer's state exists
            warm = counters["stats"]["unique_graphs"]
    assert counters["stats"]["unique_graphs"] == warm
    for name, vector in vectors(handles[0]).items():
        torch.testing.assert_close(vectors(handles[1])[name], vector, rtol=1e-5, atol=1e-6)
        assert vectors(handles[1])[name].data_ptr() == owned[name]
    for ours, theirs in zip(handles[1].network.parameters(), network.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-6)


def test_spectral_checkpoint_round_trip_continues_bit_identically():
    network = mlp()
    handle = spectral_handle(network)
    step = training_step(network, handle)
    for _ in range(5):
        step(*data())
    buffer = io.BytesIO()
    torch.save({"network": network.state_dict(), "method": handle.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    resumed_network = mlp()
    resumed_network.load_state_dict(saved["network"])
    resumed = spectral_handle(resumed_network, seed=7)  # other draws, overwritten by the load
    owned = {name: v.data_ptr() for name, v in vectors(resumed).items()}
    resumed.load_state_dict(saved["method"])
    resumed_step = training_step(resumed_network, resumed)
    for _ in range(5):
        step(*data())
        resumed_step(*data())
    for name, vector in vectors(handle).items():
        assert vectors(resumed)[name].data_ptr() == owned[name]  # loaded into, not replaced
        assert torch.equal(vectors(resumed)[name], vector)
    for ours, theirs in zip(resumed_network.parameters(), network.parameters(), strict=True):
        assert torch.equal(ours, theirs)


def test_spectral_checkpoints_of_the_dict_layout_load():
    """A checkpoint holds one vector per layer name; one saved before the first update holds
    none (``{}``), which keeps the vectors drawn at attach time."""
    network = mlp()
    handle = spectral_handle(network)
    drawn = {name: v.clone() for name, v in vectors(handle).items()}
    state = handle.state_dict()
    handle.load_state_dict({**state, "spectral_vectors": {}})
    for name, vector in vectors(handle).items():
        assert torch.equal(vector, drawn[name])
    saved = {name: F.normalize(torch.ones_like(v), dim=0) for name, v in drawn.items()}
    handle.load_state_dict({**state, "spectral_vectors": saved})
    for name, vector in vectors(handle).items():
        assert torch.equal(vector, saved[name])


# --- every agent's updates ------------------------------------------------------------------

AGENTS = {
    "sac": (
        sac,
        lambda tmp, **kw: small_sac_args(
            tmp, total_timesteps=240, checkpoint_every=0, eval_episodes=0, **kw
        ),
    ),
    "dqn": (
        dqn,
        lambda tmp, **kw: small_dqn_args(tmp, total_timesteps=300, **kw),
    ),
    "ppo": (
        ppo,
        lambda tmp, **kw: small_ppo_args(
            tmp, total_timesteps=256, checkpoint_every=0, eval_every=0, eval_episodes=0, **kw
        ),
    ),
}
FIRE_AT = {"sac": 200, "dqn": 200, "ppo": 128}
"""a step after the updates' warm-up, where FIRE rewrites the networks once"""


def agent_args(agent, tmp_path, method, **overrides):
    _, small_args = AGENTS[agent]
    args = small_args(tmp_path, method=method, **overrides)
    args.plasticity.fire_every = 0
    args.plasticity.fire_at = [FIRE_AT[agent]]
    args.plasticity.iso_every = 2
    return args


class Optimizers:
    """Every optimizer that steps while installed (torch's global step hook)."""

    def __init__(self):
        self.seen: dict[int, torch.optim.Optimizer] = {}

    def __enter__(self):
        self.handle = register_optimizer_step_post_hook(
            lambda optimizer, *_: self.seen.setdefault(id(optimizer), optimizer)
        )
        return self

    def __exit__(self, *_):
        self.handle.remove()

    def poisoning(self, fn):
        """``fn`` followed by every seen optimizer's gradients set to NaN."""

        def call(*inputs):
            outputs = fn(*inputs)
            for optimizer in self.seen.values():
                for group in optimizer.param_groups:
                    for param in group["params"]:
                        if param.grad is not None:
                            param.grad.fill_(float("nan"))
            return outputs

        return call


def scalars(summary) -> list[dict]:
    rows = (Path(summary["run_dir"]) / "scalars.jsonl").read_text().splitlines()
    timing = ("charts/SPS", "time")
    return [{k: v for k, v in json.loads(row).items() if not k.startswith(timing)} for row in rows]


def poisoned_and_clean_runs(tmp_path, monkeypatch, agent, method, **settings):
    """The scalars of a run with every ``.grad`` set to NaN after each update (what a CUDA
    graph's next replay may do to them), and of the same run without."""
    module, _ = AGENTS[agent]
    runs = {}
    for poisoned in (False, True):
        with Optimizers() as optimizers:
            wrap = optimizers.poisoning if poisoned else lambda fn: fn
            monkeypatch.setattr(device, "compiler", lambda _args, _device, wrap=wrap: wrap)
            args = agent_args(agent, tmp_path / str(poisoned), method)
            for name, value in settings.items():
                setattr(args.plasticity, name, value)
            runs[poisoned] = scalars(module.main(args))
    return runs


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_metrics_read_only_what_the_updates_return(tmp_path, monkeypatch, agent):
    """With the gradients poisoned after each update, the logged losses, metrics and gradient
    norms, before and after FIRE, are those of a run that leaves them alone."""
    runs = poisoned_and_clean_runs(tmp_path, monkeypatch, agent, "fire+adamo+spectral")
    assert runs[True] == runs[False]
    norms = [v for row in runs[False] for k, v in row.items() if k.endswith("grad_norm")]
    assert norms and all(0 < v < float("inf") for v in norms)
    assert any("/after_intervention/" in k for row in runs[False] for k in row), runs


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_dash_reads_the_gradients_inside_the_update(tmp_path, monkeypatch, agent):
    """DASH's running average folds each update's gradients inside the update
    (``after_backward``), so poisoned gradients after it change nothing, its shrink included."""
    shrink_at = [FIRE_AT[agent]]
    runs = poisoned_and_clean_runs(tmp_path, monkeypatch, agent, "dash", dash_at=shrink_at)
    assert runs[True] == runs[False]
    assert any("dash" in k for row in runs[False] for k in row)  # it shrank


class LateGraphs:
    """``torch.compile`` that records each call, after the first ``warmup`` calls of its
    function, in which Dynamo compiled a new graph."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.calls: Counter[str] = Counter()
        self.late: list[tuple[str, int]] = []

    def __call__(self, fn):
        compiled = torch.compile(fn)

        def call(*args):
            before = counters["stats"]["unique_graphs"]
            outputs = compiled(*args)
            self.calls[fn.__name__] += 1
            calls = self.calls[fn.__name__]
            if calls > self.warmup and counters["stats"]["unique_graphs"] > before:
                self.late.append((fn.__name__, calls))
            return outputs

        return call


@pytest.mark.parametrize("agent", sorted(AGENTS))
def test_updates_compile_no_graph_after_warmup(tmp_path, monkeypatch, agent):
    """With FIRE + AdamO + spectral, FIRE after the warm-up and PPO's rate annealed every
    iteration, no update or acting function compiles a new graph once it has run a few times:
    nothing that changes between updates reaches them as a Python value."""
    module, _ = AGENTS[agent]
    graphs = LateGraphs(warmup=3)
    monkeypatch.setattr(device, "compiler", lambda _args, _device: graphs)
    torch._dynamo.reset()
    counters.clear()
    args = agent_args(agent, tmp_path, "fire+adamo+spectral", metrics_every=0)
    if agent == "ppo":
        args.anneal_lr = True
    summary = module.main(args)
    assert sum(summary["interventions"].values()) >= 1
    assert min(graphs.calls.values()) > graphs.warmup
    assert graphs.late == []
