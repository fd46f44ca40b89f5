"""The one-hot support: discrete, event dimension 1.

NumPyro has no one-hot constraint. Declaring a one-hot site's support as ``simplex`` would make it
continuous: autoguides would build a continuous guide for it and NUTS would move it continuously.
"""

from __future__ import annotations

import jax.numpy as jnp
from numpyro.distributions.constraints import _SingletonConstraint
from numpyro.distributions.transforms import biject_to

__all__ = ["one_hot"]


class _OneHot(_SingletonConstraint):
    r"""One-hot vectors along the last dimension: :math:`x_k \in \{0, 1\}` and
    :math:`\sum_k x_k = 1` (discrete, ``event_dim`` 1); the support of this package's one-hot
    distributions. Its feasible point is the first category. Continuous autoguides refuse it with a
    message saying what works."""

    is_discrete = True
    event_dim = 1

    def __call__(self, x):
        return ((x == 0) | (x == 1)).all(-1) & (x.sum(-1) == 1)

    def feasible_like(self, prototype):
        return jnp.zeros_like(prototype).at[..., 0].set(1)

    def tree_flatten(self):
        return (), ((), {})


one_hot = _OneHot()


@biject_to.register(_OneHot)
def _no_bijection(constraint):
    raise NotImplementedError(
        "A one-hot site is discrete: there is no transform to unconstrained space, so continuous "
        "autoguides (AutoNormal, AutoDelta, ...) cannot cover it, with or without enum_onehot. "
        "Use numpyro_reinmax.infer.AutoReinMax (it covers discrete and continuous sites), or "
        "hide the site from the autoguide with numpyro.handlers.block and give it a "
        "numpyro_reinmax.ReinMaxOneHotCategorical guide site, or sum it out in the model "
        "(enum_onehot(model) with TraceEnum_ELBO) and hide it from the autoguide."
    )
