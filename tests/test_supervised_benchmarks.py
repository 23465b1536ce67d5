"""Smoke runs of the supervised benchmarks at tiny sizes: their result files hold what the
README tables are built from (the experiments themselves are benchmarks, not tests)."""

import json
import math

import pytest

from benchmarks._stats import curve_ci, fmt, mean_ci


def test_mean_ci_is_the_student_t_interval():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    stat = mean_ci(values)
    # mean 3, s = √2.5, t_{0.975, 4} = 2.776445
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert stat["mean"] == 3.0 and stat["n"] == 5
    assert stat["half"] == pytest.approx(half, rel=1e-5)
    assert (stat["low"], stat["high"]) == pytest.approx((3 - half, 3 + half), rel=1e-5)
    one = mean_ci([0.5, math.nan])  # non-finite values are left out; one value has no interval
    assert one["mean"] == 0.5 and one["n"] == 1 and math.isnan(one["half"])
    assert fmt(one) == "0.500" and fmt(mean_ci([1.0, 1.0])) == "1.000 ± 0.000"
    mean, low, high = curve_ci([[0.0, 1.0], [2.0, 1.0]])
    assert list(mean) == [1.0, 1.0] and high[0] > 1.0 > low[0] and low[1] == high[1] == 1.0


def test_continual_supervised_smoke(tmp_path):
    from benchmarks import continual_supervised as bench

    args = [
        *("--tasks", "3", "--steps-per-task", "30", "--speed-at", "20", "--width", "16"),
        *("--methods", "none,fire", "--curvature", "none", "--ggn-every", "2"),
        *("--compare", "fire-none"),
        *("--results", str(tmp_path), "--seeds", "2", "--out", "smoke"),
    ]
    bench.main(args)
    data = json.loads((tmp_path / "smoke.json").read_text())
    assert {(r["method"], r["seed"]) for r in data["runs"]} == {
        (m, s) for m in ("none", "fire") for s in (0, 1)
    }
    for run in data["runs"]:
        assert [t["task"] for t in run["per_task"]] == [0, 1, 2]
        for t in run["per_task"]:
            assert 0.0 <= t["speed"] <= 1.0 and 0.0 <= t["accuracy"] <= 1.0
        curv = [t.get("curvature") for t in run["per_task"]]
        if run["method"] == "none":  # K-FAC at every task start, exact GGN at tasks 1 and 3
            assert all(0.0 < c["kfac/kfac_eps_rank_normalized"] <= 1.0 for c in curv)
            assert [("ggn/ggn_eps_rank_normalized" in c) for c in curv] == [True, False, True]
        else:
            assert curv == [None, None, None]
    summary = {r["method"]: r for r in data["summary"]}
    assert summary["none"]["speed_all"]["n"] == 2 and summary["fire"]["acc_last"]["n"] == 2
    (curv_row,) = data["curvature_summary"]
    assert curv_row["method"] == "none" and len(curv_row["accuracy_lost_0.5"]) == 2
    assert (tmp_path / "smoke.png").stat().st_size > 0
    assert (tmp_path / "smoke_curvature.png").stat().st_size > 0
    (pair,) = data["paired"]  # paired by seed: the mean difference is the difference of means
    assert pair["pair"] == "fire-none" and pair["seeds"] == [0, 1]
    assert pair["acc_last"]["mean"] == pytest.approx(
        summary["fire"]["acc_last"]["mean"] - summary["none"]["acc_last"]["mean"], abs=1e-5
    )  # the files keep 6 significant digits
    table = (tmp_path / "smoke.md").read_text()
    assert "| `fire` |" in table and "exact GGN" in table and "| `fire-none` |" in table
    # --resume with one more seed keeps the runs already there and adds the missing ones
    bench.main([*args[:-2], "--seeds", "3", "--resume", "--out", "smoke"])
    again = json.loads((tmp_path / "smoke.json").read_text())
    assert again["runs"][:4] == data["runs"]
    assert {r["seed"] for r in again["runs"][4:]} == {2} and len(again["runs"]) == 6
    # --rerun runs one method again; its old runs move to smoke.replaced.json
    bench.main([*args[:-2], "--seeds", "3", "--resume", "--rerun", "fire", "--out", "smoke"])
    rerun = json.loads((tmp_path / "smoke.json").read_text())
    old_fire = [r for r in again["runs"] if r["method"] == "fire"]
    assert [r for r in rerun["runs"] if r["method"] == "none"] == [
        r for r in again["runs"] if r["method"] == "none"
    ]
    assert sorted(r["seed"] for r in rerun["runs"] if r["method"] == "fire") == [0, 1, 2]
    (kept,) = json.loads((tmp_path / "smoke.replaced.json").read_text())["replaced"]
    assert kept["runs"] == old_fire
    # a learning rate with more digits than the file keeps still matches on --resume
    precise = [*args[:-2], "--lr", "0.00123456789", "--out", "precise"]
    bench.main(precise)
    bench.main([*precise, "--resume"])


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--speed-at", "0", "--speed-at must be between 1"),
        ("--ggn-every", "0", "--ggn-every"),
        ("--rerun", "fire", "--rerun replaces runs of a saved result: add --resume"),
    ],
)
def test_continual_supervised_refuses_bad_settings(tmp_path, capsys, flag, value, message):
    from benchmarks import continual_supervised as bench

    with pytest.raises(SystemExit) as exit_info:
        bench.main([flag, value, "--results", str(tmp_path), "--out", "refused"])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "refused.json").exists()


