"""The sweep's command and its grid: :class:`SweepArgs` (flags and sweep files), checked and
resolved into a :class:`Sweep` before any run or Ray starts."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

from experiments.sweep.execution import meaningful_lines

ROOT = Path(__file__).resolve().parents[2]
TRAIN_SCRIPT = ROOT / "train.py"


# flags that the grid sets for each run: giving them after `--` would contradict it
GRID_FLAGS = ("--agent", "--env", "--method", "--seed", "--runs-dir", "--run-name", "--resume")
FILE_KEYS = (
    "name",
    "runs_dir",
    "agent",
    "env",
    "method",
    "seeds",
    "first_seed",
    "args",
    "cpus_per_run",
    "gpus_per_run",
    "max_retries",
)


class SweepError(Exception):
    """A mistake in the sweep command or its inputs: one line on stderr, exit code 2."""


# Settings a sweep file can also give are None on the command line until given, so that the
# file's value fills them; their defaults are applied (and shown by --help) from here.
DEFAULTS = {
    "method": "none",
    "seeds": 3,
    "first_seed": 1,
    "runs_dir": "runs",
    "cpus_per_run": 1,
    "gpus_per_run": 0,
    "max_retries": 1,
}


def shown_default(name: str, metavar: str | None = None):
    """--help's hint for a setting whose default is in :data:`DEFAULTS` (not its None)."""
    return tyro.conf.arg(metavar=metavar, help_behavior_hint=f"(default: {DEFAULTS[name]})")


@dataclass
class SweepArgs:
    """Run a grid of train.py runs on Ray (a local cluster, or --address); arguments after
    ``--`` go to every run."""

    agent: Annotated[tuple[str, ...], tyro.conf.arg(help_behavior_hint="")] = ()
    """agent(s): sac, dqn, ppo (comma-separated or several)"""
    env: Annotated[tuple[str, ...], tyro.conf.arg(help_behavior_hint="")] = ()
    """environment(s), comma-separated or several; a cycle:a,b,... is one env"""
    method: Annotated[tuple[str, ...], shown_default("method")] = ()
    """plasticity method(s), comma-separated or several"""
    seeds: Annotated[int | None, shown_default("seeds", "INT")] = None
    """number of seeds per (agent, env, method)"""
    first_seed: Annotated[int | None, shown_default("first_seed", "INT")] = None
    """the first seed; seeds are first_seed, first_seed+1, ..."""
    file: Annotated[str | None, tyro.conf.arg(metavar="FILE", help_behavior_hint="")] = None
    """a TOML sweep file with these settings (command-line flags win)"""
    name: Annotated[
        str | None,
        tyro.conf.arg(metavar="NAME", help_behavior_hint="(default: from the agents and envs)"),
    ] = None
    """sweep name, the folder under --runs-dir"""
    runs_dir: Annotated[str | None, shown_default("runs_dir", "DIR")] = None
    """folder of sweep folders"""
    address: Annotated[
        str | None,
        tyro.conf.arg(
            metavar="ADDRESS",
            help_behavior_hint="(default: RAY_ADDRESS if set, else start a local cluster)",
        ),
    ] = None
    """join a running Ray cluster: auto, or host:port"""
    num_cpus: Annotated[
        int | None, tyro.conf.arg(metavar="INT", help_behavior_hint="(default: all cores)")
    ] = None
    """CPUs of the local Ray cluster (not with --address)"""
    cpus_per_run: Annotated[float | None, shown_default("cpus_per_run", "FLOAT")] = None
    """CPUs Ray reserves for each run; also its OMP_NUM_THREADS"""
    gpus_per_run: Annotated[float | None, shown_default("gpus_per_run", "FLOAT")] = None
    """GPUs for each run, fractions share one (e.g. 0.25: four runs per GPU)"""
    max_retries: Annotated[int | None, shown_default("max_retries", "INT")] = None
    """retries of a run whose process crashed, each resuming from its checkpoint"""
    stop_timeout: float = 120.0
    """seconds a run gets to write its checkpoint after Ctrl-C before it is killed"""
    extend: bool = False
    """add grid values to an existing sweep of this name (same extra arguments)"""
    force: bool = False
    """replace the grid and extra arguments recorded for this sweep name"""
    dry_run: bool = False
    """list the runs and what the sweep would do with each, start nothing"""


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid."""

    agent: str
    env: str
    method: str
    seed: int

    @property
    def name(self) -> str:
        """The run's folder name: ``<env>__<agent>-<method>__<seed>``, fixed by the grid point."""
        return f"{safe_name(self.env)}__{self.agent}-{safe_name(self.method)}__{self.seed}"


