"""Exact enumeration of one-hot sites with NumPyro's ``TraceEnum_ELBO`` (and NUTS).

NumPyro's enumeration handler substitutes the integers ``0..K-1`` for an enumerated site, which a
one-hot site cannot use. :func:`enum_onehot` marks the model's latent one-hot sites for parallel
enumeration and, while an enumeration handler is active, shows each of them to that handler as
its index (an integer-valued view with ``log_prob(k) = log_prob(onehot(k))``); the model's code
still receives one-hot values (``(K, 1, ..., 1, K)``, the enumeration dim in the batch). Without
an enumeration handler (sampling, ``Predictive``, NumPyro's provenance tracking) the sites keep
their one-hot values but are not reparameterized: a site that is summed out has no pathwise
gradient, and NumPyro's dependency tracking must see it as a discrete variable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array
from jax.typing import ArrayLike
from numpyro.distributions import Distribution, constraints

from .constraints import one_hot
from .scan_body import ScanAwareMessenger, register_batch_promotion

__all__ = ["enum_onehot"]

_CATEGORIES = "_enum_onehot_categories"
_INDEX_ALLOWED = "_enum_onehot_index_allowed"


@register_batch_promotion
class NotReparameterized(Distribution):
    """``base`` with its samples cut from the gradient (``has_rsample`` False)."""

    pytree_data_fields = ("base",)

    def __init__(self, base: Distribution) -> None:
        self.base = base
        super().__init__(base.batch_shape, base.event_shape, validate_args=False)

    @property
    def has_rsample(self) -> bool:
        return False

    @property
    def support(self):
        return self.base.support

    @property
    def has_enumerate_support(self) -> bool:
        return self.base.has_enumerate_support

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        return jax.lax.stop_gradient(self.base.sample(key, sample_shape))

    def log_prob(self, value: ArrayLike) -> Array:
        return self.base.log_prob(value)

    def enumerate_support(self, expand: bool = True) -> Array:
        return self.base.enumerate_support(expand)


class OneHotAsIndex(NotReparameterized):
    """A one-hot distribution seen through the position of its one: values ``0..K-1``."""

    has_enumerate_support = True

    def __init__(self, base: Distribution) -> None:
        self.base = base
        Distribution.__init__(self, base.batch_shape, (), validate_args=False)

    @property
    def support(self):
        return constraints.integer_interval(0, self.base.event_shape[-1] - 1)

    def log_prob(self, value: ArrayLike) -> Array:
        k = self.base.event_shape[-1]
        return self.base.log_prob(jax.nn.one_hot(value, k, dtype=jnp.result_type(float)))

    def sample(self, key: Array, sample_shape: tuple[int, ...] = ()) -> Array:
        return jnp.argmax(super().sample(key, sample_shape), -1)

    def enumerate_support(self, expand: bool = True) -> Array:
        k = self.base.event_shape[-1]
        values = jnp.arange(k).reshape((k,) + (1,) * len(self.batch_shape))
        return jnp.broadcast_to(values, (k,) + self.batch_shape) if expand else values


def _is_one_hot(fn) -> bool:
    return fn.support is one_hot or type(fn.support).__name__ == "_OneHot"


def enumerating() -> bool:
    """Whether NumPyro's (funsor) enumeration handler is on the effect stack."""
    try:
        from numpyro.contrib.funsor.enum_messenger import enum
    except ImportError:  # funsor not installed: nothing can enumerate
        return False
    from numpyro.primitives import _PYRO_STACK  # the public handlers do not expose the stack

    return any(isinstance(handler, enum) for handler in _PYRO_STACK)


