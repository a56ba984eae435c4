r"""The one multi-modal model of fgmm: every modality, the knowledge graph and retrieval in one space.

.. math::
    z_m = \mathrm{Proj}_m\big(T_m(x_m)\big) \in \mathbb{S}^{d-1}, \qquad
    z = \frac{\mathrm{Fuse}(\{z_m\}, \mu)}{\lVert \mathrm{Fuse}(\{z_m\}, \mu) \rVert}, \qquad
    W = \mathrm{Source}(\mathcal{G}) \in \mathbb{R}^{C \times d}

.. math::
    \ell_c = s \cos(z, \mathbf{w}_c) - s\,\gamma\,[c \in S] + \sum_m \beta_m \mu_m \log p_m(c \mid x_m)

:math:`T_m` is modality *m*'s encoder (frozen and cached on CPU, or trained end to end on GPU),
:math:`\mathrm{Proj}_m` a projection of :data:`~fgmm.space.projections.PROJECTIONS` (learned, or
closed-form such as within-class whitening), Fuse a fusion of :data:`~fgmm.space.fusion.FUSIONS`
honouring the presence masks :math:`\mu`, :math:`W` the class embeddings from a source of
:data:`~fgmm.space.class_sources.CLASS_SOURCES` (free weights, class means, knowledge-graph
prototypes, or a GNN over the graph: the graph lives in the joint space, so classes without
training samples are scored through it), :math:`s` the cosine scale, :math:`\gamma` the
calibrated-stacking offset of the trained classes :math:`S` (generalised zero-shot; 0 when every
class was trained; a sample that carries one modality *m* alone uses :math:`\gamma_m` over the classes
:math:`S_m` that *m* trained on) and :math:`p_m` optional class priors (e.g. where and when a bird was seen).
Cross-media retrieval is nearest-neighbour search among the :math:`z_m` (:meth:`FGModel.embed`), or
class-aware matching that also compares class posteriors (:meth:`FGModel.match_scores`).

Batch format (the :class:`fgmm.train.Trainer` contract, a dict of tensors):

* ``batch[m]``: ``[B, d_m]`` cached features of modality *m*, or raw inputs of a modality whose
  encoder is a trainable tower (``[B, 3, H, W]`` images);
* ``batch["mask"][m]``: ``[B]`` bool, ``True`` where the sample carries *m* (default: all), as built
  by :func:`fgmm.data.torch_dataset.collate_multimodal`;
* ``batch["label"]``: ``[B]`` class indices; when present the output holds ``"loss"``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgmm.data.sample import Sample
from fgmm.data.torch_dataset import MASK_KEY
from fgmm.encoders.base import Encoder
from fgmm.errors import ConfigError, DataError
from fgmm.gnn.propagation import ClassGraph
from fgmm.models.heads import CosineClassifier
from fgmm.space.class_sources import FreeClassWeights, create_class_source
from fgmm.space.config import FGModelConfig
from fgmm.space.features import ModalityTable, SampleFeatures
from fgmm.space.fitting import FitResult, fit_samples, fit_tables
from fgmm.space.fusion import FUSIONS
from fgmm.space.inputs import featurize_samples, samples_from, tower_inputs
from fgmm.space.matching import RetrievalKeys, class_aware_scores
from fgmm.space.objective import Objective
from fgmm.space.pretrained import load_pretrained, save_pretrained
from fgmm.space.priors import create_prior
from fgmm.space.projections import create_projection, kept_width
from fgmm.train import TrainConfig

_INPUT_NAMES = {"image": "images", "text": "texts", "audio": "audio", "geo": "locations"}

FUSED = "fused"
"""Name of the fused view in masks, logits and the ``"z_fused"`` output."""


def resolve_dim(config: FGModelConfig) -> int:
    """The joint width: ``config.dim``, else the width the closed-form projections keep, else 256."""
    if config.dim is not None:
        return config.dim
    closed = {kept_width(m.projection, m.input_dim, **m.projection_options) for m in config.modalities.values()
              if m.input_dim is not None} - {None}
    if len(closed) > 1:
        raise ConfigError(f"closed-form projections of different widths {sorted(closed)}: set the model's dim")
    return closed.pop() if closed else 256


class FGModel(nn.Module):
    """Projects every modality into one space, fuses, scores classes, aligns modalities (module docstring).

    Build one with :func:`fgmm.create_model` (a preset name or a config), train it with :meth:`fit`,
    use it with :meth:`predict` / :meth:`predict_proba` / :meth:`embed`, and persist it with
    :meth:`save_pretrained` / :meth:`from_pretrained`.

    Args:
        config: the :class:`~fgmm.space.config.FGModelConfig`; every modality's ``input_dim`` must be set
            (:func:`fgmm.create_model` fills them from the encoders).
        class_names: the classes the model can name, in label order.
        graph: the knowledge graph over those classes (for the ``"kg"`` and ``"gnn"`` sources).
        kg: the :class:`fgmm.KnowledgeGraph` ``graph`` was made from, saved with the model.
        towers: trainable encoders of the modalities marked ``trainable`` (end-to-end training).
        seed: seeds the initialisation of every learned weight (independent of the global RNG).

    Example::

        model = fgmm.create_model("image-kg", classes=dataset.class_names, kg=fgmm.import_cub(root))
        model.fit(dataset.part("train"), cache=fgmm.FeatureCache(".fgmm-cache"))
        model.predict(images=["bird.jpg"], k=3)          # [[("Cardinal", 0.91), ...]]
        model.save_pretrained("cub-model")               # FGModel.from_pretrained("cub-model")
    """

    def __init__(self, config: FGModelConfig, class_names: Sequence[str], graph: ClassGraph | None = None,
                 kg: Any = None, towers: Mapping[str, Encoder] | None = None, seed: int = 0):
        super().__init__()
        missing = [m for m, c in config.modalities.items() if c.input_dim is None and m not in (towers or {})]
        if missing:
            raise ConfigError(f"modalities {missing} have no input_dim; build the model with fgmm.create_model")
        if not class_names:
            raise ConfigError("a model needs at least one class")
        self.config = config
        self.class_names = list(class_names)
        self.modalities = list(config.modalities)
        self.graph = graph
        self._kg = kg
        self.kg_path: Path | None = None
        self.seed = seed
        self.dim = resolve_dim(config)
        self.encoder_info: dict[str, dict[str, Any]] = {}
        self._encoders: dict[str, Encoder] = {}
        towers = dict(towers or {})
        stray = sorted(set(towers) - {m for m, c in config.modalities.items() if c.trainable})
        if stray:
            raise ConfigError(f"towers given for modalities not marked trainable: {stray}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.towers = nn.ModuleDict(towers)
            self.projections = nn.ModuleDict({
                m: create_projection(c.projection, in_dim=self._input_dim(m, towers), out_dim=self.dim,
                                     **c.projection_options)
                for m, c in config.modalities.items()})
            for m, c in config.modalities.items():
                if c.trainable and self.projections[m].closed_form:
                    raise ConfigError(f"modality '{m}' trains its encoder end to end, so its projection must be "
                                      f"learned ('mlp' or 'linear'), not '{c.projection}'")
            self.fusion = (FUSIONS.create(config.fusion, modalities=self.modalities, dim=self.dim)
                           if len(self.modalities) > 1 else None)
            num_classes = len(self.class_names)
            self.class_source = create_class_source(config.class_embeddings.source, num_classes, self.dim, graph=graph,
                                                    **config.class_embeddings.options)
            self.scorer = CosineClassifier(self.dim, None, scale=config.scale, max_scale=100.0)
            self.train_head = (FreeClassWeights(num_classes, self.dim)
                               if self.class_source.closed_form and self._learned_parts() else None)
            self.priors = nn.ModuleDict({m: create_prior(p.name, num_classes=num_classes, class_names=self.class_names,
                                                         input_dim=self._prior_input_dim(m), **p.options)
                                         for m, p in config.priors.items()})
            for prior in self.priors.values():
                prior.requires_grad_(False)
            self.objective = Objective(config.pairs(), config.objective, num_classes=num_classes, dim=self.dim)
        self.register_buffer("gamma", torch.zeros(()))
        self.register_buffer("modality_classes", torch.zeros(len(self.modalities), self.num_classes, dtype=torch.bool))
        self.register_buffer("modality_gamma", torch.zeros(len(self.modalities)))

    # ------------------------------------------------------------------ structure
    def _input_dim(self, modality: str, towers: Mapping[str, Encoder]) -> int:
        if modality in towers:
            return towers[modality].dim
        return int(self.config.modalities[modality].input_dim)  # type: ignore[arg-type]

    def _learned_parts(self) -> bool:
        """Whether anything besides a closed-form class source has weights to train."""
        learned = [p for name, p in self.named_parameters()
                   if p.requires_grad and not name.startswith(("class_source.", "train_head.", "objective.",
                                                               "priors.", "scorer."))]
        return bool(learned) or not self.class_source.closed_form

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def trained_classes(self) -> Tensor:
        """``[C]`` bool: classes the model saw training samples of."""
        return self.class_source.trained.clone()

    def classes_with(self, modality: str) -> Tensor:
        """``[C]`` bool: classes with training samples that carry ``modality`` (set by :meth:`fit`)."""
        return self.modality_classes[self.modalities.index(modality)].clone()

    def available_classes(self) -> Tensor:
        """``[C]`` bool: classes the model can predict (every class of the graph for the KG sources)."""
        return self.class_source.available()

    def class_embeddings(self) -> Tensor:
        """``[C, d]`` unit-norm class embeddings (zero rows for classes the source cannot name)."""
        weights = F.normalize(self.class_source(), dim=-1)
        return weights * self.available_classes()[:, None].to(weights.dtype)

    # ------------------------------------------------------------------ embeddings
    def _features(self, modality: str, batch: Mapping[str, Any]) -> Tensor | None:
        """Tower output (or the cached features) of ``modality``; ``None`` when the batch lacks it."""
        if modality not in batch:
            return None
        value = batch[modality]
        if modality in self.towers:
            tower = self.towers[modality]
            # raw inputs ([B, 3, H, W] images) go through the tower; [B, dim] rows are its features already
            # (what featurize() computes with the tower's current weights for evaluation)
            return value if value.ndim == 2 and value.shape[1] == tower.dim else tower(value)
        expected = self.config.modalities[modality].input_dim
        if value.ndim != 2 or value.shape[1] != expected:
            raise DataError(None, f"{modality} features have shape {tuple(value.shape)}, the model expects "
                                  f"[B, {expected}] (were they made by another {modality} encoder?)")
        return value

    def _prior_input_dim(self, modality: str) -> int | None:
        spec = self.config.modalities.get(modality)
        return None if spec is None else spec.input_dim

    def embed(self, modality: str, features: Tensor) -> Tensor:
        """``[B, d]`` unit-norm joint embeddings of one modality's features (or tower inputs): for retrieval.

        Use :meth:`embed_inputs` to embed raw inputs (image paths, texts, ...) through the encoders.
        """
        if modality not in self.projections:
            raise ConfigError(f"the model has no modality '{modality}'; it has {self.modalities}")
        if self.config.modalities[modality].projection == "none":
            raise ConfigError(f"the model's '{modality}' modality has no embedding (projection 'none': it scores "
                              "classes through its prior only); retrieval needs a learned or closed-form projection "
                              "of it, e.g. preset 'image-text'")
        return self.projections[modality](self._features(modality, {modality: features}))

    @torch.no_grad()
    def class_posterior(self, modality: str, features: Tensor) -> Tensor:
        """``[N, C]`` class probabilities of one modality's features alone (with that modality's calibration
        :math:`\\gamma_m` and its priors)."""
        return torch.softmax(self.logits({modality: features}), dim=-1)

    @torch.no_grad()
    def keys_from_embeddings(self, modality: str, embeddings: Tensor) -> RetrievalKeys:
        r"""Retrieval keys of joint embeddings of one modality (e.g. the vectors of an index): the embeddings
        and their class posteriors :math:`\mathrm{softmax}_c\big(s\cos(z, \mathbf{w}_c) - s\gamma_m[c \in S_m]\big)`
        over the classes the model can name (class priors, which read raw features, are not applied)."""
        if modality not in self.modalities:
            raise ConfigError(f"the model has no modality '{modality}'; it has {self.modalities}")
        if not self.available_classes().any():
            raise ConfigError("the model names no class yet (fit it first): class posteriors need fitted classes")
        index = self.modalities.index(modality)
        z = F.normalize(embeddings.float().to(self.gamma.device), dim=-1)
        scale = self.scorer.scale.detach()
        offsets = self.modality_gamma[index] * self.modality_classes[index].to(z.dtype)
        logits = scale * (z @ self.class_embeddings().T - offsets)
        logits = logits.masked_fill(~self.available_classes(), float("-inf"))
        return RetrievalKeys(z.cpu(), torch.softmax(logits, dim=-1).cpu())

    def retrieval_keys(self, modality: str, features: Tensor) -> RetrievalKeys:
        """Embeddings and class posteriors of one modality's features, for :meth:`match_scores`."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                return self.keys_from_embeddings(modality, self.embed(modality, features.to(self.gamma.device)))
        finally:
            self.train(was_training)

    def match_scores(self, query: RetrievalKeys, gallery: RetrievalKeys) -> Tensor:
        """``[Q, G]`` class-aware cross-media scores (:mod:`fgmm.space.matching`) of keys from
        :meth:`retrieval_keys`, e.g. texts against photos."""
        return class_aware_scores(query, gallery, float(self.scorer.scale.detach()))

    def _embeddings(self, batch: Mapping[str, Any]) -> tuple[dict[str, Tensor], dict[str, Tensor], dict[str, Tensor]]:
        features: dict[str, Tensor] = {}
        embeddings: dict[str, Tensor] = {}
        masks: dict[str, Tensor] = {}
        given = batch.get(MASK_KEY, {})
        for m in self.modalities:
            value = self._features(m, batch)
            if value is None:
                continue
            features[m] = value
            embeddings[m] = self.projections[m](value)
            mask = given.get(m)
            masks[m] = (torch.ones(value.shape[0], dtype=torch.bool, device=value.device) if mask is None
                        else mask.to(value.device).bool())
        if not embeddings:
            raise DataError(None, f"the batch carries none of the modalities {self.modalities} (keys: {sorted(batch)})")
        return features, embeddings, masks

    def fuse(self, embeddings: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        """``[B, d]`` unit-norm fused embedding of the modalities each sample carries."""
        if self.fusion is None:
            (only,) = embeddings.values()
            return only
        return F.normalize(self.fusion(embeddings, masks), dim=-1)

    # ------------------------------------------------------------------ scores
    def _score(self, z: Tensor, weights: Tensor, allowed: Tensor) -> Tensor:
        logits = self.scorer(z, weights=weights)
        return logits.masked_fill(~allowed.to(logits.device), float("-inf"))

    def _calibration(self, masks: Mapping[str, Tensor]) -> Tensor:
        """``[B, C]`` offsets of calibrated stacking: :math:`s\\gamma[c \\in S]`, or, for a sample that
        carries one modality *m* alone, :math:`s\\gamma_m[c \\in S_m]` with :math:`S_m` the classes *m*
        was trained on (zero when every class is trained)."""
        dtype = self.gamma.dtype
        present = [(i, masks[m]) for i, m in enumerate(self.modalities) if m in masks]
        count = torch.stack([mask.long() for _, mask in present]).sum(0)
        offsets = (self.gamma * self.class_source.trained.to(dtype)).expand(len(count), -1).clone()
        for i, mask in present:
            offsets[mask & (count == 1)] = self.modality_gamma[i] * self.modality_classes[i].to(dtype)
        return self.scorer.scale * offsets

    def forward(self, batch: Mapping[str, Any]) -> dict[str, Tensor]:
        """See the module docstring for the batch format.

        Returns:
            ``"logits"`` (fused view, with priors and calibration), ``"logits_<m>"`` per modality,
            ``"z_<m>"`` and ``"z_fused"`` unit-norm embeddings, ``"mask_<m>"``; with ``batch["label"]``
            (in training mode) also ``"loss"`` and its terms.
        """
        features, embeddings, masks = self._embeddings(batch)
        fused = self.fuse(embeddings, masks)
        masks[FUSED] = torch.stack(list(masks.values()), dim=1).any(dim=1)
        training_head = self.training and self.train_head is not None
        if training_head:
            weights, allowed = self.train_head(), self.train_head.trained
        elif self.training:
            weights, allowed = self.class_source(), self.class_source.trained
        else:
            weights, allowed = self.class_source(), self.class_source.available()
        own = self.training and self.config.objective.view_classes == "own"
        views = {m: self._score(z, weights, allowed & self.modality_classes[self.modalities.index(m)] if own
                                else allowed) for m, z in embeddings.items()}
        views[FUSED] = self._score(fused, weights, allowed)
        logits = views[FUSED]
        if not self.training:
            logits = logits - self._calibration({m: masks[m] for m in embeddings}).to(logits.device)
            logits = self._add_priors(logits, features, masks)
        out: dict[str, Tensor] = {"logits": logits, "z_fused": fused}
        for m, z in embeddings.items():
            out[f"z_{m}"] = z
            out[f"logits_{m}"] = views[m]
            out[f"mask_{m}"] = masks[m]
        if "label" in batch and self.training:
            out.update(self.objective(embeddings, masks, views, batch["label"].to(fused.device)))
        return out

    def _add_priors(self, logits: Tensor, features: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> Tensor:
        r"""Product of probabilities: :math:`\log\mathrm{softmax}(\ell) + \beta_m \log p_m(c \mid x_m)`."""
        if not self.priors:
            return logits
        log_probs = torch.log_softmax(logits, dim=-1)
        for m, prior in self.priors.items():
            if m not in features:
                continue
            weight = self.config.priors[m].weight
            present = masks[m][:, None]
            log_probs = log_probs + torch.where(present, weight * prior(features[m]), 0.0)
        return log_probs

    @torch.no_grad()
    def logits(self, features: Mapping[str, Tensor], masks: Mapping[str, Tensor] | None = None,
               batch_size: int = 4096) -> Tensor:
        """``[N, C]`` evaluation logits of cached features ``{modality: [N, d_m]}`` (absent modalities omitted)."""
        was_training = self.training
        self.eval()
        try:
            n = len(next(iter(features.values())))
            device = self.gamma.device
            chunks = []
            for start in range(0, n, batch_size):
                batch: dict[str, Any] = {m: f[start:start + batch_size].to(device) for m, f in features.items()}
                if masks:
                    batch[MASK_KEY] = {m: v[start:start + batch_size].to(device) for m, v in masks.items()}
                chunks.append(self(batch)["logits"].cpu())
            return torch.cat(chunks)
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------ knowledge graph
    @property
    def kg(self):
        """The :class:`fgmm.KnowledgeGraph` the model was built with (read from the model folder on first use)."""
        if self._kg is None and self.kg_path is not None:
            from fgmm.kg import KnowledgeGraph

            self._kg = KnowledgeGraph.load(self.kg_path)
        return self._kg

    # ------------------------------------------------------------------ fitting
    def clone_untrained(self) -> FGModel:
        """A fresh model of the same config, classes, graph and seed (encoders shared), not fitted."""
        twin = type(self)(copy.deepcopy(self.config), self.class_names, graph=self.graph, kg=self._kg,
                          towers={m: copy.deepcopy(t) for m, t in self.towers.items()}, seed=self.seed)
        twin._encoders = self._encoders
        twin.encoder_info = dict(self.encoder_info)
        return twin

    def featurize(self, samples: Sequence[Sample], cache: Any = None, *, modalities: Sequence[str] | None = None,
                  progress: bool = False, skip_bad: bool = False) -> dict[str, ModalityTable]:
        """Feature tables of ``samples`` for each modality of the model (or of ``modalities``) that they carry
        (frozen encoders, through ``cache`` — a :class:`fgmm.FeatureCache` — when given)."""
        return featurize_samples(self, samples, cache, modalities=modalities, progress=progress, skip_bad=skip_bad)

    def fit(self, data: Sequence[Sample], *, cache: Any = None, train: TrainConfig | None = None,
            val: Sequence[Sample] | None = None, progress: bool = False, skip_bad: bool = False,
            resume: bool = False) -> FitResult:
        """Fit the model on labelled samples (a :class:`~fgmm.data.MultiModalDataset` or a list of samples).

        Frozen encoders compute features through ``cache``; trainable towers (``trainable: true``, the GPU
        path) read raw inputs; closed-form parts are fitted, learned parts trained with the
        :class:`~fgmm.train.Trainer` (``train``: its config; default: a recipe chosen on CUB validation
        splits, checkpoints in a temporary folder; ``resume``: continue the run in ``train.out_dir``).
        See :mod:`fgmm.space.fitting`.
        """
        training = self.sample_features(list(data), cache, train=True, progress=progress, skip_bad=skip_bad)
        validation = None if val is None else self.sample_features(list(val), cache, skip_bad=skip_bad)
        return fit_samples(self, training, train=train, val=validation, seed=self.seed, resume=resume)

    def sample_features(self, samples: Sequence[Sample], cache: Any = None, *, train: bool = False,
                        progress: bool = False, skip_bad: bool = False) -> SampleFeatures:
        """The :class:`~fgmm.space.features.SampleFeatures` of labelled ``samples``: cached features of the
        frozen modalities, raw inputs of the trainable towers (augmented when ``train``)."""
        frozen = [m for m in self.modalities if m not in self.towers]
        tables = (self.featurize(samples, cache, modalities=frozen, progress=progress, skip_bad=skip_bad)
                  if frozen else {})  # an image-only fine-tuned model: every input is raw
        raw = {m: tower_inputs(self, m, samples, train=train) for m in self.towers}
        return SampleFeatures(tables, [s.label for s in samples], raw=raw)

    def fit_features(self, tables: Mapping[str, ModalityTable], labels: Sequence[int] | Tensor, *,
                     train: TrainConfig | None = None, val: tuple[Mapping[str, ModalityTable], Any] | None = None
                     ) -> FitResult:
        """Fit on precomputed feature tables (:class:`~fgmm.space.features.ModalityTable` per modality)."""
        return fit_tables(self, tables, labels, train=train, val=val, seed=self.seed)

    # ------------------------------------------------------------------ inference
    def _tables_logits(self, tables: Mapping[str, ModalityTable]) -> Tensor:
        return self.logits({m: t.pooled() for m, t in tables.items()}, {m: t.present for m, t in tables.items()})

    def predict_proba(self, samples: Sequence[Sample] | None = None, *, images: Sequence[str | Path] | None = None,
                      texts: Sequence[str | Sequence[str]] | None = None, audio: Sequence[str | Path] | None = None,
                      locations: Sequence[tuple[float, float] | None] | None = None,
                      times: Sequence[datetime | None] | None = None, cache: Any = None) -> Tensor:
        """``[N, C]`` class probabilities of samples, or of per-sample inputs zipped into samples.

        Classes the model cannot name (no training samples and no knowledge-graph embedding) get 0.
        """
        if samples is None:
            samples = samples_from(images, texts, audio, locations, times)
        return torch.softmax(self._tables_logits(self.featurize(list(samples), cache)), dim=-1)

    def predict(self, samples: Sequence[Sample] | None = None, *, k: int = 5, **inputs: Any
                ) -> list[list[tuple[str, float]]]:
        """The top ``k`` ``(class name, probability)`` pairs of each sample (arguments of :meth:`predict_proba`)."""
        probabilities = self.predict_proba(samples, **inputs)
        top = probabilities.topk(min(k, self.num_classes), dim=1)
        return [[(self.class_names[int(c)], float(p)) for p, c in zip(values, indices, strict=True)]
                for values, indices in zip(top.values, top.indices, strict=True)]

    def embed_inputs(self, modality: str, inputs: Sequence[Any], cache: Any = None) -> Tensor:
        """``[N, d]`` joint embeddings of raw inputs of one modality (image paths, texts, ...), for retrieval."""
        samples = samples_from(**{_INPUT_NAMES[modality]: list(inputs)})
        table = self.featurize(samples, cache)[modality]
        return self.embed(modality, table.pooled()).detach()

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, folder: str | Path, overwrite: bool = False) -> Path:
        """Write the model folder (config JSON, safetensors weights, class names, the KG, encoder
        fingerprints): see :mod:`fgmm.space.pretrained`."""
        return save_pretrained(self, folder, overwrite=overwrite)

    @classmethod
    def from_pretrained(cls, folder: str | Path, map_location: str | torch.device = "cpu") -> FGModel:
        """Load a model folder written by :meth:`save_pretrained` (eval mode); its encoders are rebuilt
        on first use and refused when their fingerprint differs from the recorded one."""
        return load_pretrained(cls, folder, map_location)

    def extra_repr(self) -> str:
        return (f"modalities={self.modalities}, dim={self.dim}, classes={self.num_classes}, "
                f"source='{self.config.class_embeddings.source}'")
