"""SAC through its Args and through train.py: run folders, methods, resume, errors."""

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import small_sac_args

from agents import dqn, sac
from agents.cli import UserError, parse_args, run_cli
from agents.environments import evaluate
from experiments.runs import run_rows

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("method", ["none", "fire", "adamo", "redo", "reset", "parseval"])
def test_sac_runs_each_method_family_and_writes_its_run(tmp_path, method):
    args = small_sac_args(tmp_path, method=method)
    args.plasticity.fire_every = args.plasticity.reset_every = 200
    args.plasticity.redo_every = 150
    summary = sac.main(args)
    run_dir = Path(summary["run_dir"])
    assert summary["total_timesteps"] == 300
    assert summary["final_eval_return"] < 0  # Pendulum returns are negative
    config = json.loads((run_dir / "config.json").read_text())
    assert config["agent"] == "sac" and config["method"] == method
    assert json.loads((run_dir / "summary.json").read_text())["sps"] > 0
    assert (run_dir / "checkpoints" / "step_300.pt").is_file()
    assert list(run_dir.glob("events.out.tfevents.*"))
    logged = set().union(*(row.keys() for row in run_rows(run_dir)))
    assert {"critic/dormant_ratio", "actor/effective_rank", "critic/qf1.2/dfi"} <= logged
    assert {"critic/qf2.2/kfac_eps_rank", "critic/kfac_eps_rank_normalized"} <= logged
    if method in ("fire", "reset"):
        assert summary["interventions"] == {"actor": 1, "critic": 1}
        assert f"critic/{method}/total_sfe" in logged
    if method == "redo":
        assert "critic/redo/total_dormant" in logged


def final_checkpoint(summary: dict) -> dict:
    path = Path(summary["run_dir"]) / "checkpoints" / f"step_{summary['total_timesteps']}.pt"
    return torch.load(path, weights_only=False)


@pytest.mark.parametrize("method, synced", [("none", False), ("fire", True)])
def test_fire_resyncs_the_target_critic(tmp_path, method, synced):
    # with tau = 0 the target only changes when an intervention copies the critic into it
    args = small_sac_args(
        tmp_path, method=method, total_timesteps=210, tau=0.0, checkpoint_every=200
    )
    args.plasticity.fire_every = 200  # FIRE right after the update of step 200, checkpointed
    sac.main(args)
    (run_dir,) = (tmp_path / "runs").iterdir()
    state = torch.load(run_dir / "checkpoints" / "step_200.pt", weights_only=False)
    same = [torch.equal(v, state["critic_target"][k]) for k, v in state["critic"].items()]
    assert all(same) == synced


@pytest.mark.parametrize("num_envs, updates_per_step", [(2, 1), (1, 3)])
def test_the_replay_ratio_counts_env_steps(tmp_path, num_envs, updates_per_step):
    # steps 101..400 are 300 env steps: 300 × updates_per_step critic updates, whatever the
    # number of copies; the actor takes policy_frequency=2 updates every 2nd update (1:1)
    args = small_sac_args(
        tmp_path,
        num_envs=num_envs,
        updates_per_step=updates_per_step,
        total_timesteps=400,
        learning_starts=100,
        policy_frequency=2,
    )
    summary = sac.main(args)
    state = torch.load(Path(summary["run_dir"]) / "checkpoints" / "step_400.pt", weights_only=False)
    steps = {
        name: int(state["plasticity"][name]["optimizer"]["state"][0]["step"])
        for name in ("actor", "critic")
    }
    expected = 300 * updates_per_step
    assert steps == {"actor": expected, "critic": expected}


@pytest.mark.parametrize("method, reset", [("fire", True), ("reset", True), ("redo", False)])
def test_temperature_reset_follows_whole_critic_reinitializations(tmp_path, method, reset):
    args = small_sac_args(tmp_path, method=method, total_timesteps=210, checkpoint_every=200)
    args.plasticity.fire_every = args.plasticity.reset_every = args.plasticity.redo_every = 200
    args.plasticity.redo_tau = 10.0  # every unit counts as dormant: ReDo recycles them all
    summary = sac.main(args)  # the intervention comes with the update of step 200
    assert summary["interventions"]["critic"] == 1
    state = torch.load(Path(summary["run_dir"]) / "checkpoints" / "step_200.pt", weights_only=False)
    at_initial_value = bool(
        torch.isclose(state["log_alpha"], torch.tensor(np.log(0.2), dtype=torch.float32))
    )
    assert at_initial_value == reset
    (alpha_state,) = state["a_optimizer"]["state"].values()  # reset in place: all zero
    assert all(float(value) == 0 for value in alpha_state.values()) == reset


def test_resume_continues_the_step_counter(tmp_path):
    first = sac.main(small_sac_args(tmp_path, total_timesteps=200, checkpoint_every=100))
    run_dir = Path(first["run_dir"])
    second = sac.main(small_sac_args(tmp_path, total_timesteps=400, resume=str(run_dir)))
    assert second["run_dir"] == str(run_dir) and second["total_timesteps"] == 400
    steps = [row["step"] for row in run_rows(run_dir)]
    assert max(steps) > 200 and steps == sorted(steps)
    assert (run_dir / "checkpoints" / "step_400.pt").is_file()


