"""The run around every agent: resume, checkpoints, logs, console, stopping, metadata, errors
(agents/run.py, lifecycle.py, console.py, cli.py)."""

import copy
import errno
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import Planted, small_dqn_args, small_ppo_args, small_sac_args
from torch import nn

from agents import dqn, ppo, sac
from agents.checkpoints import carry_optimizer_state
from agents.cli import UserError, parse_args, run_cli
from agents.console import Console, scalar_table
from agents.files import read_checkpoint
from agents.run import Run, git_commit
from experiments.runs import run_rows
from plasticity import make_method

ROOT = Path(__file__).resolve().parents[1]


def dqn_args(tmp_path, **overrides) -> dqn.Args:
    """conftest's short DQN run on CartPole, checkpointed every 100 steps, no evaluation."""
    return small_dqn_args(tmp_path, **{"eval_episodes": 0, "checkpoint_every": 100, **overrides})


def resume(agent, run_dir, *flags):
    return agent.main(
        parse_args(agent.Args, agent.__name__.split(".")[-1], ["--resume", str(run_dir), *flags])
    )


# --- resume ---------------------------------------------------------------------------------


def test_flags_given_again_override_the_checkpoints_optimizer_settings(tmp_path, capsys):
    first = dqn.main(dqn_args(tmp_path, learning_rate=1e-3, adam_eps=1e-8))
    run_dir = Path(first["run_dir"])
    resume(dqn, run_dir, "--total-timesteps", "500", "--learning-rate", "5e-4")
    state = torch.load(run_dir / "checkpoints" / "step_500.pt", weights_only=False)
    (group,) = state["plasticity"]["q"]["optimizer"]["param_groups"]
    assert group["lr"] == 5e-4 and group["eps"] == 1e-8  # the flag won; the rest kept
    config = json.loads((run_dir / "config.json").read_text())
    assert config["learning_rate"] == 5e-4
    assert config["resumes"][-1]["changed"]["learning_rate"] == [1e-3, 5e-4]
    # how the buffer came back is recorded: an analysis flags refilled runs
    assert config["resumes"][-1]["buffer"] == "refilled"
    assert config["resumes"][-1]["refill_steps"] == 100
    out = capsys.readouterr().out
    assert (
        "resumed at step 300; changed: total_timesteps 300 -> 500, learning_rate 0.001 -> "
        "0.0005" in out
    )


