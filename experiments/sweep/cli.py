"""``python sweep.py``: parse the command, resolve the sweep and run it."""

from __future__ import annotations

import signal
import sys

import tyro

import experiments.sweep
from experiments.sweep.config import SweepArgs, SweepError, resolve, split_passthrough
from experiments.sweep.driver import cluster_address, run_sweep


def main(argv: list[str]) -> int:
    """The command line: parse, resolve the sweep and run it; returns the exit code."""
    own, extra = split_passthrough(argv)
    args = tyro.cli(
        SweepArgs, args=own, prog="sweep.py", description=experiments.sweep.__doc__.split("\n\n")[0]
    )
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


def cli(argv: list[str]) -> int:
    """:func:`main` as a command: its exit code, 2 after one line on stderr for a mistake in the
    command or its inputs, 130 when stopped before the runs were followed."""
    from agents.cli import UserError

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C even when started with &
    try:
        return main(argv)
    except (SweepError, UserError) as err:  # UserError: train.py's checks, a full disk
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the runs were followed: nothing to checkpoint yet
        print("stopped", file=sys.stderr)
        return 130
