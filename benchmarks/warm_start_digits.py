"""Warm starting on real data: does training on half the data first hurt generalization?

Ash & Adams (2020, arXiv 1910.08475) found that a network trained to convergence on part of
a data set and then on all of it (a *warm start*) generalizes worse than a fresh network
trained on all of it, although both fit the training set; shrink & perturb was their fix.
The FIRE paper (arXiv 2602.08040, its "warm start" benchmark) repeats the protocol with FIRE
at the switch against reset and shrink & perturb. This is that protocol at small scale on
scikit-learn's bundled ``load_digits`` (1,797 8×8 digit images, no download): per seed a
stratified 70/30 train/test split, a 64-256-256-10 ReLU MLP trained with Adam (lr 1e-3,
batch 64, gradient norm clipped at 0.5, a fresh optimizer for each phase, as in the FIRE
paper's code) on a stratified part of the training set (``--first-fraction``: half, as in
Ash & Adams; the FIRE paper uses 10%) for ``E / fraction`` epochs, then on all of it for
``E`` epochs (about the same number of updates in both phases, as in the FIRE paper's code),
against a fresh network trained on all of it for ``E`` epochs. At the switch: nothing (warm
start), FIRE, a full reset, and shrink & perturb (the FIRE paper's ``0.2·θ + 0.8·θ₀`` toward
the initial weights, and the library default ``0.8·θ + 0.2·θ_fresh``).

Reports held-out test accuracy, its paired difference to the fresh network (same split and
initialization per seed), means with 95% Student-t intervals over seeds.

Run: ``python -m benchmarks.warm_start_digits --seeds 5`` (``--quick`` for a smoke run).
Writes ``benchmarks/results/<out>.{json,png,md}``.
"""

from __future__ import annotations

import argparse
import copy
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks._plots import pyplot
from benchmarks._stats import curve_ci, fmt, mean_ci, write_result_json
from benchmarks._supervised import accuracy, digits, digits_mlp
from plasticity import make_method

RESULTS = Path(__file__).parent / "results"

VARIANTS = {
    "warm (none)": ("none", {}),
    "FIRE": ("fire", {}),
    "reset": ("reset", {}),
    "S&P 0.2θ+0.8θ₀": (
        "shrink_perturb",
        {"shrink": 0.2, "perturb": 0.8, "perturb_target": "initial"},
    ),
    "S&P 0.8θ+0.2θ_fresh": ("shrink_perturb", {"shrink": 0.8, "perturb": 0.2}),
}
"""What happens at the switch: label → (method, its settings); all act through
``on_task_switch`` of :func:`plasticity.make_method`."""

FRESH = "fresh (all data only)"


@dataclass
class Config:
    epochs: int = 100
    """epochs on all the training data (phase 2, and the fresh network)"""
    first_fraction: float = 0.5
    """part of the training set in phase 1, which runs ``epochs / first_fraction`` epochs"""
    width: int = 256
    batch_size: int = 64
    lr: float = 1e-3
    clip: float = 0.5
    """gradient-norm clip (the FIRE paper's vision code); 0 turns it off"""
    test_fraction: float = 0.3
    seed: int = 0
    seeds: int = 5
    variants: list[str] = field(default_factory=lambda: list(VARIANTS))


def load(seed: int, test_fraction: float, first_fraction: float = 0.5):
    """Standardized digits: a stratified train/test split and a stratified part of train."""
    from sklearn.model_selection import train_test_split

    x_train, y_train, x_test, y_test = digits(seed, test_fraction)
    half, _ = train_test_split(
        np.arange(len(y_train)), train_size=first_fraction, stratify=y_train, random_state=seed
    )
    t = torch.as_tensor
    return t(x_train), t(y_train), t(x_test), t(y_test), t(np.sort(half))


