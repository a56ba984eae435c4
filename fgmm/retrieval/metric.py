r"""Metric-learning losses on the joint embedding, and a projection head trained with them.

Every loss of :data:`METRIC_LOSSES` (the registry :class:`fgmm.FGModel`'s objective reads,
``objective.metric``; this module registers its entries) has one interface, whatever it does inside::

    loss = create_metric_loss("proxy_anchor", num_classes=100, dim=512)   # an nn.Module
    value = loss(embeddings, labels)      # embeddings [B, d], labels [B] (-1: unknown, left out) -> scalar

Proxy-based losses own parameters (one proxy per class): register the loss as a submodule of the
model so the optimizer trains them. The losses come from pytorch-metric-learning (Musgrave et al.,
*A Metric Learning Reality Check*, ECCV 2020); this module only gives them one signature, computes
them in float32 outside autocast (PML casts its proxies to the input dtype in place, which would turn
them into bf16 parameters under AMP) and lets proxies learn faster than the network
(``proxy_lr_scale``, as Proxy-Anchor's 100x proxy learning rate, via a reparametrisation so that one
optimizer and one learning rate serve the whole model).

:class:`MetricEmbeddingModel` is a :class:`~fgmm.space.projections.ProjectionHead` (optionally behind
a vision tower) trained with one of these losses under the :class:`fgmm.train.Trainer` contract:
on cached features on CPU (:func:`fit_metric_head`), or end to end on GPU with an unlocked tower and
image batches -- the same module and the same Trainer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from fgmm.errors import ConfigError, DataError
from fgmm.space.objective import METRIC_LOSSES
from fgmm.space.projections import ProjectionHead
from fgmm.train import TrainConfig, Trainer
from fgmm.train.checkpoint import atomic_write
from fgmm.train.seed import seed_everything


class _Scaled(nn.Module):
    """Reparametrisation ``p = s * q``: with Adam, ``p`` moves ``s`` times faster than an unscaled parameter."""

    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def forward(self, q: torch.Tensor) -> torch.Tensor:
        return q * self.scale

    def right_inverse(self, p: torch.Tensor) -> torch.Tensor:
        return p / self.scale


class MetricLoss(nn.Module):
    """``forward(embeddings [B, d], labels [B]) -> scalar`` around a pytorch-metric-learning loss.

    Args:
        loss: a PML loss (``loss(embeddings, labels, indices_tuple)``).
        miner: optional PML miner choosing the pairs/triplets the loss sees.
        proxy_lr_scale: speed-up of the loss's own parameters (proxies) relative to the model.

    Rows with a negative label are left out; a batch with fewer than two labelled rows gives a zero
    loss that still depends on ``embeddings`` (so backward works).
    """

    def __init__(self, loss: nn.Module, miner: nn.Module | None = None, proxy_lr_scale: float = 1.0):
        super().__init__()
        if proxy_lr_scale <= 0:
            raise ConfigError(f"proxy_lr_scale must be positive, got {proxy_lr_scale}")
        self.loss = loss
        self.miner = miner
        if proxy_lr_scale != 1.0:
            for name, _ in list(loss.named_parameters(recurse=False)):
                parametrize.register_parametrization(loss, name, _Scaled(proxy_lr_scale))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if embeddings.ndim != 2 or labels.shape != embeddings.shape[:1]:
            raise ValueError(f"expected embeddings [B, d] and labels [B], got {tuple(embeddings.shape)} and "
                             f"{tuple(labels.shape)}")
        known = labels >= 0
        if int(known.sum()) < 2:
            return embeddings.sum() * 0.0
        with torch.autocast(embeddings.device.type, enabled=False):
            x, y = embeddings[known].float(), labels[known].long()
            pairs = self.miner(x, y) if self.miner is not None else None
            return self.loss(x, y, pairs)


def create_metric_loss(name: str, num_classes: int, dim: int, **options: Any) -> MetricLoss:
    """The loss ``name`` of :data:`METRIC_LOSSES` for ``num_classes`` training classes and ``dim``-d embeddings.

    ``options`` are the loss's keyword arguments (see each factory) plus ``proxy_lr_scale``.
    """
    return METRIC_LOSSES.create(name, num_classes=num_classes, dim=dim, **options)


def _pml() -> Any:
    """pytorch-metric-learning's ``losses`` and ``miners`` (imported on first use: it loads in ~1 s)."""
    from types import SimpleNamespace

    from pytorch_metric_learning import losses, miners

    return SimpleNamespace(losses=losses, miners=miners)


