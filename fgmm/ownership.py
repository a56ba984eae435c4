"""Which folders fgmm owns, so that it never deletes or overwrites a file it did not create.

Every folder fgmm creates for its own output -- a training run, a feature-cache namespace, a
retrieval index, a generated dataset, a demo report -- carries a small marker file,
``.fgmm.json``::

    {"fgmm": "run", "format": 1, "created": "2026-12-01T03:00:00+0000", "fgmm_version": "0.1.0",
     "foreign": []}

``fgmm`` names the *kind* of folder; ``foreign`` lists the entries that were already there when fgmm
took the folder over with ``force`` (fgmm never touches them). Destructive operations
(``fgmm cache clear``, ``fgmm train --fresh``) check the marker and refuse folders without one, and
delete only the entries of the kind's own file patterns that are not foreign.

The rule for an output folder (:func:`claim_folder`):

* absent or empty: fgmm creates it and marks it;
* marked with the same kind: fgmm writes its files again (they are its own);
* marked with another kind: refused;
* any other non-empty folder: refused unless ``force``; with ``force`` fgmm marks it, listing what is
  there as foreign, and refuses to write over any of those entries.

Folders written by fgmm before markers existed are recognised by a per-kind ``legacy`` test (for
example a ``meta.json`` carrying the feature-cache format stamp) and adopted: marked on first write.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from fgmm.errors import OwnershipError
from fgmm.io import write_bytes_atomic

MARKER = ".fgmm.json"
MARKER_FORMAT = 1
#: what fgmm's atomic writes leave behind when killed (see :func:`fgmm.io.atomic_write`)
TEMPORARY_PATTERN = ".*.tmp"

Legacy = Callable[[Path], bool]


def read_marker(folder: str | Path) -> dict[str, Any] | None:
    """The marker of ``folder`` as a dict, or ``None`` when there is none (or it is not fgmm's)."""
    path = Path(folder) / MARKER
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("fgmm"), str) else None


def write_marker(folder: str | Path, kind: str, foreign: Iterable[str] = (), **info: Any) -> dict[str, Any]:
    """Mark ``folder`` (created when absent) as an fgmm folder of ``kind``; returns the marker."""
    import fgmm

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    marker = {"fgmm": kind, "format": MARKER_FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "fgmm_version": fgmm.__version__, "foreign": sorted(foreign), **info}
    write_bytes_atomic(folder / MARKER, json.dumps(marker, indent=2) + "\n")
    return marker


def is_empty(folder: Path) -> bool:
    """Whether ``folder`` is absent or an empty directory (temporaries of fgmm's atomic writes aside,
    e.g. the marker another process is writing right now)."""
    if not folder.exists():
        return True
    return folder.is_dir() and not any(not fnmatch.fnmatchcase(entry.name, TEMPORARY_PATTERN)
                                       for entry in os.scandir(folder))


def owner(folder: str | Path, legacy: Legacy | None = None, kind: str | None = None) -> str | None:
    """The kind of fgmm folder ``folder`` is (its marker's, or ``kind`` when ``legacy`` recognises an
    unmarked folder fgmm wrote), else ``None``."""
    folder = Path(folder)
    marker = read_marker(folder)
    if marker is not None:
        return marker["fgmm"]
    if kind is not None and legacy is not None and folder.is_dir() and legacy(folder):
        return kind
    return None


def is_owned(folder: str | Path, kind: str, legacy: Legacy | None = None) -> bool:
    """Whether ``folder`` is an fgmm folder of ``kind`` (marked, or recognised by ``legacy``)."""
    return owner(folder, legacy, kind) == kind


def _refuse(folder: Path, problem: str) -> OwnershipError:
    return OwnershipError(folder, problem)


