"""Pieces every agent shares (agents/cli.py, episodes.py, environments.py): settings checks,
episode logging, task-cycle clocks across copies, evaluation."""

import dataclasses
import re

import gymnasium as gym
import numpy as np
import pytest

import envs
from agents import dqn, ppo, sac
from agents.cli import UserError
from agents.environments import cycle_states, evaluate, is_atari, make_train_envs
from agents.episodes import EpisodeTracker
from experiments.runs import run_rows


@pytest.mark.parametrize(
    "agent, setting, value, message",
    [
        (sac, "policy_frequency", 0, "--policy-frequency must be a positive integer, got 0"),
        (sac, "buffer_size", 0, "--buffer-size must be a positive integer"),
        (dqn, "train_frequency", 0, "--train-frequency must be a positive integer"),
        (dqn, "target_network_frequency", -1, "--target-network-frequency must be a positive"),
        (ppo, "update_epochs", 0, "--update-epochs must be a positive integer"),
        (ppo, "num_envs", 0, "--num-envs must be a positive integer"),
        (sac, "eval_every", -5, "--eval-every must be 0 (off) or a positive integer, got -5"),
        (dqn, "eval_epsilon", 1.5, "--eval-epsilon must be in [0, 1], got 1.5"),
    ],
)
def test_out_of_range_counts_are_user_errors(tmp_path, agent, setting, value, message):
    env = "Pendulum-v1" if agent is sac else "CartPole-v1"
    args = agent.Args(env=env, runs_dir=str(tmp_path), **{setting: value})
    with pytest.raises(UserError, match=re.escape(message)):
        agent.main(args)
    assert not list(tmp_path.iterdir())  # a refused command writes no run folder


def test_every_episode_that_ends_in_a_step_is_logged():
    tracker = EpisodeTracker()
    infos = {
        "task_return": np.array([3.0, 0.0, 7.0]),
        "_task_return": np.array([True, False, True]),
        "task_name": np.array(["walk", "walk", "stand"]),
        "task_period": np.array([0, 0, 0]),
        "task_id": np.array([0, 0, 0]),
    }
    assert tracker.update(infos) == (
        [
            {"charts/episodic_return": 3.0, "charts/episodic_return/walk": 3.0},
            {"charts/episodic_return": 7.0, "charts/episodic_return/stand": 7.0},
        ],
        False,
    )
    infos["_task_return"] = np.array([False, False, False])
    infos["task_period"], infos["task_id"] = np.array([0, 1, 0]), np.array([0, 1, 0])
    # one copy began period 1
    assert tracker.update(infos) == ([{"charts/task_id": 1.0, "charts/task_period": 1.0}], True)
    assert tracker.update(infos) == ([], False)  # the same period is no new switch


@pytest.mark.parametrize("num_envs", [1, 2, 4])
def test_switch_every_counts_the_steps_of_all_copies(tmp_path, num_envs):
    args = dqn.Args(env="cycle:CartPole-v0,CartPole-v1", switch_every=100, num_envs=num_envs)
    vector = make_train_envs(args)
    vector.reset(seed=0)
    steps_per_copy = 100 // num_envs
    for _ in range(steps_per_copy - 1):
        vector.step(vector.action_space.sample())
    assert set(vector.call("scheduled_period")) == {0}
    vector.step(vector.action_space.sample())  # the seeded resets were no steps: exact count
    assert set(vector.call("scheduled_period")) == {1}
    assert [state["ticks"] for state in cycle_states(vector)] == [steps_per_copy] * num_envs
    vector.close()


def test_a_cycle_never_begins_a_period_after_the_runs_end():
    # 200 steps with a switch every 100: the boundary at 200 is the run's end, not a switch
    args = dqn.Args(env="cycle:CartPole-v0,CartPole-v1", switch_every=100, total_timesteps=200)
    vector = make_train_envs(args)
    vector.reset(seed=0)
    for _ in range(260):  # past the end (as an evaluation or a longer loop would)
        vector.step(vector.action_space.sample())
    assert vector.call("scheduled_period") == (1,) and vector.get_attr("period") == (1,)
    vector.close()
    longer = make_train_envs(dataclasses.replace(args, total_timesteps=201))
    longer.reset(seed=0)
    for _ in range(200):
        longer.step(longer.action_space.sample())
    assert longer.call("scheduled_period") == (2,)  # step 201 is in period 2
    longer.close()


def test_evaluation_plays_whole_atari_games_and_takes_eval_epsilon(tmp_path, monkeypatch):
    made = []

    def fake_make_env(name, **kwargs):
        made.append(kwargs)
        return gym.make("CartPole-v1")

    monkeypatch.setattr(envs, "make_env", fake_make_env)
    calls = []

    def policy(obs):
        calls.append(obs)
        return 0

    args = ppo.Args(env="atari_pong", eval_episodes=2)
    returns = evaluate(args, "run", policy, "final")
    assert made[-1]["training"] is False  # no life loss, no reward clipping
    assert len(returns) == 2 and len(calls) == sum(returns)  # CartPole: 1 reward per step
    calls.clear()
    args = ppo.Args(env="atari_pong", eval_episodes=2, eval_epsilon=1.0)
    evaluate(args, "run", policy, "final")
    assert calls == []  # every action random
    evaluate(ppo.Args(env="CartPole-v1", eval_episodes=1), "run", policy, "final")
    assert "training" not in made[-1]


def test_is_atari_reads_cycles():
    assert is_atari("atari_pong") and is_atari("cycle:atari_pong,atari_breakout")
    assert not is_atari("cycle:atari_pong,humanoid_walk")
    assert not is_atari("CartPole-v1")


def test_perturbations_are_reachable_from_the_command_line(tmp_path):
    args = dqn.Args(
        env="CartPole-v1",
        permute_observations=True,
        switch_every=100,
        total_timesteps=300,
        learning_starts=50,
        method="fire",
        eval_episodes=1,
        eval_every=0,
        runs_dir=str(tmp_path),
    )
    args.plasticity.fire_every = 0  # FIRE only at the task switches
    summary = dqn.main(args)
    switches = [
        row for row in run_rows(summary["run_dir"]) if "charts/task_id" in row
    ]  # one task, new permutations: the period advances, the task id stays 0
    assert len(switches) >= 2 and summary["interventions"]["q"] == len(switches)
    with pytest.raises(UserError, match="--permute-actions needs --switch-every"):
        dqn.main(dqn.Args(env="CartPole-v1", permute_actions=True, runs_dir=str(tmp_path)))
