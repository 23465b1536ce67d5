"""Where a steady-state SAC step spends its time: a torch.profiler table by operator.

Runs our SAC on Humanoid-v5 (defaults: 1000 random steps, then updates) and profiles
``--active`` env steps after ``--skip`` updates, one profiler step per env step. The row
``ProfilerStep*`` has, as self time, what runs outside torch operators: Python and the env.

Run: ``python -m benchmarks.profile_sac`` (``--env``, ``--active``, ``--threads``, ``--rows``).
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile, schedule

from agents import lifecycle, sac


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Humanoid-v5")
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--skip", type=int, default=300, help="updates before profiling")
    parser.add_argument("--active", type=int, default=300, help="env steps profiled")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--rows", type=int, default=25)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    prof = profile(
        activities=[ProfilerActivity.CPU],
        schedule=schedule(wait=args.learning_starts + args.skip, warmup=10, active=args.active),
    )

    class SteppingTracker(lifecycle.EpisodeTracker):
        """The agent's episode tracker, which it calls once per env step: the profiler's clock."""

        def update(self, infos):
            prof.step()
            return super().update(infos)

    lifecycle.EpisodeTracker = SteppingTracker  # the run's lifecycle makes the tracker
    with tempfile.TemporaryDirectory() as runs:
        run_args = sac.Args(
            env=args.env,
            total_timesteps=args.learning_starts + args.skip + args.active + 20,
            learning_starts=args.learning_starts,
            eval_every=0,
            eval_episodes=0,
            metrics_every=0,
            checkpoint_every=0,
            runs_dir=runs,
            device="cpu",
        )
        with prof:
            sac.main(run_args)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.rows)
    print(table)
    total = sum(e.self_cpu_time_total for e in prof.key_averages()) / args.active / 1e3
    products = sum(
        e.self_cpu_time_total for e in prof.key_averages() if e.key in ("aten::addmm", "aten::mm")
    )
    print(
        f"per env step: {total:.2f} ms in all, "
        f"{products / args.active / 1e3:.2f} ms in matrix products (addmm, mm)"
    )


if __name__ == "__main__":
    main()
