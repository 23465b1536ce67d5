"""Does the GPU path work, and how fast is it? One command that answers both.

**Correctness.** For each agent (SAC, DQN, PPO) × method (``spectral``, ``fire+adamo``; see
:data:`METHODS`) × mode (``--compile``, ``--whole-graph``, and on CUDA ``--cudagraphs``), a
short run on a fixed seed (with FIRE at its midpoint where the method has it), against the
eager run. A run passes when it ends at the eager run's network parameters (relative to their
norm, ``--rtol``; the runs are short, see :data:`STEPS`), when a run twice as long compiles no
more graphs (no recompilation after warm-up: Dynamo's ``unique_graphs`` counter; none at all
for ``--whole-graph``, which does not use Dynamo), when torch logged no skipped CUDA graph
("skipping cudagraphs ...", a partition run without a graph), and when it raised nothing (a
failing row records the error and the others still run). On the CPU ``--whole-graph`` is its
check (each call's operators against the captured call's).

**Speed** (``--speed``): steady env steps/s and updates/s of SAC on ``--env`` (Humanoid-v5) at
``--updates-per-step`` 1, 4, 16: ours eager, ours compiled (``--cudagraphs`` and
``--whole-graph`` on CUDA, ``--compile`` on the CPU) and Stable-Baselines3 side by side in the
same run (through ``benchmarks/sps.py``; ``--speed-steps`` env steps at one update per step,
fewer at more, at least 300), then what FIRE + AdamO and AdamO at ``iso_every=1`` cost over
``none`` in the fastest compiled mode (``--whole-graph`` on CUDA) at one update per step.

Run on a GPU machine (about 8 minutes on one H100-class GPU, compilation included)::

    python -m benchmarks.gpu_check --speed

``--modes`` and ``--agents`` pick a part of the grid. On a CPU it runs the eager,
``--compile`` and ``--whole-graph`` (checked) parts. Writes ``benchmarks/results/gpu_check.json``
and ``.md`` (``--out`` to change the stem).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks._stats import write_result_json

RESULTS = Path(__file__).parent / "results"
AGENTS = ("sac", "dqn", "ppo")
STEPS = {"sac": 120, "dqn": 400, "ppo": 256}
"""Env steps of a correctness run: short, since the runs act on their env, so that a
float-level difference between kernels fed back through the collected data grows (SAC on
Pendulum: 4e-7 of the parameters' norm after 240 steps, 1e-2 after 400 in one case)."""
MODES = ("compile", "cudagraphs", "whole_graph")
"""Compiled modes of the correctness rows, each against the eager run."""
METHODS = ("spectral", "fire+adamo")
"""Methods of the correctness runs. ``spectral`` runs every path of ``none`` (the compiled
optimizer step) plus a penalty whose state the graphs mutate: on CUDA, torch skips a CUDA
graph that mutates an input it does not know as static. Not combined with FIRE + AdamO: SAC's
run then ends 3e-4 from eager on the CPU, though the same updates on fixed data stay within
4e-7 after 60 of them, as close as two eager runs whose weights start 1e-7 apart: SAC's
actions feed float-level differences back, more with the three together."""


class SkippedGraphs(logging.Handler):
    """Collects torch's "skipping cudagraphs" messages while installed."""

    def __init__(self):
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "skipping cudagraphs" in message:
            self.messages.append(message.splitlines()[0])

    @contextlib.contextmanager
    def installed(self):
        torch._logging.set_logs(perf_hints=True)
        logger = logging.getLogger("torch")
        logger.addHandler(self)
        try:
            yield self
        finally:
            logger.removeHandler(self)
            torch._logging.set_logs()


def agent_run(agent: str, method: str, mode: str, steps: int, device: str, runs: Path):
    """One short run on a fixed seed with FIRE at its midpoint; returns its final networks
    (on the CPU) and Dynamo's graph count."""
    import importlib

    from torch._dynamo.utils import counters

    module = importlib.import_module(f"agents.{agent}")
    settings = {
        "sac": {"env": "Pendulum-v1", "learning_starts": steps // 4, "batch_size": 32},
        "dqn": {"env": "CartPole-v1", "learning_starts": steps // 4, "batch_size": 32},
        "ppo": {"env": "CartPole-v1", "num_envs": 2, "num_steps": 32},
    }[agent]
    args = module.Args(
        **settings,
        method=method,
        total_timesteps=steps,
        eval_every=0,
        eval_episodes=0,
        metrics_every=0,
        checkpoint_every=0,
        runs_dir=str(runs),
        device=device,
        compile=mode == "compile",
        cudagraphs=mode == "cudagraphs",
        whole_graph=mode == "whole_graph",
        verbose=0,
    )
    args.plasticity.fire_at = [steps // 2]
    args.plasticity.fire_every = 0
    args.plasticity.iso_every = 4
    torch._dynamo.reset()
    counters.clear()
    summary = module.main(args)
    checkpoint = Path(summary["run_dir"]) / "checkpoints" / f"step_{summary['total_timesteps']}.pt"
    from agents.files import read_checkpoint

    state = read_checkpoint(checkpoint)
    networks = {
        name: state[name] for name in ("actor", "critic", "q") if name in state
    }  # the trained networks (targets follow them)
    return networks, counters["stats"]["unique_graphs"], summary["interventions"]


def relative_error(eager: dict, other: dict) -> float:
    """‖θ_other − θ_eager‖ / ‖θ_eager‖ over every parameter of every network."""
    difference = total = 0.0
    for network, params in eager.items():
        for key, value in params.items():
            difference += float((other[network][key] - value).double().pow(2).sum())
            total += float(value.double().pow(2).sum())
    return (difference / max(total, 1e-30)) ** 0.5


def correctness(agents, methods, modes, steps, device: str, rtol: float) -> list[dict]:
    """The correctness rows (see the module docstring)."""
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        runs = Path(folder)
        for agent in agents:
            agent_steps = steps or STEPS[agent]
            for method in methods:
                # compiled code draws SAC's action noise from its own generator unless told
                from torch._inductor import config as inductor_config

                with inductor_config.patch(fallback_random=True):
                    eager, _, eager_count = agent_run(
                        agent, method, "eager", agent_steps, device, runs
                    )
                    for mode in modes:
                        start = time.perf_counter()
                        row = {"agent": agent, "method": method, "mode": mode}
                        try:
                            with SkippedGraphs().installed() as skipped:
                                networks, graphs, count = agent_run(
                                    agent, method, mode, agent_steps, device, runs
                                )
                                _, graphs_longer, _ = agent_run(
                                    agent, method, mode, 2 * agent_steps, device, runs
                                )
                        except Exception as error:  # one failing mode must not end the grid
                            row.update(error=f"{type(error).__name__}: {error}", passed=False)
                        else:
                            error = relative_error(eager, networks)
                            row.update(
                                interventions=count,
                                same_interventions=count == eager_count,
                                relative_error=error,
                                graphs=graphs,
                                graphs_twice_as_long=graphs_longer,
                                skipped_graphs=skipped.messages,
                                passed=error <= rtol
                                and graphs == graphs_longer
                                and not skipped.messages
                                and count == eager_count,
                            )
                        row["seconds"] = time.perf_counter() - start
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    return rows


def speed(env: str, device: str, modes: list[str], updates: list[int], steps: int) -> dict:
    """SAC's steady env steps/s (and updates/s) against SB3 in each compiled mode of
    ``modes``, and the methods' cost in the last of them."""
    from benchmarks._sac_speed import ours, sb3_sac
    from plasticity import MethodConfig

    rows = []
    variants = ["eager", *modes]
    for k in updates:
        k_steps = max(300, steps // k)  # the timed window starts 100 steps in
        row = {"updates_per_step": k, "steps": k_steps}
        for variant in variants:
            row[variant] = ours(env, 1000, k_steps, device, variant, k)
        row["sb3"] = sb3_sac(env, 1000, k_steps, device, k)
        for mode in modes:
            row[f"{mode}_over_sb3"] = row[mode] / row["sb3"]
        row["updates_per_s"] = {v: row[v] * k for v in (*variants, "sb3")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    costs = {}
    for name, method, config in (
        ("none", "none", MethodConfig()),
        ("fire+adamo", "fire+adamo", MethodConfig()),
        ("adamo iso_every=1", "adamo", MethodConfig(iso_every=1)),
    ):
        costs[name] = ours(env, 1000, steps, device, modes[-1], 1, method=method, plasticity=config)
    return {
        "by_updates_per_step": rows,
        "methods_steps_per_s": costs,
        "relative_to_none": {name: value / costs["none"] for name, value in costs.items()},
    }


def markdown(result: dict) -> str:
    lines = [
        f"GPU path check on {result['device']} (torch {result['torch']}); command: "
        f"`{result['command']}`",
        "",
        "| agent | method | mode | passed | relative error | graphs (run, twice as long) | "
        "skipped graphs | interventions |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in result["correctness"]:
        if "error" in row:
            lines.append(
                f"| {row['agent']} | `{row['method']}` | {row['mode']} | **no**: "
                f"{row['error'].splitlines()[0][:200]} | | | | |"
            )
            continue
        lines.append(
            f"| {row['agent']} | `{row['method']}` | {row['mode']} | "
            f"{'yes' if row['passed'] else '**no**'} | {row['relative_error']:.1e} | "
            f"{row['graphs']}, {row['graphs_twice_as_long']} | {len(row['skipped_graphs'])} | "
            f"{row['interventions']} |"
        )
    if result.get("speed"):
        speed_result = result["speed"]
        modes = result["speed_modes"]
        lines += [
            "",
            f"SAC on {result['env']}, steady env steps/s:",
            "",
            "| updates/step | ours eager | "
            + " | ".join(f"ours {m}" for m in modes)
            + " | SB3 | "
            + " | ".join(f"{m} / SB3" for m in modes)
            + " |",
            "|---|---|" + "---|" * (2 * len(modes) + 1),
        ]
        for row in speed_result["by_updates_per_step"]:
            lines.append(
                f"| {row['updates_per_step']} | {row['eager']:.0f} | "
                + " | ".join(f"{row[m]:.0f}" for m in modes)
                + f" | {row['sb3']:.0f} | "
                + " | ".join(f"{row[f'{m}_over_sb3']:.2f}×" for m in modes)
                + " |"
            )
        lines += [
            "",
            f"Methods in {modes[-1]}, one update per step:",
            "",
            "| method | steps/s | relative to none |",
            "|---|---|---|",
        ]
        for name, value in speed_result["methods_steps_per_s"].items():
            relative = speed_result["relative_to_none"][name]
            lines.append(f"| `{name}` | {value:.0f} | {relative:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=AGENTS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=MODES,
        help="compiled modes of the correctness rows (default: compile, whole_graph, and on "
        "CUDA cudagraphs)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        help="env steps of a correctness run (default: SAC 120, DQN 400, PPO 256)",
    )
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--speed", action="store_true", help="also time SAC against SB3")
    parser.add_argument("--env", default="Humanoid-v5", help="env of the speed part")
    parser.add_argument("--speed-steps", type=int, default=1500)
    parser.add_argument("--updates-per-step", nargs="+", type=int, default=[1, 4, 16])
    parser.add_argument("--out", default="gpu_check", help="result file stem")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 8:
        parser.error("--steps must be at least 8: the runs need room for learning and FIRE")
    torch.set_num_threads(1)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if "cudagraphs" in (args.modes or ()) and device != "cuda":
        parser.error("--modes cudagraphs needs a CUDA device")
    modes = args.modes or (list(MODES) if device == "cuda" else ["compile", "whole_graph"])
    speed_modes = ["cudagraphs", "whole_graph"] if device == "cuda" else ["compile"]
    rows = correctness(args.agents, args.methods, modes, args.steps, device, args.rtol)
    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "command": " ".join(["python -m benchmarks.gpu_check", *(argv or sys.argv[1:])]),
        "speed_modes": speed_modes,
        "env": args.env,
        "correctness": rows,
        "speed": speed(args.env, device, speed_modes, args.updates_per_step, args.speed_steps)
        if args.speed
        else None,
    }
    args.results.mkdir(parents=True, exist_ok=True)
    write_result_json(args.results / f"{args.out}.json", result)
    (args.results / f"{args.out}.md").write_text(markdown(result))
    failed = [row for row in rows if not row["passed"]]
    print(f"{len(rows) - len(failed)} of {len(rows)} checks passed; wrote {args.out}.json, .md")
    return result


if __name__ == "__main__":
    main()
