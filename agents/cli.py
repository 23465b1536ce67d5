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
import math
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import tyro

from agents.errors import TrainingDiverged, UserError
from agents.files import disk_full_message
from agents.networks import widening
from plasticity import MethodConfig, MethodHandle, make_method
from plasticity.methods import ER_LR_RL, parse_method


@contextmanager
def user_errors(what: str):
    """Turn the ``ValueError`` of a user-facing call (make_env, make_method) into a UserError.

    Those messages name Python arguments (``pass pad_spaces=True``); where an argument is also
    a setting of :class:`CommonArgs`, the message names its flag (``pass --pad-spaces``).
    """
    try:
        yield
    except ValueError as err:
        raise UserError(f"{what}: {as_flags(str(err))}") from None


def as_flags(message: str) -> str:
    """``message`` with each field name of :class:`CommonArgs` and :class:`MethodConfig`
    written as its flag (``switch_every=<env steps>`` as ``--switch-every N``, ``fire_at=[0]``
    as ``--fire-at=[0]``). Only names with an underscore: one-word names (env, seed, method,
    shrink) are ordinary words in a message too."""

    def replace(match: re.Match) -> str:
        name, value = match.group(1), match.group(2) or ""
        return flag(name) + (" N" if value.startswith("=<") else "")

    fields = (*dataclasses.fields(CommonArgs), *dataclasses.fields(MethodConfig))
    names = "|".join(f.name for f in fields if "_" in f.name)
    return re.sub(rf"(?<![\w.-])({names})(=True\b|=<[^>]*>)?(?![\w.])", replace, message)


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
    pad_spaces: bool = False
    """let a cycle of vector tasks with different observation or action sizes share one space,
    zero-padded to the largest (humanoid_fire_cycle implies it)"""
    device: str = "auto"
    """torch device: auto (CUDA when available), cpu, cuda, cuda:1, …"""
    threads: int = 1
    """torch CPU threads of this run: 1 is the fastest for this project's small networks on a
    busy 2-core machine, several times faster than torch's default there (benchmarks/threads.py);
    raise it for image observations on a machine with idle cores"""
    method: str = "none"
    """plasticity method of every network, e.g. fire, adamo, fire+adamo (python train.py --help
    lists them)"""
    plasticity: tyro.conf.OmitArgPrefixes[MethodConfig] = field(default_factory=MethodConfig)
    """settings of the plasticity methods"""
    layer_norm: bool = False
    """normalize before each hidden nonlinearity of every network (LayerNorm; over channels
    and positions after a conv): an architecture choice, and what --method nap needs"""
    activation: Literal["relu", "crelu", "dff"] | None = None
    """hidden nonlinearity of every network: relu, crelu ([relu(x), relu(-x)]) or dff (deep
    Fourier features [sin x, cos x]); the last two double the next layer's fan-in. Unset:
    each agent's own (ReLU; PPO's vector networks tanh)"""
    eval_every: int = 10_000
    """env steps between evaluation runs (0 disables evaluation)"""
    eval_episodes: int = 5
    """episodes per evaluation, with the deterministic policy (0 disables evaluation)"""
    eval_epsilon: float = 0.0
    """probability of a uniformly random action in evaluation episodes: 0 is the deterministic
    policy; dqn_atari.py evaluates with 0.05, which also keeps games that wait for FIRE after a
    lost life from stalling until the time limit"""
    capture_video: bool = False
    """record evaluation episodes to videos/<run_name>/step_<N>/ and final/ (MuJoCo needs
    EGL)"""
    video_episodes: int = 1
    """how many episodes of each evaluation --capture-video records (the rest are played
    without rendering, which on a CPU renderer costs far more than the episode itself)"""
    metrics_every: int = 5_000
    """env steps between plasticity metrics (0 disables them)"""
    checkpoint_every: int = 50_000
    """env steps between checkpoints (one is always written at the end, or at Ctrl-C)"""
    keep_checkpoints: int = 2
    """how many of the newest checkpoints to keep (0 keeps all)"""
    resume: str | None = None
    """a run folder (runs/<run_name>) to continue from its latest checkpoint"""
    branch_from: str | None = None
    """start a new run from another run's checkpoint (its folder: the latest; or
    <run>/checkpoints/step_<N>.pt) with this run's method: networks, replay buffer (the parent
    must be trained with --save-buffer), task clocks, random generators and, where the
    optimizer is the same kind, its state carry over; the parent's settings are the defaults,
    the method's are this command's; interventions due at the branch step (--fire-at <N>) run
    at the first update after it"""
    runs_dir: str = "runs"
    """folder of the run folders"""
    run_name: str | None = None
    """name of this run's folder under --runs-dir (default
    <env>__<agent>-<method>__<exp_name>__<seed>__<unix time>); an existing run is refused:
    continue it with --resume"""
    compile: bool = False
    """compile each gradient step and the acting with torch.compile (the first updates wait
    for it)"""
    cudagraphs: bool = False
    """on CUDA, also replay the compiled updates as CUDA graphs (implies --compile; on the CPU
    it compiles without graphs, with a notice)"""
    whole_graph: bool = False
    """capture each update (forward, backward, optimizer step) as one CUDA graph with
    torch.cuda.graph (AdamO's isometry step on the host around it; optimizers other than
    Adam and AdamO: --cudagraphs instead); on the CPU, run eagerly and check at every call that
    a replay would run what eager runs (slow: a check, not a speed path)"""
    matmul_precision: Literal["highest", "high", "medium"] = "highest"
    """float32 matmuls (torch.set_float32_matmul_precision): high = TF32 on CUDA, medium =
    bfloat16 on CPUs with AVX512-BF16 or AMX; highest keeps full float32"""
    verbose: int = 1
    """console output: 0 = the start and end lines only; 1 = also progress, evaluation results
    and a table of the logged scalars at every metrics step"""
    track: bool = False
    """also log to Weights & Biases (needs the 'track' extra: pip install wandb)"""
    wandb_project_name: str = "plasticity-rl"
    """the Weights & Biases project of --track"""
    wandb_entity: str | None = None
    """the Weights & Biases entity (team) of --track"""

    # the agents' operations on their settings (module functions below)

    def check(self, **ranges) -> None:
        """:func:`check_settings` of these settings with the agent's ``ranges``."""
        check_settings(self, **ranges)

    def with_defaults(self, defaults: dict | None = None, **method_defaults):
        """These settings with the unset ones from ``defaults`` (:func:`fill_unset`) and the
        unset method settings given their RL values, then ``method_defaults``
        (:func:`with_rl_method_defaults`)."""
        return with_rl_method_defaults(fill_unset(self, defaults or {}), **method_defaults)

    def method_parts(self, network: str) -> tuple[str, ...]:
        """:func:`method_parts` of the method these settings name for ``network``."""
        return method_parts(self, network)


