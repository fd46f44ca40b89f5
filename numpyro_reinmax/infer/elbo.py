"""NumPyro's ``Trace_ELBO`` and ``TraceMeanField_ELBO`` for guides with reparameterized discrete
sites.

NumPyro warns about every discrete latent site under these losses, because their gradient has no
score-function term: a non-reparameterized discrete guide site gets zero gradient. For a ReinMax
(or straight-through) guide site the gradient is pathwise and the warning is wrong. These
subclasses declare that they handle discrete sites (no warning) and, in exchange, refuse with a
clear error any discrete guide site that is not reparameterized. Their losses are NumPyro's.
"""

from __future__ import annotations

import numpyro.infer
from numpyro.primitives import Messenger

__all__ = ["TraceMeanField_ELBO", "Trace_ELBO"]


class _RequireReparameterized(Messenger):
    """Raise at any latent discrete sample site whose distribution has no ``rsample``."""

    def __init__(self, fn, loss_name: str) -> None:
        super().__init__(fn)
        self.loss_name = loss_name

    def process_message(self, msg) -> None:
        fn = msg.get("fn")
        if (
            msg["type"] == "sample"
            and not msg["is_observed"]
            and fn.support.is_discrete
            and not fn.has_rsample
        ):
            raise ValueError(
                f"guide site {msg['name']!r} is discrete and not reparameterized "
                f"({type(fn).__name__}): {self.loss_name} would give it zero gradient. Use a "
                "reparameterized distribution (numpyro_reinmax.ReinMaxOneHotCategorical, "
                "ReinMaxBernoulli, ...), numpyro.infer.TraceGraph_ELBO (score function), or "
                "enumerate the site with numpyro.infer.TraceEnum_ELBO."
            )


class _ReparameterizedDiscreteGuides:
    can_infer_discrete = True

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        guarded = _RequireReparameterized(guide, type(self).__name__)
        return super().loss_with_mutable_state(rng_key, param_map, model, guarded, *args, **kwargs)


class Trace_ELBO(_ReparameterizedDiscreteGuides, numpyro.infer.Trace_ELBO):
    """``numpyro.infer.Trace_ELBO`` that accepts reparameterized discrete guide sites without a
    warning and refuses non-reparameterized ones with an error. Arguments as NumPyro's."""


class TraceMeanField_ELBO(_ReparameterizedDiscreteGuides, numpyro.infer.TraceMeanField_ELBO):
    """``numpyro.infer.TraceMeanField_ELBO`` (analytic KL where registered) that accepts
    reparameterized discrete guide sites without a warning and refuses non-reparameterized ones
    with an error. Arguments as NumPyro's."""
