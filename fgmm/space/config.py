"""The configuration of an :class:`~fgmm.space.FGModel`: data, like open_clip's model configs.

A config names the modalities and their encoders, how each is projected into the joint space, the
fusion, where class embeddings come from, optional class priors, and the training objective. It
is plain data (JSON/YAML, validated by :func:`fgmm.train.config.config_from_dict`); named presets
ship as package data (``fgmm/space/presets/*.json``, listed by :func:`fgmm.list_models`)::

    {"modalities": {"image": {"encoder": "efficientnet_lite2", "projection": "whiten"}},
     "class_embeddings": {"source": "kg", "options": {"mean_weight": 0.5}}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fgmm.errors import ConfigError


@dataclass
class ModalityConfig:
    """One modality of the model.

    Attributes:
        encoder: the encoder's model name for ``create_encoder(<kind>, encoder)`` (``None``: the
            modality's offline default, e.g. ``efficientnet_lite2`` for images).
        encoder_options: further keyword arguments of the encoder (e.g. ``{"image_size": 224}``).
        projection: a name in :data:`fgmm.space.projections.PROJECTIONS` (``"mlp"``, ``"linear"``,
            ``"whiten"``, ``"identity"``).
        projection_options: keyword arguments of the projection (``hidden``, ``dropout``, ``shrinkage``...).
        input_dim: width of the encoder's features (filled in when the model is created).
        trainable: fine-tune the encoder end to end (GPU path; the batch then carries raw inputs).
        max_items: while training, a sample with several items of this modality (CUB: 10 captions)
            is represented by the mean of a random 1..``max_items`` of them, a new draw every epoch;
            at evaluation by the mean of all of them.
    """

    encoder: str | None = None
    encoder_options: dict[str, Any] = field(default_factory=dict)
    projection: str = "mlp"
    projection_options: dict[str, Any] = field(default_factory=dict)
    input_dim: int | None = None
    trainable: bool = False
    max_items: int = 1

    def __post_init__(self) -> None:
        if self.max_items < 1:
            raise ConfigError(f"max_items must be >= 1, got {self.max_items}")
        if self.input_dim is not None and self.input_dim < 1:
            raise ConfigError(f"input_dim must be >= 1, got {self.input_dim}")


@dataclass
class ClassesConfig:
    """Where the class embeddings :math:`W` (``[C, d]``) come from.

    Attributes:
        source: a name in :data:`fgmm.space.class_sources.CLASS_SOURCES`: ``"free"`` (learned
            weights), ``"means"`` (class means of the training embeddings), ``"kg"`` (class means
            blended with prototypes regressed from the knowledge graph; classes without training
            samples are recognised through the graph) or ``"gnn"`` (a GNN propagating over the
            knowledge graph, trained with the model).
        options: keyword arguments of the source (``mean_weight``, ``ridge``, ``layer``...).
        calibrate: choose the calibrated-stacking offset :math:`\\gamma` for classes without training
            samples on the training classes only (generalised zero-shot), when there are such classes.
    """

    source: str = "free"
    options: dict[str, Any] = field(default_factory=dict)
    calibrate: bool = True


@dataclass
class PriorConfig:
    """A class prior :math:`\\log p(c \\mid x_m)` read from one modality and added to the logits.

    Attributes:
        name: a name in :data:`fgmm.space.priors.PRIORS`.
        options: its keyword arguments.
        weight: multiplies the log-prior (1: the product-of-probabilities rule).
    """

    name: str
    options: dict[str, Any] = field(default_factory=dict)
    weight: float = 1.0


@dataclass
class ObjectiveConfig:
    """The training loss (see :class:`fgmm.space.objective.Objective`).

    Attributes:
        ce_weight: weight of the cross-entropy of every classified view (each modality and the fusion).
        contrastive_weight: weight of the class-aware InfoNCE between modality pairs.
        pairs: modality pairs aligned contrastively (default: every pair of the model's modalities).
        instance_weight: 0 = only class-level positives, 1 = CLIP's instance-level InfoNCE.
        init_temperature: initial contrastive temperature.
        label_smoothing: of the cross-entropy.
        metric: an optional metric-learning loss on the image embeddings (a name in
            :data:`fgmm.space.objective.METRIC_LOSSES`), e.g. for image→image retrieval.
        metric_weight: its weight.
        metric_options: its keyword arguments.
        view_classes: which classes each modality's view competes among in its cross-entropy:
            ``"all"`` (every trained class) or ``"own"`` (the classes with training samples that carry
            that modality, so a modality missing for some classes -- captions withheld, no recordings --
            does not learn that those classes never produce it).
    """

    ce_weight: float = 1.0
    contrastive_weight: float = 1.0
    pairs: list[list[str]] | None = None
    instance_weight: float = 0.0
    init_temperature: float = 0.07
    label_smoothing: float = 0.0
    metric: str | None = None
    metric_weight: float = 1.0
    metric_options: dict[str, Any] = field(default_factory=dict)
    view_classes: str = "all"

    def __post_init__(self) -> None:
        if self.view_classes not in ("all", "own"):
            raise ConfigError(f"view_classes must be 'all' or 'own', got {self.view_classes!r}")
        if not 0.0 <= self.instance_weight <= 1.0:
            raise ConfigError(f"instance_weight must be in [0, 1], got {self.instance_weight}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        for name in ("ce_weight", "contrastive_weight", "metric_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass
class FGModelConfig:
    """Everything that defines an :class:`~fgmm.space.FGModel` except its weights and classes.

    Attributes:
        modalities: the modalities by name (``"image"``, ``"text"``, ``"audio"``, ``"geo"``).
        dim: width :math:`d` of the joint space (``None``: the input width of the closed-form
            projections when there are any, else 256).
        fusion: a name in :data:`fgmm.space.fusion.FUSIONS` (``"gated"``, ``"attention"``, ``"mean"``).
        class_embeddings: where the class embeddings come from.
        priors: class priors by modality (e.g. ``{"geo": {"name": "geo_occurrences",
            "options": {"records": "occurrences.csv"}}}``).
        objective: the training loss.
        scale: initial scale of the cosine scores (learned while training, fitted for closed-form models).
    """

    modalities: dict[str, ModalityConfig]
    dim: int | None = None
    fusion: str = "gated"
    class_embeddings: ClassesConfig = field(default_factory=ClassesConfig)
    priors: dict[str, PriorConfig] = field(default_factory=dict)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    scale: float = 16.0

    def __post_init__(self) -> None:
        if not self.modalities:
            raise ConfigError("a model needs at least one modality")
        if self.dim is not None and self.dim < 1:
            raise ConfigError(f"dim must be >= 1, got {self.dim}")
        if self.scale <= 0:
            raise ConfigError(f"scale must be > 0, got {self.scale}")
        stray = sorted(set(self.priors) - set(self.modalities))
        if stray:
            raise ConfigError(f"priors read modalities the model does not have: {stray}")
        pairs = self.objective.pairs or []
        unknown = sorted({m for pair in pairs for m in pair} - set(self.modalities))
        if unknown or any(len(pair) != 2 for pair in pairs):
            raise ConfigError(f"objective.pairs must be pairs of the model's modalities; unknown: {unknown}")

    def pairs(self) -> list[tuple[str, str]]:
        """The contrastively aligned modality pairs (default: every pair, in config order)."""
        if self.objective.pairs is not None:
            return [(a, b) for a, b in self.objective.pairs]
        names = list(self.modalities)
        return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
