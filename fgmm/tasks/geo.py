"""The geo/time task: the one model (:class:`fgmm.FGModel`) on images alone, with a place/date prior, and
the prior alone.

Protocol (DESIGN.md section 3; CUB's data card, "Locations"):

* image model: the context's :class:`fgmm.FGModel` (preset ``"image"``, :func:`fgmm.tasks.image.image_model`,
  the model behind ``image_top1``); the fused model is the same model with the ``geo`` modality and the
  ``"geo_occurrences"`` class prior (:func:`fgmm.geo.model_prior.add_geo_prior`, preset ``"image-geo"``):
  every image is scored exactly as by the image model, then times the prior at its place and date;
* test images: the task's test split; an image's place and date come from ``Sample.location`` /
  ``Sample.time``; images without a place keep the image-only prediction (the model masks the prior);
* the prior is fitted on occurrence records **without the records the evaluation images' places
  were drawn from** (``Sample.meta["location_record"]``; the pair (class, record) is removed), so it
  never finds an evaluation point again;
* hyper-parameters (the prior's recipe from :data:`PRIOR_GRID`, the kernel bandwidth of the baseline)
  and the learned fusion's scalars (:meth:`~fgmm.geo.model_prior.OccurrencePrior.fit_fusion`) are chosen on an
  inner validation split of the training images (a seeded 20% per class), with an image model fitted on the
  rest and a prior fitted without the records of the validation *and* test images.

Records come from ``ctx.shared["occurrences"]`` (an :class:`~fgmm.geo.occurrences.Occurrences` or a path),
else from :func:`find_occurrences` (``occurrences.csv`` in the dataset root or ``../occurrences/``), else
from the training samples that carry a place (the procedural demo set).

Keys: ``geo_image_top1``, ``geo_fused_top1`` (the model with the learned prior, learned fusion),
``geo_fused_top1_product`` (product rule), ``geo_prior_top1`` (prior alone, test images with a place), the same
with SINR's assume-negative recipe (``_an``), the kernel-density baseline ``geo_fused_top1_kde`` /
``geo_prior_top1_kde`` (a per-class density times the same image model), per subset (``dated``: place and date,
``undated``: place only, ``noplace``) the counts ``geo_n_<subset>`` and gains ``geo_gain_<subset>`` (fused −
image) and ``geo_gain_<subset>_kde``, ``geo_gain_dated_nodate`` (the dated images with their date hidden),
the prior's fit time and the time of p(class | place) for 10,000 places.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fgmm.data.sample import MultiModalDataset
from fgmm.data.splits import holdout_split
from fgmm.geo.encoder import DEFAULT_GEO_ENCODER, GeoTimeEncoder
from fgmm.geo.fit import random_places
from fgmm.geo.fusion import LearnedPriorFusion, product_rule
from fgmm.geo.kde import KernelDensityPrior
from fgmm.geo.metadata import geo_tensor
from fgmm.geo.model_prior import FUSION_NAMES, add_geo_prior
from fgmm.geo.occurrences import Occurrences, load_occurrences, occurrences_from_samples
from fgmm.geo.prior import GeoPriorConfig
from fgmm.space import ModalityTable
from fgmm.space.features import featurize_geo
from fgmm.tasks import TASKS, TaskContext

logger = logging.getLogger(__name__)

PRIOR_GRID: tuple[GeoPriorConfig, ...] = (
    GeoPriorConfig(),
    GeoPriorConfig(grid_levels=14, grid_finest_deg=0.001),
    GeoPriorConfig(grid_levels=10, grid_finest_deg=0.02),
)
"""Prior recipes tried on the inner validation split (the first one alone in ``quick`` mode)."""
SINR_RECIPE = GeoPriorConfig(loss="an_full", pos_weight=2048.0)
"""SINR's assume-negative loss with background points on the default network, reported as the ``_an`` keys."""
KDE_BANDWIDTHS_KM: tuple[float, ...] = (10.0, 30.0, 100.0, 300.0, 1000.0)
KDE_UNIFORM_WEIGHTS: tuple[float, ...] = (1e-3, 0.1, 0.5)
QUICK_KDE: tuple[tuple[float, float], ...] = ((100.0, 0.1), (300.0, 0.1))
"""The baseline's ``(bandwidth_km, uniform_weight)`` candidates in ``quick`` mode."""
INNER_FRACTION = 0.2


