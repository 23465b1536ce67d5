"""Reading a run folder that ``train.py`` wrote (the writer is :mod:`agents.run`): its
``config.json``, ``summary.json``, ``scalars.jsonl`` and checkpoint steps. The one reader of these
files for the sweep, the report, the benchmarks and the tests.

Two ways to read a JSON file: :func:`read_json` says in one line what is wrong with a file that
cannot be read (the report names it), :func:`read_summary` treats such a file as no summary (the
sweep resumes the run). :func:`read_rows` gives the rows of ``scalars.jsonl`` as the run logged
them, :func:`read_scalars` the same as ``{key: (steps, values)}`` arrays.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
SCALARS_FILE = "scalars.jsonl"


class UnreadableFile(Exception):
    """A file of the sweep that is not what train.py or sweep.py writes: why, in one line."""


KINDS = {str: "a string", int: "an integer", float: "a number"}


def is_a(value, kind: type) -> bool:
    """Whether ``value`` is a JSON value of ``kind`` (an integer is a number, a bool is none)."""
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) if kind is float else isinstance(value, kind)


def read_json(path: Path) -> dict | None:
    """A JSON object file, or None when absent; :class:`UnreadableFile` says what is wrong with
    one that is not a readable JSON object."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise UnreadableFile(f"{path.name} is not text (binary data)") from None
    except OSError as err:
        raise UnreadableFile(f"{path.name} cannot be read ({err.strerror})") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise UnreadableFile(
            f"{path.name} is not valid JSON ({err.msg}: line {err.lineno} column {err.colno})"
        ) from None
    if not isinstance(value, dict):
        raise UnreadableFile(f"{path.name} holds a JSON {type(value).__name__}, not an object")
    return value


def is_finished(summary: dict | None) -> bool:
    """Whether a run with this summary finished (a summary without a status predates statuses)."""
    return summary is not None and summary.get("status", "finished") == "finished"


def read_summary(run_dir: Path) -> dict | None:
    """``summary.json`` of a run, or None (absent, or unreadable: cut short, not a JSON object)."""
    try:
        summary = json.loads((run_dir / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def checkpoint_steps(run_dir: Path) -> list[int]:
    """Steps of the run's checkpoints (``checkpoints/step_<k>.pt``), ascending."""
    from agents.run import checkpoint_files

    return [int(path.stem[5:]) for path in checkpoint_files(run_dir)]


class Rows(list):
    """The rows of a ``scalars.jsonl`` (dicts with a ``step``), and the numbers of its lines that
    are not rows (``unreadable_lines``), which were left out."""

    def __init__(self, rows: list[dict], unreadable_lines):
        super().__init__(rows)
        self.unreadable_lines: list[int] = list(unreadable_lines)


class Scalars(dict):
    """``{key: (steps, values)}`` of a ``scalars.jsonl``, and the numbers of its lines that
    are not rows (``unreadable_lines``), which were left out."""

    def __init__(self, columns: dict[str, tuple[np.ndarray, np.ndarray]], unreadable_lines):
        super().__init__(columns)
        self.unreadable_lines: list[int] = list(unreadable_lines)


def read_rows(path: Path) -> Rows:
    """The rows of a ``scalars.jsonl`` in the order logged (no file, no rows; ``null`` kept as
    None).

    A resumed run logs again from its checkpoint's step, so a row whose step is below the
    previous row's starts a new attempt: it replaces the earlier rows from that step on. A line
    that is not a row (cut short by a killed process) is left out and its number kept. A file
    that cannot be read at all raises :class:`UnreadableFile`.
    """
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        lines = []
    except OSError as err:
        raise UnreadableFile(f"{path.name} cannot be read ({err.strerror})") from None
    rows: list[dict] = []
    unreadable = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        row = scalars_row(line)
        if row is None:
            unreadable.append(number)
            continue
        if rows and row["step"] < rows[-1]["step"]:
            rows = [r for r in rows if r["step"] < row["step"]]
        rows.append(row)
    return Rows(rows, unreadable)


def run_rows(run_dir: Path | str) -> Rows:
    """:func:`read_rows` of a run folder's ``scalars.jsonl``."""
    return read_rows(Path(run_dir) / SCALARS_FILE)


def read_scalars(path: Path) -> Scalars:
    """``{key: (steps, values)}`` of a ``scalars.jsonl`` (``null`` is NaN), from
    :func:`read_rows`."""
    rows = read_rows(path)
    columns: dict[str, tuple[list, list]] = {}
    for row in rows:
        for key, value in row.items():
            if key == "step":
                continue
            steps, values = columns.setdefault(key, ([], []))
            steps.append(int(row["step"]))
            values.append(math.nan if value is None else float(value))
    return Scalars(
        {k: (np.asarray(s, dtype=np.int64), np.asarray(v)) for k, (s, v) in columns.items()},
        rows.unreadable_lines,
    )


def scalars_row(line: bytes) -> dict | None:
    """A line of ``scalars.jsonl`` as a row (a numeric ``step``, numbers or nulls), or None."""
    try:
        row = json.loads(line)
    except ValueError:  # invalid JSON or UTF-8
        return None
    if not isinstance(row, dict) or not is_a(row.get("step"), float):
        return None
    if not all(value is None or is_a(value, float) for value in row.values()):
        return None
    return row
