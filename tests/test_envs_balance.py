"""humanoid_balance_simple (HumanoidBench-style, menagerie H1); the humanoid_fire_cycle preset."""

import importlib.machinery
import sys
import types

import gymnasium as gym
import numpy as np
import pytest

from envs import ENV_NAMES, make_env

mujoco = pytest.importorskip("mujoco")
humanoid = pytest.importorskip("envs.humanoid")

BOARD_QPOS = slice(26, 33)  # the board's free joint follows the robot's 26 qpos entries


def hold_action(env) -> np.ndarray:
    """The action whose joint targets are the qpos0 joint angles (the same on the board)."""
    base = env.unwrapped
    return (humanoid.QPOS0[7:] - base.ctrl_low) / (base.ctrl_high - base.ctrl_low) * 2 - 1


@pytest.fixture(scope="module")
def balance():
    return humanoid.H1Env("balance_simple")


def contact_names(env) -> set[frozenset[str]]:
    """The current contacts as unordered pairs of names (geom name, else its body's name)."""
    model = env.model

    def name(geom):
        return model.geom(geom).name or model.body(model.geom_bodyid[geom]).name

    return {frozenset((name(a), name(b))) for a, b in env.data.contact.geom}


def place(env, qpos) -> None:
    env.data.qpos[:] = qpos
    env.data.qvel[:] = 0
    mujoco.mj_forward(env.model, env.data)


def test_names_and_spaces():
    assert "humanoid_balance_simple" in ENV_NAMES and "humanoid_fire_cycle" in ENV_NAMES
    env = make_env("humanoid_balance_simple", seed=0)
    if not humanoid.humanoid_bench_available():
        assert env.spec.id == "envs/h1-balance_simple-builtin-v0"
    assert env.observation_space == gym.spaces.Box(-np.inf, np.inf, (64,), np.float64)
    assert env.action_space == gym.spaces.Box(-1, 1, (19,), np.float32)
    assert env.spec.max_episode_steps == 1000
    assert humanoid.SUCCESS_THRESHOLDS["balance_simple"] == 800


def test_scene_matches_humanoidbench(balance):
    """Sizes, and the board's mass and inertia as HumanoidBench's compiled model has them."""
    model = balance.model
    assert (model.nq, model.nv, model.nu) == (33, 31, 19)
    board = model.body("stand_board")
    assert board.mass[0] == pytest.approx(19.8)
    np.testing.assert_allclose(board.inertia, [2.00244, 0.15444, 2.145], rtol=1e-5)
    assert model.jnt_qposadr[model.joint("free_stand_board").id] == BOARD_QPOS.start
    pivot = model.body("rolling_pivot")
    assert model.body_jntnum[pivot.id] == 0 and model.body_weldid[pivot.id] == 0  # fixed
    sphere = model.geom("pivot_sphere_collision")
    assert sphere.size[0] == pytest.approx(0.17) and tuple(sphere.pos) == (0, 0, 0)
    np.testing.assert_allclose(model.geom("stand_board_collision").size, [0.15, 0.55, 0.03])
    assert model.body_mass[: board.id].sum() == pytest.approx(51.65, abs=0.01)  # robot unchanged


