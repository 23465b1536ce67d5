"""Symmetry study: does a SAC critic keep its neurons through FIRE, reset, shrink & perturb?

One SAC run on Pendulum-v1 per plasticity method (``none``, ``fire``, ``reset``,
``shrink_perturb`` on the critic only, the actor untouched), all with seed 1, each intervening
once, at ``--intervene-at`` steps, and checkpointed just after it and at the end. Up to the
intervention the runs are the same run (same seed, deterministic CPU training; the script
checks this on FIRE), so ``none``'s checkpoint at that step is the critic *just before* every
intervention. Compared with it (critic TD loss on a frozen probe batch from that policy,
targets fixed by its target critic, actor and α):

- each critic *just after* the intervention;
- each critic ``--steps − --intervene-at`` steps of training later (``none``: plain drift);
- across seeds: the final critics of seed 1 and seed 2, without and with FIRE.

For every pair: the identifiability report (mean Pearson correlation of matched units under
the optimal permutation, the identity and random permutations) and the peak and midpoint
barriers, unaligned and after activation or weight matching (``plasticity.symmetry``).

Run: ``python benchmarks/symmetry_study.py`` (about 10 minutes on one CPU thread). Writes
``benchmarks/results/symmetry_study.json`` and ``.png``; the runs go to a temporary folder
unless ``--runs-dir`` is given.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from agents import sac
from agents.probes import (
    collect_transitions,
    load_run,
    network_inputs,
    policy_returns,
    probe_loss,
)
from plasticity import fire_
from plasticity.symmetry import activation_matching, interpolation_barrier, weight_matching

RESULTS = Path(__file__).parent / "results"
METHODS = ("none", "fire", "reset", "shrink_perturb")


def train(runs_dir: Path, method: str, seed: int, options) -> Path:
    """One SAC run whose critic method intervenes once, at ``intervene_at``."""
    args = sac.Args(
        env="Pendulum-v1",
        seed=seed,
        critic_method=method,
        total_timesteps=options.steps,
        learning_starts=options.learning_starts,
        hidden_size=options.hidden,
        eval_every=0,
        eval_episodes=options.episodes,
        metrics_every=0,
        # checkpoints at the intervention and at the end: the two newest are kept
        checkpoint_every=options.intervene_at,
        runs_dir=str(runs_dir),
        run_name=f"{method}_seed{seed}",
        device="cpu",
    )
    plasticity = args.plasticity
    plasticity.fire_every = plasticity.reset_every = options.intervene_at
    plasticity.shrink_perturb_every = options.intervene_at
    summary = sac.main(args)
    return Path(summary["run_dir"])


def checkpoint(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step}.pt"


def compare(reference, other, batch, options) -> dict:
    """Identifiability and barriers of ``other``'s critic against ``reference``'s."""
    net_a, net_b = reference.networks["critic"], other.networks["critic"]
    loss = probe_loss(reference, "critic", batch, seed=options.seed)
    probe = network_inputs(reference, "critic", batch)
    matching = activation_matching(net_a, net_b, probe, seed=options.seed)
    weights = weight_matching(net_a, net_b, seed=options.seed)
    row = {
        "a": reference.label,
        "b": other.label,
        "units": len(matching.matched),
        "corr_optimal": matching.optimal_mean,
        "corr_identity": matching.identity_mean,
        "corr_random": matching.random_mean,
        "gap": matching.gap,
        "weight_distance": weights.identity_distance,
        "weight_distance_matched": weights.distance,
    }
    for label, align in (("unaligned", None), ("activation", matching), ("weight", weights)):
        barrier = interpolation_barrier(net_a, net_b, loss.fn, options.alphas, align)
        row[label] = {
            "loss_a": barrier.loss_a,
            "loss_b": barrier.loss_b,
            "peak": barrier.peak,
            "midpoint": barrier.midpoint,
            "curve": barrier.losses.tolist(),
        }
    return row


def fire_reproduces(before, after_fire) -> bool:
    """Whether FIRE on ``none``'s critic gives ``fire``'s critic: the runs agree up to then."""
    critic = copy.deepcopy(before.networks["critic"])
    fire_(critic)
    expected = after_fire.networks["critic"].state_dict()
    return all(torch.equal(v, expected[k]) for k, v in critic.state_dict().items())


def plot(rows: list[dict], groups: dict[str, list[int]], path: Path, alphas: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0, 1, alphas)
    colors = dict(zip(METHODS, plt.cm.tab10.colors, strict=False))
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4), sharey=False)
    for ax, (title, indices) in zip(axes, groups.items(), strict=True):
        for index in indices:
            row = rows[index]
            color = colors[row["method"]]
            for label, style in (("unaligned", "-"), ("activation", "--"), ("weight", ":")):
                curve = np.asarray(row[label]["curve"])
                linear = (1 - grid) * curve[0] + grid * curve[-1]
                name = row["pair"] if label == "unaligned" else None
                ax.plot(grid, curve - linear, style, color=color, label=name)
        ax.axhline(0, color="gray", lw=0.5)
        ax.set(title=title, xlabel="α (0: A, 1: B)", ylabel="L(α) − [(1−α)L_A + αL_B]")
        ax.set_yscale("symlog", linthresh=0.1)
        ax.legend(fontsize=7)
    fig.suptitle(
        "SAC critic on Pendulum-v1: TD loss above the straight line between A and B "
        "(solid: unaligned, dashed: activation matching, dotted: weight matching)"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=7_500)
    parser.add_argument("--intervene-at", type=int, default=5_000)
    parser.add_argument("--learning-starts", type=int, default=1_000)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--probe", type=int, default=1_024)
    parser.add_argument("--alphas", type=int, default=21)
    parser.add_argument("--episodes", type=int, default=5, help="evaluation episodes per run")
    parser.add_argument("--seed", type=int, default=0, help="seed of the probe batch")
    parser.add_argument("--runs-dir", help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--out", default=str(RESULTS), help="folder of the json and png")
    options = parser.parse_args()
    if not options.intervene_at < options.steps < 2 * options.intervene_at:
        parser.error("need intervene-at < steps < 2 × intervene-at (one intervention)")
    torch.set_num_threads(1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(options.runs_dir or tmp)
        dirs = {(m, 1): train(runs_dir, m, 1, options) for m in METHODS}
        dirs.update({(m, 2): train(runs_dir, m, 2, options) for m in ("none", "fire")})
        train_seconds = time.perf_counter() - start
        at, end = options.intervene_at, options.steps
        before = load_run(checkpoint(dirs["none", 1], at))
        just_after = {m: load_run(checkpoint(dirs[m, 1], at)) for m in METHODS[1:]}
        later = {m: load_run(checkpoint(dirs[m, 1], end)) for m in METHODS}
        final_2 = {m: load_run(checkpoint(dirs[m, 2], end)) for m in ("none", "fire")}
        same_run = fire_reproduces(before, just_after["fire"])
        batch = collect_transitions(before, options.probe, options.seed)
        pairs = [(f"before vs just after {m}", m, before, run) for m, run in just_after.items()]
        pairs += [(f"before vs {m} +{end - at}", m, before, run) for m, run in later.items()]
        rows = [
            {"pair": name, "method": m, **compare(a, b, batch, options)} for name, m, a, b in pairs
        ]
        for m in ("none", "fire"):  # probed with the reference's own policy
            batch_m = collect_transitions(later[m], options.probe, options.seed)
            name = f"seed 1 vs seed 2 ({m})"
            row = compare(later[m], final_2[m], batch_m, options)
            rows.append({"pair": name, "method": m, **row})
        returns = {
            "before": float(
                np.mean(policy_returns(before, before.networks["actor"], options.episodes))
            ),
            **{
                f"{m}_seed{s}": json.loads((dirs[m, s] / "summary.json").read_text())[
                    "final_eval_return"
                ]
                for (m, s) in dirs
            },
        }
    result = {
        "setting": {
            "env": "Pendulum-v1",
            "agent": "sac",
            "hidden_size": options.hidden,
            "steps": options.steps,
            "intervene_at": at,
            "learning_starts": options.learning_starts,
            "methods_on": "critic only (actor: none)",
            "probe_transitions": options.probe,
            "probe": "A's exploring policy, fresh env, seed 0; loss: critic TD loss with targets "
            "fixed by A's target critic, actor and alpha",
            "alphas": options.alphas,
            "seeds": [1, 2],
            "torch_threads": 1,
        },
        "runs_identical_until_the_intervention": same_run,
        "eval_returns": returns,
        "train_seconds": train_seconds,
        "total_seconds": time.perf_counter() - start,
        "rows": rows,
    }
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "symmetry_study.json").write_text(json.dumps(result, indent=2))
    n_after = len(just_after)
    groups = {
        "just after the intervention": list(range(n_after)),
        f"{end - at} steps of training later": list(range(n_after, n_after + len(later))),
        "two seeds": list(range(n_after + len(later), len(rows))),
    }
    plot(rows, groups, out / "symmetry_study.png", options.alphas)
    print(f"{'pair':<34}{'corr opt/id/rand':>20}{'peak un/act/wt':>30}{'L_A':>9}{'L_B':>9}")
    for row in rows:
        corr = f"{row['corr_optimal']:.2f}/{row['corr_identity']:.2f}/{row['corr_random']:.2f}"
        peaks = "/".join(f"{row[k]['peak']:.3g}" for k in ("unaligned", "activation", "weight"))
        losses = f"{row['unaligned']['loss_a']:>9.3g}{row['unaligned']['loss_b']:>9.3g}"
        print(f"{row['pair']:<34}{corr:>20}{peaks:>30}{losses}")
    print(f"runs identical until the intervention: {same_run}; returns {returns}")
    print(f"{result['total_seconds']:.0f} s; wrote {out / 'symmetry_study.json'} and .png")


if __name__ == "__main__":
    main()