@dataclass
class Sweep:
    """A resolved sweep: its folder, grid, extra arguments and resources."""

    name: str
    runs_dir: Path
    agents: list[str]
    envs: list[str]
    methods: list[str]
    seeds: list[int]
    args: list[str]
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_retries: int = 1
    stop_timeout: float = 120.0
    train_script: Path = TRAIN_SCRIPT

    @property
    def dir(self) -> Path:
        """The sweep folder, ``<runs_dir>/<name>``."""
        return self.runs_dir / self.name

    def grid(self) -> dict[str, list]:
        """The grid as recorded in ``sweep.json``."""
        return {"agent": self.agents, "env": self.envs, "method": self.methods, "seed": self.seeds}

    def runs(self) -> list[RunSpec]:
        """Every run of the grid, in grid order (agent, env, method, seed)."""
        return [
            RunSpec(agent, env, method, seed)
            for agent in self.agents
            for env in self.envs
            for method in self.methods
            for seed in self.seeds
        ]


def safe_name(text: str) -> str:
    """``text`` as part of a folder name: characters other than letters, digits and ``._+-``
    become ``-`` (``cycle:a,b`` -> ``cycle-a-b``)."""
    return re.sub(r"[^A-Za-z0-9._+-]", "-", text)


def split_list(values) -> list[str]:
    """Grid values from the command line or a file: each string split at commas, except a
    ``cycle:a,b,...`` env, which is one value; duplicates dropped, order kept."""
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for value in values:
        value = str(value).strip()
        parts = [value] if value.startswith("cycle:") else value.split(",")
        out.extend(part.strip() for part in parts if part.strip() and part.strip() not in out)
    return out


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """``argv`` before the first ``--`` (the sweep's flags) and after it (every run's)."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return list(argv), []


def toml_args(value) -> list[str]:
    """The ``args`` of a sweep file: a list of strings as given, or a table of flags
    (``true`` -> ``--flag``, ``false`` -> ``--no-flag``, else ``--flag value``)."""
    if isinstance(value, list):
        return [str(v) for v in value]
    if not isinstance(value, dict):
        raise SweepError("'args' in a sweep file is a list of strings or a table of flags")
    out = []
    for key, item in value.items():
        flag = "--" + key.lstrip("-").replace("_", "-")
        if item is True:
            out.append(flag)
        elif item is False:
            out.append("--no-" + flag[2:])
        else:
            out.extend([flag, str(item)])
    return out


def load_sweep_file(path: str) -> dict:
    """The settings of a TOML sweep file (keys as :data:`FILE_KEYS`)."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise SweepError(
                "sweep files need tomli on Python 3.10: pip install tomli (or pass flags)"
            ) from None
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise SweepError(f"--file {path}: no such file") from None
    except tomllib.TOMLDecodeError as err:
        raise SweepError(f"--file {path}: not valid TOML ({err})") from None
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise SweepError(
            f"--file {path}: unknown key(s) {', '.join(unknown)}; "
            f"valid keys: {', '.join(FILE_KEYS)}"
        )
    return data


def check_extra_args(extra: list[str]) -> None:
    """Refuse run arguments that the grid sets for each run (``--seed`` etc.)."""
    for arg in extra:
        flag = arg.split("=", 1)[0]
        if flag in GRID_FLAGS:
            raise SweepError(
                f"{flag} after '--' contradicts the grid: the sweep sets it for each run "
                "(use --agent/--env/--method/--seeds/--runs-dir/--name of sweep.py)"
            )


def check_methods(methods: list[str]) -> None:
    """Refuse unknown plasticity method names before any run starts."""
    from plasticity.methods import parse_method

    for method in methods:
        try:
            parse_method(method)
        except ValueError as err:
            raise SweepError(f"--method: {err}") from None


def parse_train_args(agent: str, run_args: list[str]):
    """``run_args`` as train.py parses them for ``agent`` (its ``Args``); what its parser
    refuses, as one line."""
    from agents.cli import parse_args

    module = importlib.import_module(f"agents.{agent}")
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            return parse_args(module.Args, agent, run_args, prog="train.py")
    except SystemExit:
        # tyro's message is a titled box: the title, then what is wrong
        lines = meaningful_lines(output.getvalue().splitlines())
        message = lines[1] if len(lines) > 1 else " ".join(lines)
        raise SweepError(f"arguments after '--' (--agent {agent}): {message}") from None


def check_runs(agents: list[str], envs: list[str], run_args: list[str]) -> None:
    """Refuse before any run starts what train.py would refuse in every run: arguments after
    ``--`` that an agent's parser rejects, and an env that cannot be made with them (train.py's
    own parser and env check; a UserError)."""
    from agents.environments import env_spaces

    parsed = [parse_train_args(agent, ["--env", envs[0], *run_args]) for agent in agents]
    for env in envs:  # made once each: what the env accepts does not depend on the agent
        env_spaces(dataclasses.replace(parsed[0], env=env))