def test_reset_is_seeded_and_near_the_keyframe(balance):
    first, _ = balance.reset(seed=3)
    again, _ = balance.reset(seed=3)
    other, _ = balance.reset(seed=4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert first.shape == (64,)
    assert np.all(np.abs(first[:33] - humanoid.BALANCE_QPOS0) <= humanoid.RESET_NOISE)
    assert np.all(first[33:] == 0)  # the episode starts at rest
    assert first[2] == pytest.approx(1.38, abs=0.011)  # pelvis
    assert first[28] == pytest.approx(0.37, abs=0.011)  # board
    # standing on the board: the head 0.4 m above its 1.68 m on the floor
    assert balance.data.site_xpos[balance.head_site, 2] == pytest.approx(2.08, abs=0.02)


def test_holding_the_pose_on_the_board_scores_and_keeps_allowed_contacts(balance):
    balance.reset(seed=0)
    for _ in range(10):
        _, reward, terminated, _, info = balance.step(hold_action(balance))
        assert not terminated
    contacts = contact_names(balance)
    assert frozenset(("stand_board_collision", "pivot_sphere_collision")) in contacts
    assert frozenset(("stand_board_collision", "left_ankle_link")) in contacts
    assert info["standing"] == 1 and info["dont_move"] > 0.9 and reward > 0.8


def test_random_rewards_in_unit_interval_board_moves_sphere_stays(balance):
    obs, _ = balance.reset(seed=1)
    board_start = obs[BOARD_QPOS].copy()
    pivot = balance.model.body("rolling_pivot").id
    rng = np.random.default_rng(1)
    rewards, terminated = [], False
    while not terminated:
        obs, reward, terminated, truncated, _ = balance.step(rng.uniform(-1, 1, 19))
        rewards.append(reward)
        assert not truncated and len(rewards) < 200
    assert min(rewards) >= 0 and max(rewards) <= 1
    assert np.linalg.norm(obs[BOARD_QPOS][:3] - board_start[:3]) > 0.02  # the board moved
    assert np.abs(obs[58:64]).max() > 0.1  # and is moving
    np.testing.assert_array_equal(balance.data.xpos[pivot], humanoid.PIVOT_POS)


def test_low_pelvis_terminates(balance):
    """Holding the pose, the robot sinks until its pelvis passes 0.8 m (HumanoidBench's own env:
    76 steps, return 55.0 on seed 0); no forbidden contact is needed for that."""
    balance.reset(seed=0)
    steps, total, terminated = 0, 0.0, False
    while not terminated:
        _, reward, terminated, _, _ = balance.step(hold_action(balance))
        steps, total = steps + 1, total + reward
    assert balance.data.qpos[2] < humanoid.BALANCE_FALL_HEIGHT
    assert not balance.forbidden_contact()
    assert 60 <= steps <= 95 and 40 <= total <= 65


def test_foot_on_the_floor_terminates(balance):
    """Stepping off: the robot stands on the floor beside the board, pelvis high (0.98 m)."""
    qpos = humanoid.BALANCE_QPOS0.copy()
    qpos[:3] = (1.5, 0.0, 0.98)
    place(balance, qpos)
    assert frozenset(("floor", "left_ankle_link")) in contact_names(balance)
    assert balance.forbidden_contact() and balance.terminated()


def test_board_touching_the_floor_terminates(balance):
    """The board tipped over onto its end, the robot in the air far away."""
    qpos = humanoid.BALANCE_QPOS0.copy()
    qpos[:3] = (3.0, 0.0, 3.0)
    tilt = np.arcsin((0.37 - 0.005) / 0.55)  # the board's end dips 5 mm into the floor
    qpos[26:33] = (0.0, 0.0, 0.37, np.cos(tilt / 2), np.sin(tilt / 2), 0.0, 0.0)
    place(balance, qpos)
    assert frozenset(("floor", "stand_board_collision")) in contact_names(balance)
    assert balance.terminated()


def test_robot_touching_the_sphere_terminates(balance):
    """The board lifted away, the left foot lowered onto the top of the sphere."""
    qpos = humanoid.BALANCE_QPOS0.copy()
    qpos[26:29] = (0.0, 0.0, 3.0)
    place(balance, qpos)
    foot = balance.data.site_xpos[balance.model.site("left_foot").id].copy()
    top = np.array([*humanoid.PIVOT_POS[:2], 2 * humanoid.PIVOT_RADIUS])
    qpos[:3] += top - foot + (0.0, 0.0, 0.005)  # foot site 5 mm above the top: the sole dips in
    place(balance, qpos)
    contacts = contact_names(balance)
    assert frozenset(("pivot_sphere_collision", "left_ankle_link")) in contacts
    assert not any("floor" in pair for pair in contacts) and qpos[2] > 0.8
    assert balance.terminated()


def test_reward_raises_the_head_bound_by_the_board_height():
    still = {"torso_upright": 1.0, "actuator_force": np.zeros(19), "com_velocity": np.zeros(3)}
    on_board = humanoid.reward_terms("balance_simple", head_height=2.02, **still)
    assert on_board["standing"] == 1 and on_board["reward"] == 1
    assert "move" not in on_board and on_board["dont_move"] == 1
    # one margin (still 1.65 / 4) below the raised bound: the gaussian's 0.1
    low = humanoid.reward_terms("balance_simple", head_height=2.02 - 0.4125, **still)
    assert low["standing"] == pytest.approx(0.1)
    assert humanoid.reward_terms("stand", head_height=1.68, **still)["standing"] == 1
    assert humanoid.reward_terms("balance_simple", head_height=1.68, **still)["standing"] < 0.6


def test_passes_gymnasium_env_checker_and_spec_recreates_it():
    from gymnasium.utils.env_checker import check_env

    env = make_env("humanoid_balance_simple", seed=0)
    with pytest.warns(UserWarning, match="infinity"):  # unbounded observations, as HumanoidBench
        check_env(env.unwrapped, skip_render_check=True)
    again = gym.make(env.spec)
    np.testing.assert_array_equal(env.reset(seed=5)[0], again.reset(seed=5)[0])


def test_fire_cycle_switches_among_the_three_tasks_with_padded_observations():
    env = make_env("humanoid_fire_cycle", seed=0, switch_every=5, switch_mode="truncate")
    assert env.observation_space.shape == (64,) and env.action_space.shape == (19,)
    names, obs_by_task = [], {}
    obs, info = env.reset(seed=0)
    for _ in range(4):
        names.append(info["task_name"])
        obs_by_task.setdefault(info["task_name"], obs)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(hold_action(env.task_env))
            assert env.observation_space.contains(obs)
            done = terminated or truncated
        obs, info = env.reset()
    assert names == [
        "humanoid_walk",
        "humanoid_run",
        "humanoid_balance_simple",
        "humanoid_walk",
    ]
    for task in ("humanoid_walk", "humanoid_run"):
        assert np.all(obs_by_task[task][51:] == 0) and obs_by_task[task][2] == pytest.approx(
            0.98, abs=0.011
        )
    balance_obs = obs_by_task["humanoid_balance_simple"]
    assert balance_obs[2] == pytest.approx(1.38, abs=0.011)
    assert balance_obs[28] == pytest.approx(0.37, abs=0.011)  # the board's height


def test_fire_cycle_padding_can_be_turned_off_explicitly():
    with pytest.raises(ValueError, match="disagree on observation space.*pad_spaces=True"):
        make_env("humanoid_fire_cycle", switch_every=10, pad_spaces=False)


def test_humanoid_bench_balance_is_preferred_when_it_imports(monkeypatch):
    """A stand-in ``humanoid_bench`` that registers ``h1-balance_simple-v0`` (as the real one)."""
    fake = types.ModuleType("humanoid_bench")
    fake.__spec__ = importlib.machinery.ModuleSpec("humanoid_bench", None)
    monkeypatch.setitem(sys.modules, "humanoid_bench", fake)
    monkeypatch.setitem(
        gym.registry,
        "h1-balance_simple-v0",
        gym.envs.registration.EnvSpec(
            "h1-balance_simple-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv"
        ),
    )
    assert make_env("humanoid_balance_simple").spec.id == "h1-balance_simple-v0"
