"""Files written so that a crash or a full disk never leaves a half-written one behind.

Every file the project reads back (``config.json``, ``summary.json``, ``sweep.json``,
checkpoints) is written to a temporary file in the same folder, flushed and fsync'ed, then
renamed over the old one: a reader sees the old file or the new one, never a mix. When the
disk fills up (``ENOSPC``, ``EDQUOT``) the temporary file is removed and :class:`DiskFull`
says which folder and how much was being written.
"""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

from agents.cli import UserError

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
