r"""Fine-tuning the text tower towards the class embeddings of a trained :class:`fgmm.FGModel`.

.. math::
    \mathcal{L}(\theta, \phi) = \mathrm{CE}\big(s\, P^{\phi}_{txt}(e_\theta(t))^\top W,\; y\big)

with :math:`e_\theta` the sentence encoder (all-MiniLM-L6-v2 by default; its top ``train_layers``
transformer layers trained, the rest frozen), :math:`P^{\phi}_{txt}` the model's text projection
(``model.projections["text"]``), and :math:`W` (``[C, d]``, ``model.class_embeddings()``) and :math:`s`
(``model.scorer.scale``) the model's class embeddings and cosine scale, held fixed: the
image side and the class geometry stay as trained, only the way sentences reach them changes.
Training items are single sentences with their class: captions of the captioned classes and the
knowledge-graph descriptions of every class, so caption and description style meet in the tower
itself rather than only after a frozen encoder. Runs on :class:`fgmm.train.Trainer`; on CPU a few
thousand steps of 32 short sentences take minutes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from fgmm.encoders.text import TextEncoder
from fgmm.errors import ConfigError
from fgmm.train import TrainConfig, Trainer, TrainResult


class SentenceItems(Dataset):
    """``{"text": str, "label": int}`` items of parallel lists of sentences and class labels."""

    def __init__(self, texts: Sequence[str], labels: Sequence[int]):
        if len(texts) != len(labels):
            raise ValueError(f"{len(texts)} texts but {len(labels)} labels")
        self.texts, self.labels = list(texts), [int(y) for y in labels]

    def __len__(self) -> int:
        return len(self.texts)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"text": self.texts[index], "label": self.labels[index]}


class TokenCollate:
    """Batches :class:`SentenceItems` as ``{"text.<token field>": [B, L], "label": [B]}`` (picklable)."""

    def __init__(self, encoder: TextEncoder):
        self.tokenizer = encoder.backbone.tokenizer
        self.max_length = encoder.backbone.max_length

    def __call__(self, items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        tokens = self.tokenizer([item["text"] for item in items], padding=True, truncation=True,
                                max_length=self.max_length, return_tensors="pt")
        batch = {f"text.{k}": v for k, v in tokens.items()}
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
        z = self.projection(self.encoder(**tokens))
        logits = self.scale * z @ self.class_embeddings.T
        out = {"logits": logits}
        if "label" in batch:
            out["loss"] = F.cross_entropy(logits, batch["label"])
        return out


def tune_text_tower(encoder: TextEncoder, projection: nn.Module, class_embeddings: torch.Tensor, scale: float,
                    texts: Sequence[str], labels: Sequence[int], train_config: TrainConfig, *,
                    train_layers: int | None = 2, train_projection: bool = True) -> TrainResult:
    """Fine-tune ``encoder`` (in place, frozen again afterwards) and ``projection`` on (sentence, class) pairs.

    Args:
        encoder: the text encoder the model's text features came from.
        projection: the model's text projection (``model.projections["text"]``), updated in place.
        class_embeddings, scale: the model's :math:`W` and :math:`s`, held fixed.
        texts, labels: the training sentences and their classes.
        train_config: the Trainer's recipe (``max_steps`` bounds the run; ``lr`` ~ 2e-5 for the encoder).
        train_layers: how many top transformer layers train (``None``: all).
        train_projection: also train the projection.

    Returns:
        The Trainer's result. ``encoder.fingerprint()`` changes, so its features never mix with the
        frozen encoder's in a feature cache.
    """
    train_top_layers(encoder, train_layers)
    objective = TextTowerObjective(encoder, projection, class_embeddings, scale, train_projection)
    try:
        return Trainer(objective, train_config, SentenceItems(texts, labels),
                       collate_fn=TokenCollate(encoder)).fit(resume=False)
    finally:
        encoder.cpu().freeze()
        projection.cpu().eval()
        for p in projection.parameters():
            p.requires_grad_(True)
