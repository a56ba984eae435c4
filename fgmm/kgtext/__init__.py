"""Text meets the knowledge graph, on the one model (:class:`fgmm.FGModel` with the ``"attributes"`` class source).

* :func:`tune_text_tower`: fine-tune the sentence encoder towards a trained model's class embeddings.
* :func:`save_served_model`: the model and its tuned text tower in one folder for ``fgmm index build --model``.
* :class:`TextClassRanker`: rank classes for a description, with the matching KG attributes as the
  explanation.
* :class:`DescriptionEvidence`: the same explanation for a trained model's own text-only ranking
  (``fgmm predict MODEL --text ...``).
"""

from fgmm.kgtext.predict import ClassMatch, DescriptionEvidence, TextClassRanker
from fgmm.kgtext.serving import save_served_model, save_text_encoder
from fgmm.kgtext.tuning import TextTowerObjective, tune_text_tower

__all__ = ["ClassMatch", "DescriptionEvidence", "TextClassRanker", "TextTowerObjective", "save_served_model",
           "save_text_encoder", "tune_text_tower"]
