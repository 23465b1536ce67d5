"""Task cycles: schedule, info keys, per-task returns, spaces, permutations, vector copies."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from envs import make_env
from envs.nonstationary import TaskCycle


class FixedLengthEnv(gym.Env):
    """Episodes of exactly ``length`` steps; observation = [step, 1, 2, ...]; reward 1 per step;
    the last action is kept in ``last_action``."""

    def __init__(self, length=5, obs_size=4, n_actions=3):
        self.length = length
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_size,), np.float32)
        self.action_space = spaces.Discrete(n_actions)
        self.t = 0
        self.last_action = None

    def obs(self):
        return np.concatenate([[self.t], np.arange(1, self.observation_space.shape[0])]).astype(
            np.float32
        )

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.obs(), {}

    def step(self, action):
        self.t += 1
        self.last_action = action
        return self.obs(), 1.0, self.t >= self.length, False, {}


def cycle_of(lengths, switch_every, **options):
    tasks = {f"task{i}": FixedLengthEnv(length) for i, length in enumerate(lengths)}
    return TaskCycle(tasks, switch_every, **options)


def run(env, steps):
    """Steps with autoreset; returns the list of (reset info) and all step infos."""
    resets, infos = [], []
    _, info = env.reset(seed=0)
    resets.append(info)
    for _ in range(steps):
        _, _, terminated, truncated, info = env.step(env.action_space.sample())
        infos.append(info)
        if terminated or truncated:
            resets.append(env.reset()[1])
    return resets, infos


def test_switch_at_first_episode_boundary_after_switch_every():
    env = cycle_of([5, 5, 5], switch_every=12)
    resets, _ = run(env, 60)
    # the clock (steps + resets after the first) reads 6k at the k-th reset: period 6k // 12
    task_ids = [info["task_id"] for info in resets]
    assert task_ids[:8] == [0, 0, 1, 1, 2, 2, 0, 0]
    switched = [info["task_switched"] for info in resets]
    assert switched[:8] == [False, False, True, False, True, False, True, False]


def test_fixed_order_repeats_in_rounds():
    env = cycle_of([1, 1, 1], switch_every=2)
    resets, _ = run(env, 30)
    order = [info["task_name"] for info in resets if info["task_switched"]]
    assert order[:6] == ["task1", "task2", "task0", "task1", "task2", "task0"]


def test_every_step_has_task_info_and_current_task_is_readable():
    env = gym.wrappers.RecordEpisodeStatistics(cycle_of([3, 4], switch_every=10))
    resets, infos = run(env, 40)
    assert all(
        {"task_id", "task_name", "task_period", "task_switched"} <= info.keys()
        for info in resets + infos
    )
    *_, info = env.step(0)
    assert env.get_wrapper_attr("task_name") == info["task_name"]


def test_per_task_returns():
    env = cycle_of([3, 4], switch_every=10)
    _, infos = run(env, 40)
    ends = [info for info in infos if "task_return" in info]
    assert {info["task_name"]: info["task_return"] for info in ends} == {"task0": 3.0, "task1": 4.0}
    assert env.episode_returns["task0"][:2] == [3.0, 3.0]


def test_truncate_mode_switches_on_the_boundary_step():
    env = cycle_of([100, 100], switch_every=7, switch_mode="truncate")
    env.reset(seed=0)
    truncations = [env.step(0)[3] for _ in range(7)]
    assert truncations == [False] * 6 + [True]
    assert env.reset()[1]["task_switched"]


def test_disagreeing_spaces_are_a_clear_error():
    with pytest.raises(ValueError, match="disagree on observation space.*pad_spaces=True"):
        make_env("cycle:CartPole-v1,Acrobot-v1", switch_every=10)
    with pytest.raises(ValueError, match="cannot pad these action spaces"):
        make_env("cycle:CartPole-v1,Acrobot-v1", switch_every=10, pad_spaces=True)


def test_pad_spaces_zero_pads_observations():
    tasks = {"small": FixedLengthEnv(obs_size=2), "large": FixedLengthEnv(obs_size=5)}
    env = TaskCycle(tasks, switch_every=100, pad_spaces=True)
    assert env.observation_space.shape == (5,)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [0, 1, 0, 0, 0])


def test_pad_spaces_keeps_actions_within_every_task_bounds():
    env = make_env("cycle:Pendulum-v1,MountainCarContinuous-v0", switch_every=10, pad_spaces=True)
    assert env.observation_space.shape == (3,)
    assert env.action_space == spaces.Box(-1.0, 1.0, (1,), np.float32)  # Pendulum's is ±2


def test_task_seeds_of_neighbouring_copies_do_not_repeat():
    # CartPole-v0 and -v1 share their start distribution: with seed + task, copy 0's second
    # task would start exactly where copy 1's first task starts
    name = "cycle:CartPole-v0,CartPole-v1"
    first = make_env(name, seed=0, switch_every=1, switch_mode="truncate")
    first.reset(seed=0)
    *_, truncated, _ = first.step(0)
    assert truncated
    second_task_start, _ = first.reset()
    neighbour = make_env(name, seed=1, switch_every=1000)
    neighbour_start, _ = neighbour.reset(seed=1)
    assert not np.array_equal(second_task_start, neighbour_start)


def test_truncate_mode_reports_the_partial_atari_score():
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    env = make_env(
        "atari_pong", switch_every=100, permute_actions=True, switch_mode="truncate", seed=0
    )
    env.reset(seed=0)
    for _ in range(100):
        *_, terminated, truncated, info = env.step(0)
        if terminated or truncated:
            break
    assert truncated and not terminated  # cut by the switch, long before Pong ends
    assert "task_return" in info and info["task_return"] <= 0  # points lost so far, if any


def test_cycle_needs_switch_every():
    with pytest.raises(ValueError, match="switch_every"):
        make_env("cycle:CartPole-v1,Acrobot-v1")


def test_permuted_observations_redraw_at_each_switch():
    env = TaskCycle(
        {"a": FixedLengthEnv(length=2, obs_size=6)}, switch_every=3, permute_observations=True
    )
    observations = [env.reset(seed=0)[0]]
    for _ in range(3):  # 2 steps + 1 reset = 3 ticks: every reset begins a new period
        env.step(0)
        env.step(0)
        observations.append(env.reset()[0])
    identity = np.array([0, 1, 2, 3, 4, 5], dtype=np.float32)
    np.testing.assert_array_equal(observations[0], identity)  # period 0 is the plain task
    assert sorted(observations[1]) == sorted(identity)
    assert not np.array_equal(observations[1], identity)
    assert not np.array_equal(observations[1], observations[3])


def test_permuted_actions():
    task = FixedLengthEnv(length=1, n_actions=5)
    env = TaskCycle({"a": task}, switch_every=1, permute_actions=True)
    env.reset(seed=0)
    env.step(0)
    assert task.last_action == 0  # period 0: identity
    env.reset()
    mapped = []
    for action in range(5):
        env.step(action)
        mapped.append(task.last_action)
        env.reset()
    assert sorted(mapped) == list(range(5))


def test_single_env_with_permutation_via_make_env():
    env = make_env("CartPole-v1", switch_every=20, permute_observations=True)
    resets, _ = run(env, 100)
    assert any(info["task_switched"] for info in resets)
    assert {info["task_name"] for info in resets} == {"CartPole-v1"}


def test_vector_copies_switch_together():
    """Copies with different episode lengths and seeds read the same clock and draw the same
    permutations; in truncate mode they run the same task except on a boundary step, where a
    copy that happens to be resetting switches one vector step before the others."""

    def make(length):
        return lambda: cycle_of(
            [length, length + 2], switch_every=9, switch_mode="truncate", permute_observations=True
        )

    envs = gym.vector.SyncVectorEnv([make(3), make(4), make(5)])
    envs.reset(seed=[0, 1, 2])
    for _ in range(40):
        _, _, _, _, infos = envs.step(envs.action_space.sample())
        ticks = set(envs.get_attr("ticks"))
        assert len(ticks) == 1
        if ticks.pop() % 9 == 0:
            continue
        assert len(set(infos["task_id"])) == 1
        permutations = envs.get_attr("observation_permutation")
        if permutations[0] is not None:
            assert all(np.array_equal(p, permutations[0]) for p in permutations)
    assert max(envs.get_attr("period")) >= 3


def test_humanoid_cycle_order():
    pytest.importorskip("mujoco")
    env = make_env("humanoid_cycle", switch_every=1000)
    assert env.task_names == ("humanoid_walk", "humanoid_run", "humanoid_stand")
    assert env.observation_space.shape == (51,)


def test_atari_cycle_shares_full_action_set():
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    env = make_env("atari_cycle", switch_every=1000)
    assert len(env.task_names) >= 5
    assert env.action_space == spaces.Discrete(18)
    assert env.observation_space.shape == (4, 84, 84)
    assert all(task.action_space.n == 18 for task in env.task_envs)


def test_redraw_friction_on_a_mujoco_task():
    pytest.importorskip("mujoco")
    env = make_env("humanoid_stand", switch_every=5, redraw_friction=True)
    model = env.task_env.unwrapped.model
    assert np.all(model.geom_friction[:, 0] == 1.0)  # period 0: MuJoCo's default friction
    terminated = False
    while not terminated:
        *_, terminated, _, _ = env.step(env.action_space.sample())
    _, info = env.reset()
    assert info["task_switched"]
    friction = model.geom_friction[0, 0]
    assert 0.02 <= friction <= 2 and friction != 1.0
    assert np.all(model.geom_friction[:, 0] == friction)


def test_redraw_friction_needs_mujoco():
    with pytest.raises(ValueError, match="redraw_friction needs MuJoCo"):
        make_env("CartPole-v1", switch_every=5, redraw_friction=True)


def test_hold_task_pins_one_period_with_its_perturbations():
    def make():
        tasks = {name: FixedLengthEnv(length=2, obs_size=6) for name in ("a", "b", "c")}
        return TaskCycle(tasks, switch_every=3, permute_observations=True)

    training = make()
    training.reset(seed=0)
    while training.period < 4:  # walk the training cycle to its period 4
        for _ in range(2):
            training.step(0)
        training.reset()
    held = make()
    held.hold_task(4)
    obs, info = held.reset(seed=0)
    assert info["task_name"] == training.task_name == "b" and info["task_period"] == 4
    np.testing.assert_array_equal(obs, training.reset()[0])  # same permutation as training
    _, infos = run(held, 30)
    assert {i["task_period"] for i in infos} == {4}
