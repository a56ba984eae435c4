r"""Combining an image classifier with a geo/time prior.

* :func:`product_rule` — the simple rule (Mac Aodha et al., ICCV 2019):
  :math:`\log p(c \mid I, x) = \log p(c \mid I) + \log p(c \mid x) + \text{const}`; rows of the prior
  without a place are zero, so those images keep the image-only prediction.
* :class:`LearnedPriorFusion` — the learned option: a handful of scalars fitted by cross-entropy on
  held-out images (never on test images),

  .. math::
      s_c = \alpha \log p(c \mid I) + m_\text{place}\big[(\beta + \beta_d m_\text{date})
            \log\big(\varepsilon + (1-\varepsilon)\, e^{r_c(x)}\big) + \delta \log(1 + n_c)\big],

  where :math:`r_c(x)` is the prior's output, :math:`\alpha` re-calibrates the image model,
  :math:`\beta, \beta_d` weigh the prior without and with a date, :math:`\varepsilon = \sigma(\theta)` floors it
  (a class the records never showed near :math:`x` is unlikely, not impossible) and :math:`\delta` corrects for
  the records' class imbalance (:math:`n_c` records of class :math:`c`; a class-balanced test set wants
  :math:`p(x \mid c) \propto p(c \mid x) / p(c)`). Initialised at the product rule
  (:math:`\alpha = \beta = 1`, :math:`\beta_d = \delta = 0`, :math:`\varepsilon = 0.01`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def product_rule(image_logits: torch.Tensor, prior_log_probs: torch.Tensor) -> torch.Tensor:
    """``[B, C]`` fused scores :math:`\\log\\mathrm{softmax}(\\text{image}) + \\log p(c \\mid x)`."""
    return F.log_softmax(image_logits.float(), dim=1) + prior_log_probs.float()


class LearnedPriorFusion(nn.Module):
    """Learned weighting of image log-probabilities and one or more geo priors (see the module docstring;
    with several priors each has its own :math:`\beta, \beta_d, \varepsilon`).

    Args:
        class_counts: ``[C]`` records per class (``None``: no frequency term).
        num_priors: how many priors are fused.

    Shapes:
        - image_logits: ``[B, C]`` (any logits; log-softmax is applied; ``-inf`` for classes the image
          model cannot score, e.g. unseen classes, which stay at ``-inf``)
        - prior_log_probs: ``[B, C]`` the prior's output (zero rows without a place), or a sequence of
          ``num_priors`` such tensors
        - geo: ``[B, 4]`` geo rows (to know which rows have a place / a date)
        - output: ``[B, C]`` fused scores
    """

    def __init__(self, class_counts: torch.Tensor | None = None, num_priors: int = 1):
        super().__init__()
        self.image_weight = nn.Parameter(torch.tensor(1.0))
        self.prior_weight = nn.Parameter(torch.ones(num_priors))
        self.date_weight = nn.Parameter(torch.zeros(num_priors))
        self.frequency_weight = nn.Parameter(torch.tensor(0.0), requires_grad=class_counts is not None)
        self.floor_logit = nn.Parameter(torch.full((num_priors,), math.log(0.01 / 0.99)))
        counts = torch.zeros(1) if class_counts is None else torch.as_tensor(class_counts, dtype=torch.float32)
        self.register_buffer("log_counts", torch.log1p(counts))

    def forward(self, image_logits: torch.Tensor, prior_log_probs: torch.Tensor | Sequence[torch.Tensor],
                geo: torch.Tensor) -> torch.Tensor:
        priors = [prior_log_probs] if isinstance(prior_log_probs, torch.Tensor) else list(prior_log_probs)
        if len(priors) != self.prior_weight.numel():
            raise ValueError(f"this fusion combines {self.prior_weight.numel()} prior(s), got {len(priors)}")
        has_place = (~geo[:, :2].isnan().any(1)).float()[:, None]
        has_date = (~geo[:, 2].isnan()).float()[:, None]
        floor = torch.sigmoid(self.floor_logit)
        log_image = F.log_softmax(image_logits.float(), dim=1)
        scored = torch.isfinite(log_image)  # classes the image model cannot score stay at -inf (no 0·inf gradient)
        out = torch.where(scored, self.image_weight * log_image.where(scored, 0.0), log_image)
        for k, log_prior in enumerate(priors):
            floored = torch.logaddexp(torch.log1p(-floor[k]) + log_prior.float(), floor[k].log())
            out = out + has_place * (self.prior_weight[k] + self.date_weight[k] * has_date) * floored
        return out + has_place * self.frequency_weight * self.log_counts

    def fit(self, image_logits: torch.Tensor, prior_log_probs: torch.Tensor | Sequence[torch.Tensor],
            geo: torch.Tensor, labels: torch.Tensor, l2: float = 1e-3, iterations: int = 100) -> LearnedPriorFusion:
        """Fit the scalars by L-BFGS on cross-entropy (plus ``l2`` times the weights' squared distance to the
        product rule's values; the floors are free) over held-out images; returns ``self`` in eval mode. When
        the optimisation diverges (too few held-out images) the product rule's values are kept, with a warning."""
        start = {name: p.detach().clone() for name, p in self.named_parameters()}
        optimizer = torch.optim.LBFGS([p for p in self.parameters() if p.requires_grad], max_iter=iterations,
                                      line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimizer.zero_grad()
            loss = F.cross_entropy(self(image_logits, prior_log_probs, geo), labels)
            loss = loss + l2 * sum(((p - start[n]) ** 2).sum() for n, p in self.named_parameters()
                                   if n != "floor_logit")
            loss.backward()
            return loss

        self.train()
        try:
            optimizer.step(closure)
            diverged = not all(bool(torch.isfinite(p).all()) for p in self.parameters())
        except RuntimeError:  # L-BFGS overflowed: a few separable held-out images let the weights run away
            diverged = True
        if diverged:
            with torch.no_grad():
                for name, p in self.named_parameters():
                    p.copy_(start[name])
            warnings.warn(f"the learned geo fusion diverged on {len(labels)} held-out images; it keeps the "
                          "product rule's values", stacklevel=2)
        return self.eval()

    def extra_repr(self) -> str:
        def values(t: torch.Tensor) -> str:
            return ", ".join(f"{v:.3f}" for v in t.detach().flatten().tolist())

        return (f"image={self.image_weight.item():.3f}, prior=[{values(self.prior_weight)}], "
                f"date=[{values(self.date_weight)}], frequency={self.frequency_weight.item():.3f}, "
                f"floor=[{values(torch.sigmoid(self.floor_logit))}]")
