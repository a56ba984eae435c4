"""Knowledge graphs of fine-grained classes: RDF authoring, SHACL validation, SPARQL, PyG export.

``knowledge/fgmm.ttl`` is the vocabulary, ``knowledge/shapes.ttl`` the SHACL shapes and
``knowledge/README.md`` the modelling notes. Converters to networkx and PyTorch Geometric live in
:mod:`fgmm.kg.convert` (imported on first use, as they need torch).
"""

from fgmm.kg.cub import CUB_BASE, import_cub
from fgmm.kg.datasets import DATASET_KGS, dataset_kg
from fgmm.kg.graph import FORMATS, MERGE_RULES, KnowledgeGraph, MergeReport, StrengthConflict
from fgmm.kg.procedural import PROCEDURAL_BASE, build_procedural_kg
from fgmm.kg.validate import ValidationReport, Violation
from fgmm.kg.vocab import DWC, FGMM, knowledge_file

__all__ = [
    "CUB_BASE", "DATASET_KGS", "DWC", "FGMM", "FORMATS", "MERGE_RULES", "PROCEDURAL_BASE", "KnowledgeGraph",
    "MergeReport", "StrengthConflict", "ValidationReport", "Violation", "build_procedural_kg", "dataset_kg",
    "import_cub", "knowledge_file",
]
