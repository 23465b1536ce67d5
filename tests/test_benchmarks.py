"""The benchmark scripts still run against the current agents (tiny settings; no timings)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(*argv: str) -> str:
    result = subprocess.run(
        [sys.executable, *argv], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_profile_sac_runs():
    out = run_script(
        "-m",
        "benchmarks.profile_sac",
        *("--env", "Pendulum-v1", "--learning-starts", "64", "--skip", "8", "--active", "8"),
    )
    assert "ms in matrix products" in out


def test_sps_ppo_runs():
    pytest.importorskip("stable_baselines3")
    out = run_script("-m", "benchmarks.sps_ppo", "--steps", "512", "--repeats", "1")
    assert "ours (wall) / SB3 per repeat" in out


def test_sps_times_each_variant_and_replay_ratio(tmp_path):
    pytest.importorskip("stable_baselines3")
    out = run_script(
        "-m",
        "benchmarks.sps",
        *("--env", "Pendulum-v1", "--learning-starts", "64", "--steps", "120", "--repeats", "1"),
        *("--updates-per-step", "1", "2", "--out", str(tmp_path / "sps.jsonl")),
    )
    assert "median, updates/step 2: eager" in out and "× SB3" in out
    records = (tmp_path / "sps.jsonl").read_text().splitlines()
    assert len(records) == 2


def test_atari_vector_sps_times_both_paths(tmp_path):
    pytest.importorskip("ale_py")
    pytest.importorskip("cv2")
    out = run_script(
        "-m",
        "benchmarks.atari_vector_sps",
        *("--copies", "2", "--steps", "40", "--repeats", "1", "--out", str(tmp_path / "sps")),
    )
    assert "| 2 |" in out and "ALE / gymnasium" in out
    assert (tmp_path / "sps.json").exists() and (tmp_path / "sps.md").exists()


def test_gpu_check_compares_compiled_runs_with_eager_ones(tmp_path):
    """On the CPU the check runs eager against --compile and --whole-graph (its check): a DQN
    run with FIRE + AdamO at its midpoint ends at the eager run's parameters (bit for bit
    for --whole-graph, which runs eagerly here), and a run twice as long compiles no more."""
    out = run_script(
        "-m",
        "benchmarks.gpu_check",
        *("--agents", "dqn", "--methods", "fire+adamo", "--steps", "200"),
        *("--results", str(tmp_path)),
    )
    assert "2 of 2 checks passed" in out
    compiled, whole = json.loads((tmp_path / "gpu_check.json").read_text())["correctness"]
    assert compiled["mode"] == "compile" and compiled["interventions"] == {"q": 1}
    assert compiled["graphs"] == compiled["graphs_twice_as_long"]
    assert compiled["relative_error"] < 1e-4
    assert whole["mode"] == "whole_graph" and whole["interventions"] == {"q": 1}
    assert whole["relative_error"] == 0.0 and whole["graphs"] == 0
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| dqn | `fire+adamo` | compile | yes |" in table
    assert "| dqn | `fire+adamo` | whole_graph | yes | 0.0e+00 |" in table
