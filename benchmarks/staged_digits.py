"""Data that arrives in stages: what does an intervention at each boundary cost?

The FIRE paper's continual supervised protocol (arXiv 2602.08040, its continual vision
benchmarks) at small scale: the training set arrives in ``--stages`` (10) chunks; stage k
trains on chunks 1..k for a fixed budget of updates; at every boundary the optimizer is
re-created for every method (as the paper's code does) and the method then acts. The paper
reports that FIRE "shows only a small drop at each boundary, whereas full reset and DASH
collapse at every boundary": the stability half of the trade-off, which a warm start's
single switch does not measure.

Data and learner: scikit-learn's digits (``benchmarks/_supervised.py``), per seed a stratified
70/30 train/test split and a random order of the training set cut into equal chunks; the
64-256-256-10 ReLU MLP of the digits warm start, Adam (lr 1e-3, batch 64, gradient norm
clipped at 0.5, as the FIRE paper's vision code), ``--updates-per-stage`` updates per stage on
minibatches drawn from the data seen so far. Methods act through :func:`plasticity.make_method`'s
handle, as in the paper's continual setting where the interventions act at each boundary:

- FIRE, reset and shrink & perturb at each boundary (``on_task_switch``; their periods off);
- DASH at each boundary too, after the new stage's first update (the registry's DASH shrinks
  with the gradient average of the updates since the switch, so it needs one);
- ReDo, a periodic recycler, recycles once per boundary and nowhere else: its period is set
  to one stage and the script numbers the updates it passes the handle from 0, so its check
  falls on the first update of every new stage (probe: that update's minibatch of the
  enlarged data). Its RL period (1,000 updates) has no meaning here, and acting where the
  others act keeps the drop comparable;
- Parseval and L2-init as penalties at every update, CBP after every update with the
  authors' supervised setting (Continual ImageNet: ρ 3e-4, maturity 100, η 0.99; the
  registry's RL maturity of 10,000 updates would never let a unit mature in this stream).

Measured on the held-out test set, per run:

- **drop**: test accuracy at the end of stage k minus test accuracy right after boundary k's
  intervention (before any update of stage k + 1; for DASH and ReDo, which act after that
  stage's first update, right after it), averaged over the boundaries (positive: accuracy
  lost; exactly 0 for ``none``, whose weights the boundary does not touch);
- **final**: test accuracy at the end of the last stage;
- **average**: test accuracy at the end of each stage, averaged over the stages.

Statistics (``benchmarks/_stats.py``): per method the mean and 95% t-interval over seeds; the
family of comparisons is named by :func:`family` from the method list before anything runs
(FIRE against every other method, every other method against ``none``, each on the three
measures), each a difference of means with Welch's 95% interval (primary) and its two-sided
p-value, with Holm-adjusted p-values over the family. The methods of a seed share the split,
the chunk order, the initial network and the minibatch draws, so the paired interval of the
per-seed differences is reported beside it (its own Holm adjustment over the same family).

Run: ``python -m benchmarks.staged_digits`` (8 seeds; ``--quick`` for a smoke run). The result
file records the commit it ran on; a tree with uncommitted changes is refused unless
``--allow-dirty`` is given (then the commit is recorded with ``+dirty``). Writes
``benchmarks/results/<out>.{json,md,png}``; bad input is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from agents.run import git_commit
from benchmarks._plots import pyplot
from benchmarks._stats import (
    DIRTY,
    compare_by_seed,
    family_table,
    fmt,
    holm_family,
    mean_ci,
    write_result_json,
)
from benchmarks._supervised import (
    BOUNDARY_ONLY,
    accuracy,
    band,
    digits,
    digits_mlp,
    style,
    update,
)
from plasticity import make_method

RESULTS = Path(__file__).parent / "results"

PROTOCOL_METHODS = (
    "none",
    "fire",
    "reset",
    "shrink_perturb",
    "dash",
    "parseval",
    "l2_init",
    "cbp",
    "redo",
)
"""The methods of the issue's protocol; those the registry does not have yet are left out."""

ACT_AFTER_FIRST_UPDATE = ("dash", "redo")
"""Parts whose boundary action follows the new stage's first update (see the docstring)."""

