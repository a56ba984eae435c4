r"""Projections of one modality's encoder features into the joint space.

Every projection maps ``[B, d_m]`` encoder features to ``[B, d]`` unit vectors of the joint space.
Learned ones (``"mlp"``, ``"linear"``) train with the model; closed-form ones (``"whiten"``,
``"identity"``) are fitted from the training features by :meth:`fit` and have no parameters, so an
image-only model on cached features needs no gradient step at all. Modules are created by name::

    projection = PROJECTIONS.create("whiten", in_dim=1280, out_dim=1280, shrinkage=3.0)
    projection.fit(features, labels)
    z = projection(features)                     # [B, 1280], unit norm

Every projection has ``in_dim``, ``out_dim``, ``closed_form`` (fitted by :meth:`fit` rather than
by gradient descent) and ``fit(features, labels) -> self`` (a no-op for learned ones); closed-form
ones keep the feature width (``keeps_width``, so a model of them alone needs no ``dim``).

Any projection can read a slice of its modality's features: the option ``columns: [start, stop]``
(:class:`ColumnSlice`) hands it columns ``start..stop-1`` only, e.g. the BirdNET embedding of an audio
encoder whose features are ``[embedding | species logits]`` while a class prior reads the logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgmm.errors import ConfigError
from fgmm.registry import Registry

PROJECTIONS: Registry[nn.Module] = Registry("projection")


def signed_power(features: Tensor, power: float) -> Tensor:
    r"""Power normalisation :math:`\operatorname{sign}(\mathbf{x})|\mathbf{x}|^{p}` (identity for :math:`p = 1`).

    Differentiable everywhere autograd reaches it (a text tower tuned through a whitening): an exact zero
    gets gradient 0 instead of :math:`0 \cdot \infty` = NaN, which once poisoned every weight of a run.
    """
    if power == 1.0:
        return features
    magnitude = features.abs()
    return features.sign() * torch.where(magnitude > 0, magnitude, torch.ones_like(magnitude)).pow(power)


class FeatureWhitening(nn.Module):
    r"""Power normalisation, centring and shrunk within-class whitening of features.

    .. math::
        \mathbf{u} &= \frac{\operatorname{sign}(\mathbf{x})|\mathbf{x}|^{p}}
        {\lVert \operatorname{sign}(\mathbf{x})|\mathbf{x}|^{p} \rVert}, \qquad
        \mathbf{v} = \frac{\mathbf{u} - \boldsymbol{\mu}}{\lVert \mathbf{u} - \boldsymbol{\mu} \rVert}

        \mathbf{z} &= \frac{\mathbf{W}\mathbf{v}}{\lVert \mathbf{W}\mathbf{v} \rVert}, \qquad
        \mathbf{W} = \big(\boldsymbol{\Sigma}_w + \varepsilon\, \bar{\lambda}\, \mathbf{I}\big)^{-1/2}

    :math:`\boldsymbol{\mu}` is the training mean of :math:`\mathbf{u}`, :math:`\boldsymbol{\Sigma}_w`
    the pooled within-class covariance of :math:`\mathbf{v}` (training features and their labels)
    and :math:`\bar\lambda` its mean eigenvalue. Whitening the within-class scatter makes the
    directions that separate classes count more in cosine similarity (LDA-like; Jégou & Chum,
    2012, for retrieval); the shrinkage :math:`\varepsilon` keeps it stable with few samples per class.

    Args:
        dim: feature width (``None``: taken from the first :meth:`fit`; give it to load a state dict).
        power: :math:`p` (0.5: signed square root; 1: none).
        shrinkage: :math:`\varepsilon`.

    Shapes:
        input ``[B, dim]`` -> output ``[B, dim]`` (unit norm).
    """

    def __init__(self, dim: int | None = None, power: float = 0.5, shrinkage: float = 3.0):
        super().__init__()
        self.power = power
        self.shrinkage = shrinkage
        self.register_buffer("mean", None if dim is None else torch.zeros(dim))
        self.register_buffer("transform", None if dim is None else torch.eye(dim))
        self.register_buffer("fitted", torch.tensor(False))

    def _powered(self, features: Tensor) -> Tensor:
        return F.normalize(signed_power(features, self.power), dim=-1)

    @torch.no_grad()
    def fit(self, features: Tensor, labels: Tensor) -> FeatureWhitening:
        r"""Estimate :math:`\boldsymbol{\mu}` and :math:`\mathbf{W}` from training features and labels."""
        features, labels = features.detach().double().cpu(), torch.as_tensor(labels).cpu()
        powered = self._powered(features)
        mean = powered.mean(0)
        centred = F.normalize(powered - mean, dim=1)
        _, inverse = labels.unique(return_inverse=True)
        sums = torch.zeros(int(inverse.max()) + 1, centred.shape[1], dtype=torch.float64)
        sums.index_add_(0, inverse, centred)
        residual = centred - (sums / torch.bincount(inverse).unsqueeze(1))[inverse]
        eigenvalues, eigenvectors = torch.linalg.eigh(residual.T @ residual / len(residual))
        eigenvalues = eigenvalues.clamp_min(0) + self.shrinkage * eigenvalues.clamp_min(0).mean() + 1e-12
        device = self.fitted.device
        self.mean = mean.float().to(device)
        self.transform = ((eigenvectors * eigenvalues.rsqrt()) @ eigenvectors.T).float().to(device)
        self.fitted.fill_(True)
        return self

    def forward(self, features: Tensor) -> Tensor:
        if not bool(self.fitted):
            raise ConfigError("FeatureWhitening is used before fit()")
        centred = F.normalize(self._powered(features.float()) - self.mean, dim=-1)
        return F.normalize(centred @ self.transform, dim=-1)


@PROJECTIONS.register("mlp")
class ProjectionHead(nn.Module):
    r"""A learned projection: layer norm, a two-layer MLP (or one linear map), L2 normalisation.

    .. math::
        z = \frac{g(\mathrm{LN}(f))}{\lVert g(\mathrm{LN}(f)) \rVert_2}, \qquad
        g = \begin{cases} W_2\,\mathrm{Dropout}(\mathrm{GELU}(W_1 \cdot)) & \text{hidden} > 0 \\
                          W \cdot & \text{hidden} = 0 \end{cases}

    Layer norm makes heads indifferent to the scale of frozen features (pooled CNN activations
    and unit-norm sentence embeddings alike).

    Args:
        in_dim: encoder feature width :math:`d_m`.
        out_dim: joint width :math:`d`.
        hidden: hidden width; ``0`` gives a linear projection (as in CLIP).
        dropout: dropout after the hidden activation.
    """

    closed_form = False

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 512, dropout: float = 0.1):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.norm = nn.LayerNorm(in_dim)
        if hidden > 0:
            self.body: nn.Module = nn.Sequential(
                nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, out_dim))
        else:
            self.body = nn.Linear(in_dim, out_dim)

    def fit(self, features: Tensor, labels: Tensor) -> ProjectionHead:
        return self

    def forward(self, features: Tensor) -> Tensor:
        return F.normalize(self.body(self.norm(features)), dim=-1)


@PROJECTIONS.register("linear")
def linear_projection(in_dim: int, out_dim: int, dropout: float = 0.0) -> ProjectionHead:
    """A learned linear projection (layer norm, one linear map, L2 normalisation), as in CLIP."""
    return ProjectionHead(in_dim, out_dim, hidden=0, dropout=dropout)


@PROJECTIONS.register("whiten")
class WhiteningProjection(nn.Module):
    """The closed-form projection :class:`FeatureWhitening` (``out_dim`` must equal ``in_dim``).

    The strongest image-only space for frozen CNN features on fine-grained data: nearest class
    mean in it beats a logistic probe on the raw features (benchmarks/README.md).

    Args:
        in_dim, out_dim: feature width (equal).
        power, shrinkage: of :class:`FeatureWhitening`.
    """

    closed_form = True
    keeps_width = True

    def __init__(self, in_dim: int, out_dim: int, power: float = 0.5, shrinkage: float = 3.0):
        super().__init__()
        if out_dim != in_dim:
            raise ConfigError(f"a 'whiten' projection keeps the feature width ({in_dim}); the joint space has "
                              f"width {out_dim}: set the model's dim to {in_dim} or use an 'mlp' projection")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.whitening = FeatureWhitening(in_dim, power=power, shrinkage=shrinkage)

    def fit(self, features: Tensor, labels: Tensor) -> WhiteningProjection:
        self.whitening.fit(features, labels)
        return self

    def forward(self, features: Tensor) -> Tensor:
        return self.whitening(features)


@PROJECTIONS.register("identity")
class IdentityProjection(nn.Module):
    """L2 normalisation only (``out_dim`` must equal ``in_dim``): the encoder's own space."""

    closed_form = True
    keeps_width = True

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        if out_dim != in_dim:
            raise ConfigError(f"an 'identity' projection keeps the feature width ({in_dim}), not {out_dim}")
        self.in_dim, self.out_dim = in_dim, out_dim

    def fit(self, features: Tensor, labels: Tensor) -> IdentityProjection:
        return self

    def forward(self, features: Tensor) -> Tensor:
        return F.normalize(features.float(), dim=-1)