def test_a_resume_drops_rows_logged_after_the_checkpoint(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = dqn.main(dqn_args(tmp_path, total_timesteps=400, keep_checkpoints=0))
    run_dir = Path(first["run_dir"])
    # as if killed after logging up to 400 but before the checkpoint at 400 was written
    (run_dir / "checkpoints" / "step_400.pt").unlink()
    assert max(row["step"] for row in run_rows(run_dir)) == 400
    resume(dqn, run_dir, "--total-timesteps", "500")
    steps = [row["step"] for row in run_rows(run_dir)]
    assert steps == sorted(steps) and steps[-1] == 500  # never backwards
    # metrics at the scheduled steps the agent updates at: not 100 (learning starts after
    # it), 200, 300; the first process's 400 is gone, and the second process refills its
    # buffer until 400, so its first table is at 500
    sps = [row["step"] for row in run_rows(run_dir) if "charts/SPS" in row]
    assert sps == [200, 300, 500]
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tb_steps = [event.step for event in events.Scalars("charts/SPS")]
    assert tb_steps == [200, 300, 500]  # TensorBoard purged the orphaned 400


def test_a_refused_resume_leaves_the_run_as_it_was(tmp_path):
    first = dqn.main(dqn_args(tmp_path, method="fire"))
    run_dir = Path(first["run_dir"])
    before = {path.name: path.stat().st_size for path in run_dir.iterdir()}
    with pytest.raises(UserError, match="same --method"):
        resume(dqn, run_dir, "--total-timesteps", "400", "--method", "reset")
    assert {path.name: path.stat().st_size for path in run_dir.iterdir()} == before


def test_save_buffer_writes_only_the_filled_transitions(tmp_path):
    args = dqn_args(tmp_path, buffer_size=1_000_000, save_buffer=True)
    run_dir = Path(dqn.main(args)["run_dir"])
    checkpoint = run_dir / "checkpoints" / "step_300.pt"
    # 300 CartPole transitions are ~15 KB; the allocated buffer would be ~44 MB
    assert checkpoint.stat().st_size < 1_000_000
    buffer = torch.load(checkpoint, weights_only=False)["buffer"]
    assert buffer["size"] == buffer["obs"].shape[0] < 300
    resume(dqn, run_dir, "--total-timesteps", "320")
    (record,) = json.loads((run_dir / "config.json").read_text())["resumes"]
    assert record["buffer"] == "saved" and "refill_steps" not in record


def test_keep_checkpoints(tmp_path):
    every = Path(dqn.main(dqn_args(tmp_path, keep_checkpoints=0))["run_dir"])
    assert sorted(p.name for p in (every / "checkpoints").iterdir()) == [
        "step_100.pt",
        "step_200.pt",
        "step_300.pt",
    ]
    newest = Path(dqn.main(dqn_args(tmp_path, keep_checkpoints=1))["run_dir"])
    assert [p.name for p in (newest / "checkpoints").iterdir()] == ["step_300.pt"]


def test_a_resume_without_the_buffer_refills_with_the_current_policy(tmp_path, monkeypatch):
    args = small_sac_args(tmp_path, eval_episodes=0, metrics_every=10, checkpoint_every=0)
    run_dir = Path(sac.main(args)["run_dir"])
    random_actions = []
    sample = gym.spaces.Box.sample
    monkeypatch.setattr(
        gym.spaces.Box, "sample", lambda self, *a, **k: random_actions.append(1) or sample(self)
    )
    # a table at every step shows when the updates resume
    resume(sac, run_dir, "--total-timesteps", "360", "--refill-steps", "50", "--metrics-every", "1")
    assert random_actions == []  # the refill acted with the policy, not uniformly at random
    trained = [row["step"] for row in run_rows(run_dir) if "losses/qf_loss" in row]
    assert min(step for step in trained if step > 300) == 351  # updates again after 350


# --- errors and messages -------------------------------------------------------------------


def one_line_error(*argv, cwd) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_bad_run_folders_are_one_line_errors(tmp_path):
    (tmp_path / "a_file").write_text("")
    message = one_line_error("--agent", "dqn", "--runs-dir", "a_file", cwd=tmp_path)
    assert "--runs-dir a_file: cannot create a run folder there" in message
    message = one_line_error("--agent", "dqn", "--exp-name", "a/b", cwd=tmp_path)
    assert "--exp-name 'a/b' contains '/'" in message


@pytest.mark.parametrize(
    "agent, setting, value, message",
    [
        (sac, "learning_starts", -10, "--learning-starts must be 0 (off) or a positive integer"),
        (sac, "gamma", 1.5, "--gamma must be in [0, 1], got 1.5"),
        (sac, "q_lr", math.nan, "--q-lr must be a finite number above 0, got nan"),
        (dqn, "end_e", -0.1, "--end-e must be in [0, 1]"),
        (ppo, "ent_coef", -0.01, "--ent-coef must be a finite number of at least 0"),
        (ppo, "threads", 0, "--threads must be a positive integer, got 0"),
        (dqn, "keep_checkpoints", -1, "--keep-checkpoints must be 0 (off) or a positive"),
        (dqn, "verbose", 3, "--verbose must be 0 or 1, got 3"),
        (sac, "seed", -1, "--seed must be 0 or a positive integer, got -1"),
    ],
)
def test_settings_out_of_range_are_refused_up_front(tmp_path, agent, setting, value, message):
    env = "Pendulum-v1" if agent is sac else "CartPole-v1"
    with pytest.raises(UserError, match=re.escape(message)):
        agent.main(agent.Args(env=env, runs_dir=str(tmp_path), **{setting: value}))
    assert not list(tmp_path.iterdir())


def test_env_hints_name_flags_not_python_arguments(tmp_path):
    with pytest.raises(UserError, match="pass --pad-spaces"):
        sac.main(
            sac.Args(
                env="cycle:Pendulum-v1,MountainCarContinuous-v0",
                switch_every=100,
                runs_dir=str(tmp_path),
            )
        )


def test_divergence_before_any_checkpoint_says_there_is_none(tmp_path, capsys):
    from agents.cli import run_cli

    class NanReward(gym.Wrapper):
        def step(self, action):
            obs, _, terminated, truncated, info = self.env.step(action)
            return obs, math.nan, terminated, truncated, info

    if "NanCartPole-v0" not in gym.registry:
        gym.register("NanCartPole-v0", lambda **kw: NanReward(gym.make("CartPole-v1", **kw)))
    with pytest.raises(SystemExit):
        run_cli(lambda: dqn.main(dqn_args(tmp_path, env="NanCartPole-v0", checkpoint_every=0)))
    error = capsys.readouterr().err
    assert "NaN/Inf" in error and "no checkpoint had been written yet" in error
    (run_dir,) = tmp_path.iterdir()
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "diverged"


def test_a_corrupt_only_checkpoint_does_not_point_to_a_previous_one(tmp_path):
    run_dir = Path(dqn.main(dqn_args(tmp_path, keep_checkpoints=1))["run_dir"])
    (run_dir / "checkpoints" / "step_300.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="it is the run's only checkpoint: start the run afresh"):
        resume(dqn, run_dir, "--total-timesteps", "400")


def test_scalars_are_strict_json(tmp_path):
    run = Run("dqn", dqn_args(tmp_path))
    run.log(5, {"x": math.nan, "y": math.inf, "z": 1.5})
    run.close()

    def refuse(constant):
        raise ValueError(constant)

    (line,) = (run.dir / "scalars.jsonl").read_text().splitlines()
    assert json.loads(line, parse_constant=refuse) == {"step": 5, "x": None, "y": None, "z": 1.5}


# --- console, metadata, help ----------------------------------------------------------------


def test_without_a_terminal_progress_comes_as_plain_lines(capsys, monkeypatch):
    console = Console(verbose=1, total=1000, initial=0, progress_every=0.0)
    assert console.bar is None  # pytest captures stderr: not a terminal
    console.progress(250, mean_return=12.5)
    line = capsys.readouterr().out
    assert line.startswith("step 250/1,000 (25%) |") and "return 12.5" in line and "ETA" in line


def test_metric_tables_group_network_level_scalars():
    table = scalar_table(300, {"losses/td_loss": 0.25, "q/dormant_ratio": 0.5, "q/0/dfi": 3.0})
    assert "| losses/" in table and "td_loss" in table and "dormant_ratio" in table
    assert "dfi" not in table  # per-layer metrics stay in the logs


def test_config_and_summary_say_what_ran(tmp_path, capsys):
    summary = dqn.main(dqn_args(tmp_path, eval_episodes=1, device="auto"))
    config = json.loads((Path(summary["run_dir"]) / "config.json").read_text())
    assert config["device"] == "auto" and config["resolved"]["device"] == "cpu"
    assert config["resolved"]["threads"] == 1 and torch.get_num_threads() == 1
    assert config["resolved"]["torch"] == torch.__version__
    assert config["resolved"]["env_ids"] == ["CartPole-v1"]
    for key in ("wall_time_s", "train_sps", "seed", "env_ids"):
        assert key in summary
    assert summary["status"] == "finished" and summary["train_sps"] > 0
    out = capsys.readouterr().out
    assert f"device cpu, 1 thread | run folder {summary['run_dir']}" in out
    assert "eval at step 300: return" in out


def test_top_level_help_lists_agents_methods_and_envs(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0
    for expected in (
        "agents:",
        "sac",
        "python train.py --agent AGENT --help",
        "fire+adamo",
        "humanoid_walk",
        "minatar_<game>",
        "--env minatar_cycle --switch-every 100000",  # a cycle's required flag, shown
    ):
        assert expected in result.stdout


def test_track_mirrors_the_run_to_weights_and_biases(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("wandb")
    fake.init = lambda **kwargs: calls.append(("init", kwargs))
    fake.finish = lambda: calls.append(("finish", {}))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: object())
    summary = dqn.main(dqn_args(tmp_path, track=True, wandb_entity="lab"))
    (init, kwargs), (finish, _) = calls
    assert init == "init" and finish == "finish"
    assert kwargs["sync_tensorboard"] and kwargs["entity"] == "lab"
    assert kwargs["project"] == "plasticity-rl" and kwargs["name"] == Path(summary["run_dir"]).name


def test_track_without_wandb_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(UserError, match="--track needs Weights & Biases: pip install wandb"):
        dqn.main(dqn_args(tmp_path, track=True))
    assert not list(tmp_path.iterdir())


# --- stopping -------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_checkpoints_summarizes_and_says_how_to_resume(tmp_path, sig):
    process = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "train.py"),
            "--agent",
            "dqn",
            "--env",
            "CartPole-v1",
            "--total-timesteps",
            "1000000",
            "--learning-starts",
            "100",
            "--eval-episodes",
            "0",
            "--run-name",
            "stopped",
            "--runs-dir",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    run_dir = tmp_path / "stopped"
    deadline = time.time() + 60
    while not (run_dir / "scalars.jsonl").is_file() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # some training steps
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith("stopped at step ") and f"--resume {run_dir}" in line
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["total_timesteps"] > 0
    assert (run_dir / "checkpoints" / f"step_{summary['total_timesteps']}.pt").is_file()
    step = summary["total_timesteps"]
    # the resume refills the buffer for --learning-starts (100) steps, then updates
    finished = resume(dqn, run_dir, "--total-timesteps", str(step + 200), "--eval-episodes", "0")
    assert finished["status"] == "finished" and finished["total_timesteps"] == step + 200


def test_the_evaluation_records_only_video_episodes(tmp_path):
    from envs.video import record_episodes  # (importing envs selects MuJoCo's EGL renderer)

    env = gym.make("InvertedPendulum-v5", render_mode="rgb_array")
    returns = record_episodes(
        env, lambda obs: np.zeros(1), "clip", episodes=3, root=tmp_path, seed=0, recorded=1
    )
    assert len(returns) == 3 and np.all(np.array(returns) > 0)
    assert len(list((tmp_path / "clip").glob("*.mp4"))) == 1


# --- fixes from the review of this work -----------------------------------------------------


def test_schedules_start_with_the_updates_and_do_not_catch_up(tmp_path):
    args = small_sac_args(tmp_path, method="fire", total_timesteps=320)
    args.plasticity.fire_every = 100  # learning starts at 100: FIRE at 200 and 300, not 101
    summary = sac.main(args)
    fired = [row["step"] for row in run_rows(summary["run_dir"]) if "critic/fire/total_sfe" in row]
    assert fired == [200, 300]
    assert summary["interventions_by_method"] == {"actor": {"fire": 2}, "critic": {"fire": 2}}


def test_interventions_by_method_and_wall_time_add_up_over_a_resume(tmp_path):
    first = dqn.main(dqn_args(tmp_path, method="fire", total_timesteps=350))
    second = resume(dqn, first["run_dir"], "--total-timesteps", "650", "--save-buffer")
    assert first["interventions_by_method"] == {"q": {"fire": first["interventions"]["q"]}}
    assert second["interventions_by_method"] == {"q": {"fire": second["interventions"]["q"]}}
    assert second["interventions"]["q"] > first["interventions"]["q"]
    assert second["wall_time_s"] > first["wall_time_s"]  # both processes' time


def test_a_pause_under_way_is_kept_by_a_resume_with_the_buffer(tmp_path):
    from agents.checkpoints import learning_gate

    class Handle:
        def start(self, step):
            self.started = step

    handle = Handle()
    saved = {"step": 500, "buffer": {}, "learning_gate": {"opens_at": 520}}
    gate = learning_gate(dqn_args(tmp_path, learning_starts=100), [handle], saved)
    assert not gate.open(510) and gate.open(521) and handle.started == 520
    refilled = learning_gate(dqn_args(tmp_path, learning_starts=100), [handle], {"step": 500})
    assert refilled.opens_at == 600 and handle.started == 600  # no buffer: refill first


def test_a_corrupt_config_and_a_cut_log_line_are_handled(tmp_path):
    run_dir = Path(dqn.main(dqn_args(tmp_path))["run_dir"])
    with (run_dir / "scalars.jsonl").open("a") as log:
        log.write('{"step": 3')  # a process killed while writing
    resume(dqn, run_dir, "--total-timesteps", "500")
    assert all(row["step"] <= 500 for row in run_rows(run_dir))
    config = json.loads((run_dir / "config.json").read_text())
    assert config["resumes"][-1]["step"] == 300
    (run_dir / "config.json").write_text("{not json")
    message = one_line_error("--agent", "dqn", "--resume", str(run_dir), cwd=tmp_path)
    assert "config.json cannot be read" in message


def test_method_setting_errors_name_their_flag(tmp_path):
    message = one_line_error("--agent", "dqn", "--method", "fire", "--fire-at", "0", cwd=tmp_path)
    assert "--fire-at" in message and "fire_at" not in message


def test_an_agent_called_from_python_leaves_ctrl_c_alone(tmp_path):
    dqn.main(dqn_args(tmp_path))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_metrics_do_not_change_the_training(tmp_path):
    finals = []
    for every in (25, 0):
        args = small_sac_args(tmp_path / str(every), metrics_every=every)
        summary = sac.main(args)
        state = torch.load(
            Path(summary["run_dir"]) / "checkpoints" / "step_300.pt", weights_only=False
        )
        finals.append(state["critic"])
    for key, value in finals[0].items():
        assert torch.equal(value, finals[1][key]), key


# --- nothing written is lost; nothing read runs code ---------------------------------------


def test_a_planted_checkpoint_is_refused_by_resume_without_running_it(tmp_path):
    run_dir = Path(dqn.main(dqn_args(tmp_path))["run_dir"])
    target = tmp_path / "created_by_unpickling"
    torch.save(
        {"agent": "dqn", "step": 400, "q": Planted(target)}, run_dir / "checkpoints" / "step_400.pt"
    )
    message = one_line_error("--agent", "dqn", "--resume", str(run_dir), cwd=tmp_path)
    assert "step_400.pt was refused: loading it would call io.open" in message
    assert not target.exists()


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_earlier_files(
    tmp_path, monkeypatch, capsys
):
    save = torch.save
    calls = []

    def fills_the_disk(state, file):  # the second checkpoint runs out of space halfway
        calls.append(state["step"])
        if len(calls) == 1:
            return save(state, file)
        file.write(b"x" * 4096)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", fills_the_disk)
    with pytest.raises(SystemExit) as caught:
        run_cli(lambda: dqn.main(dqn_args(tmp_path, run_name="full")))
    assert caught.value.code == 2  # not 1: a sweep does not retry it
    (line,) = capsys.readouterr().err.strip().splitlines()
    checkpoints = tmp_path / "full" / "checkpoints"
    assert line.startswith(f"error: the disk holding {checkpoints} is full: writing step_200.pt")
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step_100.pt"]  # no partial file
    monkeypatch.setattr(torch, "save", save)
    assert read_checkpoint(checkpoints / "step_100.pt")["step"] == 100


def test_a_resume_whose_refill_uses_up_the_steps_left_is_refused(tmp_path):
    run_dir = Path(dqn.main(dqn_args(tmp_path))["run_dir"])  # 300 steps, no saved buffer
    before = {path.name: path.stat().st_size for path in run_dir.iterdir()}
    with pytest.raises(UserError) as caught:
        resume(dqn, run_dir, "--total-timesteps", "350")  # the refill takes 100 steps
    message = str(caught.value)
    assert "refilling it (100 steps) would use up --total-timesteps 350" in message
    assert "--refill-steps" in message and "--save-buffer" in message
    assert {path.name: path.stat().st_size for path in run_dir.iterdir()} == before
    resumed = resume(dqn, run_dir, "--total-timesteps", "350", "--refill-steps", "20")
    assert resumed["status"] == "finished"


def test_a_run_killed_in_its_final_evaluation_is_finished_by_a_resume(tmp_path):
    """Its checkpoint is at the last step and its summary is cut short: the resume only
    evaluates and summarizes, keeps every logged row, and removes a half-written checkpoint."""
    run_dir = Path(dqn.main(dqn_args(tmp_path, eval_episodes=1))["run_dir"])
    logged = (run_dir / "scalars.jsonl").read_text()
    (run_dir / "summary.json").write_text('{"agent": "dqn", "sta')
    (run_dir / "checkpoints" / ".step_400.pt.tmp").write_bytes(b"partial")
    summary = resume(dqn, run_dir)
    assert summary["status"] == "finished" and summary["total_timesteps"] == 300
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"
    assert (run_dir / "scalars.jsonl").read_text().startswith(logged)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir())[-1] == "step_300.pt"
    assert not list((run_dir / "checkpoints").glob("*.tmp"))


def test_each_intervention_is_one_console_line(tmp_path, capsys):
    dqn.main(dqn_args(tmp_path, method="fire"))  # FIRE every 100 steps from the first update
    lines = [line for line in capsys.readouterr().out.splitlines() if ": fire on q" in line]
    assert len(lines) == 1 and re.fullmatch(
        r"step 200: fire on q \(3 layers, DfI after [0-9.e-]+\)", lines[0]
    )


def test_a_run_name_too_long_for_the_file_system_says_so(tmp_path):
    with pytest.raises(UserError, match="shorten --exp-name or pass a shorter --run-name"):
        dqn.main(dqn_args(tmp_path, exp_name="x" * 300))


# --- branching from another run's checkpoint ----------------------------------------------


def branch(agent, source, *flags):
    return agent.main(
        parse_args(
            agent.Args, agent.__name__.split(".")[-1], ["--branch-from", str(source), *flags]
        )
    )


def test_a_branch_with_the_parents_method_trains_as_a_resume_would(tmp_path):
    import shutil

    parent = Path(dqn.main(dqn_args(tmp_path / "runs", save_buffer=True, run_name="p"))["run_dir"])
    shutil.copytree(parent, tmp_path / "resumed")
    resume(dqn, tmp_path / "resumed", "--total-timesteps", "400")
    child = Path(branch(dqn, parent, "--total-timesteps", "400", "--run-name", "c")["run_dir"])
    resumed = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "step_400.pt")
    branched = read_checkpoint(child / "checkpoints" / "step_400.pt")
    for key in ("q", "q_target"):  # same networks, optimizer, buffer, RNGs, env seeds
        assert all(torch.equal(resumed[key][k], branched[key][k]) for k in resumed[key])
    record = json.loads((child / "config.json").read_text())["branch"]
    assert record["changed"]["total_timesteps"] == [300, 400]  # and the method's settings
    assert {key: record[key] for key in ("parent", "step", "optimizer", "buffer")} == {
        "parent": str(parent),
        "step": 300,
        "optimizer": {"q": "carried"},
        "buffer": "saved",
    }
    parent_rows = [row for row in run_rows(parent) if row["step"] <= 300]
    assert run_rows(child)[: len(parent_rows)] == parent_rows  # the curve starts at step 0


