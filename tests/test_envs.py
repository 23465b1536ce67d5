"""make_env names, the built-in H1 tasks, Atari preprocessing, action repeat."""

import importlib.machinery
import importlib.util
import sys
import types

import gymnasium as gym
import numpy as np
import pytest

from envs import ENV_NAMES, make_env

mujoco = pytest.importorskip("mujoco")
humanoid = pytest.importorskip("envs.humanoid")


def qpos0_action(env) -> np.ndarray:
    """The action whose joint targets are the qpos0 joint angles."""
    base = env.unwrapped
    return (humanoid.QPOS0[7:] - base.ctrl_low) / (base.ctrl_high - base.ctrl_low) * 2 - 1


@pytest.fixture(scope="module")
def h1_model():
    return humanoid.build_h1_model()


# --- make_env ---------------------------------------------------------------------------------


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="humanoid_walk.*atari_<game>.*gymnasium id"):
        make_env("no_such_env")


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_gymnasium_ids_pass_through(env_id):
    env = make_env(env_id, seed=3)
    assert env.spec.id == env_id
    env.step(env.action_space.sample())


def test_env_names_cover_families():
    for name in (
        "humanoid_walk",
        "humanoid_stand",
        "humanoid_run",
        "dmc_humanoid_walk",
        "atari_breakout",
        "atari_pong",
        "atari_cycle",
        "humanoid_cycle",
    ):
        assert name in ENV_NAMES
    assert set(humanoid.TASKS) == {"walk", "stand", "run", "balance_simple"}


def test_action_repeat_halves_the_episode():
    env = make_env("Pendulum-v1", action_repeat=2)
    steps, truncated = 0, False
    while not truncated:
        _, reward, _, truncated, _ = env.step(env.action_space.sample())
        steps += 1
    assert steps == 100  # Pendulum's 200-step limit, two env steps per agent step
    assert reward <= 0


def test_switch_every_without_cycle_is_an_error():
    with pytest.raises(ValueError, match="need a cycle"):
        make_env("CartPole-v1", switch_every=10)


# --- built-in H1 (HumanoidBench-style, menagerie H1) ------------------------------------------


def test_h1_model_matches_humanoidbench_sizes(h1_model):
    assert (h1_model.nq, h1_model.nv, h1_model.nu) == (26, 25, 19)
    assert h1_model.body_mass.sum() == pytest.approx(51.65, abs=0.01)
    assert h1_model.opt.timestep == 0.002


def test_h1_servos(h1_model):
    knee = h1_model.actuator("left_knee")
    assert knee.gainprm[0] == 300 and knee.biasprm[1] == -300 and knee.biasprm[2] == -6
    assert tuple(knee.forcerange) == (-300, 300)
    hip_pitch = h1_model.actuator("right_hip_pitch")
    assert tuple(hip_pitch.ctrlrange) == pytest.approx(humanoid.HIP_PITCH_RANGE)
    assert tuple(h1_model.actuator("left_elbow").forcerange) == (-18, 18)
    assert h1_model.body("left_ankle_link").mass[0] == pytest.approx(0.552448)
    for name in ("com", "head", "left_foot", "right_hand"):
        h1_model.site(name)
    assert h1_model.nsensordata == 2 + 3 * 3 + 3
    assert h1_model.nexclude == 0


def test_h1_collides_with_link_meshes(h1_model):
    collision = h1_model.geom_group == 3
    mesh_bodies = set(h1_model.geom_bodyid[collision & (h1_model.geom_type == 7)])
    moving_bodies = set(range(1, h1_model.nbody)) - {
        h1_model.body(f"{s}_hand").id for s in ("left", "right")
    }
    hip_yaw = {h1_model.body(f"{s}_hip_yaw_link").id for s in ("left", "right")}
    assert mesh_bodies == moving_bodies - hip_yaw
    assert all(
        h1_model.geom_type[collision & np.isin(h1_model.geom_bodyid, list(hip_yaw))]
        == mujoco.mjtGeom.mjGEOM_CYLINDER
    )


