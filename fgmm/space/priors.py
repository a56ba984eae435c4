r"""Class priors read from one modality: :math:`\log p(c \mid x_m)`, added to the model's log-probabilities.

A prior is an ``nn.Module`` created with ``(num_classes=..., **options)`` whose ``forward(features)``
maps ``[B, d_m]`` features of its modality to ``[B, C]`` log-probabilities. The model combines it
with the other modalities by the product of probabilities,

.. math::
    \log p(c \mid x) \propto \log p(c \mid x_{\setminus m}) + \beta_m \log p_m(c \mid x_m),

for the samples that carry modality *m* (the others keep their prediction). Priors are trained on
their own data (e.g. a presence-only location/date prior on occurrence records) and kept fixed
while the rest of the model trains. Implementations register in :data:`PRIORS`; a factory with
``needs_class_names = True`` also gets the model's ``class_names`` (e.g. to map them to another
model's labels), one with ``needs_input_dim = True`` the width of its modality's features; a prior with
``fits_on_training = True`` is fitted with the model on the training samples of its modality.

Registered: ``"class_means"`` (:class:`fgmm.space.modality_prior.ClassMeansPrior`, the modality's own nearest
class mean fitted with the model: late fusion), ``"birdnet_species"``
(:class:`fgmm.audio.prior.BirdNETSpeciesPrior`, BirdNET's own species output read from the audio modality's
features; extra ``fgmm[audio]``), ``"geo_occurrences"`` (:class:`fgmm.geo.model_prior.OccurrencePrior`, a
presence-only place/date prior fitted on occurrence records, read from the geo modality's features).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from fgmm.errors import ConfigError
from fgmm.registry import Registry

PRIORS: Registry[nn.Module] = Registry("class prior")


def create_prior(name: str, num_classes: int, class_names: Sequence[str] | None = None,
                 input_dim: int | None = None, **options: Any) -> nn.Module:
    """The prior registered as ``name`` in :data:`PRIORS` (given ``class_names`` and the modality's
    ``input_dim`` when it needs them: ``needs_class_names`` / ``needs_input_dim``)."""
    factory = PRIORS.get(name)
    if getattr(factory, "needs_class_names", False):
        if class_names is None:
            raise ConfigError(f"the class prior '{name}' needs the model's class names")
        options["class_names"] = list(class_names)
    if getattr(factory, "needs_input_dim", False):
        if input_dim is None:
            raise ConfigError(f"the class prior '{name}' needs the width of its modality's features")
        options["input_dim"] = input_dim
    return factory(num_classes=num_classes, **options)


@PRIORS.register("class_means")
def class_means_prior(num_classes: int, input_dim: int, **options: Any) -> nn.Module:
    """The modality's own nearest class mean (:class:`fgmm.space.modality_prior.ClassMeansPrior`), fitted
    with the model: late fusion by a product of experts."""
    from fgmm.space.modality_prior import ClassMeansPrior

    return ClassMeansPrior(num_classes=num_classes, input_dim=input_dim, **options)


class_means_prior.needs_input_dim = True  # type: ignore[attr-defined]


@PRIORS.register("birdnet_species")
def birdnet_species_prior(num_classes: int, class_names: Sequence[str], **options: Any) -> nn.Module:
    """BirdNET's species output as a class prior (:class:`fgmm.audio.prior.BirdNETSpeciesPrior`)."""
    from fgmm.audio.prior import BirdNETSpeciesPrior

    return BirdNETSpeciesPrior(num_classes=num_classes, class_names=class_names, **options)


birdnet_species_prior.needs_class_names = True  # type: ignore[attr-defined]


@PRIORS.register("geo_occurrences")
def geo_occurrences_prior(num_classes: int, class_names: Sequence[str], **options: Any) -> nn.Module:
    """p(class | place, date) fitted on occurrence records (:class:`fgmm.geo.model_prior.OccurrencePrior`;
    options: ``records`` (an occurrences CSV) and :class:`fgmm.geo.prior.GeoPriorConfig` fields)."""
    from fgmm.geo.model_prior import OccurrencePrior

    return OccurrencePrior(num_classes=num_classes, class_names=class_names, **options)


geo_occurrences_prior.needs_class_names = True  # type: ignore[attr-defined]
