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

Measured per task: train accuracy at the task's end; *learning speed*, the accuracy on the
task's data after its first ``--speed-at`` (100) updates; plasticity metrics at the end. For
the ``--curvature`` methods, at the start of every task (after ``on_task_switch``, before its
first update) the curvature ε-rank ("Spectral Collapse Drives Loss of Plasticity",
arXiv 2509.22335) three ways: K-FAC under the new task's labels on a 256-sample probe (the
library's :func:`plasticity.metrics.kfac_eps_ranks`, empirical Fisher), K-FAC of the
Gauss–Newton (:func:`plasticity.metrics.softmax_fisher_loss`) and the exact Gauss–Newton
(:func:`plasticity.metrics.ggn_eps_ranks`, ``torch.func``) on a smaller probe.

``--seeds N`` repeats every method on N seeds (inputs, labels, network and minibatches all
drawn from the seed) and reports means with 95% Student-t intervals over seeds
(``benchmarks/_stats.py``). ``--preset hard`` is the setting where methods separate: 200
updates per task (a fresh network needs about 200 to memorize a labelling; the default 1500
leaves every method at 1.000).

Run: ``python -m benchmarks.continual_supervised`` (``--quick`` for a smoke run). Writes
``benchmarks/results/<out>.{json,png}`` (and ``<out>_curvature.png``, ``<out>.md``) and prints
the Markdown tables. ``--resume`` skips the (method, seed) runs the JSON already holds;
``--resume --rerun er,spectral`` runs those methods again (their old runs are kept in
``<out>.replaced.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from benchmarks._plots import pyplot
from benchmarks._stats import fmt, mean_ci, rounded, write_result_json
from benchmarks._supervised import (
    BOUNDARY_ONLY,
    Setup,
    accuracy,
    band,
    make_network,
    style,
    update,
)
from plasticity import MethodConfig, PlasticityMonitor, make_method
from plasticity.metrics import (
    ggn_eps_ranks,
    kfac_eps_ranks,
    softmax_fisher_loss,
)

RESULTS = Path(__file__).parent / "results"

CURVATURE_METHODS = ["none", "er", "l2", "er_l2"]


PRESETS = {
    "hard": {"tasks": 40, "steps_per_task": 200},
}
"""Named settings: ``hard`` has methods separate (200 updates per task instead of 1500)."""


def make_stream(setup: Setup, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The inputs and one labelling per task, drawn from ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    inputs = torch.randn(setup.samples, setup.input_dim, generator=gen)
    labels = [
        torch.randint(0, setup.classes, (setup.samples,), generator=gen) for _ in range(setup.tasks)
    ]
    return inputs, labels


METRICS = ("dormant_ratio", "effective_rank", "weight_norm", "dfi")


def curvature(
    net: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, setup: Setup, exact: bool
) -> dict[str, float]:
    """ε-ranks of the curvature at a task's start (see the module docstring)."""
    probe, y = inputs[: setup.kfac_probe], labels[: setup.kfac_probe]
    small = inputs[: setup.ggn_probe]
    out = {}
    kfac = kfac_eps_ranks(net, lambda m: F.cross_entropy(m(probe), y), setup.eps)
    out.update({f"kfac/{k}": v for k, v in kfac.items()})
    fisher = kfac_eps_ranks(net, softmax_fisher_loss(small), setup.eps)
    out.update({f"kfac_ggn/{k}": v for k, v in fisher.items()})
    if exact:
        out.update({f"ggn/{k}": v for k, v in ggn_eps_ranks(net, small, setup.eps).items()})
    return out


def run_method(name: str, setup: Setup, seed: int) -> dict:
    inputs, labels = make_stream(setup, seed)
    torch.manual_seed(seed)
    net = make_network(setup, layer_norm=name in setup.layer_norm)
    handle = make_method(name, **{**BOUNDARY_ONLY, **setup.settings}).attach(net, lr=setup.lr)
    monitor = PlasticityMonitor(net)
    probe = inputs[:256]
    gen = torch.Generator().manual_seed(seed + 1)
    step = 0
    per_task = []
    measure_curvature = name in setup.curvature
    start = time.perf_counter()
    curvature_seconds = 0.0
    for task, y in enumerate(labels):
        if task > 0:
            handle.on_task_switch(inputs=probe)
        record: dict = {"task": task}
        if measure_curvature:
            tic = time.perf_counter()
            exact = task % setup.ggn_every == 0 or task == setup.tasks - 1
            record["curvature"] = curvature(net, inputs, y, setup, exact)
            curvature_seconds += time.perf_counter() - tic
        for k in range(setup.steps_per_task):
            idx = torch.randint(0, setup.samples, (setup.batch_size,), generator=gen)
            step += 1
            loss = update(net, handle, inputs[idx], y[idx], step)
            if k + 1 == setup.speed_at:
                record["speed"] = accuracy(net, inputs, y)
        record["accuracy"] = accuracy(net, inputs, y)
        # a diverged network has no ranks to measure (the monitor refuses it)
        finite = bool(torch.isfinite(loss)) and all(
            torch.isfinite(p).all() for p in net.parameters()
        )
        metrics = monitor.measure(probe) if finite else dict.fromkeys(METRICS, float("nan"))
        record.update({key: metrics[key] for key in METRICS})
        per_task.append(record)
        if not finite:
            print(f"  {name}: diverged (loss {loss.item()}) at task {task}; stopping this method")
            break
    return {
        "method": name,
        "seed": seed,
        "seconds": time.perf_counter() - start,
        "curvature_seconds": curvature_seconds,
        "interventions": handle.interventions,
        "per_task": per_task,
    }


def _values(result: dict, key: str, tasks: slice = slice(None)) -> list[float]:
    return [t.get(key, math.nan) for t in result["per_task"][tasks]]


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def summarize(runs: list[dict], setup: Setup) -> dict:
    """One method's per-seed summaries and their means with 95% t-intervals over seeds."""
    last = max(1, setup.tasks // 4)
    per_seed = []
    for r in runs:
        acc = _values(r, "accuracy")
        complete = len(acc) == setup.tasks  # a diverged run stops early: no summary over tasks
        per_seed.append(
            {
                "seed": r["seed"],
                "first_task": acc[0],
                "acc_all": _mean(acc) if complete else math.nan,
                "acc_last": _mean(acc[-last:]) if complete else math.nan,
                "speed_all": _mean(_values(r, "speed")) if complete else math.nan,
                "speed_last": _mean(_values(r, "speed", slice(-last, None)))
                if complete
                else math.nan,
                "dormant_end": r["per_task"][-1]["dormant_ratio"],
                "erank_end": r["per_task"][-1]["effective_rank"],
                "weight_norm_end": r["per_task"][-1]["weight_norm"],
                "seconds": r["seconds"] - r.get("curvature_seconds", 0.0),
            }
        )
    keys = [k for k in per_seed[0] if k != "seed"]
    return {
        "method": runs[0]["method"],
        "seeds": [p["seed"] for p in per_seed],
        "last": last,
        **{k: mean_ci([p[k] for p in per_seed]) for k in keys},
        "per_seed": per_seed,
    }


def markdown_table(rows: list[dict], setup: Setup) -> str:
    last = rows[0]["last"]
    n = len(rows[0]["seeds"])
    lines = [
        f"Mean ± 95% t-interval half-width over {n} seed(s); rows by learning speed, last "
        f"{last} tasks. Speed: accuracy after the first {setup.speed_at} of each task's "
        f"{setup.steps_per_task} updates; accuracy at the task's end. Time: training only.",
        "",
        f"| method | speed, all tasks | speed, last {last} | accuracy, all tasks | "
        f"accuracy, last {last} | dormant (end) | eff. rank (end) | weight norm (end) | "
        "time (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: -_nan_low(r["speed_last"]["mean"])):
        lines.append(
            f"| `{r['method']}` | {fmt(r['speed_all'])} | {fmt(r['speed_last'])} | "
            f"{fmt(r['acc_all'])} | {fmt(r['acc_last'])} | {fmt(r['dormant_end'], 2)} | "
            f"{fmt(r['erank_end'], 1)} | {fmt(r['weight_norm_end'], 1)} | "
            f"{r['seconds']['mean']:.0f} |"
        )
    return "\n".join(lines)


def _nan_low(value: float) -> float:
    return value if math.isfinite(value) else -math.inf


def first_loss(values: list[float], floor: float, fraction: float) -> float:
    """1-based index of the first value that lost ``fraction`` of the way from the best value
    so far (the running maximum) down to ``floor`` (NaN when none did)."""
    best = -math.inf
    for i, v in enumerate(values):
        if not math.isfinite(v):
            continue
        best = max(best, v)
        if (best - v) >= fraction * (best - floor) > 0:
            return float(i + 1)
    return math.nan


CURVATURE_KEYS = {
    "kfac": "kfac/kfac_eps_rank_normalized",
    "kfac_ggn": "kfac_ggn/kfac_eps_rank_normalized",
    "ggn": "ggn/ggn_eps_rank_normalized",
    "ggn_layers": "ggn/ggn_eps_rank_layer_mean",
}
"""Curvature ranks compared in the tables: K-FAC (empirical, new labels), K-FAC of the GGN,
exact GGN (whole network, and the mean over layers' blocks), each normalized to [0, 1]."""

CURVATURE_LABELS = {
    "kfac": "K-FAC",
    "kfac_ggn": "K-FAC GGN",
    "ggn": "exact GGN",
    "ggn_layers": "exact GGN, layer mean",
}

LOSSES = (0.2, 0.5)
"""Fractions of its way down at which a measure counts as collapsing (see curvature_summary)."""


def curvature_series(result: dict, key: str) -> list[float]:
    return [t.get("curvature", {}).get(key, math.nan) for t in result["per_task"]]


def curvature_summary(runs: list[dict], setup: Setup) -> dict:
    """Per method: ranks at the first, middle and last task start; and per seed the first
    task by which each measure has lost 20% and 50% of its way down from its best value so
    far, to compare their timing: end-of-task accuracy and learning speed down to chance
    (``1/classes``), each curvature rank down to 0."""
    mid = setup.tasks // 2
    chance = 1.0 / setup.classes
    out: dict = {"method": runs[0]["method"], "n": len(runs)}
    for key in ("accuracy", "speed"):
        for q in LOSSES:
            out[f"{key}_lost_{q}"] = [first_loss(_values(r, key), chance, q) for r in runs]
    for short, key in CURVATURE_KEYS.items():
        series = [curvature_series(r, key) for r in runs]
        measured = [i for i, v in enumerate(series[0]) if math.isfinite(v)]
        if not measured:
            continue
        pick = {
            "first": measured[0],
            "mid": min(measured, key=lambda i: abs(i - mid)),
            "last": measured[-1],
        }
        for label, i in pick.items():
            out[f"{short}_{label}"] = mean_ci([s[i] for s in series])
            out[f"{short}_{label}_task"] = i + 1
        for q in LOSSES:
            out[f"{short}_lost_{q}"] = [first_loss(s, 0.0, q) for s in series]
    return out


def _tasks_text(values: list[float]) -> str:
    return ", ".join("–" if not math.isfinite(v) else f"{v:.0f}" for v in values)


def curvature_table(rows: list[dict], setup: Setup) -> str:
    if not rows:
        return ""
    r0 = rows[0]
    lines = [
        "Curvature ε-rank (ε = {eps:g}) at the start of tasks {a}, {b}, {c}, normalized to "
        "[0, 1]; mean ± 95% t-interval over {n} seed(s). K-FAC: empirical Fisher under the new "
        "labels, {kp} samples; K-FAC GGN and exact GGN (whole network): {gp} samples.".format(
            eps=setup.eps,
            a=r0["kfac_first_task"],
            b=r0["kfac_mid_task"],
            c=r0["kfac_last_task"],
            n=r0["n"],
            kp=setup.kfac_probe,
            gp=setup.ggn_probe,
        ),
        "",
        "| method | K-FAC, first | K-FAC, mid | K-FAC, last | K-FAC GGN, first | K-FAC GGN, "
        "last | exact GGN, first | exact GGN, mid | exact GGN, last |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    none = mean_ci([])
    for r in rows:
        lines.append(
            f"| `{r['method']}` | {fmt(r['kfac_first'])} | {fmt(r['kfac_mid'])} | "
            f"{fmt(r['kfac_last'])} | {fmt(r['kfac_ggn_first'])} | {fmt(r['kfac_ggn_last'])} | "
            f"{fmt(r.get('ggn_first', none))} | {fmt(r.get('ggn_mid', none))} | "
            f"{fmt(r.get('ggn_last', none))} |"
        )
    measures = [("accuracy", "end-of-task accuracy"), ("speed", "learning speed")] + [
        (short, CURVATURE_LABELS[short] + " rank") for short in CURVATURE_KEYS
    ]
    for q in LOSSES:
        lines += [
            "",
            f"First task (per seed; – never) by which each measure lost {q:.0%} of the way from "
            "its best value so far down to chance (accuracy, speed) or 0 (ranks); ranks are "
            f"measured at a task's start, the exact GGN every {setup.ggn_every} tasks:",
            "",
            "| method | " + " | ".join(label for _, label in measures) + " |",
            "|---|" + "---|" * len(measures),
        ]
        for r in rows:
            cells = " | ".join(_tasks_text(r.get(f"{k}_lost_{q}", [])) for k, _ in measures)
            lines.append(f"| `{r['method']}` | {cells} |")
    return "\n".join(lines)


DEFAULT_PAIRS = ["er_l2-l2", "er_l2-er", "l2-none", "adamo-none", "fire-reset"]
"""Paired comparisons reported when both methods ran (``--compare`` sets others)."""


def paired_differences(
    rows: list[dict], runs: list[dict], pairs: list[str], setup: Setup
) -> list[dict]:
    """Per pair ``a-b``: the mean over seeds of ``a − b`` (same seed: same inputs, labels,
    initial network and minibatches) with its 95% t-interval, for the learning speed and
    accuracy over the last quarter of the tasks and, where both were measured, the curvature
    ranks at the last task's start."""
    by_method = {r["method"]: {p["seed"]: p for p in r["per_seed"]} for r in rows}
    grouped = _by_method(runs)
    out = []
    for pair in pairs:
        a, _, b = pair.partition("-")
        if a not in by_method or b not in by_method:
            continue
        seeds = sorted(set(by_method[a]) & set(by_method[b]))
        entry = {"pair": pair, "seeds": seeds}
        for key in ("speed_last", "acc_last"):
            entry[key] = mean_ci([by_method[a][s][key] - by_method[b][s][key] for s in seeds])
        if a in setup.curvature and b in setup.curvature:
            last = {
                m: {r["seed"]: r["per_task"][-1].get("curvature", {}) for r in grouped[m]}
                for m in (a, b)
            }
            for short in ("kfac", "kfac_ggn"):
                key = CURVATURE_KEYS[short]
                entry[f"{short}_last"] = mean_ci(
                    [last[a][s].get(key, math.nan) - last[b][s].get(key, math.nan) for s in seeds]
                )
        out.append(entry)
    return out


def paired_table(entries: list[dict], last: int) -> str:
    if not entries:
        return ""
    none = mean_ci([])
    lines = [
        "Paired differences (first minus second method, same seeds: same inputs, labels, "
        "initial network and minibatches), mean ± 95% t-interval half-width:",
        "",
        f"| pair | Δ speed, last {last} | Δ accuracy, last {last} | Δ K-FAC rank, last start | "
        "Δ K-FAC GGN rank, last start |",
        "|---|---|---|---|---|",
    ]
    for e in entries:
        lines.append(
            f"| `{e['pair']}` | {fmt(e['speed_last'])} | {fmt(e['acc_last'])} | "
            f"{fmt(e.get('kfac_last', none))} | {fmt(e.get('kfac_ggn_last', none))} |"
        )
    return "\n".join(lines)


def _by_method(runs: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for r in runs:
        grouped.setdefault(r["method"], []).append(r)
    return grouped


def _padded(result: dict, key: str, tasks: int) -> list[float]:
    values = _values(result, key)
    return values + [math.nan] * (tasks - len(values))


def plot(runs: list[dict], setup: Setup, path: Path) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(18, 4.8))
    tasks = list(range(1, setup.tasks + 1))
    n = len({r["seed"] for r in runs})
    for i, (name, group) in enumerate(_by_method(runs).items()):
        line_style = style(i)
        for ax, key in zip(axes, ("accuracy", "speed", "dormant_ratio"), strict=True):
            band(ax, tasks, [_padded(r, key, setup.tasks) for r in group], name, line_style)
    spread = f"mean and 95% t-interval over {n} seeds" if n > 1 else "one seed"
    axes[0].set(xlabel="task", ylabel="train accuracy at the task's end", ylim=(0, 1.02))
    axes[1].set(
        xlabel="task",
        ylabel=f"accuracy after the task's first {setup.speed_at} updates",
        ylim=(0, 1.02),
    )
    axes[2].set(xlabel="task", ylabel="dormant ratio at the task's end (τ = 0.025)")
    axes[0].set_title(f"Random labels, {setup.steps_per_task} updates per task ({spread})")
    axes[1].set_title("Learning speed")
    axes[2].set_title("Dormant units")
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curvature(runs: list[dict], setup: Setup, path: Path) -> None:
    plt = pyplot()

    group = {m: rs for m, rs in _by_method(runs).items() if m in setup.curvature}
    if not group:
        return
    fig, axes = plt.subplots(1, 1 + len(CURVATURE_KEYS), figsize=(24, 4.6))
    tasks = list(range(1, setup.tasks + 1))
    labels = {
        "kfac": f"K-FAC ε-rank (new labels, {setup.kfac_probe} samples)",
        "kfac_ggn": f"K-FAC-of-GGN ε-rank ({setup.ggn_probe} samples)",
        "ggn": f"exact GGN ε-rank ({setup.ggn_probe} samples)",
        "ggn_layers": "exact GGN ε-rank, mean of layer blocks",
    }
    for i, (name, rs) in enumerate(group.items()):
        line_style = style(i)
        band(axes[0], tasks, [_padded(r, "accuracy", setup.tasks) for r in rs], name, line_style)
        for ax, (short, key) in zip(axes[1:], CURVATURE_KEYS.items(), strict=True):
            curves = [curvature_series(r, key) for r in rs]
            curves = [c + [math.nan] * (setup.tasks - len(c)) for c in curves]
            keep = [j for j in range(setup.tasks) if any(math.isfinite(c[j]) for c in curves)]
            kept = [[c[j] for j in keep] for c in curves]
            band(ax, [tasks[j] for j in keep], kept, name, line_style)
            ax.set(xlabel="task (rank at its start)", ylabel=labels[short] + ", normalized")
    axes[0].set(xlabel="task", ylabel="train accuracy at the task's end", ylim=(0, 1.02))
    axes[0].legend()
    axes[0].set_title(f"ε = {setup.eps:g}; bands: 95% t-interval over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_setting(key: str, value: str):
    """A ``MethodConfig`` field's value from text: lists comma-separated, bools true/false."""
    default = getattr(MethodConfig(), key)
    if isinstance(default, list):
        return [int(v) for v in value.split(",") if v]
    if isinstance(default, bool):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{key} takes true or false, got {value!r}")
        return value.lower() in ("true", "1")
    if default is None:  # unset by default (er_lr, er_schedule, fire_linear): a number or a choice
        try:
            return float(value)
        except ValueError:
            return value
    return type(default)(value)


GROWING = ("seeds", "methods", "layer_norm")
"""Setup fields a resume may extend: more seeds, more methods (and the new ones' networks)."""


def extends(saved: dict, setup: dict) -> bool:
    """Whether ``setup`` only extends the one of the ``saved`` results: the same setting, and
    the methods already run keep the network they had (no LayerNorm added to them)."""

    def fixed(values: dict) -> dict:
        return {key: value for key, value in values.items() if key not in GROWING}

    had_norm = set(saved["setup"].get("layer_norm", []))
    changed_network = {run["method"] for run in saved["runs"]} & (
        set(setup["layer_norm"]) ^ had_norm
    )
    return fixed(saved["setup"]) == fixed(setup) and not changed_network


def keep_replaced(path: Path, saved: dict, methods: list[str]) -> None:
    """Add the saved runs of ``methods`` to ``path`` (with the setup they ran with) before
    they are run again: a rerun replaces them in the result, and loses none."""
    replaced = json.loads(path.read_text()) if path.exists() else {"replaced": []}
    runs = [r for r in saved["runs"] if r["method"] in methods]
    replaced["replaced"].append({"setup": saved["setup"], "runs": runs})
    write_result_json(path, replaced)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run (few tasks)")
    parser.add_argument("--preset", choices=sorted(PRESETS), help="named setting (see PRESETS)")
    parser.add_argument("--methods", help="comma-separated methods (default: all)")
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--steps-per-task", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seeds", type=int, help="number of seeds (default 1)")
    parser.add_argument("--seed", type=int, help="first seed (default 0)")
    parser.add_argument("--speed-at", type=int, help="updates into a task of the speed measure")
    parser.add_argument(
        "--curvature",
        help=f"methods whose curvature is measured at task starts, comma-separated, 'all' or "
        f"'off' (default: {','.join(CURVATURE_METHODS)} where they run)",
    )
    parser.add_argument("--ggn-every", type=int, help="exact GGN at every k-th task start")
    parser.add_argument("--width", type=int, help="units per hidden layer (default 256)")
    parser.add_argument(
        "--compare",
        help=f"paired differences to report, e.g. er_l2-l2,fire-reset "
        f"(default: {','.join(DEFAULT_PAIRS)} where both ran)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method setting for every method, e.g. --set iso_every=1",
    )
    parser.add_argument("--out", default="continual_supervised", help="result file stem")
    parser.add_argument("--results", default=str(RESULTS), help="folder of the result files")
    parser.add_argument("--resume", action="store_true", help="keep the runs the JSON holds")
    parser.add_argument(
        "--rerun",
        help="with --resume: run these methods (comma-separated) again; their old runs move "
        "to <out>.replaced.json",
    )
    args = parser.parse_args(argv)
    if args.rerun and not args.resume:
        parser.error("--rerun replaces runs of a saved result: add --resume")

    torch.set_num_threads(1)  # small networks on a busy 2-core machine: one thread is fastest
    setup = Setup()
    if args.preset:
        for key, value in PRESETS[args.preset].items():
            setattr(setup, key, value)
    if args.quick:
        setup.tasks, setup.steps_per_task = 4, 300
    keys = ("tasks", "steps_per_task", "lr", "seeds", "seed", "speed_at", "ggn_every", "width")
    for key in keys:
        if getattr(args, key) is not None:
            setattr(setup, key, getattr(args, key))
    if not 1 <= setup.speed_at <= setup.steps_per_task:
        parser.error("--speed-at must be between 1 and the updates per task")
    if setup.ggn_every < 1:
        parser.error("--ggn-every must be at least 1 (the exact GGN every that many tasks)")
    if args.methods:
        setup.methods = args.methods.split(",")
    if args.curvature is None:
        setup.curvature = [m for m in CURVATURE_METHODS if m in setup.methods]
    elif args.curvature == "all":
        setup.curvature = list(setup.methods)
    elif args.curvature != "off":
        setup.curvature = args.curvature.split(",")
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            setup.settings[key] = parse_setting(key, value)
        except (AttributeError, ValueError) as err:
            parser.error(f"--set {item}: {err}")
    rerun = args.rerun.split(",") if args.rerun else []
    if set(rerun) - set(setup.methods):
        parser.error(
            f"--rerun {','.join(sorted(set(rerun) - set(setup.methods)))}: not among the "
            f"methods run ({','.join(setup.methods)})"
        )
    for name in setup.methods:  # refuse a bad name or setting before any training
        try:
            make_method(name, **{**BOUNDARY_ONLY, **setup.settings})
        except ValueError as err:
            parser.error(str(err))

    pairs = args.compare.split(",") if args.compare else DEFAULT_PAIRS
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    json_path = results / f"{args.out}.json"
    runs: list[dict] = []
    if args.resume and json_path.exists():
        saved = json.loads(json_path.read_text())
        ours = json.loads(json.dumps(rounded(asdict(setup))))  # the file holds it rounded
        if not extends(saved, ours):
            parser.error(f"--resume: {json_path} was written with another setup")
        runs = [
            r for r in saved["runs"] if r["seed"] in range(setup.seed, setup.seed + setup.seeds)
        ]
        if rerun:
            keep_replaced(results / f"{args.out}.replaced.json", saved, rerun)
            runs = [r for r in runs if r["method"] not in rerun]
    seeds = list(range(setup.seed, setup.seed + setup.seeds))
    print(
        f"{setup.tasks} tasks × {setup.steps_per_task} updates, {len(seeds)} seed(s), "
        f"{torch.get_num_threads()} thread(s)"
    )

    def write(rows: list[dict], curvature_rows: list[dict], paired: list[dict]) -> None:
        write_result_json(
            json_path,
            {
                "setup": asdict(setup),
                "summary": rows,
                "curvature_summary": curvature_rows,
                "paired": paired,
                "runs": runs,
            },
        )

    for seed in seeds:
        for name in setup.methods:
            if any(r["method"] == name and r["seed"] == seed for r in runs):
                continue
            result = run_method(name, setup, seed)
            runs.append(result)
            acc = _values(result, "accuracy")
            print(
                f"  seed {seed} {name:<16} acc {_mean(acc):.3f}  "
                f"speed {_mean(_values(result, 'speed')):.3f}  "
                f"dormant {result['per_task'][-1]['dormant_ratio']:.3f}  "
                f"{result['seconds']:.0f}s",
                flush=True,
            )
            write([], [], [])  # the runs so far, for --resume

    grouped = _by_method(runs)
    rows = [summarize(grouped[m], setup) for m in setup.methods if m in grouped]
    curvature_rows = [curvature_summary(grouped[m], setup) for m in setup.curvature if m in grouped]
    paired = paired_differences(rows, runs, pairs, setup)
    write(rows, curvature_rows, paired)
    plot(runs, setup, results / f"{args.out}.png")
    tables = markdown_table(rows, setup)
    if paired:
        tables += "\n\n" + paired_table(paired, rows[0]["last"])
    if curvature_rows:
        plot_curvature(runs, setup, results / f"{args.out}_curvature.png")
        tables += "\n\n" + curvature_table(curvature_rows, setup)
    (results / f"{args.out}.md").write_text(tables + "\n")
    print()
    print(tables)
    print(f"\nwrote {json_path} and the .png/.md beside it")


if __name__ == "__main__":
    main()
