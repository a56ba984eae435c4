"""The fgmm training loop: one :class:`Trainer` for heads on cached features (CPU) and end-to-end
fine-tuning (GPU, AMP, torchrun/DDP).

Model contract: ``model(batch) -> dict`` where ``batch`` is a dict of tensors (a map-style dataset
yielding dicts, batched by the default collate) and the output holds ``"logits"`` and/or ``"loss"``.
Without ``"loss"`` the trainer minimises the cross-entropy of ``logits`` against ``batch["label"]``,
ignoring labels equal to ``-1``.

One optimizer step consumes ``grad_accum_steps`` micro-batches; the loss of each is scaled by one
over the number of micro-batches in its group, so the update equals that of one batch
``grad_accum_steps`` times larger (the last group of an epoch may be shorter). Under DDP the
gradients are averaged over ranks, and each rank's micro-batch ``j`` is a strided shard of the same
global permutation, so ``N`` ranks with batch ``b`` see the batches of one process with batch ``N*b``.

Training state (weights, optimizer, schedule, GradScaler, RNG, position inside the epoch, early
stopping, history) goes to ``out_dir/last.ckpt`` at every epoch end, every
``checkpoint_every_steps`` and when ``max_steps`` stops the run; :meth:`Trainer.fit` resumes from
it exactly, mid-epoch included: the sampler skips the micro-batches already consumed. Exactness
holds when the data pipeline is deterministic per index or draws its randomness in the main
process (``num_workers=0``); random augmentations inside DataLoader workers are reproduced from
epoch boundaries on, but not after a mid-epoch resume (the workers' generators restart). On GPU
bit-exactness also needs ``deterministic=True``.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from fgmm.errors import ConfigError, DataError
from fgmm.registry import Registry
from fgmm.train.checkpoint import atomic_copy, load_checkpoint, save_checkpoint
from fgmm.train.config import TrainConfig, save_config
from fgmm.train.distributed import (
    DistContext,
    EpochSampler,
    all_reduce_sum,
    barrier,
    gather_strided,
    setup_distributed,
)
from fgmm.train.metrics_log import MetricsLogger
from fgmm.train.run_folder import (
    BEST_NAME,
    LAST_NAME,
    check_resumable,
    ensure_run_folder,
    finished_error,
    stop_reason_of,
)
from fgmm.train.seed import (
    derive_seed,
    get_rng_state,
    seed_everything,
    set_rng_state,
    use_deterministic_algorithms,
)

MetricsFn = Callable[[Tensor, Tensor], dict[str, float]]
"""``metrics_fn(logits [N, C], labels [N]) -> {name: value}``, called on the whole evaluated set."""

OPTIMIZERS: Registry[torch.optim.Optimizer] = Registry("optimizer")
SCHEDULERS: Registry[float] = Registry("scheduler")

def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters split into decayed (matrices, kernels) and undecayed (biases, norms, scales)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ConfigError("the model has no trainable parameters")
    groups = [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def _fusable(groups: list[dict[str, Any]]) -> bool:
    """Whether torch's fused (one kernel per group) optimizers apply: floating-point parameters on
    CPU or CUDA. On CPU they are 2-3x faster than the default per-tensor loop, which matters for
    small heads on cached features."""
    return all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for g in groups for p in g["params"])


@OPTIMIZERS.register("adamw")
def _adamw(params: list[dict[str, Any]], config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=config.lr, fused=_fusable(params))


@OPTIMIZERS.register("sgd")
def _sgd(params: list[dict[str, Any]], config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, fused=_fusable(params))


@SCHEDULERS.register("constant")
def constant_schedule(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate factor: linear warm-up to 1, then 1."""
    return min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0


@SCHEDULERS.register("cosine")
def cosine_schedule(step: int, total_steps: int, warmup_steps: int) -> float:
    r"""Learning-rate factor: linear warm-up, then :math:`\tfrac12(1 + \cos(\pi t))` with
    :math:`t = (\text{step} - \text{warmup}) / (\text{total} - \text{warmup})` clipped to :math:`[0, 1]`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def create_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer named by ``config.optimizer`` over ``model``'s trainable parameters.

    Call it after moving the model to its device: the fused implementation is chosen from the
    parameters' devices.
    """
    return OPTIMIZERS.get(config.optimizer)(_param_groups(model, config.weight_decay), config)