class enum_onehot(ScanAwareMessenger):
    r"""Configure a model's latent one-hot sites for exact enumeration.

    ``TraceEnum_ELBO`` then sums them out exactly as it sums out ``Categorical`` sites (the same
    loss), whether the model uses :class:`~numpyro_reinmax.OneHotCategorical` or a reparameterized
    one-hot class; NUTS marginalises them the same way. A site's own ``infer={"enumerate": ...}``
    is respected. Other discrete sites keep their configuration (use NumPyro's
    ``config_enumerate`` for them). Sites inside ``numpyro.contrib.control_flow.scan`` are
    configured too (carry the one-hot value from step to step as usual), but NumPyro's
    ``TraceEnum_ELBO`` returns a wrong value for a model with ``scan``, one-hot or not (a loss of
    20.08 instead of 12.46 nats on a 4-step HMM in the tests): sum a ``scan`` model's sites out
    with :class:`~numpyro_reinmax.infer.TraceLocalEnum_ELBO` (the guide naming no discrete site)
    or funsor's ``log_density``, which are exact there.

    Example:
        ``SVI(enum_onehot(model), guide_for_the_continuous_sites, optimizer, TraceEnum_ELBO())``
        fits a model with its one-hot sites summed out; on a two-point mixture the loss is
        :math:`-\log p(x)`:

        >>> import jax, jax.numpy as jnp, numpyro, numpyro.distributions as dist
        >>> from numpyro.infer import TraceEnum_ELBO
        >>> from numpyro_reinmax import OneHotCategorical, enum_onehot
        >>> def model(x):
        ...     with numpyro.plate("data", len(x)):
        ...         z = numpyro.sample("z", OneHotCategorical(logits=jnp.zeros(2)))
        ...         numpyro.sample("x", dist.Normal(z @ jnp.array([-3.0, 3.0]), 1.0), obs=x)
        >>> x = jnp.array([-3.0, 3.0])
        >>> def no_guide(x):
        ...     pass
        >>> loss = TraceEnum_ELBO().loss(jax.random.PRNGKey(0), {}, enum_onehot(model), no_guide, x)
        >>> exact = -jax.nn.logsumexp(jnp.log(0.5) + dist.Normal(jnp.array([-3.0, 3.0]), 1.0)
        ...     .log_prob(x[:, None]), -1).sum()
        >>> bool(jnp.isclose(loss, exact))
        True
    """

    def process_sample(self, msg) -> None:
        if msg["is_observed"] or not _is_one_hot(msg["fn"]):
            return
        infer = msg["infer"]
        infer.setdefault("enumerate", "parallel")
        if infer["enumerate"] != "parallel":
            return
        if not enumerating():
            msg["fn"] = NotReparameterized(msg["fn"])
            # an index substituted from an enumerated run (infer_discrete) reaches the model's
            # code as one-hot
            msg["infer"][_INDEX_ALLOWED] = msg["fn"].event_shape[-1]
            return
        show_as_index(msg)

    def postprocess_sample(self, msg) -> None:
        restore_one_hot(msg)
        if _INDEX_ALLOWED in msg["infer"]:
            value = msg["value"]
            if jnp.issubdtype(jnp.result_type(value), jnp.integer):
                k = msg["infer"][_INDEX_ALLOWED]
                msg["value"] = jax.nn.one_hot(value, k, dtype=jnp.result_type(float))


def show_as_index(msg) -> None:
    """Show a one-hot site to the enumeration handler as its index (``OneHotAsIndex``); the site
    must have event_dim 1."""
    if msg["fn"].event_dim != 1:
        raise ValueError(
            f"site {msg['name']!r}: only one-hot sites with event_dim 1 can be enumerated "
            f"(got event_shape {msg['fn'].event_shape}); put the other event dims in a plate."
        )
    msg["infer"][_CATEGORIES] = msg["fn"].event_shape[-1]
    msg["fn"] = OneHotAsIndex(msg["fn"])


def restore_one_hot(msg) -> None:
    """After :func:`show_as_index`: the trace recorded the index; the model's code continues with
    one-hot values (once: a value already one-hot is left as it is)."""
    if (
        msg["type"] == "sample"
        and _CATEGORIES in msg["infer"]
        and jnp.issubdtype(jnp.result_type(msg["value"]), jnp.integer)
    ):
        k = msg["infer"][_CATEGORIES]
        msg["value"] = jax.nn.one_hot(msg["value"], k, dtype=jnp.result_type(float))
