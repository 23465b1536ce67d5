"""Environments for training and evaluation, and the task cycle's clock in checkpoints.

- :func:`make_train_envs`: ``--num-envs`` copies of ``--env`` with its nonstationary options
  (several copies of one Atari game on ALE's own vector env, see :func:`ale_vector_game`).
- :func:`evaluate`: deterministic episodes on a fresh copy (whole Atari games, videos).
- :func:`cycle_states` / :func:`restore_cycles`: the switch clocks of a task cycle, saved and
  restored through the vector env (``TaskCycle.state_dict``), so a resumed run switches where
  the uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np

from agents.cli import CommonArgs, UserError, flag, user_errors


def nonstationary_options(args: CommonArgs) -> dict:
    """The task-cycle options of ``args`` that differ from a plain env, for ``make_env``."""
    options = {
        name: True
        for name in ("permute_observations", "permute_actions", "redraw_friction")
        if getattr(args, name)
    }
    if options and args.switch_every is None:
        first = flag(next(iter(options)))
        raise UserError(f"{first} needs --switch-every N (env steps between switches)")
    if args.pad_spaces:
        options["pad_spaces"] = True
    if args.switch_mode != "episode":
        options["switch_mode"] = args.switch_mode
    return options


def env_spaces(args: CommonArgs) -> tuple[gym.Space, gym.Space]:
    """Observation and action space of ``args.env`` (one copy, made and closed)."""
    from envs import make_env

    with user_errors("--env"):
        env = make_env(
            args.env,
            seed=args.seed,
            switch_every=args.switch_every,
            **nonstationary_options(args),
        )
    spaces = env.observation_space, env.action_space
    env.close()
    return spaces


def ale_vector_game(args: CommonArgs, env_kwargs: dict) -> str | None:
    """The game to train on ALE's multithreaded ``AtariVectorEnv`` (``envs.atari``), or None
    for gymnasium's ``SyncVectorEnv``: ``--env atari_<game>`` with ``--num-envs`` above 1, no
    task cycle or perturbation (the vector env runs one ROM and cannot switch games) and no
    action repeat."""
    from envs.atari import ATARI_PREFIX

    one_game = args.switch_every is None and not nonstationary_options(args)
    repeats = env_kwargs.get("action_repeat", 1) > 1
    if args.num_envs > 1 and args.env.startswith(ATARI_PREFIX) and one_game and not repeats:
        return args.env.removeprefix(ATARI_PREFIX)
    return None


def make_train_envs(args: CommonArgs, **env_kwargs) -> gym.vector.VectorEnv:
    """``num_envs`` copies of ``args.env``, each recording its episode statistics.

    The copies share the cycle's schedule (see ``envs.nonstationary``); the default
    next-step autoreset keeps their switch clocks in step. ``--switch-every`` counts the env
    steps of all copies together, so each copy's clock gets ``switch_every / num_envs``.
    """
    from envs import make_env
    from envs.atari import make_atari_vector
    from envs.nonstationary import TaskCycle
    from envs.wrappers import find_wrapper

    game = ale_vector_game(args, env_kwargs)
    if game is not None:
        atari_kwargs = {key: value for key, value in env_kwargs.items() if key != "action_repeat"}
        with user_errors("--env"):
            return make_atari_vector(game, args.num_envs, **atari_kwargs)

    # each copy's clock counts its own steps, and the copies step together
    switch_every = args.switch_every
    if switch_every is not None and switch_every > 0:
        switch_every = max(1, round(switch_every / args.num_envs))
    options = nonstationary_options(args)

    def thunk(index: int):
        def make():
            with user_errors("--env"):
                env = make_env(
                    args.env,
                    seed=args.seed + index,
                    switch_every=switch_every,
                    **options,
                    **env_kwargs,
                )
            if isinstance(env.unwrapped, TaskCycle):
                # no switch in the run's last steps, to a task it would never train on
                env.unwrapped.end_at(math.ceil(args.total_timesteps / args.num_envs))
                return env  # cycles report task_return
            # Atari records raw game scores inside (before clipping)
            if find_wrapper(env, gym.wrappers.RecordEpisodeStatistics):
                return env
            return gym.wrappers.RecordEpisodeStatistics(env)

        return make

    with user_errors("--env"):
        return gym.vector.SyncVectorEnv([thunk(i) for i in range(args.num_envs)])


def is_atari(env_name: str) -> bool:
    """Whether every task of ``env_name`` is an ``atari_<game>`` (evaluated on whole games)."""
    from envs.atari import ATARI_PREFIX
    from envs.nonstationary import cycle_task_names

    with user_errors("--env"):
        names = cycle_task_names(env_name) or (env_name,)
    return all(name.startswith(ATARI_PREFIX) for name in names)


def evaluate(
    args: CommonArgs,
    run_name: str,
    policy: Callable[[np.ndarray], np.ndarray],
    tag: str,
    task_period: int = 0,
    video: str | None = None,
    **env_kwargs,
) -> list[float]:
    """Episode returns of the deterministic ``policy`` on a fresh copy of the env.

    A task cycle is held at ``task_period`` (the training loop's current task, with its
    perturbations). Atari is evaluated on whole games with raw scores (no life loss, no
    reward clipping). With ``--eval-epsilon`` a uniformly random action replaces the
    policy's at that rate (its own random stream: training's is left intact). With
    ``--capture-video`` the first ``--video-episodes`` episodes are recorded to the folder
    ``video`` (default :func:`video_folder`); a machine that cannot render gets a warning and
    unrecorded episodes.
    """
    from envs import make_env
    from envs.nonstationary import TaskCycle
    from envs.video import record_episodes

    render_mode = "rgb_array" if args.capture_video else None
    seed = args.seed + 10_000
    if is_atari(args.env):
        env_kwargs = {"training": False, **env_kwargs}
    env = make_env(
        args.env,
        seed=seed,
        render_mode=render_mode,
        switch_every=args.switch_every,
        **nonstationary_options(args),
        **env_kwargs,
    )
    if isinstance(env.unwrapped, TaskCycle):
        env.unwrapped.hold_task(task_period)
    if args.eval_epsilon > 0:
        env.action_space.seed(seed)
        explore = np.random.default_rng(seed)
        greedy = policy

        def policy(obs):
            if explore.random() < args.eval_epsilon:
                return env.action_space.sample()
            return greedy(obs)

    if args.capture_video:
        folder = video or video_folder(run_name, tag)
        return record_episodes(
            env, policy, folder, args.eval_episodes, ".", seed=seed, recorded=args.video_episodes
        )
    returns = []
    for episode in range(args.eval_episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def video_folder(run_name: str, tag: str) -> str:
    """A new folder for an evaluation's videos: ``videos/<run_name>/<tag>``, or ``<tag>_2``, …
    when that exists (after a resume): no video is overwritten."""
    from envs.video import VIDEO_ROOT

    folder, copy = f"{VIDEO_ROOT}/{run_name}/{tag}", 1
    while Path(folder).exists():
        copy += 1
        folder = f"{VIDEO_ROOT}/{run_name}/{tag}_{copy}"
    return folder


def cycle_states(envs: gym.vector.VectorEnv) -> list[dict] | None:
    """Each training copy's task-cycle state (its switch clock); None when not a cycle."""
    try:  # through wrappers (PPO's normalization) to the copies
        return list(envs.unwrapped.call("state_dict"))
    except AttributeError:
        return None


