"""The speed options every agent shares: --compile, --cudagraphs, --matmul-precision."""

import dataclasses
from pathlib import Path

import pytest
import torch
from conftest import small_dqn_args, small_ppo_args, small_sac_args
from torch._inductor import config as inductor_config

from agents import dqn, ppo, sac
from agents.cli import UserError
from agents.device import compiler
from experiments.runs import run_rows


def logged_losses(summary: dict) -> dict[str, float]:
    return {
        key: value
        for row in run_rows(summary["run_dir"])
        for key, value in row.items()
        if key.startswith("losses/")
    }


# Each case stops right after its first update(s), where compiled and eager runs have seen
# the same data and the same parameters.
CASES = {
    "sac": lambda tmp: (
        sac.main,
        small_sac_args(
            tmp, total_timesteps=101, metrics_every=101, eval_episodes=0, checkpoint_every=0
        ),
    ),
    "dqn": lambda tmp: (
        dqn.main,
        small_dqn_args(tmp, total_timesteps=102, metrics_every=102),
    ),
    "ppo": lambda tmp: (
        ppo.main,
        small_ppo_args(tmp, total_timesteps=64, eval_every=0, eval_episodes=0),
    ),
}


@pytest.mark.parametrize("agent", sorted(CASES))
def test_compiled_updates_equal_eager_ones(tmp_path, agent):
    main, eager_args = CASES[agent](tmp_path / "eager")
    _, compiled_args = CASES[agent](tmp_path / "compiled")
    compiled_args.compile = True
    eager = logged_losses(main(eager_args))
    # graphs another test compiled from the same update functions (same code, guards that
    # pass) would be reused here, compiled without the setting below: compile afresh
    torch._dynamo.reset()
    # compiled code draws SAC's action noise from its own generator unless told otherwise
    with inductor_config.patch(fallback_random=True):
        compiled = logged_losses(main(compiled_args))
    assert eager and eager.keys() == compiled.keys()
    for key, value in eager.items():
        assert compiled[key] == pytest.approx(value, rel=1e-3, abs=1e-5), key


def test_cudagraphs_without_cuda_compile_without_them(tmp_path, capsys):
    args = small_sac_args(tmp_path, cudagraphs=True)
    wrap = compiler(args, torch.device("cpu"))
    assert "--cudagraphs needs a CUDA device" in capsys.readouterr().err
    assert wrap(torch.sin) is not torch.sin  # compiled all the same


def test_no_speed_flag_leaves_updates_eager(tmp_path):
    wrap = compiler(small_sac_args(tmp_path), torch.device("cpu"))
    assert wrap(torch.sin) is torch.sin


def test_compile_without_a_cpp_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr("agents.device.shutil.which", lambda _name: None)
    args = small_sac_args(tmp_path, compile=True)
    with pytest.raises(UserError, match="needs a C\\+\\+ compiler"):
        compiler(args, torch.device("cpu"))


def test_matmul_precision_is_applied(tmp_path):
    try:
        args = small_sac_args(tmp_path, matmul_precision="medium")
        compiler(args, torch.device("cpu"))
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision("highest")


def test_graphed_updates_return_outputs_that_later_calls_leave_alone():
    from agents.device import graphed

    counter = torch.zeros(())

    def update(x):
        counter.add_(1)
        return counter * x, {"same": counter + 0}

    step = graphed(update)  # on the CPU: compiled, without CUDA graphs
    first, _ = step(torch.ones(()))
    second, extra = step(torch.ones(()))
    assert first.item() == 1 and second.item() == 2 and extra["same"].item() == 2


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize(
    "method, device",
    [("fire+adamo", "cpu"), ("reset", "cpu"), pytest.param("fire+adamo", "cuda", marks=CUDA)],
)
def test_compiled_updates_with_interventions_end_where_eager_ones_do(tmp_path, method, device):
    """Interventions rewrite parameters and reset optimizer state in place between compiled
    updates (on CUDA: replayed CUDA graphs): after 100 updates with two of them, the networks
    match the eager run's."""
    networks = {}
    for mode in ("eager", "compiled"):
        args = small_dqn_args(
            tmp_path / mode,
            method=method,
            total_timesteps=300,
            train_frequency=2,
            eval_episodes=0,
            device=device,
            compile=mode == "compiled" and device == "cpu",
            cudagraphs=mode == "compiled" and device == "cuda",
        )
        args.plasticity.fire_every = args.plasticity.reset_every = 120
        args.plasticity.iso_every = 4
        summary = dqn.main(args)
        assert summary["interventions"]["q"] == 2  # at 120 and 240
        checkpoint = Path(summary["run_dir"]) / "checkpoints" / "step_300.pt"
        networks[mode] = torch.load(checkpoint, weights_only=False, map_location="cpu")["q"]
    for key, value in networks["eager"].items():
        torch.testing.assert_close(networks["compiled"][key], value, rtol=1e-4, atol=1e-5)


def test_ppo_learning_rate_annealing_compiles_no_further_graph(tmp_path):
    """The annealed rate is a tensor filled in place, not a Python float that Dynamo would
    specialize on (recompiling the update, and under --cudagraphs running it with a CPU
    float64 scalar outside the graph)."""
    from torch._dynamo.utils import counters

    def graphs(anneal_lr: bool) -> int:
        torch._dynamo.reset()
        counters.clear()
        args = small_ppo_args(
            tmp_path / str(anneal_lr), compile=True, anneal_lr=anneal_lr, eval_episodes=0
        )
        ppo.main(dataclasses.replace(args, metrics_every=0, checkpoint_every=0))
        return counters["stats"]["unique_graphs"]

    assert graphs(anneal_lr=True) == graphs(anneal_lr=False)
