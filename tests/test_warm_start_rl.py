"""benchmarks.warm_start_rl on synthetic sweeps: scores, the difference to fresh agents."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rliable")
from benchmarks import warm_start_rl  # noqa: E402  (after the skip: it needs rliable)


def make_run(
    folder: Path, name: str, method: str, seed: int, env: str, evals: dict, metrics=None, **config
):
    run = folder / name
    run.mkdir(parents=True)
    config = {"resolved": {"git_commit": "c0ffee"}, **config}  # one clean commit by default
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
                                 str(out), "--reps", "2000", "--methods", "none,fire,reset",
                                 "--pairs", "fire-none,fire-reset"])  # fmt: skip
    end = result["end"]["none"]
    assert end["n"] == 5 and end["mean"] == pytest.approx((5 + 7.5 + 10) / 3, abs=0.1)
    assert end["diff"] == pytest.approx(7.5 - 20, abs=0.2)
    low, high = end["diff_ci"]
    assert low < end["diff"] < high < 0  # the CI of the difference excludes 0
    assert result["auc"]["none"]["mean"] == pytest.approx(6.25, abs=0.1)
    assert result["first_task_end"]["none"] == [5.0] * 5
    # the family, named before reading: each method against fresh (Welch), against none and
    # the pairs (paired; fire-none is the same comparison as fire − none), on both scores
    comparisons = result["comparisons"]
    assert list(comparisons) == [
        "none − fresh", "fire − fresh", "reset − fresh", "fire − none", "reset − none",
        "fire − reset",
    ]  # fmt: skip
    assert len(result["family"]) == 12
    welch = comparisons["none − fresh"]["end"]
    assert welch["mean"] == pytest.approx(end["diff"])
    assert welch["low"] < welch["mean"] < welch["high"] < 0 and welch["p"] < 0.001
    # paired by seed against the warm none: exactly +2 on every seed, so a zero-width interval
    paired = comparisons["fire − none"]["end"]
    assert paired["n"] == 5 and paired["seeds"] == [0, 1, 2, 3, 4]
    assert paired["mean"] == pytest.approx(2.0) and paired["half"] == pytest.approx(0.0, abs=1e-9)
    # reset has no runs: its comparisons have no p-value but still count in Holm's m = 12
    assert np.isnan(comparisons["fire − reset"]["end"]["p"])
    pvalues = {f"{s}: {name}": t[s]["p"] for name, t in comparisons.items() for s in ("auc", "end")}
    adjusted = warm_start_rl.holm(pvalues)  # over the whole family, tested in test_stats.py
    assert [t[s]["holm_p"] for t in comparisons.values() for s in ("auc", "end")] == pytest.approx(
        list(adjusted.values()), nan_ok=True
    )
    assert all(
        t[s]["holm_p"] >= t[s]["p"]
        for t in comparisons.values()
        for s in ("auc", "end")
        if np.isfinite(t[s]["p"])
    )
    # unpaired, the seeds' spread on task B widens the interval around the same +2
    fire = comparisons["fire − fresh"]["end"]
    assert fire["half"] > 0.05
    assert "| fire − none | paired | " in out.with_suffix(".md").read_text()
    table = out.with_suffix(".md").read_text()
    assert "| none | 5 |" in table and "| fresh (none) | 5 |" in table
    assert "Every run ran on commit `c0ffee` with a clean tree." in table
    # metrics: the last value logged in each phase, mean over runs; none logged: no entry
    dormant = result["metrics"]["none"]
    assert dormant["dormant_ratio_end_a"]["mean"] == pytest.approx(0.2)
    assert dormant["dormant_ratio_end_b"]["mean"] == pytest.approx(0.52)
    assert dormant["dormant_ratio_end_b"]["half"] > 0
    assert math.isnan(result["metrics"]["fire"]["dormant_ratio_end_b"]["mean"])
    assert "| none | 0.200 ± 0.000 | 0.520 ± 0.020 |" in table
    assert out.with_suffix(".png").is_file()


def small_grid(folder: Path, commits: dict[str, str], resumes: dict[str, list] | None = None):
    """Warm ``none`` runs and fresh runs on two seeds; ``commits``: run name → its commit."""
    for seed in (1, 2):
        warm = {50: 5.0, 100: 5.0, 150: 6.0 + seed, 200: 8.0 + seed}
        for name, sweep, method, evals, extra in (
            (f"w{seed}", "warm", "none", warm, {"switch_every": 100, "total_timesteps": 200}),
            (f"f{seed}", "fresh", "none", {50: 9.0 + seed, 100: 10.0 + seed}, {}),
        ):
            extra = {**extra, "resolved": {"git_commit": commits.get(name, "c0ffee")}}
            if name in (resumes or {}):
                extra["resumes"] = resumes[name]
            make_run(folder / sweep, name, method, seed, "cycle:a,b", evals, **extra)
    return [str(folder / "warm"), str(folder / "fresh"), "--methods", "none", "--pairs", "",
            "--reps", "200", "--out", str(folder / "result")]  # fmt: skip


def test_runs_from_several_commits_are_refused_unless_allowed(tmp_path, capsys):
    resumes = {"w2": [{"step": 120, "resolved": {"git_commit": "beef+dirty"},
                       "buffer": "refilled", "refill_steps": 30}]}  # fmt: skip
    args = small_grid(tmp_path, {"f1": "beef+dirty"}, resumes)
    with pytest.raises(SystemExit) as exit_info:
        warm_start_rl.main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "the 4 runs of this grid come from 2 commits, 2 ran on a tree with uncommitted" in err
    assert "--allow-mixed-commits" in err and not (tmp_path / "result.md").exists()
    result = warm_start_rl.main([*args, "--allow-mixed-commits"])
    assert result["provenance"]["runs_by_commit"] == {
        "c0ffee": ["fresh (none), seed 2", "none, seed 1", "none, seed 2"],
        "beef+dirty": ["fresh (none), seed 1", "none, seed 2"],
    }
    table = (tmp_path / "result.md").read_text()
    assert "| `beef+dirty` | fresh (none), seed 1; none, seed 2 |" in table
    assert "| none, seed 2 | 120 | `beef+dirty` | refilled (30 steps) |" in table


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--methods", "fire"], "runs of none, which --methods does not name"),
        (["--pairs", "none-fire"], "--pairs none-fire: a pair is two methods of --methods"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, change, message):
    args = [*small_grid(tmp_path, {}), *change]
    with pytest.raises(SystemExit) as exit_info:
        warm_start_rl.main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