def test_h1_reset_spaces_and_head_height():
    env = make_env("humanoid_walk", seed=0)
    assert env.spec.id == humanoid.builtin_id("walk") or humanoid.humanoid_bench_available()
    assert env.observation_space.shape == (51,) and env.action_space.shape == (19,)
    assert env.spec.max_episode_steps == 1000
    obs, _ = env.reset(seed=1)
    assert obs.shape == (51,)
    base = env.unwrapped
    assert base.data.site_xpos[base.head_site, 2] == pytest.approx(1.68, abs=0.02)
    assert np.all(np.abs(obs[:26] - humanoid.QPOS0) <= humanoid.RESET_NOISE)


def test_h1_rewards_in_unit_interval_and_fall_terminates():
    env = make_env("humanoid_run", seed=0)
    rewards, terminated = [], False
    for _ in range(300):
        _, reward, terminated, *_ = env.step(env.action_space.sample())
        rewards.append(reward)
        if terminated:
            break
    assert terminated and env.unwrapped.data.qpos[2] < humanoid.FALL_HEIGHT
    assert min(rewards) >= 0 and max(rewards) <= 1


def test_h1_holding_qpos0_falls_after_about_100_steps():
    env = make_env("humanoid_stand", seed=0)
    env.reset(seed=0)
    action, total, steps, terminated = qpos0_action(env), 0.0, 0, False
    while not terminated:
        _, reward, terminated, _, _ = env.step(action)
        total += reward
        steps += 1
    assert 70 <= steps <= 130  # reference: about 96
    assert 40 <= total <= 90  # reference: about 67


def test_standing_still_scores_higher_on_stand_than_on_run():
    rewards = {}
    for task in ("stand", "run"):
        env = humanoid.H1Env(task)
        env.reset(seed=0)
        _, rewards[task], *_ = env.step(qpos0_action(env))
    assert rewards["stand"] > 3 * rewards["run"]


def test_reward_pieces_at_known_state():
    """At qpos0 with zero velocity and targets = qpos0: head 1.68 m, torso upright, no force,
    no motion -> stand 1, walk and run 1/6 (only the move term is off)."""
    for task, expected in (("stand", 1.0), ("walk", 1 / 6), ("run", 1 / 6)):
        env = humanoid.H1Env(task)
        env.reset(seed=0)
        env.data.qpos[:] = humanoid.QPOS0
        env.data.qvel[:] = 0
        env.data.ctrl[:] = env.joint_targets(qpos0_action(env))
        mujoco.mj_forward(env.model, env.data)
        terms = env.reward_terms()
        assert terms["standing"] == 1 and terms["upright"] == pytest.approx(1)
        assert terms["small_control"] == pytest.approx(1)
        assert terms["reward"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        # head at the threshold minus one margin -> 0.1 (gaussian), torso zz 0.9 - 0.95 -> 0.5
        ({"head_height": 1.65 - 0.4125, "torso_upright": -0.05}, {"standing": 0.1, "upright": 0.5}),
        # forces 5 and 10 N*m -> 1 - 0.25 and 0 -> small_control (4 + 0.375) / 5
        ({"actuator_force": np.array([5.0, 10.0])}, {"small_control": 0.875}),
        # walk speed 0.5 of 1 -> move (5 * 0.5 + 1) / 6
        ({"com_velocity": np.array([0.5, 0.0, 0.0])}, {"move": 3.5 / 6}),
    ],
)
def test_reward_pieces_against_hand_computed(inputs, expected):
    upright_still = {
        "head_height": 1.7,
        "torso_upright": 1.0,
        "actuator_force": np.zeros(19),
        "com_velocity": np.zeros(3),
    }
    terms = humanoid.reward_terms("walk", **(upright_still | inputs))
    for name, value in expected.items():
        assert terms[name] == pytest.approx(value, abs=1e-9)


def test_dont_move_is_gaussian_in_horizontal_speed():
    terms = humanoid.reward_terms("stand", 1.7, 1.0, np.zeros(19), np.array([2.0, 0.0, 5.0]))
    assert terms["dont_move"] == pytest.approx((0.1 + 1) / 2)