def create_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig,
                     total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-optimizer-step ``LambdaLR`` following ``config.scheduler`` over ``total_steps``."""
    schedule = SCHEDULERS.get(config.scheduler)
    warmup = config.warmup_steps
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step, total_steps, warmup))


_AMP_DTYPES: dict[str, torch.dtype | None] = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_amp(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``mode`` on ``device`` (``None`` = full precision)."""
    if mode == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return _AMP_DTYPES[mode]


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns.

    Attributes:
        history: one dict per completed epoch (``epoch``, ``step``, ``train_loss``, ``lr``,
            ``val_*`` metrics, ``seconds``).
        best_metric: best validation value of ``config.monitor`` (``None`` without validation data).
        best_epoch: epoch (0-based) of ``best_metric``.
        best_checkpoint: ``out_dir/best.ckpt`` once a validation has run, else ``None``.
        last_checkpoint: ``out_dir/last.ckpt``.
        steps: optimizer steps taken in total (across resumptions).
        stop_reason: ``"completed"``, ``"early_stopping"`` or ``"max_steps"``.
    """

    history: list[dict[str, Any]]
    best_metric: float | None
    best_epoch: int | None
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    steps: int
    stop_reason: str


@dataclass
class _EarlyStopping:
    """Tracks the best monitored value and epochs without improvement."""

    mode: str
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record ``value`` for ``epoch``; ``True`` when it improves on the best so far."""
        better = (self.best is None or (value > self.best if self.mode == "max" else value < self.best))
        if better:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return better

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]


