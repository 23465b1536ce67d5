"""Atari on ALE's own vector env (``envs.atari.make_atari_vector``) against the gymnasium path
(``make_atari`` copies in a ``SyncVectorEnv``): spaces, autoreset, episodes, and the same game
played by both."""

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("cv2")
pytest.importorskip("ale_py")

from agents import dqn, ppo  # noqa: E402
from agents.environments import env_ids, make_train_envs  # noqa: E402
from envs.atari import FIRE_ACTION, make_atari, make_atari_vector  # noqa: E402


def gymnasium_path(game: str, num_envs: int, **kwargs) -> gym.vector.SyncVectorEnv:
    return gym.vector.SyncVectorEnv([lambda: make_atari(game, **kwargs)] * num_envs)


@pytest.mark.parametrize(
    ("game", "kwargs"),
    [("breakout", {}), ("pong", {"full_action_space": True, "sticky_actions": True})],
)
def test_spaces_dtypes_and_autoreset_mode_match_the_gymnasium_path(game, kwargs):
    vector, reference = make_atari_vector(game, 3, **kwargs), gymnasium_path(game, 3, **kwargs)
    assert vector.single_observation_space == reference.single_observation_space
    assert vector.single_action_space == reference.single_action_space
    assert vector.observation_space == reference.observation_space
    assert vector.action_space == reference.action_space
    assert vector.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    assert reference.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    vector.reset(seed=0)
    reference.reset(seed=0)
    actions = np.array([1, 0, 2])
    for got, expected in zip(vector.step(actions), reference.step(actions), strict=True):
        if isinstance(expected, np.ndarray):
            assert got.shape == expected.shape and got.dtype == expected.dtype
    sticky = 0.25 if kwargs.get("sticky_actions") else 0.0
    assert vector.unwrapped.spec.kwargs["repeat_action_probability"] == sticky


def test_a_whole_game_plays_to_the_same_frames_rewards_and_ends_on_both_paths():
    """Ms. Pac-Man (no FIRE, 3 lives) without no-op starts or sticky actions: deterministic on
    both paths. After a lost life both play a no-op step as the reset step."""
    vector = make_atari_vector("ms_pacman", 2, noop_max=0)
    reference = gymnasium_path("ms_pacman", 2, noop_max=0)
    obs, _ = vector.reset(seed=0)
    expected_obs, _ = reference.reset(seed=0)
    assert np.array_equal(obs, expected_obs)
    rng = np.random.default_rng(0)
    lives_lost, rewards_seen = 0, set()
    for _ in range(3000):
        actions = rng.integers(vector.single_action_space.n, size=2)
        obs, reward, terminated, truncated, info = vector.step(actions)
        expected = reference.step(actions)
        assert np.array_equal(obs, expected[0])
        np.testing.assert_array_equal(reward, expected[1])
        np.testing.assert_array_equal(terminated, expected[2])
        np.testing.assert_array_equal(truncated, expected[3])
        assert ("episode" in info) == ("episode" in expected[4])
        rewards_seen |= set(reward.tolist())
        if "episode" in info:
            break
        lives_lost += int(terminated[0])
    else:
        pytest.fail("the game did not end in 3000 steps")
    assert lives_lost == 2 and rewards_seen <= {0.0, 1.0}  # each lost life ended an episode
    np.testing.assert_array_equal(info["_episode"], expected[4]["_episode"])
    np.testing.assert_array_equal(info["episode"]["r"], expected[4]["episode"]["r"])
    np.testing.assert_array_equal(info["episode"]["l"], expected[4]["episode"]["l"])
    assert info["episode"]["r"][0] > 1  # the raw game score, before clipping


def test_steps_after_a_lost_life_and_a_game_over_are_next_step_resets():
    """Breakout with random actions: after a lost life the game goes on, after game over it
    restarts; either way the next step presses FIRE whatever the agent chose, has reward 0,
    is not done, and its frame stack holds the episode's first frame four times."""
    env = make_atari_vector("breakout", 2)
    sent = []  # the actions that reach ALE's vector env
    step_ale = env.env.step

    def record_and_step(actions):
        sent.append(actions)
        return step_ale(actions)

    env.env.step = record_and_step
    obs, info = env.reset(seed=3)
    assert all(np.array_equal(stack[0], stack[k]) for stack in obs for k in range(1, 4))
    rng = np.random.default_rng(0)
    ends = {"life": 0, "game": 0}
    lives = info["lives"]
    for _ in range(20_000):
        obs, reward, terminated, truncated, info = env.step(rng.integers(4, size=2))
        ended = terminated | truncated
        if not ended.any():
            lives = info["lives"]
            continue
        game_over = info["_episode"] if "episode" in info else np.zeros(2, bool)
        assert np.array_equal(game_over, ended & (info["lives"] == 0))
        next_obs, reward, terminated, truncated, next_info = env.step(np.zeros(2, np.int64))
        for i in np.flatnonzero(ended):
            ends["game" if game_over[i] else "life"] += 1
            assert sent[-1][i] == FIRE_ACTION
            assert reward[i] == 0.0 and not terminated[i] and not truncated[i]
            assert all(np.array_equal(next_obs[i, 0], next_obs[i, k]) for k in range(1, 4))
            expected_lives = 5 if game_over[i] else lives[i] - 1
            assert next_info["lives"][i] == expected_lives
        lives = next_info["lives"]
        if ends["game"] >= 1 and ends["life"] >= 4:
            break
    assert ends["game"] >= 1 and ends["life"] >= 4


def test_unknown_game_says_which_names_work():
    with pytest.raises(ValueError, match="unknown Atari game 'no_such_game'.*atari_<game>"):
        make_atari_vector("no_such_game", 2)


@pytest.mark.parametrize(
    ("env", "num_envs", "on_ale_vector"),
    [("atari_pong", 2, True), ("atari_pong", 1, False), ("cycle:atari_pong", 2, False)],
)
def test_training_uses_the_ale_vector_env_for_several_copies_of_one_game(
    env, num_envs, on_ale_vector
):
    args = ppo.Args(env=env, num_envs=num_envs, switch_every=1000 if "cycle" in env else None)
    envs = make_train_envs(args)
    assert isinstance(envs.unwrapped, gym.vector.SyncVectorEnv) != on_ale_vector
    assert env_ids(envs) == ["ALE/Pong-v5"]


def test_dqn_trains_on_the_ale_vector_env(tmp_path):
    summary = dqn.main(
        dqn.Args(
            env="atari_pong",
            num_envs=2,
            total_timesteps=120,
            learning_starts=40,
            buffer_size=200,
            batch_size=8,
            train_frequency=4,
            eval_episodes=0,
            checkpoint_every=0,
            runs_dir=str(tmp_path),
            device="cpu",
        )
    )
    assert summary["status"] == "finished" and summary["total_timesteps"] == 120
    assert summary["env_ids"] == ["ALE/Pong-v5"]
