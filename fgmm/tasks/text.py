"""Image+text tasks on the one model: fused recognition and cross-media retrieval.

Protocol (the same for CUB and the demo): the *captioned* samples are those with an image and at
least one text. The text tasks work on an explicit class set, ``ctx.text_classes`` (CUB: the 50
contract caption classes of DESIGN.md; default: every class with a captioned training sample).
Models are :class:`fgmm.FGModel` presets on frozen image features and MiniLM text features
(through ``ctx.cache``), trained with :class:`fgmm.train.Trainer` on the captioned training images
and their captions (class-aware contrastive loss plus cross-entropy); nothing is tuned on the
test split. Accuracies are overall top-1 over the test images.

* ``text``: ``image_top1_50`` — the same configuration trained **without** text (image modality only),
  the image-only baseline; ``fused_top1_50`` — preset ``"image-text"`` with each test image's own
  captions (the renormalised mean of their embeddings) fused in; ``fused_top1_50_product`` — preset
  ``"image-text-product"`` (closed form: the image's and the text's own nearest class means multiplied,
  :class:`~fgmm.space.modality_prior.ClassMeansPrior`). Over every class with captions (CUB: all 200),
  against ``image_top1``: ``fused_top1`` — the product model with the captions' hashed word n-grams as the
  text expert (preset ``"image-text-ngrams"``, :mod:`fgmm.encoders.ngrams`), ``fused_top1_minilm`` — the
  same with MiniLM sentence embeddings (``"image-text-product"``), ``fused_top1_joint`` — the
  ``"image-text"`` model. The product over the joint model, and then word n-grams (shrinkage 3) over
  MiniLM, were each chosen on an inner validation split of the training images (CUB, seed 0: 77.1% vs
  72.0% image only; on object-zoom features 80.1% vs 78.7% with MiniLM, ``benchmarks/text_expert.py``).
* ``text_tuned``: ``fused_top1_tuned`` — the MiniLM product model of every captioned class
  (``fused_top1_minilm``'s) with the test captions encoded by a copy of the text tower fine-tuned towards
  the model's own text expert (:func:`tuned_product_texts`, recipe :data:`PRODUCT_TOWER_TUNING`); a
  separate task because the tuning takes minutes on a CPU.
* ``retrieval`` (the ``"image-text"`` model of ``text_classes``), over the held-out captioned images,
  ranked by the model's class-aware match (:meth:`fgmm.FGModel.match_scores`: the log-probability that
  image and text show the same class plus their joint-embedding cosine; ``*_mAP_caption_cosine``: the
  cosine alone):

  - ``*_caption`` keys (``i2t_R@1_caption``, ..., ``t2i_mAP_caption``; the headline retrieval figures,
    "per caption, 50 classes" on CUB): **each caption a separate item** (CUB: 10 per image).
    Instance level: an image's relevant items are its own captions, a caption's its own image;
    class level (mAP): relevant = same class, FG-XMedia style;
  - contract keys ``i2t_R@K``, ``t2i_R@K`` (K = 1, 5, 10), ``i2t_mAP``, ``t2i_mAP`` (plus ``*_medR``):
    **one text item per image**, its captions pooled (Reed et al.'s per-image description);
  - ``*_mAP_caption_tuned``, ``*_R@1_caption_tuned``: the per-caption keys after fine-tuning the text
    tower (MiniLM's top layers and the model's text projection, :func:`fgmm.kgtext.tune_text_tower`) on
    every training caption of the class set towards the trained model's class embeddings
    (:data:`TOWER_TUNING`); the test captions are encoded again by the tuned tower.

  For orientation only: FGCrossNet reported image->text 0.210 / text->image 0.255 mAP on PKU
  FG-XMedia, a different dataset (other classes, web texts), so those figures are not comparable.
"""

from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fgmm.encoders import create_encoder
from fgmm.encoders.text import TextEncoder
from fgmm.errors import DataError
from fgmm.kgtext import tune_text_tower
from fgmm.retrieval.metrics import retrieval_metrics
from fgmm.space import ModalityTable, model_config
from fgmm.space.features import featurize_texts
from fgmm.tasks import TASKS, TaskContext
from fgmm.train import TrainConfig

