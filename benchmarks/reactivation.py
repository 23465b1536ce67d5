"""Dormant-unit reactivation: can a method bring a collapsed network's dead units back?

A plain-Adam network (method ``none``) is trained on the random-label stream of
``benchmarks/continual_supervised.py`` until at least ``--dormant`` (40%) of its hidden units
are dormant (ReDo score ``<= 0.025`` on a 256-sample probe, :class:`PlasticityMonitor`). Copies
of that exact state then go on learning new random labellings, each under one method with a
fresh optimizer state: Adam (``none``), AdamO (its decoupled isometry step acts on units whose
task gradient is zero; arXiv 2606.09762), the coupled isometry penalty (same paper, the
ablation), FIRE once at the start (arXiv 2602.08040) and ReDo at its default period
(arXiv 2302.12902). The dormant ratio and the accuracy on the current labelling are
measured every ``--every`` updates; 5 seeds (the stream, the collapsed network and the
minibatches all drawn from the seed), means with 95% Student-t intervals over seeds.

Run: ``python -m benchmarks.reactivation --seeds 5`` (``--quick`` for a smoke run). Writes
``benchmarks/results/<out>.{json,png,md}``.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from benchmarks._plots import pyplot
from benchmarks._stats import curve_ci, fmt, mean_ci, write_result_json
from benchmarks._supervised import BOUNDARY_ONLY, Setup, accuracy, update
from benchmarks._supervised import make_network as make_mlp
from plasticity import PlasticityMonitor, make_method

RESULTS = Path(__file__).parent / "results"

VARIANTS = {
    "none": ("none", {}),
    "adamo": ("adamo", {}),
    "adamo λ=1e-2": ("adamo", {"iso_coef": 1e-2}),
    "isometry": ("isometry", {}),
    "fire": ("fire", {}),
    "redo": ("redo", {}),
}
"""Continuations: label → (method, settings); every method at its library defaults (AdamO
``iso_coef`` 1e-3, ``iso_every`` 32; the isometry penalty's λ 1e-3; ReDo every 1000 updates,
τ 0.025), plus AdamO with a 10× coefficient."""


@dataclass
class Config:
    """The collapse phase and the continuation."""

    dormant: float = 0.40
    """collapse until at least this fraction of hidden units is dormant"""
    collapse_steps_per_task: int = 1500
    """updates per task while collapsing (the benchmark's default setting)"""
    max_collapse_tasks: int = 40
    """give up on a seed whose network is not collapsed after this many tasks"""
    steps_per_task: int = 500
    """updates per task of the continuation"""
    tasks: int = 6
    """tasks of the continuation"""
    every: int = 50
    """measure every this many updates"""
    methods: list[str] = field(default_factory=lambda: list(VARIANTS))
    """continuations (labels of VARIANTS), each from a copy of the collapsed network"""
    seed: int = 0
    seeds: int = 5
    lr: float = 1e-3
    batch_size: int = 128
    width: int = 256
    """units per hidden layer of the benchmark's MLP"""


def _stream_setup(cfg: Config, tasks: int) -> Setup:
    return Setup(tasks=tasks, lr=cfg.lr, batch_size=cfg.batch_size, width=cfg.width)


def collapse(cfg: Config, seed: int, monitor_probe: int = 256):
    """Train ``none`` task after task until the dormant ratio reaches ``cfg.dormant``.

    Returns the network, the inputs, the number of tasks it took and the per-task trace."""
    setup = _stream_setup(cfg, cfg.max_collapse_tasks)
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(setup.samples, setup.input_dim, generator=gen)
    torch.manual_seed(seed)
    net = make_mlp(setup)
    handle = make_method("none").attach(net, lr=cfg.lr)
    monitor = PlasticityMonitor(net)
    batches = torch.Generator().manual_seed(seed + 1)
    trace = []
    for task in range(cfg.max_collapse_tasks):
        y = torch.randint(0, setup.classes, (setup.samples,), generator=gen)
        for k in range(cfg.collapse_steps_per_task):
            idx = torch.randint(0, setup.samples, (cfg.batch_size,), generator=batches)
            update(net, handle, inputs[idx], y[idx], task * cfg.collapse_steps_per_task + k + 1)
        dormant = monitor.measure(inputs[:monitor_probe])["dormant_ratio"]
        trace.append({"task": task, "accuracy": accuracy(net, inputs, y), "dormant": dormant})
        if dormant >= cfg.dormant:
            return net, inputs, gen, trace
    return None, inputs, gen, trace


def continue_with(name: str, net, inputs, labels, cfg: Config, seed: int) -> dict:
    """Train a copy of ``net`` under ``name`` on ``labels`` (one tensor per task)."""
    net = copy.deepcopy(net)
    method, settings = VARIANTS[name]
    handle = make_method(method, **{**BOUNDARY_ONLY, **settings}).attach(net, lr=cfg.lr)
    monitor = PlasticityMonitor(net)
    probe = inputs[:256]
    batches = torch.Generator().manual_seed(seed + 2)  # the same minibatches for every method
    handle.on_task_switch(inputs=probe)  # FIRE once at the start; a no-op for the others

    def measure(step: int, y: torch.Tensor) -> dict:
        m = monitor.measure(probe)
        return {
            "step": step,
            "dormant": m["dormant_ratio"],
            "accuracy": accuracy(net, inputs, y),
            "effective_rank": m["effective_rank"],
            "weight_norm": m["weight_norm"],
            **{k: v for k, v in m.items() if k.endswith("/dormant_ratio")},
        }

    curve = [measure(0, labels[0])]
    step = 0
    task_end = []
    start = time.perf_counter()
    for y in labels:
        for _ in range(cfg.steps_per_task):
            idx = torch.randint(0, inputs.shape[0], (cfg.batch_size,), generator=batches)
            step += 1
            update(net, handle, inputs[idx], y[idx], step)
            if step % cfg.every == 0:
                curve.append(measure(step, y))
        task_end.append(accuracy(net, inputs, y))
    return {
        "method": name,
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "interventions": handle.interventions,
        "curve": curve,
        "task_end_accuracy": task_end,
    }


def summarize(runs: list[dict], cfg: Config) -> dict:
    def at(run: dict, step: int, key: str) -> float:
        return next(p[key] for p in run["curve"] if p["step"] == step)

    total = cfg.tasks * cfg.steps_per_task
    marks = sorted({0, cfg.every, 500, total // 2, total} & set(range(0, total + 1, cfg.every)))
    row = {"method": runs[0]["method"], "n": len(runs), "marks": marks}
    for s in marks:
        row[f"dormant_{s}"] = mean_ci([at(r, s, "dormant") for r in runs])
    row["first_task"] = mean_ci([r["task_end_accuracy"][0] for r in runs])
    row["last_task"] = mean_ci([r["task_end_accuracy"][-1] for r in runs])
    row["all_tasks"] = mean_ci([sum(r["task_end_accuracy"]) / cfg.tasks for r in runs])
    row["erank_end"] = mean_ci([r["curve"][-1]["effective_rank"] for r in runs])
    return row


def markdown_table(rows: list[dict], cfg: Config, collapse_tasks: list[int]) -> str:
    marks = rows[0]["marks"]
    n = rows[0]["n"]
    head = " | ".join(f"dormant @ {s}" for s in marks)
    lines = [
        f"Collapsed `none` networks ({n} seeds; ≥ {cfg.dormant:.0%} dormant after "
        f"{', '.join(map(str, collapse_tasks))} tasks of {cfg.collapse_steps_per_task} updates), "
        f"then {cfg.tasks} new tasks × {cfg.steps_per_task} updates per method. Mean ± 95% "
        "t-interval half-width over seeds; dormant ratio at the given update of the "
        "continuation; accuracy at the end of its first, last and all tasks.",
        "",
        f"| method | {head} | acc. task 1 | acc. last task | acc. all tasks | eff. rank (end) |",
        "|---|" + "---|" * (len(marks) + 4),
    ]
    for r in rows:
        cells = " | ".join(fmt(r[f"dormant_{s}"]) for s in marks)
        lines.append(
            f"| `{r['method']}` | {cells} | {fmt(r['first_task'])} | {fmt(r['last_task'])} | "
            f"{fmt(r['all_tasks'])} | {fmt(r['erank_end'], 1)} |"
        )
    return "\n".join(lines)


def plot(runs: list[dict], cfg: Config, path: Path) -> None:
    plt = pyplot()

    fig, (ax_d, ax_a) = plt.subplots(1, 2, figsize=(13, 4.6))
    grouped: dict[str, list[dict]] = {}
    for r in runs:
        grouped.setdefault(r["method"], []).append(r)
    colors = plt.get_cmap("tab10").colors
    for i, (name, group) in enumerate(grouped.items()):
        steps = [p["step"] for p in group[0]["curve"]]
        for ax, key in ((ax_d, "dormant"), (ax_a, "accuracy")):
            mean, low, high = curve_ci([[p[key] for p in r["curve"]] for r in group])
            ax.plot(steps, mean, color=colors[i], label=name)
            if len(group) > 1:
                ax.fill_between(steps, low, high, color=colors[i], alpha=0.2, lw=0)
    for ax in (ax_d, ax_a):
        for t in range(1, cfg.tasks):
            ax.axvline(t * cfg.steps_per_task, color="0.85", lw=0.8, zorder=0)
    n = len({r["seed"] for r in runs})
    ax_d.set(
        xlabel=f"updates after the collapse (new labels every {cfg.steps_per_task}, grey lines)",
        ylabel="dormant ratio of hidden units (τ = 0.025)",
        title=f"Reactivation from ≥ {cfg.dormant:.0%} dormant (mean, 95% t-interval, {n} seeds)",
        ylim=(0, None),
    )
    ax_a.set(
        xlabel="updates after the collapse",
        ylabel="train accuracy on the current labelling",
        title="Learning the new labellings",
        ylim=(0, 1.02),
    )
    ax_d.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (tiny settings)")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--methods", help="comma-separated continuations (VARIANTS labels)")
    parser.add_argument("--dormant", type=float)
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--steps-per-task", type=int)
    parser.add_argument("--every", type=int)
    parser.add_argument("--width", type=int, help="units per hidden layer (default 256)")
    parser.add_argument("--out", default="reactivation")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    cfg = Config()
    if args.quick:
        cfg.dormant, cfg.collapse_steps_per_task, cfg.max_collapse_tasks = 0.05, 300, 3
        cfg.tasks, cfg.steps_per_task, cfg.every, cfg.seeds = 2, 100, 50, 2
        cfg.methods = ["none", "fire"]
    for key in ("seeds", "dormant", "tasks", "steps_per_task", "every", "width"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    if args.methods:
        cfg.methods = args.methods.split(",")
    unknown = [m for m in cfg.methods if m not in VARIANTS]
    if unknown:
        parser.error(f"unknown continuation(s) {unknown}; choose from {', '.join(VARIANTS)}")
    if cfg.steps_per_task % cfg.every:
        parser.error("--steps-per-task must be a multiple of --every")

    runs, collapses = [], []
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        tic = time.perf_counter()
        net, inputs, gen, trace = collapse(cfg, seed)
        collapses.append({"seed": seed, "trace": trace, "seconds": time.perf_counter() - tic})
        if net is None:
            print(f"seed {seed}: not collapsed after {len(trace)} tasks; skipped", flush=True)
            continue
        print(
            f"seed {seed}: {trace[-1]['dormant']:.2f} dormant after {len(trace)} tasks "
            f"(last accuracy {trace[-1]['accuracy']:.3f})",
            flush=True,
        )
        labels = [
            torch.randint(0, Setup.classes, (inputs.shape[0],), generator=gen)
            for _ in range(cfg.tasks)
        ]
        for name in cfg.methods:
            run = continue_with(name, net, inputs, labels, cfg, seed)
            runs.append(run)
            print(
                f"  {name:<10} dormant {run['curve'][0]['dormant']:.2f} → "
                f"{run['curve'][-1]['dormant']:.2f}, task accuracies "
                + " ".join(f"{a:.2f}" for a in run["task_end_accuracy"]),
                flush=True,
            )
    if not runs:
        raise SystemExit("no seed collapsed; lower --dormant or raise max_collapse_tasks")
    rows = []
    for name in cfg.methods:
        group = [r for r in runs if r["method"] == name]
        rows.append(summarize(group, cfg))
    collapse_tasks = [
        len(c["trace"]) for c in collapses if c["trace"][-1]["dormant"] >= cfg.dormant
    ]
    table = markdown_table(rows, cfg, collapse_tasks)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    write_result_json(
        results / f"{args.out}.json",
        {
            "config": asdict(cfg),
            "summary": rows,
            "collapse": collapses,
            "runs": runs,
        },
    )
    (results / f"{args.out}.md").write_text(table + "\n")
    plot(runs, cfg, results / f"{args.out}.png")
    print()
    print(table)
    print(f"\nwrote {results / args.out}.json, .png and .md")


if __name__ == "__main__":
    main()
