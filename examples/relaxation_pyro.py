"""The relaxation users reach for today, as a baseline for ``reinmax-compare``'s
``gumbel-softmax`` method (Pyro).

Every latent one-hot site of the model and of the guide is replaced by its Concrete (Gumbel-softmax)
relaxation on the same logits, ``RelaxedOneHotCategorical(temperature, logits)`` (and a 0/1 site by
``RelaxedBernoulli``): the guide draws ``softmax((logits + g) / temperature)`` with Gumbel noise
``g``, the model reads that point of the simplex where it read a one-hot vector, and the ELBO is
Concrete densities' (Maddison, Mnih and Teh, 2017; Jang, Gu and Poole, 2017):

    ELBO_relaxed = E_q[log p_relaxed(x, z) - log q_relaxed(z)],   z ~ Concrete(logits, temperature),

a different objective from the discrete ELBO whose gap closes as the temperature goes to zero. The
guide itself stays the discrete one (``AutoReinMax`` on the model as written), so the fitted guide
and parameters are evaluated on the discrete model.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from pyro.distributions import Independent, MaskedDistribution
from pyro.infer import Trace_ELBO
from pyro.poutine.messenger import Messenger

from pyro_reinmax.families import support_kind, unwrap
from reinmax_examples.methods import relaxed_integer_site


class RelaxedSites(Messenger):
    """Replaces the distribution of every latent one-hot or 0/1 site by its Concrete relaxation
    at ``temperature`` on the same logits (batch and event shape kept); an integer site is an
    error, since a model that indexes with it cannot read a relaxed value."""

    def __init__(self, temperature: float) -> None:
        super().__init__()
        self.temperature = temperature

    def _pyro_sample(self, msg) -> None:
        support = getattr(msg["fn"], "support", None)  # a plate's subsample site has none
        if msg["is_observed"] or support is None:
            return
        kind = support_kind(support)
        if kind == "categorical":
            raise ValueError(relaxed_integer_site(msg["name"]))
        if kind is not None:
            msg["fn"] = relaxed(msg["fn"], self.temperature)


def relaxed(fn, temperature: float):
    """The Concrete relaxation of a one-hot or 0/1 distribution (through ``Independent`` and
    ``Expanded`` wrappers; a masked one is refused rather than unmasked)."""
    layer = fn
    while layer is not None:
        if isinstance(layer, MaskedDistribution):
            raise NotImplementedError("gumbel-softmax: masked discrete sites are not relaxed")
        layer = getattr(layer, "base_dist", None)
    base = unwrap(fn)
    temperature = torch.as_tensor(temperature, dtype=base.logits.dtype, device=base.logits.device)
    if support_kind(base.support) == "one_hot":
        concrete = dist.RelaxedOneHotCategorical(temperature, logits=base.logits)
        shape = fn.batch_shape + fn.event_shape[:-1]
    else:
        concrete = dist.RelaxedBernoulli(temperature, logits=base.logits)
        shape = fn.batch_shape + fn.event_shape
    concrete = concrete.expand(shape)
    reinterpreted = len(shape) - len(fn.batch_shape)
    return Independent(concrete, reinterpreted) if reinterpreted else concrete


class GumbelSoftmax_ELBO(Trace_ELBO):
    """``Trace_ELBO`` of the model and guide with every latent one-hot and 0/1 site relaxed
    (:class:`RelaxedSites`): the Concrete ELBO above, by reparameterized Gumbel-softmax draws."""

    def __init__(self, temperature: float, **options) -> None:
        super().__init__(**options)
        self.temperature = temperature

    def _get_trace(self, model, guide, args, kwargs):
        relax = RelaxedSites(self.temperature)
        return super()._get_trace(relax(model), relax(guide), args, kwargs)
