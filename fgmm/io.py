"""Atomic file writes: readers see the old file or the complete new one, never half of it.

A write goes to ``.<name>.<pid>.<random>.tmp`` next to the target, is fsync'ed and renamed over it. A
process killed mid-write leaves that temporary behind; the next write of the same file removes the
temporaries of processes that are no longer running (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import csv
import io
import os
import secrets
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, BinaryIO


def fsync_dir(folder: Path) -> None:
    """Persist a rename in ``folder`` (no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _running(pid: int) -> bool:
    """Whether a process ``pid`` exists (on this machine)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but belongs to someone else, or the check is not supported: keep its file
    return True


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete ``.<name>.<pid>.*.tmp`` files next to ``path`` left by processes that are gone.

    Temporaries of running processes (a concurrent writer of the same file) are kept. Returns the
    files removed.
    """
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    try:
        entries = [e.name for e in os.scandir(path.parent) if e.name.startswith(prefix) and e.name.endswith(".tmp")]
    except OSError:
        return []
    for name in entries:
        pid = name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            stale = path.with_name(name)
            stale.unlink(missing_ok=True)
            removed.append(stale)
    return removed


def atomic_write(path: str | Path, write: Callable[[BinaryIO], Any]) -> Path:
    """Call ``write(binary_file)`` on a temp file next to ``path``, fsync it and move it into place.

    When ``path`` already exists (a file that is rewritten, like ``last.ckpt``), temporaries that
    killed writers left next to it are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open rather than mkstemp: the file gets the usual umask-based permissions, not 0600
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_bytes_atomic(path: str | Path, data: bytes | str) -> Path:
    """Atomically write ``data`` (``str`` is encoded as UTF-8) to ``path``; returns the path."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    return atomic_write(path, lambda handle: handle.write(payload))


def write_csv_atomic(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Atomically write a UTF-8 CSV (``csv.writer``, ``\\n`` line ends): ``header`` then ``rows``; returns the path."""
    def write(handle: BinaryIO) -> None:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        text.flush()
        text.detach()

    return atomic_write(path, write)
