"""Run a grid of ``train.py`` runs on Ray: methods × environments × seeds, resumable.

    python sweep.py --agent dqn --env CartPole-v1 --method none,fire,reset --seeds 3 \
        -- --total-timesteps 100000 --permute-observations --switch-every 20000
    python report.py runs/dqn_CartPole-v1

Everything after ``--`` is given to every run. Each run is one ``train.py`` process writing
``<runs-dir>/<sweep name>/<env>__<agent>-<method>__<seed>/``; ``sweep.json`` beside the runs
records the grid, the extra arguments, the commands that ran the sweep and each run's state:
``pending`` (not started, or waiting to be retried), ``running`` (handed to Ray: running or
waiting for a CPU), ``finished``, ``interrupted`` (stopped, resumable) or ``failed`` (with its
``error``); also its ``attempts`` (train.py processes started for it, as its ``train.log``
counts them) and ``sweep_wall_s``, the wall time of all its attempts. ``sweep.lock`` keeps a
second driver off the same sweep while one runs; a driver killed outright (kill -9) leaves
``running`` states and ``train.pid`` files that the next start reconciles with the folders.

**Where runs execute.** ``ray.init()`` starts a local Ray cluster on this machine (all its
cores, or ``--num-cpus``); ``--address auto`` or ``--address host:port`` (else the
``RAY_ADDRESS`` environment variable) joins a running cluster (``ray start --head`` on one
machine, ``ray start --address ...`` on the others), so the same command scales from a laptop
to a cluster; an address where nothing answers is one line and exit code 2. Ray schedules
each run with ``--cpus-per-run`` CPUs and ``--gpus-per-run`` GPUs (fractions share a GPU among
small networks). The run's process gets ``OMP_NUM_THREADS`` = its CPUs (rounded, at least 1) and
``CUDA_VISIBLE_DEVICES`` = the GPUs Ray gave it (none: the run trains on the CPU). On a
cluster every node needs this project at the same path, with the same Python environment,
and ``--runs-dir`` on storage all nodes share (NFS or similar): runs write their folders
there and the driver reads their ``summary.json`` from there.

**Resumable and idempotent.** The state of a run is read from its folder, not from memory:
a ``summary.json`` with status ``finished`` (or none, as older runs wrote) is a finished run,
skipped; a folder with a checkpoint is resumed (``train.py --resume``), even one whose
checkpoint is at its last step (killed in its final evaluation: the resume runs it and writes
the summary; an unreadable ``summary.json`` is kept as ``summary.json.unreadable``); only a
folder without any checkpoint is cleared (its ``train.log`` kept) and started afresh.
``--dry-run`` prints that decision for each run, made as the sweep makes it. A run whose
process crashes is retried, resuming from its checkpoint, at most ``--max-retries`` times; a
run that ``train.py`` refuses (exit code 2: bad input, or a loss that diverged) is not
retried, since it would fail the same way. A failed run is recorded in ``sweep.json`` with its
error (the last line its process wrote to stderr); its output is in ``<run>/train.log``,
appended across attempts. Running the same command again tries every run that is not
finished.

**Stopping.** Ctrl-C (or SIGTERM) asks every running run to stop: each ``train.py`` gets
SIGINT, writes a checkpoint and exits, and its run is recorded ``interrupted``; runs not yet
started stay ``pending``. A second Ctrl-C kills the runs at once (they resume from their last
periodic checkpoint). The same command then continues the sweep.

**The same sweep.** The sweep's name (``--name``, default from the agents and envs) is its
folder. Running that name again with another grid or other extra arguments is refused, so
that one sweep never mixes settings; ``--extend`` adds grid values (envs, methods, seeds,
agents) to a sweep with the same extra arguments, ``--force`` adopts the new grid and
arguments (runs already finished are kept as they are: delete their folders to redo them).

**Sweep files** (TOML; Python 3.10 reads them with ``tomli``): the same settings as the
flags, for grids too large for one command line. Flags given on the command line win.

    name = "cartpole_switch"
    agent = "dqn"
    env = ["CartPole-v1"]
    method = ["none", "fire", "reset"]
    seeds = 3                   # or a list: [1, 2, 7]
    cpus_per_run = 1
    [args]                      # or args = ["--total-timesteps", "100000", ...]
    total-timesteps = 100000
    permute-observations = true
    switch-every = 20000

Exit code: 0 when every run finished, 1 when a run failed, 130 when stopped, 2 for a
mistake in the command or its inputs (one line on stderr; checked before any run or Ray
starts: the grid, each value's type, the run arguments and envs as train.py checks them, the
output folders).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import hashlib
import importlib
import io
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import tyro

ROOT = Path(__file__).resolve().parent
TRAIN_SCRIPT = ROOT / "train.py"
SWEEP_FILE = "sweep.json"
STOP_FILE = "STOP"
LOCK_FILE = "sweep.lock"
SUMMARY_FILE = "summary.json"
LOG_FILE = "train.log"
PID_FILE = "train.pid"
CONNECT_TIMEOUT_S = 5.0  # for a Ray cluster's address to answer
ATTEMPT_LINE = "# sweep attempt "  # starts the line execute_run writes to train.log per attempt
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

# Started before train.py in every run's process: a Ray worker blocks and ignores SIGINT, and a
# child inherits both, so train.py could not be stopped with SIGINT. This unblocks the
# signals, restores their default handling and (Linux) asks for SIGINT when the worker dies, then
# becomes ``python train.py ...`` (same process id).
LAUNCHER = """\
import ctypes, os, signal, sys
signal.pthread_sigmask(signal.SIG_SETMASK, [])
for number in (signal.SIGINT, signal.SIGTERM):
    signal.signal(number, signal.SIG_DFL)
