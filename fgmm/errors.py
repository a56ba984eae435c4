"""Exceptions raised by fgmm.

Every error that comes from user input names the file (or config key) and the problem, so that
command-line users get one readable line instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path


class FgmmError(Exception):
    """Base class of all fgmm errors; the CLI prints these as one line and exits with code 3
    (:class:`UsageError`: code 2, like the option parser's own errors)."""


class DataError(FgmmError):
    """A data file is missing, unreadable, corrupt or inconsistent.

    Args:
        path: the offending file or folder.
        problem: what is wrong with it, in plain words.
        line: 1-based line number when the problem is on one line of a text file.
    """

    def __init__(self, path: str | Path | None, problem: str, line: int | None = None):
        self.path = Path(path) if path is not None else None
        self.problem = problem
        self.line = line
        where = "" if path is None else f"{path}{f':{line}' if line is not None else ''}: "
        super().__init__(f"{where}{problem}")


class OwnershipError(DataError):
    """fgmm refuses to write into, overwrite or delete something it did not create (see :mod:`fgmm.ownership`)."""


class ConfigError(FgmmError, ValueError):
    """A configuration file or value is invalid (unknown key, wrong type, out of range); also a ``ValueError``."""


class UsageError(ConfigError):
    """The command line combines options wrongly (``give exactly one of --text or --image``): exit code 2."""


class WeightsUnavailableError(FgmmError):
    """Pretrained weights cannot be obtained (no network and no offline copy)."""


class MissingExtraError(FgmmError):
    """An optional dependency is not installed.

    Args:
        package: the import name that failed.
        extra: the pip extra that provides it, e.g. ``"faiss"`` for ``pip install fgmm[faiss]``.
    """

    def __init__(self, package: str, extra: str):
        self.package = package
        self.extra = extra
        super().__init__(
            f"this feature needs the optional package '{package}': install it with "
            f"`pip install \"fgmm[{extra}]\"`"
        )


def require(module: str, extra: str):
    """Import an optional dependency lazily, raising :class:`MissingExtraError` when absent."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised when extras are missing
        raise MissingExtraError(module, extra) from exc
