"""Creating models by name or config, like timm's ``create_model`` and open_clip's model configs.

Named presets are JSON files shipped in ``fgmm/space/presets/`` (package data)::

    fgmm.list_models()                    # ['image', 'image-gnn', 'image-kg', 'image-ncm', 'image-text', ...]
    model = fgmm.create_model("image-kg", classes=names, kg=kg)
    model = fgmm.create_model({"modalities": {"image": {"projection": "whiten"}}}, classes=names)
    model = fgmm.create_model("runs/cub-model")          # a saved model folder: FGModel.from_pretrained

Overrides patch the preset, e.g. ``create_model("image-text", classes=names, dim=512)`` or
``create_model("image", classes=names, modalities={"image": {"encoder": "convnext_tiny"}})`` (nested
dictionaries are merged); :data:`IMAGE_SHORTCUTS` (``vision="convnext_tiny"``, ``image_size=224``,
``zoom=True``, ``pretrained=False``) set the image encoder in one word.
"""

from __future__ import annotations

import copy
import fnmatch
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from fgmm.errors import ConfigError
from fgmm.gnn.propagation import ClassGraph
from fgmm.space.class_sources import CLASS_SOURCES
from fgmm.space.config import FGModelConfig
from fgmm.train.config import config_from_dict

_PRESET_PACKAGE = "fgmm.space.presets"


def _preset_files() -> dict[str, Any]:
    folder = resources.files(_PRESET_PACKAGE)
    return {entry.name[:-5]: entry for entry in folder.iterdir() if entry.name.endswith(".json")}


def list_models(pattern: str | None = None) -> list[str]:
    """Names of the shipped model presets, optionally filtered by a shell-style ``pattern`` (``"image*"``)."""
    names = sorted(_preset_files())
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def preset(name: str) -> dict[str, Any]:
    """The preset ``name`` as a dict (``"description"`` included)."""
    files = _preset_files()
    if name not in files:
        raise ConfigError(f"unknown model '{name}'; choose one of: {', '.join(sorted(files))} "
                          "(or pass a config dict / a saved model folder)")
    return json.loads(files[name].read_text(encoding="utf-8"))


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


IMAGE_SHORTCUTS = {"vision": ("encoder", None), "image_size": ("image_size", None), "zoom": ("zoom", False),
                   "pretrained": ("pretrained", True)}
"""Override keywords that set the image modality's encoder (``vision``) or its ``encoder_options``:
``keyword -> (config key, the default that adds nothing)``."""


