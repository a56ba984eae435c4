"""fgmm: multi-modal, knowledge-augmented fine-grained visual recognition.

The names below are the public API; they are imported on first use so that ``import fgmm`` (and
``fgmm --help``) stay fast::

    import fgmm
    dataset = fgmm.load_dataset("data/cub200")
    encoder = fgmm.create_encoder("vision")          # EfficientNet-Lite2, offline ImageNet weights
    features = fgmm.FeatureCache(".fgmm-cache").encode_images(encoder, [s.image for s in dataset]).features
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # data
    "Sample": "fgmm.data.sample",
    "MultiModalDataset": "fgmm.data.sample",
    "load_dataset": "fgmm.data",
    "load_cub": "fgmm.data",
    "load_folder": "fgmm.data",
    "write_folder": "fgmm.data",
    "generate_procedural": "fgmm.data",
    "check_dataset": "fgmm.data",
    "holdout_split": "fgmm.data",
    # encoders and the feature cache
    "create_encoder": "fgmm.encoders",
    "list_pretrained": "fgmm.encoders",
    "FeatureCache": "fgmm.cache",
    # the one multi-modal model
    "FGModel": "fgmm.space",
    "FGModelConfig": "fgmm.space",
    "create_model": "fgmm.space",
    "list_models": "fgmm.space",
    "model_config": "fgmm.space",
    # knowledge graphs
    "KnowledgeGraph": "fgmm.kg",
    "import_cub": "fgmm.kg",
    # retrieval in the joint embedding
    "EmbeddingIndex": "fgmm.retrieval",
    "Retriever": "fgmm.retrieval",
    "ImageDescriptor": "fgmm.retrieval.descriptor",
    "create_metric_loss": "fgmm.retrieval.metric",
    "create_reranker": "fgmm.retrieval.rerank",
    # training
    "Trainer": "fgmm.train",
    "TrainConfig": "fgmm.train",
    "ExperimentConfig": "fgmm.experiment",
    "train_experiment": "fgmm.experiment",
    "evaluate_run": "fgmm.experiment",
    # evaluation
    "TaskContext": "fgmm.tasks",
    "run_tasks": "fgmm.tasks",
    "build_context": "fgmm.pipeline",
    # noisy labels
    "create_filter": "fgmm.filters",
    "clean_labels": "fgmm.filters",
    "fit_filtered": "fgmm.filters",
    "FilterSignals": "fgmm.filters",
    # errors
    "FgmmError": "fgmm.errors",
    "DataError": "fgmm.errors",
    "ConfigError": "fgmm.errors",
    "WeightsUnavailableError": "fgmm.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'fgmm' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(__all__)
