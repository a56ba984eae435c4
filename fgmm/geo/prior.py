r"""A learned presence-only prior :math:`p(\text{class} \mid \text{place}, \text{date})`.

:class:`GeoPrior` is the SINR network (Cole et al., *Spatial Implicit Neural Representations for
Global-Scale Species Mapping*, ICML 2023) with the date input of Mac Aodha et al. (*Presence-Only
Geographical Priors for Fine-Grained Image Classification*, ICCV 2019): a fixed encoding
:math:`e(x)` of place and date (:class:`~fgmm.geo.encoder.GeoTimeEncoder`, spherical harmonics by
default), optionally next to a learned multi-resolution hash grid :math:`g(x)` (:mod:`fgmm.geo.grid`, for
detail finer than the harmonics resolve), a residual MLP :math:`h`, and one logit per class,

.. math::
    f(x) = W\,h([e(x), g(x)]) + b, \qquad p(y_c = 1 \mid x) = \sigma(f_c(x)).

It is trained on presence-only records with the "assume negative, full" loss (SINR's
:math:`\mathcal{L}_\text{AN-full}`, geo_prior's "full" loss): for a record of class :math:`y` at
:math:`x` and a random background point :math:`r` (uniform on the sphere, random date),

.. math::
    \mathcal{L} = \frac{1}{C}\Big[-\lambda \log\sigma(f_y(x)) - \sum_{c \ne y}\log(1-\sigma(f_c(x)))
                  - \sum_{c}\log(1-\sigma(f_c(r)))\Big],

where :math:`\lambda` up-weights the single positive against the :math:`C-1` assumed negatives
(SINR: 2048). See :func:`fgmm.geo.fit.fit_geo_prior`.

``forward`` returns :math:`\log\sigma(f_c(x))`, the per-class log-probability of presence (classes are
not mutually exclusive, so rows do not sum to one); rows without a location are all zero ("no
information"), so adding the output to an image model's log-probabilities is the product rule of
Mac Aodha et al., :math:`p(c \mid I, x) \propto p(c \mid I)\, p(c \mid x)`.

``loss="softmax"`` trains the same network as a classifier of the records' classes (cross-entropy, no
background points; the location network of Chu et al., *Geo-Aware Networks for Fine-Grained Recognition*,
ICCVW 2019). Its ``forward`` returns :math:`\log p(c \mid x) - \log p(c)`, the log-ratio
:math:`\log[p(x \mid c) / p(x)]` by Bayes' rule (:math:`p(c)`: the records' class frequencies, add-one
smoothed), which is what multiplies a class-balanced image classifier's :math:`p(c \mid I)`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn.functional as F
from torch import nn

from fgmm.errors import ConfigError, DataError
from fgmm.geo.encoder import DEFAULT_GEO_ENCODER, GeoTimeEncoder, as_geo_tensor
from fgmm.geo.grid import HashGrid
from fgmm.io import write_bytes_atomic

PRIOR_FORMAT = "fgmm-geo-prior/1"


@dataclass
class GeoPriorConfig:
    """Architecture and training recipe of :class:`GeoPrior`.

    Defaults (chosen on an inner validation split of CUB's training images, ``benchmarks/geo.py``):
    spherical harmonics of degree < 16 plus a 12-level hash grid from 16° to 0.005° cells (about 500 m),
    one residual block of width 128, the softmax loss, 40 epochs of 512 records (minutes on one CPU core
    for 22k records). SINR's own
    recipe is ``loss="an_full", pos_weight=2048`` (reported next to it).

    Attributes:
        encoder: position encoding name of :class:`~fgmm.geo.encoder.GeoTimeEncoder` (``"sh16"``, ...).
        time: time parts fed to the network (``("day",)``, ``("day", "hour")`` or ``()``).
        loss: ``"an_full"`` (presence, SINR/geo_prior) or ``"softmax"`` (classifier of the records, Chu et al.).
        hidden: width of the residual MLP (0: no MLP, a log-linear model on the encoded features).
        blocks: residual blocks.
        dropout: dropout inside each block.
        pos_weight: :math:`\\lambda`, the weight of a record's own class.
        epochs, batch_size, lr, weight_decay: Adam with a cosine schedule.
        grid_levels: levels of a learned :class:`~fgmm.geo.grid.HashGrid` fed to the network next to the
            fixed encoding (0: none); ``grid_coarsest_deg``, ``grid_finest_deg``, ``grid_features``,
            ``grid_table_size`` shape it and ``grid_lr_scale`` multiplies its learning rate.
        date_dropout: probability of hiding a record's date during training (so that queries
            without a date get a location-only answer).
        background_date: probability that a background point carries a random date.
        seed: seed of initialisation, batches and background points.
    """

    encoder: str = DEFAULT_GEO_ENCODER
    time: tuple[str, ...] = ("day",)
    loss: str = "softmax"
    hidden: int = 128
    blocks: int = 1
    dropout: float = 0.3
    pos_weight: float = 2048.0
    epochs: int = 40
    batch_size: int = 512
    lr: float = 1e-3
    weight_decay: float = 1e-5
    grid_levels: int = 12
    grid_coarsest_deg: float = 16.0
    grid_finest_deg: float = 0.005
    grid_features: int = 8
    grid_table_size: int = 2 ** 15
    grid_lr_scale: float = 10.0
    date_dropout: float = 0.5
    background_date: float = 0.5
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GeoPriorConfig:
        values = dict(values)
        unknown = sorted(set(values) - set(cls.__dataclass_fields__))
        if unknown:
            raise ConfigError(f"unknown geo prior option(s) {unknown}; known: {sorted(cls.__dataclass_fields__)}")
        if "time" in values:
            values["time"] = tuple(values["time"])
        return cls(**values)


class ResidualBlock(nn.Module):
    """SINR's residual layer: :math:`x + \\mathrm{ReLU}(W_2\\,\\mathrm{Dropout}(\\mathrm{ReLU}(W_1 x)))`."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(width, width),
                                 nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class GeoPrior(nn.Module):
    """Presence-only class prior over places and dates (see the module docstring).

    Args:
        class_names: the classes, in label order.
        config: :class:`GeoPriorConfig`.

    Shapes:
        - input: ``[B, 4]`` geo rows (lat°, lon°, day of year, hour; ``NaN`` = missing), see
          :func:`fgmm.geo.metadata.geo_tensor`, or ``B`` samples
        - output: ``[B, C]`` :math:`\\log p(y_c = 1 \\mid x)`; all-zero rows where the location is missing

    Example::

        prior = fit_geo_prior(load_occurrences("occurrences.csv", dataset.meta["class_folders"]))
        log_prior = prior(geo_tensor(samples))               # [B, C]
        fused = image_log_probs + log_prior                  # product rule
    """

    def __init__(self, class_names: list[str], config: GeoPriorConfig | None = None):
        super().__init__()
        self.config = config or GeoPriorConfig()
        self.class_names = list(class_names)
        self.encoder = GeoTimeEncoder(self.config.encoder, time=self.config.time)
        c = self.config
        self.grid = (HashGrid(c.grid_levels, c.grid_coarsest_deg, c.grid_finest_deg, c.grid_features,
                              c.grid_table_size) if c.grid_levels else None)
        in_dim = self.encoder.dim + (self.grid.dim if self.grid is not None else 0)
        if c.hidden:
            self.body = nn.Sequential(nn.Linear(in_dim, c.hidden), nn.ReLU(),
                                      *(ResidualBlock(c.hidden, c.dropout) for _ in range(c.blocks)))
        else:  # a log-linear model on the encoded features
            self.body = nn.Identity()
        self.head = nn.Linear(c.hidden or in_dim, len(self.class_names))
        self.register_buffer("class_counts", torch.zeros(len(self.class_names)))

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def logits(self, x: Any) -> torch.Tensor:
        """``[B, C]`` presence logits :math:`f(x)` (no masking)."""
        geo = as_geo_tensor(x)
        device = self.head.weight.device
        features = self.encoder.encode(geo).to(device)
        if self.grid is not None:
            has_place = ~geo[:, :2].isnan().any(1)
            grid = self.grid(geo[:, 0].nan_to_num(0.0).to(device), geo[:, 1].nan_to_num(0.0).to(device))
            features = torch.cat((features, grid * has_place.to(device)[:, None]), dim=1)
        return self.head(self.body(features))

    def forward(self, x: Any) -> torch.Tensor:
        geo = as_geo_tensor(x)
        has_place = ~geo[:, :2].isnan().any(1).to(self.head.weight.device)
        logits = self.logits(geo)
        if self.config.loss == "softmax":
            frequency = (self.class_counts + 1) / (self.class_counts.sum() + self.num_classes)
            out = F.log_softmax(logits, dim=1) - frequency.log()
        else:
            out = F.logsigmoid(logits)
        return out * has_place[:, None]

    @torch.no_grad()
    def predict(self, x: Any, batch_size: int = 16384) -> torch.Tensor:
        """:meth:`forward` in eval mode, batched, without gradients (``[B, C]`` on the CPU)."""
        was_training = self.training
        self.eval()
        geo = as_geo_tensor(x)
        out = torch.cat([self(geo[i:i + batch_size]).cpu() for i in range(0, geo.shape[0], batch_size)]) \
            if geo.shape[0] else torch.zeros(0, self.num_classes)
        self.train(was_training)
        return out

    def class_index(self, name: str) -> int:
        """Index of a class by name (exact, then spelling-tolerant, then a unique substring match).

        Raises:
            DataError: no or several classes match.
        """
        from fgmm.geo.occurrences import class_key

        if name in self.class_names:
            return self.class_names.index(name)
        key = class_key(name)
        keys = [class_key(c) for c in self.class_names]
        if key in keys:
            return keys.index(key)
        hits = [i for i, k in enumerate(keys) if key in k]
        if len(hits) == 1:
            return hits[0]
        choices = ", ".join(self.class_names[i] for i in hits[:5]) if hits else "none"
        raise DataError(None, f"class '{name}' matches {len(hits)} classes of the prior ({choices})")

    def save(self, path: str | Path) -> Path:
        """Write weights, config and class names to one safetensors file (atomic)."""
        path = Path(path)
        metadata = {"format": PRIOR_FORMAT, "config": json.dumps(asdict(self.config)),
                    "class_names": json.dumps(self.class_names)}
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        write_bytes_atomic(path, safetensors.torch.save(state, metadata=metadata))
        return path

    @classmethod
    def load(cls, path: str | Path) -> GeoPrior:
        """Read a prior written by :meth:`save` (no pickle).

        Raises:
            DataError: the file is missing or is not an fgmm geo prior.
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "geo prior file not found")
        try:
            with safetensors.safe_open(str(path), framework="pt") as handle:
                metadata = handle.metadata() or {}
            state = safetensors.torch.load_file(str(path))
        except (safetensors.SafetensorError, OSError) as exc:
            raise DataError(path, f"not a readable safetensors file ({exc})") from None
        if metadata.get("format") != PRIOR_FORMAT:
            raise DataError(path, f"not an fgmm geo prior (format '{metadata.get('format')}')")
        prior = cls(json.loads(metadata["class_names"]), GeoPriorConfig.from_dict(json.loads(metadata["config"])))
        prior.load_state_dict(state)
        return prior.eval()


def assume_negative_full_loss(pos_logits: torch.Tensor, labels: torch.Tensor, bg_logits: torch.Tensor,
                              pos_weight: float) -> torch.Tensor:
    """SINR's :math:`\\mathcal{L}_\\text{AN-full}` (see the module docstring).

    Args:
        pos_logits: ``[B, C]`` logits at the records' places.
        labels: ``[B]`` the records' classes.
        bg_logits: ``[B', C]`` logits at background points.
        pos_weight: :math:`\\lambda`.

    Returns:
        the scalar loss (mean over records and classes, plus the same over background points).
    """
    loss = -F.logsigmoid(-pos_logits)
    own = pos_logits.gather(1, labels[:, None])
    loss = loss.scatter(1, labels[:, None], -pos_weight * F.logsigmoid(own))
    return loss.mean() + (-F.logsigmoid(-bg_logits)).mean()