try:
    ctypes.CDLL(None).prctl(1, signal.SIGINT)  # PR_SET_PDEATHSIG
except (AttributeError, OSError):
    pass
os.execv(sys.argv[1], sys.argv[1:])
"""


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


# --- parsing the command --------------------------------------------------------------------


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


# --- sweep.json -----------------------------------------------------------------------------


def now() -> str:
    """The local time, ISO 8601 to the second."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def read_record(sweep_dir: Path) -> dict | None:
    """The sweep's ``sweep.json``, or None before its first run."""
    path = sweep_dir / SWEEP_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise SweepError(f"{path} is not valid JSON ({err}); fix or delete it") from None


def write_record(sweep_dir: Path, record: dict) -> None:
    """Write ``sweep.json`` atomically (a stopped sweep never leaves half a file; a full disk
    is agents.files.DiskFull, a one-line UserError)."""
    from agents.files import write_json_atomic

    record["updated"] = now()
    write_json_atomic(sweep_dir / SWEEP_FILE, record)


def merge_grid(old: dict, new: dict) -> dict:
    """The union of two grids, old values first."""
    return {key: list(dict.fromkeys([*old.get(key, []), *new[key]])) for key in new}


def reconcile(sweep: Sweep, record: dict | None, extend: bool, force: bool) -> dict:
    """``sweep.json`` for this invocation: a new record, or the existing one after checking
    that the grid and extra arguments are the same (``--extend``: a superset; ``--force``:
    anything). The sweep's grid becomes the recorded one (``--extend`` keeps old values)."""
    grid = sweep.grid()
    if record is None:
        return {
            "name": sweep.name,
            "created": now(),
            "grid": grid,
            "args": sweep.args,
            "commands": [],
            "runs": {},
        }
    same_args = record.get("args") == sweep.args
    same_grid = record.get("grid") == grid
    if force:
        record["grid"], record["args"] = grid, sweep.args
    elif extend:
        if not same_args:
            raise SweepError(
                f"sweep {sweep.name} ran with the run arguments {shlex.join(record['args'])!r}, "
                f"not {shlex.join(sweep.args)!r}: --extend keeps them; use another --name "
                "(or --force)"
            )
        record["grid"] = merge_grid(record.get("grid", {}), grid)
    elif not (same_args and same_grid):
        what = "another grid" if same_args else "other arguments after '--'"
        raise SweepError(
            f"sweep {sweep.name} was run with {what} ({sweep.dir / SWEEP_FILE}): "
            "use another --name, --extend to add grid values, or --force"
        )
    recorded = record["grid"]
    sweep.agents, sweep.envs = recorded["agent"], recorded["env"]
    sweep.methods, sweep.seeds = recorded["method"], recorded["seed"]
    return record


