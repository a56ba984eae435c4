"""Training a :class:`~fgmm.geo.prior.GeoPrior` on presence-only records (CPU, minutes)."""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from fgmm.errors import ConfigError
from fgmm.geo.encoding import DAYS_PER_YEAR
from fgmm.geo.occurrences import Occurrences
from fgmm.geo.prior import GeoPrior, GeoPriorConfig, assume_negative_full_loss

PRIOR_LOSSES = ("an_full", "softmax")
"""``an_full``: SINR's assume-negative loss with background points; ``softmax``: cross-entropy over classes."""


def random_places(n: int, generator: torch.Generator, date_rate: float = 0.0) -> torch.Tensor:
    """``[n, 4]`` geo rows uniform on the sphere (latitude :math:`\\arcsin(2u-1)`), each with a uniform
    random day of year with probability ``date_rate`` (else ``NaN``); hour missing."""
    u = torch.rand(n, 4, generator=generator, dtype=torch.float64)
    lat = torch.rad2deg(torch.asin(2 * u[:, 0] - 1))
    lon = 360 * u[:, 1] - 180
    day = torch.where(u[:, 3] < date_rate, 1 + DAYS_PER_YEAR * u[:, 2], torch.full_like(lat, math.nan))
    return torch.stack((lat, lon, day, torch.full_like(lat, math.nan)), dim=1).float()


def _hide_dates(geo: torch.Tensor, rate: float, generator: torch.Generator) -> torch.Tensor:
    if rate <= 0:
        return geo
    geo = geo.clone()
    hide = torch.rand(geo.shape[0], generator=generator) < rate
    geo[hide, 2:] = math.nan
    return geo


def fit_geo_prior(occurrences: Occurrences, config: GeoPriorConfig | None = None, *, progress: bool = False,
                  device: str = "cpu") -> GeoPrior:
    """Fit a :class:`GeoPrior` to ``occurrences`` with ``config.loss``.

    Each step takes ``batch_size`` records (dates hidden with probability ``config.date_dropout``)
    and, for the assume-negative loss, as many background points (:func:`random_places`); Adam with a
    cosine learning-rate schedule over ``config.epochs`` epochs (SparseAdam for a hash grid's rows).
    Deterministic for a given ``config.seed`` on the CPU.

    Returns:
        the prior in eval mode; ``prior.class_counts`` holds the records per class and
        ``prior.config.extra["fit_seconds"]`` the wall time.

    Raises:
        ConfigError: no records, or a record label outside the classes.
    """
    config = config or GeoPriorConfig()
    if config.loss not in PRIOR_LOSSES:
        raise ConfigError(f"unknown geo prior loss '{config.loss}'; choose one of {', '.join(PRIOR_LOSSES)}")
    n = len(occurrences)
    if n == 0:
        raise ConfigError("cannot fit a geo prior without occurrence records")
    start = time.perf_counter()
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    prior = GeoPrior(occurrences.class_names, config).to(device)
    prior.class_counts.copy_(torch.as_tensor(occurrences.counts(), dtype=torch.float32))
    geo, labels = occurrences.geo, occurrences.labels
    batch = min(config.batch_size, n)
    steps_per_epoch = math.ceil(n / batch)
    total = steps_per_epoch * config.epochs
    grid = [p for n, p in prior.named_parameters() if n.startswith("grid.")]
    rest = [p for n, p in prior.named_parameters() if not n.startswith("grid.")]
    optimizers = [torch.optim.Adam(rest, lr=config.lr, weight_decay=config.weight_decay)]
    if grid:  # the hash grid's sparse rows
        optimizers.append(torch.optim.SparseAdam(grid, lr=config.lr * config.grid_lr_scale))
    schedules = [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=max(total, 1)) for o in optimizers]
    prior.train()
    with tqdm(total=total, desc="fitting geo prior", disable=not progress) as bar:
        for _ in range(config.epochs):
            order = torch.randperm(n, generator=generator)
            for step in range(steps_per_epoch):
                index = order[step * batch:(step + 1) * batch]
                places = _hide_dates(geo[index], config.date_dropout, generator)
                target = labels[index].to(device)
                if config.loss == "softmax":
                    loss = F.cross_entropy(prior.logits(places), target)
                else:
                    background = random_places(len(index), generator, config.background_date)
                    logits = prior.logits(torch.cat((places, background)))
                    loss = assume_negative_full_loss(logits[:len(index)], target, logits[len(index):],
                                                     config.pos_weight)
                for optimizer in optimizers:
                    optimizer.zero_grad(set_to_none=True)
                loss.backward()
                for optimizer, schedule in zip(optimizers, schedules, strict=True):
                    optimizer.step()
                    schedule.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
    prior.config.extra = {**prior.config.extra, "fit_seconds": round(time.perf_counter() - start, 2),
                          "records": n, "final_loss": round(float(loss.item()), 6)}
    return prior.eval()