def find_occurrences(dataset: MultiModalDataset) -> Path | None:
    """``occurrences.csv`` in the dataset root or in ``<root>/../occurrences/`` (the developers' bundle)."""
    if dataset.root is None:
        return None
    for path in (dataset.root / "occurrences.csv", dataset.root.parent / "occurrences" / "occurrences.csv"):
        if path.is_file():
            return path
    return None


def class_names_for_records(dataset: MultiModalDataset) -> list[str]:
    """Class names as occurrence files spell them (CUB: the class folders)."""
    return list(dataset.meta.get("class_folders") or dataset.class_names)


def evaluation_records(dataset: MultiModalDataset, indices: np.ndarray) -> set[tuple[int, str]]:
    """``(label, record)`` pairs the places of ``dataset[indices]`` were drawn from."""
    return {(dataset[i].label, str(dataset[i].meta["location_record"])) for i in indices
            if dataset[i].location is not None and dataset[i].meta.get("location_record")}


def _top1(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> float | None:
    hits = scores.argmax(1) == labels
    if mask is not None:
        hits = hits[mask]
    return float(hits.float().mean()) if hits.numel() else None


@dataclass
class GeoSplit:
    """One set of evaluation images: image features, geo features and rows, labels, and the image model's logits.

    Attributes:
        images: ``[B, d]`` image features.
        geo_features: ``[B, d_geo]`` :class:`~fgmm.geo.encoder.GeoTimeEncoder` features (zeros without a place).
        geo: ``[B, 4]`` geo rows (``NaN`` where missing).
        labels: ``[B]`` classes.
        image_logits: ``[B, C]`` logits of the image model (no prior).
    """

    images: torch.Tensor
    geo_features: torch.Tensor
    geo: torch.Tensor
    labels: torch.Tensor
    image_logits: torch.Tensor

    @property
    def has_place(self) -> torch.Tensor:
        return ~self.geo[:, :2].isnan().any(1)

    @property
    def dated(self) -> torch.Tensor:
        return self.has_place & ~self.geo[:, 2].isnan()

    def subsets(self) -> dict[str, torch.Tensor]:
        return {"dated": self.dated, "undated": self.has_place & ~self.dated, "noplace": ~self.has_place}

    def fused_logits(self, model: Any, geo_features: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, C]`` logits of a model with the geo prior (images, and places where they have one)."""
        ones = torch.ones(len(self.labels), dtype=torch.bool)
        return model.logits({"image": self.images, "geo": self.geo_features if geo_features is None else geo_features},
                            {"image": ones, "geo": self.has_place})


def _split(dataset: MultiModalDataset, images: torch.Tensor, geo: ModalityTable, indices: np.ndarray,
           image_model: Any) -> GeoSplit:
    index = torch.as_tensor(indices)
    logits = image_model.logits({"image": images[index]})
    return GeoSplit(images[index], geo.pooled()[index], geo_tensor([dataset[i] for i in indices]),
                    torch.as_tensor(dataset.labels)[index], logits)


def _fit_image_model(template: Any, images: torch.Tensor, labels: np.ndarray, indices: np.ndarray) -> Any:
    model = template.clone_untrained()
    index = torch.as_tensor(indices)
    model.fit_features({"image": ModalityTable.one_per_sample(images[index])}, torch.as_tensor(labels)[index])
    return model


def _recipe(config: GeoPriorConfig) -> dict:
    return {k: v for k, v in asdict(config).items() if k != "extra"}


@dataclass
class ModelPrior:
    """A recipe of the model's geo prior chosen on the validation split: the fused model on the test split,
    and the inner prior's outputs on the validation split (for combining with other priors)."""

    model: Any
    choice: dict
    val_log_prior: torch.Tensor

    @property
    def prior(self) -> nn.Module:
        return self.model.priors["geo"]


def _select_model_prior(recipes: dict[str, GeoPriorConfig], inner_model: Any, final_model: Any,
                        inner_records: Occurrences, records: Occurrences, val: GeoSplit, name: str,
                        geo_encoder: str = DEFAULT_GEO_ENCODER) -> ModelPrior:
    """For each recipe: the inner image model with the prior fitted on ``inner_records`` and its fusion learned
    on ``val``; the best (fused top-1 on ``val``) is refitted on ``records`` on the final image model, keeping the
    fusion scalars learned on ``val``."""
    best = None
    for label, recipe in recipes.items():
        candidate = add_geo_prior(inner_model, geo_encoder=geo_encoder, **_recipe(recipe))
        prior = candidate.priors["geo"].fit(inner_records)
        prior.fit_fusion(val.image_logits, val.geo_features, val.labels)
        score = _top1(val.fused_logits(candidate), val.labels)
        logger.info("geo %s candidate %s: validation fused top-1 %.4f", name, label, score)
        if best is None or score > best[0]:
            best = (score, label, recipe, prior)
    _, label, recipe, inner_prior = best
    final = add_geo_prior(final_model, geo_encoder=geo_encoder, **_recipe(recipe))
    final.priors["geo"].fit(records)
    with torch.no_grad():
        for scalar in FUSION_NAMES:
            getattr(final.priors["geo"], scalar).copy_(getattr(inner_prior, scalar))
    return ModelPrior(final, {"label": label, "config": recipe}, inner_prior.network.predict(val.geo))


def _model_metrics(result: ModelPrior, test: GeoSplit, suffix: str) -> dict:
    """Keys of one model prior on the test split (learned fusion, product rule, prior alone, gains)."""
    y, image = test.labels, test.image_logits
    prior = result.prior
    fused = test.fused_logits(result.model)
    learned = {n: getattr(prior, n).clone() for n in FUSION_NAMES}
    prior.use_product_rule()
    product = test.fused_logits(result.model)
    places = test.has_place
    alone = result.model.logits({"geo": test.geo_features[places]}) if places.any() else None
    with torch.no_grad():
        for n, value in learned.items():
            getattr(prior, n).copy_(value)
    metrics: dict = {f"geo_fused_top1{suffix}": _top1(fused, y), f"geo_fused_top1{suffix}_product": _top1(product, y),
                     f"geo_prior_top1{suffix}": _top1(alone, y[places]) if alone is not None else None,
                     f"geo_fusion{suffix}": {n: round(float(v), 4) for n, v in learned.items()}}
    for name, mask in test.subsets().items():
        if name != "noplace" and mask.any():
            metrics[f"geo_gain_{name}{suffix}"] = _top1(fused, y, mask) - _top1(image, y, mask)
    return metrics


@dataclass
class PriorResult:
    """A prior outside the model (the kernel-density baseline, a fixed range model) chosen on the validation
    split, its learned fusion with the image model's logits, and its outputs on both splits."""

    name: str
    choice: dict
    fusion: LearnedPriorFusion
    val_log_prior: torch.Tensor | list[torch.Tensor]
    test_log_prior: torch.Tensor | list[torch.Tensor]


def _fit_fusion(split: GeoSplit, log_prior: torch.Tensor | list[torch.Tensor],
                counts: np.ndarray) -> tuple[float, LearnedPriorFusion]:
    """Learned fusion fitted on ``split`` and its top-1 there (used to compare candidate priors)."""
    count = 1 if isinstance(log_prior, torch.Tensor) else len(log_prior)
    fusion = LearnedPriorFusion(torch.as_tensor(counts, dtype=torch.float32), num_priors=count)
    fusion.fit(split.image_logits, log_prior, split.geo, split.labels)
    with torch.no_grad():
        return _top1(fusion(split.image_logits, log_prior, split.geo), split.labels), fusion


def _select(candidates: dict[str, dict], make: Callable[[Occurrences, dict], nn.Module], inner_records: Occurrences,
            records: Occurrences, val: GeoSplit, test: GeoSplit, name: str) -> PriorResult:
    """Fit every candidate on ``inner_records``, keep the one whose learned fusion is best on ``val``,
    refit it on ``records`` and score ``test``."""
    best = None
    for label, choice in candidates.items():
        with torch.no_grad():
            val_log_prior = make(inner_records, choice)(val.geo)
        score, fusion = _fit_fusion(val, val_log_prior, inner_records.counts())
        logger.info("geo %s candidate %s: validation fused top-1 %.4f", name, label, score)
        if best is None or score > best[0]:
            best = (score, choice, fusion, val_log_prior)
    _, choice, fusion, val_log_prior = best
    with torch.no_grad():
        test_log_prior = make(records, choice)(test.geo)
        fusion.log_counts.copy_(torch.log1p(torch.as_tensor(records.counts(), dtype=torch.float32)))
    return PriorResult(name, choice, fusion, val_log_prior, test_log_prior)


def _combine(name: str, val_priors: list[torch.Tensor], test_priors: list[torch.Tensor], val: GeoSplit,
             inner_counts: np.ndarray, counts: np.ndarray) -> PriorResult:
    """One learned fusion of several already chosen priors."""
    _, fusion = _fit_fusion(val, val_priors, inner_counts)
    with torch.no_grad():
        fusion.log_counts.copy_(torch.log1p(torch.as_tensor(counts, dtype=torch.float32)))
    return PriorResult(name, {}, fusion, val_priors, test_priors)


def _make_kde(records: Occurrences, choice: dict) -> Callable[[torch.Tensor], torch.Tensor]:
    return KernelDensityPrior(records, choice["bandwidth_km"], choice["uniform_weight"])


def _fixed(prior: nn.Module) -> Callable[[Occurrences, dict], Callable[[torch.Tensor], torch.Tensor]]:
    """A prior that is not fitted to the records (e.g. BirdNET's range model)."""
    return lambda records, choice: prior


def _metrics(result: PriorResult, test: GeoSplit) -> dict:
    y, image = test.labels, test.image_logits
    suffix = f"_{result.name}"
    with torch.no_grad():
        fused = result.fusion(image, result.test_log_prior, test.geo)
    single = isinstance(result.test_log_prior, torch.Tensor)
    total = result.test_log_prior if single else torch.stack(result.test_log_prior).sum(0)
    metrics = {f"geo_fused_top1{suffix}": _top1(fused, y),
               f"geo_fused_top1{suffix}_product": _top1(product_rule(image, total), y)}
    if single:
        metrics[f"geo_prior_top1{suffix}"] = _top1(result.test_log_prior, y, test.has_place)
    for name, mask in test.subsets().items():
        if name != "noplace" and mask.any():
            metrics[f"geo_gain_{name}{suffix}"] = _top1(fused, y, mask) - _top1(image, y, mask)
    metrics[f"geo_fusion{suffix}"] = {n: [round(v, 4) for v in p.detach().flatten().tolist()]
                                     for n, p in result.fusion.named_parameters()}
    return metrics


def evaluate_geo(dataset: MultiModalDataset, features: torch.Tensor, occurrences: Occurrences | None,
                 train: np.ndarray, test: np.ndarray, *, image_model: Any = None, seed: int = 0, quick: bool = False,
                 grid: tuple[GeoPriorConfig, ...] = PRIOR_GRID, sinr: GeoPriorConfig | None = SINR_RECIPE,
                 kde: bool | Sequence[tuple[float, float]] = True, extra_priors: dict[str, nn.Module] | None = None,
                 geo_encoder: str = DEFAULT_GEO_ENCODER) -> dict:
    """The geo protocol of the module docstring on ``dataset[train]`` / ``dataset[test]``.

    Args:
        dataset: samples with ``location``/``time`` (and ``meta["location_record"]`` when their places
            were drawn from ``occurrences``).
        features: ``[N, d]`` frozen image features aligned with ``dataset``.
        occurrences: the records; ``None``: the training samples' own places.
        train, test: indices of the training and evaluation images.
        image_model: the :class:`fgmm.FGModel` fitted on ``features[train]`` (the image task's); ``None``:
            preset ``"image"`` fitted here.
        seed: seed of the inner split and the prior.
        quick: only the first recipe of ``grid`` with a quarter of its epochs, no SINR recipe, the kernel
            candidates of :data:`QUICK_KDE` (the demo's budget).
        grid: prior recipes to choose from on the inner validation split.
        sinr: the assume-negative recipe reported as the ``_an`` keys (``None``: skip).
        kde: also run the kernel-density baseline (``_kde`` keys), choosing ``(bandwidth_km, uniform_weight)``
            among :data:`KDE_BANDWIDTHS_KM` x :data:`KDE_UNIFORM_WEIGHTS` or among the given pairs.
        extra_priors: fixed priors (``forward(geo) -> [B, C]``, e.g. BirdNET's range model) reported alone
            (``_<name>`` keys) and fused with the learned prior (``_learned_<name>``).
        geo_encoder: the model's geo encoder (:class:`~fgmm.geo.encoder.GeoTimeEncoder` name).
    """
    from fgmm.space import create_model

    if quick:
        grid, sinr = (replace(grid[0], epochs=max(5, grid[0].epochs // 4)),), None
        kde = QUICK_KDE if kde is True else kde
    labels = dataset.labels
    inner = np.array(holdout_split(labels[train], INNER_FRACTION, seed + 1))
    inner_train, val = train[inner == "train"], train[inner == "test"]
    if occurrences is None:
        names = class_names_for_records(dataset)
        occurrences = occurrences_from_samples([dataset[i] for i in train], names)
        inner_records = occurrences_from_samples([dataset[i] for i in inner_train], names)
    else:
        inner_records = occurrences.without(evaluation_records(dataset, np.concatenate((val, test))))
    records = occurrences.without(evaluation_records(dataset, test))

    if image_model is None:
        image_model = create_model("image", classes=dataset.class_names, seed=seed,
                                   modalities={"image": {"input_dim": int(features.shape[1])}})
        image_model = _fit_image_model(image_model, features, labels, train)
    inner_model = _fit_image_model(image_model, features, labels, inner_train)
    encoder = GeoTimeEncoder(geo_encoder)
    places = featurize_geo(encoder, list(dataset))
    val_split = _split(dataset, features, places, val, inner_model)
    test_split = _split(dataset, features, places, test, image_model)
    start = time.perf_counter()

    def select(name: str, candidates: dict, make: Callable) -> PriorResult:
        return _select(candidates, make, inner_records, records, val_split, test_split, name)

    def model_prior(name: str, recipes: dict[str, GeoPriorConfig]) -> ModelPrior:
        return _select_model_prior(recipes, inner_model, image_model, inner_records, records, val_split, name,
                                   geo_encoder)

    learned = model_prior("learned", {f"recipe{i}": replace(c, seed=seed) for i, c in enumerate(grid)})
    metrics: dict = {"geo_image_top1": _top1(test_split.image_logits, test_split.labels)}
    metrics.update({f"geo_n_{name}": int(mask.sum()) for name, mask in test_split.subsets().items()})
    metrics.update(_model_metrics(learned, test_split, ""))
    if sinr is not None:
        metrics.update(_model_metrics(model_prior("an", {"sinr": replace(sinr, seed=seed)}), test_split, "_an"))
    results = []
    if kde:
        pairs = list(itertools.product(KDE_BANDWIDTHS_KM, KDE_UNIFORM_WEIGHTS)) if kde is True else list(kde)
        results.append(select("kde", {f"h{h:g}-eps{e:g}": {"bandwidth_km": h, "uniform_weight": e}
                                      for h, e in pairs}, _make_kde))
    for name, prior in (extra_priors or {}).items():
        alone = select(name, {name: {}}, _fixed(prior))
        learned_test = learned.prior.network.predict(test_split.geo)
        results += [alone, _combine(f"learned_{name}", [learned.val_log_prior, alone.val_log_prior],
                                    [learned_test, alone.test_log_prior], val_split, inner_records.counts(),
                                    records.counts())]
    seconds = time.perf_counter() - start
    for result in results:
        metrics.update(_metrics(result, test_split))
    query_places = random_places(10_000, torch.Generator().manual_seed(seed), 0.5)
    query = time.perf_counter()
    with torch.no_grad():
        learned.prior(query_places)
    query_seconds = time.perf_counter() - query
    if test_split.dated.any():
        hidden = test_split.geo.clone()
        hidden[:, 2:] = float("nan")
        dated = test_split.dated
        without_date = test_split.fused_logits(learned.model, encoder.encode(hidden) * test_split.has_place[:, None])
        metrics["geo_gain_dated_nodate"] = (_top1(without_date, test_split.labels, dated)
                                           - _top1(test_split.image_logits, test_split.labels, dated))
    config = learned.choice["config"]
    metrics.update({
        "geo_prior_fit_seconds": learned.prior.network.config.extra.get("fit_seconds"),
        "geo_prior_10k_places_seconds": round(query_seconds, 4), "geo_select_seconds": round(seconds, 1),
        "geo_n_records": len(records),
        "geo_prior_config": {k: v for k, v in asdict(config).items() if k not in ("extra", "seed")},
    })
    for result in results:
        if "bandwidth_km" in result.choice:
            metrics["geo_kde_choice"] = result.choice
    return metrics


@TASKS.register("geo")
def geo_task(ctx: TaskContext) -> dict:
    from fgmm.tasks.image import image_model

    train, test = ctx.trained_indices()
    occurrences = ctx.shared.get("occurrences")
    if occurrences is None:
        occurrences = find_occurrences(ctx.dataset)
    if isinstance(occurrences, str | Path):
        occurrences = load_occurrences(occurrences, class_names_for_records(ctx.dataset))
    if not any(ctx.dataset[i].location is not None for i in test):
        return {}
    return evaluate_geo(ctx.dataset, ctx.features["image"], occurrences, train, test, image_model=image_model(ctx),
                        seed=ctx.seed, quick=ctx.quick)
