r"""Per-epoch sample selection inside :class:`fgmm.train.Trainer` runs, with no change to the Trainer.

Methods that re-select their training samples every epoch (small-loss selection, Co-teaching,
peer learning) live in the *model*: the wrapper modules here count their own training steps in a
buffer, so they know the epoch, and keep what they select in buffers too. Buffers travel with the
Trainer's checkpoints, so exact resume (mid-epoch included) still holds, and any model that speaks
the Trainer's contract (``forward(batch) -> {"logits", ...}`` with ``batch["label"]`` and
``batch["index"]``, as :class:`fgmm.data.torch_dataset.FeatureDataset` yields) can be wrapped — above
all :class:`fgmm.FGModel` (:func:`selection_head` makes one ready to train on cached features):

* :class:`SelectiveTraining` wraps a model, records every sample's loss per epoch
  (``losses [E, N]``, the ``losses`` signal of :class:`fgmm.filters.FilterSignals`) and weights each
  sample's loss by ``weights [N]``; a ``reselect(losses, epoch) -> weights`` callable runs at the
  first step of every epoch (e.g. :func:`small_loss_weights`), or fixed weights come from a filter's
  :meth:`~fgmm.filters.FilterResult.weights`.
* :class:`TwoHeadSelection` trains two heads (two :class:`fgmm.FGModel`) that select small-loss samples
  for each other:
  Co-teaching (Han et al., NeurIPS 2018), Co-teaching+ (Yu et al., ICML 2019) and the peer-learning
  rule (Sun et al., ICCV 2021).

Set :attr:`EpochAware.batches_per_epoch` to the Trainer's ``batches_per_epoch`` before training
(:func:`fit_selective` does it). Under DDP the per-sample losses are summed over ranks at epoch
boundaries, so every rank re-selects alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from fgmm.errors import ConfigError
from fgmm.registry import Registry

Reselect = Callable[[Tensor, int], Tensor]
"""``reselect(losses [epoch, N], epoch) -> weights [N]``: per-sample loss weights for ``epoch`` from
the losses recorded in the epochs before it (NaN where a sample was not seen)."""


def selection_head(features: Tensor, labels: Sequence[int] | Tensor, num_classes: int, *, hidden: int = 0,
                   dropout: float = 0.2, dim: int | None = None, modality: str = "image", seed: int = 0):
    r"""An :class:`fgmm.FGModel` of one modality ready to train on cached ``features`` under a wrapper here.

    A learned projection (``"linear"`` when ``hidden`` is 0, else ``"mlp"``), free class weights started
    at the class means of the initial embeddings of ``features`` (as :meth:`fgmm.FGModel.fit` starts
    them), cosine scores :math:`s \cos(\mathbf{z}, \mathbf{w}_c)`. Batches carry ``batch[modality]``
    (``[B, d]``), as :class:`~fgmm.data.torch_dataset.FeatureDataset` ``({modality: features}, labels)`` yields.
    """
    from fgmm.space import create_model

    features = torch.as_tensor(features).float()
    labels = torch.as_tensor(labels).long()
    projection = ({"projection": "mlp", "projection_options": {"hidden": hidden, "dropout": dropout}} if hidden
                  else {"projection": "linear", "projection_options": {"dropout": dropout}})
    config = {"modalities": {modality: {**projection, "input_dim": int(features.shape[1])}},
              "class_embeddings": {"source": "free"}, **({"dim": dim} if dim else {})}
    model = create_model(config, classes=[str(c) for c in range(num_classes)], seed=seed)
    with torch.no_grad():
        model.eval()
        model.class_source.initialize(model.embed(modality, features), labels)
    return model.train()


def forget_rate_schedule(epoch: int, forget_rate: float, warmup_epochs: int) -> float:
    r"""Co-teaching's schedule :math:`R(t) = 1 - \tau \min(t / T_k, 1)` as a forget rate
    :math:`\tau \min(t / T_k, 1)` (Han et al., 2018: start with all samples, drop more as the
    networks begin to memorise)."""
    if warmup_epochs <= 0:
        return forget_rate
    return forget_rate * min(1.0, epoch / warmup_epochs)


class EpochAware(nn.Module):
    """Counts training forward passes in a buffer; :attr:`epoch` follows from ``batches_per_epoch``."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))
        self.batches_per_epoch: int | None = None

    @property
    def epoch(self) -> int:
        if not self.batches_per_epoch:
            raise ConfigError(f"{type(self).__name__}.batches_per_epoch is not set: set it to the Trainer's "
                              "batches_per_epoch (fgmm.filters.fit_selective does) before training")
        return int(self.steps) // self.batches_per_epoch

    def _tick(self) -> tuple[int, bool]:
        """``(epoch, first step of that epoch)`` of the current training step; advances the counter."""
        epoch = self.epoch
        first = int(self.steps) % self.batches_per_epoch == 0
        self.steps += 1
        return epoch, first