def test_a_branch_runs_its_own_method_from_its_first_update(tmp_path):
    parent = Path(dqn.main(dqn_args(tmp_path, save_buffer=True, run_name="p"))["run_dir"])
    checkpoint = parent / "checkpoints" / "step_300.pt"
    fired = branch(
        dqn,
        checkpoint,
        "--method",
        "fire",
        "--fire-at",
        "300",
        "--fire-every",
        "0",
        "--total-timesteps",
        "400",
        "--run-name",
        "fire",
    )
    assert fired["interventions"] == {"q": 1}
    fire_rows = [row["step"] for row in run_rows(fired["run_dir"]) if "q/fire/total_sfe" in row]
    assert fire_rows == [302]  # due at the branch step: at the first update (every 2 steps)
    adamo = branch(
        dqn, checkpoint, "--method", "adamo", "--total-timesteps", "400", "--run-name", "adamo"
    )
    config = json.loads(Path(adamo["run_dir"], "config.json").read_text())
    # AdamO continues the parent Adam's moments, parameter by parameter across its two groups
    assert config["method"] == "adamo" and config["branch"]["optimizer"] == {"q": "moments"}


def test_adams_moments_go_into_adamo_parameter_by_parameter():
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    adam = make_method("none").attach(net, 1e-3).optimizer
    for _ in range(3):
        adam.zero_grad()
        net(torch.randn(5, 4)).pow(2).mean().backward()
        adam.step()
    saved = copy.deepcopy(adam.state_dict())
    adamo = make_method("adamo").attach(net, 1e-3).optimizer  # groups: hidden weights, the rest
    assert [len(g["params"]) for g in adamo.param_groups] == [1, 3]
    assert carry_optimizer_state(adamo, saved, net) == "moments"
    for index, p in enumerate(net.parameters()):
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(adamo.state[p][key], saved["state"][index][key])
        assert float(adamo.state[p]["step"]) == 3.0
    muon = make_method("muon").attach(net, 1e-3).optimizer  # not Adam's kind of state
    assert carry_optimizer_state(muon, saved, net) == "fresh"