MAX_TEXTS = 10
"""Training pools a random 1..10 of an image's captions per step (a different subset each epoch), so
the text head sees both single captions and whole descriptions (+5-9 points of fused top-1 over
single captions on a validation split, at a cost of ~3 points of per-caption mAP)."""


@dataclass(frozen=True)
class TowerTuning:
    """Fine-tuning recipe of the text tower (:func:`fgmm.kgtext.tune_text_tower`) in the ``retrieval`` task.

    Attributes:
        epochs: passes over the training captions, ``batch_size`` single captions per step.
        quick_steps: the step limit in ``quick`` mode (the demo).
        lr: AdamW learning rate, cosine schedule over the run after ``warmup_steps``.
        layers: top transformer layers trained (``None``: all).
        documents: train on each training image's captions as one document (a random 1..:data:`MAX_TEXTS`
            of them pooled per draw, the way the fused keys pool them) instead of on single captions.
    """

    epochs: int = 1
    quick_steps: int = 10
    batch_size: int = 32
    lr: float = 3e-5
    warmup_steps: int = 50
    layers: int | None = 2
    documents: bool = False


TOWER_TUNING = TowerTuning()
"""Chosen on the validation split of :func:`text_recipe` (CUB, seed 0): one pass over the 50 classes'
9.5k training captions (about 300 steps), top 2 layers, lr 3e-5 raised per-caption mAP there from
0.271 / 0.378 to 0.288 / 0.390 (benchmarks/README.md)."""

PRODUCT_TOWER_TUNING = TowerTuning()
"""The recipe of :func:`tuned_product_texts` (``fused_top1_tuned``), chosen on the validation split of
:func:`text_recipe` (CUB, seed 0, 200 classes; fused top-1 with the frozen tower 76.9): single captions, one
pass (about 1,200 steps), top 2 layers, lr 3e-5 gave 78.0; all layers 76.5; documents (``documents=True``)
for three passes 77.4 (a scratch validation run, not a committed result; the three-seed test figures are in
benchmarks/README.md)."""


@dataclass
class TextRun:
    """An image+text model trained on a class set's captioned training samples.

    Attributes:
        model: the trained :class:`fgmm.FGModel` (eval mode), whose classes are ``classes`` (local labels).
        classes: global label of each of the model's classes.
        train, test: dataset indices of the captioned training / held-out samples.
        text: the text table of every dataset sample.
    """

    model: object
    classes: list[int]
    train: np.ndarray
    test: np.ndarray
    text: ModalityTable

    def local_labels(self, ctx: TaskContext, indices: np.ndarray) -> torch.Tensor:
        """Labels of dataset samples ``indices`` as indices into :attr:`classes`."""
        position = {label: i for i, label in enumerate(self.classes)}
        return torch.tensor([position[int(label)] for label in ctx.labels(indices)])

    def test_texts(self) -> ModalityTable:
        """The text table of the held-out samples (row ``k``: ``test[k]``)."""
        return self.text.subset(self.test)


def text_table(ctx: TaskContext, model: str | None = None) -> ModalityTable:
    """Features of every text of every sample (through ``ctx.cache``), made once per context and text model.

    ``model``: a text model name of :func:`fgmm.create_encoder` (e.g. ``"word-ngrams"``); ``None``: the
    context's text encoder, ``ctx.shared["text_encoder"]`` (made once: MiniLM)."""
    key = "text_table" if model is None else f"text_table:{model}"
    if key not in ctx.shared:
        if model is None and "text_encoder" not in ctx.shared:
            ctx.shared["text_encoder"] = create_encoder("text", device=ctx.device)
        encoder = ctx.shared["text_encoder"] if model is None else create_encoder("text", model, device=ctx.device)
        ctx.shared[key] = featurize_texts(encoder, ctx.dataset.samples, ctx.cache)
    return ctx.shared[key]


def captioned(ctx: TaskContext, part: str, classes: list[int] | None = None) -> np.ndarray:
    """Indices of the samples of split ``part`` with a known label, an image and a text (of ``classes``)."""
    wanted = None if classes is None else set(classes)
    return np.array([i for i in ctx.indices(part)
                     if ctx.dataset[i].texts and ctx.dataset[i].image is not None and ctx.dataset[i].label >= 0
                     and (wanted is None or ctx.dataset[i].label in wanted)], dtype=np.int64)