class SweepLock:
    """An exclusive lock on the sweep folder: two drivers must not run the same runs."""

    def __init__(self, sweep_dir: Path):
        self.path = sweep_dir / LOCK_FILE
        self.file = None

    def __enter__(self):
        import fcntl

        self.file = open(self.path, "a+")  # noqa: SIM115 (closed in __exit__)
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            owner = self.file.read().strip() or "another process"
            self.file.close()
            raise SweepError(
                f"sweep {self.path.parent} is being run by {owner}; wait for it or stop it"
            ) from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"pid {os.getpid()} on {socket.gethostname()}")
        self.file.flush()
        return self

    def __exit__(self, *exc):
        self.file.close()


# --- one run (executes on a Ray worker; plain Python, no Ray) -------------------------------


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the run's checkpoints (``checkpoints/step_<k>.pt``), ascending."""
    from agents.run import checkpoint_files

    return [int(path.stem[5:]) for path in checkpoint_files(run_dir)]


def read_summary(run_dir: Path) -> dict | None:
    """``summary.json`` of a run, or None (absent, or unreadable: cut short, not a JSON object)."""
    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def is_finished(summary: dict | None) -> bool:
    """A summary of a finished run (one without a status is from before statuses: finished)."""
    return summary is not None and summary.get("status", "finished") == "finished"


def next_step(run_dir: Path) -> tuple[str, str]:
    """What the sweep does with a run, read from its folder alone (the sweep and --dry-run both
    ask here), and why: ``done`` (its summary says finished); ``resume`` (it has a checkpoint,
    even one at its last step: ``train.py --resume`` then runs the final evaluation and writes
    the summary); ``start`` (no checkpoint: nothing to keep but its ``train.log``)."""
    summary = read_summary(run_dir)
    if is_finished(summary):
        return "done", ""
    steps = checkpoint_steps(run_dir)
    if steps:
        why = f"checkpoint at step {steps[-1]}"
        if summary is None and (run_dir / SUMMARY_FILE).exists():
            why += f", unreadable {SUMMARY_FILE} set aside"
        return "resume", why
    if run_dir.is_dir() and any(path.name != LOG_FILE for path in run_dir.iterdir()):
        return "start", f"no checkpoint: folder cleared, {LOG_FILE} kept"
    return "start", ""


def set_aside_unreadable_summary(run_dir: Path) -> None:
    """Rename an unreadable ``summary.json`` to ``summary.json.unreadable`` before a resume:
    ``train.py --resume`` reads it to refuse a finished run and stops on one it cannot read."""
    path = run_dir / SUMMARY_FILE
    if path.exists() and read_summary(run_dir) is None:
        os.replace(path, path.with_name(SUMMARY_FILE + ".unreadable"))


def started_attempts(run_dir: Path) -> int:
    """How many times a sweep started train.py for this run: the attempt lines of its
    ``train.log``, each written just before its process starts (so neither a killed sweep nor a
    run that waited in Ray's queue is miscounted)."""
    try:
        with open(run_dir / LOG_FILE, errors="replace") as log:
            return sum(line.startswith(ATTEMPT_LINE) for line in log)
    except FileNotFoundError:
        return 0