def train(net, x, y, x_test, y_test, epochs, cfg: Config, gen) -> list:
    """``epochs`` of Adam on ``(x, y)`` with a fresh optimizer; test accuracy after each."""
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    curve = []
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            loss = F.cross_entropy(net(x[idx]), y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.clip > 0:
                nn.utils.clip_grad_norm_(net.parameters(), cfg.clip)
            optimizer.step()
        test, fit = accuracy(net, x_test, y_test), accuracy(net, x, y)
        curve.append({"test": test, "train": fit, "loss": loss.item()})
    return curve


def run_seed(cfg: Config, seed: int) -> tuple[list[dict], dict]:
    """One seed: the fresh network and every variant's phase 2 (runs), and the shared
    phase 1."""
    x, y, x_test, y_test, half = load(seed, cfg.test_fraction, cfg.first_fraction)
    torch.manual_seed(seed)
    net = digits_mlp(cfg.width)
    initial = copy.deepcopy(net)
    handles = {}
    for label in cfg.variants:  # attach before phase 1: S&P toward θ₀ keeps the initial weights
        method, settings = VARIANTS[label]
        clone = copy.deepcopy(net)
        handles[label] = (clone, make_method(method, **settings).attach(clone, lr=cfg.lr))
    tic = time.perf_counter()
    phase1 = train(net, x[half], y[half], x_test, y_test, phase1_epochs(cfg), cfg, _gen(seed, 1))
    phase1_seconds = time.perf_counter() - tic
    runs = []
    fresh = copy.deepcopy(initial)
    curve = train(fresh, x, y, x_test, y_test, cfg.epochs, cfg, _gen(seed, 2))
    runs.append({"variant": FRESH, "seed": seed, "phase2": curve})
    for label, (clone, handle) in handles.items():
        clone.load_state_dict(net.state_dict())  # the warm network, with the handle's θ₀ kept
        handle.on_task_switch(inputs=x[:256])
        at_switch = accuracy(clone, x_test, y_test)
        curve = train(clone, x, y, x_test, y_test, cfg.epochs, cfg, _gen(seed, 2))
        runs.append(
            {
                "variant": label,
                "seed": seed,
                "phase1_end": phase1[-1],
                "at_switch": at_switch,
                "phase2": curve,
            }
        )
    return runs, {"seed": seed, "curve": phase1, "seconds": phase1_seconds}


def phase1_epochs(cfg: Config) -> int:
    return round(cfg.epochs / cfg.first_fraction)


def _gen(seed: int, phase: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 * seed + phase)


def summarize(runs: list[dict], cfg: Config) -> list[dict]:
    fresh = {r["seed"]: r["phase2"][-1]["test"] for r in runs if r["variant"] == FRESH}
    rows = []
    for label in [FRESH, *cfg.variants]:
        group = [r for r in runs if r["variant"] == label]
        row = {
            "variant": label,
            "n": len(group),
            "final_test": mean_ci([r["phase2"][-1]["test"] for r in group]),
            "final_train": mean_ci([r["phase2"][-1]["train"] for r in group]),
            "best_test": mean_ci([max(p["test"] for p in r["phase2"]) for r in group]),
            "delta_vs_fresh": mean_ci([r["phase2"][-1]["test"] - fresh[r["seed"]] for r in group]),
        }
        if label != FRESH:
            row["phase1_test"] = mean_ci([r["phase1_end"]["test"] for r in group])
            row["phase1_train"] = mean_ci([r["phase1_end"]["train"] for r in group])
            row["at_switch"] = mean_ci([r["at_switch"] for r in group])
        rows.append(row)
    return rows


def markdown_table(rows: list[dict], cfg: Config) -> str:
    n = rows[0]["n"]
    lines = [
        f"Digits, {n} seeds; mean ± 95% t-interval half-width over seeds. Phase 1: "
        f"{cfg.first_fraction:.0%} of the training set, {phase1_epochs(cfg)} epochs; phase 2: "
        f"all of it, {cfg.epochs} epochs. "
        "Δ: paired difference of final test accuracy to the fresh network (same split and "
        "initialization).",
        "",
        "| at the switch | test acc., end of phase 1 | test acc. right after the switch | "
        "final train acc. | final test acc. | Δ test vs fresh | best test acc. |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {fmt(r['phase1_test']) if 'phase1_test' in r else '–'} | "
            f"{fmt(r['at_switch']) if 'at_switch' in r else '–'} | {fmt(r['final_train'])} | "
            f"{fmt(r['final_test'])} | {fmt(r['delta_vs_fresh'])} | {fmt(r['best_test'])} |"
        )
    return "\n".join(lines)


def plot(runs: list[dict], phase1: list[dict], rows: list[dict], cfg: Config, path: Path) -> None:
    plt = pyplot()

    fig, (ax, ax_final) = plt.subplots(
        1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [2.2, 1]}
    )
    colors = plt.get_cmap("tab10").colors
    e1 = phase1_epochs(cfg)
    mean, low, high = curve_ci([[p["test"] for p in r["curve"]] for r in phase1])
    epochs = np.arange(1, e1 + 1)
    ax.plot(epochs, mean, color="k", lw=1.2, label="phase 1 (shared by the variants)")
    if len(phase1) > 1:
        ax.fill_between(epochs, low, high, color="k", alpha=0.1, lw=0)
    for i, label in enumerate([FRESH, *cfg.variants]):
        group = [r for r in runs if r["variant"] == label]
        epochs = np.arange(e1 + 1, e1 + cfg.epochs + 1)
        mean, low, high = curve_ci([[p["test"] for p in r["phase2"]] for r in group])
        style = {"color": colors[i], "ls": "--" if label == FRESH else "-"}
        ax.plot(epochs, mean, label=label, lw=1.2, **style)
        if len(group) > 1:
            ax.fill_between(epochs, low, high, color=colors[i], alpha=0.15, lw=0)
    ax.axvline(e1 + 0.5, color="0.5", lw=0.8)
    ax.text(e1 + 2, 0.992, "switch: all the data", fontsize=8, color="0.3")
    n = rows[0]["n"]
    ax.set(
        xlabel=f"epoch (1–{e1}: {cfg.first_fraction:.0%} of the training set; "
        f"{e1 + 1}–{e1 + cfg.epochs}: all of it)",
        ylabel="test accuracy (held-out 30%)",
        title=f"Warm start on digits (mean, 95% t-interval, {n} seeds)",
        ylim=(0.9, 1.0),
    )
    ax.legend(fontsize=8, loc="lower right")
    fresh = {x["seed"]: x["phase2"][-1]["test"] for x in runs if x["variant"] == FRESH}
    for i, r in enumerate(rows):
        s = r["delta_vs_fresh"]
        if r["variant"] != FRESH:
            ax_final.errorbar(
                [100 * s["mean"]], [i],
                xerr=[[100 * (s["mean"] - s["low"])], [100 * (s["high"] - s["mean"])]],
                fmt="o", color=colors[i], capsize=3,
            )  # fmt: skip
        deltas = [
            100 * (x["phase2"][-1]["test"] - fresh[x["seed"]])
            for x in runs
            if x["variant"] == r["variant"]
        ]
        ax_final.scatter(deltas, [i + 0.15] * len(deltas), s=8, color=colors[i], alpha=0.6)
    ax_final.axvline(0, color="0.5", lw=0.8)
    ax_final.set_yticks(range(len(rows)), [r["variant"] for r in rows], fontsize=8)
    ax_final.invert_yaxis()
    ax_final.set(
        xlabel="final test accuracy − fresh network's, same seed (percentage points)\n"
        "(dots: seeds; bars: 95% t-interval of the paired mean)",
        title="Paired difference to the fresh network",
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run (2 seeds, 3 epochs)")
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--width", type=int, help="units per hidden layer (default 256)")
    parser.add_argument("--first-fraction", type=float, help="part of train in phase 1 (0.5)")
    parser.add_argument("--out", default="warm_start_digits")
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    cfg = Config()
    if args.quick:
        cfg.seeds, cfg.epochs = 2, 3
    if args.seeds is not None:
        cfg.seeds = args.seeds
    if args.epochs is not None:
        cfg.epochs = args.epochs
    if args.width is not None:
        cfg.width = args.width
    if args.first_fraction is not None:
        if not 0 < args.first_fraction < 1:
            parser.error("--first-fraction must be in (0, 1)")
        cfg.first_fraction = args.first_fraction
    runs, phase1 = [], []
    for seed in range(cfg.seed, cfg.seed + cfg.seeds):
        tic = time.perf_counter()
        seed_runs, seed_phase1 = run_seed(cfg, seed)
        runs += seed_runs
        phase1.append(seed_phase1)
        finals = ", ".join(f"{r['variant']} {r['phase2'][-1]['test']:.4f}" for r in seed_runs)
        print(f"seed {seed} ({time.perf_counter() - tic:.0f}s): {finals}", flush=True)
    rows = summarize(runs, cfg)
    table = markdown_table(rows, cfg)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    write_result_json(
        results / f"{args.out}.json",
        {
            "config": asdict(cfg),
            "summary": rows,
            "phase1": phase1,
            "runs": runs,
        },
    )
    (results / f"{args.out}.md").write_text(table + "\n")
    plot(runs, phase1, rows, cfg, results / f"{args.out}.png")
    print()
    print(table)
    print(f"\nwrote {results / args.out}.json, .png and .md")


if __name__ == "__main__":
    main()
