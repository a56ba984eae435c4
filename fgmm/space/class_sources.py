r"""Where the class embeddings of the joint space come from.

A class source is an ``nn.Module`` whose ``forward()`` returns the ``[C, d]`` class embeddings
:math:`W` that the cosine scorer compares fused sample embeddings with. Sources differ in how
:math:`W` is obtained and in which classes they can name:

* ``"free"`` (:class:`FreeClassWeights`): learned weights; only classes with training samples.
* ``"means"`` (:class:`ClassMeans`): the class means of the training embeddings (nearest class
  mean); only classes with training samples.
* ``"kg"`` (:class:`KGPrototypes`): class means blended with prototypes regressed in closed form
  from the knowledge graph; every class of the graph, so classes without training samples
  (zero-shot) are recognised through it.
* ``"gnn"`` (:class:`GNNClassEmbeddings`): a GNN propagating over the knowledge graph (GGNN as in
  KERL, GCN, GAT), trained with the model; every class of the graph.
* ``"attributes"`` (:class:`AttributeClassEmbeddings`): a learned linear map of the classes'
  attribute strengths (ALE), trained with the model; every class of the graph.

Each source has ``closed_form`` (fitted by :meth:`fit` from the embeddings of the training samples
after the model's learned parts have trained) and ``needs_graph`` (takes a
:class:`~fgmm.gnn.ClassGraph`), and keeps a ``trained`` mask of the classes it saw samples of;
``available()`` is the mask of classes it can score.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fgmm.errors import ConfigError
from fgmm.gnn.propagation import ClassEmbeddingNetwork, ClassGraph, propagation_features
from fgmm.registry import Registry

CLASS_SOURCES: Registry[nn.Module] = Registry("class-embedding source")


def class_means(embeddings: Tensor, labels: Tensor, num_classes: int) -> tuple[Tensor, Tensor]:
    """``[C, d]`` unit-norm class means (zero rows for classes without samples) and the ``[C]`` mask of
    classes with samples. Labels ``< 0`` are ignored."""
    labels = torch.as_tensor(labels).long().to(embeddings.device)
    known = labels >= 0
    embeddings, labels = embeddings[known].double(), labels[known]
    sums = torch.zeros(num_classes, embeddings.shape[1], dtype=torch.float64, device=embeddings.device)
    sums.index_add_(0, labels, embeddings)
    present = torch.bincount(labels, minlength=num_classes) > 0
    return F.normalize(sums, dim=1).float(), present


class _ClassSource(nn.Module):
    """Shared state of the sources: the class count, the width and the ``trained`` mask."""

    closed_form = False
    needs_graph = False
    names_all_classes = False

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.num_classes, self.dim = num_classes, dim
        self.register_buffer("trained", torch.zeros(num_classes, dtype=torch.bool))

    def available(self) -> Tensor:
        """``[C]`` bool: the classes this source can score."""
        return torch.ones_like(self.trained) if self.names_all_classes else self.trained.clone()

    def initialize(self, embeddings: Tensor, labels: Tensor) -> None:
        """Called before training with the embeddings of the training samples: record the classes seen."""
        self.trained.copy_(class_means(embeddings, labels, self.num_classes)[1])

    def fit(self, embeddings: Tensor, labels: Tensor) -> None:
        """Called after training; closed-form sources compute :math:`W` here."""
        self.initialize(embeddings, labels)


@CLASS_SOURCES.register("free")
class FreeClassWeights(_ClassSource):
    r"""Learned class embeddings :math:`\mathbf{w}_c`, initialised with the class means.

    Args:
        num_classes, dim: :math:`C` and :math:`d`.
        init: ``"means"`` (start from the class means of the initial embeddings: the nearest
            class mean classifier, refined by training) or ``"random"`` (:math:`\mathcal{N}(0, 1/d)`).
    """

    def __init__(self, num_classes: int, dim: int, init: str = "means"):
        super().__init__(num_classes, dim)
        if init not in ("means", "random"):
            raise ConfigError(f"free class weights: init must be 'means' or 'random', got '{init}'")
        self.init = init
        self.weight = nn.Parameter(torch.randn(num_classes, dim) * dim ** -0.5)

    @torch.no_grad()
    def initialize(self, embeddings: Tensor, labels: Tensor) -> None:
        means, present = class_means(embeddings, labels, self.num_classes)
        self.trained.copy_(present)
        if self.init == "means":
            self.weight[present] = means[present].to(self.weight)

    def fit(self, embeddings: Tensor, labels: Tensor) -> None:
        self.trained.copy_(class_means(embeddings, labels, self.num_classes)[1])

    def forward(self) -> Tensor:
        return self.weight


@CLASS_SOURCES.register("means")
class ClassMeans(_ClassSource):
    r"""Nearest class mean: :math:`\mathbf{w}_c = \operatorname{normalize}\big(\sum_{i: y_i = c} \mathbf{z}_i\big)`.

    With a whitened space (:class:`~fgmm.space.projections.WhiteningProjection`) this is an LDA-like
    classifier that needs no training.
    """

    closed_form = True

    def __init__(self, num_classes: int, dim: int):
        super().__init__(num_classes, dim)
        self.register_buffer("means", torch.zeros(num_classes, dim))

    @torch.no_grad()
    def fit(self, embeddings: Tensor, labels: Tensor) -> None:
        means, present = class_means(embeddings, labels, self.num_classes)
        self.means.copy_(means)
        self.trained.copy_(present)

    def forward(self) -> Tensor:
        return self.means


@CLASS_SOURCES.register("kg")
class KGPrototypes(ClassMeans):
    r"""Class means blended with prototypes regressed from knowledge-graph descriptors (kernel ridge).

    .. math::
        \mathbf{K} = \boldsymbol{\Phi}\boldsymbol{\Phi}^{\top}, \qquad
        \mathbf{P} = \mathbf{K}_{:,S}\,(\mathbf{K}_{S,S} + \lambda \mathbf{I})^{-1}\, \hat{\mathbf{M}}_S

        \mathbf{w}_c = \begin{cases}
        \operatorname{normalize}\big(\alpha\, \hat{\mathbf{m}}_c + (1-\alpha)\, \hat{\mathbf{p}}_c\big) & c \in S \\
        \hat{\mathbf{p}}_c & \text{otherwise} \end{cases}

    :math:`\hat{\mathbf{M}}_S` are the unit class means of the trained classes :math:`S`,
    :math:`\boldsymbol{\Phi}` the parameter-free propagation descriptors of the graph
    (:func:`fgmm.gnn.propagation_features`: attribute strengths one hop away, every taxonomic
    ancestor), :math:`\hat\cdot` unit normalisation. Mapping the semantic side to the visual one
    (Shigeto et al., 2015) limits hubness; classes without samples get :math:`\hat{\mathbf{p}}_c`.

    Args:
        num_classes, dim: :math:`C` (the graph's labels) and :math:`d`.
        graph: the class graph.
        ridge: :math:`\lambda`.
        taxonomy_weight: weight of the ancestor block of the descriptors.
        mean_weight: :math:`\alpha` (1: the graph is used only for classes without samples).
    """

    names_all_classes = True
    needs_graph = True

    def __init__(self, num_classes: int, dim: int, graph: ClassGraph, ridge: float = 0.3,
                 taxonomy_weight: float = 0.5, mean_weight: float = 0.5):
        super().__init__(num_classes, dim)
        if graph.num_labels != num_classes:
            raise ConfigError(f"the knowledge graph names {graph.num_labels} classes, the model {num_classes}")
        if not 0.0 <= mean_weight <= 1.0 or ridge <= 0:
            raise ConfigError(f"kg source: mean_weight must be in [0, 1] and ridge > 0, got {mean_weight}, {ridge}")
        self.ridge, self.mean_weight = ridge, mean_weight
        descriptors = propagation_features(graph, taxonomy_weight)
        self.register_buffer("kernel", torch.as_tensor((descriptors @ descriptors.T).toarray(), dtype=torch.float64),
                             persistent=False)
        self.register_buffer("regressed", torch.zeros(num_classes, dim))

    @torch.no_grad()
    def fit(self, embeddings: Tensor, labels: Tensor) -> None:
        super().fit(embeddings, labels)
        seen = torch.nonzero(self.trained).flatten().to(self.kernel.device)
        if seen.numel() == 0:
            raise ConfigError("the kg class source needs training samples of at least one class")
        k_seen = self.kernel[seen][:, seen] + self.ridge * torch.eye(len(seen), dtype=torch.float64,
                                                                     device=self.kernel.device)
        coefficients = torch.linalg.solve(k_seen, self.means[seen].double().to(self.kernel.device))
        self.regressed.copy_(F.normalize(self.kernel[:, seen] @ coefficients, dim=1).float())

    def forward(self) -> Tensor:
        blend = F.normalize(self.mean_weight * self.means + (1 - self.mean_weight) * self.regressed, dim=1)
        return torch.where(self.trained[:, None], blend, self.regressed)


@CLASS_SOURCES.register("gnn")
class GNNClassEmbeddings(_ClassSource):
    r"""Class embeddings propagated by a GNN over the knowledge graph, plus optional free residuals.

    .. math::
        \mathbf{w}_c = \mathrm{GNN}(\mathcal{G})_c + [c \in S]\, \mathbf{u}_c

    :math:`\mathrm{GNN}` is :class:`~fgmm.gnn.ClassEmbeddingNetwork` (GGNN as in KERL, Chen et al.
    2018; GCN; GAT), :math:`\mathbf{u}_c` free per-class residuals (zero for classes never trained
    on, so unseen classes rely on the graph alone).

    Args:
        num_classes, dim: :math:`C` and :math:`d`.
        graph: the class graph.
        layer, hidden, num_layers, dropout: of the :class:`~fgmm.gnn.ClassEmbeddingNetwork`.
        free_weights: learn the residuals :math:`\mathbf{u}_c`.
    """

    needs_graph = True
    names_all_classes = True

    def __init__(self, num_classes: int, dim: int, graph: ClassGraph, layer: str = "ggnn", hidden: int = 256,
                 num_layers: int = 2, dropout: float = 0.0, free_weights: bool = True):
        super().__init__(num_classes, dim)
        if graph.num_labels != num_classes:
            raise ConfigError(f"the knowledge graph names {graph.num_labels} classes, the model {num_classes}")
        self.network = ClassEmbeddingNetwork(graph, out_dim=dim, hidden=hidden, layer=layer, num_layers=num_layers,
                                             dropout=dropout, use_node_features=False)
        self.residual = nn.Parameter(torch.zeros(num_classes, dim)) if free_weights else None

    def forward(self) -> Tensor:
        weights = self.network()
        if self.residual is not None:
            weights = weights + self.residual * self.trained[:, None].to(weights.dtype)
        return weights


def class_attribute_strengths(graph: ClassGraph) -> Tensor:
    """``[C, A]`` has-attribute strengths of the dataset labels (rows) over the graph's attribute nodes
    (columns, in node order); zero where a class has no edge to an attribute."""
    from fgmm.gnn.propagation import NODE_TYPES

    attribute_nodes = torch.nonzero(graph.node_type == NODE_TYPES.index("attribute")).flatten()
    if attribute_nodes.numel() == 0:
        raise ConfigError("the 'attributes' class source needs a knowledge graph with attribute nodes")
    column = torch.full((graph.num_nodes,), -1, dtype=torch.long)
    column[attribute_nodes] = torch.arange(attribute_nodes.numel())
    row = torch.full((graph.num_nodes,), -1, dtype=torch.long)
    row[graph.label_nodes] = torch.arange(graph.num_labels)
    src, dst = graph.edge_index
    links = (row[src] >= 0) & (column[dst] >= 0)  # each edge is stored both ways: keep class -> attribute
    strengths = torch.zeros(graph.num_labels, attribute_nodes.numel())
    strengths[row[src[links]], column[dst[links]]] = graph.edge_weight[links].float()
    return strengths


def standardized(attributes: Tensor) -> Tensor:
    """Column-standardised ``[C, A]`` attribute strengths (zero mean, unit variance over the classes;
    constant columns become zero)."""
    attributes = torch.as_tensor(attributes, dtype=torch.float32)
    std = attributes.std(0, unbiased=False)
    centred = attributes - attributes.mean(0)
    return torch.where(std > 1e-8, centred / std.clamp(min=1e-8), torch.zeros_like(attributes))


@CLASS_SOURCES.register("attributes")
class AttributeClassEmbeddings(_ClassSource):
    r"""Class embeddings as a learned linear map of the classes' knowledge-graph attribute strengths (ALE).

    .. math::
        \tilde{\mathbf{A}} = \big(\mathbf{A} - \mathbf{1}\boldsymbol{\mu}^{\top}\big)\,
            \operatorname{diag}(\boldsymbol{\sigma})^{-1}, \qquad
        \mathbf{w}_c = \operatorname{normalize}\big(\tilde{\mathbf{a}}_c \mathbf{M} + \mathbf{b}
            + [c \in S]\, \boldsymbol{\delta}_c\big)

    :math:`\mathbf{A}` (``[C, A]``) holds the has-attribute strengths of every class of the graph
    (:func:`class_attribute_strengths`), standardised per attribute over the classes
    (:math:`\boldsymbol{\mu}`, :math:`\boldsymbol{\sigma}`); :math:`\mathbf{M}` (``[A, d]``) and
    :math:`\mathbf{b}` are learned with the rest of the model, :math:`\boldsymbol{\delta}_c` are free
    per-class residuals (``residual``), used only for the classes with training samples :math:`S`.
    This is the attribute label embedding of ALE (Akata et al., "Label-Embedding for Image
    Classification", TPAMI 2016), whose compatibility :math:`\theta(x)^{\top}\mathbf{W}\varphi(y)`
    is the cosine score of the fused embedding with :math:`\mathbf{w}_c`, and attribute-based
    transfer (Lampert et al., "Learning to Detect Unseen Object Classes by Between-Class Attribute
    Transfer", CVPR 2009): every modality is trained against the same map, so what the text side
    learns from the captions of some classes (which words go with which attributes) carries over to
    classes that have no captions, and a class without any training sample is scored through its
    attribute row alone. Unlike ``"kg"`` (closed form, after training) the map is learned jointly.

    Args:
        num_classes, dim: :math:`C` (the graph's labels) and :math:`d`.
        graph: the class graph (its class → attribute strengths).
        residual: learn the residuals :math:`\boldsymbol{\delta}_c`.

    Shapes:
        ``forward()`` → ``[C, d]`` (not normalised; the model normalises).
    """

    needs_graph = True
    names_all_classes = True

    def __init__(self, num_classes: int, dim: int, graph: ClassGraph, residual: bool = True):
        super().__init__(num_classes, dim)
        if graph.num_labels != num_classes:
            raise ConfigError(f"the knowledge graph names {graph.num_labels} classes, the model {num_classes}")
        attributes = standardized(class_attribute_strengths(graph))
        self.register_buffer("attributes", attributes, persistent=False)  # rebuilt from the saved graph
        self.class_map = nn.Linear(attributes.shape[1], dim)
        self.residual = nn.Parameter(torch.zeros(num_classes, dim)) if residual else None

    def forward(self) -> Tensor:
        weights = self.class_map(self.attributes)
        if self.residual is not None:
            weights = weights + self.residual * self.trained[:, None].to(weights.dtype)
        return weights


def create_class_source(name: str, num_classes: int, dim: int, graph: ClassGraph | None = None,
                        **options) -> nn.Module:
    """The source registered as ``name``; ``graph`` is required by the knowledge-graph sources."""
    factory = CLASS_SOURCES.get(name)
    if getattr(factory, "needs_graph", False):
        if graph is None:
            raise ConfigError(f"the '{name}' class source needs a knowledge graph: pass kg=... (a fgmm.KnowledgeGraph, "
                              "HeteroData, ClassGraph or a class x attribute matrix; `fgmm train`: --kg FILE)")
        return factory(num_classes=num_classes, dim=dim, graph=graph, **options)
    return factory(num_classes=num_classes, dim=dim, **options)
