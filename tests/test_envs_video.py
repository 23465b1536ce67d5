"""Video recording of evaluation episodes, and the warning when nothing can be rendered."""

import os
import subprocess
import sys
from pathlib import Path

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


# --- a machine without an EGL library ---------------------------------------------------------

# Makes every EGL library unloadable for the process, as on a machine without libEGL: the
# loader probe of envs.video and PyOpenGL (which MuJoCo's EGL back end uses) both go through
# ctypes.
WITHOUT_EGL = """
import ctypes, ctypes.util
find_library = ctypes.util.find_library
ctypes.util.find_library = lambda name: None if "EGL" in name else find_library(name)
load = ctypes.CDLL.__init__
def refuse_egl(self, name, *args, **kwargs):
    if name is not None and "EGL" in str(name):
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")
    load(self, name, *args, **kwargs)
ctypes.CDLL.__init__ = refuse_egl
"""

TRAIN_THEN_RECORD = """
import os, warnings
import envs
from envs.video import with_video
print("MUJOCO_GL", os.environ.get("MUJOCO_GL"))
env = envs.make_env("humanoid_walk", seed=0)
for _ in range(5):
    env.step(env.action_space.sample())
print("trained")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for run in ("first", "second", "third"):  # a second render attempt used to abort
        with_video(envs.make_env("humanoid_walk", render_mode="rgb_array"), run)
print("video warnings", len(caught), *(str(w.message)[:60] for w in caught))
"""


def run_without_egl(script: str, **env_vars) -> subprocess.CompletedProcess:
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("MUJOCO_GL", "PYOPENGL_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")
    }
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EGL + script],
        cwd=Path(__file__).parents[1],
        env={**environment, **env_vars},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_without_egl_mujoco_trains_silently_and_videos_warn_once():
    pytest.importorskip("mujoco")
    result = run_without_egl(TRAIN_THEN_RECORD)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr == ""  # nothing alarming while training, the one warning was caught
    lines = result.stdout.splitlines()
    assert lines[:2] == ["MUJOCO_GL None", "trained"]
    assert lines[2].startswith("video warnings 1 videos are off: no EGL library")


def test_without_egl_the_simulation_breaks_mujoco_egl():
    """The check above can fail: with EGL selected anyway, importing mujoco crashes."""
    pytest.importorskip("mujoco")
    result = run_without_egl("import envs, mujoco", MUJOCO_GL="egl")
    assert result.returncode != 0 and "eglQueryString" in result.stderr


class Clock(gym.Env):
    """Ten steps a second of 50, each rendered as a frame of its own colour."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50}
    observation_space = gym.spaces.Box(0, 1, (1,))
    action_space = gym.spaces.Discrete(1)

    def __init__(self, render_mode="rgb_array"):
        self.render_mode, self.t = render_mode, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(1, np.float32), 1.0, self.t >= 10, False, {}

    def render(self):
        return np.full((16, 16, 3), 20 * self.t, np.uint8)


def test_videos_render_every_other_frame_of_a_50_hz_env_at_25_fps(tmp_path):
    from moviepy import VideoFileClip

    record_episodes(Clock(), lambda obs: 0, "clock", root=tmp_path)
    (video,) = (tmp_path / "clock").glob("*.mp4")
    clip = VideoFileClip(str(video))
    # 11 frames (reset + 10 steps), every 2nd kept: 6 frames at 25 fps, as long as the episode
    assert clip.fps == 25 and clip.n_frames == 6
    assert abs(clip.duration - 6 / 25) < 1e-6
    clip.close()
