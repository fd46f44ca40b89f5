"""The reparameterized counterpart of a discrete distribution, by estimator.

``ESTIMATORS`` holds the one-hot, Bernoulli and integer categorical classes of every
estimator rule of :data:`~pyro_reinmax.estimators.RULES`, derived from this backend's three
base classes by ``reinmax_core.estimator_classes`` (so a rule added to the table has its
classes here), and those of ``"score_function"`` (the plain, non-reparameterized classes,
for REINFORCE with ``TraceGraph_ELBO``); ``ESTIMATOR_CLASSES`` the derived classes by name,
as the package exports them; :func:`site_distribution` builds a guide site of a kind
(``"one_hot"``, ``"bernoulli"`` or ``"categorical"``, :func:`support_kind`);
:func:`reparameterized` rebuilds a model's distribution as the
chosen estimator's class on the same parameters, through ``Independent``, ``Masked`` and
``Expanded`` wrappers, so gradients reach the model's own parameters.
"""

from __future__ import annotations

import torch
from pyro.distributions import Bernoulli, Categorical, Independent, MaskedDistribution
from pyro.distributions.torch_distribution import ExpandedDistribution
from torch.distributions import constraints

from reinmax_core.estimator_classes import estimator_classes
from reinmax_core.rules import DISTRIBUTION_KINDS, RULES, SCORE_FUNCTION, check_estimator

from .bernoulli import _BernoulliReparameterized
from .categorical import _CategoricalReparameterized
from .one_hot import OneHotCategorical, _OneHotReparameterized

ESTIMATORS = {
    **estimator_classes(
        {
            "one_hot": _OneHotReparameterized,
            "bernoulli": _BernoulliReparameterized,
            "categorical": _CategoricalReparameterized,
        },
        module="pyro_reinmax",
        framework="torch",
    ),
    SCORE_FUNCTION: (OneHotCategorical, Bernoulli, Categorical),
}
ESTIMATOR_CLASSES = {cls.__name__: cls for rule in RULES for cls in ESTIMATORS[rule]}
"""Every derived class by name (``ReinMaxOneHotCategorical``, ...), as the package exports it."""


def site_distribution(kind: str, estimator: str, temperature: float, **parameter):
    """The ``kind`` (``"one_hot"``, ``"bernoulli"`` or ``"categorical"``) distribution of the
    estimator's family."""
    cls = ESTIMATORS[estimator][DISTRIBUTION_KINDS.index(kind)]
    if estimator in RULES:
        return cls(**parameter, temperature=temperature)
    return cls(**parameter)


def unwrap(fn):
    """The innermost distribution under ``Independent``, ``Masked``, ``Expanded``, ... wrappers."""
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return fn


def support_kind(support) -> str | None:
    """``"one_hot"``, ``"bernoulli"``, ``"categorical"`` (the integers ``0..K-1``) or None for a
    (possibly ``independent``) support."""
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    if support is constraints.one_hot or type(support).__name__ == "_OneHot":
        return "one_hot"
    if support is constraints.boolean:
        return "bernoulli"
    if isinstance(support, constraints.integer_interval) and _is_zero(support.lower_bound):
        return "categorical" if _single_number(support.upper_bound) else None
    return None


def _is_zero(bound) -> bool:
    return _single_number(bound) and float(bound) == 0


def _single_number(bound) -> bool:
    return not isinstance(bound, torch.Tensor) or bound.numel() == 1


def categories(fn, kind: str) -> int:
    """The number of values of each discrete variable of ``fn``, a distribution of ``kind``."""
    if kind == "one_hot":
        return fn.event_shape[-1]
    if kind == "bernoulli":
        return 2
    support = fn.support
    while isinstance(support, constraints.independent):
        support = support.base_constraint
    return int(support.upper_bound) + 1


def _parameter(fn) -> dict:
    """The parameter ``fn`` was built with (logits when it had them), to rebuild it exactly."""
    if isinstance(fn, OneHotCategorical):
        return {"logits": fn._unnormalized_logits}
    inner = fn._categorical if isinstance(fn, torch.distributions.OneHotCategorical) else fn
    if inner._param is inner.__dict__.get("logits"):
        return {"logits": fn.logits}
    return {"probs": fn.probs}


def reparameterized(fn, estimator: str = "reinmax", temperature: float = 1.0):
    """``fn`` (a one-hot categorical or Bernoulli, possibly wrapped) as the estimator's class."""
    check_estimator(estimator, reparameterized_only=True)
    if isinstance(fn, Independent):
        inner = reparameterized(fn.base_dist, estimator, temperature)
        return inner.to_event(fn.reinterpreted_batch_ndims)
    if isinstance(fn, MaskedDistribution):
        return reparameterized(fn.base_dist, estimator, temperature).mask(fn._mask)
    if isinstance(fn, ExpandedDistribution):
        return reparameterized(fn.base_dist, estimator, temperature).expand(fn.batch_shape)
    one_hot_class, bernoulli_class, _ = ESTIMATORS[estimator]
    if isinstance(fn, torch.distributions.OneHotCategorical):
        return one_hot_class(**_parameter(fn), temperature=temperature)
    if isinstance(fn, torch.distributions.Bernoulli):
        return bernoulli_class(**_parameter(fn), temperature=temperature)
    raise ValueError(
        f"{type(fn).__name__} has no reparameterized counterpart: only one-hot categorical and "
        "Bernoulli sites do. Write a Categorical site as pyro_reinmax.OneHotCategorical "
        "(z.argmax(-1) recovers the index)."
    )
