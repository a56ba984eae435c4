r"""Text-only zero-shot: rank the classes of a knowledge graph for a free-text description.

.. math::
    \mathrm{score}_c(q) = \cos\big(f(q), \mathbf{t}_c\big) + \beta\, \frac{1}{|M(q)|} \sum_{a \in M(q)} s_{ca}

:math:`f` embeds the query (the frozen sentence encoder, or a trained :class:`fgmm.FGModel`'s text side),
:math:`\mathbf{t}_c` is class *c*'s vector (the renormalised mean embedding of its generated
descriptions, :mod:`fgmm.kg.describe`; or the model's class embedding,
:meth:`TextClassRanker.from_model`), :math:`M(q)` the
attributes the query names (:func:`fgmm.kg.phrases.match_attributes`: "red crown" → crown colour
red) and :math:`s_{ca}` their KG strengths; :math:`\beta` (``attribute_weight``) weighs that
symbolic evidence. Each result carries the matched attributes with the class's strengths: the
explanation of why the class ranks where it does.

Example::

    ranker = TextClassRanker.from_descriptions(Describer(kg), create_encoder("text"))
    for match in ranker.rank("a small flycatcher with a brilliant red crown and underparts", k=3):
        print(match.label, round(match.score, 3), match.explanation())
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from fgmm.errors import ConfigError, DataError
from fgmm.kg.describe import ClassDescription, Describer
from fgmm.kg.phrases import match_attributes

Embed = Callable[[Sequence[str]], torch.Tensor]
"""Texts → ``[N, d]`` vectors (normalised or not)."""


@dataclass
class ClassMatch:
    """One ranked class: its score, the cosine part, and the query's attributes with the class's strengths."""

    name: str
    label: str
    score: float
    similarity: float
    attributes: list[tuple[str, str, float]] = field(default_factory=list)  # (attribute, query words, strength)

    def explanation(self) -> str:
        """``"red crown → crown color: red 0.94; ..."`` (empty when the query names no attribute)."""
        return format_evidence(self.attributes)


def format_evidence(attributes: Sequence[tuple[str, str, float]]) -> str:
    """``(attribute, query words, strength)`` triples as ``"red crown → crown color: red 0.94; ..."``."""
    return "; ".join(f"{words} → {attribute.replace('has_', '').replace('_', ' ').replace('::', ': ')} "
                     f"{strength:.2f}" for attribute, words, strength in attributes)


def query_terms(describer: Describer, query: str) -> list[tuple[int, str]]:
    """The attributes ``query`` names (:func:`fgmm.kg.phrases.match_attributes`) as ``(column of
    describer.attributes, query words)``."""
    column = {name: j for j, name in enumerate(describer.attributes)}
    return [(column[t.attribute], t.words) for t in match_attributes(query, describer.attributes)]


class DescriptionEvidence:
    """The explanation of a trained :class:`fgmm.FGModel`'s text-only ranking: the attributes a
    description names, each with the KG strength of the ranked class (``fgmm predict --text``).

    Args:
        model: a model built with a knowledge graph (``model.kg`` and ``model.graph``).
    """

    def __init__(self, model):
        if model.kg is None or model.graph is None:
            raise ConfigError("the model was built without a knowledge graph: no attributes to explain with")
        self.describer = Describer(model.kg, class_order=model.graph.class_names)
        self.row = {name: i for i, name in enumerate(model.class_names)}

    def __call__(self, query: str, class_name: str) -> list[tuple[str, str, float]]:
        """``(attribute, query words, strength of class_name)`` per attribute ``query`` names, in query order."""
        if class_name not in self.row:
            raise ConfigError(f"unknown class '{class_name}'")
        strengths = self.describer.matrix[self.row[class_name]]
        return [(self.describer.attributes[j], words, float(strengths[j]))
                for j, words in query_terms(self.describer, query)]


class TextClassRanker:
    """Ranks classes for a description (module docstring).

    Args:
        describer: the :class:`~fgmm.kg.describe.Describer` of the graph (classes, strengths, attributes).
        embed: query embedding :math:`f`.
        class_vectors: ``[C, d]`` :math:`\\mathbf{t}_c` in :attr:`Describer.classes` order.
        attribute_weight: :math:`\\beta`.
    """

    def __init__(self, describer: Describer, embed: Embed, class_vectors: torch.Tensor, attribute_weight: float = 0.5):
        if class_vectors.shape[0] != len(describer.classes):
            raise ConfigError(f"{class_vectors.shape[0]} class vectors for {len(describer.classes)} classes")
        self.describer, self.embed = describer, embed
        self.class_vectors = F.normalize(class_vectors.float(), dim=-1)
        self.attribute_weight = attribute_weight
        self.labels = [describer.kg.label(describer.kg.node("class", c)) for c in describer.classes]

    @classmethod
    def from_descriptions(cls, describer: Describer, encoder, descriptions: Sequence[ClassDescription] | None = None,
                          attribute_weight: float = 0.5, cache=None) -> TextClassRanker:
        """A ranker on a frozen text encoder: class vectors from the classes' generated descriptions."""
        descriptions = list(descriptions) if descriptions is not None else describer.describe_all()
        texts = [t for d in descriptions for t in d.texts()]
        owner = torch.tensor([i for i, d in enumerate(descriptions) for _ in d.texts()])
        vectors = F.normalize(encoder.encode_cached(texts, cache).cpu().float(), dim=-1)
        sums = torch.zeros(len(descriptions), vectors.shape[1]).index_add_(0, owner, vectors)
        return cls(describer, lambda q: encoder.encode_cached(list(q), cache).cpu(), sums, attribute_weight)

    @classmethod
    def from_model(cls, describer: Describer, model, attribute_weight: float = 0.5, cache=None) -> TextClassRanker:
        """A ranker on a trained :class:`fgmm.FGModel` with a text modality: :math:`f` its text side
        (encoder + projection), :math:`\\mathbf{t}_c` its class embeddings (``model.class_names`` must
        be the describer's classes, in order)."""
        if "text" not in model.modalities:
            raise ConfigError(f"the model has no text modality (it has {model.modalities})")
        if len(model.class_names) != len(describer.classes):
            raise ConfigError(f"the model names {len(model.class_names)} classes, the graph {len(describer.classes)}")
        with torch.no_grad():
            vectors = model.class_embeddings().detach().cpu()
        return cls(describer, lambda q: model.embed_inputs("text", list(q), cache).cpu(), vectors, attribute_weight)

    def evidence(self, queries: Sequence[str]) -> tuple[torch.Tensor, list[list[tuple[int, str]]]]:
        """``[Q, C]`` mean KG strength of each query's matched attributes, and per query its matches
        as ``(attribute column, query words)``."""
        matrix = torch.as_tensor(self.describer.matrix, dtype=torch.float32)
        out = torch.zeros(len(queries), matrix.shape[0])
        matches = []
        for i, query in enumerate(queries):
            terms = query_terms(self.describer, query)
            matches.append(terms)
            if terms:
                out[i] = matrix[:, [j for j, _ in terms]].mean(1)
        return out, matches

    def scores(self, queries: Sequence[str]) -> torch.Tensor:
        """``[Q, C]`` scores of the module docstring."""
        if not len(queries):
            raise DataError(None, "no query given")
        with torch.no_grad():
            similarity = F.normalize(self.embed(list(queries)).float(), dim=-1) @ self.class_vectors.T
        return similarity + self.attribute_weight * self.evidence(queries)[0]

    def rank(self, query: str, k: int = 5) -> list[ClassMatch]:
        """The ``k`` best classes for ``query``, best first, each with its explanation."""
        with torch.no_grad():
            similarity = (F.normalize(self.embed([query]).float(), dim=-1) @ self.class_vectors.T)[0]
        strength, matches = self.evidence([query])
        scores = similarity + self.attribute_weight * strength[0]
        order = np.argsort(-scores.numpy(), kind="stable")[:k]
        matrix = self.describer.matrix
        return [ClassMatch(self.describer.classes[c], self.labels[c], float(scores[c]), float(similarity[c]),
                           [(self.describer.attributes[j], words, float(matrix[c, j])) for j, words in matches[0]])
                for c in order]
