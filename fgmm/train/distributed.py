"""Process-group setup for ``torchrun``/DDP, the epoch sampler that shards data, and collectives.

Launch any training script with ``torchrun --nproc_per_node N script.py``: :func:`setup_distributed`
reads ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``, initialises the process group (NCCL on CUDA, gloo on
CPU) and picks the process's device. A single plain ``python script.py`` gives a world of one and
touches no process group, so the same code runs both ways.

Sharding is strided, as in ``torch.utils.data.DistributedSampler``: every rank draws the same
epoch permutation from ``(seed, epoch)`` and takes every ``world_size``-th index starting at its
rank. Micro-batch ``j`` of the ranks together is then exactly micro-batch ``j`` of a single
process whose batch is ``world_size`` times larger.
"""

from __future__ import annotations

import atexit
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from fgmm.errors import ConfigError
from fgmm.train.seed import epoch_generator


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job.

    Attributes:
        world_size: number of processes (1 without torchrun).
        rank: global rank of this process.
        local_rank: rank on this machine (selects the CUDA device).
        device: the device this process computes on.
    """

    world_size: int
    rank: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Whether this process writes checkpoints, logs and the progress bar."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """The device of this process.

    ``"auto"`` is ``cuda:<local_rank>`` when CUDA is available, else CPU; ``"cuda"`` without an
    index is ``cuda:<local_rank>``.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"key 'device': unknown device '{name}'") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"key 'device' is '{name}' but CUDA is not available on this machine")
        device = torch.device("cuda", local_rank if device.index is None else device.index)
        torch.cuda.set_device(device)
    return device


def setup_distributed(device: str = "auto") -> DistContext:
    """Join the torchrun job described by the environment, or return a world of one.

    An already initialised process group (e.g. by the caller) is reused as is.
    """
    local_rank = _env_int("LOCAL_RANK", 0)
    resolved = resolve_device(device, local_rank)
    if dist.is_available() and dist.is_initialized():
        return DistContext(dist.get_world_size(), dist.get_rank(), local_rank, resolved)
    world_size = _env_int("WORLD_SIZE", 1)
    if world_size <= 1:
        return DistContext(1, 0, 0, resolved)
    backend = "nccl" if resolved.type == "cuda" else "gloo"
    dist.init_process_group(backend=backend, init_method="env://", world_size=world_size,
                            rank=_env_int("RANK", 0))
    atexit.register(_destroy_process_group)
    return DistContext(world_size, dist.get_rank(), local_rank, resolved)


def _destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``tensor`` over all ranks in place (on ``ctx.device``) and return it."""
    if ctx.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_strided(local: torch.Tensor, total: int, ctx: DistContext) -> torch.Tensor:
    """Reassemble rows sharded by :class:`EpochSampler` (``shuffle=False``) into dataset order.

    Rank ``r`` holds rows ``r, r + W, r + 2W, ...`` of a ``total``-row tensor; the result (on CPU)
    is the full tensor on every rank.
    """
    if not ctx.distributed:
        return local.cpu()
    rows = math.ceil(total / ctx.world_size)
    padded = local.new_zeros((rows, *local.shape[1:]))
    padded[: local.shape[0]] = local
    padded = padded.to(ctx.device)
    parts = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(parts, padded)
    stacked = torch.stack(parts, dim=1)  # [rows, world, ...]: row j*W + r is parts[r][j]
    return stacked.reshape(rows * ctx.world_size, *local.shape[1:])[:total].cpu()


class EpochSampler(Sampler[int]):
    """This rank's indices for one epoch, optionally skipping those already consumed.

    Args:
        size: dataset length.
        seed: run seed; with ``epoch`` it fixes the permutation (:func:`~fgmm.train.seed.epoch_generator`).
        epoch: epoch index.
        shuffle: permute (training) or keep dataset order (evaluation).
        rank: this process's rank.
        world_size: number of processes.
        pad: repeat leading indices so that every rank gets the same count (training, where
            DDP needs equal batch counts); without it ranks may differ by one (evaluation).
        start: number of this rank's indices to skip (mid-epoch resume).
    """

    def __init__(self, size: int, *, seed: int, epoch: int, shuffle: bool, rank: int = 0,
                 world_size: int = 1, pad: bool = True, start: int = 0):
        super().__init__()
        order = (torch.randperm(size, generator=epoch_generator(seed, epoch)) if shuffle
                 else torch.arange(size))
        if pad and world_size > 1 and size % world_size:
            extra = world_size - size % world_size
            order = torch.cat([order, order.repeat(math.ceil(extra / max(size, 1)))[:extra]])
        self._indices = order[rank::world_size][start:].tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices)

    def __len__(self) -> int:
        return len(self._indices)
