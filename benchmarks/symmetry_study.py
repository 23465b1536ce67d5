"""Symmetry studies of RL networks: do hidden units keep, or share, their identities?

Two studies, one subcommand each (run by hand, not in CI; the runs go to a temporary folder
unless ``--runs-dir`` is given):

``intervention``: does a SAC critic keep its neurons through FIRE, reset, shrink & perturb?
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

Writes ``symmetry_study.json`` and ``.png`` (about 15 minutes at the defaults on one thread).

``seeds``: are the hidden units of a SAC critic (Pendulum-v1) and of a DQN Q-network
(CartPole-v1) identifiable across independent seeds trained on the same task, and does FIRE,
reset or shrink & perturb (on that network, once, at a fixed step) change that? Per agent and
method, ``--pairs`` pairs of seeds (1 and 2, 3 and 4, …), each pair compared at every
checkpoint (several points of training, before and after the intervention). Writes
``symmetry_seeds.json`` and ``symmetry_seeds.md``; ``--scale`` multiplies every step count.

``grid RUNS_DIR``: the same question at real scale, on a grid trained already by
``benchmarks.evidence.midpoint_minatar`` (DQN's conv Q-network on MinAtar Space Invaders): the
parents ``parent-none-s<seed>`` at the midpoint (before any intervention) and at the end, and
each branch ``midpoint-<method>-s<seed>`` at the end, for seed pairs 1 and 2, 3 and 4, … where
both runs have finished. The steps come from the parents' ``config.json`` (midpoint:
``total_timesteps / 2``, where the grid branches). Per method and step: the mean over pairs
and its 95% t-interval; per method, the paired difference from ``none`` at the end (same pair
of seeds) of the identified rate and of the correlation gap, Holm over those comparisons.
Methods whose Q-network cannot be rebuilt from its checkpoint alone are skipped, with the
reason. Reads the runs only; writes ``symmetry_grid.json`` and ``symmetry_grid.md``.

For every pair of networks: the identifiability report (mean Pearson correlation of matched
units under the optimal permutation, the identity and random permutations; the fraction of
units identified with B's unit of the same index, with one unit of B under the optimal pairing,
and by chance), the effective-symmetry measures of each network's hidden layers (dimension and
coherence of their input subspace at 90% of the variance), and the peak, midpoint and relative
barriers, unaligned and after activation or weight matching (``plasticity.symmetry``).
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import re
import shlex
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from agents import dqn, sac
from agents.cli import UserError, run_cli
from benchmarks._plots import pyplot
from benchmarks._stats import (
    fmt,
    fmt_p,
    holm,
    mean_ci,
    paired_difference,
    provenance_problem,
    run_provenance,
    write_result_json,
)
from experiments.symmetry import (
    RunCheckpoint,
    collect_transitions,
    load_run,
    network_inputs,
    policy_returns,
    probe_loss,
)
from plasticity import fire_
from plasticity.symmetry import (
    activation_matching,
    interpolation_barrier,
    realization_report,
    weight_matching,
)

RESULTS = Path(__file__).parent / "results"
METHODS = ("none", "fire", "reset", "shrink_perturb")
AGENTS = {"sac": sac, "dqn": dqn}


@dataclass(frozen=True)
class Schedule:
    """One agent's runs: the env, the network the method acts on (and the study compares),
    and the step counts."""

    env: str
    network: str
    steps: int
    learning_starts: int
    intervene_at: int
    checkpoint_every: int

    def scaled(self, scale: float) -> Schedule:
        counts = ("steps", "learning_starts", "intervene_at", "checkpoint_every")
        return replace(self, **{k: max(1, round(getattr(self, k) * scale)) for k in counts})


# the seeds study at --scale 1: checkpoints at four points, one intervention between the second
# and the third, learning long enough to start (tiny runs: see docs/symmetry.md for what they show)
SEEDS_SCHEDULES = {
    "sac": Schedule("Pendulum-v1", "critic", 2_000, 500, 1_250, 500),
    "dqn": Schedule("CartPole-v1", "q", 10_000, 1_000, 6_000, 2_500),
}


def train(runs_dir: Path, agent: str, method: str, seed: int, schedule: Schedule, options) -> Path:
    """One run whose method acts on ``schedule.network`` only, once, at ``intervene_at``
    (``steps < 2 × intervene_at``), with every checkpoint kept."""
    module = AGENTS[agent]
    network_method = {"critic": "critic_method", "q": "q_method"}[schedule.network]
    extra = {"hidden_size": options.hidden} if agent == "sac" else {}
    args = module.Args(
        env=schedule.env,
        seed=seed,
        total_timesteps=schedule.steps,
        learning_starts=schedule.learning_starts,
        eval_every=0,
        eval_episodes=options.episodes,
        metrics_every=0,
        checkpoint_every=schedule.checkpoint_every,
        keep_checkpoints=0,
        runs_dir=str(runs_dir),
        run_name=f"{agent}_{method}_seed{seed}",
        device="cpu",
        verbose=0,
        **{network_method: method},
        **extra,
    )
    plasticity = args.plasticity
    plasticity.fire_every = plasticity.reset_every = schedule.intervene_at
    plasticity.shrink_perturb_every = schedule.intervene_at
    summary = module.main(args)
    return Path(summary["run_dir"])


def checkpoint_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.stem.removeprefix("step_")) for p in run_dir.glob("checkpoints/step_*.pt"))


def checkpoint(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step}.pt"


def input_subspaces(run: RunCheckpoint, network: str, batch) -> dict[str, dict]:
    """Dimension and coherence of each hidden layer's input subspace at 90% of the variance."""
    report = realization_report(run.networks[network], network_inputs(run, network, batch))
    return {
        name: {
            "inputs": layer.subspace.full_dimension,
            "dimension": layer.subspace.dimension,
            "explained": layer.subspace.explained,
            "coherence": layer.subspace.coherence,
        }
        for name, layer in report.items()
    }


