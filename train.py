"""Train an agent with plasticity methods.

    python train.py --agent sac --method fire --env humanoid_walk

``--agent`` picks the algorithm; every other flag belongs to that agent's ``Args``
(``python train.py --agent sac --help`` lists them; ``python train.py --help`` gives the
overview).
"""

from __future__ import annotations

import importlib
import sys
import textwrap

from agents import AGENTS
from agents.cli import UserError, parse_args, run_cli

SUMMARIES = {
    "sac": "Soft Actor-Critic: continuous (Box) actions; humanoids, MuJoCo, Pendulum",
    "dqn": "Deep Q-Network: discrete actions; Atari, MinAtar, CartPole",
    "ppo": "Proximal Policy Optimization: discrete or continuous actions, on-policy",
}


def overview() -> str:
    """The top-level help: agents, how to see an agent's settings, methods and envs."""
    from envs import BASE_NAMES
    from plasticity import method_names

    agents = "\n".join(f"  {name:<5} {SUMMARIES[name]}" for name in AGENTS)

    def listed(names) -> str:
        return textwrap.fill(", ".join(names), 88, initial_indent="  ", subsequent_indent="  ")

    choice = "{" + ",".join(AGENTS) + "}"
    return f"""usage: python train.py --agent {choice} [--env ENV] [--method METHOD] [flags]

Train an RL agent whose networks carry plasticity methods; each run writes runs/<run_name>/
(config, TensorBoard and JSONL scalars, checkpoints, summary.json).

agents:
{agents}

  python train.py --agent AGENT --help   every setting of that agent, with its default

methods (--method; join with '+', e.g. fire+adamo; --actor-method/--critic-method, DQN
--q-method, set one network):
{listed(method_names())}

envs (--env):
{listed(BASE_NAMES)},
  atari_<game>, minatar_<game>, cycle:<name>,<name>,..., or any gymnasium id (Pendulum-v1)
  task cycles (*_cycle, cycle:...) need --switch-every N: env steps spent on each task

examples:
  python train.py --agent sac --method fire --env humanoid_walk
  python train.py --agent dqn --env minatar_cycle --switch-every 100000 --method fire
  python train.py --agent dqn --env CartPole-v1 --method fire --permute-observations \\
      --switch-every 50000
  python train.py --agent sac --resume runs/<run_name> --total-timesteps 2000000"""


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
    raise UserError(f"choose an agent with --agent {{{','.join(AGENTS)}}} (python train.py --help)")


def main(argv: list[str]) -> dict | None:
    wants_help = any(arg in ("-h", "--help") for arg in argv)
    if wants_help and not any(arg.split("=")[0] == "--agent" for arg in argv):
        print(overview())
        return None
    name, rest = split_agent(argv)
    if name not in AGENTS:
        raise UserError(f"unknown agent {name!r}: choose one of {', '.join(AGENTS)}")
    module = importlib.import_module(f"agents.{name}")
    args = parse_args(module.Args, name, rest, prog=f"train.py --agent {name}")
    summary = module.main(args)
    if summary["status"] == "finished":
        counts = ", ".join(
            f"{network} {sum(by_method.values())} ({', '.join(by_method)})"
            for network, by_method in summary["interventions_by_method"].items()
            if sum(by_method.values())
        )
        print(
            f"done: {summary['total_timesteps']} steps, "
            f"final eval return {summary['final_eval_return']:.1f}, "
            f"{summary['sps']:.0f} steps/s, interventions: {counts or 'none'}, "
            f"run in {summary['run_dir']}"
        )
    return summary


if __name__ == "__main__":
    run_cli(lambda: main(sys.argv[1:]))