def restore_cycles(envs: gym.vector.VectorEnv, states: list[dict], origin: str) -> None:
    """Give each copy the saved switch clock (call before the first ``envs.reset``).

    The clocks count the steps of all copies together, so a resume with another
    ``--num-envs`` gets them rescaled. ``origin``: the flag the checkpoint came from, for the
    message (``--resume <run>``).
    """
    if cycle_states(envs) is None:
        raise UserError(
            f"{origin}: that run trained on a changing env (a task cycle or "
            "perturbations); continue it with the same --env and perturbation flags"
        )
    total_ticks = states[0]["ticks"] * len(states)
    envs.unwrapped.call("load_state_dict", {**states[0], "ticks": total_ticks // envs.num_envs})


def resolved_settings(args: CommonArgs, device, envs: gym.vector.VectorEnv) -> dict:
    """What the run's settings resolved to on this machine, for ``config.json``."""
    return {"device": str(device), "threads": args.threads, "env_ids": env_ids(envs)}


def env_ids(envs: gym.vector.VectorEnv) -> list[str]:
    """The registered ids of what the first training copy runs: its tasks for a cycle. Says,
    for instance, whether HumanoidBench's H1 or the built-in one ran."""
    if not isinstance(envs.unwrapped, gym.vector.SyncVectorEnv):  # ALE's: one registered game
        return [envs.unwrapped.spec.id]
    try:
        specs = [task.spec for task in envs.unwrapped.get_attr("task_envs")[0]]
    except AttributeError:
        specs = [envs.unwrapped.get_attr("spec")[0]]
    return [spec.id if spec is not None else "unregistered" for spec in specs]
