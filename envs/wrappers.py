"""Small wrappers shared by every environment family."""

from __future__ import annotations

import gymnasium as gym


class ActionRepeat(gym.Wrapper):
    """Repeat each action ``repeat`` times and sum the rewards; stop early when the episode ends.

    SimBa (Lee et al. 2024) and FIRE use ``repeat=2`` on HumanoidBench; ``info`` is the one of
    the last inner step.
    """

    def __init__(self, env: gym.Env, repeat: int):
        if repeat < 1:
            raise ValueError(f"action_repeat must be >= 1, got {repeat}")
        super().__init__(env)
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


def find_wrapper(env: gym.Env, wrapper_type: type) -> gym.Wrapper | None:
    """The outermost ``wrapper_type`` in ``env``'s wrapper chain, or None."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, wrapper_type):
            return env
        env = env.env
    return None
