r"""A modality's own nearest-class-mean classifier as a class prior: late fusion by a product of experts.

.. math::
    \log p_m(c \mid \mathbf{x}) =
        \log \operatorname{softmax}_c\big(s_m \cos(W_m(\mathbf{x}), \boldsymbol{\mu}_{m,c})\big)

:math:`W_m` is :class:`~fgmm.space.projections.FeatureWhitening` fitted on the training features of
modality *m*, :math:`\boldsymbol{\mu}_{m,c}` the unit class means of the whitened features and
:math:`s_m` the scale that maximises the likelihood of a held-out fifth of them (the rest fitting the
whitening and the means), so the probabilities are calibrated enough to multiply. Added to the model's
log-probabilities (:mod:`fgmm.space.priors`), the prediction of a sample carrying *m* is the product of
experts :math:`p(c \mid \text{rest}) \, p_m(c \mid \mathbf{x}_m)` (Hinton, 2002): each modality keeps
its own classifier, which is what frozen features of unrelated encoders (an image CNN, a sentence
encoder) favour over one learned joint space when the task is recognition (preset
``"image-text-product"``). Classes without a training sample of *m* get the mean of the other classes'
scores, so they are neither favoured nor ruled out by *m*.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from fgmm.data.splits import holdout_split
from fgmm.errors import ConfigError
from fgmm.space.class_sources import class_means
from fgmm.space.fitting import best_scale
from fgmm.space.projections import FeatureWhitening


class ClassMeansPrior(nn.Module):
    """Nearest class mean on a modality's own whitened features, as a class prior (module docstring).

    Args:
        num_classes: :math:`C`.
        input_dim: the width of the modality's features.
        power, shrinkage: of the :class:`~fgmm.space.projections.FeatureWhitening`.

    Shapes:
        input ``[B, input_dim]`` -> output ``[B, C]`` log-probabilities.
    """

    fits_on_training = True

    def __init__(self, num_classes: int, input_dim: int, power: float = 0.5, shrinkage: float = 1.0):
        super().__init__()
        self.whitening = FeatureWhitening(input_dim, power=power, shrinkage=shrinkage)
        self.register_buffer("means", torch.zeros(num_classes, input_dim))
        self.register_buffer("present", torch.zeros(num_classes, dtype=torch.bool))
        self.register_buffer("log_scale", torch.tensor(0.0))

    def _fit_means(self, features: Tensor, labels: Tensor) -> None:
        self.whitening.fit(features, labels)
        means, present = class_means(self.whitening(features), labels, len(self.means))
        self.means.copy_(means)
        self.present.copy_(present)

    def _cosines(self, features: Tensor) -> Tensor:
        cosines = self.whitening(features) @ self.means.T
        neutral = cosines[:, self.present].mean(1, keepdim=True)
        return torch.where(self.present, cosines, neutral)

    @torch.no_grad()
    def fit(self, features: Tensor, labels: Tensor, seed: int = 0) -> ClassMeansPrior:
        """Whitening, class means and scale from the training features of the modality and their labels."""
        features, labels = features.detach().float().cpu(), torch.as_tensor(labels).long().cpu()
        split = np.asarray(holdout_split(labels.numpy(), 0.2, seed=seed))
        fit, held = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
        scale = 10.0
        if len(held) and len(fit):
            self._fit_means(features[fit], labels[fit])
            scale = best_scale(self._cosines(features[held]), labels[held])
        self._fit_means(features, labels)
        self.log_scale.fill_(float(np.log(scale)))
        return self

    def forward(self, features: Tensor) -> Tensor:
        if not bool(self.present.any()):
            raise ConfigError("ClassMeansPrior is used before fit() (fit the model it belongs to)")
        return torch.log_softmax(self.log_scale.exp() * self._cosines(features.float()), dim=-1)
