"""THE joint embedding space of fgmm: one multi-modal model for recognition, zero-shot and retrieval.

:class:`FGModel` projects every modality (image, text, audio, geo/time) into one space, fuses what a
sample carries, scores classes against class embeddings from free weights, class means, the
knowledge graph (closed form) or a GNN over it, and serves cross-media retrieval from the same
embeddings. :func:`create_model` builds one from a named preset (:func:`list_models`) or a config.
"""

from fgmm.space.config import ClassesConfig, FGModelConfig, ModalityConfig, ObjectiveConfig, PriorConfig
from fgmm.space.factory import class_graph, create_model, list_models, model_config
from fgmm.space.features import ModalityTable, SampleFeatures
from fgmm.space.fitting import FitResult
from fgmm.space.model import FGModel

__all__ = [
    "ClassesConfig", "FGModel", "FGModelConfig", "FitResult", "ModalityConfig", "ModalityTable", "ObjectiveConfig",
    "PriorConfig", "SampleFeatures", "class_graph", "create_model", "list_models", "model_config",
]
