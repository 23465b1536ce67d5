"""The command line every agent shares: common settings, parsing, and one-line user errors.

- :class:`CommonArgs`: the fields every agent's ``Args`` has (seed, env, method, logging, …).
- :func:`parse_args`: an agent's ``Args`` from the command line; ``--resume`` reloads the run's
  saved settings as defaults.
- :func:`attach_method`: the method ``--method`` / ``--<network>-method`` names, attached to a
  network.
- :class:`UserError` and :func:`run_cli`: every user mistake ends as one line and exit code 2.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tyro

from plasticity import MethodConfig, MethodHandle, make_method


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


def method_name(args: CommonArgs, network: str) -> tuple[str, str]:
    """The method named for ``network`` and the flag that named it: ``--<network>-method``
    when the agent has that field and it is set, else ``--method``."""
    own = getattr(args, f"{network}_method", None)
    return (own, flag(f"{network}_method")) if own else (args.method, "--method")


def attach_method(
    args: CommonArgs, network: str, module, lr: float, **attach_kwargs
) -> MethodHandle:
    """The method named for ``network`` (``actor``, ``critic``, ``q``) attached to ``module``,
    with its setting errors reported against the flag that named it."""
    name, origin = method_name(args, network)
    with user_errors(origin):
        return make_method(name, config=args.plasticity).attach(module, lr, **attach_kwargs)


def parse_args(
    args_class: type, agent: str, argv: list[str] | None = None, prog: str | None = None
):
    """The agent's ``Args`` from the command line (``argv``, default ``sys.argv[1:]``).

    With ``--resume RUN``, the settings saved in ``RUN/config.json`` are the defaults, so a
    resumed run keeps its env, methods and hyperparameters; flags given again override them
    (typically a higher ``--total-timesteps``). A path that is not a run of this agent parses
    as usual, and :class:`agents.run.Run` then reports what is wrong with it.
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
            if "q_method" in names and "q_method" not in saved:  # DQN's, once --critic-method
                saved["q_method"] = saved.get("critic_method")
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
    except (UserError, TrainingDiverged) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
