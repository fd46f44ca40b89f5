r"""Integer-valued guide sites for models written with ``dist.Categorical`` (NumPyro).

Each estimator's integer class (:class:`ReinMaxCategorical`, ...: ``families.ESTIMATORS``,
derived from ``_CategoricalReparameterized`` for every rule) is a guide site for a model
site ``numpyro.sample("z", dist.Categorical(probs))``, which takes values ``0..K-1`` and
selects parameters by indexing (``locs[z]``). An integer carries no gradient, so these classes
are not reparameterized (``has_rsample`` is False: ``TraceGraph_ELBO`` scores them by the score
function, as any ``Categorical``; NumPyro's ``Trace_ELBO`` would give them no gradient, which
this package's ELBOs refuse). :class:`~numpyro_reinmax.infer.TraceLocalEnum_ELBO` gives them
their estimator instead: it draws the site's category through :meth:`one_hot_sample` (the
one-hot draw :math:`D` with the rule's backward), records the index ``D.argmax(-1)`` in the
guide's trace, and scores each model factor one site at a time, so the gradient reaches the
logits through :math:`D`. ``Predictive`` and ``infer_discrete`` see plain integer sites.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike
from numpyro.distributions import constraints

from .estimators import estimate
from .one_hot import CategoricalParameters
from .reparameterized import ProbsOrLogits
from .sampling import draw_index


class _CategoricalReparameterized(CategoricalParameters):
    """Parameters ``(..., K)`` as the one-hot classes; values the integers ``0..K-1``."""

    uses_temperature = True
    has_enumerate_support = True
    pytree_aux_fields = ("_categories",)

    def __init__(
        self,
        probs: ArrayLike | None = None,
        logits: ArrayLike | None = None,
        temperature: float = 1.0,
        validate_args: bool | None = None,
        **options: float,
    ) -> None:
        ProbsOrLogits.__init__(self, probs, logits, temperature, validate_args, **options)
        self._categories = self._event_shape[-1]
        self._event_shape = ()

    @property
    def has_rsample(self) -> bool:
        return False

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self):
        return constraints.integer_interval(0, self._categories - 1)

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        """An exact integer draw (no gradient)."""
        probs = jax.lax.stop_gradient(jax.nn.softmax(self._one_hot_logits(), -1))
        probs = jnp.broadcast_to(probs, tuple(sample_shape) + jnp.shape(probs))
        return draw_index(key, probs)

    def one_hot_sample(self, key: Array, shape: tuple[int, ...] | None = None) -> Array:
        r"""A one-hot draw :math:`D` of shape ``shape + (K,)`` (default: the batch shape) with the
        estimator's backward to the logits; its index is the site's value."""
        logits = self._one_hot_logits()
        shape = self.batch_shape if shape is None else tuple(shape)
        logits = jnp.broadcast_to(logits, shape + jnp.shape(logits)[-1:])
        sample, _ = estimate(self.rule_name, key, logits, self.temperature, self.options)
        return sample

    def log_prob(self, value: ArrayLike) -> Array:
        if self._validate_args:
            self._validate_sample(value)
        log_probs = jax.nn.log_softmax(self.logits, -1)
        value = jnp.asarray(value)
        shape = jnp.broadcast_shapes(jnp.shape(value), self.batch_shape)
        log_probs = jnp.broadcast_to(log_probs, shape + (self._categories,))
        index = jnp.broadcast_to(value, shape)[..., None].astype(jnp.int32)
        return jnp.take_along_axis(log_probs, index, -1)[..., 0]

    def enumerate_support(self, expand: bool = True) -> Array:
        values = jnp.arange(self._categories).reshape((-1,) + (1,) * len(self.batch_shape))
        if expand:
            values = jnp.broadcast_to(values, (self._categories,) + self.batch_shape)
        return values

    def expand(self, batch_shape):
        batch_shape = tuple(batch_shape)
        if batch_shape == self.batch_shape:
            return self
        name = "logits" if self._from_logits else "probs"
        parameter = jnp.broadcast_to(getattr(self, name), batch_shape + (self._categories,))
        new = type(self)(
            **{name: parameter},
            temperature=self.temperature,
            **dict(self.options),
            validate_args=False,
        )
        new._validate_args = self._validate_args
        return new

    @classmethod
    def infer_shapes(cls, probs=None, logits=None, temperature=()):
        shape = tuple(probs if logits is None else logits)
        return shape[:-1], ()

    @property
    def mean(self) -> Array:
        raise NotImplementedError("an integer categorical has no meaningful mean")

    @property
    def variance(self) -> Array:
        raise NotImplementedError("an integer categorical has no meaningful variance")

    @property
    def mode(self) -> Array:
        return jnp.argmax(self.logits, -1)
