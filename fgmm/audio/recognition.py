r"""Recording -> class from a few training recordings per class (most CUB classes have one).

Every classifier takes each recording's window features ``[n_i, d]`` and returns per-recording class
log-probabilities over the classes it was fitted on (:attr:`RecordingClassifier.classes`, global labels).
Registered in :data:`RECORDING_CLASSIFIERS`:

* ``ncm`` (:class:`NearestClassMean`, SimpleShot: Wang et al., arXiv:1911.04623): recordings are pooled
  (mean of L2-normalised windows), centred on the training mean :math:`\mu`, optionally whitened, and
  L2-normalised, :math:`\tilde{x} = \frac{W(x-\mu)}{\lVert W(x-\mu) \rVert}`; class prototypes are the
  normalised means :math:`p_c` of their training recordings and

  .. math:: \log p(c \mid x) = \operatorname{log\,softmax}_c\big(s\, \tilde{x}^\top p_c\big).

  The whitening :math:`W = (\Sigma + \lambda I)^{-1/2}` (ZCA with shrinkage :math:`\lambda` relative to the
  mean eigenvalue) uses the covariance of the training recordings.
* ``window_ncm`` (:class:`WindowVotingNCM`): the same prototypes, but each *window* is scored and the
  recording's log-probability is the mean over its windows (window-level voting, robust to windows in
  which another bird or a person is heard).
* ``logistic`` (:class:`WindowLogistic`): multinomial logistic regression on centred, L2-normalised
  windows (class-balanced), recordings scored by the mean window log-probability.

Dev protocols for a bundle without held-out recordings (:func:`leave_one_out_folds`,
:func:`one_shot_folds`) hold out one recording of a class that has at least two at a time.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fgmm.errors import DataError
from fgmm.registry import Registry

RECORDING_CLASSIFIERS: Registry[object] = Registry("recording classifier")


def _normalise(windows: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [F.normalize(w.float(), dim=1) for w in windows]


class RecordingClassifier:
    """Base: :meth:`fit` on training recordings, :meth:`log_probs` of new ones over :attr:`classes`."""

    classes: list[int]

    def fit(self, windows: Sequence[torch.Tensor], labels: Sequence[int]) -> RecordingClassifier:
        raise NotImplementedError

    def log_probs(self, windows: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[N, len(classes)]`` log p(class | recording)."""
        raise NotImplementedError

    def predict(self, windows: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[N]`` global labels."""
        return torch.as_tensor(self.classes)[self.log_probs(windows).argmax(dim=1)]

    def _set_classes(self, labels: Sequence[int]) -> torch.Tensor:
        labels = [int(y) for y in labels]
        if not labels:
            raise DataError(None, "no training recording: audio recognition needs at least one")
        self.classes = sorted(set(labels))
        position = {c: i for i, c in enumerate(self.classes)}
        return torch.tensor([position[y] for y in labels])


@RECORDING_CLASSIFIERS.register("ncm")
class NearestClassMean(RecordingClassifier):
    """SimpleShot nearest class mean on pooled recordings (see the module docstring).

    Args:
        scale: cosine scale :math:`s` of the softmax (sets how peaked the probabilities are).
        shrinkage: whitening shrinkage :math:`\\lambda` (relative to the mean eigenvalue); ``None`` = no whitening.
    """

    def __init__(self, scale: float = 20.0, shrinkage: float | None = 1.0):
        self.scale, self.shrinkage = scale, shrinkage

    def _pool(self, windows: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack([w.mean(dim=0) for w in _normalise(windows)])

    def _embed(self, x: torch.Tensor) -> torch.Tensor:
        x = x - self.mean
        if self.basis is not None:
            # W x = V diag((e + lam)^-1/2) V^T x + lam^-1/2 (I - V V^T) x, without forming the d x d matrix
            projected = x @ self.basis.T
            x = (projected * self.scales) @ self.basis + self.rest * (x - projected @ self.basis)
        return F.normalize(x, dim=1)

    def _fit_space(self, x: torch.Tensor) -> None:
        self.mean = x.mean(dim=0)
        self.basis = None
        if self.shrinkage is not None and len(x) > 1:
            _, singular, basis = torch.linalg.svd((x - self.mean).double(), full_matrices=False)
            eigen = singular**2 / (len(x) - 1)  # the non-zero eigenvalues of the covariance
            shrink = self.shrinkage * float(eigen.sum()) / x.shape[1]  # lambda x the mean of all d eigenvalues
            self.basis, self.scales = basis.float(), (eigen + shrink).rsqrt().float()
            self.rest = shrink**-0.5

    def fit(self, windows: Sequence[torch.Tensor], labels: Sequence[int]) -> NearestClassMean:
        y = self._set_classes(labels)
        x = self._pool(windows)
        self._fit_space(x)
        z = self._embed(x)
        self.prototypes = F.normalize(torch.stack([z[y == c].mean(dim=0) for c in range(len(self.classes))]), dim=1)
        return self

    def log_probs(self, windows: Sequence[torch.Tensor]) -> torch.Tensor:
        return F.log_softmax(self.scale * self._embed(self._pool(windows)) @ self.prototypes.T, dim=1)


@RECORDING_CLASSIFIERS.register("window_ncm")
class WindowVotingNCM(NearestClassMean):
    """Nearest class mean scored per window; a recording's log-probability is its windows' mean."""

    def log_probs(self, windows: Sequence[torch.Tensor]) -> torch.Tensor:
        out = []
        for w in _normalise(windows):
            out.append(F.log_softmax(self.scale * self._embed(w) @ self.prototypes.T, dim=1).mean(dim=0))
        return torch.stack(out)


@RECORDING_CLASSIFIERS.register("logistic")
class WindowLogistic(RecordingClassifier):
    """Class-balanced multinomial logistic regression on windows; recordings vote with mean log-probabilities.

    Args:
        C: inverse L2 regularisation strength (scikit-learn's ``C``).
        seed: solver seed.
    """

    def __init__(self, C: float = 1.0, seed: int = 0):
        self.C, self.seed = C, seed

    def fit(self, windows: Sequence[torch.Tensor], labels: Sequence[int]) -> WindowLogistic:
        from sklearn.linear_model import LogisticRegression

        y = self._set_classes(labels)
        normed = _normalise(windows)
        x = torch.cat(normed)
        self.mean = x.mean(dim=0)
        window_labels = torch.cat([torch.full((len(w),), int(c)) for w, c in zip(normed, y, strict=True)])
        self.model = LogisticRegression(C=self.C, class_weight="balanced", max_iter=1000, random_state=self.seed)
        self.model.fit(F.normalize(x - self.mean, dim=1).numpy(), window_labels.numpy())
        return self

    def log_probs(self, windows: Sequence[torch.Tensor]) -> torch.Tensor:
        out = torch.full((len(windows), len(self.classes)), -1e4)
        for i, w in enumerate(_normalise(windows)):
            scores = self.model.predict_log_proba(F.normalize(w - self.mean, dim=1).numpy()).mean(axis=0)
            out[i, torch.as_tensor(self.model.classes_)] = torch.as_tensor(scores, dtype=torch.float32)
        return F.log_softmax(out, dim=1)


def duplicate_recordings(windows: Sequence[torch.Tensor], threshold: float = 0.999) -> list[int]:
    """Indices of recordings that repeat an earlier one (cosine of their mean normalised windows
    >= ``threshold``: the same audio, whatever the file name or encoding). The CUB bundle has one such pair."""
    pooled = F.normalize(torch.stack([w.mean(dim=0) for w in _normalise(windows)]), dim=1)
    similar = torch.triu(pooled @ pooled.T >= threshold, diagonal=1)
    return sorted({int(j) for j in similar.nonzero()[:, 1]})


def create_recording_classifier(name: str, **kwargs) -> RecordingClassifier:
    """A classifier from :data:`RECORDING_CLASSIFIERS` (``ncm``, ``window_ncm``, ``logistic``)."""
    return RECORDING_CLASSIFIERS.create(name, **kwargs)


@dataclass(frozen=True)
class Fold:
    """One dev evaluation: fit on ``train`` recordings, classify ``test`` (indices into a recording list)."""

    train: np.ndarray
    test: np.ndarray


def _by_class(labels: Sequence[int]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        groups[int(y)].append(i)
    return groups


def leave_one_out_folds(labels: Sequence[int], min_recordings: int = 2) -> list[Fold]:
    """Leave-one-recording-out over the classes with at least ``min_recordings`` recordings: each of their
    recordings is held out once; every other recording trains."""
    everything = np.arange(len(labels))
    return [Fold(everything[everything != i], np.array([i]))
            for members in _by_class(labels).values() if len(members) >= min_recordings for i in members]


def one_shot_folds(labels: Sequence[int], seed: int = 0, repeats: int = 3, min_recordings: int = 2) -> list[Fold]:
    """Like :func:`leave_one_out_folds`, but the held-out recording's class keeps only **one** other training
    recording (drawn ``repeats`` times, seeded): the situation of most classes in the CUB audio bundle."""
    rng = np.random.default_rng(seed)
    groups = _by_class(labels)
    folds = []
    for members in groups.values():
        if len(members) < min_recordings:
            continue
        for i in members:
            others = [j for j in members if j != i]
            for _ in range(repeats):
                keep = int(rng.choice(others))
                train = [j for j in range(len(labels)) if j not in members or j == keep]
                folds.append(Fold(np.array(train), np.array([i])))
    return folds


def fold_log_probs(classifier: RecordingClassifier, windows: Sequence[torch.Tensor], labels: Sequence[int],
                   fold: Fold) -> tuple[torch.Tensor, list[int]]:
    """Fit on the fold's training recordings; ``([len(test), C], classes)`` for its test recordings."""
    classifier.fit([windows[i] for i in fold.train], [int(labels[i]) for i in fold.train])
    return classifier.log_probs([windows[i] for i in fold.test]), list(classifier.classes)
