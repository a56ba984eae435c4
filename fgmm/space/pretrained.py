"""A self-describing model folder: what :meth:`FGModel.save_pretrained` writes and every command reads.

::

    model_dir/
      config.json          format, fgmm/torch versions, the model config, class names, encoders
                           (name, width, fingerprint, preprocessing), the seed
      model.safetensors    every weight and fitted statistic (frozen encoders excluded: they are rebuilt
                           from the registry and checked against their recorded fingerprints)
      graph.safetensors    the class graph the knowledge-graph source propagates over (when it has one)
      kg.nt                the knowledge graph the model was trained with (when given one), N-Triples

Loading never unpickles anything: JSON and safetensors only. A folder is written to a temporary
sibling and renamed into place, so a reader sees the old model or the new one, never a mix.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from fgmm.errors import DataError
from fgmm.gnn.propagation import ClassGraph
from fgmm.io import fsync_dir, write_bytes_atomic
from fgmm.space.config import FGModelConfig
from fgmm.train.config import config_from_dict, config_to_dict

FORMAT = "fgmm-model/1"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
GRAPH_NAME = "graph.safetensors"
KG_NAME = "kg.nt"
_GRAPH_TENSORS = ("edge_index", "edge_weight", "node_type", "label_nodes", "subclass_edges")


def model_fingerprint(model) -> str:
    """A short hash of a model's config, classes and every weight: the identity of its embedding space
    (an index built with one model is never searched through another)."""
    digest = hashlib.sha256(json.dumps([config_to_dict(model.config), model.class_names], sort_keys=True).encode())
    for key, tensor in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def is_model_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a model written by :meth:`FGModel.save_pretrained`."""
    config = Path(path) / CONFIG_NAME
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def save_pretrained(model, folder: str | Path, overwrite: bool = False) -> Path:
    """Write ``model`` to ``folder`` (see the module docstring).

    Raises:
        DataError: ``folder`` exists and is not empty but is not an fgmm model (fgmm never replaces
            files it did not write), or it is a model and ``overwrite`` is false.
    """
    folder = Path(folder)
    if folder.exists():
        if not folder.is_dir():
            raise DataError(folder, "exists and is not a folder; choose another path for the model")
        if any(folder.iterdir()):
            if not is_model_folder(folder):
                raise DataError(folder, "is not empty and holds no fgmm model: fgmm does not replace files it did "
                                        "not write; choose an empty or new folder")
            if not overwrite:
                raise DataError(folder, "already holds an fgmm model; pass overwrite=True (--force) to replace it")
    staging = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        _write(model, staging)
        if folder.exists():
            retired = folder.with_name(f".{folder.name}.{os.getpid()}.old")
            os.replace(folder, retired)
            os.replace(staging, folder)
            shutil.rmtree(retired)
        else:
            os.replace(staging, folder)
        fsync_dir(folder.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _write(model, folder: Path) -> None:
    from fgmm import __version__

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    write_bytes_atomic(folder / WEIGHTS_NAME, safetensors.torch.save(state, metadata={"format": FORMAT}))
    if model.graph is not None:
        graph = {name: getattr(model.graph, name).contiguous() for name in _GRAPH_TENSORS}
        if model.graph.node_features is not None:
            graph["node_features"] = model.graph.node_features.contiguous()
        write_bytes_atomic(folder / GRAPH_NAME, safetensors.torch.save(graph, metadata={"format": FORMAT}))
    kg = model.kg
    if kg is not None and hasattr(kg, "save"):
        kg.save(folder / KG_NAME)
    record: dict[str, Any] = {
        "format": FORMAT, "fgmm_version": __version__, "torch_version": torch.__version__,
        "config": config_to_dict(model.config), "classes": model.class_names,
        "graph_classes": model.graph.class_names if model.graph is not None else None,
        "encoders": model.encoder_info, "seed": model.seed,
        "kg": KG_NAME if (folder / KG_NAME).exists() else None,
    }
    write_bytes_atomic(folder / CONFIG_NAME, json.dumps(record, indent=2, default=str) + "\n")


def read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    if not folder.is_dir():
        raise DataError(folder, "model folder does not exist")
    if not path.is_file():
        raise DataError(path, "not found: is this a model folder written by FGModel.save_pretrained / fgmm train?")
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(path, f"cannot read the model config ({exc})") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise DataError(path, f"not an fgmm model config (expected format '{FORMAT}')")
    return record


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return safetensors.torch.load_file(str(path))
    except Exception as exc:  # safetensors raises several types for truncated or foreign files
        raise DataError(path, f"cannot read the weights ({type(exc).__name__}: {exc})") from None


def load_pretrained(cls, folder: str | Path, map_location: str | torch.device = "cpu"):
    """Rebuild the model saved in ``folder`` (eval mode) — see :meth:`FGModel.from_pretrained`."""
    from fgmm.space.inputs import build_encoder

    folder = Path(folder)
    record = read_config(folder)
    config = config_from_dict(FGModelConfig, record["config"], source=folder / CONFIG_NAME)
    graph = None
    if (folder / GRAPH_NAME).is_file():
        tensors = _read_tensors(folder / GRAPH_NAME)
        graph = ClassGraph(**{name: tensors[name] for name in _GRAPH_TENSORS},
                           class_names=list(record["graph_classes"]), node_features=tensors.get("node_features"))
    towers = {m: build_encoder(m, spec, frozen=False) for m, spec in config.modalities.items() if spec.trainable}
    model = cls(config, record["classes"], graph=graph, towers=towers, seed=int(record.get("seed", 0)))
    state = _read_tensors(folder / WEIGHTS_NAME)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise DataError(folder / WEIGHTS_NAME, f"the weights do not fit the saved config "
                                               f"({str(exc).splitlines()[0]})") from None
    model.encoder_info = dict(record.get("encoders") or {})
    if record.get("kg"):
        model.kg_path = folder / record["kg"]
    return model.to(map_location).eval()
