"""Trainer: exact resume, gradient accumulation, early stopping, logs, evaluation; classifier heads."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
import torch
from _ddp_worker import IN_DIM, NUM_CLASSES, DictDataset, toy_data, toy_model
from torch import nn

from fgmm.errors import ConfigError, MissingExtraError
from fgmm.models import HEADS, CosineClassifier, FeatureClassifier, LinearHead, create_head
from fgmm.train import TrainConfig, Trainer, load_checkpoint


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def config(tmp_path, name="run", **overrides) -> TrainConfig:
    base = {"epochs": 3, "batch_size": 8, "lr": 0.05, "seed": 7, "progress": False, "out_dir": tmp_path / name,
            "log_every_steps": 2}
    return TrainConfig(**{**base, **overrides})


def train(cfg: TrainConfig, train_data=None, val_data=None, dropout=0.3, resume=True):
    model = toy_model(dropout=dropout)
    trainer = Trainer(model, cfg, train_data or toy_data(40), val_data)
    return model, trainer.fit(resume=resume)


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(x, y), name


# ---------------------------------------------------------------- exact resume
@pytest.mark.parametrize(("accum", "stop"), [(1, 5), (1, 7), (2, 3), (2, 4)],
                         ids=["epoch-boundary", "mid-epoch", "accum-epoch-boundary", "accum-mid-epoch"])
def test_resume_is_exact(tmp_path, accum, stop):
    # 40 samples / batch 8 = 5 micro-batches per epoch: 5 steps per epoch, or 3 (2+2+1) with accum=2
    val = toy_data(12, seed=5)
    whole, full = train(config(tmp_path, "whole", grad_accum_steps=accum), val_data=val)

    cut = config(tmp_path, "cut", grad_accum_steps=accum, max_steps=stop)
    _, first = train(cut, val_data=val)
    assert first.stop_reason == "max_steps" and first.steps == stop
    state = load_checkpoint(cut.out_dir / "last.ckpt")
    assert state["global_step"] == stop
    resumed_model, second = train(config(tmp_path, "cut", grad_accum_steps=accum), val_data=val)

    assert second.steps == full.steps and second.stop_reason == "completed"
    assert_same_weights(resumed_model, whole)
    for a, b in zip(second.history, full.history, strict=True):
        assert a.keys() == b.keys()
        assert all(a[k] == pytest.approx(b[k], rel=1e-6) for k in a if k != "seconds")


class CrashingDataset(DictDataset):
    """Raises once it has served ``crash_after`` items (a simulated crash mid-epoch)."""

    def __init__(self, base: DictDataset, crash_after: int):
        super().__init__(**base.columns)
        self.served, self.crash_after = 0, crash_after

    def __getitem__(self, index):
        self.served += 1
        if self.served > self.crash_after:
            raise RuntimeError("simulated crash")
        return super().__getitem__(index)


def test_resume_after_crash_with_periodic_checkpoints(tmp_path):
    whole, _ = train(config(tmp_path, "whole"))
    cfg = config(tmp_path, "crash", checkpoint_every_steps=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(cfg, train_data=CrashingDataset(toy_data(40), crash_after=8 * 8 + 3))  # dies in step 9
    assert load_checkpoint(cfg.out_dir / "last.ckpt")["global_step"] == 8
    logged = [json.loads(line)["step"] for line in (cfg.out_dir / "metrics.jsonl").read_text().splitlines()]
    assert max(logged) == 8

    resumed, result = train(cfg)
    assert result.steps == 15
    assert_same_weights(resumed, whole)
    steps = [json.loads(line)["step"] for line in (cfg.out_dir / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["event"] == "train"]
    assert steps == sorted(set(steps))  # no duplicate lines from the steps replayed after the crash


def test_resume_false_starts_over_and_config_change_is_refused(tmp_path):
    cfg = config(tmp_path, max_steps=4)
    train(cfg)
    _, again = train(config(tmp_path, max_steps=2), resume=False)
    assert again.steps == 2
    with pytest.raises(ConfigError, match=r"last\.ckpt: the checkpoint was written with lr=0\.05"):
        train(config(tmp_path, lr=0.1))


def test_unlabelled_batches_are_skipped_not_nan(tmp_path):
    data = toy_data(12)
    data.columns["label"][::2] = -1  # with batch size 1, every other batch has no label at all
    model, result = train(config(tmp_path, batch_size=1, epochs=2), train_data=data, dropout=0.0)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(line.get("loss") is None or math.isfinite(line["loss"]) for line in lines)


# ---------------------------------------------------------------- gradient accumulation
def test_grad_accumulation_matches_larger_batch(tmp_path):
    common = {"epochs": 1, "optimizer": "sgd", "scheduler": "constant", "weight_decay": 0.0, "momentum": 0.9}
    data = toy_data(32)
    big, big_result = train(config(tmp_path, "big", batch_size=8, **common), train_data=data, dropout=0.0)
    small, small_result = train(config(tmp_path, "small", batch_size=4, grad_accum_steps=2, **common),
                                train_data=data, dropout=0.0)
    assert big_result.steps == small_result.steps == 4
    for x, y in zip(big.parameters(), small.parameters(), strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    initial = toy_model().head.weight
    assert not torch.allclose(initial, big.head.weight)  # it did train


# ---------------------------------------------------------------- early stopping
def test_early_stopping_stops_and_restores_best(tmp_path):
    train_data = toy_data(48)
    flipped = toy_data(24, seed=3)
    flipped.columns["label"] = (flipped.columns["label"] + 1) % NUM_CLASSES  # learning makes val worse
    cfg = config(tmp_path, epochs=20, early_stopping_patience=2, monitor="loss", monitor_mode="min",
                 restore_best=True)
    model, result = train(cfg, train_data=train_data, val_data=flipped, dropout=0.0)

    assert result.stop_reason == "early_stopping"
    assert len(result.history) == 3 and result.best_epoch == 0
    assert result.best_metric == result.history[0]["val_loss"] < result.history[-1]["val_loss"]
    best = load_checkpoint(result.best_checkpoint)
    last = load_checkpoint(result.last_checkpoint)
    assert best["epoch"] == 1 and last["epoch"] == 3
    for name, value in model.state_dict().items():
        assert torch.equal(value, best["model"][name])
    assert not torch.equal(model.head.weight, last["model"]["head.weight"])

    with pytest.raises(ConfigError, match="has finished \\(early_stopping"):  # a stopped run is not resumed
        train(cfg, train_data=train_data, val_data=flipped, dropout=0.0)


def test_unknown_monitor_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="'top5' is not a validation metric; available: loss, top1"):
        train(config(tmp_path, monitor="top5"), val_data=toy_data(6))


# ---------------------------------------------------------------- logs, evaluation, prediction
def test_metrics_log_lines_and_csv(tmp_path):
    cfg = config(tmp_path, csv_log=True)
    _, result = train(cfg, val_data=toy_data(12, seed=2))
    lines = [json.loads(line) for line in (cfg.out_dir / "metrics.jsonl").read_text().splitlines()]
    train_lines = [r for r in lines if r["event"] == "train"]
    epoch_lines = [r for r in lines if r["event"] == "epoch"]
    assert [r["step"] for r in train_lines] == [2, 4, 6, 8, 10, 12, 14]
    assert all({"step", "epoch", "loss", "lr", "seconds"} <= r.keys() for r in train_lines)
    assert len(epoch_lines) == 3
    assert all({"step", "epoch", "train_loss", "lr", "val_loss", "val_top1", "seconds"} <= r.keys()
               for r in epoch_lines)
    assert epoch_lines[-1]["train_loss"] < epoch_lines[0]["train_loss"]
    assert [r["step"] for r in epoch_lines] == [5, 10, 15] == [h["step"] for h in result.history]
    csv_rows = (cfg.out_dir / "metrics.csv").read_text().splitlines()
    assert csv_rows[0].split(",")[:3] == ["epoch", "step", "train_loss"] and len(csv_rows) == 4
    assert json.loads((cfg.out_dir / "config.json").read_text())["lr"] == 0.05


def test_tensorboard_is_optional(tmp_path):
    cfg = config(tmp_path, tensorboard=True, epochs=1)
    if importlib.util.find_spec("tensorboard") is None:
        with pytest.raises(MissingExtraError, match=r"'tensorboard'.*fgmm\[tensorboard\]"):
            train(cfg)
    else:
        train(cfg)
        assert list((cfg.out_dir / "tensorboard").iterdir())


def test_evaluate_predict_and_metrics_fn(tmp_path):
    model = toy_model()
    data = toy_data(20, seed=4)
    data.columns["label"][:5] = -1  # unlabelled rows are ignored by loss and top-1
    seen = {}

    def metrics_fn(logits, labels):
        seen["rows"] = len(logits)
        return {"mean_logit": logits.mean().item()}

    trainer = Trainer(model, config(tmp_path, epochs=4), toy_data(60), metrics_fn=metrics_fn)
    trainer.fit()
    metrics = trainer.evaluate(data)
    logits = trainer.predict(data)
    assert logits.shape == (20, NUM_CLASSES) and seen["rows"] == 20
    expected = model.eval()({"features": data.columns["features"]})["logits"]
    torch.testing.assert_close(logits, expected)
    valid = data.columns["label"] != -1
    top1 = (expected.argmax(1) == data.columns["label"])[valid].float().mean().item()
    loss = nn.functional.cross_entropy(expected[valid], data.columns["label"][valid]).item()
    assert metrics["top1"] == pytest.approx(top1) and metrics["loss"] == pytest.approx(loss, rel=1e-5)
    assert metrics["mean_logit"] == pytest.approx(expected.mean().item(), rel=1e-5)
    assert metrics["top1"] > 0.8


class OwnLoss(nn.Module):
    """A model that returns its own loss (squared distance to a target) and no logits."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(IN_DIM, 2)

    def forward(self, batch):
        return {"loss": (self.proj(batch["features"]) - 1.0).pow(2).mean()}


