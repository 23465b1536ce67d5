"""benchmarks/evidence/sac_midpoint.py: the tiny grid end to end on the CPU (a parent with its
buffer, branches from its midpoint checkpoint, the analysis, a second call that trains
nothing), and the analysis on synthetic run folders whose measures are known."""

import json

import numpy as np
import pytest

pytest.importorskip("mujoco")
from benchmarks import _rl_grid  # noqa: E402
from benchmarks._rl_grid import Refused  # noqa: E402
from benchmarks.evidence import sac_midpoint  # noqa: E402
from experiments.runs import read_scalars  # noqa: E402

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_the_tiny_grid_branches_at_its_midpoint_and_a_second_call_trains_nothing(
    tmp_path, monkeypatch
):
    runs, out = tmp_path / "runs", tmp_path / "out" / "sac"
    args = ["--scale", "tiny", "--seeds", "1", "--methods", "none,fire", "--runs", str(runs)]
    args += ["--out", str(out), "--allow-mixed-commits"]  # the tests run on any tree
    result = sac_midpoint.main(args)
    mid = sac_midpoint.SCALES["tiny"].midpoint
    parent = json.loads((runs / "parent" / "seed_1" / "config.json").read_text())
    assert parent["save_buffer"] and parent["total_timesteps"] == mid
    before = []
    for method in ("none", "fire"):
        run_dir = runs / method / "seed_1"
        config = json.loads((run_dir / "config.json").read_text())
        assert config["branch"]["step"] == mid and config["branch"]["buffer"] == "saved"
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["interventions"] == (
            {"actor": 1, "critic": 1} if method == "fire" else {"actor": 0, "critic": 0}
        )
        steps, values = read_scalars(run_dir / "scalars.jsonl")["eval/episodic_return"]
        before.append(values[steps <= mid].tolist())
    # the branches share the parent's evaluations up to the midpoint
    assert before[0] == before[1] and len(before[0]) >= 2
    data = result["protocols"]["midpoint"]
    assert data["interventions"] == [mid] and data["seeds"] == {"none": [1], "fire": [1]}
    assert list(data["comparisons"]["dip"]) == ["fire − none"]
    assert "| fire | 1 |" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").stat().st_size > 0
    # every run has finished: a second call trains nothing
    monkeypatch.setattr(_rl_grid, "train_here", lambda *a: pytest.fail(f"trained {a}"))
    sac_midpoint.main(args)


def write_run(folder, method, seed, returns, branch_step, commit=COMMIT):
    folder.mkdir(parents=True)
    config = {"agent": "sac", "env": "x", "method": method, "seed": seed,
              "resolved": {"git_commit": commit}}  # fmt: skip
    if branch_step is not None:
        config["branch"] = {"step": branch_step, "buffer": "saved"}
    (folder / "config.json").write_text(json.dumps(config))
    rows = [{"step": 100 * (i + 1), "eval/episodic_return": r} for i, r in enumerate(returns)]
    (folder / "scalars.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "summary.json").write_text(json.dumps({"status": "finished"}))


SCALE = sac_midpoint.Scale(
    env="x",
    total=1000,
    seeds=2,
    eval_every=100,
    eval_episodes=1,
    windows=(300, 200),
    checkpoint_every=1000,
    flags=(),
)
BEFORE = [1.0, 2.0, 6.0, 8.0, 10.0]  # steps 100..500: the level of (200, 500] is 8
AFTER = {  # steps 600..1000
    "none": [9.0, 10.0, 11.0, 12.0, 12.0],
    "fire": [2.0, 3.0, 4.0, 6.0, 6.0],
}


def synthetic_grid(root):
    for seed in (1, 2):
        write_run(root / "parent" / f"seed_{seed}", "none", seed, BEFORE, None)
        for method, after in AFTER.items():
            returns = BEFORE + [v + seed for v in after]  # seed 2 one higher after
            write_run(root / method / f"seed_{seed}", method, seed, returns, 500)


def test_the_measures_of_synthetic_branches(tmp_path):
    synthetic_grid(tmp_path)
    result = sac_midpoint.analyse(tmp_path, ["none", "fire"], SCALE, allow_mixed=False)
    data = result["protocols"]["midpoint"]
    groups, comparisons = data["groups"], data["comparisons"]
    # dip: the mean of steps 600 and 700 minus 8; none's seeds 2.5 and 3.5, FIRE's -4.5, -3.5
    assert groups["none"]["dip"]["mean"] == pytest.approx(3.0)
    assert groups["fire"]["dip"]["mean"] == pytest.approx(-4.0)
    # none is back at 8 at its first evaluation after the midpoint; FIRE's seed 1 (3, 4, 5, 7,
    # 7) never is (censored at the second half's 500 steps), its seed 2 (4, 5, 6, 8, 8) at 900
    assert groups["none"]["recovery"]["mean"] == 100 and groups["none"]["recovered"] == 1.0
    assert groups["fire"]["recovery"]["mean"] == pytest.approx((500 + 400) / 2)
    assert groups["fire"]["recovered"] == 0.5
    assert groups["fire"]["auc_after"]["mean"] == pytest.approx(np.mean(AFTER["fire"]) + 1.5)
    assert groups["fire"]["final"]["mean"] == pytest.approx(np.mean(AFTER["fire"][-3:]) + 1.5)
    auc = comparisons["auc_after"]["fire − none"]
    assert auc["paired"]["mean"] == pytest.approx(np.mean(AFTER["fire"]) - np.mean(AFTER["none"]))
    assert auc["paired"]["half"] == pytest.approx(0.0, abs=1e-9)  # the same gap in both seeds
    assert result["provenance"]["problem"] is None
    assert set(result["provenance"]["runs_by_commit"][COMMIT]) >= {"parent/seed_1", "fire/seed_2"}


def test_a_grid_of_two_commits_or_a_foreign_branch_is_refused(tmp_path):
    synthetic_grid(tmp_path)
    config = tmp_path / "fire" / "seed_2" / "config.json"
    data = json.loads(config.read_text())
    data["resolved"]["git_commit"] = "f" * 40
    config.write_text(json.dumps(data))
    with pytest.raises(Refused, match="come from 2 commits"):
        sac_midpoint.analyse(tmp_path, ["none", "fire"], SCALE, allow_mixed=False)
    mixed = sac_midpoint.analyse(tmp_path, ["none", "fire"], SCALE, allow_mixed=True)
    assert "come from 2 commits" in sac_midpoint.markdown({"command": "cmd", **mixed})
    data["branch"]["step"] = 400
    config.write_text(json.dumps(data))
    with pytest.raises(Refused, match="did not branch at step 500 with its parent's replay"):
        sac_midpoint.analyse(tmp_path, ["none", "fire"], SCALE, allow_mixed=True)


def test_methods_without_none_are_refused_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        sac_midpoint.main(["--methods", "fire,reset", "--runs", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "none among them" in err
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.iterdir())
