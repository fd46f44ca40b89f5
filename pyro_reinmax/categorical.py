r"""Integer-valued guide sites for models written with ``dist.Categorical`` (Pyro).

Each estimator's integer class (:class:`ReinMaxCategorical`, ...: ``families.ESTIMATORS``,
derived from ``_CategoricalReparameterized`` for every rule) is a guide site for a model
site ``pyro.sample("z", dist.Categorical(probs))``, which takes values ``0..K-1`` and selects
parameters by indexing (``locs[z]``). An integer carries no gradient, so these classes are not
reparameterized (``has_rsample`` is False: Pyro's own ELBOs score them by the score function, as
any ``Categorical``). :class:`~pyro_reinmax.infer.TraceLocalEnum_ELBO` gives them their estimator
instead: it draws the site's category through :meth:`one_hot_rsample` (the one-hot draw
:math:`D` with the rule's backward), records the index ``D.argmax(-1)`` in the guide's trace, and
scores each model factor one site at a time, so the gradient reaches the logits through
:math:`D`. ``Predictive`` and ``infer_discrete`` see plain integer sites.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import Tensor

from .estimators import estimate
from .masking import safe_log
from .reparameterized import Reparameterized
from .sampling import draw_index
from .validation import check_logits, check_probs, validation_enabled


class _CategoricalReparameterized(Reparameterized, dist.Categorical):
    has_rsample = False

    def __init__(
        self,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        temperature: float = 1.0,
        validate_args: bool | None = None,
        **options,
    ) -> None:
        if (probs is None) == (logits is None):
            raise ValueError("Pass exactly one of `probs` or `logits`.")
        validate = validation_enabled(validate_args)
        if validate and probs is None:
            check_logits(logits)
        elif validate:
            check_probs(probs)
        self._unnormalized_logits = safe_log(probs) if logits is None else logits
        super().__init__(probs, logits, temperature, validate_args=False, **options)
        self._validate_args = validate

    def expand(self, batch_shape, _instance=None):
        new = super().expand(batch_shape, _instance)
        new._unnormalized_logits = self._unnormalized_logits.expand(
            torch.Size(batch_shape) + self._unnormalized_logits.shape[-1:]
        )
        return new

    def _one_hot_logits(self) -> Tensor:
        return self._unnormalized_logits

    def _from_one_hot(self, sample: Tensor) -> Tensor:
        return sample.argmax(-1)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        probs = self._unnormalized_logits.softmax(-1)
        with torch.no_grad():
            probs = probs.expand(self._extended_shape(sample_shape) + probs.shape[-1:])
            return draw_index(probs).squeeze(-1)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        raise NotImplementedError(
            f"{type(self).__name__} takes integer values, which carry no gradient: fit it with "
            "pyro_reinmax.infer.TraceLocalEnum_ELBO (which draws it through one_hot_rsample), "
            "or use the one-hot class of the same estimator."
        )

    def one_hot_rsample(self, shape: torch.Size | None = None) -> Tensor:
        r"""A one-hot draw :math:`D` of shape ``shape + (K,)`` (default: the batch shape) with
        the estimator's backward to the logits; its index is the site's value."""
        logits = self._unnormalized_logits
        shape = self.batch_shape if shape is None else torch.Size(shape)
        logits = logits.expand(shape + logits.shape[-1:])
        sample, _ = estimate(self.rule_name, logits, self.temperature, options=self.options)
        return sample
