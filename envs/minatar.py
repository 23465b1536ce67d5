"""MinAtar games as ``minatar_<game>`` (e.g. ``minatar_breakout``): a cheap Atari-like testbed.

MinAtar (Young & Tian 2019, "MinAtar: An Atari-Inspired Testbed for Thorough and Reproducible
Reinforcement Learning Experiments"; ``pip install minatar``) reimplements five Atari games on
a 10x10 grid whose cells are on/off in a few object channels (asterix 4, breakout 4, freeway
7, seaquest 10, space_invaders 6). A step costs microseconds and a small conv net learns them
in a few million steps on a CPU, so plasticity experiments that cycle games run in hours, not
days.

What :class:`MinAtarEnv` returns, and why:

- Observations are ``uint8`` arrays of shape (channels, 10, 10), channels first as torch's
  convolutions expect, each cell 0 or 255. 255 rather than 1 because the agents divide
  ``uint8`` observations by 255 (as for Atari frames) and keep them as bytes in the replay
  buffer: the networks see MinAtar's own 0/1 inputs and a buffer holds 4x more states than
  with float32.
- The action space is MinAtar's full set of six actions, shared by every game: 0 no-op,
  1 left, 2 up, 3 right, 4 down, 5 fire (actions a game does not use act as a no-op). The
  MinAtar paper's results use this set; it lets one network play every game of a cycle.
- Sticky actions (Machado et al. 2018): with probability 0.1 (MinAtar's default) the
  previous action is repeated instead of the chosen one; each episode starts from a no-op
  as the ALE's do (MinAtar itself carries the last action over into the next episode, which
  would make an episode's start depend on the one before). Difficulty ramping (enemies get
  faster over an episode in asterix and seaquest) is on, as MinAtar's default.
- Episodes end as MinAtar's games end them (freeway after its 2500 frames, the others when
  the player dies); a gymnasium ``TimeLimit`` truncates them at ``MAX_EPISODE_STEPS`` =
  10,000 steps, far beyond a typical episode, because breakout and space_invaders refill
  their board and a strong agent could otherwise play one episode forever. MinAtar's own
  DQN has no limit.
- Rewards are MinAtar's (+1 per brick, enemy, treasure or crossing; no clipping needed).
- ``reset(seed=...)`` makes episodes reproducible: the game's random stream and the sticky
  actions are both drawn from the seed.
- ``render_mode="rgb_array"`` gives a 160x160 RGB frame (16 pixels per cell, one colour per
  channel) for videos.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.deps import PIP_MINATAR, require

MINATAR_PREFIX = "minatar_"
MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
ACTION_MEANINGS = ("NOOP", "LEFT", "UP", "RIGHT", "DOWN", "FIRE")  # MinAtar's "n l u r d f"
STICKY_ACTION_PROBABILITY = 0.1  # MinAtar's default
MAX_EPISODE_STEPS = 10_000
ON = 255  # value of an occupied cell: the agents scale uint8 inputs by 1/255
CELL_PIXELS = 16  # rendered frames are 160x160, a multiple of 16 as video encoders like
# One colour per channel index (a game has at most 10 channels); where several channels are
# on in a cell the highest index is drawn, as MinAtar's own display does.
PALETTE = np.array(
    [
        (255, 215, 0),
        (0, 190, 255),
        (240, 70, 70),
        (110, 210, 90),
        (190, 120, 255),
        (255, 150, 40),
        (245, 245, 245),
        (255, 110, 180),
        (150, 150, 150),
        (70, 100, 255),
    ],
    dtype=np.uint8,
)


def env_id(game: str) -> str:
    """The gymnasium id under which ``game`` is registered (``envs/minatar-breakout-v0``)."""
    return f"envs/minatar-{game}-v0"


def check_game(game: str) -> None:
    if game not in MINATAR_GAMES:
        raise ValueError(
            f"unknown MinAtar game {game!r}: use one of "
            f"{', '.join(MINATAR_PREFIX + g for g in MINATAR_GAMES)}"
        )


class MinAtarEnv(gym.Env):
    """One MinAtar game as a gymnasium env; see the module docstring for the conventions.

    ``sticky_action_probability`` (default 0.1) and ``difficulty_ramping`` (default on) are
    MinAtar's options under gymnasium-style names.
    """

    # MinAtar has no clock; 15 frames/s is the pace of an Atari agent (60 Hz, 4 frames a step)
    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        game: str,
        render_mode: str | None = None,
        sticky_action_probability: float = STICKY_ACTION_PROBABILITY,
        difficulty_ramping: bool = True,
    ):
        require(("minatar",), "minatar_*", PIP_MINATAR)
        from minatar import Environment

        check_game(game)
        if not 0 <= sticky_action_probability <= 1:
            raise ValueError(
                f"sticky_action_probability must be in [0, 1], got {sticky_action_probability}"
            )
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.game_name = game
        self.render_mode = render_mode
        self.sticky_action_probability = sticky_action_probability
        # MinAtar's own sticky actions draw from the game's random stream and outlive the
        # episode; ours draw from np_random and restart at each reset (module docstring)
        self.game = Environment(game, sticky_action_prob=0.0, difficulty_ramping=difficulty_ramping)
        height, width, channels = self.game.state_shape()  # (10, 10, C)
        self.observation_space = spaces.Box(0, ON, (channels, height, width), np.uint8)
        self.action_space = spaces.Discrete(len(ACTION_MEANINGS))
        self.previous_action = 0
        self.game_seeded = False

    def get_action_meanings(self) -> list[str]:
        return list(ACTION_MEANINGS)

    def observation(self) -> np.ndarray:
        # MinAtar's state is a fresh bool (10, 10, C) array; the product is a new C-ordered
        # uint8 array, so no two calls share memory
        state = self.game.state()
        return np.ascontiguousarray(state.transpose(2, 0, 1), dtype=np.uint8) * np.uint8(ON)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or not self.game_seeded:
            # the game's RandomState (MinAtar needs that API) is seeded from np_random, so one
            # seed fixes everything; unseeded resets continue both streams
            self.game.seed(int(self.np_random.integers(2**32)))
            self.game_seeded = True
        self.game.reset()
        self.previous_action = 0
        return self.observation(), {}

    def step(self, action):
        action = int(action)
        if not 0 <= action < len(ACTION_MEANINGS):
            raise ValueError(f"MinAtar actions are 0..{len(ACTION_MEANINGS) - 1}, got {action}")
        if self.np_random.random() < self.sticky_action_probability:
            action = self.previous_action
        self.previous_action = action
        reward, terminated = self.game.act(action)
        return self.observation(), float(reward), bool(terminated), False, {}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        state = self.game.state()
        # the highest channel that is on in each cell, -1 for an empty cell (drawn black)
        top = np.where(state, np.arange(state.shape[2]), -1).max(axis=2)
        frame = np.where((top >= 0)[..., None], PALETTE[top], np.uint8(0))
        return frame.repeat(CELL_PIXELS, axis=0).repeat(CELL_PIXELS, axis=1)


def register_games() -> None:
    for game in MINATAR_GAMES:
        if env_id(game) not in gym.registry:
            gym.register(
                env_id(game),
                entry_point=MinAtarEnv,
                kwargs={"game": game},
                max_episode_steps=MAX_EPISODE_STEPS,
            )


def make_minatar(game: str, render_mode: str | None = None, **kwargs) -> gym.Env:
    """MinAtar ``game`` (one of ``MINATAR_GAMES``) with a ``MAX_EPISODE_STEPS`` time limit."""
    require(("minatar",), "minatar_*", PIP_MINATAR)
    check_game(game)
    register_games()
    return gym.make(env_id(game), render_mode=render_mode, disable_env_checker=True, **kwargs)
