"""Continual random-label memorization: does a network stay able to learn new tasks?

A fixed set of inputs gets new random labels at every task; a 3-hidden-layer ReLU MLP must
memorize each labelling in a fixed budget of updates. A network that keeps its plasticity
fits every task about equally well; one that loses it fits later tasks worse and worse. This
is the random-label protocol of the plasticity literature (Lyle et al. 2023,
arXiv 2303.01486; Kumar et al. 2023, arXiv 2308.11958; the AdamO paper, arXiv 2606.09762),
here on Gaussian inputs so that it needs no data set.

Every method of :data:`plasticity.METHODS` runs through the same :func:`plasticity.make_method`
handle a training loop would use: ``penalty()`` in the loss, ``after_update`` after each
update, ``on_task_switch`` when the labels change.

Run: ``python benchmarks/continual_supervised.py`` (``--quick`` for a smoke run). Writes
``benchmarks/results/continual_supervised.{json,png}`` and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from plasticity import METHODS, MethodConfig, PlasticityMonitor, make_method

RESULTS = Path(__file__).parent / "results"


@dataclass
class Setup:
    """The task stream and the learner."""

    tasks: int = 30
    """number of labellings to learn one after the other"""
    samples: int = 1024
    """inputs in the fixed set (memorized anew at every task)"""
    input_dim: int = 64
    """dimension of the Gaussian inputs"""
    classes: int = 10
    """number of random classes"""
    width: int = 256
    """units per hidden layer (3 hidden layers)"""
    steps_per_task: int = 1500
    """Adam updates per task"""
    batch_size: int = 128
    """minibatch size"""
    lr: float = 1e-3
    """learning rate of every method's optimizer"""
    seed: int = 0
    """seed of the inputs, the labels and the network"""
    methods: list[str] = field(default_factory=lambda: [*METHODS, "fire+adamo"])
    """methods to compare"""
    settings: dict = field(default_factory=dict)
    """extra method settings (``MethodConfig`` fields) for every method"""


def make_network(setup: Setup) -> nn.Sequential:
    w = setup.width
    return nn.Sequential(
        nn.Linear(setup.input_dim, w),
        nn.ReLU(),
        nn.Linear(w, w),
        nn.ReLU(),
        nn.Linear(w, w),
        nn.ReLU(),
        nn.Linear(w, setup.classes),
    )


# Interventions act at the task boundary (where FIRE, resets and S&P belong); ReDo and the
# effective-rank ascent keep their own update-count schedules.
BOUNDARY_ONLY = {"fire_every": 0, "reset_every": 0, "shrink_perturb_every": 0}


METRICS = ("dormant_ratio", "effective_rank", "weight_norm", "dfi")


def run_method(name: str, setup: Setup, inputs: torch.Tensor, labels: list[torch.Tensor]):
    torch.manual_seed(setup.seed)
    net = make_network(setup)
    handle = make_method(name, **{**BOUNDARY_ONLY, **setup.settings}).attach(net, lr=setup.lr)
    monitor = PlasticityMonitor(net)
    probe = inputs[:256]
    gen = torch.Generator().manual_seed(setup.seed + 1)
    step = 0
    per_task = []
    start = time.perf_counter()
    for task, y in enumerate(labels):
        if task > 0:
            handle.on_task_switch(inputs=probe)
        for _ in range(setup.steps_per_task):
            idx = torch.randint(0, setup.samples, (setup.batch_size,), generator=gen)
            loss = F.cross_entropy(net(inputs[idx]), y[idx]) + handle.penalty()
            handle.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            handle.optimizer.step()
            step += 1
            handle.after_update(step, inputs=inputs[idx])
        with torch.no_grad():
            accuracy = float((net(inputs).argmax(1) == y).float().mean())
        # a diverged network has no ranks to measure (the monitor refuses it)
        finite = bool(torch.isfinite(loss)) and all(
            torch.isfinite(p).all() for p in net.parameters()
        )
        metrics = monitor.measure(probe) if finite else dict.fromkeys(METRICS, float("nan"))
        per_task.append(
            {
                "task": task,
                "accuracy": accuracy,
                "dormant_ratio": metrics["dormant_ratio"],
                "effective_rank": metrics["effective_rank"],
                "weight_norm": metrics["weight_norm"],
                "dfi": metrics["dfi"],
            }
        )
        if not finite:
            print(f"  {name}: diverged (loss {loss.item()}) at task {task}; stopping this method")
            break
    seconds = time.perf_counter() - start
    return {
        "method": name,
        "seconds": seconds,
        "interventions": handle.interventions,
        "per_task": per_task,
    }


