"""Learning evidence for the agents (run by hand, not in CI).

- ``sac_pendulum``: SAC on Pendulum-v1 must reach a mean evaluation return above −250 within
  15k steps (CleanRL's order of magnitude): with the defaults (eager, float32), with
  ``--matmul-precision medium`` (bfloat16 products on the CPU) and with ``--compile``.
- ``sac_humanoid``: short SAC runs on ``humanoid_walk`` with ``fire`` and with ``none``, to show
  the plasticity metrics and FIRE's interventions in the logs (far too short to learn to walk).

- ``dqn_permuted_cartpole``: DQN on CartPole-v1 whose observation entries are permuted anew
  every 100k steps (6 periods), with ``none``, ``fire`` and ``reset`` acting at each switch:
  does the Q-network keep learning new permutations, and what do the plasticity metrics show?

Run: ``python -m benchmarks.learning [sac_pendulum] [sac_humanoid] [dqn_permuted_cartpole]
[--seeds 1 2]``. Writes
``benchmarks/results/learning_<name>.json`` with the evaluation curve and summary of each run;
the run folders go to ``runs/learning/`` (open them with TensorBoard).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agents import dqn, sac
from experiments.runs import run_rows

RESULTS = Path(__file__).parent / "results"


def eval_curve(run_dir: str) -> list[tuple[int, float]]:
    return [
        (r["step"], r["eval/episodic_return"])
        for r in run_rows(run_dir)
        if "eval/episodic_return" in r
    ]


def sac_pendulum() -> list[dict]:
    variants = {
        "float32": {},
        "bfloat16_products": {"matmul_precision": "medium"},
        "compiled": {"compile": True},
    }
    summaries = []
    for variant, speed_settings in variants.items():
        args = sac.Args(
            env="Pendulum-v1",
            total_timesteps=15_000,
            learning_starts=5_000,
            eval_every=2_500,
            eval_episodes=10,
            metrics_every=2_500,
            checkpoint_every=0,
            exp_name=f"learning_sac_pendulum_{variant}",
            runs_dir="runs/learning",
            **speed_settings,
        )
        summary = sac.main(args)
        summary["variant"] = variant
        summary["eval_curve"] = eval_curve(summary["run_dir"])
        summary["goal"] = "final_eval_return > -250 within 15k steps"
        summary["passed"] = summary["final_eval_return"] > -250
        summaries.append(summary)
    return summaries


def sac_humanoid() -> list[dict]:
    summaries = []
    for method in ("none", "fire"):
        args = sac.Args(
            env="humanoid_walk",
            method=method,
            total_timesteps=12_000,
            learning_starts=2_000,
            eval_every=4_000,
            eval_episodes=3,
            metrics_every=1_000,
            checkpoint_every=0,
            exp_name=f"learning_sac_humanoid_{method}",
            runs_dir="runs/learning",
        )
        args.plasticity.fire_every = 5_000
        summary = sac.main(args)
        summary["eval_curve"] = eval_curve(summary["run_dir"])
        last = {
            k: v for r in run_rows(summary["run_dir"]) for k, v in r.items()
        }  # the latest value of every scalar
        summary["final_metrics"] = {
            k: last[k]
            for k in (
                "critic/dormant_ratio",
                "critic/effective_rank",
                "critic/dfi",
                "actor/dormant_ratio",
                "actor/effective_rank",
            )
            if k in last
        }
        summaries.append(summary)
    return summaries


def dqn_permuted_cartpole(seeds: list[int]) -> list[dict]:
    switch_every, periods = 100_000, 6
    summaries = []
    for seed in seeds:
        for method in ("none", "fire", "reset"):
            args = dqn.Args(
                env="CartPole-v1",
                permute_observations=True,
                switch_every=switch_every,
                total_timesteps=switch_every * periods,
                method=method,
                seed=seed,
                eval_every=25_000,
                eval_episodes=10,
                metrics_every=25_000,
                checkpoint_every=0,
                exp_name=f"learning_dqn_permuted_{method}",
                runs_dir="runs/learning",
            )
            # act only at the task switches, not also on a schedule of their own
            args.plasticity.fire_every = args.plasticity.reset_every = 0
            summary = dqn.main(args)
            rows = run_rows(summary["run_dir"])
            summary["seed"] = seed
            summary["eval_curve"] = eval_curve(summary["run_dir"])
            summary["metrics_curve"] = [
                (r["step"], r["q/dormant_ratio"], r["q/effective_rank"], r["q/weight_norm"])
                for r in rows
                if "q/dormant_ratio" in r
            ]
            summary["switches"] = [r["step"] for r in rows if "charts/task_id" in r]
            summaries.append(summary)
    return summaries


EXPERIMENTS = {
    "sac_pendulum": sac_pendulum,
    "sac_humanoid": sac_humanoid,
    "dqn_permuted_cartpole": dqn_permuted_cartpole,
}
SEEDED = {"dqn_permuted_cartpole"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="*", choices=[*EXPERIMENTS, []], default=[])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2], help="of " + str(SEEDED))
    options = parser.parse_args()
    names = options.experiments or list(EXPERIMENTS)
    RESULTS.mkdir(exist_ok=True)
    for name in names:
        if name in SEEDED:
            summaries = EXPERIMENTS[name](options.seeds)
            seeds = "_".join(map(str, options.seeds))
            out = RESULTS / f"learning_{name}_seeds_{seeds}.json"
        else:
            summaries = EXPERIMENTS[name]()
            out = RESULTS / f"learning_{name}.json"
        out.write_text(json.dumps(summaries, indent=2))
        for s in summaries:
            print(
                f"{name} {s.get('variant', s['method'])} seed {s.get('seed', 1)}: "
                f"final eval {s['final_eval_return']:.1f}, "
                f"curve {s['eval_curve']}, {s['sps']:.0f} steps/s"
            )


if __name__ == "__main__":
    main()