CBP_SUPERVISED = {"cbp_replacement_rate": 3e-4, "cbp_maturity": 100, "cbp_decay": 0.99}
"""CBP's setting for supervised streams in the authors' Continual ImageNet configuration."""

MEASURES = {
    "drop": "drop at a boundary",
    "final": "final test accuracy",
    "average": "test accuracy averaged over stages",
}


def method_settings(updates_per_stage: int) -> dict:
    """The settings every method is made with: interventions at the boundaries only (ReDo's
    period one stage), CBP's supervised setting."""
    return {**BOUNDARY_ONLY, "redo_every": updates_per_stage, **CBP_SUPERVISED}


def accepted(method: str) -> bool:
    """Whether :func:`plasticity.make_method` knows ``method``."""
    try:
        make_method(method, **method_settings(1))
    except ValueError:
        return False
    return True


@dataclass
class Config:
    stages: int = 10
    """chunks the training set arrives in (one stage each)"""
    updates_per_stage: int = 600
    """Adam updates in every stage, whatever its data (600: ~30 epochs of the full training
    set in the last stage, ~300 of the first chunk in the first)"""
    width: int = 256
    batch_size: int = 64
    lr: float = 1e-3
    clip: float = 0.5
    """gradient-norm clip (the FIRE paper's vision code); 0 turns it off"""
    test_fraction: float = 0.3
    eval_every: int = 25
    """updates between test accuracies of the learning curve (figure only)"""
    seed: int = 0
    seeds: int = 8
    methods: list[str] = field(default_factory=lambda: [m for m in PROTOCOL_METHODS if accepted(m)])


def family(methods: list[str]) -> list[str]:
    """The comparisons tested, from the method list alone: ``"a − b"`` for FIRE against every
    other method and every other method against ``none``."""
    names = [f"fire − {m}" for m in methods if "fire" in methods and m != "fire"]
    names += [f"{m} − none" for m in methods if "none" in methods and m not in ("none", "fire")]
    return names


def run(method: str, cfg: Config, seed: int) -> dict:
    """One method on one seed: the test accuracy at the end of every stage and right after
    every boundary, the drops, and the learning curve."""
    x_train, y_train, x_test, y_test = (torch.as_tensor(a) for a in digits(seed, cfg.test_fraction))
    order = np.random.default_rng(seed).permutation(len(y_train))
    chunks = np.array_split(order, cfg.stages)
    torch.manual_seed(seed)
    net = digits_mlp(cfg.width)
    handle = make_method(method, **method_settings(cfg.updates_per_stage)).attach(net, lr=cfg.lr)
    acts_late = any(part.name in ACT_AFTER_FIRST_UPDATE for part in handle.parts)
    batches = torch.Generator().manual_seed(seed + 1)
    step, stages = 0, []
    curve = [accuracy(net, x_test, y_test)]
    start = time.perf_counter()
    for k in range(cfg.stages):
        seen = torch.as_tensor(np.concatenate(chunks[: k + 1]))
        record = {"stage": k + 1, "samples": len(seen)}
        if k > 0:
            # the paper's code re-creates the optimizer at every chunk, then intervenes
            handle.optimizer.state.clear()
            handle.on_task_switch(inputs=x_train[seen[:256]])
            record["after_boundary"] = accuracy(net, x_test, y_test)
            curve.append(record["after_boundary"])
        for i in range(cfg.updates_per_stage):
            idx = seen[torch.randint(0, len(seen), (cfg.batch_size,), generator=batches)]
            # counted from 0, so that a period of one stage falls on each stage's first update
            update(net, handle, x_train[idx], y_train[idx], step, cfg.clip)
            step += 1
            if k > 0 and i == 0:
                record["after_first_update"] = accuracy(net, x_test, y_test)
            if step % cfg.eval_every == 0:
                curve.append(accuracy(net, x_test, y_test))
        record["end"] = accuracy(net, x_test, y_test)
        record["train"] = accuracy(net, x_train[seen], y_train[seen])
        stages.append(record)
    after = "after_first_update" if acts_late else "after_boundary"
    drops = [a["end"] - b[after] for a, b in zip(stages, stages[1:], strict=False)]
    return {
        "method": method,
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "interventions": handle.interventions,
        "stages": stages,
        "drops": drops,
        "curve": curve,
    }


