r"""A joint image–text space whose class embeddings are computed from the knowledge graph.

.. math::
    z^{img} = P_{img}(x), \qquad z^{txt} = P_{txt}(e(t)), \qquad
    \mathbf{w}_c = \frac{\tilde a_c M + \delta_c}{\lVert \tilde a_c M + \delta_c \rVert_2}, \qquad
    \ell_c(z) = s\, z^\top \mathbf{w}_c

:math:`P` are :class:`~fgmm.joint.projection.ProjectionHead` s onto the unit sphere of
:math:`\mathbb{R}^d`, :math:`e` the (frozen or fine-tuned) sentence encoder, :math:`\tilde a_c` the
class's standardised attribute strengths (its row of the KG's class × attribute matrix),
:math:`M` a learned linear map and :math:`\delta_c` a free per-class residual (``residual=False``
drops it). Training minimises

.. math::
    \mathcal{L} = \mathrm{CE}(\ell(z^{img}), y) + \mathrm{CE}(\ell(z^{txt}), y)
        + \lambda\, \mathcal{L}_{con}(z^{img}, z^{txt}, y)

with :math:`\mathcal{L}_{con}` the class-aware InfoNCE of :class:`fgmm.joint.losses.ClassAwareInfoNCE`.
Because :math:`\mathbf{w}_c` is a function of the class's attributes, what the text head learns from
the captions of some classes (which words go with which attributes) transfers to classes that have
only knowledge-graph descriptions: attribute-based transfer (Lampert et al., CVPR 2009) with a label
embedding learned jointly (ALE, Akata et al., TPAMI 2016), on both the image and the text side.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fgmm.data.torch_dataset import MASK_KEY, collate_multimodal
from fgmm.errors import ConfigError
from fgmm.joint.losses import ClassAwareInfoNCE
from fgmm.joint.model import JointConfig, JointEmbeddingModel
from fgmm.joint.projection import ProjectionHead
from fgmm.joint.training import CaptionedFeatures
from fgmm.models.heads import CosineClassifier
from fgmm.train import TrainConfig, Trainer, TrainResult


def standardized(attributes: torch.Tensor) -> torch.Tensor:
    """Column-standardised ``[C, A]`` attribute strengths (constant columns become zero)."""
    attributes = torch.as_tensor(attributes, dtype=torch.float32)
    std = attributes.std(0, unbiased=False)
    centred = attributes - attributes.mean(0)
    return torch.where(std > 1e-8, centred / std.clamp(min=1e-8), torch.zeros_like(attributes))


class KGTextSpace(nn.Module):
    """Image and text projections scored against class embeddings computed from the KG (module docstring).

    Args:
        input_dims: ``{"image": d_img, "text": d_txt}`` widths of the cached features.
        class_attributes: ``[C, A]`` attribute strengths of the classes (KG order = label order).
        dim: joint width :math:`d`.
        hidden, dropout: of the projection heads.
        residual: learn the free per-class residual :math:`\\delta_c`.
        contrastive_weight: :math:`\\lambda`.
        scale: initial cosine scale :math:`s` (learned, bounded by 100).

    Shapes:
        ``batch["image"]`` ``[B, d_img]``, ``batch["text"]`` ``[B, d_txt]`` with ``batch["mask"]["text"]``
        ``[B]`` bool, ``batch["label"]`` ``[B]`` -> ``logits`` ``[B, C]`` (image), ``logits_text``
        ``[B, C]``, ``loss``.
    """

    def __init__(self, input_dims: dict[str, int], class_attributes: torch.Tensor, dim: int = 256, hidden: int = 512,
                 dropout: float = 0.1, residual: bool = True, contrastive_weight: float = 1.0, scale: float = 16.0):
        super().__init__()
        if set(input_dims) != {"image", "text"}:
            raise ConfigError(f"KGTextSpace takes image and text features, got {sorted(input_dims)}")
        self.input_dims = dict(input_dims)
        self.projections = nn.ModuleDict({m: ProjectionHead(d, dim, hidden, dropout) for m, d in input_dims.items()})
        self.register_buffer("attributes", standardized(class_attributes))
        self.class_map = nn.Linear(self.attributes.shape[1], dim)
        self.residual = nn.Parameter(torch.zeros(len(self.attributes), dim)) if residual else None
        self.head = CosineClassifier(dim, None, scale=scale, max_scale=100.0)
        self.contrastive = ClassAwareInfoNCE()
        self.contrastive_weight = contrastive_weight

    @property
    def num_classes(self) -> int:
        return len(self.attributes)

    def class_embeddings(self) -> torch.Tensor:
        """``[C, d]`` unit-norm class embeddings :math:`\\mathbf{w}_c`."""
        w = self.class_map(self.attributes)
        return F.normalize(w + self.residual if self.residual is not None else w, dim=-1)

    def embed(self, modality: str, features: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` unit-norm joint embeddings of one modality's features."""
        if modality not in self.projections:
            raise ConfigError(f"no modality '{modality}'; the space has {sorted(self.projections)}")
        return self.projections[modality](features)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` scaled cosine scores of joint embeddings ``z``."""
        return self.head(z, self.class_embeddings())

    def to_joint(self, encoders: dict[str, str] | None = None) -> JointEmbeddingModel:
        """The same space as a :class:`fgmm.joint.JointEmbeddingModel` (its projections, the class
        embeddings as fixed prototypes), so ``fgmm index build --model`` and ``fgmm retrieve`` serve it.

        Args:
            encoders: fingerprint of the encoder each modality's features came from (e.g. a tuned text
                tower's), checked by :class:`fgmm.retrieval.Retriever`.
        """
        first = self.projections["image"].body
        hidden = first[0].out_features if isinstance(first, nn.Sequential) else 0
        dropout = first[2].p if isinstance(first, nn.Sequential) else 0.0
        dim = self.class_map.out_features
        config = JointConfig(input_dims=dict(self.input_dims), num_classes=self.num_classes, dim=dim, hidden=hidden,
                             dropout=dropout, encoders=dict(encoders or {}))
        with torch.no_grad():
            joint = JointEmbeddingModel(config, prototypes=self.class_embeddings().detach().cpu())
            joint.projections.load_state_dict(self.projections.state_dict())
            joint.classifier.log_scale.copy_(self.head.log_scale.detach().cpu())
        return joint.eval()

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        weights = self.class_embeddings()
        z_image = self.embed("image", batch["image"])
        out = {"logits": self.head(z_image, weights)}
        if "label" not in batch:
            return out
        labels = batch["label"]
        loss = F.cross_entropy(out["logits"], labels)
        if "text" in batch:  # collate_multimodal adds a mask only when some sample lacks text
            has_text = batch.get(MASK_KEY, {}).get("text")
            has_text = torch.ones_like(labels, dtype=torch.bool) if has_text is None else has_text.bool()
        if "text" in batch and bool(has_text.any()):
            z_text = self.embed("text", batch["text"][has_text])
            out["logits_text"] = self.head(z_text, weights)
            loss = loss + F.cross_entropy(out["logits_text"], labels[has_text])
            if self.contrastive_weight > 0 and int(has_text.sum()) > 1:
                loss = loss + self.contrastive_weight * self.contrastive(z_image[has_text], z_text, labels[has_text])
        out["loss"] = loss
        return out


def fit_kg_text(image_features: torch.Tensor, text_features: torch.Tensor, text_rows: Sequence[Sequence[int]],
                labels: Sequence[int] | torch.Tensor, class_attributes: torch.Tensor, train_config: TrainConfig, *,
                max_texts: int = 1, seed: int = 0, **options: Any) -> tuple[KGTextSpace, TrainResult]:
    """Train a :class:`KGTextSpace` on cached features with :class:`fgmm.train.Trainer`.

    Args:
        image_features: ``[N, d_img]`` training images.
        text_features: ``[T, d_txt]`` all texts (captions and class descriptions).
        text_rows: per image, the rows of ``text_features`` it may be paired with (its captions, its
            class's descriptions; may be empty); one is drawn per step (:class:`CaptionedFeatures`).
        labels: ``N`` class indices into ``class_attributes``.
        class_attributes: ``[C, A]``.
        train_config: the Trainer's recipe.
        max_texts, seed: pooling of drawn texts (1: single texts, as queries are) and initialisation seed.
        **options: further :class:`KGTextSpace` arguments.

    Returns:
        The model (CPU, eval mode) and the Trainer's result.
    """
    torch.manual_seed(seed)
    model = KGTextSpace({"image": image_features.shape[1], "text": text_features.shape[1]}, class_attributes,
                        **options)
    data = CaptionedFeatures({"image": image_features}, text_features, text_rows, labels, max_texts=max_texts)
    result = Trainer(model, train_config, data, collate_fn=collate_multimodal).fit(resume=False)
    return model.cpu().eval(), result
