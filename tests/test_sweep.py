"""sweep.py and report.py: a tiny DQN sweep on a local Ray (2 CPUs), skipped when run again,
a killed run resumed, a stopped sweep continued, failures recorded; the report's statistics
against rliable called directly."""

import _thread
import dataclasses
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tyro

from agents.cli import UserError
from experiments import runs as run_reader
from experiments.report import cli as report_cli
from experiments.report import load
from experiments.sweep import cli, config, driver, execution, records

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


def make_sweep(
    runs_dir: Path, name: str, args, methods=("none",), seeds=(1,), **kw
) -> config.Sweep:
    return config.Sweep(
        name=name,
        runs_dir=runs_dir,
        agents=["dqn"],
        envs=kw.pop("envs", ["CartPole-v1"]),
        methods=list(methods),
        seeds=list(seeds),
        args=list(args),
        **kw,
    )


def record_of(sweep: config.Sweep) -> dict:
    return json.loads((sweep.dir / "sweep.json").read_text())


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray with 2 CPUs for every test of this file (start-up costs seconds)."""
    if not HAS_RAY:
        pytest.skip('ray is not installed (pip install -e ".[sweep]")')
    ray = driver.init_ray(None, num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def tiny_sweep(ray_session, tmp_path_factory):
    """dqn on permuted CartPole: none and fire × seeds 1, 2, a few hundred steps each."""
    sweep = make_sweep(
        tmp_path_factory.mktemp("runs"), "tiny", TINY_ARGS, methods=("none", "fire"), seeds=(1, 2)
    )
    assert driver.run_sweep(sweep, ["pytest"]) == 0
    return sweep


# --- the command line, without Ray ----------------------------------------------------------


def test_grid_values_split_at_commas_but_a_cycle_is_one_env():
    assert config.split_list(("humanoid_walk,humanoid_cycle", "cycle:a,b")) == [
        "humanoid_walk",
        "humanoid_cycle",
        "cycle:a,b",
    ]
    assert config.split_list(["none", "fire,none"]) == ["none", "fire"]
    assert (
        config.RunSpec("dqn", "cycle:a,b", "fire+adamo", 3).name == "cycle-a-b__dqn-fire+adamo__3"
    )


def test_resolve_reads_a_sweep_file_and_flags_win(tmp_path):
    path = tmp_path / "grid.toml"
    path.write_text(
        'name = "grid"\nagent = "dqn"\nenv = ["CartPole-v1", "Acrobot-v1"]\n'
        'method = ["none", "fire"]\nseeds = [1, 2, 7]\ncpus_per_run = 0.5\n'
        "[args]\ntotal-timesteps = 1000\npermute-observations = true\nswitch-every = 500\n"
        "capture-video = false\n"
    )
    args = config.SweepArgs(file=str(path), method=("reset",), runs_dir=str(tmp_path))
    sweep = config.resolve(args, ["--eval-every", "500"])
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
    default = config.resolve(config.SweepArgs(agent=("dqn",), env=("CartPole-v1",), seeds=2), [])
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
    with pytest.raises(config.SweepError, match=message.replace("(", r"\(")) as err:
        config.resolve(config.SweepArgs(**args), extra)
    assert "\n" not in str(err.value)


def test_a_sweep_name_keeps_its_grid_unless_extended_or_forced(tmp_path):
    first = make_sweep(tmp_path, "s", ["--total-timesteps", "100"], methods=("none", "fire"))
    record = records.reconcile(first, None, extend=False, force=False)
    assert record["grid"]["method"] == ["none", "fire"] and record["args"] == first.args

    more = make_sweep(tmp_path, "s", first.args, methods=("reset",), seeds=(1, 2))
    with pytest.raises(config.SweepError, match="another grid.*--extend"):
        records.reconcile(more, json.loads(json.dumps(record)), extend=False, force=False)
    extended = records.reconcile(more, json.loads(json.dumps(record)), extend=True, force=False)
    assert extended["grid"]["method"] == ["none", "fire", "reset"]
    assert extended["grid"]["seed"] == [1, 2] and len(more.runs()) == 6  # the union runs

    other_args = make_sweep(tmp_path, "s", ["--total-timesteps", "200"], methods=("none", "fire"))
    for extend in (False, True):
        with pytest.raises(config.SweepError, match="other arguments|run arguments"):
            records.reconcile(
                other_args, json.loads(json.dumps(record)), extend=extend, force=False
            )
    forced = records.reconcile(other_args, json.loads(json.dumps(record)), extend=False, force=True)
    assert forced["args"] == ["--total-timesteps", "200"]


def test_error_line_finds_the_message():
    assert execution.error_line(["noise\n", "error: --env: unknown env 'x'\n", "\n"]) == (
        "error: --env: unknown env 'x'"
    )
    traceback = ["Traceback (most recent call last):\n", '  File "x.py"\n', "KeyError: 'a'\n"]
    assert execution.error_line(traceback) == "KeyError: 'a'"
    tyro_box = [
        "╭─ Unrecognized options ─────────╮\n",
        "│ Unrecognized options: --bogus  │\n",
        "│ ────────────────────────────── │\n",
        "│ For full helptext, run train.py --help │\n",
        "╰────────────────────────────────╯\n",
    ]
    assert execution.error_line(tyro_box) == "Unrecognized options: --bogus"


def sweep_command(*argv: str, timeout: float = 60, as_user=(), **kw) -> subprocess.CompletedProcess:
    """``python sweep.py ARGV`` run to its end (at most ``timeout`` seconds), by the command
    ``as_user`` (``setpriv ...``) when given."""
    return subprocess.run(
        [*as_user, sys.executable, "sweep.py", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


@pytest.mark.parametrize(
    "argv, line",
    [
        (
            ["--", "--seed", "3"],
            "error: --seed after '--' contradicts the grid: the sweep sets it for each run "
            "(use --agent/--env/--method/--seeds/--runs-dir/--name of sweep.py)",
        ),
        (["--env", "NoSuchEnv-v0"], "error: --env: unknown env 'NoSuchEnv-v0': use one of "),
    ],
)
def test_the_command_line_refuses_a_bad_sweep_with_exit_code_2(tmp_path, argv, line):
    runs = tmp_path / "runs"
    result = sweep_command("--agent", "dqn", "--env", "CartPole-v1", "--runs-dir", str(runs), *argv)
    assert result.returncode == 2
    [error] = result.stderr.strip().splitlines()
    assert error.startswith(line) and not runs.exists()


SMALL_GRID = {"agent": '"dqn"', "env": '"CartPole-v1"', "seeds": "1"}


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("seeds", "[]", "seeds in .*grid.toml is empty"),
        ("method", "[]", "method in .*grid.toml is empty"),
        ("env", "[]", "env in .*grid.toml is empty"),
        ("seeds", "[1, -2]", "each seed of seeds in .*grid.toml must be .* at least 0, got -2"),
        ("first_seed", "-1", "first_seed in .*grid.toml must be .* at least 0, got -1"),
        ("seeds", '"three"', "seeds in .*grid.toml must be a number of seeds .*, got 'three'"),
        ("cpus_per_run", '"one"', "cpus_per_run in .*grid.toml must be a number, got 'one'"),
        ("max_retries", "1.5", "max_retries in .*grid.toml must be a whole number"),
        ("env", '"NoSuchEnv-v0"', "--env: unknown env 'NoSuchEnv-v0'"),
        ("args", '["--total-timesteps", "many"]', "arguments after '--' .*--total-timesteps"),
    ],
)
def test_a_bad_sweep_file_is_one_line_before_anything_starts(tmp_path, setting, value, message):
    path = tmp_path / "grid.toml"
    path.write_text("".join(f"{k} = {v}\n" for k, v in {**SMALL_GRID, setting: value}.items()))
    runs = tmp_path / "runs"
    with pytest.raises((config.SweepError, UserError), match=message) as err:
        cli.main(["--file", str(path), "--runs-dir", str(runs), "--dry-run"])
    assert "\n" not in str(err.value) and not runs.exists()


@pytest.mark.parametrize("taken", ["runs", "runs/s", "runs/s/CartPole-v1__dqn-none__1"])
def test_an_output_folder_taken_by_a_file_is_one_line(tmp_path, taken):
    file = tmp_path / taken
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("not a folder")
    argv = ["--agent", "dqn", "--env", "CartPole-v1", "--seeds", "1", "--name", "s"]
    with pytest.raises(config.SweepError, match=f"{file} is a file") as err:
        cli.main([*argv, "--runs-dir", str(tmp_path / "runs"), "--dry-run"])
    assert "\n" not in str(err.value) and file.read_text() == "not a folder"


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("setpriv") is None,
    reason="root writes into read-only folders, and setpriv (util-linux) is missing",
)
def test_a_read_only_output_folder_is_one_line():
    # root writes anywhere: as root, the sweep runs as the unprivileged user "nobody", which
    # needs a folder it can reach (pytest's tmp_path is private to root)
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    with tempfile.TemporaryDirectory() as folder:
        runs = Path(folder) / "read_only"
        runs.mkdir(mode=0o555)
        os.chmod(folder, 0o755)
        result = sweep_command(
            "--agent",
            "dqn",
            "--env",
            "CartPole-v1",
            "--runs-dir",
            str(runs),
            as_user=as_nobody if os.geteuid() == 0 else (),
        )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: cannot write the sweep folder {runs}/dqn_CartPole-v1 (Permission denied): "
        "choose a writable --runs-dir"
    ]


def test_help_shows_each_default_once(capsys):
    with pytest.raises(SystemExit):
        tyro.cli(config.SweepArgs, args=["--help"], prog="sweep.py")
    text = " ".join(line.strip("│ ") for line in capsys.readouterr().out.splitlines())
    assert "(default: None)" not in text and "(default: )" not in text
    assert "(default: 3)" in text and "(default: none)" in text and "(default: runs)" in text
    without_default = ("agent", "env", "file")
    assert text.count("(default") == len(dataclasses.fields(config.SweepArgs)) - len(
        without_default
    )


def closed_port() -> int:
    """A loopback port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@needs_ray
