"""Raw environment speed on this machine: steps per second of each env family, and what the
task-cycling wrapper (``envs.nonstationary.TaskCycle``) adds on top of the bare env.

Each env takes pre-drawn random actions (resetting when an episode ends); the cycling
wrapper runs the same single task (``cycle:<name>`` with ``switch_every`` larger than the run,
so it never switches), with and without permuted observations. Timings are medians over
``--repeats`` runs, bare and wrapped interleaved so that machine noise hits both alike.

Run: ``python -m benchmarks.env_sps`` (``--quick`` for a short run). Writes
``benchmarks/results/env_sps.md`` and prints the same table; ``--only minatar_breakout`` times
that family alone and only prints its rows.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

from envs import make_env

RESULTS = Path(__file__).parent / "results"
NEVER = 10**12  # switch_every that a benchmark run never reaches

# (label, env name, make_env keywords)
FAMILIES = [
    ("H1 built-in (HumanoidBench-style)", "humanoid_walk", {}),
    ("dm_control humanoid (shimmy)", "dmc_humanoid_walk", {}),
    ("gymnasium Humanoid-v5", "Humanoid-v5", {}),
    ("Atari Pong, DQN preprocessing", "atari_pong", {"full_action_space": True}),
    ("MinAtar Breakout", "minatar_breakout", {}),
    ("CartPole-v1 (worst case for overhead)", "CartPole-v1", {}),
]
VARIANTS = [
    ("bare", {}),
    ("cycle", {"switch_every": NEVER}),
    ("cycle + permuted obs", {"switch_every": NEVER, "permute_observations": True}),
]


def env_name(name: str, variant_kwargs: dict) -> str:
    return f"cycle:{name}" if variant_kwargs else name


def steps_per_second(env, steps: int) -> float:
    actions = [env.action_space.sample() for _ in range(steps)]
    env.reset()
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    return steps / (time.perf_counter() - start)


def bench_family(name: str, kwargs: dict, steps: int, repeats: int) -> dict[str, float]:
    envs = {
        label: make_env(env_name(name, extra), seed=0, **kwargs, **extra)
        for label, extra in VARIANTS
    }
    samples = {label: [] for label in envs}
    for env in envs.values():
        steps_per_second(env, max(10, steps // 10))  # warm-up
    for _ in range(repeats):
        for label, env in envs.items():
            samples[label].append(steps_per_second(env, steps))
    for env in envs.values():
        env.close()
    return {label: statistics.median(values) for label, values in samples.items()}


def overhead(bare: float, wrapped: float) -> str:
    """Relative and absolute extra time per step of the wrapped env."""
    return f"{(bare / wrapped - 1) * 100:+.1f}% ({(1 / wrapped - 1 / bare) * 1e6:+.1f} µs)"


def table(results: dict[str, dict[str, float]]) -> list[str]:
    lines = [
        (
            "| env family | bare steps/s | cycle steps/s | cycle overhead "
            "| cycle + permuted obs steps/s | overhead |"
        ),
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, sps in results.items():
        lines.append(
            f"| {label} | {sps['bare']:,.0f} | {sps['cycle']:,.0f} "
            f"| {overhead(sps['bare'], sps['cycle'])} | {sps['cycle + permuted obs']:,.0f} "
            f"| {overhead(sps['bare'], sps['cycle + permuted obs'])} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3000, help="env steps per timed run")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per variant")
    parser.add_argument("--quick", action="store_true", help="300 steps x 3 repeats")
    parser.add_argument(
        "--only", nargs="+", metavar="ENV", help="time these env names only; writes no file"
    )
    args = parser.parse_args()
    steps, repeats = (300, 3) if args.quick else (args.steps, args.repeats)
    families = [f for f in FAMILIES if args.only is None or f[1] in args.only]
    if not families:
        parser.error(f"--only matches none of {', '.join(f[1] for f in FAMILIES)}")
    results = {}
    for label, name, kwargs in families:
        results[label] = bench_family(name, kwargs, steps, repeats)
        print(f"{label}: " + ", ".join(f"{k} {v:,.0f}" for k, v in results[label].items()))
    header = [
        "# Environment steps per second",
        "",
        (
            f"`python -m benchmarks.env_sps --steps {steps} --repeats {repeats}`; one process, "
            f"{os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, "
            f"Python {platform.python_version()}. Random actions, resets included; median of "
            f"{repeats} runs. Overhead: wrapped time per step / bare time per step - 1 "
            "(and the difference in µs per step)."
        ),
        "",
    ]
    text = "\n".join(header + table(results)) + "\n"
    print(text)
    if args.only is not None:  # a partial table would replace the full one
        return
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "env_sps.md").write_text(text)


if __name__ == "__main__":
    main()