def image_shortcuts(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with the :data:`IMAGE_SHORTCUTS` keywords moved into ``modalities.image``."""
    patch = {k: v for k, v in overrides.items() if k not in IMAGE_SHORTCUTS}
    given = {IMAGE_SHORTCUTS[k][0]: v for k, v in overrides.items()
             if k in IMAGE_SHORTCUTS and v is not None and v != IMAGE_SHORTCUTS[k][1]}
    if not given:
        return patch
    modalities = patch["modalities"] = copy.deepcopy(patch.get("modalities", {}))
    image = modalities.setdefault("image", {})
    if "encoder" in given:
        image["encoder"] = given.pop("encoder")
    if given:
        image["encoder_options"] = {**image.get("encoder_options", {}), **given}
    return patch


def model_config(model: str | dict[str, Any] | FGModelConfig, **overrides: Any) -> FGModelConfig:
    """The validated config of a preset name or a config dict, with ``overrides`` merged in
    (:func:`image_shortcuts` first)."""
    if isinstance(model, FGModelConfig):
        if overrides:
            raise ConfigError("pass overrides with a preset name or a config dict, not with an FGModelConfig")
        return copy.deepcopy(model)
    overrides = image_shortcuts(overrides)
    data = preset(model) if isinstance(model, str) else copy.deepcopy(model)
    data.pop("description", None)
    merged = _merge(data, overrides)
    # options belong to the component they were written for: another projection or class-embedding
    # source named by the overrides starts from its own defaults
    for name, spec in overrides.get("modalities", {}).items():
        base = data.get("modalities", {}).get(name, {})
        if "projection" in spec and spec["projection"] != base.get("projection") and "projection_options" not in spec:
            merged["modalities"][name]["projection_options"] = {}
    chosen = overrides.get("class_embeddings", {})
    if "source" in chosen and chosen["source"] != data.get("class_embeddings", {}).get("source") \
            and "options" not in chosen:
        merged["class_embeddings"]["options"] = {}
    return config_from_dict(FGModelConfig, merged, source=model if isinstance(model, str) else None)


def class_graph(kg: Any, class_names: Sequence[str], class_order: Sequence[str] | None = None) -> ClassGraph:
    """A :class:`ClassGraph` over ``class_names`` from a KnowledgeGraph, HeteroData, ClassGraph or a
    ``[C, A]`` class × attribute strength matrix.

    ``class_order`` names each label's class node in the KG when it differs from ``class_names``
    (CUB: the class folder names).
    """
    if isinstance(kg, ClassGraph):
        graph = kg
    elif isinstance(kg, np.ndarray) or hasattr(kg, "numpy") and not hasattr(kg, "node_types"):
        graph = ClassGraph.from_matrix(np.asarray(kg), list(class_names))
    else:
        data = kg if hasattr(kg, "node_types") else kg.to_pyg(class_order=list(class_order or class_names))
        graph = ClassGraph.from_hetero(data)
    if graph.num_labels != len(class_names):
        raise ConfigError(f"the knowledge graph has {graph.num_labels} dataset classes, the model {len(class_names)}")
    return graph


def create_model(model: str | dict[str, Any] | FGModelConfig | Path, classes: Sequence[str] | None = None, *,
                 kg: Any = None, class_order: Sequence[str] | None = None, dataset: Any = None, seed: int = 0,
                 **overrides: Any):
    """Create an :class:`~fgmm.space.FGModel` (untrained) from a preset, a config, or load a saved folder.

    Args:
        model: a preset name (:func:`list_models`), a config dict / :class:`FGModelConfig`, or the path of
            a folder written by :meth:`FGModel.save_pretrained` (then the other arguments must be absent).
        classes: the class names, in label order.
        kg: the knowledge graph for the ``"kg"``/``"gnn"`` class sources (see :func:`class_graph`);
            a :class:`fgmm.KnowledgeGraph` is also saved with the model.
        class_order: the KG's names of the classes when they differ from ``classes``.
        dataset: a :class:`fgmm.MultiModalDataset` giving ``classes``, ``class_order`` and, when the class
            embeddings come from a graph and ``kg`` is not given, the dataset's own knowledge graph
            (:func:`fgmm.kg.dataset_kg`, else its class x attribute matrix).
        seed: seeds the initialisation of the model's weights.
        **overrides: config keys merged into the preset (``dim=512``, ``fusion="mean"``, ...).

    The encoders named by the config are created (frozen) to read their feature widths.
    """
    from fgmm.space.inputs import build_encoder, describe_encoder
    from fgmm.space.model import FGModel

    if isinstance(model, Path) or (isinstance(model, str) and Path(model).is_dir()):
        if classes is not None or kg is not None or dataset is not None or overrides:
            raise ConfigError("a saved model folder is loaded as it is: pass no classes, kg, dataset or overrides")
        return FGModel.from_pretrained(model)
    config = model_config(model, **overrides)
    if dataset is not None:
        classes = classes or dataset.class_names
        class_order = class_order or dataset.meta.get("class_folders")
        if kg is None and getattr(CLASS_SOURCES.get(config.class_embeddings.source), "needs_graph", False):
            from fgmm.kg import dataset_kg

            kg = dataset_kg(dataset)
            kg = kg if kg is not None else dataset.class_attributes
    if not classes:
        raise ConfigError("create_model needs the class names (classes=[...] or dataset=...)")
    encoders, towers = {}, {}
    for m, spec in config.modalities.items():
        if spec.trainable:
            towers[m] = build_encoder(m, spec, frozen=False)
            spec.input_dim = towers[m].dim
        elif spec.input_dim is None:
            encoders[m] = build_encoder(m, spec)
            spec.input_dim = encoders[m].dim
    graph = class_graph(kg, classes, class_order) if kg is not None else None
    built = FGModel(config, classes, graph=graph, kg=kg if hasattr(kg, "save") else None, towers=towers, seed=seed)
    built._encoders.update(encoders)
    built.encoder_info.update({m: describe_encoder(e) for m, e in encoders.items()})
    return built
