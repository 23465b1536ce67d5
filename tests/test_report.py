"""report.py on hand-written run folders (config.json, summary.json, scalars.jsonl): bad input
is one line and exit code 2, skipped runs are named with their reason, NaN evaluations drop a
point, single metric points are drawn, and perturbation streams are labelled as such."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from experiments.report import cli
from experiments.report import figures as report_figures
from experiments.report.stats import METRICS

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("rliable", reason='rliable is not installed (pip install -e ".[sweep]")')

FAST = ["--reps", "50", "--profile-reps", "20"]
FINISHED = {"status": "finished", "final_eval_return": 100.0, "total_timesteps": 300}
EVAL_STEPS = (100, 200, 300)


def eval_rows(returns=(10.0, 20.0, 30.0)) -> list[dict]:
    return [
        {"step": step, "eval/episodic_return": value}
        for step, value in zip(EVAL_STEPS, returns, strict=True)
    ]


def make_run(
    sweep_dir: Path,
    method: str = "none",
    seed: int = 1,
    *,
    env: str = "CartPole-v1",
    summary: dict | None = FINISHED,
    rows: list[dict] | None = None,
    **settings,
) -> Path:
    """A run folder as train.py leaves it: config.json, summary.json (unless None) and
    scalars.jsonl (``rows``, by default an evaluation at each of EVAL_STEPS)."""
    run_dir = sweep_dir / f"{env}__dqn-{method}__{seed}"
    run_dir.mkdir(parents=True)
    config = {"agent": "dqn", "env": env, "method": method, "seed": seed, **settings}
    (run_dir / "config.json").write_text(json.dumps(config))
    if summary is not None:
        (run_dir / "summary.json").write_text(json.dumps(summary))
    lines = [json.dumps(row) for row in (eval_rows() if rows is None else rows)]
    (run_dir / "scalars.jsonl").write_text("".join(line + "\n" for line in lines))
    return run_dir


def run_cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    """report.py's exit code and stderr lines for ``argv``, in this process."""
    code = cli.cli(argv)
    return code, capsys.readouterr().err.splitlines()


# --- bad input: one line, exit code 2 ---------------------------------------------------------


def test_a_missing_sweep_folder_is_one_line_from_the_command_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "report.py", str(tmp_path / "nope")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"error: {tmp_path / 'nope'} is not a folder: pass a sweep folder, runs/<sweep_name>"
    ]


def test_an_unwritable_out_is_one_line_before_any_statistic(tmp_path, capsys):
    make_run(tmp_path / "sweep")
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    for out in (a_file, a_file / "inside"):
        code, err = run_cli([str(tmp_path / "sweep"), "--out", str(out), *FAST], capsys)
        assert code == 2 and len(err) == 1
        assert err[0].startswith(f"error: cannot write {out} (")
        assert "pass --out with a folder you can write to" in err[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_out_folder_is_one_line(tmp_path, capsys):
    make_run(tmp_path / "sweep")
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o555)
    code, err = run_cli([str(tmp_path / "sweep"), "--out", str(read_only), *FAST], capsys)
    assert code == 2 and err == [
        f"error: cannot write {read_only} (Permission denied): pass --out with a folder you "
        "can write to and that has free space"
    ]


def test_an_unreadable_sweep_json_is_one_line(tmp_path, capsys):
    make_run(tmp_path)
    (tmp_path / "sweep.json").write_text('{"runs": [1, 2]}')
    code, err = run_cli([str(tmp_path), *FAST], capsys)
    assert code == 2 and err == [
        f"error: {tmp_path}: sweep.json: its runs are not objects by run name: restore it, or "
        "move it aside to report the run folders alone"
    ]
    assert not (tmp_path / "report.md").exists()


def test_a_baseline_the_sweep_did_not_run_is_one_line(tmp_path, capsys):
    make_run(tmp_path, "fire")
    make_run(tmp_path, "reset")
    code, err = run_cli([str(tmp_path), "--baseline", "nope", *FAST], capsys)
    assert code == 2 and err == [
        f"error: --baseline nope: no finished run of that method in {tmp_path}; name one of "
        "fire, reset"
    ]
    assert not (tmp_path / "report.md").exists()
    # without --baseline a sweep that did not run `none` is reported, with no comparison
    code, err = run_cli([str(tmp_path), *FAST], capsys)
    assert code == 0 and (tmp_path / "report.md").exists()
    (by_method,) = json.loads((tmp_path / "report.json").read_text())["final_return"].values()
    assert not any("poi" in entry for entry in by_method.values())
    code, _ = run_cli([str(tmp_path), "--baseline", "fire", *FAST], capsys)
    (by_method,) = json.loads((tmp_path / "report.json").read_text())["final_return"].values()
    assert code == 0 and "poi" in by_method["reset"] and "poi" not in by_method["fire"]


