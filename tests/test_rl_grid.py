"""benchmarks/_rl_grid.py: what a grid's run needs next (read from its folder), the order the
runner brings runs to their end in, and the processes it runs them in."""

import json

import pytest

from benchmarks import _rl_grid
from benchmarks._rl_grid import GridRun

CARTPOLE = ("--env", "CartPole-v1", "--total-timesteps", "64", "--learning-starts", "32")
CARTPOLE += ("--eval-every", "0", "--eval-episodes", "1", "--metrics-every", "0")


def test_a_run_starts_resumes_or_is_done_as_its_folder_says(tmp_path):
    run = GridRun(tmp_path, "fire/seed_1", "dqn", ("--method", "fire"))
    folder = ["--runs-dir", str(tmp_path / "fire"), "--run-name", "seed_1"]
    assert run.next_step() == ("start", ["--method", "fire", *folder])
    run.run_dir.mkdir(parents=True)
    (run.run_dir / "config.json").write_text("{}")  # started, no checkpoint yet: start again
    assert run.next_step() == ("start", ["--method", "fire", *folder])
    (run.run_dir / "checkpoints").mkdir()
    (run.run_dir / "checkpoints" / "step_32.pt").write_bytes(b"")
    assert run.next_step() == ("resume", ["--resume", str(run.run_dir)])
    (run.run_dir / "summary.json").write_text(json.dumps({"status": "finished"}))
    assert run.next_step() == ("done", [])
    assert _rl_grid.describe([run]) == ["done   fire/seed_1"]


def test_parents_run_first_and_a_failed_parent_keeps_its_branches_from_starting(
    tmp_path, monkeypatch, capsys
):
    started = []

    def train_here(agent, argv):
        name = argv[-1]
        started.append(name)
        if name == "bad":
            return 2
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "summary.json").write_text(json.dumps({"status": "finished"}))
        return 0

    monkeypatch.setattr(_rl_grid, "train_here", train_here)
    stale = tmp_path / "good" / "config.json"  # a start that left no checkpoint: cleared
    stale.parent.mkdir()
    stale.write_text("{}")
    runs = [
        GridRun(tmp_path, "child-of-bad", "dqn", (), "bad"),
        GridRun(tmp_path, "bad", "dqn", ()),
        GridRun(tmp_path, "child-of-good", "dqn", (), "good"),
        GridRun(tmp_path, "good", "dqn", ()),
    ]
    assert _rl_grid.run_grid(runs, jobs=1) == 2  # bad, and its branch never started
    assert started == ["bad", "good", "child-of-good"]
    assert not stale.exists()
    assert "2 runs did not finish (bad, child-of-bad)" in capsys.readouterr().err
    started.clear()
    assert _rl_grid.run_grid(runs[2:], jobs=1) == 0 and started == []  # all done already


def test_processes_write_logs_kept_only_for_a_failed_run(tmp_path):
    runs = [
        GridRun(tmp_path, "good", "dqn", CARTPOLE),
        GridRun(tmp_path, "bad", "dqn", ("--env", "CartPole-v1", "--no-such-flag")),
    ]
    assert _rl_grid.run_grid(runs, jobs=2) == 1
    assert json.loads((tmp_path / "good" / "summary.json").read_text())["status"] == "finished"
    assert not (tmp_path / "good.out").exists()
    assert "no-such-flag" in (tmp_path / "bad.out").read_text()


def test_an_unfinished_grid_stops_before_the_analysis(tmp_path, monkeypatch):
    monkeypatch.setattr(_rl_grid, "train_here", lambda agent, argv: 1)
    with pytest.raises(_rl_grid.Refused, match="1 runs did not finish: fix what stopped them"):
        _rl_grid.complete([GridRun(tmp_path, "a", "dqn", ())], jobs=1)
