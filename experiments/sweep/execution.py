"""One run of a sweep, executed on a Ray worker in plain Python (no Ray but for
:func:`execute_run_on_ray`): what its folder says to do, the ``train.py`` process, how it ended."""

from __future__ import annotations

import datetime
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from experiments.runs import SUMMARY_FILE, checkpoint_steps, is_finished, read_summary

LOG_FILE = "train.log"
PID_FILE = "train.pid"
ATTEMPT_LINE = "# sweep attempt "  # starts the line execute_run writes to train.log per attempt


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


def now() -> str:
    """The local time, ISO 8601 to the second."""
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


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