def test_tolerance_matches_dm_control():
    rewards = pytest.importorskip("dm_control.utils.rewards")
    x = np.linspace(-4, 4, 81)
    for kwargs in (
        {"bounds": (1.65, np.inf), "margin": 0.4125},
        {"bounds": (0.9, np.inf), "margin": 1.9, "sigmoid": "linear", "value_at_margin": 0},
        {"margin": 10, "sigmoid": "quadratic", "value_at_margin": 0},
        {"margin": 2},
    ):
        np.testing.assert_allclose(humanoid.tolerance(x, **kwargs), rewards.tolerance(x, **kwargs))


def test_dmc_humanoid_is_flat():
    pytest.importorskip("shimmy")
    pytest.importorskip("dm_control")
    env = make_env("dmc_humanoid_stand")
    assert env.observation_space.shape == (67,) and env.action_space.shape == (21,)
    obs, *_ = env.step(env.action_space.sample())
    assert obs.shape == (67,)


# --- Atari ------------------------------------------------------------------------------------


@pytest.fixture
def ale():
    pytest.importorskip("cv2")
    return pytest.importorskip("ale_py")


def test_atari_preprocessing(ale):
    env = make_env("atari_breakout", seed=0)
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert env.action_space == gym.spaces.Discrete(4)
    obs, *_ = env.step(1)
    assert obs.shape == (4, 84, 84) and obs.dtype == np.uint8
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0


def test_atari_options(ale):
    env = make_env("atari_pong", full_action_space=True, sticky_actions=True)
    assert env.action_space == gym.spaces.Discrete(18)
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)


def test_atari_training_clips_rewards_and_ends_episodes_on_life_loss(ale):
    env = make_env("atari_breakout", seed=0)
    terminated, rewards = False, set()
    while not terminated:
        _, reward, terminated, *_ = env.step(env.action_space.sample())
        rewards.add(reward)
    assert rewards <= {-1.0, 0.0, 1.0}
    assert env.unwrapped.ale.lives() == 4  # one life lost, the game goes on
    env.reset()
    assert env.unwrapped.ale.lives() == 4


def test_atari_evaluation_presses_fire_after_each_lost_life(ale):
    env = make_env("atari_breakout", seed=0, training=False)  # whole games, raw scores
    env.reset(seed=0)
    for _ in range(3000):  # never pressing FIRE itself, the agent still gets every ball
        *_, terminated, truncated, info = env.step(0)
        if terminated or truncated:
            break
    assert terminated and env.unwrapped.ale.lives() == 0 and "episode" in info


def test_videos_play_in_real_time():
    assert make_env("humanoid_walk").metadata["render_fps"] == 50
    assert make_env("humanoid_walk", action_repeat=2).metadata["render_fps"] == 25


def test_atari_videos_play_in_real_time(ale):
    assert make_env("atari_pong").metadata["render_fps"] == 15  # 60 Hz, 4 frames per step


def test_atari_unknown_game(ale):
    with pytest.raises(ValueError, match="unknown Atari game"):
        make_env("atari_no_such_game")


def test_atari_57_names_exist(ale):
    from envs.atari import ATARI_57, ale_id, import_ale

    import_ale()
    assert len(ATARI_57) == 57
    assert all(ale_id(game) in gym.registry for game in ATARI_57)


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("atari_pong", "ale_py"),
        ("humanoid_walk", "mujoco"),
        ("dmc_humanoid_walk", "shimmy"),
        ("minatar_breakout", "minatar"),
    ],
)
def test_missing_optional_dependency_says_what_to_install(monkeypatch, name, module):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda mod, *args: None if mod == module else find_spec(mod, *args),
    )
    with pytest.raises(ModuleNotFoundError, match=f"needs {module}.*pip install"):
        make_env(name)


def test_humanoid_bench_is_preferred_when_it_imports(monkeypatch):
    """A stand-in ``humanoid_bench`` that registers ``h1-walk-v0`` (as the real one does)."""
    fake = types.ModuleType("humanoid_bench")
    fake.__spec__ = importlib.machinery.ModuleSpec("humanoid_bench", None)
    monkeypatch.setitem(sys.modules, "humanoid_bench", fake)
    monkeypatch.setitem(
        gym.registry,
        "h1-walk-v0",
        gym.envs.registration.EnvSpec(
            "h1-walk-v0", entry_point="gymnasium.envs.classic_control:CartPoleEnv"
        ),
    )
    assert make_env("humanoid_walk").spec.id == "h1-walk-v0"