@dataclass
class OffPolicyArgs(CommonArgs):
    """The fields of the agents that learn from a replay buffer (SAC, DQN)."""

    save_buffer: bool = False
    """include the replay buffer in checkpoints (only its filled part; resumed runs otherwise
    refill it)"""
    refill_steps: int | None = None
    """after a --resume whose checkpoint has no replay buffer: env steps collected with the
    current policy before updates resume (default --learning-starts)"""
    clear_buffer_on_switch: bool = False
    """empty the replay buffer when a task switch begins (after the switch's interventions);
    updates pause until --learning-starts new transitions are in: a warm start on the new task
    in which only the networks carry over"""


def flag(field_name: str) -> str:
    """The command-line flag of an ``Args`` field: ``eval_every`` -> ``--eval-every``."""
    return "--" + field_name.replace("_", "-")


def fill_unset(args, defaults: dict):
    """``args`` with each field still ``None`` set from ``defaults`` (the agents' per-kind
    defaults, resolved once the env is known and before the run folder records the config)."""
    unset = {name: value for name, value in defaults.items() if getattr(args, name) is None}
    return dataclasses.replace(args, **unset)


RL_METHOD_DEFAULTS = {"er_lr": ER_LR_RL}
"""Method settings whose unset value means one thing in RL and another in the library's
supervised use: the effective-rank ascent's step (the authors' PPO value, not their MNIST one)."""

