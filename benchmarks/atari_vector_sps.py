"""Atari env steps per second: ALE's C++ ``AtariVectorEnv`` against today's gymnasium path.

Both paths are what training builds for ``--env atari_<game> --num-envs N``: before, a
``SyncVectorEnv`` of ``make_env`` copies (gymnasium's ``AtariPreprocessing`` and wrappers in
Python, one copy after another); now ``envs.atari.make_atari_vector`` (C++ threads step the
copies in parallel). Each timed run steps the vector env with pre-drawn random actions
(autoresets included) for about ``--steps`` env steps in all; env steps/s = copies × vector
steps / seconds. Per repeat the two paths run back to back at every copy count, so machine noise
hits both alike; figures are medians over ``--repeats``. OpenCV (the gymnasium path's resize)
runs one thread; the ALE vector env runs its default, one thread per copy up to the CPU
count (``ale_threads`` in the results). The load average is recorded before and after, because
a shared machine changes the figures.

Run: ``OMP_NUM_THREADS=1 python -m benchmarks.atari_vector_sps`` (``--quick`` for a short run).
Writes ``benchmarks/results/atari_vector_sps.{json,md}`` (or ``--out``) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np

from envs import make_env
from envs.atari import ATARI_PREFIX, make_atari_vector

RESULTS = Path(__file__).parent / "results"
PATHS = ("gymnasium SyncVectorEnv", "ALE AtariVectorEnv")


def gymnasium_path(game: str, num_envs: int) -> gym.vector.SyncVectorEnv:
    """Today's training envs (``make_train_envs`` before the ALE vector env)."""
    return gym.vector.SyncVectorEnv(
        [lambda seed=seed: make_env(ATARI_PREFIX + game, seed=seed) for seed in range(num_envs)]
    )


def timed_run(envs: gym.vector.VectorEnv, vector_steps: int, seed: int) -> dict[str, float]:
    """Env steps per second of wall time, and per second of this process's CPU time (all its
    threads): the second hardly moves with the machine's load."""
    rng = np.random.default_rng(seed)
    actions = rng.integers(envs.single_action_space.n, size=(vector_steps, envs.num_envs))
    envs.reset(seed=seed)
    wall, cpu = time.perf_counter(), time.process_time()
    for action in actions:
        envs.step(action)
    env_steps = envs.num_envs * vector_steps
    return {
        "wall": env_steps / (time.perf_counter() - wall),
        "cpu": env_steps / (time.process_time() - cpu),
    }


def measure(game: str, copies: list[int], steps: int, repeats: int) -> dict[int, dict]:
    """Per copy count and path: the timed runs, their medians, and the median over repeats of
    the ALE path's wall-time speed-up over the gymnasium run just before it."""
    envs = {
        n: {PATHS[0]: gymnasium_path(game, n), PATHS[1]: make_atari_vector(game, n)} for n in copies
    }
    runs = {n: {path: [] for path in PATHS} for n in copies}
    for repeat in range(repeats + 1):  # repeat 0 warms up and is not kept
        for n in copies:
            for path in PATHS:
                run = timed_run(envs[n][path], max(1, steps // n), seed=repeat)
                if repeat > 0:
                    runs[n][path].append(run)
        print(f"repeat {repeat}/{repeats}, load average {os.getloadavg()[0]:.1f}", flush=True)
    for pair in envs.values():
        for env in pair.values():
            env.close()
    results = {}
    for n, by_path in runs.items():
        results[n] = {path: with_medians(path_runs) for path, path_runs in by_path.items()}
        paired = zip(by_path[PATHS[0]], by_path[PATHS[1]], strict=True)
        speedups = [ale["wall"] / today["wall"] for today, ale in paired]
        results[n]["speedup"] = statistics.median(speedups)
    return results


def with_medians(runs: list[dict[str, float]]) -> dict:
    medians = {kind: statistics.median(run[kind] for run in runs) for kind in ("wall", "cpu")}
    return {**medians, "runs": runs}


def table(results: dict[int, dict]) -> list[str]:
    lines = [
        (
            "| copies | gymnasium steps/s | ALE steps/s | ALE / gymnasium (paired) "
            "| gymnasium steps per CPU-s | ALE steps per CPU-s |"
        ),
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for n, result in results.items():
        today, ale = result[PATHS[0]], result[PATHS[1]]
        lines.append(
            f"| {n} | {today['wall']:,.0f} | {ale['wall']:,.0f} | {result['speedup']:.2f}× "
            f"| {today['cpu']:,.0f} | {ale['cpu']:,.0f} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--game", default="pong", help="ale-py ROM id (default pong)")
    parser.add_argument("--copies", type=int, nargs="+", default=[1, 4, 8], help="num_envs")
    parser.add_argument("--steps", type=int, default=4000, help="env steps per timed run")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per path and size")
    parser.add_argument("--quick", action="store_true", help="800 steps x 3 repeats")
    parser.add_argument("--out", type=Path, default=RESULTS / "atari_vector_sps", help="stem")
    args = parser.parse_args()
    steps, repeats = (800, 3) if args.quick else (args.steps, args.repeats)
    cv2.setNumThreads(1)
    load_before = os.getloadavg()
    results = measure(args.game, args.copies, steps, repeats)
    load_after = os.getloadavg()
    command = f"python -m benchmarks.atari_vector_sps --game {args.game} --steps {steps} "
    command += f"--repeats {repeats} --copies {' '.join(map(str, args.copies))}"
    header = [
        "# Atari env steps per second: ALE's AtariVectorEnv against the gymnasium path",
        "",
        (
            f"`{command}`; {os.cpu_count()} CPU cores, "
            f"{platform.processor() or platform.machine()}, Python {platform.python_version()}. "
            f"Random actions, autoresets included; medians of {repeats} runs, the paths "
            "alternating; the speed-up is the median of each ALE run's steps/s over the "
            "gymnasium run just before it. Steps per CPU-s: per second of the process's CPU "
            "time, all threads (1 thread for gymnasium, ALE's in `ale_threads` of the JSON). "
            f"Load average (1 min) before and after: {load_before[0]:.1f} and "
            f"{load_after[0]:.1f}."
        ),
        "",
    ]
    text = "\n".join(header + table(results)) + "\n"
    print(text)
    record = {
        "command": command,
        "cpu_count": os.cpu_count(),
        "ale_threads": {n: min(n, os.cpu_count()) for n in args.copies},
        "load_average_before": load_before,
        "load_average_after": load_after,
        "env_steps_per_second": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
