"""fgmm never deletes or overwrites what it did not create: ownership markers, cache clear, stale temporaries."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from fgmm.cache import FeatureCache
from fgmm.cli.main import app
from fgmm.errors import OwnershipError
from fgmm.io import atomic_write, write_bytes_atomic
from fgmm.ownership import MARKER, check_new_file, claim_folder, is_owned, read_marker, remove_owned_folder
from fgmm.train.checkpoint import save_checkpoint

runner = CliRunner()


def rows(indices):
    return torch.ones(len(indices), 3)


# ---------------------------------------------------------------- the ownership rule
def test_claim_folder_rule(tmp_path):
    new = tmp_path / "new"
    assert claim_folder(new, "index")["fgmm"] == "index" and is_owned(new, "index")
    assert claim_folder(new, "index")["fgmm"] == "index"  # its own kind again: fine
    with pytest.raises(OwnershipError, match="fgmm index folder, not a run folder"):
        claim_folder(new, "run")
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(OwnershipError, match="not empty and was not created by fgmm.*--force"):
        claim_folder(user, "index")
    assert not (user / MARKER).exists()
    with pytest.raises(OwnershipError, match="notes.txt: exists and was not created by fgmm"):
        claim_folder(user, "index", force=True, reserved=["notes.txt"])
    marker = claim_folder(user, "index", force=True, reserved=["index.json"])
    assert marker["foreign"] == ["notes.txt"] and read_marker(user)["foreign"] == ["notes.txt"]
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(OwnershipError, match="is a file, not a folder"):
        claim_folder(afile, "index", force=True)


def test_remove_owned_folder_keeps_foreign_files(tmp_path):
    folder = tmp_path / "ns"
    folder.mkdir()
    (folder / "mine.txt").write_text("user")
    claim_folder(folder, "cache-namespace", force=True)
    (folder / "meta.json").write_text("{}")
    (folder / ".meta.json.99999999.abcd.tmp").write_text("torn")
    left = remove_owned_folder(folder, "cache-namespace", ["meta.json"])
    assert [p.name for p in left] == ["mine.txt"]
    assert sorted(os.listdir(folder)) == [MARKER, "mine.txt"]
    with pytest.raises(OwnershipError, match="not an fgmm run folder"):
        remove_owned_folder(folder, "run", ["*"])


def test_check_new_file(tmp_path):
    target = tmp_path / "out.ttl"
    assert check_new_file(target) == target
    target.write_text("x")
    with pytest.raises(OwnershipError, match="exists; pass --force"):
        check_new_file(target)
    assert check_new_file(target, force=True) == target
    with pytest.raises(OwnershipError, match="is a folder"):
        check_new_file(tmp_path, force=True)


# ---------------------------------------------------------------- item 1: cache clear
def test_cache_clear_refuses_folders_that_are_not_namespaces(tmp_path):
    home = tmp_path / "home"
    (home / "Documents").mkdir(parents=True)
    (home / "Documents" / "thesis.txt").write_text("x")
    result = runner.invoke(app, ["cache", "clear", "--cache", str(home), "--namespace", "Documents"])
    assert result.exit_code == 3 and "not an fgmm cache-namespace folder" in result.output
    assert (home / "Documents" / "thesis.txt").read_text() == "x"

    proj = tmp_path / "proj"
    (proj / "experiment1").mkdir(parents=True)
    (proj / "experiment1" / "meta.json").write_text("{}")
    (proj / "experiment1" / "results.csv").write_text("a")
    result = runner.invoke(app, ["cache", "clear", "--cache", str(proj)])
    assert result.exit_code == 0 and "removed 0 namespace" in result.output
    assert sorted(os.listdir(proj / "experiment1")) == ["meta.json", "results.csv"]


def test_cache_clear_deletes_only_its_own_files(tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    cache.lookup("ns", ["a", "b"], rows, progress=False)
    folder = tmp_path / "cache" / "ns"
    assert is_owned(folder, "cache-namespace")
    (folder / "keep.txt").write_text("user file dropped in later")
    with pytest.warns(UserWarning, match="kept 1 entry"):
        assert cache.clear("ns") == ["ns"]
    assert sorted(os.listdir(folder)) == [MARKER, "keep.txt"]
    assert [(row["namespace"], row["entries"]) for row in cache.info()] == [("ns", 0)]  # shards and meta gone


def test_cache_refuses_to_write_into_a_foreign_folder_and_adopts_legacy_namespaces(tmp_path):
    (tmp_path / "cache" / "ns").mkdir(parents=True)
    (tmp_path / "cache" / "ns" / "thesis.txt").write_text("x")
    with pytest.raises(OwnershipError, match="not empty and was not created by fgmm"):
        FeatureCache(tmp_path / "cache").lookup("ns", ["a"], rows, progress=False)
    legacy = tmp_path / "cache" / "old"
    legacy.mkdir()
    (legacy / "meta.json").write_text(json.dumps({"format": "fgmm-feature-cache/1", "namespace": "old"}))
    cache = FeatureCache(tmp_path / "cache")
    assert [row["namespace"] for row in cache.info()] == ["old"]
    cache.lookup("old", ["a"], rows, progress=False)
    assert read_marker(legacy)["fgmm"] == "cache-namespace"
    assert cache.clear() == ["old"] and not legacy.exists()


def test_failed_first_write_leaves_no_empty_namespace(tmp_path):
    def boom(indices):
        raise RuntimeError("encoder failed")

    with pytest.raises(RuntimeError):
        FeatureCache(tmp_path / "cache").lookup("ns", ["a"], boom, progress=False)
    assert not (tmp_path / "cache" / "ns").exists()


def test_cache_build_bad_sizes_are_usage_errors(tiny_cub, tmp_path):
    for option in (["--image-size", "0"], ["--batch-size", "0"], ["--batch-size", "-3"]):
        result = runner.invoke(app, ["cache", "build", str(tiny_cub), "--cache", str(tmp_path / "c"), *option])
        assert result.exit_code == 2 and "Invalid value" in result.output, result.output
    assert not (tmp_path / "c").exists()


# ---------------------------------------------------------------- item 10: stale temporaries
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_are_removed_on_the_next_save(tmp_path):
    path = tmp_path / "last.ckpt"
    save_checkpoint({"x": 1}, path)
    dead = _dead_pid()
    stale = tmp_path / f".last.ckpt.{dead}.0a1b2c3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    alive = tmp_path / f".last.ckpt.{os.getppid()}.0a1b2c3d.tmp"  # a running writer's file is kept
    alive.write_bytes(b"in progress")
    other = tmp_path / f".best.ckpt.{dead}.0a1b2c3d.tmp"
    other.write_bytes(b"another file's temporary")
    save_checkpoint({"x": 2}, path)
    assert not stale.exists() and alive.exists() and other.exists()
    write_bytes_atomic(tmp_path / "best.ckpt", b"x")
    atomic_write(tmp_path / "best.ckpt", lambda h: h.write(b"y"))
    assert not other.exists()
