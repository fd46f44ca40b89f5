r"""One-hot categorical distributions for NumPyro.

:class:`OneHotCategorical` is the one-hot categorical NumPyro lacks, for models: exact sampling, a
discrete one-hot support, and a log-mass :math:`\log p(z) = \sum_k z_k \log \pi_k` differentiable
in the value :math:`z`.

:class:`ReinMaxOneHotCategorical`, :class:`StraightThroughOneHotCategorical` and
:class:`GumbelStraightThroughOneHotCategorical` are reparameterized: ``sample`` draws exactly and
its backward is one estimator of :mod:`numpyro_reinmax.estimators`. They differ only in that rule.
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

__all__ = [
    "GappedStraightThroughOneHotCategorical",
    "GumbelRaoOneHotCategorical",
    "GumbelStraightThroughOneHotCategorical",
    "OneHotCategorical",
    "ReinMaxCVOneHotCategorical",
    "ReinMaxOneHotCategorical",
    "ReinMaxRaoOneHotCategorical",
    "StraightThroughOneHotCategorical",
]


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

    def __init__(
        self,
        probs: ArrayLike | None = None,
        logits: ArrayLike | None = None,
        temperature: float = 1.0,
        validate_args: bool | None = None,
        **options: float,
    ) -> None:
        ProbsOrLogits.__init__(self, probs, logits, temperature, validate_args, **options)


class ReinMaxOneHotCategorical(_OneHotReparameterized):
    r"""One-hot categorical with ReinMax gradients (Liu et al., NeurIPS 2023).

    ``sample`` draws :math:`D \sim \operatorname{Categorical}(\pi_0)`,
    :math:`\pi_0 = \operatorname{softmax}(\theta)`; with :math:`g = \partial L/\partial D` and
    :math:`\pi_1 = (\operatorname{softmax}(\theta/\tau) + D)/2` its backward is
    :math:`\nabla_\theta = 2 J(\pi_1) g - \tfrac12 J(\pi_0) g`,
    :math:`J(p) = \operatorname{diag}(p) - p p^\top`. At :math:`\tau = 1` the expected gradient is
    exact for objectives quadratic in :math:`D`. ``log_prob``, ``entropy``, KL and
    ``enumerate_support`` are those of :class:`OneHotCategorical`.

    Args:
        probs, logits: as :class:`OneHotCategorical`.
        temperature: :math:`\tau > 0`, used by the backward only (the draw does not depend on it).
        validate_args: as for every NumPyro distribution.
    """

    rule_name = "reinmax"


class StraightThroughOneHotCategorical(_OneHotReparameterized):
    r"""One-hot categorical with straight-through gradients (Bengio et al., 2013):
    :math:`\nabla_\theta = J(\operatorname{softmax}(\theta/\tau))\, g / \tau`.
    Arguments as :class:`ReinMaxOneHotCategorical`."""

    rule_name = "straight_through"


class GumbelStraightThroughOneHotCategorical(_OneHotReparameterized):
    r"""One-hot categorical with straight-through Gumbel-softmax gradients (Jang et al., 2017): the
    draw is :math:`\operatorname{onehot}(\arg\max(\theta + G))` with Gumbel noise :math:`G` (an
    exact categorical draw) and the backward :math:`J(y)\, g / \tau`,
    :math:`y = \operatorname{softmax}((\theta + G)/\tau)`. Arguments as
    :class:`ReinMaxOneHotCategorical`."""

    rule_name = "gumbel_straight_through"


class GappedStraightThroughOneHotCategorical(_OneHotReparameterized):
    r"""One-hot categorical with gapped straight-through (GST) gradients (Fan et al., ICML 2022):
    :math:`\nabla_\theta = J(\operatorname{softmax}(\tilde\theta/\tau))\, g / \tau` at the
    logits shifted so the drawn category leads every other by at least ``gap``. Arguments as
    :class:`ReinMaxOneHotCategorical`, plus ``gap`` (default 1.0, the paper's GST-1.0)."""

    rule_name = "gapped_straight_through"


class GumbelRaoOneHotCategorical(_OneHotReparameterized):
    r"""One-hot categorical with Gumbel-Rao (GR-MCK) gradients (Paulus et al., ICLR 2021): the
    ST-Gumbel backward averaged over ``samples`` draws of Gumbel noise conditional on the drawn
    category. Arguments as :class:`ReinMaxOneHotCategorical`, plus ``samples`` (default 10)."""

    rule_name = "gumbel_rao"


class ReinMaxRaoOneHotCategorical(_OneHotReparameterized):
    r"""One-hot categorical with ReinMax-Rao gradients (Wang and Bui, 2026): ReinMax's first term
    replaced by a Gumbel-Rao average at :math:`\log((\pi_0 + D)/2)`. Arguments as
    :class:`ReinMaxOneHotCategorical`, plus ``samples`` (default 10)."""

    rule_name = "reinmax_rao"


class ReinMaxCVOneHotCategorical(_OneHotReparameterized):
    r"""One-hot categorical with ReinMax-CV gradients (Wang and Bui, 2026): ReinMax plus a
    Gumbel-Rao control variate at :math:`\log((\pi_0 + D)/2)`. Arguments as
    :class:`ReinMaxOneHotCategorical`, plus ``samples`` (default 10), ``eta`` (1.0) and
    ``cv_temperature`` (default: the temperature)."""

    rule_name = "reinmax_cv"