def text_recipe(ctx: TaskContext, name: str, n_train: int):
    """The fixed training recipe of the image+text models.

    Chosen on a validation split (a seeded 20% of the *training* images) of the caption classes, never
    on the test split; epochs, learning rate, loss weights, temperature and dropout changed the
    validation metrics by about one point, ``MAX_TEXTS`` by several.
    """
    return ctx.train_config(name, n_train, epochs=40 if ctx.quick else 80, batch_size=min(128, n_train),
                            drop_last=n_train > 128)


def untrained_run(ctx: TaskContext, preset: str, classes: list[int] | None) -> TextRun:
    """A :class:`TextRun` of the untrained ``preset`` on the captioned samples of ``classes`` (``None``:
    every captioned class)."""
    train = captioned(ctx, "train", classes)
    if len(train) == 0:
        raise DataError(ctx.dataset.root, "no training sample has both an image and a text: the text and "
                                          "retrieval tasks need captioned training images")
    local_classes = sorted({int(label) for label in ctx.labels(train)})
    test = captioned(ctx, "test", local_classes)
    if len(test) == 0:
        raise DataError(ctx.dataset.root, "no held-out captioned image of a class seen in training")
    table = text_table(ctx, model_config(preset).modalities["text"].encoder)
    model = ctx.model(preset, class_names=[ctx.dataset.class_names[c] for c in local_classes],
                      dims={"text": table.dim})
    return TextRun(model, local_classes, train, test, table)


def captioned_classes(ctx: TaskContext) -> list[int]:
    """Every class (global label) with a captioned training sample, sorted."""
    return sorted({int(ctx.dataset.labels[i]) for i in captioned(ctx, "train")})


def product_run(ctx: TaskContext, classes: list[int] | None, preset: str = "image-text-product") -> TextRun:
    """A product-of-experts ``preset`` (closed form: ``"image-text-product"``, MiniLM, or ``"image-text-ngrams"``,
    word n-grams) fitted (once per context, preset and class set) on the captioned training samples of
    ``classes``."""
    key = ("product_run", preset, None if classes is None else tuple(classes))
    if key in ctx.shared:
        return ctx.shared[key]
    run = untrained_run(ctx, preset, classes)
    tables = {"image": ModalityTable.one_per_sample(ctx.features["image"][run.train]),
              "text": run.text.subset(run.train)}
    run.model.fit_features(tables, run.local_labels(ctx, run.train))
    ctx.shared[key] = run
    return run


def text_run(ctx: TaskContext, classes: list[int] | None = None, with_text: bool = True) -> TextRun:
    """Train (once per context and arguments) the ``"image-text"`` model on the captioned training samples of
    ``classes`` (default: ``ctx.text_classes``, else every captioned class); ``with_text=False`` trains the
    same configuration on the images alone."""
    classes = classes if classes is not None else ctx.text_classes
    key = ("text_run", None if classes is None else tuple(classes), with_text)
    if key in ctx.shared:
        return ctx.shared[key]
    run = untrained_run(ctx, "image-text", classes)
    train, local_classes = run.train, run.classes
    tables = {"image": ModalityTable.one_per_sample(ctx.features["image"][train])}
    if with_text:
        tables["text"] = run.text.subset(train)
    name = f"text-{len(local_classes)}{'' if with_text else '-image-only'}"
    with text_recipe(ctx, name, len(train)) as recipe:
        result = run.model.fit_features(tables, run.local_labels(ctx, train), train=recipe)
    if with_text and classes == ctx.text_classes:
        ctx.shared["training_history"] = ("image+text model", result.history)
    ctx.shared[key] = run
    return run


def _fused_top1(run: TextRun, ctx: TaskContext, texts: ModalityTable | None) -> float:
    """Top-1 of ``run.model`` on its test images, each with its own ``texts`` (a table over ``run.test``;
    ``None``: images only)."""
    features = {"image": ctx.features["image"][run.test]}
    if texts is not None:
        features["text"] = texts.pooled()
    predictions = run.model.logits(features).argmax(1)
    return float((predictions == run.local_labels(ctx, run.test)).float().mean())


