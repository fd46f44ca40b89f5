"""ReinMax for Pyro: reparameterized one-hot categorical and Bernoulli distributions.

ReinMax (Liu et al., "Bridging Discrete and Backpropagation: Straight-Through and Beyond",
NeurIPS 2023) draws exact categorical samples and backpropagates a second-order accurate gradient
at the cost of straight-through. Swap a ``dist.Categorical`` site for a one-hot
:class:`ReinMaxOneHotCategorical` in the guide and fit the model with SVI.
"""

from . import kl as _kl  # noqa: F401  (registers the analytic KL divergences)
from .estimators import (
    gapped_straight_through,
    gumbel_rao,
    gumbel_straight_through,
    reinmax,
    reinmax_cv,
    reinmax_rao,
    straight_through,
)
from .families import ESTIMATOR_CLASSES
from .mixture import OneHotMixture
from .native import native_kernels_status, set_native_kernels
from .one_hot import OneHotCategorical

__version__ = "0.1.0"

globals().update(ESTIMATOR_CLASSES)  # ReinMaxOneHotCategorical, ...: every rule's classes

__all__ = [
    *ESTIMATOR_CLASSES,
    "OneHotCategorical",
    "OneHotMixture",
    "__version__",
    "gapped_straight_through",
    "gumbel_rao",
    "gumbel_straight_through",
    "native_kernels_status",
    "reinmax",
    "reinmax_cv",
    "reinmax_rao",
    "set_native_kernels",
    "straight_through",
]
