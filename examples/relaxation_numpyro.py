"""The relaxation users reach for today (``reinmax-compare``'s ``gumbel-softmax``), in NumPyro:
every latent one-hot and 0/1 site of the model and guide replaced by its Concrete relaxation on
the same logits (``numpyro_reinmax.RelaxedOneHotCategorical``, ``RelaxedBernoulliLogits``); the
objective is the Concrete ELBO of ``relaxation_pyro.py``."""

from __future__ import annotations

from numpyro.distributions import Independent, MaskedDistribution, RelaxedBernoulliLogits
from numpyro.infer import Trace_ELBO
from numpyro.primitives import Messenger

import numpyro_reinmax as nr
from numpyro_reinmax.families import support_kind, unwrap
from reinmax_examples.methods import relaxed_integer_site


class RelaxedSites(Messenger):
    """Replaces the distribution of every latent one-hot or 0/1 site by its Concrete relaxation
    at ``temperature`` on the same logits (batch and event shape kept); an integer site is an
    error, since a model that indexes with it cannot read a relaxed value."""

    def __init__(self, fn=None, temperature: float = 1.0) -> None:
        self.temperature = temperature
        super().__init__(fn)

    def process_message(self, msg) -> None:
        support = getattr(msg["fn"], "support", None)  # a plate's subsample site has none
        if msg["type"] != "sample" or msg["is_observed"] or support is None:
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
    if support_kind(base.support) == "one_hot":
        concrete = nr.RelaxedOneHotCategorical(logits=base.logits, temperature=temperature)
        shape = fn.batch_shape + fn.event_shape[:-1]
    else:
        concrete = RelaxedBernoulliLogits(temperature=temperature, logits=base.logits)
        shape = fn.batch_shape + fn.event_shape
    concrete = concrete.expand(shape)
    reinterpreted = len(shape) - len(fn.batch_shape)
    return Independent(concrete, reinterpreted) if reinterpreted else concrete


class GumbelSoftmax_ELBO(Trace_ELBO):
    """``Trace_ELBO`` of the model and guide with every latent one-hot and 0/1 site relaxed
    (:class:`RelaxedSites`): the Concrete ELBO, by reparameterized Gumbel-softmax draws."""

    can_infer_discrete = True  # its discrete sites are relaxed, not left to fail

    def __init__(self, temperature: float, **options) -> None:
        super().__init__(**options)
        self.temperature = temperature

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        model = RelaxedSites(model, temperature=self.temperature)
        guide = RelaxedSites(guide, temperature=self.temperature)
        return super().loss_with_mutable_state(rng_key, param_map, model, guide, *args, **kwargs)
