"""Train an agent with plasticity methods.

    python train.py --agent sac --method fire --env humanoid_walk


``--agent`` picks the algorithm; every other flag belongs to that agent's ``Args``
(``python train.py --agent sac --help`` lists them).
"""

from __future__ import annotations

import importlib
import sys

from agents import AGENTS
from agents.cli import UserError, parse_args, run_cli


def split_agent(argv: list[str]) -> tuple[str, list[str]]:
    """Take ``--agent NAME`` (or ``--agent=NAME``) out of ``argv``."""
    rest = list(argv)
    for i, arg in enumerate(rest):
        if arg == "--agent":
            if i + 1 >= len(rest):
                break
            name = rest[i + 1]
            del rest[i : i + 2]
            return name, rest
        if arg.startswith("--agent="):
            del rest[i]
            return arg.split("=", 1)[1], rest
    raise UserError(f"choose an agent with --agent {{{','.join(AGENTS)}}}")


def main(argv: list[str]) -> None:
    name, rest = split_agent(argv)
    if name not in AGENTS:
        raise UserError(f"unknown agent {name!r}: choose one of {', '.join(AGENTS)}")
    module = importlib.import_module(f"agents.{name}")
    args = parse_args(module.Args, name, rest, prog=f"train.py --agent {name}")
    summary = module.main(args)
    print(
        f"done: {summary['total_timesteps']} steps, "
        f"final eval return {summary['final_eval_return']:.1f}, "
        f"{summary['sps']:.0f} steps/s, run in {summary['run_dir']}"
    )


if __name__ == "__main__":
    run_cli(lambda: main(sys.argv[1:]))