def test_a_resumed_branch_keeps_its_branch_record(tmp_path):
    parent = Path(dqn.main(dqn_args(tmp_path, save_buffer=True, run_name="p"))["run_dir"])
    child = branch(
        dqn, parent / "checkpoints" / "step_300.pt", "--method", "fire", "--fire-at", "300",
        "--total-timesteps", "450", "--checkpoint-every", "150", "--run-name", "c",
    )  # fmt: skip
    record = json.loads(Path(child["run_dir"], "config.json").read_text())["branch"]
    resumed = resume(dqn, child["run_dir"], "--total-timesteps", "600")
    config = json.loads(Path(resumed["run_dir"], "config.json").read_text())
    assert config["branch"] == record and len(config["resumes"]) == 1


def test_a_branch_that_cannot_carry_over_is_refused_and_writes_nothing(tmp_path):
    runs = tmp_path / "runs"
    parent = Path(dqn.main(dqn_args(runs, run_name="p"))["run_dir"])  # no saved buffer
    cases = [
        (("--method", "fire"), "holds no replay buffer"),
        (("--env", "CartPole-v0"), "that run trained on CartPole-v1, not --env CartPole-v0"),
        (("--resume", str(parent)), "pass one of them"),
    ]
    for flags, expected in cases:
        with pytest.raises(UserError, match=expected):
            branch(dqn, parent, *flags)
    with pytest.raises(UserError, match="no such checkpoint"):
        branch(dqn, parent / "checkpoints" / "step_7.pt")
    with pytest.raises(UserError, match="that run is a dqn run; branch it with --agent dqn"):
        branch(sac, parent)
    with_buffer = Path(dqn.main(dqn_args(runs, run_name="b", save_buffer=True))["run_dir"])
    with pytest.raises(UserError, match="already at step 300"):
        branch(dqn, with_buffer)  # the parent's --total-timesteps, reached
    assert sorted(p.name for p in runs.iterdir()) == ["b", "p"]


