r"""The joint embedding model: per-modality projections into one space, fusion and classification.

.. math::
    z_m = \mathrm{Proj}_m\big(T_m(x_m)\big) \in \mathbb{S}^{d-1}, \qquad
    z = \frac{\mathrm{Fuse}(\{z_m\}, \mu)}{\lVert \mathrm{Fuse}(\{z_m\}, \mu) \rVert}, \qquad
    \ell_v = e^{\sigma}\, \hat z_v^\top \hat W

:math:`T_m` is modality *m*'s tower (an encoder, or the identity when the batch carries cached
features), :math:`\mathrm{Proj}_m` a :class:`~fgmm.joint.projection.ProjectionHead`, Fuse a module
of :data:`~fgmm.joint.fusion.FUSIONS` honouring the presence masks :math:`\mu`, and :math:`W` the
class prototypes of a :class:`~fgmm.models.heads.CosineClassifier`. Retrieval across media is
nearest-neighbour search among the :math:`z_m`; recognition reads :math:`\ell` of the fused
:math:`z` (or of one modality alone). Training minimises :class:`~fgmm.joint.losses.JointObjective`.

Batch format (the :class:`fgmm.train.Trainer` contract, a dict of tensors):

* ``batch[m]``: the input of modality *m* -- ``[B, d_m]`` cached features when *m* has no tower,
  otherwise whatever the tower takes (``[B, 3, H, W]`` images for a vision encoder). Towers taking
  several tensors read ``batch["<m>.<argument>"]``, e.g. ``text.input_ids`` and
  ``text.attention_mask`` for :class:`fgmm.encoders.text.TextEncoder`.
* ``batch["mask"][m]``: ``[B]`` bool, ``True`` where the sample carries *m* (default: all), as built
  by :func:`fgmm.data.torch_dataset.collate_multimodal`.
* ``batch["label"]``: ``[B]`` class indices; when present the output holds ``"loss"``.

Tower locking follows open_clip's ``lock_image_tower`` / ``lock_text_tower``: a locked tower gets no
gradients, stays in eval mode and runs without autograd.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fgmm.data.torch_dataset import MASK_KEY
from fgmm.encoders.base import Encoder
from fgmm.errors import ConfigError, DataError
from fgmm.joint.fusion import FUSIONS
from fgmm.joint.losses import JointObjective
from fgmm.joint.projection import ProjectionHead
from fgmm.models.heads import CosineClassifier
from fgmm.train.checkpoint import atomic_write

FUSED = "fused"
"""Name of the fused view in masks, logits and the ``"z_fused"`` output."""


@dataclass
class JointConfig:
    """Architecture and loss settings of a :class:`JointEmbeddingModel` (saved with its weights).

    Attributes:
        input_dims: feature dimension of each modality as it enters its projection head
            (the tower's output dimension), e.g. ``{"image": 1280, "text": 384}``.
        num_classes: number of classes of the classifier.
        dim: joint dimension :math:`d`.
        hidden: hidden width of the projection heads (``0``: linear projections).
        dropout: dropout of the projection heads.
        fusion: a name in :data:`fgmm.joint.fusion.FUSIONS` (``"gated"``, ``"attention"``, ``"mean"``).
        pairs: modality pairs aligned by the contrastive loss.
        instance_weight: :math:`w` of :class:`~fgmm.joint.losses.ClassAwareInfoNCE`
            (0: class-level positives only, 1: CLIP).
        init_temperature: initial contrastive temperature.
        contrastive_weight: weight of the contrastive terms.
        ce_weight: weight of the classification terms.
        encoders: fingerprint of the encoder whose features each modality's head was trained on
            (``Encoder.fingerprint()``); :class:`fgmm.retrieval.Retriever` refuses other encoders.
            Empty: not checked.
    """

    input_dims: dict[str, int]
    num_classes: int
    dim: int = 256
    hidden: int = 512
    dropout: float = 0.1
    fusion: str = "gated"
    pairs: list[tuple[str, str]] = field(default_factory=lambda: [("image", "text")])
    instance_weight: float = 0.0
    init_temperature: float = 0.07
    contrastive_weight: float = 1.0
    ce_weight: float = 1.0
    encoders: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.pairs = [tuple(pair) for pair in self.pairs]  # JSON gives lists
        unknown = sorted({m for pair in self.pairs for m in pair} - set(self.input_dims))
        if unknown:
            raise ConfigError(f"joint config: pairs name modalities without input_dims: {unknown}")
        if self.num_classes < 1 or self.dim < 1:
            raise ConfigError("joint config: num_classes and dim must be positive")
        if self.fusion not in FUSIONS:
            raise ConfigError(f"joint config: unknown fusion '{self.fusion}'; choose one of: "
                              f"{', '.join(FUSIONS.names())}")


class JointEmbeddingModel(nn.Module):
    """Projects modalities into one space, fuses them, classifies and aligns them (module docstring).

    Args:
        config: the :class:`JointConfig`.
        towers: optional encoder per modality run on raw inputs; modalities without one take
            cached features. A tower's output dimension must equal ``config.input_dims[m]``.
        locked: modalities whose tower is locked from the start (see :meth:`lock_tower`).
        prototypes: optional ``[C, d]`` initial class prototypes (e.g. from a knowledge-graph GNN).

    Example::

        model = JointEmbeddingModel(JointConfig({"image": 1280, "text": 384}, num_classes=50))
        out = model({"image": img_feats, "text": txt_feats, "mask": {"text": has_text}, "label": y})
        out["loss"].backward(); out["logits"]                    # fused class logits
        model.embed("text", txt_feats)                           # [B, d] for retrieval
    """

    def __init__(self, config: JointConfig, towers: Mapping[str, nn.Module] | None = None,
                 locked: Sequence[str] = (), prototypes: torch.Tensor | None = None):
        super().__init__()
        self.config = config
        self.modalities = list(config.input_dims)
        towers = dict(towers or {})
        stray = sorted(set(towers) - set(self.modalities))
        if stray:
            raise ConfigError(f"towers given for modalities without input_dims: {stray}")
        self.towers = nn.ModuleDict(towers)
        self.projections = nn.ModuleDict({
            m: ProjectionHead(d, config.dim, config.hidden, config.dropout) for m, d in config.input_dims.items()})
        self.fusion = FUSIONS.create(config.fusion, modalities=self.modalities, dim=config.dim)
        self.classifier = CosineClassifier(config.dim, config.num_classes, scale=16.0, max_scale=100.0)
        if prototypes is not None:
            if tuple(prototypes.shape) != (config.num_classes, config.dim):
                raise ValueError(f"prototypes must be [{config.num_classes}, {config.dim}], "
                                 f"got {tuple(prototypes.shape)}")
            with torch.no_grad():
                self.classifier.weight.copy_(prototypes)
        self.objective = JointObjective(config.pairs, config.contrastive_weight, config.ce_weight,
                                        config.init_temperature, config.instance_weight)
        self._locked: set[str] = set()
        for m in locked:
            self.lock_tower(m)

    # ------------------------------------------------------------------ towers
    def lock_tower(self, modality: str) -> None:
        """Freeze ``modality``'s tower: no gradients, eval mode, no autograd graph (open_clip's lock)."""
        tower = self._tower(modality)
        for p in tower.parameters():
            p.requires_grad_(False)
        if isinstance(tower, Encoder):
            tower.frozen = True  # keeps it in eval mode through later .train() calls
        tower.eval()
        self._locked.add(modality)

    def unlock_tower(self, modality: str) -> None:
        """Let ``modality``'s tower train again (fine-tuning)."""
        tower = self._tower(modality)
        for p in tower.parameters():
            p.requires_grad_(True)
        if isinstance(tower, Encoder):
            tower.frozen = False
        self._locked.discard(modality)
        tower.train(self.training)

    def is_locked(self, modality: str) -> bool:
        return modality in self._locked

    def train(self, mode: bool = True) -> JointEmbeddingModel:
        super().train(mode)
        for m in self._locked:
            self.towers[m].eval()
        return self

    def _tower(self, modality: str) -> nn.Module:
        if modality not in self.towers:
            raise ConfigError(f"modality '{modality}' has no tower (its inputs are cached features); "
                              f"towers: {sorted(self.towers)}")
        return self.towers[modality]

    def _features(self, modality: str, batch: Mapping[str, Any]) -> torch.Tensor | None:
        """Tower output (or the cached features) of ``modality``, ``None`` when the batch lacks it."""
        prefix = f"{modality}."
        arguments = {k[len(prefix):]: v for k, v in batch.items() if k.startswith(prefix)}
        if modality not in batch and not arguments:
            return None
        if modality not in self.towers:
            return batch[modality]
        tower = self.towers[modality]
        with torch.set_grad_enabled(torch.is_grad_enabled() and modality not in self._locked):
            return tower(batch[modality]) if modality in batch else tower(**arguments)

    # ------------------------------------------------------------------ forward
    def embed(self, modality: str, inputs: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Joint embeddings ``[B, d]`` (unit norm) of one modality's inputs (features or tower inputs)."""
        if modality not in self.projections:
            raise ConfigError(f"the joint model has no modality '{modality}'; it has {self.modalities}")
        batch = ({f"{modality}.{k}": v for k, v in inputs.items()} if isinstance(inputs, Mapping)
                 else {modality: inputs})
        features = self._features(modality, batch)
        self._check_dim(modality, features)
        return self.projections[modality](features)

    def forward(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """See the module docstring for the batch format.

        Returns:
            ``"logits"`` (fused view), ``"logits_<m>"`` per modality, ``"z_<m>"`` and ``"z_fused"``
            unit-norm embeddings, ``"mask_<m>"``; with ``batch["label"]`` also ``"loss"`` and its
            terms (``"loss_con_image_text"``, ``"loss_ce_<view>"``).
        """
        embeddings: dict[str, torch.Tensor] = {}
        masks: dict[str, torch.Tensor] = {}
        for m in self.modalities:
            features = self._features(m, batch)
            if features is None:
                continue
            self._check_dim(m, features)
            embeddings[m] = self.projections[m](features)
            mask = batch.get(MASK_KEY, {}).get(m)
            masks[m] = (torch.ones(features.shape[0], dtype=torch.bool, device=features.device)
                        if mask is None else mask.to(features.device).bool())
        if not embeddings:
            raise DataError(None, f"the batch carries none of the modalities {self.modalities} "
                                  f"(keys: {sorted(batch)})")
        fused = nn.functional.normalize(self.fusion(embeddings, masks), dim=-1)
        masks[FUSED] = torch.stack(list(masks.values()), dim=1).any(dim=1)
        logits = {m: self.classifier(z) for m, z in embeddings.items()}
        logits[FUSED] = self.classifier(fused)
        out: dict[str, torch.Tensor] = {"logits": logits[FUSED], "z_fused": fused}
        for m, z in embeddings.items():
            out[f"z_{m}"] = z
            out[f"logits_{m}"] = logits[m]
            out[f"mask_{m}"] = masks[m]
        if "label" in batch:
            out.update(self.objective(embeddings, masks, logits, batch["label"]))
        return out

    def _check_dim(self, modality: str, features: torch.Tensor) -> None:
        expected = self.config.input_dims[modality]
        if features.ndim != 2 or features.shape[1] != expected:
            raise DataError(None, f"{modality} features have shape {tuple(features.shape)}, the joint model "
                                  f"expects [B, {expected}] (was it trained with another {modality} encoder?)")

    # ------------------------------------------------------------------ persistence
    def fingerprint(self) -> str:
        """A short hash of the config and all weights: the identity of this embedding space."""
        digest = hashlib.sha256(json.dumps(asdict(self.config), sort_keys=True).encode())
        for key, tensor in sorted(self.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return digest.hexdigest()[:16]

    def save(self, path: str | Path) -> Path:
        """Atomically write config and weights (towers included) to one ``torch.save`` file."""
        payload = {"format": "fgmm-joint-1", "config": asdict(self.config), "state_dict": self.state_dict(),
                   "towers": sorted(self.towers), "locked": sorted(self._locked)}
        return atomic_write(Path(path), lambda handle: torch.save(payload, handle))

    @classmethod
    def load(cls, path: str | Path, towers: Mapping[str, nn.Module] | None = None,
             map_location: str | torch.device = "cpu") -> JointEmbeddingModel:
        """Rebuild a model written by :meth:`save` (``weights_only=True``), in eval mode.

        Args:
            path: the saved file.
            towers: freshly built towers for the modalities that had one when saved (their saved
                weights are loaded into them).

        Raises:
            DataError: the file is missing, corrupt, not a joint model, or the towers do not match.
        """
        path = Path(path)
        if not path.is_file():
            raise DataError(path, "joint model file does not exist")
        try:
            payload = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt files
            raise DataError(path, f"cannot read the joint model ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        if not isinstance(payload, dict) or payload.get("format") != "fgmm-joint-1":
            raise DataError(path, "not an fgmm joint model (no 'fgmm-joint-1' format entry)")
        towers = dict(towers or {})
        if sorted(towers) != payload["towers"]:
            raise DataError(path, f"the model was saved with towers {payload['towers']}, "
                                  f"got towers {sorted(towers)}")
        model = cls(JointConfig(**payload["config"]), towers=towers, locked=payload["locked"])
        try:
            model.load_state_dict(payload["state_dict"])
        except RuntimeError as exc:
            raise DataError(path, f"weights do not fit the saved config ({str(exc).splitlines()[0]})") from None
        return model.eval()
