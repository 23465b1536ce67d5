"""Record evaluation episodes of any of our environments to ``videos/<run_name>/*.mp4``.

Uses gymnasium's ``RecordVideo`` (which writes MP4 through moviepy). MuJoCo renders off-screen
through EGL (Mesa works without a GPU or a display), so on Linux ``MUJOCO_GL`` is set to ``egl``
when it is unset and an EGL library loads; that only takes effect before ``mujoco`` or
``dm_control`` is imported, which is why importing ``envs`` calls :func:`use_offscreen_gl` (and
loads neither). Without an EGL library ``MUJOCO_GL`` stays unset: with ``egl`` selected,
``import mujoco`` itself would fail, and training must never depend on GL. Only a requested
video then finds out, with one warning, that MuJoCo cannot render. When no frame can be
rendered (no GL library, no moviepy) the helpers warn and go on without video.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import warnings
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym

from envs.nonstationary import TaskCycle

VIDEO_ROOT = "videos"
VIDEO_FPS = 25
"""frame rate videos aim at: an env that renders at 50 steps/s is recorded every 2nd step"""


# Why MUJOCO_GL was left unset on this Linux machine (no EGL library), or None; said once, in
# the warning of the first video that cannot be rendered.
EGL_MISSING: str | None = None
_egl_warning_given = False
# Env classes whose rendering failed in this process, with the reason: never tried again, since
# MuJoCo's GLFW back end aborts the whole process on a second attempt without a display.
_render_failures: dict[type, str] = {}


def egl_library() -> str | None:
    """The EGL library this process can load, or None.

    MuJoCo's EGL back end loads it through PyOpenGL, which tries ``libEGL.so`` and versioned
    names; the usual ``libEGL.so.1`` (glvnd, Mesa, NVIDIA) comes first, ``find_library``
    (slower: it runs ``ldconfig``) last.
    """
    for name in ("libEGL.so.1", "libEGL.so", ctypes.util.find_library("EGL")):
        if name is None:
            continue
        try:
            ctypes.CDLL(name)
        except OSError:
            continue
        return name
    return None


def use_offscreen_gl() -> None:
    """Select MuJoCo's EGL back end on Linux when an EGL library loads, unless the user chose
    a back end (``MUJOCO_GL``); other systems keep MuJoCo's default, since they reject ``egl``.

    Without EGL nothing is printed here (training never renders): :data:`EGL_MISSING` keeps
    the reason for the warning of the first video that cannot be rendered.
    """
    global EGL_MISSING
    if platform.system() != "Linux" or "MUJOCO_GL" in os.environ:
        return
    if egl_library() is None:
        EGL_MISSING = "no EGL library (libEGL.so.1) could be loaded, so MUJOCO_GL was left unset"
    else:
        os.environ["MUJOCO_GL"] = "egl"


def rendering_class(env: gym.Env) -> type:
    """The class whose ``render`` draws ``env``'s frames: a task cycle's current task's."""
    base = env.unwrapped
    return type(base.task_env.unwrapped if isinstance(base, TaskCycle) else base)


def video_unavailable_reason(env: gym.Env) -> str | None:
    """Why ``env`` cannot be recorded, or None when a frame renders and moviepy imports."""
    if env.render_mode != "rgb_array":
        return f"render_mode is {env.render_mode!r}, not 'rgb_array'"
    try:
        import moviepy  # noqa: F401  (RecordVideo encodes with it)
    except ModuleNotFoundError:
        return "moviepy is not installed (pip install moviepy)"
    renderer = rendering_class(env)
    if renderer in _render_failures:
        return _render_failures[renderer]
    try:
        with warnings.catch_warnings():
            # GLFW (MuJoCo's default without EGL) warns on its way to failing without a
            # display; the failure itself is the reason returned
            warnings.simplefilter("ignore")
            env.reset()
            env.render()
    except Exception as error:  # noqa: BLE001  (any GL failure just means: no video)
        _render_failures[renderer] = f"rendering failed ({type(error).__name__}: {error})"
        return _render_failures[renderer]
    return None


def with_video(
    env: gym.Env,
    run_name: str,
    root: str | Path = VIDEO_ROOT,
    name_prefix: str = "eval",
    recorded: int | None = None,
) -> gym.Env:
    """``env`` (made with ``render_mode="rgb_array"``) recording its first ``recorded``
    episodes (None: every one) to ``<root>/<run_name>/``; the unchanged ``env`` plus a warning
    when video cannot work. Episodes not recorded are not rendered."""
    global _egl_warning_given
    reason = video_unavailable_reason(env)
    if reason is not None and EGL_MISSING is not None and reason.startswith("rendering failed"):
        # the same cause for every MuJoCo video of the process: said once
        if not _egl_warning_given:
            _egl_warning_given = True
            warnings.warn(
                f"videos are off: {EGL_MISSING}, and MuJoCo cannot render without it "
                f"({reason}); "
                "install EGL (libegl1 libgl1-mesa-dri) or set MUJOCO_GL=osmesa",
                stacklevel=2,
            )
        return env
    if reason is not None:
        warnings.warn(
            f"no video for {run_name}: {reason}; for MuJoCo install EGL/Mesa "
            "(libegl1 libgl1-mesa-dri) and import envs before mujoco, or set MUJOCO_GL",
            stacklevel=2,
        )
        return env
    render_fps = env.metadata.get("render_fps") or VIDEO_FPS
    return SparseRecordVideo(
        env,
        str(Path(root) / run_name),
        every=max(1, round(render_fps / VIDEO_FPS)),
        episode_trigger=lambda episode: recorded is None or episode < recorded,
        name_prefix=name_prefix,
        disable_logger=True,
    )


class SparseRecordVideo(gym.wrappers.RecordVideo):
    """``RecordVideo`` that renders only every ``every``-th frame, played at ``render_fps /
    every``: the video lasts as long as the episode, at a frame rate still smooth to watch,
    for a fraction of the rendering, which dominates an evaluation on a CPU renderer."""

    def __init__(self, env: gym.Env, video_folder: str, every: int, **kwargs):
        render_fps = env.metadata.get("render_fps") or VIDEO_FPS
        super().__init__(env, video_folder, fps=max(1, round(render_fps / every)), **kwargs)
        self.every = every
        self.frames_seen = 0

    def start_recording(self, video_name: str) -> None:
        self.frames_seen = 0
        super().start_recording(video_name)

    def _capture_frame(self) -> None:
        self.frames_seen += 1
        if (self.frames_seen - 1) % self.every == 0:
            super()._capture_frame()


def record_episodes(
    env: gym.Env,
    policy: Callable,
    run_name: str,
    episodes: int = 1,
    root: str | Path = VIDEO_ROOT,
    seed: int | None = None,
    recorded: int | None = None,
) -> list[float]:
    """Run ``episodes`` evaluation episodes of ``policy(obs) -> action`` on ``env`` (made with
    ``render_mode="rgb_array"``), recording the first ``recorded`` of them (None: all) to
    ``<root>/<run_name>/*.mp4``; returns the episode returns. ``env`` is closed afterwards,
    which finishes the last video file."""
    env = with_video(env, run_name, root, recorded=recorded)
    returns = []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=None if seed is None else seed + episode)
            done, total = False, 0.0
            while not done:
                obs, reward, terminated, truncated, _ = env.step(policy(obs))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return returns
