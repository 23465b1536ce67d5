"""Atari games as ``atari_<game>`` (e.g. ``atari_breakout``): ALE v5 with DQN preprocessing.

Preprocessing follows Mnih et al. 2015 ("Human-level control through deep reinforcement
learning") as summarised by Machado et al. 2018 ("Revisiting the Arcade Learning Environment"):
up to 30 no-op actions on reset, the action repeated for 4 frames with a max-pool over the last
two, 84x84 grayscale frames, a stack of the last 4 -> ``uint8`` array of shape (4, 84, 84).
For training, rewards are clipped to their sign, a lost life ends the episode (the game
itself only resets when it is over) and FIRE is pressed after each reset where the game has it
(as CleanRL's ``dqn_atari.py`` wrappers). The ALE comes from ``ale-py``, which ships the ROMs; the
frame processing is gymnasium's ``AtariPreprocessing`` and ``FrameStackObservation``.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from envs.deps import PIP_ATARI, require
from envs.wrappers import RenderFps

ATARI_PREFIX = "atari_"
FRAME_STACK = 4
NOOP_MAX = 30
FRAME_SKIP = 4
SCREEN_SIZE = 84
STICKY_ACTION_PROBABILITY = 0.25  # Machado et al. 2018
FIRE_ACTION = 1  # ALE puts FIRE at index 1 of every action set that has it

# The 57 games of the usual Atari benchmark, as ale-py ROM ids; atari_<any ROM id> also works.
ATARI_57 = (
    "alien",
    "amidar",
    "assault",
    "asterix",
    "asteroids",
    "atlantis",
    "bank_heist",
    "battle_zone",
    "beam_rider",
    "berzerk",
    "bowling",
    "boxing",
    "breakout",
    "centipede",
    "chopper_command",
    "crazy_climber",
    "defender",
    "demon_attack",
    "double_dunk",
    "enduro",
    "fishing_derby",
    "freeway",
    "frostbite",
    "gopher",
    "gravitar",
    "hero",
    "ice_hockey",
    "jamesbond",
    "kangaroo",
    "krull",
    "kung_fu_master",
    "montezuma_revenge",
    "ms_pacman",
    "name_this_game",
    "phoenix",
    "pitfall",
    "pong",
    "private_eye",
    "qbert",
    "riverraid",
    "road_runner",
    "robotank",
    "seaquest",
    "skiing",
    "solaris",
    "space_invaders",
    "star_gunner",
    "surround",
    "tennis",
    "time_pilot",
    "tutankham",
    "up_n_down",
    "venture",
    "video_pinball",
    "wizard_of_wor",
    "yars_revenge",
    "zaxxon",
)


def ale_id(game: str) -> str:
    """ale-py ROM id (``space_invaders``) -> gymnasium id (``ALE/SpaceInvaders-v5``)."""
    return "ALE/" + "".join(part.capitalize() for part in game.split("_")) + "-v5"


def import_ale() -> None:
    """Register the ALE ids with gymnasium (``AtariPreprocessing`` also needs OpenCV)."""
    require(("ale_py", "cv2"), "atari_*", PIP_ATARI)
    import ale_py

    gym.register_envs(ale_py)


class EpisodicLife(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """A lost life ends the episode for the agent; ``reset`` restarts the game only when it is
    over, otherwise it takes one no-op step (DQN's "episodic life", Mnih et al. 2015)."""

    def __init__(self, env: gym.Env):
        # every wrapper records its arguments, so that gym.make(env.spec) rebuilds the stack
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = self.env.unwrapped.ale.lives()
        life_lost = 0 < lives < self.lives
        self.lives = lives
        return obs, reward, terminated or life_lost, truncated, info

    def reset(self, *, seed=None, options=None):
        if self.game_over or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset(options=options)
        self.game_over = False
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info


class FireReset(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Press FIRE after each reset, for games that wait for it (as CleanRL's ``FireResetEnv``)."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)

    def reset(self, *, seed=None, options=None):
        self.env.reset(seed=seed, options=options)
        obs, _, terminated, truncated, info = self.env.step(FIRE_ACTION)
        if terminated or truncated:
            return self.env.reset(options=options)
        return obs, info


class FireAfterLifeLoss(FireReset):
    """Whole-game evaluation of an agent trained with :class:`FireReset`: press FIRE at the
    start of the game and right after each lost life, where training's resets pressed it
    (CleanRL evaluates with its training wrappers, which do the same). Without it a greedy
    agent can wait for the ball until the time limit in Breakout-like games."""

    def reset(self, *, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        self.lives = self.env.unwrapped.ale.lives()
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        lives = self.env.unwrapped.ale.lives()
        if 0 < lives < self.lives and not (terminated or truncated):
            obs, fire_reward, terminated, truncated, info = self.env.step(FIRE_ACTION)
            reward += fire_reward
        self.lives = self.env.unwrapped.ale.lives()
        return obs, reward, terminated, truncated, info


def waits_for_fire(env: gym.Env) -> bool:
    return env.unwrapped.get_action_meanings()[FIRE_ACTION] == "FIRE"


class ClipRewardSign(gym.RewardWrapper, gym.utils.RecordConstructorArgs):
    """Reward -> its sign in {-1, 0, 1} (Mnih et al. 2015)."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.RewardWrapper.__init__(self, env)

    def reward(self, reward):
        return float(np.sign(reward))


def make_atari(
    game: str,
    render_mode: str | None = None,
    full_action_space: bool = False,
    sticky_actions: bool = False,
    training: bool = True,
) -> gym.Env:
    """ALE v5 ``game`` with DQN preprocessing; observations ``uint8`` (4, 84, 84).

    ``sticky_actions`` repeats the previous action with probability 0.25 (ALE v5's default,
    Machado et al. 2018; off here as in DQN). ``training`` clips rewards, makes a lost life
    end the episode and presses FIRE after resets in games that have it; without it (whole
    games, raw scores, for evaluation) FIRE is still pressed at the start and after each lost
    life, as the agent was trained. ``info["episode"]``
    (gymnasium's ``RecordEpisodeStatistics``, placed before clipping) always carries the raw
    game score and length of whole games.
    """
    import_ale()
    if ale_id(game) not in gym.registry:
        raise ValueError(
            f"unknown Atari game {game!r}: use atari_<game> with a single-player ale-py ROM id, "
            f"e.g. {', '.join(ATARI_PREFIX + g for g in ATARI_57[:5])}"
        )
    env = gym.make(
        ale_id(game),
        frameskip=1,
        repeat_action_probability=STICKY_ACTION_PROBABILITY if sticky_actions else 0.0,
        full_action_space=full_action_space,
        render_mode=render_mode,
        disable_env_checker=True,
    )
    env = gym.wrappers.AtariPreprocessing(
        env, noop_max=NOOP_MAX, frame_skip=FRAME_SKIP, screen_size=SCREEN_SIZE
    )
    env = gym.wrappers.RecordEpisodeStatistics(env)
    if training:
        env = EpisodicLife(env)
        if waits_for_fire(env):
            env = FireReset(env)
        env = ClipRewardSign(env)
    elif waits_for_fire(env):
        env = FireAfterLifeLoss(env)
    env = gym.wrappers.FrameStackObservation(env, FRAME_STACK)
    # one rendered frame per agent step, FRAME_SKIP emulator frames at 60 Hz: videos play in
    # real time
    return RenderFps(env, 60 // FRAME_SKIP)