def compare(reference, other, batch, options, network: str = "critic") -> dict:
    """Identifiability, input subspaces and barriers of ``other``'s ``network`` against
    ``reference``'s, on ``batch`` (drawn with ``reference``'s policy)."""
    net_a, net_b = reference.networks[network], other.networks[network]
    loss = probe_loss(reference, network, batch, seed=options.seed)
    probe = network_inputs(reference, network, batch)
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
        "identified": matching.identified_rate,
        "identified_matched": matching.identified_matched_rate,
        "identified_chance": matching.chance_rate,
        "subspace_a": input_subspaces(reference, network, batch),
        "subspace_b": input_subspaces(other, network, batch),
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
            "relative": barrier.relative,
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
    plt = pyplot()
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


def intervention_study(options) -> None:
    """Before and after one intervention on a SAC critic (the module docstring)."""
    schedule = Schedule(
        "Pendulum-v1",
        "critic",
        options.steps,
        options.learning_starts,
        options.intervene_at,
        checkpoint_every=options.intervene_at,
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(options.runs_dir or tmp)
        dirs = {(m, 1): train(runs_dir, "sac", m, 1, schedule, options) for m in METHODS}
        for m in ("none", "fire"):
            dirs[m, 2] = train(runs_dir, "sac", m, 2, schedule, options)
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


def final_return(run_dir: Path) -> float:
    return json.loads((run_dir / "summary.json").read_text())["final_eval_return"]


def seeds_study(options) -> None:
    """Independent seeds compared at every checkpoint (the module docstring)."""
    schedules = {agent: SEEDS_SCHEDULES[agent].scaled(options.scale) for agent in options.agents}
    seeds = range(1, 2 * options.pairs + 1)
    start = time.perf_counter()
    rows, returns = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(options.runs_dir or tmp)
        for (agent, schedule), method in itertools.product(schedules.items(), options.methods):
            dirs = {seed: train(runs_dir, agent, method, seed, schedule, options) for seed in seeds}
            returns.update({f"{agent}_{method}_seed{s}": final_return(d) for s, d in dirs.items()})
            for pair, step in itertools.product(range(options.pairs), checkpoint_steps(dirs[1])):
                seed_a, seed_b = 2 * pair + 1, 2 * pair + 2
                run_a = load_run(checkpoint(dirs[seed_a], step))
                run_b = load_run(checkpoint(dirs[seed_b], step))
                batch = collect_transitions(run_a, options.probe, options.seed)
                row = compare(run_a, run_b, batch, options, schedule.network)
                rows.append(
                    {"agent": agent, "method": method, "seeds": [seed_a, seed_b], "step": step}
                    | {"after_intervention": step >= schedule.intervene_at, **row}
                )
    result = {
        "command": shlex.join(["python", "-m", "benchmarks.symmetry_study", *sys.argv[1:]]),
        "setting": {
            "schedules": {agent: vars(schedule) for agent, schedule in schedules.items()},
            "scale": options.scale,
            "sac_hidden_size": options.hidden,
            "methods_on": "the compared network only (SAC: critic, actor none; DQN: q)",
            "seed_pairs": [[2 * p + 1, 2 * p + 2] for p in range(options.pairs)],
            "probe_transitions": options.probe,
            "probe": f"A's exploring policy, fresh env, seed {options.seed}; loss: the "
            "network's TD loss with targets fixed by A",
            "alphas": options.alphas,
            "torch_threads": 1,
        },
        "eval_returns": returns,
        "total_seconds": time.perf_counter() - start,
        "rows": rows,
    }
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "symmetry_seeds.json").write_text(json.dumps(result, indent=2))
    markdown = seeds_markdown(result)
    (out / "symmetry_seeds.md").write_text(markdown)
    print(markdown)
    print(f"{result['total_seconds']:.0f} s; wrote {out / 'symmetry_seeds.json'} and .md")