@TASKS.register("text")
def text_task(ctx: TaskContext) -> dict[str, float]:
    metrics = {"image_top1_50": _fused_top1(text_run(ctx, with_text=False), ctx, None)}
    runs = {"fused_top1_50": text_run(ctx), "fused_top1_50_product": product_run(ctx, ctx.text_classes)}
    for key, run in runs.items():
        metrics[key] = _fused_top1(run, ctx, run.test_texts())
    every = captioned_classes(ctx)
    if ctx.text_classes is not None and set(every) != set(ctx.text_classes):
        runs = {"fused_top1": product_run(ctx, every, "image-text-ngrams"),
                "fused_top1_minilm": product_run(ctx, every), "fused_top1_joint": text_run(ctx, classes=every)}
        metrics.update({key: _fused_top1(run, ctx, run.test_texts()) for key, run in runs.items()})
    return metrics


@TASKS.register("text_tuned")
def text_tuned_task(ctx: TaskContext) -> dict[str, float]:
    product = product_run(ctx, captioned_classes(ctx))  # MiniLM: the tower that can be tuned
    tuned = tuned_product_texts(ctx, product)
    return {} if tuned is None else {"fused_top1_tuned": _fused_top1(product, ctx, tuned)}


def _both_directions(scores: torch.Tensor, own: torch.Tensor, image_labels: torch.Tensor,
                     text_labels: torch.Tensor, suffix: str) -> dict[str, float]:
    """``i2t_<metric><suffix>`` and ``t2i_<metric><suffix>`` of ``[images, texts]`` scores."""
    metrics = {}
    for direction, (s, relevant, q, g) in {"i2t": (scores, own, image_labels, text_labels),
                                           "t2i": (scores.T, own.T, text_labels, image_labels)}.items():
        metrics.update({f"{direction}_{k}{suffix}": v for k, v in retrieval_metrics(s, relevant, q, g).items()})
    return metrics


def _training_texts(ctx: TaskContext, run: TextRun, documents: bool) -> tuple[list, list[int]]:
    """``run``'s training texts with their samples' local labels: every caption on its own, or (``documents``)
    each sample's captions as one document."""
    texts, labels = [], []
    for i, label in zip(run.train, run.local_labels(ctx, run.train).tolist(), strict=True):
        captions = list(ctx.dataset[i].texts)
        texts += [captions] if documents else captions
        labels += [label] * (1 if documents else len(captions))
    return texts, labels


def _tuned_tower_copy(ctx: TaskContext, run: TextRun, projection: torch.nn.Module, class_embeddings: torch.Tensor,
                      scale: float, tuning: TowerTuning, train_projection: bool) -> TextEncoder | None:
    """A copy of the context's text tower fine-tuned (:func:`fgmm.kgtext.tune_text_tower`) on ``run``'s training
    captions towards fixed ``class_embeddings`` through ``projection``; ``None`` when the context's text
    features come from something that is not a trainable :class:`~fgmm.encoders.text.TextEncoder`."""
    base = ctx.shared.get("text_encoder")
    if not isinstance(base, TextEncoder):
        return None
    texts, labels = _training_texts(ctx, run, tuning.documents)
    encoder = copy.deepcopy(base).to(ctx.device)
    with tempfile.TemporaryDirectory(prefix="fgmm-tower-") as tmp:
        config = TrainConfig(epochs=tuning.epochs, batch_size=min(tuning.batch_size, len(texts)), lr=tuning.lr,
                             weight_decay=0.01, scheduler="cosine", warmup_steps=tuning.warmup_steps,
                             seed=ctx.seed, out_dir=Path(tmp), progress=False, log_every_steps=10_000,
                             max_steps=tuning.quick_steps if ctx.quick else None, device=ctx.device)
        tune_text_tower(encoder, projection, class_embeddings, scale, texts, labels, config,
                        train_layers=tuning.layers, train_projection=train_projection, max_texts=MAX_TEXTS)
    return encoder


