"""Classifier heads and the adapter that plugs them into the dict-batch training contract.

Heads map features ``x`` of shape ``[B, d]`` to logits ``[B, C]``. They are registered in
:data:`HEADS` so configs name them: ``create_head("cosine", in_dim=1280, num_classes=200)``.
:class:`FeatureClassifier` wraps a head into a model with ``forward(batch) -> {"logits": ...}``, the
contract of :class:`fgmm.train.Trainer`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgmm.registry import Registry

HEADS: Registry[nn.Module] = Registry("head")


@HEADS.register("linear")
class LinearHead(nn.Linear):
    r"""A linear classifier.

    .. math::
        \mathbf{z} = \mathbf{W}\mathbf{x} + \mathbf{b}, \qquad
        \mathbf{W} \in \mathbb{R}^{C \times d},\ \mathbf{b} \in \mathbb{R}^{C}

    Args:
        in_dim: feature dimension :math:`d`.
        num_classes: number of classes :math:`C`.
        bias: learn the bias :math:`\mathbf{b}`.

    Shapes:
        input ``[B, d]`` -> logits ``[B, C]``.
    """

    def __init__(self, in_dim: int, num_classes: int, bias: bool = True):
        super().__init__(in_dim, num_classes, bias=bias)
        self.in_dim = in_dim
        self.num_classes = num_classes


@HEADS.register("cosine")
class CosineClassifier(nn.Module):
    r"""A cosine-similarity classifier with a learnable temperature (Gidaris & Komodakis, 2018).

    .. math::
        z_c = s \cdot \cos(\mathbf{x}, \mathbf{w}_c)
            = s \, \frac{\mathbf{x}^\top \mathbf{w}_c}{\lVert\mathbf{x}\rVert \, \lVert\mathbf{w}_c\rVert},
        \qquad s = e^{\sigma}

    The class vectors :math:`\mathbf{w}_c` are the head's own parameters, or are passed to
    :meth:`forward` -- e.g. class embeddings that a GNN computes from the knowledge graph, which
    lets the head score classes it has no trained weights for (zero-shot).

    Args:
        in_dim: feature dimension :math:`d`.
        num_classes: number of own class vectors; ``None`` when weights always come from outside.
        scale: initial scale :math:`s` (stored as :math:`\sigma = \log s` so it stays positive).
        learn_scale: train :math:`\sigma` (otherwise :math:`s` is fixed).
        max_scale: upper bound of :math:`s` while training (``None``: unbounded).
        eps: guards the normalisation of zero vectors.

    Shapes:
        input ``[B, d]``, optional weights ``[C, d]`` -> logits ``[B, C]``.
    """

    def __init__(self, in_dim: int, num_classes: int | None = None, scale: float = 10.0,
                 learn_scale: bool = True, max_scale: float | None = None, eps: float = 1e-8):
        super().__init__()
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.in_dim = in_dim
        self.num_classes = num_classes
        self.eps = eps
        self.max_log_scale = None if max_scale is None else math.log(max_scale)
        self.register_parameter(
            "weight", None if num_classes is None else nn.Parameter(torch.empty(num_classes, in_dim)))
        log_scale = torch.tensor(math.log(scale))
        if learn_scale:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        if self.weight is not None:
            nn.init.normal_(self.weight, std=self.in_dim ** -0.5)

    @property
    def scale(self) -> Tensor:
        """The current scale :math:`s`."""
        if self.max_log_scale is None:
            return self.log_scale.exp()
        return self.log_scale.clamp(max=self.max_log_scale).exp()

    def forward(self, x: Tensor, weights: Tensor | None = None) -> Tensor:
        """Logits of ``x`` against ``weights`` (``[C, d]``) or the head's own class vectors."""
        if weights is None:
            if self.weight is None:
                raise ValueError("this CosineClassifier has no class vectors of its own (num_classes=None); "
                                 "pass weights=[C, d]")
            weights = self.weight
        if weights.shape[-1] != x.shape[-1]:
            raise ValueError(f"class weights have dimension {weights.shape[-1]}, features {x.shape[-1]}")
        cosine = F.normalize(x, dim=-1, eps=self.eps) @ F.normalize(weights, dim=-1, eps=self.eps).t()
        return self.scale * cosine

    def extra_repr(self) -> str:
        return f"in_dim={self.in_dim}, num_classes={self.num_classes}"


class FeatureClassifier(nn.Module):
    r"""A head on precomputed (or upstream) features, speaking the trainer's dict-batch contract.

    .. math::
        \mathbf{x} = \mathrm{batch}[\texttt{input\_key}], \quad
        \tilde{\mathbf{x}} = \mathrm{Dropout}_p\!\left(\tfrac{\mathbf{x}}{\lVert\mathbf{x}\rVert}\right)
        \ \text{(normalisation optional)}, \quad
        \mathbf{z} = \mathrm{head}(\tilde{\mathbf{x}}\,[,\ \mathbf{W}])

    Args:
        head: any module mapping ``[B, d] -> [B, C]`` (e.g. from :func:`create_head`).
        input_key: batch entry holding the features.
        normalize: L2-normalise the features first.
        dropout: dropout probability on the features.
        class_weights: class vectors :math:`\mathbf{W}` for heads whose ``forward`` takes
            ``weights`` (:class:`CosineClassifier`): a fixed ``[C, d]`` tensor (kept as a buffer),
            or a module called with no arguments that returns them -- e.g. a GNN over the
            class-attribute graph, trained jointly with the head.

    ``forward(batch)`` returns ``{"logits": [B, C]}``.
    """

    def __init__(self, head: nn.Module, input_key: str = "features", normalize: bool = False,
                 dropout: float = 0.0, class_weights: nn.Module | Tensor | None = None):
        super().__init__()
        if class_weights is not None and "weights" not in inspect.signature(head.forward).parameters:
            raise ValueError(f"{type(head).__name__}.forward takes no 'weights', "
                             "so class_weights cannot be used")
        self.head = head
        self.input_key = input_key
        self.normalize = normalize
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.weight_source = class_weights if isinstance(class_weights, nn.Module) else None
        self.register_buffer("fixed_weights", class_weights if isinstance(class_weights, Tensor) else None)

    def class_weights(self) -> Tensor | None:
        """The class vectors passed to the head (``None`` when the head uses its own)."""
        return self.weight_source() if self.weight_source is not None else self.fixed_weights

    def forward(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        try:
            x = batch[self.input_key]
        except KeyError:
            raise KeyError(f"batch has no '{self.input_key}' entry (keys: {sorted(batch)})") from None
        if self.normalize:
            x = F.normalize(x, dim=-1)
        x = self.dropout(x)
        weights = self.class_weights()
        return {"logits": self.head(x) if weights is None else self.head(x, weights=weights)}


def create_head(name: str, **kwargs) -> nn.Module:
    """Build the head registered as ``name`` in :data:`HEADS` (``"linear"``, ``"cosine"``)."""
    return HEADS.create(name, **kwargs)
