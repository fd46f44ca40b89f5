"""The small base that every reparameterized distribution of this package shares.

A subclass names its estimator rule (a key of :data:`~pyro_reinmax.estimators.RULES`) and says how
to view itself as a one-hot categorical (``_one_hot_logits``) and how to read its value back from a
one-hot draw (``_from_one_hot``). Everything else is common: the temperature, exact ``rsample``
with the rule's backward, ``expand`` that keeps the class and the temperature, and ``score_parts``
that stays correct under guide-side enumeration.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from pyro.distributions.score_parts import ScoreParts
from torch import Tensor

from .estimators import estimate, rule_options
from .validation import check_temperature

_DRAWN = "_pyro_reinmax_rsample"  # marks the tensors that ``rsample`` returns


class Reparameterized:
    """Mixin placed before a Pyro distribution class: ``class X(Reparameterized, Base)``."""

    has_rsample = True
    rule_name: ClassVar[str]
    temperature: float
    options: tuple[tuple[str, float], ...]

    def __init__(
        self,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        temperature: float = 1.0,
        validate_args: bool | None = None,
        **options,
    ) -> None:
        self.temperature = check_temperature(temperature)
        self.options = rule_options(self.rule_name, options)
        super().__init__(probs=probs, logits=logits, validate_args=validate_args)

    def _one_hot_logits(self) -> Tensor:
        """Normalised log-probabilities of the equivalent one-hot categorical, ``(..., K)``."""
        raise NotImplementedError

    def _from_one_hot(self, sample: Tensor) -> Tensor:
        """This distribution's value for a one-hot draw of the equivalent categorical."""
        raise NotImplementedError

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(type(self), _instance)
        new.temperature = self.temperature
        new.options = self.options
        return super().expand(batch_shape, _instance=new)

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        logits = self._one_hot_logits()
        logits = logits.expand(torch.Size(sample_shape) + logits.shape)
        sample, _ = estimate(self.rule_name, logits, self.temperature, options=self.options)
        value = self._from_one_hot(sample)
        setattr(value, _DRAWN, True)
        return value

    def score_parts(self, value: Tensor) -> ScoreParts:
        """Pathwise for a value drawn by ``rsample``; score function for any other value (one
        enumerated by ``TraceEnum_ELBO``, or drawn by ``sample``), exactly as the
        non-reparameterized distribution would be scored. Pyro passes the tensor that ``rsample``
        returned, which carries a mark."""
        log_prob = self.log_prob(value)
        if getattr(value, _DRAWN, False):
            return ScoreParts(log_prob=log_prob, score_function=0, entropy_term=log_prob)
        return ScoreParts(log_prob=log_prob, score_function=log_prob, entropy_term=0)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(batch_shape={tuple(self.batch_shape)}, "
            f"event_shape={tuple(self.event_shape)}, temperature={self.temperature}"
            + "".join(f", {name}={value}" for name, value in self.options)
            + ")"
        )