def make_folder(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.mkdir()


def set_field(key: str, value):
    """A corruption that sets ``key`` of a JSON file to ``value``."""

    def corrupt(path: Path) -> None:
        path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))

    return corrupt


BROKEN_FILES = {
    "binary config": ("config.json", lambda p: p.write_bytes(b"\x80\x81\xfe\x00")),
    "list config": ("config.json", lambda p: p.write_text("[1, 2]")),
    "string seed": ("config.json", set_field("seed", "three")),
    "binary summary": ("summary.json", lambda p: p.write_bytes(b"\xff\xfe\x00\x01")),
    "list summary": ("summary.json", lambda p: p.write_text('["finished"]')),
    "summary folder": ("summary.json", make_folder),
    "string return": ("summary.json", set_field("final_eval_return", "high")),
    "scalars folder": ("scalars.jsonl", make_folder),
}
WHY = {
    "binary config": "config.json is not text (binary data): restore it, or move the run "
    "folder out of the sweep",
    "list config": "config.json holds a JSON list, not an object: restore it",
    "string seed": "config.json: seed is 'three', not an integer: restore it",
    "binary summary": "summary.json is not text (binary data): delete it and resume the run "
    "(python train.py --agent dqn --resume ",
    "list summary": "summary.json holds a JSON list, not an object: delete it and resume",
    "summary folder": "summary.json cannot be read (Is a directory): delete it and resume",
    "string return": "summary.json: final_eval_return is 'high', not a number: delete it and",
    "scalars folder": "scalars.jsonl cannot be read (Is a directory): restore it",
}


@pytest.mark.parametrize("case", BROKEN_FILES)
def test_a_run_with_an_unreadable_file_is_skipped_with_one_line_and_exit_code_2(
    case, tmp_path, capsys
):
    make_run(tmp_path, "none", 1)
    broken = make_run(tmp_path, "fire", 2)
    file, corrupt = BROKEN_FILES[case]
    corrupt(broken / file)
    code, err = run_cli([str(tmp_path), *FAST], capsys)
    assert code == 2
    assert len(err) == 1 and err[0].startswith(f"skipped {broken.name} (unreadable): {WHY[case]}")
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["runs_finished"] == 1 and saved["runs_expected"] == 2
    assert [(e["name"], e["state"]) for e in saved["missing"]] == [(broken.name, "unreadable")]
    assert f"| {broken.name} | unreadable | {WHY[case]}" in (tmp_path / "report.md").read_text()


# --- skipped runs and left-out data, named with the reason ------------------------------------


def test_every_skipped_run_is_named_with_its_reason_in_the_report_and_on_stderr(tmp_path, capsys):
    make_run(tmp_path, "none", 1)
    make_run(tmp_path, "none", 2, summary=None)  # killed, or still running
    stopped = {"status": "interrupted", "total_timesteps": 200, "final_eval_return": None}
    make_run(tmp_path, "none", 3, summary=stopped)
    cut = make_run(tmp_path, "fire", 1)
    (cut / "summary.json").write_text('{"status": "finished", "final_eval_ret')
    killed = make_run(tmp_path, "fire", 2)
    with open(killed / "scalars.jsonl", "a") as scalars:  # a write cut short, then a resume
        scalars.write('{"step": 300, "eval/epis\n{"step": 300, "eval/episodic_return": 31.0}\n')
    record = {"runs": {"CartPole-v1__dqn-reset__1": {"state": "failed", "error": "boom"}}}
    (tmp_path / "sweep.json").write_text(json.dumps(record))

    code, err = run_cli([str(tmp_path), *FAST], capsys)
    assert code == 2  # the summary cut short
    why = {
        "CartPole-v1__dqn-reset__1": (
            "failed",
            "no run folder yet: run the sweep to start it; sweep.json: boom",
        ),
        "CartPole-v1__dqn-fire__1": (
            "unreadable",
            "summary.json is not valid JSON (Unterminated string starting at: line 1 column "
            f"24): delete it and resume the run (python train.py --agent dqn --resume {cut})",
        ),
        "CartPole-v1__dqn-none__2": (
            "unfinished",
            "no summary.json: still running, or stopped before its end; run the sweep again "
            "to resume it",
        ),
        "CartPole-v1__dqn-none__3": (
            "interrupted",
            "stopped at step 200 (its summary.json says interrupted): run the sweep again to "
            "resume it",
        ),
    }
    assert err == [
        f"skipped {name} ({state}): {reason}" for name, (state, reason) in why.items()
    ] + [f"{killed.name}: scalars.jsonl line 4 not a row (cut short by a kill?)"]
    saved = json.loads((tmp_path / "report.json").read_text())
    assert {e["name"]: (e["state"], e["reason"]) for e in saved["missing"]} == {
        name: (state, reason.split("; sweep.json")[0]) for name, (state, reason) in why.items()
    }
    assert saved["unreadable_scalars_lines"] == {killed.name: [4]}
    assert saved["runs_finished"] == 2 and saved["runs_expected"] == 6
    text = (tmp_path / "report.md").read_text()
    row = "| CartPole-v1__dqn-reset__1 | failed | no run folder yet: run the sweep to start it |"
    assert f"{row} boom |" in text
    assert f"- {killed.name}: scalars.jsonl line 4 not a row" in text
    # the resumed attempt's row replaces the one cut short
    assert saved["curves"]["CartPole-v1"]["fire"]["iqm"] == [10.0, 20.0, 31.0]