def trains(pid: int, run_dir: Path) -> bool:
    """Whether process ``pid`` of this machine is a train.py of ``run_dir`` (started fresh with
    ``--runs-dir``/``--run-name``, or with ``--resume``)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:  # no such process (or no /proc: nothing to find it by)
        return False
    return str(run_dir) in args or {str(run_dir.parent), run_dir.name} <= set(args)


def clear_stale_pid(run_dir: Path) -> None:
    """Remove the ``train.pid`` a killed sweep left behind; refuse to go on while its process
    still trains the run (two processes must not write one run folder)."""
    path = run_dir / PID_FILE
    try:
        pid = int(path.read_text())
    except FileNotFoundError:
        return
    except ValueError:
        pid = None
    if pid is not None and trains(pid, run_dir):
        raise SweepError(
            f"run {run_dir} is still trained by process {pid}, left by a sweep that was killed: "
            f"wait for it to end or stop it (kill -INT {pid}), then run the sweep again"
        )
    path.unlink()


def clear_run_dir(run_dir: Path) -> None:
    """Empty a run folder that cannot be resumed, keeping its ``train.log``."""
    for path in run_dir.iterdir():
        if path.name == LOG_FILE:
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def meaningful_lines(lines: list[str]) -> list[str]:
    """``lines`` of a process's output without blanks, tyro's box drawing and rules, and its
    pointer to the help."""
    cleaned = [line.strip().strip("│╭╮╰╯─ ").strip() for line in lines]
    return [
        line for line in cleaned if line.strip("-") and not line.startswith("For full helptext")
    ]


def error_line(lines: list[str]) -> str:
    """The error of a failed process from its last stderr lines: the last ``error: ...`` line
    (train.py's one-line errors), else the last meaningful line (a traceback's exception; a
    tyro message without its box)."""
    cleaned = meaningful_lines(lines)
    for line in reversed(cleaned):
        if line.startswith("error:"):
            return line
    return cleaned[-1] if cleaned else ""


def describe_exit(code: int) -> str:
    """``exit code 1`` or ``killed by signal 9 (SIGKILL)``."""
    if code < 0:
        try:
            return f"killed by signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def summary_fields(summary: dict | None) -> dict:
    """What ``sweep.json`` keeps of a run's summary."""
    if not summary:
        return {}
    keys = ("final_eval_return", "total_timesteps", "sps", "train_sps", "wall_time_s", "status")
    return {key: summary[key] for key in keys if key in summary}