def _labels_and_index(batch: Mapping[str, Any]) -> tuple[Tensor, Tensor]:
    if "label" not in batch or "index" not in batch:
        raise KeyError(f"sample selection needs 'label' and 'index' in every batch (keys: {sorted(batch)})")
    return batch["label"].long(), batch["index"].long()


def _all_reduce(tensor: Tensor) -> Tensor:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(tensor)
    return tensor


class SelectiveTraining(EpochAware):
    r"""Wraps a model: records per-sample losses per epoch and weights the loss per sample.

    .. math:: \mathcal L = \frac{\sum_{i \in B} w_i\, \ell_i}{\sum_{i \in B} w_i}, \qquad
              \ell_i = \mathrm{CE}(\mathbf{z}_i, \tilde y_i)

    Args:
        model: ``forward(batch) -> {"logits": [B, C], ...}``.
        num_samples: ``N``, the size of the training set (``batch["index"]`` indexes it).
        epochs: epochs to record (the Trainer's ``config.epochs``).
        weights: initial ``[N]`` weights (default: all 1), e.g. ``FilterResult.weights()``.
        reselect: called at the first step of every epoch ``e >= 1`` with the mean losses of epochs
            ``0..e-1`` (``[e, N]``) to set new weights (see :data:`Reselect`).

    Shapes:
        ``losses``: ``[epochs, N]`` buffer (NaN until recorded); ``weights``: ``[N]`` buffer.
    """

    def __init__(self, model: nn.Module, num_samples: int, epochs: int, weights: Tensor | None = None,
                 reselect: Reselect | None = None):
        super().__init__()
        self.model = model
        self.reselect = reselect
        self.register_buffer("loss_sum", torch.zeros(epochs, num_samples))
        self.register_buffer("loss_count", torch.zeros(epochs, num_samples))
        initial = torch.ones(num_samples) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        if initial.shape != (num_samples,):
            raise ValueError(f"weights must have shape [{num_samples}], got {tuple(initial.shape)}")
        self.register_buffer("weights", initial.clone())
        self.register_buffer("synced_epochs", torch.zeros((), dtype=torch.long))

    @property
    def losses(self) -> Tensor:
        """``[epochs, N]`` mean recorded loss of each sample per epoch (NaN where not recorded)."""
        return self.loss_sum / self.loss_count.where(self.loss_count > 0, torch.tensor(float("nan")))

    def _sync(self, epoch: int) -> None:
        """Sum the recordings of finished epochs over DDP ranks (once per epoch)."""
        while int(self.synced_epochs) < min(epoch, len(self.loss_sum)):
            e = int(self.synced_epochs)
            _all_reduce(self.loss_sum[e])
            _all_reduce(self.loss_count[e])
            self.synced_epochs += 1

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        out = dict(self.model(batch))
        if not self.training:
            return out
        labels, index = _labels_and_index(batch)
        epoch, first = self._tick()
        if first and epoch > 0:
            self._sync(epoch)
            if self.reselect is not None:
                self.weights.copy_(self.reselect(self.losses[:epoch], epoch).to(self.weights))
        per_sample = F.cross_entropy(out["logits"].float(), labels, reduction="none", ignore_index=-1)
        if epoch < len(self.loss_sum):
            valid = labels >= 0
            self.loss_sum[epoch].index_add_(0, index[valid], per_sample.detach()[valid])
            self.loss_count[epoch].index_add_(0, index[valid], torch.ones_like(per_sample)[valid])
        w = self.weights[index] * (labels >= 0)
        out["loss"] = (w * per_sample).sum() / w.sum().clamp_min(1e-12)
        return out


