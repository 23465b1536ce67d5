"""Files written so that a crash or a full disk never leaves a half-written one behind, and
checkpoints read so that a planted file cannot run code.

Every file the project reads back (``config.json``, ``summary.json``, ``sweep.json``,
checkpoints) is written to a temporary file in the same folder, flushed and fsync'ed, then
renamed over the old one: a reader sees the old file or the new one, never a mix. When the
disk fills up (``ENOSPC``, ``EDQUOT``) the temporary file is removed and :class:`DiskFull`
says which folder and how much was being written.

Checkpoints are read with ``torch.load(weights_only=True)`` (:func:`read_checkpoint`): tensors
and plain values only, so unpickling cannot call arbitrary Python. Checkpoints written before
NumPy states were stored as plain values still load, through an allow-list of exactly the
NumPy array and scalar constructors they hold.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import torch

from agents.errors import UserError

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


class DiskFull(UserError):
    """The disk filled up while a file was being written (the partial file was removed)."""


def _size(nbytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if nbytes < 1024 or unit == "GB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` (or what it was raised from) says the disk or quota is full; torch's
    C++ writer reports it as a ``RuntimeError`` whose text carries the errno message."""
    while err is not None:
        if isinstance(err, OSError) and err.errno in _NO_SPACE:
            return True
        if isinstance(err, RuntimeError) and any(
            os.strerror(code) in str(err) for code in _NO_SPACE
        ):
            return True
        err = err.__cause__ or err.__context__
    return False


def disk_full_message(err: BaseException) -> str | None:
    """One line for a write that failed on a full disk anywhere in a run (a log line, an
    event file); None when ``err`` is something else."""
    if not is_disk_full(err):
        return None
    where = getattr(err, "filename", None)
    return (
        f"the disk is full{f' (writing {where})' if where else ''}: free some space, then "
        "continue the run with --resume (its checkpoints and logs are intact)"
    )


def write_atomic(path: Path | str, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file, then rename it into place.

    A full disk raises :class:`DiskFull` (one line: the folder and the size written so far);
    any failure removes the temporary file and leaves an existing ``path`` untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    written = 0
    try:
        with open(tmp, "wb") as file:
            write(file)
            file.flush()
            written = file.tell()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp.exists():
            written = written or tmp.stat().st_size
            tmp.unlink()
        if is_disk_full(err):
            raise DiskFull(
                f"the disk holding {path.parent} is full: writing {path.name} stopped after "
                f"{_size(written)}; free some space (earlier files are intact) and resume"
            ) from None
        raise


def write_json_atomic(path: Path | str, value: object) -> None:
    """``value`` as indented JSON in ``path``, written atomically (:func:`write_atomic`)."""
    data = json.dumps(value, indent=2).encode()
    write_atomic(path, lambda file: file.write(data))


class UnsafeCheckpoint(UserError):
    """A checkpoint whose unpickling would call Python code beyond tensors and plain values."""


# What checkpoints written before NumPy states were stored as plain values hold: NumPy's RNG
# key array and PPO's running statistics (arrays and float64 scalars). These constructors build
# an array or scalar from a dtype and raw bytes; an object dtype's items still pass through the
# restricted unpickler, so nothing here lets a file call other code. The second name of each
# pair is how NumPy 1 pickled it.
_NUMPY_GLOBALS = [
    np.ndarray,
    np.dtype,
    np.dtypes.UInt32DType,  # NumPy's RNG keys
    np.dtypes.Float64DType,  # PPO's running statistics
    np._core.multiarray._reconstruct,
    np._core.multiarray.scalar,
    (np._core.multiarray._reconstruct, "numpy.core.multiarray._reconstruct"),
    (np._core.multiarray.scalar, "numpy.core.multiarray.scalar"),
]


def read_checkpoint(path: Path | str, map_location: torch.device | str = "cpu") -> object:
    """A checkpoint file loaded with ``weights_only=True`` (see the module docstring).

    A file that asks for anything else (a planted file whose unpickling would run code) is an
    :class:`UnsafeCheckpoint` naming the file and what it asked for; nothing of it is run.
    Other failures (a truncated or foreign file) propagate for the caller to word.
    """
    try:
        with torch.serialization.safe_globals(_NUMPY_GLOBALS):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        wanted = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if wanted is None:
            raise
        raise UnsafeCheckpoint(
            f"checkpoint {path} was refused: loading it would call {wanted.group(1)}, which "
            "could run code (a file this project wrote holds only tensors and plain values); "
            "delete it unless you wrote it yourself"
        ) from None
