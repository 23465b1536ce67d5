"""Atari games as ``atari_<game>`` (e.g. ``atari_breakout``): ALE v5 with DQN preprocessing.

Preprocessing follows Mnih et al. 2015 ("Human-level control through deep reinforcement
learning") as summarised by Machado et al. 2018 ("Revisiting the Arcade Learning Environment"):
up to 30 no-op actions on reset, the action repeated for 4 frames with a max-pool over the last
two, 84x84 grayscale frames, a stack of the last 4 -> ``uint8`` array of shape (4, 84, 84).
For training, rewards are clipped to their sign, a lost life ends the episode (the game
itself only resets when it is over) and FIRE is pressed after each reset where the game has it
(as CleanRL's ``dqn_atari.py`` wrappers). The ALE comes from ``ale-py``, which ships the ROMs; the
frame processing is gymnasium's ``AtariPreprocessing`` and ``FrameStackObservation``.

Many copies on ALE's vector env
-------------------------------
:func:`make_atari_vector` runs ``num_envs`` copies of one game on ale-py's ``AtariVectorEnv``
(C++ threads step the copies in parallel and do the frame processing); training uses it for
``--num-envs > 1``. It has the same spaces, ``NEXT_STEP`` autoreset, frame skip, max-pool,
84x84 grayscale (OpenCV's area resize, as ``AtariPreprocessing``), frame stack padded with the
episode's first frame, sign-clipped ``float64`` rewards, episodes ended by a lost life, and
``info["episode"]`` with the raw score and length of whole games. With no-op starts and sticky
actions off, a game without FIRE plays to the same frames, rewards, ends and scores on both
paths (``tests/test_envs_atari_vector.py``). What differs:

- resets: ALE's vector env presses FIRE for one frame and then takes 0 to ``noop_max - 1``
  no-op frames (one fewer in FIRE games); the gymnasium path takes 1 to ``noop_max`` no-op
  frames, then one FIRE step (4 frames) in FIRE games. The random streams differ too: the same
  seed gives other no-op counts and sticky-action draws on the two paths.
- a lost life in a FIRE game: the game goes on in place, and the step after it, which stands
  for the reset step, presses FIRE for 4 frames; the gymnasium path's reset takes a no-op step
  before it, so there the new life's first observation comes 4 frames later. (In games without
  FIRE that reset step is one no-op step on both paths.)
- the time limit (108,000 frames, 30 minutes) counts the frames of steps, not the FIRE and
  no-op frames that start a game.
- ``info["episode"]["l"]`` counts the vector steps of the game (the reset steps after lost
  lives included); in FIRE games the gymnasium path also counts the FIRE step of each reset
  (and the no-op step before it after a lost life). ``info`` has no ``_lives``-style masks.
- task cycles stay on the gymnasium path: an ``AtariVectorEnv`` loads one ROM and cannot switch
  games, and its copies cannot each change game at its own episode boundary.
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
NOOP_ACTION = 0
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
            obs, _, terminated, truncated, info = self.env.step(NOOP_ACTION)
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


def check_game(game: str) -> None:
    if ale_id(game) not in gym.registry:
        raise ValueError(
            f"unknown Atari game {game!r}: use atari_<game> with a single-player ale-py ROM id, "
            f"e.g. {', '.join(ATARI_PREFIX + g for g in ATARI_57[:5])}"
        )


def make_atari(
    game: str,
    render_mode: str | None = None,
    full_action_space: bool = False,
    sticky_actions: bool = False,
    training: bool = True,
    noop_max: int = NOOP_MAX,
) -> gym.Env:
    """ALE v5 ``game`` with DQN preprocessing; observations ``uint8`` (4, 84, 84).

    ``sticky_actions`` repeats the previous action with probability 0.25 (ALE v5's default,
    Machado et al. 2018; off here as in DQN). ``training`` clips rewards, makes a lost life
    end the episode and presses FIRE after resets in games that have it; without it (whole
    games, raw scores, for evaluation) FIRE is still pressed at the start and after each lost
    life, as the agent was trained. ``info["episode"]``
    (gymnasium's ``RecordEpisodeStatistics``, placed before clipping) always carries the raw
    game score and length of whole games. ``noop_max=0`` starts every game the same way.
    """
    import_ale()
    check_game(game)
    env = gym.make(
        ale_id(game),
        frameskip=1,
        repeat_action_probability=STICKY_ACTION_PROBABILITY if sticky_actions else 0.0,
        full_action_space=full_action_space,
        render_mode=render_mode,
        disable_env_checker=True,
    )
    env = gym.wrappers.AtariPreprocessing(
        env, noop_max=noop_max, frame_skip=FRAME_SKIP, screen_size=SCREEN_SIZE
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


class VectorEpisodicLife(gym.vector.VectorWrapper):
    """The training semantics of :func:`make_atari` on ALE's vector env, whose copies play
    whole games: a lost life ends the agent's episode, rewards are clipped to their sign, and
    each episode's frame stack starts padded with its first frame.

    After a lost life the game goes on in place (the vector env cannot restart a life), so the
    next step stands for the reset step of gymnasium's ``NEXT_STEP`` autoreset: it plays
    ``reset_action`` (FIRE where the game waits for it, else NOOP, as :class:`EpisodicLife`
    and :class:`FireReset`) instead of the agent's action, which a reset step ignores, and has
    reward 0 and a fresh frame stack; it is done only if the game itself ended in it.
    """

    def __init__(self, env: gym.vector.VectorEnv, reset_action: int):
        super().__init__(env)
        self.reset_action = reset_action
        self.lives = np.zeros(self.num_envs, dtype=np.int64)
        # which copies ended the agent's episode at the last step, and how many frames of
        # their current episode their stacks hold (older ones are padding)
        self.episode_ended = np.zeros(self.num_envs, dtype=bool)
        self.episode_frames = np.ones(self.num_envs, dtype=np.int64)

    def reset(self, *, seed=None, options=None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.lives = info["lives"].astype(np.int64)
        self.episode_ended[:] = False
        self.episode_frames[:] = 1
        return self.pad_stacks(obs), info

    def step(self, actions):
        actions = np.where(self.episode_ended, self.reset_action, actions)
        obs, rewards, terminated, truncated, info = self.env.step(actions)
        lives = info["lives"].astype(np.int64)
        life_lost = (lives > 0) & (lives < self.lives)  # as EpisodicLife
        terminated = terminated | life_lost
        rewards = np.where(self.episode_ended, 0.0, np.sign(rewards).astype(np.float64))
        self.episode_frames = np.where(
            self.episode_ended, 1, np.minimum(self.episode_frames + 1, FRAME_STACK)
        )
        self.episode_ended = terminated | truncated
        self.lives = lives
        return self.pad_stacks(obs), rewards, terminated, truncated, info

    def pad_stacks(self, obs: np.ndarray) -> np.ndarray:
        """Frames from before an episode's start (zeros after a reset, the last life's frames
        after a lost one) replaced by its first frame, as ``FrameStackObservation`` pads."""
        for frames in range(1, FRAME_STACK):
            copies = self.episode_frames == frames
            if copies.any():
                first = FRAME_STACK - frames
                obs[copies, :first] = obs[copies, first, None]
        return obs


def make_atari_vector(
    game: str,
    num_envs: int,
    full_action_space: bool = False,
    sticky_actions: bool = False,
    noop_max: int = NOOP_MAX,
    num_threads: int = 0,
) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``game`` on ALE's ``AtariVectorEnv``, with :func:`make_atari`'s
    training semantics (what differs: the module docstring). Observations ``uint8``
    (num_envs, 4, 84, 84); ``num_threads`` 0 runs one thread per copy, up to the CPU count.
    Seed it with its first ``reset(seed=s)``: copy ``i`` gets ``s + i``.
    """
    import_ale()
    check_game(game)
    import ale_py

    env = gym.make_vec(
        ale_id(game),
        num_envs,
        vectorization_mode="vector_entry_point",
        repeat_action_probability=STICKY_ACTION_PROBABILITY if sticky_actions else 0.0,
        full_action_space=full_action_space,
        frameskip=FRAME_SKIP,
        img_height=SCREEN_SIZE,
        img_width=SCREEN_SIZE,
        stack_num=FRAME_STACK,
        noop_max=noop_max,
        use_fire_reset=True,
        # whole games with raw rewards, for the statistics below; VectorEpisodicLife ends
        # episodes at lost lives and clips rewards (the vector env's own episodic_life would
        # restart the game at every lost life)
        episodic_life=False,
        reward_clipping=False,
        num_threads=num_threads,
    )
    waits_for_fire = env.unwrapped.ale.get_action_set()[FIRE_ACTION] == ale_py.Action.FIRE
    env = gym.wrappers.vector.RecordEpisodeStatistics(env)
    return VectorEpisodicLife(env, FIRE_ACTION if waits_for_fire else NOOP_ACTION)
