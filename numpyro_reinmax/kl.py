r"""Analytic KL divergences, registered with NumPyro's ``kl_divergence`` dispatch.

Registered for one-hot categoricals among themselves and for Bernoullis (against NumPyro's
``BernoulliProbs``/``BernoulliLogits`` too), so ``TraceMeanField_ELBO`` uses the exact
:math:`\mathrm{KL}(q \| p) = \sum_k q_k (\log q_k - \log p_k)` instead of its Monte Carlo
fallback. Masked (zero-probability) categories give finite gradients. Importing
:mod:`numpyro_reinmax` registers them.
"""

from __future__ import annotations

import jax
from jax import Array
from numpyro.distributions import (
    BernoulliLogits,
    BernoulliProbs,
    CategoricalLogits,
    CategoricalProbs,
    Distribution,
)
from numpyro.distributions.kl import kl_divergence  # NumPyro's multipledispatch dispatcher

from .bernoulli import _BernoulliReparameterized, bernoulli_log_probs
from .masking import categorical_kl
from .one_hot import CategoricalParameters, OneHotCategorical


def discrete_log_probs(distribution: Distribution) -> Array | None:
    """The table of normalised log-probabilities ``(..., K)`` of a one-hot or integer categorical
    or a Bernoulli (as two categories), or ``None`` for any other distribution."""
    if isinstance(distribution, CategoricalParameters | CategoricalLogits | CategoricalProbs):
        return jax.nn.log_softmax(distribution.logits, -1)
    if isinstance(distribution, (_BernoulliReparameterized, BernoulliLogits, BernoulliProbs)):
        return bernoulli_log_probs(distribution)
    return None


@kl_divergence.register(OneHotCategorical, OneHotCategorical)
def kl_one_hot(p: Distribution, q: Distribution) -> Array:
    """KL between one-hot categoricals from their normalised logits."""
    return categorical_kl(jax.nn.log_softmax(p.logits, -1), jax.nn.log_softmax(q.logits, -1))


def kl_bernoulli(p: Distribution, q: Distribution) -> Array:
    """KL between Bernoullis as two-category categoricals."""
    return categorical_kl(bernoulli_log_probs(p), bernoulli_log_probs(q))


for _p, _q in [
    (_BernoulliReparameterized, _BernoulliReparameterized),
    (_BernoulliReparameterized, BernoulliProbs),
    (_BernoulliReparameterized, BernoulliLogits),
    (BernoulliProbs, _BernoulliReparameterized),
    (BernoulliLogits, _BernoulliReparameterized),
]:
    kl_divergence.register(_p, _q)(kl_bernoulli)