def measures(result: dict) -> dict[str, float]:
    """The run's three measures (see the module docstring)."""
    ends = [s["end"] for s in result["stages"]]
    return {
        "drop": float(np.mean(result["drops"])),
        "final": ends[-1],
        "average": float(np.mean(ends)),
    }


def analyse(runs: list[dict], cfg: Config, comparisons: list[str]) -> dict:
    """Per method the measures' means with t-intervals; for each comparison of the family the
    Welch difference (primary) and the paired difference over shared seeds, each with its
    p-value and Holm-adjusted p-value over the family."""
    by_method: dict[str, dict[str, dict[int, float]]] = {
        m: {key: {} for key in MEASURES} for m in cfg.methods
    }
    for r in runs:
        for key, value in measures(r).items():
            by_method[r["method"]][key][r["seed"]] = value
    summary = {
        m: {key: mean_ci(list(v.values())) for key, v in per.items()}
        for m, per in by_method.items()
    }
    tests = {}
    for name in comparisons:
        a, b = name.split(" − ")
        for key in MEASURES:
            tests[f"{key}: {name}"] = compare_by_seed(by_method[a][key], by_method[b][key])
    holm_family(tests)
    return {"summary": summary, "comparisons": tests}


def markdown(analysis: dict, cfg: Config, comparisons: list[str], commit: str) -> str:
    lines = [
        f"Digits arriving in {cfg.stages} stages, {cfg.updates_per_stage} updates per stage, "
        f"{cfg.seeds} seeds, commit {commit}; test accuracy, mean ± 95% t-interval half-width "
        "over seeds. Drop: end of a stage minus right after the next boundary's intervention "
        f"(DASH, ReDo: after the new stage's first update), averaged over the "
        f"{cfg.stages - 1} boundaries (positive: accuracy lost).",
        "",
        "| method | " + " | ".join(MEASURES.values()) + " |",
        "|---|" + "---|" * len(MEASURES),
    ]
    for method, stats in analysis["summary"].items():
        lines.append(f"| `{method}` | " + " | ".join(fmt(stats[k]) for k in MEASURES) + " |")
    lines += [
        "",
        f"The family, named before the runs ({len(comparisons)} comparisons × {len(MEASURES)} "
        f"measures = {len(analysis['comparisons'])} tests): differences of means with Welch's "
        "95% interval, two-sided p and Holm-adjusted p over the family (a claim holds for the "
        "family at 5% when its Holm p ≤ 0.05).",
        "",
        *family_table(analysis["comparisons"], comparisons, MEASURES, False, "+.3f"),
        "",
        "The same family paired by seed (a seed's methods share the split, the chunk order, the "
        "initial network and the minibatch draws): the mean per-seed difference, its paired "
        "95% interval, p and Holm p.",
        "",
        *family_table(analysis["comparisons"], comparisons, MEASURES, True, "+.3f"),
    ]
    return "\n".join(lines) + "\n"


