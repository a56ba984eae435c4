r"""The place/date prior of :class:`fgmm.FGModel`: registered as ``"geo_occurrences"`` in
:data:`fgmm.space.priors.PRIORS` (preset ``"image-geo"``).

**Design.** The model's ``geo`` modality carries :class:`~fgmm.geo.encoder.GeoTimeEncoder` features of the
samples that have a place (:data:`fgmm.space.features.FEATURIZERS` ``["geo"]``); this prior reads the raw
place and date back from their last columns and scores them with a presence-only network
:math:`r_c(x)` (:class:`~fgmm.geo.prior.GeoPrior`: SINR, Cole et al., ICML 2023, with the date input of
Mac Aodha et al., ICCV 2019) fitted on occurrence records. :meth:`FGModel.forward` adds its output to the
log-probabilities of the other modalities for the samples that carry a place, so

.. math::
    \log p_\text{geo}(c \mid x) = \frac{m_\text{place}(x)}{\alpha}\Big[(\beta + \beta_d\, m_\text{date}(x))
        \log\big(\varepsilon + (1-\varepsilon)\, e^{r_c(x)}\big) + \delta \log(1 + n_c)\Big]

with the product of probabilities as the default (:math:`\alpha = \beta = 1`, :math:`\beta_d = \delta =
\varepsilon = 0`: the term is :math:`r_c(x)`) and the learned fusion of :mod:`fgmm.geo.fusion` as the
option (:meth:`OccurrencePrior.fit_fusion`: the scalars fitted by cross-entropy on held-out images; the
image weight :math:`\alpha` is folded in as :math:`1/\alpha` on this term, which ranks classes exactly as
:class:`~fgmm.geo.fusion.LearnedPriorFusion` does). :math:`n_c` are the records of class *c*.

**Records.** Give them as the prior option ``records`` (a path to ``occurrences.csv``: the prior is fitted
on first use, i.e. the first prediction or :meth:`FGModel.save_pretrained`), or fit explicitly with
``model.priors["geo"].fit(records)`` (a path, an :class:`~fgmm.geo.occurrences.Occurrences`, or labelled
samples that carry a place). The network, its class counts and the fusion scalars are buffers and
parameters of the model: a saved model predicts without the CSV (the fitted weights are loaded, never
refitted). Further options are :class:`~fgmm.geo.prior.GeoPriorConfig` fields (the recipe).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from fgmm.errors import ConfigError
from fgmm.geo.encoder import as_geo_tensor
from fgmm.geo.fusion import LearnedPriorFusion
from fgmm.geo.occurrences import Occurrences, class_key, load_occurrences, occurrences_from_samples
from fgmm.geo.prior import GeoPrior, GeoPriorConfig

logger = logging.getLogger(__name__)

FUSION_NAMES = ("image_weight", "prior_weight", "date_weight", "floor", "frequency_weight")
"""The scalars :math:`\\alpha, \\beta, \\beta_d, \\varepsilon, \\delta` of the module docstring (buffers)."""
PRODUCT_RULE = (1.0, 1.0, 0.0, 0.0, 0.0)


class OccurrencePrior(nn.Module):
    """:math:`\\log p(c \\mid \\text{place}, \\text{date})` from occurrence records (see the module docstring).

    Args:
        num_classes: :math:`C`.
        class_names: the model's classes (occurrence files are matched to them by
            :func:`~fgmm.geo.occurrences.class_key`: ``"001.Black_footed_Albatross"`` = ``"Black-footed Albatross"``).
        records: optional path of an occurrences CSV, fitted on first use when the prior is not fitted yet.
        **recipe: :class:`~fgmm.geo.prior.GeoPriorConfig` fields (``epochs``, ``loss``, ``grid_levels``...).

    Shapes:
        input ``[B, d_geo]`` :class:`~fgmm.geo.encoder.GeoTimeEncoder` features (or ``[B, 4]`` geo rows) ->
        output ``[B, C]``; all-zero rows for samples without a place.
    """

    def __init__(self, num_classes: int, class_names: Sequence[str], records: str | Path | None = None,
                 **recipe: Any):
        super().__init__()
        if len(class_names) != num_classes:
            raise ConfigError(f"geo_occurrences prior: {len(class_names)} class names for {num_classes} classes")
        self.records = None if records is None else Path(records)
        self.network = GeoPrior(list(class_names), GeoPriorConfig.from_dict(recipe))
        self.register_buffer("fitted", torch.tensor(False))
        for name, value in zip(FUSION_NAMES, PRODUCT_RULE, strict=True):
            self.register_buffer(name, torch.tensor(value))
        # saving (or fingerprinting) a model whose records were given but not fitted yet fits them first
        self.register_state_dict_pre_hook(lambda module, prefix, keep_vars: module._fit_pending())

    @property
    def class_names(self) -> list[str]:
        return self.network.class_names

    # ------------------------------------------------------------------ fitting
    def _occurrences(self, records: Occurrences | str | Path | Sequence[Any]) -> Occurrences:
        if isinstance(records, str | Path):
            return load_occurrences(records, self.class_names)
        if isinstance(records, Occurrences):
            if [class_key(c) for c in records.class_names] != [class_key(c) for c in self.class_names]:
                raise ConfigError(f"the occurrences name {records.num_classes} classes that are not the model's "
                                  f"{len(self.class_names)} classes (in label order); load them with "
                                  "load_occurrences(path, model.class_names)")
            return records
        return occurrences_from_samples(list(records), self.class_names)

    def fit(self, records: Occurrences | str | Path | Sequence[Any] | None = None, *,
            progress: bool = False) -> OccurrencePrior:
        """Fit the network on presence-only ``records`` (default: the ``records`` option) with the recipe's
        loss (:func:`fgmm.geo.fit.fit_geo_prior`; deterministic for its seed); the fusion is reset to the
        product rule. Returns ``self`` in eval mode.

        Raises:
            ConfigError: no records given, or records of other classes.
            DataError: an unreadable occurrences file (naming the file and line).
        """
        from fgmm.geo.fit import fit_geo_prior

        records = self.records if records is None else records
        if records is None:
            raise ConfigError("the geo prior needs occurrence records: model.priors['geo'].fit('occurrences.csv') "
                              "or the prior option records='occurrences.csv'")
        occurrences = self._occurrences(records)
        device = self.fitted.device
        fitted = fit_geo_prior(occurrences, self.network.config, progress=progress, device=str(device))
        with torch.no_grad():
            self.network.load_state_dict(fitted.state_dict())
            self.network.config = fitted.config
            self.fitted.fill_(True)
        self.use_product_rule()
        return self.eval()

    def _fit_pending(self) -> None:
        if not bool(self.fitted) and self.records is not None:
            self._ensure_fitted()

    def _ensure_fitted(self) -> None:
        if bool(self.fitted):
            return
        if self.records is None:
            raise ConfigError("the geo prior is not fitted: call model.priors['geo'].fit(records) with an "
                              "occurrences CSV (or labelled samples that carry a place), or give the prior option "
                              "records='occurrences.csv'")
        logger.info("fitting the geo prior on %s (once; its weights are saved with the model)", self.records)
        with torch.enable_grad():
            self.fit()

    @torch.no_grad()
    def use_product_rule(self) -> OccurrencePrior:
        """Combine by the plain product of probabilities (the default)."""
        for name, value in zip(FUSION_NAMES, PRODUCT_RULE, strict=True):
            getattr(self, name).fill_(value)
        return self

    def fit_fusion(self, image_logits: Tensor, features: Tensor, labels: Tensor, l2: float = 1e-3) -> OccurrencePrior:
        """The learned fusion: fit :math:`\\alpha, \\beta, \\beta_d, \\varepsilon, \\delta` by cross-entropy on
        held-out samples (never test samples).

        Args:
            image_logits: ``[B, C]`` the model's logits of these samples without the prior (e.g.
                ``model.logits({"image": features})``).
            features: ``[B, d_geo]`` their geo features (or ``[B, 4]`` geo rows).
            labels: ``[B]`` their classes.
        """
        self._ensure_fitted()
        geo = as_geo_tensor(features).cpu()
        with torch.no_grad():
            log_prior = self.network.predict(geo)
        counts = self.network.class_counts.detach().cpu()
        fusion = LearnedPriorFusion(counts).fit(image_logits.detach().cpu().float(), log_prior, geo,
                                                labels.cpu(), l2=l2)
        values = (fusion.image_weight, fusion.prior_weight[0], fusion.date_weight[0],
                  torch.sigmoid(fusion.floor_logit[0]), fusion.frequency_weight)
        with torch.no_grad():
            for name, value in zip(FUSION_NAMES, values, strict=True):
                getattr(self, name).fill_(float(value))
        if float(self.image_weight) <= 0:
            raise ConfigError(f"the learned fusion gave the image model weight {float(self.image_weight):.3f} <= 0; "
                              "keep the product rule (too few or uninformative held-out samples)")
        return self

    # ------------------------------------------------------------------ scoring
    def forward(self, features: Tensor) -> Tensor:
        self._ensure_fitted()
        geo = as_geo_tensor(features)
        device = self.fitted.device
        has_place = (~geo[:, :2].isnan().any(1)).to(device)[:, None].float()
        has_date = (~geo[:, 2].isnan()).to(device)[:, None].float()
        log_prior = self.network(geo.cpu())  # the network encodes places on the CPU and moves them itself
        if float(self.floor) > 0:
            log_prior = torch.logaddexp(torch.log1p(-self.floor) + log_prior, self.floor.log())
        out = (self.prior_weight + self.date_weight * has_date) * log_prior
        out = out + self.frequency_weight * torch.log1p(self.network.class_counts)
        return out * has_place / self.image_weight

    def extra_repr(self) -> str:
        scalars = ", ".join(f"{n}={float(getattr(self, n)):.3f}" for n in FUSION_NAMES)
        return f"fitted={bool(self.fitted)}, records={self.records}, {scalars}"


def add_geo_prior(model: Any, *, geo_encoder: str = "sh16", weight: float = 1.0, **options: Any) -> Any:
    """A copy of a fitted :class:`fgmm.FGModel` that also reads where and when: the ``geo`` modality (encoder
    ``geo_encoder``, projection ``"none"``) and an :class:`OccurrencePrior` (``options``: ``records`` and recipe
    fields), every other weight the given model's, so the images are scored exactly as before and then times
    the prior (preset ``"image-geo"`` is the same model built from scratch). Fit the prior with
    ``new.priors["geo"].fit(records)``.

    Raises:
        ConfigError: the model already has a geo modality, or fuses several modalities with a fusion other
            than ``"mean"`` (the ``"none"`` projection relies on it).
    """
    import copy

    from fgmm.space.config import ModalityConfig, PriorConfig
    from fgmm.space.inputs import build_encoder, describe_encoder

    if "geo" in model.config.modalities:
        raise ConfigError("the model already has a geo modality")
    if len(model.modalities) > 1 and model.config.fusion != "mean":
        raise ConfigError(f"add_geo_prior needs the 'mean' fusion; the model fuses {model.modalities} with "
                          f"'{model.config.fusion}': build it from a config with a geo modality instead")
    config = copy.deepcopy(model.config)
    config.objective.pairs = [list(pair) for pair in model.config.pairs()]  # no contrastive term for the prior
    config.modalities["geo"] = ModalityConfig(encoder=geo_encoder, projection="none")
    encoder = build_encoder("geo", config.modalities["geo"])
    config.modalities["geo"].input_dim = encoder.dim
    config.fusion = "mean"
    config.priors["geo"] = PriorConfig("geo_occurrences", dict(options), weight)
    extended = type(model)(config, model.class_names, graph=model.graph, kg=model._kg,
                           towers={m: copy.deepcopy(t) for m, t in model.towers.items()}, seed=model.seed)
    state = model.state_dict()
    per_modality = {key: state.pop(key) for key in ("modality_classes", "modality_gamma")}
    missing, unexpected = extended.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("priors.geo.") and k not in per_modality]
    if unexpected or missing:
        raise ConfigError(f"cannot extend this model with a geo prior (weights not carried over: "
                          f"{sorted(unexpected) + missing})")
    with torch.no_grad():  # the new geo modality is the last row; it trains on nothing
        for key, value in per_modality.items():
            getattr(extended, key)[:len(model.modalities)] = value
    extended._encoders = {**model._encoders, "geo": encoder}
    extended.encoder_info = {**model.encoder_info, "geo": describe_encoder(encoder)}
    extended.kg_path = model.kg_path
    return extended.to(model.gamma.device).eval()