def summarize(result: dict, last: int) -> dict:
    acc = [t["accuracy"] for t in result["per_task"]]
    tail = result["per_task"][-last:]
    return {
        "method": result["method"],
        "first_task": acc[0],
        "best": max(acc),
        "last_tasks": sum(t["accuracy"] for t in tail) / len(tail),
        "dormant_last": tail[-1]["dormant_ratio"],
        "erank_last": tail[-1]["effective_rank"],
        "weight_norm_last": tail[-1]["weight_norm"],
        "seconds": result["seconds"],
    }


def markdown_table(rows: list[dict], last: int) -> str:
    lines = [
        f"| method | task 1 acc. | mean acc. last {last} tasks | dormant (end) | "
        "eff. rank (end) | weight norm (end) | time (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {r['first_task']:.3f} | {r['last_tasks']:.3f} | "
            f"{r['dormant_last']:.3f} | {r['erank_last']:.1f} | {r['weight_norm_last']:.1f} | "
            f"{r['seconds']:.0f} |"
        )
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_dormant) = plt.subplots(1, 2, figsize=(13, 4.5))
    colors = plt.get_cmap("tab20").colors
    for i, result in enumerate(results):
        style = {"color": colors[(2 * i) % 20 + (i // 10) % 2], "ls": ("-", "--", ":")[i % 3]}
        tasks = [t["task"] + 1 for t in result["per_task"]]
        accuracy = [t["accuracy"] for t in result["per_task"]]
        ax_acc.plot(tasks, accuracy, label=result["method"], **style)
        ax_dormant.plot(tasks, [t["dormant_ratio"] for t in result["per_task"]], **style)
    ax_acc.set(
        xlabel="task",
        ylabel="train accuracy at end of task",
        title="Random-label memorization, task after task",
    )
    ax_dormant.set(xlabel="task", ylabel="dormant ratio (τ = 0.025)", title="Dormant units")
    ax_acc.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def parse_setting(key: str, value: str):
    """A ``MethodConfig`` field's value from text: lists comma-separated, bools true/false."""
    default = getattr(MethodConfig(), key)
    if isinstance(default, list):
        return [int(v) for v in value.split(",") if v]
    if isinstance(default, bool):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{key} takes true or false, got {value!r}")
        return value.lower() in ("true", "1")
    return type(default)(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (few tasks)")
    parser.add_argument("--methods", help="comma-separated methods (default: all)")
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--steps-per-task", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method setting for every method, e.g. --set iso_every=1",
    )
    parser.add_argument("--out", default="continual_supervised", help="result file stem")
    args = parser.parse_args()

    setup = Setup()
    if args.quick:
        setup.tasks, setup.steps_per_task = 4, 300
    if args.tasks:
        setup.tasks = args.tasks
    if args.steps_per_task:
        setup.steps_per_task = args.steps_per_task
    if args.lr:
        setup.lr = args.lr
    if args.methods:
        setup.methods = args.methods.split(",")
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            setup.settings[key] = parse_setting(key, value)
        except (AttributeError, ValueError) as err:
            parser.error(f"--set {item}: {err}")

    gen = torch.Generator().manual_seed(setup.seed)
    inputs = torch.randn(setup.samples, setup.input_dim, generator=gen)
    labels = [
        torch.randint(0, setup.classes, (setup.samples,), generator=gen) for _ in range(setup.tasks)
    ]
    print(
        f"{setup.tasks} tasks × {setup.steps_per_task} updates, {torch.get_num_threads()} threads"
    )
    results, rows = [], []
    last = max(1, setup.tasks // 4)
    for name in setup.methods:
        result = run_method(name, setup, inputs, labels)
        results.append(result)
        rows.append(summarize(result, last))
        r = rows[-1]
        print(
            f"  {name:<16} task1 {r['first_task']:.3f}  last-{last} {r['last_tasks']:.3f}  "
            f"dormant {r['dormant_last']:.3f}  {r['seconds']:.0f}s",
            flush=True,
        )

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(
        json.dumps(
            {
                "setup": asdict(setup),
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),  # results move with the float rounding
                "summary": rows,
                "runs": results,
            },
            indent=1,
        )
    )
    plot(results, RESULTS / f"{args.out}.png")
    print()
    print(markdown_table(rows, last))
    print(f"\nwrote {RESULTS / args.out}.json and .png")


if __name__ == "__main__":
    main()