def test_resume_takes_the_saved_settings_and_new_flags(tmp_path):
    args = small_sac_args(
        tmp_path, total_timesteps=200, checkpoint_every=100, method="fire", gamma=0.9
    )
    args.plasticity.fire_every = 150
    run_dir = sac.main(args)["run_dir"]
    resumed = parse_args(sac.Args, "sac", ["--resume", run_dir, "--total-timesteps", "400"])
    assert (resumed.env, resumed.hidden_size, resumed.gamma) == ("Pendulum-v1", 32, 0.9)
    assert resumed.method == "fire" and resumed.plasticity.fire_every == 150
    assert resumed.total_timesteps == 400 and resumed.resume == run_dir
    assert sac.main(resumed)["total_timesteps"] == 400
    # another agent's run gives no defaults; the run folder check then names the mismatch
    other = parse_args(dqn.Args, "dqn", [f"--resume={run_dir}"])
    assert other.env == dqn.Args.env
    with pytest.raises(UserError, match="that run is a sac run"):
        dqn.main(other)


def test_evaluation_videos_are_never_overwritten(tmp_path, monkeypatch):
    folders = []

    def fake_recording(env, policy, folder, episodes, root, seed, recorded):
        (Path(root) / folder).mkdir(parents=True)
        folders.append(folder)
        assert recorded == 1  # --video-episodes: one recorded episode per evaluation
        env.close()
        return [0.0] * episodes

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("envs.video.record_episodes", fake_recording)
    args = small_sac_args(tmp_path, capture_video=True)
    for _ in range(3):  # e.g. the final evaluation of a run, then of two resumes
        evaluate(args, "run", lambda obs: np.zeros(1, dtype=np.float32), "final")
    assert folders == ["videos/run/final", "videos/run/final_2", "videos/run/final_3"]


def train_cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--agent", "a2c"], "unknown agent 'a2c'"),
        ([], "choose an agent with --agent"),
        (["--agent", "sac", "--env", "CartPole-v1"], "SAC needs continuous (Box) actions"),
        (["--agent", "sac", "--env", "no_such_env"], "--env: unknown env 'no_such_env'"),
        (
            ["--agent", "sac", "--env", "Pendulum-v1", "--method", "fir"],
            "unknown plasticity method",
        ),
        (["--agent", "sac", "--resume", "nowhere"], "not a run folder"),
    ],
)
def test_cli_errors_are_one_line_with_exit_code_2(tmp_path, capsys, argv, message):
    """train.py's command, in this process (the subprocess tests of agents/run.py check the
    real command line's one line and exit code too)."""
    import train

    with pytest.raises(SystemExit) as caught:
        run_cli(lambda: train.main([*argv, "--runs-dir", str(tmp_path)]))
    err = capsys.readouterr().err
    assert caught.value.code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert message in lines[0]
    assert not list(tmp_path.rglob("config.json"))  # a refused command writes no run folder


def test_cli_help_shows_sac_and_method_fields(tmp_path):
    result = train_cli("--agent", "sac", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for flag in ("--policy-lr", "--q-lr", "--fire-every", "--critic-method", "--eval-every"):
        assert flag in result.stdout


def test_headline_command_runs_on_cpu(tmp_path):
    result = train_cli(
        "--agent",
        "sac",
        "--method",
        "fire",
        "--env",
        "humanoid_walk",
        "--total-timesteps",
        "200",
        "--learning-starts",
        "100",
        "--batch-size",
        "32",
        "--eval-episodes",
        "1",
        "--metrics-every",
        "100",
        "--runs-dir",
        str(tmp_path / "runs"),
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "done: 200 steps" in result.stdout


def test_task_cycle_triggers_interventions_and_per_task_logging(tmp_path):
    args = small_sac_args(
        tmp_path,
        env="cycle:humanoid_walk,humanoid_stand",
        switch_every=100,
        method="fire",
        total_timesteps=400,
        eval_every=300,
    )
    summary = sac.main(args)
    assert summary["interventions"]["critic"] >= 2  # one FIRE per task switch
    logged = set().union(*(row.keys() for row in run_rows(Path(summary["run_dir"]))))
    assert {"charts/episodic_return/humanoid_walk", "charts/episodic_return/humanoid_stand"} <= (
        logged
    )
    assert {"charts/task_id", "eval/episodic_return", "critic/fire/total_sfe"} <= logged


class NanRewardEnv(gym.Env):
    """A 2-D continuous task whose reward becomes NaN after 150 steps."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        reward = float("nan") if self.t > 150 else 0.0
        return np.zeros(2, np.float32), reward, False, self.t % 50 == 0, {}


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, capsys):
    if "NanReward-v0" not in gym.registry:
        gym.register("NanReward-v0", entry_point=NanRewardEnv)
    args = small_sac_args(tmp_path, env="NanReward-v0", total_timesteps=400, checkpoint_every=100)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda: sac.main(args))
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and "NaN/Inf" in message[0]
    (run_dir,) = (tmp_path / "runs").iterdir()
    checkpoints = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert checkpoints == ["step_100.pt"]  # written before the NaN rewards; nothing after
