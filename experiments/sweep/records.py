"""What a sweep keeps beside its runs: ``sweep.json`` (the grid, the commands, each run's state),
the lock that keeps a second driver off the sweep, and the ``train.pid`` a killed driver left."""

from __future__ import annotations

import json
import os
import shlex
import socket
from pathlib import Path

from experiments.sweep.config import Sweep, SweepError
from experiments.sweep.execution import PID_FILE, now

SWEEP_FILE = "sweep.json"
LOCK_FILE = "sweep.lock"


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