SETTINGS_ADDED = {"er_schedule": "steps", "er_features": "all"}
"""Method settings added after runs were saved, each with the value that keeps what such a run
did: a resumed run goes on as it started (the effective-rank ascent on the probe batch every
``er_every`` env steps, convolutions ranked too, as before issue 23)."""


def with_rl_method_defaults(args, **agent_defaults):
    """``args`` with the method settings still unset given their RL values
    (:data:`RL_METHOD_DEFAULTS`, then the agent's own ``agent_defaults``), before the run
    folder records the config."""
    defaults = {**RL_METHOD_DEFAULTS, **agent_defaults}
    return dataclasses.replace(args, plasticity=fill_unset(args.plasticity, defaults))


def check_settings(
    args: CommonArgs,
    positive: Iterable[str] = (),
    non_negative: Iterable[str] = (),
    rates: Iterable[str] = (),
    weights: Iterable[str] = (),
    fractions: Iterable[str] = (),
) -> None:
    """UserError for a setting out of range, naming its flag, the value and the range.

    ``positive``: counts of at least 1 (``total_timesteps``, ``num_envs``, ``threads`` always);
    ``non_negative``: counts where 0 means off or none (the logging cadences always);
    ``rates``: finite reals above 0 (learning rates, clipping ranges); ``weights``: finite reals
    of at least 0 (loss coefficients); ``fractions``: reals in [0, 1] (``eval_epsilon``
    always). Fields still ``None`` (defaults resolved later from the
    env) are skipped.
    """
    cadences = ("eval_every", "eval_episodes", "metrics_every", "checkpoint_every")
    checks = (
        (
            ("total_timesteps", "num_envs", "threads", *positive),
            lambda v: v >= 1,
            "a positive integer",
        ),
        (
            (*cadences, "keep_checkpoints", "video_episodes", *non_negative),
            lambda v: v >= 0,
            "0 (off) or a positive integer",
        ),
        (rates, lambda v: math.isfinite(v) and v > 0, "a finite number above 0"),
        (weights, lambda v: math.isfinite(v) and v >= 0, "a finite number of at least 0"),
        (("eval_epsilon", *fractions), lambda v: 0 <= v <= 1, "in [0, 1]"),
    )
    for names, valid, what in checks:
        for name in names:
            value = getattr(args, name)
            if value is not None and not valid(value):
                raise UserError(f"{flag(name)} must be {what}, got {value}")
    if args.verbose not in (0, 1):
        raise UserError(f"--verbose must be 0 or 1, got {args.verbose}")
    if args.seed < 0:  # NumPy's and gymnasium's seeds are unsigned
        raise UserError(f"--seed must be 0 or a positive integer, got {args.seed}")


def refill_steps(args) -> int:
    """Env steps an off-policy agent collects with its current policy after a ``--resume``
    without a saved replay buffer, before its updates resume."""
    return args.learning_starts if args.refill_steps is None else args.refill_steps


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
        method = make_method(name, config=args.plasticity)
        replacing = [part.name for part in method.part_classes if part.replaces_units]
        if replacing and args.activation and widening(args.activation) > 1:
            raise ValueError(
                f"{replacing[0]} replaces single units, and --activation {args.activation} "
                "gives each unit two outputs; use it with --activation relu"
            )
        return method.attach(module, lr, **attach_kwargs)


