r"""Image descriptors for image->image search: multi-view backbone features, whitening, a metric head.

.. math::
    \mathbf{f}(x) = \frac{1}{|V|}\sum_{v \in V} \pi\big(F(t_v(x))\big), \qquad
    \mathbf{z}(x) = \mathrm{Proj}\big(\mathcal W(\mathbf f(x))\big) \in \mathbb S^{d-1}

:math:`F`, :math:`t_v`, :math:`\pi` are the frozen backbone, test-time views and pooling of
:class:`fgmm.retrieval.views.MultiViewEncoder`; :math:`\mathcal W` is
:class:`fgmm.space.projections.FeatureWhitening` (power normalisation, centring, shrunk within-class whitening)
fitted on labelled *training* classes, and :math:`\mathrm{Proj}` an optional
:class:`~fgmm.retrieval.metric.MetricEmbeddingModel` head trained with a metric loss on those classes.
Either step may be off. Descriptors of classes never seen in training are then compared by cosine
similarity (optionally re-ranked, :mod:`fgmm.retrieval.rerank`).

An :class:`ImageDescriptor` is saved to one ``torch.save`` file (loaded with ``weights_only=True``) and
stored in a retrieval index folder by :class:`fgmm.retrieval.Retriever`, so that queries are
described exactly as the indexed images were.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fgmm.encoders.base import Encoder
from fgmm.errors import ConfigError, DataError
from fgmm.retrieval.metric import MetricEmbeddingModel, MetricHeadConfig, contiguous_labels, fit_metric_head
from fgmm.retrieval.views import POOLINGS, VIEWS, MultiViewEncoder
from fgmm.space.projections import FeatureWhitening
from fgmm.train import TrainConfig
from fgmm.train.checkpoint import atomic_write

DESCRIPTOR_FORMAT = "fgmm-image-descriptor-1"


@dataclass
class DescriptorConfig:
    """What an :class:`ImageDescriptor` computes.

    Attributes:
        views: test-time views averaged (names in :data:`fgmm.retrieval.views.VIEWS`).
        pooling: pooling of the backbone's feature map (:data:`fgmm.retrieval.views.POOLINGS`).
        gem_p: GeM exponent when ``pooling="gem"``.
        whitening: fit :class:`~fgmm.space.projections.FeatureWhitening` on the training classes.
        power, shrinkage: its power normalisation and shrinkage.
        head: train a metric head on the (whitened) features: the keyword arguments of
            :class:`~fgmm.retrieval.metric.MetricHeadConfig` besides ``in_dim``/``num_classes``
            (``dim``, ``hidden``, ``dropout``, ``loss``, ``loss_options``), or ``None`` for no head.
        train: the head's :class:`~fgmm.train.TrainConfig` keyword arguments (epochs, lr, ...).
    """

    views: list[str] = field(default_factory=lambda: ["identity"])
    pooling: str = "avg"
    gem_p: float = 3.0
    whitening: bool = True
    power: float = 0.5
    shrinkage: float = 3.0
    head: dict[str, Any] | None = None
    train: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.views:
            raise ConfigError("descriptor: at least one view")
        for view in self.views:
            VIEWS.get(view)
        POOLINGS.get(self.pooling)


class ImageDescriptor:
    """Whitening and/or metric head over multi-view backbone features (module docstring).

    Args:
        config: the :class:`DescriptorConfig`.

    Example::

        descriptor = ImageDescriptor(DescriptorConfig(views=["identity", "hflip"]))
        encoder = descriptor.encoder(create_encoder("vision"))           # what to run on the images
        raw = cache.encode_images(encoder, train_paths).features
        descriptor.fit(raw, train_labels)                                # training classes only
        z = descriptor(cache.encode_images(encoder, paths).features)     # [N, d] unit vectors
    """

    def __init__(self, config: DescriptorConfig | None = None):
        self.config = config or DescriptorConfig()
        self.whitening: FeatureWhitening | None = None
        self.head: MetricEmbeddingModel | None = None
        self.in_dim: int | None = None
        self.fitted = False

    # ------------------------------------------------------------------ inputs
    def encoder(self, base: Encoder) -> Encoder:
        """The encoder whose (cached) features this descriptor reads: ``base`` itself for one identity view
        with average pooling (so its feature cache is reused), else a
        :class:`~fgmm.retrieval.views.MultiViewEncoder` averaging the views."""
        cfg = self.config
        if cfg.views == ["identity"] and cfg.pooling == "avg":
            return base
        return MultiViewEncoder(base, views=cfg.views, poolings=(cfg.pooling,), combine="mean", gem_p=cfg.gem_p)

    # ------------------------------------------------------------------ fit / apply
    def fit(self, features: torch.Tensor, labels: torch.Tensor | None = None,
            extra_views: list[torch.Tensor] | None = None, device: str = "cpu", seed: int = 0) -> ImageDescriptor:
        """Fit whitening and head on labelled training features ``[N, d_raw]``.

        Args:
            features: the descriptor's raw input (views already averaged) of the training images.
            labels: their classes (any ids); may be ``None`` when there is neither whitening nor a head
                (then ``features`` only fix the input dimension).
            extra_views: the same images' features of single views (e.g. only the flipped one), added to
                the head's training set as augmentation; the whitening sees ``features`` only.
            device, seed: for the head's training.
        """
        cfg = self.config
        features = torch.as_tensor(features).float()
        if features.ndim != 2:
            raise DataError(None, f"features must be [N, d], got {tuple(features.shape)}")
        self.in_dim = features.shape[1]
        self.whitening, self.head, self.fitted = None, None, not (cfg.whitening or cfg.head is not None)
        if self.fitted:
            return self
        if labels is None:
            raise ConfigError("descriptor: whitening and metric heads are fitted on labelled training images")
        labels = torch.as_tensor(labels).long()
        if len(features) != len(labels):
            raise DataError(None, f"{len(features)} feature rows but {len(labels)} labels")
        _, classes = contiguous_labels(labels)
        if len(classes) < 2:
            raise DataError(None, "fitting a descriptor needs labelled images of at least two classes")
        self.whitening = (FeatureWhitening(power=cfg.power, shrinkage=cfg.shrinkage).fit(features, labels)
                          if cfg.whitening else None)
        if cfg.head is not None:
            inputs = [features, *(extra_views or [])]
            x = torch.cat([self._whiten(v) for v in inputs])
            y = labels.repeat(len(inputs))
            train = TrainConfig(**{"progress": False, "device": device, "seed": seed, **cfg.train})
            self.head = fit_metric_head(x, y, config=MetricHeadConfig(in_dim=x.shape[1], num_classes=len(classes),
                                                                      **cfg.head), train=train).cpu()
        self.fitted = True
        return self

    def _whiten(self, features: torch.Tensor) -> torch.Tensor:
        return self.whitening(features) if self.whitening is not None else features.float()

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        """``[N, d_raw]`` raw features -> ``[N, d]`` unit descriptors."""
        if not self.fitted:
            raise ConfigError("ImageDescriptor is used before fit() (or load())")
        features = torch.as_tensor(features).float().cpu()
        if features.ndim != 2 or features.shape[1] != self.in_dim:
            raise DataError(None, f"features have shape {tuple(features.shape)}, the descriptor expects "
                                  f"[N, {self.in_dim}] (another encoder or views?)")
        z = self._whiten(features)
        if self.head is not None:
            z = self.head.embed_all(z)
        return F.normalize(z, dim=1)

    @property
    def dim(self) -> int:
        """Output dimension."""
        if self.head is not None:
            return self.head.config.dim
        if self.in_dim is None:
            raise ConfigError("ImageDescriptor is used before fit() (or load())")
        return self.in_dim

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, Any]:
        """Everything :meth:`load` needs, as plain types and tensors."""
        if not self.fitted:
            raise ConfigError("ImageDescriptor is saved before fit()")
        whitening = None if self.whitening is None else {"mean": self.whitening.mean,
                                                         "transform": self.whitening.transform}
        head = None if self.head is None else {"config": asdict(self.head.config),
                                               "state_dict": self.head.state_dict()}
        return {"format": DESCRIPTOR_FORMAT, "config": asdict(self.config), "in_dim": self.in_dim,
                "whitening": whitening, "head": head}

    def fingerprint(self) -> str:
        """A short hash of the config and every fitted tensor: the identity of the descriptor space."""
        state = self.state()
        digest = hashlib.sha256(json.dumps([state["config"], state["in_dim"]], sort_keys=True).encode())
        tensors = dict(state["whitening"] or {})
        if state["head"] is not None:
            tensors.update({f"head.{k}": v for k, v in state["head"]["state_dict"].items()})
        for key, tensor in sorted(tensors.items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        """Atomically write the descriptor to one file."""
        state = self.state()
        return atomic_write(Path(path), lambda handle: torch.save(state, handle))

    @classmethod
    def load(cls, path: str | Path) -> ImageDescriptor:
        """Read a descriptor written by :meth:`save` (``weights_only=True``).

        Raises:
            DataError: the file is missing, corrupt or not a descriptor.
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "descriptor file does not exist")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt files
            raise DataError(path, f"cannot read the descriptor ({type(exc).__name__})") from None
        if not isinstance(state, dict) or state.get("format") != DESCRIPTOR_FORMAT:
            raise DataError(path, f"not an fgmm image descriptor (no '{DESCRIPTOR_FORMAT}' format entry)")
        try:
            descriptor = cls(DescriptorConfig(**state["config"]))
            descriptor.in_dim = int(state["in_dim"])
            if state["whitening"] is not None:
                config = descriptor.config
                whitening = state["whitening"]
                descriptor.whitening = FeatureWhitening(len(whitening["mean"]), config.power, config.shrinkage)
                descriptor.whitening.load_state_dict({**whitening, "fitted": torch.tensor(True)})
            if state["head"] is not None:
                head = MetricEmbeddingModel(MetricHeadConfig(**state["head"]["config"]))
                head.load_state_dict(state["head"]["state_dict"])
                descriptor.head = head.eval()
        except (KeyError, TypeError, RuntimeError) as exc:
            raise DataError(path, f"incomplete or inconsistent descriptor ({str(exc).splitlines()[0]})") from None
        descriptor.fitted = True
        return descriptor
