"""Indexes and knowledge-graph outputs: no silent overwrites, paths that work from anywhere, no network.

Issue 8 items 6 (index build, kg export / import-cub / show), 8 (index paths) and 9 (SPARQL SERVICE).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from fgmm.cli.main import app
from fgmm.errors import ConfigError, OwnershipError
from fgmm.kg import KnowledgeGraph
from fgmm.retrieval import EmbeddingIndex
from fgmm.retrieval.index import IndexInfo

runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result, " ".join(result.output.split())


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def photos(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for name, colour in (("red", (200, 30, 30)), ("blue", (30, 30, 200))):
        (root / name).mkdir(parents=True)
        for i in range(2):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (48, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{name}{i}.jpg")
    return root


# ---------------------------------------------------------------- item 8: index paths
def test_index_paths_are_stored_relative_to_the_index(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photos(tmp_path / "photos")
    index = EmbeddingIndex(IndexInfo(dim=3, modality="image", space="s"))
    index.add(torch.eye(3)[:2], ids=["a", "b"], paths=["photos/red/red0.jpg", None])
    index.save("project/index")
    assert '"../../photos/red/red0.jpg"' in (tmp_path / "project" / "index" / "items.json").read_text()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = EmbeddingIndex.load(tmp_path / "project" / "index")
    assert Path(loaded.paths[0]) == tmp_path / "photos" / "red" / "red0.jpg" and loaded.paths[1] is None
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(tmp_path / "project", moved / "project")
    shutil.move(tmp_path / "photos", moved / "photos")
    assert Path(EmbeddingIndex.load(moved / "project" / "index").paths[0]).is_file()


def test_index_built_from_a_relative_folder_works_from_another_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    photos(tmp_path / "photos")
    built, text = invoke("index", "build", "--images", "photos", "--out", "idx", "--vision", "efficientnet_lite0",
                         "--image-size", "32")
    assert built.exit_code == 0, text
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    found, text = invoke("retrieve", "--index", tmp_path / "idx", "--image", tmp_path / "photos" / "red" / "red0.jpg",
                         "-k", "2", "--grid", "grid.png", "--json")
    assert found.exit_code == 0, text
    assert (tmp_path / "other" / "grid.png").stat().st_size > 0
    again, text = invoke("retrieve", "--index", tmp_path / "idx", "--text", "x", "--grid", "grid.png")
    assert again.exit_code == 3 and "exists; pass --force" in text

    # item 6: folders that are not fgmm indexes (refused before anything is encoded)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.json").write_text("my own index.json")
    for extra in ([], ["--force"]):
        refused, text = invoke("index", "build", "--texts", tmp_path / "nothing.txt", "--out", mine, *extra)
        assert refused.exit_code == 3 and "Traceback" not in text
        assert ("index.json: exists and was not created by fgmm" if extra else "not empty") in text
    assert (mine / "index.json").read_text() == "my own index.json"
    afile = tmp_path / "afile"
    afile.write_text("x")
    refused, text = invoke("index", "build", "--texts", afile, "--out", afile)
    assert refused.exit_code == 3 and "is a file, not a folder" in text


def test_saving_an_index_into_a_foreign_folder(tmp_path):
    index = EmbeddingIndex(IndexInfo(dim=2, modality="text", space="s"))
    index.add(torch.eye(2), ids=["a", "b"])
    (tmp_path / "notes.txt").write_text("keep")
    with pytest.raises(OwnershipError, match="not empty"):
        index.save(tmp_path)
    index.save(tmp_path, force=True)
    assert (tmp_path / "notes.txt").read_text() == "keep" and len(EmbeddingIndex.load(tmp_path)) == 2
    index.add(torch.ones(1, 2), ids=["c"])
    index.save(tmp_path)  # an fgmm index folder is rebuilt in place
    assert len(EmbeddingIndex.load(tmp_path)) == 3


# ---------------------------------------------------------------- item 6: knowledge-graph outputs
def test_kg_outputs_need_force_to_overwrite(tiny_cub, tmp_path):
    graph = tmp_path / "g.ttl"
    KnowledgeGraph(title="t").save(graph)
    kg = KnowledgeGraph.load(graph)
    kg.add_class("Gull")
    kg.save(graph)
    existing = tmp_path / "existing"
    existing.write_text("user data")
    for args in (["kg", "export", graph, existing], ["kg", "import-cub", tiny_cub, "--out", existing],
                 ["kg", "show", graph, "Gull", "--out", existing]):
        result, text = invoke(*args)
        assert result.exit_code == 3 and "exists; pass --force" in text, text
        assert existing.read_text() == "user data"
    result, text = invoke("kg", "export", graph, tmp_path, "--force")
    assert result.exit_code == 3 and "is a folder" in text
    result, text = invoke("kg", "export", graph, tmp_path / "g.nt")
    assert result.exit_code == 0, text
    result, _ = invoke("kg", "export", graph, tmp_path / "g.nt", "--force")
    assert result.exit_code == 0


# ---------------------------------------------------------------- item 9: no network from SPARQL
@pytest.mark.parametrize("sparql", [
    "SELECT ?s WHERE { SERVICE <http://example.org/sparql> { ?s ?p ?o } }",
    "SELECT ?s WHERE { ?s ?p ?o . SERVICE SILENT <http://127.0.0.1:9/q> { ?s ?q ?r } }",
    "SELECT ?s FROM <http://example.org/graph.ttl> WHERE { ?s ?p ?o }",
    "SELECT ?s FROM NAMED <http://example.org/g> WHERE { GRAPH ?g { ?s ?p ?o } }",
])
def test_remote_sparql_is_refused(sparql, tmp_path, monkeypatch):
    import urllib.request

    def no_network(*args, **kwargs):
        raise AssertionError("fgmm tried to use the network")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    kg = KnowledgeGraph()
    with pytest.raises(ConfigError, match="refused: fgmm queries only the loaded graph"):
        kg.query(sparql)
    graph = tmp_path / "g.ttl"
    kg.save(graph)
    result, text = invoke("kg", "query", graph, sparql)
    assert result.exit_code == 3 and "refused" in text and "Traceback" not in text
