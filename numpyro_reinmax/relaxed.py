r"""The relaxed one-hot categorical (Concrete / Gumbel-softmax) distribution, which NumPyro lacks.

Samples :math:`y = \operatorname{softmax}((\theta + G)/\tau)` with Gumbel noise :math:`G` lie
inside the simplex; the density (Maddison et al., 2017; Jang et al., 2017) of :math:`y` is

.. math::
    p(y) = \Gamma(n)\, \tau^{n-1} \prod_k \pi_k y_k^{-\tau-1}
           \Big/ \Big(\sum_k \pi_k y_k^{-\tau}\Big)^{n}

over the :math:`n` unmasked categories. Unlike the one-hot classes, the temperature is part of the
law here, and ``log_prob`` is a density: an ELBO that scores a one-hot prior with it is not a bound.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from jax.scipy.special import gammaln, logsumexp
from jax.typing import ArrayLike
from numpyro.distributions import constraints

from .estimators import tempered_softmax
from .masking import safe_log
from .one_hot import CategoricalParameters

__all__ = ["RelaxedOneHotCategorical"]


class RelaxedOneHotCategorical(CategoricalParameters):
    r"""Relaxed one-hot categorical on the simplex, reparameterized.

    Args:
        probs, logits: as :class:`~numpyro_reinmax.OneHotCategorical`.
        temperature: :math:`\tau > 0` of the relaxation (small: close to one-hot).
        validate_args: as for every NumPyro distribution.
    """

    support = constraints.simplex
    uses_temperature = True

    @property
    def has_rsample(self) -> bool:
        return True

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        shape = tuple(sample_shape) + self.batch_shape + self.event_shape
        noise = jax.random.gumbel(key, shape, jnp.result_type(self.logits))
        return tempered_softmax(self.logits + noise, self.temperature)

    def log_prob(self, value: ArrayLike) -> Array:
        if self._validate_args:
            self._validate_sample(value)
        logits = jax.nn.log_softmax(self.logits, -1)
        active = jnp.isfinite(logits)
        n = active.sum(-1)
        log_value = safe_log(value)
        tau = self.temperature
        terms = jnp.where(active, logits - (tau + 1) * jnp.where(active, log_value, 0.0), 0.0)
        normaliser = logsumexp(
            jnp.where(active, logits - tau * jnp.where(active, log_value, 0.0), -jnp.inf), -1
        )
        return gammaln(n) + (n - 1) * jnp.log(tau) + terms.sum(-1) - n * normaliser

    @property
    def mean(self) -> Array:
        raise NotImplementedError("The mean of the Concrete distribution has no closed form.")

    @property
    def variance(self) -> Array:
        raise NotImplementedError("The variance of the Concrete distribution has no closed form.")