def method_parts(args: CommonArgs, network: str) -> tuple[str, ...]:
    """The parts of the method named for ``network`` (``fire+adamo``: fire, adamo); none for a
    name that does not parse (attaching the method reports it)."""
    try:
        return parse_method(method_name(args, network)[0])
    except ValueError:
        return ()


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
    resume, branch_from = flag_value(argv, "--resume"), flag_value(argv, "--branch-from")
    if resume and branch_from:
        raise UserError(
            "--resume continues a run and --branch-from starts a new one: pass one of them"
        )
    default = None
    source = resume or branch_from
    config_file = run_folder(Path(source)) / "config.json" if source else None
    if config_file is not None and config_file.is_file():
        flag_used = "--resume" if resume else "--branch-from"
        try:
            saved = json.loads(config_file.read_text())
        except (ValueError, OSError) as err:
            raise UserError(f"{flag_used} {source}: config.json cannot be read ({err})") from None
        if isinstance(saved, dict) and saved.get("agent") == agent:
            names = {f.name for f in dataclasses.fields(args_class)}
            if "q_method" in names and "q_method" not in saved:  # DQN's, once --critic-method
                saved["q_method"] = saved.get("critic_method")
            skip = {"plasticity", "resume", "branch_from", "run_name"}
            if branch_from:  # a branch runs its own method, with that method's defaults
                skip |= {"method", "actor_method", "critic_method", "q_method"}
            values = {k: v for k, v in saved.items() if k in names - skip}
            # settings retired since the run was saved (er_weight_decay) are left behind
            known = {f.name for f in dataclasses.fields(MethodConfig)}
            plasticity = {k: v for k, v in saved.get("plasticity", {}).items() if k in known}
            if resume:
                plasticity = {**SETTINGS_ADDED, **plasticity}
            default = args_class(
                **values,
                plasticity=MethodConfig() if branch_from else MethodConfig(**plasticity),
                resume=resume,
                branch_from=branch_from,
            )
    return tyro.cli(args_class, args=argv, prog=prog, default=default)


def flag_value(argv: list[str], flag_name: str) -> str | None:
    """The value given to ``flag_name`` in ``argv`` (``--flag value`` or ``--flag=value``)."""
    for i, arg in enumerate(argv):
        if arg == flag_name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(flag_name + "="):
            return arg.split("=", 1)[1]
    return None


def run_folder(path: Path) -> Path:
    """The run folder of ``path``: itself, or the run of a checkpoint file
    (``<run>/checkpoints/step_<N>.pt``)."""
    return path.parents[1] if path.suffix == ".pt" else path


INTERRUPTED = 130
"""exit code of a run stopped by Ctrl-C or SIGTERM, after its checkpoint (128 + SIGINT)"""


class StopSignals:
    """Ctrl-C (SIGINT) and SIGTERM, while :meth:`installed`, become a request that the training
    loop reads (:attr:`requested`) to stop cleanly; a second Ctrl-C stops at once
    (``KeyboardInterrupt``). Installed by :func:`run_cli` only, around a command: an agent
    called from Python keeps Python's own Ctrl-C."""

    def __init__(self):
        self.requested: str | None = None

    def _handle(self, signum, _frame) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    @contextmanager
    def installed(self):
        self.requested = None
        if threading.current_thread() is not threading.main_thread():  # no handlers there
            yield
            return
        previous = {
            sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


STOP = StopSignals()
"""The command's stop request; :class:`agents.lifecycle.Lifecycle` reads it."""


def run_agent(main: Callable, args_class: type, agent: str) -> None:
    """``python -m agents.<agent>``: ``main`` of the settings parsed from the command line,
    under :func:`run_cli`."""
    run_cli(lambda: main(parse_args(args_class, agent)))


def run_cli(main: Callable[[], dict | None]) -> None:
    """Run ``main`` with :data:`STOP` installed. A UserError, a divergence or a full disk ends
    with one line on stderr and exit code 2 (a sweep does not retry it); a run that returns an
    ``interrupted`` summary ends with the line to resume it and exit code :data:`INTERRUPTED`,
    and so does a second Ctrl-C, at once."""
    try:
        with STOP.installed():
            summary = main()
    except (UserError, TrainingDiverged) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except (OSError, RuntimeError) as err:
        message = disk_full_message(err)
        if message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(
            "stopped at once by a second Ctrl-C: no checkpoint written now; resume from the "
            "run's latest checkpoint with --resume",
            file=sys.stderr,
        )
        sys.exit(INTERRUPTED)
    if summary and summary.get("status") == "interrupted":
        print(
            f"stopped at step {summary['total_timesteps']:,}, checkpoint saved; continue with: "
            f"python train.py --agent {summary['agent']} --resume {summary['run_dir']}",
            file=sys.stderr,
        )
        sys.exit(INTERRUPTED)