def render_seeds(path: Path) -> None:
    """The markdown of a saved seeds study, rewritten beside it (its tables and tests come from
    the JSON's rows alone)."""
    try:
        result = json.loads(path.read_text())
        markdown = seeds_markdown(result)
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(
            f"{path}: not a seeds study's results ({err}); pass a symmetry_seeds.json"
        ) from None
    path.with_suffix(".md").write_text(markdown)
    print(markdown)


def _mean(values) -> float:
    return float(np.mean(list(values)))


def seeds_markdown(result: dict) -> str:
    """The seeds study's results as markdown: how they were made, then :func:`seeds_table`."""
    setting = result["setting"]
    schedules = {agent: Schedule(**values) for agent, values in setting["schedules"].items()}
    runs = "; ".join(
        f"{agent} on {s.env}: {s.steps} steps, learning from {s.learning_starts}, the method "
        f"acting on the {s.network} network once at {s.intervene_at}, compared every "
        f"{s.checkpoint_every}"
        for agent, s in schedules.items()
    )
    pairs = ", ".join(f"{a} and {b}" for a, b in setting["seed_pairs"])
    return (
        f"`{result['command']}` ({result['total_seconds']:.0f} s, one thread)\n\n"
        f"{runs}; SAC hidden size {setting['sac_hidden_size']}; seed pairs {pairs}; probe: "
        f"{setting['probe_transitions']} transitions from {setting['probe']}; "
        f"{setting['alphas']} points per path. Means over the pairs.\n\n"
        f"{seeds_table(result['rows'], schedules)}\n"
        + "".join(
            f"\n{agent}: " + "\n".join(differences_table(tests, schedules[agent].steps)) + "\n"
            for agent, tests in seeds_differences(result["rows"], schedules).items()
        )
    )


def seeds_differences(rows: list[dict], schedules: dict[str, Schedule]) -> dict[str, dict]:
    """Per agent with a method besides ``none``: :func:`grid_differences` (the grid's family,
    method − none on the identified rate and the correlation gap, Holm over the agent's
    comparisons) at its last checkpoint."""
    found = {}
    for agent, schedule in schedules.items():
        ours = [r for r in rows if r["agent"] == agent]
        methods = list(dict.fromkeys(r["method"] for r in ours if r["method"] != "none"))
        if methods and any(r["method"] == "none" for r in ours):
            found[agent] = grid_differences(ours, methods, schedule.steps)
    return found


