"""Nonstationary environments: a fixed cycle of tasks, and permuted observations or actions.

Settings of the plasticity literature: Atari game cycling (Abbas et al. 2023, "Loss of
Plasticity in Continual Deep Reinforcement Learning": games in a fixed order, revisited in
rounds, all with the full 18-action set); task sequences on one body (C-CHAIN, Plasticine:
stand -> walk -> run); permuted observations / actions and Slippery-Ant-style friction changes
(Dohare et al. 2024, "Loss of plasticity in deep continual learning").

How the switch is scheduled (and why vector copies agree)
---------------------------------------------------------
:class:`TaskCycle` keeps a clock ``ticks`` that counts every ``step()`` call and every
``reset()`` call after the first that is given no seed (an autoreset takes a vector step; a
seeded reset restarts the episodes and is not a step). The period is ``ticks // switch_every``,
capped by :meth:`TaskCycle.end_at` at the last period a run trains in; period ``k`` runs task
``k % len(tasks)`` (fixed order, repeating in rounds). The period is read at each ``reset()``,
so a task switch happens at the first episode boundary after the clock passes a multiple of
``switch_every`` (a period that ends within one episode is skipped: pick ``switch_every``
longer than an episode). With ``switch_mode="truncate"`` the running episode is truncated on
the very step the clock passes the boundary.

Under ``gymnasium.vector`` (default ``NEXT_STEP`` autoreset) each copy receives exactly one
``step()`` or ``reset()`` per vector step, so every copy's clock shows the same number and all
copies decide the switch on the same vector step; each copy applies it at its own next episode
boundary, or on that same step with ``switch_mode="truncate"``. Permutations are drawn from
``(schedule_seed, period)`` only, never from the per-copy seed, so all copies permute alike::

    envs = gym.vector.SyncVectorEnv([
        lambda i=i: make_env("atari_cycle", seed=i, switch_every=1_000_000) for i in range(4)
    ])  # same schedule_seed (default 0) in every copy; per-copy seeds only vary the episodes

Stable-Baselines3's ``DummyVecEnv`` resets a copy within the step that ended its episode, so
there each copy's clock also counts its resets: the clocks run ahead by the copy's episode
count and drift apart. Switches come that much early (noticeable with Atari's per-life
episodes); :class:`plasticity.sb3.PlasticityCallback` reads ``max(task_period)`` and still
acts once per switch.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from envs.atari import EpisodicLife
from envs.wrappers import find_wrapper
from plasticity.tasks import TASK_ID, TASK_NAME, TASK_PERIOD, TASK_RETURN, TASK_SWITCHED

CYCLE_PREFIX = "cycle:"
PRESETS = {
    # Our choice of five games (the three FIRE-paper DQN games, Pong and Space Invaders).
    "atari_cycle": (
        "atari_asterix",
        "atari_beam_rider",
        "atari_demon_attack",
        "atari_pong",
        "atari_space_invaders",
    ),
    "humanoid_cycle": ("humanoid_walk", "humanoid_run", "humanoid_stand"),
    # The three H1 tasks of FIRE's SAC experiments (HumanoidBench h1-walk, h1-run,
    # h1-balance_simple).
    "humanoid_fire_cycle": ("humanoid_walk", "humanoid_run", "humanoid_balance_simple"),
    "minatar_cycle": (
        "minatar_asterix",
        "minatar_breakout",
        "minatar_freeway",
        "minatar_seaquest",
        "minatar_space_invaders",
    ),
}
# Cycle options a preset implies (make_env applies them; options passed explicitly win).
# humanoid_fire_cycle: walk and run observe 51 floats, balance_simple 64 (the board's state),
# so the cycle zero-pads walk's and run's observations to 64. minatar_cycle: the games have 4
# to 10 channels, padded with empty channels to the largest game's 10.
PRESET_OPTIONS = {
    "humanoid_fire_cycle": {"pad_spaces": True},
    "minatar_cycle": {"pad_spaces": True},
}
SWITCH_MODES = ("episode", "truncate")
FRICTION_RANGE = (0.02, 2.0)  # Slippery Ant (Dohare et al. 2024); drawn log-uniformly here


def check_friction_models(tasks: dict[str, gym.Env]) -> None:
    for name, env in tasks.items():
        if not hasattr(getattr(env.unwrapped, "model", None), "geom_friction"):
            raise ValueError(
                f"redraw_friction needs MuJoCo tasks exposing env.unwrapped.model; "
                f"{name} has none (use humanoid_* or a gymnasium MuJoCo id)"
            )


def cycle_task_names(name: str) -> tuple[str, ...] | None:
    """Task names of a preset or of ``cycle:<name>,<name>,...``; None for any other name."""
    if name in PRESETS:
        return PRESETS[name]
    if not name.startswith(CYCLE_PREFIX):
        return None
    names = tuple(part.strip() for part in name.removeprefix(CYCLE_PREFIX).split(","))
    if not all(names):
        raise ValueError(f"empty task name in {name!r}: write cycle:<name>,<name>,...")
    return names


def pad_to(x: np.ndarray, size: int) -> np.ndarray:
    """``x`` with zeros appended along its first axis (entries, or image channels) to ``size``."""
    return np.concatenate([x, np.zeros((size - x.shape[0], *x.shape[1:]), dtype=x.dtype)])


def shared_space(kind: str, task_spaces: dict[str, gym.Space], pad: bool) -> gym.Space:
    """The one space all tasks share; with ``pad``, a box large enough for every task's box.

    Padding appends zeros along the first axis: entries of 1-D boxes, or channels of
    channels-first observation images (C, H, W) of one height and width (MinAtar's games).
    Padded bounds: for observations the union (every task's observations fit); for actions,
    per entry, the intersection over the tasks that have that entry (every action is valid
    for every task: no task gets an action beyond its own bounds, which MuJoCo would clip
    after charging its control cost).
    """
    first = next(iter(task_spaces.values()))
    if all(space == first for space in task_spaces.values()):
        return first
    listed = "; ".join(f"{name}: {space}" for name, space in task_spaces.items())

    def paddable_box(space: gym.Space) -> bool:
        if not (isinstance(space, spaces.Box) and isinstance(first, spaces.Box)):
            return False
        if space.dtype != first.dtype:
            return False
        if kind == "observation" and len(first.shape) > 1:
            # images: only the channel count (the first axis) may differ
            return space.shape[1:] == first.shape[1:]
        return len(space.shape) == len(first.shape) == 1

    paddable = all(paddable_box(space) for space in task_spaces.values())
    if not pad:
        hint = " or pass pad_spaces=True" if paddable else ""
        raise ValueError(
            f"cycle tasks disagree on {kind} space ({listed}): choose tasks with equal spaces{hint}"
        )
    if not paddable:
        images = " (or, for observations, images differing only in channels)"
        raise ValueError(
            f"pad_spaces cannot pad these {kind} spaces, it needs 1-D boxes"
            f"{images if kind == 'observation' else ''} of one dtype ({listed}): "
            f"choose tasks with equal {kind} spaces"
        )
    size = max(space.shape[0] for space in task_spaces.values())
    if kind == "observation":
        low = np.min([pad_to(space.low, size) for space in task_spaces.values()], axis=0)
        high = np.max([pad_to(space.high, size) for space in task_spaces.values()], axis=0)
        return spaces.Box(low, high, low.shape, first.dtype)
    low = np.full(size, -np.inf, first.dtype)
    high = np.full(size, np.inf, first.dtype)
    for space in task_spaces.values():
        n = space.shape[0]
        low[:n], high[:n] = np.maximum(low[:n], space.low), np.minimum(high[:n], space.high)
    if np.any(low > high):
        raise ValueError(
            f"pad_spaces found no action valid for every task ({listed}): "
            "choose tasks whose action bounds overlap"
        )
    return spaces.Box(low, high, (size,), first.dtype)


def permutable_observation_space(space: gym.Space) -> spaces.Box:
    """A box that holds the observation under any permutation: the widest bounds everywhere."""
    if isinstance(space, spaces.Box):
        return spaces.Box(space.low.min(), space.high.max(), space.shape, space.dtype)
    raise ValueError(f"permute_observations needs a Box observation space, not {space}")


def permutable_action_space(space: gym.Space) -> gym.Space:
    """A space whose actions are valid under any permutation: the narrowest bounds everywhere."""
    if isinstance(space, spaces.Discrete):
        return space
    if not (isinstance(space, spaces.Box) and len(space.shape) == 1):
        raise ValueError(f"permute_actions needs a Discrete or 1-D Box action space, not {space}")
    return spaces.Box(space.low.max(), space.high.min(), space.shape, space.dtype)


def permute_positions(x: np.ndarray, permutation: np.ndarray) -> np.ndarray:
    """Permute a 1-D array, or the positions of each row of an (n, ...) array alike."""
    if x.ndim == 1:
        return x[permutation]
    return x.reshape(x.shape[0], -1)[:, permutation].reshape(x.shape)


def position_count(space: gym.Space) -> int:
    return int(np.prod(space.shape if len(space.shape) == 1 else space.shape[1:]))


class TaskCycle(gym.Env):
    """Cycle through ``tasks`` (name -> env) on the schedule described in the module docstring.

    ``info`` of every step and reset holds ``task_id``, ``task_name``, ``task_period`` (how many
    switches so far) and ``task_switched`` (True only on the reset that begins a new period; a
    vector training loop that must act once per switch can watch ``max(info["task_period"])``
    instead, since copies apply a switch at their own episode boundaries). On the step that ends
    an episode ``info`` also holds ``task_return``: the game score from ``info["episode"]`` for
    tasks that record whole episodes (Atari), else the sum of this episode's rewards;
    ``episode_returns`` keeps them per task. ``permute_observations`` / ``permute_actions`` draw
    a new permutation at every switch, ``redraw_friction`` a new sliding friction for every geom
    of a MuJoCo task, log-uniform in [0.02, 2] (period 0 is unperturbed); with one task this
    turns any env into a nonstationary one.
    """

    def __init__(
        self,
        tasks: dict[str, gym.Env],
        switch_every: int,
        switch_mode: str = "episode",
        schedule_seed: int = 0,
        permute_observations: bool = False,
        permute_actions: bool = False,
        redraw_friction: bool = False,
        pad_spaces: bool = False,
    ):
        if switch_every < 1:
            raise ValueError(f"switch_every must be a positive number of steps, got {switch_every}")
        if switch_mode not in SWITCH_MODES:
            raise ValueError(f"unknown switch_mode {switch_mode!r}: use one of {SWITCH_MODES}")
        self.task_names = tuple(tasks)
        self.task_envs = tuple(tasks.values())
        self.switch_every = switch_every
        self.switch_mode = switch_mode
        self.schedule_seed = schedule_seed
        self.observation_space = shared_space(
            "observation", {n: e.observation_space for n, e in tasks.items()}, pad_spaces
        )
        self.action_space = shared_space(
            "action", {n: e.action_space for n, e in tasks.items()}, pad_spaces
        )
        if permute_observations:
            self.observation_space = permutable_observation_space(self.observation_space)
        if permute_actions:
            self.action_space = permutable_action_space(self.action_space)
        self.permute_observations = permute_observations
        self.permute_actions = permute_actions
        if redraw_friction:
            check_friction_models(tasks)
        self.redraw_friction = redraw_friction
        self.records_episodes = [
            find_wrapper(e, gym.wrappers.RecordEpisodeStatistics) is not None
            for e in self.task_envs
        ]
        first = self.task_envs[0]
        self.render_mode = first.render_mode
        self.metadata = first.metadata
        self.ticks = 0
        self.period = 0
        self.held_period: int | None = None
        self.final_period: int | None = None
        self.has_reset = False
        self.task_seeds: dict[int, int] = {}
        self.episode_return = 0.0
        self.episode_returns: dict[str, list[float]] = defaultdict(list)
        self.observation_permutation = self.action_permutation = None

    @property
    def task_id(self) -> int:
        return self.period % len(self.task_envs)

    @property
    def task_name(self) -> str:
        return self.task_names[self.task_id]

    @property
    def task_env(self) -> gym.Env:
        return self.task_envs[self.task_id]

    def scheduled_period(self) -> int:
        if self.held_period is not None:
            return self.held_period
        period = self.ticks // self.switch_every
        return period if self.final_period is None else min(period, self.final_period)

    def end_at(self, ticks: int) -> None:
        """The run ends after ``ticks`` steps of this copy: never begin a later period than
        the one step ``ticks`` is in. A run whose length is a multiple of ``switch_every``
        would otherwise switch at an episode boundary in its last steps, to a task it never
        trains on, and its final evaluation (and any intervention at the switch) would see
        that task."""
        if ticks < 1:
            raise ValueError(f"a run has at least one step, got {ticks}")
        self.final_period = (ticks - 1) // self.switch_every

    def hold_task(self, period: int) -> None:
        """Run period ``period``'s task and perturbations from now on, never switching.

        For evaluation: a fresh cycle held at the training loop's current period shows the
        policy the same task, permutations and friction it is being trained on.
        """
        if period < 0:
            raise ValueError(f"period must be >= 0, got {period}")
        self.held_period = period
        self.period = period
        self.draw_perturbations()

    def draw_perturbations(self) -> None:
        """Permutations and friction of the current period; none in period 0."""
        if self.period == 0:
            self.observation_permutation = self.action_permutation = None
            return
        rng = np.random.default_rng([self.schedule_seed, self.period])
        if self.permute_observations:
            count = position_count(self.observation_space)
            self.observation_permutation = rng.permutation(count)
        if self.permute_actions:
            count = (
                self.action_space.n
                if isinstance(self.action_space, spaces.Discrete)
                else self.action_space.shape[0]
            )
            self.action_permutation = rng.permutation(count)
        if self.redraw_friction:
            friction = np.exp(rng.uniform(*np.log(FRICTION_RANGE)))
            self.task_env.unwrapped.model.geom_friction[:, 0] = friction

    def task_info(self, info: dict, switched: bool = False) -> dict:
        return {
            **info,
            TASK_ID: self.task_id,
            TASK_NAME: self.task_name,
            TASK_PERIOD: self.period,
            TASK_SWITCHED: switched,
        }

    def state_dict(self) -> dict:
        """The switch clock, all a resumed cycle needs: the task, its permutations and
        friction follow from it (and ``schedule_seed``) at the next reset."""
        return {"ticks": self.ticks}

    def load_state_dict(self, state: dict) -> None:
        """Continue the clock from ``state``; the reset that follows starts the saved period's
        task without counting as a step, so the clock reads exactly the saved ticks."""
        self.ticks = int(state["ticks"])
        self.has_reset = False

    def observation(self, obs) -> np.ndarray:
        obs = np.asarray(obs)
        if obs.shape != self.observation_space.shape:
            obs = pad_to(obs, self.observation_space.shape[0])
        if self.observation_permutation is not None:
            obs = permute_positions(obs, self.observation_permutation)
        return obs

    def task_action(self, action):
        if self.action_permutation is not None:
            action = (
                self.action_permutation[int(action)]
                if isinstance(self.action_space, spaces.Discrete)
                else np.asarray(action)[self.action_permutation]
            )
        task_space = self.task_env.action_space
        if isinstance(task_space, spaces.Box) and task_space.shape != self.action_space.shape:
            action = np.asarray(action)[: task_space.shape[0]]
        return action

    def restart_game(self) -> None:
        """Start an Atari task from a new game, not from the life it stopped at."""
        episodic_life = find_wrapper(self.task_env, EpisodicLife)
        if episodic_life is not None:
            episodic_life.game_over = True

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            # one independent stream per (seed, task): seed + i would give copy j's task i
            # the seed of copy j+1's task i-1
            self.task_seeds = {
                i: int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
                for i in range(len(self.task_envs))
            }
        if self.has_reset and seed is None:  # an autoreset: it takes a vector step
            self.ticks += 1
        self.has_reset = True
        period = self.scheduled_period()
        switched = period != self.period
        if switched:
            self.period = period
            self.draw_perturbations()
            self.restart_game()
        self.episode_return = 0.0
        obs, info = self.task_env.reset(
            seed=self.task_seeds.pop(self.task_id, None), options=options
        )
        return self.observation(obs), self.task_info(info, switched)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.task_env.step(self.task_action(action))
        self.ticks += 1
        self.episode_return += float(reward)
        cut_by_switch = False
        if self.switch_mode == "truncate" and self.scheduled_period() != self.period:
            cut_by_switch = not (terminated or truncated)
            truncated = True
        info = self.task_info(info)
        if terminated or truncated:
            self.record_episode_end(info, cut_by_switch)
        return self.observation(obs), reward, terminated, truncated, info

    def record_episode_end(self, info: dict, cut_by_switch: bool = False) -> None:
        if self.records_episodes[self.task_id]:
            if cut_by_switch:  # the task's own statistics never saw the end: its running sum
                stats = find_wrapper(self.task_env, gym.wrappers.RecordEpisodeStatistics)
                task_return = float(stats.episode_returns)
            elif "episode" not in info:  # a lost life, not the end of the game
                return
            else:
                task_return = float(np.asarray(info["episode"]["r"]))
        else:
            task_return = self.episode_return
        info[TASK_RETURN] = task_return
        self.episode_returns[self.task_name].append(task_return)

    def render(self):
        return self.task_env.render()

    def close(self):
        for env in self.task_envs:
            env.close()


def make_cycle(
    task_names: Sequence[str],
    make_task: Callable[[str], gym.Env],
    switch_every: int | None,
    **cycle_options,
) -> TaskCycle:
    """A :class:`TaskCycle` over freshly made tasks; ``make_task(name)`` builds one task."""
    if switch_every is None:
        raise ValueError("a task cycle needs switch_every=<env steps per task>")
    if len(set(task_names)) != len(task_names):
        raise ValueError(f"a task appears twice in the cycle {list(task_names)}: list each once")
    tasks = {name: make_task(name) for name in task_names}
    return TaskCycle(tasks, switch_every, **cycle_options)
