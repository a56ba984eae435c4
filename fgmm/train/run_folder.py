"""Run folders: what ``fgmm train --out DIR`` may do with ``DIR``, decided before anything is written.

A run folder carries the ownership marker of kind ``"run"`` (:mod:`fgmm.ownership`). The rules,
shared by ``fgmm train`` and any training path built on the :class:`~fgmm.train.Trainer`:

* ``DIR`` absent or empty: a new run.
* ``DIR`` holds an fgmm run:

  - ``resume``: continue it from ``last.ckpt`` when it is unfinished and was started with the same
    settings and data (:func:`check_resumable`, :func:`check_same_setup`); a *finished* run is an error
    (nothing to resume), as is any other difference;
  - ``fresh``: start over; the old run's files are moved aside (``DIR/.fgmm-previous``) only after every
    check has passed, put back if setting the new run up fails, and deleted once it is set up;
  - neither: an error naming both options. An existing run is never silently resumed or replaced.
* ``DIR`` non-empty and not an fgmm run: refused unless ``force``; with ``force`` fgmm adds its files
  next to what is there and refuses to write over any of it (it never deletes files it did not create).

Typical use (what :func:`fgmm.experiment.train_experiment` does)::

    plan = plan_run(out_dir, train_config, resume=resume, fresh=fresh, force=force, has_val=True)
    ... load and check data, build the model (nothing written yet) ...
    check_same_setup(plan, {"classes": ..., "data_fingerprint": ...})
    with open_run(plan):                  # new: mark; fresh: old files aside; any error: rolled back
        write your run files
    Trainer(model, train_config, ...).fit(resume=plan.action == "resume")
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from fgmm.errors import ConfigError, OwnershipError
from fgmm.ownership import (
    MARKER,
    claim_folder,
    is_empty,
    owned_entries,
    owner,
    read_marker,
    remove_path,
)
from fgmm.train.config import TrainConfig, config_from_dict

RUN_KIND = "run"
LAST_NAME = "last.ckpt"
BEST_NAME = "best.ckpt"
#: what the Trainer writes in its ``out_dir``
TRAINER_FILES: tuple[str, ...] = (LAST_NAME, BEST_NAME, "metrics.jsonl", "metrics.csv", "config.json", "tensorboard")
#: what ``fgmm train`` / ``fgmm evaluate`` write in a run folder
RUN_FILES: tuple[str, ...] = (*TRAINER_FILES, "experiment.yaml", "model.json", "eval.json", "per_class.png",
                              "confusion.png", "training.png")
PREVIOUS = ".fgmm-previous"
# TrainConfig keys that may change between a checkpoint and its resumption
RESUMABLE_CHANGES = frozenset({
    "epochs", "max_steps", "progress", "log_every_steps", "checkpoint_every_steps", "num_workers",
    "device", "out_dir", "early_stopping_patience", "restore_best", "csv_log", "tensorboard",
    "eval_batch_size", "find_unused_parameters",
})


def peek_checkpoint(path: Path) -> dict[str, Any] | None:
    """The non-tensor entries of a Trainer checkpoint (position, config, early stopping), read without
    loading its weights (memory-mapped); ``None`` when ``path`` is not a readable fgmm checkpoint."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - torch raises many types for files that are not checkpoints
        return None
    if not isinstance(state, dict) or "format" not in state or "config" not in state:
        return None
    return {k: state.get(k) for k in ("epoch", "batch_in_epoch", "global_step", "early_stopping", "config")}


def legacy_run(folder: Path) -> bool:
    """A run folder written before ownership markers: a readable fgmm ``last.ckpt``, or a
    ``config.json`` that is a :class:`TrainConfig`."""
    if peek_checkpoint(folder / LAST_NAME) is not None:
        return True
    import json

    try:
        config_from_dict(TrainConfig, json.loads((folder / "config.json").read_text()))
    except Exception:  # noqa: BLE001 - anything unreadable is simply not a legacy run
        return False
    return True


