"""MinAtar games: spaces, dynamics under random actions, seeding, sticky actions, rendering,
the padded ``minatar_cycle`` and perturbations (gymnasium's checker: test_envs_checker.py)."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from envs import ENV_NAMES, make_env
from envs.minatar import MAX_EPISODE_STEPS, MINATAR_GAMES, PALETTE

pytest.importorskip("minatar")

CHANNELS = {"asterix": 4, "breakout": 4, "freeway": 7, "seaquest": 10, "space_invaders": 6}
NEVER = 10**9


def play(env, actions, seed):
    """Observations and rewards of ``actions`` from ``reset(seed=seed)``, resetting at ends."""
    observations, rewards = [env.reset(seed=seed)[0]], []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            observations.append(env.reset()[0])
    return np.stack(observations), np.array(rewards)


def test_names_are_listed():
    assert {f"minatar_{game}" for game in MINATAR_GAMES} | {"minatar_cycle"} <= set(ENV_NAMES)


@pytest.mark.parametrize("game", MINATAR_GAMES)
def test_game_spaces_and_random_play(game):
    env = make_env(f"minatar_{game}", seed=0)
    assert env.observation_space == spaces.Box(0, 255, (CHANNELS[game], 10, 10), np.uint8)
    assert env.action_space == spaces.Discrete(6)
    assert env.spec.max_episode_steps == MAX_EPISODE_STEPS
    rng = np.random.default_rng(0)
    observations, rewards = play(env, rng.integers(6, size=300), seed=0)
    assert observations.dtype == np.uint8 and set(np.unique(observations)) == {0, 255}
    assert all(obs in env.observation_space for obs in observations)
    assert rewards.dtype == np.float64 and np.all(rewards >= 0)
    # the scene changes under random play: not a frozen or empty screen
    assert len({obs.tobytes() for obs in observations}) > 10


def test_breakout_scores_and_ends_under_random_play():
    env = make_env("minatar_breakout", seed=0)
    _, rewards = play(env, np.random.default_rng(1).integers(6, size=2000), seed=1)
    assert rewards.sum() > 0 and set(np.unique(rewards)) <= {0.0, 1.0}


def test_seeded_resets_reproduce_episodes():
    actions = np.random.default_rng(2).integers(6, size=400)
    env_a, env_b = make_env("minatar_asterix"), make_env("minatar_asterix")
    obs_a, rewards_a = play(env_a, actions, seed=7)
    obs_b, rewards_b = play(env_b, actions, seed=7)
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(rewards_a, rewards_b)
    obs_c, _ = play(env_a, actions, seed=8)  # the same env, reseeded: another game
    assert obs_c.shape != obs_a.shape or not np.array_equal(obs_c, obs_a)


def paddle_column(obs) -> int:
    return int(np.flatnonzero(obs[0, 9])[0])  # breakout: channel 0 is the paddle, in row 9


@pytest.mark.parametrize(("sticky", "moves"), [(0.0, True), (1.0, False)])
def test_sticky_actions_repeat_the_previous_action(sticky, moves):
    """With probability 1 the previous action (a no-op at the start) always repeats."""
    env = make_env("minatar_breakout", sticky_action_probability=sticky)
    start = paddle_column(env.reset(seed=0)[0])
    obs, *_ = env.step(3)  # right
    assert (paddle_column(obs) != start) == moves


def test_minatar_defaults():
    base = make_env("minatar_seaquest").unwrapped
    assert base.sticky_action_probability == 0.1
    assert base.game.env.ramping  # difficulty ramping, MinAtar's default
    assert base.get_action_meanings() == ["NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE"]


def test_bad_action_and_unknown_game_are_clear_errors():
    env = make_env("minatar_freeway")
    with pytest.raises(ValueError, match="MinAtar actions are 0..5"):
        env.step(6)
    with pytest.raises(ValueError, match="unknown MinAtar game 'pong'.*minatar_breakout"):
        make_env("minatar_pong")


def test_rgb_array_colours_each_cell_by_its_top_channel():
    env = make_env("minatar_seaquest", render_mode="rgb_array", seed=0)
    obs, _ = env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (160, 160, 3) and frame.dtype == np.uint8
    cells = frame[8::16, 8::16]  # the centre pixel of each 16x16 cell
    on = obs.any(axis=0)
    assert np.all(cells[~on] == 0)
    for row, col in zip(*np.nonzero(on), strict=True):
        top = np.flatnonzero(obs[:, row, col])[-1]
        np.testing.assert_array_equal(cells[row, col], PALETTE[top])


def test_video_of_an_episode(tmp_path):
    pytest.importorskip("moviepy")
    from envs.video import record_episodes

    env = gym.wrappers.TimeLimit(make_env("minatar_breakout", render_mode="rgb_array"), 30)
    record_episodes(env, lambda obs: 3, "clip", root=tmp_path)
    videos = list((tmp_path / "clip").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 1000


# --- cycle and perturbations ----------------------------------------------------------------


def test_cycle_pads_channels_and_switches_games():
    env = make_env("minatar_cycle", switch_every=20, switch_mode="truncate")
    assert env.observation_space == spaces.Box(0, 255, (10, 10, 10), np.uint8)
    assert env.action_space == spaces.Discrete(6)
    obs, info = env.reset(seed=0)
    names, observations = [info["task_name"]], {info["task_name"]: obs}
    for _ in range(120):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        assert obs.shape == (10, 10, 10)
        if terminated or truncated:
            obs, info = env.reset()
            observations[info["task_name"]] = obs
            if info["task_switched"]:
                names.append(info["task_name"])
    assert names[:6] == [*(f"minatar_{game}" for game in MINATAR_GAMES), "minatar_asterix"]
    for game, channels in CHANNELS.items():
        assert not observations[f"minatar_{game}"][channels:].any()  # the padding stays empty


def test_cycle_padding_is_the_preset_default_only():
    with pytest.raises(ValueError, match="disagree on observation space.*pad_spaces=True"):
        make_env("cycle:minatar_breakout,minatar_freeway", switch_every=100)
    env = make_env("cycle:minatar_breakout,minatar_freeway", switch_every=100, pad_spaces=True)
    assert env.observation_space.shape == (7, 10, 10)


def test_permuted_observations_move_cells_alike_in_every_channel():
    def held(period):
        env = make_env("minatar_seaquest", switch_every=NEVER, permute_observations=True)
        env.unwrapped.hold_task(period)
        return env

    plain, permuted = held(0), held(1)
    permutation = permuted.unwrapped.observation_permutation
    assert sorted(permutation) == list(range(100))  # the 10x10 cells, not the channels
    actions = np.random.default_rng(3).integers(6, size=50)
    obs_plain, _ = play(plain, actions, seed=5)
    obs_permuted, _ = play(permuted, actions, seed=5)  # the same game, seen permuted
    expected = obs_plain.reshape(len(obs_plain), 10, 100)[:, :, permutation]
    np.testing.assert_array_equal(obs_permuted, expected.reshape(obs_plain.shape))
    assert not np.array_equal(obs_permuted, obs_plain)


def test_permuted_actions_on_minatar():
    env = make_env(
        "minatar_breakout", switch_every=NEVER, permute_actions=True, sticky_action_probability=0
    )
    env.unwrapped.hold_task(1)
    permutation = env.unwrapped.action_permutation
    assert env.action_space == spaces.Discrete(6) and sorted(permutation) == list(range(6))
    env.reset(seed=0)
    env.step(int(np.flatnonzero(permutation == 3)[0]))  # the action that maps to "right"
    assert env.unwrapped.task_env.unwrapped.previous_action == 3
