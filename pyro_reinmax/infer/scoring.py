"""Whether the ELBO running now scores a discrete site's prior without its ``log_prob`` at the
sample (analytically, or by enumeration): then a stock ``OneHotCategorical`` prior, whose
``log_prob`` takes an argmax, loses no gradient, and the autoguide need not warn about it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_PRIORS_SCORED_EXACTLY: ContextVar[bool] = ContextVar("priors_scored_exactly", default=False)


@contextmanager
def scoring_priors_exactly() -> Iterator[None]:
    """Mark the enclosed model and guide runs as scored by such an ELBO."""
    token = _PRIORS_SCORED_EXACTLY.set(True)
    try:
        yield
    finally:
        _PRIORS_SCORED_EXACTLY.reset(token)


def priors_scored_exactly() -> bool:
    """Whether the enclosing ELBO scores discrete priors exactly."""
    return _PRIORS_SCORED_EXACTLY.get()
