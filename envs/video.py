"""Record evaluation episodes of any of our environments to ``videos/<run_name>/*.mp4``.

Uses gymnasium's ``RecordVideo`` (which writes MP4 through moviepy). MuJoCo renders off-screen
through EGL (Mesa works without a GPU or a display), so on Linux ``MUJOCO_GL`` is set to ``egl``
when it is unset; that only takes effect before ``mujoco`` or ``dm_control`` is imported, which is
why importing ``envs`` calls :func:`use_offscreen_gl` (and loads neither). When no frame can be
rendered (no GL library, no moviepy) the helpers warn and go on without video.
"""

from __future__ import annotations

import os
import platform
import warnings
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym

VIDEO_ROOT = "videos"


def use_offscreen_gl() -> None:
    """Select MuJoCo's EGL back end on Linux unless the user chose one (``MUJOCO_GL``); other
    systems keep MuJoCo's default, since they reject ``egl``."""
    if platform.system() == "Linux":
        os.environ.setdefault("MUJOCO_GL", "egl")


def video_unavailable_reason(env: gym.Env) -> str | None:
    """Why ``env`` cannot be recorded, or None when a frame renders and moviepy imports."""
    if env.render_mode != "rgb_array":
        return f"render_mode is {env.render_mode!r}, not 'rgb_array'"
    try:
        import moviepy  # noqa: F401  (RecordVideo encodes with it)
    except ModuleNotFoundError:
        return "moviepy is not installed (pip install moviepy)"
    try:
        env.reset()
        env.render()
    except Exception as error:  # noqa: BLE001  (any GL failure just means: no video)
        return f"rendering failed ({type(error).__name__}: {error})"
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
    reason = video_unavailable_reason(env)
    if reason is not None:
        warnings.warn(
            f"no video for {run_name}: {reason}; for MuJoCo install EGL/Mesa "
            "(libegl1 libgl1-mesa-dri) and import envs before mujoco, or set MUJOCO_GL",
            stacklevel=2,
        )
        return env
    return gym.wrappers.RecordVideo(
        env,
        str(Path(root) / run_name),
        episode_trigger=lambda episode: recorded is None or episode < recorded,
        name_prefix=name_prefix,
        disable_logger=True,
    )


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
