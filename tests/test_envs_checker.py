"""Every family ``make_env`` returns passes gymnasium's env checker and rebuilds from its spec."""

import importlib.util
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from envs import CYCLE_SPEC_ID, make_env

NEVER = 10**9  # a switch_every no check reaches: gymnasium's seeded-reset checks compare
# observations of resets that a task switch in between would make differ

MUJOCO = ("mujoco",)
DMC = ("mujoco", "dm_control", "shimmy")
ATARI = ("ale_py", "cv2")
MINATAR = ("minatar",)

# (name, make_env keywords, packages it needs, how its rendering is checked):
#   "checker"   gymnasium's checker renders every declared render mode itself;
#   "rgb_array" its modes include ALE's "human", an SDL window, whose shutdown terminates the
#               EGL display that MuJoCo renders with in this process (later MuJoCo videos
#               fail): the checker skips rendering and the test renders rgb_array instead;
#   None        gymnasium's own classic-control envs render through pygame, not installed
#               with this project.
CASES = [
    ("humanoid_walk", {"action_repeat": 2}, MUJOCO, "checker"),
    ("dmc_humanoid_walk", {}, DMC, "checker"),
    ("humanoid_cycle", {"switch_every": NEVER}, MUJOCO, "checker"),
    ("atari_breakout", {}, ATARI, "rgb_array"),
    ("atari_breakout", {"training": False}, ATARI, "rgb_array"),
    ("cycle:atari_pong,atari_breakout", {"switch_every": NEVER}, ATARI, "rgb_array"),
    ("Pendulum-v1", {}, (), None),
    (
        "cycle:CartPole-v1",
        {"switch_every": NEVER, "permute_observations": True, "permute_actions": True},
        (),
        None,
    ),
    ("minatar_space_invaders", {}, MINATAR, "checker"),
    ("minatar_cycle", {"switch_every": NEVER}, MINATAR, "checker"),
    (
        "minatar_seaquest",
        {"switch_every": NEVER, "permute_observations": True, "permute_actions": True},
        MINATAR,
        "checker",
    ),
]


def mujoco_renders() -> bool:
    """Whether MuJoCo can render off-screen here (CI installs EGL; a bare machine may not)."""
    if importlib.util.find_spec("mujoco") is None:
        return False
    from envs.video import EGL_MISSING

    return EGL_MISSING is None


def wrapper_chain(env: gym.Env) -> list[str]:
    names = []
    while isinstance(env, gym.Wrapper):
        names.append(type(env).__name__)
        env = env.env
    return [*names, type(env).__name__]


@pytest.mark.parametrize(
    ("name", "kwargs", "modules", "render"),
    CASES,
    ids=[f"{name}{'-' + '-'.join(kw) if kw else ''}" for name, kw, *_ in CASES],
)
def test_passes_gymnasium_env_checker(name, kwargs, modules, render):
    for module in modules:
        pytest.importorskip(module)
    env = make_env(name, **kwargs)
    renders = render is not None and (modules not in (MUJOCO, DMC) or mujoco_renders())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env, skip_render_check=render != "checker" or not renders)
    messages = [str(w.message) for w in caught]
    # the checker re-created the env from env.spec; it says so when there is no spec
    assert not [m for m in messages if "not having a spec" in m]
    rebuilt = gym.make(env.spec)
    assert wrapper_chain(rebuilt) == wrapper_chain(env)
    assert rebuilt.observation_space == env.observation_space
    assert rebuilt.action_space == env.action_space
    assert rebuilt.metadata.get("render_fps") == env.metadata.get("render_fps")
    if render == "rgb_array" and renders:
        copy = gym.make(env.spec, render_mode="rgb_array")
        copy.reset(seed=0)
        frame = copy.render()
        assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
        copy.close()
    env.close()


def test_cycle_spec_rebuilds_the_same_cycle():
    name = "cycle:Pendulum-v1,MountainCarContinuous-v0"
    env = make_env(name, switch_every=500, switch_mode="truncate", pad_spaces=True)
    assert env.spec.id == CYCLE_SPEC_ID
    rebuilt = gym.make(env.spec)
    assert rebuilt.task_names == env.task_names
    assert (rebuilt.switch_every, rebuilt.switch_mode) == (500, "truncate")
    assert rebuilt.observation_space == env.observation_space  # padded alike
    np.testing.assert_array_equal(rebuilt.reset(seed=4)[0], env.reset(seed=4)[0])