@METRIC_LOSSES.register("proxy_anchor")
def proxy_anchor(num_classes: int, dim: int, margin: float = 0.1, alpha: float = 32.0,
                 proxy_lr_scale: float = 100.0) -> MetricLoss:
    r"""Proxy-Anchor (Kim et al., CVPR 2020): each class proxy :math:`p` is an anchor over the batch.

    .. math::
        \mathcal{L} = \frac{1}{|P^+|}\sum_{p \in P^+} \log\Big(1 + \sum_{x \in X_p^+} e^{-\alpha(s(x,p) - \delta)}\Big)
        + \frac{1}{|P|}\sum_{p \in P} \log\Big(1 + \sum_{x \in X_p^-} e^{\alpha(s(x,p) + \delta)}\Big)

    :math:`s` is cosine similarity, :math:`P^+` the proxies with a positive in the batch,
    :math:`\delta` the margin. Needs no class-balanced batches.
    """
    loss = _pml().losses.ProxyAnchorLoss(num_classes, dim, margin=margin, alpha=alpha)
    return MetricLoss(loss, proxy_lr_scale=proxy_lr_scale)


@METRIC_LOSSES.register("normalized_softmax")
def normalized_softmax(num_classes: int, dim: int, temperature: float = 0.05,
                       proxy_lr_scale: float = 100.0) -> MetricLoss:
    r"""Normalised softmax / ProxyNCA++ (Zhai & Wu, BMVC 2019; Teh et al., ECCV 2020).

    .. math::
        \mathcal{L} = -\frac{1}{B}\sum_i \log \frac{e^{s(x_i, w_{y_i})/T}}{\sum_c e^{s(x_i, w_c)/T}}
    """
    loss = _pml().losses.NormalizedSoftmaxLoss(num_classes, dim, temperature=temperature)
    return MetricLoss(loss, proxy_lr_scale=proxy_lr_scale)


@METRIC_LOSSES.register("multi_similarity")
def multi_similarity(num_classes: int, dim: int, alpha: float = 2.0, beta: float = 50.0, base: float = 0.5,
                     epsilon: float | None = 0.1) -> MetricLoss:
    r"""Multi-Similarity loss with its miner (Wang et al., CVPR 2019).

    .. math::
        \mathcal{L} = \frac{1}{B}\sum_i \Big[\frac{1}{\alpha}\log\Big(1 + \sum_{k \in \mathcal{P}_i}
        e^{-\alpha(s_{ik} - \lambda)}\Big) + \frac{1}{\beta}\log\Big(1 + \sum_{k \in \mathcal{N}_i}
        e^{\beta(s_{ik} - \lambda)}\Big)\Big]

    :math:`\lambda` is ``base``; the miner keeps negatives with :math:`s_{ik} > \min_{\mathcal P_i} s - \epsilon`
    and positives with :math:`s_{ik} < \max_{\mathcal N_i} s + \epsilon` (``epsilon=None``: no mining).
    Pair-based: batches need several images per class.
    """
    pml = _pml()
    miner = pml.miners.MultiSimilarityMiner(epsilon=epsilon) if epsilon is not None else None
    return MetricLoss(pml.losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base), miner)


@METRIC_LOSSES.register("supcon")
def supervised_contrastive(num_classes: int, dim: int, temperature: float = 0.1) -> MetricLoss:
    r"""Supervised contrastive loss (Khosla et al., NeurIPS 2020), :math:`\mathcal{L}^{sup}_{out}`.

    .. math::
        \mathcal{L} = \sum_i \frac{-1}{|P(i)|}\sum_{p \in P(i)} \log
        \frac{e^{s_{ip}/\tau}}{\sum_{a \ne i} e^{s_{ia}/\tau}}

    Pair-based: batches need several images per class.
    """
    return MetricLoss(_pml().losses.SupConLoss(temperature=temperature))


