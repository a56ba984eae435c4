"""The noisy-label protocol and the ``noise`` task (fgmm.tasks.noise) on synthetic features."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fgmm.data.sample import MultiModalDataset, Sample
from fgmm.tasks import TaskContext, run_tasks
from fgmm.tasks.noise import ProtocolInputs, inject_noise, run_protocol

CLASSES, PER_CLASS = 6, 30


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _dataset(noise: float = 0.0, seed: int = 0) -> tuple[MultiModalDataset, torch.Tensor]:
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(CLASSES), PER_CLASS)
    features = torch.tensor(rng.normal(size=(CLASSES, 16))[truth] * 2 + rng.normal(size=(len(truth), 16))).float()
    split = ["test" if k % 5 == 0 else "train" for k in range(len(truth))]
    samples = []
    for i, c in enumerate(truth):
        label = int(c)
        if split[i] == "train" and rng.random() < noise:
            label = int((c + rng.integers(1, CLASSES)) % CLASSES)
        samples.append(Sample(id=str(i), label=label, meta={"clean_label": int(c)}))
    return MultiModalDataset(samples, [f"c{c}" for c in range(CLASSES)], split=split, name="synthetic"), features


def test_inject_noise_settings_hand_checked() -> None:
    labels = np.repeat(np.arange(10), 10)
    train, test = np.arange(0, 100, 2), np.arange(1, 100, 2)
    symmetric = inject_noise(labels, train, test, "symmetric", 0.2, seed=0)
    assert symmetric.noisy.sum() == 10 and (symmetric.labels != symmetric.clean).sum() == 10
    assert (symmetric.test_labels == labels[test]).all() and symmetric.setting == "symmetric-20"
    assert (inject_noise(labels, train, test, "symmetric", 0.2, seed=0).labels == symmetric.labels).all()
    openset = inject_noise(labels, train, test, "openset", 0.2, seed=0)
    assert openset.num_classes == 8 and len(openset.test) == 40  # 2 classes left the label set and the test set
    assert openset.noisy.sum() == 10 and (openset.clean[openset.noisy] == -1).all()
    assert (openset.labels >= 0).all() and (openset.labels < 8).all()


def test_protocol_recovers_planted_noise() -> None:
    dataset, features = _dataset()
    train, test = np.flatnonzero(np.array(dataset.split) == "train"), np.flatnonzero(np.array(dataset.split) == "test")
    noisy = inject_noise(dataset.labels, train, test, "symmetric", 0.2, seed=1)
    result = run_protocol(ProtocolInputs(image=features), noisy, ["crossmodal", "confident", "openset_msp"])
    assert result["clean_top1"] >= 0.95 and result["noise_rate"] == pytest.approx(0.2, abs=0.01)
    assert result["runs"]["crossmodal"]["f1"] >= 0.85 and result["runs"]["confident"]["f1"] >= 0.85
    assert result["runs"]["crossmodal"]["top1"] >= result["nofilter_top1"] - 0.02


def test_noise_task_reads_the_datasets_own_noise() -> None:
    dataset, features = _dataset(noise=0.2)
    ctx = TaskContext(dataset=dataset, features={"image": features})
    metrics = run_tasks(ctx, ["noise"])
    assert metrics["noise_rate"] == pytest.approx(np.mean([s.label != s.meta["clean_label"] for s, part in
                                                           zip(dataset, dataset.split, strict=True)
                                                           if part == "train"]))
    for key in ("noise_f1", "cleanlab_f1", "noisy_top1_nofilter", "noisy_top1_filtered", "noise_clean_top1"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["noise_f1"] >= 0.8
    assert ctx.shared["noise"]["setting"] == "given"
