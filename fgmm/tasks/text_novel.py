r"""``text_novel``: text→image retrieval for classes whose captions were never seen in training.

A birder types what they saw and expects photos of that species, also when nobody captioned it.
Protocol (benchmark keys ``t2i_mAP_novel``, ``t2i_R@5_novel``):

* **Novel classes**: a fixed, seeded choice of :data:`NOVEL_FRACTION` of the classes that have
  captioned training images (CUB: 40 of 200), :data:`PREFERRED_FRACTION` of them (CUB: 10) drawn from
  the contract's 50 caption classes (:func:`novel_classes`). Their captions are withheld from
  training; their images are not (every class is recognised from images).
* **Training**: the training images of all classes, paired with their captions (classes not novel),
  train the one model, :class:`fgmm.FGModel` of preset ``"image-text-attributes"``: class embeddings
  are a learned map of the knowledge graph's attribute strengths
  (:class:`fgmm.space.class_sources.AttributeClassEmbeddings`), so what the captions of some classes
  teach the text side about attributes reaches the classes without captions. The text view competes
  only among the classes with captions (objective ``view_classes="own"``) and the model calibrates
  a text offset :math:`\gamma_{text}` on its training data (:func:`fgmm.space.fitting.calibrate_modality_gamma`).
  ``NovelTextRecipe.class_texts`` also trains on the knowledge-graph descriptions of every class
  (:mod:`fgmm.kg.describe`) and pseudo-captions of the novel classes (:mod:`fgmm.kg.augment`); the
  text tower may be fine-tuned towards the class embeddings (:func:`fgmm.kgtext.tune_text_tower`).
  With ``ctx.out_dir`` the model is saved for serving (:func:`fgmm.kgtext.save_served_model`:
  ``out_dir/text_novel/served``, for ``fgmm index build --model``). The recipe
  (:class:`NovelTextRecipe`) was chosen on a validation protocol built from the training images
  only (the same novel classes, a 20% inner holdout of the training images as queries and gallery:
  ``benchmarks/text_novel.py --validation``).
* **Evaluation**: the captions of each test image of a novel class, pooled (the renormalised mean of
  their features, as the ``retrieval`` task pools them), are one query (``*_caption`` keys: each
  caption its own query); the gallery is all test images of all classes, ranked by the model's
  class-aware match (:meth:`fgmm.FGModel.match_scores`; ``*_cosine`` keys: the joint-embedding cosine
  alone). ``t2i_mAP_novel``: class-level mAP (relevant = same class);
  ``t2i_R@5_novel``: the share of queries with an image of the right class among the top 5 (also
  ``R@1``, ``R@10``). The same model's figures with the captions of the other classes' test images as
  queries are ``t2i_*_captioned``, so a loss there is visible; ``t2c_top1_novel`` is text-only
  zero-shot (the most probable class of a novel query's text alone). Keys ending ``_desc`` /
  ``_nodesc``: the recipe with the other ``class_texts`` choice (what training on descriptions brings).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fgmm.data.cub import CUB_CAPTION_CLASS_IDS
from fgmm.encoders import create_encoder
from fgmm.encoders.text import TextEncoder
from fgmm.errors import DataError
from fgmm.kg.augment import pseudo_captions
from fgmm.kg.datasets import dataset_kg
from fgmm.kg.describe import ClassDescription, DescribeConfig, Describer
from fgmm.kg.graph import KnowledgeGraph
from fgmm.kgtext import save_served_model, tune_text_tower
from fgmm.retrieval.metrics import retrieval_metrics
from fgmm.space import FGModel, ModalityTable, create_model
from fgmm.space.features import featurize_texts
from fgmm.space.matching import RetrievalKeys
from fgmm.tasks import TASKS, TaskContext
from fgmm.train import TrainConfig

NOVEL_FRACTION = 0.2
"""Share of the captioned classes whose captions are withheld."""
PREFERRED_FRACTION = 0.25
"""Share of the novel classes drawn from the preferred classes (CUB: the contract's 50 caption classes)."""
NOVEL_SEED = 0
"""Seed of the choice of novel classes (fixed: the list is part of the benchmark)."""


def choose_novel_classes(candidates: list[int], preferred: list[int], n_novel: int, n_preferred: int,
                         seed: int = NOVEL_SEED) -> list[int]:
    """``n_preferred`` classes drawn from ``preferred ∩ candidates`` and the rest from the other candidates.

    A pure function of its arguments (``numpy.random.default_rng(seed)``); returns sorted class indices.
    """
    candidates = sorted(set(candidates))
    preferred = sorted(set(preferred) & set(candidates))
    n_preferred = min(n_preferred, len(preferred), n_novel)
    others = sorted(set(candidates) - set(preferred))
    if n_novel - n_preferred > len(others):
        raise DataError(None, f"cannot choose {n_novel} novel classes among {len(candidates)} candidates")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(preferred, n_preferred, replace=False).tolist() if n_preferred else []
    chosen += rng.choice(others, n_novel - n_preferred, replace=False).tolist() if n_novel > n_preferred else []
    return sorted(int(c) for c in chosen)


def _captioned_training_classes(ctx: TaskContext) -> list[int]:
    return sorted({int(ctx.dataset[i].label) for i in ctx.indices("train")
                   if ctx.dataset[i].label >= 0 and ctx.dataset[i].texts and ctx.dataset[i].image is not None})


def novel_classes(ctx: TaskContext) -> list[int]:
    """The novel classes of ``ctx``: ``ctx.shared["novel_classes"]`` when set, else the seeded choice
    (module docstring); on CUB the preferred classes are the contract's 50 caption classes."""
    if "novel_classes" in ctx.shared:
        return list(ctx.shared["novel_classes"])
    candidates = _captioned_training_classes(ctx)
    if len(candidates) < 2:
        raise DataError(ctx.dataset.root, "text_novel needs at least two classes with captioned training images")
    preferred = [c - 1 for c in CUB_CAPTION_CLASS_IDS] if ctx.dataset.name == "cub200" else []
    n_novel = min(len(candidates) - 1, max(1, round(NOVEL_FRACTION * len(candidates))))
    n_preferred = round(PREFERRED_FRACTION * n_novel) if preferred else 0
    chosen = choose_novel_classes(candidates, preferred, n_novel, n_preferred)
    ctx.shared["novel_classes"] = chosen
    return chosen


def text_encoder(ctx: TaskContext):
    """The frozen text encoder of the context: ``ctx.shared["text_encoder"]`` (made once: MiniLM)."""
    if "text_encoder" not in ctx.shared:
        ctx.shared["text_encoder"] = create_encoder("text", device=ctx.device)
    return ctx.shared["text_encoder"]


def text_features(ctx: TaskContext, texts: list[str]) -> torch.Tensor:
    """Frozen sentence features of ``texts`` through ``ctx.cache``."""
    return text_encoder(ctx).encode_cached(texts, ctx.cache).float().cpu()


def task_kg(ctx: TaskContext) -> KnowledgeGraph:
    """The dataset's RDF knowledge graph: ``ctx.shared["kg"]`` or the dataset's own
    (:func:`fgmm.kg.datasets.dataset_kg`), else one built from its class × attribute matrix."""
    source = ctx.shared.get("kg")
    if isinstance(source, KnowledgeGraph):
        return source
    dataset = ctx.dataset
    own = dataset_kg(dataset)
    if own is not None:
        ctx.shared["kg"] = own
        return own
    if dataset.class_attributes is None or not dataset.attribute_names:
        raise DataError(dataset.root, "text_novel needs a knowledge graph or class attributes to describe classes")
    kg = KnowledgeGraph(title=f"{dataset.name} classes")
    for index, name in enumerate(dataset.class_names):
        kg.add_class(f"class_{index}", label=name, index=index)
    for index, name in enumerate(dataset.attribute_names):
        kg.add_attribute(name, group=name.partition("::")[0], index=index)
    kg.link_many((f"class_{c}", name, float(dataset.class_attributes[c, a]))
                 for c in range(len(dataset.class_names)) for a, name in enumerate(dataset.attribute_names)
                 if 0 < dataset.class_attributes[c, a] <= 1)
    ctx.shared["kg"] = kg
    return kg


def class_order(ctx: TaskContext, kg: KnowledgeGraph) -> list[str]:
    """The graph's class names in label order (CUB: the class folders)."""
    names = ctx.dataset.meta.get("class_folders") or ctx.dataset.class_names
    if all(kg.find("class", n) is not None for n in names):
        return list(names)
    return [f"class_{i}" for i in range(len(names))]


@dataclass
class NovelTextRecipe:
    r"""The fixed recipe of ``text_novel`` (chosen on the validation protocol of the module docstring).

    Attributes:
        describe: description rules and number of variants.
        pseudo_captions: pseudo-captions (:mod:`fgmm.kg.augment`) made for each class without captions.
        pseudo_neighbours: the most similar captioned classes they are rewritten from.
        caption_repeats: a captioned training image's captions are listed this many times next to its
            class's texts, so that they make up most of its draws (about 85% at 6 with CUB's 10 captions
            and 11 descriptions) -- as pseudo-captions do for classes without captions.
        max_texts: a draw pools a random 1..``max_texts`` of an image's texts (a document, like the
            pooled captions of a test image; :class:`fgmm.space.features.SampleFeatures`).
        epochs, lr: of the joint space on cached features; small datasets train for more epochs, at
            least ``min_steps`` optimizer steps.
        preset: the :class:`fgmm.FGModel` preset; ``contrastive_weight``, ``residual`` (of the
            ``"attributes"`` source), ``dim`` and ``view_classes`` (of the objective: ``"own"`` lets the
            text view compete only among the classes with captions, so the classes without any are not
            pushed away from text; the model then calibrates a text offset :math:`\gamma_{text}`) override it.
        class_texts: train on the knowledge-graph descriptions and pseudo-captions too (``False``: the
            knowledge graph enters through the attribute class embeddings only, which the text of the
            captioned classes is trained against).
        tune_steps: text-tower fine-tuning steps (0: the tower stays frozen).
        tune_lr, tune_batch, tune_layers: fine-tuning learning rate, sentences per step, top layers trained.
        class_text_repeats: how often each class text (description, pseudo-caption) appears among the
            fine-tuning sentences.
    """

    describe: DescribeConfig = field(default_factory=DescribeConfig)
    pseudo_captions: int = 100
    pseudo_neighbours: int = 10
    caption_repeats: int = 6
    max_texts: int = 10
    epochs: int = 25
    min_steps: int = 400
    lr: float = 1e-3
    preset: str = "image-text-attributes"
    contrastive_weight: float = 1.0
    residual: bool = True
    dim: int = 256
    view_classes: str = "own"
    class_texts: bool = False
    tune_steps: int = 0
    tune_lr: float = 3e-5
    tune_batch: int = 32
    tune_layers: int | None = 2
    class_text_repeats: int = 1


@dataclass
class NovelTextData:
    """What every run on one context shares: the class choice, the knowledge graph and its class order,
    the captions (``captions[r]`` for each row ``r`` of ``caption_table``, the frozen features of every
    sample's captions), the describer and its descriptions, the training and test samples (with an
    image and a label)."""

    novel: list[int]
    kg: KnowledgeGraph
    class_order: list[str]
    describer: Describer
    descriptions: list[ClassDescription]
    captions: list[str]
    caption_table: ModalityTable
    train: np.ndarray
    test: np.ndarray

    @property
    def caption_rows(self) -> list[list[int]]:
        """Per dataset sample, the rows of its captions in :attr:`captions`."""
        return self.caption_table.rows

    @property
    def caption_features(self) -> torch.Tensor:
        return self.caption_table.features


@dataclass
class ClassTexts:
    """Texts attached to classes rather than images: descriptions of every class, pseudo-captions of the
    classes without captions; ``owner[k]`` is the class of ``texts[k]``."""

    texts: list[str]
    owner: np.ndarray
    features: torch.Tensor

    def rows(self, label: int, offset: int) -> list[int]:
        return (offset + np.flatnonzero(self.owner == label)).tolist()


def prepare(ctx: TaskContext, recipe: NovelTextRecipe) -> NovelTextData:
    """Novel classes, descriptions, and the frozen features of every caption."""
    novel = novel_classes(ctx)
    kg = task_kg(ctx)
    order = class_order(ctx, kg)
    describer = Describer(kg, recipe.describe, class_order=order)
    if "text_table" not in ctx.shared:  # the same table as the text tasks' (fgmm.tasks.text.text_table)
        ctx.shared["text_table"] = featurize_texts(text_encoder(ctx), ctx.dataset.samples, ctx.cache)
    captions = [t for s in ctx.dataset.samples for t in s.texts]
    labelled = ctx.dataset.labels >= 0
    with_image = np.array([s.image is not None for s in ctx.dataset.samples])
    train, test = ctx.indices("train"), ctx.indices("test")
    return NovelTextData(novel, kg, order, describer, describer.describe_all(), captions, ctx.shared["text_table"],
                         train[labelled[train] & with_image[train]], test[labelled[test] & with_image[test]])


def class_texts(ctx: TaskContext, data: NovelTextData, recipe: NovelTextRecipe, held_out: set[int],
                pseudo: bool = True) -> ClassTexts:
    """Descriptions of every class and (``pseudo``) pseudo-captions of the ``held_out`` classes, rewritten
    from the training captions of the other classes, with their frozen features."""
    texts = [t for d in data.descriptions for t in d.texts()]
    owner = [c for c, d in enumerate(data.descriptions) for _ in d.texts()]
    if pseudo and held_out and recipe.pseudo_captions:
        sources = [(data.captions[r], int(ctx.dataset.labels[i])) for i in data.train
                   if int(ctx.dataset.labels[i]) not in held_out for r in data.caption_rows[i]]
        for c in sorted(held_out):
            made = pseudo_captions(data.describer, data.describer.classes[c], [t for t, _ in sources],
                                   [o for _, o in sources], recipe.pseudo_captions,
                                   neighbours=recipe.pseudo_neighbours, seed=ctx.seed)
            texts += made
            owner += [c] * len(made)
    return ClassTexts(texts, np.asarray(owner), text_features(ctx, texts))


def build_model(ctx: TaskContext, data: NovelTextData, recipe: NovelTextRecipe) -> FGModel:
    """An untrained :class:`fgmm.FGModel` of ``recipe.preset`` over every class of the dataset, its class
    embeddings from ``data.kg`` (in label order), sized for the context's image and text features."""
    image, text = ctx.encoders.get("image"), getattr(text_encoder(ctx), "name", None)
    modalities = {"image": {"input_dim": int(ctx.features["image"].shape[1])} | ({"encoder": image} if image else {}),
                  "text": {"input_dim": data.caption_table.dim, "max_items": recipe.max_texts}
                  | ({"encoder": text} if text else {})}
    return create_model(recipe.preset, classes=ctx.dataset.class_names, kg=data.kg, class_order=data.class_order,
                        seed=ctx.seed, dim=recipe.dim, modalities=modalities,
                        class_embeddings={"options": {"residual": recipe.residual}},
                        objective={"contrastive_weight": recipe.contrastive_weight,
                                   "view_classes": recipe.view_classes})


def train_space(ctx: TaskContext, data: NovelTextData, extra: ClassTexts | None, recipe: NovelTextRecipe,
                held_out: set[int], out_dir: Path) -> FGModel:
    """The model trained on cached features: each training image paired with its captions (classes not in
    ``held_out``) and its class's texts (``extra``: descriptions, pseudo-captions; ``None``: none)."""
    labels = ctx.labels(data.train)
    offset = len(data.caption_features)
    rows = [(data.caption_rows[i] * recipe.caption_repeats if int(y) not in held_out else [])
            + (extra.rows(int(y), offset) if extra is not None else [])
            for i, y in zip(data.train, labels, strict=True)]
    features = data.caption_features if extra is None else torch.cat([data.caption_features, extra.features])
    n = len(data.train)
    batch = min(128, max(16, n // 4))  # small sets: several steps per epoch (one checkpoint per epoch)
    epochs = max(10, recipe.epochs // 2) if ctx.quick else recipe.epochs
    epochs = max(epochs, math.ceil(recipe.min_steps / max(1, n // batch)))
    config = TrainConfig(epochs=epochs, batch_size=min(batch, n), lr=recipe.lr, weight_decay=0.05,
                         scheduler="cosine", warmup_steps=20, seed=ctx.seed, out_dir=out_dir, progress=False,
                         log_every_steps=10_000, drop_last=n > batch, device=ctx.device)
    model = build_model(ctx, data, recipe)
    tables = {"image": ModalityTable.one_per_sample(ctx.features["image"][data.train]),
              "text": ModalityTable(features, rows)}
    model.fit_features(tables, labels, train=config)
    return model.cpu().eval()


def tune_tower(ctx: TaskContext, data: NovelTextData, extra: ClassTexts | None, model: FGModel,
               recipe: NovelTextRecipe, held_out: set[int], out_dir: Path) -> TextEncoder:
    """Fine-tune the text tower (:func:`fgmm.kgtext.tune_text_tower`) and the model's text projection on
    the training captions of the classes not in ``held_out`` and the class texts, towards the model's
    class embeddings; returns the tuned (frozen) encoder."""
    texts, labels = [], []
    for i in data.train:
        y = int(ctx.dataset.labels[i])
        if y not in held_out:
            texts += [data.captions[r] for r in data.caption_rows[i]]
            labels += [y] * len(data.caption_rows[i])
    if extra is not None:
        texts += extra.texts * recipe.class_text_repeats
        labels += extra.owner.tolist() * recipe.class_text_repeats
    encoder = create_encoder("text", frozen=False, device=ctx.device)
    config = TrainConfig(epochs=1, batch_size=recipe.tune_batch, lr=recipe.tune_lr, weight_decay=0.01,
                         scheduler="cosine", warmup_steps=min(100, recipe.tune_steps // 10), seed=ctx.seed,
                         out_dir=out_dir, progress=False, log_every_steps=10_000, max_steps=recipe.tune_steps,
                         device=ctx.device)
    with torch.no_grad():
        weights, scale = model.class_embeddings(), float(model.scorer.scale)
    tune_text_tower(encoder, model.projections["text"], weights, scale, texts, labels, config,
                    train_layers=recipe.tune_layers)
    model.eval()
    return encoder.to(ctx.device)


def fit_text_space(ctx: TaskContext, data: NovelTextData, recipe: NovelTextRecipe, held_out: set[int],
                   out_dir: Path) -> tuple[FGModel, TextEncoder | None]:
    """The whole recipe: class texts (``recipe.class_texts``), the model, then (``recipe.tune_steps`` > 0)
    the tuned text tower."""
    extra = class_texts(ctx, data, recipe, held_out) if recipe.class_texts else None
    model = train_space(ctx, data, extra, recipe, held_out, out_dir / "space")
    if not recipe.tune_steps:
        return model, None
    return model, tune_tower(ctx, data, extra, model, recipe, held_out, out_dir / "tune")


def caption_keys(data: NovelTextData, model: FGModel, encoder: TextEncoder | None,
                 samples: np.ndarray) -> tuple[RetrievalKeys, torch.Tensor, RetrievalKeys]:
    """Retrieval keys (:meth:`fgmm.FGModel.retrieval_keys`) of the captions of ``samples``: ``(each caption,
    owner [Q], pooled per sample)``; pooled = the renormalised mean of a sample's caption features (as the
    ``retrieval`` task pools captions). The features are the cached frozen ones, or the tuned encoder's."""
    table = data.caption_table.subset(samples.tolist())
    features, owner = table.expand()
    if encoder is not None:
        rows = [r for i in samples for r in data.caption_rows[i]]
        with torch.no_grad():
            features = encoder.encode([data.captions[r] for r in rows]).float().cpu()
        table = ModalityTable(features, [(owner == k).nonzero().flatten().tolist() for k in range(len(samples))])
    return model.retrieval_keys("text", features), owner, model.retrieval_keys("text", table.pooled())


def evaluate_text_to_image(scores: torch.Tensor, text_labels: torch.Tensor, image_labels: torch.Tensor
                           ) -> dict[str, float]:
    """Class-level text→image figures of ``[Q, G]`` scores: ``mAP``, ``R@1``, ``R@5``, ``R@10``,
    ``medR`` (rank of the first image of the query's class)."""
    relevant = text_labels[:, None] == image_labels[None, :]
    return retrieval_metrics(scores, relevant, text_labels, image_labels)


def novel_figures(ctx: TaskContext, data: NovelTextData, model: FGModel, encoder: TextEncoder | None,
                  suffix: str = "") -> dict[str, float]:
    """``t2i_*_novel``, ``t2i_*_captioned`` (pooled captions per image), the same with each caption a
    query (``..._caption``) and ``t2c_top1_novel`` of one model (module docstring)."""
    queries = np.array([i for i in data.test if data.caption_rows[i]], dtype=np.int64)
    query_labels = ctx.labels(queries)
    if not bool(torch.isin(query_labels, torch.tensor(data.novel)).any()):
        raise DataError(ctx.dataset.root, "no test image of a novel class has captions: nothing to query")
    captions, owner, pooled = caption_keys(data, model, encoder, queries)
    images = model.retrieval_keys("image", ctx.features["image"][data.test])
    image_labels = ctx.labels(data.test)
    out: dict[str, float] = {}
    for part in ("novel", "captioned"):
        keep = torch.isin(query_labels, torch.tensor(data.novel))
        keep = keep if part == "novel" else ~keep
        if not bool(keep.any()):
            continue
        each = keep[owner]
        for text, labels, tag in ((pooled.select(keep), query_labels[keep], ""),
                                  (captions.select(each), query_labels[owner][each], "_caption")):
            figures = evaluate_text_to_image(model.match_scores(text, images), labels, image_labels)
            out.update({f"t2i_{k}_{part}{tag}{suffix}": v for k, v in figures.items()})
            if not tag:  # the embedding cosine alone (nearest-neighbour search in the joint space)
                cosine = evaluate_text_to_image(text.embeddings @ images.embeddings.T, labels, image_labels)
                out.update({f"t2i_{k}_{part}_cosine{suffix}": cosine[k] for k in ("mAP", "R@5")})
        if part == "novel":
            nearest = pooled.select(keep).posteriors.argmax(1)
            out[f"t2c_top1_novel{suffix}"] = float((nearest == query_labels[keep]).float().mean())
    return out


def _work_dir(ctx: TaskContext, tmp: str) -> Path:
    return ctx.out_dir / "text_novel" if ctx.out_dir else Path(tmp)


@TASKS.register("text_novel")
def text_novel_task(ctx: TaskContext) -> dict[str, Any]:
    """The novel-class protocol (module docstring); the recipe is ``ctx.shared["text_novel_recipe"]`` or
    :class:`NovelTextRecipe`'s defaults. The same recipe with the other ``class_texts`` choice is the
    ablation: keys ending ``_desc`` (trained on the descriptions too) or ``_nodesc`` (without)."""
    recipe = ctx.shared.get("text_novel_recipe") or NovelTextRecipe()
    data = prepare(ctx, recipe)
    held_out = set(data.novel)
    metrics: dict[str, Any] = {"text_novel_classes": data.novel}
    with tempfile.TemporaryDirectory(prefix="fgmm-text-novel-") as tmp:
        out = _work_dir(ctx, tmp)
        other = replace(recipe, class_texts=not recipe.class_texts, tune_steps=0)
        suffix = "_desc" if other.class_texts else "_nodesc"
        ablation, _ = fit_text_space(ctx, data, other, held_out, out / suffix.strip("_"))
        metrics.update({k: v for k, v in novel_figures(ctx, data, ablation, None, suffix).items() if "_novel" in k})
        model, encoder = fit_text_space(ctx, data, recipe, held_out, out / "recipe")
        if encoder is not None:
            metrics.update({k: v for k, v in novel_figures(ctx, data, model, None, "_frozen").items()
                            if "_novel" in k})
        metrics.update(novel_figures(ctx, data, model, encoder))
        served = save_served_model(model, out / "served", encoder) if ctx.out_dir is not None else None
    ctx.shared["text_novel"] = {"model": model, "encoder": encoder, "data": data, "served": served}
    return metrics


def caption_retrieval_keys(ctx: TaskContext, data: NovelTextData, model: FGModel, encoder: TextEncoder | None,
                           classes: list[int], suffix: str) -> dict[str, float]:
    """The ``retrieval`` task's keys (:mod:`fgmm.tasks.text`) for the test images of ``classes``:
    pooled captions per image (``i2t_*``, ``t2i_*``) and each caption its own item (``*_caption``),
    instance-level R@K and class-level mAP, each key ending in ``suffix``."""
    test = data.test[np.isin(ctx.dataset.labels[data.test], classes)]
    test = np.array([i for i in test if data.caption_rows[i]], dtype=np.int64)
    captions, owner, documents = caption_keys(data, model, encoder, test)
    images = model.retrieval_keys("image", ctx.features["image"][test])
    labels = ctx.labels(test)
    own = torch.eye(len(test), dtype=torch.bool)
    out: dict[str, float] = {}
    for texts, relevant, text_labels, tag in ((documents, own, labels, ""),
                                              (captions, owner[None, :] == torch.arange(len(test))[:, None],
                                               labels[owner], "_caption")):
        scores = model.match_scores(images, texts)
        for direction, (s, r, q, g) in {"i2t": (scores, relevant, labels, text_labels),
                                        "t2i": (scores.T, relevant.T, text_labels, labels)}.items():
            out.update({f"{direction}_{k}{tag}{suffix}": v for k, v in retrieval_metrics(s, r, q, g).items()})
    return out


@TASKS.register("text_described")
def text_described_task(ctx: TaskContext) -> dict[str, Any]:
    """The same recipe with no class held out (every caption and every description), scored with the
    ``retrieval`` task's caption keys on the caption classes (CUB: the contract's 50; else every class),
    suffixed ``_kgtext``: the check that knowledge-graph text costs nothing where captions exist."""
    recipe = ctx.shared.get("text_novel_recipe") or NovelTextRecipe()
    data = prepare(ctx, recipe)
    caption_classes = ([c - 1 for c in CUB_CAPTION_CLASS_IDS] if ctx.dataset.name == "cub200"
                       else list(range(ctx.dataset.num_classes)))
    with tempfile.TemporaryDirectory(prefix="fgmm-text-described-") as tmp:
        model, encoder = fit_text_space(ctx, data, recipe, set(), _work_dir(ctx, tmp) / "all-captions")
    return caption_retrieval_keys(ctx, data, model, encoder, caption_classes, "_kgtext")
