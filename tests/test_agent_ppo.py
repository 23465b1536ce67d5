"""PPO: short runs with each kind of plasticity method, resume, two methods at once, and GAE."""

import dataclasses
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import small_ppo_args

from agents import ppo
from agents.cli import UserError
from experiments.runs import run_rows
from plasticity import MethodConfig


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
@pytest.mark.parametrize("method", ["none", "fire", "adamo", "redo", "shrink_perturb"])
def test_short_run_writes_its_run_folder(tmp_path, env, method):
    summary = ppo.main(small_ppo_args(tmp_path, env=env, method=method))
    run_dir = Path(summary["run_dir"])
    assert json.loads((run_dir / "config.json").read_text())["agent"] == "ppo"
    assert list((run_dir / "checkpoints").glob("step_*.pt"))
    saved = json.loads((run_dir / "summary.json").read_text())
    assert saved["total_timesteps"] == 128
    assert saved["sps"] > 0
    assert isinstance(saved["final_eval_return"], float)
    # due at steps 64 and 128; none at the last step, where the final evaluation follows
    expected = 0 if method in ("none", "adamo") else 1
    assert saved["interventions"] == {"actor": expected, "critic": expected}
    rows = run_rows(run_dir)
    keys = set().union(*rows)
    for key in ("losses/policy_loss", "losses/value_loss", "losses/entropy", "losses/approx_kl"):
        assert key in keys
    assert {"losses/clipfrac", "losses/explained_variance", "charts/SPS"} <= keys
    assert {"actor/dormant_ratio", "critic/effective_rank", "eval/episodic_return"} <= keys
    assert "critic/kfac_eps_rank_normalized" in keys
    if expected:
        assert any(k.startswith(f"actor/{method}/") for k in keys)
        assert any(k.startswith(f"critic/{method}/") for k in keys)
    assert all(torch.isfinite(torch.tensor(v)) for r in rows for v in r.values() if v == v)


def test_resume_continues_the_step_counter(tmp_path):
    first = ppo.main(small_ppo_args(tmp_path, method="fire"))
    run_dir = Path(first["run_dir"])
    more = small_ppo_args(tmp_path, method="fire", total_timesteps=256, resume=str(run_dir))
    resumed = ppo.main(more)
    assert resumed["run_dir"] == str(run_dir)
    assert resumed["total_timesteps"] == 256
    # 64 before the resume; 128 (the first run's last step) is made up at 192, 256 is the end
    assert resumed["interventions"]["actor"] == 2
    steps = [row["step"] for row in run_rows(run_dir)]
    assert max(steps) == 256 and any(128 < s < 256 for s in steps)
    assert (run_dir / "checkpoints" / "step_256.pt").is_file()
    with pytest.raises(UserError, match="already at step 256"):
        ppo.main(small_ppo_args(tmp_path, method="fire", total_timesteps=256, resume=str(run_dir)))
    with pytest.raises(UserError, match="same --method"):
        ppo.main(small_ppo_args(tmp_path, method="adamo", total_timesteps=512, resume=str(run_dir)))


def test_actor_and_critic_methods_get_their_own_optimizers(tmp_path):
    summary = ppo.main(
        small_ppo_args(tmp_path, env="Pendulum-v1", actor_method="fire", critic_method="adamo")
    )
    assert summary["actor_method"] == "fire" and summary["critic_method"] == "adamo"
    assert summary["interventions"] == {"actor": 1, "critic": 0}  # at 64, not at the end
    state = torch.load(
        sorted(Path(summary["run_dir"], "checkpoints").glob("*.pt"))[-1], weights_only=False
    )
    actor_groups = state["plasticity"]["actor"]["optimizer"]["param_groups"]
    critic_groups = state["plasticity"]["critic"]["optimizer"]["param_groups"]
    assert all("iso_coef" not in g for g in actor_groups)  # Adam
    assert any(g["iso_coef"] > 0 for g in critic_groups)  # AdamO on the hidden layers


@pytest.mark.parametrize(
    "env, expected",
    [
        ("CartPole-v1", {"learning_rate": 2.5e-4, "ent_coef": 0.01, "normalize": False}),
        ("Pendulum-v1", {"learning_rate": 3e-4, "ent_coef": 0.0, "normalize": True}),
        ("atari_pong", {"learning_rate": 2.5e-4, "clip_coef": 0.1, "normalize": False}),
    ],
)
def test_unset_settings_follow_cleanrl_for_the_kind_of_env(tmp_path, env, expected):
    if env.startswith("atari"):
        pytest.importorskip("ale_py")
    args = small_ppo_args(tmp_path, env=env, eval_every=0, eval_episodes=0, checkpoint_every=0)
    run_dir = Path(ppo.main(args)["run_dir"])
    config = json.loads((run_dir / "config.json").read_text())
    assert {k: config[k] for k in expected} == expected
    assert (config["num_envs"], config["update_epochs"]) == (2, 2)  # set: kept


