r"""Bernoulli distributions for NumPyro with reparameterized (straight-through) gradients.

A Bernoulli variable :math:`b` is the second coordinate of a two-category one-hot variable with
log-probabilities :math:`(\log(1-p), \log p)`, i.e. logits :math:`(0, \ell)` up to a shift. Each
estimator's Bernoulli class (:class:`ReinMaxBernoulli`, ...: ``families.ESTIMATORS``, derived from
``_BernoulliReparameterized`` for every rule) draws exactly and uses the two-category rule of its
estimator, so its gradient is that of the one-hot class on that pair. For ReinMax, with
:math:`g = \partial L/\partial b`, :math:`s = \sigma(\ell)` and :math:`a = (\sigma(\ell/\tau) +
b)/2`, that is :math:`\partial L/\partial \ell = \big(2 a(1-a) - \tfrac12 s(1-s)\big) g`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax import Array
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints

from .masking import safe_log, select
from .reparameterized import ProbsOrLogits
from .validation import concrete


def bernoulli_log_probs(distribution: Distribution) -> Array:
    r"""The pair :math:`(\log(1-p), \log p)` on the last axis, from the parameter the distribution
    was built with: exact at :math:`p \in \{0, 1\}` and at extreme logits, and the same whether
    or not the other parameter has been computed (NumPyro computes it lazily and keeps it)."""
    from_logits = getattr(distribution, "_from_logits", None)
    if from_logits is None:  # NumPyro's own: the class says which parameter it was built with
        from_logits = isinstance(distribution, dist.BernoulliLogits)
    if from_logits:
        logits = distribution.logits
        return jnp.stack([jax.nn.log_sigmoid(-logits), jax.nn.log_sigmoid(logits)], -1)
    probs = distribution.probs
    return jnp.stack([safe_log(1 - probs), safe_log(probs)], -1)


class _BernoulliReparameterized(ProbsOrLogits):
    arg_constraints = {"probs": constraints.unit_interval, "logits": constraints.real}
    support = constraints.boolean
    has_enumerate_support = True
    event_rank = 0
    uses_temperature = True

    def _check(self, parameter) -> None:
        if not concrete(parameter):
            return
        parameter = np.asarray(parameter)  # numpy: jax operations would be staged under tracing
        if self._from_logits:
            if np.isnan(parameter).any():
                raise ValueError("logits contain NaN; they must be real (+-inf allowed).")
        elif not ((parameter >= 0) & (parameter <= 1)).all():
            raise ValueError("probs must lie in [0, 1].")

    def _logits_from_probs(self, probs: Array) -> Array:
        return safe_log(probs) - safe_log(1 - probs)

    def _probs_from_logits(self, logits: Array) -> Array:
        return jax.nn.sigmoid(logits)

    def _one_hot_logits(self) -> Array:
        return bernoulli_log_probs(self)

    def _from_one_hot(self, sample: Array) -> Array:
        return sample[..., 1]

    def log_prob(self, value: ArrayLike) -> Array:
        r""":math:`(1 - b) \log(1 - p) + b \log p`, differentiable in :math:`b`."""
        if self._validate_args:
            self._validate_sample(value)
        return select(jnp.stack([1 - value, value], -1), bernoulli_log_probs(self))

    def enumerate_support(self, expand: bool = True) -> Array:
        values = jnp.arange(2, dtype=jnp.result_type(float)).reshape(
            (2,) + (1,) * len(self.batch_shape)
        )
        if expand:
            values = jnp.broadcast_to(values, (2,) + self.batch_shape)
        return values

    def entropy(self) -> Array:
        pair = bernoulli_log_probs(self)
        return -select(jnp.exp(pair), pair)
