"""Every generated results table in README.md and benchmarks/README.md matches its committed JSON."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_tables():
    spec = importlib.util.spec_from_file_location("benchmark_tables", ROOT / "benchmarks" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_generated_tables_are_up_to_date():
    tables = load_tables()
    assert tables.main(["--check"]) == 0


def test_every_table_is_placed_in_a_document_and_every_source_is_committed():
    tables = load_tables()
    text = "".join(document.read_text(encoding="utf-8") for document in tables.DOCUMENTS)
    for name, table in tables.TABLES.items():
        assert f"<!-- table:{name} -->" in text and f"<!-- /table:{name} -->" in text, name
        for source in table.sources:
            assert (ROOT / "benchmarks" / "results" / source.partition(":seed")[0]).is_file(), source


def test_values_print_as_percent_or_fraction_with_sd():
    tables = load_tables()
    assert tables._value({"a": 0.7412}, "a", "pct") == "74.1"
    assert tables._value({"a": 0.2468, "sd": {"a": 0.0123}}, "a", "frac") == "0.247 ± 0.012"
    assert tables._value({}, "a", "pct") == "–"