def plot(runs: list[dict], cfg: Config, path: Path) -> None:
    """Test accuracy over the updates (the boundaries marked) and the drop at each boundary."""
    plt = pyplot()
    fig, (ax_curve, ax_drop) = plt.subplots(
        1, 2, figsize=(15, 4.8), gridspec_kw={"width_ratios": [2.2, 1]}
    )
    per_stage = cfg.updates_per_stage // cfg.eval_every
    steps = [0]
    for k in range(cfg.stages):  # a boundary's two points share its step: the drop is vertical
        steps += [k * cfg.updates_per_stage] if k else []
        steps += [k * cfg.updates_per_stage + (i + 1) * cfg.eval_every for i in range(per_stage)]
    boundaries = list(range(1, cfg.stages))
    for i, method in enumerate(cfg.methods):
        group = [r for r in runs if r["method"] == method]
        band(ax_curve, steps, [r["curve"] for r in group], method, style(i))
        band(ax_drop, boundaries, [r["drops"] for r in group], method, style(i))
    for k in boundaries:
        ax_curve.axvline(k * cfg.updates_per_stage, color="0.85", lw=0.6, zorder=0)
    ax_curve.set(
        xlabel=f"update ({cfg.updates_per_stage} per stage; stage k trains on chunks 1..k)",
        ylabel="test accuracy",
        title=f"Digits in {cfg.stages} stages (mean, 95% t-interval over {cfg.seeds} seeds)",
        ylim=(0, 1.0),
    )
    ax_curve.legend(fontsize=8, ncol=2, loc="lower right")
    ax_drop.axhline(0, color="0.5", lw=0.8)
    ax_drop.set_xticks(boundaries)
    ax_drop.set(
        xlabel="boundary (after stage k)",
        ylabel="test accuracy lost at the boundary",
        title="Drop right after each intervention",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (2 seeds, 3 stages)")
    parser.add_argument("--seeds", type=int, help="number of seeds (default 8)")
    parser.add_argument("--seed", type=int, help="first seed (default 0)")
    parser.add_argument("--stages", type=int, help="chunks of the training set (default 10)")
    parser.add_argument("--updates-per-stage", type=int, help="updates per stage (default 300)")
    parser.add_argument("--width", type=int, help="units per hidden layer (default 256)")
    parser.add_argument(
        "--methods",
        help="comma-separated methods (default: those of "
        f"{', '.join(PROTOCOL_METHODS)} that the registry has)",
    )
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="run on a tree with uncommitted changes (the result records the commit +dirty)",
    )
    parser.add_argument("--out", default="staged_digits", help="result file stem")
    parser.add_argument("--results", default=str(RESULTS), help="folder of the result files")
    args = parser.parse_args(argv)

    def refuse(message: str):
        parser.exit(2, f"staged_digits.py: {message}\n")

    torch.set_num_threads(1)  # small networks on a busy 2-core machine: one thread is fastest
    cfg = Config()
    if args.quick:
        cfg.seeds, cfg.stages, cfg.updates_per_stage = 2, 3, 50
    for key in ("seeds", "seed", "stages", "updates_per_stage", "width"):
        if getattr(args, key) is not None:
            setattr(cfg, key, getattr(args, key))
    if args.methods:
        cfg.methods = args.methods.split(",")
    if cfg.seeds < 1:
        refuse(f"--seeds {cfg.seeds}: run at least one seed (8 for the protocol's statistics)")
    if cfg.stages < 2:
        refuse(f"--stages {cfg.stages}: the protocol needs at least 2 stages (one boundary)")
    if cfg.updates_per_stage < cfg.eval_every or cfg.updates_per_stage % cfg.eval_every:
        refuse(f"--updates-per-stage must be a multiple of {cfg.eval_every} (the curve's step)")
    for method in cfg.methods:
        if not accepted(method):
            refuse(f"--methods: {method!r} is not a registered method; see plasticity.METHODS")
    commit = git_commit() or "unknown"
    if commit.endswith(DIRTY) and not args.allow_dirty:
        refuse("the tree has uncommitted changes: commit them, or pass --allow-dirty")
    comparisons = family(cfg.methods)  # named before anything runs
    print(f"family ({len(comparisons)} comparisons × {len(MEASURES)} measures): "
          + "; ".join(comparisons), flush=True)  # fmt: skip

    runs = []
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        for method in cfg.methods:
            result = run(method, cfg, seed)
            runs.append(result)
            m = measures(result)
            print(
                f"seed {seed} {method:<15} drop {m['drop']:+.3f}  final {m['final']:.3f}  "
                f"average {m['average']:.3f}  {result['seconds']:.0f}s",
                flush=True,
            )
    analysis = analyse(runs, cfg, comparisons)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    out = results / args.out
    content = {
        "commit": commit,
        "config": asdict(cfg),
        "family": comparisons,
        **analysis,
        "runs": runs,
    }
    write_result_json(out.with_suffix(".json"), content)
    table = markdown(analysis, cfg, comparisons, commit)
    out.with_suffix(".md").write_text(table)
    plot(runs, cfg, out.with_suffix(".png"))
    print()
    print(table)
    print(f"wrote {out}.json, .md and .png")
    return content


if __name__ == "__main__":
    main()