def small_loss_weights(forget_rate: float, warmup_epochs: int = 1, window: int = 3) -> Reselect:
    """A :data:`Reselect` keeping the ``1 - forget_rate(epoch)`` share of samples with the smallest mean
    loss over the last ``window`` epochs (weight 1; the rest 0); the forget rate follows
    :func:`forget_rate_schedule`."""

    def reselect(losses: Tensor, epoch: int) -> Tensor:
        rate = forget_rate_schedule(epoch, forget_rate, warmup_epochs)
        recent = losses[-window:].nan_to_num(nan=0.0).mean(0)
        keep = torch.ones(losses.shape[1])
        cutoff = torch.quantile(recent, 1.0 - rate) if rate > 0 else torch.tensor(float("inf"))
        keep[recent > cutoff] = 0.0
        return keep

    return reselect


SELECTION_RULES: Registry[Callable[..., tuple[Tensor, Tensor]]] = Registry("two-head selection rule")


def _small(loss: Tensor, keep: int) -> Tensor:
    return torch.argsort(loss.detach())[:keep]


@SELECTION_RULES.register("coteaching")
def coteaching_rule(logits_a: Tensor, logits_b: Tensor, labels: Tensor, forget_rate: float,
                    epoch: int, init_epochs: int) -> tuple[Tensor, Tensor]:
    r"""Co-teaching: each head trains on the :math:`\lceil (1-\tau) B \rceil` smallest-loss samples of
    the *other* head. Returns the sample indices for head a and head b."""
    loss_a = F.cross_entropy(logits_a, labels, reduction="none")
    loss_b = F.cross_entropy(logits_b, labels, reduction="none")
    keep = max(1, math.ceil((1.0 - forget_rate) * len(labels)))
    return _small(loss_b, keep), _small(loss_a, keep)


@SELECTION_RULES.register("coteaching_plus")
def coteaching_plus_rule(logits_a: Tensor, logits_b: Tensor, labels: Tensor, forget_rate: float,
                         epoch: int, init_epochs: int) -> tuple[Tensor, Tensor]:
    """Co-teaching+: after ``init_epochs`` of Co-teaching, only the samples on which the heads'
    predictions *disagree* are candidates, and each head trains on the peer's small-loss ones among them."""
    if epoch < init_epochs:
        return coteaching_rule(logits_a, logits_b, labels, forget_rate, epoch, init_epochs)
    disagree = torch.nonzero(logits_a.argmax(1) != logits_b.argmax(1)).squeeze(1)
    if len(disagree) == 0:
        empty = torch.zeros(0, dtype=torch.long, device=labels.device)
        return empty, empty
    picked_a, picked_b = coteaching_rule(logits_a[disagree], logits_b[disagree], labels[disagree], forget_rate,
                                         epoch, init_epochs)
    return disagree[picked_a], disagree[picked_b]


@SELECTION_RULES.register("peer")
def peer_rule(logits_a: Tensor, logits_b: Tensor, labels: Tensor, forget_rate: float,
              epoch: int, init_epochs: int) -> tuple[Tensor, Tensor]:
    """Peer learning (Sun et al., 2021): samples on which the heads' predictions disagree train both
    heads; of those on which they agree, each head trains on the peer's small-loss share."""
    agree = logits_a.argmax(1) == logits_b.argmax(1)
    disagree_idx, agree_idx = torch.nonzero(~agree).squeeze(1), torch.nonzero(agree).squeeze(1)
    if len(agree_idx) == 0:
        return disagree_idx, disagree_idx
    picked_a, picked_b = coteaching_rule(logits_a[agree_idx], logits_b[agree_idx], labels[agree_idx], forget_rate,
                                         epoch, init_epochs)
    return torch.cat([disagree_idx, agree_idx[picked_a]]), torch.cat([disagree_idx, agree_idx[picked_b]])


