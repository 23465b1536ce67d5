"""benchmarks/symmetry_study.py grid: a trained midpoint grid's Q-networks compared across seed
pairs, on a tiny grid of CartPole DQN runs laid out as benchmarks.evidence.midpoint_minatar
lays out its runs."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agents import dqn
from plasticity import MethodConfig

ROOT = Path(__file__).resolve().parents[1]
STEPS = 300  # checkpoints at 150 (the midpoint) and 300 (the end)


def tiny_dqn(root: Path, name: str, seed: int, **overrides) -> Path:
    args = dqn.Args(
        env="CartPole-v1",
        seed=seed,
        total_timesteps=STEPS,
        learning_starts=100,
        buffer_size=1000,
        batch_size=32,
        train_frequency=2,
        target_network_frequency=50,
        checkpoint_every=STEPS // 2,
        keep_checkpoints=0,
        save_buffer=True,
        eval_every=0,
        eval_episodes=0,
        metrics_every=0,
        runs_dir=str(root),
        run_name=name,
        device="cpu",
        verbose=0,
        **overrides,
    )
    return Path(dqn.main(args)["run_dir"])


@pytest.fixture(scope="module")
def grid(tmp_path_factory) -> Path:
    """Seeds 1 to 4: every parent and FIRE branch a copy of one seed-1 run, except parent 4,
    trained with seed 2; parent 5 without parent 6; a reset pair whose seed 2 has not
    finished; an injection pair (its head offset lives outside the Q-network)."""
    trained, runs = tmp_path_factory.mktemp("trained"), tmp_path_factory.mktemp("grid")
    seed_1 = tiny_dqn(trained, "seed1", 1)
    seed_2 = tiny_dqn(trained, "seed2", 2)
    injection = tiny_dqn(
        trained, "injection", 1, method="injection", plasticity=MethodConfig(injection_at=[150])
    )
    copies = {f"parent-none-s{s}": seed_1 for s in (1, 2, 3, 5)} | {"parent-none-s4": seed_2}
    copies |= {f"midpoint-fire-s{s}": seed_1 for s in (1, 2, 3, 4)}
    copies |= {f"midpoint-reset-s{s}": seed_1 for s in (1, 2)}
    copies |= {f"midpoint-injection-s{s}": injection for s in (1, 2)}
    for name, source in copies.items():
        shutil.copytree(source, runs / name)
    summary = runs / "midpoint-reset-s2" / "summary.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "status": "running"}))
    return runs


def test_grid_compares_the_finished_pairs(grid, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.symmetry_study", "grid", str(grid)]
        + ["--out", str(tmp_path), "--probe", "64", "--alphas", "5", "--pairs", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    study = json.loads((tmp_path / "symmetry_grid.json").read_text())
    assert (study["setting"]["midpoint"], study["setting"]["end"]) == (150, 300)
    compared = [(r["method"], r["step"], r["seeds"]) for r in study["rows"]]
    assert compared == [
        ("none", 150, [1, 2]), ("none", 150, [3, 4]),
        ("none", 300, [1, 2]), ("none", 300, [3, 4]),
        ("fire", 300, [1, 2]), ("fire", 300, [3, 4]),
    ]  # fmt: skip
    assert "injection" in study["methods_skipped"]
    why = {(s["method"], tuple(s["seeds"])): s["why"] for s in study["pairs_skipped"]}
    assert why[("none", (5, 6))] == "parent-none-s6 does not exist"
    assert why[("reset", (1, 2))] == "midpoint-reset-s2 has not finished"

    for row in study["rows"]:
        if row["seeds"] == [1, 2] or row["method"] == "fire":  # a network with itself
            assert row["corr_identity"] == pytest.approx(row["corr_optimal"])
            assert row["gap"] == pytest.approx(0, abs=1e-6)
            assert row["identified"] == pytest.approx(row["identified_matched"])
            assert row["identified"] > row["identified_chance"]
            assert row["unaligned"]["peak"] == pytest.approx(0, abs=1e-6)
        else:  # independent initializations: B's units are not in A's order
            assert row["gap"] > 0.05 and row["identified"] < row["identified_matched"]

    summary = {(s["method"], s["step"]): s for s in study["summaries"]}
    assert summary["none", 300]["pairs"] == 2 and summary["none", 300]["gap"]["n"] == 2
    assert set(summary["none", 300]["dimension"]) == {"network.1", "network.3"}
    # FIRE's pairs are copies, none's second pair is not: fire − none is minus that pair's gap
    gap_34 = study["rows"][3]["gap"]
    fire_gap = study["differences"]["gap: fire − none"]
    assert fire_gap["n"] == 2 and fire_gap["mean"] == pytest.approx(-gap_34 / 2, abs=1e-5)
    assert set(study["differences"]) == {
        "identified: fire − none", "gap: fire − none",
        "identified: reset − none", "gap: reset − none",
    }  # fmt: skip
    assert study["differences"]["gap: reset − none"]["n"] == 0
    table = (tmp_path / "symmetry_grid.md").read_text()
    assert "| fire | 300 (end) | 2 |" in table and "Holm over the 4 comparisons" in table


def test_grid_refuses_a_folder_without_parents(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.symmetry_study", "grid", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "parent-none-s<seed>" in result.stderr


def seeds_row(method: str, seeds: list[int], step: int, gap: float) -> dict:
    space = {"network.0": {"dimension": 2, "inputs": 4}}
    barrier = {"peak": 1.0, "relative": 10.0}
    return {
        "agent": "sac", "method": method, "seeds": seeds, "step": step, "gap": gap,
        "identified": 0.0, "identified_chance": 0.01, "identified_matched": 0.1,
        "corr_identity": 0.1, "corr_optimal": 0.1 + gap, "corr_random": 0.1,
        "subspace_a": space, "subspace_b": space, "unaligned": barrier, "weight": barrier,
    }  # fmt: skip


def test_seeds_render_adds_the_paired_family_at_the_last_checkpoint(tmp_path):
    from benchmarks import symmetry_study

    schedule = {"env": "Pendulum-v1", "network": "critic", "steps": 200, "learning_starts": 50,
                "intervene_at": 125, "checkpoint_every": 100}  # fmt: skip
    gaps = {("none", 1): 0.5, ("none", 3): 0.6, ("fire", 1): 0.6, ("fire", 3): 0.8}
    rows = [seeds_row(m, [s, s + 1], step, g + (step == 100)) for (m, s), g in gaps.items()
            for step in (100, 200)]  # fmt: skip
    result = {
        "command": "python -m benchmarks.symmetry_study seeds", "total_seconds": 1.0,
        "setting": {"schedules": {"sac": schedule}, "sac_hidden_size": 64, "alphas": 3,
                    "seed_pairs": [[1, 2], [3, 4]], "probe_transitions": 8, "probe": "a probe"},
        "rows": rows,
    }  # fmt: skip
    path = tmp_path / "symmetry_seeds.json"
    path.write_text(json.dumps(result))
    symmetry_study.render_seeds(path)
    text = path.with_suffix(".md").read_text()
    assert (
        "sac: Paired by seed pair, method − none at step 200; Holm over the 2 comparisons:" in text
    )
    # at step 200 the gap differs by 0.1 and 0.2 (step 100's +1 on every run cancels in pairs)
    assert "| gap: fire − none | 2 | +0.150 [" in text
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": []}')
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.symmetry_study", "seeds", "--render", str(bad)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "not a seeds study's results" in done.stderr