def execute_run(request: dict) -> dict:
    """Run (or resume) one ``train.py`` run to its end and say how it ended.

    ``request``: the run's ``spec`` (agent, env, method, seed), ``run_dir``, the run ``args``,
    ``train_script``, ``stop_file``, ``stop_timeout`` and the process ``env`` additions. The run
    folder decides what to do (:func:`next_step`): a finished run is reported at once; one with
    a checkpoint is resumed; otherwise it starts afresh (a folder without a checkpoint is
    cleared first). Output goes to ``<run_dir>/train.log`` (appended), the process id to
    ``<run_dir>/train.pid`` while it runs. When ``stop_file`` appears the process gets SIGINT
    (it checkpoints and exits), then SIGKILL after ``stop_timeout`` seconds.

    Returns ``state``: ``finished``; ``interrupted`` (stopped); ``failed`` (refused by train.py,
    exit code 2: not worth retrying); ``crashed`` (any other end: worth a retry); ``pending``
    (the stop came before the start); with ``error``, ``returncode``, ``kind`` (start/resume),
    ``attempt_wall_s`` (this attempt's wall time) and the summary's fields.
    """
    spec = request["spec"]
    run_dir = Path(request["run_dir"])
    stop_file = Path(request["stop_file"])
    if stop_file.exists():
        return {"state": "pending"}
    kind, why = next_step(run_dir)
    if kind == "done":
        return {"state": "finished", "kind": kind, **summary_fields(read_summary(run_dir))}

    args = list(request["args"])
    if kind == "resume":
        set_aside_unreadable_summary(run_dir)
        command = ["--agent", spec["agent"], "--resume", str(run_dir), *args]
    else:
        if run_dir.exists():
            clear_run_dir(run_dir)
        command = [
            "--agent",
            spec["agent"],
            "--env",
            spec["env"],
            "--method",
            spec["method"],
            "--seed",
            str(spec["seed"]),
            "--runs-dir",
            str(run_dir.parent),
            "--run-name",
            run_dir.name,
            *args,
        ]
    run_dir.mkdir(parents=True, exist_ok=True)
    train = [sys.executable, str(request["train_script"]), *command]
    env = {**os.environ, **request.get("env", {}), "PYTHONUNBUFFERED": "1"}

    start = time.perf_counter()
    attempt = started_attempts(run_dir) + 1
    with open(run_dir / LOG_FILE, "a") as log:
        log.write(
            f"\n{ATTEMPT_LINE}{attempt} ({kind}) at {now()} on {socket.gethostname()}"
            f"{', ' + why if why else ''}: {shlex.join(train)}\n"
        )
        log.flush()
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, *train],
            cwd=str(Path(request["train_script"]).parent),
            env=env,
            stdout=log,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,  # a terminal's Ctrl-C reaches the sweep, which decides
        )
        (run_dir / PID_FILE).write_text(str(process.pid))
        tail: list[str] = []

        def copy_stderr() -> None:
            for line in process.stderr:
                log.write(line)
                log.flush()
                tail[:] = [*tail[-49:], line]

        reader = threading.Thread(target=copy_stderr, daemon=True)
        reader.start()
        stopped_at = None
        while True:
            try:
                code = process.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            if stopped_at is None and stop_file.exists():
                process.send_signal(signal.SIGINT)
                stopped_at = time.monotonic()
            elif stopped_at is not None and time.monotonic() - stopped_at > request["stop_timeout"]:
                process.kill()
        reader.join(timeout=10)
    (run_dir / PID_FILE).unlink(missing_ok=True)

    wall = time.perf_counter() - start
    summary = read_summary(run_dir)
    result = {"returncode": code, "kind": kind, "attempt_wall_s": wall, **summary_fields(summary)}
    error = error_line(tail)
    if code == 0 and is_finished(summary):
        return {**result, "state": "finished", "error": None}
    if stopped_at is not None:
        return {**result, "state": "interrupted", "error": None}
    if code == 130:  # stopped by someone else: a retry resumes it
        return {**result, "state": "crashed", "error": error or "interrupted (exit code 130)"}
    if code == 2:
        if summary and summary.get("status") == "diverged":
            error = error or "a loss diverged (NaN/Inf)"
        return {**result, "state": "failed", "error": error or describe_exit(code)}
    if code == 0:
        error = "train.py ended without writing a finished summary.json"
    return {**result, "state": "crashed", "error": error or describe_exit(code)}


def execute_run_on_ray(request: dict) -> dict:
    """:func:`execute_run` inside a Ray task: the run sees only the GPUs Ray assigned to it."""
    import ray

    if request["gpus"] > 0:
        gpu_ids = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
        request["env"]["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in gpu_ids)
    else:
        request["env"]["CUDA_VISIBLE_DEVICES"] = ""
    return execute_run(request)


# --- the driver -----------------------------------------------------------------------------


def plan(sweep: Sweep) -> dict[str, tuple[str, str]]:
    """What the sweep does with each run and why (:func:`next_step`), by run name."""
    return {spec.name: next_step(sweep.dir / spec.name) for spec in sweep.runs()}


def check_sweep_folder(sweep: Sweep) -> None:
    """Create the sweep folder; a one-line SweepError when it cannot be created or written."""
    try:
        sweep.dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=sweep.dir):
            pass
    except OSError as err:
        blocking = next((p for p in (sweep.dir, *sweep.dir.parents) if p.is_file()), None)
        raise SweepError(
            f"cannot write the sweep folder {sweep.dir} "
            f"({f'{blocking} is a file' if blocking else err.strerror or err}): "
            "choose a writable --runs-dir"
        ) from None


def check_run_folders(sweep: Sweep) -> None:
    """Refuse a run whose folder's place is taken by a file."""
    for spec in sweep.runs():
        run_dir = sweep.dir / spec.name
        if run_dir.exists() and not run_dir.is_dir():
            raise SweepError(
                f"{run_dir} is a file where the sweep keeps run {spec.name}: move it away"
            )


