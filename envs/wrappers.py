"""Small wrappers shared by every environment family."""

from __future__ import annotations

import gymnasium as gym


class ActionRepeat(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Repeat each action ``repeat`` times and sum the rewards; stop early when the episode ends.

    SimBa (Lee et al. 2024) and FIRE use ``repeat=2`` on HumanoidBench; ``info`` is the one of
    the last inner step.
    """

    def __init__(self, env: gym.Env, repeat: int):
        if repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {repeat}")
        # recorded so that gym.make(env.spec) rebuilds the wrapper (gymnasium's env checker does)
        gym.utils.RecordConstructorArgs.__init__(self, repeat=repeat)
        gym.Wrapper.__init__(self, env)
        self.repeat = repeat
        if "render_fps" in env.metadata:  # one rendered frame per `repeat` inner steps
            self.metadata = {**env.metadata, "render_fps": env.metadata["render_fps"] / repeat}

    def step(self, action):
        total_reward = 0.0
        for _ in range(self.repeat):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total_reward += float(reward)
            if terminated or truncated:
                break
        return obs, total_reward, terminated, truncated, info


class RenderFps(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Set ``metadata["render_fps"]`` (the frame rate of recorded videos) to ``fps``.

    A wrapper rather than an assignment to ``env.metadata``, because gymnasium rebuilds an
    env from ``env.spec`` through its recorded wrappers: an assigned value would be lost.
    """

    def __init__(self, env: gym.Env, fps: float):
        gym.utils.RecordConstructorArgs.__init__(self, fps=fps)
        gym.Wrapper.__init__(self, env)
        self.metadata = {**env.metadata, "render_fps": fps}


def find_wrapper(env: gym.Env, wrapper_type: type) -> gym.Wrapper | None:
    """The outermost ``wrapper_type`` in ``env``'s wrapper chain, or None."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, wrapper_type):
            return env
        env = env.env
    return None
