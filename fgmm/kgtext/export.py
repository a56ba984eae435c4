"""Serving a trained :class:`~fgmm.kgtext.KGTextSpace` with the retrieval index and ``fgmm retrieve``.

:func:`export_retrieval_model` writes ``joint.pt`` (the space as a :class:`fgmm.joint.JointEmbeddingModel`)
and, for a fine-tuned text tower, its sentence-transformers folder ``text-encoder/``; then::

    fgmm index build --images photos/ --model OUT/joint.pt --text-model OUT/text-encoder --out photo-index
    fgmm retrieve --index photo-index --text "a small flycatcher with a brilliant red crown and underparts"
"""

from __future__ import annotations

from pathlib import Path

from fgmm.encoders import create_encoder
from fgmm.encoders.text import TextEncoder
from fgmm.errors import DataError
from fgmm.kgtext.model import KGTextSpace

JOINT_FILE = "joint.pt"
TEXT_ENCODER_DIR = "text-encoder"


def save_text_encoder(encoder: TextEncoder, folder: str | Path) -> TextEncoder:
    """Save a (fine-tuned) sentence-transformers text encoder as a model folder; returns it reloaded
    from there (``create_encoder("text", folder)``), whose fingerprint an index records.

    Raises:
        DataError: ``folder`` exists and is not empty (fgmm does not overwrite what it did not write).
    """
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise DataError(folder, "folder exists and is not empty; choose a new one")
    model = getattr(encoder.backbone, "model", None)
    if model is None or not hasattr(model, "save"):
        raise DataError(folder, f"text encoder '{encoder.name}' is not a sentence-transformers model; cannot save it")
    model.save(str(folder))
    return create_encoder("text", str(folder))


def export_retrieval_model(space: KGTextSpace, out_dir: str | Path, text_encoder: TextEncoder | None = None,
                           image_fingerprint: str | None = None) -> Path:
    """Write ``out_dir/joint.pt`` (and ``out_dir/text-encoder/`` for a tuned tower); returns ``out_dir``.

    Args:
        space: the trained space.
        out_dir: a new or empty folder.
        text_encoder: the tuned text tower, or ``None`` when the space reads the default frozen encoder.
        image_fingerprint: fingerprint of the vision encoder the image features came from (checked at
            index time), or ``None`` to skip the check.
    """
    out_dir = Path(out_dir)
    encoders = {} if image_fingerprint is None else {"image": image_fingerprint}
    if text_encoder is not None:
        encoders["text"] = save_text_encoder(text_encoder, out_dir / TEXT_ENCODER_DIR).fingerprint()
    out_dir.mkdir(parents=True, exist_ok=True)
    space.to_joint(encoders).save(out_dir / JOINT_FILE)
    return out_dir
