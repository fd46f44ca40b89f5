r"""Bernoulli distributions for Pyro with reparameterized (straight-through) gradients.

A Bernoulli variable :math:`b` is the second coordinate of a two-category one-hot variable with
log-probabilities :math:`(\log(1-p), \log p)`, i.e. logits :math:`(0, \ell)` up to a shift. Each
estimator's Bernoulli class (:class:`ReinMaxBernoulli`, ...: ``families.ESTIMATORS``, derived from
``_BernoulliReparameterized`` for every rule) draws exactly and uses the two-category rule of its
estimator, so its gradient is that of the one-hot class on that pair. For ReinMax, with
:math:`g = \partial L/\partial b`, :math:`s = \sigma(\ell)` and :math:`a = (\sigma(\ell/\tau) +
b)/2`, that is :math:`\partial L/\partial \ell = \big(2 a(1-a) - \tfrac12 s(1-s)\big) g`.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
import torch.nn.functional as F
from torch import Tensor

from .masking import safe_log, select
from .reparameterized import Reparameterized


def bernoulli_log_probs(distribution: dist.Bernoulli) -> Tensor:
    r"""The pair :math:`(\log(1-p), \log p)` on the last axis, from the parameter the distribution
    was built with: exact at :math:`p \in \{0, 1\}` and at extreme logits, and the same whether
    or not the other parameter has been computed (torch computes it lazily and keeps it)."""
    if built_from_logits(distribution):
        logits = distribution.logits
        return torch.stack([F.logsigmoid(-logits), F.logsigmoid(logits)], -1)
    probs = distribution.probs
    return torch.stack([safe_log(1 - probs), safe_log(probs)], -1)


def built_from_logits(distribution: dist.Distribution) -> bool:
    """Whether a Bernoulli or categorical was built from ``logits`` (else from ``probs``): ours
    record it; torch's keep the parameter they were given as ``_param``."""
    from_logits = getattr(distribution, "_from_logits", None)
    if from_logits is None:
        from_logits = distribution._param is distribution.__dict__.get("logits")
    return from_logits


class _BernoulliReparameterized(Reparameterized, dist.Bernoulli):
    def __init__(
        self,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        temperature: float = 1.0,
        validate_args: bool | None = None,
        **options,
    ) -> None:
        self._from_logits = logits is not None
        super().__init__(probs, logits, temperature, validate_args, **options)

    def expand(self, batch_shape, _instance=None):
        new = super().expand(batch_shape, _instance)
        new._from_logits = self._from_logits
        return new

    def _one_hot_logits(self) -> Tensor:
        return bernoulli_log_probs(self)

    def _from_one_hot(self, sample: Tensor) -> Tensor:
        return sample[..., 1]

    def log_prob(self, value: Tensor) -> Tensor:
        r""":math:`(1 - b) \log(1 - p) + b \log p`, differentiable in :math:`b`."""
        if self._validate_args:
            self._validate_sample(value)
        return select(torch.stack([1 - value, value], -1), bernoulli_log_probs(self))
