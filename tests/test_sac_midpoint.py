"""benchmarks/evidence/sac_midpoint.py: the tiny grid end to end on the CPU (parents with
their buffer, branches from the midpoint checkpoint, the analysis), and the analysis on
synthetic run folders whose measures are known."""

import json

import numpy as np
import pytest

pytest.importorskip("mujoco")
from benchmarks._rl_grid import Refused  # noqa: E402
from benchmarks.evidence import sac_midpoint  # noqa: E402

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_the_tiny_grid_branches_every_seed_at_its_midpoint(tmp_path, monkeypatch):
    runs, out = tmp_path / "runs", tmp_path / "out" / "sac"
    args = ["--scale", "tiny", "--seeds", "2", "--methods", "none,fire", "--runs", str(runs)]
    args += ["--out", str(out), "--allow-mixed-commits"]  # the tests run on any tree
    result = sac_midpoint.main(args)
    mid = sac_midpoint.SCALES["tiny"].midpoint
    for seed in (1, 2):
        parent = json.loads((runs / "parent" / f"seed_{seed}" / "config.json").read_text())
        assert parent["save_buffer"] and parent["total_timesteps"] == mid
        for method in ("none", "fire"):
            run_dir = runs / method / f"seed_{seed}"
            config = json.loads((run_dir / "config.json").read_text())
            assert config["branch"]["step"] == mid and config["branch"]["buffer"] == "saved"
            summary = json.loads((run_dir / "summary.json").read_text())
            assert summary["interventions"] == (
                {"actor": 1, "critic": 1} if method == "fire" else {"actor": 0, "critic": 0}
            )
        # the branches of a seed share the parent's evaluations up to the midpoint
        curves = [result["branches"][m][seed]["curve"] for m in ("none", "fire")]
        before = [[v for s, v in zip(*c, strict=True) if s <= mid] for c in curves]
        assert before[0] == before[1] and len(before[0]) >= 3
    assert result["family"] == ["fire − none"]
    assert set(result["comparisons"]) == {f"{k}: fire − none" for k in sac_midpoint.MEASURES}
    assert "| `fire` | 2 |" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").stat().st_size > 0
    # run again: every run has finished, so nothing trains
    trained = []
    monkeypatch.setattr(sac_midpoint, "train", lambda cmds, *_: trained.extend(cmds))
    sac_midpoint.main(args)
    assert trained == []


def write_run(folder, seed, returns, every, branch_step, commit=COMMIT):
    folder.mkdir(parents=True)
    config = {"seed": seed, "resolved": {"git_commit": commit}}
    if branch_step is not None:
        config["branch"] = {"step": branch_step, "buffer": "saved"}
    (folder / "config.json").write_text(json.dumps(config))
    rows = [{"step": every * (i + 1), "eval/episodic_return": r} for i, r in enumerate(returns)]
    (folder / "scalars.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "summary.json").write_text(json.dumps({"status": "finished"}))


SCALE = sac_midpoint.Scale(
    env="x",
    total=1000,
    seeds=2,
    eval_every=100,
    eval_episodes=1,
    dip_window=200,
    checkpoint_every=1000,
    flags=(),
)
BEFORE = [1.0, 2.0, 6.0, 8.0, 10.0]  # steps 100..500: before the midpoint, mean of 3 = 8
AFTER = {  # steps 600..1000
    "none": [9.0, 10.0, 11.0, 12.0, 12.0],
    "fire": [2.0, 3.0, 4.0, 6.0, 6.0],
}


def synthetic_grid(root):
    for seed in (1, 2):
        write_run(root / "parent" / f"seed_{seed}", seed, BEFORE, 100, None)
        for method, after in AFTER.items():
            returns = BEFORE + [v + seed for v in after]  # seed 2 one higher after
            write_run(root / method / f"seed_{seed}", seed, returns, 100, 500)


def test_the_measures_of_synthetic_branches(tmp_path):
    synthetic_grid(tmp_path)
    result = sac_midpoint.analyse(tmp_path, ["none", "fire"], SCALE, allow_mixed=False)
    none, fire = result["branches"]["none"], result["branches"]["fire"]
    assert none[1]["before"] == fire[1]["before"] == pytest.approx(8.0)
    # dip: 8 minus the lowest evaluation at steps 600 and 700
    assert none[1]["dip"] == pytest.approx(8 - 10) and fire[2]["dip"] == pytest.approx(8 - 4)
    # none is back above 8 at its first evaluation after the midpoint (step 600)
    assert none[1]["recovery"] == 100 and none[1]["recovered"]
    # FIRE's seed 1 (3, 4, 5, 7, 7) never reaches 8: censored at the second half's 500 steps;
    # its seed 2 (4, 5, 6, 8, 8) reaches it at step 900
    assert fire[1]["recovery"] == 500 and not fire[1]["recovered"]
    assert fire[2]["recovery"] == 400 and fire[2]["recovered"]
    assert result["summary"]["fire"]["recovered"] == 1
    assert fire[1]["auc_after"] == pytest.approx(np.mean(AFTER["fire"]) + 1)
    assert fire[2]["final"] == pytest.approx(np.mean(AFTER["fire"][-3:]) + 2)
    test = result["comparisons"]["auc_after: fire − none"]
    assert test["paired"]["mean"] == pytest.approx(np.mean(AFTER["fire"]) - np.mean(AFTER["none"]))
    assert result["provenance"]["problem"] is None


def test_a_grid_of_two_commits_or_a_foreign_branch_is_refused(tmp_path, capsys):
    synthetic_grid(tmp_path)
    config = tmp_path / "fire" / "seed_2" / "config.json"
    data = json.loads(config.read_text())
    data["resolved"]["git_commit"] = "f" * 40
    config.write_text(json.dumps(data))
    with pytest.raises(Refused, match="come from 2 commits"):
        sac_midpoint.analyse(tmp_path, ["none", "fire"], SCALE, allow_mixed=False)
    mixed = sac_midpoint.analyse(tmp_path, ["none", "fire"], SCALE, allow_mixed=True)
    assert "2 commits" in sac_midpoint.markdown(mixed, "cmd")
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
