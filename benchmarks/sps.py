"""Training speed of our SAC against Stable-Baselines3's SAC, side by side in one run.

Same hyperparameters for both: 256-256 ReLU networks, batch 256, replay 1e6, one gradient
step per env step (ours updates the policy every 2 steps twice, the same number of updates),
autotuned entropy, no evaluation or logging in the timed window. The figure is steady-state
env steps/s from 100 updates after ``learning_starts`` on (random-action warm-up and the
compilation of ``--compile`` excluded). ``--matmul-precision`` applies to both agents.

On a CUDA machine it times ours eager, ours ``--cudagraphs`` (each update compiled and replayed
as CUDA graphs), ours ``--whole-graph`` (each update one CUDA graph) and SB3 in one run;
``--updates-per-step 1 4 16`` repeats the comparison at
higher replay ratios (SB3's ``gradient_steps``) and reports updates/s too.

Run: ``python -m benchmarks.sps`` (``--env``, ``--steps``, ``--threads``, ``--device``,
``--variants eager,compile,cudagraphs,whole_graph,sb3``, ``--updates-per-step``,
``--matmul-precision``). Needs the ``humanoid`` extra for Humanoid-v5 and stable-baselines3.
Appends to ``benchmarks/results/sps.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from benchmarks._sac_speed import ours, sb3_sac

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Humanoid-v5")
    parser.add_argument("--learning-starts", type=int, default=1000)
    parser.add_argument("--steps", type=int, default=1500, help="timed steps after warm-up")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="auto", help="auto: CUDA when available")
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each")
    parser.add_argument(
        "--variants",
        default=None,
        help="comma-separated: eager, compile, cudagraphs, whole_graph, sb3 (default: "
        "eager,sb3 on the CPU; eager,cudagraphs,whole_graph,sb3 on CUDA)",
    )
    parser.add_argument(
        "--updates-per-step",
        type=int,
        nargs="+",
        default=[1],
        help="replay ratios to time (SB3: gradient_steps); e.g. 1 4 16",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "sps.jsonl", help="appended to")
    parser.add_argument(
        "--matmul-precision",
        default="highest",
        choices=["highest", "high", "medium"],
        help="float32 matmul precision of both agents",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_float32_matmul_precision(args.matmul_precision)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    variants = args.variants or (
        "eager,cudagraphs,whole_graph,sb3" if device == "cuda" else "eager,sb3"
    )
    variants = variants.split(",")

    import stable_baselines3

    args.out.parent.mkdir(parents=True, exist_ok=True)
    for k in args.updates_per_step:
        runs: dict[str, list[float]] = {variant: [] for variant in variants}
        for _ in range(args.repeats):  # alternate, so a change of machine load hits all alike
            for variant in variants:
                if variant == "sb3":
                    sps = sb3_sac(args.env, args.learning_starts, args.steps, device, k)
                else:
                    sps = ours(args.env, args.learning_starts, args.steps, device, variant, k)
                runs[variant].append(sps)
            print(
                f"updates/step {k}: "
                + ", ".join(f"{v} {runs[v][-1]:.1f}" for v in variants)
                + " steps/s",
                flush=True,
            )
        medians = {v: statistics.median(values) for v, values in runs.items()}
        line = ", ".join(
            f"{v} {m:.1f} steps/s = {m * k:.0f} updates/s"
            + (f" ({m / medians['sb3']:.2f}× SB3)" if "sb3" in medians and v != "sb3" else "")
            for v, m in medians.items()
        )
        print(f"median, updates/step {k}: {line}")
        record = {
            "env": args.env,
            "device": device,
            "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
            "threads": args.threads,
            "updates_per_step": k,
            "matmul_precision": args.matmul_precision,
            "timed_steps": args.steps,
            "runs": runs,
            "median_sps": medians,
            "torch": torch.__version__,
            "stable_baselines3": stable_baselines3.__version__,
            "date": time.strftime("%Y-%m-%d"),
        }
        with open(args.out, "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
