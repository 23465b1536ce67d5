"""What every agent shares, so that each agent file holds only its algorithm.

- :class:`CommonArgs`: the fields every agent's ``Args`` has (seed, env, methods, logging, …).
- :class:`Run`: the run folder ``runs/<run_name>/`` with ``config.json``, TensorBoard events,
  ``scalars.jsonl``, checkpoints and ``summary.json``; ``--resume`` reopens one.
- :func:`attach_method`: a plasticity method (``--method``/``--actor-method``/``--critic-method``)
  attached to a network, with user errors turned into one-line messages.
- :func:`make_train_envs`, :func:`evaluate`: environments for training and evaluation.
- :class:`UserError` and :func:`run_cli`: every user mistake ends as one line and exit code 2.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
import torch
import tyro
from torch import nn

from plasticity import MethodConfig, MethodHandle, make_method

CHECKPOINTS_KEPT = 2


class UserError(Exception):
    """A mistake in the command or its inputs: reported as one line, exit code 2."""


class TrainingDiverged(Exception):
    """A loss became NaN or Inf; the last good checkpoint is kept."""


@contextmanager
def user_errors(what: str):
    """Turn the ``ValueError`` of a user-facing call (make_env, make_method) into a UserError."""
    try:
        yield
    except ValueError as err:
        raise UserError(f"{what}: {err}") from None


@dataclass
class CommonArgs:
    """Fields every agent has; each agent's ``Args`` adds its algorithm's own."""

    exp_name: str = "run"
    """name of this experiment (part of the run name)"""
    seed: int = 1
    """seed of the experiment"""
    torch_deterministic: bool = True
    """if toggled, ``torch.backends.cudnn.deterministic=True``"""
    env: str = "Pendulum-v1"
    """environment: a short name of ``envs.ENV_NAMES``, a cycle, or a gymnasium id"""
    total_timesteps: int = 100_000
    """total environment steps of the run (with --resume: up to this many in all)"""
    num_envs: int = 1
    """number of parallel training environments"""
    switch_every: int | None = None
    """env steps (all copies together) between task switches of a cycle env (atari_cycle,
    humanoid_cycle, cycle:...) or a perturbed one; with several copies, rounded to a multiple
    of num_envs"""
    switch_mode: Literal["episode", "truncate"] = "episode"
    """when a switch takes effect: at the next episode boundary, or at once (the running
    episode is truncated)"""
    permute_observations: bool = False
    """draw a new permutation of the observation entries at every switch (any env becomes a
    nonstationary one; needs --switch-every)"""
    permute_actions: bool = False
    """draw a new permutation of the actions (discrete) or action entries (Box) at every
    switch (needs --switch-every)"""
    redraw_friction: bool = False
    """MuJoCo tasks: draw new sliding frictions at every switch (needs --switch-every)"""
    device: str = "auto"
    """torch device: auto (CUDA when available), cpu, cuda, cuda:1, …"""
    method: str = "none"
    """plasticity method of every network, e.g. fire, adamo, fire+adamo (see plasticity.METHODS)"""
    actor_method: str | None = None
    """plasticity method of the actor/policy network (overrides --method)"""
    critic_method: str | None = None
    """plasticity method of the critic/value network (overrides --method)"""
    plasticity: tyro.conf.OmitArgPrefixes[MethodConfig] = field(default_factory=MethodConfig)
    """settings of the plasticity methods"""
    eval_every: int = 10_000
    """env steps between evaluation runs (0 disables evaluation)"""
    eval_episodes: int = 5
    """episodes per evaluation, with the deterministic policy (0 disables evaluation)"""
    eval_epsilon: float = 0.0
    """probability of a uniformly random action in evaluation episodes: 0 is the deterministic
    policy; dqn_atari.py evaluates with 0.05, which also keeps games that wait for FIRE after a
    lost life from stalling until the time limit"""
    capture_video: bool = False
    """record evaluation episodes to videos/<run_name>/"""
    metrics_every: int = 5_000
    """env steps between plasticity metrics (0 disables them)"""
    checkpoint_every: int = 50_000
    """env steps between checkpoints (one is always written at the end)"""
    save_buffer: bool = False
    """include the replay buffer in checkpoints (large; resumed runs otherwise refill it)"""
    resume: str | None = None
    """a run folder (runs/<run_name>) to continue from its latest checkpoint"""
    runs_dir: str = "runs"
    """folder of the run folders"""
    run_name: str | None = None
    """name of this run's folder under --runs-dir (default
    <env>__<agent>-<method>__<exp_name>__<seed>__<unix time>); an existing run is refused:
    continue it with --resume"""
    compile: bool = False
    """compile the loss computations with torch.compile (the first updates wait for it)"""
    cudagraphs: bool = False
    """on CUDA, also replay the compiled losses as CUDA graphs (implies --compile; on the CPU
    it compiles without graphs, with a notice)"""
    matmul_precision: Literal["highest", "high", "medium"] = "highest"
    """float32 matmuls (torch.set_float32_matmul_precision): high = TF32 on CUDA, medium =
    bfloat16 on CPUs with AVX512-BF16 or AMX; highest keeps full float32"""


def flag(field_name: str) -> str:
    """The command-line flag of an ``Args`` field: ``eval_every`` -> ``--eval-every``."""
    return "--" + field_name.replace("_", "-")


def fill_unset(args, defaults: dict):
    """``args`` with each field still ``None`` set from ``defaults`` (the agents' per-kind
    defaults, resolved once the env is known and before the run folder records the config)."""
    unset = {name: value for name, value in defaults.items() if getattr(args, name) is None}
    return dataclasses.replace(args, **unset)


def check_counts(args: CommonArgs, positive: Iterable[str] = ()) -> None:
    """UserError for a count out of range: ``total_timesteps``, ``num_envs`` and the agent's
    ``positive`` fields must be at least 1, the schedule fields at least 0 (0 disables).

    Fields still ``None`` (defaults resolved later from the env) are skipped.
    """
    for name in ("total_timesteps", "num_envs", *positive):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"{flag(name)} must be a positive integer, got {value}")
    if not 0 <= args.eval_epsilon <= 1:
        raise UserError(f"--eval-epsilon must be in [0, 1], got {args.eval_epsilon}")
    for name in ("eval_every", "eval_episodes", "metrics_every", "checkpoint_every"):
        value = getattr(args, name)
        if value < 0:
            raise UserError(f"{flag(name)} must be 0 (off) or a positive integer, got {value}")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but CUDA is not available: use --device cpu")
    return device


def loss_compiler(args: CommonArgs, device: torch.device) -> Callable[[Callable], Callable]:
    """Apply ``--matmul-precision``; return what wraps the agent's loss functions.

    ``--compile`` gives ``torch.compile`` (default mode), ``--cudagraphs`` its
    ``reduce-overhead`` mode, which on CUDA replays each compiled loss (forward and backward)
    as a CUDA graph; the agent then calls :func:`torch.compiler.cudagraph_mark_step_begin`
    once per update. Without either flag the losses run eagerly. Only pure tensor functions
    are compiled: interventions rewrite parameters in place, so compiled code stays valid.
    """
    torch.set_float32_matmul_precision(args.matmul_precision)
    compiling = args.compile or args.cudagraphs
    if compiling and device.type == "cpu" and not any(map(shutil.which, ("g++", "c++", "clang++"))):
        raise UserError(
            "--compile on the CPU needs a C++ compiler (g++); install one "
            "(apt-get install g++) or leave out --compile"
        )
    if args.cudagraphs and device.type != "cuda":
        print("--cudagraphs needs a CUDA device; compiling without CUDA graphs", file=sys.stderr)
    if args.cudagraphs and device.type == "cuda":
        return lambda fn: torch.compile(fn, mode="reduce-overhead")
    if compiling:
        return torch.compile
    return lambda fn: fn


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = deterministic


def attach_method(
    args: CommonArgs, role: str, network: nn.Module, lr: float, **attach_kwargs
) -> MethodHandle:
    """The method named for ``role`` ("actor" or "critic"; --method unless overridden)."""
    name = getattr(args, f"{role}_method", None) or args.method
    with user_errors(f"--{role}-method" if getattr(args, f"{role}_method", None) else "--method"):
        method = make_method(name, config=args.plasticity)
    return method.attach(network, lr, **attach_kwargs)


# --- environments ---------------------------------------------------------------------------


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


def make_train_envs(args: CommonArgs, **env_kwargs) -> gym.vector.SyncVectorEnv:
    """``num_envs`` copies of ``args.env``, each recording its episode statistics.

    The copies share the cycle's schedule (see ``envs.nonstationary``); the default
    next-step autoreset keeps their switch clocks in step. ``--switch-every`` counts the env
    steps of all copies together, so each copy's clock gets ``switch_every / num_envs``.
    """
    from envs import make_env
    from envs.nonstationary import TaskCycle
    from envs.wrappers import find_wrapper

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
            # Atari records raw game scores inside (before clipping), cycles report task_return.
            if find_wrapper(env, gym.wrappers.RecordEpisodeStatistics) or isinstance(
                env.unwrapped, TaskCycle
            ):
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
    **env_kwargs,
) -> list[float]:
    """Episode returns of the deterministic ``policy`` on a fresh copy of the env.

    A task cycle is held at ``task_period`` (the training loop's current task, with its
    perturbations). Atari is evaluated on whole games with raw scores (no life loss, no
    reward clipping). With ``--eval-epsilon`` a uniformly random action replaces the
    policy's at that rate (its own random stream: training's is left intact). With
    ``--capture-video`` the episodes are recorded to ``videos/<run_name>/<tag>/``
    (``<tag>_2``, … when that folder exists, as after a resume: no video is overwritten); a
    machine that cannot render gets a warning and unrecorded episodes.
    """
    from envs import make_env
    from envs.nonstationary import TaskCycle
    from envs.video import VIDEO_ROOT, record_episodes

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
        folder, copy = f"{run_name}/{tag}", 1
        while (Path(VIDEO_ROOT) / folder).exists():
            copy += 1
            folder = f"{run_name}/{tag}_{copy}"
        return record_episodes(env, policy, folder, episodes=args.eval_episodes, seed=seed)
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


class EpisodeTracker:
    """Episode returns (overall and per task) and task switches from vector-env ``infos``."""

    def __init__(self):
        self.recent: list[float] = []
        self.period = 0

    def update(self, infos: dict, run: Run, step: int) -> bool:
        """Log the episodes that ended (one row each) and a task switch; whether one began."""
        if "task_return" in infos:
            done = infos["_task_return"]
            returns = infos["task_return"]
        elif "episode" in infos:
            done = infos["_episode"]
            returns = infos["episode"]["r"]
        else:
            done, returns = np.zeros(0, bool), np.zeros(0)
        for i in np.flatnonzero(done):
            value = float(returns[i])
            self.recent = [*self.recent[-19:], value]
            row = {"charts/episodic_return": value}
            if "task_name" in infos:
                row[f"charts/episodic_return/{infos['task_name'][i]}"] = value
            run.log(step, row)
        if "task_period" not in infos:
            return False
        period = int(np.max(infos["task_period"]))
        if period <= self.period:
            return False
        self.period = period
        run.log(step, {"charts/task_id": float(np.max(infos["task_id"]))})
        return True

    @property
    def mean_return(self) -> float:
        return mean_or_nan(self.recent)


class ReplayBuffer:
    """A ring buffer of transitions kept on the training device; sampling stays there.

    ``add`` takes one vector-env step (``(num_envs, ...)`` arrays) and a mask of the copies
    whose transition is real: with next-step autoreset the step after an episode's end only
    resets, and must not be stored.
    """

    def __init__(self, capacity: int, obs_shape, obs_dtype, action_shape, action_dtype, device):
        self.capacity, self.device = capacity, device
        # empty, not zeros: only the first `size` rows are ever read, and zero-filling a
        # million humanoid transitions costs seconds and touches gigabytes up front
        self.obs = torch.empty((capacity, *obs_shape), dtype=obs_dtype, device=device)
        self.next_obs = torch.empty_like(self.obs)
        self.actions = torch.empty((capacity, *action_shape), dtype=action_dtype, device=device)
        self.rewards = torch.empty(capacity, dtype=torch.float32, device=device)
        self.terminations = torch.empty(capacity, dtype=torch.float32, device=device)
        self.position = 0
        self.size = 0

    def add(self, obs, next_obs, actions, rewards, terminations, valid) -> None:
        keep = np.flatnonzero(valid)
        if keep.size == 0:
            return
        idx = (self.position + np.arange(keep.size)) % self.capacity
        idx_t = torch.as_tensor(idx, device=self.device)
        for store, values in (
            (self.obs, obs),
            (self.next_obs, next_obs),
            (self.actions, actions),
            (self.rewards, rewards),
            (self.terminations, terminations),
        ):
            store[idx_t] = torch.as_tensor(values[keep], device=self.device).to(store.dtype)
        self.position = int((self.position + keep.size) % self.capacity)
        self.size = min(self.size + keep.size, self.capacity)

    def sample(self, batch_size: int):
        idx = torch.randint(0, self.size, (batch_size,), device=self.device)
        return (
            self.obs[idx],
            self.actions[idx],
            self.rewards[idx],
            self.next_obs[idx],
            self.terminations[idx],
        )

    def state_dict(self) -> dict:
        n = self.size
        return {
            "position": self.position,
            "size": n,
            **{
                k: getattr(self, k)[:n].cpu()
                for k in ("obs", "next_obs", "actions", "rewards", "terminations")
            },
        }

    def load_state_dict(self, state: dict) -> None:
        n = state["size"]
        for key in ("obs", "next_obs", "actions", "rewards", "terminations"):
            getattr(self, key)[:n] = state[key].to(self.device)
        self.position, self.size = state["position"], n


def progress_bar(total: int, initial: int):
    """A tqdm bar over env steps (plain lines when stderr is not a terminal)."""
    from tqdm import tqdm

    return tqdm(
        total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=1.0, disable=None
    )


# --- the run folder -------------------------------------------------------------------------


def _jsonable(value):
    if dataclasses.is_dataclass(value):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


class Run:
    """A run folder: config, scalars (TensorBoard + JSONL), checkpoints, summary.

    A new run is ``<runs_dir>/<env>__<exp_name>__<seed>__<unix time>``; with ``args.resume``
    the given folder is reopened, its latest checkpoint found, and logging appends to it.
    """

    def __init__(self, agent: str, args: CommonArgs):
        self.agent = agent
        if args.resume:
            self.dir = Path(args.resume)
            if not (self.dir / "config.json").is_file():
                raise UserError(
                    f"--resume {args.resume}: not a run folder (no config.json); "
                    f"pass a folder under {args.runs_dir}/"
                )
            saved = json.loads((self.dir / "config.json").read_text())
            if saved.get("agent") != agent:
                raise UserError(
                    f"--resume {args.resume}: that run is a {saved.get('agent')} run; "
                    f"resume it with --agent {saved.get('agent')}"
                )
            if self.latest_checkpoint() is None:
                raise UserError(f"--resume {args.resume}: the run has no checkpoint to resume from")
        elif args.run_name is not None:
            if args.run_name in ("", ".", "..") or "/" in args.run_name:
                raise UserError(
                    f"--run-name {args.run_name!r} is not a folder name: use letters, digits "
                    "and -_. without '/'"
                )
            self.dir = Path(args.runs_dir) / args.run_name
            if (self.dir / "config.json").exists():
                raise UserError(
                    f"run {self.dir} exists already: continue it with --resume {self.dir}, "
                    "or choose another --run-name"
                )
            self.dir.mkdir(parents=True, exist_ok=True)
        else:
            env_name = args.env.replace("/", "-").replace(":", "-").replace(",", "-")
            method = args.method.replace("+", "-")
            name = f"{env_name}__{agent}-{method}__{args.exp_name}__{args.seed}__{int(time.time())}"
            self.dir = Path(args.runs_dir) / name
            Path(args.runs_dir).mkdir(parents=True, exist_ok=True)
            copy = 1
            while True:  # runs started in the same second (a sweep) get _2, _3, ...
                try:
                    self.dir.mkdir(exist_ok=False)
                    break
                except FileExistsError:
                    copy += 1
                    self.dir = Path(args.runs_dir) / f"{name}_{copy}"
        if not args.resume:
            config = {"agent": agent, **_jsonable(args)}
            (self.dir / "config.json").write_text(json.dumps(config, indent=2))
        self.name = self.dir.name
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(self.dir))
        self._scalars = open(self.dir / "scalars.jsonl", "a")  # noqa: SIM115 (closed in close())

    def log(self, step: int, scalars: dict[str, float]) -> None:
        """Write scalars at ``step`` to TensorBoard and one JSON line."""
        clean = {k: float(v) for k, v in scalars.items()}
        for key, value in clean.items():
            self.writer.add_scalar(key, value, step)
        self._scalars.write(json.dumps({"step": step, **clean}) + "\n")
        self._scalars.flush()

    def checkpoint_dir(self) -> Path:
        return self.dir / "checkpoints"

    def latest_checkpoint(self) -> Path | None:
        found = sorted(self.checkpoint_dir().glob("step_*.pt"), key=lambda p: int(p.stem[5:]))
        return found[-1] if found else None

    def save_checkpoint(self, step: int, state: dict) -> Path:
        """Write ``state`` atomically as ``checkpoints/step_<step>.pt``; keep the newest two."""
        folder = self.checkpoint_dir()
        folder.mkdir(exist_ok=True)
        path = folder / f"step_{step}.pt"
        tmp = path.with_suffix(".tmp")
        torch.save({"agent": self.agent, "step": step, **state}, tmp)
        os.replace(tmp, path)
        old = sorted(folder.glob("step_*.pt"), key=lambda p: int(p.stem[5:]))[:-CHECKPOINTS_KEPT]
        for stale in old:
            stale.unlink()
        return path

    def load_checkpoint(self, device: torch.device) -> dict:
        path = self.latest_checkpoint()
        try:
            state = torch.load(path, map_location=device, weights_only=False)
        except Exception as err:  # a truncated or foreign file: say which and stop
            raise UserError(
                f"checkpoint {path} cannot be read ({err}); delete it to use the previous one"
            ) from None
        if state.get("agent") != self.agent:
            raise UserError(f"checkpoint {path} is not a {self.agent} checkpoint")
        return state

    def write_summary(self, summary: dict) -> None:
        (self.dir / "summary.json").write_text(json.dumps(summary, indent=2))

    def close(self) -> None:
        self.writer.close()
        self._scalars.close()


def load_modules(state: dict, modules: dict[str, nn.Module], path_hint: str) -> None:
    """Load ``state[name]`` into each module; a shape mismatch is a UserError."""
    for name, module in modules.items():
        try:
            module.load_state_dict(state[name])
        except (KeyError, RuntimeError) as err:
            first = str(err).splitlines()[0]
            raise UserError(
                f"checkpoint in {path_hint} does not fit this {name} ({first}); "
                "resume with the same env and network settings"
            ) from None


def task_cycles(envs: gym.vector.VectorEnv) -> list:
    """The :class:`envs.nonstationary.TaskCycle` of each training copy (none: not a cycle)."""
    from envs.nonstationary import TaskCycle

    copies = [env.unwrapped for env in envs.unwrapped.envs]
    return [env for env in copies if isinstance(env, TaskCycle)]


def restore_checkpoint(
    run: Run,
    args: CommonArgs,
    device: torch.device,
    modules: dict[str, nn.Module],
    handles: dict[str, MethodHandle],
    envs: gym.vector.VectorEnv,
    tracker: EpisodeTracker,
    buffer: ReplayBuffer | None = None,
    total_steps: int | None = None,
) -> dict:
    """Load a resumed run's latest checkpoint into networks, method handles and buffer.

    Also restores the random number generators and a task cycle's clock, so the resumed run
    stays on its task and switches where the uninterrupted one would (call it before the
    first ``envs.reset``). A mismatch (other networks, another
    ``--method``) or a run already at ``total_steps`` (default ``--total-timesteps``) is a
    UserError. Returns the checkpoint, for the agent's own extras and ``state["step"]``.
    """
    state = run.load_checkpoint(device)
    load_modules(state, modules, run.name)
    with user_errors(f"--resume {args.resume}"):
        for name, handle in handles.items():
            handle.load_state_dict(state[name])
    if buffer is not None and "buffer" in state:
        buffer.load_state_dict(state["buffer"])
    set_rng_state(state["rng"])
    if "task_cycle" in state:
        restore_cycle_clock(args, envs, tracker, state["task_cycle"])
    limit = args.total_timesteps if total_steps is None else total_steps
    if state["step"] >= limit:
        raise UserError(
            f"--resume {args.resume}: the run is already at step {state['step']}; "
            "raise --total-timesteps to continue it"
        )
    return state


def restore_cycle_clock(
    args: CommonArgs, envs: gym.vector.VectorEnv, tracker: EpisodeTracker, saved: dict
) -> None:
    """Set each copy's switch clock and the tracker's period from a checkpoint.

    The clocks count the steps of all copies together, so a resume with another
    ``--num-envs`` gets them rescaled; the reset that follows the restore counts one tick.
    """
    cycles = task_cycles(envs)
    if not cycles:
        raise UserError(
            f"--resume {args.resume}: that run trained on a changing env (a task cycle or "
            "perturbations); resume it with the same --env and perturbation flags"
        )
    steps_per_copy = saved["ticks"][0] * len(saved["ticks"]) // len(cycles)
    for cycle in cycles:
        cycle.ticks = max(0, steps_per_copy - 1)
    tracker.period = saved["period"]


def checkpoint_state(
    modules: dict[str, nn.Module],
    handles: dict[str, MethodHandle],
    envs: gym.vector.VectorEnv,
    tracker: EpisodeTracker,
    buffer: ReplayBuffer | None = None,
) -> dict:
    """What :func:`restore_checkpoint` reads: networks, method handles, RNGs, a task cycle's
    clock, optional buffer."""
    state = {name: module.state_dict() for name, module in modules.items()}
    state.update({name: handle.state_dict() for name, handle in handles.items()})
    state["rng"] = rng_state()
    cycles = task_cycles(envs)
    if cycles:
        state["task_cycle"] = {"ticks": [c.ticks for c in cycles], "period": tracker.period}
    if buffer is not None:
        state["buffer"] = buffer.state_dict()
    return state


def finish_run(
    run: Run,
    args: CommonArgs,
    step: int,
    sps: float,
    eval_returns: list[float],
    handles: dict[str, MethodHandle],
    **extra,
) -> dict:
    """Log the final evaluation, write ``summary.json`` and close the run; returns the summary.

    ``handles`` maps network names (``actor``, ``critic``, ``q``) to their method handles: the
    summary gives each network's method and intervention count. ``extra`` adds agent fields.
    """
    if eval_returns:
        run.log(step, {"eval/episodic_return": mean_or_nan(eval_returns)})
    summary = {
        "agent": run.agent,
        "env": args.env,
        "method": args.method,
        **{f"{name}_method": handle.method.name for name, handle in handles.items()},
        "total_timesteps": step,
        "final_eval_return": mean_or_nan(eval_returns),
        "final_eval_returns": eval_returns,
        "sps": sps,
        **extra,
        "interventions": {name: handle.interventions for name, handle in handles.items()},
        "run_dir": str(run.dir),
    }
    run.write_summary(summary)
    run.close()
    return summary


def raise_if_diverged(nonfinite: torch.Tensor, run: Run, step: int) -> None:
    """Stop the run when a loss was NaN/Inf (a flag kept on the device, read only here).

    Called before every checkpoint, so the last checkpoint written is the last good one.
    """
    if bool(nonfinite):
        raise TrainingDiverged(
            f"a loss became NaN/Inf before step {step}; the last good checkpoint is kept in "
            f"{run.dir} (lower the learning rates?)"
        )


def rng_state() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def crossed(step: int, every: int, span: int) -> bool:
    """Whether the last ``span`` steps up to ``step`` crossed a multiple of ``every`` (0: never).

    The schedule test of every agent: steps advance by ``num_envs`` (or a rollout), so an
    exact ``step % every == 0`` could be stepped over.
    """
    return every > 0 and step // every > (step - span) // every


def mean_or_nan(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan


def parse_args(
    args_class: type, agent: str, argv: list[str] | None = None, prog: str | None = None
):
    """The agent's ``Args`` from the command line (``argv``, default ``sys.argv[1:]``).

    With ``--resume RUN``, the settings saved in ``RUN/config.json`` are the defaults, so a
    resumed run keeps its env, methods and hyperparameters; flags given again override them
    (typically a higher ``--total-timesteps``). A path that is not a run of this agent parses
    as usual, and :class:`Run` then reports what is wrong with it.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    resume = next(
        (
            arg.split("=", 1)[1] if "=" in arg else argv[i + 1]
            for i, arg in enumerate(argv)
            if (arg == "--resume" and i + 1 < len(argv)) or arg.startswith("--resume=")
        ),
        None,
    )
    default = None
    config_file = Path(resume) / "config.json" if resume else None
    if config_file is not None and config_file.is_file():
        saved = json.loads(config_file.read_text())
        if saved.get("agent") == agent:
            names = {f.name for f in dataclasses.fields(args_class)}
            skip = {"plasticity", "resume", "run_name"}
            values = {k: v for k, v in saved.items() if k in names - skip}
            default = args_class(
                **values, plasticity=MethodConfig(**saved.get("plasticity", {})), resume=resume
            )
    return tyro.cli(args_class, args=argv, prog=prog, default=default)


def run_cli(main: Callable[[], None]) -> None:
    """Run ``main``; a UserError or a divergence ends with one line on stderr and exit code 2."""
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