def recover(sweep: Sweep, record: dict, actions: dict[str, tuple[str, str]]) -> None:
    """Make each run's entry in ``sweep.json`` say what its folder says, whatever ended the
    last sweep (a kill -9 included): finished when its summary says so; a ``running`` left
    behind becomes ``interrupted`` (it has a checkpoint) or ``pending``; ``attempts`` counts the
    processes that really started; a stale ``train.pid`` is removed."""
    for spec in sweep.runs():
        run_dir = sweep.dir / spec.name
        clear_stale_pid(run_dir)
        entry = record["runs"].setdefault(
            spec.name, {**dataclasses.asdict(spec), "state": "pending"}
        )
        entry["attempts"] = started_attempts(run_dir)
        action = actions[spec.name][0]
        if action == "done":
            entry.update(state="finished", error=None, **summary_fields(read_summary(run_dir)))
        elif entry["state"] in ("finished", "running"):  # deleted, or its sweep was killed
            entry["state"] = left_state(run_dir)


def left_state(run_dir: Path) -> str:
    """The state of a run that stopped without saying how: ``interrupted`` (resumable from its
    checkpoint) or ``pending`` (it will start afresh)."""
    return "interrupted" if checkpoint_steps(run_dir) else "pending"


def cluster_address(given: str | None) -> tuple[str | None, str]:
    """The address of the Ray cluster to join and the setting it came from: ``--address``,
    else the ``RAY_ADDRESS`` environment variable (which ray.init reads too); None: start a
    local cluster."""
    if given is not None:
        return given, "--address"
    from_environment = os.environ.get("RAY_ADDRESS")
    if from_environment:
        return from_environment, "RAY_ADDRESS"
    return None, ""