def seeds_table(rows: list[dict], schedules: dict[str, Schedule]) -> str:
    """Markdown: per agent, method and step, the means over the seed pairs."""
    lines = [
        "| agent | method | step | pairs | identified: same index / chance / matched "
        "| correlation identity / optimal / random | input dimension at 90% per hidden layer "
        "| peak: unaligned / weight-matched | relative %: unaligned / weight-matched |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["agent"], row["method"], row["step"]), []).append(row)
    for (agent, method, step), group in groups.items():
        schedule = schedules[agent]
        when = "after" if step >= schedule.intervene_at else "before"
        identified = "/".join(
            f"{_mean(r[key] for r in group):.3f}"
            for key in ("identified", "identified_chance", "identified_matched")
        )
        corr = "/".join(
            f"{_mean(r[key] for r in group):.2f}"
            for key in ("corr_identity", "corr_optimal", "corr_random")
        )
        spaces = [r[side] for r in group for side in ("subspace_a", "subspace_b")]
        dims = " ".join(
            f"{_mean(space[name]['dimension'] for space in spaces):.1f}/{info['inputs']}"
            for name, info in spaces[0].items()
        )
        peaks = "/".join(
            f"{_mean(r[label]['peak'] for r in group):.3g}" for label in ("unaligned", "weight")
        )
        relative = "/".join(
            f"{_mean(r[label]['relative'] for r in group):.0f}" for label in ("unaligned", "weight")
        )
        lines.append(
            f"| {agent} | {method} | {step} ({when}) | {len(group)} | {identified} | {corr} "
            f"| {dims} | {peaks} | {relative} |"
        )
    return "\n".join(lines)


# --- grid: a trained midpoint grid (benchmarks.evidence.midpoint_minatar) ---------------------

GRID_FIRST_METHODS = ("fire", "reset", "shrink_perturb")
# the paired differences from none at the end: the Holm family is these × the compared methods
GRID_DIFFERENCES = {"identified": "identified rate", "gap": "correlation gap"}
# per (method, step): the measures summarized over pairs
GRID_MEASURES = (
    "identified", "identified_chance", "identified_matched",
    "corr_optimal", "corr_identity", "corr_random", "gap",
)  # fmt: skip
BARRIERS = ("unaligned", "activation", "weight")


def grid_run_dir(runs_dir: Path, method: str, seed: int) -> Path:
    name = f"parent-none-s{seed}" if method == "none" else f"midpoint-{method}-s{seed}"
    return runs_dir / name


def unfinished(run_dir: Path) -> str | None:
    """Why ``run_dir`` cannot be compared yet (missing, or not finished), or None."""
    if not run_dir.is_dir():
        return f"{run_dir.name} does not exist"
    try:
        status = json.loads((run_dir / "summary.json").read_text()).get("status")
    except (OSError, ValueError):
        status = None
    return None if status == "finished" else f"{run_dir.name} has not finished"


def grid_methods(runs_dir: Path) -> list[str]:
    """The midpoint branches' methods found in ``runs_dir``: FIRE, reset, shrink & perturb
    first, the others after in name order."""
    found = {
        match[1]
        for path in runs_dir.iterdir()
        if path.is_dir() and (match := re.fullmatch(r"midpoint-(.+)-s\d+", path.name))
    }
    first = [m for m in GRID_FIRST_METHODS if m in found]
    return first + sorted(found - set(first))


def grid_steps(runs_dir: Path, seeds: list[int]) -> tuple[int, int]:
    """(midpoint, end) from the parents' ``config.json``: where the grid branches, and
    ``total_timesteps``; every parent present must agree."""
    totals = {}
    for seed in seeds:
        config = grid_run_dir(runs_dir, "none", seed) / "config.json"
        if config.is_file():
            totals[seed] = json.loads(config.read_text())["total_timesteps"]
    if not totals:
        raise UserError(
            f"{runs_dir} holds no parent-none-s<seed>/config.json for seeds {seeds[0]}–"
            f"{seeds[-1]}; point grid at the runs folder of midpoint_minatar"
        )
    if len(set(totals.values())) > 1:
        raise UserError(f"the parents in {runs_dir} ran different step counts: {totals}")
    total = next(iter(totals.values()))
    return total // 2, total


def outside_the_network(run: RunCheckpoint) -> str | None:
    """Why ``run``'s Q-network, rebuilt from its parameters, is not the function the agent
    computed (None when it is): plasticity injection adds a frozen head offset through a
    forward hook, saved in the method's state, not in the network's parameters."""
    offsets = run.state.get("plasticity", {}).get("q", {}).get("injection_offsets")
    if offsets:
        return (
            "its Q-network adds a frozen head offset (plasticity injection) kept outside the "
            "network's parameters, which load_run does not rebuild, so its losses and "
            "barriers would be another function's"
        )
    return None


def summarize(rows: list[dict]) -> dict:
    """Mean and 95% t-interval over pairs of every measure of :func:`compare`'s rows (one per
    pair): identifiability, per hidden layer the input dimension and coherence (each pair's
    mean of its two networks), each barrier's peak and relative height."""
    summary = {key: mean_ci([r[key] for r in rows]) for key in GRID_MEASURES}
    layers = rows[0]["subspace_a"]
    for key in ("dimension", "coherence"):
        summary[key] = {
            name: mean_ci(
                [(r["subspace_a"][name][key] + r["subspace_b"][name][key]) / 2 for r in rows]
            )
            for name in layers
        }
    summary["inputs"] = {name: layer["inputs"] for name, layer in layers.items()}
    for label in BARRIERS:
        summary[label] = {
            key: mean_ci([r[label][key] for r in rows]) for key in ("peak", "relative")
        }
    return summary


def grid_differences(rows: list[dict], methods: list[str], end: int) -> dict[str, dict]:
    """Per compared method and measure of :data:`GRID_DIFFERENCES`, the paired difference
    method − none at the end over the seed pairs both have, Holm over the whole family."""
    at_end = {(r["method"], tuple(r["seeds"])): r for r in rows if r["step"] == end}
    tests = {}
    for method, key in itertools.product(methods, GRID_DIFFERENCES):
        pairs = sorted(s for m, s in at_end if m == method and ("none", s) in at_end)
        test = paired_difference(
            [at_end[method, s][key] for s in pairs], [at_end["none", s][key] for s in pairs]
        )
        tests[f"{key}: {method} − none"] = {**test, "pairs": [list(s) for s in pairs]}
    adjusted = holm({name: t["p"] for name, t in tests.items()})
    for name, test in tests.items():
        test["holm_p"] = adjusted[name]
    return tests


def differences_table(differences: dict[str, dict], end: int) -> list[str]:
    """Markdown lines of :func:`grid_differences`' tests."""
    lines = [
        f"Paired by seed pair, method − none at step {end}; Holm over the "
        f"{len(differences)} comparisons:",
        "",
        "| comparison | pairs | difference [95% CI] | p | Holm p |",
        "|---|---|---|---|---|",
    ]
    for name, t in differences.items():
        interval = (
            f"{t['mean']:+.3f} [{t['low']:+.3f}, {t['high']:+.3f}]"
            if math.isfinite(t["low"])
            else (f"{t['mean']:+.3f}" if math.isfinite(t["mean"]) else "–")
        )
        lines.append(f"| {name} | {t['n']} | {interval} | {fmt_p(t['p'])} | {fmt_p(t['holm_p'])} |")
    return lines


def grid_study(options) -> None:
    """A trained midpoint grid's Q-networks compared across seeds (the module docstring)."""
    runs_dir = Path(options.runs_dir)
    if not runs_dir.is_dir():
        raise UserError(f"{runs_dir} is not a folder; give the runs folder of midpoint_minatar")
    seed_pairs = [(2 * p + 1, 2 * p + 2) for p in range(options.pairs)]
    midpoint, end = grid_steps(runs_dir, [s for pair in seed_pairs for s in pair])
    methods = grid_methods(runs_dir)
    groups = [("none", midpoint), ("none", end)] + [(m, end) for m in methods]
    start = time.perf_counter()
    rows, skipped, excluded, used = [], [], {}, {}
    for (method, step), (seed_a, seed_b) in itertools.product(groups, seed_pairs):
        if method in excluded:
            continue
        dirs = [grid_run_dir(runs_dir, method, s) for s in (seed_a, seed_b)]
        why = next(filter(None, map(unfinished, dirs)), None)
        files = [checkpoint(d, step) for d in dirs]
        if why is None and not all(f.is_file() for f in files):
            why = f"no checkpoint at step {step}"
        if why is None:
            run_a, run_b = map(load_run, files)
            why = outside_the_network(run_a) or outside_the_network(run_b)
            if why is not None:
                excluded[method] = why
                continue
        if why is not None:
            skipped.append({"method": method, "step": step, "seeds": [seed_a, seed_b], "why": why})
            continue
        used.update({d.name: d for d in dirs})
        began = time.perf_counter()
        batch = collect_transitions(run_a, options.probe, options.seed)
        row = compare(run_a, run_b, batch, options, "q")
        rows.append(
            {"method": method, "step": step, "seeds": [seed_a, seed_b]}
            | {"seconds": time.perf_counter() - began, **row}
        )
        print(
            f"{method} @{step} seeds {seed_a},{seed_b}: identified {row['identified']:.3f} "
            f"(chance {row['identified_chance']:.3f}), gap {row['gap']:.3f}, "
            f"{rows[-1]['seconds']:.1f} s",
            flush=True,
        )
    compared = [m for m in methods if m not in excluded]
    summaries = []
    for method, step in groups:
        group = [r for r in rows if (r["method"], r["step"]) == (method, step)]
        if group:
            summaries.append(
                {"method": method, "step": step, "pairs": len(group)} | summarize(group)
            )
    provenance = {
        name: run_provenance(json.loads((d / "config.json").read_text()))
        for name, d in sorted(used.items())
    }
    result = {
        "command": shlex.join(["python", "-m", "benchmarks.symmetry_study", *sys.argv[1:]]),
        "setting": {
            "runs_dir": str(runs_dir),
            "midpoint": midpoint,
            "end": end,
            "network": "q",
            "seed_pairs": [list(p) for p in seed_pairs],
            "probe_transitions": options.probe,
            "probe": f"{options.probe} transitions drawn (seed {options.seed}) from A's saved "
            "replay buffer at that step; loss: A's TD loss with targets fixed by A's target "
            "network",
            "alphas": options.alphas,
        },
        "provenance_problem": provenance_problem(provenance) if provenance else None,
        "methods_skipped": excluded,
        "pairs_skipped": skipped,
        "total_seconds": time.perf_counter() - start,
        "summaries": summaries,
        "differences": grid_differences(rows, compared, end),
        "rows": rows,
    }
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    write_result_json(out / "symmetry_grid.json", result)
    markdown = grid_markdown(result)
    (out / "symmetry_grid.md").write_text(markdown)
    print(markdown)
    print(f"{result['total_seconds']:.0f} s; wrote {out / 'symmetry_grid.json'} and .md")


def grid_markdown(result: dict) -> str:
    """The grid study as markdown: how it was made, the per-group table, the differences."""
    setting = result["setting"]
    midpoint, end = setting["midpoint"], setting["end"]
    pairs = ", ".join(f"{a} and {b}" for a, b in setting["seed_pairs"])
    lines = [
        f"`{result['command']}` ({result['total_seconds']:.0f} s, one thread)",
        "",
        f"DQN Q-networks of `{setting['runs_dir']}`: the parents (`none`) at step {midpoint} "
        f"(before any intervention) and {end}, each midpoint branch at {end}; seed pairs "
        f"{pairs} where both runs have finished; probe: {setting['probe']}; "
        f"{setting['alphas']} points per path. Mean ± 95% t half-width over pairs.",
        "",
    ]
    if result["provenance_problem"]:
        lines += [f"Provenance: {result['provenance_problem']}.", ""]
    lines += [
        "| method | step | pairs | identified: same index / chance / matched "
        "| correlation identity / optimal / random | gap "
        "| input dimension at 90% (of inputs) per hidden layer | peak: unaligned / weight-matched "
        "| relative %: unaligned / weight-matched |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in result["summaries"]:
        identified = " / ".join(
            fmt(s[k]) for k in ("identified", "identified_chance", "identified_matched")
        )
        corr = " / ".join(fmt(s[k], 2) for k in ("corr_identity", "corr_optimal", "corr_random"))
        dims = "; ".join(
            f"{name}: {fmt(value, 1)} ({s['inputs'][name]})"
            for name, value in s["dimension"].items()
        )
        peaks = " / ".join(fmt(s[label]["peak"], 3) for label in ("unaligned", "weight"))
        relative = " / ".join(fmt(s[label]["relative"], 0) for label in ("unaligned", "weight"))
        when = "before" if s["step"] <= midpoint else "end"
        lines.append(
            f"| {s['method']} | {s['step']} ({when}) | {s['pairs']} | {identified} | {corr} "
            f"| {fmt(s['gap'])} | {dims} | {peaks} | {relative} |"
        )
    lines += ["", *differences_table(result["differences"], end)]
    skipped = [f"- `{m}`: {why}." for m, why in result["methods_skipped"].items()]
    skipped += [
        f"- `{s['method']}` at {s['step']}, seeds {s['seeds'][0]} and {s['seeds'][1]}: {s['why']}."
        for s in result["pairs_skipped"]
    ]
    if skipped:
        lines += ["", "Not compared:", "", *skipped]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    probing = argparse.ArgumentParser(add_help=False)
    probing.add_argument("--probe", type=int, help="probe transitions (1024; seeds: 256)")
    probing.add_argument("--alphas", type=int, help="points on each path (21; seeds, grid: 11)")
    probing.add_argument("--seed", type=int, default=0, help="seed of the probe batch")
    probing.add_argument("--out", default=str(RESULTS), help="folder of the results")
    training = argparse.ArgumentParser(add_help=False, parents=[probing])
    training.add_argument("--hidden", type=int, help="SAC's hidden size (256; seeds: 64)")
    training.add_argument("--episodes", type=int, default=5, help="evaluation episodes per run")
    training.add_argument("--runs-dir", help="keep the runs here (default: a temporary folder)")
    studies = parser.add_subparsers(dest="study", required=True)
    one = studies.add_parser("intervention", parents=[training], help="one seed through FIRE etc.")
    one.add_argument("--steps", type=int, default=7_500)
    one.add_argument("--intervene-at", type=int, default=5_000)
    one.add_argument("--learning-starts", type=int, default=1_000)
    one.set_defaults(hidden=256, probe=1_024, alphas=21)
    many = studies.add_parser("seeds", parents=[training], help="pairs of seeds, several steps")
    many.add_argument("--agents", nargs="+", choices=sorted(AGENTS), default=["sac", "dqn"])
    many.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    many.add_argument("--pairs", type=int, default=2, help="pairs of seeds (1 and 2, 3 and 4, …)")
    many.add_argument("--scale", type=float, default=1.0, help="multiplies every step count")
    many.add_argument(
        "--render",
        metavar="JSON",
        help="rewrite the .md beside a saved symmetry_seeds.json, train none",
    )
    many.set_defaults(hidden=64, probe=256, alphas=11)
    grid = studies.add_parser("grid", parents=[probing], help="pairs of seeds of a trained grid")
    grid.add_argument("runs_dir", metavar="RUNS_DIR", help="the runs folder of midpoint_minatar")
    grid.add_argument("--pairs", type=int, default=4, help="seed pairs (1 and 2, 3 and 4, …)")
    grid.set_defaults(probe=1_024, alphas=11)
    options = parser.parse_args()
    if options.study in ("seeds", "grid") and options.pairs < 1:
        parser.error("--pairs must be at least 1")
    if options.study == "intervention":
        if not options.intervene_at < options.steps < 2 * options.intervene_at:
            parser.error("need intervene-at < steps < 2 × intervene-at (one intervention)")
    elif (
        options.study == "seeds"
        and min(
            SEEDS_SCHEDULES[agent].scaled(options.scale).learning_starts for agent in options.agents
        )
        < 10
    ):
        parser.error(f"--scale {options.scale} leaves under 10 steps before learning; raise it")
    torch.set_num_threads(1)
    if options.study == "seeds" and options.render:
        run_cli(lambda: render_seeds(Path(options.render)))
        return
    study = {"intervention": intervention_study, "seeds": seeds_study, "grid": grid_study}
    run_cli(lambda: study[options.study](options))


if __name__ == "__main__":
    main()
