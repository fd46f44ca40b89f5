r"""Mixture likelihoods written so that straight-through estimators can fit them (NumPyro).

A one-hot assignment :math:`z` can select a component in two ways:

* select the parameters, then score once: :math:`\log \mathcal N(x \mid z^\top \mu, z^\top \sigma)`.
  The cost is strongly non-linear in :math:`z`; straight-through gradients, ReinMax's included,
  follow its tangent at a one-hot corner and can point the wrong way (measured on Old Faithful in
  ``benchmarks/mixture_formulation.py``: every straight-through guide collapses).
* score every component, then select: :math:`\sum_k z_k \log p_k(x)`. This is the same function at
  every one-hot :math:`z` and is linear in :math:`z`, where ReinMax and straight-through are
  unbiased; their guides then reach the enumeration optimum.

:class:`OneHotMixture` is the second form as a distribution. It also runs unchanged under
enumeration: an enumerated assignment of shape ``(K, 1, ..., K)`` broadcasts.
"""

from __future__ import annotations

import copy

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike
from numpyro.distributions import CategoricalLogits, CategoricalProbs, Distribution
from numpyro.ops.indexing import Vindex
from numpyro.util import not_jax_tracer

from .masking import safe_log, select
from .validation import check_one_hot, check_one_hot_value, validation_enabled

__all__ = ["OneHotMixture"]


class OneHotMixture(Distribution):
    r"""The likelihood of ``x`` under the component that the one-hot ``assignment`` selects.

    .. math:: \log p(x \mid z) = \sum_k z_k \log p_k(x)

    linear in :math:`z`, with gradients :math:`\partial/\partial z_k = \log p_k(x)` for the
    assignment's estimator.

    Args:
        assignment: one-hot values of shape ``(..., K)``, e.g. a sample of
            :class:`~numpyro_reinmax.ReinMaxOneHotCategorical` or an enumerated value.
        components: a distribution whose rightmost batch axis indexes the K components, e.g.
            ``dist.Normal(locs, scales)`` with ``locs.shape == (K,)``, or ``.to_event(1)`` of a
            ``(K, D)`` Normal for D-dimensional data.
        validate_args: as for every NumPyro distribution.

    Example:
        In a model, ``z = numpyro.sample("z", OneHotCategorical(logits=weights))`` then
        ``numpyro.sample("x", OneHotMixture(z, dist.Normal(locs, scales)), obs=x)``. Each point
        is scored by the component its one-hot selects:

        >>> import jax.numpy as jnp, numpyro.distributions as dist
        >>> from numpyro_reinmax import OneHotMixture
        >>> z = jnp.array([[1.0, 0.0], [0.0, 1.0]])
        >>> mixture = OneHotMixture(z, dist.Normal(jnp.array([-1.0, 1.0]), 1.0))
        >>> [round(value, 4) for value in mixture.log_prob(jnp.array([-1.0, 3.0])).tolist()]
        [-0.9189, -2.9189]
    """

    arg_constraints: dict = {}
    pytree_data_fields = ("assignment", "components")

    def __init__(self, assignment, components, validate_args=None) -> None:
        if not components.batch_shape:
            raise ValueError(
                "components must have a batch axis of components (the rightmost batch axis), "
                f"got batch_shape {tuple(components.batch_shape)}."
            )
        num_components = components.batch_shape[-1]
        assignment = jnp.asarray(assignment)
        check_one_hot_value(assignment, num_components)
        if assignment.ndim < 1 or assignment.shape[-1] != num_components:
            raise ValueError(
                f"assignment must end in {num_components} categories (one per component), got "
                f"shape {tuple(assignment.shape)}."
            )
        if validation_enabled(validate_args):
            check_one_hot("assignment", assignment)
        self.assignment = assignment
        self.components = components
        batch_shape = jax.lax.broadcast_shapes(assignment.shape[:-1], components.batch_shape[:-1])
        super().__init__(batch_shape, components.event_shape, validate_args=validate_args)

    @property
    def support(self):
        return self.components.support

    @property
    def has_rsample(self) -> bool:
        return self.components.has_rsample

    def _select_component(self, per_component: Array) -> Array:
        """Contract ``(..., K, *event_shape)`` with the assignment over the component axis."""
        event_dims = len(self.event_shape)
        weights = self.assignment.reshape(self.assignment.shape + (1,) * event_dims)
        return (weights * per_component).sum(-1 - event_dims)

    def log_prob(self, value: ArrayLike) -> Array:
        value = jnp.expand_dims(value, -1 - len(self.event_shape))
        if self._validate_args:
            inside = self.components.support(value) | (self.assignment == 0)
            if not_jax_tracer(inside) and not inside.all():
                raise ValueError(
                    "The value argument must be within the support of the component that the "
                    f"assignment selects ({self.components.support})."
                )
        return select(self.assignment, self._component_log_probs(value))

    def _component_log_probs(self, value: ArrayLike) -> Array:
        """``log p_k(value)`` for every component, ``value`` with its component axis inserted.

        Scored without the components' own validation: a component that the assignment does not
        select may see a value outside its support (scored -inf, weighted by 0). Categorical
        components are scored by a gather: NumPyro's ``Categorical.log_prob`` would broadcast the
        ``(..., K, V)`` table to every value first.
        """
        if isinstance(self.components, CategoricalProbs | CategoricalLogits):
            if isinstance(self.components, CategoricalProbs):
                log_pmf = safe_log(self.components.probs)
            else:
                log_pmf = jax.nn.log_softmax(self.components.logits, -1)
            return Vindex(log_pmf)[..., value.astype(jnp.int32)]
        unchecked = copy.copy(self.components)
        unchecked._validate_args = False
        return unchecked.log_prob(value)

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        components = self.components.expand(self.batch_shape + self.assignment.shape[-1:])
        return self._select_component(components.sample(key, sample_shape))

    @property
    def mean(self) -> Array:
        return jnp.broadcast_to(
            self._select_component(self.components.mean), self.batch_shape + self.event_shape
        )