def check_reachable(address: str, origin: str) -> None:
    """A one-line SweepError when nothing answers at ``host:port`` (or ``ray://host:port``):
    ray.init would retry for many minutes. ``auto`` is left to Ray to find."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        raise SweepError(
            f"{origin} {address}: no Ray cluster answers there ({err.strerror or err}); start "
            "one (ray start --head) or fix the address; without --address and RAY_ADDRESS the "
            "sweep starts a local cluster"
        ) from None


def init_ray(address: str | None, num_cpus: int | None, origin: str = "--address"):
    """Connect to Ray: the cluster at ``address`` (given by ``origin``), or a new local one
    (``num_cpus`` CPUs); nothing when this process is connected already (tests share one)."""
    if address is None and "ray" not in sys.modules:
        # Ray (2.60) turns token authentication on for a new local cluster and warns that it did,
        # at every start; asking for it keeps it on without the warning. Ray reads the setting
        # when it is imported (later, the cluster and this process would disagree); a user's own
        # RAY_AUTH_MODE wins.
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    try:
        import ray
    except ImportError:
        raise SweepError(
            'sweeps run on Ray: pip install -e ".[sweep]" (or pip install ray)'
        ) from None
    if ray.is_initialized():
        return ray
    import logging

    if address is not None:
        check_reachable(address, origin)
        try:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except ConnectionError as err:
            raise SweepError(
                f"{origin} {address}: cannot join a Ray cluster there ({err})"
            ) from None
    else:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
    return ray


def check_resources(ray, sweep: Sweep, local: bool) -> None:
    """Refuse (local cluster) or warn (a cluster, which may grow) when no node can hold a run."""
    total = ray.cluster_resources()
    wanted = {"CPU": sweep.cpus_per_run, "GPU": sweep.gpus_per_run}
    for kind, amount in wanted.items():
        if amount > total.get(kind, 0):
            message = (
                f"each run asks for {amount:g} {kind}(s), the Ray cluster has "
                f"{total.get(kind, 0):g}: lower --{kind.lower()}s-per-run"
            )
            if local:
                raise SweepError(message)
            print(f"warning: {message} (runs wait until the cluster grows)", file=sys.stderr)


def raise_interrupt(signum, frame):
    """SIGTERM handler: stop the sweep as Ctrl-C does."""
    raise KeyboardInterrupt


def format_duration(seconds: float | None) -> str:
    """``1h02m03s``, ``5m02s`` or ``12s``."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_return(value) -> str:
    """A return for a progress line."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.1f}"


def run_sweep(
    sweep: Sweep,
    command: list[str],
    extend=False,
    force=False,
    dry_run=False,
    address: str | None = None,
    num_cpus: int | None = None,
) -> int:
    """Run every unfinished run of ``sweep`` on Ray; returns the exit code (0, 1 or 130).

    ``command`` is recorded in ``sweep.json``; ``address`` (else ``RAY_ADDRESS``) and
    ``num_cpus`` say which Ray cluster to use when this process is not connected to one yet.
    ``dry_run`` prints what the sweep would do with each run (the same decision) and stops.
    """
    check_sweep_folder(sweep)
    with SweepLock(sweep.dir):
        record = reconcile(sweep, read_record(sweep.dir), extend, force)
        check_run_folders(sweep)
        actions = plan(sweep)
        recover(sweep, record, actions)
        todo = [spec for spec in sweep.runs() if actions[spec.name][0] != "done"]
        if todo and not dry_run:  # first, so that a cluster that cannot be used is one line
            address, origin = cluster_address(address)
            ray = init_ray(address, num_cpus, origin)
            check_resources(ray, sweep, local=address is None)
        counts = Counter(action for action, _ in actions.values())
        print(
            f"sweep {sweep.dir}: {len(actions)} runs: {counts['done']} finished, "
            f"{counts['resume']} to resume, {counts['start']} to start"
        )
        if dry_run:
            for spec in sweep.runs():
                action, why = actions[spec.name]
                print(f"  {action:6s}  {spec.name}" + (f"  ({why})" if why else ""))
            return 0
        record["commands"].append({"time": now(), "command": shlex.join(command)})
        record["resources"] = {
            "cpus_per_run": sweep.cpus_per_run,
            "gpus_per_run": sweep.gpus_per_run,
            "max_retries": sweep.max_retries,
        }
        write_record(sweep.dir, record)
        if not todo:
            print("nothing to do: every run is finished")
            return 0
        return drive(ray, sweep, record, todo)


def drive(ray, sweep: Sweep, record: dict, todo: list[RunSpec]) -> int:
    """Submit ``todo`` to Ray, follow the runs to their ends (with retries), handle Ctrl-C."""
    from tqdm import tqdm

    remote = ray.remote(execute_run_on_ray).options(
        num_cpus=sweep.cpus_per_run, num_gpus=sweep.gpus_per_run, max_retries=0
    )
    stop_file = sweep.dir / STOP_FILE
    stop_file.unlink(missing_ok=True)
    runs = record["runs"]
    threads = max(1, round(sweep.cpus_per_run))
    tries: dict[str, int] = {}

    def submit(spec: RunSpec):
        tries[spec.name] = tries.get(spec.name, 0) + 1
        runs[spec.name]["state"] = "running"
        request = {
            "spec": dataclasses.asdict(spec),
            "run_dir": str(sweep.dir / spec.name),
            "args": sweep.args,
            "train_script": str(sweep.train_script),
            "stop_file": str(stop_file),
            "stop_timeout": sweep.stop_timeout,
            "gpus": sweep.gpus_per_run,
            "env": {"OMP_NUM_THREADS": str(threads)},
        }
        return remote.remote(request)

    stopping = killed = False
    in_flight = {submit(spec): spec for spec in todo}
    write_record(sweep.dir, record)
    # a bar with an ETA on a terminal; the per-run lines carry the count and ETA everywhere
    bar = tqdm(total=len(todo), unit="run", desc=sweep.name, dynamic_ncols=True, disable=None)
    started = time.monotonic()
    ended = failed = 0

    def progress(word: str, spec: RunSpec, detail: str) -> None:
        """One line about one run: ``[ended/total, ETA] word env agent-method seed detail``."""
        elapsed = time.monotonic() - started
        eta = elapsed / ended * (len(todo) - ended) if ended else None
        position = f"[{ended}/{len(todo)}" + (f", ETA {format_duration(eta)}]" if ended else "]")
        label = f"{spec.env}  {spec.agent}-{spec.method}  seed {spec.seed}"
        bar.write(f"{position} {word:9s} {label}  {detail}")

    def settle(ref) -> None:
        """Record the end of one Ray task: done, retried, failed or stopped."""
        nonlocal ended, failed
        spec = in_flight.pop(ref)
        entry = runs[spec.name]
        try:
            result = ray.get(ref)
        except Exception as err:  # the Ray worker itself died (out of memory, node lost)
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            result = {"state": "crashed", "error": f"Ray task failed: {first}"}
        state = result.pop("state")
        if state == "pending":  # the stop came before it started
            entry["state"] = "pending"
            return
        entry["attempts"] = started_attempts(sweep.dir / spec.name)
        entry["sweep_wall_s"] = entry.get("sweep_wall_s", 0.0) + result.pop("attempt_wall_s", 0.0)
        entry.update({k: v for k, v in result.items() if k != "kind"})
        if state == "crashed" and not stopping and tries[spec.name] <= sweep.max_retries:
            entry["state"] = "pending"
            progress("retry", spec, f"{result['error']} (attempt {tries[spec.name] + 1})")
            in_flight[submit(spec)] = spec
            return
        entry["state"] = "failed" if state == "crashed" else state
        if entry["state"] == "interrupted":
            progress("stopped", spec, "resumable")
            return
        ended += 1
        bar.update(1)
        if entry["state"] == "failed":
            failed += 1
            progress("failed", spec, result["error"])
        else:
            return_ = format_return(result.get("final_eval_return"))
            wall = format_duration(entry["sweep_wall_s"])
            progress("finished", spec, f"return {return_}  wall {wall}")

    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        while in_flight:
            try:
                ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
                for ref in ready:
                    settle(ref)
                    write_record(sweep.dir, record)
                bar.refresh()
            except KeyboardInterrupt:
                if stopping:  # the second Ctrl-C: kill the runs
                    killed = True
                    for ref in in_flight:
                        ray.cancel(ref, force=True)
                    break
                stopping = True
                stop_file.write_text(now())
                bar.write(
                    "stopping: running runs write a checkpoint and exit, queued ones stay "
                    "pending (Ctrl-C again kills them)"
                )
    finally:
        bar.close()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
        stop_file.unlink(missing_ok=True)
        for spec in in_flight.values():  # killed runs: what their folders hold decides next time
            runs[spec.name]["state"] = left_state(sweep.dir / spec.name)
            runs[spec.name]["attempts"] = started_attempts(sweep.dir / spec.name)
        write_record(sweep.dir, record)

    states = [entry["state"] for entry in record["runs"].values()]
    done = states.count("finished")
    print(
        f"sweep {sweep.dir}: {done} of {len(states)} runs finished"
        + (f", {failed} failed (errors in sweep.json and each run's train.log)" if failed else "")
        + ("; stopped: run the same command to continue" if stopping or killed else "")
    )
    if stopping or killed:
        return 130
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    """The command line: parse, resolve the sweep and run it; returns the exit code."""
    own, extra = split_passthrough(argv)
    args = tyro.cli(SweepArgs, args=own, prog="sweep.py", description=__doc__.split("\n\n")[0])
    address, origin = cluster_address(args.address)
    if address is not None and args.num_cpus is not None:
        raise SweepError(
            f"--num-cpus sizes a local cluster; the cluster at {origin} {address} has its own"
        )
    sweep = resolve(args, extra)
    command = ["python", "sweep.py", *argv]
    return run_sweep(
        sweep,
        command,
        extend=args.extend,
        force=args.force,
        dry_run=args.dry_run,
        address=args.address,
        num_cpus=args.num_cpus,
    )


if __name__ == "__main__":
    from agents.cli import UserError

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C even when started with &
    try:
        sys.exit(main(sys.argv[1:]))
    except (SweepError, UserError) as err:  # UserError: train.py's checks, a full disk
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:  # before the runs were followed: nothing to checkpoint yet
        print("stopped", file=sys.stderr)
        sys.exit(130)
