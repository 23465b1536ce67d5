"""benchmarks/evidence/minatar_revisit.py: the tiny cycle grid end to end on the CPU, and the
analysis on synthetic run folders whose per-visit measures are known."""

import json

import pytest

pytest.importorskip("minatar")
from benchmarks._rl_grid import Refused  # noqa: E402
from benchmarks.evidence import minatar_revisit as revisit  # noqa: E402

GAMES = ["minatar_breakout", "minatar_space_invaders"]


def test_the_family_is_named_from_the_settings():
    assert revisit.family(["none", "fire", "reset"], GAMES, 4) == [
        "none: v3 − v1",
        "none: v4 − v2",
        "v3: fire − reset",
        "v3: fire − none",
        "v3: reset − none",
        "v4: fire − reset",
        "v4: fire − none",
        "v4: reset − none",
    ]
    # three games in five visits: only visits 4 and 5 come back to a game
    assert revisit.family(["none"], ["a", "b", "c"], 5) == ["none: v4 − v1", "none: v5 − v2"]


def test_the_tiny_cycle_switches_games_and_methods_act_at_each_switch(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out" / "revisit"
    args = ["--scale", "tiny", "--seeds", "1", "--methods", "none,fire", "--runs", str(runs)]
    result = revisit.main([*args, "--out", str(out), "--allow-mixed-commits"])
    scale = revisit.SCALES["tiny"]
    for method, switches in (("none", 0), ("fire", scale.visits - 1)):
        folder = runs / method / "seed_1"
        config = json.loads((folder / "config.json").read_text())
        assert config["env"] == "cycle:" + ",".join(GAMES) and not config["clear_buffer_on_switch"]
        summary = json.loads((folder / "summary.json").read_text())
        assert summary["interventions"] == {"q": switches}
        # every visit was evaluated
        visits = result["runs"][method][1]["visits"]
        assert len(visits) == scale.visits and all(v["auc"] == v["auc"] for v in visits)
    assert result["games"] == GAMES * 2
    assert set(result["comparisons"]) == {
        f"{key}: {name}" for key in revisit.MEASURES for name in result["family"]
    }
    assert "| `fire` |" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").stat().st_size > 0


def write_run(folder, seed, returns, every, commit="a" * 40):
    folder.mkdir(parents=True)
    config = {"agent": "dqn", "env": "cycle:" + ",".join(GAMES), "method": folder.parent.name,
              "seed": seed, "resolved": {"git_commit": commit}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    rows = [{"step": every * (i + 1), "eval/episodic_return": r} for i, r in enumerate(returns)]
    (folder / "scalars.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "summary.json").write_text(json.dumps({"status": "finished"}))


SCALE = revisit.Scale(switch_every=400, visits=4, seeds=2, eval_every=100, eval_episodes=1,
                      flags=())  # fmt: skip
RETURNS = {  # four evaluations a visit (steps 100..1600)
    "none": [1, 2, 3, 4] + [0, 1, 2, 3] + [2, 2, 2, 2] + [1, 1, 1, 1],
    "fire": [1, 2, 3, 4] + [0, 1, 2, 3] + [3, 4, 5, 6] + [2, 2, 3, 3],
}


def test_visit_measures_and_comparisons_of_synthetic_runs(tmp_path):
    for seed in (1, 2):
        for method, returns in RETURNS.items():
            write_run(tmp_path / method / f"seed_{seed}", seed, [r * seed for r in returns], 100)
    result = revisit.analyse(tmp_path, ["none", "fire"], GAMES, SCALE, allow_mixed=False)
    visits = result["runs"]["fire"][2]["visits"]  # seed 2: twice the returns
    assert visits[2] == {"entry": 6.0, "auc": 9.0, "end": 10.0}  # 6, 8, 10, 12
    assert visits[0]["end"] == pytest.approx(6.0)  # 4, 6, 8
    tests = result["comparisons"]
    # none's Breakout comes back (v3) with AUC 2·s against 2.5·s on the first visit
    assert tests["auc: none: v3 − v1"]["paired"]["mean"] == pytest.approx(-0.5 * 1.5)
    # at v3 FIRE enters at 3·s against none's 2·s
    assert tests["entry: v3: fire − none"]["paired"]["mean"] == pytest.approx(1.5)
    assert tests["end: v4: fire − none"]["mean"] == pytest.approx((8 / 3 - 1) * 1.5)
    assert result["summary"]["none"][1]["auc"]["mean"] == pytest.approx(1.5 * 1.5)


def test_runs_of_two_commits_are_refused_unless_allowed(tmp_path):
    write_run(tmp_path / "none" / "seed_1", 1, RETURNS["none"], 100)
    write_run(tmp_path / "none" / "seed_2", 2, RETURNS["none"], 100, commit="b" * 40)
    with pytest.raises(Refused, match="come from 2 commits"):
        revisit.analyse(tmp_path, ["none"], GAMES, SCALE, allow_mixed=False)
    result = revisit.analyse(tmp_path, ["none"], GAMES, SCALE, allow_mixed=True)
    assert "2 commits" in revisit.markdown(result, "cmd")


def test_an_unfinished_run_is_left_out_and_named(tmp_path, capsys):
    write_run(tmp_path / "none" / "seed_1", 1, RETURNS["none"], 100)
    write_run(tmp_path / "none" / "seed_2", 2, RETURNS["none"], 100)
    (tmp_path / "none" / "seed_2" / "summary.json").write_text('{"status": "interrupted"}')
    result = revisit.analyse(tmp_path, ["none"], GAMES, SCALE, allow_mixed=False)
    assert list(result["runs"]["none"]) == [1]
    assert "left out none/seed_2: not finished" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--methods", "none,dash"], "name some of none, fire, reset"),
        (["--games", "minatar_breakout,minatar_asterix,minatar_seaquest,minatar_freeway"],
         "revisit none"),
        (["--seeds", "0"], "run at least one seed"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        revisit.main([*flags, "--runs", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())
