"""Xian et al.'s proposed split (PS) of CUB: the shipped class lists, their loader and the ``zsl_ps`` task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fgmm.data.cub_ps import _read_classes, cub_ps_split
from fgmm.data.sample import MultiModalDataset, Sample
from fgmm.errors import DataError
from fgmm.tasks import TaskContext, run_tasks

ROOT = Path(__file__).resolve().parents[1]


def test_ps_lists_partition_the_200_cub_classes():
    split = cub_ps_split()
    assert len(split.seen) == 150 and len(split.unseen) == 50
    ids = sorted(int(folder[:3]) for folder in split.seen + split.unseen)
    assert ids == list(range(1, 201))
    # first and last lines of xlsa17's testclasses.txt; ImageNet-1k classes stay seen
    assert split.unseen[0] == "043.Yellow_bellied_Flycatcher" and split.unseen[-1] == "168.Kentucky_Warbler"
    assert {"001.Black_footed_Albatross", "014.Indigo_Bunting", "100.Brown_Pelican"} <= set(split.seen)
    folders = [f for _, f in sorted((int(f[:3]), f) for f in split.seen + split.unseen)]
    seen, unseen = split.labels(folders)
    assert unseen[:3] == [3, 11, 22] and len(seen) == 150 and not set(seen) & set(unseen)


def test_ps_split_rejects_other_datasets_and_bad_lists(tmp_path):
    with pytest.raises(DataError, match="needs the CUB-200-2011 classes; this dataset lacks 200"):
        cub_ps_split().labels(["001.Red_Test_Bird"])
    bad = tmp_path / "testclasses.txt"
    bad.write_text("043.Yellow_bellied_Flycatcher\nYellow bellied\n")
    with pytest.raises(DataError, match=r"testclasses.txt:2: malformed class 'Yellow bellied'"):
        _read_classes(bad, 2)
    bad.write_text("043.Yellow_bellied_Flycatcher\n043.Yellow_bellied_Flycatcher\n")
    with pytest.raises(DataError, match="expected 2 distinct classes, found 1"):
        _read_classes(bad, 2)


def test_datasets_folder_is_data_only_with_a_card():
    assert not [p for p in (ROOT / "datasets").rglob("*") if p.suffix in (".py", ".pyc")]
    card = (ROOT / "datasets" / "cub-zsl-ps.md").read_text()
    assert "naver-ai/pcme@7224f04e4f780545176e3bc5040ad9b9e78a5049" in card  # provenance of the copy
    assert "ImageNet" in card


def ps_context(tmp_path, per_class: int = 4, dim: int = 32, attributes: int = 40) -> TaskContext:
    """200 CUB-named classes whose image features are their attributes, projected, plus noise."""
    split = cub_ps_split()
    folders = [f for _, f in sorted((int(f[:3]), f) for f in split.seen + split.unseen)]
    rng = np.random.default_rng(0)
    matrix = (rng.random((200, attributes)) < 0.2).astype(np.float32)
    projection = rng.normal(size=(attributes, dim)) / np.sqrt(attributes)
    labels = np.repeat(np.arange(200), per_class)
    features = matrix[labels] @ projection + 0.2 * rng.normal(size=(len(labels), dim))
    samples = [Sample(id=str(i), label=int(y)) for i, y in enumerate(labels)]
    dataset = MultiModalDataset(samples=samples, class_names=[f[4:] for f in folders],
                                split=["test" if i % per_class == 0 else "train" for i in range(len(labels))],
                                attribute_names=[f"has_part::v{a}" for a in range(attributes)],
                                class_attributes=matrix, root=tmp_path, name="synthetic",
                                meta={"class_folders": folders})
    return TaskContext(dataset=dataset, features={"image": torch.tensor(features, dtype=torch.float32)}, quick=True)


def test_zsl_ps_task_reports_the_ps_keys(tmp_path, one_thread):
    import fgmm.tasks.zsl_ps  # noqa: F401  (registers the task)

    ctx = ps_context(tmp_path)
    metrics = run_tasks(ctx, ["zsl_ps"])
    assert {"zsl_ps_top1", "gzsl_ps_seen", "gzsl_ps_unseen", "gzsl_ps_h", "gzsl_ps_gamma"} <= set(metrics)
    assert "zsl_ps_unseen50_top1" not in metrics
    assert metrics["zsl_ps_top1"] > 0.5  # 50 unseen classes: chance is 0.02
    assert 0.0 < metrics["gzsl_ps_h"] <= 1.0
    assert ctx.unseen_classes == []  # the task does not change the caller's context


def test_zsl_ps_task_needs_cub_classes(tmp_path):
    import fgmm.tasks.zsl_ps  # noqa: F401

    ctx = ps_context(tmp_path)
    ctx.dataset.meta.pop("class_folders")
    with pytest.raises(DataError, match="zsl_ps task needs a CUB-200-2011 dataset"):
        run_tasks(ctx, ["zsl_ps"])
