"""The geo/time task: an image classifier alone, with a place/date prior, and the prior alone.

Protocol (DESIGN.md section 3; CUB's data card, "Locations"):

* test images: the task's test split; an image's place and date come from ``Sample.location`` /
  ``Sample.time``; images without a place keep the image-only prediction;
* the prior is fitted on occurrence records **without the records the evaluation images' places
  were drawn from** (``Sample.meta["location_record"]``; the pair (class, record) is removed), so it
  never finds an evaluation point again;
* hyper-parameters (the prior's recipe from :data:`PRIOR_GRID`, the kernel bandwidth of the baseline)
  and the learned fusion's scalars are chosen on an inner validation split of the training images
  (a seeded 20% per class), with a prior fitted without the records of the validation *and* test images;
* image model: a logistic-regression probe on L2-normalised frozen features (the ``image`` task's
  ``image_top1_logreg`` recipe).

Records come from ``ctx.shared["occurrences"]`` (an :class:`~fgmm.geo.occurrences.Occurrences` or a path),
else from :func:`find_occurrences` (``occurrences.csv`` in the dataset root or ``../occurrences/``), else
from the training samples that carry a place (the procedural demo set).

Keys: ``geo_image_top1``, ``geo_fused_top1`` (product rule with the learned prior),
``geo_fused_top1_learned`` (learned fusion), ``geo_prior_top1`` (prior alone, test images with a place),
the kernel-density baseline ``geo_fused_top1_kde`` / ``geo_prior_top1_kde``, per subset (``dated``: place and
date, ``undated``: place only, ``noplace``) the counts ``geo_n_<subset>`` and gains ``geo_gain_<subset>``
(fused − image, product rule) and ``geo_gain_<subset>_kde``, ``geo_gain_dated_nodate`` (the dated images
with their date hidden), the prior's fit time and the time of p(class | place) for 10,000 places.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fgmm.data.sample import MultiModalDataset
from fgmm.data.splits import holdout_split
from fgmm.geo.fit import fit_geo_prior, random_places
from fgmm.geo.fusion import LearnedPriorFusion, product_rule
from fgmm.geo.kde import KernelDensityPrior
from fgmm.geo.metadata import geo_tensor
from fgmm.geo.occurrences import Occurrences, load_occurrences, occurrences_from_samples
from fgmm.geo.prior import GeoPriorConfig
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
PROBE_C: tuple[float, ...] = (1.0, 10.0, 100.0)
"""Inverse regularisation of the image probe, chosen on the inner validation split (as in the image task's notes)."""
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


def probe_logits(x_train: torch.Tensor, y_train: torch.Tensor, x_eval: torch.Tensor, num_classes: int,
                 c: float = 1.0, seed: int = 0) -> torch.Tensor:
    """``[B, C]`` log-probabilities of scikit-learn's logistic regression (inverse regularisation ``c``) on
    L2-normalised features (classes without training images get ``-inf``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import normalize

    probe = LogisticRegression(C=c, max_iter=2000, random_state=seed)
    probe.fit(normalize(x_train.numpy()), y_train.numpy())
    out = torch.full((x_eval.shape[0], num_classes), -torch.inf)
    out[:, torch.as_tensor(probe.classes_)] = torch.as_tensor(
        probe.predict_log_proba(normalize(x_eval.numpy())), dtype=torch.float32)
    return out


def _top1(scores: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None) -> float | None:
    hits = scores.argmax(1) == labels
    if mask is not None:
        hits = hits[mask]
    return float(hits.float().mean()) if hits.numel() else None


@dataclass
class GeoSplit:
    """What the geo evaluation needs about one set of evaluation images."""

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


def _split(dataset: MultiModalDataset, features: torch.Tensor, fit: np.ndarray, evaluate: np.ndarray,
           c: float, seed: int) -> GeoSplit:
    labels = torch.as_tensor(dataset.labels)
    logits = probe_logits(features[fit], labels[fit], features[evaluate], dataset.num_classes, c, seed)
    return GeoSplit(geo_tensor([dataset[i] for i in evaluate]), labels[evaluate], logits)


def _choose_probe(dataset: MultiModalDataset, features: torch.Tensor, fit: np.ndarray, val: np.ndarray,
                  choices: tuple[float, ...], seed: int) -> tuple[float, GeoSplit]:
    """The probe ``C`` with the best image-only top-1 on ``val``, and its validation split."""
    splits = {c: _split(dataset, features, fit, val, c, seed) for c in choices}
    best = max(splits, key=lambda c: _top1(splits[c].image_logits, splits[c].labels))
    return best, splits[best]


@dataclass
class PriorResult:
    """A prior (or several) chosen on the validation split, its fusion, and its outputs on both splits."""

    name: str
    choice: dict
    fusion: LearnedPriorFusion
    val_log_prior: torch.Tensor | list[torch.Tensor]
    test_log_prior: torch.Tensor | list[torch.Tensor]
    prior: nn.Module | None = None


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
        val_log_prior = make(inner_records, choice).predict(val.geo)
        score, fusion = _fit_fusion(val, val_log_prior, inner_records.counts())
        logger.info("geo %s candidate %s: validation fused top-1 %.4f", name, label, score)
        if best is None or score > best[0]:
            best = (score, choice, fusion, val_log_prior)
    _, choice, fusion, val_log_prior = best
    prior = make(records, choice)
    fusion.log_counts.copy_(torch.log1p(torch.as_tensor(records.counts(), dtype=torch.float32)))
    return PriorResult(name, choice, fusion, val_log_prior, prior.predict(test.geo), prior)


def _combine(name: str, parts: list[PriorResult], val: GeoSplit, inner_counts: np.ndarray,
             counts: np.ndarray) -> PriorResult:
    """One learned fusion of several already chosen priors."""
    val_priors = [p.val_log_prior for p in parts]
    _, fusion = _fit_fusion(val, val_priors, inner_counts)
    fusion.log_counts.copy_(torch.log1p(torch.as_tensor(counts, dtype=torch.float32)))
    return PriorResult(name, {"priors": [p.name for p in parts]}, fusion, val_priors,
                       [p.test_log_prior for p in parts])


class _KDE(KernelDensityPrior):
    @torch.no_grad()
    def predict(self, x) -> torch.Tensor:
        return self(x)


def _make_learned(records: Occurrences, choice: dict) -> nn.Module:
    return fit_geo_prior(records, choice["config"])


def _make_kde(records: Occurrences, choice: dict) -> nn.Module:
    return _KDE(records, choice["bandwidth_km"], choice["uniform_weight"])


def _fixed(prior: nn.Module) -> Callable[[Occurrences, dict], nn.Module]:
    """A prior that is not fitted to the records (e.g. BirdNET's range model)."""
    class _Fixed(nn.Module):
        @torch.no_grad()
        def predict(self, x) -> torch.Tensor:
            return prior(x)

    return lambda records, choice: _Fixed()


def _metrics(results: list[PriorResult], test: GeoSplit) -> dict:
    y, has_place, image = test.labels, test.has_place, test.image_logits
    metrics: dict = {"geo_image_top1": _top1(image, y)}
    subsets = test.subsets()
    for name, mask in subsets.items():
        metrics[f"geo_n_{name}"] = int(mask.sum())
    for result in results:
        suffix = "" if result.name == "learned" else f"_{result.name}"
        with torch.no_grad():
            fused = result.fusion(image, result.test_log_prior, test.geo)
        single = isinstance(result.test_log_prior, torch.Tensor)
        total = result.test_log_prior if single else torch.stack(result.test_log_prior).sum(0)
        metrics[f"geo_fused_top1{suffix}"] = _top1(fused, y)
        metrics[f"geo_fused_top1{suffix}_product"] = _top1(product_rule(image, total), y)
        if single:
            metrics[f"geo_prior_top1{suffix}"] = _top1(result.test_log_prior, y, has_place)
        for name, mask in subsets.items():
            if name != "noplace" and mask.any():
                metrics[f"geo_gain_{name}{suffix}"] = _top1(fused, y, mask) - _top1(image, y, mask)
        metrics[f"geo_fusion{suffix}"] = {n: [round(v, 4) for v in p.detach().flatten().tolist()]
                                         for n, p in result.fusion.named_parameters()}
    return metrics


def evaluate_geo(dataset: MultiModalDataset, features: torch.Tensor, occurrences: Occurrences | None,
                 train: np.ndarray, test: np.ndarray, *, seed: int = 0, quick: bool = False,
                 grid: tuple[GeoPriorConfig, ...] = PRIOR_GRID, sinr: GeoPriorConfig | None = SINR_RECIPE,
                 kde: bool | Sequence[tuple[float, float]] = True,
                 extra_priors: dict[str, nn.Module] | None = None) -> dict:
    """The geo protocol of the module docstring on ``dataset[train]`` / ``dataset[test]``.

    Args:
        dataset: samples with ``location``/``time`` (and ``meta["location_record"]`` when their places
            were drawn from ``occurrences``).
        features: ``[N, d]`` frozen image features aligned with ``dataset``.
        occurrences: the records; ``None``: the training samples' own places.
        train, test: indices of the training and evaluation images.
        seed: seed of the inner split, the probe and the prior.
        quick: only the first recipe of ``grid`` with a quarter of its epochs, one probe ``C``, no SINR
            recipe (the demo's budget).
        grid: prior recipes to choose from on the inner validation split.
        sinr: the assume-negative recipe reported as the ``_an`` keys (``None``: skip).
        kde: also run the kernel-density baseline (``_kde`` keys), choosing ``(bandwidth_km, uniform_weight)``
            among :data:`KDE_BANDWIDTHS_KM` x :data:`KDE_UNIFORM_WEIGHTS` or among the given pairs.
        extra_priors: fixed priors (``forward(geo) -> [B, C]``, e.g. BirdNET's range model) reported alone
            (``_<name>`` keys) and fused with the learned prior (``_learned_<name>``).
    """
    if quick:
        grid, sinr = (replace(grid[0], epochs=max(5, grid[0].epochs // 4)),), None
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

    probe_c, val_split = _choose_probe(dataset, features, inner_train, val, PROBE_C[:1] if quick else PROBE_C, seed)
    test_split = _split(dataset, features, train, test, probe_c, seed)
    start = time.perf_counter()

    def select(name: str, candidates: dict, make: Callable) -> PriorResult:
        return _select(candidates, make, inner_records, records, val_split, test_split, name)

    learned = select("learned", {f"recipe{i}": {"config": replace(c, seed=seed)} for i, c in enumerate(grid)},
                     _make_learned)
    results = [learned]
    if sinr is not None:
        results.append(select("an", {"sinr": {"config": replace(sinr, seed=seed)}}, _make_learned))
    if kde:
        pairs = list(itertools.product(KDE_BANDWIDTHS_KM, KDE_UNIFORM_WEIGHTS)) if kde is True else list(kde)
        results.append(select("kde", {f"h{h:g}-eps{e:g}": {"bandwidth_km": h, "uniform_weight": e}
                                      for h, e in pairs}, _make_kde))
    for name, prior in (extra_priors or {}).items():
        alone = select(name, {name: {}}, _fixed(prior))
        results += [alone, _combine(f"learned_{name}", [learned, alone], val_split, inner_records.counts(),
                                    records.counts())]
    seconds = time.perf_counter() - start
    places = random_places(10_000, torch.Generator().manual_seed(seed), 0.5)
    query = time.perf_counter()
    learned.prior.predict(places)
    query_seconds = time.perf_counter() - query
    metrics = _metrics(results, test_split)
    if test_split.dated.any():
        hidden = test_split.geo.clone()
        hidden[:, 2:] = float("nan")
        dated = test_split.dated
        without_date = learned.fusion(test_split.image_logits, learned.prior.predict(hidden), hidden).detach()
        metrics["geo_gain_dated_nodate"] = (_top1(without_date, test_split.labels, dated)
                                           - _top1(test_split.image_logits, test_split.labels, dated))
    config = learned.choice["config"]
    metrics.update({
        "geo_prior_fit_seconds": learned.prior.config.extra.get("fit_seconds"),
        "geo_prior_10k_places_seconds": round(query_seconds, 4), "geo_select_seconds": round(seconds, 1),
        "geo_n_records": len(records), "geo_probe_c": probe_c,
        "geo_prior_config": {k: v for k, v in asdict(config).items() if k not in ("extra", "seed")},
    })
    for result in results[1:]:
        if "bandwidth_km" in result.choice:
            metrics["geo_kde_choice"] = result.choice
    return metrics


@TASKS.register("geo")
def geo_task(ctx: TaskContext) -> dict:
    train, test = ctx.trained_indices()
    occurrences = ctx.shared.get("occurrences")
    if occurrences is None:
        occurrences = find_occurrences(ctx.dataset)
    if isinstance(occurrences, str | Path):
        occurrences = load_occurrences(occurrences, class_names_for_records(ctx.dataset))
    if not any(ctx.dataset[i].location is not None for i in test):
        return {}
    return evaluate_geo(ctx.dataset, ctx.features["image"], occurrences, train, test, seed=ctx.seed,
                        quick=ctx.quick)
