"""The example scripts import and build on the current API (running them needs encoder weights and minutes)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.py"))
REMOVED = ("fgmm.joint", "fgmm.models.classifier", "fgmm.zeroshot")
"""Modules the one model replaced: examples must not teach them."""


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_imports_and_uses_the_one_model(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not [m for m in modules if m.startswith(REMOVED)], modules
    assert "create_model" in {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                              for alias in node.names}
    spec = importlib.util.spec_from_file_location(f"example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports resolve; main() is not run
    assert callable(module.main)