def _encode_texts(ctx: TaskContext, encoder: TextEncoder, indices: np.ndarray) -> ModalityTable:
    """``encoder``'s features of every text of the samples at ``indices`` (row ``k`` of the table: ``indices[k]``)."""
    texts = [list(ctx.dataset[i].texts) for i in indices]
    with torch.no_grad():
        features = encoder.to(ctx.device).encode([t for sample in texts for t in sample]).float().cpu()
    ends = np.cumsum([len(sample) for sample in texts])
    return ModalityTable(features, [list(range(end - len(s), end)) for s, end in zip(texts, ends, strict=True)])


def tuned_tower(ctx: TaskContext, run: TextRun, tuning: TowerTuning = TOWER_TUNING
                ) -> tuple[object, torch.Tensor, torch.Tensor] | None:
    """A copy of ``run.model`` whose text projection was fine-tuned with a copy of the context's text tower
    on every training caption of ``run`` (one ``(caption, class)`` item each), and the tuned tower's features
    of the test captions: ``(model, features [Q, d], owner [Q])`` with ``owner`` the position in
    ``run.test``; ``None`` when the context's text features come from something that is not a trainable
    :class:`~fgmm.encoders.text.TextEncoder`."""
    model = copy.deepcopy(run.model)
    with torch.no_grad():
        weights, scale = model.class_embeddings(), float(model.scorer.scale)
    encoder = _tuned_tower_copy(ctx, run, model.projections["text"], weights, scale, tuning, train_projection=True)
    if encoder is None:
        return None
    model.eval()
    features, owner = _encode_texts(ctx, encoder, run.test).expand()
    return model, features, owner


def tuned_product_texts(ctx: TaskContext, run: TextRun, tuning: TowerTuning = PRODUCT_TOWER_TUNING
                        ) -> ModalityTable | None:
    """The test texts of a product run (:func:`product_run`) encoded by a copy of the context's text tower
    fine-tuned towards the run's own text expert: its whitening (fixed) as the projection, its class means as
    the class embeddings and its calibrated scale (:class:`~fgmm.space.modality_prior.ClassMeansPrior`), so
    the tuned features plug into the fitted model unchanged. Row ``k``: ``run.test[k]``; ``None`` as in
    :func:`tuned_tower`."""
    expert = copy.deepcopy(run.model.priors["text"])
    encoder = _tuned_tower_copy(ctx, run, expert.whitening, expert.means, float(expert.log_scale.exp()), tuning,
                                train_projection=False)
    return None if encoder is None else _encode_texts(ctx, encoder, run.test)


@TASKS.register("retrieval")
def retrieval_task(ctx: TaskContext) -> dict[str, float]:
    run = text_run(ctx)
    model = run.model
    test_text = run.test_texts()
    captions, owner = test_text.expand()
    images = model.retrieval_keys("image", ctx.features["image"][run.test])
    documents = model.retrieval_keys("text", test_text.pooled())
    each = model.retrieval_keys("text", captions)
    labels = ctx.labels(run.test)
    own = torch.eye(len(run.test), dtype=torch.bool)
    metrics = _both_directions(model.match_scores(images, documents), own, labels, labels, "")
    own = owner[None, :] == torch.arange(len(run.test))[:, None]
    metrics.update(_both_directions(model.match_scores(images, each), own, labels, labels[owner], "_caption"))
    cosine = _both_directions(images.embeddings @ each.embeddings.T, own, labels, labels[owner], "_caption_cosine")
    metrics.update({k: v for k, v in cosine.items() if "_mAP_" in k})
    tuning = tuned_tower(ctx, run)
    if tuning is None:
        return metrics
    tuned, features, tuned_owner = tuning
    own = tuned_owner[None, :] == torch.arange(len(run.test))[:, None]
    scores = tuned.match_scores(tuned.retrieval_keys("image", ctx.features["image"][run.test]),
                                tuned.retrieval_keys("text", features))
    tuned_metrics = _both_directions(scores, own, labels, labels[tuned_owner], "_caption_tuned")
    metrics.update({k: v for k, v in tuned_metrics.items() if "_mAP_" in k or "_R@1_" in k})
    return metrics