def default_sweep_name(agents: list[str], envs: list[str]) -> str:
    """``<agents>_<envs>`` as a folder name; long ones shortened with a hash."""
    name = safe_name("-".join(agents) + "_" + "-".join(envs))
    if len(name) > 64:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[:55]}-{digest}"
    return name


def grid_values(value, origin: str) -> list[str]:
    """Grid values given as a name or a list of names (:func:`split_list`); at least one."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise SweepError(f"{origin} must be a name or a list of names, got {value!r}")
    values = split_list(value)
    if not values:
        raise SweepError(f"{origin} is empty: give at least one value")
    return values


def whole_number(value, origin: str, minimum: int) -> int:
    """``value`` when it is an integer of at least ``minimum`` (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise SweepError(f"{origin} must be a whole number of at least {minimum}, got {value!r}")
    return value


def number(value, origin: str) -> float:
    """``value`` as a float when it is a finite number (a bool is not one)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SweepError(f"{origin} must be a number, got {value!r}")
    return float(value)


def grid_seeds(value, origin: str, first_seed: int) -> list[int]:
    """The seeds: a count (``first_seed``, ``first_seed+1``, ...) or a list of seeds."""
    if isinstance(value, list):
        if not value:
            raise SweepError(f"{origin} is empty: give at least one seed")
        seeds = [whole_number(seed, f"each seed of {origin}", 0) for seed in value]
        return list(dict.fromkeys(seeds))
    if isinstance(value, bool) or not isinstance(value, int):
        raise SweepError(f"{origin} must be a number of seeds or a list of seeds, got {value!r}")
    return list(range(first_seed, first_seed + whole_number(value, origin, 1)))


def resolve(args: SweepArgs, extra: list[str]) -> Sweep:
    """The sweep the command (and its sweep file) describes; SweepError for a bad one, with
    every value checked before anything starts."""
    from agents import AGENTS
    from agents.cli import flag

    data = load_sweep_file(args.file) if args.file else {}

    def pick(name: str) -> tuple[object, str]:
        """A setting and where it came from: its flag, else the sweep file, else its default
        (None for those without one)."""
        value = getattr(args, name)
        if value not in (None, ()):
            return value, flag(name)
        if name in data:
            return data[name], f"{name} in {args.file}"
        return DEFAULTS.get(name), flag(name)

    agent, origin = pick("agent")
    if agent is None:
        raise SweepError(f"choose the agent(s) with --agent {{{','.join(AGENTS)}}}")
    agents = grid_values(agent, origin)
    unknown = [a for a in agents if a not in AGENTS]
    if unknown:
        raise SweepError(f"unknown agent {unknown[0]!r}: choose from {', '.join(AGENTS)}")
    env, origin = pick("env")
    if env is None:
        raise SweepError("choose the environment(s) with --env (comma-separated)")
    envs = grid_values(env, origin)
    methods = grid_values(*pick("method"))
    check_methods(methods)
    seeds = grid_seeds(*pick("seeds"), first_seed=whole_number(*pick("first_seed"), 0))
    run_args = toml_args(data["args"]) if "args" in data else []
    run_args = run_args + list(extra)
    check_extra_args(run_args)
    check_runs(agents, envs, run_args)

    cpus = number(*pick("cpus_per_run"))
    gpus = number(*pick("gpus_per_run"))
    retries = whole_number(*pick("max_retries"), 0)
    if cpus <= 0:
        raise SweepError(f"--cpus-per-run must be positive, got {cpus:g}")
    if gpus < 0 or (gpus > 1 and gpus != int(gpus)):
        raise SweepError(
            f"--gpus-per-run must be a fraction up to 1 or a whole number, got {gpus:g}"
        )
    if args.stop_timeout <= 0:
        raise SweepError(f"--stop-timeout must be positive, got {args.stop_timeout:g}")
    name, origin = pick("name")
    if name is None:
        name = default_sweep_name(agents, envs)
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name:
        raise SweepError(f"{origin} {name!r} is not a folder name: use letters, digits and -_.")
    runs_dir, origin = pick("runs_dir")
    if not isinstance(runs_dir, str) or not runs_dir:
        raise SweepError(f"{origin} must be a folder, got {runs_dir!r}")
    sweep = Sweep(
        name=name,
        runs_dir=Path(runs_dir).resolve(),
        agents=agents,
        envs=envs,
        methods=methods,
        seeds=seeds,
        args=run_args,
        cpus_per_run=cpus,
        gpus_per_run=gpus,
        max_retries=retries,
        stop_timeout=args.stop_timeout,
    )
    folders = [spec.name for spec in sweep.runs()]
    if len(set(folders)) != len(folders):
        raise SweepError("two grid points give the same run folder name: rename an env or method")
    return sweep
