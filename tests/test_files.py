"""Atomic writes (a failure or a full disk leaves the old file and no temporary file) and safe
checkpoint reads (agents/files.py)."""

import errno
import json

import numpy as np
import pytest
import torch
from conftest import Planted

from agents.cli import run_cli
from agents.files import (
    DiskFull,
    UnsafeCheckpoint,
    disk_full_message,
    is_disk_full,
    read_checkpoint,
    write_atomic,
    write_json_atomic,
)


def test_json_is_written_and_replaces_the_old_file(tmp_path):
    path = tmp_path / "summary.json"
    write_json_atomic(path, {"status": "running"})
    write_json_atomic(path, {"status": "finished"})
    assert json.loads(path.read_text()) == {"status": "finished"}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_full_disk_is_one_line_and_leaves_no_partial_file(tmp_path):
    path = tmp_path / "step_10.pt"
    path.write_bytes(b"old")

    def write(file):
        file.write(b"x" * 5000)
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(DiskFull) as caught:
        write_atomic(path, write)
    message = str(caught.value)
    assert "\n" not in message and str(tmp_path) in message and "4.9 KB" in message
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["step_10.pt"]


def test_other_failures_propagate_and_clean_up(tmp_path):
    def write(file):
        file.write(b"partial")
        raise ValueError("not a disk problem")

    with pytest.raises(ValueError, match="not a disk problem"):
        write_atomic(tmp_path / "a.json", write)
    assert list(tmp_path.iterdir()) == []


def test_torch_reports_a_full_disk_as_a_runtime_error_with_the_errno_text():
    assert is_disk_full(RuntimeError("[enforce fail] unexpected pos: No space left on device"))
    assert not is_disk_full(RuntimeError("unexpected pos 64 vs 0"))


# --- reading checkpoints --------------------------------------------------------------------


def test_a_planted_checkpoint_is_refused_and_runs_nothing(tmp_path):
    target = tmp_path / "created_by_unpickling"
    path = tmp_path / "step_10.pt"
    torch.save({"agent": "dqn", "step": 10, "q": Planted(target)}, path)
    with pytest.raises(UnsafeCheckpoint) as caught:
        read_checkpoint(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "would call io.open" in message
    assert not target.exists()
    torch.load(path, weights_only=False)  # what loading it unguarded would have done
    assert target.exists()


def test_checkpoints_with_numpy_states_from_before_still_load(tmp_path):
    """Checkpoints before NumPy states were stored as plain values: NumPy's RNG keys (uint32)
    and PPO's running statistics (float64 arrays and a float64 count)."""
    rng = np.random.get_state()
    mean, count = np.arange(3, dtype=np.float64), np.float64(7.5)
    path = tmp_path / "old.pt"
    torch.save({"rng": {"numpy": rng}, "obs_rms": (mean, mean**2, count)}, path)
    state = read_checkpoint(path)
    name, keys, *rest = state["rng"]["numpy"]
    assert name == "MT19937" and np.array_equal(keys, rng[1]) and tuple(rest) == rng[2:]
    saved_mean, _, saved_count = state["obs_rms"]
    assert np.array_equal(saved_mean, mean) and saved_count == 7.5


def test_a_full_disk_anywhere_in_a_run_is_one_line_and_exit_2(capsys):
    def main():
        raise OSError(errno.ENOSPC, "No space left on device", "runs/a/scalars.jsonl")

    with pytest.raises(SystemExit) as caught:
        run_cli(main)
    assert caught.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: the disk is full (writing runs/a/scalars.jsonl)")
    assert "--resume" in line
    assert disk_full_message(ValueError("other")) is None