def test_metrics_at_an_intervention_step_are_taken_before_it_and_after_it_apart(tmp_path):
    """ReDo recycles at every metrics step here (every 50 steps, metrics every 100): the
    dormant ratio logged is the one the updates left, the recycled network's under its own
    key, and a step without an intervention has no such key."""
    run_dir = dqn.main(dqn_args(tmp_path, method="redo"))["run_dir"]
    by_step = {row["step"]: row for row in run_rows(run_dir) if "q/dormant_ratio" in row}
    assert sorted(by_step) == [200, 300]  # none at the run's last step
    at_recycle, at_end = by_step[200], by_step[300]
    before, after = at_recycle["q/dormant_ratio"], at_recycle["q/after_intervention/dormant_ratio"]
    assert after < before  # the recycled units are active again
    assert not any("after_intervention" in key for key in at_end)


def test_the_start_line_names_each_networks_method_when_they_differ(tmp_path, capsys):
    args = small_sac_args(tmp_path, critic_method="fire", total_timesteps=150)
    sac.main(args)
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("sac on Pendulum-v1, methods actor none, critic fire, 150 steps")


@pytest.mark.parametrize("agent", ["sac", "dqn", "ppo"])
def test_metrics_take_the_gradient_norm_the_update_returned(tmp_path, monkeypatch, agent):
    """No metric reads ``.grad`` after the update: under CUDA graphs it is graph memory that
    the next replay (the actor's update, acting) overwrites, so the update returns the norm."""
    from plasticity import PlasticityMonitor

    passed = []
    measure = PlasticityMonitor.measure

    def recording(self, inputs, update_grad_norm=None):
        passed.append(update_grad_norm)
        return measure(self, inputs, update_grad_norm)

    monkeypatch.setattr(PlasticityMonitor, "measure", recording)
    modules = {
        "sac": (sac, small_sac_args),
        "dqn": (dqn, small_dqn_args),
        "ppo": (ppo, small_ppo_args),
    }
    module, small_args = modules[agent]
    module.main(small_args(tmp_path, eval_episodes=0))
    assert passed and all(isinstance(norm, torch.Tensor) for norm in passed)


def test_the_commit_is_dirty_with_changed_or_new_code_not_with_new_results(tmp_path):
    git = lambda *cmd: subprocess.run(["git", *cmd], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    (tmp_path / "agent.py").write_text("x = 1\n")
    git("add", "agent.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    clean = git_commit(tmp_path)
    assert clean and not clean.endswith("+dirty")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "scalars.jsonl").write_text("{}\n")  # a run's files: still clean
    assert git_commit(tmp_path) == clean
    (tmp_path / "helper.py").write_text("y = 2\n")  # new code a run could import
    assert git_commit(tmp_path) == clean + "+dirty"
    (tmp_path / "helper.py").unlink()
    (tmp_path / "agent.py").write_text("x = 2\n")
    assert git_commit(tmp_path) == clean + "+dirty"