@pytest.mark.parametrize("given_by", ["--address", "RAY_ADDRESS"])
def test_an_unreachable_ray_cluster_is_one_line_within_30_s(tmp_path, given_by):
    address = f"127.0.0.1:{closed_port()}"
    argv = ["--agent", "dqn", "--env", "CartPole-v1", "--seeds", "1", "--runs-dir", str(tmp_path)]
    if given_by == "--address":
        argv += ["--address", address]
    environment = {**os.environ, "RAY_ADDRESS": address} if given_by == "RAY_ADDRESS" else None
    result = sweep_command(*argv, "--", *TINY_ARGS, timeout=30, env=environment)
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {given_by} {address}: no Ray cluster answers there")
    sweep_dir = tmp_path / "dqn_CartPole-v1"
    with records.SweepLock(sweep_dir):  # released
        assert records.read_record(sweep_dir) is None  # and nothing recorded: nothing ran


@needs_ray
def test_address_auto_naming_a_stopped_cluster_is_one_line_within_30_s(tmp_path):
    # `ray start` wrote this machine's cluster address to ray_current_cluster; the cluster stopped
    address = f"127.0.0.1:{closed_port()}"
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(address + "\n")
    argv = ["--agent", "dqn", "--env", "CartPole-v1", "--seeds", "1", "--runs-dir", str(tmp_path)]
    environment = {**os.environ, "RAY_TMPDIR": str(tmp_path)}
    environment.pop("RAY_ADDRESS", None)
    result = sweep_command(
        *argv, "--address", "auto", "--", *TINY_ARGS, timeout=30, env=environment
    )
    assert result.returncode == 2 and result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    # Ray names the loopback by this machine's IP address
    port = address.rpartition(":")[2]
    assert line.startswith("error: --address auto → ")
    assert f":{port}: no Ray cluster answers there" in line
    (tmp_path / "ray" / "ray_current_cluster").unlink()  # no cluster was ever started here
    result = sweep_command(
        *argv, "--address", "auto", "--", *TINY_ARGS, timeout=30, env=environment
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: --address auto: no Ray cluster was started on this machine; start one (ray start "
        "--head) or name its address"
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

    assert driver.run_sweep(tiny_sweep, ["pytest", "again"]) == 0
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
        pid = wait_for(
            lambda: run_reader.checkpoint_steps(run_dir) and running_pid(run_dir, "(start)")
        )
        os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_after_checkpoint)
    killer.start()
    assert driver.run_sweep(sweep, ["pytest"]) == 1
    killer.join()
    entry = record_of(sweep)["runs"][run_dir.name]
    assert entry["state"] == "failed" and entry["error"] == "killed by signal 9 (SIGKILL)"
    first_checkpoint = run_reader.checkpoint_steps(run_dir)[-1]
    assert not (run_dir / "summary.json").exists()

    # 2. the sweep again: the run resumes from its checkpoint; Ctrl-C stops the sweep, the run
    # gets SIGINT and is recorded as interrupted, resumable
    def ctrl_c_after_a_new_checkpoint():
        pid = wait_for(lambda: running_pid(run_dir, "attempt 2 (resume)"))
        wait_for(lambda: run_reader.checkpoint_steps(run_dir)[-1] > first_checkpoint)
        _thread.interrupt_main()  # what Ctrl-C does to the sweep's process
        return pid

    pids = []
    stopper = threading.Thread(target=lambda: pids.append(ctrl_c_after_a_new_checkpoint()))
    stopper.start()
    assert driver.run_sweep(sweep, ["pytest"]) == 130
    stopper.join()
    entry = record_of(sweep)["runs"][run_dir.name]
    assert entry["state"] == "interrupted" and entry["attempts"] == 2
    assert not alive(pids[0]) and not (run_dir / "train.pid").exists()
    assert not (sweep.dir / driver.STOP_FILE).exists()
    resumed_from = run_reader.checkpoint_steps(run_dir)[-1]
    assert resumed_from > first_checkpoint

    # 3. and again: it resumes and finishes
    assert driver.run_sweep(sweep, ["pytest"]) == 0
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
    assert driver.run_sweep(refused, ["pytest"]) == 1
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
    assert driver.run_sweep(crashing, ["pytest"]) == 1
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


def rows_before(scalars: Path, step: int) -> list[dict]:
    """The rows of ``scalars.jsonl`` logged before ``step``, in their order."""
    return [row for row in run_reader.read_rows(scalars) if row["step"] < step]


@needs_ray
def test_a_run_killed_in_its_final_evaluation_is_finished_not_restarted(
    tiny_sweep, tmp_path, capsys
):
    # finished runs of the tiny sweep, their summary.json deleted (a kill during the final
    # evaluation) or cut short: their checkpoints are at the last step
    sweep = make_sweep(tmp_path, "last_step", TINY_ARGS, seeds=(1, 2))
    deleted, truncated = (sweep.dir / spec.name for spec in sweep.runs())
    for run_dir in (deleted, truncated):
        shutil.copytree(tiny_sweep.dir / run_dir.name, run_dir)
    (deleted / "summary.json").unlink()
    cut = (truncated / "summary.json").read_text()[:40]
    (truncated / "summary.json").write_text(cut)
    before = {
        run_dir: ({p.name: p.read_bytes() for p in (run_dir / "checkpoints").iterdir()},)
        + (rows_before(run_dir / "scalars.jsonl", 600),)
        for run_dir in (deleted, truncated)
    }
    assert all(run_reader.checkpoint_steps(run_dir) == [400, 600] for run_dir in before)

    assert driver.run_sweep(sweep, ["pytest"], dry_run=True) == 0
    out = capsys.readouterr().out
    assert "2 runs: 0 finished, 2 to resume, 0 to start" in out
    assert f"resume  {deleted.name}  (checkpoint at step 600)" in out
    assert f"resume  {truncated.name}  (checkpoint at step 600, unreadable" in out

    assert driver.run_sweep(sweep, ["pytest"]) == 0
    for run_dir, (checkpoints, rows) in before.items():
        assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == sorted(checkpoints)
        assert (run_dir / "checkpoints" / "step_400.pt").read_bytes() == checkpoints["step_400.pt"]
        assert rows_before(run_dir / "scalars.jsonl", 600) == rows
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["total_timesteps"] == 600
        entry = record_of(sweep)["runs"][run_dir.name]
        assert entry["state"] == "finished" and entry["attempts"] == 2, entry
        log = (run_dir / "train.log").read_text()
        assert "# sweep attempt 2 (resume)" in log and "(start)" in log  # the tiny sweep's
    assert (truncated / "summary.json.unreadable").read_text() == cut


# a train.py stand-in that finishes its run at once
FINISHING_TRAIN = """\
import json, sys
from pathlib import Path
args = sys.argv[1:]
def value(flag):
    return args[args.index(flag) + 1]
if "--resume" in args:
    run_dir = Path(value("--resume"))
else:
    run_dir = Path(value("--runs-dir")) / value("--run-name")
summary = {"status": "finished", "total_timesteps": 600, "final_eval_return": 1.0}
(run_dir / "summary.json").write_text(json.dumps(summary))
"""


@needs_ray
def test_a_killed_sweep_leaves_nothing_the_next_start_misreads(ray_session, tmp_path):
    script = tmp_path / "finishing_train.py"
    script.write_text(FINISHING_TRAIN)
    sweep = make_sweep(tmp_path, "killed", [], seeds=(1, 2, 3), train_script=script)
    started, queued, finished = (sweep.dir / spec.name for spec in sweep.runs())
    # what a kill -9 of the sweep left: every run "running" in sweep.json with an attempt;
    # only the first had started (its attempt line, a checkpoint, its train.pid); the third
    # had finished before its end was recorded (its train.pid left behind)
    record = records.reconcile(sweep, None, extend=False, force=False)
    for spec in sweep.runs():
        record["runs"][spec.name] = {**dataclasses.asdict(spec), "state": "running", "attempts": 1}
    sweep.dir.mkdir(parents=True)
    records.write_record(sweep.dir, record)
    for run_dir in (started, finished):
        (run_dir / "checkpoints").mkdir(parents=True)
        (run_dir / "train.log").write_text("\n# sweep attempt 1 (start) at then on here: ...\n")
    (started / "checkpoints" / "step_200.pt").write_bytes(b"a checkpoint")
    (finished / "summary.json").write_text(json.dumps({"status": "finished"}))

    # a process still training a run: the sweep must not start a second one
    trainer = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "--resume", str(started)]
    )
    # Popen returns once exec has begun; the kernel writes the new command line a moment later
    deadline = time.time() + 30
    while not records.trains(trainer.pid, started) and time.time() < deadline:
        time.sleep(0.01)
    try:
        for run_dir in (started, finished):
            (run_dir / "train.pid").write_text(str(trainer.pid))
        with pytest.raises(config.SweepError, match=f"still trained by process {trainer.pid}"):
            driver.run_sweep(sweep, ["pytest"])
    finally:
        trainer.kill()
        trainer.wait()

    # once it is gone, its train.pid files are stale, and sweep.json says what the folders say
    record = record_of(sweep)
    driver.recover(sweep, record, driver.plan(sweep))
    states = [
        (record["runs"][d.name]["state"], record["runs"][d.name]["attempts"])
        for d in (started, queued, finished)
    ]
    assert states == [("interrupted", 1), ("pending", 0), ("finished", 1)]
    assert not (started / "train.pid").exists() and not (finished / "train.pid").exists()

    assert driver.run_sweep(sweep, ["pytest"]) == 0
    runs = record_of(sweep)["runs"]
    assert [runs[d.name]["attempts"] for d in (started, queued, finished)] == [2, 1, 1]
    assert all(entry["state"] == "finished" for entry in runs.values())
    assert "# sweep attempt 2 (resume)" in (started / "train.log").read_text()


@needs_ray
def test_a_sweep_on_its_own_local_cluster_prints_no_token_warning(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    argv = ["--agent", "dqn", "--env", "CartPole-v1", "--seeds", "1", "--num-cpus", "1"]
    result = sweep_command(
        *argv, "--runs-dir", str(tmp_path), "--", *TINY_ARGS, timeout=300, env=environment
    )
    assert result.returncode == 0, result.stderr
    assert "oken authentication" not in result.stdout + result.stderr
    assert "1 of 1 runs finished" in result.stdout


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
    data = report_cli.main(
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
    data = report_cli.main([str(partial), "--reps", "100", "--profile-reps", "50"])
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
    scalars = run_reader.read_scalars(path)
    steps, values = scalars["eval/episodic_return"]
    assert steps.tolist() == [100, 200, 300] and values.tolist() == [10.0, 20.0, 35.0]
    assert np.isnan(scalars["charts/episodic_return"][1]).all()


def test_report_refuses_a_folder_without_runs(tmp_path):
    with pytest.raises(load.ReportError, match="holds no runs"):
        report_cli.main([str(tmp_path)])
    with pytest.raises(load.ReportError, match="is not a folder"):
        report_cli.main([str(tmp_path / "nope")])
