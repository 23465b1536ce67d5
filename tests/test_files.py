"""Atomic writes: a failure or a full disk leaves the old file and no temporary file."""

import errno
import json

import pytest

from agents.files import DiskFull, is_disk_full, write_atomic, write_json_atomic


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
