"""Video recording of evaluation episodes, and the warning when nothing can be rendered."""

import gymnasium as gym
import numpy as np
import pytest

from envs import make_env
from envs.video import record_episodes, video_unavailable_reason, with_video

pytest.importorskip("moviepy")


class UnrenderableEnv(gym.Env):
    """A one-step env whose render fails as it does without any OpenGL library."""

    observation_space = gym.spaces.Box(0, 1, (1,))
    action_space = gym.spaces.Discrete(2)
    render_mode = "rgb_array"

    def reset(self, *, seed=None, options=None):
        return np.zeros(1, np.float32), {}

    def step(self, action):
        return np.zeros(1, np.float32), 1.0, True, False, {}

    def render(self):
        raise RuntimeError("an OpenGL platform library has not been loaded")


def test_missing_gl_warns_and_still_runs(tmp_path):
    with pytest.warns(UserWarning, match="no video for run.*rendering failed"):
        returns = record_episodes(UnrenderableEnv(), lambda obs: 0, "run", root=tmp_path)
    assert returns == [1.0]
    assert not list(tmp_path.rglob("*.mp4"))


def test_no_rgb_array_render_mode_warns(tmp_path):
    env = make_env("CartPole-v1")
    with pytest.warns(UserWarning, match="render_mode is None"):
        assert with_video(env, "run", root=tmp_path) is env


def record_or_skip(name, tmp_path, steps, **kwargs):
    env = make_env(name, render_mode="rgb_array", **kwargs)
    reason = video_unavailable_reason(env)
    if reason is not None:
        pytest.skip(reason)
    env = gym.wrappers.TimeLimit(env, steps)
    record_episodes(env, lambda obs: env.action_space.sample(), "clip", root=tmp_path)
    return list((tmp_path / "clip").glob("*.mp4"))


def test_humanoid_episode_recorded(tmp_path):
    pytest.importorskip("mujoco")
    videos = record_or_skip("humanoid_walk", tmp_path, steps=5)
    assert len(videos) == 1 and videos[0].stat().st_size > 1000


def test_atari_episode_recorded(tmp_path):
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    videos = record_or_skip("atari_pong", tmp_path, steps=20, training=False)
    assert len(videos) == 1 and videos[0].stat().st_size > 1000
