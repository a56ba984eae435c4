"""The joint embedding space shared by recognition and cross-media retrieval.

Per-modality projection heads map encoder features into one space of dimension ``d``; a
class-aware contrastive loss aligns modalities there (captions of the same class are positives, not
negatives), a cosine classifier reads the same space, and a fusion module combines the modalities a
sample carries.
"""

from fgmm.joint.fusion import FUSIONS, AttentionFusion, GatedFusion, MeanFusion
from fgmm.joint.losses import ClassAwareInfoNCE, JointObjective
from fgmm.joint.model import FUSED, JointConfig, JointEmbeddingModel
from fgmm.joint.projection import ProjectionHead
from fgmm.joint.training import CaptionedFeatures, fit_joint, pooled_texts, text_table

__all__ = [
    "FUSED", "FUSIONS", "AttentionFusion", "CaptionedFeatures", "ClassAwareInfoNCE",
    "GatedFusion", "JointConfig", "JointEmbeddingModel", "JointObjective", "MeanFusion", "ProjectionHead",
    "fit_joint", "pooled_texts", "text_table",
]