class TwoHeadSelection(EpochAware):
    r"""Two heads that pick each other's training samples.

    .. math::
        \mathcal L = \mathrm{CE}\big(h_a(\mathbf{x}_{S_a}), \tilde y_{S_a}\big)
                   + \mathrm{CE}\big(h_b(\mathbf{x}_{S_b}), \tilde y_{S_b}\big)

    with :math:`(S_a, S_b)` chosen per batch by the rule (:data:`SELECTION_RULES`: ``"coteaching"``,
    ``"coteaching_plus"``, ``"peer"``) at the forget rate :func:`forget_rate_schedule` of the epoch.
    ``forward`` returns ``{"logits": (z_a + z_b) / 2, "logits_a", "logits_b"}`` and, in training,
    ``"loss"``.

    Args:
        head_a, head_b: two models speaking the Trainer's contract (``forward(batch) -> {"logits": [B, C]}``),
            differently initialised: two :class:`fgmm.FGModel` from :func:`selection_head` with two seeds.
            They see the batch without its labels (the selection decides what they learn from).
        rule: the selection rule.
        forget_rate: :math:`\tau`, the share of samples each head leaves to forget (about the noise rate).
        warmup_epochs: :math:`T_k` of the schedule.
        init_epochs: Co-teaching+'s epochs of plain Co-teaching before the disagreement rule.

    Shapes:
        the heads' batches (e.g. ``batch["image"]``: ``[B, d]``) → logits ``[B, C]``.
    """

    def __init__(self, head_a: nn.Module, head_b: nn.Module, rule: str = "coteaching", forget_rate: float = 0.2,
                 warmup_epochs: int = 10, init_epochs: int = 10):
        super().__init__()
        if not 0.0 <= forget_rate < 1.0:
            raise ConfigError(f"forget_rate must be in [0, 1), got {forget_rate}")
        self.rule = SELECTION_RULES.get(rule)
        self.rule_name = rule
        self.forget_rate = forget_rate
        self.warmup_epochs = warmup_epochs
        self.init_epochs = init_epochs
        self.head_a, self.head_b = head_a, head_b

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        inputs = {k: v for k, v in batch.items() if k != "label"}
        logits_a, logits_b = self.head_a(inputs)["logits"], self.head_b(inputs)["logits"]
        out = {"logits": (logits_a + logits_b) / 2, "logits_a": logits_a, "logits_b": logits_b}
        if self.training:
            labels, _ = _labels_and_index(batch)
            epoch, _ = self._tick()
            rate = forget_rate_schedule(epoch, self.forget_rate, self.warmup_epochs)
            pick_a, pick_b = self.rule(logits_a.float(), logits_b.float(), labels, rate, epoch, self.init_epochs)
            zero = logits_a[torch.isfinite(logits_a)].sum() * 0.0  # keeps the graph (and DDP's reducer) alive
            loss_a = F.cross_entropy(logits_a[pick_a].float(), labels[pick_a]) if len(pick_a) else zero
            loss_b = F.cross_entropy(logits_b[pick_b].float(), labels[pick_b]) if len(pick_b) else zero
            out["loss"] = loss_a + loss_b
        return out


def fit_selective(model: EpochAware, config: Any, train_data: Dataset, val_data: Dataset | None = None,
                  resume: bool = True):
    """Train ``model`` with :class:`fgmm.train.Trainer` after telling it the epoch length.

    Returns ``(trainer, TrainResult)``; ``config`` is a :class:`fgmm.train.TrainConfig`, ``resume`` goes
    to :meth:`~fgmm.train.Trainer.fit`.
    """
    from fgmm.train import Trainer

    trainer = Trainer(model, config, train_data, val_data)
    model.batches_per_epoch = trainer.batches_per_epoch
    return trainer, trainer.fit(resume=resume)
