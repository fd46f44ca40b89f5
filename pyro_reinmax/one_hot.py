r"""One-hot categorical distributions for Pyro.

:class:`OneHotCategorical` is the model-side distribution: exact sampling and a log-mass
:math:`\log p(z) = \sum_k z_k \log \pi_k` that is differentiable in the value :math:`z` (Pyro's own
``OneHotCategorical.log_prob`` takes an ``argmax`` and drops that gradient).

Each estimator's one-hot class (:class:`ReinMaxOneHotCategorical`,
:class:`StraightThroughOneHotCategorical`, ...: ``families.ESTIMATORS``, derived from
``_OneHotReparameterized`` for every rule) adds ``rsample``: the same exact draws and the same
log-mass, with the backward of one estimator of :mod:`pyro_reinmax.estimators`. They differ
only in that rule, so comparisons between them are fair.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import Tensor
from torch.distributions.utils import lazy_property

from .masking import safe_log, select
from .reparameterized import Reparameterized
from .sampling import draw_one_hot
from .validation import check_logits, check_probs, validation_enabled

__all__ = ["OneHotCategorical"]


class OneHotCategorical(dist.OneHotCategorical):
    r"""One-hot categorical distribution with a log-mass differentiable in the value.

    .. math:: \log p(z) = \sum_k z_k \log \pi_k, \qquad \pi = \operatorname{softmax}(\theta)

    Use it for one-hot sites of models whose guides are reparameterized. ``-inf`` logits (or zero
    probabilities) mask categories: never drawn, finite gradients. With validation on, ``probs``
    must sum to one (they are not silently renormalised) and logits must be finite or ``-inf``.

    Args:
        probs: event probabilities, shape ``batch_shape + (K,)``.
        logits: unnormalised log-probabilities (instead of ``probs``).
        validate_args: as for every torch distribution.
    """

    def __init__(
        self,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        if (probs is None) == (logits is None):
            raise ValueError("Pass exactly one of `probs` or `logits`.")
        validate = validation_enabled(validate_args)
        if validate:
            if logits is None:
                check_probs(probs)
            else:
                check_logits(logits)
        # The estimators only need logits up to a shift (softmax is shift-invariant and their
        # gradients sum to zero over categories); the normalised Categorical is built lazily.
        self._parameters = (probs, logits)
        self._unnormalized_logits = safe_log(probs) if logits is None else logits
        param_shape = self._unnormalized_logits.shape
        torch.distributions.Distribution.__init__(
            self, param_shape[:-1], param_shape[-1:], validate_args=False
        )
        self._validate_args = validate

    @lazy_property
    def _categorical(self) -> dist.Categorical:
        """torch's Categorical on the same parameters (already validated), with masked
        categories' log-probabilities kept exactly -inf (torch clamps log(probs) at log(eps))."""
        probs, logits = self._parameters
        categorical = dist.Categorical(probs=probs, logits=logits, validate_args=False)
        if logits is None:
            categorical.logits = safe_log(categorical.probs)
        return categorical

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        new = super().expand(batch_shape, _instance=new)
        new._unnormalized_logits = self._unnormalized_logits.expand(
            new.batch_shape + self.event_shape
        )
        return new

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        with torch.no_grad():
            return draw_one_hot(self.probs.expand(self._extended_shape(sample_shape)))

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return select(value, self.logits)


class _OneHotReparameterized(Reparameterized, OneHotCategorical):
    @staticmethod
    def infer_shapes(probs=None, logits=None, temperature=None):
        return dist.OneHotCategorical.infer_shapes(probs=probs, logits=logits)

    def _one_hot_logits(self) -> Tensor:
        return self._unnormalized_logits

    def _from_one_hot(self, sample: Tensor) -> Tensor:
        return sample
