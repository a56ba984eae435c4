"""Text meets the knowledge graph: a joint space whose classes come from the KG, text-tower tuning, text-only ranking.

* :class:`KGTextSpace` / :func:`fit_kg_text`: image and text projections scored against class
  embeddings computed from the classes' attribute strengths (so captions of some classes teach the
  text head where the others are).
* :func:`tune_text_tower`: fine-tune the sentence encoder towards those class embeddings.
* :class:`TextClassRanker`: rank classes for a description, with the matching KG attributes as the
  explanation.
* :func:`export_retrieval_model`: ``joint.pt`` (+ the tuned text tower) for ``fgmm index build --model``.
"""

from fgmm.kgtext.export import export_retrieval_model, save_text_encoder
from fgmm.kgtext.model import KGTextSpace, fit_kg_text, standardized
from fgmm.kgtext.predict import ClassMatch, TextClassRanker
from fgmm.kgtext.tuning import TextTowerObjective, tune_text_tower

__all__ = ["ClassMatch", "KGTextSpace", "TextClassRanker", "TextTowerObjective", "export_retrieval_model",
           "fit_kg_text", "save_text_encoder", "standardized", "tune_text_tower"]
