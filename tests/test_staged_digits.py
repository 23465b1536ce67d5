"""benchmarks/staged_digits.py at a tiny budget: the drop is what it says, ``none`` loses
nothing at a boundary, ``reset`` starts over from a fresh network's accuracy."""

import json

import pytest

pytest.importorskip("sklearn")
from benchmarks import staged_digits  # noqa: E402


def test_two_stages_and_their_boundary(tmp_path):
    args = ["--seeds", "2", "--stages", "2", "--updates-per-stage", "100", "--width", "32"]
    args += ["--allow-dirty"]  # the tests run on whatever tree they are in
    staged_digits.main([*args, "--methods", "none,fire,reset", "--results", str(tmp_path)])
    data = json.loads((tmp_path / "staged_digits.json").read_text())
    assert data["family"] == ["fire − none", "fire − reset", "reset − none"]
    runs = {(r["method"], r["seed"]): r for r in data["runs"]}
    assert set(runs) == {(m, s) for m in ("none", "fire", "reset") for s in (0, 1)}
    for run in runs.values():
        first, second = run["stages"]
        # stage 2 adds the second chunk: all of the 70% training split (1,257 of 1,797 images)
        assert (first["samples"], second["samples"]) == (629, 1257)
        assert run["drops"] == pytest.approx([first["end"] - second["after_boundary"]], abs=1e-5)
        assert len(run["curve"]) == 1 + 4 + 1 + 4  # start, 4 evaluations, boundary, 4
    for seed in (0, 1):
        none, reset = runs["none", seed], runs["reset", seed]
        # the boundary re-creates the optimizer only: none's network, and accuracy, are intact
        assert none["drops"] == [0.0]
        # a reset network is a fresh draw: near chance (10 classes), like the network at step 0
        assert none["stages"][0]["end"] > 0.6
        assert abs(reset["stages"][1]["after_boundary"] - reset["curve"][0]) < 0.2
        assert reset["stages"][1]["after_boundary"] < 0.3
        # FIRE and reset act once, at the one boundary
        assert runs["fire", seed]["interventions"] == reset["interventions"] == 1
    # the statistics: Welch differences of the seeds' measures, Holm over 3 × 3 tests
    tests = data["comparisons"]
    assert len(tests) == 9 and all(t["holm_p"] >= t["p"] for t in tests.values())
    drop = tests["drop: reset − none"]
    mean_reset = sum(runs["reset", s]["drops"][0] for s in (0, 1)) / 2
    assert drop["mean"] == pytest.approx(mean_reset, abs=1e-5)  # the file keeps 6 digits
    # paired by seed: the mean of the per-seed differences, here of final accuracies
    final = tests["final: fire − reset"]["paired"]
    per_seed = [runs["fire", s]["stages"][-1]["end"] - runs["reset", s]["stages"][-1]["end"]
                for s in (0, 1)]  # fmt: skip
    assert final["n"] == 2 and final["mean"] == pytest.approx(sum(per_seed) / 2, abs=1e-5)
    assert data["commit"] and "| fire − reset |" in (tmp_path / "staged_digits.md").read_text()
    assert "| `reset` |" in (tmp_path / "staged_digits.md").read_text()
    assert (tmp_path / "staged_digits.png").stat().st_size > 0


def test_dash_and_redo_act_once_per_boundary_after_its_first_update(tmp_path):
    args = ["--seeds", "1", "--stages", "3", "--updates-per-stage", "50", "--width", "32"]
    data = staged_digits.main(
        [*args, "--methods", "none,dash,redo", "--allow-dirty", "--results", str(tmp_path)]
    )
    runs = {r["method"]: r for r in data["runs"]}
    # DASH shrinks once at each of the two boundaries, not before and not on a period
    assert runs["dash"]["interventions"] == 2
    # ReDo checks once per boundary: at most two recycling passes in 150 updates
    assert runs["redo"]["interventions"] <= 2
    for method in ("dash", "redo"):
        stages = runs[method]["stages"]
        # their drop is measured after the new stage's first update, where they act
        expected = [
            a["end"] - b["after_first_update"] for a, b in zip(stages, stages[1:], strict=False)
        ]
        assert runs[method]["drops"] == pytest.approx(expected, abs=1e-5)
    # before that update nothing has touched DASH's weights: the accuracy is the stage's end
    first, second, _ = runs["dash"]["stages"]
    assert second["after_boundary"] == pytest.approx(first["end"], abs=1e-6)


def test_a_dirty_tree_is_refused_unless_allowed(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(staged_digits, "git_commit", lambda: "0123abc+dirty")
    with pytest.raises(SystemExit) as exit_info:
        staged_digits.main(["--quick", "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "uncommitted changes" in err
    assert len(err.strip().splitlines()) == 1 and not list(tmp_path.iterdir())
    args = ["--quick", "--seeds", "1", "--methods", "none", "--allow-dirty"]
    data = staged_digits.main([*args, "--results", str(tmp_path)])
    assert data["commit"] == "0123abc+dirty"


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--methods", "none,nonsense", "'nonsense' is not a registered method"),
        ("--stages", "1", "at least 2 stages"),
        ("--seeds", "0", "run at least one seed"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_info:
        staged_digits.main([flag, value, "--results", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_the_default_methods_are_the_registered_ones_of_the_protocol():
    methods = staged_digits.Config().methods
    assert methods[:4] == ["none", "fire", "reset", "shrink_perturb"]
    assert {"parseval", "l2_init", "redo"} <= set(methods)
    assert all(staged_digits.accepted(m) for m in methods)
    assert not staged_digits.accepted("nonsense")
