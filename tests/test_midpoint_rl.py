"""benchmarks/midpoint_rl.py (and its measures, benchmarks/_midpoint.py) on a synthetic grid
with known dips, recoveries and finals; the plan of benchmarks/evidence/midpoint_minatar.py."""

import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks import _midpoint, midpoint_rl
from benchmarks.evidence import midpoint_minatar

STEPS = range(5_000, 100_001, 5_000)


def make_run(folder: Path, name: str, seed: int, evals: dict, commit: str = "c0ffee") -> None:
    run = folder / name
    run.mkdir(parents=True)
    config = {"agent": "dqn", "env": "minatar_space_invaders", "method": name.split("-")[1],
              "seed": seed, "resolved": {"git_commit": commit}}  # fmt: skip
    (run / "config.json").write_text(json.dumps(config))
    summary = {"status": "finished", "total_timesteps": 100_000}
    (run / "summary.json").write_text(json.dumps(summary))
    rows = [json.dumps({"step": s, "eval/episodic_return": v}) for s, v in evals.items()]
    (run / "scalars.jsonl").write_text("\n".join(rows) + "\n")


def grid(folder: Path, seeds: int = 4, commit_of=lambda name: "c0ffee") -> None:
    """Parents rise linearly with seed noise; FIRE dips by 4 for 10k steps after the midpoint;
    reset drops to 0 at the midpoint and climbs back by 5 per evaluation."""
    rng = np.random.default_rng(1)
    for seed in range(1, seeds + 1):
        parent = {s: s / 5_000 + rng.normal(0, 1) for s in STEPS}
        fire = {s: v - 4.0 * (50_000 < s <= 60_000) for s, v in parent.items()}
        reset = {s: v if s <= 50_000 else min(v, 5.0 * (s - 50_000) / 5_000)
                 for s, v in parent.items()}  # fmt: skip
        for name, evals in (
            (f"parent-none-s{seed}", parent),
            (f"midpoint-fire-s{seed}", fire),
            (f"midpoint-reset-s{seed}", reset),
        ):
            make_run(folder, name, seed, evals, commit_of(name))


def test_measures_of_a_known_dip_and_recovery():
    steps = np.array(list(STEPS))
    values = np.where(steps <= 50_000, 10.0, 0.0) + np.where(steps >= 70_000, 12.0, 0.0)
    windows = (midpoint_rl.BEFORE, midpoint_rl.AFTER)
    m = _midpoint.measures((steps, values), [50_000], 100_000, *windows)
    assert m["dip"] == -10.0  # 0 after against 10 before
    assert m["recovery"] == 20_000 and m["recovered"] == 1.0  # 12 at 70k: back above 10
    assert m["auc_after"] == pytest.approx(np.mean(values[steps > 50_000]))
    assert m["final"] == 12.0
    drop = (steps, np.where(steps <= 50_000, 10.0, 0.0))
    periodic = _midpoint.measures(drop, [25_000, 50_000, 75_000], 100_000, *windows)
    # 25k: level 10, 10 again at 30k; 50k: never back to 10 before the next intervention
    # (the whole 25k counted); 75k: level 0, reached at 80k
    assert periodic["recovery"] == pytest.approx((5_000 + 25_000 + 5_000) / 3)
    assert periodic["recovered"] == pytest.approx(2 / 3)


def test_an_in_run_interventions_own_evaluation_is_not_counted_before_it():
    # a run branched at 25k that acts again at 50k: its evaluation at 50k comes after acting
    steps = np.array(list(STEPS))
    values = np.where((steps == 50_000) | (steps == 55_000), 0.0, 10.0)
    windows = (midpoint_rl.BEFORE, midpoint_rl.AFTER)
    m = _midpoint.measures((steps, values), [25_000, 50_000], 100_000, *windows)
    # 25k: no dip; 50k: level 10 (40k, 45k), after 0 and 10 (55k, 60k): dip -5
    assert m["dip"] == pytest.approx((0.0 - 5.0) / 2)
    # the branch point's own evaluation (the parent's) counts before it
    branch = (steps, np.where(steps == 25_000, 40.0, 10.0))
    assert _midpoint.measures(branch, [25_000], 100_000, *windows)["dip"] == pytest.approx(-10.0)


def test_the_family_is_named_from_the_methods_alone():
    assert list(_midpoint.family(("fire", "reset", "cbp"))) == [
        "fire − none", "reset − none", "cbp − none", "fire − reset", "fire − cbp",
    ]  # fmt: skip
    assert list(_midpoint.family(("reset", "cbp"))) == ["reset − none", "cbp − none"]
    assert list(_midpoint.family(("fire_every_layer", "fire"), focus="fire_every_layer")) == [
        "fire_every_layer − none", "fire − none", "fire_every_layer − fire",
    ]  # fmt: skip