@PROJECTIONS.register("center")
class CenteringProjection(nn.Module):
    r"""Centring on the training mean and L2 normalisation (CL2N of SimpleShot, Wang et al., 2019,
    arXiv:1911.04623), optionally after power normalisation:

    .. math::
        \mathbf{z} = \frac{\rho(\mathbf{x}) - \boldsymbol{\mu}}{\lVert \rho(\mathbf{x}) - \boldsymbol{\mu} \rVert},
        \qquad \rho(\mathbf{x}) = \operatorname{sign}(\mathbf{x})|\mathbf{x}|^{p},

    :math:`\boldsymbol{\mu}` the mean of :math:`\rho` over the training features. Frozen network features
    share a large common component (non-negative activations); removing it before cosine scoring is what
    makes nearest class mean work from one or two examples per class (audio: 17.5% vs 9.6% one-shot top-1
    with the log-mel CNN, 80% vs 57% with BirdNET, benchmarks/README.md), where a within-class whitening
    (``"whiten"``) has too few samples per class to estimate.

    Args:
        in_dim, out_dim: feature width (equal).
        power: :math:`p` (1: none; 0.5: signed square root).

    Shapes:
        input ``[B, in_dim]`` -> output ``[B, in_dim]`` (unit norm).
    """

    closed_form = True
    keeps_width = True

    def __init__(self, in_dim: int, out_dim: int, power: float = 1.0):
        super().__init__()
        if out_dim != in_dim:
            raise ConfigError(f"a 'center' projection keeps the feature width ({in_dim}), not {out_dim}")
        self.in_dim, self.out_dim, self.power = in_dim, out_dim, power
        self.register_buffer("mean", torch.zeros(in_dim))
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, features: Tensor, labels: Tensor) -> CenteringProjection:
        self.mean.copy_(signed_power(features.detach().double(), self.power).mean(0).to(self.mean))
        self.fitted.fill_(True)
        return self

    def forward(self, features: Tensor) -> Tensor:
        if not bool(self.fitted):
            raise ConfigError("CenteringProjection is used before fit()")
        return F.normalize(signed_power(features.float(), self.power) - self.mean, dim=-1)