def ensure_run_folder(folder: str | Path, write: bool = True) -> None:
    """Make ``folder`` a run folder for a :class:`~fgmm.train.Trainer`: absent, empty or already a run
    (marked, or written by an fgmm without markers); anything else is refused.

    Raises:
        OwnershipError: ``folder`` is a file, another kind of fgmm folder, or a non-empty folder fgmm did
            not create (take it over with :func:`fgmm.ownership.claim_folder` ``(folder, "run", force=True)``
            or ``fgmm train --force``).
    """
    claim_folder(folder, RUN_KIND, legacy=legacy_run, what="run folder (out_dir)", write=write,
                 reserved=TRAINER_FILES)


def stop_reason_of(progress: Mapping[str, Any], config: TrainConfig, has_val: bool) -> str | None:
    """Why a run at ``progress`` (``epoch``, ``global_step``, ``early_stopping``) is over under ``config``:
    ``"completed"``, ``"max_steps"`` or ``"early_stopping"``; ``None`` while it has training left."""
    if config.max_steps is not None and progress["global_step"] >= config.max_steps:
        return "max_steps"
    patience = config.early_stopping_patience
    if has_val and patience is not None and (progress.get("early_stopping") or {}).get("bad_epochs", 0) >= patience:
        return "early_stopping"
    if progress["epoch"] >= config.epochs:
        return "completed"
    return None


def check_resumable(saved: Mapping[str, Any], config: TrainConfig, path: Path, warn: bool = True) -> None:
    """Refuse to resume a checkpoint written with other settings (other than :data:`RESUMABLE_CHANGES`);
    warn (when ``warn``) that a changed number of epochs stretches the schedule."""
    current = config.to_dict()
    changed = [k for k in current if k not in RESUMABLE_CHANGES and saved.get(k) != current[k]]
    if changed:
        key = changed[0]
        raise ConfigError(f"{path}: the checkpoint was written with {key}={saved.get(key)!r}, the "
                          f"config now says {current[key]!r} ({len(changed)} such keys: "
                          f"{', '.join(changed)}); use the same settings to resume, or another "
                          "out_dir / fit(resume=False) (fgmm train --fresh) to start over")
    if warn and saved.get("epochs") != current["epochs"]:
        warnings.warn(f"{path}: resuming a run planned for {saved.get('epochs')} epochs with "
                      f"epochs={current['epochs']}: the learning-rate schedule is stretched from "
                      "the current step on", stacklevel=4)


def finished_error(folder: Path, reason: str, progress: Mapping[str, Any]) -> ConfigError:
    return ConfigError(f"{folder}: the run there has finished ({reason} after {progress['epoch']} epoch(s), "
                       f"{progress['global_step']} steps); there is nothing to resume. Start over with --fresh "
                       "(fit(resume=False)), write to another --out, or raise --epochs / max_steps to continue it")


@dataclass
class RunPlan:
    """What :func:`plan_run` decided for a run folder.

    Attributes:
        folder: the run folder.
        action: ``"new"``, ``"resume"`` or ``"fresh"``.
        force: take over a non-empty folder that is not an fgmm run.
        progress: the existing run's position (:func:`peek_checkpoint`), when it has a checkpoint.
        files: the names the run writes (what ``fresh`` moves aside).
    """

    folder: Path
    action: Literal["new", "resume", "fresh"]
    force: bool = False
    progress: dict[str, Any] | None = None
    files: tuple[str, ...] = RUN_FILES


