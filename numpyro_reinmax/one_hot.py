r"""One-hot categorical distributions for NumPyro.

:class:`OneHotCategorical` is the one-hot categorical NumPyro lacks, for models: exact sampling, a
discrete one-hot support, and a log-mass :math:`\log p(z) = \sum_k z_k \log \pi_k` differentiable
in the value :math:`z`.

Each estimator's one-hot class (:class:`ReinMaxOneHotCategorical`,
:class:`StraightThroughOneHotCategorical`, ...: ``families.ESTIMATORS``, derived from
``_OneHotReparameterized`` for every rule) is reparameterized: ``sample`` draws exactly and
its backward is one estimator of :mod:`numpyro_reinmax.estimators`. They differ only in
that rule.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike
from numpyro.distributions import constraints

from .constraints import one_hot
from .enumeration import enumerating
from .masking import safe_log, select
from .reparameterized import ProbsOrLogits
from .validation import (
    INTEGER_ENUMERATION_ADVICE,
    check_logits,
    check_one_hot_value,
    check_probs,
)

__all__ = ["OneHotCategorical"]


class CategoricalParameters(ProbsOrLogits):
    """``probs`` or ``logits`` of a categorical over the last axis, with their checks."""

    arg_constraints = {"probs": constraints.simplex, "logits": constraints.real_vector}
    event_rank = 1

    def _check(self, parameter) -> None:
        if self._from_logits:
            check_logits(parameter)
        else:
            check_probs(parameter)

    def _logits_from_probs(self, probs: Array) -> Array:
        return safe_log(probs)

    def _probs_from_logits(self, logits: Array) -> Array:
        return jax.nn.softmax(logits, -1)

    def _one_hot_logits(self) -> Array:
        return self.logits

    def _from_one_hot(self, sample: Array) -> Array:
        return sample


class OneHotCategorical(CategoricalParameters):
    r"""One-hot categorical distribution with a log-mass differentiable in the value.

    .. math:: \log p(z) = \sum_k z_k \log \pi_k, \qquad \pi = \operatorname{softmax}(\theta)

    Not reparameterized: use it for one-hot sites of models (its samples carry no gradient).
    ``-inf`` logits (or zero probabilities) mask categories: never drawn, finite gradients. With
    validation on, ``probs`` must sum to one and logits must be finite or ``-inf``.

    Args:
        probs: event probabilities, shape ``batch_shape + (K,)``.
        logits: unnormalised log-probabilities (instead of ``probs``).
        validate_args: as for every NumPyro distribution.
    """

    support = one_hot
    has_enumerate_support = True

    def __init__(
        self,
        probs: ArrayLike | None = None,
        logits: ArrayLike | None = None,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(probs, logits, validate_args=validate_args)

    def log_prob(self, value: ArrayLike) -> Array:
        check_one_hot_value(value, self.event_shape[-1])
        if self._validate_args:
            self._validate_sample(value)
        return select(value, jax.nn.log_softmax(self.logits, -1))

    def enumerate_support(self, expand: bool = True) -> Array:
        if enumerating():  # NumPyro's handler asks for the size, to substitute integer indices
            raise ValueError(INTEGER_ENUMERATION_ADVICE)
        k = self.event_shape[0]
        values = jnp.eye(k, dtype=jnp.result_type(self.logits)).reshape(
            (k,) + (1,) * len(self.batch_shape) + (k,)
        )
        if expand:
            values = jnp.broadcast_to(values, (k,) + self.batch_shape + (k,))
        return values

    def entropy(self) -> Array:
        return -select(self.probs, jax.nn.log_softmax(self.logits, -1))


class _OneHotReparameterized(OneHotCategorical):
    uses_temperature = True
    __init__ = ProbsOrLogits.__init__  # the temperature and the rule's options: not the model's
