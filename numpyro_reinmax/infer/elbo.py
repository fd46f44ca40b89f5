"""NumPyro's ``Trace_ELBO`` and ``TraceMeanField_ELBO`` for guides with reparameterized discrete
sites.

NumPyro warns about every discrete latent site under these losses, because their gradient has no
score-function term: a non-reparameterized discrete guide site gets zero gradient. For a ReinMax
(or straight-through) guide site the gradient is pathwise and the warning is wrong. These
subclasses declare that they handle discrete sites (no warning) and, in exchange, refuse with a
clear error any discrete guide site that is not reparameterized. Their losses are NumPyro's.

Declaring that discrete sites are handled also silences NumPyro's warning for a discrete latent of
the *model* that the guide forgot, whose gradient is then silently wrong (it is drawn from the
prior, and no term carries its gradient): both losses refuse such a site with an error that names
it. ``TraceMeanField_ELBO`` also honours a model-side mask on a latent site
(:class:`~numpyro_reinmax.infer.masked_prior.MaskedPrior`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpyro.infer
from jax import Array
from numpyro.distributions import MaskedDistribution
from numpyro.primitives import Messenger

from .masked_prior import MaskedPrior
from .site_context import NameFailingSite

__all__ = ["TraceMeanField_ELBO", "Trace_ELBO"]


class _RequireReparameterized(Messenger):
    """Raise at any latent discrete sample site whose distribution has no ``rsample``."""

    def __init__(self, fn: Callable, loss_name: str, sampled: set) -> None:
        super().__init__(fn)
        self.loss_name = loss_name
        self.sampled = sampled

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample":
            return
        self.sampled.add(msg["name"])
        fn = msg.get("fn")
        if not msg["is_observed"] and fn.support.is_discrete and not fn.has_rsample:
            raise ValueError(
                f"guide site {msg['name']!r} is discrete and not reparameterized "
                f"({type(fn).__name__}): {self.loss_name} would give it zero gradient. Use a "
                "reparameterized distribution (numpyro_reinmax.ReinMaxOneHotCategorical, "
                "ReinMaxBernoulli, ...), numpyro.infer.TraceGraph_ELBO (score function), or "
                "enumerate the site with numpyro.infer.TraceEnum_ELBO."
            )


class _RequireGuided(Messenger):
    """Raise at a discrete latent model site that the guide did not sample (names in
    ``sampled``); with ``keep_masks``, give masked latent sites a :class:`MaskedPrior`."""

    def __init__(self, fn: Callable, loss_name: str, sampled: set, keep_masks: bool) -> None:
        super().__init__(fn)
        self.loss_name = loss_name
        self.sampled = sampled
        self.keep_masks = keep_masks

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["is_observed"]:
            return
        fn = msg["fn"]
        if msg["name"] not in self.sampled and fn.support.is_discrete:
            raise ValueError(
                f"model site {msg['name']!r} is a discrete latent that the guide does not "
                f"sample: {self.loss_name} would draw it from the prior, and no term of the loss "
                "would carry its gradient (the fit silently degrades). Sample it in the guide "
                "(numpyro_reinmax.infer.AutoReinMax, or a ReinMax site of the same name), or sum "
                "it out exactly: mark it with infer={'enumerate': 'parallel'} and use "
                "numpyro_reinmax.infer.TraceLocalEnum_ELBO or numpyro.infer.TraceEnum_ELBO."
            )
        if self.keep_masks and isinstance(fn, MaskedDistribution) and fn._mask is not True:
            msg["fn"] = MaskedPrior(fn.base_dist, fn._mask)


class _ReparameterizedDiscreteGuides:
    can_infer_discrete = True
    keep_model_masks = False

    def loss_with_mutable_state(
        self,
        rng_key: Array,
        param_map: dict,
        model: Callable,
        guide: Callable,
        *args: Any,
        **kwargs: Any,
    ) -> dict:
        name, sampled = type(self).__name__, set()
        guide = NameFailingSite(_RequireReparameterized(guide, name, sampled), "guide")
        model = NameFailingSite(
            _RequireGuided(model, name, sampled, self.keep_model_masks), "model"
        )
        return super().loss_with_mutable_state(rng_key, param_map, model, guide, *args, **kwargs)


class Trace_ELBO(_ReparameterizedDiscreteGuides, numpyro.infer.Trace_ELBO):
    """``numpyro.infer.Trace_ELBO`` that accepts reparameterized discrete guide sites without a
    warning, and refuses with an error non-reparameterized ones and discrete model latents that
    the guide does not sample. Arguments as NumPyro's."""


class TraceMeanField_ELBO(_ReparameterizedDiscreteGuides, numpyro.infer.TraceMeanField_ELBO):
    r"""``numpyro.infer.TraceMeanField_ELBO`` (analytic KL where registered) that accepts
    reparameterized discrete guide sites without a warning, refuses with an error
    non-reparameterized ones and discrete model latents that the guide does not sample, and
    honours model-side masks on latent sites (:math:`m_p \mathrm{KL}(q\|p) + (m_p - m_q) H(q)`
    per site, Monte Carlo where that has no closed form). Arguments as NumPyro's."""

    keep_model_masks = True
