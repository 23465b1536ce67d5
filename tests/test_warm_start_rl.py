"""benchmarks/warm_start_rl.py on synthetic sweeps: scores, the difference to fresh agents."""

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rliable")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import warm_start_rl  # noqa: E402


def make_run(
    folder: Path, name: str, method: str, seed: int, env: str, evals: dict, metrics=None, **config
):
    run = folder / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(
        json.dumps({"agent": "dqn", "env": env, "method": method, "seed": seed, **config})
    )
    (run / "summary.json").write_text(json.dumps({"status": "finished"}))
    rows = [{"step": step, "eval/episodic_return": value} for step, value in evals.items()]
    rows += [{"step": step, **values} for step, values in (metrics or {}).items()]
    rows = [json.dumps(row) for row in sorted(rows, key=lambda row: row["step"])]  # as logged
    (run / "scalars.jsonl").write_text("\n".join(rows) + "\n")


def test_warm_started_runs_are_scored_on_task_b_against_fresh_ones(tmp_path):
    rng = np.random.default_rng(0)
    for seed in range(5):
        # task A until 100, task B after: warm runs learn B slowly, fresh runs fast
        warm = dict.fromkeys((50, 100), 5.0)
        warm.update({100 + step: step / 10 + rng.normal(0, 0.1) for step in (25, 50, 75, 100)})
        dormant = {100: {"q/dormant_ratio": 0.2}, 200: {"q/dormant_ratio": 0.5 + seed / 100}}
        make_run(tmp_path / "warm", f"w{seed}", "none", seed, "cycle:a,b", warm, dormant,
                 switch_every=100, total_timesteps=200)  # fmt: skip
        # a method that acts at the switch: the same seed's B curve, 2 higher
        helped = {step: value + 2.0 * (step > 100) for step, value in warm.items()}
        make_run(tmp_path / "warm", f"h{seed}", "fire", seed, "cycle:a,b", helped,
                 switch_every=100, total_timesteps=200)  # fmt: skip
        fresh = {step: 20.0 + rng.normal(0, 0.1) for step in (25, 50, 75, 100)}
        make_run(tmp_path / "fresh", f"f{seed}", "none", seed, "b", fresh, total_timesteps=100)
    out = tmp_path / "result"
    result = warm_start_rl.main([str(tmp_path / "warm"), str(tmp_path / "fresh"), "--out",
                                 str(out), "--reps", "2000",
                                 "--pairs", "fire-none,fire-reset"])  # fmt: skip
    end = result["end"]["none"]
    assert end["n"] == 5 and end["mean"] == pytest.approx((5 + 7.5 + 10) / 3, abs=0.1)
    assert end["diff"] == pytest.approx(7.5 - 20, abs=0.2)
    low, high = end["diff_ci"]
    assert low < end["diff"] < high < 0  # the CI of the difference excludes 0
    assert result["auc"]["none"]["mean"] == pytest.approx(6.25, abs=0.1)
    assert result["first_task_end"]["none"] == [5.0] * 5
    welch_low, welch_high = end["diff_welch_ci"]
    assert welch_low < end["diff"] < welch_high < 0
    # paired by seed against the warm none: exactly +2 on every seed, so a zero-width interval
    paired = result["paired_none"]["end"]["fire"]
    assert paired["n"] == 5 and paired["seeds"] == [0, 1, 2, 3, 4]
    assert paired["mean"] == pytest.approx(2.0) and paired["half"] == pytest.approx(0.0, abs=1e-9)
    # the same through --pairs, and a pair with a missing method is left out
    assert result["pairs"]["fire-none"]["end"]["mean"] == pytest.approx(2.0)
    assert "fire-reset" not in result["pairs"]
    assert "| fire-none | " in out.with_suffix(".md").read_text()
    # unpaired, the seeds' spread on task B widens the interval around the same +2
    fire_low, fire_high = warm_start_rl.welch_interval(
        np.array(result["end"]["fire"]["scores"]), np.array(end["scores"])
    )
    assert fire_low < 2.0 < fire_high and fire_high - fire_low > 0.1
    table = out.with_suffix(".md").read_text()
    assert "| none | 5 |" in table and "| fresh (none) | 5 |" in table
    assert "| fire | " in table.split("paired by seed")[1]
    # metrics: the last value logged in each phase, mean over runs; none logged: no entry
    dormant = result["metrics"]["none"]
    assert dormant["dormant_ratio_end_a"]["mean"] == pytest.approx(0.2)
    assert dormant["dormant_ratio_end_b"]["mean"] == pytest.approx(0.52)
    assert dormant["dormant_ratio_end_b"]["half"] > 0
    assert math.isnan(result["metrics"]["fire"]["dormant_ratio_end_b"]["mean"])
    assert "| none | 0.200 ± 0.000 | 0.520 ± 0.020 |" in table
    assert out.with_suffix(".png").is_file()