@dataclass
class MetricHeadConfig:
    r"""Architecture and loss of a :class:`MetricEmbeddingModel` (saved with its weights).

    Attributes:
        in_dim: input feature dimension (the tower's output, or cached features).
        num_classes: training classes (proxies of proxy-based losses).
        dim: embedding dimension.
        hidden: hidden width of the :class:`ProjectionHead` (``0``: linear projection).
        dropout: dropout of the head.
        loss: a name in :data:`METRIC_LOSSES`.
        loss_options: keyword arguments of the loss.
        residual: learn a correction of the (normalised) input instead of a new space,
            :math:`z = \mathrm{norm}(\hat f + \gamma\, \mathrm{Proj}(f))` with :math:`\gamma` initialised at 0,
            so training starts from the input geometry (needs ``dim == in_dim``).
    """

    in_dim: int
    num_classes: int
    dim: int = 512
    hidden: int = 0
    dropout: float = 0.0
    loss: str = "proxy_anchor"
    loss_options: dict[str, Any] = field(default_factory=dict)
    residual: bool = False

    def __post_init__(self) -> None:
        if min(self.in_dim, self.num_classes, self.dim) < 1 or self.hidden < 0:
            raise ConfigError("metric head: in_dim, num_classes and dim must be positive, hidden >= 0")
        if self.residual and self.dim != self.in_dim:
            raise ConfigError(f"metric head: a residual head keeps the input dimension ({self.in_dim}), "
                              f"got dim={self.dim}")
        METRIC_LOSSES.get(self.loss)  # unknown names fail here, listing the choices