def test_the_every_layer_follow_up_reads_the_midpoint_runs_and_compares_its_focus(tmp_path):
    grid(tmp_path / "runs")
    before = midpoint_rl.main([str(tmp_path / "runs"), "--out", str(tmp_path / "a")])
    assert "every_layer" not in before["protocols"]  # no run of its own: not analysed
    rng = np.random.default_rng(2)
    for seed in range(1, 5):  # dips by 1 where the midpoint's FIRE dips by 4
        evals = {s: s / 5_000 + rng.normal(0, 1) - 1.0 * (50_000 < s <= 60_000) for s in STEPS}
        make_run(tmp_path / "runs", f"midpoint-fire_every_layer-s{seed}", seed, evals)
    result = midpoint_rl.main([str(tmp_path / "runs"), "--out", str(tmp_path / "b")])
    follow_up = result["protocols"]["every_layer"]
    assert follow_up["interventions"] == [50_000]
    assert set(follow_up["groups"]) == {"none", "fire_every_layer", "fire", "reset"}
    dip = follow_up["comparisons"]["dip"]
    assert list(dip) == [
        "fire_every_layer − none", "fire − none", "reset − none",
        "fire_every_layer − fire", "fire_every_layer − reset",
    ]  # fmt: skip
    assert dip["fire_every_layer − fire"]["paired"]["mean"] > 0  # a smaller dip than FIRE's
    # the midpoint protocol's family is unchanged by the follow-up's runs
    assert (
        result["protocols"]["midpoint"]["comparisons"]
        == before["protocols"]["midpoint"]["comparisons"]
    )


def test_a_synthetic_grid_gives_the_planted_differences(tmp_path):
    grid(tmp_path / "runs")
    result = midpoint_rl.main([str(tmp_path / "runs"), "--out", str(tmp_path / "out" / "mp")])
    midpoint = result["protocols"]["midpoint"]
    assert "periodic" not in result["protocols"]  # no periodic branch ran
    dip = midpoint["comparisons"]["dip"]
    assert dip["fire − none"]["paired"]["mean"] == pytest.approx(-4.0)
    assert dip["fire − none"]["paired"]["half"] == pytest.approx(0.0, abs=1e-9)  # same per seed
    assert dip["fire − reset"]["paired"]["mean"] > 0  # reset drops further
    final = midpoint["comparisons"]["final"]["fire − none"]["paired"]
    assert final["mean"] == pytest.approx(0.0, abs=1e-9)  # FIRE's dip is over by the end
    for tests in midpoint["comparisons"].values():  # injection and cbp did not run: NaN, counted
        assert len(tests) == 11
        finite = [t for t in tests.values() if np.isfinite(t["paired"]["p"])]
        assert all(t["holm_p"] >= t["paired"]["p"] for t in finite)
    text = (tmp_path / "out" / "mp.md").read_text()
    assert "| fire − none | -4.0" in text and (tmp_path / "out" / "mp.png").exists()


def test_a_grid_of_several_commits_is_refused_unless_allowed(tmp_path, capsys):
    grid(tmp_path / "runs", commit_of=lambda name: "beef" if "reset" in name else "c0ffee")
    argv = [str(tmp_path / "runs"), "--out", str(tmp_path / "mp")]
    with pytest.raises(SystemExit) as exit_info:
        midpoint_rl.main(argv)
    assert exit_info.value.code == 2
    assert "come from 2 commits" in capsys.readouterr().err
    result = midpoint_rl.main([*argv, "--allow-mixed-commits"])
    assert set(result["provenance"]["runs_by_commit"]) == {"c0ffee", "beef"}


def test_the_grid_plans_parents_first_and_its_flags_parse(tmp_path):
    from agents import dqn
    from agents.cli import parse_args

    common = midpoint_minatar.common_flags(100_000, 5_000)
    runs = midpoint_minatar.plan(["midpoint", "periodic"], [1, 2], 100_000, tmp_path, common)
    assert [r.name for r in runs[:2]] == ["parent-none-s1", "parent-none-s2"]
    assert len(runs) == 2 + 2 * 6 + 2 * 3
    assert all(r.parent is None for r in runs[:2])
    assert all(r.parent == f"parent-none-s{r.name[-1]}" for r in runs[2:])
    sp = next(r for r in runs if r.name == "midpoint-shrink_perturb-s2")
    assert str(tmp_path / "parent-none-s2/checkpoints/step_50000.pt") in sp.argv
    periodic = next(r for r in runs if r.name == "periodic-fire-s1")
    assert str(tmp_path / "parent-none-s1/checkpoints/step_25000.pt") in periodic.argv
    action, argv = sp.next_step()  # the command of a run not started yet: its folder last
    assert action == "start" and argv[-4:] == ["--runs-dir", str(tmp_path), "--run-name", sp.name]

    def parsed(run):  # every run's flags parse (the branch source aside, checked at start)
        flags = [a for a in run.argv if not a.endswith(".pt") and a != "--branch-from"]
        return parse_args(dqn.Args, "dqn", flags)

    assert all(parsed(run).total_timesteps == 100_000 for run in runs)
    config = parsed(sp).plasticity  # the FIRE paper's SR-DQN form
    assert (config.shrink, config.perturb, config.perturb_target) == (0.2, 0.8, "initial")
    assert (config.shrink_perturb_linear, config.clear_optimizer) == ("initial", "none")
    assert config.shrink_perturb_at == [50_000] and config.shrink_perturb_every == 0
    assert parsed(periodic).plasticity.fire_at == [25_000, 50_000, 75_000]
    # the follow-up: its own branches only, named beside the midpoint runs it is read with
    follow_up = midpoint_minatar.plan(["every_layer"], [1], 100_000, tmp_path, common)
    assert [r.name for r in follow_up] == ["parent-none-s1", "midpoint-fire_every_layer-s1"]
    every_layer = parsed(follow_up[1])
    assert every_layer.method == "fire" and every_layer.plasticity.fire_linear == "fire"
    assert every_layer.plasticity.fire_at == [50_000] and every_layer.plasticity.fire_every == 0
    assert str(tmp_path / "parent-none-s1/checkpoints/step_50000.pt") in follow_up[1].argv
