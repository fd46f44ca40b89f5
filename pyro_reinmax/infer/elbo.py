"""``TraceMeanField_ELBO`` with the KL of ``Delta`` guide sites and of masked model sites
corrected, and discrete model latents forgotten by the guide refused (Pyro).

Autoguides (``AutoNormal``, ``AutoDiagonalNormal``, ...) emit a ``Delta`` site for each latent,
its ``log_density`` holding the log-Jacobian of the transform to the constrained space. Pyro's
registered ``kl_divergence(Delta, q)`` is ``-q.log_prob(v)``: it drops that ``log_density``, so
Pyro's ``TraceMeanField_ELBO`` silently gets the loss and the gradients of every constrained
latent wrong (Dirichlet, LogNormal, ...; measured in ``tests/pyro_backend/test_elbo.py``). NumPyro
fixed the same registration (numpyro PR 1625). This ``TraceMeanField_ELBO`` is Pyro's, with the
guide's ``Delta`` sites scored by :math:`\\mathrm{KL} = \\log q(v) - \\log p(v)`, ``log q(v)`` being
the ``log_density``. Pyro's own registration is left as it is.

Two more silent errors of Pyro's ``TraceMeanField_ELBO`` are corrected here: a model-side mask
(``poutine.mask`` or ``dist.mask``) on a latent site is honoured
(:class:`~pyro_reinmax.infer.masked_prior.MaskedPrior`), and a discrete latent site of the model
that the guide does not sample (it would be drawn from the prior with no term for its gradient)
raises an error that names it.
"""

from __future__ import annotations

from collections.abc import Callable

import pyro.infer
from pyro.distributions import Delta, Distribution, MaskedDistribution
from pyro.poutine.messenger import Messenger
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor
from torch.distributions import register_kl

from ..categorical import _CategoricalReparameterized
from ..families import unwrap
from .masked_prior import MaskedPrior, combine_masks, kl_to_masked_prior
from .scoring import scoring_priors_exactly
from .site_context import NameFailingSite

__all__ = ["TraceMeanField_ELBO"]


class DeltaWithDensity(Delta):
    """A ``Delta`` whose KL to any distribution keeps its ``log_density``."""


@register_kl(DeltaWithDensity, Distribution)
def _kl_delta_with_density(p: DeltaWithDensity, q: Distribution) -> Tensor:
    return p.log_density - q.log_prob(p.v)


register_kl(DeltaWithDensity, MaskedPrior)(kl_to_masked_prior)  # else ambiguous with the above


class _KeepDeltaDensity(Messenger):
    """Make the latent ``Delta`` sites of a guide ``DeltaWithDensity``."""

    def _pyro_sample(self, msg: dict) -> None:
        fn = msg["fn"]
        if type(fn) is Delta and not msg["is_observed"]:
            msg["fn"] = DeltaWithDensity(fn.v, fn.log_density, fn.event_dim)


def refuse_unguided_latent(name: str, fn: Distribution, loss_name: str) -> None:
    """Raise for a latent model site that the guide does not sample."""
    if fn.support.is_discrete:
        raise ValueError(
            f"model site {name!r} is a discrete latent that the guide does not sample: "
            f"{loss_name} would draw it from the prior, and no term of the loss would carry its "
            "gradient (the fit silently degrades). Sample it in the guide "
            "(pyro_reinmax.infer.AutoReinMax, or a ReinMax site of the same name), or sum it out "
            "exactly: mark it with infer={'enumerate': 'parallel'} and use "
            "pyro_reinmax.infer.TraceLocalEnum_ELBO or pyro.infer.TraceEnum_ELBO."
        )
    raise ValueError(
        f"model site {name!r} is a latent that the guide does not sample; {loss_name} needs a "
        "guide site of the same name for every latent model site."
    )


def keep_model_masks(model_trace: Trace, guide_trace: Trace, loss_name: str) -> None:
    """Refuse latent model sites absent from the guide; give every masked latent model site a
    :class:`MaskedPrior` holding both masks (the guide site's mask moves into it)."""
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
            continue
        if name not in guide_trace.nodes:
            refuse_unguided_latent(name, site["fn"], loss_name)
        fn, masks = site["fn"], [site["mask"]]
        if isinstance(fn, MaskedDistribution):
            fn, masks = fn.base_dist, [*masks, fn._mask]
        model_mask = combine_masks(*masks)
        if model_mask is None:
            continue
        guide_site = guide_trace.nodes[name]
        site["fn"] = MaskedPrior(fn, model_mask, guide_site["mask"])
        guide_site["mask"] = None  # applied inside the KL, with the model's


class TraceMeanField_ELBO(pyro.infer.TraceMeanField_ELBO):
    r"""Pyro's ``TraceMeanField_ELBO`` (analytic KL where registered), with the KL of the guide's
    ``Delta`` sites (those of autoguides) including their ``log_density``, model-side masks on
    latent sites honoured (:math:`m_p \mathrm{KL}(q\|p) + (m_p - m_q) H(q)` per site, Monte Carlo
    where that has no closed form), and discrete model latents that the guide does not sample
    refused with an error. Arguments as Pyro's."""

    def _get_trace(
        self, model: Callable, guide: Callable, args: tuple, kwargs: dict
    ) -> tuple[Trace, Trace]:
        with scoring_priors_exactly():
            model_trace, guide_trace = super()._get_trace(
                NameFailingSite("model")(model),
                NameFailingSite("guide")(_KeepDeltaDensity()(guide)),
                args,
                kwargs,
            )
        keep_model_masks(model_trace, guide_trace, type(self).__name__)
        refuse_integer_guide_sites(guide_trace, type(self).__name__)
        return model_trace, guide_trace


def refuse_integer_guide_sites(guide_trace: Trace, loss_name: str) -> None:
    """Raise for a guide site of this package's integer estimator classes: only
    ``TraceLocalEnum_ELBO`` gives them their estimator (under this ELBO the score function of a
    plain ``Categorical`` would stand in for it, unannounced)."""
    for name, site in guide_trace.nodes.items():
        if site["type"] == "sample" and isinstance(unwrap(site["fn"]), _CategoricalReparameterized):
            raise ValueError(
                f"guide site {name!r} is {type(unwrap(site['fn'])).__name__}, an integer site: "
                f"{loss_name} cannot give it its estimator (an integer has no pathwise "
                "gradient). Fit it with pyro_reinmax.infer.TraceLocalEnum_ELBO, or use the "
                "estimator's one-hot class in a one-hot model."
            )