def test_reactivation_smoke(tmp_path):
    from benchmarks import reactivation

    reactivation.main(["--quick", "--width", "32", "--dormant", "0", "--results", str(tmp_path)])
    data = json.loads((tmp_path / "reactivation.json").read_text())
    assert {r["method"] for r in data["runs"]} == {"none", "fire"}
    for run in data["runs"]:
        steps = [p["step"] for p in run["curve"]]
        assert steps == list(range(0, 201, 50))
        assert all(0.0 <= p["dormant"] <= 1.0 for p in run["curve"])
        assert len(run["task_end_accuracy"]) == 2
    fire = [r for r in data["runs"] if r["method"] == "fire"]
    assert all(r["interventions"] == 1 for r in fire)  # FIRE once, at the start
    assert (tmp_path / "reactivation.png").stat().st_size > 0
    assert "dormant @ 0" in (tmp_path / "reactivation.md").read_text()


def test_warm_start_digits_smoke(tmp_path):
    pytest.importorskip("sklearn")
    from benchmarks import warm_start_digits as ws

    ws.main(["--quick", "--epochs", "1", "--width", "32", "--results", str(tmp_path)])
    data = json.loads((tmp_path / "warm_start_digits.json").read_text())
    rows = {r["variant"]: r for r in data["summary"]}
    assert set(rows) == {ws.FRESH, *ws.VARIANTS}
    assert rows[ws.FRESH]["delta_vs_fresh"]["mean"] == 0.0
    for run in data["runs"]:
        assert len(run["phase2"]) == 1
    assert [len(p["curve"]) for p in data["phase1"]] == [2, 2]  # twice the epochs on half
    reset = [r for r in data["runs"] if r["variant"] == "reset"]
    assert all(r["at_switch"] < 0.5 for r in reset)  # a reset network starts near chance
    assert (tmp_path / "warm_start_digits.png").stat().st_size > 0


def test_continual_supervised_resume_extends_methods_but_keeps_the_setting():
    from benchmarks.continual_supervised import extends

    saved = {
        "setup": {"tasks": 40, "seeds": 5, "methods": ["none", "fire"]},
        "runs": [{"method": "none"}, {"method": "fire"}],
    }
    more = {"tasks": 40, "seeds": 5, "methods": ["none", "fire", "nap"], "layer_norm": ["nap"]}
    assert extends(saved, more)  # a new method, with its own network
    assert not extends(saved, {**more, "tasks": 30})  # another setting
    assert not extends(saved, {**more, "layer_norm": ["fire", "nap"]})  # a run's network changed


def test_method_settings_unset_by_default_parse_as_numbers_or_choices():
    from benchmarks.continual_supervised import parse_setting

    assert parse_setting("er_lr", "0.001") == 0.001
    assert parse_setting("er_schedule", "steps") == "steps"
    assert parse_setting("er_every", "7") == 7


def test_continual_supervised_rerun_of_a_method_not_run_is_refused(tmp_path, capsys):
    from benchmarks import continual_supervised as bench

    with pytest.raises(SystemExit) as exit_info:
        bench.main(["--methods", "none", "--resume", "--rerun", "fire", "--results", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "--rerun fire: not among the methods run (none)" in capsys.readouterr().err
