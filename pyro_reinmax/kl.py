r"""Analytic KL divergences, registered with ``torch.distributions.kl_divergence``.

Registered for every pair of one-hot categoricals where one side is this package's (against
torch's and Pyro's ``OneHotCategorical`` and among themselves), and likewise for Bernoullis, so
``TraceMeanField_ELBO`` uses the exact
:math:`\mathrm{KL}(q \| p) = \sum_k q_k (\log q_k - \log p_k)` instead of its Monte Carlo
fallback. Unlike torch's own registration, masked (zero-probability) categories give finite
gradients. Importing :mod:`pyro_reinmax` registers them.
"""

from __future__ import annotations

from torch import Tensor
from torch.distributions import Bernoulli, Categorical, OneHotCategorical, register_kl

from .bernoulli import _BernoulliReparameterized, bernoulli_log_probs, built_from_logits
from .masking import categorical_kl, safe_log
from .one_hot import OneHotCategorical as ExactOneHotCategorical


def one_hot_log_probs(distribution: OneHotCategorical) -> Tensor:
    """Normalised log-probabilities, exactly ``-inf`` at zero probabilities: torch's
    ``OneHotCategorical(probs=...)`` clamps ``log(probs)`` at ``log(eps)``, which would turn an
    infinite KL finite."""
    if isinstance(distribution, ExactOneHotCategorical):
        return distribution.logits
    categorical = distribution._categorical
    if built_from_logits(categorical):
        return categorical.logits
    return safe_log(categorical.probs)


def discrete_log_probs(distribution) -> Tensor | None:
    """The table of normalised log-probabilities ``(..., K)`` of a one-hot or integer
    categorical or a Bernoulli (as two categories), or ``None`` for any other distribution."""
    if isinstance(distribution, OneHotCategorical):
        return one_hot_log_probs(distribution)
    if isinstance(distribution, Bernoulli):
        return bernoulli_log_probs(distribution)
    if isinstance(distribution, Categorical):
        if built_from_logits(distribution):
            return distribution.logits
        return safe_log(distribution.probs)
    return None


def kl_one_hot(p: OneHotCategorical, q: OneHotCategorical) -> Tensor:
    """KL between one-hot categoricals from their normalised log-probabilities."""
    return categorical_kl(one_hot_log_probs(p), one_hot_log_probs(q))


def kl_bernoulli(p: Bernoulli, q: Bernoulli) -> Tensor:
    """KL between Bernoullis as two-category categoricals."""
    return categorical_kl(bernoulli_log_probs(p), bernoulli_log_probs(q))


for _ours, _theirs, _kl in [
    (ExactOneHotCategorical, OneHotCategorical, kl_one_hot),
    (_BernoulliReparameterized, Bernoulli, kl_bernoulli),
]:
    register_kl(_ours, _theirs)(_kl)
    register_kl(_theirs, _ours)(_kl)
    register_kl(_ours, _ours)(_kl)