def test_model_provided_loss_and_unlabelled_predict(tmp_path):
    trainer = Trainer(OwnLoss(), config(tmp_path, epochs=5, lr=0.1), toy_data(40))
    result = trainer.fit()
    assert result.history[-1]["train_loss"] < 0.2 * result.history[0]["train_loss"]
    data = toy_data(8)
    metrics = trainer.evaluate(data)
    expected = trainer.model.eval()({"features": data.columns["features"]})["loss"].item()
    assert metrics.keys() == {"loss"} and metrics["loss"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(TypeError, match="no 'logits'"):
        trainer.predict(toy_data(8))

    classifier = Trainer(toy_model(), config(tmp_path, "cls", epochs=1), toy_data(16))
    unlabelled = DictDataset(features=torch.randn(7, IN_DIM))
    assert classifier.predict(unlabelled).shape == (7, NUM_CLASSES)


def test_bad_batches_and_settings(tmp_path):
    tuples = torch.utils.data.TensorDataset(torch.randn(8, IN_DIM), torch.zeros(8, dtype=torch.long))
    with pytest.raises(TypeError, match="batches must be dicts"):
        Trainer(toy_model(), config(tmp_path), tuples).fit()
    with pytest.raises(ConfigError, match="unknown optimizer 'lamb'; choose one of: adamw, sgd"):
        Trainer(toy_model(), config(tmp_path, optimizer="lamb"), toy_data(8))
    with pytest.raises(ConfigError, match="unknown scheduler"):
        Trainer(toy_model(), config(tmp_path, scheduler="step"), toy_data(8))


@pytest.mark.parametrize("amp", ["auto", "bf16", "fp16"])
def test_amp_modes_and_progress_bar_on_cpu(tmp_path, amp, capsys):
    model = toy_model(dropout=0.0)
    trainer = Trainer(model, config(tmp_path, amp=amp, progress=True, grad_clip=1.0, epochs=2), toy_data(40))
    assert trainer.amp_dtype == {"auto": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
    assert trainer.scaler.is_enabled() == (amp == "fp16")
    result = trainer.fit()
    assert all(math.isfinite(h["train_loss"]) for h in result.history)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert "epoch 2/2" in capsys.readouterr().err


def test_cosine_schedule_spans_epochs_not_max_steps(tmp_path):
    trainer = Trainer(toy_model(), config(tmp_path, epochs=2, warmup_steps=2, max_steps=3), toy_data(40))
    lrs = []
    for _ in range(10):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.scheduler.step()
    assert lrs[0] == pytest.approx(0.025) and lrs[1] == pytest.approx(0.05)
    assert lrs[2] == pytest.approx(0.05) and lrs[9] == pytest.approx(0.05 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))


# ---------------------------------------------------------------- heads
def test_linear_and_cosine_heads_shapes_and_math():
    x = torch.randn(5, 16)
    assert LinearHead(16, 7)(x).shape == (5, 7)
    head = CosineClassifier(16, 7, scale=4.0)
    logits = head(x)
    assert logits.shape == (5, 7)
    cos = nn.functional.cosine_similarity(x[:, None, :], head.weight[None, :, :], dim=-1)
    torch.testing.assert_close(logits, 4.0 * cos)
    assert float(logits.detach().abs().max()) <= 4.0 + 1e-5
    assert HEADS.names() == ["cosine", "linear"]
    assert isinstance(create_head("linear", in_dim=16, num_classes=3), LinearHead)


def test_cosine_head_with_external_weights_and_gradients():
    head = CosineClassifier(16, num_classes=None)
    gnn_out = torch.randn(11, 16, requires_grad=True)  # e.g. class embeddings from a GNN
    x = torch.randn(4, 16, requires_grad=True)
    logits = head(x, weights=gnn_out)
    assert logits.shape == (4, 11)
    logits.logsumexp(1).sum().backward()
    assert gnn_out.grad is not None and x.grad is not None and head.log_scale.grad is not None
    with pytest.raises(ValueError, match="pass weights"):
        head(x)
    with pytest.raises(ValueError, match="dimension 8, features 16"):
        head(x, weights=torch.randn(3, 8))
    fixed = CosineClassifier(16, 3, learn_scale=False)
    assert [n for n, _ in fixed.named_parameters()] == ["weight"]


def test_feature_classifier_adapts_batches():
    provider = nn.Linear(1, 16 * 5)  # stands in for a GNN producing 5 class vectors

    class Provider(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = provider

        def forward(self):
            return self.net(torch.ones(1)).view(5, 16)

    model = FeatureClassifier(CosineClassifier(16), input_key="emb", normalize=True, dropout=0.5,
                              class_weights=Provider())
    out = model({"emb": torch.randn(6, 16)})
    assert out["logits"].shape == (6, 5)
    out["logits"].sum().backward()
    assert provider.weight.grad is not None
    model.eval()
    x = torch.randn(3, 16)
    torch.testing.assert_close(model({"emb": x})["logits"], model({"emb": 10 * x})["logits"])  # normalised

    fixed = FeatureClassifier(CosineClassifier(16), class_weights=torch.randn(4, 16))
    assert fixed({"features": torch.randn(2, 16)})["logits"].shape == (2, 4)
    assert "fixed_weights" in fixed.state_dict()
    with pytest.raises(ValueError, match="takes no 'weights'"):
        FeatureClassifier(LinearHead(16, 3), class_weights=torch.randn(3, 16))
    with pytest.raises(KeyError, match="batch has no 'features' entry"):
        FeatureClassifier(LinearHead(16, 3))({"emb": x})