def test_gae_with_a_termination_and_a_truncation_mid_rollout():
    # env 0 terminates at step 1, env 1 is truncated there; step 2 only resets (masked later)
    rewards = torch.tensor([[1.0, 1.0], [2.0, 2.0], [0.0, 0.0], [3.0, 3.0]])
    values = torch.tensor([[0.5, 0.5], [1.0, 1.0], [2.0, 2.0], [1.5, 1.5], [4.0, 4.0]])
    terminations = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    dones = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    adv, ret = ppo.compute_gae(rewards, values, terminations, dones, gamma=0.5, gae_lambda=0.5)
    # by hand, gamma = lambda = 0.5 (gamma * lambda = 0.25):
    # t=3: delta = 3 + 0.5*4 - 1.5 = 3.5                      A = 3.5
    # t=1: env 0: delta = 2 - 1 = 1 (no bootstrap)            A = 1 (chain cut)
    #      env 1: delta = 2 + 0.5*V(final obs)=2*0.5 - 1 = 2  A = 2 (chain cut)
    # t=0: delta = 1 + 0.5*1 - 0.5 = 1;  env 0: A = 1 + 0.25*1 = 1.25, env 1: 1 + 0.25*2 = 1.5
    assert adv[3].tolist() == [3.5, 3.5]
    assert adv[1].tolist() == [1.0, 2.0]
    assert adv[0].tolist() == [1.25, 1.5]
    assert torch.equal(ret, adv + values[:-1])


def test_too_short_run_is_a_user_error(tmp_path):
    import train

    with pytest.raises(UserError, match="--total-timesteps 10 is less than one rollout"):
        train.main(["--agent", "ppo", "--total-timesteps", "10", "--runs-dir", str(tmp_path)])
    assert not list(tmp_path.iterdir())  # no run folder for a run that cannot start


class ThreeSteps(gym.Env):
    """Reward 1 per step; every episode terminates after exactly three steps."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,))
    action_space = gym.spaces.Discrete(2)

    def __init__(self, render_mode=None):
        self.render_mode = render_mode

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(1, self.t / 3, np.float32), 1.0, self.t == 3, False, {}


def test_reset_only_steps_of_next_step_autoreset_are_left_out(tmp_path, monkeypatch):
    gym.register("ThreeSteps-v0", entry_point=ThreeSteps)
    batches = []

    def record(valid, *rollout):
        batches.append(original(valid, *rollout))
        return batches[-1]

    original = ppo.valid_steps
    monkeypatch.setattr(ppo, "valid_steps", record)
    args = small_ppo_args(tmp_path, env="ThreeSteps-v0", num_steps=8, total_timesteps=32)
    ppo.main(dataclasses.replace(args, gamma=1.0, gae_lambda=1.0, eval_episodes=0))
    # each env: steps 0-2 episode, 3 reset only, 4-6 episode, 7 reset only → 6 of 8 kept
    b_obs, *_, b_returns, _ = batches[0]
    assert b_obs.shape == (12, 1)
    # with gamma = lambda = 1 the returns are the rewards left in the episode, whatever V says
    # (time-major: both envs' step 0, then both envs' step 1, …)
    expected = torch.tensor([3.0, 3.0, 2.0, 2.0, 1.0, 1.0] * 2)
    assert torch.allclose(b_returns, expected)
    # the second rollout starts right after a reset-only step: again two whole episodes
    assert torch.allclose(batches[1][4], expected)


@pytest.mark.filterwarnings("ignore:.*CartPole-v0 is out of date")
def test_task_switches_of_a_cycle_trigger_on_task_switch(tmp_path):
    args = small_ppo_args(
        tmp_path,
        env="cycle:CartPole-v0,CartPole-v1",
        switch_every=64,  # env steps of both copies: one rollout (2 × 32)
        total_timesteps=256,
        method="fire",
        plasticity=MethodConfig(fire_every=0),
    )
    summary = ppo.main(args)
    rows = run_rows(Path(summary["run_dir"]))
    switches = [row["step"] for row in rows if "charts/task_id" in row]
    assert len(switches) >= 2
    # on_task_switch acts once after the rollout in which a switch began (not after the last)
    acted = sum(step <= 256 - 64 for step in switches)
    assert summary["interventions"] == {"actor": acted, "critic": acted}
    assert summary["final_eval_return"] > 0  # evaluation builds the cycle too


def test_normalization_statistics_are_checkpointed_and_resumed(tmp_path):
    args = small_ppo_args(tmp_path, env="Pendulum-v1", normalize=True, eval_every=0)
    run_dir = Path(ppo.main(args)["run_dir"])
    saved = torch.load(run_dir / "checkpoints" / "step_128.pt", weights_only=False)
    mean, var, count = saved["obs_rms"]
    assert mean.shape == (3,) and count > 128  # every observation seen, resets included
    resumed = ppo.main(dataclasses.replace(args, total_timesteps=256, resume=str(run_dir)))
    assert np.isfinite(resumed["final_eval_return"])
    later = torch.load(run_dir / "checkpoints" / "step_256.pt", weights_only=False)
    assert later["obs_rms"][2] > count  # the statistics went on from the saved ones
    without = dataclasses.replace(args, normalize=False, total_timesteps=512, resume=str(run_dir))
    with pytest.raises(UserError, match="trained with --normalize"):
        ppo.main(without)
