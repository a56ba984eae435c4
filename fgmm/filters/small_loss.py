r"""Small-loss filters: wrong labels are learned late, so their training loss stays large.

* ``small_loss`` (:class:`SmallLossFilter`): reads per-epoch losses of one run (``signals.losses``,
  e.g. recorded by :class:`fgmm.filters.SelectiveTraining`), averages them per sample and splits the
  averages with a two-component Gaussian mixture (DivideMix's division, Li et al., ICLR 2020).
* ``coteaching``, ``coteaching_plus``, ``peer`` (:class:`TwoHeadFilter`): train two heads (two
  :class:`fgmm.FGModel`, :func:`fgmm.filters.training.selection_head`) on the features with
  :class:`fgmm.filters.TwoHeadSelection` through :class:`fgmm.train.Trainer` — each
  head learns from the samples its peer finds easy (Co-teaching, Han et al., NeurIPS 2018), only
  among samples the heads disagree on (Co-teaching+, Yu et al., ICML 2019), or from all disagreement
  samples plus the peer's small-loss agreement samples (peer learning, Sun et al., ICCV 2021) —
  then flag the :math:`\tau N` samples with the largest loss :math:`\ell^a_i + \ell^b_i` of the
  trained heads — among all samples (Co-teaching, Co-teaching+), or among the samples on which the
  heads' predictions agree (peer learning keeps every disagreement sample: those are the
  informative hard ones, not the noisy ones).

  The forget rate :math:`\tau` is given, or estimated from the run's out-of-sample probabilities as
  the share of samples a two-component mixture on the log-odds against their labels calls noisy
  (:func:`fgmm.filters.base.anchored_noise_split`; confident learning's estimate overshoots badly with
  a weak classifier: 0.39 for a true 0.20 on CUB).

A flagged sample is relabelled to the heads' common prediction when both heads agree on it with
mean probability ``relabel_threshold`` or more, and dropped otherwise.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fgmm.data.torch_dataset import FeatureDataset
from fgmm.errors import ConfigError
from fgmm.filters.base import (
    FILTERS,
    FilterResult,
    FilterSignals,
    NoiseFilter,
    anchored_noise_split,
    decide,
    mixture_split,
)
from fgmm.filters.training import TwoHeadSelection, fit_selective, selection_head


@FILTERS.register("small_loss")
class SmallLossFilter(NoiseFilter):
    """Mean per-epoch loss per sample, split by a 2-component GMM (module docstring).

    Args:
        skip_epochs: first epochs left out of the mean (before the model fits anything).
        relabel_threshold: least out-of-sample probability of the argmax class to relabel (only when
            the run provides ``probabilities``; otherwise flagged samples are dropped).
    """

    name = "small_loss"
    needs = ("losses",)

    def __init__(self, skip_epochs: int = 1, relabel_threshold: float = 0.5):
        self.skip_epochs = skip_epochs
        self.relabel_threshold = relabel_threshold

    def _fit(self, signals: FilterSignals) -> FilterResult:
        losses = np.asarray(signals.losses, dtype=np.float64)
        if len(losses) > self.skip_epochs:
            losses = losses[self.skip_epochs:]
        mean = np.nanmean(np.where(np.isfinite(losses), losses, np.nan), axis=0)
        mean = np.nan_to_num(mean, nan=float(np.nanmedian(mean)))
        flagged, posterior = mixture_split(mean)
        labels = signals.labels
        if signals.probabilities is not None:
            suggested, confidence = signals.probabilities.argmax(1), signals.probabilities.max(1)
        else:
            suggested, confidence = labels.copy(), np.zeros(len(labels))
        return FilterResult(decide(flagged, labels, suggested, confidence, self.relabel_threshold), posterior,
                            suggested, info={"epochs": int(len(losses))})


class TwoHeadFilter(NoiseFilter):
    """Co-teaching family on ``signals.features`` (module docstring).

    Args:
        rule: ``"coteaching"``, ``"coteaching_plus"`` or ``"peer"``.
        forget_rate: :math:`\\tau`; ``None`` estimates it from ``signals.probabilities``.
        epochs, batch_size, lr, weight_decay: the training recipe (AdamW, cosine schedule).
        warmup_epochs, init_epochs: of :class:`TwoHeadSelection`.
        hidden, dropout: of the heads' projections (:func:`~fgmm.filters.training.selection_head`).
        relabel_threshold: least mean probability of the heads' common prediction to relabel.
        seed, device: of the run.
        out_dir: run folder of the Trainer (a temporary one when ``None``).
    """

    needs = ("features",)

    def __init__(self, rule: str = "coteaching", forget_rate: float | None = None, epochs: int = 30,
                 batch_size: int = 256, lr: float = 2e-3, weight_decay: float = 1e-4, warmup_epochs: int = 10,
                 init_epochs: int = 10, hidden: int = 0, dropout: float = 0.2, relabel_threshold: float = 0.5,
                 seed: int = 0, device: str = "cpu", out_dir: str | Path | None = None):
        self.name = rule
        self.rule = rule
        self.forget_rate = forget_rate
        self.epochs, self.batch_size, self.lr, self.weight_decay = epochs, batch_size, lr, weight_decay
        self.schedule = {"warmup_epochs": warmup_epochs, "init_epochs": init_epochs}
        self.head_options = {"hidden": hidden, "dropout": dropout}
        self.relabel_threshold = relabel_threshold
        self.seed, self.device, self.out_dir = seed, device, out_dir
        self.model: TwoHeadSelection | None = None

    def _forget_rate(self, signals: FilterSignals) -> float:
        if self.forget_rate is not None:
            return self.forget_rate
        if signals.probabilities is None:
            raise ConfigError(f"filter '{self.name}' needs forget_rate=... or out-of-sample probabilities "
                              "to estimate the noise rate from")
        return min(0.9, anchored_noise_split(signals.probabilities, signals.labels).noise_rate)

    def _train(self, features: torch.Tensor, labels: np.ndarray, num_classes: int,
               forget_rate: float) -> TwoHeadSelection:
        from fgmm.train import TrainConfig

        heads = [selection_head(features, labels, num_classes, seed=self.seed + k, **self.head_options) for k in (0, 1)]
        model = TwoHeadSelection(*heads, rule=self.rule, forget_rate=forget_rate, **self.schedule)
        data = FeatureDataset({"image": features}, torch.as_tensor(labels))
        with tempfile.TemporaryDirectory(prefix="fgmm-coteach-") as tmp:
            config = TrainConfig(epochs=self.epochs, batch_size=min(self.batch_size, len(labels)), lr=self.lr,
                                 weight_decay=self.weight_decay, scheduler="cosine", seed=self.seed,
                                 out_dir=Path(self.out_dir or tmp), progress=False, device=self.device,
                                 log_every_steps=10_000)
            fit_selective(model, config, data, resume=False)
        return model.cpu().eval()

    def _fit(self, signals: FilterSignals) -> FilterResult:
        labels = signals.labels
        features = torch.as_tensor(signals.features).float()
        forget_rate = self._forget_rate(signals)
        model = self.model = self._train(features, labels, signals.num_classes, forget_rate)
        with torch.no_grad():
            out = model({"image": features})
        target = torch.as_tensor(labels)
        loss_a = F.cross_entropy(out["logits_a"], target, reduction="none").numpy()
        loss_b = F.cross_entropy(out["logits_b"], target, reduction="none").numpy()
        pred_a, pred_b = out["logits_a"].argmax(1).numpy(), out["logits_b"].argmax(1).numpy()
        probabilities = ((out["logits_a"].softmax(1) + out["logits_b"].softmax(1)) / 2).numpy()
        flagged = self._flags(loss_a, loss_b, pred_a == pred_b, forget_rate)
        agree = pred_a == pred_b
        suggested = np.where(agree, pred_a, probabilities.argmax(1))
        confidence = np.where(agree, probabilities.max(1), 0.0)
        decisions = decide(flagged, labels, suggested, confidence, self.relabel_threshold)
        return FilterResult(decisions, (loss_a + loss_b) / 2, suggested, info={"forget_rate": forget_rate})

    def _flags(self, loss_a: np.ndarray, loss_b: np.ndarray, agree: np.ndarray, forget_rate: float) -> np.ndarray:
        n = len(loss_a)
        candidates = np.flatnonzero(agree) if self.rule == "peer" else np.arange(n)
        drop = min(len(candidates), int(round(forget_rate * n)))
        flagged = np.zeros(n, dtype=bool)
        if drop:
            flagged[candidates[np.argsort(-(loss_a + loss_b)[candidates], kind="stable")[:drop]]] = True
        return flagged


for _rule in ("coteaching", "coteaching_plus", "peer"):
    FILTERS.register(_rule)(lambda _r=_rule, **options: TwoHeadFilter(rule=_r, **options))
