"""sweep.py and report.py: a tiny DQN sweep on a local Ray (2 CPUs), skipped when run again,
a killed run resumed, a stopped sweep continued, failures recorded; the report's statistics
against rliable called directly."""

import _thread
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import report
import sweep as sw

ROOT = Path(__file__).resolve().parents[1]
HAS_RAY = importlib.util.find_spec("ray") is not None
HAS_RLIABLE = importlib.util.find_spec("rliable") is not None
needs_ray = pytest.mark.skipif(
    not HAS_RAY, reason='ray is not installed (pip install -e ".[sweep]")'
)
needs_rliable = pytest.mark.skipif(
    not HAS_RLIABLE, reason='rliable is not installed (pip install -e ".[sweep]")'
)

# a few hundred CartPole steps, a new observation permutation every 200 steps
TINY_ARGS = [
    "--total-timesteps", "600", "--learning-starts", "100", "--buffer-size", "1000",
    "--batch-size", "32", "--train-frequency", "2", "--target-network-frequency", "50",
    "--permute-observations", "--switch-every", "200", "--eval-every", "200",
    "--eval-episodes", "2", "--metrics-every", "100", "--checkpoint-every", "200",
    "--device", "cpu",
]  # fmt: skip
# long enough to be killed and stopped part-way
LONG_ARGS = [
    "--total-timesteps", "20000", "--learning-starts", "500", "--checkpoint-every", "1000",
    "--eval-every", "0", "--eval-episodes", "1", "--metrics-every", "5000", "--device", "cpu",
]  # fmt: skip


def make_sweep(runs_dir: Path, name: str, args, methods=("none",), seeds=(1,), **kw) -> sw.Sweep:
    return sw.Sweep(
        name=name,
        runs_dir=runs_dir,
        agents=["dqn"],
        envs=kw.pop("envs", ["CartPole-v1"]),
        methods=list(methods),
        seeds=list(seeds),
        args=list(args),
        **kw,
    )


