"""Configuration dataclasses and a strict YAML/JSON loader for them.

The loader is generic over dataclasses (nested ones included), so any config of fgmm -- the
:class:`TrainConfig` here, or an experiment config that nests it -- loads the same way::

    cfg = load_config(TrainConfig, "train.yaml")      # or TrainConfig.from_file("train.yaml")
    save_config(cfg, "run/config.json")

Every value is checked against the field's annotation (``int``, ``float``, ``bool``, ``str``,
``Path``, ``Literal[...]``, ``X | None``, ``list[X]``, ``tuple[X, ...]``, ``dict[str, X]`` and nested
dataclasses). An unknown key or a value of the wrong type raises :class:`~fgmm.errors.ConfigError`
naming the file and the dotted key, and an unknown key comes with the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

from fgmm.errors import ConfigError
from fgmm.train.checkpoint import atomic_write

C = TypeVar("C")

_SUFFIXES = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
# annotation -> (accepted Python types, converter); a bool is never accepted as a number
_SCALARS: dict[type, tuple[tuple[type, ...], Callable[[Any], Any]]] = {
    bool: ((bool,), bool), int: ((int,), int), float: ((int, float), float), str: ((str,), str),
    Path: ((str, Path), Path),
}


def _format(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise ConfigError(f"{path}: unsupported config format '{suffix}'; use .yaml, .yml or .json")
    return _SUFFIXES[suffix]


def _where(source: str | None, key: str) -> str:
    return f"{source}: key '{key}'" if source else f"key '{key}'"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, key: str, source: str | None) -> Any:
    """Check ``value`` against annotation ``tp`` and return it converted (nested dataclasses built)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    def fail() -> ConfigError:
        return ConfigError(f"{_where(source, key)} must be {_type_name(tp)}, "
                           f"got {type(value).__name__} {value!r}")

    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _convert(value, option, key, source)
            except ConfigError:
                continue
        raise fail()
    if origin is Literal:
        if any(value == a and type(value) is type(a) for a in args):
            return value
        raise ConfigError(f"{_where(source, key)} must be one of {', '.join(map(repr, args))}, "
                          f"got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise fail()
        return config_from_dict(tp, value, source=source, prefix=f"{key}.")
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise fail()
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise fail()
            return tuple(_convert(v, a, f"{key}[{i}]", source)
                         for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        items = [_convert(v, item, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, dict):
            raise fail()
        ktp, vtp = args or (Any, Any)
        return {_convert(k, ktp, key, source): _convert(v, vtp, f"{key}.{k}", source)
                for k, v in value.items()}
    if tp in _SCALARS:
        accepted, convert = _SCALARS[tp]
        if isinstance(value, accepted) and (tp is bool or not isinstance(value, bool)):
            return convert(value)
        raise fail()
    raise ConfigError(f"{_where(source, key)}: unsupported annotation {_type_name(tp)} in the config class")


def config_from_dict(cls: type[C], data: dict[str, Any], source: str | Path | None = None,
                     prefix: str = "") -> C:
    """Build dataclass ``cls`` from ``data``, checking keys and types.

    Args:
        cls: a dataclass type; fields missing from ``data`` keep their defaults.
        data: a mapping of field name to value (nested mappings for nested dataclasses).
        source: the file the data came from, named in error messages.
        prefix: dotted path of ``cls`` inside an enclosing config (used for nested errors).

    Raises:
        ConfigError: on an unknown key (with the closest valid key), a wrong type, or a value
            rejected by the dataclass's own ``__post_init__`` validation.
    """
    where = str(source) if source is not None else None
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: {prefix.rstrip('.') or 'top level'} must be a mapping, "
                          f"got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"{where + ': ' if where else ''}unknown key '{prefix}{key}'{hint}")
        values[key] = _convert(value, hints[key], f"{prefix}{key}", where)
    missing = [n for n, f in fields.items() if n not in values and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{where + ': ' if where else ''}missing required key '{prefix}{missing[0]}'")
    try:
        return cls(**values)
    except (ValueError, ConfigError) as exc:
        inside = f"in '{prefix.rstrip('.')}': " if prefix else ""
        raise ConfigError(f"{where + ': ' if where else ''}{inside}{exc}") from None


def config_to_dict(obj: Any) -> dict[str, Any]:
    """A JSON/YAML-ready dict of dataclass ``obj`` (nested dataclasses as dicts, paths as strings)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(obj)


def read_config_data(path: str | Path) -> dict[str, Any]:
    """The mapping in a ``.yaml``/``.yml``/``.json`` config file (not yet validated).

    Raises:
        ConfigError: the file cannot be read, does not parse, or does not hold a mapping.
    """
    path = Path(path)
    kind = _format(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    try:
        data = yaml.safe_load(text) if kind == "yaml" else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not valid {kind.upper()} ({str(exc).splitlines()[0]})") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(cls: type[C], path: str | Path) -> C:
    """Read dataclass ``cls`` from a ``.yaml``/``.yml``/``.json`` file (see :func:`config_from_dict`)."""
    return config_from_dict(cls, read_config_data(path), source=path)


def save_config(obj: Any, path: str | Path) -> Path:
    """Write dataclass ``obj`` to ``path`` (format from the suffix) atomically; returns the path."""
    path = Path(path)
    data = config_to_dict(obj)
    text = (yaml.safe_dump(data, sort_keys=False) if _format(path) == "yaml"
            else json.dumps(data, indent=2) + "\n")
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))


def check_range(config: Any, positive: tuple[str, ...] = (), non_negative: tuple[str, ...] = (),
                fraction: tuple[str, ...] = (), unit: tuple[str, ...] = ()) -> None:
    """Validate numeric fields of a config dataclass in ``__post_init__`` (``None`` values are skipped).

    Every float must be finite (no NaN or infinity); ``positive`` fields must be > 0, ``non_negative``
    ones >= 0, ``fraction`` ones in [0, 1) and ``unit`` ones in (0, 1).

    Raises:
        ConfigError: ``key 'name' must be ..., got value`` for the first offending field.
    """
    rules = {**{n: ("> 0", lambda v: v > 0) for n in positive},
             **{n: (">= 0", lambda v: v >= 0) for n in non_negative},
             **{n: ("in [0, 1)", lambda v: 0 <= v < 1) for n in fraction},
             **{n: ("in (0, 1)", lambda v: 0 < v < 1) for n in unit}}
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if not math.isfinite(value):
            raise ConfigError(f"key '{item.name}' must be a finite number, got {value}")
        if item.name in rules and not rules[item.name][1](value):
            raise ConfigError(f"key '{item.name}' must be {rules[item.name][0]}, got {value}")


@dataclass
class TrainConfig:
    """Everything the :class:`~fgmm.train.Trainer` needs besides the model and the data.

    Attributes:
        epochs: passes over the training data.
        batch_size: samples per micro-batch *per process* (the global batch is
            ``batch_size * grad_accum_steps * world_size``).
        lr: peak learning rate.
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay; never applied to biases, norm
            weights or other parameters with fewer than two dimensions.
        optimizer: a name in :data:`fgmm.train.OPTIMIZERS` (``"adamw"``, ``"sgd"``).
        momentum: SGD momentum (ignored by AdamW).
        scheduler: a name in :data:`fgmm.train.SCHEDULERS` (``"cosine"``, ``"constant"``).
        warmup_steps: optimizer steps of linear warm-up before the schedule.
        grad_accum_steps: micro-batches whose gradients are summed (each loss scaled by 1/n)
            before one optimizer step.
        amp: mixed precision: ``"auto"`` (bf16 on CUDA when supported, else fp16; off on CPU),
            ``"off"``, ``"fp16"`` (with a GradScaler) or ``"bf16"``.
        seed: seeds Python/NumPy/torch and, with the epoch, the data order.
        deterministic: request deterministic kernels (bit-exact resume on GPU; slower).
        early_stopping_patience: stop after this many epochs without improvement of ``monitor``
            on the validation data; ``None`` disables early stopping.
        monitor: validation metric that selects ``best.ckpt`` and drives early stopping.
        monitor_mode: ``"max"`` when larger is better (accuracy), ``"min"`` for losses.
        restore_best: load the weights of ``best.ckpt`` into the model when :meth:`fit` ends. Off
            by default: when the "validation" data is the test split (CUB has no official
            validation split), selecting the best epoch on it would leak the test set.
        max_steps: hard stop after this many optimizer steps (the schedule still spans
            ``epochs``, so a stopped run resumes exactly); ``None`` for no limit.
        grad_clip: clip the global gradient norm to this value; ``None`` disables clipping.
        drop_last: drop the last incomplete training batch of each epoch (for batch-norm models).
        num_workers: DataLoader worker processes.
        eval_batch_size: batch size of :meth:`evaluate`/:meth:`predict`; ``None`` uses ``batch_size``.
        device: ``"auto"`` (the process's CUDA device when available, else CPU), ``"cpu"``, ``"cuda"``...
        out_dir: folder of ``last.ckpt``, ``best.ckpt``, ``metrics.jsonl`` and ``config.json``.
        checkpoint_every_steps: also write ``last.ckpt`` every this many optimizer steps
            (it is always written at the end of each epoch); ``None`` for epoch ends only.
        log_every_steps: optimizer steps between training-loss lines in ``metrics.jsonl``.
        progress: show a tqdm progress bar (rank 0 only).
        csv_log: also write epoch rows to ``metrics.csv``.
        tensorboard: also write TensorBoard scalars (needs the ``tensorboard`` package).
        find_unused_parameters: passed to DistributedDataParallel for models with unused branches.
    """

    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    optimizer: str = "adamw"
    momentum: float = 0.9
    scheduler: str = "cosine"
    warmup_steps: int = 0
    grad_accum_steps: int = 1
    amp: Literal["auto", "off", "fp16", "bf16"] = "auto"
    seed: int = 0
    deterministic: bool = False
    early_stopping_patience: int | None = None
    monitor: str = "top1"
    monitor_mode: Literal["max", "min"] = "max"
    restore_best: bool = False
    max_steps: int | None = None
    grad_clip: float | None = None
    drop_last: bool = False
    num_workers: int = 0
    eval_batch_size: int | None = None
    device: str = "auto"
    out_dir: Path = Path("runs/train")
    checkpoint_every_steps: int | None = None
    log_every_steps: int = 50
    progress: bool = True
    csv_log: bool = False
    tensorboard: bool = False
    find_unused_parameters: bool = False

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        positive = {"epochs": self.epochs, "batch_size": self.batch_size,
                    "grad_accum_steps": self.grad_accum_steps, "log_every_steps": self.log_every_steps,
                    "eval_batch_size": self.eval_batch_size, "max_steps": self.max_steps,
                    "checkpoint_every_steps": self.checkpoint_every_steps,
                    "early_stopping_patience": self.early_stopping_patience}
        for name, value in positive.items():
            if value is not None and value < 1:
                raise ConfigError(f"key '{name}' must be >= 1, got {value}")
        check_range(self, positive=("lr", "grad_clip"),
                    non_negative=("weight_decay", "warmup_steps", "num_workers"), fraction=("momentum",))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str | Path | None = None) -> TrainConfig:
        """Build from a mapping (see :func:`config_from_dict`)."""
        return config_from_dict(cls, data, source=source)

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Read from a ``.yaml``/``.yml``/``.json`` file."""
        return load_config(cls, path)

    def to_dict(self) -> dict[str, Any]:
        return config_to_dict(self)

    def to_file(self, path: str | Path) -> Path:
        """Write to ``path`` (YAML or JSON by suffix), atomically."""
        return save_config(self, path)


__all__ = ["TrainConfig", "check_range", "config_from_dict", "config_to_dict", "load_config", "read_config_data",
           "save_config"]