def claim_folder(folder: str | Path, kind: str, *, force: bool = False, reserved: Sequence[str] = (),
                 legacy: Legacy | None = None, what: str = "output folder", write: bool = True) -> dict[str, Any]:
    """Make ``folder`` fgmm's folder of ``kind`` following the rule in the module docstring.

    Args:
        folder: the output folder.
        kind: what fgmm keeps there (``"run"``, ``"index"``, ``"dataset"``, ...).
        force: take over a non-empty folder that is not fgmm's (its entries are never touched).
        reserved: names fgmm will write directly in the folder; with ``force`` none may exist yet.
        legacy: recognises an unmarked folder written by an fgmm without markers.
        what: how error messages call the folder (e.g. ``"run folder (--out)"``).
        write: ``False`` only checks (for processes that must not write, e.g. DDP ranks > 0).

    Returns:
        The folder's marker.

    Raises:
        OwnershipError: the folder is a file, another kind of fgmm folder, or a non-empty folder that
            is not fgmm's (without ``force``, or with ``force`` when a reserved name exists there).
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise _refuse(folder, f"the {what} is a file, not a folder")
    marker = read_marker(folder)
    if marker is not None:
        if marker["fgmm"] != kind:
            raise _refuse(folder, f"this is an fgmm {marker['fgmm']} folder, not a {kind} folder; "
                                  f"choose another {what}")
        return marker
    if is_empty(folder) or (legacy is not None and folder.is_dir() and legacy(folder)):
        foreign: list[str] = []
    elif not force:
        raise _refuse(folder, f"the {what} is not empty and was not created by fgmm; choose an empty or new "
                              "folder, or pass --force to add fgmm's files next to what is there (fgmm never "
                              "overwrites or deletes files it did not create)")
    else:
        foreign = sorted(entry.name for entry in os.scandir(folder))
        clash = sorted(set(foreign) & set(reserved))
        if clash:
            raise _refuse(folder / clash[0], f"exists and was not created by fgmm, so even with --force it is not "
                                             f"overwritten; move it away or choose another {what}")
    return write_marker(folder, kind, foreign) if write else {"fgmm": kind, "foreign": foreign}


@contextlib.contextmanager
def claimed_folder(folder: str | Path, kind: str, **options: Any) -> Iterator[dict[str, Any]]:
    """:func:`claim_folder` for the duration of a block that fills the folder; when the block fails
    before writing anything, the claim is undone (the marker goes, and the folder if this made it)."""
    folder = Path(folder)
    created, marked = not folder.exists(), read_marker(folder) is not None
    marker = claim_folder(folder, kind, **options)
    try:
        yield marker
    except BaseException:
        if not marked and is_empty_but_marker(folder):
            (folder / MARKER).unlink(missing_ok=True)
            if created:
                folder.rmdir()
        raise


def is_empty_but_marker(folder: Path) -> bool:
    """Whether ``folder`` holds nothing but (possibly) its marker and temporaries."""
    return folder.is_dir() and all(entry.name == MARKER or fnmatch.fnmatchcase(entry.name, TEMPORARY_PATTERN)
                                   for entry in os.scandir(folder))


def check_new_file(path: str | Path, force: bool = False, what: str = "output file") -> Path:
    """Refuse to write ``path`` when it exists (unless ``force``) or is a folder; returns it.

    A single output file named by the user carries no marker, so an existing one is only replaced
    when the user says so.
    """
    path = Path(path)
    if path.is_dir():
        raise OwnershipError(path, f"the {what} is a folder; give a file name")
    if path.exists() and not force:
        raise OwnershipError(path, f"the {what} exists; pass --force to overwrite it")
    return path


def owned_entries(folder: str | Path, patterns: Sequence[str]) -> list[Path]:
    """Entries of ``folder`` matching ``patterns`` (fnmatch) that are not listed as foreign in its marker.

    Temporaries of killed atomic writes (``.*.tmp``) always count as fgmm's.
    """
    folder = Path(folder)
    marker = read_marker(folder) or {}
    foreign = set(marker.get("foreign", ()))
    if not folder.is_dir():
        return []
    return sorted(folder / entry.name for entry in os.scandir(folder)
                  if entry.name not in foreign and entry.name != MARKER
                  and any(fnmatch.fnmatchcase(entry.name, p) for p in (*patterns, TEMPORARY_PATTERN)))


def remove_path(path: Path) -> None:
    """Delete a file or a whole folder tree (only ever called on entries fgmm owns)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def remove_owned_folder(folder: str | Path, kind: str, patterns: Sequence[str],
                        legacy: Legacy | None = None) -> list[Path]:
    """Delete fgmm's own entries of ``folder`` (``patterns``, not foreign), then the marker and the
    folder itself when nothing else is left.

    Returns:
        The entries that were left because fgmm did not create them (empty when the folder is gone).

    Raises:
        OwnershipError: ``folder`` is not an fgmm folder of ``kind``: nothing is deleted.
    """
    folder = Path(folder)
    if not is_owned(folder, kind, legacy):
        raise OwnershipError(folder, f"not an fgmm {kind} folder (no {MARKER} marker): refusing to delete it")
    for path in owned_entries(folder, patterns):
        remove_path(path)
    (folder / MARKER).unlink(missing_ok=True)
    left = sorted(folder / entry.name for entry in os.scandir(folder))
    if left:  # put the marker back: the folder still holds fgmm's claim on what it may write
        write_marker(folder, kind, (p.name for p in left))
        return left
    folder.rmdir()
    return []


__all__ = ["MARKER", "OwnershipError", "check_new_file", "claim_folder", "claimed_folder", "is_empty",
           "is_empty_but_marker", "is_owned", "owned_entries", "owner", "read_marker", "remove_owned_folder",
           "remove_path", "write_marker"]