def record_of(sweep: sw.Sweep) -> dict:
    return json.loads((sweep.dir / "sweep.json").read_text())


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray with 2 CPUs for every test of this file (start-up costs seconds)."""
    if not HAS_RAY:
        pytest.skip('ray is not installed (pip install -e ".[sweep]")')
    ray = sw.init_ray(None, num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_sweep(ray_session, tmp_path_factory):
    """dqn on permuted CartPole: none and fire × seeds 1, 2, a few hundred steps each."""
    sweep = make_sweep(
        tmp_path_factory.mktemp("runs"), "tiny", TINY_ARGS, methods=("none", "fire"), seeds=(1, 2)
    )
    assert sw.run_sweep(sweep, ["pytest"]) == 0
    return sweep


# --- the command line, without Ray ----------------------------------------------------------


def test_grid_values_split_at_commas_but_a_cycle_is_one_env():
    assert sw.split_list(("humanoid_walk,humanoid_cycle", "cycle:a,b")) == [
        "humanoid_walk",
        "humanoid_cycle",
        "cycle:a,b",
    ]
    assert sw.split_list(["none", "fire,none"]) == ["none", "fire"]
    assert sw.RunSpec("dqn", "cycle:a,b", "fire+adamo", 3).name == "cycle-a-b__dqn-fire+adamo__3"


def test_resolve_reads_a_sweep_file_and_flags_win(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(
        'name = "grid"\nagent = "dqn"\nenv = ["CartPole-v1", "Acrobot-v1"]\n'
        'method = ["none", "fire"]\nseeds = [1, 2, 7]\ncpus_per_run = 0.5\n'
        "[args]\ntotal-timesteps = 1000\npermute-observations = true\nswitch-every = 500\n"
        "capture-video = false\n"
    )
    args = sw.SweepArgs(file=str(path), method=("reset",), runs_dir=str(tmp_path))
    sweep = sw.resolve(args, ["--eval-every", "500"])
    assert sweep.name == "grid" and sweep.envs == ["CartPole-v1", "Acrobot-v1"]
    assert sweep.methods == ["reset"] and sweep.seeds == [1, 2, 7]
    assert sweep.cpus_per_run == 0.5 and len(sweep.runs()) == 6
    assert sweep.args == [
        "--total-timesteps",
        "1000",
        "--permute-observations",
        "--switch-every",
        "500",
        "--no-capture-video",
        "--eval-every",
        "500",
    ]
    default = sw.resolve(sw.SweepArgs(agent=("dqn",), env=("CartPole-v1",), seeds=2), [])
    assert default.name == "dqn_CartPole-v1" and default.seeds == [1, 2]
    assert default.methods == ["none"]


@pytest.mark.parametrize(
    "args, extra, message",
    [
        (dict(agent=("dqn",), env=("CartPole-v1",)), ["--seed", "3"], "--seed after '--'"),
        (dict(agent=("dqn",), env=("CartPole-v1",)), ["--run-name=x"], "--run-name after"),
        (dict(agent=("a2c",), env=("CartPole-v1",)), [], "unknown agent 'a2c'"),
        (dict(agent=("dqn",), env=("CartPole-v1",), method=("fyre",)), [], "'fyre'"),
        (dict(agent=("dqn",)), [], "choose the environment"),
        (dict(agent=("dqn",), env=("CartPole-v1",), seeds=0), [], "--seeds must be"),
        (dict(agent=("dqn",), env=("CartPole-v1",), cpus_per_run=0), [], "--cpus-per-run"),
        (dict(file="/nonexistent.toml"), [], "no such file"),
    ],
)
def test_bad_sweeps_are_refused_with_one_line(args, extra, message):
    with pytest.raises(sw.SweepError, match=message.replace("(", r"\(")) as err:
        sw.resolve(sw.SweepArgs(**args), extra)
    assert "\n" not in str(err.value)


def test_a_sweep_name_keeps_its_grid_unless_extended_or_forced(tmp_path):
    first = make_sweep(tmp_path, "s", ["--total-timesteps", "100"], methods=("none", "fire"))
    record = sw.reconcile(first, None, extend=False, force=False)
    assert record["grid"]["method"] == ["none", "fire"] and record["args"] == first.args

    more = make_sweep(tmp_path, "s", first.args, methods=("reset",), seeds=(1, 2))
    with pytest.raises(sw.SweepError, match="another grid.*--extend"):
        sw.reconcile(more, json.loads(json.dumps(record)), extend=False, force=False)
    extended = sw.reconcile(more, json.loads(json.dumps(record)), extend=True, force=False)
    assert extended["grid"]["method"] == ["none", "fire", "reset"]
    assert extended["grid"]["seed"] == [1, 2] and len(more.runs()) == 6  # the union runs

    other_args = make_sweep(tmp_path, "s", ["--total-timesteps", "200"], methods=("none", "fire"))
    for extend in (False, True):
        with pytest.raises(sw.SweepError, match="other arguments|run arguments"):
            sw.reconcile(other_args, json.loads(json.dumps(record)), extend=extend, force=False)
    forced = sw.reconcile(other_args, json.loads(json.dumps(record)), extend=False, force=True)
    assert forced["args"] == ["--total-timesteps", "200"]


def test_error_line_finds_the_message():
    assert sw.error_line(["noise\n", "error: --env: unknown env 'x'\n", "\n"]) == (
        "error: --env: unknown env 'x'"
    )
    traceback = ["Traceback (most recent call last):\n", '  File "x.py"\n', "KeyError: 'a'\n"]
    assert sw.error_line(traceback) == "KeyError: 'a'"
    tyro_box = [
        "╭─ Unrecognized options ─────────╮\n",
        "│ Unrecognized options: --bogus  │\n",
        "│ ────────────────────────────── │\n",
        "│ For full helptext, run train.py --help │\n",
        "╰────────────────────────────────╯\n",
    ]
    assert sw.error_line(tyro_box) == "Unrecognized options: --bogus"


def test_the_command_line_refuses_a_bad_sweep_with_exit_code_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "sweep.py", "--agent", "dqn", "--env", "CartPole-v1", "--", "--seed", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --seed after '--' contradicts the grid: the sweep sets it for each run "
        "(use --agent/--env/--method/--seeds/--runs-dir/--name of sweep.py)"
    ]


# --- sweeps on Ray --------------------------------------------------------------------------


@needs_ray
def test_tiny_sweep_finishes_and_a_rerun_skips_it(tiny_sweep, capsys):
    record = record_of(tiny_sweep)
    assert record["grid"] == {
        "agent": ["dqn"],
        "env": ["CartPole-v1"],
        "method": ["none", "fire"],
        "seed": [1, 2],
    }
    assert record["args"] == TINY_ARGS and len(record["runs"]) == 4
    logs = {}
    for spec in tiny_sweep.runs():
        entry = record["runs"][spec.name]
        assert entry["state"] == "finished" and entry["attempts"] == 1, entry
        assert entry["total_timesteps"] == 600 and entry["sweep_wall_s"] > 0
        run_dir = tiny_sweep.dir / spec.name
        summary = json.loads((run_dir / "summary.json").read_text())
        assert (summary["method"], summary["env"]) == (spec.method, spec.env)
        assert summary["final_eval_return"] == entry["final_eval_return"]
        config = json.loads((run_dir / "config.json").read_text())
        assert config["seed"] == spec.seed and config["permute_observations"] is True
        logs[spec.name] = (run_dir / "train.log").read_text()
        assert logs[spec.name].count("# sweep attempt") == 1 and "(start)" in logs[spec.name]
        assert not (run_dir / "train.pid").exists()
    capsys.readouterr()

    assert sw.run_sweep(tiny_sweep, ["pytest", "again"]) == 0
    out = capsys.readouterr().out
    assert "4 finished, 0 to resume, 0 to start" in out and "nothing to do" in out
    for spec in tiny_sweep.runs():
        assert (tiny_sweep.dir / spec.name / "train.log").read_text() == logs[spec.name]
        assert record_of(tiny_sweep)["runs"][spec.name]["attempts"] == 1
    assert [c["command"] for c in record_of(tiny_sweep)["commands"]] == ["pytest", "pytest again"]


def wait_for(condition, timeout=60.0):
    """Poll ``condition`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def running_pid(run_dir: Path, attempt_header: str):
    """The process id of the run's current attempt once it has one and wrote a new checkpoint."""
    log = run_dir / "train.log"
    if not log.exists() or attempt_header not in log.read_text():
        return None
    try:
        pid = int((run_dir / "train.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@needs_ray
def test_a_killed_run_resumes_and_a_stopped_sweep_continues(ray_session, tmp_path):
    sweep = make_sweep(tmp_path, "long", LONG_ARGS, max_retries=0, stop_timeout=60)
    run_dir = sweep.dir / sweep.runs()[0].name

    # 1. its process is killed after a checkpoint; no retries: recorded as failed, with why
    def kill_after_checkpoint():
        pid = wait_for(lambda: sw.checkpoint_steps(run_dir) and running_pid(run_dir, "(start)"))
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_after_checkpoint)
    killer.start()
    assert sw.run_sweep(sweep, ["pytest"]) == 1
    killer.join()
    entry = record_of(sweep)["runs"][run_dir.name]
    assert entry["state"] == "failed" and entry["error"] == "killed by signal 9 (SIGKILL)"
    first_checkpoint = sw.checkpoint_steps(run_dir)[-1]
    assert not (run_dir / "summary.json").exists()

    # 2. the sweep again: the run resumes from its checkpoint; Ctrl-C stops the sweep, the run
    # gets SIGINT and is recorded as interrupted, resumable
    def ctrl_c_after_a_new_checkpoint():
        pid = wait_for(lambda: running_pid(run_dir, "attempt 2 (resume)"))
        wait_for(lambda: sw.checkpoint_steps(run_dir)[-1] > first_checkpoint)
        _thread.interrupt_main()  # what Ctrl-C does to the sweep's process
        return pid

    pids = []
    stopper = threading.Thread(target=lambda: pids.append(ctrl_c_after_a_new_checkpoint()))
    stopper.start()
    assert sw.run_sweep(sweep, ["pytest"]) == 130
    stopper.join()
    entry = record_of(sweep)["runs"][run_dir.name]
    assert entry["state"] == "interrupted" and entry["attempts"] == 2
    assert not alive(pids[0]) and not (run_dir / "train.pid").exists()
    assert not (sweep.dir / sw.STOP_FILE).exists()
    resumed_from = sw.checkpoint_steps(run_dir)[-1]
    assert resumed_from > first_checkpoint

    # 3. and again: it resumes and finishes
    assert sw.run_sweep(sweep, ["pytest"]) == 0
    entry = record_of(sweep)["runs"][run_dir.name]
    assert entry["state"] == "finished" and entry["attempts"] == 3 and entry["error"] is None
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["total_timesteps"] == 20_000
    log = (run_dir / "train.log").read_text()
    assert [line.split(" at ")[0] for line in log.splitlines() if line.startswith("# sweep")] == [
        "# sweep attempt 1 (start)",
        "# sweep attempt 2 (resume)",
        "# sweep attempt 3 (resume)",
    ]
    assert f"--resume {run_dir}" in log


@needs_ray
def test_failed_runs_are_recorded_with_their_error(ray_session, tmp_path, capsys):
    # train.py refuses the run (exit code 2): not retried
    refused = make_sweep(tmp_path, "refused", ["--device", "cpu"], envs=["NoSuchEnv-v0"])
    assert sw.run_sweep(refused, ["pytest"]) == 1
    entry = record_of(refused)["runs"]["NoSuchEnv-v0__dqn-none__1"]
    assert entry["state"] == "failed" and entry["attempts"] == 1 and entry["returncode"] == 2
    assert entry["error"].startswith("error: --env: unknown env 'NoSuchEnv-v0'")

    # a run that raises: retried --max-retries times, then failed with the exception's line
    script = tmp_path / "crashing_train.py"
    script.write_text(
        "import os, sys\n"
        "print('argv', sys.argv[1:], flush=True)\n"
        "print('threads', os.environ['OMP_NUM_THREADS'], "
        "'gpus', repr(os.environ['CUDA_VISIBLE_DEVICES']), flush=True)\n"
        "raise RuntimeError('boom before the first step')\n"
    )
    crashing = make_sweep(tmp_path, "crashing", ["--x", "1"], max_retries=1, train_script=script)
    assert sw.run_sweep(crashing, ["pytest"]) == 1
    name = crashing.runs()[0].name
    entry = record_of(crashing)["runs"][name]
    assert entry["state"] == "failed" and entry["attempts"] == 2 and entry["returncode"] == 1
    assert entry["error"] == "RuntimeError: boom before the first step"
    log = (crashing.dir / name / "train.log").read_text()
    assert log.count("Traceback") == 2  # stderr goes to the log, attempt after attempt
    assert "threads 1 gpus ''" in log
    assert "'--seed', '1', '--runs-dir', " in log and f"'--run-name', '{name}', '--x', '1'" in log
    out = capsys.readouterr().out
    assert "retry" in out and "failed" in out and "RuntimeError: boom" in out


# --- report.py ------------------------------------------------------------------------------


def rliable_direct(scores, func, reps, seed):
    from rliable import library as rly

    np.random.seed(seed)
    return rly.get_interval_estimates(scores, func, reps=reps)


@needs_ray
@needs_rliable
def test_report_statistics_are_rliables(tiny_sweep, tmp_path):
    from rliable import metrics

    out = tmp_path / "report"
    data = report.main(
        [
            str(tiny_sweep.dir),
            "--reps",
            "300",
            "--profile-reps",
            "100",
            "--seed",
            "3",
            "--out",
            str(out),
        ]
    )
    text = (out / "report.md").read_text()
    saved = json.loads((out / "report.json").read_text())
    assert saved["runs_finished"] == 4 and saved["missing"] == []
    stats = saved["final_return"]["CartPole-v1"]
    scores = {}
    for method in ("none", "fire"):
        summaries = [
            json.loads(
                (tiny_sweep.dir / f"CartPole-v1__dqn-{method}__{s}" / "summary.json").read_text()
            )
            for s in (1, 2)
        ]
        scores[method] = np.array([s["final_eval_return"] for s in summaries]).reshape(-1, 1)
        assert sorted(stats[method]["scores"]) == sorted(scores[method].ravel().tolist())

        def iqm_mean(x):
            return np.array([metrics.aggregate_iqm(x), metrics.aggregate_mean(x)])

        point, interval = rliable_direct({method: scores[method]}, iqm_mean, 300, 3)
        assert stats[method]["iqm"] == pytest.approx(point[method][0])
        assert stats[method]["iqm_ci"] == pytest.approx(interval[method][:, 0].tolist())
        assert stats[method]["mean_ci"] == pytest.approx(interval[method][:, 1].tolist())
        assert stats[method]["median"] == pytest.approx(np.median(scores[method]))
        ci = stats[method]["iqm_ci"]
        cell = f"{stats[method]['iqm']:.1f} [{ci[0]:.1f}, {ci[1]:.1f}]"
        assert f"| {method} | 2 | " in text and cell in text
    pair = {"p": [scores["fire"], scores["none"]]}
    point, interval = rliable_direct(pair, metrics.probability_of_improvement, 100, 3)
    assert stats["fire"]["poi"] == pytest.approx(float(point["p"]))
    assert stats["fire"]["poi_ci"] == pytest.approx(np.ravel(interval["p"]).tolist())
    assert "poi" not in stats["none"]

    for section in ("## Final evaluation return", "## Learning curves", "## Task periods"):
        assert section in text
    assert "## Plasticity metrics" in text and "## Compute" in text
    assert "arXiv 2108.13264" in text and "## Missing runs" not in text
    assert set(data["figures"]) == {
        "final_return", "profiles", "curves", "task_periods", "metrics_q",
    }  # fmt: skip
    for name in data["figures"].values():
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"]({name})" in text
    # 600 steps, a switch every 200 (at episode ends): 3 or 4 periods of the one task
    periods = saved["task_periods"]["CartPole-v1"]
    assert 3 <= len(periods["fire"]["means"]) <= 4
    assert periods["fire"]["visits"]["CartPole-v1"]["later_visits"] >= 2
    assert "| none | CartPole-v1 |" in text and "| fire | CartPole-v1 |" in text
    compute = [line for line in text.splitlines() if line.startswith("| CartPole-v1__dqn-")]
    assert len(compute) == 4 and all("| 600 |" in line for line in compute)
    # the curve is rliable's IQM at every evaluation step (200, 400, 600)
    assert saved["curves"]["CartPole-v1"]["fire"]["steps"] == [200, 400, 600]


@needs_ray
@needs_rliable
def test_report_on_a_partly_finished_sweep_names_the_missing_runs(tiny_sweep, tmp_path):
    partial = tmp_path / "tiny"
    shutil.copytree(tiny_sweep.dir, partial)
    (partial / "CartPole-v1__dqn-fire__2" / "summary.json").unlink()
    shutil.rmtree(partial / "CartPole-v1__dqn-none__1")
    data = report.main([str(partial), "--reps", "100", "--profile-reps", "50"])
    text = (partial / "report.md").read_text()
    assert data["runs_finished"] == 2 and data["runs_expected"] == 4
    assert "## Missing runs" in text
    assert "| CartPole-v1__dqn-fire__2 | unfinished |" in text
    assert "| CartPole-v1__dqn-none__1 | unfinished |" in text
    assert "2 of 4 runs finished" in text
    assert [data["final_return"]["CartPole-v1"][m]["n"] for m in ("none", "fire")] == [1, 1]


def test_scalars_of_a_resumed_run_replace_the_interrupted_attempts_rows(tmp_path):
    rows = [
        {"step": 100, "eval/episodic_return": 10.0},
        {"step": 200, "eval/episodic_return": 20.0},
        {"step": 300, "eval/episodic_return": 30.0},  # after the checkpoint at 200: redone
        {"step": 250, "charts/episodic_return": None},  # the resumed attempt
        {"step": 300, "eval/episodic_return": 35.0},
    ]
    path = tmp_path / "scalars.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + '\n{"step": 400, "eval/epi')
    scalars = report.read_scalars(path)
    steps, values = scalars["eval/episodic_return"]
    assert steps.tolist() == [100, 200, 300] and values.tolist() == [10.0, 20.0, 35.0]
    assert np.isnan(scalars["charts/episodic_return"][1]).all()


def test_report_refuses_a_folder_without_runs(tmp_path):
    with pytest.raises(report.ReportError, match="holds no runs"):
        report.main([str(tmp_path)])
    with pytest.raises(report.ReportError, match="is not a folder"):
        report.main([str(tmp_path / "nope")])
