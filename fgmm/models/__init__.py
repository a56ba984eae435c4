"""Models: classifier heads (and, from other modules, fusion and GNN components)."""

from fgmm.models.heads import HEADS, CosineClassifier, FeatureClassifier, LinearHead, create_head

__all__ = ["HEADS", "CosineClassifier", "FeatureClassifier", "LinearHead", "create_head"]
