r"""An unbiased antithetic ELBO for guides with non-reparameterized Bernoulli sites (NumPyro):
DisARM (Dong, Mnih and Tucker, NeurIPS 2020).

Each pair of particles draws every Bernoulli site of the guide from one uniform :math:`u` per
element: :math:`b = 1[u < \sigma(\alpha)]` and :math:`\tilde b = 1[1 - u < \sigma(\alpha)]`; every
other random choice is the same in both (the same key). With :math:`f = \log p(x, z) - \log q(z)`
of each particle, the estimate of the gradient with respect to the logits :math:`\alpha` is

.. math::

   \tfrac12 \big(f(b) - f(\tilde b)\big)\, (-1)^{\tilde b}\, 1[b \ne \tilde b]\, \sigma(|\alpha|),

unbiased (the pathwise gradient of :math:`\log q(b)` at the drawn :math:`b` has mean zero and is
kept, as in ``Trace_ELBO``); reparameterized sites get their pathwise gradient through
:math:`(f(b) + f(\tilde b))/2`. The loss is the mean of :math:`-f` over the particles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import Array
from numpyro.distributions import Distribution, MaskedDistribution
from numpyro.distributions.discrete import BernoulliLogits, BernoulliProbs
from numpyro.infer.elbo import ELBO
from numpyro.primitives import Messenger

from ..families import unwrap
from .rloo import traced_particle

__all__ = ["TraceDisARM_ELBO"]


def _site_mask(fn: Distribution) -> Array | None:
    """The product of the ``MaskedDistribution`` masks around a site's distribution."""
    mask = True
    while hasattr(fn, "base_dist"):
        if isinstance(fn, MaskedDistribution) and not isinstance(fn._mask, bool):
            mask = fn._mask & mask
        fn = fn.base_dist
    return mask


def is_antithetic_site(site: dict) -> bool:
    """A latent, non-reparameterized Bernoulli site (possibly wrapped)."""
    fn = site["fn"]
    return (
        site["type"] == "sample"
        and not site["is_observed"]
        and not fn.has_rsample
        and isinstance(unwrap(fn), (BernoulliProbs, BernoulliLogits))
    )


class _AntitheticBernoulli(Messenger):
    """Draw each latent Bernoulli site as ``u < p`` (or ``1 - u < p``) from one uniform per
    element and the site's key; refuse any other non-reparameterized discrete latent."""

    def __init__(self, fn: Callable, antithetic: bool) -> None:
        super().__init__(fn)
        self.antithetic = antithetic

    def process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["is_observed"] or msg["value"] is not None:
            return
        fn = msg["fn"]
        if not is_antithetic_site(msg):
            if fn.support.is_discrete and not fn.has_rsample:
                raise ValueError(
                    f"guide site {msg['name']!r} is a non-reparameterized "
                    f"{type(unwrap(fn)).__name__}: TraceDisARM_ELBO estimates gradients for "
                    "Bernoulli sites only. Use TraceRLOO_ELBO for categorical sites, or a "
                    "reparameterized distribution (ReinMaxOneHotCategorical, ...)."
                )
            return
        shape = tuple(msg["kwargs"].get("sample_shape", ())) + fn.shape()
        probs = jnp.broadcast_to(unwrap(fn).probs, shape)
        u = jax.random.uniform(msg["kwargs"]["rng_key"], shape, probs.dtype)
        msg["value"] = (((1 - u) if self.antithetic else u) < probs).astype(probs.dtype)


class TraceDisARM_ELBO(ELBO):
    r"""DisARM over ``num_pairs`` antithetic pairs of particles (the estimator in the module
    docstring) for the guide's non-reparameterized Bernoulli sites; every other latent site of
    the guide must be reparameterized.

    Args:
        num_pairs: pairs of particles per step (two evaluations of the model each), mapped with
            ``jax.vmap``.
    """

    can_infer_discrete = True

    def __init__(self, num_pairs: int = 1) -> None:
        if isinstance(num_pairs, bool) or not isinstance(num_pairs, int) or num_pairs < 1:
            raise ValueError(f"num_pairs must be an integer >= 1, got {num_pairs!r}.")
        super().__init__(num_particles=2 * num_pairs)
        self.num_pairs = num_pairs

    def loss_with_mutable_state(
        self,
        rng_key: Array,
        param_map: dict,
        model: Callable,
        guide: Callable,
        *args: Any,
        **kwargs: Any,
    ) -> dict:
        def particle(key: Array, antithetic: bool) -> tuple[Array, Array]:
            f, _, trace = traced_particle(
                model,
                guide,
                param_map,
                key,
                args,
                kwargs,
                "TraceDisARM_ELBO",
                lambda seeded: _AntitheticBernoulli(seeded, antithetic),
            )
            return f, trace

        def pair(key: Array) -> Array:
            f, trace = particle(key, False)  # the same key: the same other random choices
            f_anti, trace_anti = particle(key, True)
            surrogate = (f + f_anti) / 2
            difference = jax.lax.stop_gradient(f - f_anti) / 2
            for name, site in trace.items():
                if not is_antithetic_site(site):
                    continue
                b, b_anti = site["value"], trace_anti[name]["value"]
                logits = jnp.broadcast_to(unwrap(site["fn"]).logits, b.shape)
                weight = jnp.where(b_anti > 0, -1.0, 1.0) * (b != b_anti)
                weight = weight * jax.nn.sigmoid(jnp.abs(jax.lax.stop_gradient(logits)))
                weight = weight * _site_mask(site["fn"])
                surrogate = surrogate + jnp.sum(difference * weight * logits)
            return surrogate, (f + f_anti) / 2

        surrogates, values = jax.vmap(pair)(jax.random.split(rng_key, self.num_pairs))
        surrogate, value = surrogates.mean(), jax.lax.stop_gradient(values.mean())
        return {
            "loss": -(surrogate - jax.lax.stop_gradient(surrogate) + value),
            "mutable_state": None,
        }
