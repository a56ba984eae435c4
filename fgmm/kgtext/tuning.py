r"""Fine-tuning the text tower towards the class embeddings of a trained :class:`fgmm.FGModel`.

.. math::
    \mathcal{L}(\theta, \phi) = \mathrm{CE}\big(s\, P^{\phi}_{txt}(e_\theta(t))^\top W,\; y\big)

with :math:`e_\theta` the sentence encoder (all-MiniLM-L6-v2 by default; its top ``train_layers``
transformer layers trained, the rest frozen), :math:`P^{\phi}_{txt}` the model's text projection
(``model.projections["text"]``), and :math:`W` (``[C, d]``, ``model.class_embeddings()``) and :math:`s`
(``model.scorer.scale``) the model's class embeddings and cosine scale, held fixed: the
image side and the class geometry stay as trained, only the way sentences reach them changes.
Training items are sentences with their class (captions of the captioned classes and the
knowledge-graph descriptions of every class, so caption and description style meet in the tower
itself rather than only after a frozen encoder) or *documents* :math:`D` (an image's captions), whose
embedding in the loss is that of a random subset :math:`D' \subseteq D` of 1..``max_texts`` sentences,
drawn anew on every access: :math:`e_\theta(D') = \frac{\sum_{t \in D'} e_\theta(t)}{\lVert
\sum_{t \in D'} e_\theta(t) \rVert}`, the way a sample's texts are pooled at test time.
Runs on :class:`fgmm.train.Trainer`; on CPU a few thousand steps of 32 short sentences take minutes.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from fgmm.encoders.text import TextEncoder
from fgmm.errors import ConfigError, FgmmError
from fgmm.train import TrainConfig, Trainer, TrainResult


class SentenceItems(Dataset):
    """``{"texts": [str, ...], "label": int}`` items of parallel lists of texts and class labels.

    An item's text is a sentence or a *document* (a sequence of sentences, e.g. an image's ten captions);
    each access to a document draws a random 1..``max_texts`` of its sentences (Python's RNG, which the
    :class:`~fgmm.train.Trainer` seeds), whose embeddings the objective pools as the renormalised mean, the
    way :meth:`fgmm.space.ModalityTable.pooled` pools them at test time.
    """

    def __init__(self, texts: Sequence[str | Sequence[str]], labels: Sequence[int], max_texts: int = 10):
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        if max_texts < 1:
            raise ConfigError(f"max_texts must be >= 1, got {max_texts}")
        self.texts = [[t] if isinstance(t, str) else list(t) for t in texts]
        if not all(self.texts):
            raise ConfigError("a training document has no sentence")
        self.labels, self.max_texts = [int(y) for y in labels], max_texts

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sentences = self.texts[index]
        if len(sentences) > 1:
            sentences = random.sample(sentences, random.randint(1, min(len(sentences), self.max_texts)))
        return {"texts": sentences, "label": self.labels[index]}


class TokenCollate:
    """Batches :class:`SentenceItems` as ``{"text.<token field>": [S, L], "owner": [S], "label": [B]}``, the
    ``S`` sentences of the ``B`` items flattened and ``owner`` the item of each (picklable)."""

    def __init__(self, encoder: TextEncoder):
        self.tokenizer = encoder.backbone.tokenizer
        self.max_length = encoder.backbone.max_length

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sentences = [text for item in items for text in item["texts"]]
        tokens = self.tokenizer(sentences, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        batch = {f"text.{k}": v for k, v in tokens.items()}
        batch["owner"] = torch.tensor([k for k, item in enumerate(items) for _ in item["texts"]])
        batch["label"] = torch.tensor([item["label"] for item in items])
        return batch


def train_top_layers(encoder: TextEncoder, layers: int | None) -> None:
    """Unfreeze only the top ``layers`` transformer layers of a sentence-transformers encoder (``None``: all)."""
    encoder.unfreeze()
    if layers is None:
        return
    transformer = getattr(encoder.backbone, "model", None)
    auto = getattr(transformer[0], "auto_model", None) if transformer is not None else None
    stack = getattr(getattr(auto, "encoder", None), "layer", None)
    if stack is None:
        raise ConfigError(f"cannot find the transformer layers of text encoder '{encoder.name}' to train only the top "
                          f"{layers}; use train_layers=None")
    for p in encoder.parameters():
        p.requires_grad_(False)
    for layer in list(stack)[len(stack) - layers:]:
        for p in layer.parameters():
            p.requires_grad_(True)


def pool_documents(embeddings: torch.Tensor, owner: torch.Tensor) -> torch.Tensor:
    """``[B, d]``: the renormalised mean of the sentence ``embeddings`` ``[S, d]`` of each item (``owner``
    ``[S]``, sorted item indices); an item of one sentence keeps its embedding unchanged."""
    counts = torch.bincount(owner)
    sums = embeddings.new_zeros(len(counts), embeddings.shape[1]).index_add(0, owner, embeddings)
    return torch.where((counts > 1)[:, None], F.normalize(sums, dim=-1), sums)


class TextTowerObjective(nn.Module):
    """The loss of the module docstring: encoder + text projection against fixed class embeddings.

    Args:
        encoder: an unfrozen :class:`~fgmm.encoders.text.TextEncoder`.
        projection: the model's text projection (trained unless ``train_projection`` is false).
        class_embeddings: ``[C, d]`` fixed :math:`W`.
        scale: fixed :math:`s`.
    """

    def __init__(self, encoder: TextEncoder, projection: nn.Module, class_embeddings: torch.Tensor, scale: float,
                 train_projection: bool = True):
        super().__init__()
        self.encoder, self.projection = encoder, projection
        self.register_buffer("class_embeddings", F.normalize(class_embeddings.detach().float(), dim=-1))
        self.scale = float(scale)
        for p in projection.parameters():
            p.requires_grad_(train_projection)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        tokens = {k.split(".", 1)[1]: v for k, v in batch.items() if k.startswith("text.")}
        z = self.projection(pool_documents(self.encoder(**tokens), batch["owner"]))
        logits = self.scale * z @ self.class_embeddings.T
        out = {"logits": logits}
        if "label" in batch:
            out["loss"] = F.cross_entropy(logits, batch["label"])
        return out


def tune_text_tower(encoder: TextEncoder, projection: nn.Module, class_embeddings: torch.Tensor, scale: float,
                    texts: Sequence[str | Sequence[str]], labels: Sequence[int], train_config: TrainConfig, *,
                    train_layers: int | None = 2, train_projection: bool = True, max_texts: int = 10
                    ) -> TrainResult:
    """Fine-tune ``encoder`` (in place, frozen again afterwards) and ``projection`` on (text, class) pairs.

    Args:
        encoder: the text encoder the model's text features came from.
        projection: the model's text projection (``model.projections["text"]``), updated in place.
        class_embeddings, scale: the model's :math:`W` and :math:`s`, held fixed.
        texts, labels: the training texts and their classes; a text is a sentence or a document (a sequence
            of sentences, pooled from a random 1..``max_texts`` of them per draw, :class:`SentenceItems`).
        train_config: the Trainer's recipe (``max_steps`` bounds the run; ``lr`` ~ 2e-5 for the encoder).
        train_layers: how many top transformer layers train (``None``: all).
        train_projection: also train the projection.

    Returns:
        The Trainer's result. ``encoder.fingerprint()`` changes, so its features never mix with the
        frozen encoder's in a feature cache.

    Raises:
        FgmmError: the run diverged (a weight is no longer finite); the encoder is frozen again but unusable.
    """
    train_top_layers(encoder, train_layers)
    objective = TextTowerObjective(encoder, projection, class_embeddings, scale, train_projection)
    try:
        result = Trainer(objective, train_config, SentenceItems(texts, labels, max_texts),
                         collate_fn=TokenCollate(encoder)).fit(resume=False)
        broken = [name for name, p in objective.named_parameters() if not torch.isfinite(p).all()]
        if broken:
            raise FgmmError(f"fine-tuning the text tower diverged: {len(broken)} weight tensors are not finite "
                            f"(first: {broken[0]}); lower train_config.lr or set train_config.grad_clip")
        return result
    finally:
        encoder.cpu().freeze()
        projection.cpu().eval()
        for p in projection.parameters():
            p.requires_grad_(True)