class MetricEmbeddingModel(nn.Module):
    r"""Unit-norm embeddings :math:`z = \mathrm{Proj}(T(x))` (or a residual correction of :math:`T(x)`, see
    :class:`MetricHeadConfig`) trained with a metric loss.

    :math:`T` is an optional tower (e.g. an unfrozen :class:`fgmm.encoders.TimmVisionEncoder` for
    end-to-end training on GPU); without one the batch carries cached features.

    Batch (the :class:`fgmm.train.Trainer` contract): ``batch[key]`` is ``[B, in_dim]`` features, or
    ``[B, 3, H, W]`` images when there is a tower; ``batch["label"]`` ``[B]`` class indices in
    ``0..num_classes-1`` (``-1`` unknown). Output: ``{"embedding": [B, dim], "loss": scalar}`` (the
    loss only when labels are given).

    Args:
        config: the :class:`MetricHeadConfig`.
        tower: optional module mapping the batch input to ``[B, in_dim]`` features.
        key: the batch key of the input (``"image"``: what :class:`fgmm.data.torch_dataset.FeatureDataset`
            and :class:`~fgmm.data.torch_dataset.ImageDataset` yield).
    """

    def __init__(self, config: MetricHeadConfig, tower: nn.Module | None = None, key: str = "image"):
        super().__init__()
        self.config = config
        self.key = key
        self.tower = tower
        self.head = ProjectionHead(config.in_dim, config.dim, config.hidden, config.dropout)
        self.gate = nn.Parameter(torch.zeros(())) if config.residual else None
        self.loss = create_metric_loss(config.loss, config.num_classes, config.dim, **config.loss_options)

    def embed(self, inputs: torch.Tensor) -> torch.Tensor:
        """``[B, dim]`` unit embeddings of features (or tower inputs)."""
        features = self.tower(inputs) if self.tower is not None else inputs
        if features.ndim != 2 or features.shape[1] != self.config.in_dim:
            raise DataError(None, f"features have shape {tuple(features.shape)}, the metric head expects "
                                  f"[B, {self.config.in_dim}]")
        if self.gate is None:
            return self.head(features)
        return F.normalize(F.normalize(features, dim=-1) + self.gate * self.head(features), dim=-1)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        if self.key not in batch:
            raise DataError(None, f"the batch has no '{self.key}' (keys: {sorted(batch)})")
        z = self.embed(batch[self.key])
        out = {"embedding": z}
        if "label" in batch:
            out["loss"] = self.loss(z, batch["label"])
        return out

    @torch.no_grad()
    def embed_all(self, features: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Embeddings of many cached feature rows (eval mode, CPU result)."""
        was_training = self.training
        self.eval()
        device = next(self.parameters()).device
        try:
            return torch.cat([self.embed(features[i:i + batch_size].to(device)).float().cpu()
                              for i in range(0, len(features), batch_size)])
        finally:
            self.train(was_training)

    def save(self, path: str | Path) -> Path:
        """Atomically write config and head + loss weights (the tower is not saved)."""
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("tower.")}
        payload = {"format": "fgmm-metric-head-1", "config": asdict(self.config), "state_dict": state}
        return atomic_write(Path(path), lambda handle: torch.save(payload, handle))

    @classmethod
    def load(cls, path: str | Path) -> MetricEmbeddingModel:
        """Read a head written by :meth:`save` (``weights_only=True``), in eval mode, without tower."""
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "metric head file does not exist")
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt files
            raise DataError(path, f"cannot read the metric head ({type(exc).__name__})") from None
        if not isinstance(payload, dict) or payload.get("format") != "fgmm-metric-head-1":
            raise DataError(path, "not an fgmm metric head (no 'fgmm-metric-head-1' format entry)")
        model = cls(MetricHeadConfig(**payload["config"]))
        try:
            model.load_state_dict(payload["state_dict"])
        except RuntimeError as exc:
            raise DataError(path, f"weights do not fit the saved config ({str(exc).splitlines()[0]})") from None
        return model.eval()


def contiguous_labels(labels: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Labels renumbered ``0..C-1`` (in sorted order of the originals) and the original label of each."""
    classes, local = torch.as_tensor(labels).long().unique(sorted=True, return_inverse=True)
    return local, classes.tolist()


def fit_metric_head(features: torch.Tensor, labels: torch.Tensor, config: MetricHeadConfig | None = None,
                    train: TrainConfig | None = None, keep_run: bool = False,
                    **config_kwargs: Any) -> MetricEmbeddingModel:
    """Train a :class:`MetricEmbeddingModel` on cached ``[N, d]`` features with :class:`fgmm.train.Trainer`.

    Labels may be any class ids (renumbered internally; ``num_classes`` is taken from them when
    ``config`` is not given: ``config_kwargs`` then fill a :class:`MetricHeadConfig`). The Trainer's
    checkpoints go to a temporary folder unless ``keep_run`` (then to ``train.out_dir``). Returns the
    model in eval mode.
    """
    import dataclasses
    import tempfile

    from fgmm.data.torch_dataset import FeatureDataset, collate_multimodal

    features = torch.as_tensor(features).float()
    local, classes = contiguous_labels(labels)
    if len(features) != len(local):
        raise DataError(None, f"{len(features)} feature rows but {len(local)} labels")
    if config is None:
        config = MetricHeadConfig(in_dim=features.shape[1], num_classes=len(classes), **config_kwargs)
    elif config.num_classes < len(classes):
        raise ConfigError(f"metric head: {len(classes)} classes in the labels, config says {config.num_classes}")
    train = train or TrainConfig(epochs=30, batch_size=256, lr=1e-3, progress=False)
    seed_everything(train.seed)  # the initial weights and proxies too, not only the Trainer's data order
    model = MetricEmbeddingModel(config)
    with tempfile.TemporaryDirectory(prefix="fgmm-metric-") as tmp:
        if not keep_run:
            train = dataclasses.replace(train, out_dir=Path(tmp))
        Trainer(model, train, FeatureDataset({"image": features}, local), collate_fn=collate_multimodal).fit(
            resume=False)
    return model.eval()

