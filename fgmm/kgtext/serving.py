"""Serving an :class:`fgmm.FGModel` whose text tower was fine-tuned: one folder for ``fgmm index build --model``.

:func:`save_served_model` writes::

    out_dir/
      text-encoder/   the tuned sentence-transformers model (when there is one)
      model/          the FGModel (FGModel.save_pretrained); its text modality names text-encoder/

so that the model's own encoders are rebuilt (and checked against the recorded fingerprints) by every
command that loads it::

    fgmm index build --images photos/ --model out_dir --out photo-index
    fgmm retrieve --index photo-index --text "a small flycatcher with a brilliant red crown and underparts"
"""

from __future__ import annotations

from pathlib import Path

from fgmm.encoders import create_encoder
from fgmm.encoders.text import TextEncoder
from fgmm.errors import DataError
from fgmm.space.inputs import describe_encoder

TEXT_ENCODER_DIR = "text-encoder"
MODEL_DIR = "model"


def save_text_encoder(encoder: TextEncoder, folder: str | Path) -> TextEncoder:
    """Save a (fine-tuned) sentence-transformers text encoder as a model folder; returns it reloaded
    from there (``create_encoder("text", folder)``), whose fingerprint a model records.

    Raises:
        DataError: ``folder`` exists and is not empty (fgmm does not overwrite what it did not write), or
            the encoder is not a sentence-transformers model.
    """
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise DataError(folder, "folder exists and is not empty; choose a new one")
    model = getattr(encoder.backbone, "model", None)
    if model is None or not hasattr(model, "save"):
        raise DataError(folder, f"text encoder '{encoder.name}' is not a sentence-transformers model; cannot save it")
    model.save(str(folder))
    return create_encoder("text", str(folder.resolve()))


def save_served_model(model, out_dir: str | Path, text_encoder: TextEncoder | None = None) -> Path:
    """Write ``out_dir/model`` (and ``out_dir/text-encoder`` for a tuned tower); returns ``out_dir``.

    Args:
        model: the trained :class:`fgmm.FGModel` (with a ``"text"`` modality when ``text_encoder`` is given).
        out_dir: a new or empty folder.
        text_encoder: the tuned text tower the model's text side was trained with, or ``None`` when the
            model reads the encoder its config names. The model's text modality is pointed at the saved
            copy (an absolute path: keep ``out_dir`` where it is, or rebuild indexes after moving it).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise DataError(out_dir, "folder exists and is not empty; choose a new one")
    if text_encoder is not None:
        if "text" not in model.config.modalities:
            raise DataError(out_dir, f"the model has no text modality (it has {model.modalities})")
        saved = save_text_encoder(text_encoder, out_dir / TEXT_ENCODER_DIR)
        model.config.modalities["text"].encoder = saved.name
        model._encoders["text"] = saved
        model.encoder_info["text"] = describe_encoder(saved)
    model.save_pretrained(out_dir / MODEL_DIR)
    return out_dir
