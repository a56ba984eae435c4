"""``benchmarks/text_expert.py``: the text expert is compared on an inner split of the training images only."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from test_text_tasks import context

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def text_expert():
    spec = importlib.util.spec_from_file_location("benchmark_text_expert", ROOT / "benchmarks" / "text_expert.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_text_model_and_shrinkage_is_scored_on_the_inner_split(text_expert, tiny_procedural, one_thread,
                                                                      monkeypatch):
    monkeypatch.setattr(text_expert, "TEXT_MODELS", ("word-ngrams",))  # MiniLM is exercised by the text tasks
    results = text_expert.validate(context(tiny_procedural))
    assert set(results) == {"image", "word-ngrams, shrinkage 1", "word-ngrams, shrinkage 3"}
    assert 0.0 <= results["image"] <= 1.0
    for name in ("word-ngrams, shrinkage 1", "word-ngrams, shrinkage 3"):
        assert set(results[name]) == {"fused", "text_alone"}
        assert all(0.0 <= value <= 1.0 for value in results[name].values())