def test_a_nan_evaluation_drops_that_point_not_the_methods_curve(tmp_path, capsys):
    make_run(tmp_path, "none", 1)
    make_run(tmp_path, "none", 2, rows=eval_rows((float("nan"), None, 5.0)))
    code, err = run_cli([str(tmp_path), *FAST], capsys)
    assert code == 0
    assert err == [
        "CartPole-v1__dqn-none__2: evaluation at steps 100, 200 NaN or null, left out of the "
        "learning curves"
    ]
    saved = json.loads((tmp_path / "report.json").read_text())
    curve = saved["curves"]["CartPole-v1"]["none"]
    assert curve["steps"] == [100, 200, 300]
    assert curve["iqm"] == [10.0, 20.0, pytest.approx(17.5)]  # both runs' IQM at step 300
    assert saved["nonfinite_evaluations"] == {"CartPole-v1__dqn-none__2": [100, 200]}
    text = (tmp_path / "report.md").read_text()
    assert "2 evaluations without a finite return (NaN or null) left out" in text


# --- figures ----------------------------------------------------------------------------------


def test_a_metric_logged_once_is_drawn_as_a_point(tmp_path, monkeypatch):
    metrics = {f"q/{key}": 0.5 for key in METRICS}
    make_run(tmp_path, rows=[*eval_rows(), {"step": 150, **metrics}])
    figures = {}

    def keep(fig, path):
        figures[path.name] = fig
        return path.name

    monkeypatch.setattr(report_figures, "save", keep)
    cli.main([str(tmp_path), *FAST])
    panels = [ax for ax in figures["metrics_q.png"].get_axes() if ax.get_ylabel()]
    assert len(panels) == len(METRICS)
    for ax in panels:
        points = [line for line in ax.get_lines() if line.get_marker() not in ("None", "")]
        assert [line.get_xydata().tolist() for line in points] == [[[150.0, 0.5]]]


# --- task periods -----------------------------------------------------------------------------


def period_rows(tasks: list[str]) -> list[dict]:
    """Three 100-step periods (switches at 100 and 200) with two episodes of each task."""
    rows = []
    for period, task in enumerate(tasks):
        start = 100 * period
        rows += [
            {"step": start + 40, f"charts/episodic_return/{task}": 10.0 * (period + 1)},
            {"step": start + 90, f"charts/episodic_return/{task}": 10.0 * (period + 1)},
        ]
        if period:
            rows.append({"step": start, "charts/task_id": 0.0, "charts/task_period": period})
    return sorted(rows, key=lambda row: row["step"])


def test_periods_of_a_perturbation_stream_are_new_permutations_not_later_visits(tmp_path):
    tasks = ["CartPole-v1"] * 3
    make_run(tmp_path, rows=period_rows(tasks), permute_observations=True, switch_every=100)
    data = cli.main([str(tmp_path), *FAST])
    table = data["task_periods"]["CartPole-v1"]["none"]
    assert table["labels"] == ["CartPole-v1", "permutation 2", "permutation 3"]
    assert table["means"] == [10.0, 20.0, 30.0]
    text = (tmp_path / "report.md").read_text()
    assert "| method | 1: CartPole-v1 | 2: permutation 2 | 3: permutation 3 |" in text
    assert "later visit of one seen before" in text and "later visits (mean)" not in text
    assert "| first period | later periods, new permutations (mean) |" in text


def test_periods_of_a_task_cycle_are_visits_of_its_tasks(tmp_path):
    env = "cycle:CartPole-v1,Acrobot-v1"
    make_run(tmp_path, env=env, rows=period_rows(["CartPole-v1", "Acrobot-v1", "CartPole-v1"]))
    data = cli.main([str(tmp_path), *FAST])
    assert data["task_periods"][env]["none"]["labels"] == [
        "CartPole-v1",
        "Acrobot-v1",
        "CartPole-v1",
    ]
    text = (tmp_path / "report.md").read_text()
    assert "| method | 1: CartPole-v1 | 2: Acrobot-v1 | 3: CartPole-v1 |" in text
    assert "| none | CartPole-v1 | 10.0 | 30.0 (1) | 20.0 |" in text
    assert "| first visit | later visits (mean) |" in text
