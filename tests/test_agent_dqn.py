"""DQN: short runs on CartPole with plasticity methods, resume, the Box-space error, Atari."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import pytest
import torch
from conftest import small_dqn_args

from agents import dqn
from agents.cli import UserError
from experiments.runs import run_rows

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("method", ["none", "fire", "redo", "reset"])
def test_cartpole_run_writes_its_folder(tmp_path, method):
    # learning from step 100: interventions at 200 and 300 (not 100: the schedules start with
    # the updates), none at the last step, 350
    summary = dqn.main(small_dqn_args(tmp_path, method=method, total_timesteps=350))
    run_dir = Path(summary["run_dir"])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["agent"] == "dqn" and config["method"] == method
    assert config["learning_rate"] == 2.5e-4  # vector-observation defaults, resolved
    assert config["td_loss"] == "mse"
    assert (run_dir / "checkpoints" / "step_350.pt").is_file()
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["total_timesteps"] == 350
    assert saved["final_eval_return"] > 0 and len(saved["final_eval_returns"]) == 1
    assert saved["sps"] > 0
    keys = set().union(*run_rows(run_dir))
    assert {"losses/td_loss", "losses/q_values", "charts/epsilon", "charts/SPS"} <= keys
    assert {"q/dormant_ratio", "q/effective_rank", "q/dfi"} <= keys
    assert {"q/network.1/kfac_eps_rank", "q/kfac_eps_rank_normalized"} <= keys
    if method == "none":
        assert saved["interventions"] == {"q": 0}
    else:
        assert saved["interventions"]["q"] >= 2
        assert any(key.startswith(f"q/{method}/") for key in keys)


def test_interventions_resync_the_target(tmp_path):
    # target updates far apart: only FIRE's re-sync can make the target equal the network
    args = small_dqn_args(
        tmp_path,
        method="fire",
        target_network_frequency=10_000,
        total_timesteps=310,
        checkpoint_every=300,
    )
    summary = dqn.main(args)
    state = torch.load(Path(summary["run_dir"]) / "checkpoints" / "step_300.pt", weights_only=False)
    fired_at = 300  # fire_every=100: FIRE at step 300, right before that checkpoint
    assert state["plasticity"]["q"]["schedules"]["fire"]["last"] == fired_at // 100
    for key, value in state["q"].items():
        torch.testing.assert_close(state["q_target"][key], value)


def test_resume_continues_the_step_counter(tmp_path, monkeypatch):
    seeds = []
    reset = gym.vector.SyncVectorEnv.reset

    def recording_reset(self, *, seed=None, options=None):
        seeds.append(seed)
        return reset(self, seed=seed, options=options)

    monkeypatch.setattr(gym.vector.SyncVectorEnv, "reset", recording_reset)
    first = dqn.main(small_dqn_args(tmp_path, method="fire", total_timesteps=200))
    run_dir = Path(first["run_dir"])
    # refilled from 200 to 300 (no buffer saved), then FIRE at 400, before the end at 450
    second = dqn.main(
        small_dqn_args(tmp_path, method="fire", total_timesteps=450, resume=str(run_dir))
    )
    assert second["run_dir"] == str(run_dir)
    assert second["total_timesteps"] == 450
    assert second["interventions"]["q"] > first["interventions"]["q"]
    assert (run_dir / "checkpoints" / "step_450.pt").is_file()
    steps = [row["step"] for row in run_rows(run_dir)]
    assert max(steps) == 450 and any(200 < s < 450 for s in steps)
    assert seeds == [1, 201]  # the resumed run plays new episodes, not the first ones again
    with pytest.raises(UserError, match="already at step 450"):
        dqn.main(small_dqn_args(tmp_path, method="fire", total_timesteps=450, resume=str(run_dir)))


def test_resume_keeps_the_task_cycle_where_it_was(tmp_path):
    cycle = dict(env="cycle:CartPole-v0,CartPole-v1", switch_every=150, checkpoint_every=100)
    first = dqn.main(small_dqn_args(tmp_path, total_timesteps=200, **cycle))
    run_dir = Path(first["run_dir"])
    dqn.main(small_dqn_args(tmp_path, total_timesteps=400, resume=str(run_dir), **cycle))
    switches = [
        (row["step"], row["charts/task_id"]) for row in run_rows(run_dir) if "charts/task_id" in row
    ]
    # period 1 (CartPole-v1) from about step 150; after the resume at 200 the clock goes on, so
    # period 2 (CartPole-v0 again) comes at about 300, not period 1 again at about 350
    (first_step, first_task), (second_step, second_task) = switches
    assert first_task == 1 and 150 <= first_step < 200
    assert second_task == 0 and 300 <= second_step < 350


def test_resume_with_other_copies_rescales_the_cycle_clock(tmp_path):
    perturbed = dict(env="CartPole-v1", permute_observations=True, switch_every=200)
    first = dqn.main(small_dqn_args(tmp_path, total_timesteps=300, num_envs=2, **perturbed))
    run_dir = str(first["run_dir"])
    # 300 steps of 2 copies: each copy's clock at 150; one copy takes them all on from 300
    dqn.main(small_dqn_args(tmp_path, total_timesteps=500, num_envs=1, resume=run_dir, **perturbed))
    switches = [row["step"] for row in run_rows(Path(run_dir)) if "charts/task_id" in row]
    # at about 200 and 400 (the clocks also count resets, so a little earlier), not from 0 again
    assert len(switches) == 2 and 360 <= switches[1] <= 420
    with pytest.raises(UserError, match="trained on a changing env"):
        dqn.main(small_dqn_args(tmp_path, env="CartPole-v1", total_timesteps=700, resume=run_dir))


def test_unknown_method_is_refused_against_the_flag_that_named_it(tmp_path):
    with pytest.raises(UserError, match="--q-method: unknown plasticity method"):
        dqn.main(small_dqn_args(tmp_path, q_method="bogus"))
    with pytest.raises(UserError, match="--method: unknown plasticity method"):
        dqn.main(small_dqn_args(tmp_path, method="bogus"))
    assert not list(tmp_path.iterdir())  # no run folder for a refused command


def test_box_actions_exit_2_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "train.py", "--agent", "dqn", "--env", "Pendulum-v1"]
        + ["--runs-dir", str(tmp_path / "runs")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "DQN needs discrete actions" in lines[0] and "--agent sac" in lines[0]
    assert not (tmp_path / "runs").exists()  # nothing written for a refused run


def test_linear_schedule():
    assert dqn.linear_schedule(1.0, 0.05, 100, 0) == 1.0
    assert dqn.linear_schedule(1.0, 0.05, 100, 50) == pytest.approx(0.525)
    assert dqn.linear_schedule(1.0, 0.05, 100, 500) == 0.05


def test_atari_smoke_uses_the_nature_cnn(tmp_path):
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    summary = dqn.main(
        small_dqn_args(
            tmp_path,
            env="atari_pong",
            total_timesteps=200,
            buffer_size=300,
            batch_size=8,
            train_frequency=4,
            eval_episodes=0,
        )
    )
    config = json.loads((Path(summary["run_dir"]) / "config.json").read_text())
    assert config["learning_rate"] == 1e-4  # image defaults
    assert config["td_loss"] == "huber"
    assert config["end_e"] == 0.01  # unset: dqn_atari.py's value
    assert config["exploration_fraction"] == 0.5 and config["batch_size"] == 8  # set: kept
    state = torch.load(Path(summary["run_dir"]) / "checkpoints" / "step_200.pt", weights_only=False)
    q = state["q"]
    assert q["network.0.weight"].shape == (32, 4, 8, 8)
    assert q["network.2.weight"].shape == (64, 32, 4, 4)
    assert q["network.4.weight"].shape == (64, 64, 3, 3)
    assert q["network.7.weight"].shape == (512, 3136)
    assert q["network.9.weight"].shape == (6, 512)  # Pong's minimal action set
    network = dqn.QNetwork((4, 84, 84), 6)
    frames = torch.randint(0, 256, (2, 4, 84, 84), dtype=torch.uint8)
    assert network(frames).shape == (2, 6)


def test_minatar_gets_its_network_and_fire_follows_the_dqn_paper_on_images(tmp_path):
    pytest.importorskip("minatar")
    args = small_dqn_args(tmp_path, env="minatar_breakout", method="fire", learning_starts=None)
    args.plasticity.fire_every = 150
    summary = dqn.main(dataclasses.replace(args, train_frequency=None, total_timesteps=200))
    config = json.loads((Path(summary["run_dir"]) / "config.json").read_text())
    assert config["train_frequency"] == 1 and config["learning_starts"] == 5_000  # MinAtar's
    assert config["plasticity"]["fire_linear"] == "initial"  # linear layers back to the start
    assert config["plasticity"]["target_sync"] == "rewritten"  # the target keeps its conv biases
    assert config["plasticity"]["clear_optimizer"] == "none"  # Adam's moments kept
    q = torch.load(Path(summary["run_dir"]) / "checkpoints" / "step_200.pt", weights_only=False)
    assert q["q"]["network.0.weight"].shape == (16, 4, 3, 3)  # 16 3x3 filters
    assert q["q"]["network.3.weight"].shape == (128, 1024)
    vector = dqn.main(small_dqn_args(tmp_path, method="fire"))
    vector_config = json.loads((Path(vector["run_dir"]) / "config.json").read_text())
    assert vector_config["plasticity"]["fire_linear"] is None  # the library's: FIRE everywhere


def test_runs_started_in_the_same_second_get_distinct_folders(tmp_path, monkeypatch):
    from agents import run as run_module

    monkeypatch.setattr(run_module.time, "time", lambda: 1_000.0)
    runs = [run_module.Run("dqn", small_dqn_args(tmp_path)) for _ in range(3)]
    names = [run.name for run in runs]
    for run in runs:
        run.close()
    assert names == [f"CartPole-v1__dqn-none__run__1__1000{suffix}" for suffix in ("", "_2", "_3")]


def test_run_name_is_the_exact_folder_and_is_not_reused(tmp_path):
    from agents.run import Run

    args = dataclasses.replace(small_dqn_args(tmp_path), run_name="fixed")
    run = Run("dqn", args)
    run.close()
    assert run.dir == tmp_path / "fixed" and (run.dir / "config.json").is_file()
    with pytest.raises(UserError, match="exists already: continue it with --resume"):
        Run("dqn", args)
    with pytest.raises(UserError, match="is not a folder name"):
        Run("dqn", dataclasses.replace(args, run_name="a/b"))


def test_a_checkpoint_from_before_the_agents_split_still_resumes(tmp_path):
    """tests/data/pre_split_dqn was written by the code before one name per network: DQN's
    q_network/target_network/q_plasticity keys, the handle's last_period, a list of cycle
    ticks, and --critic-method in config.json (FIRE every 100 steps and at each switch of
    permuted CartPole every 150 steps; 3 FIREs by step 200)."""
    import shutil

    from agents.cli import parse_args

    run_dir = tmp_path / "pre_split_dqn"
    shutil.copytree(ROOT / "tests" / "data" / "pre_split_dqn", run_dir)
    old = torch.load(run_dir / "checkpoints" / "step_200.pt", weights_only=False)
    assert "q_network" in old and "q_plasticity" in old  # the old layout, really
    args = parse_args(dqn.Args, "dqn", ["--resume", str(run_dir), "--total-timesteps", "400"])
    summary = dqn.main(args)
    assert summary["total_timesteps"] == 400 and summary["q_method"] == "fire"
    new = torch.load(run_dir / "checkpoints" / "step_400.pt", weights_only=False)
    # FIRE at 300, none at the last step (400); and one at the switch near 300
    assert new["plasticity"]["q"]["schedules"]["fire"]["last"] == 3
    assert summary["interventions"]["q"] == 3 + 2  # 3 before the resume
    switches = [row["step"] for row in run_rows(run_dir) if "charts/task_id" in row]
    # at the first episode end after the clock passes 300 (a clock restarted at the resume
    # would switch after 350)
    assert len(switches) == 1 and 280 <= switches[0] < 340


def test_updates_per_step_sets_the_replay_ratio(tmp_path):
    # learning from step 101, one round every 2 steps (102, 104, ..., 300): 100 rounds of 3
    summary = dqn.main(small_dqn_args(tmp_path, updates_per_step=3, checkpoint_every=0))
    state = torch.load(Path(summary["run_dir"]) / "checkpoints" / "step_300.pt", weights_only=False)
    assert int(state["plasticity"]["q"]["optimizer"]["state"][0]["step"]) == 300


def test_clear_buffer_on_switch_warm_starts_the_next_task(tmp_path):
    args = small_dqn_args(
        tmp_path,
        env="CartPole-v1",
        permute_observations=True,
        switch_every=150,
        total_timesteps=400,
        clear_buffer_on_switch=True,
        learning_starts=50,
        metrics_every=10,
        checkpoint_every=0,
        save_buffer=True,
    )
    summary = dqn.main(args)
    rows = run_rows(Path(summary["run_dir"]))
    (switch,) = [row["step"] for row in rows if "charts/task_id" in row][:1]
    trained = sorted({row["step"] for row in rows if "losses/td_loss" in row})
    # no update in the 50 steps after the switch: the buffer refills with the new task first
    assert not [step for step in trained if switch < step <= switch + 50]
    assert [step for step in trained if step > switch + 50]
    state = torch.load(Path(summary["run_dir"]) / "checkpoints" / "step_400.pt", weights_only=False)
    assert state["buffer"]["size"] < 400 - switch + 1  # only the transitions since the switch
