r"""One-hot categorical distributions for Pyro.

:class:`OneHotCategorical` is the model-side distribution: exact sampling and a log-mass
:math:`\log p(z) = \sum_k z_k \log \pi_k` that is differentiable in the value :math:`z` (Pyro's own
``OneHotCategorical.log_prob`` takes an ``argmax`` and drops that gradient).

:class:`ReinMaxOneHotCategorical`, :class:`StraightThroughOneHotCategorical` and
:class:`GumbelStraightThroughOneHotCategorical` add ``rsample``: the same exact draws and the same
log-mass, with the backward of one estimator of :mod:`pyro_reinmax.estimators`. They differ only in
that rule, so comparisons between them are fair.
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


class ReinMaxOneHotCategorical(_OneHotReparameterized):
    r"""One-hot categorical with ReinMax gradients (Liu et al., NeurIPS 2023).

    ``rsample`` draws :math:`D \sim \operatorname{Categorical}(\pi_0)`,
    :math:`\pi_0 = \operatorname{softmax}(\theta)`; with :math:`g = \partial L/\partial D` and
    :math:`\pi_1 = (\operatorname{softmax}(\theta/\tau) + D)/2` its backward is
    :math:`\nabla_\theta = 2 J(\pi_1) g - \tfrac12 J(\pi_0) g`,
    :math:`J(p) = \operatorname{diag}(p) - p p^\top`. At :math:`\tau = 1` the expected gradient is
    exact for objectives quadratic in :math:`D`. ``sample``, ``log_prob``, ``entropy``, KL and
    ``enumerate_support`` are those of :class:`OneHotCategorical`.

    Args:
        probs, logits: as :class:`OneHotCategorical`.
        temperature: :math:`\tau > 0`, used by the backward only (the draw does not depend on it).
        validate_args: as for every torch distribution.
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