def plan_run(folder: str | Path, config: TrainConfig, *, resume: bool = False, fresh: bool = False,
             force: bool = False, has_val: bool = True, files: Sequence[str] = RUN_FILES) -> RunPlan:
    """Decide what to do with run folder ``folder`` (rules in the module docstring); writes nothing.

    Raises:
        ConfigError: both ``resume`` and ``fresh``; an existing run without either; ``resume`` of a
            finished run or of one with other settings.
        OwnershipError: the folder is a file, another kind of fgmm folder, or not an fgmm run (without
            ``force``, or with ``force`` when one of ``files`` exists there).
    """
    folder = Path(folder)
    if resume and fresh:
        raise ConfigError("--resume and --fresh exclude each other: resume continues the run, fresh starts over")
    if folder.exists() and not folder.is_dir():
        raise OwnershipError(folder, "the run folder (--out) is a file, not a folder")
    kind = owner(folder, legacy_run, RUN_KIND)
    if kind is None:
        if not is_empty(folder):  # not an fgmm run: the ownership rule decides (nothing is written here)
            claim_folder(folder, RUN_KIND, force=force, reserved=files, what="run folder (--out)", write=False)
        return RunPlan(folder, "fresh" if fresh else "new", force=force, files=tuple(files))
    if kind != RUN_KIND:
        raise OwnershipError(folder, f"this is an fgmm {kind} folder, not a run folder; choose another --out")
    progress = peek_checkpoint(folder / LAST_NAME)
    if fresh:
        return RunPlan(folder, "fresh", force=force, progress=progress, files=tuple(files))
    where = (f"epoch {progress['epoch']}/{config.epochs}, step {progress['global_step']}" if progress
             else "no checkpoint yet")
    if progress is not None:
        reason = stop_reason_of(progress, config, has_val)
        if resume:
            check_resumable(progress["config"], config, folder / LAST_NAME, warn=False)
        if reason is not None:
            raise finished_error(folder, reason, progress)
    if not resume:
        raise ConfigError(f"{folder}: holds an unfinished fgmm run ({where}); pass --resume to continue it or "
                          "--fresh to start over (or choose another --out)")
    return RunPlan(folder, "resume", force=force, progress=progress, files=tuple(files))


def _short(value: Any) -> str:
    if isinstance(value, list | tuple) and len(value) > 4:
        return f"{len(value)} items ({', '.join(map(str, value[:2]))}, ...)"
    return repr(value)


def check_same_setup(plan: RunPlan, stored: Mapping[str, Any] | None, current: Mapping[str, Any]) -> None:
    """For ``resume``: refuse when the stored description of the run (model, classes, data fingerprint)
    differs from ``current``. Keys missing on either side (older runs) are not compared."""
    if plan.action != "resume" or stored is None:
        return
    for key, value in current.items():
        if key in stored and stored[key] != value:
            what = "other data" if key == "data_fingerprint" else f"{key}={_short(value)}"
            raise ConfigError(f"{plan.folder}: the run there was trained with {key}={_short(stored[key])}, now "
                              f"{what}; resume only with the same model and data, or use --fresh (or another "
                              "--out) to start a new run")


@contextlib.contextmanager
def open_run(plan: RunPlan) -> Iterator[Path]:
    """Carry out ``plan`` for the block that writes the run's setup files; undo everything on error.

    * ``new``: the folder is created (when absent) and marked; on error what the block created goes
      again (the folder too, if this created it).
    * ``fresh``: the old run's own files move to ``folder/.fgmm-previous`` (left there by a killed
      earlier attempt, they are deleted first); on error the new files are removed and the old ones
      put back; on success they are deleted.
    * ``resume``: nothing to prepare; the block must only write after its checks.

    Yields:
        The run folder.
    """
    folder = plan.folder
    created = not folder.exists()
    previous = folder / PREVIOUS
    marker_before = read_marker(folder)
    moved: list[str] = []
    if plan.action in ("new", "fresh"):
        claim_folder(folder, RUN_KIND, force=plan.force, reserved=plan.files, legacy=legacy_run,
                     what="run folder (--out)")
    if plan.action == "fresh":
        if previous.exists():
            remove_path(previous)
        for path in owned_entries(folder, plan.files):
            if path.name == PREVIOUS:
                continue
            previous.mkdir(exist_ok=True)
            os.replace(path, previous / path.name)
            moved.append(path.name)
    try:
        yield folder
    except BaseException:
        if plan.action in ("new", "fresh"):
            for path in owned_entries(folder, plan.files):
                if path.name != PREVIOUS:
                    remove_path(path)
            for name in moved:
                os.replace(previous / name, folder / name)
            if previous.exists():
                shutil.rmtree(previous)
            if marker_before is None:
                (folder / MARKER).unlink(missing_ok=True)
            if created and is_empty(folder):
                folder.rmdir()
        raise
    if previous.exists():
        shutil.rmtree(previous)


__all__ = ["BEST_NAME", "LAST_NAME", "PREVIOUS", "RESUMABLE_CHANGES", "RUN_FILES", "RUN_KIND", "TRAINER_FILES",
           "RunPlan", "check_resumable", "check_same_setup", "ensure_run_folder", "finished_error", "legacy_run",
           "open_run", "peek_checkpoint", "plan_run", "stop_reason_of"]