class _LossTracker:
    """The epoch's training losses, kept as device tensors and summed (one device sync and, under
    DDP, one all-reduce) only when logged or checkpointed. NaN losses (batches without labels)
    are left out.

    Rank 0 holds the totals restored from a checkpoint and the other ranks start from zero, so the
    sum over ranks stays the global total after a resume.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.pending: list[Tensor] = []
        self.total = 0.0  # local sum and count of the losses already folded in
        self.count = 0
        self.mark = (0.0, 0)  # global (sum, count) at the last interval log
        self.shown: list[Tensor] = []  # losses since the progress bar last showed one (this rank only)

    def add(self, loss: Tensor) -> None:
        self.pending.append(loss.detach())
        self.shown.append(self.pending[-1])

    def display_mean(self) -> float:
        """Mean of this rank's losses since the previous call: what the progress bar shows (one device
        sync, no collective, so it can run every half second)."""
        if not self.shown:
            return math.nan
        losses = torch.stack(self.shown).float()
        self.shown.clear()
        return float(losses.nanmean())

    def totals(self, ctx: DistContext) -> tuple[float, int]:
        """Global ``(sum, count)`` of this epoch so far."""
        if self.pending:
            losses = torch.stack(self.pending).float()
            self.total += float(losses.nansum())
            self.count += int((~losses.isnan()).sum())
            self.pending.clear()
        packed = all_reduce_sum(torch.tensor([self.total, float(self.count)], device=self.device,
                                             dtype=torch.float64), ctx)
        return float(packed[0]), int(packed[1])

    def epoch_mean(self, ctx: DistContext) -> float:
        total, count = self.totals(ctx)
        return total / count if count else math.nan

    def interval_mean(self, ctx: DistContext) -> float:
        """Mean loss since the previous call (or the start of the epoch)."""
        total, count = self.totals(ctx)
        mean = (total - self.mark[0]) / (count - self.mark[1]) if count > self.mark[1] else math.nan
        self.mark = (total, count)
        return mean

    def state_dict(self, ctx: DistContext) -> dict[str, Any]:
        total, count = self.totals(ctx)
        return {"sum": total, "count": count, "mark_sum": self.mark[0], "mark_count": self.mark[1]}

    def load_state_dict(self, state: dict[str, Any], ctx: DistContext) -> None:
        self.pending.clear()
        self.total = state["sum"] if ctx.is_main else 0.0
        self.count = state["count"] if ctx.is_main else 0
        self.mark = (state["mark_sum"], state["mark_count"])

    def reset(self) -> None:
        self.pending.clear()
        self.shown.clear()
        self.total, self.count, self.mark = 0.0, 0, (0.0, 0)


class Trainer:
    """Trains ``model`` on ``train_data`` as ``config`` says, validating on ``val_data``.

    Args:
        model: an ``nn.Module`` with ``forward(batch: dict[str, Tensor]) -> dict[str, Tensor]``
            returning ``"logits"`` and/or ``"loss"`` (see module docstring).
        config: the :class:`TrainConfig`.
        train_data: a map-style dataset yielding dicts of tensors (with ``"label"`` when the model
            returns no loss).
        val_data: optional validation dataset; it drives ``best.ckpt`` and early stopping.
        collate_fn: batches a list of samples; the default collate when ``None``.
        metrics_fn: ``(logits, labels) -> dict`` of extra metrics for :meth:`evaluate`.

    Under ``torchrun`` every rank builds the same ``Trainer``; :meth:`fit`, :meth:`evaluate` and
    :meth:`predict` are collective (call them on all ranks), and only rank 0 writes files. The run
    folder must be visible to all ranks.

    Example::

        model = FeatureClassifier(LinearHead(1280, 200))
        result = Trainer(model, TrainConfig(epochs=20, out_dir="runs/head"), train_set, val_set).fit()
        print(result.best_metric, result.history[-1])
    """

    def __init__(self, model: nn.Module, config: TrainConfig, train_data: Dataset,
                 val_data: Dataset | None = None, collate_fn: Callable[[list[Any]], Any] | None = None,
                 metrics_fn: MetricsFn | None = None):
        if len(train_data) == 0:  # type: ignore[arg-type]
            raise DataError(None, "the training dataset is empty")
        self.config = config
        self.train_data = train_data
        self.val_data = val_data
        self.collate_fn = collate_fn
        self.metrics_fn = metrics_fn
        self.dist = setup_distributed(config.device)
        self.device = self.dist.device
        self.model = model.to(self.device)
        self._module: nn.Module = self.model
        if self.dist.distributed:
            self._module = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=config.find_unused_parameters)
        self.amp_dtype = resolve_amp(config.amp, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.optimizer = create_optimizer(self.model, config)
        local = math.ceil(len(train_data) / self.dist.world_size)  # type: ignore[arg-type]
        self.batches_per_epoch = (local // config.batch_size if config.drop_last
                                  else math.ceil(local / config.batch_size))
        if self.batches_per_epoch == 0:
            raise DataError(None, f"the training dataset ({local} samples per process) is smaller than "
                                  f"one batch ({config.batch_size}) and drop_last is set")
        self.steps_per_epoch = math.ceil(self.batches_per_epoch / config.grad_accum_steps)
        self.scheduler = create_scheduler(self.optimizer, config, self.steps_per_epoch * config.epochs)
        self.out_dir = Path(config.out_dir)
        self.last_path = self.out_dir / LAST_NAME
        self.best_path = self.out_dir / BEST_NAME
        self.epoch = 0
        self.batch_in_epoch = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.early = _EarlyStopping(config.monitor_mode)
        self._train_loss = _LossTracker(self.device)
        self._shown_at = 0.0  # when the progress bar last showed the loss
        self._elapsed_before = 0.0
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------------ public API
    def fit(self, resume: bool = True) -> TrainResult:
        """Train until ``epochs``, early stopping or ``max_steps``; resume from ``last.ckpt`` if present.

        ``out_dir`` must be absent, empty or a run folder (see :mod:`fgmm.train.run_folder`); it is marked
        as fgmm's. A folder holding other files is refused, so that no file of the user's is overwritten.

        Args:
            resume: continue from ``out_dir/last.ckpt`` when it exists; ``False`` starts over
                (the old checkpoints are overwritten as training proceeds).

        Raises:
            ConfigError: resuming a checkpoint written with other settings, or a run that has
                finished (nothing is loaded into the model then).
            OwnershipError: ``out_dir`` holds files fgmm did not create.
        """
        cfg = self.config
        ensure_run_folder(self.out_dir, write=self.dist.is_main)
        if cfg.deterministic:
            use_deterministic_algorithms()
        resumed = resume and self.last_path.is_file()
        if resumed:
            self._restore(self.last_path)
        else:
            self._reset()
            if self.dist.is_main:  # a stale best.ckpt of the run being replaced must not outlive it
                self.best_path.unlink(missing_ok=True)
            seed_everything(cfg.seed)
        logger = MetricsLogger(self.out_dir, enabled=self.dist.is_main, csv_log=cfg.csv_log,
                               tensorboard=cfg.tensorboard)
        logger.start(self.global_step if resumed else None)
        if self.dist.is_main:
            save_config(cfg, self.out_dir / "config.json")
        self._t0 = time.perf_counter()
        bar = tqdm(total=cfg.epochs * self.batches_per_epoch, dynamic_ncols=True, unit="batch",
                   initial=min(self.epoch, cfg.epochs) * self.batches_per_epoch + self.batch_in_epoch,
                   disable=not (cfg.progress and self.dist.is_main))
        stop_reason = "completed"
        try:
            while self.epoch < cfg.epochs:
                if reason := self._stop_reason():  # also catches a resumed run that had stopped
                    stop_reason = reason
                    break
                bar.set_description(f"epoch {self.epoch + 1}/{cfg.epochs}")
                if self._train_epoch(bar, logger):
                    self._end_epoch(logger)
        finally:
            bar.close()
            logger.close()
        if cfg.restore_best and self.val_data is not None and self.early.best is not None:
            barrier(self.dist)
            self.model.load_state_dict(load_checkpoint(self.best_path)["model"])
        return TrainResult(history=list(self.history), best_metric=self.early.best,
                           best_epoch=self.early.best_epoch,
                           best_checkpoint=self.best_path if self.early.best is not None else None,
                           last_checkpoint=self.last_path, steps=self.global_step, stop_reason=stop_reason)

    def evaluate(self, data: Dataset) -> dict[str, float]:
        """Loss, top-1 accuracy (over labels != -1) and ``metrics_fn`` extras on ``data``."""
        logits, labels, loss = self._infer(data)
        metrics: dict[str, float] = {"loss": loss}
        if logits is not None and labels is not None:
            valid = labels != -1
            hits = (logits.argmax(dim=1) == labels)[valid]
            metrics["top1"] = hits.float().mean().item() if hits.numel() else math.nan
            if self.metrics_fn is not None:
                metrics.update({k: float(v) for k, v in self.metrics_fn(logits, labels).items()})
        return metrics

    def predict(self, data: Dataset) -> Tensor:
        """Logits ``[len(data), C]`` (float32, CPU) in dataset order."""
        logits, _, _ = self._infer(data)
        if logits is None:
            raise TypeError("the model's forward returned no 'logits', so there is nothing to predict")
        return logits

    # ------------------------------------------------------------------ training
    def _train_epoch(self, bar: tqdm, logger: MetricsLogger) -> bool:
        """Run the rest of the current epoch; ``False`` when ``max_steps`` stopped it midway."""
        cfg = self.config
        accum, total = cfg.grad_accum_steps, self.batches_per_epoch
        start = self.batch_in_epoch
        self.model.train()
        for index, batch in enumerate(self._train_loader(self.epoch, start), start=start):
            group_size = min(accum, total - (index - index % accum))
            steps_now = (index + 1) % accum == 0 or index + 1 == total
            sync = nullcontext() if steps_now or not self.dist.distributed else self._module.no_sync()
            with sync:
                batch = self._to_device(batch)
                with self._autocast():
                    loss = self._loss(self._module(batch), batch)
                self.scaler.scale(loss / group_size if group_size > 1 else loss).backward()
            self._train_loss.add(loss)
            self.batch_in_epoch = index + 1
            bar.update(1)
            self._show_loss(bar, last=index + 1 == total)
            if not steps_now:
                continue
            self._optimizer_step()
            if self.global_step % cfg.log_every_steps == 0:
                self._log_interval(bar, logger)
            if index + 1 < total:  # the epoch end writes its own checkpoint
                stop = self._stop_reason() == "max_steps"
                every = cfg.checkpoint_every_steps
                if stop or (every and self.global_step % every == 0):
                    self._save_last()
                if stop:
                    return False
        return True

    def _optimizer_step(self) -> None:
        if self.config.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler.is_enabled():
            with warnings.catch_warnings():
                # the GradScaler skips steps with inf/NaN gradients while the schedule advances
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                self.scheduler.step()
        else:
            self.scheduler.step()
        self.global_step += 1

    def _end_epoch(self, logger: MetricsLogger) -> None:
        """Validate, update history, best checkpoint and early stopping, log and checkpoint."""
        cfg = self.config
        record: dict[str, Any] = {"epoch": self.epoch, "step": self.global_step,
                                  "train_loss": self._train_loss.epoch_mean(self.dist), "lr": self._lr()}
        improved = False
        if self.val_data is not None:
            metrics = self.evaluate(self.val_data)
            if cfg.monitor not in metrics:
                raise ConfigError(f"key 'monitor': '{cfg.monitor}' is not a validation metric; "
                                  f"available: {', '.join(metrics)}")
            record.update({f"val_{k}": v for k, v in metrics.items()})
            improved = self.early.update(metrics[cfg.monitor], self.epoch)
        record["seconds"] = self._seconds()
        self.history.append(record)
        self.epoch += 1
        self.batch_in_epoch = 0
        self._train_loss.reset()
        logger.log({"event": "epoch", **record})
        logger.write_table(self.history)
        self._save_last()
        if improved and self.dist.is_main:
            atomic_copy(self.last_path, self.best_path)

    #: seconds between updates of the loss shown next to the progress bar
    SHOW_LOSS_EVERY = 0.5

    def _show_loss(self, bar: tqdm, last: bool) -> None:
        """Refresh the bar's loss (the mean since its previous refresh) every :attr:`SHOW_LOSS_EVERY`
        seconds and at the end of each epoch, whatever ``log_every_steps`` is."""
        now = time.perf_counter()
        if bar.disable or not (last or now - self._shown_at >= self.SHOW_LOSS_EVERY):
            return
        self._shown_at = now
        bar.set_postfix(loss=f"{self._train_loss.display_mean():.4f}", lr=f"{self._lr():.2e}", refresh=last)

    def _log_interval(self, bar: tqdm, logger: MetricsLogger) -> None:
        loss = self._train_loss.interval_mean(self.dist)
        lr = self._lr()
        logger.log({"event": "train", "step": self.global_step, "epoch": self.epoch, "loss": loss,
                    "lr": lr, "seconds": self._seconds()})

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def _infer(self, data: Dataset) -> tuple[Tensor | None, Tensor | None, float]:
        """Logits and labels of all of ``data`` in order (gathered over ranks) and the mean loss."""
        size = len(data)  # type: ignore[arg-type]
        if size == 0:
            raise DataError(None, "cannot evaluate an empty dataset")
        sampler = EpochSampler(size, seed=0, epoch=0, shuffle=False, rank=self.dist.rank,
                               world_size=self.dist.world_size, pad=False)
        loader = self._loader(data, sampler, self.config.eval_batch_size or self.config.batch_size,
                              seed=0, drop_last=False)
        was_training = self.model.training
        self.model.eval()
        logits_parts: list[Tensor] = []
        label_parts: list[Tensor] = []
        loss_sum = torch.zeros(2, device=self.device)
        try:
            for batch in loader:
                batch = self._to_device(batch)
                with self._autocast():
                    out = self.model(batch)  # the unwrapped module: no DDP collectives
                if "loss" in out or ("logits" in out and "label" in batch):  # unlabelled data has none
                    loss_sum += self._loss_total(out, batch)
                if "logits" in out:
                    logits_parts.append(out["logits"].float())
                if "label" in batch:
                    label_parts.append(batch["label"])
        finally:
            self.model.train(was_training)
        all_reduce_sum(loss_sum, self.dist)
        logits = gather_strided(torch.cat(logits_parts), size, self.dist) if logits_parts else None
        labels = gather_strided(torch.cat(label_parts), size, self.dist) if label_parts else None
        return logits, labels, (loss_sum[0] / loss_sum[1]).item() if loss_sum[1] else math.nan

    # ------------------------------------------------------------------ helpers
    def _loss(self, out: dict[str, Tensor], batch: dict[str, Any]) -> Tensor:
        """The training loss: the model's ``"loss"``, or the mean cross-entropy of ``"logits"`` over
        labels != -1 (NaN for a batch without any label, whose gradient is then zero)."""
        if not isinstance(out, dict):
            raise TypeError(f"the model's forward must return a dict with 'logits' and/or 'loss', "
                            f"got {type(out).__name__}")
        if "loss" in out:
            return out["loss"]
        if "logits" not in out or "label" not in batch:
            raise TypeError("without a 'loss' output the model must return 'logits' and the batch must "
                            f"hold 'label' (outputs: {sorted(out)}, batch keys: {sorted(batch)})")
        return F.cross_entropy(out["logits"].float(), batch["label"], ignore_index=-1)

    @staticmethod
    def _loss_total(out: dict[str, Tensor], batch: dict[str, Any]) -> Tensor:
        """``[loss sum, weight]`` of one evaluation batch: the model's mean ``"loss"`` times the batch
        size, or the cross-entropy summed over labels != -1 and their count."""
        if "loss" in out:
            size = len(next(v for v in batch.values() if isinstance(v, Tensor)))
            return torch.stack([out["loss"].float() * size, out["loss"].new_tensor(float(size))])
        labels = batch["label"]
        total = F.cross_entropy(out["logits"].float(), labels, ignore_index=-1, reduction="sum")
        return torch.stack([total, (labels != -1).sum().float()])

    def _autocast(self) -> torch.autocast | nullcontext:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def _to_device(self, batch: Any) -> dict[str, Any]:
        if not isinstance(batch, dict):
            raise TypeError(f"batches must be dicts of tensors, got {type(batch).__name__}; "
                            "make the dataset yield dicts (e.g. {'features': x, 'label': y})")
        return {k: v.to(self.device, non_blocking=True) if isinstance(v, Tensor) else v
                for k, v in batch.items()}

    def _loader(self, data: Dataset, sampler: EpochSampler, batch_size: int, seed: int,
                drop_last: bool) -> DataLoader:
        # an explicit generator keeps DataLoader from drawing its worker seed from the global RNG,
        # which would make a resumed run diverge from an uninterrupted one
        return DataLoader(data, batch_size=batch_size, sampler=sampler, collate_fn=self.collate_fn,
                          num_workers=self.config.num_workers, drop_last=drop_last,
                          pin_memory=self.device.type == "cuda",
                          generator=torch.Generator().manual_seed(seed))

    def _train_loader(self, epoch: int, start_batch: int) -> Iterator[Any]:
        cfg = self.config
        size = len(self.train_data)  # type: ignore[arg-type]
        sampler = EpochSampler(size, seed=cfg.seed, epoch=epoch, shuffle=True, rank=self.dist.rank,
                               world_size=self.dist.world_size, start=start_batch * cfg.batch_size)
        loader = self._loader(self.train_data, sampler, cfg.batch_size, seed=derive_seed(cfg.seed, epoch),
                              drop_last=cfg.drop_last)
        return iter(loader)

    def _stop_reason(self) -> str | None:
        """``"max_steps"`` or ``"early_stopping"`` when training must stop now, else ``None``."""
        progress = {"epoch": 0, "global_step": self.global_step, "early_stopping": self.early.state_dict()}
        reason = stop_reason_of(progress, self.config, self.val_data is not None)
        return None if reason == "completed" else reason

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _seconds(self) -> float:
        return round(self._elapsed_before + time.perf_counter() - self._t0, 3)

    # ------------------------------------------------------------------ checkpoints
    def _state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": get_rng_state(),
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "global_step": self.global_step,
            "early_stopping": self.early.state_dict(),
            "history": self.history,
            "config": self.config.to_dict(),
            "train_loss": self._train_loss.state_dict(self.dist),
            "seconds": self._seconds(),
        }

    def _save_last(self) -> None:
        state = self._state()  # collective (loss totals), so every rank builds it
        if self.dist.is_main:
            save_checkpoint(state, self.last_path)

    def _reset(self) -> None:
        """Back to step 0 (for ``fit(resume=False)`` on a trainer that already trained)."""
        self.epoch = self.batch_in_epoch = self.global_step = 0
        self.history = []
        self.early = _EarlyStopping(self.config.monitor_mode)
        self._train_loss.reset()
        self._elapsed_before = 0.0

    def _restore(self, path: Path) -> None:
        state = load_checkpoint(path, map_location="cpu")
        check_resumable(state["config"], self.config, path)
        reason = stop_reason_of(state, self.config, self.val_data is not None)
        if reason is not None:
            raise finished_error(self.out_dir, reason, state)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise DataError(path, f"checkpoint does not fit this model/optimizer "
                                  f"({str(exc).splitlines()[0]})") from None
        self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler.is_enabled() and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.epoch, self.batch_in_epoch = state["epoch"], state["batch_in_epoch"]
        self.global_step = state["global_step"]
        self.early = _EarlyStopping(self.config.monitor_mode)
        self.early.load_state_dict(state["early_stopping"])
        self.history = list(state["history"])
        self._train_loss.load_state_dict(state["train_loss"], self.dist)
        self._elapsed_before = state["seconds"]
