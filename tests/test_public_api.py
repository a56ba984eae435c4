"""`import fgmm` exposes a small, documented public API."""

from pathlib import Path

import pytest

import fgmm


@pytest.mark.parametrize("name", [n for n in fgmm.__all__ if n != "__version__"])
def test_public_names_resolve_and_are_documented(name: str) -> None:
    value = getattr(fgmm, name)
    assert value.__doc__, f"fgmm.{name} has no docstring"


def test_unknown_attribute() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fgmm.nope  # noqa: B018


def test_datasets_folder_holds_cards_not_code() -> None:
    # a top-level `datasets` Python package would shadow Hugging Face `datasets`
    root = Path(__file__).resolve().parents[1] / "datasets"
    assert root.is_dir()
    assert not list(root.rglob("*.py"))
    assert list(root.glob("*.md"))
