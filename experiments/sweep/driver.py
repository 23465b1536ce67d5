"""The sweep's driver: connect to Ray, reconcile ``sweep.json`` with the run folders, submit the
runs, follow them to their ends (retries, Ctrl-C) and print their progress."""

from __future__ import annotations

import dataclasses
import math
import os
import shlex
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from experiments.runs import checkpoint_steps, read_summary
from experiments.sweep.config import RunSpec, Sweep, SweepError
from experiments.sweep.execution import (
    execute_run_on_ray,
    next_step,
    now,
    started_attempts,
    summary_fields,
)
from experiments.sweep.records import (
    SweepLock,
    clear_stale_pid,
    read_record,
    reconcile,
    write_record,
)

STOP_FILE = "STOP"
CONNECT_TIMEOUT_S = 5.0  # for a Ray cluster's address to answer


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


def auto_address(origin: str) -> str:
    """The address ``auto`` stands for, found as ray.init finds it: the cluster ``ray start``
    started last on this machine (the address it wrote to ``ray_current_cluster`` in Ray's
    temporary folder). A one-line SweepError when there is none. A file left by a cluster that
    has stopped names an address where nothing answers, which :func:`check_reachable` then
    reports instead of ray.init retrying for minutes."""
    try:
        from ray._private.services import canonicalize_bootstrap_address
    except ImportError:  # a Ray that moved it: leave ``auto`` to ray.init
        return "auto"
    try:
        return canonicalize_bootstrap_address("auto") or "auto"
    except ConnectionError:
        raise SweepError(
            f"{origin} auto: no Ray cluster was started on this machine; start one (ray start "
            "--head) or name its address"
        ) from None


def check_reachable(address: str, origin: str) -> None:
    """A one-line SweepError when nothing answers at ``host:port`` (or ``ray://host:port``):
    ray.init would retry for many minutes. An address without a port (``auto``) is not
    checked here: :func:`init_ray` resolves ``auto`` with :func:`auto_address` first."""
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
        if address == "auto":
            check_reachable(auto_address(origin), f"{origin} auto →")
        else:
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
