"""The text and retrieval tasks on the one model, on the tiny procedural set (no real text encoder)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fgmm.encoders.ngrams import NGRAM_FEATURES
from fgmm.tasks import TaskContext, run_tasks
from fgmm.tasks.text import captioned, captioned_classes, product_run, text_run


class HashedWords:
    """Stand-in for the text encoder in task tests: a fixed random vector per word, summed."""

    dim = 24

    def fingerprint(self) -> str:
        return "hashed-words"

    def encode_cached(self, texts, cache=None, progress=False) -> torch.Tensor:
        vectors = [sum((torch.randn(self.dim, generator=torch.Generator().manual_seed(sum(map(ord, w))))
                        for w in text.split()), torch.zeros(self.dim)) for text in texts]
        return F.normalize(torch.stack(vectors), dim=1)


def context(dataset, **options) -> TaskContext:
    labels = torch.as_tensor(dataset.labels).clamp(min=0)
    image = F.one_hot(labels, 6).float() + 0.8 * torch.randn(len(labels), 6, generator=torch.Generator().manual_seed(0))
    return TaskContext(dataset=dataset, features={"image": image}, quick=True,
                       shared={"text_encoder": HashedWords()}, **options)


def test_text_and_retrieval_tasks_on_the_tiny_procedural_set(tiny_procedural, one_thread):
    ctx = context(tiny_procedural)
    metrics = run_tasks(ctx, ["text", "retrieval"])
    contract = {"image_top1_50", "fused_top1_50", "i2t_R@1", "i2t_R@5", "i2t_R@10", "t2i_R@1", "t2i_R@5",
                "t2i_R@10", "i2t_mAP", "t2i_mAP"}
    assert contract | {f"{key}_caption" for key in contract if key.startswith(("i2t", "t2i"))} <= set(metrics)
    assert all(0.0 <= metrics[key] <= 1.0 for key in contract)
    assert "fused_top1" not in metrics  # the text classes are every captioned class: no second model
    # product of experts: the text's own classifier can only add to the image's on this set
    assert metrics["fused_top1_50_product"] >= metrics["image_top1_50"] - 0.15
    run = text_run(ctx)  # trained once, shared by both tasks
    assert len(run.classes) == 4 and len(run.test) == len(captioned(ctx, "test")) - 2 * 8  # unseen classes left out
    assert len(run.test) == 8 and metrics["i2t_R@10"] == metrics["t2i_R@10"] == 1.0  # 8 documents: all in a top 10
    image_only = text_run(ctx, with_text=False)
    assert image_only is not run and image_only.classes == run.classes


def test_text_classes_restrict_the_tasks_and_add_the_all_class_fusion_key(tiny_procedural, one_thread):
    ctx = context(tiny_procedural, text_classes=[0, 1])
    metrics = run_tasks(ctx, ["text"])
    assert text_run(ctx).classes == [0, 1]
    for key in ("fused_top1", "fused_top1_minilm", "fused_top1_joint", "fused_top1_50_product"):
        assert 0.0 <= metrics[key] <= 1.0  # fused_top1*: every captioned class
    every = captioned_classes(ctx)
    ngrams, minilm = product_run(ctx, every, "image-text-ngrams"), product_run(ctx, every)
    assert ngrams.text.dim == NGRAM_FEATURES and minilm.text.dim == HashedWords.dim  # each preset's own text model
    assert ngrams.model.priors["text"].whitening.shrinkage == 3.0


def test_retrieval_fine_tunes_a_copy_of_the_text_tower_and_reports_the_tuned_caption_keys(tiny_procedural, one_thread):
    from fgmm.encoders import create_encoder
    from fgmm.tasks.text import tuned_tower

    encoder = create_encoder("text")  # MiniLM, offline
    ctx = context(tiny_procedural)
    ctx.shared["text_encoder"] = encoder
    before = [p.detach().clone() for p in encoder.parameters()]
    metrics = run_tasks(ctx, ["retrieval"])
    for key in ("i2t_mAP_caption_tuned", "t2i_mAP_caption_tuned", "i2t_R@1_caption_tuned", "t2i_R@1_caption_tuned"):
        assert 0.0 < metrics[key] <= 1.0
    assert all(torch.equal(a, b) for a, b in zip(before, encoder.parameters(), strict=True))  # the context's tower
    run = text_run(ctx)
    model, features, owner = tuned_tower(ctx, run)
    assert model is not run.model and features.shape == (len(owner), encoder.dim)
    assert owner.tolist() == sorted(owner.tolist()) and owner.max().item() == len(run.test) - 1
    pairs = zip(model.projections["text"].parameters(), run.model.projections["text"].parameters(), strict=True)
    assert not all(torch.equal(a, b) for a, b in pairs)  # the copy's text projection was tuned, the run's kept


def test_the_all_class_product_fuses_texts_of_a_tower_tuned_towards_its_own_text_expert(tiny_procedural, one_thread):
    from fgmm.encoders import create_encoder
    from fgmm.tasks.text import captioned_classes, product_run, tuned_product_texts

    encoder = create_encoder("text")  # MiniLM, offline
    ctx = context(tiny_procedural, text_classes=[0, 1])
    ctx.shared["text_encoder"] = encoder
    before = [p.detach().clone() for p in encoder.parameters()]
    metrics = run_tasks(ctx, ["text_tuned"])
    assert set(metrics) == {"fused_top1_tuned", "seconds"} and 0.0 < metrics["fused_top1_tuned"] <= 1.0
    assert all(torch.equal(a, b) for a, b in zip(before, encoder.parameters(), strict=True))  # the context's tower
    run = product_run(ctx, captioned_classes(ctx))
    expert = {k: v.clone() for k, v in run.model.priors["text"].state_dict().items()}
    tuned = tuned_product_texts(ctx, run)
    assert [len(rows) for rows in tuned.rows] == [len(ctx.dataset[i].texts) for i in run.test]
    frozen = run.test_texts()
    assert tuned.features.shape == (len(frozen.expand()[0]), encoder.dim)
    assert not torch.allclose(tuned.pooled(), frozen.pooled(), atol=1e-4)  # encoded by the tuned copy
    assert all(torch.equal(v, run.model.priors["text"].state_dict()[k]) for k, v in expert.items())  # model unchanged