@PROJECTIONS.register("none")
class NoProjection(nn.Module):
    """No embedding: the modality is only read by its class prior (preset ``"image-geo"``: the place and date
    score classes through :mod:`fgmm.geo.model_prior`, not through the joint space).

    It gives zero rows, which the ``"mean"`` fusion leaves without effect on the direction of the fused
    embedding (a sample with an image and a place is scored from its image alone, then times the prior; one
    with a place alone from the prior alone). Use it with ``fusion: "mean"``.

    Shapes:
        input ``[B, in_dim]`` -> output ``[B, out_dim]`` zeros.
    """

    closed_form = True

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim

    def fit(self, features: Tensor, labels: Tensor) -> NoProjection:
        return self

    def forward(self, features: Tensor) -> Tensor:
        return features.new_zeros(features.shape[0], self.out_dim, dtype=torch.float32)


class ColumnSlice(nn.Module):
    """Hands columns ``start..stop-1`` of the features to another projection (the ``columns`` option).

    Args:
        start, stop: the column range.
        inner: the projection of the slice (created with ``in_dim = stop - start``).

    Shapes:
        input ``[B, d_m]`` (``d_m >= stop``) -> the inner projection's output.
    """

    def __init__(self, start: int, stop: int, inner: nn.Module):
        super().__init__()
        self.start, self.stop, self.inner = start, stop, inner
        self.out_dim = inner.out_dim
        self.closed_form = inner.closed_form

    def fit(self, features: Tensor, labels: Tensor) -> ColumnSlice:
        self.inner.fit(features[:, self.start:self.stop], labels)
        return self

    def forward(self, features: Tensor) -> Tensor:
        return self.inner(features[:, self.start:self.stop])


def _columns(columns: list[int] | tuple[int, int], in_dim: int) -> tuple[int, int]:
    start, stop = (int(c) for c in columns)
    if not 0 <= start < stop <= in_dim:
        raise ConfigError(f"projection columns must be [start, stop] with 0 <= start < stop <= {in_dim} (the feature "
                          f"width), got {list(columns)}")
    return start, stop


def kept_width(name: str, in_dim: int, columns: list[int] | None = None, **options) -> int | None:
    """The output width of projection ``name`` when it keeps its input width (closed-form ones): ``in_dim``,
    or the width of its ``columns``; ``None`` for a learned projection (its width is the model's ``dim``)."""
    if not getattr(PROJECTIONS.get(name), "keeps_width", False):
        return None
    if columns is None:
        return in_dim
    start, stop = _columns(columns, in_dim)
    return stop - start


def create_projection(name: str, in_dim: int, out_dim: int, columns: list[int] | None = None,
                      **options) -> nn.Module:
    """The projection registered as ``name`` in :data:`PROJECTIONS` (of ``columns`` only, when given)."""
    if columns is None:
        return PROJECTIONS.create(name, in_dim=in_dim, out_dim=out_dim, **options)
    start, stop = _columns(columns, in_dim)
    return ColumnSlice(start, stop, PROJECTIONS.create(name, in_dim=stop - start, out_dim=out_dim, **options))
