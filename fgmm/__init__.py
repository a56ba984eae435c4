"""fgmm: multi-modal, knowledge-augmented fine-grained visual recognition."""

__version__ = "0.1.0"
